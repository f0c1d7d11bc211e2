"""Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995) over TCP, TSIG-signed (RFC 8945).

A transfer is answered from the snapshot being served (AXFR, and the SOA of IXFR) and from
the store's journal (IXFR's difference sequences, read in a worker thread with its own
SQLite connection). Messages are rendered here straight to wire, up to ``MESSAGE_SIZE``
bytes each, owner names compressed against the question (the zone's origin) and against the
first RR of the same owner in the message; rdata is sent uncompressed (RFC 3597 §4 allows
that for every type). The TCP handler writes one message at a time and yields to the event
loop between messages, respecting the transport's flow control, so queries keep being
answered while a large zone is sent.

Decisions:

* Access: a transfer needs a ``[[secondary]]`` entry matching the client address, the TSIG
  key (when the entry names one) and the zone; otherwise REFUSED with no records. No entry
  configured: no transfers at all. A request for a zone we do not serve is REFUSED as well,
  and so is one in any class but IN (RFC 5936 §2.1.2: QCLASS is the zone's class; we serve
  IN only; NSD refuses CH and HS the same way).
* TSIG errors (RFC 8945 §5.2): unknown key or algorithm → NOTAUTH with TSIG error BADKEY,
  bad MAC → NOTAUTH/BADSIG (both with an unsigned TSIG, §5.3.2), time outside the fudge
  (the request's or the key's, whichever is smaller) → NOTAUTH/BADTIME signed, with our
  time in Other Data (§5.2.3). Checked before the ACL. A signed request whose exact bytes
  were already accepted is NOTAUTH/BADTIME as well (a replay: the zone is not sent to
  whoever captured a secondary's request; secondaries sign every request anew).
* IXFR's authority section must be exactly the client's SOA, owned by the zone's apex in
  its class (RFC 1995 §3); anything else is FORMERR, as Knot answers.
* AXFR over UDP is REFUSED (RFC 5936 §4.2 leaves AXFR over UDP undefined). IXFR over UDP is
  answered, after the same access checks, with our current SOA only (RFC 1995 §2: the
  client then asks again over TCP).
* IXFR from a serial the journal does not reach (compacted, or a serial we never had) is
  answered with the full zone in AXFR form (RFC 1995 §4); a client at our serial or newer
  (RFC 1982 comparison) gets a single SOA (RFC 1995 §2).
* Every message of a TSIG-signed transfer is signed (RFC 8945 §5.3.1 allows signing only
  every 100th; signing each costs little and every client accepts it).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from nameserver.errors import JournalError
from nameserver.serve.lograte import LogLimiter
from nameserver.serve.query import Query, parse_query
from nameserver.serve.response import render, udp_limit
from nameserver.store.logs import TransferLogEntry
from nameserver.store.storethread import StoreThread
from nameserver.transfer.acl import TransferAcl
from nameserver.transfer.tsig import (
    NOERROR,
    Keyring,
    ReplayGuard,
    Signer,
    TsigKey,
    Verified,
    strip_tsig,
    tsig_error_reply,
    tsig_failure,
    verify,
)
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import AnyRecord
from nameserver.zone.serial import serial_ge
from nameserver.zone.snapshot import SOA, ZoneSnapshot, row_of
from nameserver.zone.wirename import lower
from nameserver.zone.zones import ZoneRegistry

log = logging.getLogger(__name__)
_refusals = LogLimiter(log)  # any client can ask: a line each would let it fill the log

AXFR = int(dns.rdatatype.AXFR)
IXFR = int(dns.rdatatype.IXFR)
REFUSED = int(dns.rcode.REFUSED)
NOTAUTH = int(dns.rcode.NOTAUTH)
FORMERR = int(dns.rcode.FORMERR)
MESSAGE_SIZE = 16384  # bytes of RRs per message before the next one is started
_RESERVE = 512  # room kept for OPT and TSIG at the end of each message
_RR_HEAD = struct.Struct("!HHIH")
_CLASS_IN = 1
_APEX_POINTER = b"\xc0\x0c"  # the question name: every message carries the question

# (owner wire, owner key, type, TTL, rdata wire): one RR to send.
Rr = tuple[bytes, bytes, int, int, bytes]
Client = tuple[str, int]


def transfer_qtype(data: bytes) -> int | None:
    """AXFR or IXFR when ``data`` is a query (QR=0, opcode QUERY, one question) for one;
    None otherwise. Cheap: only called on the cache-miss path."""
    if len(data) < 17 or data[2] & 0xF8 or data[4:6] != b"\x00\x01":
        return None
    offset = 12
    while offset < len(data):
        length = data[offset]
        if length == 0:
            break
        if length & 0xC0:
            return None
        offset += length + 1
    if offset + 5 > len(data):
        return None
    qtype = int.from_bytes(data[offset + 1 : offset + 3], "big")
    return qtype if qtype in (AXFR, IXFR) else None


@dataclass
class _Request:
    """A transfer request that passed parsing and TSIG checks."""

    query: Query
    message: dns.message.Message
    key: TsigKey | None
    mac: bytes
    client: Client

    @property
    def key_text(self) -> str | None:
        return self.key.name.to_text() if self.key is not None else None


class _Messages:
    """Builds the response messages of one transfer, each signed when the request was."""

    def __init__(self, request: _Request, zone: ZoneSnapshot, size: int = MESSAGE_SIZE) -> None:
        q = request.query
        self._header = (
            q.id + (0x8400 | (q.flags & 0x0100)).to_bytes(2, "big") + b"\x00\x01"
        )  # QR, AA, RD copied; one question
        self._question = q.question
        self._origin_len = len(zone.origin_wire)
        self._origin = zone.origin
        self._size = size
        self._opt = b""
        if q.edns is not None:
            flags = 0x8000 if q.edns.do else 0
            self._opt = b"\x00" + _RR_HEAD.pack(41, 1232, flags, 0)
        self._signer = (
            Signer(request.key, request.mac, request.message.id)
            if request.key is not None
            else None
        )
        self._reset()
        self.messages = 0
        self.rrs = 0
        self.bytes = 0

    def _reset(self) -> None:
        self._parts: list[bytes] = []
        self._length = 12 + len(self._question)
        self._count = 0
        self._owners: dict[bytes, int] = {}

    def add(self, rr: Rr) -> bytes | None:
        """Add one RR; returns the finished previous message when this one did not fit."""
        owner, key, rdtype, ttl, rdata = rr
        done = None
        if self._length + len(owner) + 10 + len(rdata) > self._size - _RESERVE and self._count:
            done = self.finish()
        offset = self._owners.get(key)
        if offset is not None:
            name = (0xC000 | offset).to_bytes(2, "big")
        else:
            prefix = len(owner) - self._origin_len
            if prefix >= 0 and key.endswith(self._origin) and key[prefix:] == self._origin:
                name = owner[:prefix] + _APEX_POINTER
                if prefix and self._length < 0x3FFF:
                    self._owners[key] = self._length
            else:
                name = owner
        self._parts.append(name + _RR_HEAD.pack(rdtype, _CLASS_IN, ttl, len(rdata)) + rdata)
        self._length += len(name) + 10 + len(rdata)
        self._count += 1
        self.rrs += 1
        return done

    def finish(self) -> bytes:
        """The message being built, complete (and signed)."""
        counts = struct.pack("!HHH", self._count, 0, 1 if self._opt else 0)
        wire = b"".join((self._header, counts, self._question, *self._parts, self._opt))
        if self._signer is not None:
            wire = self._signer.sign(wire)
        self._reset()
        self.messages += 1
        self.bytes += len(wire)
        return wire

    def render(self, rrs: Iterable[Rr]) -> Iterator[bytes]:
        """Every message for ``rrs``, the last one included."""
        add = self.add
        for rr in rrs:
            done = add(rr)
            if done is not None:
                yield done
        yield self.finish()


def _soa_rr(zone: ZoneSnapshot) -> Rr:
    node = zone.node(zone.origin)
    assert node is not None
    soa = node.rrsets[SOA]
    return (node.owner, zone.origin, SOA, soa.ttl, soa.rdatas[0])


def full_zone(zone: ZoneSnapshot) -> Iterator[Rr]:
    """The zone in AXFR order (RFC 5936 §2.2): SOA, every other RR, SOA again."""
    soa = _soa_rr(zone)
    yield soa
    for key, node in zone.nodes.items():
        owner = node.owner
        for where, rs in node.rrsets.items():
            if where == SOA and key == zone.origin:
                continue
            rdtype, ttl = rs.rdtype, rs.ttl
            for rdata in rs.rdatas:
                yield (owner, key, rdtype, ttl, rdata)
    yield soa


def _record_rr(record: AnyRecord) -> Rr:
    owner, rdtype, ttl, rdata = row_of(record)
    return (owner, lower(owner), rdtype, ttl, rdata)


def _soa_first(records: Iterable[AnyRecord]) -> list[Rr]:
    soas = [_record_rr(r) for r in records if r.rdtype == SOA]
    rest = [_record_rr(r) for r in records if r.rdtype != SOA]
    return soas[:1] + rest


def differences(zone: ZoneSnapshot, chain: Iterable[Changeset]) -> Iterator[Rr]:
    """IXFR's condensed difference sequences (RFC 1995 §4): the new SOA, then per
    changeset the old SOA and the RRs removed, the new SOA and the RRs added, then the new
    SOA again."""
    soa = _soa_rr(zone)
    yield soa
    for cs in chain:
        yield from _soa_first(cs.removed)
        yield from _soa_first(cs.added)
    yield soa


class TransferService:
    """Answers AXFR and IXFR queries for the zones of a registry."""

    def __init__(
        self,
        registry: ZoneRegistry,
        store_path: str,
        keys: Keyring | None = None,
        acl: TransferAcl | None = None,
        message_size: int = MESSAGE_SIZE,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.registry = registry
        self.store_path = store_path
        self.keys: Keyring = keys or {}
        self._replay = replay if replay is not None else ReplayGuard()
        self.acl = acl or TransferAcl()
        self.message_size = message_size
        self._thread = StoreThread(store_path, "xfr")

    # -- worker thread --

    def _chain(self, zone: dns.name.Name, since: int, to: int) -> list[Changeset] | None:
        try:
            return self._thread.store.changesets_between(zone, since, to)
        except JournalError:
            log.info(
                "IXFR of %s from serial %d: the journal does not reach that serial "
                "(compacted, or never ours); sending the full zone",
                zone,
                since,
            )
            return None

    def _log(self, entry: TransferLogEntry) -> None:
        try:
            self._thread.store.log_transfer(entry)
        except Exception:
            log.exception("could not write the transfer log")

    def close(self) -> None:
        """Stop the worker thread and close its store connection."""
        self._thread.close()

    # -- requests --

    def _check(self, data: bytes, client: Client, tcp: bool) -> _Request | bytes | None:
        """The request when it may go ahead; else the response to send (bytes), or None
        when the generic responder should answer (a malformed packet)."""
        query = parse_query(data)
        if query is None:
            return None
        try:
            verified = verify(data, self.keys, self._replay)
        except dns.exception.DNSException:
            return None
        message = verified.message
        if query.error not in (None, FORMERR) or len(message.question) != 1:
            return None
        if verified.error != NOERROR:
            return self._tsig_error(query, verified)
        request = _Request(query, message, verified.key, verified.mac, client)
        zone = self.registry.get(lower(query.qname)) if query.qclass == _CLASS_IN else None
        key_name = verified.key.name if verified.key is not None else None
        qname = message.question[0].name
        if zone is None or not self.acl.allows(client[0], key_name, qname):
            _refusals.info(
                "transfer refused",
                "transfer of %s refused for %s (key %s)",
                qname,
                client[0],
                request.key_text or "none",
            )
            return self._error(request, REFUSED)
        if query.qtype == AXFR and not tcp:
            return self._error(request, REFUSED)
        if query.qtype == IXFR and _client_serial(message) is None:
            return self._error(request, FORMERR)
        return request

    def _error(self, request: _Request, rcode: int) -> bytes:
        q = request.query
        flags = 0x8000 | (q.flags & 0x0100) | rcode
        wire = q.id + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        wire += q.question
        if request.key is not None:
            wire = Signer(request.key, request.mac, request.message.id).sign(wire)
        return wire

    def _tsig_error(self, query: Query, verified: Verified) -> bytes:
        flags = 0x8000 | (query.flags & 0x0100) | NOTAUTH
        wire = query.id + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        asked = verified.message.question
        what = f"{dns.rdatatype.to_text(asked[0].rdtype)} {asked[0].name}" if asked else "request"
        _refusals.info("TSIG refused", "%s refused: %s", what, tsig_failure(verified))
        return tsig_error_reply(wire + query.question, verified)

    def signed_response(
        self,
        data: bytes,
        offset: int,
        answer: Callable[[bytes], bytes | None],
        tcp: bool = True,
    ) -> bytes | None:
        """A TSIG-signed query that is not a transfer (a secondary's SOA check): verify it,
        let ``answer`` (the responder) answer it without the TSIG RR, and sign the answer
        (RFC 8945 §5.3); NOTAUTH with the TSIG error when verification fails. No replay
        check: the same query unsigned gets the same answer, so a copy gains nothing, and a
        UDP retransmission of the same bytes must be answered."""
        query = parse_query(data)
        if query is None:
            return None
        try:
            verified = verify(data, self.keys)
        except dns.exception.DNSException:
            # A signed request its TSIG cannot be checked on: FORMERR (RFC 8945 §5.2), never
            # an answer unsigned; header, question and OPT, no larger than the request.
            return render(query, None, FORMERR, udp_limit(query))
        if verified.error != NOERROR:
            return self._tsig_error(query, verified)
        response = answer(strip_tsig(data, offset))
        if response is None or verified.key is None:
            return response
        signer = Signer(verified.key, verified.mac, verified.message.id)
        signed = signer.sign(response)
        if tcp or len(signed) <= udp_limit(query):
            return signed
        # The TSIG pushed it over the client's UDP size: header and question with TC set,
        # signed (RFC 8945 §5.3: the client retries over TCP).
        flags = int.from_bytes(response[2:4], "big") | 0x0200
        header = response[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        signer = Signer(verified.key, verified.mac, verified.message.id)
        return signer.sign(header + query.question)

    def udp_response(self, data: bytes, client: Client) -> bytes | None:
        """The answer to a transfer query over UDP (None: let the responder answer)."""
        checked = self._check(data, client, tcp=False)
        if not isinstance(checked, _Request):
            return checked
        zone = self.registry.get(lower(checked.query.qname))
        assert zone is not None
        return b"".join(_Messages(checked, zone).render([_soa_rr(zone)]))

    async def serve_tcp(
        self, data: bytes, client: Client, write: Callable[[bytes], Awaitable[bool]]
    ) -> bool:
        """Answer a transfer query over TCP, writing each message with ``write`` (which
        returns False once the connection is gone). False: not handled, let the responder
        answer (a malformed packet)."""
        checked = self._check(data, client, tcp=True)
        if checked is None:
            return False
        if isinstance(checked, bytes):
            await write(checked)
            return True
        request = checked
        zone = self.registry.get(lower(request.query.qname))
        assert zone is not None
        started = time.perf_counter()
        kind, since, rrs = "AXFR", None, None
        if request.query.qtype == IXFR:
            since = _client_serial(request.message)
            assert since is not None
            if serial_ge(since, zone.serial):
                kind, rrs = "IXFR-UPTODATE", iter([_soa_rr(zone)])
            else:
                chain = await self._thread.run(self._chain, zone.origin_name, since, zone.serial)
                if chain is None:
                    kind = "IXFR-AXFR"
                else:
                    kind, rrs = "IXFR", differences(zone, chain)
        if rrs is None:
            rrs = full_zone(zone)
        messages = _Messages(request, zone, self.message_size)
        error = None
        for wire in messages.render(rrs):
            if not await write(wire):
                error = "connection closed by the client"
                break
            await asyncio.sleep(0)  # let queries in between messages
        took = time.perf_counter() - started
        entry = TransferLogEntry(
            time=time.time(),
            zone=zone.origin_name,
            client=client[0],
            key=request.key_text,
            kind=kind,
            serial_from=since,
            serial_to=zone.serial,
            messages=messages.messages,
            rrs=messages.rrs,
            bytes=messages.bytes,
            duration=took,
            error=error,
        )
        log.info(
            "%s of %s to %s (key %s): serial %s -> %d, %d messages, %d RRs, %d bytes, %.1f ms%s",
            kind,
            entry.zone,
            client[0],
            entry.key or "none",
            "-" if since is None else since,
            zone.serial,
            entry.messages,
            entry.rrs,
            entry.bytes,
            took * 1000,
            f" ({error})" if error else "",
        )
        await self._thread.run(self._log, entry)
        return True


def _client_serial(message: dns.message.Message) -> int | None:
    """The serial of the client's SOA in an IXFR request (RFC 1995 §3: the authority section
    holds the SOA of the client's version of the zone, so one SOA owned by the QNAME, the
    zone's apex, in its class); None when the section holds anything else."""
    question = message.question[0]
    if len(message.authority) != 1:
        return None
    soa = message.authority[0]
    if (
        soa.rdtype != dns.rdatatype.SOA
        or len(soa) != 1
        or soa.name != question.name
        or soa.rdclass != question.rdclass
    ):
        return None
    return int(soa[0].serial)
