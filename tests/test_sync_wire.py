"""The sidecar's own wire reading (sync.wire, sync.axfr) checked against dnspython's
parser on real transfers from `zonefan serve`, and against hostile input."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.axfr import axfr
from sync.model import FastName, RRset, ZoneData, txt_text
from sync.providers.powerdns import contents, render
from sync.settings import Address, TsigKey
from sync.wire import (
    NameMemo,
    WireError,
    ZoneBuilder,
    read_name,
    read_records,
    zone_from_wire,
)
from sync.xfr import TransferError
from tests.servers import XfrKey, ZonefanServer
from tests.tools import example_store

ORIGIN = dns.name.from_text("example.test.")
KEY = XfrKey("wire-key", base64.b64encode(b"sync-wire-test-secret-0123456789").decode())


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonefanServer]:
    work = tmp_path_factory.mktemp("wire")
    db = example_store(work / "z.db", signed=True)
    config = work / "zonefan.toml"
    config.write_text(
        f'[key.{KEY.name}]\nsecret = "{KEY.secret}"\n\n'
        f'[[secondary]]\naddress = "127.0.0.1"\nkey = "{KEY.name}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)  # it holds a secret: zonefan wants it private
    with ZonefanServer(work, db=db, probe_name="example.test.", config=config) as server:
        yield server


def tsig(key: XfrKey) -> TsigKey:
    return TsigKey(dns.name.from_text(key.name), "hmac-sha256", base64.b64decode(key.secret))


def reference(server: ZonefanServer) -> ZoneData:
    """The same transfer through dnspython's own parser."""
    name = dns.name.from_text(KEY.name)
    keyring = {name: dns.tsig.Key(name, base64.b64decode(KEY.secret), dns.tsig.HMAC_SHA256)}
    messages = dns.query.xfr(
        "127.0.0.1", ORIGIN, port=server.port, keyring=keyring, relativize=False
    )
    return ZoneData.from_dns_zone(dns.zone.from_xfr(messages, relativize=False))


def assert_same(got: ZoneData, want: ZoneData) -> None:
    assert set(got.rrsets) == set(want.rrsets)
    for key, rrset in want.rrsets.items():
        other = got.rrsets[key]
        assert other.ttl == rrset.ttl, key
        assert other.wire_set() == rrset.wire_set(), key
        assert other.texts() == rrset.texts(), key


def test_axfr_of_a_signed_zone_equals_dnspythons_parse(primary: ZonefanServer) -> None:
    got = axfr(Address("127.0.0.1", primary.port), ORIGIN, tsig(KEY))
    want = reference(primary)
    assert got.signed and len(got) > 50
    assert_same(got, want)
    # The state file's copy reads back the same, without dnspython's parser.
    assert_same(zone_from_wire(ORIGIN, got.wire), want)


def test_axfr_with_a_wrong_secret_names_the_tsig_error(primary: ZonefanServer) -> None:
    wrong = XfrKey(KEY.name, base64.b64encode(b"not-the-secret-0123456789abcdefg").decode())
    with pytest.raises(TransferError, match=r"NOTAUTH \(TSIG error BADSIG\)") as caught:
        axfr(Address("127.0.0.1", primary.port), ORIGIN, tsig(wrong))
    assert caught.value.rcode == dns.rcode.NOTAUTH


def test_axfr_without_a_key_is_refused(primary: ZonefanServer) -> None:
    with pytest.raises(TransferError, match="REFUSED"):
        axfr(Address("127.0.0.1", primary.port), ORIGIN, None)


def test_names_with_pointer_loops_or_forward_pointers_are_refused() -> None:
    loop = b"\x00" * 12 + b"\xc0\x0c"
    with pytest.raises(WireError, match="bad compression pointer"):
        read_name(loop, 12, {})
    forward = b"\x00" * 12 + b"\xc0\x10\x00\x00\x01a\x00"
    with pytest.raises(WireError, match="bad compression pointer"):
        read_name(forward, 12, {})
    too_long = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
    with pytest.raises(WireError, match="longer than 255"):
        read_name(too_long, 0, {})
    with pytest.raises(WireError, match="runs past"):
        read_name(b"\x05ab", 0, {})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=5))
def test_garbage_records_raise_wire_error_only(data: bytes, count: int) -> None:
    builder = ZoneBuilder(ORIGIN)
    with contextlib.suppress(WireError):
        read_records(data, 0, count, builder)


labels = st.lists(
    st.binary(min_size=1, max_size=20).filter(lambda b: b"." not in b), min_size=0, max_size=5
)


@given(labels)
def test_fast_names_hash_and_compare_like_dnspython_names(parts: list[bytes]) -> None:
    name = dns.name.Name([*parts, b""])
    fast = FastName.of(name)
    assert hash(fast) == hash(name)
    assert fast == name and name == fast
    upper = FastName.of(dns.name.Name([p.upper() for p in parts] + [b""]))
    assert upper == fast and hash(upper) == hash(fast)
    assert {name: 1}[fast] == 1
    assert fast.to_text() == name.to_text()
    assert FastName.parse(name.to_text()) == name


@settings(max_examples=200, deadline=None)
@given(st.lists(labels, min_size=1, max_size=6))
def test_names_read_from_compressed_messages_are_dnspythons(owners: list[list[bytes]]) -> None:
    """Names read off a message that dnspython compressed (each one its own labels and a
    pointer into an earlier name) hash, compare, print and encode like dnspython's own."""
    names = [dns.name.Name([*parts, b"Example", b"test", b""]) for parts in owners]
    message = dns.message.make_response(dns.message.make_query(names[0], "A"))
    for name in names:
        message.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
    wire = message.to_wire()
    memo: NameMemo = {}
    pos = 12
    _, pos = read_name(wire, pos, memo)
    pos += 4  # the question's type and class
    for name in names:
        got, pos = read_name(wire, pos, memo)
        pos += 10 + 4  # type, class, TTL, length and the address
        assert got == name and hash(got) == hash(name)
        assert got.to_text() == name.to_text()
        assert got.wire == name.to_wire()
    assert pos == len(wire)


def test_state_copy_round_trips_a_zone_of_every_example_type(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "zones" / "example.test.zone").read_text()
    zone = ZoneData.from_text(text, ORIGIN)
    assert_same(zone_from_wire(ORIGIN, zone.wire), zone)


# -- TXT presentation from the wire ------------------------------------------------------


def _txt_wire(strings: list[bytes]) -> bytes:
    return b"".join(bytes((len(x),)) + x for x in strings)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=255), min_size=1, max_size=5))
def test_txt_text_is_dnspythons_text_of_any_strings(strings: list[bytes]) -> None:
    """Every byte value, quotes, backslashes, empty strings: the same text dnspython and
    :func:`render` (what pdns is sent) give, through the model and the pdns target."""
    wire = _txt_wire(strings)
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TXT, wire, 0, len(wire))
    assert txt_text(wire) == rdata.to_text() == render(rdata)
    owner = dns.name.from_text("t.example.test.")
    rrset = RRset.from_wires(owner, dns.rdatatype.TXT, 300, [wire])
    assert rrset.texts() == contents(rrset) == [rdata.to_text()]


@pytest.mark.parametrize("wire", [b"", b"\x05abc", b"\x01a\x03bc"])
def test_txt_text_leaves_malformed_rdata_to_dnspython(wire: bytes) -> None:
    assert txt_text(wire) is None
    with pytest.raises(dns.exception.DNSException):
        dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.TXT, wire, 0, len(wire))
