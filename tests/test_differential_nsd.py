"""Differential tests: the same zone served by NSD and by zonefan, the same questions, the
same answers.

NSD is the reference. Every question of a battery goes, as the very same message, to both
servers; rcode, the header flags (QR AA TC RD RA CD), the question echo, every section (as
sets of RRs, owner names compared case-insensitively, TTLs included) and the OPT record are
compared. All mismatches are collected and reported together with both responses.

Where the two servers differ by design, and both are right per the RFCs, the difference is
written down below as an explicit rule, never silently ignored:

* Optional authority data: NSD (``minimal-responses: no``, its default) adds the zone's apex
  NS RRset to the authority section of positive answers, and addresses of those name
  servers to the additional section. zonefan sends minimal responses. Neither is required
  (RFC 1034 §4.3.2, RFC 2181 §6.1), so that exact NS RRset and the addresses it alone
  brought are removed from both responses before comparing.
* ANY (RFC 8482): NSD answers one RRset of its choice over UDP and TCP; zonefan answers one
  RRset over UDP and every RRset over TCP. For a positive ANY answer, the truth is the set
  of RRsets NSD gives when asked for each type on its own: zonefan's UDP answer must be a
  non-empty subset of it, its TCP answer all of it.
* Optional additional data that does not fit a UDP response is left out, and which of it
  fits is each server's choice. When NSD's UDP response carries less additional data than
  its TCP response to the same question, zonefan's additional section must be a subset of
  NSD's TCP one (no invented data) instead of equal to NSD's UDP one.
* RFC 9471 (2023): when the glue of in-domain name servers of a referral does not all fit,
  TC MUST be set. NSD 4.6 (2022) predates it and drops such glue silently. Where NSD's UDP
  referral lacks in-domain glue that its TCP referral has, zonefan's TC must be set exactly
  when zonefan's own UDP referral lacks some of that glue.
* The CD bit: RFC 4035 §3.1.6 says a security-aware name server MUST copy CD from the
  query into the response. zonefan (which signs zones) does; NSD 4.6 always clears it. So
  CD is checked against the query, and the other flags against NSD.
* Extended DNS errors (RFC 8914) and other EDNS options are optional: the OPT records are
  compared by presence, version, DO bit and a payload of at least 512, not by options.

Not a rule: addresses of name servers that lie below another zone cut of the same zone
(sibling glue in referrals, e.g. sib.diff.test or com. in the root zone; glue addresses for
the root's own NS RRset) are expected as NSD gives them: RFC 1034 §4.3.2 step 3b puts
"whatever addresses are available into the additional section, using glue RRs" and step 6
adds useful local data. MX and SRV targets get authoritative addresses only, as in NSD.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from tests.servers import NsdServer, ZonefanServer, run_cli
from tests.tools import PROJECT_ROOT, shared_file

pytestmark = [pytest.mark.external, pytest.mark.timeout(180)]

DATA = Path(__file__).resolve().parent / "data"
DIFF_ZONE = DATA / "differential.test.zone"
DIFF_ORIGIN = "diff.test."
EXAMPLE_ZONE = PROJECT_ROOT / "zones" / "example.test.zone"
EXAMPLE_ORIGIN = "example.test."

NOERROR = dns.rcode.NOERROR
NXDOMAIN = dns.rcode.NXDOMAIN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
NS = dns.rdatatype.NS
MX = dns.rdatatype.MX
SRV = dns.rdatatype.SRV
ANY = dns.rdatatype.ANY
# Compared with NSD's; CD is compared with the query's (see the module docstring).
COMPARED_FLAGS = {
    "QR": dns.flags.QR,
    "AA": dns.flags.AA,
    "TC": dns.flags.TC,
    "RD": dns.flags.RD,
    "RA": dns.flags.RA,
}
# Types whose rdata hold case-sensitive text; other rdata compare case-insensitively.
CASE_SENSITIVE_RDATA = {
    dns.rdatatype.TXT,
    dns.rdatatype.SPF,
    dns.rdatatype.HINFO,
    dns.rdatatype.NAPTR,
    dns.rdatatype.CAA,
    dns.rdatatype.URI,
}
DNSSEC_TYPES = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"}
MAX_MISMATCHES_SHOWN = 40
MAX_SILENT = 5  # unanswered questions before a battery stops (the server is gone)

Asker = Callable[[dns.message.Message, bool], dns.message.Message]


# -- questions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One question and how it is sent."""

    name: str
    rdtype: str = "A"
    tcp: bool = False
    payload: int | None = 1232  # EDNS0 UDP payload; None: no OPT record at all
    do: bool = False
    rd: bool = False
    cd: bool = False
    rdclass: str = "IN"
    edns_version: int = 0

    def message(self) -> dns.message.Message:
        flags = (dns.flags.RD if self.rd else 0) | (dns.flags.CD if self.cd else 0)
        if self.payload is None:
            return dns.message.make_query(
                self.name, self.rdtype, self.rdclass, use_edns=False, flags=flags
            )
        return dns.message.make_query(
            self.name,
            self.rdtype,
            self.rdclass,
            use_edns=self.edns_version,
            payload=self.payload,
            want_dnssec=self.do,
            flags=flags,
        )

    def __str__(self) -> str:
        parts = [self.name, self.rdclass, self.rdtype, "tcp" if self.tcp else "udp"]
        parts.append("no-edns" if self.payload is None else f"edns{self.edns_version}")
        if self.payload is not None:
            parts.append(f"bufsize={self.payload}")
        parts += [flag for flag, on in (("+do", self.do), ("+rd", self.rd), ("+cd", self.cd)) if on]
        return " ".join(parts)


