"""The sync engine against in-memory targets: plans, safety, ownership, retries, crash
resume, parallelism, drift. Real providers are exercised in test_sync_powerdns.py,
test_sync_rfc2136.py and test_sync_e2e.py; here the engine's own decisions are checked."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine import EngineSettings, SyncEngine, TargetSpec, backoff
from sync.errors import (
    CapabilityError,
    PlanRefusedError,
    TargetRateLimitedError,
    TargetUnavailableError,
)
from sync.model import RRset, ZoneData, sort_key
from sync.plan import Action, Plan, Safety, compute_plan
from sync.providers.base import Capabilities, DnssecMode, Held, SecondaryTarget
from sync.providers.capabilities import normalize
from sync.providers.testkit.memory import Fault, MemoryTarget, StaticSource
from sync.state import SCHEMA_VERSION, SyncState, TargetStatus
from sync.status import ZoneStatus, target_rows
from tests.clock import FakeClock
from tests.wait import until

ORIGIN = dns.name.from_text("example.test.")
FAST = EngineSettings(retry_base=0.05, retry_max=0.2, refresh_interval=0.2, drift_interval=0.2)


def zone(serial: int, hosts: int = 12, extra: dict[str, str] | None = None) -> ZoneData:
    """A zone with ``hosts`` A records (h0..), plus ``extra`` {owner: TXT text}."""
    sets = [
        RRset.from_text("@", "SOA", 300, [f"ns1 hostmaster {serial} 7200 3600 432000 300"], ORIGIN),
        RRset.from_text("@", "NS", 300, ["ns1", "ns2"], ORIGIN),
    ]
    sets += [RRset.from_text(f"h{i}", "A", 300, [f"192.0.2.{i + 1}"], ORIGIN) for i in range(hosts)]
    sets += [RRset.from_text(o, "TXT", 60, [f'"{t}"'], ORIGIN) for o, t in (extra or {}).items()]
    return ZoneData.build(ORIGIN, sets)


def signed(data: ZoneData) -> ZoneData:
    key = RRset.from_text("@", "DNSKEY", 300, ["257 3 13 " + "A" * 88], ORIGIN)
    return ZoneData.build(ORIGIN, [*data, key])


class MemorySecondary(SecondaryTarget):
    """A provider-side secondary that takes ``lag`` serial queries to "transfer" after a
    refresh request; records every call."""

    def __init__(self, name: str, lag: int) -> None:
        super().__init__(name, Capabilities(dnssec=DnssecMode.SECONDARY))
        self.lag = lag
        self.served: int | None = None
        self.wanted: int | None = None
        self.calls: list[str] = []

    async def provision(self, zone: dns.name.Name) -> bool:
        self.calls.append("provision")
        return False

    async def refresh(self, zone: dns.name.Name) -> None:
        self.calls.append("refresh")

    async def serial(self, zone: dns.name.Name) -> int | None:
        self.calls.append("serial")
        if self.lag > 0:
            self.lag -= 1
        elif self.wanted is not None:
            self.served = self.wanted
        return self.served

    async def transferred(self, zone: dns.name.Name) -> None:
        self.calls.append("transferred")

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        return []


def engine_for(
    tmp_path: Path,
    source: StaticSource,
    *targets: MemoryTarget,
    clock: FakeClock | None = None,
    **spec: object,
) -> SyncEngine:
    """An engine whose time (its own and its state's) is ``clock`` (a fresh fake clock by
    default) and whose jitter is fixed at the middle of its range."""
    clock = clock or FakeClock()
    state = SyncState(tmp_path / "sync.db", clock=clock)
    specs = {t.name: TargetSpec(target=t, **spec) for t in targets}  # type: ignore[arg-type]
    return SyncEngine(
        state, source, [ORIGIN], specs, FAST, clock=clock, rng=lambda: 0.5, sleep=clock.sleep
    )


class GatedTarget(MemoryTarget):
    """A target whose applies wait until the test opens ``gate``; ``entered`` is set when
    an apply has begun."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def apply(self, plan: Plan, state: int | None) -> Held[int] | None:
        self.entered.set()
        await self.gate.wait()
        return await super().apply(plan, state)


