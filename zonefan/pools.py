"""Health-checked pools in the primary: where each pool lives, what it publishes, and the
change that publishes it.

The ``health`` package decides which members are healthy; this module turns that, minus
the regions drained by hand, into an ordinary changeset through the zone editor (validated,
signed when the zone is signed, journalled; the server then serves it and NOTIFYs, and the
sync sidecar follows). The same :func:`publish` and :func:`apply_pool` serve
``zonefan serve`` (a health decision) and ``zonefan drain``/``undrain`` (a drain), so
both make the same RRset from the same facts.

Who owns the RRset: the pool's name and type in the zone belong to the pool. The CLI's
record commands refuse to edit it (:func:`refuse_pool_rrset`); an RFC 2136 UPDATE that
an update-policy allows there is overwritten by the pool's next change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import click
import dns.name
import dns.rdataclass
import dns.rdatatype

from health import HealthConfig, HealthMonitor, Pool, PoolDecision, parse_health
from health.pool import Degraded, Event, Recovered, Transition
from nameserver.dnssec.manager import ManagerFactory
from nameserver.edit.editor import Author, ZoneEditor
from nameserver.errors import ConflictError, NameserverError
from nameserver.store.continuity import Drain, HealthEvent
from nameserver.store.storethread import StoreThread
from nameserver.store.versions import ZoneVersions, current_snapshot
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record, parse_rdata
from settings import SettingsError, Table
from signer.errors import SignerError
from zonefan.common import config_keys
from zonefan.health_remote import ReportIntake
from zonefan.options import config_of

log = logging.getLogger("zonefan.health")

_ATTEMPTS = 3  # commits against a zone other writers keep moving, as UPDATE retries


@dataclass(frozen=True)
class PoolState:
    """A pool's health by its checks, for the metrics (what it publishes, drains included,
    is the zone's own data); replaced whole on every decision, so a scrape on another
    thread reads one consistent value."""

    members: int
    healthy: int  # by the checks, before drains; 0 while every member is down
    degraded: bool


@dataclass(frozen=True)
class PlacedPool:
    """A pool and the zone of the store it is published in."""

    pool: Pool
    zone: dns.name.Name


def health_config(config: Table) -> HealthConfig:
    """The ``[health]`` and ``[pool."NAME"]`` tables of the settings file."""
    try:
        return parse_health(config)
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def place_pools(health: HealthConfig, zones: Collection[dns.name.Name]) -> list[PlacedPool]:
    """Each pool with the zone it belongs to (the longest zone name it is in); a pool in no
    zone of the store is an error naming the pool and what to do."""
    placed = []
    for pool in health.pools:
        owners = [z for z in zones if pool.name.is_subdomain(z)]
        if not owners:
            raise click.ClickException(
                f'pool."{pool.label}": no zone of the store contains {pool.label}; import '
                "its zone first (zonefan zone import) or fix the pool's name"
            )
        placed.append(PlacedPool(pool, max(owners, key=len)))
    return placed


def drained_addresses(placed: PlacedPool, drains: Sequence[Drain]) -> set[str]:
    """The members of the pool in a region drained in its zone."""
    regions = {d.region for d in drains if d.covers(placed.zone)}
    return {m.address for m in placed.pool.members if m.region in regions}


def publish(pool: Pool, healthy: Collection[str], drained: Collection[str]) -> list[str]:
    """The addresses to publish, in the configured order: the healthy members not drained;
    if none is healthy, every member not drained (never answer with nothing while one is
    left); empty only when every member is drained (a forced drain)."""
    live = [m.address for m in pool.members if m.address not in drained]
    return [a for a in live if a in healthy] or live


def pool_records(pool: Pool, addresses: Sequence[str]) -> list[Record]:
    """The RRset of the members at ``addresses`` (in the configured order): their
    addresses, or in a CNAME pool the first one's target alone (a CNAME is the name's only
    record, RFC 1034 §3.6.2: the pool fails over from one member to the next)."""
    by_address = {m.address: m for m in pool.members}
    chosen = addresses[:1] if pool.rdtype == dns.rdatatype.CNAME else addresses
    return [
        Record(pool.name, pool.ttl, parse_rdata(pool.rdtype, by_address[a].value, pool.name))
        for a in chosen
    ]


def apply_pool(
    editor: ZoneEditor, placed: PlacedPool, addresses: Sequence[str], author: Author
) -> Changeset | None:
    """Make the pool's RRset ``addresses`` (deleted when empty) as one changeset; None when
    the zone already says so. Retried when another writer committed meanwhile."""
    pool, wanted = placed.pool, pool_records(placed.pool, addresses)
    for attempt in range(_ATTEMPTS):
        snapshot = current_snapshot(editor.store, placed.zone, editor.versions)
        current = snapshot.rrset_records(pool.name, pool.rdtype)
        if {(r.ttl, r.rdata) for r in current} == {(r.ttl, r.rdata) for r in wanted}:
            return None
        try:
            return editor.set_rrset(placed.zone, pool.name, pool.rdtype, wanted, author)
        except ConflictError:
            if attempt == _ATTEMPTS - 1:
                raise
    return None  # pragma: no cover - the loop returns or raises


def refuse_pool_rrset(config: Table, owner: dns.name.Name, rdtype: int) -> None:
    """A record command about to edit a pool's RRset: refused, naming the pool."""
    for pool in health_config(config).pools:
        if pool.name == owner and pool.rdtype == rdtype:
            kind = dns.rdatatype.to_text(pool.rdtype)
            raise click.ClickException(
                f'{owner} {kind} belongs to pool."{pool.label}" of the config: its members '
                "are published by their health checks and drains; change the pool's members "
                "in the config, or use `zonefan drain`"
            )


