"""The package borders, checked over every module's imports (read with ``ast``, so a lazy
import inside a function counts as much as one at the top):

- ``signer`` imports none of ``nameserver``, ``sync``, ``zonefan``: pure DNSSEC;
- ``sync`` imports nothing of ``nameserver`` or ``zonefan``: it sees the primary only
  through DNS;
- ``settings`` imports none of the others: the one grammar every package reads with;
- ``nameserver`` imports neither ``sync`` nor ``zonefan``;
- only ``zonefan`` (the CLI, the composition root) ties them together.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.tools import PROJECT_ROOT

PACKAGES = ("nameserver", "signer", "sync", "settings", "health", "zonefan")
FORBIDDEN: dict[str, frozenset[str]] = {
    "signer": frozenset({"nameserver", "sync", "zonefan"}),
    "sync": frozenset({"nameserver", "zonefan"}),
    "settings": frozenset({"nameserver", "signer", "sync", "zonefan"}),
    "health": frozenset({"nameserver", "signer", "sync", "zonefan"}),
    "nameserver": frozenset({"sync", "zonefan"}),
    "zonefan": frozenset(),
}


def imported(path: Path) -> set[str]:
    """The top-level packages ``path`` imports, wherever in the module the import is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((PROJECT_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_crosses_its_packages_border(package: str) -> None:
    files = modules(package)
    assert files, f"no modules under {package}/"
    crossings = {
        str(path.relative_to(PROJECT_ROOT)): sorted(imported(path) & FORBIDDEN[package])
        for path in files
    }
    assert {k: v for k, v in crossings.items() if v} == {}


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    """A lazy import inside a function is found: the check above can fail."""
    module = tmp_path / "m.py"
    module.write_text(
        "import dns.name\n\ndef f() -> None:\n    from nameserver.store import Store\n",
        encoding="utf-8",
    )
    assert imported(module) == {"dns", "nameserver"}


ISSUE_NUMBER = re.compile(r"\b[Ii]ssues? #?\d+\b")
OUTSIDE = re.compile(r"(?<![\w.])(?:\.\./shared|/work/)")


@pytest.mark.parametrize("folder", [*PACKAGES, "bench", "scripts"])
def test_code_names_no_issue_numbers_and_no_paths_outside_the_repo(folder: str) -> None:
    """Code and comments say why, not which ticket; and they stand on their own in a clone
    (paths outside the repository mean nothing there)."""
    found = []
    for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ISSUE_NUMBER.search(line) or OUTSIDE.search(line):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{number}: {line.strip()}")
    assert found == []