def as_dict(target: MemoryTarget) -> dict[tuple[dns.name.Name, dns.rdatatype.RdataType], RRset]:
    assert target.data is not None
    return target.data


# -- plans and safety ----------------------------------------------------------------------


def test_plan_orders_deletes_updates_creates_and_leaves_foreign_records() -> None:
    current = zone(1, hosts=4, extra={"mine": "old", "theirs": "manual"})
    desired = zone(2, hosts=3, extra={"new": "x"})
    owned = {k for k in current.rrsets if k[0] != dns.name.from_text("theirs", ORIGIN)}
    plan = compute_plan(desired, current, target="t", owned=owned)
    kinds = [(c.action, c.name.relativize(ORIGIN).to_text(), c.rdtype) for c in plan.changes]
    assert kinds == [
        (Action.DELETE, "h3", dns.rdatatype.A),
        (Action.DELETE, "mine", dns.rdatatype.TXT),
        (Action.UPDATE, "@", dns.rdatatype.SOA),
        (Action.CREATE, "new", dns.rdatatype.TXT),
    ]
    assert plan.foreign == ((dns.name.from_text("theirs", ORIGIN), dns.rdatatype.TXT),)
    assert any("theirs TXT not managed by zonefan" in line for line in plan.lines())
    # The same inputs give the same plan.
    assert compute_plan(desired, current, target="t", owned=owned) == plan


def test_safety_refuses_mass_deletion_and_apex_ns_unless_forced() -> None:
    current = zone(1, hosts=20)
    owned = set(current.rrsets)
    half = zone(2, hosts=10)
    plan = compute_plan(half, current, target="t", owned=owned)
    with pytest.raises(
        PlanRefusedError, match=r"deletes or replaces 10 of 21 RRsets \(48% > 30%\)"
    ):
        Safety().check(plan)
    Safety().check(plan, force=True)
    Safety(max_share=0.5).check(plan)
    ns = ZoneData.build(
        ORIGIN,
        [
            *zone(2, hosts=20).without_types(frozenset({dns.rdatatype.NS})),
            RRset.from_text("@", "NS", 300, ["ns1", "ns3"], ORIGIN),
        ],
    )
    with pytest.raises(PlanRefusedError, match="apex NS"):
        Safety().check(compute_plan(ns, current, target="t", owned=owned))
    # Small zones and a re-sign of every signature are not refused.
    Safety().check(compute_plan(zone(2, hosts=2), zone(1, hosts=7), target="t", owned=owned))
    # Nor is anything for a zone the target holds without an SOA, so does not serve (a
    # staged creation cut short): here the apex NS and half the data still to come.
    unserved = ZoneData(ORIGIN, {k: v for k, v in half.rrsets.items() if k[1] == dns.rdatatype.A})
    plan = compute_plan(ns, unserved, target="t", owned=owned)
    assert not plan.served and not plan.create_zone
    Safety().check(plan)
    assert compute_plan(ns, current, target="t", owned=owned).served


# -- the engine ----------------------------------------------------------------------------


async def test_push_creates_zone_then_plans_nothing(tmp_path: Path) -> None:
    source = StaticSource(zone(1))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target)
    await engine.refresh_zone(ORIGIN)
    outcomes = await engine.drain()
    assert [o.ok for o in outcomes] == [True]
    assert as_dict(target) == dict(zone(1).rrsets)
    plan = await engine.plan("a", ORIGIN)
    assert plan is not None and plan.empty
    status = engine.state.status()
    assert [(s.target, s.pushed_serial, s.last_error) for s in status] == [("a", 1, None)]
    assert status[0].pushed_digest == zone(1).digest != zone(2).digest


