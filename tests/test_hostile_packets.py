"""Malformed or hostile packets never crash the responder and never earn a reply larger
than themselves unless they are valid queries."""

from __future__ import annotations

import random
import struct

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.tsig
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nameserver.serve.query import parse_query, skip_name
from nameserver.serve.responder import Responder
from nameserver.server import UdpHandler
from nameserver.transfer.tsig import TsigKey, tsig_offset
from nameserver.transfer.xfr import TransferService
from tests.packets import (
    FORMERR,
    KEY,
    NAMES,
    TYPES,
    mutate_additional,
    option,
    query_wire,
    rcode_of,
    udp_exchange,
    well_formed,
)
from tests.zonedata import registry

RESPONDER = Responder(registry())


def header(flags: int = 0, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", 0x1234, flags, qd, an, ns, ar)


QUESTION = b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_nor_amplify(data: bytes) -> None:
    for tcp in (False, True):
        response = RESPONDER.respond(data, tcp=tcp)
        if response is None:
            continue
        try:
            valid = dns.message.from_wire(data).question != []
        except Exception:
            valid = False
        if not valid:
            assert len(response) <= len(data)


@settings(max_examples=1500, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.integers(0, 0xFFFF))
def test_random_questions_after_a_valid_header(tail: bytes, flags: int) -> None:
    data = header(flags & 0x7FFF) + tail
    response = RESPONDER.respond(data, tcp=False)
    if response is not None:
        assert response[:2] == data[:2]
        assert response[2] & 0x80  # QR


def test_short_packets_and_responses_get_no_reply() -> None:
    assert RESPONDER.respond(b"\x00" * 11, tcp=False) is None
    assert RESPONDER.respond(header(flags=0x8000) + QUESTION, tcp=False) is None


def test_two_questions_is_formerr_with_header_only() -> None:
    data = header(qd=2) + QUESTION + QUESTION
    response = RESPONDER.respond(data, tcp=False)
    assert response is not None and len(response) == 12
    assert response[3] & 0xF == dns.rcode.FORMERR


def test_compression_pointer_in_question_is_formerr() -> None:
    data = header() + b"\xc0\x0c\x00\x01\x00\x01"
    assert RESPONDER.respond(data, tcp=False) is not None
    assert RESPONDER.respond(data, tcp=False)[3] & 0xF == dns.rcode.FORMERR  # type: ignore[index]


def test_unknown_opcode_is_notimp() -> None:
    data = header(flags=2 << 11) + QUESTION
    assert rcode_of(RESPONDER.respond(data, tcp=False)) == dns.rcode.NOTIMP


def test_answer_section_in_query_is_formerr() -> None:
    data = header(an=1) + QUESTION + b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04"
    assert rcode_of(RESPONDER.respond(data, tcp=False)) == dns.rcode.FORMERR


def test_two_opt_records_are_formerr() -> None:
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    data = header(ar=2) + QUESTION + opt + opt
    assert rcode_of(RESPONDER.respond(data, tcp=False)) == dns.rcode.FORMERR


def test_truncated_opt_is_formerr() -> None:
    data = header(ar=1) + QUESTION + b"\x00\x00\x29\x04"
    assert rcode_of(RESPONDER.respond(data, tcp=False)) == dns.rcode.FORMERR


def test_edns_version_1_is_badvers_with_opt() -> None:
    q = dns.message.make_query("www.example.test", "A", use_edns=1)
    response = RESPONDER.respond(q.to_wire(), tcp=False)
    assert response is not None
    m = dns.message.from_wire(response)
    assert m.rcode() == dns.rcode.BADVERS
    assert m.edns == 0


def test_parse_query_keeps_question_bytes_exactly() -> None:
    q = dns.message.make_query("WwW.Example.TEST", "AAAA", want_dnssec=True)
    parsed = parse_query(q.to_wire())
    assert parsed is not None and parsed.error is None
    assert parsed.qname == b"\x03WwW\x07Example\x04TEST\x00"
    assert parsed.edns is not None and parsed.edns.do


# -- Malformed after the question: FORMERR, never a full answer ------------------------------
#
# Through the server's own UDP dispatch (cache, TSIG-signed queries to the transfer service,
# the responder), with a TSIG key configured. RFC 1035 §4.1: a message is its header and the
# records it counts, so trailing bytes are an error (Knot answers FORMERR, NSD 4.6 ignores
# them); RFC 6891 §6.1.1 (one OPT, owned by the root) and §7 (FORMERR about the OPT carries
# ours); a query's additional section holds only OPT and a last TSIG (RFC 8945 §5.1), as NSD
# requires.


TSIG_KEY = TsigKey(KEY.name, "hmac-sha256", KEY.secret)
HANDLER = UdpHandler(
    Responder(registry()),
    TransferService(registry(), "unused.db", {TSIG_KEY.name: TSIG_KEY}),
)


def serve_udp(data: bytes) -> bytes | None:
    """The server's UDP reply to ``data`` (None: none)."""
    sent = udp_exchange(HANDLER, [(data, ("127.0.0.1", 53000))])
    assert len(sent) <= 1
    return sent[0][0] if sent else None


def assert_formerr(data: bytes, with_opt: bool) -> bytes:
    """``data`` is answered FORMERR with the question at most (plus our OPT when asked for),
    never larger than itself, and not from the cache."""
    response = serve_udp(data)
    assert response is not None
    assert rcode_of(response) == FORMERR
    assert len(response) <= len(data)
    message = dns.message.from_wire(response, ignore_trailing=False)
    assert not message.answer and not message.authority
    assert (message.opt is not None) == with_opt
    assert data[2:] not in HANDLER.responder.cache.exact
    return response


def set_arcount(data: bytes, count: int) -> bytes:
    return data[:10] + struct.pack("!H", count) + data[12:]


PLAIN = query_wire("www.example.test", "A", edns=False)
EDNS = query_wire("www.example.test", "A", edns=True, dnssec=True)
SIGNED = query_wire("www.example.test", "SOA", edns=True, signed=True)
OPT_HEAD = b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00"  # root, OPT, 1232, DO; RDLENGTH follows
A_HEAD = b"\x00\x01\x00\x01\x00\x00\x0e\x10"  # TYPE A, CLASS IN, TTL; after an owner


def _signed_tsig_start() -> int:
    offset = tsig_offset(SIGNED)
    assert offset is not None
    return offset


def _tsig_field(name: str) -> int:
    """Offset in SIGNED of a field of its TSIG RR (RFC 8945 §4.2)."""
    start = _signed_tsig_start()
    owner_end = start + len(KEY.name.to_wire() or b"")
    rdata = owner_end + 10
    algorithm_end = rdata + len(dns.tsig.HMAC_SHA256.to_wire() or b"")
    mac_size = algorithm_end + 8
    mac_end = mac_size + 2 + int.from_bytes(SIGNED[mac_size : mac_size + 2], "big")
    return {
        "class": owner_end + 2,
        "mac size": mac_size,
        "error": mac_end + 2,
        "other len": mac_end + 4,
    }[name]


def _tsig_patched(field: str, value: bytes) -> bytes:
    """SIGNED with a field of its TSIG RR overwritten by ``value``."""
    at = _tsig_field(field)
    return SIGNED[:at] + value + SIGNED[at + len(value) :]


MALFORMED: dict[str, tuple[bytes, bool]] = {
    "one trailing octet": (PLAIN + b"\x00", False),
    "trailing junk after the OPT": (EDNS + b"junk", True),
    "trailing junk after a TSIG": (SIGNED + b"\x01\x02", True),
    "option running past RDLENGTH": (
        set_arcount(PLAIN, 1) + OPT_HEAD + b"\x00\x06\x00\x0a\x00\x08\x01\x02",
        True,
    ),
    "option header cut by RDLENGTH": (
        set_arcount(PLAIN, 1) + OPT_HEAD + b"\x00\x02\x00\x0a",
        True,
    ),
    "OPT RDLENGTH past the packet": (
        set_arcount(PLAIN, 1) + OPT_HEAD + b"\x00\x10\x00\x0a\x00\x08",
        True,
    ),
    "two OPTs": (set_arcount(PLAIN, 2) + OPT_HEAD + b"\x00\x00" + OPT_HEAD + b"\x00\x00", True),
    "OPT not owned by the root": (set_arcount(PLAIN, 1) + b"\x01a" + OPT_HEAD + b"\x00\x00", True),
    "OPT in the authority section": (
        PLAIN[:8] + b"\x00\x01\x00\x00" + PLAIN[12:] + OPT_HEAD + b"\x00\x00",
        False,
    ),
    "an A record in additional": (
        set_arcount(PLAIN, 1) + b"\x00" + A_HEAD + b"\x00\x04\x01\x02\x03\x04",
        False,
    ),
    "a record cut short": (set_arcount(PLAIN, 1) + b"\x00" + A_HEAD + b"\x00\x04\x01", False),
    "ARCOUNT beyond the records": (set_arcount(EDNS, 2), True),
    "forward compression pointer": (
        set_arcount(PLAIN, 1) + b"\xc0\x30" + A_HEAD + b"\x00\x04\x01\x02\x03\x04",
        False,
    ),
    "compression pointer to itself": (
        set_arcount(PLAIN, 1) + b"\xc0\x22" + A_HEAD + b"\x00\x04\x01\x02\x03\x04",
        False,
    ),
    "OPT after the TSIG": (
        set_arcount(SIGNED, SIGNED[11] + 1) + OPT_HEAD + b"\x00\x00",
        True,
    ),
    "TSIG of class IN": (_tsig_patched("class", b"\x00\x01"), True),
    "TSIG MAC size past RDLENGTH": (_tsig_patched("mac size", b"\x00\x21"), True),
    "TSIG other data past RDLENGTH": (_tsig_patched("other len", b"\x00\x02"), True),
    # dnspython cannot parse it (an RCODE above 4095): the TSIG cannot be checked.
    "TSIG error beyond the RCODE range": (_tsig_patched("error", b"\xff\xff"), True),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_queries_get_formerr_no_larger_than_themselves(case: str) -> None:
    data, with_opt = MALFORMED[case]
    # A well-formed record that has no place in a query: FORMERR as NSD answers it.
    assert well_formed(data) == (case == "an A record in additional")
    response = assert_formerr(data, with_opt)
    question = dns.message.from_wire(response, ignore_trailing=False).question
    assert [q.name for q in question] == [dns.name.from_text("www.example.test")]


def test_a_malformed_copy_of_a_cached_query_is_not_served_from_the_cache() -> None:
    query = query_wire("mail.example.test", "AAAA", edns=True)
    full = serve_udp(query)
    assert full is not None and rcode_of(full) == 0 and len(full) > len(query)
    assert query[2:] in HANDLER.responder.cache.exact
    assert_formerr(query + b"\x00", with_opt=True)
    assert serve_udp(query) == full


def test_well_formed_queries_still_get_full_answers() -> None:
    cookie = option(10, b"\x01" * 8)
    unknown = option(65001, b"")  # not understood: ignored (RFC 6891 §6.1.2)
    with_options = query_wire("host.example.test", "A", True, options=[cookie, unknown])
    for data in (PLAIN, EDNS, with_options):
        response = serve_udp(data)
        assert response is not None and rcode_of(response) == 0
        assert dns.message.from_wire(response).answer
    # Signed now, not when the module was imported: the server's window is 300 s.
    fresh = query_wire("www.example.test", "SOA", edns=True, signed=True)
    signed = serve_udp(fresh)
    assert signed is not None
    answer = dns.message.from_wire(signed, keyring={KEY.name: KEY}, request_mac=_mac(fresh))
    assert answer.rcode() == 0 and answer.had_tsig and answer.answer


def _mac(signed: bytes) -> bytes:
    tsig = dns.message.from_wire(signed, keyring=False).tsig
    assert tsig is not None
    return bytes(tsig[0].mac)


def test_edns_version_1_with_trailing_junk_is_formerr_not_badvers() -> None:
    data = dns.message.make_query("www.example.test", "A", use_edns=1).to_wire() + b"\x00"
    assert_formerr(data, with_opt=True)


QUERIES = st.builds(
    query_wire,
    st.sampled_from(NAMES),
    st.sampled_from(TYPES),
    edns=st.booleans(),
    dnssec=st.booleans(),
    payload=st.integers(0, 65535),
    options=st.lists(
        st.builds(option, st.sampled_from([3, 8, 10, 12, 15, 65001]), st.binary(max_size=24)),
        max_size=2,
    ),
    signed=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(QUERIES, st.binary(min_size=1, max_size=64))
def test_a_valid_query_with_trailing_junk_is_formerr(query: bytes, junk: bytes) -> None:
    data = query + junk
    response = serve_udp(data)
    assert response is not None
    assert rcode_of(response) == FORMERR
    assert len(response) <= len(data)


@settings(max_examples=1500, deadline=None)
@given(QUERIES, st.randoms(use_true_random=False))
def test_a_damaged_additional_section_is_formerr_or_nothing(
    query: bytes, rng: random.Random
) -> None:
    data = mutate_additional(query, rng)
    response = serve_udp(data)
    if well_formed(data):
        return  # a well-formed query (a flipped bit in a TTL, a payload size): any answer
    if response is not None:
        assert rcode_of(response) == FORMERR
        assert len(response) <= len(data)
    if tsig_offset(data) is None:  # else the TSIG code judges too (FORMERR above)
        parsed = parse_query(data)
        assert parsed is None or parsed.error is not None


LONG = b"".join(bytes([63]) + bytes([c]) * 63 for c in b"abc")  # 192 octets of labels


@pytest.mark.parametrize(
    ("wire", "start", "end"),
    [
        (b"\x00", 0, 1),
        (b"\x01a\x00", 0, 3),
        (b"\x01a\x00\xc0\x00", 3, 5),  # a pointer back to the name before it
        (b"\x01a\x00\x01b\xc0\x00", 3, 7),
        (b"\x01a\x00\xc0\x05", 3, None),  # forward
        (b"\x01a\x00\xc0\x03", 3, None),  # to itself
        (b"\x01a\xc0\x00", 0, None),  # into the name being read: a loop
        (b"\x01a\x00\x01b\xc0\x03", 3, None),  # to labels read before it: a loop
        (b"\x01a\x00\x41", 3, None),  # label type 01
        (b"\x01a\x00\x05abc", 3, None),  # cut short
        (b"\x01a\x00\xc0", 3, None),  # half a pointer
        (LONG + b"\x3d" + b"d" * 61 + b"\x00", 0, 255),  # 255 octets: the longest name
        (LONG + b"\x3e" + b"d" * 62 + b"\x00", 0, None),  # 256
    ],
)
def test_skip_name_reads_names_as_a_client_library_does(
    wire: bytes, start: int, end: int | None
) -> None:
    assert skip_name(wire, start) == end
    try:
        _, used = dns.name.from_wire(wire, start)
    except dns.exception.DNSException:
        assert end is None
    else:
        assert end == start + used


def test_a_chain_of_more_than_16_pointers_is_refused() -> None:
    # The root at offset 0, then name i at offset 1 + 2i: a pointer to name i - 1 (name 0:
    # to the root), so name i takes i + 1 pointers.
    targets = [0, *(2 * i - 1 for i in range(1, 17))]
    wire = b"\x00" + b"".join(struct.pack("!H", 0xC000 | t) for t in targets)
    assert skip_name(wire, 1 + 2 * 15) is not None
    assert skip_name(wire, 1 + 2 * 16) is None
