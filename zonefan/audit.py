"""``zonefan audit report``: the evidence an auditor asks for, read from the primary's store
and the sync sidecar's state, never written by hand.

Per zone, a report is a list of *sections*, each a list of rows (JSON objects) and a
summary. The built-in ones: the changes (who, when, what, why), the key events, the
transfers to secondaries and how long each serial took to reach each of them, and per sync
target how long each serial took to converge and every failure, the health checks'
transitions of the zone's pools, the maintenance drains and the failover drills with their
measured times. A new kind of evidence is one more :class:`Section` registered with
:func:`register_section`: the JSON, HTML and text outputs show it with no other change.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import dns.name

from nameserver.store.drills import Drill, DrillEndpoint
from nameserver.store.journal import ChangesetSummary
from nameserver.store.store import Store
from nameserver.zone.records import Record
from nameserver.zone.serial import serial_ge
from signer.timing import ActionKind, DsExpect, ForecastStep
from sync.state import SyncState

REPORT_SCHEMA = "zonefan-audit-report"
REPORT_VERSION = 1
DEFAULT_RR_LIMIT = 20

# Key timestamps of the store (nameserver.store.schema.KEY_FIELDS) as report events.
KEY_EVENTS: dict[str, str] = {
    "created": "generated",
    "publish": "published",
    "ready": "ready",
    "active": "active",
    "retire": "retired",
    "remove": "removed",
    "ds_submitted": "ds-submitted",
    "ds_seen": "ds-seen",
    "ds_withdrawn": "ds-withdrawn",
    "ds_gone": "ds-gone",
    "roll_requested": "rollover-requested",
    "compromised": "compromised",
}
# The key planner's steps (signer.timing.forecast) as the same events.
PLANNED_EVENTS: dict[ActionKind | DsExpect, str] = {
    ActionKind.GENERATE: "generated",
    ActionKind.PUBLISH: "published",
    ActionKind.ACTIVATE: "active",
    ActionKind.SUBMIT_DS: "ds-submitted",
    ActionKind.WITHDRAW_DS: "ds-withdrawn",
    ActionKind.RETIRE: "retired",
    ActionKind.REMOVE: "removed",
    DsExpect.PRESENT: "ds-seen",
    DsExpect.ABSENT: "ds-gone",
}
# The key steps planned for a zone from now on for so many seconds (none: not signed).
KeyPlan = Callable[[dns.name.Name, int], Sequence[ForecastStep]]
# Sync event kinds that are failures (the others: "push", a success).
FAILURE_KINDS = ("error", "refused", "drift")


def iso(t: float | None) -> str | None:
    """A time of the report: ISO 8601 in UTC to the microsecond, None when unknown."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Period:
    """The report's period, ``since`` <= t < ``until`` (POSIX seconds)."""

    since: float
    until: float

    def __contains__(self, t: float) -> bool:
        return self.since <= t < self.until


@dataclass(frozen=True)
class SyncEvidence:
    """What the sidecar's state holds, read once for every zone: its events from the
    start of the period on (a serial committed in the period may converge after it), the
    (target, zone) pairs it knows, and when its oldest kept event happened."""

    path: str
    events: tuple[dict[str, Any], ...]
    pairs: tuple[tuple[str, str], ...]
    oldest_event: float | None

    def targets(self, zone: dns.name.Name) -> list[str]:
        names = {t for t, z in self.pairs if _same_zone(z, zone)}
        names.update(e["target"] for e in self.events if _same_zone(e["zone"], zone))
        return sorted(names)

    def of(self, target: str, zone: dns.name.Name) -> list[dict[str, Any]]:
        return [e for e in self.events if e["target"] == target and _same_zone(e["zone"], zone)]