async def test_failing_target_is_retried_with_backoff_and_retry_after(tmp_path: Path) -> None:
    """A failure is rescheduled by the backoff; a 429's Retry-After outlasts the backoff,
    in the outbox and as a hold that the next request to the target waits out."""
    clock = FakeClock()
    source = StaticSource(zone(1))
    target = MemoryTarget("a")
    target.faults = [
        Fault(TargetUnavailableError("a", "HTTP 500"), 1),
        Fault(TargetRateLimitedError("a", "HTTP 429", retry_after=30.0), 1),
    ]
    engine = engine_for(tmp_path, source, target, clock=clock)
    await engine.refresh_zone(ORIGIN)
    (first,) = await engine.drain()
    assert not first.ok and "HTTP 500" in first.detail
    (item,) = engine.state.pending("a")
    assert item.attempts == 1
    assert item.next_attempt == clock() + backoff(0, FAST, None, lambda: 0.5)
    clock.advance(item.next_attempt - clock())  # the worker's wait, without waiting
    (second,) = await engine.drain()
    assert not second.ok and "429" in second.detail
    (item,) = engine.state.pending("a")
    assert backoff(1, FAST, None, lambda: 0.5) < 30.0
    assert item.next_attempt == clock() + 30.0  # Retry-After honoured over the backoff
    assert clock.waits == []
    # Tried at once (as `sync apply` does): the push first waits out the hold.
    (third,) = await engine.drain()
    assert third.ok
    assert clock.waits == [30.0]
    assert engine.state.pending() == []
    assert set(target.writes.values()) == {1}  # every RRset written exactly once


async def test_a_secondary_is_told_of_its_transfer_only_once_it_serves_the_serial(
    tmp_path: Path,
) -> None:
    """The hook where pdns drops answers cached from before its transfer runs after the new
    serial is seen, whether the provider transferred on our request or before it; never
    for a provider still behind."""
    source = StaticSource(zone(1))
    late = MemorySecondary("late", lag=2)
    late.wanted = 1
    early = MemorySecondary("early", lag=0)
    early.wanted = 1
    stuck = MemorySecondary("stuck", lag=10**6)
    clock = FakeClock()
    state = SyncState(tmp_path / "sync.db", clock=clock)
    specs = {t.name: TargetSpec(target=t) for t in (late, early, stuck)}
    settings_ = EngineSettings(retry_base=0.05, retry_max=0.2, secondary_wait=30.0)
    engine = SyncEngine(state, source, [ORIGIN], specs, settings_, clock=clock, sleep=clock.sleep)
    await engine.refresh_zone(ORIGIN)
    started = clock()
    outcomes = {o.target: o for o in await engine.drain()}
    assert {name: o.ok for name, o in outcomes.items()} == {
        "late": True,
        "early": True,
        "stuck": False,
    }
    assert late.calls == ["provision", "serial", "refresh", "serial", "serial", "transferred"]
    assert early.calls == ["provision", "serial", "transferred"]
    assert "transferred" not in stuck.calls and "refresh" in stuck.calls
    # The stuck one was asked every 0.1 s (at most) of the engine's clock until the
    # secondary wait had passed, and given up on then (the late one's wait shares the clock).
    assert "30 s after a refresh request" in outcomes["stuck"].detail
    waited = clock() - started
    assert settings_.secondary_wait <= waited <= settings_.secondary_wait + 0.1 + 0.05
    assert 300 <= stuck.calls.count("serial") - 1 <= 302


