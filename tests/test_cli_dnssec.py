"""DNSSEC from the command line: `zone sign`, changes of a signed zone, `keys` commands,
checked with BIND's dnssec-verify and ldns-verify-zone on the exported zone; refusals
change nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.servers import run_cli
from tests.tools import PROJECT_ROOT, require_tool

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."


def _verify(db: Path, tmp_path: Path) -> str:
    exported = run_cli(db, "zone", "export", ZONE).stdout
    path = tmp_path / "signed.zone"
    path.write_text(exported)
    ldns = subprocess.run(
        [require_tool("ldns-verify-zone"), str(path)], capture_output=True, text=True, check=False
    )
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr
    bind = subprocess.run(
        [require_tool("dnssec-verify"), "-z", "-o", ZONE, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bind.returncode == 0, bind.stdout + bind.stderr
    return exported


def _serial(db: Path) -> str:
    return run_cli(db, "zone", "show", ZONE).stdout


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "z.db"
    run_cli(path, "zone", "import", str(EXAMPLE))
    return path


@pytest.mark.parametrize("denial", ["--nsec", "--nsec3"])
def test_sign_change_and_verify(db: Path, tmp_path: Path, denial: str) -> None:
    out = run_cli(db, "zone", "sign", ZONE, denial).stdout
    assert "generate CSK" in out and "activate CSK" in out
    signed = _verify(db, tmp_path)
    assert ("NSEC3PARAM" in signed) == (denial == "--nsec3")
    run_cli(db, "record", "add", ZONE, "brand-new.deep", "300", "A", "192.0.2.77")
    run_cli(db, "record", "delete", ZONE, "mail2", "A", "192.0.2.26", check=False)
    after = _verify(db, tmp_path)
    assert "brand-new.deep" in after
    history = run_cli(db, "zone", "history", ZONE).stdout
    assert "sign the zone" in history


def test_switch_denial_and_maintain(db: Path, tmp_path: Path) -> None:
    run_cli(db, "zone", "sign", ZONE, "--nsec")
    run_cli(db, "zone", "sign", ZONE, "--nsec3")
    assert "NSEC3PARAM" in _verify(db, tmp_path)
    before = _serial(db)
    # Nothing is due right after signing: no new serial.
    assert "nothing was due" in run_cli(db, "zone", "maintain", ZONE).stdout
    assert _serial(db) == before


def test_keys_list_ds_and_private_keys_stay_private(db: Path) -> None:
    run_cli(db, "zone", "sign", ZONE)
    listing = run_cli(db, "keys", "list", ZONE).stdout
    assert "CSK" in listing and "active" in listing
    ds = run_cli(db, "keys", "ds", ZONE).stdout.strip().splitlines()
    assert len(ds) == 1 and ds[0].startswith(f"{ZONE} 86400 IN DS ") and " 13 2 " in ds[0]
    key_dir = db.parent / "z.db.keys"
    assert oct(key_dir.stat().st_mode & 0o777) == "0o700"
    for key_file in key_dir.iterdir():
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        secret = key_file.read_text().splitlines()[1]
        for args in (("keys", "status", ZONE, "--json"), ("zone", "export", ZONE)):
            assert secret not in run_cli(db, *args).stdout
    with open(db, "rb") as f:
        assert secret.encode() not in f.read()


def test_a_second_rollover_is_refused_and_changes_nothing(db: Path) -> None:
    run_cli(db, "zone", "sign", ZONE)
    run_cli(db, "keys", "rollover", ZONE, "--csk")
    before = (_serial(db), run_cli(db, "keys", "list", ZONE, "--json").stdout)
    again = run_cli(db, "keys", "rollover", ZONE, "--csk", check=False)
    assert again.returncode != 0 and "rollover" in again.stderr and "is running" in again.stderr
    assert (_serial(db), run_cli(db, "keys", "list", ZONE, "--json").stdout) == before


def test_refusals_name_what_is_wrong(db: Path, tmp_path: Path) -> None:
    no_keys = run_cli(db, "keys", "ds", ZONE, check=False)
    assert no_keys.returncode != 0 and "zone sign" in no_keys.stderr
    config = tmp_path / "zonefan.toml"
    config.write_text("[policy.default]\nalgorithm = 99\n")
    bad = run_cli(db, "--config", str(config), "zone", "sign", ZONE, check=False)
    assert bad.returncode != 0 and "algorithm" in bad.stderr and "policy.default" in bad.stderr
    config.write_text('[policy.default]\nrrsig-refresh = "1d"\n')
    short = run_cli(db, "--config", str(config), "zone", "sign", ZONE, check=False)
    assert short.returncode != 0 and "EXPIRE" in short.stderr
    assert "NSEC" not in run_cli(db, "zone", "export", ZONE).stdout


def test_a_key_file_readable_by_others_is_refused(db: Path) -> None:
    run_cli(db, "zone", "sign", ZONE)
    key_file = next((db.parent / "z.db.keys").iterdir())
    os.chmod(key_file, 0o644)
    before = _serial(db)
    refused = run_cli(db, "record", "add", ZONE, "x", "300", "A", "192.0.2.1", check=False)
    assert refused.returncode != 0 and "chmod 600" in refused.stderr
    assert _serial(db) == before