def stored_events(events: Sequence[Event]) -> list[HealthEvent]:
    """A decision's events as the store keeps them."""
    out = []
    for e in events:
        if isinstance(e, Transition):
            what = "restored" if e.published else "withdrawn"
            m = e.member
            out.append(HealthEvent(e.at, e.pool, what, e.reason, m.address, m.region, e.checkers))
        elif isinstance(e, Degraded):
            out.append(HealthEvent(e.at, e.pool, "degraded", e.reason))
        elif isinstance(e, Recovered):
            out.append(HealthEvent(e.at, e.pool, "recovered", "a member is up again"))
    return out


def pool_runner(
    ctx: click.Context, zones: Collection[dns.name.Name], factory: ManagerFactory
) -> PoolRunner:
    """The health checks of ``zonefan serve`` for the pools of the settings file, committing
    through managers of ``factory``; an error names a pool outside the store's zones."""
    health = health_config(config_of(ctx))
    intake = ReportIntake(health, config_keys(ctx))
    return PoolRunner(ctx.obj, health, place_pools(health, zones), factory, intake=intake)


class PoolRunner:
    """The health checks of ``zonefan serve``: a companion of the server's event loop.

    Every store access and commit runs in one worker thread of its own (the loop never
    waits on SQLite or the signer, and pool changes are applied one at a time); commits
    by other processes are serialised by the store (a moved zone is retried)."""

    def __init__(
        self,
        store_path: str,
        health: HealthConfig,
        placed: Sequence[PlacedPool],
        factory: ManagerFactory,
        clock: Callable[[], float] = time.time,
        intake: ReportIntake | None = None,
    ) -> None:
        self.health = health
        # Remote checkers' reports (the server's health-report hook), once the checks run.
        self.intake = intake
        self.placed = {p.pool.name: p for p in placed}
        self.factory = factory
        self.clock = clock
        self._thread = StoreThread(store_path, "health")
        self._editor: ZoneEditor | None = None
        self.states: dict[dns.name.Name, PoolState] = {}

    async def run(self) -> None:
        """Publish every member not drained, then check until cancelled."""
        try:
            await self._thread.run(self.reconcile)
            monitor = HealthMonitor(self.health, self.on_change, clock=self.clock)
            if self.intake is not None:
                self.intake.attach(monitor)
            monitor.start()
            try:
                await asyncio.Event().wait()
            finally:
                await monitor.stop()
        finally:
            self._thread.close()

    async def on_change(self, decision: PoolDecision) -> None:
        await self._thread.run(self.apply, decision)

    # -- worker thread --------------------------------------------------------------------

    def editor(self) -> ZoneEditor:
        if self._editor is None:
            store = self._thread.store
            self._editor = self.factory(store, ZoneVersions(store)).editor()
        return self._editor

    def reconcile(self) -> None:
        """At start the checks have not run: every member not drained is published (a
        member withdrawn before a restart is withdrawn again after ``fall`` checks)."""
        editor = self.editor()
        drains = editor.store.drains()
        now = self.clock()
        for placed in self.placed.values():
            pool = placed.pool
            everyone = [m.address for m in pool.members]
            addresses = publish(pool, everyone, drained_addresses(placed, drains))
            self.states[pool.name] = PoolState(len(everyone), len(everyone), degraded=False)
            why = f"health checks started: {len(addresses)} of {len(pool.members)} members"
            editor.store.record_health([HealthEvent(now, pool.name, "started", why)])
            try:
                cs = apply_pool(editor, placed, addresses, Author(f"health:{pool.label}", why))
            except (NameserverError, SignerError) as e:
                log.error(
                    "pool %s: cannot publish its members in %s: %s", pool.label, placed.zone, e
                )
                continue
            if cs is not None:
                log.info("pool %s: %s (serial %d)", pool.label, why, cs.serial_after)

    def apply(self, decision: PoolDecision) -> Changeset | None:
        """One decision: its events stored, then the RRset it and the drains make."""
        placed = self.placed[decision.pool]
        editor = self.editor()
        events = stored_events(decision.events)
        if events:
            editor.store.record_health(events)  # kept even if the commit below fails
        drained = drained_addresses(placed, editor.store.drains())
        addresses = publish(placed.pool, decision.addresses, drained)
        healthy = 0 if decision.degraded else len(decision.addresses)
        members = len(placed.pool.members)
        self.states[decision.pool] = PoolState(members, healthy, decision.degraded)
        reason = decision.reason or "health checks changed the published members"
        cs = apply_pool(editor, placed, addresses, Author(decision.author, reason))
        if cs is not None:
            log.info("pool %s: serial %d: %s", placed.pool.label, cs.serial_after, reason)
        return cs
