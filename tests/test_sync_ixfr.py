"""The sidecar's IXFR client (sync.ixfr, sync.zoneedit) against scripted answers: each
result compared with dnspython's own IXFR state machine (``dns.xfr.Inbound``) applying the
same messages to the same zone, and every way an answer can fail to apply. Transfers from
real primaries (zonefan, Knot) are in test_sync_source.py."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.ixfr import IncrementalError, ixfr
from sync.model import ZoneData
from sync.settings import Address
from sync.xfr import TransferError
from sync.zoneedit import EditError, ZoneEdit

ZONE = dns.name.from_text("example.test.")
Record = tuple[str, int, str, str]  # owner (relative), TTL, type, rdata text
TIMEOUT = 2.0


def soa(serial: int) -> Record:
    return ("@", 3600, "SOA", f"ns1 hostmaster {serial} 7200 3600 1209600 300")


BASE: list[Record] = [
    soa(10),
    ("@", 3600, "NS", "ns1"),
    ("ns1", 3600, "A", "192.0.2.53"),
    ("www", 300, "A", "192.0.2.1"),
    ("www", 300, "A", "192.0.2.2"),
    ("mail", 300, "MX", "10 mx.example.net."),
    ("txt", 600, "TXT", '"hello"'),
]


def rrset(record: Record) -> dns.rrset.RRset:
    owner, ttl, rdtype, text = record
    name = dns.name.from_text(owner, ZONE)
    return dns.rrset.from_text_list(name, ttl, "IN", rdtype, [text], origin=ZONE, relativize=False)


def zone_text(records: Sequence[Record]) -> str:
    return "".join(f"{o} {t} IN {k} {x}\n" for o, t, k, x in records)


def base_zone(records: Sequence[Record] = BASE) -> ZoneData:
    return ZoneData.from_text(zone_text(records), ZONE)


@dataclass
class Script:
    """What the scripted primary sends: the answer's records, split into messages of
    ``per_message`` records, each its own RRset (so the order is kept)."""

    records: list[Record]
    per_message: int = 3
    extra_message: bytes | None = None  # sent as is after the scripted ones

    def messages(self, query: dns.message.Message) -> list[bytes]:
        out = []
        for start in range(0, max(len(self.records), 1), self.per_message):
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            response.answer = [rrset(r) for r in self.records[start : start + self.per_message]]
            out.append(response.to_wire())  # compressed, as servers send it
        if self.extra_message is not None:
            out.append(self.extra_message)
        return out


@dataclass
class ScriptedPrimary:
    """A TCP listener on 127.0.0.1 answering each transfer query with :attr:`script`."""

    script: Script = field(default_factory=lambda: Script([]))
    sock: socket.socket = field(default_factory=socket.socket)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.sock.getsockname()[1])

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    (length,) = struct.unpack("!H", _read(conn, 2))
                    query = dns.message.from_wire(_read(conn, length))
                    for wire in self.script.messages(query):
                        conn.sendall(struct.pack("!H", len(wire)) + wire)
                    conn.shutdown(socket.SHUT_WR)
                    conn.recv(1)  # until the client closes
                except Exception:  # a broken script closes the connection
                    continue


def _read(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedPrimary]:
    server = ScriptedPrimary()
    yield server
    server.sock.close()


def reference(have: ZoneData, server: ScriptedPrimary) -> ZoneData:
    """dnspython's IXFR client applying the same answer to the same zone."""
    zone = dns.zone.from_text(have.to_text(), ZONE, relativize=False, check_origin=False)
    query, _ = dns.xfr.make_query(zone, serial=have.serial)
    dns.query.inbound_xfr("127.0.0.1", zone, query=query, port=server.address.port, timeout=5)
    return ZoneData.from_dns_zone(zone)


def assert_same(got: ZoneData, want: ZoneData) -> None:
    assert set(got.rrsets) == set(want.rrsets)
    for key, rrset_ in want.rrsets.items():
        assert got.rrsets[key].ttl == rrset_.ttl, key
        assert got.rrsets[key].wire_set() == rrset_.wire_set(), key


def differences(*steps: tuple[int, int, list[Record], list[Record]]) -> list[Record]:
    """An incremental answer: per step (old serial, new serial, deletions, additions)."""
    out = [soa(steps[-1][1])]
    for old, new, deleted, added in steps:
        out += [soa(old), *deleted, soa(new), *added]
    return [*out, soa(steps[-1][1])]


