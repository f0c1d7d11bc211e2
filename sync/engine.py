"""The push engine: keeps every target serving the primary's current zone.

One worker per target drains that target's outbox, so a slow or failing target never
delays the others. An attempt plans the difference between the zone and what the target
holds, checks safety and applies it. What the target holds is read from it on the first
attempt after a start, after any failure, after drift and when forced; otherwise it is what
the engine itself pushed there last, so a one-record change costs no read of a large zone.
A failure is retried with exponential backoff and jitter (at least the provider's
Retry-After) until the target converges. A refusal (:class:`~sync.errors.RefusedError`: a
target that cannot carry the zone, a request the target rejects, a plan over a safety
limit) is not retried on a timer: it is recorded as the (target, zone)'s state and tried
again only when something that could change the verdict changes: a new serial of the zone,
a start of the engine (the config or the provider may have changed), or ``sync apply``
(with ``--force`` for a safety refusal). A drift checker reads each converged target back
on an interval and repairs (or only reports) what changed there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import dns.name
import dns.rdatatype

from sync.errors import (
    CapabilityError,
    RefusalKind,
    RefusedError,
    SyncError,
    TargetError,
)
from sync.model import ZoneData
from sync.plan import Action, Plan, Safety, compute_plan
from sync.providers.base import DnssecMode, Held, RecordTarget, SecondaryTarget, Target
from sync.providers.capabilities import served
from sync.state import OutboxItem, SyncState

log = logging.getLogger("zonefan.sync")

DriftMode = Literal["repair", "report"]


class Fetched(Protocol):
    """What a zone source returns (``sync.source.Fetched``)."""

    @property
    def data(self) -> ZoneData: ...

    @property
    def method(self) -> str: ...


class ZoneFetcher(Protocol):
    """The primary, seen through DNS (``sync.source.ZoneSource``)."""

    async def serial(self, zone: dns.name.Name) -> int: ...

    async def fetch(self, zone: dns.name.Name, have: ZoneData | None) -> Fetched: ...


@dataclass
class TargetSpec:
    """A configured target and the engine's settings for it."""

    target: Target
    zones: frozenset[dns.name.Name] | None = None  # None: every zone
    drift: DriftMode = "repair"
    safety: Safety = field(default_factory=Safety)
    # Refuse a plan that would leave out RRsets of types the target cannot hold.
    strict: bool = False

    def serves(self, zone: dns.name.Name) -> bool:
        return self.zones is None or zone in self.zones


@dataclass(frozen=True)
class EngineSettings:
    """Timings (seconds)."""

    retry_base: float = 1.0
    retry_max: float = 300.0
    drift_interval: float = 300.0
    refresh_interval: float = 60.0
    secondary_wait: float = 30.0  # how long a provider-side secondary may take to transfer


@dataclass(frozen=True)
class Outcome:
    """The result of one push attempt: ``ok``, refused (``refused`` names the kind, see
    :class:`~sync.errors.RefusedError`) or failed (retried with backoff)."""

    target: str
    zone: str
    serial: int
    ok: bool
    detail: str
    refused: RefusalKind | None = None


def backoff(
    attempts: int, settings: EngineSettings, retry_after: float | None, rng: Callable[[], float]
) -> float:
    """Exponential backoff with equal jitter, never shorter than the provider's hint."""
    ceiling = min(settings.retry_max, settings.retry_base * math.pow(2, min(attempts, 30)))
    delay = ceiling / 2 + rng() * ceiling / 2
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