@functools.lru_cache(maxsize=4096)
def _zone_of(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _same_zone(text: str, zone: dns.name.Name) -> bool:
    """The sidecar names zones as its config spells them: compared as names."""
    return bool(_zone_of(text) == zone)


@dataclass
class ZoneContext:
    """What a section reads for one zone. ``commits`` (serial, time) of the changes in
    the period, oldest first, are filled in by the changes section, which runs first."""

    zone: dns.name.Name
    period: Period
    now: float
    store: Store
    sync: SyncEvidence | None
    rr_limit: int = DEFAULT_RR_LIMIT
    key_plan: KeyPlan | None = None
    commits: list[tuple[int, float]] = field(default_factory=list)


class Section(Protocol):
    """One kind of evidence. ``key`` names its rows in a zone's JSON object (and its
    summary in the zone's ``summary``); ``title`` heads it in HTML and text."""

    key: str
    title: str

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        """The section's rows for one zone, each a JSON object, oldest first."""
        ...

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The section's figures for the zone's summary."""
        ...


SECTIONS: list[Section] = []


def register_section(section: Section) -> Section:
    """Add ``section`` to every report, after those registered before it; a key already
    taken is a programming error."""
    if any(s.key == section.key for s in SECTIONS) or section.key in _ZONE_FIELDS:
        raise ValueError(f"audit section key {section.key!r} is already taken")
    SECTIONS.append(section)
    return section


# Keys of a zone's object that are not sections.
_ZONE_FIELDS = ("zone", "serial", "coverage", "summary")


# -- convergence ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A serial that reached a receiver (a sync target, a secondary) at ``time``."""

    serial: int
    time: float


def first_deliveries(
    commits: Sequence[tuple[int, float]], deliveries: Sequence[Delivery]
) -> list[Delivery | None]:
    """Per commit (serial S at time T): the first delivery at or after T of S or a later
    serial (RFC 1982 order: the newer zone contains every earlier change), or None."""
    ordered = sorted(deliveries, key=lambda d: d.time)
    times = [d.time for d in ordered]
    return [
        next(
            (
                d
                for d in itertools.islice(ordered, bisect.bisect_left(times, committed), None)
                if serial_ge(d.serial, serial)
            ),
            None,
        )
        for serial, committed in commits
    ]


def convergence(
    commits: Sequence[tuple[int, float]],
    hits: Sequence[Delivery | None],
    covered_from: float | None,
) -> list[dict[str, Any]]:
    """Rows of :func:`first_deliveries`: the seconds from each commit to its delivery.
    ``status``: converged; pending (nothing delivered yet); unknown (nothing found and
    the evidence kept starts after the commit: it may have been pruned)."""
    rows = []
    for (serial, committed), hit in zip(commits, hits, strict=True):
        if hit is not None:
            status = "converged"
        elif covered_from is None or covered_from > committed:
            status = "unknown"
        else:
            status = "pending"
        rows.append(
            {
                "serial": serial,
                "committed_at": iso(committed),
                "converged_at": iso(hit.time) if hit else None,
                "delivered_serial": hit.serial if hit else None,
                "seconds": round(hit.time - committed, 6) if hit else None,
                "status": status,
            }
        )
    return rows


def convergence_summary(rows: Iterable[dict[str, Any]], by: str) -> dict[str, Any]:
    """Per receiver (``by``: the rows' key naming it): serials, converged, pending,
    unknown, and the median and max seconds of those converged."""
    out: dict[str, Any] = {}
    for row in rows:
        entry = out.setdefault(
            row[by],
            {"serials": 0, "converged": 0, "pending": 0, "unknown": 0, "seconds": []},
        )
        entry["serials"] += 1
        entry[row["status"]] += 1
        if row["seconds"] is not None:
            entry["seconds"].append(row["seconds"])
    for entry in out.values():
        seconds = entry.pop("seconds")
        entry["median_seconds"] = round(statistics.median(seconds), 6) if seconds else None
        entry["max_seconds"] = max(seconds) if seconds else None
    return out


# -- the built-in sections -----------------------------------------------------------------


def _rr_side(count: int, dnssec: int, listed: Sequence[Record]) -> dict[str, Any]:
    return {
        "count": count,
        "dnssec": dnssec,
        "records": [r.to_text() for r in listed],
        "listed": len(listed),
    }


class Changes:
    """Every changeset in the period: who, when, why, and what (counts; the first RRs of
    each side, the zone's own data before the signer's)."""

    key = "changes"
    title = "Changes"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        rows = []
        summaries: Iterable[ChangesetSummary] = ctx.store.changeset_summaries(
            ctx.zone, ctx.period.since, ctx.period.until, sample=ctx.rr_limit
        )
        for cs in summaries:
            ctx.commits.append((cs.serial_after, cs.time))
            rows.append(
                {
                    "id": cs.id,
                    "serial_before": cs.serial_before,
                    "serial_after": cs.serial_after,
                    "time": iso(cs.time),
                    "author": cs.author,
                    "message": cs.message,
                    "removed": _rr_side(cs.removed_count, cs.removed_dnssec, cs.removed),
                    "added": _rr_side(cs.added_count, cs.added_dnssec, cs.added),
                }
            )
        return rows

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "count": len(rows),
            "authors": sorted({r["author"] for r in rows}),
        }


