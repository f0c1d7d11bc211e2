"""The sidecar's own durable state, one SQLite file.

* ``zones``: the local copy of each zone as last transferred from the primary (its
  records in uncompressed wire form, read back without dnspython's parser), its serial and
  when that serial was first seen.
* ``targets``: per (target, zone): the serial last pushed and when, the last success, the
  last error, the last drift found, and a standing refusal (its reason, kind and serial):
  a push that retrying cannot make succeed is recorded here and leaves the outbox.
* ``owned``: per (target, zone) the RRsets zonefan manages there, one row holding them all
  (a 10k-RRset zone writes in 3 ms, where a row per RRset took 75 ms). Written *before* a
  plan is applied (so a crash mid-push cannot turn our own records into "foreign" ones)
  and pruned after a successful delete; ``version`` counts the writes, so a process sees
  when another one (``sync apply`` beside ``sync run``) changed it.
* ``outbox``: pending work, one row per (target, zone). A newer serial replaces an older
  pending one (the newest zone contains every earlier change). A row is deleted only in the
  transaction that records the successful push or a refusal, so a crash or restart resumes
  it; because
  every attempt re-reads the target and plans the remaining difference, nothing is applied
  twice.
* ``events``: the evidence trail (push, drift, error, refused), newest last.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype

from settings.files import create_data_file
from sync.errors import SyncError
from sync.model import FastName, RRsetKey, ZoneData
from sync.wire import zone_from_wire

SCHEMA_VERSION = 3
APPLICATION_ID = 0x7A667379  # "zfsy"
BUSY_TIMEOUT_S = 10.0
EVENTS_KEPT = 10_000
# Plain SQL through sqlite3, not sqlite-utils: five fixed tables, and importing sqlite-utils
# would cost every `zonefan sync` command 70 ms.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS zones (
        name TEXT PRIMARY KEY, serial INTEGER, data BLOB, seen_at REAL, method TEXT)""",
    """CREATE TABLE IF NOT EXISTS targets (
        target TEXT, zone TEXT, pushed_serial INTEGER, pushed_digest TEXT, pushed_at REAL,
        last_success REAL, last_error TEXT, last_error_at REAL, drift TEXT, drift_at REAL,
        refused TEXT, refused_kind TEXT, refused_serial INTEGER, refused_at REAL,
        PRIMARY KEY (target, zone))""",
    """CREATE TABLE IF NOT EXISTS owned (
        target TEXT, zone TEXT, rrsets TEXT, version INTEGER, PRIMARY KEY (target, zone))""",
    """CREATE TABLE IF NOT EXISTS outbox (
        target TEXT, zone TEXT, serial INTEGER, created REAL, attempts INTEGER,
        next_attempt REAL, force INTEGER, PRIMARY KEY (target, zone))""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY, at REAL, target TEXT, zone TEXT, kind TEXT, serial INTEGER,
        detail TEXT)""",
)


# Columns added to ``targets`` after schema 1 and 2 (ALTER TABLE on migration).
_REFUSAL_COLUMNS = (
    ("refused", "TEXT"),
    ("refused_kind", "TEXT"),
    ("refused_serial", "INTEGER"),
    ("refused_at", "REAL"),
)


def _owned_key(line: str) -> RRsetKey:
    name, rdtype = line.rsplit(" ", 1)
    return FastName.parse(name), dns.rdatatype.RdataType.make(int(rdtype))


_NO_REFUSAL: dict[str, Any] = {
    "refused": None,
    "refused_kind": None,
    "refused_serial": None,
    "refused_at": None,
}


class StateError(SyncError):
    """The state file is not a zonefan sync state, or is from a newer version."""


