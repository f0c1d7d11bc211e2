"""Tests of the SQLite store: round trips, conflicts, the journal, concurrency and crashes."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import dns.ipv6
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from nameserver.errors import (
    ConflictError,
    JournalError,
    StoreError,
    StoreMissingError,
    UnknownZoneError,
    ZoneExistsError,
)
from nameserver.store import codec, commit, schema
from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import AnyRecord, Record, WireRecord, parse_record
from nameserver.zone.serial import SerialPolicy

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ZONE = dns.name.from_text("Example.COM.")
IN = dns.rdataclass.IN


def rec(text: str, origin: dns.name.Name = ZONE) -> Record:
    """A record from ``owner ttl TYPE rdata`` text, names relative to ``origin``."""
    owner, ttl, rtype, rdata = text.split(None, 3)
    return parse_record(owner, ttl, rtype, rdata, origin)


def soa(serial: int, origin: dns.name.Name = ZONE) -> Record:
    """The zone's SOA at ``serial``."""
    return rec(
        f"@ 3600 SOA NS1.Example.COM. HostMaster.Example.COM. {serial} 7200 3600 1209600 300",
        origin,
    )


def texts(records: Iterable[AnyRecord]) -> list[str]:
    """Sorted presentation forms: compares records including the case of names."""
    return sorted(r.to_text() for r in records)


INITIAL = (
    rec("@ 3600 NS NS1.Example.COM."),
    rec("@ 3600 NS ns2.OTHER-Provider.net."),
    rec("NS1 3600 A 192.0.2.53"),
    rec("WWW 300 A 192.0.2.1"),
    rec("www 300 AAAA 2001:DB8::1"),
    rec("@ 300 MX 10 Mail.Example.COM."),
    rec('@ 300 TXT "v=spf1 -all" "Mixed Case"'),
    rec("Sub 3600 NS ns.Sub.Example.COM."),
    rec("Sub 3600 DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"),
    rec("alias 300 CNAME WWW.Example.COM."),
)


def create(store: Store, zone: dns.name.Name = ZONE, serial: int = 1) -> Changeset:
    added = (soa(serial, zone), *(INITIAL if zone == ZONE else ()))
    cs = Changeset(zone, None, serial, (), added, "alice", "import", 1000.0)
    return store.create_zone(cs, SerialPolicy.INCREMENT)


def change(
    store: Store,
    removed: Iterable[Record] = (),
    added: Iterable[Record] = (),
    message: str = "",
    zone: dns.name.Name = ZONE,
) -> Changeset:
    """Commit a change against the zone's current serial, moving the SOA by one."""
    before = store.zone_info(zone).serial
    cs = Changeset(
        zone,
        before,
        before + 1,
        (soa(before, zone), *removed),
        (soa(before + 1, zone), *added),
        "bob",
        message,
        2000.0 + before,
    )
    return store.commit(cs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "zones.db")
    yield s
    s.close()


# --- round trip and identity ---------------------------------------------------------------


def test_create_and_load_round_trip_preserves_case(store: Store) -> None:
    created = create(store)
    assert created.id is not None
    loaded = store.records(ZONE)
    assert [r.to_text() for r in loaded] == [r.to_text() for r in created.added]
    assert loaded == list(created.added)

    info = store.zone_info(dns.name.from_text("example.com."))  # lookup ignores case
    assert info.name.to_text() == "Example.COM."
    assert (info.serial, info.serial_policy, info.record_count) == (
        1,
        SerialPolicy.INCREMENT,
        len(INITIAL) + 1,
    )
    assert info.created == info.updated == 1000.0
    assert store.has_zone(dns.name.from_text("EXAMPLE.com."))
    assert not store.has_zone(dns.name.from_text("example.org."))


def test_zone_listing_is_canonical_and_serials_in_one_call(store: Store) -> None:
    for name, serial in (("b.example.", 7), ("Z.a.example.", 9), ("a.example.", 3)):
        create(store, dns.name.from_text(name), serial)
    names = store.zone_names()
    assert [n.to_text() for n in names] == ["a.example.", "Z.a.example.", "b.example."]
    assert store.zone_serials() == {
        dns.name.from_text("a.example."): 3,
        dns.name.from_text("z.a.example."): 9,
        dns.name.from_text("b.example."): 7,
    }


