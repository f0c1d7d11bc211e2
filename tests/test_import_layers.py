"""The package borders, checked over every module's imports (read with ``ast``, so a lazy
import inside a function counts as much as one at the top):

- ``signer`` imports none of ``nameserver``, ``sync``, ``zonefan``: pure DNSSEC;
- ``sync`` imports nothing of ``nameserver`` or ``zonefan``: it sees the primary only
  through DNS;
- ``settings`` imports none of the others: the one grammar every package reads with;
- ``nameserver`` imports neither ``sync`` nor ``zonefan``;
- only ``zonefan`` (the CLI, the composition root) ties them together.

Inside ``nameserver`` the sub-packages are layers (:data:`NAMESERVER_LAYERS`): a module
imports its own part and the parts below it, never one above or beside it.
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


def imported(path: Path, depth: int = 1) -> set[str]:
    """The modules ``path`` imports, wherever in the module the import is, cut to their
    first ``depth`` components (1: top-level packages; 2: ``nameserver.store``, and
    ``from nameserver import errors`` counts as ``nameserver.errors``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()

    def add(name: str) -> None:
        found.add(".".join(name.split(".")[:depth]))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.count(".") + 1 >= depth:
                add(node.module)
            else:
                for alias in node.names:
                    add(f"{node.module}.{alias.name}")
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
        "import dns.name\n\ndef f() -> None:\n    from nameserver.store.store import Store\n",
        encoding="utf-8",
    )
    assert imported(module) == {"dns", "nameserver"}


def test_every_import_is_absolute() -> None:
    """A relative import would pass unseen by the checks here, which read absolute names."""
    relative = [
        str(path.relative_to(PROJECT_ROOT))
        for package in PACKAGES
        for path in modules(package)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative == []


# The parts of ``nameserver`` and the parts each stands on directly; a part may import
# what it stands on, and what those stand on (below()). From the bottom:
# - ``errors`` (the exception root) and ``progress`` (the progress callback type);
# - ``zone``: zone contents, pure (records, snapshots, validation, zone files);
# - ``store``: the SQLite store of those contents and what reads it (versions, follower);
# - ``edit``: validated changes committed to the store; it defines what it asks of a
#   signer (``ChangeSigner``), so it needs nothing of ``dnssec``;
# - ``dnssec``: policy, keys, signing; it changes zones through the editor;
# - ``serve``: answering from snapshots; it needs only ``zone`` (never the store);
# - ``transfer``: AXFR/IXFR, NOTIFY, TSIG and UPDATE: it renders with ``serve`` and
#   changes signed zones through ``dnssec``;
# - ``server`` (nameserver/server.py): the listeners and what they start, the top.
NAMESERVER_LAYERS: dict[str, tuple[str, ...]] = {
    "errors": (),
    "progress": (),
    "zone": ("errors", "progress"),
    "store": ("zone",),
    "edit": ("store",),
    "dnssec": ("edit",),
    "serve": ("zone",),
    "transfer": ("dnssec", "serve"),
    "server": ("transfer",),
}


def below(part: str) -> set[str]:
    """Every part ``part`` stands on, directly or through another."""
    found: set[str] = set()
    todo = list(NAMESERVER_LAYERS[part])
    while todo:
        lower = todo.pop()
        if lower not in found:
            found.add(lower)
            todo.extend(NAMESERVER_LAYERS[lower])
    return found


def part_of(path: Path) -> str:
    """The part of ``nameserver`` a module is in: its sub-package, or its own name."""
    parts = path.relative_to(PROJECT_ROOT / "nameserver").parts
    return parts[0] if len(parts) > 1 else path.stem


def layer_crossings(path: Path, part: str) -> list[str]:
    """The parts ``path`` (in ``part``) imports that are not below it."""
    used = {name.split(".")[1] for name in imported(path, 2) if name.startswith("nameserver.")}
    return sorted(used - below(part) - {part})


def test_the_layers_are_a_layering() -> None:
    """Every part is placed, and nothing stands on itself (no cycle)."""
    placed = {part_of(path) for path in modules("nameserver")} - {"__init__"}
    assert placed == set(NAMESERVER_LAYERS)
    assert [part for part in NAMESERVER_LAYERS if part in below(part)] == []


def test_no_nameserver_module_imports_a_part_above_it() -> None:
    crossings = {}
    for path in modules("nameserver"):
        part = part_of(path)
        if part == "__init__":
            continue
        if found := layer_crossings(path, part):
            crossings[str(path.relative_to(PROJECT_ROOT))] = found
    assert crossings == {}


def test_the_layer_check_sees_a_crossing(tmp_path: Path) -> None:
    """A lazy import of a higher part is found: the check above can fail."""
    module = tmp_path / "m.py"
    module.write_text(
        "from nameserver.zone.records import Record\n"
        "from nameserver import errors\n\n"
        "def f() -> None:\n    from nameserver.store.store import Store\n",
        encoding="utf-8",
    )
    assert imported(module, 2) == {"nameserver.zone", "nameserver.errors", "nameserver.store"}
    assert layer_crossings(module, "zone") == ["store"]
    assert layer_crossings(module, "edit") == []
    assert layer_crossings(module, "serve") == ["store"]


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