class TimedTarget(MemoryTarget):
    """Notes the engine's time of each attempt (each read of the target)."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        super().__init__(name)
        self.clock = clock
        self.tried_at: list[float] = []

    async def read(self, zone: dns.name.Name) -> Held[int] | None:
        self.tried_at.append(self.clock())
        return await super().read(zone)


async def test_the_worker_retries_each_failure_when_it_falls_due(tmp_path: Path) -> None:
    """The worker waits on the engine's clock: each retry when the backoff set it, not
    before even when woken early (as another zone's new serial wakes it), and not later."""
    clock = FakeClock(0.0, manual=True)
    target = TimedTarget("a", clock)
    target.faults = [Fault(TargetUnavailableError("a", "HTTP 503"), 2)]
    engine = engine_for(tmp_path, StaticSource(zone(1)), target, clock=clock)
    await engine.refresh_zone(ORIGIN)
    first, second = (backoff(n, FAST, None, lambda: 0.5) for n in (0, 1))
    worker = asyncio.create_task(engine.worker("a"))
    try:
        await until(lambda: clock.waits == [first], "the worker waits out the first failure")
        engine._wake["a"].set()  # woken before the retry is due: it looks, and waits again
        await until(lambda: len(clock.waits) == 2, "the worker waits again")
        assert clock.waits == [first, first] and target.tried_at == [0.0]
        clock.advance(first)
        await until(lambda: len(target.tried_at) == 2, "the second attempt")
        await until(lambda: len(clock.waits) == 3, "the worker waits out the second failure")
        assert clock.waits[2] == second
        clock.advance(second)
        await until(lambda: target.data is not None, "the third attempt pushed the zone")
    finally:
        worker.cancel()  # as run() ends its workers
        await asyncio.gather(worker, return_exceptions=True)
    assert target.tried_at == [0.0, first, first + second]


def test_backoff_grows_is_capped_and_jittered() -> None:
    settings = EngineSettings(retry_base=1, retry_max=60)
    assert backoff(0, settings, None, lambda: 0.0) == 0.5
    assert backoff(3, settings, None, lambda: 1.0) == 8.0
    assert backoff(20, settings, None, lambda: 1.0) == 60.0
    assert backoff(0, settings, 30.0, lambda: 0.5) == 30.0


async def test_slow_target_does_not_delay_the_others(tmp_path: Path) -> None:
    """The fast target converges while the slow one (first in the config) is held in the
    middle of its push, for as long as the test likes."""
    source = StaticSource(zone(1))
    slow = GatedTarget("slow")
    fast = MemoryTarget("fast")
    engine = engine_for(tmp_path, source, slow, fast)
    await engine.refresh_zone(ORIGIN)
    run = asyncio.create_task(engine.run())
    try:
        await until(slow.entered.is_set, "the slow target's push began")
        await until(lambda: fast.data is not None, "the fast target was pushed while slow hung")
        assert slow.data is None and not slow.gate.is_set()
        slow.gate.set()
        await until(lambda: slow.data is not None, "the slow target's push completed")
        assert as_dict(slow) == as_dict(fast) == dict(zone(1).rrsets)
    finally:
        engine.stop()
        await run


async def test_restart_resumes_the_outbox_without_repeating_changes(tmp_path: Path) -> None:
    source = StaticSource(zone(1))
    target = MemoryTarget("a")
    target.faults = [Fault(TargetUnavailableError("a", "down"), 1)]
    first = engine_for(tmp_path, source, target)
    await first.refresh_zone(ORIGIN)
    await first.drain()
    first.state.close()
    # A new process over the same state file: the pending push is still there.
    second = engine_for(tmp_path, source, target)
    (item,) = second.state.pending()
    assert (item.target, item.serial, item.attempts) == ("a", 1, 1)
    second.state.enqueue("a", ORIGIN, 1)  # due now
    assert [o.ok for o in await second.drain()] == [True]
    # A change made while the target was down arrives with the next serial only once.
    source.current = zone(2, extra={"added": "while down"})
    target.faults = [Fault(TargetUnavailableError("a", "down"), 1)]
    await second.refresh_zone(ORIGIN)
    await second.drain()
    second.state.enqueue("a", ORIGIN, 2)
    assert [o.ok for o in await second.drain()] == [True]
    assert as_dict(target) == dict(zone(2, extra={"added": "while down"}).rrsets)
    assert set(target.writes.values()) == {1} | (
        {2} if target.writes[(ORIGIN, dns.rdatatype.SOA)] == 2 else set()
    )
    assert target.writes[(dns.name.from_text("added", ORIGIN), dns.rdatatype.TXT)] == 1


async def test_crash_between_apply_and_record_does_not_lose_ownership(tmp_path: Path) -> None:
    """Records written by a push that crashed before recording success are still ours."""
    source = StaticSource(zone(1, extra={"temp": "x"}))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target)
    await engine.refresh_zone(ORIGIN)
    real_pushed = engine.state.pushed

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed")

    engine.state.pushed = crash  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        await engine.push("a", ORIGIN)
    engine.state.pushed = real_pushed  # type: ignore[method-assign]
    source.current = zone(2)  # "temp" is gone from the zone
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    assert (dns.name.from_text("temp", ORIGIN), dns.rdatatype.TXT) not in as_dict(target)


