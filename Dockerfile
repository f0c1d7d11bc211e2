# zonefan: serve (and sign) the zones of one SQLite store kept in a volume; README "Docker".
#   docker build -t zonefan .
#   docker run -d --name zonefan -p 53:5353/udp -p 53:5353/tcp -v zonefan:/var/lib/zonefan \
#       -v "$PWD/zonefan.toml:/etc/zonefan/zonefan.toml:ro" zonefan
FROM python:3.11-slim-bookworm
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY health ./health
COPY nameserver ./nameserver
COPY settings ./settings
COPY signer ./signer
COPY sync ./sync
COPY zonefan ./zonefan
# The dependencies at the versions the tests ran with (scripts/pin-constraints.py).
RUN pip install --no-cache-dir --disable-pip-version-check -c constraints.txt . \
    && rm -rf /src \
    && useradd --system --home-dir /var/lib/zonefan --create-home zonefan \
    && mkdir -p /etc/zonefan
USER zonefan
# ./zonefan.toml is read when present: mount the config at /etc/zonefan/zonefan.toml (or
# name another file with ZONEFAN_CONFIG). The store and its keys live in the volume.
WORKDIR /etc/zonefan
ENV ZONEFAN_DB=/var/lib/zonefan/zonefan.db PYTHONUNBUFFERED=1
VOLUME /var/lib/zonefan
EXPOSE 5353/udp 5353/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["zonefan", "healthcheck", "127.0.0.1:5353"]
# Serves what the store holds (nothing on first start: import zones with `docker exec`).
CMD ["zonefan", "serve", "--listen", "0.0.0.0:5353", "--listen", "[::]:5353"]
