"""IXFR in (RFC 1995) with TSIG, applied straight to the local copy: the answer's
difference sequences become deletions and additions of single records (:mod:`sync.zoneedit`),
so a change costs in proportion to its size, with no second copy of the zone to apply it to.

The primary may answer with the whole zone instead (RFC 1995 §4, as AXFR does), or with its
SOA alone when we are current. An answer that cannot apply to our copy raises
:class:`IncrementalError`; the caller then transfers the whole zone by AXFR.

Blocking: callers on an event loop run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.serial

from sync.model import ZoneData, gc_paused
from sync.settings import Address, TsigKey
from sync.wire import RawRecord, ZoneBuilder, add
from sync.xfr import Answer, TransferError, soa_serial, transfer
from sync.zoneedit import EditError, ZoneEdit

_SOA = dns.rdatatype.SOA


class IncrementalError(TransferError):
    """The IXFR answer does not apply to our copy (the primary is behind us, its changes
    start at another serial or delete records we do not hold): an AXFR can still give the
    zone."""


@dataclass(frozen=True)
class Incremental:
    """What an IXFR gave: the zone, how it came (``"ixfr"``: changes applied to ours;
    ``"axfr"``: the whole zone; ``"unchanged"``: ours is current) and its serial."""

    data: ZoneData
    method: Literal["ixfr", "axfr", "unchanged"]
    serial: int


def ixfr(
    server: Address,
    zone: dns.name.Name,
    have: ZoneData,
    key: TsigKey | None = None,
    timeout: float = 10.0,
    lifetime: float | None = None,
) -> Incremental:
    """Bring ``have`` up to date from ``server``. ``timeout`` bounds each read,
    ``lifetime`` the whole transfer. Raises :class:`IncrementalError` (use AXFR),
    :class:`TransferError` (an rcode, a TSIG failure, a short transfer) or
    OSError/TimeoutError for the connection."""
    query = dns.message.make_query(zone, dns.rdatatype.IXFR, dns.rdataclass.IN)
    # RFC 1995 §3: the authority section holds the SOA of the version we have.
    query.authority.append(dns.rrset.from_rdata(zone, 0, have.soa))
    with transfer(server, query, key, timeout, lifetime) as stream:
        return _receive(stream.answers(ZoneBuilder(zone)), zone, have, key is not None)


@gc_paused
def _receive(
    answers: Iterator[Answer], zone: dns.name.Name, have: ZoneData, signed_query: bool
) -> Incremental:
    opening = next(answers)
    record = opening.record
    if record.rdtype != _SOA or opening.message != 0 or record.position != 0:
        raise TransferError("the transfer does not start with the zone's SOA")
    if record.owner != zone:
        raise TransferError(f"the transfer opened with the SOA of {record.owner}")
    latest = soa_serial(record)
    if latest == have.serial:  # §4: current; the answer is this SOA alone
        _check_closing(opening, signed_query)
        return Incremental(have, "unchanged", latest)
    if dns.serial.Serial(latest) < have.serial:
        raise IncrementalError(f"the primary is at serial {latest}, older than our {have.serial}")
    second = next(answers)
    if second.record.rdtype != _SOA or _apex_soa(second.record, zone) == latest:
        data = _whole_zone(answers, zone, latest, record, second, signed_query)
        return Incremental(data, "axfr", latest)
    try:
        data = _apply_differences(answers, second, zone, have, latest, signed_query)
    except EditError as exc:
        raise IncrementalError(f"the IXFR {exc}") from None
    return Incremental(data, "ixfr", latest)


def _apply_differences(
    answers: Iterator[Answer],
    answer: Answer,
    zone: dns.name.Name,
    have: ZoneData,
    latest: int,
    signed_query: bool,
) -> ZoneData:
    """RFC 1995 §4: sequences of (old SOA, deletions, new SOA, additions), the serials
    chaining from ours to ``latest``, then ``latest``'s SOA once more. ``answer`` is the
    old SOA of the first sequence."""
    edit = ZoneEdit(have)
    current = have.serial
    while True:
        old = _apex_soa(answer.record, zone)
        if old != current:
            raise IncrementalError(f"a difference sequence starts at serial {old}, not {current}")
        answer = _deletions(answers, edit, answer)
        current = _apex_soa(answer.record, zone)
        answer = _additions(answers, edit, answer)
        if current == latest:
            if _apex_soa(answer.record, zone) != latest:
                raise IncrementalError(f"changes after the final serial {latest}")
            _check_closing(answer, signed_query)
            return edit.result()


def _deletions(answers: Iterator[Answer], edit: ZoneEdit, old_soa: Answer) -> Answer:
    """Delete ``old_soa`` and the records after it up to the next SOA, which is returned."""
    answer = old_soa
    while True:
        record = _in_class(answer.record)
        edit.delete(record.owner, record.rdtype, record.rdata)
        answer = next(answers)
        if answer.record.rdtype == _SOA:
            return answer


def _additions(answers: Iterator[Answer], edit: ZoneEdit, new_soa: Answer) -> Answer:
    """Add ``new_soa`` and the records after it up to the next SOA, which is returned."""
    answer = new_soa
    while True:
        record = _in_class(answer.record)
        edit.add(record.owner, record.rdtype, record.ttl, record.rdata)
        answer = next(answers)
        if answer.record.rdtype == _SOA:
            return answer


def _whole_zone(
    answers: Iterator[Answer],
    zone: dns.name.Name,
    latest: int,
    opening: RawRecord,
    answer: Answer,
    signed_query: bool,
) -> ZoneData:
    """An IXFR answered like an AXFR (RFC 1995 §4): the ``opening`` SOA, then ``answer``
    and the records after it up to the SOA closing the zone."""
    builder = ZoneBuilder(zone)
    add(builder, opening)
    while True:
        record = _in_class(answer.record)
        if record.rdtype == _SOA:
            if _apex_soa(record, zone) != latest:
                raise TransferError(f"closing SOA serial is not the opening {latest}")
            _check_closing(answer, signed_query)
            return builder.build()
        add(builder, record)
        answer = next(answers)


def _apex_soa(record: RawRecord, zone: dns.name.Name) -> int:
    if record.owner != zone:
        raise TransferError(f"an SOA record for {record.owner} in the transfer of {zone}")
    return soa_serial(_in_class(record))


def _in_class(record: RawRecord) -> RawRecord:
    if record.rdclass != dns.rdataclass.IN:
        raise TransferError(f"a record of class {record.rdclass} for {record.owner}")
    return record


def _check_closing(answer: Answer, signed_query: bool) -> None:
    if not answer.last_in_message:
        raise TransferError("records after the closing SOA")
    if signed_query and not answer.signed:
        raise TransferError("the last message of the transfer is not TSIG-signed")
