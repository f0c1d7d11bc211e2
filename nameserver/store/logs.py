"""What the server logs in the store: the latest NOTIFY per secondary and the transfers
served.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from nameserver.store.codec import _zone_key
from nameserver.store.schema import StoreFile


@dataclass(frozen=True)
class NotifyRecord:
    """The latest NOTIFY sent to one secondary (``target``: ADDR@PORT) for one zone."""

    zone: dns.name.Name
    target: str
    serial: int
    attempts: int
    first_sent: float | None
    last_sent: float | None
    acked: float | None
    error: str


@dataclass(frozen=True)
class TransferLogEntry:
    """One zone transfer served. ``kind``: "AXFR", "IXFR", "IXFR-AXFR" (an IXFR answered
    with the full zone: the journal did not reach the client's serial) or "IXFR-UPTODATE"
    (the client had the current serial: one SOA). ``error`` is set when the transfer was cut
    short (the client went away)."""

    time: float
    zone: dns.name.Name
    client: str  # address of the client
    key: str | None  # TSIG key name, None when unsigned
    kind: str
    serial_from: int | None  # the client's serial (IXFR), None for AXFR
    serial_to: int
    messages: int
    rrs: int
    bytes: int
    duration: float  # seconds
    error: str | None = None
    id: int | None = None


class Logs(StoreFile):
    """The NOTIFY status and the transfer log."""

    # -- NOTIFY status --

    def record_notify(self, state: NotifyRecord) -> None:
        """Store the latest NOTIFY state of one zone and secondary (replacing the last)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO notify_status (zone, target, serial, attempts, "
                "first_sent, last_sent, acked, error) VALUES (?,?,?,?,?,?,?,?)",
                (
                    _zone_key(state.zone),
                    state.target,
                    state.serial,
                    state.attempts,
                    state.first_sent,
                    state.last_sent,
                    state.acked,
                    state.error,
                ),
            )

    def notify_status(self, zone: dns.name.Name) -> list[NotifyRecord]:
        """The latest NOTIFY state per secondary of ``zone``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT target, serial, attempts, first_sent, last_sent, acked, error "
                "FROM notify_status WHERE zone = ? ORDER BY target",
                (_zone_key(zone),),
            ).fetchall()
        return [NotifyRecord(zone, *row) for row in rows]

    # -- the transfer log --

    def log_transfer(self, entry: TransferLogEntry) -> int:
        """Record one transfer served; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO transfers (time, zone, client, key, kind, serial_from, serial_to, "
                "messages, rrs, bytes, duration, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.time,
                    _zone_key(entry.zone),
                    entry.client,
                    entry.key,
                    entry.kind,
                    entry.serial_from,
                    entry.serial_to,
                    entry.messages,
                    entry.rrs,
                    entry.bytes,
                    entry.duration,
                    entry.error,
                ),
            )
            return int(cur.lastrowid or 0)

    def transfers(
        self, zone: dns.name.Name | None = None, limit: int | None = None
    ) -> list[TransferLogEntry]:
        """Logged transfers, newest first (of one zone when given), at most ``limit``."""
        where, args = ("WHERE zone = ?", [_zone_key(zone)]) if zone is not None else ("", [])
        return self._transfer_rows(
            f"{where} ORDER BY id DESC LIMIT ?", (*args, -1 if limit is None else limit)
        )

    def transfers_between(
        self, zone: dns.name.Name, since: float | None = None, until: float | None = None
    ) -> list[TransferLogEntry]:
        """The transfers of ``zone`` logged with ``since`` <= time < ``until``, oldest
        first."""
        low = float("-inf") if since is None else since
        high = float("inf") if until is None else until
        return self._transfer_rows(
            "WHERE zone = ? AND time >= ? AND time < ? ORDER BY id", (_zone_key(zone), low, high)
        )

    def last_transfers(self, zone: dns.name.Name) -> list[TransferLogEntry]:
        """The newest logged transfer of ``zone`` by each client, however old, by client."""
        return self._transfer_rows(
            "WHERE id IN (SELECT MAX(id) FROM transfers WHERE zone = ? GROUP BY client) "
            "ORDER BY client",
            (_zone_key(zone),),
        )

    def _transfer_rows(self, tail: str, args: tuple[object, ...]) -> list[TransferLogEntry]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, time, zone, client, key, kind, serial_from, serial_to, messages, "
                f"rrs, bytes, duration, error FROM transfers {tail}",
                args,
            ).fetchall()
        return [
            TransferLogEntry(
                time=t,
                zone=dns.name.from_text(z),
                client=c,
                key=k,
                kind=kind,
                serial_from=sf,
                serial_to=st,
                messages=m,
                rrs=rrs,
                bytes=b,
                duration=d,
                error=e,
                id=i,
            )
            for i, t, z, c, k, kind, sf, st, m, rrs, b, d, e in rows
        ]
