"""Answering a question from one zone snapshot: RFC 1034 §4.3.2 with RFC 2308 negative
answers, RFC 4592 wildcards, RFC 6672 DNAME and RFC 8482 minimal ANY; for DO queries to a
signed zone, with RRSIGs and NSEC/NSEC3 proofs (RFC 4035 §3.1, RFC 5155 §7.2).

Works on wire-form names only; the result is a list of RRsets per section that the
response writer turns into a packet. An RRset's RRSIGs follow it as the next entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import dns.rcode
import dns.rdatatype

from nameserver.serve.denial import Denial, denial_for
from nameserver.zone.snapshot import Node, RRsetData, ZoneSnapshot, is_sig_key, sig_key
from nameserver.zone.wirename import WILDCARD_LABEL, label_starts, lower

NS = int(dns.rdatatype.NS)
SOA = int(dns.rdatatype.SOA)
CNAME = int(dns.rdatatype.CNAME)
DNAME = int(dns.rdatatype.DNAME)
DS = int(dns.rdatatype.DS)
MX = int(dns.rdatatype.MX)
SRV = int(dns.rdatatype.SRV)
A = int(dns.rdatatype.A)
AAAA = int(dns.rdatatype.AAAA)
ANY = int(dns.rdatatype.ANY)
RRSIG = int(dns.rdatatype.RRSIG)
# Chain records: data only when asked for by type, never the one RRset of a minimal ANY.
NSEC3 = int(dns.rdatatype.NSEC3)
_DENIAL_TYPES = frozenset({int(dns.rdatatype.NSEC), NSEC3})

NOERROR = int(dns.rcode.NOERROR)
NXDOMAIN = int(dns.rcode.NXDOMAIN)
YXDOMAIN = int(dns.rcode.YXDOMAIN)
SERVFAIL = int(dns.rcode.SERVFAIL)

MAX_CHAIN = 16  # CNAME/DNAME hops followed inside one zone before giving up
MAX_NAME_WIRE = 255

# (owner wire as it goes on the wire, RRset)
Entry = tuple[bytes, RRsetData]


@dataclass(slots=True)
class Answer:
    """What to put in a response. ``glue_required`` counts the leading additional entries
    that must fit, or the response is truncated (RFC 9471). ``signed``: add RRSIGs (a DO
    query to a signed zone); ``denial``: how that zone proves names and types absent.
    ``copies_qname``: a name outside the question was made from the query name's labels in
    the query's case (a DNAME's synthesized CNAME), so the response is for that spelling."""

    rcode: int = NOERROR
    aa: bool = True
    answer: list[Entry] = field(default_factory=list)
    authority: list[Entry] = field(default_factory=list)
    additional: list[Entry] = field(default_factory=list)
    glue_required: int = 0
    signed: bool = False
    denial: Denial | None = None
    copies_qname: bool = False


def resolve(
    zone: ZoneSnapshot, qname: bytes, qtype: int, full_any: bool = False, dnssec: bool = False
) -> Answer:
    """Answer ``qname``/``qtype`` from ``zone``; ``qname`` is wire form in the query's case.

    ``full_any``: answer ANY with every RRset (over TCP); otherwise one RRset (RFC 8482).
    ``dnssec``: the query had the DO bit; a signed zone then adds RRSIGs and proofs.
    """
    ans = _signed_answer(zone) if dnssec else Answer()
    seen: set[bytes] = set()
    name = qname
    for _ in range(MAX_CHAIN):
        key = lower(name)
        if key in seen:
            break  # a CNAME loop: answer with the chain so far, as NSD and BIND do
        seen.add(key)
        follow = _answer_name(zone, ans, name, key, qtype, full_any)
        if follow is None or not _in_zone(zone, lower(follow)):
            return ans  # done, or the chain leaves the zone: the resolver goes on from here
        name = follow
    if not ans.answer:
        ans.rcode = SERVFAIL
    return ans


def _signed_answer(zone: ZoneSnapshot) -> Answer:
    """An Answer that collects RRSIGs and proofs when the zone is signed (its SOA has
    RRSIGs); an unsigned zone answers a DO query as any other."""
    if zone.signatures(zone.origin, SOA) is None:
        return Answer()
    return Answer(signed=True, denial=denial_for(zone))


def _put(section: list[Entry], owner: bytes, node: Node, rs: RRsetData, signed: bool) -> None:
    """Append ``rs`` under ``owner`` and, when ``signed``, the RRSIGs ``node`` holds for it
    (``node`` is where the data lives: the wildcard for a synthesized answer)."""
    section.append((owner, rs))
    if signed:
        _sign(section, owner, node, rs.rdtype)


def _sign(section: list[Entry], owner: bytes, node: Node, rdtype: int) -> None:
    """Append the RRSIGs ``node`` holds for its ``rdtype`` RRset, if any."""
    sigs = node.rrsets.get(sig_key(rdtype))
    if sigs is not None:
        section.append((owner, sigs))


def _answer_name(
    zone: ZoneSnapshot, ans: Answer, name: bytes, key: bytes, qtype: int, full_any: bool
) -> bytes | None:
    """Add what ``name`` contributes; return the next name to chase (CNAME/DNAME), if any."""
    origin = zone.origin
    starts = label_starts(key)
    depth = len(key) - len(origin)
    # Suffixes from just below the apex down to the name itself, top first.
    below_apex = [s for s in reversed(starts) if s < depth]
    apex = zone.node(origin)
    if apex is not None and depth > 0 and DNAME in apex.rrsets:
        return _dname(ans, name, depth, apex, apex.rrsets[DNAME])
    encloser = origin
    for s in below_apex:
        suffix = key[s:]
        node = zone.node(suffix)
        if node is not None and NSEC3 in node.rrsets and _is_nsec3_owner(node):
            # RFC 5155 §7.2.8: answered as if the NSEC3 RR did not exist, with or without DO.
            return _wildcard(zone, ans, name, encloser, qtype, full_any)
        if node is None:
            if not zone.exists(suffix):
                return _wildcard(zone, ans, name, encloser, qtype, full_any)
            encloser = suffix
            continue
        encloser = suffix
        rrsets = node.rrsets
        if NS in rrsets and not (s == 0 and qtype == DS):
            _referral(zone, ans, node, rrsets[NS])
            return None
        if s != 0 and DNAME in rrsets:
            return _dname(ans, name, s, node, rrsets[DNAME])
    node = zone.node(key)
    if node is not None:
        return _at_node(zone, ans, name, node, qtype, full_any)
    # An empty non-terminal: the name exists but owns nothing.
    _negative(zone, ans, NOERROR)
    if ans.denial is not None:
        ans.denial.nodata(ans.authority, key)
    return None


def _is_nsec3_owner(node: Node) -> bool:
    """True for a name that holds nothing but an NSEC3 RRset and RRSIGs."""
    rrsets = node.rrsets
    return NSEC3 in rrsets and all(t == NSEC3 or is_sig_key(t) for t in rrsets)


def _at_node(
    zone: ZoneSnapshot, ans: Answer, owner: bytes, node: Node, qtype: int, full_any: bool
) -> bytes | None:
    rrsets = node.rrsets
    if qtype == ANY:
        chosen = _full_any(rrsets, ans.signed) if full_any else [_minimal_any(rrsets)]
        for rs in chosen:
            _put(ans.answer, owner, node, rs, ans.signed)
        _add_additional(zone, ans, chosen)
        return None
    found = rrsets.get(qtype)
    if found is not None:
        ans.answer.append((owner, found))  # the hot path: no call when unsigned
        if ans.signed:
            _sign(ans.answer, owner, node, qtype)
        _add_additional(zone, ans, [found])
        return None
    if qtype == RRSIG and _all_signatures(ans, owner, rrsets):
        return None
    cname = rrsets.get(CNAME)
    if cname is not None:
        _put(ans.answer, owner, node, cname, ans.signed)
        return cname.rdatas[0]
    _negative(zone, ans, NOERROR)
    if ans.denial is not None:
        ans.denial.nodata(ans.authority, lower(node.owner))
    return None


def _all_signatures(ans: Answer, owner: bytes, rrsets: Mapping[int, RRsetData]) -> bool:
    """An RRSIG question: every RRSIG at the name, one RRset per covered type (they are
    kept apart by covered type). False when the name has none."""
    found = [rs for key, rs in rrsets.items() if is_sig_key(key)]
    ans.answer.extend((owner, rs) for rs in found)
    return bool(found)


def _wildcard(
    zone: ZoneSnapshot, ans: Answer, name: bytes, encloser: bytes, qtype: int, full_any: bool
) -> bytes | None:
    """RFC 4592 §3.3.1: synthesize from ``*.<closest encloser>`` or deny the name."""
    source = zone.node(WILDCARD_LABEL + encloser)
    if source is None:
        _negative(zone, ans, NXDOMAIN)
        if ans.denial is not None:
            ans.denial.nxdomain(ans.authority, lower(name), encloser)
        return None
    before = len(ans.answer)
    follow = _at_node(zone, ans, name, source, qtype, full_any)
    if ans.denial is not None:
        # RFC 4035 §3.1.3.3/§3.1.3.4: prove the name itself does not exist.
        nodata = len(ans.answer) == before
        ans.denial.wildcard(ans.authority, lower(name), encloser, nodata)
    return follow


def _dname(ans: Answer, name: bytes, cut: int, node: Node, dname: RRsetData) -> bytes | None:
    """RFC 6672 §2.2: answer with the DNAME and a CNAME synthesized from it (the CNAME is
    unsigned: a validator checks it against the DNAME, RFC 4035 §3.1.1)."""
    _put(ans.answer, node.owner, node, dname, ans.signed)
    target = name[:cut] + dname.rdatas[0]
    if len(target) > MAX_NAME_WIRE:
        ans.rcode = YXDOMAIN
        return None
    ans.answer.append((name, RRsetData(CNAME, dname.ttl, (target,))))
    ans.copies_qname = True
    return target


def _referral(zone: ZoneSnapshot, ans: Answer, cut: Node, ns: RRsetData) -> None:
    """A delegation: NS in authority, glue in additional, and no AA for the referral."""
    if not ans.answer:
        ans.aa = False
    ans.authority.append((cut.owner, ns))
    if ans.signed:
        _delegation_security(ans, cut)
    before = len(ans.additional)
    cut_key = lower(cut.owner)
    for target in ns.rdatas:
        tkey = lower(target)
        if not tkey.endswith(cut_key) or not _in_zone(zone, tkey):
            continue
        _add_addresses(zone, ans, tkey)
    # Glue for names inside the delegated zone is needed to reach it at all (RFC 9471).
    ans.glue_required = len(ans.additional) - before if not ans.answer else 0
    # Other NS addresses we hold help too, sibling glue below other cuts included
    # (RFC 1034 §4.3.2 step 3b, as NSD and BIND do); they may be dropped if they do not fit.
    for target in ns.rdatas:
        tkey = lower(target)
        if not tkey.endswith(cut_key):
            _add_addresses(zone, ans, tkey)


def _delegation_security(ans: Answer, cut: Node) -> None:
    """RFC 4035 §3.1.4: the DS RRset and its RRSIGs at a secure delegation; at an insecure
    one the NSEC/NSEC3 proving there is no DS (RFC 5155 §7.2.7)."""
    ds = cut.rrsets.get(DS)
    if ds is not None:
        _put(ans.authority, cut.owner, cut, ds, True)
    elif ans.denial is not None:
        ans.denial.nodata(ans.authority, lower(cut.owner))


def _negative(zone: ZoneSnapshot, ans: Answer, rcode: int) -> None:
    """RFC 2308 §3: the SOA in authority, TTL = min(SOA TTL, SOA MINIMUM); its RRSIGs,
    when signed, with the same TTL."""
    ans.rcode = rcode
    apex = zone.node(zone.origin)
    soa = apex.rrsets.get(SOA) if apex else None
    if apex is None or soa is None:
        return
    minimum = int.from_bytes(soa.rdatas[0][-4:], "big")
    ttl = min(soa.ttl, minimum)
    ans.authority.append((apex.owner, soa if ttl == soa.ttl else RRsetData(SOA, ttl, soa.rdatas)))
    sigs = apex.rrsets.get(sig_key(SOA)) if ans.signed else None
    if sigs is not None:
        ans.authority.append((apex.owner, RRsetData(sigs.rdtype, ttl, sigs.rdatas)))


def nxdomain_authority(
    zone: ZoneSnapshot, key: bytes, encloser: bytes, signed: bool, denial: Denial | None
) -> list[Entry]:
    """The authority section of an NXDOMAIN for ``key`` (lowercased) whose closest encloser
    ``encloser`` has no wildcard, as :func:`resolve` makes it (RFC 2308 §3; ``signed``: a DO
    query to a signed zone, with RRSIGs and the ``denial`` proofs of RFC 4035 §3.1.3.2 or
    RFC 5155 §7.2.2)."""
    ans = Answer(signed=signed, denial=denial)
    _negative(zone, ans, NXDOMAIN)
    if denial is not None:
        denial.nxdomain(ans.authority, key, encloser)
    return ans.authority


def _minimal_any(rrsets: Mapping[int, RRsetData]) -> RRsetData:
    """RFC 8482 §4.1: one RRset stands for all; the lowest type code keeps it predictable.
    RRSIGs and chain records (NSEC, NSEC3) stand for nothing while there is data."""
    low = min(rrsets)
    if low not in _DENIAL_TYPES and not is_sig_key(low):
        return rrsets[low]
    data = [t for t in rrsets if t not in _DENIAL_TYPES and not is_sig_key(t)]
    return rrsets[min(data)] if data else rrsets[low]


def _full_any(rrsets: Mapping[int, RRsetData], signed: bool) -> list[RRsetData]:
    """Every RRset once (RFC 1035 §3.2.3): RRSIGs are added per RRset when ``signed``, and
    chain records are DNSSEC data that only a DO query to a signed zone gets."""
    chosen = [
        rs for t, rs in rrsets.items() if not is_sig_key(t) and (signed or t not in _DENIAL_TYPES)
    ]
    return chosen or [_minimal_any(rrsets)]


def _add_additional(zone: ZoneSnapshot, ans: Answer, rrsets: list[RRsetData]) -> None:
    """Addresses of NS, MX and SRV targets that this zone holds (RFC 1034 §4.3.2 step 6)."""
    for rs in rrsets:
        if rs.rdtype == NS:
            targets = list(rs.rdatas)
        elif rs.rdtype == MX:
            targets = [w[2:] for w in rs.rdatas]
        elif rs.rdtype == SRV:
            targets = [w[6:] for w in rs.rdatas]
        else:
            continue
        # NS addresses may come from glue (a resolver priming on `. NS` needs them); MX and
        # SRV targets only from authoritative data.
        glue_ok = rs.rdtype == NS
        for target in targets:
            _add_addresses(zone, ans, lower(target), authoritative_only=not glue_ok)


def _add_addresses(
    zone: ZoneSnapshot, ans: Answer, tkey: bytes, authoritative_only: bool = False
) -> None:
    if not _in_zone(zone, tkey) or (authoritative_only and _below_cut(zone, tkey)):
        return
    node = zone.node(tkey)
    if node is None:
        return
    present = {(lower(o), rs.rdtype) for o, rs in (*ans.answer, *ans.additional)}
    for rdtype in (A, AAAA):
        rs = node.rrsets.get(rdtype)
        if rs is not None and (tkey, rdtype) not in present:
            # Glue has no RRSIGs, so only authoritative addresses come signed.
            _put(ans.additional, node.owner, node, rs, ans.signed)


def _in_zone(zone: ZoneSnapshot, key: bytes) -> bool:
    origin = zone.origin
    if not key.endswith(origin):
        return False
    cut = len(key) - len(origin)
    return cut == 0 or cut in label_starts(key)


def _below_cut(zone: ZoneSnapshot, key: bytes) -> bool:
    """True when ``key`` is at or below a delegation point (so it is glue, not ours)."""
    depth = len(key) - len(zone.origin)
    for s in label_starts(key):
        if s >= depth:
            return False
        node = zone.node(key[s:])
        if node is not None and NS in node.rrsets:
            return True
    return False