async def test_foreign_records_survive_and_our_deletions_apply(tmp_path: Path) -> None:
    source = StaticSource(zone(1, extra={"old": "x"}))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target)
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    manual = RRset.from_text("manual", "TXT", 60, ['"by hand"'], ORIGIN)
    as_dict(target)[manual.key] = manual
    source.current = zone(2)
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    assert manual.key in as_dict(target)
    assert (dns.name.from_text("old", ORIGIN), dns.rdatatype.TXT) not in as_dict(target)
    plan = await engine.plan("a", ORIGIN)
    assert plan is not None and plan.empty and plan.foreign == (manual.key,)


async def test_mass_deletion_waits_for_force(tmp_path: Path) -> None:
    source = StaticSource(zone(1, hosts=20))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target)
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    source.current = zone(2, hosts=8)
    await engine.refresh_zone(ORIGIN)
    (refused,) = await engine.drain()
    assert not refused.ok and "--force" in refused.detail and refused.refused == "safety"
    assert len(as_dict(target)) == 22  # nothing applied
    assert engine.state.pending("a") == []  # a state waiting for --force, not a retry
    (row,) = engine.state.status()
    assert (row.refused_kind, row.refused_serial) == ("safety", 2)
    engine.state.enqueue("a", ORIGIN, 2, force=True)
    (forced,) = await engine.drain()
    assert forced.ok and len(as_dict(target)) == 10
    (row,) = engine.state.status()
    assert row.refused is None and row.pushed_serial == 2


async def test_signed_zone_is_refused_for_a_target_without_dnssec(tmp_path: Path) -> None:
    source = StaticSource(signed(zone(1)))
    plain = MemoryTarget("plain", dnssec=DnssecMode.NONE)
    presigned = MemoryTarget("presigned")
    engine = engine_for(tmp_path, source, plain, presigned)
    await engine.refresh_zone(ORIGIN)
    outcomes = {o.target: o for o in await engine.drain()}
    assert outcomes["presigned"].ok
    assert not outcomes["plain"].ok
    assert "target plain refused for zone example.test." in outcomes["plain"].detail
    assert "DNSSEC mode is 'none'" in outcomes["plain"].detail
    assert plain.data is None  # never served unsigned
    with pytest.raises(CapabilityError):
        await engine.push("plain", ORIGIN)
    events = [e["kind"] for e in engine.state.events() if e["target"] == "plain"]
    assert events == ["refused"]


async def test_a_refusal_is_a_state_judged_again_only_when_the_verdict_may_change(
    tmp_path: Path,
) -> None:
    """Refused once, then not on any timer (the clock is moved far past retry-max: nothing
    is queued, so no worker or drain can try it); tried again on a new serial and at a
    start, which here brings a config that can carry the zone."""
    clock = FakeClock()
    source = StaticSource(signed(zone(1)))
    state = SyncState(tmp_path / "sync.db", clock=clock)
    plain = {"t": TargetSpec(MemoryTarget("t", dnssec=DnssecMode.NONE))}
    engine = SyncEngine(state, source, [ORIGIN], plain, FAST, clock=clock)
    await engine.refresh_zone(ORIGIN)

    def refusals() -> list[int]:
        return [e["serial"] for e in state.events() if e["kind"] == "refused"]

    (first,) = await engine.drain()
    assert (first.ok, first.refused, first.serial) == (False, "capability", 1)
    assert "DNSSEC mode is 'none'" in first.detail
    clock.advance(1000 * FAST.retry_max)
    assert state.pending() == []
    assert await engine.drain() == []
    assert refusals() == [1]
    (row,) = state.status()
    assert (row.refused_kind, row.refused_serial, row.pushed_serial) == ("capability", 1, None)
    assert row.refused is not None and "DNSSEC mode is 'none'" in row.refused
    # A new serial is judged again (and refused again: still signed).
    source.current = signed(zone(2))
    await engine.refresh_zone(ORIGIN)
    (second,) = await engine.drain()
    assert second.refused == "capability" and refusals() == [1, 2]
    # A start with a config whose target takes signed data: judged again, and pushed.
    presigned = MemoryTarget("t")
    restarted = SyncEngine(state, source, [ORIGIN], {"t": TargetSpec(presigned)}, FAST, clock=clock)
    restarted.queue_unconverged()
    (third,) = await restarted.drain()
    assert third.ok and third.refused is None
    (row,) = state.status()
    assert (row.refused, row.refused_kind, row.pushed_serial) == (None, None, 2)


