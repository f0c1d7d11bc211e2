"""Mistakes an operator makes on the command line, run as the operator runs them: each gets
one clear message saying what is wrong and what to do, and changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.test_cli import EXAMPLE, run

NOBODY = 65534

READ_COMMANDS = [
    ["zone", "list"],
    ["zone", "show", "example.test"],
    ["zone", "export", "example.test"],
    ["zone", "history", "example.test"],
    ["zone", "diff", "example.test"],
    ["zone", "status", "example.test"],
]
WRITE_COMMANDS = [
    ["record", "add", "example.test", "x", "300", "A", "192.0.2.1"],
    ["record", "set", "example.test", "x", "300", "A", "192.0.2.1"],
    ["record", "delete", "example.test", "x", "A"],
    ["zone", "rollback", "example.test", "1"],
    ["zone", "delete", "example.test", "--yes"],
]
KEYS_COMMANDS = [
    ["keys", "list", "example.test"],
    ["keys", "status", "example.test"],
    ["keys", "ds", "example.test"],
    ["keys", "timeline", "example.test"],
    ["keys", "generate", "example.test", "--csk"],
    ["keys", "rollover", "example.test", "--csk"],
    ["zone", "sign", "example.test"],
    ["zone", "maintain", "example.test"],
]


def digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its bytes: what "changes nothing" means."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("args", READ_COMMANDS + WRITE_COMMANDS + KEYS_COMMANDS, ids=" ".join)
def test_a_mistyped_db_names_the_path_and_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    typo = tmp_path / "zonefna.db"
    result = run(typo, *args, ok=False)
    assert result.output == (
        f"Error: no store at {typo}; import a zone first (zonefan zone import FILE) "
        "or give --db / ZONEFAN_DB\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_db_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    result = run(missing / "zonefan.db", "zone", "import", str(EXAMPLE), ok=False)
    assert result.output == (
        f"Error: cannot open store {missing}/zonefan.db: unable to open database file; "
        f"directory {missing} does not exist: create it, or give another path\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_import_into_a_new_store_creates_nothing(tmp_path: Path) -> None:
    out = run(tmp_path / "new.db", "zone", "import", "--dry-run", str(EXAMPLE)).output
    assert out.startswith("plan (nothing stored): zone example.test. serial None -> 2024060101\n")
    assert list(tmp_path.iterdir()) == []


def test_read_commands_leave_no_file_behind(tmp_path: Path) -> None:
    db = tmp_path / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    before = digest(tmp_path)
    for args in READ_COMMANDS:
        run(db, *args)
    assert digest(tmp_path) == before


def unprivileged_user() -> str:
    """How the store's messages name the user of :func:`unprivileged`."""
    uid = os.geteuid() or NOBODY
    return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as a user that file modes bind: root ignores them, so under root the
    effective ids become nobody's for the block (what the kernel checks on open)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def store_dir() -> Iterator[Path]:
    """A directory holding a store of example.test, reachable by nobody (pytest's tmp_path
    is private to root)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        directory = Path(tmp, "store")
        directory.mkdir()
        run(directory / "zonefan.db", "zone", "import", str(EXAMPLE))
        try:
            yield directory
        finally:
            os.chmod(directory, 0o755)


def test_a_store_in_a_read_only_directory_says_the_directory_must_be_writable(
    store_dir: Path,
) -> None:
    db = store_dir / "zonefan.db"
    os.chmod(db, 0o666)
    os.chmod(store_dir, 0o555)
    before = digest(store_dir)
    for args in (["zone", "list"], ["record", "add", "example.test", "x", "300", "A", "192.0.2.1"]):
        with unprivileged():
            result = run(db, *args, ok=False)
        assert f"Error: cannot open store {db}: " in result.output
        assert result.output.endswith(
            f"; SQLite must create {db}-wal and {db}-shm beside the store, and directory "
            f"{store_dir} is not writable by {unprivileged_user()}: make it writable, "
            "or keep the store in a directory that is\n"
        ), result.output
    assert digest(store_dir) == before


def test_a_read_only_store_file_says_so_and_changes_nothing(store_dir: Path) -> None:
    db = store_dir / "zonefan.db"
    os.chmod(db, 0o444)
    os.chmod(store_dir, 0o777)
    with unprivileged():
        result = run(db, "record", "add", "example.test", "x", "300", "A", "192.0.2.1", ok=False)
        assert result.output == (
            f"Error: store {db}: attempt to write a readonly database; {db} is not writable "
            f"by {unprivileged_user()}: fix its owner or mode; nothing was changed\n"
        )
        # Reading needs no write access to the file.
        assert "example.test." in run(db, "zone", "list").output
    assert "x.example.test." not in run(db, "zone", "export", "example.test").output


def test_zone_diff_takes_its_serials_in_either_order(tmp_path: Path) -> None:
    db = tmp_path / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    run(db, "record", "add", "example.test", "a", "300", "A", "192.0.2.1")
    run(db, "record", "add", "example.test", "b", "300", "A", "192.0.2.2")
    soa = "example.test. 3600 IN SOA ns1.example.test. hostmaster.example.test. {} " + (
        "7200 3600 1209600 300"  # zones/example.test.zone
    )
    forward = run(db, "zone", "diff", "example.test", "2024060101", "2024060103").output
    assert forward.splitlines() == [
        f"- {soa.format(2024060101)}",
        f"+ {soa.format(2024060103)}",
        "+ a.example.test. 300 IN A 192.0.2.1",
        "+ b.example.test. 300 IN A 192.0.2.2",
    ]
    backward = run(db, "zone", "diff", "example.test", "2024060103", "2024060101").output
    assert backward.splitlines() == [
        f"- {soa.format(2024060103)}",
        "- a.example.test. 300 IN A 192.0.2.1",
        "- b.example.test. 300 IN A 192.0.2.2",
        f"+ {soa.format(2024060101)}",
    ]
    assert "the newer serial first" in run(db, "zone", "diff", "--help").output


def test_a_serial_the_journal_lacks_is_named_without_transfer_advice(tmp_path: Path) -> None:
    db = tmp_path / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    run(db, "record", "add", "example.test", "a", "300", "A", "192.0.2.1")
    unreached = (
        "Error: journal does not reach serial 2024060199 of zone example.test.: it was "
        "compacted or the zone never had that serial (`zonefan zone history example.test.` "
        "lists the serials kept)\n"
    )
    for args in (
        ["diff", "example.test", "2024060199"],
        ["diff", "example.test", "2024060199", "2024060101"],
        ["diff", "example.test", "2024060101", "2024060199"],
        ["rollback", "example.test", "2024060199"],
    ):
        assert run(db, "zone", *args, ok=False).output == unreached, args
    before = digest(tmp_path)
    run(db, "zone", "rollback", "example.test", "2024060199", ok=False)
    assert digest(tmp_path) == before


def signer_records(zone_text: str) -> int:
    """How many lines of an exported zone are the signer's records."""
    types = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"}
    return sum(
        1 for line in zone_text.splitlines() if line.split()[3:4] and line.split()[3] in types
    )


