#!/usr/bin/env bash
# Install everything the test suite needs on Debian (as root), then run lint, types and tests.
# This is the README's test command and the only thing .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
packages=(nsd knot knot-dnsutils knot-dnssecutils bind9 bind9-dnsutils bind9-utils dnsperf ldnsutils unbound
          pdns-server pdns-backend-sqlite3 procps util-linux)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages start their daemons on install; tests start their own on other ports.
for svc in nsd knot named bind9 unbound pdns; do
    (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || true
done

EXTRAS="[test]" source scripts/setup-python.sh

ruff check .
ruff format --check .
mypy
python -m pytest -q -p no:cacheprovider "$@"