def test_a_refusal_leaves_a_newer_serial_queued_and_a_failure_clears_it(tmp_path: Path) -> None:
    state = SyncState(tmp_path / "s.db")
    zone_text = ORIGIN.to_text()
    state.enqueue("a", ORIGIN, 1)
    state.enqueue("a", ORIGIN, 2)  # queued while serial 1 was being tried
    state.refused("a", zone_text, 1, "refused for 1", "capability")
    assert [i.serial for i in state.pending()] == [2]
    (row,) = state.status()
    assert (row.refused, row.refused_serial, row.pending_serial) == ("refused for 1", 1, 2)
    state.defer("a", zone_text, 2, "HTTP 503", 1.0)
    (row,) = state.status()
    assert row.refused is None and row.last_error == "HTTP 503"


@pytest.mark.parametrize("mode", ["repair", "report"])
async def test_drift_is_found_and_repaired_or_reported(tmp_path: Path, mode: str) -> None:
    source = StaticSource(zone(1))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target, drift=mode)
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    assert await engine.check_drift("a", ORIGIN) is None
    key = (dns.name.from_text("h1", ORIGIN), dns.rdatatype.A)
    del as_dict(target)[key]
    found = await engine.check_drift("a", ORIGIN)
    assert found is not None and "1 to create" in found and "+ h1 300 A 192.0.2.2" in found
    (status,) = engine.state.status()
    assert status.drift == found
    await engine.drain()
    assert (key in as_dict(target)) == (mode == "repair")


def test_state_coalesces_pending_serials(tmp_path: Path) -> None:
    state = SyncState(tmp_path / "s.db")
    state.enqueue("a", ORIGIN, 1)
    state.defer("a", ORIGIN.to_text(), 1, "down", 100)
    state.enqueue("a", ORIGIN, 2)
    (item,) = state.pending()
    assert (item.serial, item.attempts) == (2, 1)
    assert item.next_attempt <= state.clock()  # a new serial is due at once
    state.close()
    reopened = SyncState(tmp_path / "s.db")
    assert [i.serial for i in reopened.pending()] == [2]


def test_owned_sets_are_shared_between_processes(tmp_path: Path) -> None:
    """`sync apply` and `sync run` hold the state open at once: what one records as owned,
    or forgets after a delete, the other sees on its next read, whatever it cached."""
    first, second = SyncState(tmp_path / "s.db"), SyncState(tmp_path / "s.db")
    zone_text = ORIGIN.to_text()
    keys = [r.key for r in zone(1)]
    first.own("a", zone_text, keys[:5])
    assert second.owned("a", zone_text) == set(keys[:5])  # cached by second from here
    first.own("a", zone_text, keys[5:8])
    second.own("a", zone_text, keys[8:])  # must not drop what first added meanwhile
    assert first.owned("a", zone_text) == set(keys) == second.owned("a", zone_text)
    second.pushed("a", zone_text, 1, deleted=keys[:2])
    assert first.owned("a", zone_text) == set(keys[2:])
    assert first.owned("b", zone_text) == set()
    first.close()
    second.close()
    assert SyncState(tmp_path / "s.db").owned("a", zone_text) == set(keys[2:])


def old_state_file(path: Path, version: int, *statements: str) -> Path:
    """A state file of schema ``version`` made by ``statements``."""
    conn = sqlite3.connect(path)
    for statement in statements:
        conn.execute(statement)
    conn.execute("PRAGMA application_id=2053534585")
    conn.execute(f"PRAGMA user_version={version}")
    conn.commit()
    conn.close()
    return path