def test_identity_is_case_insensitive_and_ignores_ttl(store: Store) -> None:
    create(store)
    # The same RRs spelled in another case and with another TTL.
    change(
        store,
        removed=[rec("www 1 A 192.0.2.1"), rec("@ 9 MX 10 MAIL.example.com.")],
        added=[rec("WWW 600 A 192.0.2.1")],
    )
    current = texts(store.records(ZONE))
    assert "WWW.Example.COM. 600 IN A 192.0.2.1" in current
    assert not any(" MX " in t for t in current)
    with pytest.raises(ConflictError, match="already in the zone"):
        change(store, added=[rec("sub 60 NS NS.SUB.EXAMPLE.COM.")])


def test_stale_serial_is_a_conflict_and_changes_nothing(store: Store) -> None:
    create(store)
    change(store, added=[rec("new 300 A 192.0.2.9")])
    stale = Changeset(ZONE, 1, 2, (soa(1),), (soa(2), rec("x 300 A 192.0.2.10")), "eve", "", 0)
    before = texts(store.records(ZONE))
    with pytest.raises(ConflictError, match="serial 2 but the change was made against serial 1"):
        store.commit(stale)
    assert texts(store.records(ZONE)) == before
    assert store.zone_info(ZONE).serial == 2
    assert len(store.changesets(ZONE)) == 2


def test_removing_a_missing_rr_is_a_conflict(store: Store) -> None:
    create(store)
    with pytest.raises(
        ConflictError, match=r"cannot remove nope\.Example\.COM\. .*not in the zone"
    ):
        change(store, removed=[rec("nope 300 A 192.0.2.77")], added=[rec("a 1 A 192.0.2.2")])
    assert store.zone_info(ZONE).serial == 1
    assert texts(store.records(ZONE)) == texts((soa(1), *INITIAL))
    assert len(store.changesets(ZONE)) == 1


def test_adding_a_duplicate_is_a_conflict_even_in_a_later_chunk(store: Store) -> None:
    create(store)
    many = [rec(f"h{i} 300 A 10.0.{i // 256}.{i % 256}") for i in range(5000)]
    dup = rec("www 1 a 192.0.2.1")
    with pytest.raises(ConflictError, match=r"cannot add www\.Example\.COM\. 1 IN A 192\.0\.2\.1"):
        change(store, added=[*many, dup])
    with pytest.raises(ConflictError, match="already in the zone"):
        change(store, added=[rec("twice 300 A 192.0.2.3"), rec("TWICE 60 A 192.0.2.3")])
    assert store.zone_info(ZONE).record_count == len(INITIAL) + 1
    assert store.zone_info(ZONE).serial == 1


def test_errors_for_unknown_and_existing_zones(store: Store) -> None:
    other = dns.name.from_text("missing.example.")
    with pytest.raises(UnknownZoneError):
        store.zone_info(other)
    with pytest.raises(UnknownZoneError):
        store.records(other)
    with pytest.raises(UnknownZoneError):
        change(store, zone=other)
    create(store)
    with pytest.raises(ZoneExistsError, match="already exists"):
        create(store, dns.name.from_text("EXAMPLE.com."))


_RRSIG_HEAD = bytes.fromhex("0001 0d 02 00000e10 6a000000 69000000 1234".replace(" ", ""))
_SIGNER = b"\x07Example\x03COM\x00"
_OWNER = b"\x03WWW\x07Example\x03COM\x00"


