"""Malformed or hostile packets never crash the responder and never earn a reply larger
than themselves unless they are valid queries."""

from __future__ import annotations

import struct

import dns.message
import dns.rcode
from hypothesis import given, settings
from hypothesis import strategies as st

from nameserver.query import parse_query
from nameserver.responder import Responder
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


def rcode_of(response: bytes | None) -> int:
    assert response is not None
    return dns.message.from_wire(response, question_only=True).rcode()


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