def test_our_own_signed_export_is_refused_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    db = store / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    run(db, "zone", "sign", "example.test")
    exported = tmp_path / "signed.zone"
    run(db, "zone", "export", "example.test", "-o", str(exported))
    count = signer_records(exported.read_text())
    before = digest(store)
    for target in (db, tmp_path / "new.db"):
        result = run(target, "zone", "import", str(exported), ok=False)
        assert result.output == (
            f"Error: {exported} holds {count} DNSSEC records (RRSIG, NSEC, DNSKEY) of a signed "
            "zone; zonefan signs zones itself: import with --strip-dnssec (and `zonefan zone "
            "sign example.test.` if it should stay signed)\n"
        )
    assert digest(store) == before and not (tmp_path / "new.db").exists()
    # As advised: the data is what the store holds, so nothing changes.
    stripped = run(db, "zone", "import", "--strip-dnssec", str(exported))
    assert stripped.stdout == "zone example.test.: no change (serial 2024060102)\n"
    assert digest(store) == before


def test_a_change_has_the_same_size_in_its_report_and_in_the_history(tmp_path: Path) -> None:
    db = tmp_path / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    add = ["record", "add", "example.test", "x", "300", "A", "192.0.2.1"]
    assert run(db, *add).output == (
        "zone example.test.: serial 2024060101 -> 2024060102 (-0 +1 records, change #2)\n"
    )
    run(db, "zone", "sign", "example.test")
    made = signer_records(run(db, "zone", "export", "example.test").output)
    signed = run(db, "record", "set", "example.test", "x", "300", "A", "192.0.2.2").output
    # One A replaced; the signer redoes the A's signature and the SOA's.
    assert signed == (
        "zone example.test.: serial 2024060103 -> 2024060104 "
        "(-1 +1 records, DNSSEC -2 +2, change #4)\n"
    )
    # An SOA edit counts as a change of one record (its serial alone would not).
    soa = tmp_path / "soa.zone"
    text = run(db, "zone", "export", "example.test").output
    soa.write_text(text.replace(" 7200 3600 1209600 300", " 3600 3600 1209600 300"))
    assert run(db, "zone", "import", "--strip-dnssec", str(soa)).stdout == (
        "zone example.test.: serial 2024060104 -> 2024060105 "
        "(-1 +1 records, DNSSEC -1 +1, change #5)\n"
    )
    history = run(db, "zone", "history", "example.test").output.splitlines()
    sizes = [[part for part in line.split("  ") if part][3] for line in history]
    assert sizes == [
        "-0 +48 records",
        "-0 +1 records",
        f"-0 +0 records, DNSSEC -0 +{made}",
        "-1 +1 records, DNSSEC -2 +2",
        "-1 +1 records, DNSSEC -1 +1",
    ]
    rows = json.loads(run(db, "zone", "history", "example.test", "--json").output)
    assert [(r["removed"], r["added"], r["dnssec_removed"], r["dnssec_added"]) for r in rows] == [
        (0, 48, 0, 0),
        (0, 1, 0, 0),
        (0, 0, 0, made),
        (1, 1, 2, 2),
        (1, 1, 1, 1),
    ]