@pytest.mark.parametrize(
    ("owner", "rdtype", "ttl", "wire"),
    [
        (_OWNER, "RRSIG", 300, _RRSIG_HEAD[:17]),  # cut in the fixed fields
        (_OWNER, "RRSIG", 300, _RRSIG_HEAD + _SIGNER),  # no signature
        (_OWNER, "RRSIG", 300, _RRSIG_HEAD + b"\x07Example\x03COM"),  # signer not ended
        (_OWNER, "RRSIG", 300, _RRSIG_HEAD + b"\x40" + bytes(64) + b"\x00sig"),  # label > 63
        (_OWNER, "NSEC", 300, _SIGNER + b"\x00\x00"),  # empty window
        (_OWNER, "NSEC", 300, _SIGNER + b"\x00\x21" + bytes(33)),  # window over 32 octets
        (_OWNER, "NSEC", 300, _SIGNER + b"\x00\x01\x40\x00\x01\x40"),  # window repeated
        (_OWNER, "NSEC", 300, _SIGNER + b"\x00\x02\x40"),  # window cut short
        (_OWNER, "NSEC3", 300, b"\x01\x00\x00\x00\x00\x00"),  # no next hash
        (_OWNER, "NSEC3", 300, b"\x01\x00\x00\x00\x01"),  # salt cut short
        (_OWNER, "DNSKEY", 300, b"\x01"),
        (_OWNER, "A", 300, b"\xc0\x00\x02\x01"),  # not a signer type
        (b"\x03WWW\x07Example", "NSEC", 300, _SIGNER + b"\x00\x01\x40"),  # owner not ended
        (_OWNER + b"x", "NSEC", 300, _SIGNER + b"\x00\x01\x40"),  # bytes after the owner
        (_OWNER, "NSEC", -1, _SIGNER + b"\x00\x01\x40"),
        (_OWNER, "NSEC", 2**31, _SIGNER + b"\x00\x01\x40"),
    ],
)
def test_a_malformed_signer_row_is_refused_and_changes_nothing(
    store: Store, owner: bytes, rdtype: str, ttl: int, wire: bytes
) -> None:
    """The store writes the signer's WireRecords without decoding them; it checks their
    shape instead, and refuses the whole changeset when one is not well formed."""
    create(store)
    good = WireRecord(_OWNER, int(dns.rdatatype.NSEC), 300, _SIGNER + b"\x00\x01\x40")
    bad = WireRecord(owner, int(dns.rdatatype.from_text(rdtype)), ttl, wire)
    cs = Changeset(ZONE, 1, 2, (soa(1),), (soa(2), good, bad), "bob", "", 2000.0)
    with pytest.raises(StoreError, match="cannot store"):
        store.commit(cs)
    assert store.serial(ZONE) == 1
    assert texts(store.records(ZONE)) == texts([soa(1), *INITIAL])
    assert [c.id for c in store.changesets(ZONE)] == [1]


def test_a_well_formed_signer_row_is_stored(store: Store) -> None:
    """The counterpart of the test above: the good row alone is taken, and reads back
    as the RR whose wire it carried."""
    create(store)
    good = WireRecord(_OWNER, int(dns.rdatatype.NSEC), 300, _SIGNER + b"\x00\x01\x40")
    store.commit(Changeset(ZONE, 1, 2, (soa(1),), (soa(2), good), "bob", "", 2000.0))
    nsec = [r for r in store.records(ZONE) if r.rdtype == dns.rdatatype.NSEC]
    assert [r.to_text() for r in nsec] == ["WWW.Example.COM. 300 IN NSEC Example.COM. A"]


def test_set_serial_policy(store: Store) -> None:
    create(store)
    store.set_serial_policy(ZONE, SerialPolicy.DATE)
    assert store.zone_info(ZONE).serial_policy is SerialPolicy.DATE


def test_delete_zone_removes_records_and_journal(store: Store) -> None:
    create(store)
    change(store, added=[rec("x 300 A 192.0.2.4")])
    other = dns.name.from_text("other.example.")
    create(store, other)
    store.delete_zone(ZONE)
    assert not store.has_zone(ZONE)
    assert store.zone_names() == [other]
    with pytest.raises(UnknownZoneError):
        store.records(ZONE)
    with pytest.raises(UnknownZoneError):
        store.delete_zone(ZONE)
    # Recreated under the same name, the zone starts with a fresh journal.
    create(store)
    assert [cs.serial_before for cs in store.changesets(ZONE)] == [None]
    assert len(store.records(other)) == 1


# --- the journal ---------------------------------------------------------------------------


