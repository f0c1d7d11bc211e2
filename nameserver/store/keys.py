"""The zones' DNSSEC rows: each key's public half and timings (:class:`StoredKey`) and
how a zone is signed (:class:`ZoneDnssec`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.name

from nameserver.errors import StoreError
from nameserver.store.schema import KEY_TIMES, StoreFile


@dataclass(frozen=True)
class StoredKey:
    """A zone's DNSSEC key as the store keeps it: its public DNSKEY and metadata; the
    private half stays in the key directory (``file``), never in the database."""

    id: str
    role: str
    algorithm: int
    key_tag: int
    dnskey: bytes  # DNSKEY rdata, wire form
    file: str
    times: Mapping[str, int | str | None]  # KEY_FIELDS


@dataclass(frozen=True)
class ZoneDnssec:
    """How a zone is signed: its policy's name, a denial override and whether signing is
    on."""

    policy: str
    denial: str | None
    signed: bool


class KeyRows(StoreFile):
    """Reading and writing the key and signing rows of a zone."""

    def dnssec(self, zone: dns.name.Name) -> ZoneDnssec | None:
        """How ``zone`` is signed, or None when DNSSEC was never set up for it."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            row = conn.execute(
                "SELECT policy, denial, signed FROM dnssec_zones WHERE zone_id = ?", (zone_id,)
            ).fetchone()
        if row is None:
            return None
        return ZoneDnssec(str(row[0]), row[1], bool(row[2]))

    def set_dnssec(self, zone: dns.name.Name, dnssec: ZoneDnssec) -> None:
        """Record how ``zone`` is signed (no change to its records)."""
        with self._write() as conn:
            self._put_dnssec(conn, self._zone_id(conn, zone), dnssec)

    def keys(self, zone: dns.name.Name) -> list[StoredKey]:
        """The zone's DNSSEC keys, oldest first."""
        columns = ("id", "role", "algorithm", "key_tag", "dnskey", "file", *KEY_TIMES)
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM dnssec_keys WHERE zone_id = ? "
                "ORDER BY created, id",
                (zone_id,),
            ).fetchall()
        return [
            StoredKey(
                str(r[0]),
                str(r[1]),
                int(r[2]),
                int(r[3]),
                bytes(r[4]),
                str(r[5]),
                dict(zip(KEY_TIMES, r[6:], strict=True)),
            )
            for r in rows
        ]

    def put_keys(self, zone: dns.name.Name, keys: Sequence[StoredKey]) -> None:
        """Add or update keys of ``zone`` in one transaction (no change to its records)."""
        with self._write() as conn:
            self._put_keys(conn, self._zone_id(conn, zone), keys)

    def _put_keys(self, conn: sqlite3.Connection, zone_id: int, keys: Sequence[StoredKey]) -> None:
        columns = ("id", "zone_id", "role", "algorithm", "key_tag", "dnskey", "file", *KEY_TIMES)
        sql = (
            f"INSERT OR REPLACE INTO dnssec_keys ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        for key in keys:
            unknown = set(key.times) - set(KEY_TIMES)
            if unknown:
                raise StoreError(f"key {key.id}: unknown timestamps {sorted(unknown)}")
            times = [key.times.get(name) for name in KEY_TIMES]
            conn.execute(
                sql,
                (
                    key.id,
                    zone_id,
                    key.role,
                    key.algorithm,
                    key.key_tag,
                    key.dnskey,
                    key.file,
                    *times,
                ),
            )

    @staticmethod
    def _put_dnssec(conn: sqlite3.Connection, zone_id: int, dnssec: ZoneDnssec) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO dnssec_zones (zone_id, policy, denial, signed) "
            "VALUES (?, ?, ?, ?)",
            (zone_id, dnssec.policy, dnssec.denial, int(dnssec.signed)),
        )
