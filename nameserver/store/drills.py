"""The drills the store keeps: measured failover tests (``zonefan drill``), each with the
time every endpoint took to serve the drained answer and to serve the restored one.

A drill is written when it starts (outcome ``running``) and completed when it ends, so a
drill killed on the way is still there, as never finished. Nothing is deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.name

from nameserver.errors import StoreError
from nameserver.store.codec import _zone_key
from nameserver.store.schema import StoreFile

DRILL_OUTCOMES = ("running", "passed", "failed")
ENDPOINT_KINDS = ("primary", "secondary", "target", "sidecar")


@dataclass(frozen=True)
class DrillEndpoint:
    """One server a drill queried (or could not: ``measured`` off, ``note`` says why).

    ``drained_at``: seconds from the drain's commit to the first answer without the
    drained members; ``restored_at``: from the undrain's commit to the first answer with
    them back; None when not reached within the drill's timeout (``note``: what was last
    seen)."""

    kind: str
    name: str
    address: str | None
    measured: bool
    drained_at: float | None = None
    restored_at: float | None = None
    queries: int = 0
    note: str = ""

    @property
    def failed(self) -> bool:
        return self.measured and (self.drained_at is None or self.restored_at is None)


@dataclass(frozen=True)
class Drill:
    """A drill of ``region`` over the pools of ``zones``. ``start`` is POSIX time; the
    undrain was committed ``restore_start`` seconds after it; ``error`` is what stopped
    the drill itself (interrupted, the restore failed), empty otherwise."""

    id: int
    region: str
    zones: tuple[dns.name.Name, ...]
    author: str
    reason: str
    start: float
    outcome: str = "running"
    restore_start: float | None = None
    finished: float | None = None
    timeout: float = 0.0
    error: str = ""
    endpoints: tuple[DrillEndpoint, ...] = field(default=())

    def slowest(self, phase: str) -> DrillEndpoint | None:
        """The measured endpoint that took longest in ``phase`` ("drained" or
        "restored"), counting one that never got there as the slowest."""
        measured = [e for e in self.endpoints if e.measured]
        if not measured:
            return None

        def took(e: DrillEndpoint) -> float:
            value = e.drained_at if phase == "drained" else e.restored_at
            return float("inf") if value is None else value

        return max(measured, key=took)

    @property
    def failures(self) -> list[str]:
        """What failed, one line each: the drill's own error, then each endpoint that did
        not converge."""
        out = [self.error] if self.error else []
        for e in self.endpoints:
            if e.failed:
                phases = [
                    phase
                    for phase, at in (("drained", e.drained_at), ("restored", e.restored_at))
                    if at is None
                ]
                out.append(
                    f"{e.kind} {e.name} ({e.address}) never served the {' nor the '.join(phases)} "
                    f"answer within {self.timeout:g} s"
                )
        return out


_DRILL_COLUMNS = (
    "id, region, zones, author, reason, start, outcome, restore_start, finished, timeout, error"
)


class Drills(StoreFile):
    """The drills table and its endpoints."""

    def start_drill(
        self,
        region: str,
        zones: Sequence[dns.name.Name],
        author: str,
        reason: str,
        start: float,
        timeout: float,
    ) -> Drill:
        """Record a drill as running from ``start``."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO drills (region, zones, author, reason, start, outcome, timeout, "
                "error) VALUES (?,?,?,?,?,'running',?,'')",
                (region, json.dumps([_zone_key(z) for z in zones]), author, reason, start, timeout),
            )
            drill_id = int(cur.lastrowid or 0)
        return Drill(drill_id, region, tuple(zones), author, reason, start, timeout=timeout)

    def finish_drill(self, drill: Drill) -> None:
        """Complete the row of ``drill`` (started with :meth:`start_drill`) with its
        outcome and endpoints, in one transaction."""
        if drill.outcome not in DRILL_OUTCOMES[1:]:
            raise StoreError(f"a drill finishes passed or failed, not {drill.outcome!r}")
        for e in drill.endpoints:
            if e.kind not in ENDPOINT_KINDS:
                raise StoreError(f"unknown drill endpoint kind {e.kind!r}")
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE drills SET outcome = ?, restore_start = ?, finished = ?, error = ? "
                "WHERE id = ? AND outcome = 'running'",
                (drill.outcome, drill.restore_start, drill.finished, drill.error, drill.id),
            ).rowcount
            if updated != 1:
                raise StoreError(f"drill {drill.id} is not a running drill of this store")
            conn.executemany(
                "INSERT INTO drill_endpoints (drill_id, position, kind, name, address, "
                "measured, drained_at, restored_at, queries, note) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        drill.id,
                        i,
                        e.kind,
                        e.name,
                        e.address,
                        int(e.measured),
                        e.drained_at,
                        e.restored_at,
                        e.queries,
                        e.note,
                    )
                    for i, e in enumerate(drill.endpoints)
                ],
            )

    def drills(
        self,
        since: float | None = None,
        until: float | None = None,
        zone: dns.name.Name | None = None,
        latest: bool = False,
    ) -> list[Drill]:
        """Drills started in [since, until), oldest first; of one zone when given; only
        the latest of each region with ``latest`` (bounded by the regions, for metrics)."""
        where, args = ["1"], list[object]()
        if latest:
            where.append("id IN (SELECT MAX(id) FROM drills GROUP BY region)")
        if since is not None:
            where.append("start >= ?")
            args.append(since)
        if until is not None:
            where.append("start < ?")
            args.append(until)
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_DRILL_COLUMNS} FROM drills WHERE {' AND '.join(where)} ORDER BY id",
                args,
            ).fetchall()
            endpoints: dict[int, list[DrillEndpoint]] = {}
            for row in conn.execute(
                "SELECT drill_id, kind, name, address, measured, drained_at, restored_at, "
                "queries, note FROM drill_endpoints WHERE drill_id IN "
                f"(SELECT id FROM drills WHERE {' AND '.join(where)}) "
                "ORDER BY drill_id, position",
                args,
            ):
                i, kind, name, address, measured, drained, restored, queries, note = row
                endpoints.setdefault(i, []).append(
                    DrillEndpoint(
                        kind, name, address, bool(measured), drained, restored, queries, note
                    )
                )
        out = []
        for i, region, zones, author, reason, start, outcome, rs, fin, timeout, error in rows:
            names = tuple(dns.name.from_text(z) for z in json.loads(zones))
            if zone is not None and zone not in names:
                continue
            out.append(
                Drill(
                    i,
                    region,
                    names,
                    author,
                    reason,
                    start,
                    outcome,
                    rs,
                    fin,
                    timeout,
                    error,
                    tuple(endpoints.get(i, ())),
                )
            )
        return out
