"""Differential tests of DNSSEC answers: a zone signed by ldns-signzone (NSEC, NSEC3, NSEC3
with Opt-Out), served as the very same records by NSD and by zonefan, asked the same
questions with the DO bit, compared section by section (RRSIGs and NSEC/NSEC3 proofs
included, TTLs included).

NSD builds its own proofs from the presigned zone, so every agreement is an independent
check of zonefan's proof selection. The comparison rules of tests/test_differential_nsd.py
apply (sections as sets of RRs, the CD bit against the query, optional additional data that
does not fit), with these DNSSEC additions, each a deliberate and documented difference:

* Optional authority data: NSD adds the apex NS RRset to positive answers; with DO its
  RRSIGs come along, and the addresses of those name servers with theirs. That NS RRset,
  its RRSIGs, and the address RRsets (with RRSIGs) only it brought are removed from both
  responses before comparing, exactly as the unsigned comparison does for NS alone.
* ANY (RFC 8482): zonefan's UDP answer must be a non-empty subset, and its TCP answer all,
  of what NSD gives per type, each RRset with its RRSIGs.
* NODATA for a QNAME that is itself a wildcard owner (``*.w MX``) in an NSEC3 zone: zonefan
  gives the NSEC3 matching QNAME (RFC 5155 §7.2.3, all a validator needs); NSD answers as for
  an expanded wildcard (§7.2.5) and adds the NSEC3 matching the parent, the closest encloser.
  That NSEC3 and its RRSIGs are the only records NSD may have in addition.
* Below an NSEC3 owner name (``x.<hash>.diff.test``, DO): NSD 4.6 answers NXDOMAIN with a
  single NSEC3 that is no closest encloser proof. zonefan gives the full RFC 5155 §7.2.2
  proof with the apex as closest encloser. Header and rcode are compared, and zonefan's
  authority must hold the SOA and the NSEC3 matching the apex.
* An empty non-terminal without an NSEC3 of its own (``ent3`` when dnssec-signzone signs
  with Opt-Out: only an insecure delegation lies below it). NSD 4.6 answers ``x.ent3 A``
  with the NSEC3s covering x.ent3 and *.ent3, and ``ent3 DS`` with the apex NSEC3 alone:
  neither is a closest provable encloser proof. zonefan gives RFC 5155 §7.2.1 closest
  provable encloser proofs (§7.2.2 / §7.2.4): the NSEC3 matching the apex and the Opt-Out
  NSEC3 covering the next closer name ent3 (plus the one covering ``*.diff.test.`` for the
  NXDOMAIN). Header and rcode are compared; zonefan's authority must hold the SOA, the apex
  NSEC3 and an Opt-Out NSEC3 covering ent3.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests import dnssec_zones
from tests.dnssec_zones import ORIGIN, Variant
from tests.servers import NsdServer, ZonefanServer
from tests.test_differential_nsd import (
    Asker,
    Mismatch,
    Probe,
    Sections,
    assert_no_mismatches,
    header_differences,
    mixed_case,
    response_kinds,
    rr_keys,
)

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

NOERROR = dns.rcode.NOERROR
NS = dns.rdatatype.NS
RRSIG = dns.rdatatype.RRSIG
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
APEX = dns.name.from_text(ORIGIN)
ENT3 = dns.name.from_text(f"ent3.{ORIGIN}")
INSEC = dns.name.from_text(f"insec.ent3.{ORIGIN}")


# -- questions -----------------------------------------------------------------------------


def q(rel: str, rdtype: str = "A", **kw: object) -> Probe:
    """A DO probe for ``rel`` in the zone, UDP with a 4096-octet payload unless told."""
    name = ORIGIN if rel == "@" else f"{rel}.{ORIGIN}"
    probe = Probe(name, rdtype, payload=4096, do=True)
    return replace(probe, **kw)  # type: ignore[arg-type]


BASE = [
    # apex: data, DNSSEC data, NODATA, and DS at the apex (this zone is not its parent)
    *(q("@", t) for t in ("SOA", "NS", "MX", "TXT", "A", "DNSKEY", "NSEC3PARAM", "AAAA")),
    q("@", "SRV"),
    q("@", "DS"),
    q("@", "NSEC"),
    q("@", "NSEC3"),
    # positive answers, NODATA, names with uppercase letters, additional-section addresses
    q("www"),
    q("www", "AAAA"),
    q("www", "MX"),
    q("ns1"),
    q("ns1", "AAAA"),
    q("mail", "AAAA"),
    q("mixedcase"),
    q("MIXEDCASE", "TXT"),
    q("upper.ent2", "AAAA"),
    q("txt", "TXT"),
    q("_sip._tcp", "SRV"),
    q("mxglue", "MX"),
    # empty non-terminals
    q("ent2"),
    q("_tcp", "SRV"),
    q("ent"),
    q("b.ent", "TXT"),
    q("a.b.ent", "TXT"),
    q("ent3"),
    q("ent3", "DS"),
    q("x.ent3"),
    # NXDOMAIN: below an ENT, under a wildcard-free name, before and after every name
    q("nope"),
    q("nope", "SOA"),
    q("a.b.nope", "AAAA"),
    q("nope", "DS"),
    q("x.ent"),
    q("x.b.ent", "TXT"),
    q("0"),
    q("zzzz"),
    q("x.real.w"),
    q("x.www"),
    # CNAME chains: in the zone, out of it, to NXDOMAIN, to NODATA, to a delegation, to an
    # ENT, to a wildcard, a loop, the CNAME itself
    q("alias1"),
    q("alias1", "AAAA"),
    q("alias1", "CNAME"),
    q("alias2"),
    q("alias2", "MX"),
    q("outside"),
    q("dangling"),
    q("tosub"),
    q("toent", "TXT"),
    q("towild"),
    q("towild", "TXT"),
    q("loop1"),
    # wildcards: expansion one and two labels deep, NODATA, the literal *, beside them
    q("x.w"),
    q("x.w", "TXT"),
    q("x.w", "MX"),
    q("a.b.w"),
    q("a.b.w", "AAAA"),
    q("*.w"),
    q("*.w", "MX"),
    q("w"),
    q("real.w"),
    q("real.w", "TXT"),
    q("foo.wc"),
    q("foo.wc", "AAAA"),
    q("foo.wc", "CNAME"),
    q("a.b.wc", "TXT"),
    # delegations: secure (DS) and insecure, glue, DS at the cut, below the cut
    q("sub"),
    q("sub", "NS"),
    q("sub", "DS"),
    q("host.sub"),
    q("deep.host.sub", "DS"),
    q("ns1.sub"),
    q("sec2", "NS"),
    q("www.sec2"),
    q("sec2", "DS"),
    q("ext", "NS"),
    q("ext", "DS"),
    q("x.ext", "AAAA"),
    q("sib"),
    q("sib", "DS"),
    q("insec.ent3"),
    q("insec.ent3", "DS"),
    q("a.insec.ent3", "DS"),
    # DNAME: out of the zone, into it, its owner
    q("dn", "DNAME"),
    q("dn"),
    q("a.dn"),
    q("www.dnin"),
    q("www.dnin", "AAAA"),
    q("nope.dnin"),
    # large RRsets
    q("mid", "TXT"),
    q("big", "TXT"),
    q("big", "TXT", payload=1232),
    q("mid", "TXT", payload=1232),
    # explicit DNSSEC types at ordinary names
    q("www", "RRSIG"),
    q("www", "NSEC"),
    q("x.w", "NSEC"),
    q("x.w", "RRSIG"),
    q("nope", "NSEC"),
    # ANY
    q("@", "ANY"),
    q("www", "ANY"),
    q("x.w", "ANY"),
    q("nope", "ANY"),
    q("ent", "ANY"),
]

SPECIAL = [
    # Without DO the signed zone answers like an unsigned one.
    q("www", do=False),
    q("nope", do=False),
    q("x.w", do=False),
    q("sub", do=False),
    q("ext", do=False),
    q("www", payload=None, do=False),
    # DO with a payload of 1232 and with the CD bit
    q("nope", payload=1232),
    q("x.w", "MX", payload=1232),
    q("www", cd=True, rd=True),
]


def battery() -> list[Probe]:
    """Every base probe over UDP, over TCP and in mixed case; then the special ones."""
    out: list[Probe] = []
    for p in BASE:
        out += [p, replace(p, tcp=True), replace(p, name=mixed_case(p.name))]
    return out + SPECIAL


# -- comparing -----------------------------------------------------------------------------


def _covered(rrset: dns.rrset.RRset) -> int:
    return int(rrset.covers) if rrset.rdtype == RRSIG else int(rrset.rdtype)


def _address_targets(rrsets: Iterable[dns.rrset.RRset]) -> set[dns.name.Name]:
    out: set[dns.name.Name] = set()
    for rrset in rrsets:
        for rd in rrset:
            if rrset.rdtype == NS:
                out.add(rd.target)
            elif rrset.rdtype == dns.rdatatype.MX:
                out.add(rd.exchange)
            elif rrset.rdtype == dns.rdatatype.SRV:
                out.add(rd.target)
    return out


def normalized(msg: dns.message.Message) -> Sections:
    """The sections without NSD's optional apex NS (and its RRSIGs, and the addresses only
    it brought) in positive answers: see the module docstring."""
    s = Sections(list(msg.answer), list(msg.authority), list(msg.additional))
    positive = msg.rcode() == NOERROR and msg.flags & dns.flags.AA and s.answer
    if not positive:
        return s
    apex_ns = [rs for rs in s.authority if rs.name == APEX and _covered(rs) == NS]
    if not apex_ns:
        return s
    s.authority = [rs for rs in s.authority if not any(rs is x for x in apex_ns)]
    answer_targets = _address_targets(s.answer)
    dropped = _address_targets(rs for rs in apex_ns if rs.rdtype == NS) - answer_targets
    s.additional = [
        rs for rs in s.additional if not (_covered(rs) in (A, AAAA) and rs.name in dropped)
    ]
    return s


def _set_difference(what: str, nsd: set[str], ours: set[str]) -> list[str]:
    if nsd == ours:
        return []
    lines = [f"{what} differs:"]
    lines += [f"    only NSD:     {k}" for k in sorted(nsd - ours)]
    lines += [f"    only zonefan: {k}" for k in sorted(ours - nsd)]
    return lines


def _nsec3_owner(signed: Path, name: dns.name.Name) -> dns.name.Name:
    """The NSEC3 owner name of ``name`` under this zone's NSEC3PARAM."""
    # dnspython's hash, not ours: the test must not agree with zonefan by construction.
    salt = bytes.fromhex(dnssec_zones.NSEC3_SALT)
    label = dns.dnssec.nsec3_hash(name, salt, dnssec_zones.NSEC3_ITERATIONS, 1)
    return dns.name.Name((label.lower().encode(), *APEX.labels))