def mixed_case(name: str) -> str:
    """``www.diff.test.`` -> ``WwW.DiFf.TeSt.``: the same name in other letters' case."""
    return "".join(c.upper() if i % 2 == 0 else c.lower() for i, c in enumerate(name))


def transports(probes: Iterable[Probe]) -> list[Probe]:
    """Each probe over UDP with EDNS, UDP without EDNS, TCP, and UDP in mixed case."""
    out: list[Probe] = []
    for p in probes:
        out += [
            p,
            replace(p, payload=None),
            replace(p, tcp=True),
            replace(p, name=mixed_case(p.name), rd=True),
        ]
    return out


def diff_battery() -> list[Probe]:
    """Questions for tests/data/differential.test.zone, one or more per answering rule."""

    def q(rel: str, rdtype: str = "A") -> Probe:
        return Probe(f"{rel}.{DIFF_ORIGIN}" if rel != "@" else DIFF_ORIGIN, rdtype)

    base = [
        # apex data, and NODATA at the apex
        *(q("@", t) for t in ("SOA", "NS", "MX", "TXT", "A", "AAAA", "SRV")),
        # existing names, NODATA, names with uppercase letters in the zone
        q("www"),
        q("www", "AAAA"),
        q("www", "MX"),
        q("ns1"),
        q("ns1", "AAAA"),
        q("ns2"),
        q("ns2", "AAAA"),
        q("mail", "AAAA"),
        q("mixedcase"),
        q("MIXEDCASE", "TXT"),
        q("upper.ent2", "AAAA"),
        q("ent2"),
        q("txt", "TXT"),
        q("_sip._tcp", "SRV"),
        q("_sip._udp", "SRV"),
        q("_tcp", "SRV"),
        # CNAME chains: 1 and 2 hops, out of zone, to NXDOMAIN, below a cut, to an ENT,
        # to a wildcard, a loop, and the CNAME itself
        q("alias1"),
        q("alias1", "AAAA"),
        q("alias1", "CNAME"),
        q("alias2"),
        q("alias2", "MX"),
        q("alias2", "CNAME"),
        q("outside"),
        q("dangling"),
        q("dangling", "CNAME"),
        q("tosub"),
        q("tosub", "DS"),
        q("toent", "TXT"),
        q("towild"),
        q("towild", "TXT"),
        q("loop1"),
        # wildcards: one and two labels deep, NODATA, the literal *, the ENT above it,
        # an existing name beside it and below that name
        q("x.w"),
        q("x.w", "TXT"),
        q("x.w", "MX"),
        q("a.b.w"),
        q("a.b.w", "TXT"),
        q("*.w"),
        q("w"),
        q("real.w"),
        q("real.w", "TXT"),
        q("x.real.w"),
        q("foo.wc"),
        q("foo.wc", "AAAA"),
        q("foo.wc", "CNAME"),
        q("a.b.wc", "TXT"),
        # empty non-terminals and names below them
        q("ent"),
        q("ent", "TXT"),
        q("b.ent", "TXT"),
        q("a.b.ent", "TXT"),
        q("a.b.ent"),
        q("x.ent"),
        q("x.b.ent", "TXT"),
        q("inner"),
        # NXDOMAIN
        q("nope"),
        q("nope", "SOA"),
        q("a.b.nope", "AAAA"),
        q("nope", "DS"),
        # delegations: at the cut, below it, DS and NS at the cut, glue, no glue
        q("sub"),
        q("sub", "NS"),
        q("sub", "DS"),
        q("sub", "SOA"),
        q("host.sub"),
        q("deep.host.sub", "DS"),
        q("ns1.sub"),
        q("ns1.sub", "AAAA"),
        q("ext", "NS"),
        q("ext", "DS"),
        q("ext"),
        q("x.ext", "AAAA"),
        # DNAME: out of zone, into the zone, the DNAME itself, its owner, a too-long result
        q("dn", "DNAME"),
        q("dn"),
        q("a.dn"),
        q("a.b.dn", "AAAA"),
        q("www.dnin"),
        q("www.dnin", "AAAA"),
        q("nope.dnin"),
        q("dnin", "DNAME"),
        Probe(".".join(["a" * 63] * 3 + ["b" * 48, "dn", DIFF_ORIGIN]), "A"),
        # large RRsets: over 512 (mid) and over 1232 (big) octets
        q("mid", "TXT"),
        q("big", "TXT"),
        # unusual types
        q("www", "TYPE0"),
        q("www", "TYPE65000"),
        q("@", "TYPE65000"),
        q("nope", "TYPE65000"),
        # ANY: minimal over UDP, per the rules in the module docstring
        q("@", "ANY"),
        q("www", "ANY"),
        q("mixedcase", "ANY"),
        q("x.w", "ANY"),
        q("alias1", "ANY"),
        q("_sip._tcp", "ANY"),
        q("sub", "ANY"),
        q("ent", "ANY"),
        q("nope", "ANY"),
    ]
    special = [
        # EDNS payloads and no EDNS around the truncation sizes, then over TCP
        *(
            replace(q(n, "TXT"), payload=size)
            for n in ("mid", "big")
            for size in (None, 512, 1232, 4096)
        ),
        # RFC 6891 §6.2.5: a payload below 512 is taken as 512
        replace(q("mid", "TXT"), payload=100),
        replace(q("www"), payload=100),
        replace(q("big", "TXT"), tcp=True, payload=None),
        replace(q("big", "ANY"), tcp=True),
        replace(q("big", "ANY"), payload=4096),
        # DO bit: the zone is unsigned, so the answers are the same
        replace(q("www"), do=True),
        replace(q("nope"), do=True),
        replace(q("sub"), do=True),
        replace(q("big", "TXT"), do=True, payload=4096),
        replace(q("www"), cd=True, rd=True),
        replace(q("www"), payload=4096, tcp=True, do=True),
        # EDNS version 1: BADVERS
        replace(q("www"), edns_version=1),
        # outside every zone, and the CH class
        Probe("example.org.", "A"),
        Probe("test.", "SOA"),
        Probe("nodiff.test.", "A", payload=None),
        Probe("x.example.net.", "A", tcp=True),
        replace(q("www"), rdclass="CH"),
        replace(q("@", "SOA"), rdclass="CH"),
        replace(q("@", "SOA"), rdclass="CH", payload=None),
    ]
    return transports(base) + special


