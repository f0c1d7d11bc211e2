"""One zone transfer on the wire: the query sent over TCP, then the answer's messages read
in turn, each checked (ID, QR, RCODE, TSIG) and its records read by :mod:`sync.wire`.
Shared by AXFR (:mod:`sync.axfr`) and IXFR (:mod:`sync.ixfr`).

dnspython builds the query, verifies every TSIG (``dns.tsig.validate``, with the running MAC
over unsigned messages, RFC 8945 §5.3.1) and parses the rdatas that may hold compressed
names. Blocking: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import dns.exception
import dns.message
import dns.rcode
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.tsig

from sync.errors import SyncError
from sync.settings import Address, TsigKey
from sync.wire import NameMemo, RawRecord, WireError, ZoneBuilder, read_name, read_records

_HEADER = struct.Struct("!HHHHHH")
QR = 0x8000
MAX_UNSIGNED = 99  # RFC 8945 §5.3.1: a TSIG at least every 100 messages


class TransferError(SyncError):
    """The transfer failed; ``rcode`` is set when the server answered with an error."""

    def __init__(self, message: str, rcode: int | None = None) -> None:
        self.rcode = rcode
        super().__init__(message)


class Message(NamedTuple):
    """One message of the answer: the answer records the reader left to the caller (see
    :func:`sync.wire.read_records`), how many it had, and whether it was TSIG-signed."""

    records: list[RawRecord]
    total: int  # answer records in the message
    signed: bool


class Answer(NamedTuple):
    """One answer record in transfer order, with where it was (the checks of a transfer's
    start and end need that)."""

    record: RawRecord
    message: int  # the message's number in the answer, from 0
    last_in_message: bool
    signed: bool  # its message was TSIG-signed


class Transfer:
    """The answer stream of one transfer query on its own TCP connection."""

    def __init__(
        self,
        sock: socket.socket,
        query: dns.message.Message,
        key: TsigKey | None,
        deadline: float | None,
    ) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buffer = bytearray()
        self._query_id = query.id
        self._key = key
        self._request_mac = query.mac or b""
        self._ctx: object | None = None
        self._unsigned = 0
        self._first = True

    def message(self, builder: ZoneBuilder, *, collect: bool = False) -> Message:
        """Read the next message. Answer records kept as wire bytes go straight into
        ``builder`` unless ``collect`` (then every answer is returned, in order)."""
        (length,) = struct.unpack("!H", self._exactly(2))
        wire = self._exactly(length)
        first, self._first = self._first, False
        return self._parse(wire, first, builder, collect)

    def answers(self, builder: ZoneBuilder) -> Iterator[Answer]:
        """Every answer record in order, across messages (for as long as the caller reads)."""
        number = 0
        while True:
            records, count, signed = self.message(builder, collect=True)
            for record in records:
                yield Answer(record, number, record.position == count - 1, signed)
            number += 1

    def _exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if self._deadline is not None and time.monotonic() > self._deadline:
                raise TimeoutError("the transfer took longer than its lifetime")
            chunk = self._sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise TransferError("the server closed the connection before the final SOA")
            self._buffer += chunk
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def _parse(self, wire: bytes, first: bool, builder: ZoneBuilder, collect: bool) -> Message:
        if len(wire) < _HEADER.size:
            raise TransferError("a message shorter than a DNS header")
        ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
        if ident != self._query_id or not flags & QR:
            raise TransferError("a message that is not the answer to our query")
        rcode = flags & 0xF
        pos = _HEADER.size
        memo: NameMemo = {}
        try:
            for _ in range(qdcount):
                _, pos = read_name(wire, pos, memo)
                pos += 4
            answers, pos = read_records(wire, pos, ancount, builder, memo, collect=collect)
            _, pos = read_records(wire, pos, nscount, builder, memo, collect=True)
            extra, pos = read_records(wire, pos, arcount, builder, memo, collect=True)
        except WireError as exc:
            if rcode != dns.rcode.NOERROR:
                raise TransferError(rcode_text(rcode, None), rcode=rcode) from None
            raise TransferError(f"malformed message: {exc}") from None
        if rcode != dns.rcode.NOERROR:
            raise TransferError(rcode_text(rcode, extra[-1] if extra else None), rcode=rcode)
        signed = self._check_tsig(wire, extra, first)
        return Message(answers, ancount, signed)

    def _check_tsig(self, wire: bytes, extra: list[RawRecord], first: bool) -> bool:
        last = extra[-1] if extra else None
        if last is None or last.rdtype != dns.rdatatype.TSIG:
            if self._key is None:
                return False
            if first:
                raise TransferError("the answer is not TSIG-signed (BADSIG or a missing key?)")
            self._unsigned += 1
            if self._unsigned > MAX_UNSIGNED or self._ctx is None:
                raise TransferError(f"more than {MAX_UNSIGNED} unsigned messages in a row")
            self._ctx.update(wire)  # type: ignore[attr-defined]
            return False
        if self._key is None:
            raise TransferError("a TSIG-signed answer to an unsigned query")
        rdata = last.rdata
        assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
        try:
            self._ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
                wire,
                self._key.dns_key,
                last.owner,
                rdata,
                int(time.time()),
                self._request_mac,
                last.start,
                self._ctx,
                True,
            )
        except dns.exception.DNSException as exc:
            raise TransferError(f"TSIG check failed: {exc}") from None
        self._unsigned = 0
        return True


@contextmanager
def transfer(
    server: Address,
    query: dns.message.Message,
    key: TsigKey | None,
    timeout: float,
    lifetime: float | None,
) -> Iterator[Transfer]:
    """Send ``query`` (signed with ``key`` here) over TCP; the answer as a :class:`Transfer`.
    ``timeout`` bounds each read, ``lifetime`` the whole transfer."""
    if key is not None:
        query.use_tsig(key.dns_key, fudge=key.fudge)
    wire = query.to_wire()
    deadline = None if lifetime is None else time.monotonic() + lifetime
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((server.host, server.port))
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        yield Transfer(sock, query, key, deadline)


def soa_serial(record: RawRecord) -> int:
    """The serial of an SOA record read from a transfer."""
    rdata = record.rdata
    if not isinstance(rdata, dns.rdtypes.ANY.SOA.SOA):
        raise TransferError("an SOA record that is not an SOA")
    return int(rdata.serial)


# RFC 8945 §4.3: 16 is BADSIG in a TSIG record (dnspython names the value BADVERS).
_TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}


def rcode_text(rcode: int, last: RawRecord | None) -> str:
    """``the server answered NOTAUTH (TSIG error BADSIG)``: RFC 8945 §5.2 puts the reason
    for a TSIG failure in the TSIG record's error field."""
    text = f"the server answered {dns.rcode.to_text(dns.rcode.Rcode.make(rcode))}"
    if last is not None and isinstance(last.rdata, dns.rdtypes.ANY.TSIG.TSIG) and last.rdata.error:
        error = int(last.rdata.error)
        name = _TSIG_ERRORS.get(error) or dns.rcode.to_text(dns.rcode.Rcode.make(error))
        text += f" (TSIG error {name})"
    return text
