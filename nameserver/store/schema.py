"""The store file: opening it (with errors that name the cause), its schema and
migrations, and the transactions every part of the store runs in.

Schema (``PRAGMA application_id`` marks the file as ours, ``PRAGMA user_version`` is the
schema version):

* ``zones``: id, name (lowercase absolute text, unique), display (original case), serial,
  serial_policy, created, updated.
* ``records``: zone_id, owner (original case), owner_key (lowercase), rtype, ttl, rdata
  (uncompressed wire, original case), rdata_key (``to_digestable()``); a UNIQUE index on
  (zone_id, owner_key, rtype, rdata_key) is the RR identity of RFC 2181 §5 (TTL excluded).
* ``changesets``: id (AUTOINCREMENT: ids are never reused), zone_id, serial_before (NULL when
  the changeset created the zone), serial_after, author, message, time.
* ``changeset_records``: changeset_id, op ('remove' | 'add'), position, owner, rtype, ttl,
  rdata; the primary key (changeset_id, op, position) keeps the changeset's order.
* ``transfers`` (schema 3): the transfer log, one row per zone transfer served: time,
  zone, client, key, kind, serial_from, serial_to, messages, rrs, bytes, duration, error.
* ``notify_status`` (schema 4): the latest NOTIFY per zone and secondary.
* ``health_events`` and ``drains`` (schema 5): what health-checked pools went through
  (withdrawn, restored, degraded, ...) and the maintenance drains of regions.
* ``drills`` and ``drill_endpoints`` (schema 6): measured failover tests, each endpoint's
  times to serve the drained and the restored answer.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import dns.name
import sqlite_utils

from nameserver.errors import StoreError, StoreMissingError, UnknownZoneError
from nameserver.store.codec import _zone_key
from settings.files import create_data_file

# 2: DNSSEC tables (dnssec_zones, dnssec_keys); 3: transfer log; 4: NOTIFY status;
# 5: health events and drains; 6: drills
SCHEMA_VERSION = 6
APPLICATION_ID = 0x7A6F6E66  # "zonf": marks the SQLite file as a zonefan store
BUSY_TIMEOUT_S = 10.0


#: Key metadata kept per key besides its identity: the RFC 7583 timestamps (POSIX
#: seconds) and the rollover bookkeeping of signer.timing.KeyTiming; NULL when not set.
KEY_FIELDS: dict[str, type] = {
    "created": int,
    "publish": int,
    "ready": int,
    "active": int,
    "retire": int,
    "remove": int,
    "ds_submitted": int,
    "ds_seen": int,
    "ds_withdrawn": int,
    "ds_gone": int,
    "successor": str,
    "roll_requested": int,
    "next_algorithm": int,
    "compromised": int,
}
KEY_TIMES = tuple(KEY_FIELDS)


def _require_store_file(path: str) -> None:
    """StoreMissingError unless a file is at ``path`` (for openings that must not create)."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory; give the path of the store file in it")
    if not os.path.exists(path):
        raise StoreMissingError(path, f"no store at {os.path.abspath(path)}")