def auto_battery(origin: str, zone_text: str, limit: int = 400) -> list[Probe]:
    """Questions derived from a zone file's owner names and types, so that the test covers
    whatever the zone holds: each present type, a missing type, ANY, a name just below."""
    owners: dict[str, set[str]] = {}
    for owner, rdtype in _owners_and_types(zone_text, origin):
        owners.setdefault(owner, set()).add(rdtype)
    probes: list[Probe] = []
    for owner in sorted(owners):
        types = sorted(owners[owner] - DNSSEC_TYPES)
        for rdtype in (*types, "A", "TYPE65000", "ANY"):
            probes.append(Probe(owner, rdtype))
        probes.append(Probe(mixed_case(owner), types[0] if types else "A", payload=None))
        probes.append(Probe(f"zz-below.{owner}", "A"))
        probes.append(Probe(owner, types[0] if types else "A", tcp=True))
    unique = list(dict.fromkeys(probes))
    return unique[:limit]


def _owners_and_types(zone_text: str, origin: str) -> Iterator[tuple[str, str]]:
    """(absolute owner, type) of each record in ``zone_text``, via dnspython."""
    import dns.zone

    zone = dns.zone.from_text(zone_text, origin=origin, relativize=False, check_origin=False)
    for name, node in zone.nodes.items():
        for rdataset in node.rdatasets:
            yield name.to_text(), dns.rdatatype.to_text(rdataset.rdtype)