@dataclass(frozen=True)
class TargetStatus:
    """What the state knows of one zone at one target (nothing: all None)."""

    target: str
    zone: str
    pushed_serial: int | None = None
    pushed_digest: str | None = None
    pushed_at: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    attempts: int = 0
    drift: str | None = None
    drift_at: float | None = None
    pending_serial: int | None = None
    next_attempt: float | None = None
    refused: str | None = None  # the reason of a standing refusal
    refused_kind: str | None = None  # "capability", "rejected" or "safety"
    refused_serial: int | None = None
    refused_at: float | None = None


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

    def __init__(
        self, path: Path, clock: Callable[[], float] = time.time, *, read_only: bool = False
    ) -> None:
        """Open (and create, and migrate) the state at ``path``. ``read_only``: for
        commands that only look (an audit report): a missing file or one of another
        schema is a StateError, and nothing is ever written."""
        self.path = path
        self.clock = clock
        try:
            if read_only:
                if not path.is_file():
                    raise StateError(
                        f"no sync state at {path.absolute()}: the sidecar (`zonefan sync run` "
                        "or `serve --sync`) has not run with this state, or the path is wrong"
                    )
                uri = f"{path.absolute().as_uri()}?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                create_data_file(path)  # 0640 whatever the umask allows: it holds zone data
                conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StateError(
                f"cannot open the state file {path}: {reason}; create its directory, or set "
                "`state` in the sync config to a path in a writable one"
            ) from None
        self.conn = conn
        # owned() for a large zone costs 10k name parses: kept after the first read with
        # the version read, and read again when another process wrote a newer one.
        self._owned: dict[tuple[str, str], tuple[int, set[RRsetKey]]] = {}
        if read_only:
            self._check_readable()
            return
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
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

    def _check_readable(self) -> None:
        """A read-only state must be ours and of this schema: it cannot be migrated."""
        try:
            app = self.conn.execute("PRAGMA application_id").fetchone()[0]
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StateError(f"{self.path} is not a zonefan sync state file ({exc})") from None
        if app != APPLICATION_ID or version != SCHEMA_VERSION:
            self.conn.close()
            what = (
                "is not a zonefan sync state file"
                if app != APPLICATION_ID
                else f"has schema {version}, not {SCHEMA_VERSION}: run `zonefan sync status` "
                "with this zonefan once to migrate it"
            )
            raise StateError(f"{self.path} {what}")

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
        with self._tx() as c:
            if version == 1:  # owned had a row per RRset
                c.execute("ALTER TABLE owned RENAME TO owned_v1")
            for statement in SCHEMA:
                c.execute(statement)
            have = {row[1] for row in c.execute("PRAGMA table_info(targets)")}
            for column, kind in _REFUSAL_COLUMNS:
                if column not in have:
                    c.execute(f"ALTER TABLE targets ADD COLUMN {column} {kind}")
            if version == 1:
                groups: dict[tuple[str, str], list[str]] = {}
                for target, zone, name, rdtype in c.execute("SELECT * FROM owned_v1"):
                    groups.setdefault((target, zone), []).append(f"{name} {rdtype}")
                c.executemany(
                    "INSERT INTO owned VALUES (?,?,?,1)",
                    [(t, z, "\n".join(lines)) for (t, z), lines in groups.items()],
                )
                c.execute("DROP TABLE owned_v1")
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
                (name, data.serial, data.wire, self.clock(), method),
            )
        return True

    def zone(self, name: dns.name.Name) -> ZoneData | None:
        row = self.conn.execute("SELECT data FROM zones WHERE name=?", (name.to_text(),)).fetchone()
        return None if row is None else zone_from_wire(name, bytes(row[0]))

    def zone_version(self, name: dns.name.Name) -> tuple[int, float, str] | None:
        """(serial, when first seen, content digest) of the local copy, without parsing it:
        the digest is :attr:`ZoneData.digest`, a hash of the stored wire."""
        row = self.conn.execute(
            "SELECT serial, seen_at, data FROM zones WHERE name=?", (name.to_text(),)
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), float(row[1]), hashlib.sha256(bytes(row[2])).hexdigest()

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
            self._upsert_target(c, target, zone, last_error=error, last_error_at=now, **_NO_REFUSAL)
            self._event(c, target, zone, "error", serial, error)

    # -- outcomes ---------------------------------------------------------------------------

    def own(self, target: str, zone: str, keys: Iterable[RRsetKey]) -> None:
        """Write-ahead: record RRsets zonefan is about to create or replace at a target."""
        with self._tx() as c:
            have = self._owned_now(c, target, zone)
            mine = have.union(keys)  # a copy: the cache changes only with the row
            if len(mine) != len(have):
                self._write_owned(c, target, zone, mine)

    def owned(self, target: str, zone: str) -> set[RRsetKey]:
        """The RRsets zonefan manages at ``target`` (callers must not change the set)."""
        return self._owned_now(self.conn, target, zone)

    def _owned_now(self, c: sqlite3.Connection, target: str, zone: str) -> set[RRsetKey]:
        row = c.execute(
            "SELECT version FROM owned WHERE target=? AND zone=?", (target, zone)
        ).fetchone()
        version = 0 if row is None else int(row[0])
        cached = self._owned.get((target, zone))
        if cached is not None and cached[0] == version:
            return cached[1]
        mine: set[RRsetKey] = set()
        if row is not None:
            (text,) = c.execute(
                "SELECT rrsets FROM owned WHERE target=? AND zone=?", (target, zone)
            ).fetchone()
            mine = {_owned_key(line) for line in text.split("\n") if line}
        self._owned[(target, zone)] = (version, mine)
        return mine

    def _write_owned(
        self, c: sqlite3.Connection, target: str, zone: str, mine: set[RRsetKey]
    ) -> None:
        """Store the whole set (one line per RRset: owner, type number) as a new version."""
        version = self._owned[(target, zone)][0] + 1
        text = "\n".join(f"{name.to_text()} {int(rdtype)}" for name, rdtype in mine)
        c.execute("INSERT OR REPLACE INTO owned VALUES (?,?,?,?)", (target, zone, text, version))
        self._owned[(target, zone)] = (version, mine)

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
        with self._tx() as c:
            if removed:
                mine = self._owned_now(c, target, zone).difference(removed)
                self._write_owned(c, target, zone, mine)
            self._settle(
                c,
                target,
                zone,
                serial,
                ("push", detail),
                pushed_serial=serial,
                pushed_digest=digest,
                pushed_at=now,
                last_success=now,
                last_error=None,
                **_NO_REFUSAL,
            )

    def refused(self, target: str, zone: str, serial: int, error: str, kind: str) -> None:
        """A push of ``serial`` was refused (see :class:`~sync.errors.RefusedError`): record
        the refusal and drop the outbox row, so nothing retries it on a timer. A newer
        serial queued meanwhile stays queued."""
        now = self.clock()
        with self._tx() as c:
            self._settle(
                c,
                target,
                zone,
                serial,
                ("refused", error),
                last_error=error,
                last_error_at=now,
                refused=error,
                refused_kind=kind,
                refused_serial=serial,
                refused_at=now,
            )

    def drift(self, target: str, zone: str, serial: int, detail: str | None) -> None:
        """Record what a read-back found: ``detail`` None means none."""
        now = self.clock()
        with self._tx() as c:
            self._upsert_target(c, target, zone, drift=detail, drift_at=now)
            if detail is not None:
                self._event(c, target, zone, "drift", serial, detail)

    def status(self) -> list[TargetStatus]:
        """What is known of every (target, zone) pushed, tried or queued."""
        rows = self.conn.execute(
            "SELECT t.target, t.zone, t.pushed_serial, t.pushed_digest, t.pushed_at,"
            " t.last_success, t.last_error, t.last_error_at, COALESCE(o.attempts, 0), t.drift,"
            " t.drift_at, o.serial, o.next_attempt, t.refused, t.refused_kind,"
            " t.refused_serial, t.refused_at FROM targets t LEFT JOIN outbox o"
            " ON o.target=t.target AND o.zone=t.zone"
            " UNION SELECT o.target, o.zone, NULL, NULL, NULL, NULL, NULL, NULL, o.attempts,"
            " NULL, NULL, o.serial, o.next_attempt, NULL, NULL, NULL, NULL FROM outbox o"
            " WHERE NOT EXISTS"
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

    def events_between(
        self, since: float | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """The events with ``since`` <= at < ``until``, oldest first (the state keeps
        the newest EVENTS_KEPT, so this is bounded)."""
        rows = self.conn.execute(
            "SELECT at, target, zone, kind, serial, detail FROM events WHERE at >= ? AND at < ?"
            " ORDER BY id",
            (float("-inf") if since is None else since, float("inf") if until is None else until),
        ).fetchall()
        keys = ("at", "target", "zone", "kind", "serial", "detail")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def oldest_event(self) -> float | None:
        """When the oldest event kept happened (None: none): older ones were pruned."""
        row = self.conn.execute("SELECT at FROM events ORDER BY id LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    # -- helpers ----------------------------------------------------------------------------

    def _upsert_target(self, c: sqlite3.Connection, target: str, zone: str, **fields: Any) -> None:
        c.execute("INSERT OR IGNORE INTO targets(target, zone) VALUES (?,?)", (target, zone))
        sets = ", ".join(f"{k}=?" for k in fields)
        c.execute(
            f"UPDATE targets SET {sets} WHERE target=? AND zone=?",
            (*fields.values(), target, zone),
        )

    def _settle(
        self,
        c: sqlite3.Connection,
        target: str,
        zone: str,
        serial: int,
        event: tuple[str, str],
        **fields: Any,
    ) -> None:
        """``serial`` is done with (pushed or refused): drop its outbox row (a newer serial
        queued stays), record ``fields`` and the ``event`` (kind, detail)."""
        c.execute(
            "DELETE FROM outbox WHERE target=? AND zone=? AND serial=?", (target, zone, serial)
        )
        self._upsert_target(c, target, zone, **fields)
        self._event(c, target, zone, event[0], serial, event[1])

    def _event(
        self, c: sqlite3.Connection, target: str, zone: str, kind: str, serial: int, detail: str
    ) -> None:
        c.execute(
            "INSERT INTO events(at, target, zone, kind, serial, detail) VALUES (?,?,?,?,?,?)",
            (self.clock(), target, zone, kind, serial, detail),
        )
        c.execute("DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?", (EVENTS_KEPT,))
