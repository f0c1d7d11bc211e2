"""NOTIFY (RFC 1996) to the secondaries of a zone on every new serial.

Each (zone, secondary) pair has one sender at a time: a newer serial replaces the sender
of an older one, so a secondary is never told about a version the zone has already left.
A NOTIFY goes over UDP with the new SOA as a hint in the answer section (§3.7), signed
with the secondary's TSIG key when it has one, and is resent with exponential backoff
until the secondary answers it (§3.6; the RFC's defaults of 60 s and 5 retries are the
upper end of what we do: the first resend comes after 2 s so a lost packet costs seconds,
not a minute, and resends go on, at most every 5 minutes, until an answer comes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig

from nameserver.zone.serial import Clock

log = logging.getLogger(__name__)

FIRST_RETRY = 2.0  # seconds before the first resend
MAX_INTERVAL = 300.0  # resends back off up to this
TIMEOUT = 2.0  # seconds to wait for one answer


@dataclass(frozen=True)
class NotifyTarget:
    """Where a zone's NOTIFYs go, and the TSIG key to sign them with (if any)."""

    address: str
    port: int = 53
    # Not part of equality: one secondary is one address and port (Key is not hashable).
    key: dns.tsig.Key | None = field(default=None, compare=False)

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}@{self.port}"


@dataclass
class NotifyStatus:
    """What was last sent to one secondary for one zone, and whether it answered."""

    serial: int
    attempts: int = 0
    first_sent: float | None = None
    last_sent: float | None = None
    acked: float | None = None  # when the secondary answered NOERROR
    error: str = ""  # the last failure (timeout, an error rcode, a bad TSIG)
    history: list[str] = field(default_factory=list)  # bounded: the last few outcomes


Targets = Callable[[dns.name.Name], Sequence[NotifyTarget]]
Key = tuple[dns.name.Name, NotifyTarget]
StatusListener = Callable[[dns.name.Name, NotifyTarget, "NotifyStatus"], None]


class Notifier:
    """Sends NOTIFYs for new serials; :meth:`status` tells what each secondary acked."""

    def __init__(
        self,
        targets: Targets,
        clock: Clock = time.time,
        first_retry: float = FIRST_RETRY,
        max_interval: float = MAX_INTERVAL,
        timeout: float = TIMEOUT,
        on_status: StatusListener | None = None,
    ) -> None:
        self._targets = targets
        self._on_status = on_status  # told after every attempt (e.g. to store it)
        self._clock = clock
        self._first_retry = first_retry
        self._max_interval = max_interval
        self._timeout = timeout
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._status: dict[Key, NotifyStatus] = {}

    def serial_changed(self, origin: dns.name.Name, soa: dns.rdata.Rdata, ttl: int) -> None:
        """Start telling every target of ``origin`` about its SOA ``soa`` (the new
        version); replaces any sender still busy with an older serial."""
        serial = int(getattr(soa, "serial", 0))
        for target in self._targets(origin):
            key = (origin, target)
            running = self._tasks.pop(key, None)
            if running is not None:
                running.cancel()
            self._status[key] = NotifyStatus(serial)
            task = asyncio.get_running_loop().create_task(self._send(origin, target, soa, ttl))
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))

    def status(self) -> dict[Key, NotifyStatus]:
        """A copy of the latest status per (zone, target)."""
        return dict(self._status)

    async def close(self) -> None:
        """Stop every sender (server shutdown)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _report(self, origin: dns.name.Name, target: NotifyTarget, status: NotifyStatus) -> None:
        if self._on_status is not None:
            try:
                self._on_status(origin, target, status)
            except Exception:  # a status listener must not stop NOTIFYs
                log.exception("NOTIFY status listener failed")

    def _forget(self, key: Key, done: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is done:
            del self._tasks[key]

    async def _send(
        self, origin: dns.name.Name, target: NotifyTarget, soa: dns.rdata.Rdata, ttl: int
    ) -> None:
        status = self._status[(origin, target)]
        wait = self._first_retry
        while True:
            now = self._clock()
            status.attempts += 1
            status.first_sent = status.first_sent or now
            status.last_sent = now
            outcome = await self._attempt(origin, target, soa, ttl)
            status.history = [*status.history[-4:], outcome or "acked"]
            if outcome is None:
                status.acked = self._clock()
                status.error = ""
                log.info("NOTIFY %s serial %d acked by %s", origin, status.serial, target)
                self._report(origin, target, status)
                return
            status.error = outcome
            self._report(origin, target, status)
            log.warning(
                "NOTIFY %s serial %d to %s: %s; resending in %.0f s",
                origin,
                status.serial,
                target,
                outcome,
                wait,
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, self._max_interval)

    async def _attempt(
        self, origin: dns.name.Name, target: NotifyTarget, soa: dns.rdata.Rdata, ttl: int
    ) -> str | None:
        """One NOTIFY and its answer: None when acked, else what went wrong."""
        message = notify_message(origin, soa, ttl, target.key)
        try:
            response = await dns.asyncquery.udp(
                message, target.address, timeout=self._timeout, port=target.port
            )
        except dns.exception.Timeout:
            return f"no answer within {self._timeout:g} s"
        except (dns.exception.DNSException, OSError) as e:
            return f"{type(e).__name__}: {e}"
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            return f"answered {dns.rcode.to_text(rcode)}"
        if response.opcode() != dns.opcode.NOTIFY:
            return "answered with another opcode"
        return None


def notify_message(
    origin: dns.name.Name, soa: dns.rdata.Rdata, ttl: int, key: dns.tsig.Key | None
) -> dns.message.Message:
    """A NOTIFY for ``origin`` (RFC 1996 §3.7: opcode NOTIFY, AA, question ORIGIN SOA, the
    new SOA in the answer section as a hint), TSIG-signed with ``key`` when given."""
    message = dns.message.make_query(origin, dns.rdatatype.SOA)
    message.flags = dns.flags.AA  # no RD; the opcode lives in the flags, so it comes after
    message.set_opcode(dns.opcode.NOTIFY)
    message.answer.append(dns.rrset.from_rdata(origin, ttl, soa))
    if key is not None:
        message.use_tsig(key)
    return message
