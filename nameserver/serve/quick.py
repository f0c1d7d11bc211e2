"""Answers to the common questions without the general resolver and response writer.

Most cache misses are one of two kinds: a name that exists, asked for a type it holds
whose rdata has no names to compress and that brings no additional data (A, AAAA, TXT,
...), and, in a random-subdomain ("water torture") flood, a name that does not exist.
Both are answered here with a few dict lookups and one join. Anything else (CNAME,
delegations, wildcards, DNAME, NS/MX/SRV, empty non-terminals, a response that does not
fit) returns None and goes the general way, and what is answered here is byte for byte
what :func:`nameserver.serve.answer.resolve` and :func:`nameserver.serve.response.render` would
send (tests/test_response_cache.py compares them).

An NXDOMAIN's authority section (the SOA, RFC 2308 §3, and for a DO query to a signed zone
its RRSIGs and the NSEC or NSEC3 proofs, RFC 4035 §3.1.3.2, RFC 5155 §7.2.2) differs
between names only through its compression pointers (RFC 1035 §4.1.4), which point into
the question: for names of the same length that share the same suffixes with the names in
it, they are the same bytes. So it is written once per zone, such suffix ("anchor"),
question length and proof, and kept as a template: with the zone's Prepared when unsigned
(the SOA alone: a few per zone), in the response cache otherwise (one per covering NSEC or
NSEC3, kept once it is used a second time).
"""

from __future__ import annotations

import struct

import dns.rdatatype

from nameserver.serve.answer import nxdomain_authority
from nameserver.serve.cache import ResponseCache, Shared
from nameserver.serve.denial import Denial, denial_for
from nameserver.serve.query import Query
from nameserver.serve.response import opt_rr, section_after
from nameserver.zone.snapshot import RRsetData, ZoneSnapshot, sig_key
from nameserver.zone.wirename import WILDCARD_LABEL, label_starts, lower

__all__ = ["Prepared", "quick_answer"]

NS = int(dns.rdatatype.NS)
SOA = int(dns.rdatatype.SOA)
DNAME = int(dns.rdatatype.DNAME)
NSEC3 = int(dns.rdatatype.NSEC3)
# Types whose rdata names are compressed or that bring additional data: the general way.
_GENERAL_TYPES = frozenset(
    int(t)
    for t in (
        dns.rdatatype.NS,
        dns.rdatatype.CNAME,
        dns.rdatatype.PTR,
        dns.rdatatype.MX,
        dns.rdatatype.SOA,
        dns.rdatatype.SRV,
    )
)
CLASS_IN = 1
AA = 0x0400
QR = 0x8000
NXDOMAIN = 3
_COPIED_FLAGS = 0x7910  # opcode, RD, CD
_HEADER = struct.Struct("!2sHHHHH")
_RR = struct.Struct("!HHHIH")  # a pointer to the question name, type, class, TTL, rdlength
_QUESTION_NAME = 0xC000 | 12
_OPT = {True: opt_rr(0, True), False: opt_rr(0, False)}
_TEMPLATE = b"\xff"  # template keys start so; a normalised key starts with a name's length


class Prepared:
    """What the quick answers need of one zone version, found once."""

    __slots__ = ("_denial", "apex_dname", "origin", "signed", "soa_suffixes", "templates", "zone")

    def __init__(self, zone: ZoneSnapshot) -> None:
        self.zone = zone
        self.origin = zone.origin
        apex = zone.node(zone.origin)
        rrsets = apex.rrsets if apex is not None else {}
        self.apex_dname = DNAME in rrsets
        # As nameserver.serve.answer decides it: a zone is signed when its SOA has RRSIGs.
        self.signed = zone.signatures(zone.origin, SOA) is not None
        self._denial: Denial | None = None
        # Unsigned NXDOMAIN authority sections by (question length, anchor): RR count, bytes.
        self.templates: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        # Names below the apex that the SOA's MNAME and RNAME end with: a question name
        # ending with one of them shares more with the authority section than its closest
        # encloser (hostmaster.example.com need not exist).
        self.soa_suffixes: frozenset[bytes] = frozenset()
        soa = rrsets.get(SOA)
        if soa is not None and soa.rdatas:
            self.soa_suffixes = frozenset(_soa_suffixes(soa.rdatas[0], self.origin))

    @property
    def denial(self) -> Denial | None:
        """How the zone proves absence (None: unsigned, or signed without a chain); found
        at the first DO query, since its ordered index of the chain takes a while to build
        for a large zone."""
        if self._denial is None and self.signed:
            self._denial = denial_for(self.zone)
        return self._denial


