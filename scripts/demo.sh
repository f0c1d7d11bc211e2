#!/usr/bin/env bash
# Install zonefan, import the example zone and serve it on 127.0.0.1:5353 (README, first command).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v dig >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends bind9-dnsutils >/dev/null
fi
EXTRAS="" source scripts/setup-python.sh
export ZONEFAN_DB="${ZONEFAN_DB:-$PWD/zonefan.db}"
if ! zonefan zone list | grep -q '^example\.test\. '; then
    zonefan zone import zones/example.test.zone -m "example zone from the README"
fi
# Sign it (keys from the default policy: ECDSA P-256 CSK, NSEC) unless it already is.
if zonefan keys list example.test | grep -q 'has no keys'; then
    zonefan zone sign example.test
fi
zonefan keys ds example.test
echo "serving; try: dig @127.0.0.1 -p 5353 www.example.test +dnssec"
exec zonefan serve --listen 127.0.0.1:5353
