#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: make .venv with zonefan installed. EXTRAS="[test]" (test.sh)
# installs it editable with the test tools; EXTRAS="" (demo.sh) as a user does: built and
# installed, dependencies at the tested versions (constraints.txt).
# A venv, because Debian's system Python refuses global pip installs (PEP 668).
set -euo pipefail
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv python3-pip >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
if [ -n "${EXTRAS:-}" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${EXTRAS}"
else
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt .
fi
export PATH="$PWD/.venv/bin:$PATH"