def wildcard_owner_nodata(
    query: dns.message.Message, nsd: dns.message.Message, signed: Path
) -> dns.message.Message:
    """NSD's response without the NSEC3 (and RRSIGs) matching the parent of a wildcard
    QNAME in a NODATA answer: see the module docstring."""
    qname = query.question[0].name
    if qname.labels[0] != b"*" or nsd.answer or nsd.rcode() != NOERROR:
        return nsd
    extra = _nsec3_owner(signed, qname.parent())
    trimmed = dns.message.from_wire(nsd.to_wire())
    trimmed.authority = [rs for rs in trimmed.authority if rs.name != extra]
    return trimmed


@functools.cache
def _nsec3_owners(signed: Path) -> frozenset[dns.name.Name]:
    return frozenset(r.name for r in dnssec_zones.signed_records(signed) if r.rdtype == 50)


def _unprovable_ent(qname: dns.name.Name, signed: Path) -> bool:
    """True for ent3 and its non-existent children when ent3 has no NSEC3."""
    if not _nsec3_owners(signed) or _nsec3_owner(signed, ENT3) in _nsec3_owners(signed):
        return False
    return bool(qname == ENT3 or (qname.parent() == ENT3 and qname != INSEC))


def provable_encloser_differences(
    query: dns.message.Message,
    nsd: dns.message.Message,
    ours: dns.message.Message,
    signed: Path,
) -> list[str]:
    """Below an NSEC3 owner name, or at an ENT without NSEC3: see the module docstring."""
    out = header_differences(query, nsd, ours)
    have = {(rs.name, rs.rdtype) for rs in ours.authority}
    for needed in ((APEX, dns.rdatatype.SOA), (_nsec3_owner(signed, APEX), dns.rdatatype.NSEC3)):
        if needed not in have:
            out.append(f"authority lacks {needed[0]} {dns.rdatatype.to_text(needed[1])}")
    qname = query.question[0].name
    if _unprovable_ent(qname, signed) and not _opt_out_covers(ours, signed, ENT3):
        out.append("authority lacks the Opt-Out NSEC3 covering ent3 (the next closer name)")
    return out


