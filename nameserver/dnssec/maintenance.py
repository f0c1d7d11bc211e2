"""DNSSEC maintenance while ``zonefan serve`` runs: each signed zone is maintained when its
next key event or signature refresh falls due, so no signature is ever served expired.

One worker thread with its own store connection does the work (signing a large zone
takes seconds, the event loop must keep answering). Its commits reach the listeners
like any other commit, through the store follower. Zones signed meanwhile by another
process, and operator key changes (``zonefan keys rollover``), are noticed by a
periodic rescan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass

import dns.name

from nameserver.dnssec.manager import DnssecManager, ManagerFactory
from nameserver.edit.editor import Author
from nameserver.errors import NameserverError
from nameserver.store.storethread import StoreThread
from nameserver.store.versions import SnapshotSource, ZoneVersions
from nameserver.zone.serial import Clock
from signer.policy import DsCheck

log = logging.getLogger(__name__)

AUTHOR = Author("zonefan-maintenance", "scheduled DNSSEC maintenance")


@dataclass(frozen=True)
class MaintenanceTiming:
    """How often the scheduler looks, in seconds."""

    rescan: float = 60.0  # look for newly signed zones and changed keys
    min_interval: float = 60.0  # never maintain one zone more often (no hot loop)
    retry: float = 300.0  # after a failed run
    idle: float = 86400.0  # when a zone names no next event


@dataclass
class _ZoneState:
    due: float
    keys: tuple[object, ...]  # the key rows at the last run: a change makes the zone due
    ds_check: float | None = None  # when to ask the parent for an awaited DS change


class MaintenanceScheduler:
    """Runs :meth:`DnssecManager.maintain` for every signed zone when it falls due."""

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        manager_factory: ManagerFactory,
        clock: Clock = time.time,
        timing: MaintenanceTiming | None = None,
        shared: SnapshotSource | None = None,
    ) -> None:
        self._shared = shared  # the server's served snapshots: no second copy of each zone
        self._factory = manager_factory
        self._clock = clock
        self._timing = timing or MaintenanceTiming()
        self._thread = StoreThread(store_path, "dnssec")
        self._manager: DnssecManager | None = None
        self._zones: dict[dns.name.Name, _ZoneState] = {}
        self._stopping = threading.Event()
        self._wake = asyncio.Event()
        self._rescan_now = False
        self.runs = 0  # maintenance runs finished, failed ones included

    async def run(self) -> None:
        """Loop until :meth:`stop`: rescan, maintain what is due, sleep until the next."""
        next_rescan = 0.0
        while not self._stopping.is_set():
            now = self._clock()
            if now >= next_rescan or self._rescan_now:
                self._rescan_now = False
                await self._thread.run(self._rescan, now)
                next_rescan = now + self._timing.rescan
            for origin in self._due(now):
                await self._thread.run(self._maintain, origin)
                if self._stopping.is_set():
                    return
            wait = min([next_rescan, *(z.due for z in self._zones.values())]) - self._clock()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.0))

    def wake(self, rescan: bool = False) -> None:
        """Look at the due times again now (after the clock moved), rescanning the store
        first when ``rescan``."""
        if rescan:
            self._rescan_now = True
        self._wake.set()

    def stop(self) -> None:
        """End :meth:`run` after the zone being maintained (if any)."""
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        """Close the worker's store connection and the thread."""
        self._thread.close()

    def due_times(self) -> dict[dns.name.Name, float]:
        """When each known signed zone is next maintained."""
        return {origin: state.due for origin, state in self._zones.items()}

    def _due(self, now: float) -> list[dns.name.Name]:
        return sorted((o for o, z in self._zones.items() if z.due <= now), key=self._order)

    def _order(self, origin: dns.name.Name) -> float:
        return self._zones[origin].due

    # -- worker thread ------------------------------------------------------------------

    def _open(self) -> DnssecManager:
        if self._manager is None:
            store = self._thread.store
            self._manager = self._factory(store, ZoneVersions(store, self._shared))
        return self._manager

    def _rescan(self, now: float) -> None:
        """Zones newly signed, whose keys an operator changed or whose signature
        lifetimes a change moved are due now; zones no longer signed are dropped."""
        try:
            manager = self._open()
            signed = [o for o in manager.store.zone_names() if manager.signs(o)]
        except Exception:  # a store that cannot be read now may be readable at the next scan
            log.exception("DNSSEC maintenance: cannot list the signed zones; will retry")
            return
        for origin in list(self._zones):
            if origin not in signed:
                del self._zones[origin]
        for origin in signed:
            state = self._zones.get(origin)
            keys = _key_fingerprint(manager, origin)
            if state is None or state.keys != keys:
                self._zones[origin] = _ZoneState(now, keys)

    def _maintain(self, origin: dns.name.Name) -> None:
        manager = self._open()
        now = self._clock()
        timing = self._timing
        state = self._zones.get(origin)
        if state is not None and state.ds_check is not None and state.ds_check <= now:
            _check_parent(manager, origin)
        try:
            result = manager.maintain(origin, AUTHOR)
        except Exception:  # one zone's failure must not stop the others or the server
            log.exception(
                "DNSSEC maintenance of %s failed; retrying in %.0f s", origin, timing.retry
            )
            self._zones[origin] = _ZoneState(now + timing.retry, _key_fingerprint(manager, origin))
            self.runs += 1
            return
        if result.serial is not None:
            done = ", ".join(f"{a.kind.value} {a.key_id or a.role.name}" for a in result.actions)
            log.info("DNSSEC maintenance of %s: serial %d %s", origin, result.serial, done)
        for note in result.plan.notes:
            log.info("DNSSEC %s: %s", origin, note)
        due = now + timing.idle if result.next_due is None else float(result.next_due)
        ds_check = None
        policy = manager.policy(origin)
        if result.plan.ds_watch and policy.ds_check is DsCheck.AUTO:
            # The parent is not asked at once: a DS submitted now is not there yet.
            ds_check = now + policy.ds_check_interval
            due = min(due, ds_check)
        due = max(due, now + timing.min_interval)
        self._zones[origin] = _ZoneState(due, _key_fingerprint(manager, origin), ds_check)
        self.runs += 1


def _check_parent(manager: DnssecManager, origin: dns.name.Name) -> None:
    """Ask the parent for the awaited DS changes; a failure is logged, and the check is
    asked again at the next interval (nothing is recorded from a partial answer)."""
    try:
        report = manager.check_parent_ds(origin)
    except NameserverError as e:
        log.warning("DS check of %s at the parent failed: %s", origin, e)
        return
    for key_id, what in report.recorded:
        log.info("DS of %s key %s %s at the parent", origin, key_id, what)
    if report.result is not None and not report.recorded:
        log.info("DS check of %s: the parent has not changed yet", origin)


def _key_fingerprint(manager: DnssecManager, origin: dns.name.Name) -> tuple[object, ...]:
    keys = tuple((k.id, tuple(sorted(k.times.items()))) for k in manager.store.keys(origin))
    # The signature lifetimes follow the zone's EXPIRE and TTLs: a change that moves them
    # moves the next refresh too, so the zone is due again.
    return (*keys, manager.lifetimes(origin))