# -- comparing responses -------------------------------------------------------------------


def rr_keys(rrsets: Iterable[dns.rrset.RRset]) -> set[str]:
    """One text per RR: owner lowercased, TTL, class, type, rdata (lowercased unless text)."""
    keys: set[str] = set()
    for rrset in rrsets:
        head = (
            f"{rrset.name.to_text().lower()} {rrset.ttl} "
            f"{dns.rdataclass.to_text(rrset.rdclass)} {dns.rdatatype.to_text(rrset.rdtype)}"
        )
        for rd in rrset:
            text = rd.to_text()
            if rd.rdtype not in CASE_SENSITIVE_RDATA:
                text = text.lower()
            keys.add(f"{head} {text}")
    return keys


def _targets(rrsets: Iterable[dns.rrset.RRset]) -> set[dns.name.Name]:
    """Names whose addresses an answer may carry in additional: NS, MX and SRV targets."""
    found: set[dns.name.Name] = set()
    for rrset in rrsets:
        for rd in rrset:
            if rrset.rdtype == NS:
                found.add(rd.target)
            elif rrset.rdtype == MX:
                found.add(rd.exchange)
            elif rrset.rdtype == SRV:
                found.add(rd.target)
    return found


@dataclass
class Sections:
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]
    additional: list[dns.rrset.RRset]


def normalized(msg: dns.message.Message, apexes: set[dns.name.Name]) -> Sections:
    """The sections without the optional apex NS RRset of positive answers (see the module
    docstring) and without the addresses that only that NS RRset brought."""
    s = Sections(list(msg.answer), list(msg.authority), list(msg.additional))
    positive = msg.rcode() == NOERROR and msg.flags & dns.flags.AA and s.answer
    if not (
        positive
        and len(s.authority) == 1
        and s.authority[0].rdtype == NS
        and s.authority[0].name in apexes
    ):
        return s
    ns = s.authority.pop()
    dropped = _targets([ns]) - _targets(s.answer)
    s.additional = [
        rs for rs in s.additional if not (rs.rdtype in (A, AAAA) and rs.name in dropped)
    ]
    return s


def _flags(msg: dns.message.Message) -> set[str]:
    return {name for name, bit in COMPARED_FLAGS.items() if msg.flags & bit}


def _opt(msg: dns.message.Message) -> str:
    if msg.edns < 0:
        return "no OPT"
    do = "DO" if msg.ednsflags & dns.flags.DO else "no DO"
    payload = "payload>=512" if msg.payload >= 512 else f"payload={msg.payload}<512"
    return f"OPT version {msg.edns}, {do}, {payload}"


def _set_difference(what: str, nsd: set[str], ours: set[str]) -> list[str]:
    if nsd == ours:
        return []
    lines = [f"{what} differs:"]
    lines += [f"    only NSD:     {k}" for k in sorted(nsd - ours)]
    lines += [f"    only zonefan: {k}" for k in sorted(ours - nsd)]
    return lines


def header_differences(
    query: dns.message.Message, nsd: dns.message.Message, ours: dns.message.Message
) -> list[str]:
    """rcode, opcode, the compared flags, CD, the question echo (exact case) and OPT."""
    out: list[str] = []
    if bool(query.flags & dns.flags.CD) != bool(ours.flags & dns.flags.CD):
        out.append("flags: zonefan does not copy the CD bit of the query (RFC 4035 §3.1.6)")
    if nsd.rcode() != ours.rcode():
        out.append(
            f"rcode: NSD {dns.rcode.to_text(nsd.rcode())}, "
            f"zonefan {dns.rcode.to_text(ours.rcode())}"
        )
    if nsd.opcode() != ours.opcode():
        out.append(f"opcode: NSD {nsd.opcode()}, zonefan {ours.opcode()}")
    nf, of = _flags(nsd), _flags(ours)
    if nf != of:
        out.append(f"flags: NSD {' '.join(sorted(nf))}, zonefan {' '.join(sorted(of))}")
    nq = [rr.to_text() for rr in nsd.question]
    oq = [rr.to_text() for rr in ours.question]
    if nq != oq:
        out.append(f"question: NSD {nq}, zonefan {oq}")
    if _opt(nsd) != _opt(ours):
        out.append(f"OPT: NSD {_opt(nsd)}, zonefan {_opt(ours)}")
    return out


