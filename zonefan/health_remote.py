"""Remote checkers: their reports taken by ``zonefan serve`` (:class:`ReportIntake`, the
server's health-report hook) and sent by ``zonefan health report`` (:func:`send_reports`).

The wire format is nameserver.transfer.health_reports's: a TSIG-signed UPDATE adding one
TXT RR per report at ``_zonefan-health.<pool>``, its strings the fields of
:meth:`health.CheckerReport.to_fields`. A checker must sign with the ``[key.NAME]`` its
``[health] remote-checkers`` entry names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.update

from health import CheckerReport, HealthConfig, HealthMonitor, Pool, ProbeResult, ReportError
from health.monitor import probe_member
from nameserver.serve.lograte import LogLimiter
from nameserver.transfer.health_reports import RawReport, report_owner
from settings import TsigKey

log = logging.getLogger("zonefan.health")
_refusals = LogLimiter(log)

# Reports a checker may send per check interval, per member of every pool: a round each
# interval, its retransmissions and a few retries; the excess is refused, not queued.
REPORTS_PER_MEMBER = 4
_HANDOFF_TIMEOUT = 5.0  # seconds the UPDATE worker waits for the checks' loop


@dataclass
class _Window:
    start: float
    count: int = 0


class ReportIntake:
    """The server's health-report hook: checks who signed, parses, limits, and hands the
    reports to the running :class:`HealthMonitor` in its event loop. Called from the
    UPDATE worker thread; state is kept only per configured checker."""

    def __init__(
        self,
        health: HealthConfig,
        keys: Mapping[str, TsigKey],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The DNS name of the key each checker must sign with (a checker without a key
        # cannot report by UPDATE).
        self.keys = {c: keys[label].name for c, label in health.checker_keys.items()}
        members = sum(len(p.members) for p in health.pools)
        self.window = min((p.check.interval for p in health.pools), default=1.0)
        self.limit = max(1, REPORTS_PER_MEMBER * members)
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self.accepted = 0  # reports handed to the monitor
        self.monitor: HealthMonitor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, monitor: HealthMonitor) -> None:
        """Reports go to ``monitor`` in the running loop from now on."""
        self.monitor, self.loop = monitor, asyncio.get_running_loop()

    def __call__(self, raw: Sequence[RawReport], key: dns.name.Name) -> int:
        try:
            reports = [CheckerReport.from_fields(r.pool, r.strings) for r in raw]
        except ReportError as e:
            _refusals.info("health report malformed", "health report malformed: %s", e)
            return dns.rcode.FORMERR
        for report in reports:
            expected = self.keys.get(report.checker)
            if expected != key:
                _refusals.info(
                    "health report key",
                    "health report of checker %r refused: signed with key %s, %s",
                    report.checker,
                    key,
                    "not a remote checker with a key" if expected is None else f"not {expected}",
                )
                return dns.rcode.REFUSED
        for checker in {r.checker for r in reports}:
            if not self._admit(checker, sum(r.checker == checker for r in reports)):
                _refusals.info(
                    "health report limit",
                    "health reports of checker %r over %d per %gs: dropped",
                    checker,
                    self.limit,
                    self.window,
                )
                return dns.rcode.REFUSED
        monitor, loop = self.monitor, self.loop
        if monitor is None or loop is None:
            return dns.rcode.SERVFAIL  # the checks have not started yet
        future = asyncio.run_coroutine_threadsafe(self._observe(monitor, reports), loop)
        try:
            return future.result(_HANDOFF_TIMEOUT)
        except concurrent.futures.TimeoutError:
            return dns.rcode.SERVFAIL

    def _admit(self, checker: str, count: int) -> bool:
        now = self.clock()
        window = self._windows.get(checker)
        if window is None or now - window.start >= self.window:
            window = self._windows[checker] = _Window(now)
        if window.count + count > self.limit:
            return False
        window.count += count
        return True

    async def _observe(self, monitor: HealthMonitor, reports: Sequence[CheckerReport]) -> int:
        try:
            monitor.observe_all(reports)  # a message is taken whole or not at all
        except ReportError as e:
            _refusals.info("health report refused", "health report refused: %s", e)
            return dns.rcode.REFUSED
        self.accepted += len(reports)
        return dns.rcode.NOERROR


def report_message(
    reports: Sequence[CheckerReport], key: TsigKey, zone: dns.name.Name | None = None
) -> dns.update.UpdateMessage:
    """The signed UPDATE carrying ``reports``; its zone section names ``zone`` (by default
    the parent of the first report's pool: the server only needs a name above the pool)."""
    if not reports:
        raise ValueError("no reports to send")
    origin = zone if zone is not None else reports[0].pool.parent()
    update = dns.update.UpdateMessage(origin)
    for report in reports:
        txt = dns.rdtypes.ANY.TXT.TXT(
            dns.rdataclass.IN, dns.rdatatype.TXT, [f.encode("ascii") for f in report.to_fields()]
        )
        update.add(report_owner(report.pool), 0, txt)
    update.use_tsig(key.dns_key)
    return update


def send_reports(
    reports: Sequence[CheckerReport],
    key: TsigKey,
    server: tuple[str, int],
    zone: dns.name.Name | None = None,
    timeout: float = 5.0,
) -> int:
    """Send ``reports`` to ``server`` (UDP, TCP when truncated); the answer's RCODE."""
    message = report_message(reports, key, zone)
    response, _ = dns.query.udp_with_fallback(message, server[0], timeout, server[1])
    return response.rcode()


Send = Callable[[Sequence[CheckerReport]], int]


async def remote_rounds(
    health: HealthConfig,
    send: Send,
    rounds: int | None = None,
    *,
    probe: Callable[[Pool, str], Awaitable[ProbeResult]] = probe_member,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> list[int]:
    """The remote checker: every pool's members probed each (shortest) interval and each
    pool's results sent in one report message as ``health.checker``; ``rounds`` None runs
    until cancelled. The RCODE of every message sent, in order (a refusal is logged and
    the checker goes on: the primary may be restarting with a new config)."""
    interval = min((p.check.interval for p in health.pools), default=5.0)
    rcodes: list[int] = []
    done = 0
    while rounds is None or done < rounds:
        started = clock()
        for pool in health.pools:
            results = await asyncio.gather(*(probe(pool, m.address) for m in pool.members))
            reports = [
                CheckerReport(health.checker, pool.name, m.address, r.ok, clock(), r.detail)
                for m, r in zip(pool.members, results, strict=True)
            ]
            try:
                rcode = await asyncio.to_thread(send, reports)
            except (OSError, dns.exception.DNSException) as e:
                log.warning("pool %s: reports not sent: %s", pool.label, e)
                continue
            if rcode != dns.rcode.NOERROR:
                text = dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
                log.warning("pool %s: the primary answered %s", pool.label, text)
            rcodes.append(rcode)
        done += 1
        if rounds is None or done < rounds:
            await sleep(max(0.0, started + interval - clock()))
    return rcodes
