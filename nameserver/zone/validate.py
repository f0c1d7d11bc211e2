"""The rules a zone must keep. Every change is checked before it is stored; a change that
breaks one is refused whole, with one :class:`Problem` per broken rule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dns.name
import dns.rdatatype

from nameserver.errors import Problem
from nameserver.zone.records import MAX_TTL, Record, type_text
from nameserver.zone.snapshot import WireRow, ZoneSnapshot, record_row
from nameserver.zone.wirename import (
    WILDCARD_LABEL,
    ancestors,
    is_below_or_at,
    key_of,
    lower,
    to_text,
)

T = dns.rdatatype
SOA, NS, CNAME, DNAME, DS = int(T.SOA), int(T.NS), int(T.CNAME), int(T.DNAME), int(T.DS)
ADDRESS_TYPES = frozenset({int(T.A), int(T.AAAA)})
# Records the signer owns (it makes them); imported copies would be stale or forged.
SIGNER_TYPES = frozenset(
    int(t) for t in (T.RRSIG, T.NSEC, T.NSEC3, T.NSEC3PARAM, T.DNSKEY, T.CDS, T.CDNSKEY)
)
DNSSEC_META = frozenset(int(t) for t in (T.RRSIG, T.NSEC))  # may sit beside a CNAME
AT_CUT = frozenset({NS, DS}) | ADDRESS_TYPES | DNSSEC_META
SINGLETONS = (SOA, CNAME, DNAME)
TYPE_LIMIT = 1 << 16  # Node.rrsets keys at or above are RRSIG sets (snapshot.sig_key)

# Where a record came from, for messages: (owner key, type or None) -> "file:line" or None.
Locator = Callable[[bytes, int | None], str | None]


def nowhere(_key: bytes, _rdtype: int | None) -> str | None:
    """A :data:`Locator` for records with no known origin."""
    return None


def check_records(
    origin: dns.name.Name, records: Iterable[Record], locate: Locator = nowhere
) -> list[Problem]:
    """Rules on the records themselves (see :func:`check_rows`)."""
    return check_rows(key_of(origin), [record_row(r) for r in records], locate)


def check_rows(origin: bytes, rows: Iterable[WireRow], locate: Locator = nowhere) -> list[Problem]:
    """Rules on the records themselves, as wire rows: inside the zone ``origin`` (a key),
    TTL range and agreement within an RRset, one RR for singleton types, and no
    signer-owned types. Works on bytes so a 100k-record import is checked quickly."""
    problems: list[Problem] = []
    ttls: dict[tuple[bytes, int], int] = {}
    counts: dict[tuple[bytes, int], int] = {}
    for owner, rdtype, ttl, _rdata in rows:
        key = lower(owner)
        rrset = (key, rdtype)

        def refuse(message: str, key: bytes = key, owner: bytes = owner, t: int = rdtype) -> None:
            problems.append(Problem(message, to_text(owner), locate(key, t)))

        if not is_below_or_at(key, origin):
            refuse(f"{type_text(rdtype)} is outside the zone {to_text(origin)}")
            continue
        if not 0 <= ttl <= MAX_TTL:
            refuse(f"{type_text(rdtype)} TTL {ttl} is outside 0..{MAX_TTL} (RFC 2181 §8)")
        if rdtype in SIGNER_TYPES:
            refuse(
                f"{type_text(rdtype)} records belong to the signer, not to zone data: remove "
                "them (zone files from a signed zone: import with --strip-dnssec)"
            )
        first = ttls.setdefault(rrset, ttl)
        if first != ttl:
            refuse(
                f"{type_text(rdtype)} TTL {ttl} differs from {first} of the same RRset; all "
                "RRs of an RRset share one TTL (RFC 2181 §5.2)"
            )
        counts[rrset] = counts.get(rrset, 0) + 1
        if rdtype in SINGLETONS and counts[rrset] == 2:
            refuse(f"more than one {type_text(rdtype)} record")
    return problems


def check_zone(snapshot: ZoneSnapshot, locate: Locator = nowhere) -> list[Problem]:
    """Every structural rule over the whole zone."""
    return _check(snapshot, list(snapshot.nodes), locate)


def check_change(
    snapshot: ZoneSnapshot, touched: Iterable[bytes], locate: Locator = nowhere
) -> list[Problem]:
    """The structural rules a change can break: at the touched names, below any of them
    that now carries NS or DNAME, and at the apex."""
    keys = set(touched)
    new_cuts = [k for k in keys if _cuts(snapshot, k) and k != snapshot.origin]
    if new_cuts:
        keys.update(k for k in snapshot.nodes if any(is_below_or_at(k, c) for c in new_cuts))
    keys.add(snapshot.origin)
    return _check(snapshot, sorted(keys), locate)


def _cuts(snapshot: ZoneSnapshot, key: bytes) -> bool:
    node = snapshot.node(key)
    return node is not None and (NS in node.rrsets or DNAME in node.rrsets)


def _check(snapshot: ZoneSnapshot, keys: list[bytes], locate: Locator) -> list[Problem]:
    problems = _check_apex(snapshot, locate)
    for key in keys:
        problems.extend(_check_node(snapshot, key, locate))
    return problems


def _check_apex(snapshot: ZoneSnapshot, locate: Locator) -> list[Problem]:
    origin = snapshot.origin
    apex = snapshot.node(origin)
    name = to_text(origin)
    found = apex.rrsets if apex else {}
    problems = []
    if SOA not in found:
        problems.append(Problem("the zone apex has no SOA record", name, locate(origin, None)))
    if NS not in found:
        problems.append(Problem("the zone apex has no NS records", name, locate(origin, None)))
    return problems


def _check_node(snapshot: ZoneSnapshot, key: bytes, locate: Locator) -> list[Problem]:
    node = snapshot.node(key)
    if node is None:
        return []
    # The signer's records follow the data; the rules are about the data.
    types = {t for t in node.rrsets if t < TYPE_LIMIT and t not in SIGNER_TYPES}
    is_apex = key == snapshot.origin
    problems: list[Problem] = []

    def refuse(message: str, rdtype: int | None) -> None:
        problems.append(Problem(message, to_text(node.owner), locate(key, rdtype)))

    if CNAME in types:
        if is_apex:
            refuse("CNAME at the zone apex is not allowed (it would hide SOA and NS)", CNAME)
        others = types - {CNAME} - DNSSEC_META
        if others:
            listed = ", ".join(_located(locate, key, t) for t in sorted(others))
            refuse(f"CNAME cannot coexist with other data ({listed}) (RFC 1034 §3.6.2)", CNAME)
    if SOA in types and not is_apex:
        refuse("SOA is only allowed at the zone apex", SOA)
    if DS in types and is_apex:
        refuse("DS at the apex belongs in the parent zone", DS)
    if DS in types and not is_apex and NS not in types:
        refuse("DS is only allowed at a delegation point (a name with NS)", DS)
    if key.startswith(WILDCARD_LABEL) and types & {NS, DNAME}:
        refuse("NS or DNAME at a wildcard name is not allowed (RFC 4592 §4.2, §4.4)", None)
    if NS in types and not is_apex:
        stray = types - AT_CUT
        if stray:
            listed = ", ".join(sorted(type_text(t) for t in stray))
            refuse(f"data at a delegation point other than NS, DS and glue: {listed}", None)
    problems.extend(_check_ancestors(snapshot, key, node.owner, types, locate))
    return problems


def _located(locate: Locator, key: bytes, rdtype: int) -> str:
    """``TXT at file:line`` when the origin of the RRset is known, else just ``TXT``."""
    where = locate(key, rdtype)
    return f"{type_text(rdtype)} at {where}" if where else type_text(rdtype)


def _check_ancestors(
    snapshot: ZoneSnapshot, key: bytes, owner: bytes, types: set[int], locate: Locator
) -> list[Problem]:
    for up in ancestors(key, snapshot.origin):
        above = snapshot.node(up)
        if above is None:
            continue
        if DNAME in above.rrsets:
            msg = f"no data may exist below the DNAME at {to_text(above.owner)} (RFC 6672 §2.4)"
            return [Problem(msg, to_text(owner), locate(key, None))]
        if up != snapshot.origin and NS in above.rrsets:
            stray = types - ADDRESS_TYPES
            if stray:
                listed = ", ".join(sorted(type_text(t) for t in stray))
                msg = (
                    f"{listed} below the delegation at {to_text(above.owner)}: only glue "
                    "(A/AAAA) may exist below a zone cut"
                )
                return [Problem(msg, to_text(owner), locate(key, None))]
    return []