def differences(
    query: dns.message.Message,
    nsd: dns.message.Message,
    ours: dns.message.Message,
    apexes: set[dns.name.Name],
) -> list[str]:
    """Everything that differs between the two responses, after the documented rules."""
    out = header_differences(query, nsd, ours)
    n, o = normalized(nsd, apexes), normalized(ours, apexes)
    for what in ("answer", "authority", "additional"):
        out += _set_difference(what, rr_keys(getattr(n, what)), rr_keys(getattr(o, what)))
    return out


def any_differences(
    probe: Probe,
    query: dns.message.Message,
    nsd: dns.message.Message,
    ours: dns.message.Message,
    apexes: set[dns.name.Name],
    ask_nsd: Asker,
    types: Sequence[str],
) -> list[str]:
    """A positive ANY answer (RFC 8482): see the module docstring for the rule."""
    out = header_differences(query, nsd, ours)
    truth: set[str] = set()
    glue: set[str] = set()
    qname = dns.name.from_text(probe.name)
    for rdtype in types:
        single = ask_nsd(replace(probe, rdtype=rdtype, tcp=True).message(), True)
        first = single.answer[0] if single.answer else None
        if first is not None and first.name == qname and first.rdtype == single.question[0].rdtype:
            truth |= rr_keys([first])
            glue |= rr_keys(normalized(single, apexes).additional)
    answered = rr_keys(ours.answer)
    if probe.tcp:
        out += _set_difference("ANY over TCP: answer (vs NSD's per-type answers)", truth, answered)
    elif not answered or not answered <= truth:
        out.append(
            "ANY over UDP: zonefan's answer must be a non-empty subset of the RRsets NSD "
            f"gives per type; zonefan {sorted(answered)}, NSD per type {sorted(truth)}"
        )
    if not rr_keys(nsd.answer) <= truth:
        out.append(f"ANY: NSD's own pick {sorted(rr_keys(nsd.answer))} is not in {sorted(truth)}")
    o = normalized(ours, apexes)
    out += _set_difference(
        "authority", rr_keys(normalized(nsd, apexes).authority), rr_keys(o.authority)
    )
    extra = rr_keys(o.additional) - glue
    if extra:
        out.append(f"ANY: additional RRs NSD never gives for these types: {sorted(extra)}")
    return out


def _in_domain_glue(referral: dns.message.Message) -> set[str]:
    """Keys of the additional address RRs at or below the referral's cut (RFC 9471)."""
    cuts = [rs.name for rs in referral.authority if rs.rdtype == NS]
    if not cuts or (referral.flags & dns.flags.AA and not referral.answer):
        return set()
    glue = [
        rs
        for rs in referral.additional
        if rs.rdtype in (A, AAAA) and any(rs.name.is_subdomain(c) for c in cuts)
    ]
    return rr_keys(glue)


def space_limited_differences(
    query: dns.message.Message,
    nsd: dns.message.Message,
    nsd_tcp: dns.message.Message,
    ours: dns.message.Message,
    apexes: set[dns.name.Name],
) -> list[str]:
    """A UDP response in which NSD left out additional data for lack of space: see the
    rules on optional additional data and RFC 9471 in the module docstring."""
    out = [d for d in header_differences(query, nsd, ours) if not d.startswith("flags")]
    nf = _flags(nsd) - {"TC"}
    of = _flags(ours) - {"TC"}
    if nf != of:
        out.append(f"flags: NSD {' '.join(sorted(nf))}, zonefan {' '.join(sorted(of))}")
    glue = _in_domain_glue(nsd_tcp)
    ours_tc = bool(ours.flags & dns.flags.TC)
    if glue - rr_keys(nsd.additional) and not nsd.flags & dns.flags.TC:
        missing = sorted(glue - rr_keys(ours.additional))
        if bool(missing) != ours_tc:
            out.append(
                f"TC is {'set' if ours_tc else 'clear'} but in-domain glue missing from "
                f"zonefan's UDP referral is {missing or 'none'} (RFC 9471)"
            )
    elif bool(nsd.flags & dns.flags.TC) != ours_tc:
        out.append(f"flags: TC NSD {bool(nsd.flags & dns.flags.TC)}, zonefan {ours_tc}")
    n, o = normalized(nsd, apexes), normalized(ours, apexes)
    for what in ("answer", "authority"):
        out += _set_difference(what, rr_keys(getattr(n, what)), rr_keys(getattr(o, what)))
    invented = rr_keys(o.additional) - rr_keys(normalized(nsd_tcp, apexes).additional)
    if invented:
        out.append(f"additional RRs NSD does not give even over TCP: {sorted(invented)}")
    return out