# -- applying differences ------------------------------------------------------------------------


def test_two_difference_sequences_apply_like_dnspython(scripted: ScriptedPrimary) -> None:
    have = base_zone()
    scripted.script = Script(
        differences(
            (10, 11, [("www", 300, "A", "192.0.2.2")], [("new", 60, "AAAA", "2001:db8::1")]),
            (
                11,
                12,
                [("txt", 600, "TXT", '"hello"'), ("mail", 300, "MX", "10 mx.example.net.")],
                [("txt", 900, "TXT", '"again"'), ("www", 120, "A", "192.0.2.3")],
            ),
        )
    )
    got = ixfr(scripted.address, ZONE, have, timeout=TIMEOUT)
    assert got.method == "ixfr" and got.serial == got.data.serial == 12
    assert_same(got.data, reference(have, scripted))
    www = got.data.get(dns.name.from_text("www", ZONE), dns.rdatatype.A)
    assert www is not None and www.texts() == ["192.0.2.1", "192.0.2.3"] and www.ttl == 120
    assert got.data.get(dns.name.from_text("mail", ZONE), dns.rdatatype.MX) is None
    assert have.serial == 10 and len(have) == 6  # the base is untouched


def test_an_answer_of_the_soa_alone_is_unchanged(scripted: ScriptedPrimary) -> None:
    have = base_zone()
    scripted.script = Script([soa(10)])
    got = ixfr(scripted.address, ZONE, have, timeout=TIMEOUT)
    assert got.method == "unchanged" and got.data is have and got.serial == 10


def test_a_whole_zone_answer_replaces_the_copy(scripted: ScriptedPrimary) -> None:
    have = base_zone()
    whole = [soa(20), ("@", 3600, "NS", "ns1"), ("ns1", 3600, "A", "192.0.2.54"), soa(20)]
    scripted.script = Script(whole, per_message=2)
    got = ixfr(scripted.address, ZONE, have, timeout=TIMEOUT)
    assert got.method == "axfr" and got.serial == 20
    assert_same(got.data, base_zone(whole[:-1]))


def test_rrsigs_of_an_owner_stay_one_rrset(scripted: ScriptedPrimary) -> None:
    sig = "{} 13 2 300 20261201000000 20261101000000 12345 example.test. {}"
    records = [
        *BASE,
        ("www", 300, "RRSIG", sig.format("A", "AAAA")),
        ("www", 300, "RRSIG", sig.format("TXT", "BBBB")),
    ]
    have = base_zone(records)
    scripted.script = Script(
        differences(
            (
                10,
                11,
                [("www", 300, "RRSIG", sig.format("A", "AAAA"))],
                [("www", 300, "RRSIG", sig.format("A", "CCCC"))],
            )
        )
    )
    got = ixfr(scripted.address, ZONE, have, timeout=TIMEOUT)
    sigs = got.data.get(dns.name.from_text("www", ZONE), dns.rdatatype.RRSIG)
    assert sigs is not None and sorted(t.split()[-1] for t in sigs.texts()) == ["BBBB", "CCCC"]
    assert_same(got.data, reference(have, scripted))


# -- answers that do not apply: the caller transfers the whole zone ----------------------------


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            differences((10, 11, [("www", 300, "A", "192.0.2.9")], [])),
            r"deletes www\.example\.test\. A 192\.0\.2\.9, which is not there",
        ),
        (differences((9, 11, [], [])), "starts at serial 9, not 10"),
        ([soa(5)], "at serial 5, older than our 10"),
        (
            [*differences((10, 11, [], []))[:-1], soa(12), soa(11)],
            "changes after the final serial 11",
        ),
    ],
)
def test_an_answer_that_does_not_apply_asks_for_axfr(
    scripted: ScriptedPrimary, answer: list[Record], message: str
) -> None:
    scripted.script = Script(answer)
    with pytest.raises(IncrementalError, match=message):
        ixfr(scripted.address, ZONE, base_zone(), timeout=TIMEOUT)


def test_records_after_the_closing_soa_are_a_transfer_error(scripted: ScriptedPrimary) -> None:
    answer = [*differences((10, 11, [], [("x", 60, "A", "192.0.2.7")])), ("y", 60, "A", "1.2.3.4")]
    scripted.script = Script(answer, per_message=len(answer))
    with pytest.raises(TransferError, match="records after the closing SOA") as caught:
        ixfr(scripted.address, ZONE, base_zone(), timeout=TIMEOUT)
    assert not isinstance(caught.value, IncrementalError)


