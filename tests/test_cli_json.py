"""`--json` everywhere: every command that prints a result takes it, its output parses, and
under `--json` a failure is one JSON object on stderr with a stable shape."""

from __future__ import annotations

import json
from pathlib import Path

import click
import dns.name
import pytest

from nameserver.store.store import Store
from tests.servers import run_cli
from tests.tools import PROJECT_ROOT, example_store, write_private
from zonefan.cli import LAZY_COMMANDS, main

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
# Commands that print no result, only logs while they run, or nothing at all.
NO_RESULT = {("serve",), ("sync", "run")}


def commands() -> list[tuple[str, ...]]:
    """Every leaf command of the CLI, as the words that run it."""
    ctx = click.Context(main)
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(main, ())
    return found


def test_the_walk_sees_every_command_group() -> None:
    assert {path[0] for path in commands()} == set(LAZY_COMMANDS)


@pytest.mark.parametrize("path", sorted(set(commands()) - NO_RESULT), ids=" ".join)
def test_every_command_that_prints_takes_json(path: tuple[str, ...]) -> None:
    command: click.Command = main
    ctx = click.Context(main)
    for word in path:
        assert isinstance(command, click.Group)
        sub = command.get_command(ctx, word)
        assert sub is not None
        command = sub
    assert any("--json" in p.opts for p in command.params), f"zonefan {' '.join(path)}"


def _json(db: Path, *args: str) -> object:
    done = run_cli(db, *args, "--json")
    assert done.stderr == "", done.stderr
    return json.loads(done.stdout)


def _serial(db: Path, zone: str) -> int:
    """The zone's serial as the store holds it."""
    with Store(db) as store:
        return store.zone_info(dns.name.from_text(zone)).serial


def test_results_parse_as_json(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db", signed=True)
    exported = _json(db, "zone", "export", "example.test")
    assert isinstance(exported, dict)
    assert exported["zone"] == "example.test."
    assert exported["serial"] == _serial(db, "example.test.")
    assert {"name", "ttl", "type", "rdata"} <= set(exported["rrs"][0])
    rolled = _json(db, "keys", "rollover", "example.test", "--csk")
    assert isinstance(rolled, dict) and rolled["zone"] == "example.test."
    assert [a["action"] for a in rolled["actions"]]  # the new key was made (and published)
    listed = _json(db, "keys", "list", "example.test")
    assert isinstance(listed, list) and len(listed) == 2
    deleted = _json(db, "zone", "delete", "example.test", "--yes")
    assert deleted == {"zone": "example.test.", "deleted": True, "catalog_serial": None}


def test_catalog_json(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db", signed=False)
    config = write_private(tmp_path / "zonefan.toml", 'catalog-zone = "catalog.test."\n')
    first = _json(db, "--config", str(config), "zone", "catalog")
    serial = _serial(db, "catalog.test.")
    assert first == {"catalog": "catalog.test.", "changed": True, "serial": serial}
    again = _json(db, "--config", str(config), "zone", "catalog")
    assert again == {"catalog": "catalog.test.", "changed": False, "serial": None}


@pytest.mark.parametrize(
    ("args", "kind", "code", "words"),
    [
        (("zone", "list"), "error", 1, "no store at"),
        (("zone", "list", "--bogus"), "usage", 2, "No such option '--bogus'"),
        (("record", "add", "example.test", "www", "99999999999", "A", "192.0.2.1"),
         "bad-parameter", 2, "TTL 99999999999 is outside 0..2147483647"),
        (("keys", "rollover", "example.test"), "usage", 2, "give exactly one of"),
    ],
)  # fmt: skip
def test_failures_under_json_are_json_on_stderr(
    tmp_path: Path, args: tuple[str, ...], kind: str, code: int, words: str
) -> None:
    done = run_cli(tmp_path / "missing.db", *args, "--json", check=False)
    assert done.returncode == code
    assert done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert set(error) <= {"kind", "message", "exit_code", "parameter"}
    assert error["kind"] == kind and error["exit_code"] == code
    assert words in error["message"]


def test_without_json_failures_stay_text(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "missing.db", "zone", "list", check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: no store at")