@dataclass
class Mismatch:
    probe: Probe
    problems: list[str]
    nsd: dns.message.Message
    ours: dns.message.Message | None  # None: zonefan did not answer

    def report(self) -> str:
        lines = [f"=== {self.probe}", *(f"  {p}" for p in self.problems)]
        lines += ["  --- NSD:", *_indent(self.nsd.to_text())]
        ours = self.ours.to_text() if self.ours is not None else "(no response)"
        lines += ["  --- zonefan:", *_indent(ours)]
        return "\n".join(lines)


def _indent(text: str) -> list[str]:
    return [f"    {line}" for line in text.splitlines()]


def run_battery(
    probes: Sequence[Probe],
    ask_nsd: Asker,
    ask_ours: Asker,
    apexes: set[dns.name.Name],
    any_types: Sequence[str] = ("A",),
) -> tuple[list[Mismatch], list[tuple[Probe, dns.message.Message]]]:
    """Ask both servers every probe; the mismatches, and NSD's responses (for coverage)."""
    mismatches: list[Mismatch] = []
    seen: list[tuple[Probe, dns.message.Message]] = []
    silent = 0
    for probe in probes:
        message = probe.message()
        nsd = ask_nsd(message, probe.tcp)
        seen.append((probe, nsd))
        try:
            ours = ask_ours(message, probe.tcp)
        except (dns.exception.Timeout, OSError) as e:
            mismatches.append(Mismatch(probe, [f"zonefan did not answer: {e!r}"], nsd, None))
            silent += 1
            if silent >= MAX_SILENT:
                mismatches.append(
                    Mismatch(probe, [f"stopped after {silent} unanswered questions"], nsd, None)
                )
                break
            continue
        positive_any = (
            probe.rdtype == "ANY"
            and nsd.rcode() == NOERROR
            and nsd.flags & dns.flags.AA
            and bool(nsd.answer)
        )
        if positive_any:
            problems = any_differences(probe, message, nsd, ours, apexes, ask_nsd, any_types)
        else:
            problems = differences(message, nsd, ours, apexes)
            if problems and not probe.tcp:
                full = ask_nsd(message, True)
                if rr_keys(nsd.additional) < rr_keys(full.additional):
                    problems = space_limited_differences(message, nsd, full, ours, apexes)
        if problems:
            mismatches.append(Mismatch(probe, problems, nsd, ours))
    return mismatches, seen


def assert_no_mismatches(mismatches: Sequence[Mismatch], total: int) -> None:
    if not mismatches:
        return
    shown = "\n\n".join(m.report() for m in mismatches[:MAX_MISMATCHES_SHOWN])
    more = len(mismatches) - MAX_MISMATCHES_SHOWN
    tail = f"\n\n... and {more} more" if more > 0 else ""
    summary = "\n".join(f"  {m.probe}: {' '.join(m.problems[:2])}" for m in mismatches)
    pytest.fail(
        f"{len(mismatches)} of {total} questions answered differently by zonefan and NSD:\n"
        f"{summary}\n\n{shown}{tail}",
        pytrace=False,
    )


