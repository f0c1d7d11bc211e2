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
listen="${ZONEFAN_DEMO_LISTEN:-127.0.0.1:5353}"
if [ ! -e "$ZONEFAN_DB" ] || ! zonefan zone list | grep -q '^example\.test\. '; then
    zonefan zone import zones/example.test.zone -m "example zone from the README"
fi
# Sign it (keys from the default policy: ECDSA P-256 CSK, NSEC) unless it already is.
if zonefan keys list example.test | grep -q 'has no keys'; then
    zonefan zone sign example.test
fi
# The DS for the registrar: listed once the new key has reached every cache (a comment says
# when); `zonefan keys ds example.test` again then.
zonefan keys ds example.test
echo "serving on $listen; try: dig @${listen%:*} -p ${listen##*:} www.example.test +dnssec"
exec zonefan serve --listen "$listen"
