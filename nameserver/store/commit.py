"""Zones and their current records: creating, changing (the commit path: one changeset
applied and journaled in one transaction), reading and deleting a zone.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import dns.name

from nameserver.errors import ConflictError, StoreError, ZoneExistsError
from nameserver.store.codec import (
    _ADD,
    _REMOVE,
    _chunks,
    _Decoder,
    _Encoder,
    _Key,
    _owner_wire,
    _Row,
    _zone_key,
)
from nameserver.store.keys import KeyRows, StoredKey, ZoneDnssec
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import AnyRecord, Record, canonical_key
from nameserver.zone.serial import SerialPolicy

_CHUNK = 2000  # rows converted and inserted per step while streaming a changeset


@dataclass(frozen=True)
class ZoneInfo:
    """Metadata of one stored zone."""

    name: dns.name.Name
    serial: int
    serial_policy: SerialPolicy
    record_count: int
    created: float
    updated: float


class ZoneRows(KeyRows):
    """The zones and their records; a commit writes key rows in the same transaction."""

    def zone_names(self) -> list[dns.name.Name]:
        """All zones, in DNSSEC canonical order."""
        with self._read() as conn:
            rows = conn.execute("SELECT display FROM zones").fetchall()
        return sorted((dns.name.from_text(r[0]) for r in rows), key=canonical_key)

    def has_zone(self, zone: dns.name.Name) -> bool:
        """True when ``zone`` is in the store."""
        with self._read() as conn:
            row = conn.execute("SELECT 1 FROM zones WHERE name = ?", (_zone_key(zone),))
            return row.fetchone() is not None

    def zone_info(self, zone: dns.name.Name) -> ZoneInfo:
        """Metadata of ``zone``; UnknownZoneError when it is not stored."""
        with self._read() as conn:
            zone_id, display, serial, policy, created, updated = self._zone_row(conn, zone)
            (count,) = conn.execute(
                "SELECT count(*) FROM records WHERE zone_id = ?", (zone_id,)
            ).fetchone()
        return ZoneInfo(
            dns.name.from_text(display),
            int(serial),
            SerialPolicy(policy),
            int(count),
            float(created),
            float(updated),
        )

    def serial(self, zone: dns.name.Name) -> int:
        """The zone's current serial (one indexed read; UnknownZoneError when absent)."""
        with self._read() as conn:
            return int(self._zone_row(conn, zone)[2])

    def serial_policy(self, zone: dns.name.Name) -> SerialPolicy:
        """How the zone's serial moves (cheaper than :meth:`zone_info`, which counts RRs)."""
        with self._read() as conn:
            return SerialPolicy(self._zone_row(conn, zone)[3])

    def zone_serials(self) -> dict[dns.name.Name, int]:
        """Every zone's current serial, read in one query."""
        with self._read() as conn:
            rows = conn.execute("SELECT display, serial FROM zones").fetchall()
        return {dns.name.from_text(display): int(serial) for display, serial in rows}

    def create_zone(self, changeset: Changeset, serial_policy: SerialPolicy) -> Changeset:
        """Store a new zone from its creating changeset (serial_before None, nothing removed).

        Returns the changeset with its journal id; ZoneExistsError if the zone is stored.
        """
        zone = changeset.zone
        if not zone.is_absolute():
            raise StoreError(f"zone name {zone} must be absolute (end with a dot)")
        if changeset.serial_before is not None or changeset.removed:
            raise ConflictError(
                f"a changeset that creates zone {zone} must have serial_before None and "
                "remove nothing; use commit() to change an existing zone"
            )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM zones WHERE name = ?", (_zone_key(zone),)).fetchone():
                raise ZoneExistsError(
                    f"zone {zone} already exists; change it with a commit, or delete it first"
                )
            cur = conn.execute(
                "INSERT INTO zones (name, display, serial, serial_policy, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _zone_key(zone),
                    zone.to_text(),
                    changeset.serial_after,
                    serial_policy.value,
                    changeset.time,
                    changeset.time,
                ),
            )
            zone_id = int(cur.lastrowid or 0)
            changeset_id = self._insert_changeset(conn, zone_id, changeset)
            self._apply(conn, zone, zone_id, changeset_id, changeset)
        return replace(changeset, id=changeset_id)

    def commit(
        self,
        changeset: Changeset,
        keys: Sequence[StoredKey] = (),
        dnssec: ZoneDnssec | None = None,
    ) -> Changeset:
        """Apply one changeset atomically and journal it; returns it with its id.

        ``keys`` (added or updated) and ``dnssec`` are written in the same transaction, so
        a key's state and the zone that shows it never disagree. ConflictError when the
        zone's serial is not ``serial_before`` (the zone changed meanwhile), when a removed
        RR is not in the zone or an added RR already is.
        """
        zone = changeset.zone
        if changeset.serial_before is None:
            raise ConflictError(
                f"changeset for {zone} has no serial_before; use create_zone() to create a zone"
            )
        with self._write() as conn:
            zone_id, _display, serial, *_ = self._zone_row(conn, zone)
            if serial != changeset.serial_before:
                raise ConflictError(
                    f"zone {zone} is at serial {serial} but the change was made against serial "
                    f"{changeset.serial_before}; reload the zone and redo the change"
                )
            conn.execute(
                "UPDATE zones SET serial = ?, updated = ? WHERE id = ?",
                (changeset.serial_after, changeset.time, zone_id),
            )
            changeset_id = self._insert_changeset(conn, zone_id, changeset)
            self._apply(conn, zone, zone_id, changeset_id, changeset)
            self._put_keys(conn, zone_id, keys)
            if dnssec is not None:
                self._put_dnssec(conn, zone_id, dnssec)
        return replace(changeset, id=changeset_id)

    def set_serial_policy(self, zone: dns.name.Name, policy: SerialPolicy) -> None:
        """Change how the zone's serial moves on the next changes."""
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            conn.execute(
                "UPDATE zones SET serial_policy = ?, updated = ? WHERE id = ?",
                (policy.value, time.time(), zone_id),
            )

    def delete_zone(self, zone: dns.name.Name) -> None:
        """Remove the zone, its records and its whole journal."""
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            conn.execute(
                "DELETE FROM changeset_records WHERE changeset_id IN "
                "(SELECT id FROM changesets WHERE zone_id = ?)",
                (zone_id,),
            )
            conn.execute("DELETE FROM changesets WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM records WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM dnssec_keys WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM dnssec_zones WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM zones WHERE id = ?", (zone_id,))

    # -- writing a changeset --

    def _insert_changeset(
        self, conn: sqlite3.Connection, zone_id: int, changeset: Changeset
    ) -> int:
        cur = conn.execute(
            "INSERT INTO changesets (zone_id, serial_before, serial_after, author, message, time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                zone_id,
                changeset.serial_before,
                changeset.serial_after,
                changeset.author,
                changeset.message,
                changeset.time,
            ),
        )
        return int(cur.lastrowid or 0)

    def _apply(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        changeset_id: int,
        changeset: Changeset,
    ) -> None:
        """Remove then add (IXFR order, so a TTL change is remove + add of one RR).

        Both sequences are consumed lazily, chunk by chunk, inside the open transaction.
        """
        row = _Encoder().row
        position = 0
        for chunk in _chunks(changeset.removed, _CHUNK):
            rows = [row(r) for r in chunk]
            self._remove_rows(conn, zone, zone_id, chunk, rows)
            self._journal(changeset_id, _REMOVE, position, rows)
            position += len(rows)
        position = 0
        for chunk in _chunks(changeset.added, _CHUNK):
            rows = [row(r) for r in chunk]
            self._add_rows(conn, zone, zone_id, chunk, rows)
            self._journal(changeset_id, _ADD, position, rows)
            position += len(rows)

    def _remove_rows(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[AnyRecord],
        rows: Sequence[_Row],
    ) -> None:
        # Row by row, because each removal must hit exactly one RR (sqlite-utils'
        # delete_where does not report how many rows it deleted).
        for record, (_owner, owner_key, rtype, _ttl, _wire, key) in zip(records, rows, strict=True):
            cur = conn.execute(
                "DELETE FROM records WHERE zone_id = ? AND owner_key = ? AND rtype = ? "
                "AND rdata_key = ?",
                (zone_id, owner_key, rtype, key),
            )
            if cur.rowcount != 1:
                raise ConflictError(
                    f"cannot remove {record.to_text()} from zone {zone}: it is not in the "
                    "zone; reload the zone and redo the change"
                )

    def _add_rows(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[AnyRecord],
        rows: Sequence[_Row],
    ) -> None:
        try:
            # A savepoint around the whole chunk: on a duplicate the chunk must be back to its
            # state before the insert. executemany, not insert_all: bulk loads are 2x faster.
            with self._db.atomic():
                conn.executemany(
                    "INSERT INTO records (zone_id, owner, owner_key, rtype, ttl, rdata, rdata_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((zone_id, *row) for row in rows),
                )
        except sqlite3.IntegrityError:
            raise self._duplicate_error(conn, zone, zone_id, records, rows) from None

    def _duplicate_error(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[AnyRecord],
        rows: Sequence[_Row],
    ) -> ConflictError:
        """Name the RR that broke the identity index (the chunk's inserts were undone)."""
        seen: set[_Key] = set()
        culprit = records[0]
        for record, (_owner, owner_key, rtype, _ttl, _wire, key) in zip(records, rows, strict=True):
            present = conn.execute(
                "SELECT 1 FROM records WHERE zone_id = ? AND owner_key = ? AND rtype = ? "
                "AND rdata_key = ?",
                (zone_id, owner_key, rtype, key),
            ).fetchone()
            if present or (owner_key, rtype, key) in seen:
                culprit = record
                break
            seen.add((owner_key, rtype, key))
        return ConflictError(
            f"cannot add {culprit.to_text()} to zone {zone}: the same RR (owner, type and "
            "data) is already in the zone; drop it from the change or remove it first"
        )

    def _journal(self, changeset_id: int, op: str, start: int, rows: Sequence[_Row]) -> None:
        self._db.conn.executemany(
            "INSERT INTO changeset_records (changeset_id, op, position, owner, rtype, ttl, rdata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (changeset_id, op, start + i, owner, rtype, ttl, wire)
                for i, (owner, _okey, rtype, ttl, wire, _key) in enumerate(rows)
            ),
        )

    # -- reading records --

    def records(self, zone: dns.name.Name) -> list[Record]:
        """The zone's current records, in the order they were added."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            return self._load_records(conn, zone_id)

    def rows(self, zone: dns.name.Name) -> list[tuple[bytes, int, int, bytes]]:
        """The zone's current RRs as wire rows (owner, type, TTL, rdata), for building a
        snapshot without decoding rdata: the fast way to load a zone for serving."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            rows = conn.execute(
                "SELECT owner, rtype, ttl, rdata FROM records WHERE zone_id = ? ORDER BY id",
                (zone_id,),
            ).fetchall()
        owners: dict[str, bytes] = {}
        out = []
        for owner, rtype, ttl, rdata in rows:
            wire = owners.get(owner)
            if wire is None:
                wire = owners[owner] = _owner_wire(owner)
            out.append((wire, rtype, ttl, rdata))
        return out

    def _load_records(self, conn: sqlite3.Connection, zone_id: int) -> list[Record]:
        rows = conn.execute(
            "SELECT owner, rtype, ttl, rdata FROM records WHERE zone_id = ? ORDER BY id",
            (zone_id,),
        ).fetchall()
        return _Decoder().records(rows)