def _soa_suffixes(rdata: bytes, origin: bytes) -> set[bytes]:
    found: set[bytes] = set()
    offset = 0
    for _ in range(2):  # MNAME, RNAME (uncompressed in the zone's wire form)
        end = offset
        while rdata[end]:
            end += rdata[end] + 1
        name = lower(rdata[offset : end + 1])
        for start in label_starts(name):
            suffix = name[start:]
            if len(suffix) > len(origin) and suffix.endswith(origin):
                found.add(suffix)
        offset = end + 1
    return found


def quick_answer(
    prep: Prepared, query: Query, qkey: bytes, dnssec: bool, limit: int, cache: ResponseCache
) -> bytes | None:
    """The response to ``query`` (its name lowercased: ``qkey``) from ``prep``'s zone, or
    None when it is not one of the common cases. ``dnssec``: the query's DO bit."""
    zone = prep.zone
    depth = len(qkey) - len(prep.origin)
    if len(qkey) == 1:
        return None  # the root: its name is written in full, not as a pointer
    if depth == 0:
        node = zone.node(qkey)
    else:
        if prep.apex_dname:
            return None
        # RFC 1034 §4.3.2 step 3 from the apex down, as nameserver.serve.answer walks it: a
        # delegation, DNAME or NSEC3 owner on the way goes the general way.
        encloser = prep.origin
        # Most names are one label below the apex: no walk to make.
        starts = [0] if qkey[0] + 1 == depth else label_starts(qkey)
        node = None
        for i in range(len(starts) - 1, -1, -1):
            s = starts[i]
            if s >= depth:
                continue
            suffix = qkey[s:] if s else qkey
            node = zone.node(suffix)
            if node is None:
                if zone.count_below(suffix):
                    encloser = suffix  # an empty non-terminal
                    continue
                return _nxdomain(prep, query, qkey, encloser, starts, i, dnssec, limit, cache)
            rrsets = node.rrsets
            if NS in rrsets or NSEC3 in rrsets or (s and DNAME in rrsets):
                return None
            encloser = suffix
    if node is None:
        return None  # an empty non-terminal (or no apex)
    qtype = query.qtype
    rs = node.rrsets.get(qtype)
    if rs is None or qtype in _GENERAL_TYPES:
        return None
    body = _at_question(rs)
    count = len(rs.rdatas)
    if dnssec and prep.signed:
        sigs = node.rrsets.get(sig_key(qtype))
        if sigs is not None:
            body += _at_question(sigs)
            count += len(sigs.rdatas)
    edns = query.edns
    flags = QR | AA | (query.flags & _COPIED_FLAGS)
    if edns is None:
        response = _HEADER.pack(query.id, flags, 1, count, 0, 0) + query.question + body
    else:
        response = (
            _HEADER.pack(query.id, flags, 1, count, 0, 1) + query.question + body + _OPT[edns.do]
        )
    return response if len(response) <= limit else None


def _at_question(rs: RRsetData) -> bytes:
    """``rs`` owned by the question name: a pointer to it for every RR."""
    rdtype, ttl = rs.rdtype, rs.ttl
    if len(rs.rdatas) == 1:
        rdata = rs.rdatas[0]
        return _RR.pack(_QUESTION_NAME, rdtype, CLASS_IN, ttl, len(rdata)) + rdata
    return b"".join(
        _RR.pack(_QUESTION_NAME, rdtype, CLASS_IN, ttl, len(rdata)) + rdata for rdata in rs.rdatas
    )