def build_history(store: Store) -> dict[int, list[str]]:
    """Serial 1..6 with adds, removes and a TTL change; returns serial -> records."""
    snapshots: dict[int, list[str]] = {}
    create(store)
    snapshots[1] = texts(store.records(ZONE))
    steps: list[tuple[list[Record], list[Record]]] = [
        ([], [rec("a 300 A 192.0.2.10"), rec("A 300 AAAA 2001:db8::10")]),
        ([rec("WWW 300 A 192.0.2.1")], [rec("WWW 900 A 192.0.2.1")]),  # TTL change
        ([rec("a 300 A 192.0.2.10"), rec("alias 300 CNAME WWW.Example.COM.")], []),
        ([], [rec("b 300 TXT hello"), rec("a 300 A 192.0.2.10")]),  # re-add
        ([rec("Sub 3600 DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118")], []),
    ]
    for i, (removed, added) in enumerate(steps):
        cs = change(store, removed, added, message=f"step {i}")
        snapshots[cs.serial_after] = texts(store.records(ZONE))
    return snapshots


def test_history_is_ordered_and_complete(store: Store) -> None:
    build_history(store)
    history = store.changesets(ZONE)
    assert [(cs.serial_before, cs.serial_after) for cs in history] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (5, 6),
    ]
    ids = [cs.id or 0 for cs in history]
    assert ids == sorted(ids)
    third = history[2]
    assert (third.author, third.message, third.time) == ("bob", "step 1", 2002.0)
    assert texts(third.removed) == texts([soa(2), rec("WWW 300 A 192.0.2.1")])
    assert [r.to_text() for r in third.added] == [
        soa(3).to_text(),
        "WWW.Example.COM. 900 IN A 192.0.2.1",
    ]
    assert third.zone.to_text() == "Example.COM."
    assert store.changeset(ZONE, third.id or 0) == third
    assert store.changesets(ZONE, after_id=ids[1], limit=2) == history[2:4]
    with pytest.raises(JournalError, match="not in the journal"):
        store.changeset(ZONE, 10_000)


def test_changesets_between_follows_the_chain(store: Store) -> None:
    build_history(store)
    assert [cs.serial_after for cs in store.changesets_between(ZONE, 1)] == [2, 3, 4, 5, 6]
    assert [cs.serial_after for cs in store.changesets_between(ZONE, 2, 4)] == [3, 4]
    assert store.changesets_between(ZONE, 6) == []
    with pytest.raises(JournalError, match="journal does not reach serial 99"):
        store.changesets_between(ZONE, 99)
    with pytest.raises(JournalError, match="does not reach serial 42"):
        store.changesets_between(ZONE, 1, 42)

    assert store.compact_journal(ZONE, keep=3) == 3
    assert [cs.serial_after for cs in store.changesets(ZONE)] == [4, 5, 6]
    assert [cs.serial_after for cs in store.changesets_between(ZONE, 3)] == [4, 5, 6]
    for gone in (1, 2):
        with pytest.raises(JournalError, match=f"journal does not reach serial {gone}"):
            store.changesets_between(ZONE, gone)
    assert store.compact_journal(ZONE, keep=3) == 0


def test_records_at_past_serials(store: Store) -> None:
    snapshots = build_history(store)
    for serial, expected in snapshots.items():
        assert texts(store.records_at(ZONE, serial)) == expected, serial
    store.compact_journal(ZONE, keep=2)
    assert texts(store.records_at(ZONE, 4)) == snapshots[4]
    with pytest.raises(JournalError, match="does not reach serial 3"):
        store.records_at(ZONE, 3)


def test_changeset_ids_are_never_reused(store: Store) -> None:
    create(store)
    last = change(store, added=[rec("x 300 A 192.0.2.4")])
    store.delete_zone(ZONE)
    assert (create(store).id or 0) > (last.id or 0)


# --- the file ------------------------------------------------------------------------------