class KeyEvents:
    """Each DNSSEC key's recorded timestamps in the period, and when the period reaches
    past the report's time, the key planner's steps in it. ``source``: observed (it
    happened: the key plan records a step when it takes it, the parent's DS when
    ds-check or an operator saw it) or planned (not yet: a DS change at the parent is
    planned at the moment it is first awaited, as `keys timeline` shows it)."""

    key = "key_events"
    title = "Key events"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        rows = []
        stored = ctx.store.keys(ctx.zone)
        for key in stored:
            for column, event in KEY_EVENTS.items():
                t = key.times.get(column)
                if not isinstance(t, int) or t not in ctx.period:
                    continue
                rows.append(
                    {
                        "key_id": key.id,
                        "key_tag": key.key_tag,
                        "algorithm": key.algorithm,
                        "role": key.role,
                        "event": event,
                        "time": iso(t),
                        "source": "planned" if t > ctx.now else "observed",
                    }
                )
        if ctx.key_plan is not None and ctx.period.until > ctx.now:
            tags = {k.id: k.key_tag for k in stored}
            for step in ctx.key_plan(ctx.zone, math.ceil(ctx.period.until - ctx.now)):
                if step.at in ctx.period:
                    rows.append(
                        {
                            "key_id": step.key_id,
                            "key_tag": tags.get(step.key_id),  # None: a key not made yet
                            "algorithm": step.algorithm,
                            "role": step.role.name,
                            "event": PLANNED_EVENTS[step.kind],
                            "time": iso(step.at),
                            "source": "planned",
                        }
                    )
        rows.sort(key=lambda r: (r["time"], r["key_id"], r["event"]))
        return rows

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["event"]] = counts.get(r["event"], 0) + 1
        return {"count": len(rows), "events": counts}


class Secondaries:
    """Every zone transfer served in the period (from the transfer log): which
    secondary took which serial, when, how."""

    key = "secondaries"
    title = "Transfers to secondaries"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        return [
            {
                "address": t.client,
                "serial": t.serial_to,
                "serial_from": t.serial_from,
                "time": iso(t.time),
                "kind": t.kind,
                "key": t.key,
                "error": t.error,
            }
            for t in ctx.store.transfers_between(ctx.zone, ctx.period.since, ctx.period.until)
        ]

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {
            "transfers": len(rows),
            "failed": sum(1 for r in rows if r["error"]),
            "addresses": sorted({r["address"] for r in rows}),
        }


class SecondaryConvergence:
    """Per secondary and serial committed in the period: when the secondary first
    fetched it (or a later serial), from the transfer log."""

    key = "secondary_convergence"
    title = "Convergence of secondaries"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        if not ctx.commits:
            return []
        logged = ctx.store.transfers_between(ctx.zone, ctx.commits[0][1])
        by_client: dict[str, list[Delivery]] = {}
        for t in logged:
            delivered = by_client.setdefault(t.client, [])
            if t.error is None:
                delivered.append(Delivery(t.serial_to, t.time))
        rows = []
        for client, delivered in sorted(by_client.items()):
            hits = first_deliveries(ctx.commits, delivered)
            for row in convergence(ctx.commits, hits, ctx.period.since):
                rows.append({"address": client, **row})
        return rows

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return convergence_summary(rows, "address")


def _failure(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "time": iso(event["at"]),
        "kind": event["kind"],
        "serial": event["serial"],
        "message": event["detail"],
    }


