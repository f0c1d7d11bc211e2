"""DNSSEC from the command line: `zone sign`, changes of a signed zone, `keys` commands
(including keys made with `keys generate` before the first signing), checked with BIND's
dnssec-verify and ldns-verify-zone on the exported zone; refusals change nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dns.dnssec
import dns.zone
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
    # Just signed: the DS is not safe at the parent until the DNSKEY and signatures are
    # in every cache, so it is only announced, as a comment.
    ds = run_cli(db, "keys", "ds", ZONE).stdout.strip().splitlines()
    assert all(line.startswith(";") for line in ds)
    (coming,) = json.loads(run_cli(db, "keys", "ds", ZONE, "--json").stdout)["coming"]
    assert coming["record"].startswith(f"{ZONE} 86400 IN DS ") and " 13 2 " in coming["record"]
    assert f";   {coming['record']}" in ds
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
    serial = _serial(db)
    for asked in (("keys", "rollover", ZONE, "--csk"), ("zone", "maintain", ZONE)):
        refused = run_cli(db, *asked, check=False)
        assert refused.returncode != 0 and "zone sign" in refused.stderr, refused
    assert _serial(db) == serial
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


# --- keys generate -------------------------------------------------------------------------


def _keys(db: Path, *config: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(
        run_cli(db, *config, "keys", "list", ZONE, "--json").stdout
    )
    return rows


def _dnskeys(exported: str) -> set[tuple[int, int, int]]:
    """(key tag, flags, algorithm) of the DNSKEY records in an exported zone."""
    zone = dns.zone.from_text(exported, relativize=False)
    rdataset = zone.find_rdataset(ZONE, "DNSKEY")
    return {(dns.dnssec.key_id(rd), rd.flags, int(rd.algorithm)) for rd in rdataset}


def _listed(db: Path, tag: object, *config: str) -> list[str]:
    """The `keys list` text columns of the key with ``tag``."""
    lines = run_cli(db, *config, "keys", "list", ZONE).stdout.splitlines()
    (line,) = [x for x in lines if x.split()[0] == str(tag)]
    return line.split()


def test_generated_key_is_used_by_zone_sign(db: Path, tmp_path: Path) -> None:
    out = run_cli(db, "keys", "generate", ZONE, "--csk").stdout
    assert "generated CSK tag" in out and "not published" in out and "note" not in out
    (key,) = _keys(db)
    assert (key["role"], key["algorithm"], key["state"], key["published"]) == (
        "CSK",
        13,
        "generated",
        "-",
    )
    assert _listed(db, key["tag"])[:4] == [str(key["tag"]), "13", "CSK", "generated"]
    # Nothing reaches the zone, and no DS for the registrar, before the zone is signed.
    assert "DNSKEY" not in run_cli(db, "zone", "export", ZONE).stdout
    assert run_cli(db, "keys", "ds", ZONE, check=False).returncode != 0
    key_dir = db.parent / "z.db.keys"
    (key_file,) = key_dir.iterdir()
    assert oct(key_dir.stat().st_mode & 0o777) == "0o700"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert key_file.name == f"{key['id']}.pem"

    signed = run_cli(db, "zone", "sign", ZONE).stdout
    assert "generate" not in signed  # the policy made no key of its own
    assert f"publish CSK {key['id']}" in signed and f"activate CSK {key['id']}" in signed
    (after,) = _keys(db)
    assert (after["id"], after["state"]) == (key["id"], "active")
    assert _listed(db, key["tag"])[:4] == [str(key["tag"]), "13", "CSK", "active"]
    assert [p.name for p in key_dir.iterdir()] == [key_file.name]
    assert _dnskeys(_verify(db, tmp_path)) == {(key["tag"], 257, 13)}
    ds = run_cli(db, "keys", "ds", ZONE).stdout
    assert f" DS {key['tag']} 13 2 " in ds


def test_generated_ksk_and_zsk_with_an_algorithm(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "zonefan.toml"
    config.write_text('[policy.split]\nkey-style = "ksk-zsk"\nalgorithm = "ED25519"\n')
    conf = ("--config", str(config))
    run_cli(db, *conf, "keys", "generate", ZONE, "--ksk", "--algorithm", "15")
    # The zone's policy is still the default (a CSK of algorithm 13): the note says so.
    zsk = run_cli(db, *conf, "keys", "generate", ZONE, "--zsk", "--algorithm", "15").stdout
    assert "note:" in zsk and "does not fit" in zsk
    generated = {k["role"]: k for k in _keys(db, *conf)}
    assert set(generated) == {"KSK", "ZSK"}
    refused = run_cli(db, *conf, "zone", "sign", ZONE, check=False)
    assert refused.returncode != 0 and "does not fit" in refused.stderr
    assert "--policy" in refused.stderr
    run_cli(db, *conf, "zone", "sign", ZONE, "--policy", "split")
    for role, key in generated.items():
        assert _listed(db, key["tag"], *conf)[:4] == [str(key["tag"]), "15", role, "active"]
    assert len(_keys(db, *conf)) == 2
    assert _dnskeys(_verify(db, tmp_path)) == {
        (generated["KSK"]["tag"], 257, 15),
        (generated["ZSK"]["tag"], 256, 15),
    }


def test_generate_refusals_change_nothing(db: Path, tmp_path: Path) -> None:
    key_dir = db.parent / "z.db.keys"
    unknown = run_cli(db, "keys", "generate", ZONE, "--csk", "--algorithm", "99", check=False)
    assert unknown.returncode != 0 and "99 is not supported" in unknown.stderr
    assert "13 (ECDSAP256SHA256)" in unknown.stderr
    assert _keys(db) == [] and (not key_dir.exists() or not any(key_dir.iterdir()))
    no_role = run_cli(db, "keys", "generate", ZONE, check=False)
    assert no_role.returncode != 0 and "--ksk, --zsk, --csk" in no_role.stderr

    # A KSK alone does not start a ksk-zsk zone: sign refuses and says what to generate.
    config = tmp_path / "zonefan.toml"
    config.write_text('[policy.split]\nkey-style = "ksk-zsk"\n')
    conf = ("--config", str(config))
    run_cli(db, *conf, "keys", "generate", ZONE, "--ksk")
    before = (_serial(db), _keys(db))
    partial = run_cli(db, *conf, "zone", "sign", ZONE, "--policy", "split", check=False)
    assert partial.returncode != 0
    assert f"zonefan keys generate {ZONE} --zsk" in partial.stderr
    assert (_serial(db), _keys(db)) == before
    assert "RRSIG" not in run_cli(db, "zone", "export", ZONE).stdout
    # A second KSK, or a CSK beside it, is refused too.
    for role in ("--ksk", "--csk"):
        again = run_cli(db, *conf, "keys", "generate", ZONE, role, check=False)
        assert again.returncode != 0 and "already has a pre-generated KSK" in again.stderr
    assert _keys(db) == before[1]

    # Discarding the unused KSK lets the policy make its own keys.
    (ksk,) = before[1]
    run_cli(db, "keys", "retire", ZONE, str(ksk["tag"]))
    assert [k["state"] for k in _keys(db)] == ["removed"]
    assert "generate CSK" in run_cli(db, "zone", "sign", ZONE).stdout
    _verify(db, tmp_path)

    # A signed zone gets no standby key: the planner would publish and use it at once.
    signed = (_serial(db), _keys(db))
    standby = run_cli(db, "keys", "generate", ZONE, "--csk", check=False)
    assert standby.returncode != 0 and f"zonefan keys rollover {ZONE} --csk" in standby.stderr
    assert (_serial(db), _keys(db)) == signed
