"""What the store keeps for business continuity: the health events of pools (a member
withdrawn or restored, a pool degraded) and the maintenance drains of regions.

Both are logs: rows are added, a drain is ended by stamping it, nothing is deleted, so
"what was out of service, since when, by whom and why" can always be answered.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from nameserver.errors import StoreError
from nameserver.store.codec import _zone_key
from nameserver.store.schema import StoreFile

# What a health event says; ``started`` marks a monitor starting with every member
# published, so earlier verdicts no longer hold.
HEALTH_EVENTS = ("withdrawn", "restored", "degraded", "recovered", "started")


@dataclass(frozen=True)
class HealthEvent:
    """One event of a pool: of one member (``member``, ``region``) or of the whole pool."""

    time: float
    pool: dns.name.Name
    event: str
    reason: str
    member: str | None = None
    region: str | None = None
    checkers: tuple[str, ...] = ()
    id: int | None = None


@dataclass(frozen=True)
class Drain:
    """A region taken out of service by hand: in every zone (``zone`` None) or one."""

    id: int
    region: str
    zone: dns.name.Name | None
    since: float
    author: str
    reason: str
    undrained: float | None = None
    undrained_by: str | None = None
    undrain_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.undrained is None

    def covers(self, zone: dns.name.Name) -> bool:
        """True when the drain holds in ``zone``."""
        return self.active and (self.zone is None or self.zone == zone)


_DRAIN_COLUMNS = "id, region, zone, since, author, reason, undrained, undrained_by, undrain_reason"


class Continuity(StoreFile):
    """Health events and drains."""

    # -- health events --

    def record_health(self, events: list[HealthEvent]) -> None:
        """Append ``events`` in one transaction."""
        for e in events:
            if e.event not in HEALTH_EVENTS:
                raise StoreError(f"unknown health event {e.event!r}")
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO health_events (time, pool, member, region, event, reason, "
                "checkers) VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        e.time,
                        _zone_key(e.pool),
                        e.member,
                        e.region,
                        e.event,
                        e.reason,
                        ",".join(e.checkers),
                    )
                    for e in events
                ],
            )

    def health_events(
        self, pool: dns.name.Name | None = None, since: float | None = None
    ) -> list[HealthEvent]:
        """Health events, oldest first (of one pool when given; from ``since`` on)."""
        where, args = ["1"], list[object]()
        if pool is not None:
            where.append("pool = ?")
            args.append(_zone_key(pool))
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, time, pool, member, region, event, reason, checkers "
                f"FROM health_events WHERE {' AND '.join(where)} ORDER BY id",
                args,
            ).fetchall()
        return [
            HealthEvent(
                t, dns.name.from_text(p), ev, why, m, r, tuple(filter(None, c.split(","))), i
            )
            for i, t, p, m, r, ev, why, c in rows
        ]

    def withdrawn_members(self, pool: dns.name.Name) -> set[str]:
        """The members of ``pool`` whose last verdict since the monitor last started is
        "withdrawn" (empty when health is not known: a member is healthy until a check
        says otherwise)."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT member, event FROM health_events WHERE id IN ("
                " SELECT MAX(id) FROM health_events WHERE pool = ? AND member IS NOT NULL"
                "  AND event IN ('withdrawn', 'restored') AND id > COALESCE(("
                "   SELECT MAX(id) FROM health_events WHERE pool = ? AND event = 'started'), 0)"
                " GROUP BY member)",
                (_zone_key(pool), _zone_key(pool)),
            ).fetchall()
        return {member for member, event in rows if event == "withdrawn"}

    # -- drains --

    def add_drain(
        self, region: str, zone: dns.name.Name | None, since: float, author: str, reason: str
    ) -> Drain:
        """Record a drain in force from ``since``."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO drains (region, zone, since, author, reason) VALUES (?,?,?,?,?)",
                (region, None if zone is None else _zone_key(zone), since, author, reason),
            )
            drain_id = int(cur.lastrowid or 0)
        return Drain(drain_id, region, zone, since, author, reason)

    def end_drains(self, ids: list[int], at: float, author: str, reason: str) -> None:
        """Stamp the drains ``ids`` as ended."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE drains SET undrained = ?, undrained_by = ?, undrain_reason = ? "
                "WHERE id = ? AND undrained IS NULL",
                [(at, author, reason, i) for i in ids],
            )

    def drains(self, active_only: bool = True) -> list[Drain]:
        """Drains, oldest first: those in force, or (``active_only`` off) all of them."""
        where = "WHERE undrained IS NULL" if active_only else ""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_DRAIN_COLUMNS} FROM drains {where} ORDER BY id"
            ).fetchall()
        return [
            Drain(i, r, None if z is None else dns.name.from_text(z), s, a, why, u, ub, ur)
            for i, r, z, s, a, why, u, ub, ur in rows
        ]
