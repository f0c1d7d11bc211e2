"""The sidecar's zone source: it learns a zone the way a secondary does, from any primary
(zonefan, BIND, Knot) and only through DNS.

:class:`ZoneSource` asks the primary's SOA serial and transfers the zone: IXFR from the
serial we hold, AXFR when we hold nothing or the primary cannot do IXFR, TSIG-signed when a
key is configured. IXFR (:mod:`sync.ixfr`) applies the primary's changes to the copy we
hold; AXFR (:mod:`sync.axfr`) reads the whole zone; both parse the wire with
:mod:`sync.wire` and run in a worker thread. This module chooses the query, falls back to
AXFR when an IXFR cannot be used and turns failures into :class:`SourceError` with a
message that says what to check.

:class:`NotifyListener` answers NOTIFY (RFC 1996) on UDP and TCP from the primary's address,
verifies TSIG when a key is configured and tells its callback which zone changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.serial
import dns.tsig

from sync.axfr import axfr
from sync.errors import SourceError, SyncError
from sync.ixfr import IncrementalError, ixfr
from sync.model import ZoneData
from sync.settings import Address, TsigKey
from sync.xfr import TransferError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
FetchMethod = Literal["ixfr", "axfr", "unchanged"]
NotifyCallback = Callable[[dns.name.Name, int | None], None]

_HEADER = struct.Struct("!HHHHHH")
_TCP_IDLE = 10.0  # seconds a NOTIFY TCP connection may stay silent before we close it
_MAX_TCP_CONNECTIONS = 64  # more at once from the primary's address is not a primary


@dataclass(frozen=True)
class Fetched:
    """What :meth:`ZoneSource.fetch` got: the zone, how it was obtained and its serial."""

    data: ZoneData
    method: FetchMethod
    serial: int


class _FallBack(SyncError):
    """The IXFR could not be used; the reason is logged and an AXFR follows."""


class ZoneSource:
    """A primary seen through DNS: SOA queries and zone transfers (TSIG when ``key``).

    ``timeout`` bounds each query and each message of a transfer (not the whole transfer,
    which for a large zone legitimately takes longer); ``lifetime``, when given, bounds a
    whole transfer.
    """

    def __init__(
        self,
        primary: Address,
        key: TsigKey | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float | None = None,
    ) -> None:
        self.primary = primary
        self.key = key
        self.timeout = timeout
        self.lifetime = lifetime
        self._locks: dict[dns.name.Name, asyncio.Lock] = {}

    # -- SOA -------------------------------------------------------------------------------

    async def serial(self, zone: dns.name.Name) -> int:
        """The serial of ``zone`` at the primary: an SOA query over UDP (TCP when the
        answer is truncated), TSIG-signed when a key is configured."""
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        if self.key is not None:
            query.use_tsig(self.key.dns_key, fudge=self.key.fudge)
        # Here, not at the top: `sync apply` never asks, and the module costs ~10 ms to load.
        from dns import asyncquery

        try:
            response, _ = await asyncquery.udp_with_fallback(
                query, self.primary.host, timeout=self.timeout, port=self.primary.port
            )
        except (dns.exception.DNSException, OSError, EOFError) as exc:
            silent = isinstance(exc, dns.exception.Timeout | OSError | EOFError)
            reason = ("did not answer: " if silent else "gave no usable answer: ") + (
                self._explain(exc)
            )
            raise SourceError(self._failure("SOA query", zone, exc), reason) from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            reason = f"answered the SOA query for {zone} with {dns.rcode.to_text(rcode)}"
            raise SourceError(
                f"primary {self.primary} {reason}{_rcode_hint(rcode)}",
                reason + _rcode_hint(rcode),
            )
        if not response.flags & dns.flags.AA:
            reason = (
                f"is not authoritative for {zone} (NOERROR without the AA flag): is the "
                "zone loaded there?"
            )
            raise SourceError(f"primary {self.primary} {reason}", reason)
        for rrset in response.answer:
            if rrset.name == zone and rrset.rdtype == dns.rdatatype.SOA and len(rrset) == 1:
                soa = rrset[0]
                assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
                return int(soa.serial)
        reason = f"sent no SOA for {zone} (NOERROR, AA)"
        raise SourceError(f"primary {self.primary} {reason}", reason)

    # -- transfers -------------------------------------------------------------------------

    async def fetch(
        self, zone: dns.name.Name, have: ZoneData | None = None, *, expect: int | None = None
    ) -> Fetched:
        """The current ``zone``: IXFR from ``have.serial`` when ``have`` is given (AXFR when
        the primary refuses IXFR, answers with the whole zone or sends changes that do not
        apply to ``have``), AXFR otherwise. ``"unchanged"`` returns ``have`` itself.

        ``expect`` is a serial announced beforehand (by NOTIFY or :meth:`serial`): a zone
        older than it means the primary answered from stale data, a :class:`SourceError`.
        """
        if have is not None and have.origin != zone:
            raise ValueError(f"have is zone {have.origin}, not {zone}")
        lock = self._locks.setdefault(zone, asyncio.Lock())
        async with lock:
            # Parsing a transfer is CPU-bound (0.2 s for a 10k-record AXFR): a thread keeps
            # the event loop, and so the NOTIFY listener, responsive meanwhile.
            fetched = await asyncio.to_thread(self._fetch_blocking, zone, have)
        if expect is not None and dns.serial.Serial(fetched.serial) < expect:
            raise SourceError(
                f"primary {self.primary} sent {zone} at serial {fetched.serial}, older than "
                f"the announced {expect}"
            )
        return fetched

    def _fetch_blocking(self, zone: dns.name.Name, have: ZoneData | None) -> Fetched:
        if have is not None:
            try:
                return self._ixfr(zone, have)
            except _FallBack as why:
                log.info("zone %s: AXFR from %s instead of IXFR: %s", zone, self.primary, why)
        return self._axfr(zone)

    def _axfr(self, zone: dns.name.Name) -> Fetched:
        try:
            data = axfr(self.primary, zone, self.key, self.timeout, self.lifetime)
        except (TransferError, OSError, TimeoutError) as exc:
            raise SourceError(self._failure("AXFR", zone, exc)) from exc
        return Fetched(data, "axfr", data.serial)

    def _ixfr(self, zone: dns.name.Name, have: ZoneData) -> Fetched:
        try:
            got = ixfr(self.primary, zone, have, self.key, self.timeout, self.lifetime)
        except IncrementalError as exc:
            # Our copy and the primary's history disagree (a serial that went backwards,
            # deletions of records we do not hold).
            raise _FallBack(str(exc)) from exc
        except TransferError as exc:
            if exc.rcode is not None and exc.rcode != dns.rcode.NOTAUTH:
                rcode = dns.rcode.to_text(dns.rcode.Rcode.make(exc.rcode))
                raise _FallBack(f"IXFR answered {rcode}") from exc
            raise SourceError(self._failure("IXFR", zone, exc)) from exc
        except (OSError, TimeoutError) as exc:
            raise SourceError(self._failure("IXFR", zone, exc)) from exc
        return Fetched(got.data, got.method, got.serial)

    def _failure(self, what: str, zone: dns.name.Name, exc: BaseException) -> str:
        return f"{what} of {zone} from primary {self.primary} failed: {self._explain(exc)}"

    def _explain(self, exc: BaseException) -> str:
        key = f"TSIG key {self.key.name}" if self.key is not None else "no TSIG key"
        if isinstance(exc, dns.exception.Timeout | TimeoutError):
            return f"no answer within {self.timeout:g} s"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused (nothing listening on that address and port?)"
        if isinstance(exc, dns.tsig.PeerBadKey):
            return f"the primary does not know {key} (BADKEY)"
        if isinstance(exc, dns.tsig.PeerBadSignature):
            return f"the primary rejected the signature with {key} (BADSIG): wrong secret?"
        if isinstance(exc, dns.tsig.PeerBadTime):
            return "the primary rejected the TSIG time (BADTIME): are the clocks in sync?"
        if isinstance(exc, dns.tsig.BadSignature | dns.tsig.BadKey | dns.tsig.BadAlgorithm):
            return f"the answer failed TSIG verification with {key}: wrong secret?"
        if isinstance(exc, dns.message.UnknownTSIGKey):
            return f"the answer is TSIG-signed but we hold {key}: configure the same key"
        if isinstance(exc, TransferError):
            return str(exc) + (_rcode_hint(exc.rcode) if exc.rcode is not None else "")
        if isinstance(exc, EOFError):
            return "the primary closed the connection mid-transfer"
        if isinstance(exc, OSError):
            return exc.strerror or str(exc)
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _rcode_hint(rcode: int) -> str:
    if rcode == dns.rcode.NOTAUTH:
        return " (TSIG refused, or not authoritative: check the key name and secret)"
    if rcode == dns.rcode.REFUSED:
        return " (transfers not allowed to us: check the primary's ACL and the TSIG key)"
    if rcode == dns.rcode.NOTIMP:
        return " (the primary does not implement this)"
    return ""


# -- NOTIFY --------------------------------------------------------------------------------


class NotifyListener:
    """NOTIFY receiver on UDP and TCP at ``address`` (port 0: any free port, see
    :attr:`port`). It accepts NOTIFY for ``zones`` from ``primary``'s host only and, when
    ``key`` is given, only signed with that key; each accepted NOTIFY calls
    ``on_notify(zone, serial)`` (serial from the SOA in the answer section, if any).

    Answers: NOERROR with the question echoed and AA (TSIG-signed when the request was);
    NOTAUTH for a missing or bad TSIG; REFUSED for other sources or zones; NOTIMP for other
    opcodes; FORMERR for malformed messages that still have a DNS header. Responses and
    messages shorter than a header get no answer (no reflection, nothing to answer to).
    """

    def __init__(
        self,
        address: Address,
        primary: Address,
        zones: Collection[dns.name.Name],
        on_notify: NotifyCallback,
        key: TsigKey | None = None,
    ) -> None:
        self.address = address
        self.primary = primary
        self.zones = frozenset(zones)
        self.on_notify = on_notify
        self.key = key
        # An empty keyring makes every signed message an unknown key (NOTAUTH).
        self._keyring: dict[dns.name.Name, dns.tsig.Key] = (
            {key.name: key.dns_key} if key is not None else {}
        )
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._port = 0

    @property
    def port(self) -> int:
        """The port bound (the configured one, or the one chosen for port 0)."""
        if self._udp is None:
            raise RuntimeError("the NOTIFY listener is not started")
        return self._port

    async def start(self) -> None:
        """Bind UDP and TCP on the same port; with port 0 retry until one is free for both."""
        loop = asyncio.get_running_loop()
        attempts = 20 if self.address.port == 0 else 1
        for attempt in range(attempts):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _NotifyDatagram(self),
                local_addr=(self.address.host, self.address.port),
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(
                    self._serve_tcp, self.address.host, port, reuse_address=True
                )
            except OSError as exc:
                transport.close()
                if attempt == attempts - 1:
                    raise SourceError(
                        f"cannot listen for NOTIFY on TCP {self.address.host}:{port}: "
                        f"{exc.strerror}"
                    ) from exc
                continue
            self._udp, self._port = transport, port
            log.info("listening for NOTIFY on %s", Address(self.address.host, port))
            return

    async def stop(self) -> None:
        """Close both sockets and any open TCP connection."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> NotifyListener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- handling --------------------------------------------------------------------------

    def handle(self, wire: bytes, source: str) -> bytes | None:
        """The response to one message from ``source`` (an IP address), None for none."""
        try:
            return self._handle(wire, source)
        except Exception:  # a hostile packet must never stop the listener
            log.exception("NOTIFY from %s: unexpected failure; answering SERVFAIL", source)
            return _header_only(wire, dns.rcode.SERVFAIL)

    def _handle(self, wire: bytes, source: str) -> bytes | None:
        if len(wire) < _HEADER.size:
            return None
        flags = _HEADER.unpack_from(wire)[1]
        if flags & dns.flags.QR:
            return None  # a response: answering it could start a loop
        if dns.opcode.from_flags(flags) != dns.opcode.NOTIFY:
            return _header_only(wire, dns.rcode.NOTIMP)
        if source != self.primary.host:
            log.warning("NOTIFY from %s refused: the primary is %s", source, self.primary.host)
            return _header_only(wire, dns.rcode.REFUSED)
        try:
            request = dns.message.from_wire(wire, keyring=self._keyring)
        except (
            dns.message.UnknownTSIGKey,
            dns.tsig.BadSignature,
            dns.tsig.BadKey,
            dns.tsig.BadTime,
            dns.tsig.BadAlgorithm,
        ) as exc:
            log.warning("NOTIFY from %s: TSIG failed: %s", source, exc or type(exc).__name__)
            return _header_only(wire, dns.rcode.NOTAUTH)
        except dns.exception.DNSException:
            return _header_only(wire, dns.rcode.FORMERR)
        if self.key is not None and not request.had_tsig:
            log.warning("NOTIFY from %s refused: not signed with %s", source, self.key.name)
            return _header_only(wire, dns.rcode.NOTAUTH)
        if len(request.question) != 1 or request.question[0].rdtype != dns.rdatatype.SOA:
            return _answer(request, dns.rcode.FORMERR)
        zone = request.question[0].name
        if zone not in self.zones:
            log.info("NOTIFY from %s for %s refused: not a watched zone", source, zone)
            return _answer(request, dns.rcode.REFUSED)
        serial = _notify_serial(request, zone)
        try:
            self.on_notify(zone, serial)
        except Exception:  # the callback's failure is not the sender's
            log.exception("NOTIFY for %s: the callback failed", zone)
        return _answer(request, dns.rcode.NOERROR)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= _MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        source = str(peer[0]) if peer else ""
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(2), _TCP_IDLE)
                (length,) = struct.unpack("!H", header)
                wire = await asyncio.wait_for(reader.readexactly(length), _TCP_IDLE)
                response = self.handle(wire, source)
                if response is None:
                    break
                writer.write(struct.pack("!H", len(response)) + response)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _NotifyDatagram(asyncio.DatagramProtocol):
    def __init__(self, listener: NotifyListener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an asyncio.DatagramTransport subclass on every Python, but it is one in use.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        response = self.listener.handle(data, str(addr[0]))
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("NOTIFY socket error: %s", exc)


def _notify_serial(request: dns.message.Message, zone: dns.name.Name) -> int | None:
    for rrset in request.answer:
        if rrset.name == zone and rrset.rdtype == dns.rdatatype.SOA and len(rrset) >= 1:
            soa = rrset[0]
            if isinstance(soa, dns.rdtypes.ANY.SOA.SOA):
                return int(soa.serial)
    return None


def _answer(request: dns.message.Message, rcode: dns.rcode.Rcode) -> bytes:
    response = dns.message.make_response(request)
    response.flags |= dns.flags.AA
    response.set_rcode(rcode)
    return response.to_wire()


def _header_only(wire: bytes, rcode: int) -> bytes | None:
    """A response of just the header (request ID and opcode, no sections): what can be
    said to a message we cannot or must not parse further (None: not even a header)."""
    if len(wire) < _HEADER.size:
        return None
    msg_id, flags = _HEADER.unpack_from(wire)[:2]
    opcode_bits = flags & 0x7800
    return _HEADER.pack(msg_id, dns.flags.QR | opcode_bits | (rcode & 0xF), 0, 0, 0, 0)
