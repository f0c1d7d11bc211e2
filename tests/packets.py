"""Queries for the hostile-packet tests: valid ones as clients send them, their mutations,
and the independent judge of whether a packet is a well-formed DNS message (dnspython).

The judge is dnspython's parser with two settings: trailing data is an error (RFC 1035
§4.1: a message is its header and the sections it counts), and TSIG records are parsed
without being verified (the key is the server's business). EDNS option contents are not
judged: RFC 6891 §6.1.2 has a responder ignore options it does not implement (zonefan
implements none, nor do NSD 4.6 and Knot by default answer a malformed COOKIE or ECS other
than in full), so every option is read as an opaque code, length and value: only its framing
counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Iterator, Sequence
from typing import cast

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig

HEADER = struct.Struct("!HHHHHH")
NAMES = ("www.example.test", "example.test", "nx.example.test", "a.b.deep.example.test")
TYPES = ("A", "AAAA", "MX", "TXT", "SOA", "NS", "ANY", "DNSKEY")
KEY = dns.tsig.Key("probe-key.", b"0123456789abcdef0123456789abcdef", dns.tsig.HMAC_SHA256)


@contextlib.contextmanager
def _options_opaque() -> Iterator[None]:
    """dnspython reads every EDNS option as a GenericOption for the block."""
    known = {otype: dns.edns.get_option_class(otype) for otype in dns.edns.OptionType}
    for otype in known:
        dns.edns.register_type(dns.edns.GenericOption, otype)
    try:
        yield
    finally:
        for otype, cls in known.items():
            dns.edns.register_type(cls, otype)


def well_formed(data: bytes) -> bool:
    """True when ``data`` is a DNS message to dnspython: every counted record parses,
    nothing follows them (see the module docstring)."""
    with _options_opaque():
        try:
            dns.message.from_wire(data, keyring=False, ignore_trailing=False)
        except (dns.exception.DNSException, ValueError, UnicodeError, struct.error):
            return False
    return True


def query_wire(
    name: str,
    rdtype: str,
    edns: bool,
    dnssec: bool = False,
    payload: int = 1232,
    options: list[dns.edns.Option] | None = None,
    signed: bool = False,
) -> bytes:
    """A query as a client library sends it (optionally TSIG-signed with :data:`KEY`)."""
    message = dns.message.make_query(
        name,
        dns.rdatatype.from_text(rdtype),
        use_edns=0 if edns or dnssec or options else False,
        want_dnssec=dnssec,
        payload=payload,
        options=options or [],
    )
    if signed:
        message.use_tsig(KEY)
    return message.to_wire()


def additional_start(data: bytes) -> int:
    """Offset of the additional section of a well-formed query (one question, no answer
    or authority records)."""
    offset = 12
    while data[offset]:
        offset += data[offset] + 1
    return offset + 5


def mutate_additional(data: bytes, rng: random.Random) -> bytes:
    """``data`` with its additional section damaged the ways a fuzzer or a broken client
    does it: bytes flipped, inserted or cut, the section truncated, or ARCOUNT changed."""
    start = additional_start(data)
    head, tail = bytearray(data[:start]), bytearray(data[start:])
    kind = rng.randrange(5)
    if kind == 0 and tail:
        for _ in range(rng.randint(1, 3)):
            tail[rng.randrange(len(tail))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        at = rng.randint(0, len(tail))
        tail[at:at] = rng.randbytes(rng.randint(1, 8))
    elif kind == 2 and tail:
        at = rng.randrange(len(tail))
        del tail[at : at + rng.randint(1, 8)]
    elif kind == 3 and tail:
        tail = tail[: rng.randrange(len(tail))]
    else:
        struct.pack_into("!H", head, 10, rng.randrange(4))
    return bytes(head + tail)


def rcode_of(response: bytes | None) -> int:
    """The RCODE of a response (extended by its OPT); the response must parse whole."""
    assert response is not None, "no response"
    message = dns.message.from_wire(response, keyring=False, ignore_trailing=False)
    return int(message.rcode())


def option(code: int, value: bytes) -> dns.edns.Option:
    """An EDNS option of any code, as opaque bytes."""
    return dns.edns.GenericOption(cast(dns.edns.OptionType, code), value)


FORMERR = int(dns.rcode.FORMERR)


class UdpCapture:
    """A UDP transport that keeps what is sent, and to whom."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, object]] = []

    def sendto(self, data: bytes, addr: object = None) -> None:
        self.sent.append((data, addr))


def udp_exchange(
    handler: asyncio.DatagramProtocol, datagrams: Sequence[tuple[bytes, tuple[str, int]]]
) -> list[tuple[bytes, object]]:
    """What ``handler`` sends for ``datagrams`` received in one turn of an event loop, once
    the loop has turned (the server sends a burst's answers together at its end)."""
    capture = UdpCapture()
    handler.connection_made(cast(asyncio.DatagramTransport, capture))

    async def burst() -> None:
        for data, addr in datagrams:
            handler.datagram_received(data, addr)
        await asyncio.sleep(0)

    asyncio.run(burst())
    return capture.sent
