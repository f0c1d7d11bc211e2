#!/usr/bin/env python3
"""Write constraints.txt: the exact versions of zonefan's runtime dependencies, transitively,
as installed in the environment that ran the tests (the Docker image installs with them:
`pip install -c constraints.txt .`). Run it with the project's venv after updating and
testing the dependencies:

    .venv/bin/python scripts/pin-constraints.py

Extras (test, bench) are left out: the image has none. The installer itself (pip, which
sqlite-utils lists) is left to the image's Python. Markers are evaluated for this
interpreter, so run it on Linux with the Python minor the Dockerfile's image has.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "constraints.txt"
INSTALLERS = frozenset({"pip", "setuptools", "wheel"})
HEADER = """\
# The versions zonefan's runtime dependencies were tested with; the Docker image installs
# with them (pip install -c constraints.txt .). Written by scripts/pin-constraints.py;
# tests/test_as_user.py installs the wheel with them and checks them against pyproject.
"""


def runtime_closure(dist: str) -> dict[str, str]:
    """Canonical name -> installed version of every distribution ``dist`` needs to run."""
    pins: dict[str, str] = {}
    todo = [(dist, frozenset[str]())]
    while todo:
        name, extras = todo.pop()
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            key = canonicalize_name(req.name)
            if key not in pins and key not in INSTALLERS:
                pins[key] = metadata.version(req.name)
                todo.append((req.name, frozenset(req.extras)))
    return pins


def main() -> None:
    pins = runtime_closure("zonefan")
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    OUTPUT.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUTPUT.name}: {len(lines)} pins", file=sys.stderr)


if __name__ == "__main__":
    main()
