"""Plans: the reviewable difference between the zone and one target, at RRset granularity.

A plan is a value: computing it reads nothing and applying it is the target's job. Changes
come in a deterministic order (deletes, then updates, then creates; each in canonical name
order), so the same inputs always give the same plan and the same requests.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import dns.name
import dns.rdatatype

from sync.errors import PlanRefusedError
from sync.model import DNSSEC_TYPES, RRset, RRsetKey, ZoneData, gc_paused, sort_key


class Action(enum.IntEnum):
    """What a change does; the value is its place in a plan's order."""

    DELETE = 0
    UPDATE = 1
    CREATE = 2


class TtlAdjustment(NamedTuple):
    """An RRset whose TTL the target cannot hold as it is: it holds ``held`` instead."""

    key: RRsetKey
    wanted: int
    held: int


class Change(NamedTuple):
    """One RRset to create, replace or delete at a target. A tuple: a plan for a new zone
    holds one per RRset, and a tuple is made in a third of a frozen dataclass's time."""

    action: Action
    old: RRset | None
    new: RRset | None

    @property
    def key(self) -> RRsetKey:
        rrset = self.new if self.new is not None else self.old
        assert rrset is not None
        return rrset.key

    @property
    def name(self) -> dns.name.Name:
        return self.key[0]

    @property
    def rdtype(self) -> dns.rdatatype.RdataType:
        return self.key[1]

    def describe(self, origin: dns.name.Name | None = None) -> str:
        rrset = self.new if self.new is not None else self.old
        assert rrset is not None
        owner = rrset.name.to_text() if origin is None else rrset.name.relativize(origin).to_text()
        kind = dns.rdatatype.to_text(rrset.rdtype)
        sign = {Action.CREATE: "+", Action.UPDATE: "~", Action.DELETE: "-"}[self.action]
        data = " ".join(rrset.texts()) if self.new is not None else ""
        return f"{sign} {owner} {rrset.ttl} {kind} {data}".rstrip()