def _opt_out_covers(msg: dns.message.Message, signed: Path, name: dns.name.Name) -> bool:
    """True when ``msg`` has an Opt-Out NSEC3 whose span covers the hash of ``name``."""
    target = _nsec3_owner(signed, name).labels[0].lower()
    for rs in msg.authority:
        if rs.rdtype != dns.rdatatype.NSEC3:
            continue
        for rd in rs:
            low = rs.name.labels[0].lower()
            high = base64.b32hexencode(rd.next).lower()
            inside = low < target < high if low < high else (target > low or target < high)
            if rd.flags & 1 and inside:
                return True
    return False


def differences(
    query: dns.message.Message, nsd: dns.message.Message, ours: dns.message.Message
) -> list[str]:
    """Header, OPT and every section (after normalisation) of two responses."""
    out = header_differences(query, nsd, ours)
    n, o = normalized(nsd), normalized(ours)
    for what in ("answer", "authority", "additional"):
        out += _set_difference(what, rr_keys(getattr(n, what)), rr_keys(getattr(o, what)))
    return out


def any_differences(
    probe: Probe,
    query: dns.message.Message,
    nsd: dns.message.Message,
    ours: dns.message.Message,
    ask_nsd: Asker,
    types: Sequence[str],
) -> list[str]:
    """A positive ANY: zonefan's RRsets (with RRSIGs) against NSD's per-type answers."""
    out = header_differences(query, nsd, ours)
    qname = dns.name.from_text(probe.name)
    truth: set[str] = set()
    for rdtype in types:
        single = ask_nsd(replace(probe, rdtype=rdtype, tcp=True).message(), True)
        code = dns.rdatatype.from_text(rdtype)
        truth |= rr_keys(rs for rs in single.answer if rs.name == qname and _covered(rs) == code)
    answered = rr_keys(ours.answer)
    if probe.tcp:
        out += _set_difference("ANY over TCP: answer (vs NSD per type)", truth, answered)
    elif not answered or not answered <= truth:
        out.append(f"ANY over UDP: {sorted(answered)} is not a non-empty subset of {truth}")
    signed = {rs.covers for rs in ours.answer if rs.rdtype == RRSIG}
    unsigned = {rs.rdtype for rs in ours.answer if rs.rdtype != RRSIG} - signed
    if unsigned:
        out.append(f"ANY: RRsets without their RRSIGs: {sorted(unsigned)}")
    return out


