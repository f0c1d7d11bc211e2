#!/usr/bin/env bash
# Install zonefan, import the example zone and serve it on 127.0.0.1:5353 (the README's first command).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check .
export ZONEFAN_DB="${ZONEFAN_DB:-$PWD/zonefan.db}"
zonefan zone import zones/example.test.zone --dry-run >/dev/null  # validate before storing
if ! zonefan zone list | grep -q '^example.test. '; then
    zonefan zone import zones/example.test.zone -m "example zone from the README"
fi
exec zonefan serve --listen 127.0.0.1:5353 --listen "[::1]:5353"
