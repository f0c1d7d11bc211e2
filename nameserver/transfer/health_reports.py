"""Health-check reports of remote checkers, carried by TSIG-signed RFC 2136 UPDATEs.

A remote checker sends an UPDATE for the pool's zone that adds TXT RRs owned by
``_zonefan-health.<pool name>``; each RR is one report about one member, its strings
``key=value`` fields (``checker=``, ``address=``, ``ok=true|false``, ``at=`` seconds since
the epoch, optional ``detail=``). The server recognises such an UPDATE before the ordinary
update-policy path and hands the reports to whoever checks the pools (a callable the
composition root gives); nothing is written to the zone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.update

from nameserver.errors import NameserverError

# The first label of every report's owner name; the rest is the pool's name.
REPORT_LABEL = b"_zonefan-health"
# One report per member: more RRs than this in one message is not a checker's round.
MAX_REPORTS = 64


def report_owner(pool: dns.name.Name) -> dns.name.Name:
    """The owner name of reports about ``pool``."""
    return dns.name.Name((REPORT_LABEL, *pool.labels))


@dataclass(frozen=True)
class RawReport:
    """One report as the UPDATE carried it: the pool and the TXT RR's strings."""

    pool: dns.name.Name
    strings: tuple[bytes, ...]


# The reports of one UPDATE and the name of the TSIG key that signed it, to an RCODE.
HealthReports = Callable[[Sequence[RawReport], dns.name.Name], int]


class NotAReport(NameserverError):
    """An UPDATE that touches the reserved name but is not a well-formed report."""


def is_report(message: dns.update.UpdateMessage) -> bool:
    """True when any RR of the update section is owned by a report name."""
    return any(_is_report_owner(rrset.name) for rrset in message.sections[2])


def raw_reports(message: dns.update.UpdateMessage) -> list[RawReport]:
    """The reports of an UPDATE :func:`is_report` accepted; :class:`NotAReport` when it
    holds anything else (prerequisites, deletions, other names or types) or too many."""
    if message.sections[1]:
        raise NotAReport("a health report has no prerequisites")
    rrsets = message.sections[2]
    if sum(len(r) for r in rrsets) > MAX_REPORTS:
        raise NotAReport(f"more than {MAX_REPORTS} reports in one message")
    reports = []
    for rrset in rrsets:
        if not _is_report_owner(rrset.name):
            raise NotAReport(f"{rrset.name} is not a report name: a report changes nothing else")
        adds = rrset.deleting is None and rrset.rdclass == dns.rdataclass.IN
        if rrset.rdtype != dns.rdatatype.TXT or not adds or not rrset:
            raise NotAReport("a health report only adds TXT records")
        for rdata in rrset:
            reports.append(RawReport(rrset.name.parent(), tuple(rdata.strings)))
    return reports


def _is_report_owner(name: dns.name.Name) -> bool:
    return len(name.labels) > 2 and name.labels[0].lower() == REPORT_LABEL
