"""What `zonefan sync status` reports: per zone and target, the serial the primary serves
(asked over DNS, not the sidecar's copy), the serial pushed to the target, and a verdict.

The sidecar's copy can be older than the primary (no sidecar running, a lost NOTIFY) and
says nothing about the primary when the primary does not answer, so the verdict is taken
against the primary's own answer:

* ``current``: the target holds the serial the primary serves, with the content the
  sidecar transferred for it;
* ``behind``: it does not (yet); ``lag_seconds`` is how long the sidecar has known the
  newer serial, None when it has not transferred it at all;
* ``refused``: the push of the newest serial the sidecar holds was refused and waits for
  the zone, the config or an operator (see :class:`~sync.errors.RefusedError`);
* ``unknown``: the primary could not be asked; the target holds the sidecar's last copy,
  which may or may not still be the primary's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import dns.name

from sync.errors import SourceError
from sync.state import SyncState, TargetStatus

Verdict = Literal["current", "behind", "refused", "unknown"]
STATUS_TIMEOUT = 2.0  # seconds for the primary's SOA answer: status must not hang


_AGAIN = (
    "not retried on a timer; judged again on the zone's next serial, a restart of the "
    "sidecar, or `zonefan sync apply`"
)
_REFUSAL_NOTES = {
    "safety": "waits for an operator: review it with `zonefan sync plan`, push it with "
    "`zonefan sync apply --force`; a new serial is judged again",
    "capability": f"the target cannot serve this zone as configured: {_AGAIN}",
    "rejected": f"the target rejected the change; fix the data or the target: {_AGAIN}",
    "": _AGAIN,
}


class SerialSource(Protocol):
    """The primary's SOA serial over DNS (``sync.source.ZoneSource``)."""

    async def serial(self, zone: dns.name.Name) -> int: ...


@dataclass(frozen=True)
class ZoneStatus:
    """One zone at the primary and in the sidecar's copy."""

    zone: str
    primary_serial: int | None  # as the primary serves it; None when it could not be asked
    primary_error: str | None  # why it could not, worded after "primary ADDR "
    copy_serial: int | None
    copy_digest: str | None
    copy_seen_at: float | None

    @property
    def reference(self) -> int | None:
        """The serial a target should hold: the primary's, else the sidecar's copy's."""
        return self.primary_serial if self.primary_error is None else self.copy_serial


async def ask_primary(
    source: SerialSource, zones: Iterable[dns.name.Name]
) -> dict[dns.name.Name, int | SourceError]:
    """Each zone's serial as the primary serves it, or why it could not be asked; the
    zones are asked at once."""
    names = list(zones)

    async def one(zone: dns.name.Name) -> int | SourceError:
        try:
            return await source.serial(zone)
        except SourceError as exc:
            return exc

    answers = await asyncio.gather(*(one(z) for z in names))
    return dict(zip(names, answers, strict=True))


def zone_statuses(
    state: SyncState | None, primary: Mapping[dns.name.Name, int | SourceError]
) -> list[ZoneStatus]:
    """The primary's answer and the sidecar's copy of each zone (``state`` None: the
    sidecar has never run)."""
    out = []
    for zone, answer in primary.items():
        version = state.zone_version(zone) if state is not None else None
        serial, seen_at, digest = version if version is not None else (None, None, None)
        out.append(
            ZoneStatus(
                zone=zone.to_text(),
                primary_serial=answer if isinstance(answer, int) else None,
                primary_error=answer.reason if isinstance(answer, SourceError) else None,
                copy_serial=serial,
                copy_digest=digest,
                copy_seen_at=seen_at,
            )
        )
    return out


def target_rows(
    zones: list[ZoneStatus],
    pairs: Iterable[tuple[str, str]],
    known: Iterable[TargetStatus],
    clock: Callable[[], float],
) -> list[dict[str, Any]]:
    """One row per (target, zone) in ``pairs`` (the configured ones), ordered by zone then
    target: what the state knows of it, the verdict against the primary, and a ``note``
    saying why when that is not plain."""
    by_zone = {z.zone: z for z in zones}
    recorded = {(s.target, s.zone): s for s in known}
    rows = []
    for target, zone in sorted(pairs, key=lambda p: (p[1], p[0])):
        s = recorded.get((target, zone)) or TargetStatus(target, zone)
        z = by_zone[zone]
        verdict, lag, note = _verdict(z, s, clock)
        row: dict[str, Any] = {
            "zone": zone,
            "target": target,
            "verdict": verdict,
            "current": verdict == "current",
            "primary_serial": z.primary_serial,
            "copy_serial": z.copy_serial,
            "lag_seconds": lag,
            "note": note,
        }
        row.update((k, v) for k, v in s.__dict__.items() if k not in row)
        rows.append(row)
    return rows


def _verdict(
    z: ZoneStatus, s: TargetStatus, clock: Callable[[], float]
) -> tuple[Verdict, float | None, str | None]:
    """(verdict, lag in seconds or None, note or None)."""
    want = z.reference
    if want is None:
        return "unknown", None, "the primary did not answer and the sidecar holds no copy"
    if s.pushed_serial == want:
        same_copy = z.copy_serial == want and s.pushed_digest and z.copy_digest
        if same_copy and s.pushed_digest != z.copy_digest:
            return (
                "behind",
                _lag(z, clock),
                f"serial {want} was pushed with other content than the sidecar's copy of "
                "it (the zone changed without a new serial); the next push sends it",
            )
        if z.primary_error is not None:
            return (
                "unknown",
                None,
                "the target holds the sidecar's last copy; whether the primary still "
                "serves it is not known",
            )
        return "current", 0.0, None
    if s.refused_serial == want and s.pending_serial is None:
        return "refused", None, _REFUSAL_NOTES.get(s.refused_kind or "", _REFUSAL_NOTES[""])
    if z.copy_serial != want:
        return (
            "behind",
            None,
            f"the sidecar has not transferred serial {want} (its copy: "
            f"{'none' if z.copy_serial is None else z.copy_serial}): is `zonefan sync run` "
            "running? `zonefan sync apply` pushes it now",
        )
    return "behind", _lag(z, clock), None


def _lag(z: ZoneStatus, clock: Callable[[], float]) -> float | None:
    return None if z.copy_seen_at is None else max(0.0, clock() - z.copy_seen_at)