def test_a_ttl_out_of_range_says_the_range(tmp_path: Path) -> None:
    db = tmp_path / "zonefan.db"
    run(db, "zone", "import", str(EXAMPLE))
    before = digest(tmp_path)
    for ttl in ("99999999999", "4294967296", "2147483648", "9999999w"):
        result = run(db, "record", "add", "example.test", "t", ttl, "A", "192.0.2.1", ok=False)
        assert result.output.endswith(
            f"Error: Invalid value: TTL {ttl} is outside 0..2147483647 (RFC 2181 §8)\n"
        ), result.output
    result = run(db, "record", "add", "example.test", "t", "1x", "A", "192.0.2.1", ok=False)
    assert "TTL '1x' is not a number of seconds (or BIND units like 1h30m)" in result.output
    assert digest(tmp_path) == before
    # A zone file says the same, with its file and line.
    head = "$ORIGIN example.test.\n$TTL {}\n@ SOA ns1 hostmaster 1 7200 3600 432000 300\n"
    zone = tmp_path / "big-ttl.zone"
    zone.write_text(head.format(300) + "@ NS ns1\nns1 99999999999 A 192.0.2.1\n")
    assert run(tmp_path / "new.db", "zone", "import", str(zone), ok=False).output == (
        f"Error: {zone}:5: TTL 99999999999 is outside 0..2147483647 (RFC 2181 §8)\n"
    )
    zone.write_text(head.format(99999999999) + "@ NS ns1\n")
    assert run(tmp_path / "new.db", "zone", "import", str(zone), ok=False).output == (
        f"Error: {zone}:2: $TTL: TTL 99999999999 is outside 0..2147483647 (RFC 2181 §8)\n"
    )
    assert digest(tmp_path) == before | {"big-ttl.zone": digest(tmp_path)["big-ttl.zone"]}


@pytest.mark.parametrize(
    ("first_line", "message"),
    [
        (
            "Set NS to the following values on every server you run in production",
            "unexpected 'the' after the end of the NS rdata",
        ),
        (
            "www A 192.0.2.1 and the rest of a sentence",
            "unexpected 'and' after the end of the A rdata",
        ),
        ("root:x:0:0:root:/root:/bin/bash", "owner name 'root:x:0:0:root:/root:/bin/bash': "),
        ("x" * 30 + "=" + "y" * 100, "owner name '" + "x" * 30 + "=" + "y" * 6 + "...': "),
        ("This file is not a zone file at all", "unknown RR type 'file'"),
    ],
)
def test_an_included_file_that_is_no_zone_file_is_quoted_by_one_token(
    tmp_path: Path, first_line: str, message: str
) -> None:
    (tmp_path / "notes.txt").write_text(f"{first_line}\nsecond line\n")
    zone = tmp_path / "main.zone"
    zone.write_text(
        "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 1 7200 3600 432000 300\n"
        "@ NS ns1\n$INCLUDE notes.txt\n"
    )
    output = run(tmp_path / "new.db", "zone", "import", str(zone), ok=False).output
    assert output.startswith(f"Error: {tmp_path}/notes.txt:1: {message}"), output
    assert "production" not in output and "sentence" not in output and "y" * 7 not in output
    assert not (tmp_path / "new.db").exists()
