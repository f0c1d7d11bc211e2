"""NSEC chain construction (RFC 4034 sections 4 and 6.1, RFC 4035 section 2.3).

The chain links every authoritative owner name of a zone in canonical order, the
last NSEC pointing back to the apex.  Names below a zone cut (glue and other
occluded data) are not in the chain; delegation points are, with a type bitmap of
NS, DS (when present), RRSIG and NSEC only (RFC 4034 section 4.1.2: bits of RRsets
the parent is not authoritative for are clear).  The RRSIG bit is set at every
name, insecure delegations included, because the NSEC RRset itself is signed
there (as in the signed root zone: ``ae. NSEC aeg. NS RRSIG NSEC``).  Empty
non-terminals own no RRset and therefore get no NSEC.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.NSEC import NSEC

from signer.errors import SignerError

__all__ = [
    "NameInfo",
    "NsecError",
    "authoritative_names",
    "canonical_key",
    "nsec_chain",
    "nsec_ttl",
    "type_bitmap",
]

_NS = int(dns.rdatatype.NS)
_DS = int(dns.rdatatype.DS)
_SOA = int(dns.rdatatype.SOA)
_NSEC = int(dns.rdatatype.NSEC)
_RRSIG = int(dns.rdatatype.RRSIG)
_DELEGATION_TYPES = frozenset({_NS, _DS})


class NsecError(SignerError):
    """Zone data from which no valid NSEC chain can be built."""


def canonical_key(name: dns.name.Name) -> tuple[bytes, ...]:
    """Sort key giving RFC 4034 section 6.1 canonical order for absolute names.

    Labels from the root down, ASCII-lowercased; tuple comparison of byte strings
    is exactly the canonical label comparison (a missing octet sorts first).
    """
    return tuple(label.lower() for label in reversed(name.labels))


@dataclass(frozen=True, slots=True)
class NameInfo:
    """An authoritative owner name of a zone, as found by :func:`authoritative_names`."""

    name: dns.name.Name
    key: tuple[bytes, ...]
    types: frozenset[int]
    is_delegation: bool

    def signed_types(self) -> frozenset[int]:
        """The types of this name's RRsets the zone signs (before NSEC is added)."""
        if self.is_delegation:
            return self.types & {_DS}
        return self.types


def authoritative_names(
    origin: dns.name.Name, names_types: Mapping[dns.name.Name, AbstractSet[int]]
) -> list[NameInfo]:
    """Authoritative owner names of the zone ``origin`` in canonical order.

    ``names_types`` maps every owner name to the types it owns.  A name other than
    the apex that owns NS is a delegation point; names below one are occluded and
    left out; names with no types (empty non-terminals) are left out too.  Raises
    NsecError for names outside the zone or an apex without SOA.
    """
    if not origin.is_absolute():
        raise NsecError(f"zone origin {origin} must be an absolute name (end with '.')")
    entries: list[tuple[tuple[bytes, ...], dns.name.Name, frozenset[int]]] = []
    for name, types in names_types.items():
        if not name.is_subdomain(origin):
            raise NsecError(f"{name} is outside the zone {origin}; remove it")
        if types:
            entries.append((canonical_key(name), name, frozenset(int(t) for t in types)))
    entries.sort(key=lambda entry: entry[0])
    origin_key = canonical_key(origin)
    if not entries or entries[0][0] != origin_key or _SOA not in entries[0][2]:
        raise NsecError(f"the zone {origin} has no SOA record at its apex; add one")
    result: list[NameInfo] = []
    cut: tuple[bytes, ...] | None = None
    for key, name, types in entries:
        if cut is not None and key[: len(cut)] == cut:
            continue  # below a zone cut: glue or other occluded data
        cut = None
        is_delegation = key != origin_key and _NS in types
        if is_delegation:
            cut = key
        own = types & _DELEGATION_TYPES if is_delegation else types
        result.append(NameInfo(name, key, own, is_delegation))
    # Duplicate keys can only come from the same name spelled in different case.
    for before, after in itertools.pairwise(result):
        if before.key == after.key:
            raise NsecError(
                f"{before.name} and {after.name} differ only in case; merge their records"
            )
    return result


def type_bitmap(rdtypes: Iterable[int]) -> tuple[tuple[int, bytes], ...]:
    """NSEC type bitmap windows (RFC 4034 section 4.1.2) for ``rdtypes``."""
    windows: dict[int, bytearray] = {}
    for rdtype in rdtypes:
        if not 0 < rdtype < 65536:
            raise NsecError(f"RR type {rdtype} cannot appear in an NSEC type bitmap")
        window, offset = divmod(rdtype, 256)
        octets = windows.setdefault(window, bytearray())
        index = offset // 8
        if len(octets) <= index:
            octets.extend(bytes(index + 1 - len(octets)))
        octets[index] |= 0x80 >> (offset % 8)
    return tuple((window, bytes(windows[window])) for window in sorted(windows))


def nsec_ttl(soa_ttl: int, soa_minimum: int) -> int:
    """NSEC TTL: the smaller of the SOA TTL and the SOA MINIMUM field (RFC 9077)."""
    return min(soa_ttl, soa_minimum)


def nsec_chain(
    origin: dns.name.Name, names_types: Mapping[dns.name.Name, AbstractSet[int]]
) -> list[tuple[dns.name.Name, NSEC]]:
    """NSEC records ``(owner, rdata)`` for the zone ``origin``, in canonical order.

    ``names_types`` maps each owner name of the zone (glue included, it is filtered
    out) to the set of types it owns, without NSEC/RRSIG.  Each NSEC's bitmap holds
    the name's authoritative types plus NSEC and RRSIG; the last NSEC points to the
    apex.  See :func:`authoritative_names` for which names are in the chain.
    """
    names = authoritative_names(origin, names_types)
    extra = (_NSEC, _RRSIG)
    chain: list[tuple[dns.name.Name, NSEC]] = []
    for index, info in enumerate(names):
        following = names[index + 1].name if index + 1 < len(names) else names[0].name
        rdata = NSEC(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN,
            dns.rdatatype.NSEC,
            following,
            type_bitmap((*info.types, *extra)),
        )
        chain.append((info.name, rdata))
    return chain
