"""Key rollovers stepped with a fake clock and checked against a small resolver model.

The simulation calls :func:`signer.timing.plan` at every ``next_event``, applies the
actions, plays a parent that copies the CDS set into its DS RRset after a registration
delay, and checks the parent (``observe_parent_ds``) every hour while a DS change is
awaited.  After every step :func:`violations` asks, for every combination of DS RRset,
DNSKEY RRset and signed data a resolver may hold in its cache, whether it validates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from signer.policy import DAY, HOUR, KeyStyle, Policy
from signer.timing import (
    Action,
    ActionKind,
    DsExpect,
    KeyTiming,
    KeyTimingError,
    Phase,
    Role,
    RolloverInProgressError,
    advance,
    emergency_rollover,
    initial_keys,
    key_state,
    mark_ds_seen,
    observe_parent_ds,
    plan,
    retire,
    start_algorithm_rollover,
    start_rollover,
    zone_keys,
)

T0 = 1_700_000_000
MAX_TTL = 2 * HOUR
DREG = 3 * HOUR  # parent registration delay
CHECK = HOUR  # how often the DS checker polls the parent

Snap = tuple[frozenset[str], frozenset[str], frozenset[str]]  # dnskey, dnskey sigs, data sigs


@dataclass
class World:
    policy: Policy
    keys: tuple[KeyTiming, ...] = ()
    now: int = T0
    zone: list[tuple[int, Snap]] = field(default_factory=list)
    parent: list[tuple[int, frozenset[str]]] = field(default_factory=list)
    pending: tuple[int, frozenset[str]] | None = None
    last_cds: frozenset[str] | None = None
    algorithm: dict[str, int] = field(default_factory=dict)
    applied: list[tuple[int, Action]] = field(default_factory=list)
    sign_delay: int | None = None  # Dsgn in the model; None: the policy's
    failures: list[str] = field(default_factory=list)
    sabotage: Callable[[World, Action], None] | None = None
    auto_ds: bool = True

    def generate(self, action: Action) -> tuple[str, int]:
        key_id = f"{action.role.value}{len(self.algorithm) + 1}"
        self.algorithm[key_id] = action.algorithm
        return key_id, 10000 + len(self.algorithm)

    def key(self, key_id: str) -> KeyTiming:
        return next(k for k in self.keys if k.key_id == key_id)

    def of_role(self, role: Role) -> list[KeyTiming]:
        return [k for k in self.keys if k.role is role]


def _record(world: World) -> None:
    zk = zone_keys(world.keys, world.now, world.policy)
    snap: Snap = (frozenset(zk.dnskey), frozenset(zk.dnskey_signers), frozenset(zk.data_signers))
    if not world.zone or world.zone[-1][1] != snap:
        world.zone.append((world.now, snap))
    cds = frozenset() if zk.cds_delete else frozenset(zk.cds)
    if zk.cds_delete or world.last_cds is None or cds != world.last_cds:
        if cds != world.last_cds and (cds or zk.cds_delete):
            world.pending = (world.now + DREG, cds)
        world.last_cds = cds


def _parent_now(world: World) -> frozenset[str]:
    return world.parent[-1][1] if world.parent else frozenset()


def step(world: World) -> int | None:
    """Settle everything due at ``world.now``; return the next interesting time."""
    while True:
        keys, actions, result = advance(
            world.keys, world.policy, world.now, MAX_TTL, world.generate
        )
        world.keys = keys
        for action in actions:
            world.applied.append((world.now, action))
            if world.sabotage is not None:
                world.sabotage(world, action)
        _record(world)
        if world.pending is not None and world.pending[0] <= world.now:
            world.parent.append((world.now, world.pending[1]))
            world.pending = None
        if world.auto_ds and result.ds_watch:
            observed = observe_parent_ds(world.keys, _parent_now(world), world.now)
            if observed != world.keys:
                world.keys = observed
                continue
        break
    world.failures += violations(world, world.now)
    times = [result.next_event]
    if world.pending is not None:
        times.append(world.pending[0])
    if result.ds_watch and world.auto_ds:
        times.append(world.now + CHECK)
    found = [t for t in times if t is not None]
    return min(found) if found else None


def run(world: World, until: int) -> None:
    while world.now <= until:
        nxt = step(world)
        if nxt is None or nxt > until:
            break
        world.now = max(nxt, world.now + 1)
    world.now = until


# --- the resolver model ----------------------------------------------------------------


def _windows(history: Sequence[tuple[int, object]], t: int, keep: int) -> list[int]:
    """Indexes of versions a cache may hold at ``t``: served from their start until the
    next version plus ``keep`` (propagation delay + TTL)."""
    found = []
    for i, (start, _) in enumerate(history):
        end = history[i + 1][0] if i + 1 < len(history) else None
        if start <= t and (end is None or end + keep > t):
            found.append(i)
    return found


def _algs(world: World, ids: frozenset[str]) -> set[int]:
    return {world.algorithm[k] for k in ids}


def _data_candidates(world: World, t: int) -> list[frozenset[str]]:
    """Signer sets an RRset in a cache may carry at ``t``.

    Within one algorithm old signatures may remain for Dsgn after a new key takes over
    (gradual re-signing, RFC 7583 Dsgn); a new algorithm signs everything at once.
    """
    p = world.policy
    dsgn = p.sign_delay if world.sign_delay is None else world.sign_delay
    keep = p.zone_propagation_delay + MAX_TTL
    zone = world.zone
    out = []
    for i, (start, snap) in enumerate(zone):
        end = zone[i + 1][0] if i + 1 < len(zone) else None
        if start > t:
            continue
        current = snap[2]
        for j in range(i + 1):
            end_j = zone[j + 1][0] if j + 1 < len(zone) else None
            if j < i:
                assert end_j is not None
                if end_j <= start - dsgn:
                    continue
                # Signatures made during version j last at most Dsgn into version i.
                served = end_j + dsgn if end is None else min(end, end_j + dsgn)
            else:
                served = end  # type: ignore[assignment]
            if served is not None and served + keep <= t:
                continue
            older = zone[j][1][2]
            algs_now, algs_old = _algs(world, current), _algs(world, older)
            mixed = {k for k in older if world.algorithm[k] in algs_now} | {
                k for k in current if world.algorithm[k] not in algs_old
            }
            out.append(frozenset(mixed))
    return out


def violations(world: World, t: int) -> list[str]:
    """Every cached combination at ``t`` that would not validate, described."""
    p = world.policy
    problems = []
    ds_sets = [
        world.parent[i][1]
        for i in _windows(world.parent, t, p.parent_propagation_delay + p.parent_ds_ttl)
    ]
    dnskeys = [
        world.zone[i][1] for i in _windows(world.zone, t, p.zone_propagation_delay + p.dnskey_ttl)
    ]
    data = _data_candidates(world, t)
    for ds in ds_sets:
        if not ds:
            continue  # no DS: the zone is insecure for this resolver
        for keys, key_sigs, _ in dnskeys:
            if not any(k in keys and k in key_sigs for k in ds):
                problems.append(
                    f"t={t - T0}: DS {sorted(ds)} matches no signing DNSKEY in "
                    f"{sorted(keys)} signed by {sorted(key_sigs)}"
                )
                continue
            for a in _algs(world, ds) | _algs(world, keys):
                # RFC 4035 §2.2, RFC 6840 §5.11: each algorithm signs every RRset.
                if not any(world.algorithm[k] == a and k in keys for k in key_sigs):
                    problems.append(
                        f"t={t - T0}: algorithm {a} does not sign DNSKEY {sorted(keys)}"
                    )
            for sigs in data:
                if not any(k in keys for k in sigs):
                    problems.append(
                        f"t={t - T0}: data signed by {sorted(sigs)} but DNSKEY {sorted(keys)}"
                    )
                for a in _algs(world, ds) | _algs(world, keys):
                    if not any(world.algorithm[k] == a and k in keys for k in sigs):
                        problems.append(
                            f"t={t - T0}: algorithm {a} missing on data {sorted(sigs)} "
                            f"with DNSKEY {sorted(keys)}"
                        )
    return problems


def settled_world(policy: Policy) -> World:
    """A zone signed from scratch and run until its DS is at the parent."""
    world = World(policy)
    run(world, T0 + 10 * DAY)
    assert not world.failures, world.failures[:5]
    seps = [k for k in world.keys if k.role.is_sep]
    assert seps and all(k.ds_seen is not None for k in seps)
    return world


SPLIT = Policy(key_style=KeyStyle.KSK_ZSK, zsk_lifetime=0)
CSK = Policy()


# --- whole rollovers -------------------------------------------------------------------


def test_first_keys_are_signed_and_submitted() -> None:
    world = settled_world(SPLIT)
    ksk, zsk = world.of_role(Role.KSK)[0], world.of_role(Role.ZSK)[0]
    assert ksk.publish == ksk.active == zsk.publish == zsk.active == T0
    # The DS is asked for once DNSKEY and signatures are in every cache.
    p = SPLIT
    expected = T0 + p.zone_propagation_delay + MAX_TTL + p.publish_safety
    assert ksk.ds_submitted == expected
    assert world.parent and world.parent[0][1] == {ksk.key_id}


def test_zsk_rollover_pre_publication() -> None:
    world = settled_world(SPLIT)
    start = world.now
    world.keys = start_rollover(world.keys, Role.ZSK, SPLIT, start)
    run(world, start + 20 * DAY)
    assert not world.failures, world.failures[:5]
    old, new = world.of_role(Role.ZSK)
    p = SPLIT
    assert old.successor == new.key_id
    assert new.publish == start
    ipub = p.zone_propagation_delay + p.dnskey_ttl + p.publish_safety
    assert new.active == old.retire == start + ipub
    iret = p.sign_delay + p.zone_propagation_delay + MAX_TTL + p.retire_safety
    assert old.remove == old.retire + iret
    assert key_state(old, world.now, p).phase is Phase.REMOVED
    assert key_state(new, world.now, p).phase is Phase.ACTIVE
    # The KSK and its DS were never touched.
    assert len(world.of_role(Role.KSK)) == 1


def test_zsk_phases_during_rollover() -> None:
    world = settled_world(SPLIT)
    start = world.now
    world.keys = start_rollover(world.keys, Role.ZSK, SPLIT, start)
    step(world)
    old, new = world.of_role(Role.ZSK)
    assert key_state(new, start, SPLIT).phase is Phase.PUBLISHED
    assert key_state(old, start, SPLIT).phase is Phase.ACTIVE
    ipub = SPLIT.zone_propagation_delay + SPLIT.dnskey_ttl + SPLIT.publish_safety
    assert key_state(new, start + ipub - 1, SPLIT).phase is Phase.PUBLISHED
    # The successor signs as soon as it is ready; before that step it shows READY.
    waiting = dataclasses.replace(new, active=None)
    assert key_state(waiting, start + ipub, SPLIT).phase is Phase.READY
    switched = dataclasses.replace(new, active=start + ipub)
    assert key_state(switched, start + ipub, SPLIT).phase is Phase.ACTIVE
    gone = dataclasses.replace(old, retire=start + ipub)
    assert key_state(gone, start + ipub, SPLIT).phase is Phase.RETIRED


def test_zsk_lifetime_rolls_by_itself() -> None:
    policy = dataclasses.replace(SPLIT, zsk_lifetime=30 * DAY)
    world = settled_world(policy)
    run(world, T0 + 100 * DAY)
    assert not world.failures, world.failures[:5]
    zsks = world.of_role(Role.ZSK)
    assert len(zsks) == 4  # activated at 0, ~30, ~60, ~90 days
    assert sum(1 for k in zsks if k.remove is None) == 1


def test_ksk_rollover_waits_for_the_ds() -> None:
    world = settled_world(SPLIT)
    start = world.now
    world.keys = start_rollover(world.keys, Role.KSK, SPLIT, start)
    run(world, start + 10 * DAY)
    assert not world.failures, world.failures[:5]
    old, new = world.of_role(Role.KSK)
    p = SPLIT
    assert new.publish == new.active == start
    assert (
        new.ds_submitted
        == old.ds_withdrawn
        == start + p.zone_propagation_delay + p.dnskey_ttl + p.publish_safety
    )
    assert new.ds_seen is not None and new.ds_seen >= new.ds_submitted + DREG
    iret = p.parent_propagation_delay + p.parent_ds_ttl + p.retire_safety
    assert old.retire == old.remove == new.ds_seen + iret
    assert world.parent[-1][1] == {new.key_id}


def test_csk_rollover() -> None:
    world = settled_world(CSK)
    start = world.now
    world.keys = start_rollover(world.keys, Role.CSK, CSK, start)
    run(world, start + 20 * DAY)
    assert not world.failures, world.failures[:5]
    old, new = world.of_role(Role.CSK)
    p = CSK
    ipub = p.zone_propagation_delay + p.dnskey_ttl + p.publish_safety
    assert new.active == old.retire == new.ds_submitted == start + ipub
    assert new.ds_seen is not None
    iret_zsk = p.sign_delay + p.zone_propagation_delay + MAX_TTL + p.retire_safety
    iret_ksk = p.parent_propagation_delay + p.parent_ds_ttl + p.retire_safety
    assert old.remove == max(old.retire + iret_zsk, new.ds_seen + iret_ksk)


@pytest.mark.parametrize(("policy", "new_algorithm"), [(CSK, 15), (SPLIT, 8)])
def test_algorithm_rollover(policy: Policy, new_algorithm: int) -> None:
    world = settled_world(policy)
    start = world.now
    world.keys = start_algorithm_rollover(world.keys, new_algorithm, policy, start)
    world.policy = dataclasses.replace(policy, algorithm=new_algorithm)
    run(world, start + 20 * DAY)
    assert not world.failures, world.failures[:5]
    old = [k for k in world.keys if k.algorithm == 13]
    new = [k for k in world.keys if k.algorithm == new_algorithm]
    assert len(old) == len(new) == len(initial_keys(policy, start))
    p = policy
    for key in new:
        # RFC 6781 §4.1.4: signatures first, the DNSKEY once they are in every cache.
        assert key.active == start
        assert key.publish == start + p.zone_propagation_delay + MAX_TTL + p.publish_safety
    for key in old:
        assert key.remove is not None and key.retire is not None
        assert key.retire == key.remove + p.zone_propagation_delay + p.dnskey_ttl + p.retire_safety
    assert world.parent[-1][1] == {k.key_id for k in new if k.role.is_sep}
    final = zone_keys(world.keys, world.now, world.policy)
    assert set(final.dnskey) == {k.key_id for k in new}


def test_emergency_zsk_rollover_drops_margins() -> None:
    world = settled_world(SPLIT)
    world.sign_delay = 0  # the contract: everything re-signed at once
    start = world.now
    zsk = world.of_role(Role.ZSK)[0]
    world.keys = emergency_rollover(world.keys, zsk.key_id, SPLIT, start)
    run(world, start + 5 * DAY)
    assert not world.failures, world.failures[:5]
    old, new = world.of_role(Role.ZSK)
    p = SPLIT
    assert new.active == old.retire == start + p.zone_propagation_delay + p.dnskey_ttl
    assert old.remove == old.retire + p.zone_propagation_delay + MAX_TTL


def test_go_insecure() -> None:
    world = settled_world(CSK)
    start = world.now
    world.policy = dataclasses.replace(CSK, insecure=True)
    assert zone_keys(world.keys, start, world.policy).cds_delete
    run(world, start + 10 * DAY)
    assert not world.failures, world.failures[:5]
    (csk,) = world.of_role(Role.CSK)
    assert csk.ds_withdrawn == start and csk.ds_gone is not None
    assert (
        csk.remove
        == csk.retire
        == csk.ds_gone + CSK.parent_propagation_delay + CSK.parent_ds_ttl + CSK.retire_safety
    )
    final = zone_keys(world.keys, world.now, world.policy)
    assert final.dnskey == final.data_signers == () and not final.cds_delete
    assert plan(world.keys, world.policy, world.now, MAX_TTL).actions == ()


def test_manual_ds_waits_for_the_operator() -> None:
    policy = dataclasses.replace(CSK)
    world = World(policy, auto_ds=False)
    run(world, T0 + 3 * DAY)
    (csk,) = world.of_role(Role.CSK)
    result = plan(world.keys, policy, world.now, MAX_TTL)
    assert result.actions == () and result.next_event is None
    assert [(w.key_id, w.expect) for w in result.ds_watch] == [(csk.key_id, DsExpect.PRESENT)]
    world.keys = start_rollover(world.keys, Role.CSK, policy, world.now)
    run(world, world.now + 5 * DAY)
    result = plan(world.keys, policy, world.now, MAX_TTL)
    assert any("waiting for the DS" in n for n in result.notes)
    old, new = world.of_role(Role.CSK)
    assert old.remove is None
    world.keys = mark_ds_seen(world.keys, new.key_id, world.now)
    world.parent.append((world.now, frozenset({new.key_id})))
    run(world, world.now + 5 * DAY)
    assert world.key(old.key_id).remove is not None


# --- the invariant check itself --------------------------------------------------------


def test_early_zsk_removal_is_detected() -> None:
    def remove_at_retire(world: World, action: Action) -> None:
        if action.kind is ActionKind.RETIRE and action.role is Role.ZSK:
            key = world.key(str(action.key_id))
            world.keys = tuple(
                dataclasses.replace(k, remove=world.now) if k is key else k for k in world.keys
            )

    world = settled_world(SPLIT)
    world.sabotage = remove_at_retire
    world.keys = start_rollover(world.keys, Role.ZSK, SPLIT, world.now)
    run(world, world.now + 20 * DAY)
    assert any("data signed by" in f for f in world.failures)


def test_ksk_removed_before_ds_seen_is_detected() -> None:
    def drop_old_ksk(world: World, action: Action) -> None:
        if action.kind is ActionKind.WITHDRAW_DS:
            key = world.key(str(action.key_id))
            gone = dataclasses.replace(key, retire=world.now, remove=world.now)
            world.keys = tuple(gone if k is key else k for k in world.keys)

    world = settled_world(SPLIT)
    world.sabotage = drop_old_ksk
    world.keys = start_rollover(world.keys, Role.KSK, SPLIT, world.now)
    run(world, world.now + 10 * DAY)
    assert any("matches no signing DNSKEY" in f for f in world.failures)


def test_algorithm_rollover_without_presigning_is_detected() -> None:
    world = settled_world(CSK)
    start = world.now
    world.keys = start_algorithm_rollover(world.keys, 15, CSK, start)
    step(world)
    new = next(k for k in world.keys if k.algorithm == 15)
    # Publish the new DNSKEY at once, as if signatures were already everywhere.
    world.keys = tuple(dataclasses.replace(k, publish=start) if k is new else k for k in world.keys)
    world.now += 1
    step(world)
    assert any("algorithm 15 missing on data" in f for f in world.failures)


# --- operator entry points ---------------------------------------------------------------


def test_second_rollover_of_a_role_is_refused() -> None:
    world = settled_world(SPLIT)
    world.keys = start_rollover(world.keys, Role.ZSK, SPLIT, world.now)
    with pytest.raises(RolloverInProgressError, match="requested"):
        start_rollover(world.keys, Role.ZSK, SPLIT, world.now)
    step(world)
    before = world.keys
    with pytest.raises(RolloverInProgressError, match=r"ZSK rollover from ZSK 'zsk2'.*'zsk3'"):
        start_rollover(world.keys, Role.ZSK, SPLIT, world.now + 60)
    with pytest.raises(RolloverInProgressError, match="algorithm"):
        start_algorithm_rollover(world.keys, 15, SPLIT, world.now + 60)
    assert world.keys == before
    # A KSK rollover does not conflict with a ZSK rollover.
    start_rollover(world.keys, Role.KSK, SPLIT, world.now + 60)


def test_algorithm_rollover_blocks_every_role() -> None:
    world = settled_world(SPLIT)
    world.keys = start_algorithm_rollover(world.keys, 15, SPLIT, world.now)
    step(world)
    with pytest.raises(RolloverInProgressError, match="algorithm rollover"):
        start_rollover(world.keys, Role.KSK, SPLIT, world.now)


def test_entry_point_errors() -> None:
    world = settled_world(SPLIT)
    with pytest.raises(KeyTimingError, match="no published CSK"):
        start_rollover(world.keys, Role.CSK, SPLIT, world.now)
    with pytest.raises(KeyTimingError, match="already use algorithm 13"):
        start_algorithm_rollover(world.keys, 13, SPLIT, world.now)
    with pytest.raises(KeyTimingError, match="not supported"):
        start_algorithm_rollover(world.keys, 5, SPLIT, world.now)
    zsk = world.of_role(Role.ZSK)[0]
    with pytest.raises(KeyTimingError, match="only ZSK in service"):
        retire(world.keys, zsk.key_id, world.now)
    with pytest.raises(KeyTimingError, match="no key with id 'nope'"):
        mark_ds_seen(world.keys, "nope", world.now)
    with pytest.raises(KeyTimingError, match="is a ZSK"):
        mark_ds_seen(world.keys, zsk.key_id, world.now)


def test_emergency_on_incoming_key_is_refused() -> None:
    world = settled_world(SPLIT)
    world.keys = start_rollover(world.keys, Role.ZSK, SPLIT, world.now)
    step(world)
    new = world.of_role(Role.ZSK)[-1]
    with pytest.raises(RolloverInProgressError, match="is its new key"):
        emergency_rollover(world.keys, new.key_id, SPLIT, world.now)


def test_initial_keys() -> None:
    assert [(r.role, r.algorithm) for r in initial_keys(CSK, T0)] == [(Role.CSK, 13)]
    split = initial_keys(dataclasses.replace(SPLIT, algorithm=15), T0)
    assert [(r.role, r.algorithm) for r in split] == [(Role.KSK, 15), (Role.ZSK, 15)]
    assert initial_keys(dataclasses.replace(CSK, insecure=True), T0) == ()


def test_plan_is_pure_and_notes_algorithm_mismatch() -> None:
    world = settled_world(CSK)
    other = dataclasses.replace(CSK, algorithm=15)
    first = plan(world.keys, other, world.now, MAX_TTL)
    assert first == plan(world.keys, other, world.now, MAX_TTL)
    assert any("algorithm rollover" in n for n in first.notes)
    assert first.actions == ()


def test_action_properties() -> None:
    gen = Action(ActionKind.GENERATE, None, Role.CSK, 13)
    sub = Action(ActionKind.SUBMIT_DS, "k", Role.CSK, 13)
    assert gen.needs_key_generation and not gen.changes_zone and not gen.needs_ds_check
    assert sub.changes_zone and sub.needs_ds_check and not sub.needs_key_generation
    assert Role.ZSK.flags == 256 and Role.KSK.flags == Role.CSK.flags == 257


def test_old_algorithm_signatures_dropped_with_dnskey_is_detected() -> None:
    def retire_with_remove(world: World, action: Action) -> None:
        if action.kind is ActionKind.REMOVE and action.algorithm == 13:
            key = world.key(str(action.key_id))
            world.keys = tuple(
                dataclasses.replace(k, retire=world.now) if k is key else k for k in world.keys
            )

    world = settled_world(CSK)
    world.sabotage = retire_with_remove
    world.keys = start_algorithm_rollover(world.keys, 15, CSK, world.now)
    run(world, world.now + 20 * DAY)
    assert any("algorithm 13" in f for f in world.failures)