def test_two_stores_see_each_others_commits(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    with Store(path) as writer, Store(path) as reader:
        create(writer)
        seen = reader.data_version()
        assert reader.data_version() == seen  # stable while nobody writes
        change(writer, added=[rec("x 300 A 192.0.2.4")])
        assert reader.data_version() != seen
        assert reader.zone_info(ZONE).serial == 2
        assert "x.Example.COM. 300 IN A 192.0.2.4" in texts(reader.records(ZONE))


def test_racing_writers_the_second_gets_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    with Store(path) as first, Store(path) as second:
        create(first)
        # Both prepared their change against serial 1; only one may land.
        ours = Changeset(ZONE, 1, 2, (soa(1),), (soa(2), rec("a 300 A 192.0.2.1")), "a", "", 0)
        theirs = Changeset(ZONE, 1, 2, (soa(1),), (soa(2), rec("b 300 A 192.0.2.2")), "b", "", 0)
        first.commit(ours)
        with pytest.raises(ConflictError, match="reload the zone"):
            second.commit(theirs)
        assert "b.Example.COM. 300 IN A 192.0.2.2" not in texts(second.records(ZONE))


def test_opening_without_create_never_makes_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(StoreMissingError, match=f"^no store at {missing}$"):
            Store(missing, **kwargs)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreMissingError, match=r"^no store at .*empty\.db \(the file is empty\)$"):
        Store(empty, read_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert empty.stat().st_size == 0
    with pytest.raises(StoreError, match="is a directory; give the path of the store file"):
        Store(tmp_path, create=False)


def test_a_read_only_store_reads_live_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    with Store(path) as writer:
        create(writer)
        with Store(path, read_only=True) as reader:
            change(writer, added=[rec("x 300 A 192.0.2.4")])
            assert reader.serial(ZONE) == 2
            with pytest.raises(StoreError, match="opened read-only; nothing was changed"):
                change(reader, added=[rec("y 300 A 192.0.2.5")])
            # Below the store's own guard, SQLite refuses too.
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader._conn.execute("DELETE FROM records")
        assert len(writer.records(ZONE)) == len(INITIAL) + 2


def test_store_uses_wal_and_records_its_schema(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    finally:
        conn.close()


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match="not a zonefan store"):
        Store(text)
    assert text.read_text().startswith("this is not a database")

    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        Store(other)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"newer than this zonefan .* upgrade"):
        Store(path)


