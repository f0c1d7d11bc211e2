"""The journal: each zone's changesets, the zone as it was at an older serial, and
compaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import dns.name

from nameserver.errors import JournalError
from nameserver.store.codec import _ADD, _REMOVE, _Decoder, _Encoder, _Key
from nameserver.store.schema import StoreFile
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record, WireRecord
from nameserver.zone.validate import SIGNER_TYPES


def _unreached(zone: dns.name.Name, serial: int) -> str:
    # Said to whoever asked (a diff, a rollback, a transfer): each caller adds what it does.
    return (
        f"journal does not reach serial {serial} of zone {zone}: it was compacted or the "
        f"zone never had that serial (`zonefan zone history {zone}` lists the serials kept)"
    )


@dataclass(frozen=True)
class ChangesetSummary:
    """One changeset without the bulk of its records: who, when, why, how many RRs it
    removed and added (``*_dnssec``: of those, the signer's), and the first of each,
    the zone's data before the signer's records (:meth:`Journal.changeset_summaries`)."""

    id: int
    serial_before: int | None
    serial_after: int
    author: str
    message: str
    time: float
    removed_count: int
    added_count: int
    removed_dnssec: int
    added_dnssec: int
    removed: tuple[Record, ...]
    added: tuple[Record, ...]


# The signer's types, as SQL: records of these are listed after the zone's own data.
_SIGNER_SQL = ", ".join(str(int(t)) for t in sorted(SIGNER_TYPES))


class Journal(StoreFile):
    """Reading and compacting the changesets the commits journaled."""

    def changeset_summaries(
        self,
        zone: dns.name.Name,
        since: float | None = None,
        until: float | None = None,
        *,
        sample: int = 20,
        page: int = 100,
    ) -> Iterator[ChangesetSummary]:
        """The zone's changesets with ``since`` <= time < ``until``, oldest first, each
        with its record counts and at most ``sample`` records of each side.

        Read ``page`` changesets per transaction, so a long journal (a re-signing
        changeset holds every RRSIG of the zone) is never in memory at once."""
        low = float("-inf") if since is None else since
        high = float("inf") if until is None else until
        after = 0
        while True:
            with self._read() as conn:
                zone_id = self._zone_id(conn, zone)
                heads = conn.execute(
                    "SELECT id, serial_before, serial_after, author, message, time "
                    "FROM changesets WHERE zone_id = ? AND id > ? AND time >= ? AND time < ? "
                    "ORDER BY id LIMIT ?",
                    (zone_id, after, low, high, page),
                ).fetchall()
                found = [self._summary(conn, head, sample) for head in heads]
            yield from found
            if len(heads) < page:
                return
            after = heads[-1][0]

    @staticmethod
    def _summary(
        conn: sqlite3.Connection, head: tuple[int, int | None, int, str, str, float], sample: int
    ) -> ChangesetSummary:
        cid = head[0]
        counts = {_REMOVE: [0, 0], _ADD: [0, 0]}
        for op, dnssec, n in conn.execute(
            f"SELECT op, rtype IN ({_SIGNER_SQL}), count(*) FROM changeset_records "
            "WHERE changeset_id = ? GROUP BY 1, 2",
            (cid,),
        ):
            counts[op][0] += n
            if dnssec:
                counts[op][1] += n
        decoder = _Decoder()
        listed: dict[str, tuple[Record, ...]] = {}
        for op in (_REMOVE, _ADD):
            rows = conn.execute(
                "SELECT owner, rtype, ttl, rdata FROM changeset_records "
                f"WHERE changeset_id = ? AND op = ? ORDER BY rtype IN ({_SIGNER_SQL}), position "
                "LIMIT ?",
                (cid, op, sample),
            )
            listed[op] = tuple(decoder.record(*row) for row in rows)
        return ChangesetSummary(
            *head,
            removed_count=counts[_REMOVE][0],
            added_count=counts[_ADD][0],
            removed_dnssec=counts[_REMOVE][1],
            added_dnssec=counts[_ADD][1],
            removed=listed[_REMOVE],
            added=listed[_ADD],
        )

    def journal_start(self, zone: dns.name.Name) -> tuple[float, bool] | None:
        """When the oldest changeset the journal keeps of ``zone`` was made, and whether
        it is the one that created the zone (False: older ones were compacted away);
        None when none is kept."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            row = conn.execute(
                "SELECT time, serial_before FROM changesets WHERE zone_id = ? ORDER BY id LIMIT 1",
                (zone_id,),
            ).fetchone()
        return None if row is None else (float(row[0]), row[1] is None)

    def _load_keyed_records(self, conn: sqlite3.Connection, zone_id: int) -> dict[_Key, Record]:
        rows = conn.execute(
            "SELECT owner, rtype, ttl, rdata, owner_key, rdata_key FROM records "
            "WHERE zone_id = ? ORDER BY id",
            (zone_id,),
        ).fetchall()
        record = _Decoder().record
        return {
            (okey, rtype, rkey): record(owner, rtype, ttl, wire)
            for owner, rtype, ttl, wire, okey, rkey in rows
        }

    def records_at(self, zone: dns.name.Name, serial: int) -> list[Record]:
        """The zone as it was at ``serial``, by undoing the journal from the current records.

        JournalError when the journal does not reach that serial.
        """
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            chain = self.changesets_between(zone, serial)
            current = self._load_keyed_records(conn, zone_id)
        key_of = _Encoder().key
        for cs in reversed(chain):
            for record in cs.added:
                if current.pop(key_of(record), None) is None:
                    raise JournalError(
                        f"journal of zone {zone} is inconsistent: changeset {cs.id} added "
                        f"{record.to_text()}, which is not in the zone; it cannot be undone"
                    )
            for record in cs.removed:
                # The journal is read back decoded: a WireRecord is not expected here.
                current[key_of(record)] = (
                    record.record() if isinstance(record, WireRecord) else record
                )
        return list(current.values())

    def changesets(
        self, zone: dns.name.Name, after_id: int = 0, limit: int | None = None
    ) -> list[Changeset]:
        """The zone's changesets with id > ``after_id``, oldest first, at most ``limit``."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            return self._load_changesets(conn, zone, zone_id, after_id, limit=limit)

    def changeset(self, zone: dns.name.Name, changeset_id: int) -> Changeset:
        """One changeset of the zone; JournalError when it is not in the journal."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            found = self._load_changesets(
                conn, zone, zone_id, changeset_id - 1, upto_id=changeset_id
            )
        if not found:
            raise JournalError(
                f"changeset {changeset_id} of zone {zone} is not in the journal (it was "
                "compacted or never existed); list the history to see the ids kept"
            )
        return found[0]

    def changesets_between(
        self, zone: dns.name.Name, from_serial: int, to_serial: int | None = None
    ) -> list[Changeset]:
        """The chain of changesets leading from ``from_serial`` to ``to_serial`` (default:
        the current serial), oldest first; empty when the two are equal.

        JournalError("journal does not reach serial N") when the chain is broken/compacted.
        """
        with self._read() as conn:
            zone_id, _display, current, *_ = self._zone_row(conn, zone)
            target = current if to_serial is None else to_serial
            if from_serial == target:
                return []
            headers = conn.execute(
                "SELECT id, serial_before, serial_after FROM changesets WHERE zone_id = ? "
                "ORDER BY id",
                (zone_id,),
            ).fetchall()
            first, last = self._chain(headers, from_serial, target, zone)
            return self._load_changesets(conn, zone, zone_id, first - 1, upto_id=last)

    @staticmethod
    def _chain(
        headers: Sequence[tuple[int, int | None, int]],
        from_serial: int,
        to_serial: int,
        zone: dns.name.Name,
    ) -> tuple[int, int]:
        """(first id, last id) of the contiguous run of changesets from one serial to another.

        Commits check serial_before, so the journal is linear: walk back from the newest
        changeset that ends at ``to_serial`` while each link holds.
        """
        end = next((i for i in range(len(headers) - 1, -1, -1) if headers[i][2] == to_serial), -1)
        if end < 0:
            raise JournalError(_unreached(zone, to_serial))
        want: int | None = to_serial
        i = end
        while i >= 0 and headers[i][2] == want:
            want = headers[i][1]
            if want == from_serial:
                return headers[i][0], headers[end][0]
            i -= 1
        raise JournalError(_unreached(zone, from_serial))

    def _load_changesets(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        after_id: int,
        *,
        upto_id: int | None = None,
        limit: int | None = None,
    ) -> list[Changeset]:
        """Changesets of the zone with after_id < id <= upto_id, with their records."""
        upper = upto_id if upto_id is not None else 2**63 - 1
        heads = conn.execute(
            "SELECT id, serial_before, serial_after, author, message, time FROM changesets "
            "WHERE zone_id = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?",
            (zone_id, after_id, upper, -1 if limit is None else limit),
        ).fetchall()
        if not heads:
            return []
        parts: dict[int, dict[str, list[Record]]] = {h[0]: {_REMOVE: [], _ADD: []} for h in heads}
        decoder = _Decoder()
        for cid, part in parts.items():
            rows = conn.execute(
                "SELECT op, owner, rtype, ttl, rdata FROM changeset_records "
                "WHERE changeset_id = ? ORDER BY op, position",
                (cid,),
            )
            for op, owner, rtype, ttl, wire in rows:
                part[op].append(decoder.record(owner, rtype, ttl, wire))
        name = self._display_name(conn, zone_id, zone)
        return [
            Changeset(
                zone=name,
                serial_before=before,
                serial_after=after,
                removed=tuple(parts[cid][_REMOVE]),
                added=tuple(parts[cid][_ADD]),
                author=author,
                message=message,
                time=when,
                id=cid,
            )
            for cid, before, after, author, message, when in heads
        ]

    @staticmethod
    def _display_name(
        conn: sqlite3.Connection, zone_id: int, fallback: dns.name.Name
    ) -> dns.name.Name:
        row = conn.execute("SELECT display FROM zones WHERE id = ?", (zone_id,)).fetchone()
        return dns.name.from_text(row[0]) if row else fallback

    def compact_journal(self, zone: dns.name.Name, keep: int) -> int:
        """Delete all but the newest ``keep`` changesets of the zone; returns how many went.

        IXFR and records_at() cannot reach serials older than the changesets kept.
        """
        if keep < 0:
            raise JournalError(f"keep must be 0 or more changesets, not {keep}")
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            # The newest changeset to go; it and every older one of the zone are deleted.
            row = conn.execute(
                "SELECT id FROM changesets WHERE zone_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (zone_id, keep),
            ).fetchone()
            if row is None:
                return 0
            doomed = "SELECT id FROM changesets WHERE zone_id = ? AND id <= ?"
            conn.execute(
                f"DELETE FROM changeset_records WHERE changeset_id IN ({doomed})",
                (zone_id, row[0]),
            )
            cur = conn.execute(
                "DELETE FROM changesets WHERE zone_id = ? AND id <= ?", (zone_id, row[0])
            )
            return int(cur.rowcount)