def run(
    probes: Sequence[Probe],
    ask_nsd: Asker,
    ask_ours: Asker,
    types: Sequence[str],
    signed: Path,
) -> tuple[list[Mismatch], list[tuple[Probe, dns.message.Message]]]:
    """Ask both servers every probe; the mismatches and NSD's responses."""
    mismatches: list[Mismatch] = []
    seen: list[tuple[Probe, dns.message.Message]] = []
    for probe in probes:
        message = probe.message()
        nsd = ask_nsd(message, probe.tcp)
        ours = ask_ours(message, probe.tcp)
        seen.append((probe, nsd))
        qname = message.question[0].name
        if qname.parent() in _nsec3_owners(signed) or _unprovable_ent(qname, signed):
            problems = provable_encloser_differences(message, nsd, ours, signed)
            if problems:
                mismatches.append(Mismatch(probe, problems, nsd, ours))
            continue
        if probe.rdtype == "ANY" and nsd.rcode() == NOERROR and nsd.answer:
            problems = any_differences(probe, message, nsd, ours, ask_nsd, types)
        else:
            problems = differences(message, wildcard_owner_nodata(message, nsd, signed), ours)
        if problems:
            mismatches.append(Mismatch(probe, problems, nsd, ours))
    return mismatches, seen


# -- servers -------------------------------------------------------------------------------