# --- crash safety --------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import dns.name, dns.rdataclass, dns.rdatatype
    from dns.rdtypes.IN.A import A
    from nameserver.zone.changeset import Changeset
    from nameserver.zone.records import Record
    from nameserver.store.store import Store
    from tests.test_store import ZONE, soa

    TOTAL = int(sys.argv[2])

    class Stalling(tuple):
        # Yields the new SOA and TOTAL A records; halfway it says so and hangs, so the
        # parent can kill it while the store is consuming the records inside its transaction.
        def __iter__(self):
            yield soa(3)
            for i in range(TOTAL):
                if i == TOTAL // 2:
                    print("HALFWAY", flush=True)
                    time.sleep(600)
                addr = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
                yield Record(
                    dns.name.from_text(f"bulk{i}", ZONE),
                    60,
                    A(dns.rdataclass.IN, dns.rdatatype.A, addr),
                )

    store = Store(sys.argv[1])
    store.commit(Changeset(ZONE, 2, 3, (soa(2),), Stalling(), "child", "bulk", 0.0))
    print("COMMITTED", flush=True)
    """
)


def write_lock_is_held(path: Path) -> bool:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        return "locked" in str(e)
    finally:
        conn.close()
    return False


def test_writer_killed_mid_commit_leaves_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "zones.db"
    with Store(path) as s:
        create(s)
        change(s, added=[rec("kept 300 A 192.0.2.200")])
        previous = texts(s.records(ZONE))
        history = len(s.changesets(ZONE))
    wal = Path(f"{path}-wal")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "100000"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "HALFWAY\n", f"child did not reach the middle of its commit: {line!r}"
        # The child is inside its transaction: it holds the write lock, and 50k uncommitted
        # rows have already spilled into the WAL file.
        assert write_lock_is_held(path)
        assert wal.stat().st_size > 1_000_000
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    with Store(path) as s:
        assert s.zone_info(ZONE).serial == 2
        assert texts(s.records(ZONE)) == previous
        assert len(s.changesets(ZONE)) == history
        after = change(s, added=[rec("later 300 A 192.0.2.201")])
        assert after.serial_after == 3
        assert s.zone_info(ZONE).record_count == len(previous) + 1


# --- decoding speed and fidelity -----------------------------------------------------------


def random_records(count: int, seed: int = 1) -> Iterator[Record]:
    """A delegation-heavy zone: A and AAAA hosts, NS and DS delegations.

    Owners are all distinct; rdata values repeat every 1000 records, which keeps building
    the test data cheap without helping the store (it decodes every row on its own).
    """
    rnd = random.Random(seed)
    targets = [dns.name.from_text(f"ns{i}.Provider{i % 7}.NET.") for i in range(20)]
    a = [
        dns.rdata.from_text(IN, dns.rdatatype.A, ".".join(map(str, rnd.randbytes(4))))
        for _ in range(1000)
    ]
    aaaa = [
        dns.rdata.from_text(IN, dns.rdatatype.AAAA, dns.ipv6.inet_ntoa(rnd.randbytes(16)))
        for _ in range(1000)
    ]
    ds = [
        dns.rdata.from_text(IN, dns.rdatatype.DS, f"{i} 13 2 {rnd.randbytes(32).hex()}")
        for i in range(1000)
    ]
    ns = [dns.rdata.from_text(IN, dns.rdatatype.NS, target.to_text()) for target in targets]
    for i in range(count // 4):
        host = dns.name.from_text(f"Host{i}", ZONE)
        yield Record(host, 300, a[i % 1000])
        yield Record(host, 300, aaaa[i % 1000])
        child = dns.name.from_text(f"d{i}", ZONE)
        yield Record(child, 3600, ns[i % 20])
        yield Record(child, 3600, ds[i % 1000])


def test_fast_decoders_agree_with_dnspython() -> None:
    assert set(codec._FAST_DECODERS) == {
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.DS,
    }, "a fast decoder failed its self-check; loading will be slow"
    rnd = random.Random(7)
    samples = [bytes(16), bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + rnd.randbytes(4)]
    for _ in range(3000):
        # Addresses with many zero groups exercise the "::" placement rules.
        groups = [rnd.choice([b"\0\0", b"\0\1", rnd.randbytes(2)]) for _ in range(8)]
        samples.append(b"".join(groups))
    for wire in samples:
        slow = dns.rdata.from_wire(IN, dns.rdatatype.AAAA, wire, 0, 16)
        fast = codec._FAST_DECODERS[dns.rdatatype.AAAA](wire)
        assert (fast.to_text(), fast) == (slow.to_text(), slow)
    decoder = codec._Decoder()
    for record in random_records(400, seed=3):
        wire = record.rdata.to_wire() or b""
        again = decoder.record(record.name.to_text(), record.rdtype, record.ttl, wire)
        assert again.rdata.__getstate__() == record.rdata.__getstate__()  # type: ignore[no-untyped-call]
        assert again.name.labels == record.name.labels
    for text in ("a\\.b.Example.", "\\@.x.", "\\195\\169t\\195\\169.Example.", "."):
        name = dns.name.from_text(text)
        assert decoder.record(name.to_text(), 1, 0, b"\1\2\3\4").name.labels == name.labels


def test_identity_key_types_without_names() -> None:
    """For the types whose identity key is taken to be the wire form, it really is."""
    origin = dns.name.from_text("example.")
    samples = {
        "TXT": '"Some Text"',
        "DNSKEY": "257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+Kkx"
        "LbxILfDLUT0rAK9iUzy1L53eKGQ==",
        "TLSA": "3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6",
        "SSHFP": "4 2 123456789ABCDEF67890123456789ABCDEF67890123456789ABCDEF123456789",
        "CAA": '0 issue "Letsencrypt.ORG"',
    }
    for rtype, text in samples.items():
        rdata = parse_record("x", 1, rtype, text, origin).rdata
        assert int(rdata.rdtype) in codec._NAMELESS_TYPES
        assert rdata.to_wire() == rdata.to_digestable()


def test_a_zone_of_many_chunks_round_trips(store: Store) -> None:
    """Written and read back across several of the store's chunks, every record intact.
    (How fast: bench/query_bench.py times `zonefan zone import` of 100k names and the
    server's load of the store to its first answer, the product path.)"""
    records = (soa(1), *random_records(3 * commit._CHUNK + 1))
    store.create_zone(Changeset(ZONE, None, 1, (), records, "a", "bulk", 0.0), SerialPolicy.DATE)
    loaded = store.records(ZONE)
    assert texts(loaded) == texts(records)
    assert loaded[-1] == records[-1]