def test_an_answer_not_opening_with_the_soa_is_a_transfer_error(
    scripted: ScriptedPrimary,
) -> None:
    scripted.script = Script([("www", 300, "A", "192.0.2.1"), soa(11)])
    with pytest.raises(TransferError, match="does not start with the zone's SOA"):
        ixfr(scripted.address, ZONE, base_zone(), timeout=TIMEOUT)


def test_a_server_that_stops_mid_answer_is_a_transfer_error(scripted: ScriptedPrimary) -> None:
    scripted.script = Script(differences((10, 11, [], [("x", 60, "A", "192.0.2.7")]))[:-1])
    with pytest.raises(TransferError, match="closed the connection before the final SOA"):
        ixfr(scripted.address, ZONE, base_zone(), timeout=TIMEOUT)


# -- the edit itself ---------------------------------------------------------------------------


def address(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def test_zone_edit_ttl_and_deletion_rules() -> None:
    have = base_zone()
    www = dns.name.from_text("www", ZONE)
    a1 = dns.rdata.from_text("IN", "A", "192.0.2.1")
    edit = ZoneEdit(have)
    edit.add(www, dns.rdatatype.A, 900, address("192.0.2.3"))  # a larger TTL: the set keeps 300
    assert edit.result().rrsets[(www, dns.rdatatype.A)].ttl == 300
    edit.add(www, dns.rdatatype.A, 60, a1)  # already there (as an object): TTL 60, no copy
    assert len(edit.result().rrsets[(www, dns.rdatatype.A)].wires()) == 3
    for text in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        edit.delete(www, dns.rdatatype.A, address(text))
    assert (www, dns.rdatatype.A) not in edit.result().rrsets  # emptied: gone
    edit.add(www, dns.rdatatype.A, 900, address("192.0.2.1"))  # a new set takes the new TTL
    assert edit.result().rrsets[(www, dns.rdatatype.A)].ttl == 900
    with pytest.raises(EditError, match="not there"):
        edit.delete(www, dns.rdatatype.AAAA, socket.inet_pton(socket.AF_INET6, "::1"))


# -- against dnspython, at random -----------------------------------------------------------------

owners = st.sampled_from(["@", "www", "a", "b.a", "mail", "Mixed"])
address_records = st.builds(
    lambda owner, ttl, last: (owner, ttl, "A", f"192.0.2.{last}"),
    owners,
    st.sampled_from([60, 300]),
    st.integers(1, 6),
)
text_records = st.builds(
    lambda owner, ttl, word: (owner, ttl, "TXT", f'"{word}"'),
    owners,
    st.sampled_from([60, 300]),
    st.sampled_from(["x", "y", "z"]),
)
mx_records = st.builds(
    lambda owner, pref, host: (owner, 300, "MX", f"{pref} {host}"),
    owners,
    st.integers(0, 2),
    st.sampled_from(["MX1", "mx2.example.net."]),
)
records = st.lists(st.one_of(address_records, text_records, mx_records), max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    base=records,
    steps=st.lists(
        st.tuples(st.lists(st.booleans(), max_size=12), records), min_size=1, max_size=4
    ),
    per_message=st.integers(1, 5),
)
def test_random_differences_apply_like_dnspython(
    scripted: ScriptedPrimary,
    base: list[Record],
    steps: list[tuple[list[bool], list[Record]]],
    per_message: int,
) -> None:
    start = [*BASE, *base]
    have = base_zone(start)
    # What the zone holds at each step, one entry per distinct record (as the primary would
    # delete it: exactly one of each).
    current = {(o.lower(), k, x.lower()): (o, t, k, x) for o, t, k, x in start if k != "SOA"}
    sequences = []
    for serial, (drop, added) in enumerate(steps, start=10):
        held = list(current.values())
        deleted = [r for r, gone in zip(held, drop, strict=False) if gone]
        for o, _, k, x in deleted:
            del current[(o.lower(), k, x.lower())]
        for o, t, k, x in added:
            current[(o.lower(), k, x.lower())] = (o, t, k, x)
        sequences.append((serial, serial + 1, deleted, added))
    scripted.script = Script(differences(*sequences), per_message=per_message)
    got = ixfr(scripted.address, ZONE, have, timeout=TIMEOUT)
    assert got.method == "ixfr" and got.serial == 10 + len(steps)
    assert_same(got.data, reference(have, scripted))