@dataclass
class Served:
    variant: Variant
    signed: Path
    nsd: NsdServer
    zonefan: ZonefanServer


def _asker(server: NsdServer | ZonefanServer) -> Asker:
    def ask(message: dns.message.Message, tcp: bool) -> dns.message.Message:
        return server.ask(message, tcp=tcp)

    return ask


@pytest.fixture(scope="module", params=dnssec_zones.VARIANTS, ids=lambda v: v.name)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """NSD and zonefan serving one ldns-signzone signed copy of the zone."""
    variant: Variant = request.param
    work = tmp_path_factory.mktemp(f"dnssec-{variant.name}")
    signed = dnssec_zones.sign(work / "sign", variant)
    nsd = NsdServer(work / "nsd", [(ORIGIN, signed)])
    zonefan = ZonefanServer(work / "zonefan", probe_name=ORIGIN)
    dnssec_zones.store_signed_zone(zonefan.db, signed)
    with nsd, zonefan:
        yield Served(variant, signed, nsd, zonefan)


def nsec3_owner_probes(signed: Path) -> list[Probe]:
    """Questions for an NSEC3 owner name and below it (RFC 5155 §7.2.8)."""
    owners = sorted(name.to_text() for name in _nsec3_owners(signed))
    if not owners:
        return []
    owner = owners[len(owners) // 2]
    base = Probe(owner, "A", payload=4096, do=True)
    return [
        base,
        replace(base, rdtype="NSEC3"),
        replace(base, rdtype="NSEC3", do=False),
        replace(base, name=f"x.{owner}"),
    ]


def test_signed_zone_answers_like_nsd(served: Served) -> None:
    probes = battery() + nsec3_owner_probes(served.signed)
    types = ("SOA", "NS", "MX", "TXT", "A", "AAAA", "DNSKEY", "NSEC3PARAM", "SRV", "CNAME", "NSEC")
    mismatches, seen = run(probes, _asker(served.nsd), _asker(served.zonefan), types, served.signed)
    kinds = response_kinds(seen)
    assert {"answer", "nodata", "nxdomain", "referral", "dname"} <= kinds
    # The proofs must really be there: NSD gave NSEC/NSEC3 records for the negative answers.
    chain = "NSEC" if served.variant.name == "nsec" else "NSEC3"
    negative = [m for p, m in seen if p.do and m.rcode() == dns.rcode.NXDOMAIN]
    assert negative and all(
        any(dns.rdatatype.to_text(rs.rdtype) == chain for rs in m.authority) for m in negative
    )
    assert_no_mismatches(mismatches, len(probes))