def _nxdomain(
    prep: Prepared,
    query: Query,
    qkey: bytes,
    encloser: bytes,
    starts: list[int],
    missing: int,
    dnssec: bool,
    limit: int,
    cache: ResponseCache,
) -> bytes | None:
    """RFC 2308 §2.1 name error: ``qkey[starts[missing]:]`` (the next closer name) does
    not exist below ``encloser``; a wildcard there goes the general way."""
    zone = prep.zone
    if zone.node(WILDCARD_LABEL + encloser) is not None:
        return None
    qlen = len(qkey)
    signed = dnssec and prep.signed
    denial = prep.denial if signed else None
    if signed:
        # Proof owners are zone names: the anchor is the closest encloser, or longer.
        anchor = _anchor(qkey, starts, missing, encloser, prep.soa_suffixes)
        varies = denial.nxdomain_varies(qkey, encloser) if denial is not None else b""
        key = b"".join((_TEMPLATE, bytes((qlen,)), prep.origin, anchor, encloser, varies))
        template = cache.get_shared(key)
        if template is not None:
            count, body = int.from_bytes(template.response[:2], "big"), template.response[2:]
        else:
            made = _template(prep, qkey, encloser, anchor, True, denial)
            if made is None:
                return None
            count, body = made
            # One per covering record: in a large zone a flood of random names hits each
            # about once, so a template is kept only when its key comes again.
            if cache.asked_before(key):
                cache.put_shared(key, Shared(count.to_bytes(2, "big") + body, None, 0))
    else:
        # Only the SOA: the apex, or longer where the SOA's names go on below it. So few
        # templates (a question is at most 255 octets) that the zone's Prepared keeps them.
        # starts is [0] for a name one label below the apex (quick_answer's shortcut).
        below_apex = 0 if len(starts) == 1 else starts.index(qlen - len(prep.origin)) - 1
        anchor = _anchor(qkey, starts, below_apex, prep.origin, prep.soa_suffixes)
        found = prep.templates.get((qlen, anchor))
        if found is None:
            found = _template(prep, qkey, encloser, anchor, False, None)
            if found is None:
                return None
            prep.templates[(qlen, anchor)] = found
        count, body = found
    edns = query.edns
    flags = QR | AA | NXDOMAIN | (query.flags & _COPIED_FLAGS)
    if edns is None:
        response = _HEADER.pack(query.id, flags, 1, 0, count, 0) + query.question + body
    else:
        response = (
            _HEADER.pack(query.id, flags, 1, 0, count, 1) + query.question + body + _OPT[edns.do]
        )
    return response if len(response) <= limit else None


def _template(
    prep: Prepared,
    qkey: bytes,
    encloser: bytes,
    anchor: bytes,
    signed: bool,
    denial: Denial | None,
) -> tuple[int, bytes] | None:
    """The authority section of the NXDOMAIN for ``qkey``, written after a stand-in
    question: its RR count and bytes (None when no stand-in is found)."""
    stand_in = _stand_in(prep, len(qkey), anchor)
    if stand_in is None:
        return None
    return section_after(stand_in, nxdomain_authority(prep.zone, qkey, encloser, signed, denial))


def _anchor(
    qkey: bytes, starts: list[int], below: int, base: bytes, soa: frozenset[bytes]
) -> bytes:
    """The longest suffix of ``qkey`` that a name of the authority section may end with:
    ``base`` (an ancestor it surely shares), or longer where the SOA's MNAME or RNAME go on
    below it (hostmaster.example.com need not exist). ``starts[below]`` begins the name
    one label longer than ``base``."""
    anchor = base
    while below >= 0:
        suffix = qkey[starts[below] :]
        if suffix not in soa:
            break
        anchor = suffix
        below -= 1
    return anchor


def _stand_in(prep: Prepared, qlen: int, anchor: bytes) -> bytes | None:
    """A name of ``qlen`` octets ending with ``anchor`` that shares no longer suffix with
    the zone's names: the question a template is written after (None if none is found)."""
    if qlen == len(anchor):
        return anchor
    for filler in b"\x00\x01\x02":
        labels = []
        rest = qlen - len(anchor)
        while rest:
            take = min(rest, 64)
            if rest - take == 1:
                take -= 1  # a label has at least one octet after its length
            labels.append(bytes((take - 1,)) + bytes((filler,)) * (take - 1))
            rest -= take
        lowest = labels[-1] + anchor
        if not prep.zone.exists(lowest) and lowest not in prep.soa_suffixes:
            return b"".join(labels) + anchor
    return None