@dataclass(frozen=True)
class Plan:
    """Everything one target needs to serve the zone, and what it holds that is not ours."""

    zone: dns.name.Name
    target: str
    serial: int
    changes: tuple[Change, ...]
    foreign: tuple[RRsetKey, ...] = ()
    # What the provider does not hold as we have it (see sync.providers.capabilities).
    unsupported: tuple[RRsetKey, ...] = ()
    provider_owned: tuple[RRsetKey, ...] = ()
    ttls: tuple[TtlAdjustment, ...] = ()
    existing: int = 0  # data RRsets zonefan manages at the target (see _counts_for_safety)
    create_zone: bool = False
    # The target serves the zone now: it holds the zone with an SOA at its apex. A zone
    # without one is not served (e.g. one a provider holds hidden while it is staged).
    served: bool = True
    desired: ZoneData | None = field(default=None, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not self.changes and not self.create_zone

    def count(self, action: Action) -> int:
        return self._counts[action]

    @functools.cached_property
    def _counts(self) -> dict[Action, int]:
        counts = dict.fromkeys(Action, 0)
        for change in self.changes:
            counts[change.action] += 1
        return counts

    def summary(self) -> str:
        return (
            f"{self.count(Action.CREATE)} to create, {self.count(Action.UPDATE)} to update, "
            f"{self.count(Action.DELETE)} to delete"
        )

    def lines(self) -> list[str]:
        """Human-readable plan: one line per change, then what is left alone."""
        out = [c.describe(self.zone) for c in self.changes]
        out += [
            f"! {n.relativize(self.zone)} {dns.rdatatype.to_text(t)} not managed by "
            "zonefan: left alone"
            for n, t in self.foreign
        ]
        out += [
            f"! {n.relativize(self.zone)} {dns.rdatatype.to_text(t)} not supported by "
            "the target: skipped"
            for n, t in self.unsupported
        ]
        out += [
            f"! {n.relativize(self.zone)} {dns.rdatatype.to_text(t)} is the provider's own: "
            "left to it"
            for n, t in self.provider_owned
        ]
        out += [
            f"! {a.key[0].relativize(self.zone)} {dns.rdatatype.to_text(a.key[1])} TTL "
            f"{a.wanted} held as {a.held}: outside the target's TTL range"
            for a in self.ttls
        ]
        return out


@gc_paused
def compute_plan(
    desired: ZoneData,
    current: ZoneData | None,
    *,
    target: str,
    owned: Collection[RRsetKey] = (),
    served: bool | None = None,
    serial: int | None = None,
) -> Plan:
    """The changes that make ``current`` (None: the zone is missing at the target) serve
    ``desired``. An RRset only at the target is deleted when zonefan pushed it before
    (``owned``) and otherwise reported as foreign and left alone. ``served`` says whether
    the target serves the zone now (default: it holds an SOA at the apex); ``serial`` is
    the zone's (default: ``desired``'s SOA; a provider that writes its own SOA gets none)."""
    wanted = desired.rrsets
    if serial is None:
        serial = desired.serial
    if current is None:  # a new zone: all of it is created, in the zone's canonical order
        return Plan(
            zone=desired.origin,
            target=target,
            serial=serial,
            changes=tuple(Change(Action.CREATE, None, r) for r in desired),
            create_zone=True,
            served=False,
            desired=desired,
        )
    have = current.rrsets
    changes: list[Change] = []
    # One pass in dict order, sorting only what changed: a zone patched by IXFR shares its
    # unchanged RRset objects with the version pushed before, so most are skipped by identity.
    for key, new in wanted.items():
        old = have.get(key)
        if old is new:
            continue
        if old is None:
            changes.append(Change(Action.CREATE, None, new))
        elif not old.same_data(new):
            changes.append(Change(Action.UPDATE, old, new))
    foreign: list[RRsetKey] = []
    owned_set = owned if isinstance(owned, set | frozenset) else set(owned)
    for key, old in have.items():
        if key in wanted:
            continue
        if key in owned_set:
            changes.append(Change(Action.DELETE, old, None))
        else:
            foreign.append(key)
    foreign.sort(key=sort_key)
    changes.sort(key=lambda c: (int(c.action), sort_key(c.key)))
    existing = sum(1 for k in have if (k in wanted or k in owned_set) and _counts_for_safety(k))
    if served is None:
        served = (current.origin, dns.rdatatype.SOA) in have
    return Plan(
        zone=desired.origin,
        target=target,
        serial=serial,
        changes=tuple(changes),
        foreign=tuple(foreign),
        existing=existing,
        served=served,
        desired=desired,
    )


def _counts_for_safety(key: RRsetKey) -> bool:
    """Data RRsets only: every change replaces the SOA, and a re-sign replaces every
    signature, so neither says anything about a plan being dangerous."""
    return key[1] not in DNSSEC_TYPES and key[1] != dns.rdatatype.SOA


@dataclass(frozen=True)
class Safety:
    """octoDNS-style thresholds: a plan that deletes or replaces more than ``max_share`` of
    the RRsets zonefan manages at a target (on zones of ``min_rrsets`` or more), or that
    touches the apex NS set, is refused unless forced. Only data RRsets count (not the
    SOA nor DNSSEC records). A plan for a zone the target does not serve yet breaks
    nothing that is served, so it is never refused."""

    max_share: float = 0.3
    min_rrsets: int = 10

    def check(self, plan: Plan, *, force: bool = False) -> None:
        """Raise :class:`PlanRefusedError` naming the rule broken, unless ``force``."""
        if force or not plan.served:
            return
        problems = list(self._problems(plan))
        if problems:
            raise PlanRefusedError(
                f"plan for {plan.zone} at {plan.target} refused: "
                + "; ".join(problems)
                + f". Review it with `zonefan sync plan {plan.zone} --target {plan.target}` "
                f"and apply with `zonefan sync apply --target {plan.target} --force`."
            )

    def _problems(self, plan: Plan) -> Iterable[str]:
        for change in plan.changes:
            if change.name == plan.zone and change.rdtype == dns.rdatatype.NS:
                yield "it changes the apex NS set"
                break
        risky = sum(
            1
            for c in plan.changes
            if c.action in (Action.DELETE, Action.UPDATE) and _counts_for_safety(c.key)
        )
        base = plan.existing
        if base >= self.min_rrsets and risky > self.max_share * base:
            yield (
                f"it deletes or replaces {risky} of {base} RRsets "
                f"({100 * risky / base:.0f}% > {100 * self.max_share:.0f}%)"
            )