def response_kinds(seen: Iterable[tuple[Probe, dns.message.Message]]) -> set[str]:
    """What kinds of answer NSD gave: proves the battery reached every answering rule."""
    kinds: set[str] = set()
    for _probe, m in seen:
        aa = bool(m.flags & dns.flags.AA)
        if m.flags & dns.flags.TC:
            kinds.add("truncated")
        elif m.rcode() == NXDOMAIN:
            kinds.add("nxdomain")
        elif m.rcode() == dns.rcode.REFUSED:
            kinds.add("refused")
        elif m.rcode() == dns.rcode.BADVERS:
            kinds.add("badvers")
        elif m.rcode() == NOERROR and not aa and m.authority:
            kinds.add("referral")
        elif m.rcode() == NOERROR and aa and m.answer:
            kinds.add("answer")
            if any(rs.rdtype == dns.rdatatype.DNAME for rs in m.answer):
                kinds.add("dname")
        elif m.rcode() == NOERROR and aa:
            kinds.add("nodata")
    return kinds


# -- servers -------------------------------------------------------------------------------


def _asker(server: NsdServer | ZonefanServer) -> Asker:
    def ask(message: dns.message.Message, tcp: bool) -> dns.message.Message:
        return server.ask(message, tcp=tcp)

    return ask


@dataclass
class Pair:
    nsd: NsdServer
    zonefan: ZonefanServer
    apexes: set[dns.name.Name]


def _zone_types(zone_text: str, origin: str) -> list[str]:
    return sorted({t for _o, t in _owners_and_types(zone_text, origin)} - DNSSEC_TYPES)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """NSD and zonefan serving the differential zone (and the example zone, if present)."""
    zones = [(DIFF_ORIGIN, DIFF_ZONE)]
    if EXAMPLE_ZONE.exists():
        zones.append((EXAMPLE_ORIGIN, EXAMPLE_ZONE))
    work = tmp_path_factory.mktemp("differential")
    nsd = NsdServer(work / "nsd", zones)
    zonefan = ZonefanServer(work / "zonefan", probe_name=DIFF_ORIGIN)
    for origin, path in zones:
        zonefan.cli("zone", "import", str(path), "--origin", origin)
    with nsd, zonefan:
        yield Pair(nsd, zonefan, {dns.name.from_text(o) for o, _ in zones})


def test_the_comparison_sees_differences(served: Pair) -> None:
    """The comparator is not vacuous: different answers, flags and rcodes are reported."""
    nsd, apexes = served.nsd, served.apexes

    def ask(name: str, rdtype: str, **kw: Any) -> tuple[dns.message.Message, ...]:
        q = dns.message.make_query(f"{name}.{DIFF_ORIGIN}", rdtype, **kw)
        return q, nsd.ask(q)

    q, www = ask("www", "A", use_edns=0)
    assert differences(q, www, www, apexes) == []
    _, aaaa = ask("www", "AAAA")
    found = differences(q, www, aaaa, apexes)
    assert any(d.startswith("question") for d in found)
    assert any(d.startswith("answer") for d in found)
    _, nx = ask("nope", "A")
    assert any(d.startswith("rcode") for d in differences(q, www, nx, apexes))
    _, referral = ask("host.sub", "A")
    assert any(d.startswith("flags") for d in differences(q, www, referral, apexes))
    _, noedns = ask("www", "A", use_edns=False)
    assert any(d.startswith("OPT") for d in differences(q, www, noedns, apexes))
    _, mx = ask("mxglue", "MX")
    cd_query, _ = ask("www", "A", flags=dns.flags.CD)
    assert any("CD" in d for d in differences(cd_query, www, www, apexes))
    # The optional apex NS is only dropped from positive answers, never from a referral.
    assert normalized(referral, apexes).authority == referral.authority
    assert normalized(www, apexes).authority == []
    assert mx.answer and normalized(mx, apexes).authority == []


def test_differential_zone_answers_like_nsd(served: Pair) -> None:
    zone_text = DIFF_ZONE.read_text(encoding="utf-8")
    probes = diff_battery() + auto_battery(DIFF_ORIGIN, zone_text)
    mismatches, seen = run_battery(
        probes,
        _asker(served.nsd),
        _asker(served.zonefan),
        served.apexes,
        _zone_types(zone_text, DIFF_ORIGIN),
    )
    # The battery must reach every kind of answer, or a broken setup would pass.
    kinds = response_kinds(seen)
    expected = {"answer", "nodata", "nxdomain", "referral", "truncated", "refused", "dname"}
    assert expected | {"badvers"} <= kinds, f"NSD never gave: {expected - kinds}"
    assert_no_mismatches(mismatches, len(probes))