def test_a_schema_1_state_file_is_migrated(tmp_path: Path) -> None:
    """Schema 1 kept a row per owned RRset; opening such a file keeps every one of them."""
    path = old_state_file(
        tmp_path / "v1.db",
        1,
        "CREATE TABLE owned (target TEXT, zone TEXT, name TEXT, rdtype INTEGER,"
        " PRIMARY KEY (target, zone, name, rdtype))",
        "INSERT INTO owned VALUES ('a', 'example.test.', 'h0.example.test.', 1),"
        " ('a', 'example.test.', 'example.test.', 2),"
        " ('b', 'example.test.', 'h1.example.test.', 1)",
    )
    state = SyncState(path)
    zone_text = ORIGIN.to_text()
    h0, h1 = (dns.name.from_text(h, ORIGIN) for h in ("h0", "h1"))
    assert state.owned("a", zone_text) == {(h0, dns.rdatatype.A), (ORIGIN, dns.rdatatype.NS)}
    assert state.owned("b", zone_text) == {(h1, dns.rdatatype.A)}
    version = state.conn.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 3


def test_a_schema_2_state_file_gains_the_refusal_columns(tmp_path: Path) -> None:
    path = old_state_file(
        tmp_path / "v2.db",
        2,
        "CREATE TABLE targets (target TEXT, zone TEXT, pushed_serial INTEGER,"
        " pushed_digest TEXT, pushed_at REAL, last_success REAL, last_error TEXT,"
        " last_error_at REAL, drift TEXT, drift_at REAL, PRIMARY KEY (target, zone))",
        "INSERT INTO targets (target, zone, pushed_serial) VALUES ('a', 'x.', 7)",
    )
    state = SyncState(path)
    (row,) = state.status()
    assert (row.pushed_serial, row.refused) == (7, None)
    state.refused("a", "x.", 8, "no", "safety")
    (row,) = state.status()
    assert (row.pushed_serial, row.refused_kind, row.refused_serial) == (7, "safety", 8)


async def test_changes_are_planned_against_the_last_push_not_a_fresh_read(tmp_path: Path) -> None:
    """A one-record change to a large zone costs no read of the target; any failure, drift
    or --force makes the next attempt read it again."""
    source = StaticSource(zone(1))
    target = MemoryTarget("a")
    engine = engine_for(tmp_path, source, target)
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    assert target.reads == 1
    source.current = zone(2, extra={"one": "more"})
    await engine.refresh_zone(ORIGIN)
    (pushed,) = await engine.drain()
    assert pushed.ok and pushed.detail == "1 to create, 1 to update, 0 to delete"
    assert target.reads == 1
    # A failed apply forgets what the target holds: the retry reads it.
    target.faults = [Fault(TargetUnavailableError("a", "down"), 1)]
    source.current = zone(3, extra={"one": "more", "two": "more"})
    await engine.refresh_zone(ORIGIN)
    await engine.drain()
    engine.state.enqueue("a", ORIGIN, 3)
    assert [o.ok for o in await engine.drain()] == [True]
    assert target.reads == 2
    # Drift seen by the read-back is repaired from a fresh read too.
    del as_dict(target)[(dns.name.from_text("two", ORIGIN), dns.rdatatype.TXT)]
    assert await engine.check_drift("a", ORIGIN) is not None
    assert [o.ok for o in await engine.drain()] == [True]
    assert target.reads == 4
    assert as_dict(target) == dict(zone(3, extra={"one": "more", "two": "more"}).rrsets)
    engine.state.enqueue("a", ORIGIN, 3, force=True)
    await engine.drain()
    assert target.reads == 5


# -- plan invariants, on random zones --------------------------------------------------------

_OWNERS = [f"n{i}" for i in range(8)]
_rrset_specs = st.dictionaries(
    st.tuples(st.sampled_from(_OWNERS), st.sampled_from(["A", "TXT"])),
    st.tuples(st.sampled_from([60, 300]), st.integers(min_value=1, max_value=3)),
    max_size=12,
)