class SyncEngine:
    """Zones from ``source``, targets from ``targets``, progress in ``state``."""

    def __init__(
        self,
        state: SyncState,
        source: ZoneFetcher,
        zones: Iterable[dns.name.Name],
        targets: dict[str, TargetSpec],
        settings: EngineSettings | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        # ``clock`` and ``sleep`` together are the engine's time (a Retry-After hold, a
        # secondary's transfer wait, a worker's wait for its next due item): a test injects
        # both and moves time without waiting.
        self.state = state
        self.source = source
        self.zones = list(zones)
        self.targets = targets
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.rng = rng
        self.sleep = sleep
        self._data: dict[dns.name.Name, ZoneData] = {}
        self._wake = {name: asyncio.Event() for name in targets}
        self._refresh_locks = {zone: asyncio.Lock() for zone in self.zones}
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Per target: no request before this time (a Retry-After seen on any request).
        self._hold: dict[str, float] = {}
        # Held by a push; with the push count, keeps drift checks from judging a target in
        # the middle of a push.
        self._busy = {name: asyncio.Lock() for name in targets}
        self._pushes = dict.fromkeys(targets, 0)
        # Per (target, zone): the zone as the target holds it after our last push or read.
        # Planning against it costs no read; the drift check reads back on its interval.
        self._known: dict[tuple[str, dns.name.Name], Held[Any]] = {}
        # Told of every push attempt (the outcome and the seconds it took): the metrics.
        self.observers: list[Callable[[Outcome, float], None]] = []

    # -- zones ------------------------------------------------------------------------------

    def zone(self, name: dns.name.Name) -> ZoneData | None:
        """The local copy (memory first, then the state file)."""
        data = self._data.get(name)
        if data is None:
            data = self.state.zone(name)
            if data is not None:
                self._data[name] = data
        return data

    async def refresh_zone(self, zone: dns.name.Name) -> bool:
        """Transfer ``zone`` from the primary if it changed; queue a push to every target
        that serves it. True when a new serial arrived."""
        async with self._refresh_locks.setdefault(zone, asyncio.Lock()):
            have = self.zone(zone)
            fetched = await self.source.fetch(zone, have)
            data = fetched.data
            if have is not None and have.serial == data.serial:
                return False
            self.state.save_zone(data, fetched.method)
            self._data[zone] = data
            log.info("zone %s: serial %d by %s", zone, data.serial, fetched.method)
            self.queue_zone(zone, data.serial)
            return True

    def queue_zone(self, zone: dns.name.Name, serial: int, force: bool = False) -> None:
        for name, spec in self.targets.items():
            if spec.serves(zone):
                self.state.enqueue(name, zone, serial, force=force)
                self._wake[name].set()

    def queue_unconverged(self, force: bool = False) -> None:
        """Queue every (target, zone) whose pushed serial is not the local one (all of them
        with ``force``): what a start begins with. A refused one is among them: the config
        or the provider may have changed since, so each start judges it once again."""
        pushed = {(s.target, s.zone): s.pushed_serial for s in self.state.status()}
        for zone in self.zones:
            data = self.zone(zone)
            if data is None:
                continue
            for name, spec in self.targets.items():
                behind = pushed.get((name, zone.to_text())) != data.serial
                if spec.serves(zone) and (force or behind):
                    self.state.enqueue(name, zone, data.serial, force=force)
                    self._wake[name].set()

    # -- one attempt ------------------------------------------------------------------------

    def route(self, name: str, data: ZoneData) -> Target:
        """The target that takes ``data``, refusing one that cannot carry its signatures."""
        target = self.targets[name].target.for_zone(data.signed)
        mode = target.capabilities.dnssec
        if data.signed and mode not in (DnssecMode.PRESIGNED, DnssecMode.SECONDARY):
            raise CapabilityError(
                name,
                data.origin.to_text(),
                f"the zone is signed and the target's DNSSEC mode is {mode.value!r}: it "
                "cannot serve our DNSKEY/RRSIG/NSEC records, and serving the zone unsigned "
                "would make it bogus for validating resolvers once a DS is at the parent. "
                "Use a target that takes presigned data or transfers from the primary.",
            )
        return target

    async def plan(self, name: str, zone: dns.name.Name) -> Plan | None:
        """The plan that would run now for a record target (None for a secondary)."""
        data = self.require_zone(zone)
        target = self.route(name, data)
        if not isinstance(target, RecordTarget):
            return None
        held = await target.read(zone)
        return await target.preview(self._plan_for(name, target, data, held))

    def _plan_for(
        self, name: str, target: RecordTarget[Any], data: ZoneData, held: Held[Any] | None
    ) -> Plan:
        """The plan against what the target holds, in the provider's own terms: its
        normalized form of the zone, its own apex records out of both sides."""
        zone = data.origin
        caps = target.capabilities
        normalized = target.normalize(data)
        if normalized.unsupported and self.targets[name].strict:
            listed = ", ".join(
                f"{n.relativize(zone)} {dns.rdatatype.to_text(t)}"
                for n, t in normalized.unsupported[:10]
            )
            more = len(normalized.unsupported) - 10
            raise CapabilityError(
                name,
                zone.to_text(),
                f"it cannot hold {len(normalized.unsupported)} RRset(s) of the zone ("
                + listed
                + (f" and {more} more" if more > 0 else "")
                + "), and the target is strict: remove them from the zone, or set "
                f"strict = false in [target.{name}] to push the zone without them",
            )
        current = None if held is None else held.data
        if current is not None:
            theirs = [k for k in current.rrsets if caps.provider_owned(k, zone)]
            if theirs:
                kept = {k: r for k, r in current.rrsets.items() if k not in set(theirs)}
                current = ZoneData(current.origin, kept)
        plan = compute_plan(
            normalized.data,
            current,
            target=name,
            owned=self.state.owned(name, zone.to_text()),
            served=served(None if held is None else held.data, caps),
            serial=data.serial,
        )
        return dataclasses.replace(
            plan,
            unsupported=normalized.unsupported,
            provider_owned=normalized.provider_owned,
            ttls=normalized.ttls,
        )

    async def push(self, name: str, zone: dns.name.Name, force: bool = False) -> Outcome:
        """Make ``name`` serve the local copy of ``zone``; raise on failure."""
        data = self.require_zone(zone)
        target = self.route(name, data)
        await self._respect_hold(name)
        if isinstance(target, SecondaryTarget):
            detail = await self._converge_secondary(name, target, data)
        elif isinstance(target, RecordTarget):
            detail = await self._push_records(name, target, data, force)
        else:
            raise CapabilityError(name, zone.to_text(), "unknown kind of target")
        return Outcome(name, zone.to_text(), data.serial, True, detail)

    async def _push_records(
        self, name: str, target: RecordTarget[Any], data: ZoneData, force: bool
    ) -> str:
        zone = data.origin.to_text()
        # What we last pushed there, unless forced; popped so that a failure anywhere below
        # makes the next attempt read the target again.
        known = None if force else self._known.pop((name, data.origin), None)
        held = known if known is not None else await target.read(data.origin)
        plan = self._plan_for(name, target, data, held)
        self.targets[name].safety.check(plan, force=force)
        if plan.empty:
            self.state.pushed(name, zone, data.serial, detail="already current", digest=data.digest)
            if held is not None:
                self._known[(name, data.origin)] = held
            return "already current"
        self.state.own(name, zone, (c.key for c in plan.changes if c.action != Action.DELETE))
        after = await target.apply(plan, None if held is None else held.state)
        if data.signed:
            await self._verify_signed(name, target, data)
            after = None
        deleted = [c.key for c in plan.changes if c.action == Action.DELETE]
        self.state.pushed(
            name, zone, data.serial, deleted=deleted, detail=plan.summary(), digest=data.digest
        )
        if after is not None:
            self._known[(name, data.origin)] = after
        log.info("%s %s serial %d: %s", name, zone, data.serial, plan.summary())
        return plan.summary()

    async def _verify_signed(self, name: str, target: RecordTarget[Any], data: ZoneData) -> None:
        """Read a signed zone back after a push: a provider that silently drops records it
        was sent (Knot drops the RRSIGs of CNAME owners) would serve a bogus zone, so it is
        refused instead of being reported as current."""
        left = self._plan_for(name, target, data, await target.read(data.origin))
        if left.changes:
            sample = "; ".join(c.describe(data.origin)[:120] for c in left.changes[:3])
            raise CapabilityError(
                name,
                data.origin.to_text(),
                f"it did not keep {len(left.changes)} RRset(s) it was sent ({sample}), so "
                "validating resolvers would find the zone bogus there. Serve this signed zone "
                "from that provider as a secondary of the primary instead.",
            )

    async def _converge_secondary(self, name: str, target: SecondaryTarget, data: ZoneData) -> str:
        zone = data.origin
        created = await target.provision(zone)
        serial = await target.serial(zone)
        if serial != data.serial:
            await target.refresh(zone)
            serial = await self._wait_serial(target, zone, data.serial)
        if serial != data.serial:
            raise TargetError(
                name,
                f"zone {zone} serves serial {serial}, not {data.serial}, "
                f"{self.settings.secondary_wait:.0f} s after a refresh request",
            )
        # Also when the provider transferred before we asked (the primary's NOTIFY).
        await target.transferred(zone)
        detail = "provisioned and transferred" if created else "transferred"
        self.state.pushed(name, zone.to_text(), data.serial, detail=detail, digest=data.digest)
        return detail

    async def _wait_serial(
        self, target: SecondaryTarget, zone: dns.name.Name, want: int
    ) -> int | None:
        deadline = self.clock() + self.settings.secondary_wait
        serial: int | None = None
        delay = 0.05
        while self.clock() < deadline:
            serial = await target.serial(zone)
            if serial == want:
                return serial
            await self.sleep(delay)
            delay = min(delay * 2, 0.1)  # a transfer takes a fraction of a second
        return serial

    def require_zone(self, zone: dns.name.Name) -> ZoneData:
        data = self.zone(zone)
        if data is None:
            raise SyncError(f"zone {zone} has not been transferred from the primary yet")
        return data

    async def attempt(self, item: OutboxItem) -> Outcome:
        """One try at an outbox item; failures are recorded and rescheduled, refusals
        recorded and unscheduled, neither raised. Each observer is told the outcome and
        how long the attempt took, in the engine's time."""
        started = self.clock()
        outcome = await self._attempt(item)
        took = self.clock() - started
        for observe in self.observers:
            observe(outcome, took)
        return outcome

    async def _attempt(self, item: OutboxItem) -> Outcome:
        zone = dns.name.from_text(item.zone)
        try:
            return await self.push(item.target, zone, force=item.force)
        except RefusedError as exc:
            # Retrying cannot help until the zone, the config or an operator's --force does.
            self.state.refused(item.target, item.zone, item.serial, str(exc), exc.kind)
            log.error("%s", exc)
            return Outcome(item.target, item.zone, item.serial, False, str(exc), exc.kind)
        except TargetError as exc:
            self._note_retry_after(item.target, exc)
            return self._failed(item, str(exc), exc.retry_after)
        except SyncError as exc:
            return self._failed(item, str(exc), None)
        except Exception as exc:  # a worker must survive anything a provider library raises
            message = f"target {item.target}: unexpected {type(exc).__name__}: {exc}"
            log.exception("%s", message)
            return self._failed(item, message, None)

    def _failed(self, item: OutboxItem, message: str, retry_after: float | None) -> Outcome:
        delay = backoff(item.attempts, self.settings, retry_after, self.rng)
        self.state.defer(item.target, item.zone, item.serial, message, delay)
        log.warning("%s (attempt %d, next in %.1f s)", message, item.attempts + 1, delay)
        return Outcome(item.target, item.zone, item.serial, False, message)

    def _note_retry_after(self, name: str, exc: TargetError) -> None:
        if exc.retry_after is not None:
            self._hold[name] = max(self._hold.get(name, 0.0), self.clock() + exc.retry_after)

    async def _respect_hold(self, name: str) -> None:
        """Wait out a provider's Retry-After, whichever request of ours received it."""
        wait = self._hold.get(name, 0.0) - self.clock()
        if wait > 0:
            await self.sleep(wait)

    # -- drift ------------------------------------------------------------------------------

    async def check_drift(self, name: str, zone: dns.name.Name) -> str | None:
        """Read ``name`` back and compare with the local copy; record and (per the target's
        setting) repair what differs. Returns the drift found, None when there is none."""
        data = self.require_zone(zone)
        target = self.route(name, data)
        pushes = self._pushes[name]
        if isinstance(target, SecondaryTarget):
            serial = await target.serial(zone)
            found = None if serial == data.serial else f"serves serial {serial}, not {data.serial}"
        elif isinstance(target, RecordTarget):
            held = await target.read(zone)
            plan = self._plan_for(name, target, data, held)
            found = None if plan.empty else f"{plan.summary()}: " + "; ".join(plan.lines()[:5])
        else:
            found = None
        if self._pushes[name] != pushes or self._busy[name].locked():
            return None  # a push ran meanwhile: what we read may be half of it
        self.state.drift(name, zone.to_text(), data.serial, found)
        if found is None:
            if isinstance(target, RecordTarget) and held is not None:
                self._known[(name, zone)] = held
        else:
            self._known.pop((name, zone), None)
            log.warning("drift at %s for %s: %s", name, zone, found)
            if self.targets[name].drift == "repair":
                self.state.enqueue(name, zone, data.serial)
                self._wake[name].set()
        return found

    async def check_all_drift(self) -> None:
        """Drift check of every converged (target, zone) with nothing pending; targets in
        parallel, a target busy pushing is skipped this round."""
        pending = {(i.target, i.zone) for i in self.state.pending()}
        due: dict[str, list[dns.name.Name]] = {}
        for status in self.state.status():
            zone = dns.name.from_text(status.zone)
            data = self.zone(zone)
            if (
                status.target in self.targets
                and data is not None
                and (status.target, status.zone) not in pending
                and status.pushed_serial == data.serial
            ):
                due.setdefault(status.target, []).append(zone)
        await asyncio.gather(*(self._drift_target(name, zones) for name, zones in due.items()))

    async def _drift_target(self, name: str, zones: list[dns.name.Name]) -> None:
        # No lock: a push never waits for a read-back (a dead provider's read can take a
        # timeout); check_drift drops a result that a push overlapped instead.
        for zone in zones:
            if self._busy[name].locked():
                return
            try:
                await self._respect_hold(name)
                await self.check_drift(name, zone)
            except TargetError as exc:
                self._note_retry_after(name, exc)
                log.warning("drift check of %s at %s failed: %s", zone, name, exc)
            except SyncError as exc:
                log.warning("drift check of %s at %s failed: %s", zone, name, exc)

    # -- loops ------------------------------------------------------------------------------

    async def drain(
        self,
        names: Iterable[str] | None = None,
        deadline: float = 60.0,
        zones: Iterable[dns.name.Name] | None = None,
    ) -> list[Outcome]:
        """Attempt every outbox item of ``names`` (all targets) for ``zones`` (all zones)
        once, due or not, targets in parallel: what ``sync apply`` runs."""
        chosen = list(names) if names is not None else list(self.targets)
        wanted = None if zones is None else {z.to_text() for z in zones}

        async def one_target(name: str) -> list[Outcome]:
            items = self.state.pending(name)
            return [
                await self.attempt(item) for item in items if wanted is None or item.zone in wanted
            ]

        results = await asyncio.wait_for(
            asyncio.gather(*(one_target(n) for n in chosen)), timeout=deadline
        )
        return [o for part in results for o in part]

    async def worker(self, name: str) -> None:
        """Drain ``name``'s outbox for as long as the engine runs."""
        wake = self._wake[name]
        while not self._stopping.is_set():
            wake.clear()
            now = self.clock()
            for item in self.state.pending(name):
                if item.next_attempt <= now and not self._stopping.is_set():
                    async with self._busy[name]:
                        self._pushes[name] += 1
                        await self.attempt(item)
            upcoming = [i.next_attempt for i in self.state.pending(name)]
            wait = min(upcoming) - self.clock() if upcoming else self.settings.refresh_interval
            if wait > 0:
                await self._wait_or_wake(wake, wait)

    async def _wait_or_wake(self, wake: asyncio.Event, seconds: float) -> None:
        """``seconds`` of the engine's time (its ``sleep``), or less if ``wake`` is set."""
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()

    async def poller(self) -> None:
        """Ask the primary for each zone's serial every refresh interval (the fallback for a
        lost NOTIFY) and transfer what changed."""
        while not self._stopping.is_set():
            for zone in self.zones:
                await self._refresh_logged(zone)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.refresh_interval)

    async def drift_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.drift_interval)
            if not self._stopping.is_set():
                await self.check_all_drift()

    async def _refresh_logged(self, zone: dns.name.Name) -> None:
        try:
            await self.refresh_zone(zone)
        except SyncError as exc:
            log.warning("refresh of %s failed: %s", zone, exc)

    def notified(self, zone: dns.name.Name, serial: int | None) -> None:
        """A NOTIFY arrived: transfer the zone now (in the background)."""
        if zone in self._refresh_locks:
            task = asyncio.get_running_loop().create_task(self._refresh_logged(zone))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def open_targets(self) -> None:
        """Open every target (connections, credentials): a bad one raises at start."""
        await asyncio.gather(*(spec.target.open() for spec in self.targets.values()))

    async def close_targets(self) -> None:
        for spec in self.targets.values():
            with contextlib.suppress(Exception):
                await spec.target.close()

    async def run(self) -> None:
        """The sidecar: transfer, queue what is behind, then workers, poller and drift
        checker until :meth:`stop`."""
        for zone in self.zones:
            await self._refresh_logged(zone)
        self.queue_unconverged()
        tasks = [asyncio.create_task(self.worker(n)) for n in self.targets]
        tasks += [asyncio.create_task(self.poller()), asyncio.create_task(self.drift_loop())]
        try:
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