class SyncConvergence:
    """Per sync target and serial committed in the period: when the sidecar recorded a
    successful push of it (or of a later serial), the seconds from the commit, and the
    failures between the two."""

    key = "sync"
    title = "Sync targets: convergence"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        if ctx.sync is None:
            return []
        rows = []
        for target in ctx.sync.targets(ctx.zone):
            events = ctx.sync.of(target, ctx.zone)
            pushes = [Delivery(e["serial"], e["at"]) for e in events if e["kind"] == "push"]
            hits = first_deliveries(ctx.commits, pushes)
            table = convergence(ctx.commits, hits, ctx.sync.oldest_event)
            for (_serial, committed), hit, row in zip(ctx.commits, hits, table, strict=True):
                failures = [
                    _failure(e)
                    for e in events
                    if e["kind"] in FAILURE_KINDS
                    and e["at"] >= committed
                    and (hit is None or e["at"] <= hit.time)
                ]
                rows.append({"target": target, **row, "failures": failures})
        return rows

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return convergence_summary(rows, "target")


class SyncFailures:
    """Every failure the sidecar recorded for the zone in the period: a push that
    failed (retried), a push refused (an operator must act), drift found at a target."""

    key = "sync_failures"
    title = "Sync targets: failures"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        if ctx.sync is None:
            return []
        return [
            {"target": e["target"], **_failure(e)}
            for e in ctx.sync.events
            if e["kind"] in FAILURE_KINDS
            and _same_zone(e["zone"], ctx.zone)
            and e["at"] in ctx.period
        ]

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        return {"count": len(rows), "kinds": counts}


# -- continuity: health checks, drains, drills -----------------------------------------------


def _owning_zone(name: dns.name.Name, zones: Sequence[dns.name.Name]) -> dns.name.Name | None:
    """The store zone a pool is published in: the longest one that contains its name."""
    inside = [z for z in zones if name.is_subdomain(z)]
    return max(inside, key=len) if inside else None


class HealthTransitions:
    """What the pools' health checks did to the zone's pools: members withdrawn and
    restored (with what the check saw and which checkers agreed), pools degraded (every
    member down, all kept) and recovered, the checks started."""

    key = "health"
    title = "Health-checked pools: transitions"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        zones = ctx.store.zone_names()
        return [
            {
                "time": iso(e.time),
                "pool": e.pool.to_text(),
                "event": e.event,
                "member": e.member,
                "region": e.region,
                "reason": e.reason,
                "checkers": list(e.checkers),
            }
            for e in ctx.store.health_events(since=ctx.period.since)
            if e.time in ctx.period and _owning_zone(e.pool, zones) == ctx.zone
        ]

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        events: dict[str, int] = {}
        for r in rows:
            events[r["event"]] = events.get(r["event"], 0) + 1
        return {"count": len(rows), "events": events}


class Drains:
    """Maintenance drains in force at any time of the period that cover the zone (drains
    of every zone included): who drained which region, when and why, and the undrain."""

    key = "drains"
    title = "Maintenance drains"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        rows = []
        for d in ctx.store.drains(active_only=False):
            ended = d.undrained if d.undrained is not None else math.inf
            if d.since >= ctx.period.until or ended < ctx.period.since:
                continue
            if d.zone is not None and d.zone != ctx.zone:
                continue
            rows.append(
                {
                    "region": d.region,
                    "scope": "every zone" if d.zone is None else d.zone.to_text(),
                    "since": iso(d.since),
                    "author": d.author,
                    "reason": d.reason,
                    "undrained": iso(d.undrained),
                    "undrained_by": d.undrained_by,
                    "undrain_reason": d.undrain_reason,
                    "seconds": None if d.undrained is None else round(d.undrained - d.since, 6),
                }
            )
        return rows

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"count": len(rows), "in_force": sum(r["undrained"] is None for r in rows)}


def _endpoint(e: DrillEndpoint) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "name": e.name,
        "address": e.address,
        "measured": e.measured,
        "drained_seconds": e.drained_at,
        "restored_seconds": e.restored_at,
        "queries": e.queries,
        "note": e.note,
    }


def _slowest(drill: Drill, phase: str) -> dict[str, Any] | None:
    e = drill.slowest(phase)
    if e is None:
        return None
    return {"name": e.name, "seconds": e.drained_at if phase == "drained" else e.restored_at}