def _random_zone(serial: int, specs: dict[tuple[str, str], tuple[int, int]]) -> ZoneData:
    sets = list(zone(serial, hosts=0))
    for (owner, kind), (ttl, count) in specs.items():
        texts = [f"192.0.2.{i}" if kind == "A" else f'"t{i}"' for i in range(count)]
        sets.append(RRset.from_text(owner, kind, ttl, texts, ORIGIN))
    return ZoneData.build(ORIGIN, sets)


@settings(max_examples=200, deadline=None)
@given(_rrset_specs, _rrset_specs, st.sets(st.sampled_from(_OWNERS)))
def test_applying_a_plan_gives_the_zone_plus_only_foreign_records(
    want: dict[tuple[str, str], tuple[int, int]],
    have: dict[tuple[str, str], tuple[int, int]],
    mine: set[str],
) -> None:
    desired, current = _random_zone(2, want), _random_zone(1, have)
    owned = {k for k in current.rrsets if k[0].relativize(ORIGIN).to_text() in mine}
    plan = compute_plan(desired, current, target="t", owned=owned)
    result = dict(current.rrsets)
    for change in plan.changes:
        if change.action == Action.DELETE:
            del result[change.key]
        else:
            assert change.new is not None
            result[change.key] = change.new
    foreign = {k: current.rrsets[k] for k in plan.foreign}
    assert result == {**dict(desired.rrsets), **foreign}
    assert not set(plan.foreign) & owned and not set(plan.foreign) & set(desired.rrsets)
    # Planning the result again finds nothing to do, and the order is deterministic.
    assert compute_plan(desired, ZoneData(ORIGIN, result), target="t", owned=owned).empty
    order = [(int(c.action), sort_key(c.key)) for c in plan.changes]
    assert order == sorted(order)
    # A zone missing at the target: every supported RRset is created, in the same order.
    types = frozenset({dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.A})
    held = normalize(desired, Capabilities(DnssecMode.NONE, record_types=types))
    fresh = compute_plan(held.data, None, target="t")
    assert fresh.create_zone and {c.action for c in fresh.changes} <= {Action.CREATE}
    assert [c.key for c in fresh.changes] == sorted(
        (k for k in desired.rrsets if k[1] != dns.rdatatype.TXT), key=sort_key
    )
    assert set(held.unsupported) == {k for k in desired.rrsets if k[1] == dns.rdatatype.TXT}


# -- status verdicts -----------------------------------------------------------------------


def test_status_verdicts_judge_against_the_primary_and_the_content() -> None:
    """current needs the primary's serial and the sidecar's content for it; an unanswered
    primary is never current; a newer serial the sidecar lacks has no known lag."""
    digest = zone(5).digest

    def verdict(
        primary: int | None, copy: int | None, pushed: int | None, **known: Any
    ) -> tuple[str, object]:
        z = ZoneStatus(
            zone="example.test.",
            primary_serial=primary,
            primary_error=None if primary is not None else "did not answer: no answer",
            copy_serial=copy,
            copy_digest=None if copy is None else zone(copy).digest,
            copy_seen_at=None if copy is None else 100.0,
        )
        s = TargetStatus("t", "example.test.", pushed_serial=pushed, **known)
        (row,) = target_rows([z], [("t", "example.test.")], [s], lambda: 130.0)
        return row["verdict"], row["lag_seconds"]

    assert verdict(5, 5, 5, pushed_digest=digest) == ("current", 0.0)
    assert verdict(5, 5, 5, pushed_digest=zone(5, hosts=3).digest) == ("behind", 30.0)
    assert verdict(6, 5, 5, pushed_digest=digest) == ("behind", None)
    assert verdict(5, 5, 4) == ("behind", 30.0)
    assert verdict(None, 5, 5, pushed_digest=digest) == ("unknown", None)
    assert verdict(None, None, 5) == ("unknown", None)
    assert verdict(5, 5, 4, refused_serial=5, refused_kind="safety") == ("refused", None)
    # A refusal of an older serial, or one with a newer serial queued, is not the verdict.
    assert verdict(6, 6, 4, refused_serial=5)[0] == "behind"
    assert verdict(5, 5, 4, refused_serial=5, pending_serial=5)[0] == "behind"
