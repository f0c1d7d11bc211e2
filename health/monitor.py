"""The scheduler: each pool's members probed every interval, decisions handed on when
what a pool publishes changes.

Time is injected (``clock``, ``sleep``) as in the sync engine, so a test moves a fake clock
instead of waiting. Probes are bounded in total (``max-probes``) and per pool
(``pool-probes``); each pool starts at a random point of its first interval so pools with
the same interval do not probe in bursts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import dns.name

from health.config import HealthConfig, Pool
from health.errors import ReportError
from health.pool import CheckerReport, PoolDecision, PoolHealth
from health.probes import ProbeResult, run_probe

log = logging.getLogger("zonefan.health")

Probe = Callable[[Pool, str], Awaitable[ProbeResult]]
OnChange = Callable[[PoolDecision], Awaitable[None]]
# A remote report may be timed this far ahead of our clock (clocks of hosts differ a little).
MAX_SKEW = 30.0


async def probe_member(pool: Pool, address: str) -> ProbeResult:
    return await run_probe(pool.check, address)


def uniform_jitter(interval: float) -> float:
    return random.uniform(0, interval)


class HealthMonitor:
    """Probes every pool of ``config`` and calls ``on_change`` with a pool's decision when
    the addresses it publishes change or it has events (a member withdrawn or restored,
    the pool degraded), and again next round if ``on_change`` failed."""

    def __init__(
        self,
        config: HealthConfig,
        on_change: OnChange,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        probe: Probe = probe_member,
        jitter: Callable[[float], float] = uniform_jitter,
    ) -> None:
        self.config = config
        self.on_change = on_change
        self.clock = clock
        self.sleep = sleep
        self.probe = probe
        self.jitter = jitter
        self.pools = {
            p.name: PoolHealth(p, config.checkers, config.stale_intervals) for p in config.pools
        }
        self.rounds = dict.fromkeys(self.pools, 0)  # completed rounds per pool
        self.last: dict[dns.name.Name, PoolDecision] = {}
        self._undelivered: set[dns.name.Name] = set()
        self._failing: dict[dns.name.Name, str] = {}  # the error each undelivered pool had
        self._total = asyncio.Semaphore(config.max_probes)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """One task per pool, in the running loop."""
        if self._tasks:
            return
        for name in self.pools:
            self._tasks.append(asyncio.create_task(self._run(name), name=f"health {name}"))

    async def stop(self) -> None:
        """Cancel every pool's task and wait for them to end."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def observe(self, report: CheckerReport) -> None:
        """A remote checker's result (its transport has authenticated it)."""
        self.observe_all([report])

    def observe_all(self, reports: Sequence[CheckerReport]) -> None:
        """Remote checkers' results, taken all or none: every one is checked first."""
        now = self.clock()
        checked = []
        for report in reports:
            try:
                checked.append((self._accepted(report, now), report))
            except ReportError as e:
                raise ReportError(f"report of checker {report.checker!r}: {e}") from None
        for health, r in checked:
            health.observe(r.checker, r.address, r.ok, r.at, r.detail)

    def _accepted(self, report: CheckerReport, now: float) -> PoolHealth:
        """The pool ``report`` is about, when it may be taken; a ReportError otherwise."""
        if report.checker == self.config.checker:
            raise ReportError(f"{report.checker!r} is this checker's own id")
        health = self.pools.get(report.pool)
        if health is None:
            raise ReportError(f"no pool {report.pool}")
        if report.at > now + MAX_SKEW:
            raise ReportError(f"report of {report.checker} is {report.at - now:.0f}s ahead")
        if report.at < now - health.stale_after:
            raise ReportError(f"report of {report.checker} is older than {health.stale_after:g}s")
        health.accepts(report.checker, report.address)
        return health

    async def _run(self, name: dns.name.Name) -> None:
        interval = self.pools[name].pool.check.interval
        await self.sleep(self.jitter(interval))
        while True:
            started = self.clock()
            await self.check(name)
            await self.sleep(max(0.0, started + interval - self.clock()))

    async def check(self, name: dns.name.Name) -> PoolDecision:
        """One round for pool ``name``: probe every member, decide, hand on a change."""
        health = self.pools[name]
        pool = health.pool
        per_pool = asyncio.Semaphore(self.config.pool_probes)

        async def one(address: str) -> None:
            async with per_pool, self._total:
                try:
                    result = await self.probe(pool, address)
                except Exception as exc:  # a probe bug must not stop the pool's checks
                    log.exception("pool %s: probe of %s failed", pool.label, address)
                    result = ProbeResult(False, f"probe error: {type(exc).__name__}")
            health.observe(self.config.checker, address, result.ok, self.clock(), result.detail)

        await asyncio.gather(*(one(m.address) for m in pool.members))
        decision = health.decide(self.clock())
        # Events alone are handed on too: every member down in one round changes nothing
        # published, and that degraded episode must still be recorded.
        if decision.changed or decision.events or name in self._undelivered:
            if name in self._undelivered:
                decision = dataclasses.replace(decision, changed=True)
            try:
                await self.on_change(decision)
            except Exception as exc:  # kept for the next round, not lost
                self._undelivered.add(name)
                self._failed(name, exc)
            else:
                self._undelivered.discard(name)
                if self._failing.pop(name, None) is not None:
                    log.info("pool %s: its decisions are applied again", pool.label)
        self.last[name] = decision
        self.rounds[name] += 1
        return decision

    def _failed(self, name: dns.name.Name, exc: Exception) -> None:
        """A decision that could not be applied is retried every round; logged when its
        error is new (with the traceback), not once a round."""
        text = f"{type(exc).__name__}: {exc}"
        if self._failing.get(name) == text:
            return
        self._failing[name] = text
        log.error(
            "pool %s: applying the decision failed (retried every round, logged again when "
            "the error changes): %s",
            self.pools[name].pool.label,
            text,
            exc_info=exc,
        )