def test_example_zone_answers_like_nsd(served: Pair) -> None:
    if not EXAMPLE_ZONE.exists():
        pytest.skip(f"{EXAMPLE_ZONE} does not exist yet")
    zone_text = EXAMPLE_ZONE.read_text(encoding="utf-8")
    probes = auto_battery(EXAMPLE_ORIGIN, zone_text)
    probes += [Probe(f"nonexistent.{EXAMPLE_ORIGIN}", "A"), Probe(EXAMPLE_ORIGIN, "SOA")]
    mismatches, seen = run_battery(
        probes,
        _asker(served.nsd),
        _asker(served.zonefan),
        served.apexes,
        _zone_types(zone_text, EXAMPLE_ORIGIN),
    )
    assert {"answer", "nxdomain"} <= response_kinds(seen)
    assert_no_mismatches(mismatches, len(probes))


# -- the root zone -------------------------------------------------------------------------


@dataclass
class RootData:
    delegations: list[str]
    glue: list[str]
    with_ds: set[str]


def filter_root(source: Path, target: Path) -> RootData:
    """Copy ``source`` without the old signed zone's DNSSEC records (what zonefan drops
    with --strip-dnssec) for NSD, and note its delegations and glue names."""
    kept: list[str] = []
    ns_owners: set[str] = set()
    glue: set[str] = set()
    with_ds: set[str] = set()
    for line in source.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0].startswith((";", "$")):
            kept.append(line)
            continue
        rest = fields[1:]
        while rest and (rest[0].isdigit() or rest[0].upper() in ("IN", "CH", "HS")):
            rest = rest[1:]
        rdtype = rest[0].upper() if rest else ""
        if rdtype in DNSSEC_TYPES:
            continue
        kept.append(line)
        owner = fields[0].lower()
        if rdtype == "NS" and owner != ".":
            ns_owners.add(owner)
        elif rdtype in ("A", "AAAA"):
            glue.add(owner)
        elif rdtype == "DS":
            with_ds.add(owner)
    target.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return RootData(sorted(ns_owners), sorted(glue), with_ds)


def root_battery(data: RootData, rng: random.Random) -> list[Probe]:
    """About 200 questions: referrals with and without EDNS, DS at cuts, glue, NXDOMAIN."""
    probes = [
        Probe(".", "SOA"),
        Probe(".", "NS"),
        Probe(".", "NS", tcp=True),
        Probe(".", "DNSKEY"),
        Probe(".", "NSEC"),
        Probe(".", "ANY"),
        Probe(".", "ANY", tcp=True),
        Probe("com.", "NS"),
        Probe("com.", "NS", payload=None),
        Probe("www.example.com.", "A", tcp=True),
        Probe("NeT.", "DS"),
    ]
    signed = sorted(data.with_ds)
    unsigned = sorted(set(data.delegations) - data.with_ds)
    for tld in rng.sample(data.delegations, 50):
        probes.append(Probe(tld, "NS"))
        probes.append(Probe(f"www.{tld}", "A", payload=None))
    for tld in rng.sample(signed, 25):
        probes.append(Probe(mixed_case(tld), "DS"))
    for tld in rng.sample(unsigned, min(10, len(unsigned))):
        probes.append(Probe(tld, "DS"))
    for name in rng.sample(data.glue, 30):
        probes.append(Probe(name, "AAAA" if len(probes) % 2 else "A"))
    for i in range(20):
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
        probes.append(Probe(f"zz{i}{label}.", "A"))
    return probes


def test_root_zone_referrals_match_nsd(tmp_path: Path) -> None:
    source = shared_file("root.zone")
    work = tmp_path
    filtered = work / "root.nsd.zone"
    data = filter_root(source, filtered)
    zonefan = ZonefanServer(work / "zonefan", probe_name=".", start_timeout=30)
    run_cli(zonefan.db, "zone", "import", str(source), "--origin", ".", "--strip-dnssec")
    nsd = NsdServer(work / "nsd", [(".", filtered)], start_timeout=30)
    probes = root_battery(data, random.Random(20180312))
    with nsd, zonefan:
        mismatches, seen = run_battery(
            probes, _asker(nsd), _asker(zonefan), {dns.name.root}, ("SOA", "NS")
        )
    assert {"referral", "nxdomain", "answer", "nodata"} <= response_kinds(seen)
    assert_no_mismatches(mismatches, len(probes))
