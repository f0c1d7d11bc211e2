"""The planner run forward (:func:`signer.timing.forecast`) and what `keys ds` derives from
it (:func:`signer.timing.parent_ds`), checked against the resolver model of
tests/test_signer_timing.py.

The worlds here have a parent that follows what `keys ds` says to publish (an operator
who pastes it to the registrar, at once or a few hours later) instead of the CDS RRset.
Through every kind of rollover no resolver cache combination may fail to validate; an
operator following the old rule (every KSK/CSK in the zone) breaks an algorithm
rollover, so the model does catch it.  Forecasts are compared with the same rollovers
lived with a slow parent: the same steps, at the same dates until the first DS change at
the parent, which a forecast takes as instant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from signer.policy import DAY, Policy
from signer.timing import (
    ActionKind,
    DsAdvice,
    DsExpect,
    KeyTiming,
    Phase,
    Role,
    advance,
    emergency_rollover,
    forecast,
    key_state,
    observe_parent_ds,
    parent_ds,
    plan,
    start_algorithm_rollover,
    start_rollover,
    zone_keys,
)
from tests.test_signer_timing import CHECK, CSK, DREG, MAX_TTL, SPLIT, T0, World, violations

YEAR = 366 * DAY
Parent = Callable[[World], frozenset[str]]


def follows_keys_ds(world: World) -> frozenset[str]:
    """The DS set `keys ds` lists to publish now."""
    fc = forecast(world.keys, world.policy, world.now, MAX_TTL, world.now + YEAR)
    return frozenset(d.key.key_id for d in parent_ds(fc) if d.advice is DsAdvice.PUBLISH)


def follows_old_rule(world: World) -> frozenset[str]:
    """What `keys ds` printed before: every KSK/CSK neither unpublished-new nor removed."""
    return frozenset(
        k.key_id
        for k in world.keys
        if k.role.is_sep
        and key_state(k, world.now, world.policy).phase not in (Phase.GENERATED, Phase.REMOVED)
    )


def _record_zone(world: World) -> None:
    zk = zone_keys(world.keys, world.now, world.policy)
    snap = (frozenset(zk.dnskey), frozenset(zk.dnskey_signers), frozenset(zk.data_signers))
    if not world.zone or world.zone[-1][1] != snap:
        world.zone.append((world.now, snap))


def _parent_now(world: World) -> frozenset[str]:
    return world.parent[-1][1] if world.parent else frozenset()


def run(
    world: World,
    until: int,
    parent: Parent,
    delay: int,
    check: Callable[[World], None] | None = None,
) -> None:
    """Step ``world`` to ``until``; the parent takes what ``parent`` lists, ``delay``
    later; ``check(world)`` after every step."""
    while world.now <= until:
        while True:
            world.keys, actions, result = advance(
                world.keys, world.policy, world.now, MAX_TTL, world.generate
            )
            world.applied += [(world.now, a) for a in actions]
            _record_zone(world)
            wanted = parent(world)
            if world.pending is not None and world.pending[0] <= world.now:
                world.parent.append((world.now, world.pending[1]))
                world.pending = None
            queued = world.pending[1] if world.pending is not None else _parent_now(world)
            if wanted != queued:
                if delay == 0:
                    world.parent.append((world.now, wanted))
                else:
                    world.pending = (world.now + delay, wanted)
            observed = observe_parent_ds(world.keys, _parent_now(world), world.now)
            if observed == world.keys:
                break
            world.keys = observed
        world.failures += violations(world, world.now)
        if check is not None:
            check(world)
        times = [t for t in (result.next_event,) if t is not None]
        if world.pending is not None:
            times.append(world.pending[0])
        if result.ds_watch:
            times.append(world.now + CHECK)
        if not times or min(times) > until:
            break
        world.now = max(min(times), world.now + 1)
    world.now = until


Start = Callable[[World], tuple[KeyTiming, ...]]

ROLLOVERS: dict[str, tuple[Policy, Start]] = {
    "csk": (CSK, lambda w: start_rollover(w.keys, Role.CSK, w.policy, w.now)),
    "ksk": (SPLIT, lambda w: start_rollover(w.keys, Role.KSK, w.policy, w.now)),
    "zsk": (SPLIT, lambda w: start_rollover(w.keys, Role.ZSK, w.policy, w.now)),
    "algorithm-csk": (CSK, lambda w: start_algorithm_rollover(w.keys, 15, w.policy, w.now)),
    "algorithm-split": (SPLIT, lambda w: start_algorithm_rollover(w.keys, 8, w.policy, w.now)),
    "emergency-csk": (
        CSK,
        lambda w: emergency_rollover(w.keys, w.of_role(Role.CSK)[0].key_id, w.policy, w.now),
    ),
}


def _rolled(name: str, parent: Parent, delay: int) -> World:
    policy, start = ROLLOVERS[name]
    world = World(policy)
    if name.startswith("emergency"):
        world.sign_delay = 0  # the contract: everything re-signed at once
    run(world, T0 + 10 * DAY, parent, delay)
    assert _parent_now(world), "the first DS never reached the parent"
    world.keys = start(world)
    run(world, world.now + 30 * DAY, parent, delay)
    return world


@pytest.mark.parametrize("delay", [0, DREG], ids=["at-once", "3h-later"])
@pytest.mark.parametrize("name", list(ROLLOVERS))
def test_an_operator_following_keys_ds_never_breaks_validation(name: str, delay: int) -> None:
    world = _rolled(name, follows_keys_ds, delay)
    assert not world.failures, world.failures[:5]
    # The rollover did finish: one generation of keys is left, and the parent points at it.
    live = {k.key_id for k in world.keys if k.remove is None}
    assert _parent_now(world) == {k for k in live if world.key(k).role.is_sep}
    assert len(live) == (1 if world.policy.key_style.value == "csk" else 2)


def test_the_old_keys_ds_breaks_an_algorithm_rollover() -> None:
    world = _rolled("algorithm-csk", follows_old_rule, 0)
    # The new DS is at the parent while its DNSKEY is not served.
    assert any("algorithm 15 does not sign DNSKEY" in f for f in world.failures), world.failures


def test_keys_ds_lists_what_the_cds_asks_for() -> None:
    """Safe now is the planner's SUBMIT_DS..WITHDRAW_DS window, which the CDS RRset
    (RFC 7344) also publishes: at every step of a KSK rollover they agree, and what is
    to be removed is exactly what was withdrawn and is not yet gone."""
    checked: list[int] = []

    def check(world: World) -> None:
        fc = forecast(world.keys, world.policy, world.now, MAX_TTL, world.now + YEAR)
        advice = {d.key.key_id: d.advice for d in parent_ds(fc)}
        publish = {k for k, a in advice.items() if a is DsAdvice.PUBLISH}
        assert publish == set(zone_keys(world.keys, world.now, world.policy).cds)
        remove = {k for k, a in advice.items() if a is DsAdvice.REMOVE}
        assert remove == {
            k.key_id for k in world.keys if k.ds_withdrawn is not None and k.ds_gone is None
        }
        checked.append(len(remove))

    policy, start = ROLLOVERS["ksk"]
    world = World(policy)
    run(world, T0 + 10 * DAY, follows_keys_ds, DREG, check)
    world.keys = start(world)
    run(world, world.now + 30 * DAY, follows_keys_ds, DREG, check)
    assert not world.failures, world.failures[:5]
    assert len(checked) > 10 and any(checked), "the old DS was never awaited to leave"


def _kinds(steps: list[tuple[int, str, str]]) -> list[tuple[str, str]]:
    return sorted((kind, who) for _, kind, who in steps)


@pytest.mark.parametrize("name", ["csk", "ksk", "algorithm-csk", "algorithm-split"])
def test_forecast_is_what_then_happens(name: str) -> None:
    policy, start = ROLLOVERS[name]
    world = World(policy)
    run(world, T0 + 10 * DAY, follows_keys_ds, DREG)
    world.keys = start(world)
    asked = world.now
    before = world.keys
    fc = forecast(before, policy, asked, MAX_TTL, asked + YEAR)
    assert world.keys == before, "a forecast changes nothing"
    assert fc == forecast(before, policy, asked, MAX_TTL, asked + YEAR)
    assert fc.next_event is None  # the rollover ends within the year
    run(world, asked + 30 * DAY, follows_keys_ds, DREG)
    assert not world.failures, world.failures[:5]

    # Keys by their part: the forecast names the new keys itself, the world otherwise.
    old_ids = {k.key_id for k in before}

    def part(key_id: str | None, role: Role, new: bool) -> str:
        return f"{'new' if new or key_id is None else 'old'} {role.name}"

    planned = [
        (s.at, s.kind.value, part(s.key_id, s.role, s.key_id in fc.new_keys))
        for s in fc.steps
        if isinstance(s.kind, ActionKind)
    ]
    lived = [
        (t, a.kind.value, part(a.key_id, a.role, a.key_id not in old_ids))
        for t, a in world.applied
        if t >= asked
    ]
    assert _kinds(planned) == _kinds(lived)
    assert len(set(_kinds(planned))) == len(planned), "one step of each kind per key part"
    first_wait = min(s.at for s in fc.steps if s.assumed)
    when = {(k, w): t for t, k, w in lived}
    for at, kind, whom in planned:
        if at <= first_wait:
            assert when[(kind, whom)] == at, (kind, whom)
        else:
            # Never earlier; later when it waited for what the parent took (DREG).
            assert when[(kind, whom)] >= at, (kind, whom)
    assert all(isinstance(s.kind, DsExpect) for s in fc.steps if s.assumed)


def test_no_advice_to_start_an_algorithm_rollover_during_one() -> None:
    world = World(CSK)
    run(world, T0 + 10 * DAY, follows_keys_ds, 0)
    asked = world.now
    world.keys = start_algorithm_rollover(world.keys, 15, CSK, asked)
    fc = forecast(world.keys, CSK, asked, MAX_TTL, asked + YEAR)
    # Just before each step of the rollover, and just after its last one.
    times = sorted({s.at for s in fc.steps if s.at > asked})
    assert len(times) >= 4
    for policy, wanted in (
        (CSK, "set the policy's algorithm to 15"),
        (dataclasses.replace(CSK, algorithm=15), None),
    ):
        for t in times:
            keys = forecast(world.keys, policy, asked, MAX_TTL, t - 1).keys
            notes = plan(keys, policy, t - 1, MAX_TTL).notes
            about = [n for n in notes if "policy" in n or "algorithm rollover" in n]
            # No advice to start what is running; a word only when the policy disagrees.
            assert about == ([n for n in notes if wanted in n] if wanted else []), (t, notes)
            assert bool(about) == bool(wanted), (t, notes)
    # Once it has ended, a policy that still says 13 is a mismatch to act on.
    after = plan(fc.keys, CSK, times[-1] + 1, MAX_TTL).notes
    assert any("start an algorithm rollover" in n for n in after), after