def _create_store_file(path: str) -> None:
    """Create the store file before SQLite does, so it is 0640 whatever the umask allows
    (settings.files); its -wal and -shm take its mode. When it cannot be created, SQLite
    fails to open it just after, and that error says why (see _cause)."""
    with suppress(OSError):
        create_data_file(path)


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _access(path: str, mode: int) -> bool:
    # The effective ids are what the kernel checks when SQLite opens the files.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _cause(path: str, write: bool) -> str:
    """Why SQLite cannot open (or, ``write``, change) the store at ``path``, read from the
    file system as "; ..." to append to SQLite's bare message, or "" when nothing shows.

    SQLite keeps a -wal and a -shm file beside a WAL store (and a -journal while creating
    one), so even a reader needs them writable or their directory writable."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        return f"; directory {directory} does not exist: create it, or give another path"
    if os.path.exists(full):
        if not _access(full, os.R_OK):
            return f"; {full} is not readable by {_user()}: fix its owner or mode"
        if write and not _access(full, os.W_OK):
            return f"; {full} is not writable by {_user()}: fix its owner or mode"
    if _access(directory, os.W_OK | os.X_OK):
        return ""
    if not os.path.exists(full):
        what = f"{full} (and its -wal and -shm files)"
    elif all(_access(f"{full}{s}", os.R_OK | os.W_OK) for s in ("-wal", "-shm")):
        return ""
    else:
        what = f"{full}-wal and {full}-shm beside the store"
    return (
        f"; SQLite must create {what}, and directory {directory} is not writable by "
        f"{_user()}: make it writable, or keep the store in a directory that is"
    )


class StoreFile:
    """The SQLite connection of a store, its lock and schema; the parts of
    :class:`nameserver.store.store.Store` read and write through :meth:`_read` and
    :meth:`_write`."""

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False
    ) -> None:
        """Open the store at ``path``.

        ``create``: make the file and schema when there is no store yet (importing a zone,
        serving an empty volume); without it a missing store is StoreMissingError naming
        the path, so a mistyped path never leaves an empty store behind. ``read_only``
        (implies no ``create``): for commands that only look; the connection refuses
        every write once the schema is current (an older schema is still migrated).

        Raises StoreError when the file is not a zonefan store, has a newer schema, or
        cannot be opened (naming the cause: a missing directory, a file or directory this
        user cannot write).
        """
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._read_only = read_only
        create = create and not read_only
        if not create:
            _require_store_file(self.path)
        else:
            _create_store_file(self.path)
        # mode=rw opens an existing file only: nothing is created if it vanished meanwhile.
        uri = f"{Path(os.path.abspath(self.path)).as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE/COMMIT)
                check_same_thread=False,  # guarded by self._lock instead
            )
        except sqlite3.Error as e:
            raise StoreError(
                f"cannot open store {self.path}: {e}{_cause(self.path, write=create)}"
            ) from e
        self._conn = conn
        try:
            self._db = sqlite_utils.Database(conn, execute_plugins=False)
            self._open_schema(create)
        except sqlite3.OperationalError as e:
            conn.close()
            raise StoreError(
                f"cannot open store {self.path}: {e}{_cause(self.path, write=not read_only)}"
            ) from e
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            conn.close()
            raise StoreError(
                f"{self.path} is not a zonefan store ({e}); give the path of a zonefan "
                "store, or a new file to create one"
            ) from e
        except BaseException:
            conn.close()
            raise

    # -- connection, transactions and schema --

    def _open_schema(self, create: bool) -> None:
        if self._pragma("user_version") == 0 and not self._db.table_names():
            if not create:
                raise StoreMissingError(
                    self.path, f"no store at {os.path.abspath(self.path)} (the file is empty)"
                )
            self._db.enable_wal()  # persistent; must be set outside a transaction
            with self._write():
                if not self._db.table_names():  # another process may have won the race
                    self._create_schema()
        self._check_schema()
        if self._read_only:
            self._conn.execute("PRAGMA query_only=ON")
        else:
            self._db.enable_wal()
        # FULL, not NORMAL: with NORMAL a power loss can drop the last commits, and a hidden
        # primary that already sent that serial to its secondaries would then reuse the
        # serial for different data. One fsync per change is cheap.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])

    def _check_schema(self) -> None:
        if self._pragma("application_id") != APPLICATION_ID:
            raise StoreError(
                f"{self.path} is an SQLite database of another application, not a zonefan "
                "store; give the path of a zonefan store, or a new file to create one"
            )
        version = self._pragma("user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}, newer than this zonefan "
                f"understands ({SCHEMA_VERSION}); upgrade zonefan to use it"
            )
        if version in (1, 2, 3, 4, 5):
            with self._write():
                # Re-read inside the write lock: another process may have migrated first.
                if self._pragma("user_version") == 1:
                    self._create_dnssec_schema()
                if self._pragma("user_version") in (1, 2):
                    self._create_transfer_schema()
                if self._pragma("user_version") in (1, 2, 3):
                    self._create_notify_schema()
                if self._pragma("user_version") in (1, 2, 3, 4):
                    self._create_continuity_schema()
                if self._pragma("user_version") in (1, 2, 3, 4, 5):
                    self._create_drill_schema()
                    self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            version = SCHEMA_VERSION
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}, which this zonefan cannot "
                "migrate; restore it from a backup or re-import the zones into a new store"
            )

    def _create_schema(self) -> None:
        db = self._db
        db.table("zones").create(
            {
                "id": int,
                "name": str,
                "display": str,
                "serial": int,
                "serial_policy": str,
                "created": float,
                "updated": float,
            },
            pk="id",
            not_null=["name", "display", "serial", "serial_policy", "created", "updated"],
            strict=True,
        )
        db.table("zones").create_index(["name"], index_name="zones_name", unique=True)
        db.table("records").create(
            {
                "id": int,
                "zone_id": int,
                "owner": str,
                "owner_key": str,
                "rtype": int,
                "ttl": int,
                "rdata": bytes,
                "rdata_key": bytes,
            },
            pk="id",
            not_null=["zone_id", "owner", "owner_key", "rtype", "ttl", "rdata", "rdata_key"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        # Loading a zone reads its records in insertion order; this index gives that order
        # without a sort (the identity index would need a temporary B-tree).
        db.table("records").create_index(["zone_id"], index_name="records_zone")
        db.table("records").create_index(
            ["zone_id", "owner_key", "rtype", "rdata_key"],
            index_name="records_identity",
            unique=True,
        )
        # sqlite-utils has no AUTOINCREMENT; it keeps ids unique even after compaction or
        # deletion of the newest changesets, so an id in a log always means one change.
        db.execute(
            """CREATE TABLE changesets (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                zone_id INTEGER NOT NULL REFERENCES zones(id),
                serial_before INTEGER,
                serial_after INTEGER NOT NULL,
                author TEXT NOT NULL,
                message TEXT NOT NULL,
                time REAL NOT NULL
            ) STRICT"""
        )
        db.table("changesets").create_index(["zone_id", "id"], index_name="changesets_zone")
        db.table("changeset_records").create(
            {
                "changeset_id": int,
                "op": str,
                "position": int,
                "owner": str,
                "rtype": int,
                "ttl": int,
                "rdata": bytes,
            },
            pk=("changeset_id", "op", "position"),
            not_null=["owner", "rtype", "ttl", "rdata"],
            foreign_keys=[("changeset_id", "changesets", "id")],
            strict=True,
        )
        self._create_dnssec_schema()
        self._create_transfer_schema()
        self._create_notify_schema()
        self._create_continuity_schema()
        self._create_drill_schema()
        self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _create_dnssec_schema(self) -> None:
        db = self._db
        db.table("dnssec_zones").create(
            {"zone_id": int, "policy": str, "denial": str, "signed": int},
            pk="zone_id",
            not_null=["policy", "signed"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        columns: dict[str, type] = {
            "id": str,
            "zone_id": int,
            "role": str,
            "algorithm": int,
            "key_tag": int,
            "dnskey": bytes,
            "file": str,
        }
        columns.update(KEY_FIELDS)
        db.table("dnssec_keys").create(
            columns,
            pk="id",
            not_null=["zone_id", "role", "algorithm", "key_tag", "dnskey", "file"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        db.table("dnssec_keys").create_index(["zone_id"], index_name="dnssec_keys_zone")

    def _create_transfer_schema(self) -> None:
        # No foreign key to zones: the log outlives a deleted zone (it is a log).
        self._db.execute(
            """CREATE TABLE transfers (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                zone TEXT NOT NULL,
                client TEXT NOT NULL,
                key TEXT,
                kind TEXT NOT NULL,
                serial_from INTEGER,
                serial_to INTEGER NOT NULL,
                messages INTEGER NOT NULL,
                rrs INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                duration REAL NOT NULL,
                error TEXT
            ) STRICT"""
        )
        self._db.execute("CREATE INDEX transfers_zone ON transfers (zone, id)")

    def _create_notify_schema(self) -> None:
        # The latest NOTIFY per (zone, secondary): what `zonefan zone status` shows.
        self._db.execute(
            """CREATE TABLE notify_status (
                zone TEXT NOT NULL,
                target TEXT NOT NULL,
                serial INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                first_sent REAL,
                last_sent REAL,
                acked REAL,
                error TEXT NOT NULL,
                PRIMARY KEY (zone, target)
            ) STRICT"""
        )

    def _create_continuity_schema(self) -> None:
        # Logs keyed by names, not zone ids: they outlive a deleted zone or pool. ``member``
        # is NULL for an event of the whole pool (degraded, recovered, started).
        self._db.execute(
            """CREATE TABLE health_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                pool TEXT NOT NULL,
                member TEXT,
                region TEXT,
                event TEXT NOT NULL,
                reason TEXT NOT NULL,
                checkers TEXT NOT NULL
            ) STRICT"""
        )
        self._db.execute("CREATE INDEX health_events_pool ON health_events (pool, id)")
        # ``zone`` NULL: the drain holds in every zone; ``undrained`` NULL: still in force.
        self._db.execute(
            """CREATE TABLE drains (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                region TEXT NOT NULL,
                zone TEXT,
                since REAL NOT NULL,
                author TEXT NOT NULL,
                reason TEXT NOT NULL,
                undrained REAL,
                undrained_by TEXT,
                undrain_reason TEXT
            ) STRICT"""
        )

    def _create_drill_schema(self) -> None:
        # ``zones``: a JSON list of zone names; ``restore_start``: seconds after ``start``.
        self._db.execute(
            """CREATE TABLE drills (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                region TEXT NOT NULL,
                zones TEXT NOT NULL,
                author TEXT NOT NULL,
                reason TEXT NOT NULL,
                start REAL NOT NULL,
                outcome TEXT NOT NULL,
                restore_start REAL,
                finished REAL,
                timeout REAL NOT NULL,
                error TEXT NOT NULL
            ) STRICT"""
        )
        self._db.execute("CREATE INDEX drills_start ON drills (start)")
        self._db.execute(
            """CREATE TABLE drill_endpoints (
                drill_id INTEGER NOT NULL REFERENCES drills(id),
                position INTEGER NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                address TEXT,
                measured INTEGER NOT NULL,
                drained_at REAL,
                restored_at REAL,
                queries INTEGER NOT NULL,
                note TEXT NOT NULL,
                PRIMARY KEY (drill_id, position)
            ) STRICT"""
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock before any read."""
        with self._lock:
            conn = self._conn
            if self._read_only:
                raise StoreError(f"store {self.path} was opened read-only; nothing was changed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                if "locked" in str(e) or "busy" in str(e):
                    hint = f"; another writer held it for over {BUSY_TIMEOUT_S:g} s: retry"
                else:
                    hint = _cause(self.path, write=True) or (
                        "; check that the file and its directory are writable"
                    )
                raise StoreError(f"cannot change store {self.path}: {e}{hint}") from e
            try:
                yield conn
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    cause = _cause(self.path, write=True)
                    raise StoreError(f"store {self.path}: {e}{cause}; nothing was changed") from e
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                hint = _cause(self.path, write=True) or "; retry"
                raise StoreError(f"cannot commit to store {self.path}: {e}{hint}") from e

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: all queries inside see one consistent snapshot (WAL)."""
        with self._lock:
            conn = self._conn
            if conn.in_transaction:  # nested inside another read or write
                yield conn
                return
            try:
                conn.execute("BEGIN")
                yield conn
            except sqlite3.Error as e:
                raise StoreError(f"cannot read store {self.path}: {e}") from e
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _zone_row(self, conn: sqlite3.Connection, zone: dns.name.Name) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT id, display, serial, serial_policy, created, updated FROM zones WHERE name = ?",
            (_zone_key(zone),),
        ).fetchone()
        if row is None:
            raise UnknownZoneError(zone.to_text())
        return tuple(row)

    def _zone_id(self, conn: sqlite3.Connection, zone: dns.name.Name) -> int:
        return int(self._zone_row(conn, zone)[0])

    # -- lifecycle --

    def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def data_version(self) -> int:
        """SQLite's PRAGMA data_version: changes whenever another connection commits."""
        with self._lock:
            try:
                return self._pragma("data_version")
            except sqlite3.Error as e:
                raise StoreError(f"cannot read store {self.path}: {e}") from e
