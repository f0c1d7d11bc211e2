"""The zonefan command line: settings precedence, clear errors that change nothing, and the
zone/record commands end to end on a temporary store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.tools import PROJECT_ROOT
from zonefan.cli import main

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def run(db: Path, *args: str, ok: bool = True, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["--db", str(db), *args], env=env)
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code != 0, result.output
    return result


def serial(db: Path) -> int:
    rows = json.loads(run(db, "zone", "list", "--json").output)
    return int(rows[0]["serial"])


def test_import_show_export_round_trip(db: Path, tmp_path: Path) -> None:
    out = run(db, "zone", "import", str(EXAMPLE)).output
    assert "zone example.test.: created with" in out
    shown = json.loads(run(db, "zone", "show", "example.test", "--json").output)
    assert shown["zone"] == "example.test." and shown["records"] == len(shown["rrs"])
    exported = tmp_path / "out.zone"
    run(db, "zone", "export", "example.test", "-o", str(exported))
    # Re-importing our own export changes nothing.
    again = run(db, "zone", "import", str(exported)).output
    assert "no change" in again


def test_bad_zone_file_names_file_and_line_and_stores_nothing(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.zone"
    text = EXAMPLE.read_text() + "\nbroken 300 IN A 192.0.2.999\n"
    bad.write_text(text)
    line = len(text.splitlines())
    result = run(db, "zone", "import", str(bad), ok=False)
    assert f"bad.zone:{line}" in result.output and "192.0.2.999" in result.output
    assert not db.exists()


def test_validation_error_names_the_line(db: Path, tmp_path: Path) -> None:
    bad = tmp_path / "cname.zone"
    text = EXAMPLE.read_text() + '\nwww 300 IN TXT "beside a cname"\n'
    bad.write_text(text)
    result = run(db, "zone", "import", str(bad), ok=False)
    assert "CNAME cannot coexist" in result.output
    assert f"cname.zone:{len(text.splitlines())}" in result.output
    assert not db.exists()  # a refused first import leaves no empty store behind


def test_record_commands_history_diff_and_rollback(db: Path) -> None:
    run(db, "zone", "import", str(EXAMPLE))
    first = serial(db)
    run(db, "record", "add", "example.test", "cli", "300", "A", "192.0.2.200", "-m", "add one")
    run(db, "record", "set", "example.test", "cli", "600", "A", "192.0.2.201", "-r", "192.0.2.202")
    diff = run(db, "zone", "diff", "example.test").output
    assert "- cli.example.test. 300 IN A 192.0.2.200" in diff
    assert "+ cli.example.test. 600 IN A 192.0.2.202" in diff
    history = json.loads(run(db, "zone", "history", "example.test", "--json").output)
    assert [h["message"] for h in history][1] == "add one"
    assert all(h["author"] for h in history)
    run(db, "record", "delete", "example.test", "cli", "A")
    run(db, "zone", "rollback", "example.test", str(first))
    exported = run(db, "zone", "export", "example.test").output
    assert "cli" not in exported.split()
    assert serial(db) == first + 4


def test_bad_record_input_is_refused_and_changes_nothing(db: Path) -> None:
    run(db, "zone", "import", str(EXAMPLE))
    before = serial(db)
    cases = [
        (["cli", "300", "A", "not-an-address"], "malformed"),
        (["cli", "300", "NOSUCHTYPE", "x"], "not a known RR type"),
        (["cli", "-5", "A", "192.0.2.1"], "TTL"),
        (["www", "300", "A", "192.0.2.1"], "CNAME cannot coexist"),
        (["x.example.org.", "300", "A", "192.0.2.1"], "outside the zone"),
    ]
    for args, message in cases:
        result = run(db, "record", "add", "example.test", *args, ok=False)
        assert message in result.output, (args, result.output)
    assert serial(db) == before


def test_unknown_zone_is_a_clear_error(db: Path) -> None:
    run(db, "zone", "import", str(EXAMPLE))
    result = run(db, "zone", "show", "nope.test", ok=False)
    assert "nope.test. is not in the store" in result.output


def test_settings_precedence_flag_env_config(tmp_path: Path) -> None:
    config = tmp_path / "zonefan.toml"
    from_config = tmp_path / "config.db"
    config.write_text(f'db = "{from_config}"\n')
    runner = CliRunner()
    args = ["--config", str(config), "zone", "import", str(EXAMPLE)]
    assert runner.invoke(main, args).exit_code == 0
    assert from_config.exists()
    from_env = tmp_path / "env.db"
    assert runner.invoke(main, args, env={"ZONEFAN_DB": str(from_env)}).exit_code == 0
    assert from_env.exists()
    from_flag = tmp_path / "flag.db"
    result = runner.invoke(main, ["--db", str(from_flag), *args], env={"ZONEFAN_DB": str(from_env)})
    assert result.exit_code == 0 and from_flag.exists()


def test_serve_rejects_a_bad_listen_address(db: Path) -> None:
    result = run(db, "serve", "--listen", "localhost", ok=False)
    assert "Invalid value for '--listen' / '-l': 'localhost' is not an IP address" in result.output
    assert '"192.0.2.1:5353", "[2001:db8::1]:53"' in result.output


def test_serial_policy_option(db: Path) -> None:
    run(db, "zone", "import", str(EXAMPLE), "--serial-policy", "unixtime")
    info = json.loads(run(db, "zone", "list", "--json").output)[0]
    assert info["serial_policy"] == "unixtime"
    run(db, "record", "add", "example.test", "t", "300", "TXT", "hello")
    assert serial(db) > 1_700_000_000


def test_author_comes_from_flag_or_zonefan_author(db: Path) -> None:
    run(db, "zone", "import", str(EXAMPLE), env={"ZONEFAN_AUTHOR": "ops@example"})
    run(db, "record", "add", "example.test", "a1", "300", "A", "192.0.2.1", "--author", "alice")
    history = json.loads(run(db, "zone", "history", "example.test", "--json").output)
    assert [h["author"] for h in history] == ["ops@example", "alice"]


def test_serve_listen_comes_from_env_and_config_sections(db: Path, tmp_path: Path) -> None:
    result = run(db, "serve", ok=False, env={"ZONEFAN_SERVE_LISTEN": "not-an-address"})
    assert "'not-an-address' is not an IP address" in result.output
    config = tmp_path / "z.toml"
    config.write_text('[serve]\nlisten = ["also-bad"]\n')
    result = CliRunner().invoke(main, ["--db", str(db), "--config", str(config), "serve"])
    assert result.exit_code != 0
    assert f"{config}: serve.listen: 'also-bad' is not an IP address" in result.output
