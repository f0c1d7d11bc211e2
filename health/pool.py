"""What a pool publishes: the quorum of checkers per member, damping, and the never-empty
rule, as a :class:`PoolDecision` the composition root turns into a changeset.

Quorum: each checker (the local one and the remote ones) judges a member with its own
rise/fall streak; the member is down when at least ``quorum`` of the checkers that reported
within the last ``stale-intervals`` intervals judge it down (default: a majority of them).
A checker that stopped reporting therefore neither withdraws nor keeps anything.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype

from health.config import Member, Pool
from health.errors import ReportError
from health.state import Flap, Streak

log = logging.getLogger("zonefan.health")

# What a remote checker may say about what it saw: enough for a reason in a changeset.
MAX_DETAIL = 200
_CHECKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


@dataclass(frozen=True)
class CheckerReport:
    """One result of one checker about one member: what a remote checker sends (its
    transport authenticates it; this type only vouches that the fields are well-formed)."""

    checker: str
    pool: dns.name.Name
    address: str
    ok: bool
    at: float
    detail: str = ""

    def __post_init__(self) -> None:
        if not _CHECKER_ID.fullmatch(self.checker):
            raise ReportError(f"checker id {self.checker!r} is not letters, digits, '-', '_'")
        try:
            address = ipaddress.ip_address(self.address)
        except ValueError:
            raise ReportError(f"{self.address!r} is not an IP address") from None
        if address.compressed != self.address:
            raise ReportError(f"{self.address!r} is not written as {address.compressed!r}")
        if not math.isfinite(self.at) or self.at < 0:
            raise ReportError(f"time {self.at!r} is not a time in seconds since the epoch")
        if len(self.detail) > MAX_DETAIL or not _PRINTABLE.fullmatch(self.detail):
            raise ReportError(f"detail is not printable ASCII of at most {MAX_DETAIL} chars")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CheckerReport:
        """A report from decoded JSON: ``checker``, ``pool``, ``address``, ``ok``, ``at``,
        optional ``detail``; every field checked, nothing else allowed."""
        unknown = sorted(set(data) - {"checker", "pool", "address", "ok", "at", "detail"})
        if unknown:
            raise ReportError(f"unknown field {unknown[0]!r} in a check report")
        try:
            checker, pool, address = data["checker"], data["pool"], data["address"]
            ok, at, detail = data["ok"], data["at"], data.get("detail", "")
        except KeyError as exc:
            raise ReportError(f"a check report needs the field {exc.args[0]!r}") from None
        for key, value, kind in (
            ("checker", checker, str),
            ("pool", pool, str),
            ("address", address, str),
            ("ok", ok, bool),
            ("detail", detail, str),
        ):
            if not isinstance(value, kind):
                raise ReportError(f"{key} {value!r} is not a {kind.__name__}")
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise ReportError(f"at {at!r} is not a number")
        try:
            name = dns.name.from_text(pool)
        except dns.exception.DNSException as exc:
            raise ReportError(f"pool {pool!r} is not a domain name: {exc}") from None
        return cls(checker, name, address, ok, float(at), detail)

    def to_fields(self) -> list[str]:
        """The report as ``key=value`` strings (one TXT RR of an UPDATE report; the pool
        is the owner name, see :meth:`from_fields`)."""
        fields = [
            f"checker={self.checker}",
            f"address={self.address}",
            f"ok={'true' if self.ok else 'false'}",
            f"at={self.at!r}",  # repr: the float read back is the same
        ]
        return [*fields, f"detail={self.detail}"] if self.detail else fields

    @classmethod
    def from_fields(cls, pool: dns.name.Name, strings: Sequence[bytes]) -> CheckerReport:
        """A report from :meth:`to_fields` strings about ``pool``: every field once,
        nothing else allowed."""
        data: dict[str, Any] = {"pool": pool.to_text()}
        for raw in strings:
            try:
                text = raw.decode("ascii")
            except UnicodeDecodeError:
                raise ReportError("a field of a check report is not ASCII") from None
            key, eq, value = text.partition("=")
            if not eq or key == "pool":
                raise ReportError(f"{text[:40]!r} is not a field of a check report (key=value)")
            if key in data:
                raise ReportError(f"the field {key!r} is given twice")
            data[key] = value
        if "ok" in data:
            if data["ok"] not in ("true", "false"):
                raise ReportError(f"ok {data['ok']!r} is not true or false")
            data["ok"] = data["ok"] == "true"
        if "at" in data:
            try:
                data["at"] = float(data["at"])
            except ValueError:
                raise ReportError(f"at {data['at']!r} is not a number") from None
        return cls.from_mapping(data)


@dataclass(frozen=True)
class Transition:
    """A member withdrawn (``published`` False) or restored, with why and by whom."""

    pool: dns.name.Name
    member: Member
    published: bool
    reason: str
    checkers: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class Degraded:
    """Every member of the pool is down: all are kept (never answer with nothing)."""

    pool: dns.name.Name
    members: int
    at: float

    @property
    def reason(self) -> str:
        return f"all members down: keeping all {self.members}, pool degraded"


@dataclass(frozen=True)
class Recovered:
    """The end of a degraded episode: a member is up again."""

    pool: dns.name.Name
    at: float


Event = Transition | Degraded | Recovered


@dataclass(frozen=True)
class PoolDecision:
    """The addresses a pool should publish, whether they differ from the last decision,
    and why: a pure value for the composition root to make a changeset of."""

    pool: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ttl: int
    addresses: frozenset[str]
    changed: bool
    reason: str
    degraded: bool = False
    events: tuple[Event, ...] = ()

    @property
    def author(self) -> str:
        """The author of the changeset that applies this decision."""
        return f"health:{self.pool.to_text()}"


@dataclass
class _MemberState:
    member: Member
    flap: Flap
    views: dict[str, Streak] = field(default_factory=dict)
    down: bool = False  # the quorum's verdict
    published: bool = True  # down or held out for flapping: False


class PoolHealth:
    """The health of one pool's members as the checkers see them; :meth:`decide` says what
    to publish. Time is always an argument: the caller's clock."""

    def __init__(
        self, pool: Pool, checkers: Collection[str] = ("local",), stale_intervals: int = 3
    ) -> None:
        self.pool = pool
        self.checkers = frozenset(checkers)
        self.stale_after = stale_intervals * pool.check.interval
        self._members = {m.address: _MemberState(m, Flap(pool.damping)) for m in pool.members}
        self.published = frozenset(self._members)
        self.degraded = False

    def accepts(self, checker: str, address: str) -> None:
        """Nothing when ``checker`` may report on ``address``; a ReportError otherwise."""
        if checker not in self.checkers:
            raise ReportError(f"unknown checker {checker!r} (known: {sorted(self.checkers)})")
        if address not in self._members:
            raise ReportError(f"{address} is not a member of pool {self.pool.label}")

    def observe(self, checker: str, address: str, ok: bool, at: float, detail: str = "") -> None:
        """A result of ``checker`` about the member at ``address``."""
        self.accepts(checker, address)
        check = self.pool.check
        streak = self._members[address].views.setdefault(checker, Streak(check.rise, check.fall))
        streak.record(ok, at, detail)

    def down_votes(self, address: str, now: float) -> tuple[list[str], int]:
        """The checkers that judge ``address`` down, and how many reported recently."""
        fresh = {
            c: s for c, s in self._members[address].views.items() if now - s.at <= self.stale_after
        }
        return sorted(c for c, s in fresh.items() if not s.up), len(fresh)

    def decide(self, now: float) -> PoolDecision:
        """What to publish at ``now``, and the events since the last decision."""
        events: list[Event] = []
        for state in self._members.values():
            transition = self._judge(state, now)
            if transition is not None:
                events.append(transition)
        chosen = frozenset(a for a, s in self._members.items() if s.published)
        if not chosen:
            # Healthy members held out for flapping serve better than dead ones.
            chosen = frozenset(a for a, s in self._members.items() if not s.down)
        degraded = not chosen
        if degraded:
            chosen = frozenset(self._members)
            if not self.degraded:
                episode = Degraded(self.pool.name, len(chosen), now)
                log.error("pool %s: %s", self.pool.label, episode.reason)
                events.append(episode)
        elif self.degraded:
            log.warning("pool %s: no longer degraded", self.pool.label)
            events.append(Recovered(self.pool.name, now))
        self.degraded = degraded
        changed = chosen != self.published
        self.published = chosen
        reasons = [e.reason for e in events if not isinstance(e, Recovered)]
        if degraded and changed and not any(isinstance(e, Degraded) for e in events):
            reasons.append(Degraded(self.pool.name, len(chosen), now).reason)
        return PoolDecision(
            self.pool.name,
            self.pool.rdtype,
            self.pool.ttl,
            chosen,
            changed,
            "; ".join(reasons),
            degraded,
            tuple(events),
        )

    def _judge(self, state: _MemberState, now: float) -> Transition | None:
        released = state.flap.update(now)
        downs, fresh = self.down_votes(state.member.address, now)
        if fresh:
            need = self.pool.quorum or fresh // 2 + 1
            down = len(downs) >= need
            if down and not state.down:
                state.flap.withdrawn(now)
            state.down = down
        published = not state.down and not state.flap.suppressed
        if published == state.published:
            return None
        state.published = published
        member = state.member
        name = f"{member.address} ({member.region})"
        if published:
            ups = sorted(
                c for c, s in state.views.items() if s.up and now - s.at <= self.stale_after
            )
            if released:
                why = f"flap penalty decayed below {self.pool.damping.reuse:g}"
            else:
                why = state.views[ups[0]].detail if ups else "checks passed"
            by = f" (up for {', '.join(ups)})" if ups else ""
            reason = f"{name} restored: {why}{by}"
            log.info("pool %s: %s", self.pool.label, reason)
            return Transition(self.pool.name, member, True, reason, tuple(ups), now)
        detail = state.views[downs[0]].detail if downs else "down"
        by = f"down for {', '.join(downs)}: {len(downs)} of {fresh} checkers"
        reason = f"{name} withdrawn: {detail} ({by})"
        if state.flap.suppressed:
            damping = self.pool.damping
            reason += (
                f"; flapping (penalty {state.flap.merit:.0f}, suppress at {damping.suppress:g}): "
                f"held out until it decays below {damping.reuse:g}, "
                f"{state.flap.reuse_at() - now:.0f}s if it flaps no more"
            )
        log.warning("pool %s: %s", self.pool.label, reason)
        return Transition(self.pool.name, member, False, reason, tuple(downs), now)
