"""Zone contents as the sync engine sees them: immutable RRsets keyed by (owner, type).

RRSIGs form one RRset per owner (all covered types together), as both the PowerDNS API and
RFC 2136 UPDATE address them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.zone

RRsetKey = tuple[dns.name.Name, dns.rdatatype.RdataType]

DNSSEC_TYPES = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.CDNSKEY,
    }
)
# What a resolver needs from a provider to validate: without these a signed zone is bogus.
SIGNATURE_TYPES = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY})


def _canonical_wire(rdata: dns.rdata.Rdata) -> bytes:
    return rdata.to_digestable()


@dataclass(frozen=True)
class RRset:
    """One RRset: owner, type, TTL and its rdatas in canonical order (no duplicates)."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ttl: int
    rdatas: tuple[dns.rdata.Rdata, ...]

    @classmethod
    def of(
        cls,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType | int,
        ttl: int,
        rdatas: Iterable[dns.rdata.Rdata],
    ) -> RRset:
        """An RRset with its rdatas sorted canonically and duplicates dropped."""
        unique = {_canonical_wire(r): r for r in rdatas}
        ordered = tuple(unique[w] for w in sorted(unique))
        return cls(name, dns.rdatatype.RdataType.make(rdtype), ttl, ordered)

    @classmethod
    def from_text(
        cls, name: str, rdtype: str, ttl: int, texts: Iterable[str], origin: dns.name.Name
    ) -> RRset:
        """Parse presentation-format rdatas (relative names resolve against ``origin``)."""
        owner = dns.name.from_text(name, origin)
        kind = dns.rdatatype.from_text(rdtype)
        rdatas = [
            dns.rdata.from_text(dns.rdataclass.IN, kind, t, origin, relativize=False) for t in texts
        ]
        return cls.of(owner, kind, ttl, rdatas)

    @property
    def key(self) -> RRsetKey:
        """(owner, type): what a plan creates, updates or deletes."""
        return (self.name, self.rdtype)

    def texts(self, origin: dns.name.Name | None = None) -> list[str]:
        """The rdatas in presentation format, absolute names unless ``origin`` is given."""
        return [r.to_text(origin=origin, relativize=origin is not None) for r in self.rdatas]

    def same_data(self, other: RRset) -> bool:
        """True when TTL and rdatas are equal (owner and type are the caller's concern)."""
        return self.ttl == other.ttl and self.wire_set() == other.wire_set()

    def wire_set(self) -> tuple[bytes, ...]:
        return tuple(_canonical_wire(r) for r in self.rdatas)

    def digest(self) -> str:
        """SHA-256 over owner, type, TTL and canonical rdatas: what state records as pushed."""
        h = hashlib.sha256()
        h.update(self.name.canonicalize().to_digestable())
        h.update(int(self.rdtype).to_bytes(2, "big"))
        h.update(self.ttl.to_bytes(4, "big"))
        for wire in self.wire_set():
            h.update(len(wire).to_bytes(2, "big"))
            h.update(wire)
        return h.hexdigest()

    def __str__(self) -> str:
        return f"{self.name} {self.ttl} {dns.rdatatype.to_text(self.rdtype)}"


def sort_key(key: RRsetKey) -> tuple[dns.name.Name, int]:
    """Canonical DNSSEC name order, then type number: the deterministic order of plans."""
    return (key[0], int(key[1]))


@dataclass(frozen=True)
class ZoneData:
    """An immutable zone: its origin and RRsets by key."""

    origin: dns.name.Name
    rrsets: Mapping[RRsetKey, RRset] = field(default_factory=dict)

    @classmethod
    def build(cls, origin: dns.name.Name, rrsets: Iterable[RRset]) -> ZoneData:
        return cls(origin, {r.key: r for r in rrsets})

    @classmethod
    def from_dns_zone(cls, zone: dns.zone.Zone) -> ZoneData:
        """Convert a dnspython zone (absolute names)."""
        origin = zone.origin
        assert origin is not None
        sets: list[RRset] = []
        for rel, node in zone.nodes.items():
            owner = rel.derelativize(origin)
            for rds in node.rdatasets:
                sets.extend(_split_rdataset(owner, rds))
        return cls.build(origin, _merge_rrsigs(sets))

    def __iter__(self) -> Iterator[RRset]:
        for key in sorted(self.rrsets, key=sort_key):
            yield self.rrsets[key]

    def __len__(self) -> int:
        return len(self.rrsets)

    def get(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> RRset | None:
        return self.rrsets.get((name, rdtype))

    @property
    def soa(self) -> dns.rdtypes.ANY.SOA.SOA:
        rrset = self.get(self.origin, dns.rdatatype.SOA)
        if rrset is None:
            raise ValueError(f"zone {self.origin} has no SOA")
        soa = rrset.rdatas[0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        return soa

    @property
    def serial(self) -> int:
        return int(self.soa.serial)

    @property
    def signed(self) -> bool:
        """A zone with a DNSKEY at its apex: providers must serve its signatures too."""
        return (self.origin, dns.rdatatype.DNSKEY) in self.rrsets

    def apex_ns(self) -> RRset | None:
        return self.get(self.origin, dns.rdatatype.NS)

    def without_types(self, types: frozenset[dns.rdatatype.RdataType]) -> ZoneData:
        """The same zone without RRsets of ``types`` (e.g. DNSSEC data for a signing target)."""
        return ZoneData(
            self.origin, {k: v for k, v in self.rrsets.items() if v.rdtype not in types}
        )

    def to_text(self) -> str:
        """Presentation format, one RR per line, absolute names: the local copy on disk."""
        lines = [f"$ORIGIN {self.origin}"]
        for rrset in self:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            lines.extend(f"{rrset.name} {rrset.ttl} IN {kind} {t}" for t in rrset.texts())
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, origin: dns.name.Name) -> ZoneData:
        zone = dns.zone.from_text(text, origin, relativize=False, check_origin=False)
        return cls.from_dns_zone(zone)


def _split_rdataset(owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> list[RRset]:
    return [RRset.of(owner, rds.rdtype, rds.ttl, rds)]


def _merge_rrsigs(sets: list[RRset]) -> list[RRset]:
    """dnspython keeps one rdataset per covered type; providers want one RRSIG set per owner.
    The merged TTL is the smallest (RRSIG TTLs follow their RRsets and may differ)."""
    merged: dict[dns.name.Name, list[RRset]] = {}
    out: list[RRset] = []
    for rrset in sets:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            merged.setdefault(rrset.name, []).append(rrset)
        else:
            out.append(rrset)
    for owner, parts in merged.items():
        ttl = min(p.ttl for p in parts)
        out.append(RRset.of(owner, dns.rdatatype.RRSIG, ttl, (r for p in parts for r in p.rdatas)))
    return out