class Drills:
    """Failover drills of the zone's pools started in the period, with each endpoint's
    measured time to serve the answer without the drained region and with it back (the
    recovery time measured, not promised), the slowest, and what failed."""

    key = "drills"
    title = "Failover drills"

    def collect(self, ctx: ZoneContext) -> list[dict[str, Any]]:
        return [
            {
                "id": d.id,
                "region": d.region,
                "author": d.author,
                "reason": d.reason,
                "start": iso(d.start),
                "outcome": d.outcome,
                "slowest_drained": _slowest(d, "drained"),
                "slowest_restored": _slowest(d, "restored"),
                "failures": d.failures,
                "endpoints": [_endpoint(e) for e in d.endpoints],
            }
            for d in ctx.store.drills(ctx.period.since, ctx.period.until, ctx.zone)
        ]

    def summarise(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        def worst(phase: str) -> float | None:
            taken = [r[phase]["seconds"] for r in rows if r[phase] is not None]
            known = [t for t in taken if t is not None]
            return None if len(known) < len(taken) or not known else max(known)

        return {
            "count": len(rows),
            "failed": sum(r["outcome"] != "passed" for r in rows),
            "max_drained_seconds": worst("slowest_drained"),
            "max_restored_seconds": worst("slowest_restored"),
        }


for _section in (
    Changes(),
    KeyEvents(),
    Secondaries(),
    SecondaryConvergence(),
    SyncConvergence(),
    SyncFailures(),
    HealthTransitions(),
    Drains(),
    Drills(),
):
    register_section(_section)


# -- the report ----------------------------------------------------------------------------


def build_report(
    store: Store,
    zones: Sequence[dns.name.Name],
    period: Period,
    now: float,
    sync: SyncEvidence | None,
    rr_limit: int = DEFAULT_RR_LIMIT,
    sections: Sequence[Section] | None = None,
    key_plan: KeyPlan | None = None,
) -> dict[str, Any]:
    """The report as one JSON-able object (the schema is in the README, "Audit report");
    ``now`` is its generated-at time; ``key_plan`` gives the key steps planned after it."""
    chosen = list(SECTIONS if sections is None else sections)
    out_zones = []
    for zone in zones:
        ctx = ZoneContext(zone, period, now, store, sync, rr_limit, key_plan)
        start = store.journal_start(zone)
        entry: dict[str, Any] = {
            "zone": zone.to_text(),
            "serial": store.serial(zone),
            "coverage": {
                "journal_from": iso(start[0]) if start else None,
                "journal_complete": start is not None and start[1],
                "sync_events_from": iso(sync.oldest_event) if sync else None,
            },
        }
        summary: dict[str, Any] = {}
        for section in chosen:
            rows = section.collect(ctx)
            entry[section.key] = rows
            summary[section.key] = section.summarise(rows)
        entry["summary"] = summary
        out_zones.append(entry)
    return {
        "schema": REPORT_SCHEMA,
        "version": REPORT_VERSION,
        "generated_at": iso(now),
        "period": {"since": iso(period.since), "until": iso(period.until)},
        "sources": {"store": store.path, "sync_state": sync.path if sync else None},
        "sections": [{"key": s.key, "title": s.title} for s in chosen],
        "zones": out_zones,
        "summary": _totals(out_zones),
    }


def _totals(zones: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def count(key: str, field_: str) -> int:
        return sum(int(z["summary"].get(key, {}).get(field_, 0)) for z in zones)

    return {
        "zones": len(zones),
        "changes": count("changes", "count"),
        "key_events": count("key_events", "count"),
        "transfers": count("secondaries", "transfers"),
        "sync_failures": count("sync_failures", "count"),
        "health_events": count("health", "count"),
        "drains": count("drains", "count"),
        "drills": count("drills", "count"),
        "drills_failed": count("drills", "failed"),
        "sync_pending": sum(
            int(t["pending"]) for z in zones for t in z["summary"].get("sync", {}).values()
        ),
    }


def load_sync_evidence(path: Path, since: float) -> SyncEvidence:
    """The sidecar's evidence from its state file at ``path``, opened read-only
    (StateError when there is none)."""
    state = SyncState(path, read_only=True)
    try:
        return SyncEvidence(
            path=str(path),
            events=tuple(state.events_between(since)),
            pairs=tuple((s.target, s.zone) for s in state.status()),
            oldest_event=state.oldest_event(),
        )
    finally:
        state.close()
