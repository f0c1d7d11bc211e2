"""The sidecar's own durable state, one SQLite file (through sqlite-utils).

* ``zones``: the local copy of each zone as last transferred from the primary (its
  records in uncompressed wire form, read back without dnspython's parser), its serial and
  when that serial was first seen.
* ``targets``: per (target, zone): the serial last pushed and when, the last success, the
  last error, and the last drift found.
* ``owned``: per (target, zone) the RRsets zonefan manages there. Written *before* a plan
  is applied (so a crash mid-push cannot turn our own records into "foreign" ones) and
  pruned after a successful delete.
* ``outbox``: pending work, one row per (target, zone). A newer serial replaces an older
  pending one (the newest zone contains every earlier change). A row is deleted only in the
  transaction that records the successful push, so a crash or restart resumes it; because
  every attempt re-reads the target and plans the remaining difference, nothing is applied
  twice.
* ``events``: the evidence trail (push, drift, error, refused), newest last.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import sqlite_utils

from sync.errors import SyncError
from sync.model import FastName, RRsetKey, ZoneData
from sync.wire import zone_from_wire, zone_to_wire

SCHEMA_VERSION = 1
APPLICATION_ID = 0x7A667379  # "zfsy"
BUSY_TIMEOUT_S = 10.0
EVENTS_KEPT = 10_000


class StateError(SyncError):
    """The state file is not a zonefan sync state, or is from a newer version."""


@dataclass(frozen=True)
class TargetStatus:
    """What the state knows of one zone at one target."""

    target: str
    zone: str
    pushed_serial: int | None
    pushed_digest: str | None
    pushed_at: float | None
    last_success: float | None
    last_error: str | None
    last_error_at: float | None
    attempts: int
    drift: str | None
    drift_at: float | None
    pending_serial: int | None
    next_attempt: float | None


@dataclass(frozen=True)
class OutboxItem:
    """One pending push."""

    target: str
    zone: str
    serial: int
    attempts: int
    next_attempt: float
    force: bool


class SyncState:
    """The state file. Methods are short transactions; the engine is their only writer
    within a process (other processes, e.g. ``sync apply`` beside ``sync run``, are
    serialised by SQLite's locking)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.conn = conn
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        # owned() for a large zone costs 10k name parses: kept after the first read, and
        # kept current by own() and pushed(), this process being the owner's only writer.
        self._owned: dict[tuple[str, str], set[RRsetKey]] = {}
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        app = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if app not in (0, APPLICATION_ID):
            raise StateError(f"{self.path} is not a zonefan sync state file")
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} has schema {version}, newer than this zonefan ({SCHEMA_VERSION})"
            )
        if version == SCHEMA_VERSION:
            return
        with self._tx():
            self.db.table("zones").create(
                {"name": str, "serial": int, "data": bytes, "seen_at": float, "method": str},
                pk="name",
                if_not_exists=True,
            )
            self.db.table("targets").create(
                {
                    "target": str,
                    "zone": str,
                    "pushed_serial": int,
                    "pushed_digest": str,
                    "pushed_at": float,
                    "last_success": float,
                    "last_error": str,
                    "last_error_at": float,
                    "drift": str,
                    "drift_at": float,
                },
                pk=("target", "zone"),
                if_not_exists=True,
            )
            self.db.table("owned").create(
                {"target": str, "zone": str, "name": str, "rdtype": int},
                pk=("target", "zone", "name", "rdtype"),
                if_not_exists=True,
            )
            self.db.table("outbox").create(
                {
                    "target": str,
                    "zone": str,
                    "serial": int,
                    "created": float,
                    "attempts": int,
                    "next_attempt": float,
                    "force": int,
                },
                pk=("target", "zone"),
                if_not_exists=True,
            )
            self.db.table("events").create(
                {
                    "id": int,
                    "at": float,
                    "target": str,
                    "zone": str,
                    "kind": str,
                    "serial": int,
                    "detail": str,
                },
                pk="id",
                if_not_exists=True,
            )
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- the local copy ---------------------------------------------------------------------

    def save_zone(self, data: ZoneData, method: str) -> bool:
        """Store a new copy of the zone; False (nothing written) when the serial is the one
        already stored."""
        name = data.origin.to_text()
        row = self.conn.execute("SELECT serial FROM zones WHERE name=?", (name,)).fetchone()
        if row is not None and row[0] == data.serial:
            return False
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO zones(name, serial, data, seen_at, method) "
                "VALUES (?,?,?,?,?)",
                (name, data.serial, zone_to_wire(data), self.clock(), method),
            )
        return True

    def zone(self, name: dns.name.Name) -> ZoneData | None:
        row = self.conn.execute("SELECT data FROM zones WHERE name=?", (name.to_text(),)).fetchone()
        return None if row is None else zone_from_wire(name, bytes(row[0]))

    def zone_serial(self, name: dns.name.Name) -> tuple[int, float] | None:
        """(serial, when it was first seen) of the local copy."""
        row = self.conn.execute(
            "SELECT serial, seen_at FROM zones WHERE name=?", (name.to_text(),)
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    # -- the outbox -------------------------------------------------------------------------

    def enqueue(self, target: str, zone: dns.name.Name, serial: int, force: bool = False) -> None:
        """Ask for ``zone`` at ``serial`` to be pushed to ``target``, due now. A pending row
        for an older serial is replaced; its attempt count is kept for the backoff."""
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "INSERT INTO outbox(target, zone, serial, created, attempts, next_attempt, force)"
                " VALUES (?,?,?,?,0,?,?) ON CONFLICT(target, zone) DO UPDATE SET"
                " serial=excluded.serial, next_attempt=MIN(next_attempt, excluded.next_attempt),"
                " force=MAX(force, excluded.force)",
                (target, zone.to_text(), serial, now, now, int(force)),
            )

    def pending(self, target: str | None = None) -> list[OutboxItem]:
        """Pending pushes, soonest first."""
        sql = "SELECT target, zone, serial, attempts, next_attempt, force FROM outbox"
        args: tuple[Any, ...] = ()
        if target is not None:
            sql += " WHERE target=?"
            args = (target,)
        rows = self.conn.execute(sql + " ORDER BY next_attempt, zone", args).fetchall()
        return [OutboxItem(r[0], r[1], int(r[2]), int(r[3]), float(r[4]), bool(r[5])) for r in rows]

    def defer(self, target: str, zone: str, serial: int, error: str, delay: float) -> None:
        """Record a failed attempt and when to try again."""
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "UPDATE outbox SET attempts=attempts+1, next_attempt=? WHERE target=? AND zone=?",
                (now + delay, target, zone),
            )
            self._upsert_target(c, target, zone, last_error=error, last_error_at=now)
            self._event(c, target, zone, "error", serial, error)

    # -- outcomes ---------------------------------------------------------------------------

    def own(self, target: str, zone: str, keys: Iterable[RRsetKey]) -> None:
        """Write-ahead: record RRsets zonefan is about to create or replace at a target."""
        mine = self.owned(target, zone)
        fresh = [k for k in keys if k not in mine]
        rows = [(target, zone, k[0].to_text(), int(k[1])) for k in fresh]
        with self._tx() as c:
            c.executemany("INSERT OR IGNORE INTO owned VALUES (?,?,?,?)", rows)
        mine.update(fresh)

    def owned(self, target: str, zone: str) -> set[RRsetKey]:
        """The RRsets zonefan manages at ``target`` (callers must not change the set)."""
        cached = self._owned.get((target, zone))
        if cached is None:
            rows = self.conn.execute(
                "SELECT name, rdtype FROM owned WHERE target=? AND zone=?", (target, zone)
            ).fetchall()
            cached = {(FastName.parse(n), dns.rdatatype.RdataType.make(t)) for n, t in rows}
            self._owned[(target, zone)] = cached
        return cached

    def pushed(
        self,
        target: str,
        zone: str,
        serial: int,
        deleted: Iterable[RRsetKey] = (),
        detail: str = "",
        digest: str | None = None,
    ) -> None:
        """The push of ``serial`` (content ``digest``) succeeded: forget deleted RRsets,
        record the serial, and clear the outbox row unless a newer serial was queued
        meanwhile."""
        now = self.clock()
        removed = list(deleted)
        gone = [(target, zone, k[0].to_text(), int(k[1])) for k in removed]
        with self._tx() as c:
            c.executemany(
                "DELETE FROM owned WHERE target=? AND zone=? AND name=? AND rdtype=?", gone
            )
            c.execute(
                "DELETE FROM outbox WHERE target=? AND zone=? AND serial=?",
                (target, zone, serial),
            )
            self._upsert_target(
                c,
                target,
                zone,
                pushed_serial=serial,
                pushed_digest=digest,
                pushed_at=now,
                last_success=now,
                last_error=None,
            )
            self._event(c, target, zone, "push", serial, detail)
        self.owned(target, zone).difference_update(removed)

    def refused(self, target: str, zone: str, serial: int, error: str, delay: float) -> None:
        """A plan was refused (safety or capability): keep it queued, retried after
        ``delay`` or when forced."""
        now = self.clock()
        with self._tx() as c:
            c.execute(
                "UPDATE outbox SET next_attempt=? WHERE target=? AND zone=?",
                (now + delay, target, zone),
            )
            self._upsert_target(c, target, zone, last_error=error, last_error_at=now)
            self._event(c, target, zone, "refused", serial, error)

    def drift(self, target: str, zone: str, serial: int, detail: str | None) -> None:
        """Record what a read-back found: ``detail`` None means none."""
        now = self.clock()
        with self._tx() as c:
            self._upsert_target(c, target, zone, drift=detail, drift_at=now)
            if detail is not None:
                self._event(c, target, zone, "drift", serial, detail)

    def status(self) -> list[TargetStatus]:
        rows = self.conn.execute(
            "SELECT t.target, t.zone, t.pushed_serial, t.pushed_digest, t.pushed_at,"
            " t.last_success,"
            " t.last_error, t.last_error_at, COALESCE(o.attempts, 0), t.drift, t.drift_at,"
            " o.serial, o.next_attempt FROM targets t LEFT JOIN outbox o"
            " ON o.target=t.target AND o.zone=t.zone"
            " UNION SELECT o.target, o.zone, NULL, NULL, NULL, NULL, NULL, NULL, o.attempts,"
            " NULL,"
            " NULL, o.serial, o.next_attempt FROM outbox o WHERE NOT EXISTS"
            " (SELECT 1 FROM targets t WHERE t.target=o.target AND t.zone=o.zone)"
            " ORDER BY 2, 1"
        ).fetchall()
        return [TargetStatus(*r) for r in rows]

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT at, target, zone, kind, serial, detail FROM events ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("at", "target", "zone", "kind", "serial", "detail")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]

    # -- helpers ----------------------------------------------------------------------------

    def _upsert_target(self, c: sqlite3.Connection, target: str, zone: str, **fields: Any) -> None:
        c.execute("INSERT OR IGNORE INTO targets(target, zone) VALUES (?,?)", (target, zone))
        sets = ", ".join(f"{k}=?" for k in fields)
        c.execute(
            f"UPDATE targets SET {sets} WHERE target=? AND zone=?",
            (*fields.values(), target, zone),
        )

    def _event(
        self, c: sqlite3.Connection, target: str, zone: str, kind: str, serial: int, detail: str
    ) -> None:
        c.execute(
            "INSERT INTO events(at, target, zone, kind, serial, detail) VALUES (?,?,?,?,?,?)",
            (self.clock(), target, zone, kind, serial, detail),
        )
        c.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (EVENTS_KEPT,))
