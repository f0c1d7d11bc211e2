"""AXFR in (RFC 5936) with TSIG (RFC 8945), parsed by :mod:`sync.wire`: a 10k-record
zone in tens of milliseconds instead of over a second through dnspython's message parser.
dnspython still builds the query, verifies every TSIG (``dns.tsig.validate``, with the
running MAC over unsigned messages, §5.3.1) and parses the rdatas that may hold
compressed names.

Blocking: callers on an event loop run it in a thread.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.tsig

from sync.errors import SyncError
from sync.model import ZoneData, gc_paused
from sync.settings import Address, TsigKey
from sync.wire import NameMemo, RawRecord, WireError, ZoneBuilder, add, read_name, read_records

_HEADER = struct.Struct("!HHHHHH")
QR = 0x8000
MAX_UNSIGNED = 99  # RFC 8945 §5.3.1: a TSIG at least every 100 messages


class TransferError(SyncError):
    """The transfer failed; ``rcode`` is set when the server answered with an error."""

    def __init__(self, message: str, rcode: int | None = None) -> None:
        self.rcode = rcode
        super().__init__(message)


@dataclass
class _Tsig:
    key: TsigKey
    request_mac: bytes
    ctx: object | None = None
    unsigned: int = 0


def axfr(
    server: Address,
    zone: dns.name.Name,
    key: TsigKey | None = None,
    timeout: float = 10.0,
    lifetime: float | None = None,
) -> ZoneData:
    """Transfer ``zone`` from ``server``. ``timeout`` bounds each read, ``lifetime`` the
    whole transfer. Raises :class:`TransferError` (an rcode, a TSIG failure, a malformed
    or short transfer) or OSError/TimeoutError for the connection."""
    query = dns.message.make_query(zone, dns.rdatatype.AXFR, dns.rdataclass.IN)
    if key is not None:
        query.use_tsig(key.dns_key)
    wire = query.to_wire()
    tsig = _Tsig(key, query.mac or b"") if key is not None else None
    deadline = None if lifetime is None else time.monotonic() + lifetime
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((server.host, server.port))
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        reader = _Reader(sock, deadline)
        return _receive(reader, query.id, zone, tsig)


class _Reader:
    def __init__(self, sock: socket.socket, deadline: float | None) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = bytearray()

    def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise TimeoutError("the transfer took longer than its lifetime")
            chunk = self.sock.recv(max(65536, n - len(self.buffer)))
            if not chunk:
                raise TransferError("the server closed the connection before the final SOA")
            self.buffer += chunk
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def message(self) -> bytes:
        (length,) = struct.unpack("!H", self.exactly(2))
        return self.exactly(length)


@gc_paused
def _receive(reader: _Reader, query_id: int, zone: dns.name.Name, tsig: _Tsig | None) -> ZoneData:
    builder = ZoneBuilder(zone)
    serial: int | None = None
    first = True
    while True:
        wire = reader.message()
        # Records kept as wire bytes are in the builder already; these are the others.
        records, count, signed = _message_records(wire, query_id, first, builder, tsig)
        for record in records:
            if record.rdtype == dns.rdatatype.SOA:
                soa = _soa(record)
                if serial is None:
                    if not first or record.position != 0:
                        raise TransferError("the transfer does not start with the zone's SOA")
                    if record.owner != zone:
                        raise TransferError(f"the transfer opened with the SOA of {record.owner}")
                    serial = soa
                    add(builder, record)
                    continue
                if record.position != count - 1:
                    raise TransferError("records after the closing SOA")
                if soa != serial:
                    raise TransferError(f"closing SOA serial {soa} is not the opening {serial}")
                if tsig is not None and not signed:
                    raise TransferError("the last message of the transfer is not TSIG-signed")
                return builder.build()
            if serial is None:
                raise TransferError("the transfer does not start with the zone's SOA")
            add(builder, record)
        if serial is None and count:
            raise TransferError("the transfer does not start with the zone's SOA")
        first = False


def _message_records(
    wire: bytes, query_id: int, first: bool, builder: ZoneBuilder, tsig: _Tsig | None
) -> tuple[list[RawRecord], int, bool]:
    """Read the answer records of one message into ``builder``, its TSIG checked. Returns
    the records left for the caller (see :func:`read_records`), how many answers the
    message had, and whether it was signed."""
    if len(wire) < _HEADER.size:
        raise TransferError("a message shorter than a DNS header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire)
    if ident != query_id or not flags & QR:
        raise TransferError("a message that is not the answer to our query")
    rcode = flags & 0xF
    pos = _HEADER.size
    memo: NameMemo = {}
    try:
        for _ in range(qdcount):
            _, pos = read_name(wire, pos, memo)
            pos += 4
        answers, pos = read_records(wire, pos, ancount, builder, memo)
        _, pos = read_records(wire, pos, nscount, builder, memo, collect=True)
        extra, pos = read_records(wire, pos, arcount, builder, memo, collect=True)
    except WireError as exc:
        if rcode != dns.rcode.NOERROR:
            raise TransferError(_rcode_text(rcode, None), rcode=rcode) from None
        raise TransferError(f"malformed message: {exc}") from None
    if rcode != dns.rcode.NOERROR:
        raise TransferError(_rcode_text(rcode, extra[-1] if extra else None), rcode=rcode)
    signed = _check_tsig(wire, extra, first, tsig)
    return answers, ancount, signed


def _check_tsig(wire: bytes, extra: list[RawRecord], first: bool, tsig: _Tsig | None) -> bool:
    last = extra[-1] if extra else None
    if last is None or last.rdtype != dns.rdatatype.TSIG:
        if tsig is None:
            return False
        if first:
            raise TransferError("the answer is not TSIG-signed (BADSIG or a missing key?)")
        tsig.unsigned += 1
        if tsig.unsigned > MAX_UNSIGNED or tsig.ctx is None:
            raise TransferError(f"more than {MAX_UNSIGNED} unsigned messages in a row")
        tsig.ctx.update(wire)  # type: ignore[attr-defined]
        return False
    if tsig is None:
        raise TransferError("a TSIG-signed answer to an unsigned query")
    rdata = last.rdata
    assert isinstance(rdata, dns.rdtypes.ANY.TSIG.TSIG)
    try:
        tsig.ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
            wire,
            tsig.key.dns_key,
            last.owner,
            rdata,
            int(time.time()),
            tsig.request_mac,
            last.start,
            tsig.ctx,
            True,
        )
    except dns.exception.DNSException as exc:
        raise TransferError(f"TSIG check failed: {exc}") from None
    tsig.unsigned = 0
    return True


def _soa(record: RawRecord) -> int:
    rdata = record.rdata
    if not isinstance(rdata, dns.rdtypes.ANY.SOA.SOA):
        raise TransferError("an SOA record that is not an SOA")
    return int(rdata.serial)


# RFC 8945 §4.3: 16 is BADSIG in a TSIG record (dnspython names the value BADVERS).
_TSIG_ERRORS = {16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}


def _rcode_text(rcode: int, last: RawRecord | None) -> str:
    """``the server answered NOTAUTH (TSIG error BADSIG)``: RFC 8945 §5.2 puts the reason
    for a TSIG failure in the TSIG record's error field."""
    text = f"the server answered {dns.rcode.to_text(dns.rcode.Rcode.make(rcode))}"
    if last is not None and isinstance(last.rdata, dns.rdtypes.ANY.TSIG.TSIG) and last.rdata.error:
        error = int(last.rdata.error)
        name = _TSIG_ERRORS.get(error) or dns.rcode.to_text(dns.rcode.Rcode.make(error))
        text += f" (TSIG error {name})"
    return text
