# zonefan: serve (and later sign) the zones of one SQLite store.
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY nameserver ./nameserver
COPY signer ./signer
COPY sync ./sync
COPY zonefan ./zonefan
COPY zones ./zones
RUN pip install --no-cache-dir . \
    && useradd --system --home /var/lib/zonefan --create-home zonefan
USER zonefan
ENV ZONEFAN_DB=/var/lib/zonefan/zonefan.db
VOLUME /var/lib/zonefan
EXPOSE 5353/udp 5353/tcp
# The example zone is imported on first start so `docker run` answers at once.
CMD ["sh", "-c", "zonefan zone list | grep -q . || zonefan zone import zones/example.test.zone; exec zonefan serve --listen 0.0.0.0:5353 --listen [::]:5353"]
