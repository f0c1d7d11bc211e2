"""What a provider declares it can hold, and the zone as that provider would hold it.

Every target declares :class:`Capabilities` as typed data. :func:`normalize` turns the zone we
want served into what the provider can hold: types it cannot take are left out (or the plan
refused when the target is ``strict``), TTLs are raised or lowered into its range, and the
apex records it manages itself (a cloud's SOA and NS) are never ours to write. Each change is
reported, so ``sync plan`` says exactly what the provider will not serve as we have it; and
the plan compares like with like, so a push with nothing to do is empty.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rdatatype

from sync.model import RRset, RRsetKey, ZoneData
from sync.plan import TtlAdjustment

MAX_TTL = 2**31 - 1  # RFC 2181 §8


class DnssecMode(enum.Enum):
    """How a target serves a signed zone."""

    PRESIGNED = "presigned"  # takes our DNSKEY/RRSIG/NSEC(3)/CDS as data
    SECONDARY = "secondary"  # transfers the signed zone from the primary
    # Signs with its own keys and publishes foreign DNSKEYs (RFC 8901 model 2).
    MULTI_SIGNER = "multi-signer"
    SELF_SIGNING = "self-signing"  # signs with its own keys only
    NONE = "none"  # cannot serve a signed zone


class Owner(enum.Enum):
    """Who writes an apex record at the provider."""

    OURS = "ours"
    PROVIDER = "provider"  # it makes its own (a cloud's SOA, its NS set); never touched


class Quoting(enum.Enum):
    """How the provider's API carries TXT (and SPF) data, for the README and the codecs."""

    WIRE = "wire"  # character-strings as sent (zone-file text, quoted and split)
    JOINED = "joined"  # one string, split again by the provider at 255 octets


@dataclass(frozen=True)
class RateBudget:
    """A documented rate limit: ``requests`` per ``per`` seconds, for every zone of one
    account together (``account`` says so)."""

    requests: int
    per: float
    account: bool = True

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.per


@dataclass(frozen=True)
class Capabilities:
    """What a target supports; the engine and ``sync plan`` never ask it for more."""

    dnssec: DnssecMode
    record_types: frozenset[dns.rdatatype.RdataType] | None = None  # None: every type
    apex_soa: Owner = Owner.OURS
    apex_ns: Owner = Owner.OURS
    ttl_min: int = 0
    ttl_max: int = MAX_TTL
    txt: Quoting = Quoting.WIRE
    atomic: bool = False  # a request's changes apply all or none
    batch_size: int = 1000  # RRsets per request
    batch_records: int | None = None  # records (rdatas) per request, where documented
    batch_bytes: int | None = None  # bytes (or value characters) per request
    rate_limit: float = 0.0  # requests per second; 0 means no limit of ours
    budget: RateBudget | None = None  # the provider's documented limit, when it has one

    def supports(self, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether the target takes RRsets of ``rdtype``."""
        return self.record_types is None or rdtype in self.record_types

    def provider_owned(self, key: RRsetKey, origin: dns.name.Name) -> bool:
        """Whether the provider writes this RRset itself (never read into a plan)."""
        name, rdtype = key
        if name != origin:
            return False
        if rdtype == dns.rdatatype.SOA:
            return self.apex_soa is Owner.PROVIDER
        if rdtype == dns.rdatatype.NS:
            return self.apex_ns is Owner.PROVIDER
        return False

    @property
    def shows_soa(self) -> bool:
        """Whether the zone's SOA is ours to read and write there: where it is not, a zone
        the provider holds counts as served (see :func:`served`)."""
        return self.apex_soa is Owner.OURS


@dataclass(frozen=True)
class Normalized:
    """The zone as one provider would hold it, and what had to change to get there."""

    data: ZoneData
    unsupported: tuple[RRsetKey, ...] = ()
    provider_owned: tuple[RRsetKey, ...] = ()
    ttls: tuple[TtlAdjustment, ...] = ()


def normalize(
    data: ZoneData,
    capabilities: Capabilities,
    rrset_hook: Callable[[RRset], RRset] | None = None,
) -> Normalized:
    """``data`` as a provider with ``capabilities`` holds it: unsupported types and
    provider-owned apex records left out, TTLs moved into its range, and each RRset passed
    through ``rrset_hook`` (the provider's own representation, e.g. how it re-splits long
    TXT strings). The engine plans against the result; the caller reports what changed."""
    origin = data.origin
    unsupported: list[RRsetKey] = []
    owned: list[RRsetKey] = []
    ttls: list[TtlAdjustment] = []
    kept: list[RRset] = []
    low, high = capabilities.ttl_min, capabilities.ttl_max
    changed = False
    for rrset in data:
        key = rrset.key
        if capabilities.provider_owned(key, origin):
            owned.append(key)
            changed = True
            continue
        if not capabilities.supports(rrset.rdtype):
            unsupported.append(key)
            changed = True
            continue
        held = rrset
        if not low <= rrset.ttl <= high:
            ttl = min(max(rrset.ttl, low), high)
            ttls.append(TtlAdjustment(key, rrset.ttl, ttl))
            held = rrset.with_ttl(ttl)
        if rrset_hook is not None:
            held = rrset_hook(held)
        changed = changed or held is not rrset
        kept.append(held)
    result = ZoneData.build(origin, kept) if changed else data
    return Normalized(result, tuple(unsupported), tuple(owned), tuple(ttls))


def served(current: ZoneData | None, capabilities: Capabilities) -> bool:
    """Whether a target serves the zone now, as far as its API shows: it holds the zone
    and, where the SOA is ours to write, an SOA at the apex (a zone without one is staged,
    not served). A provider whose API shows no SOA serves every zone it holds: the safety
    threshold must not switch off for want of an SOA in its API."""
    if current is None:
        return False
    if not capabilities.shows_soa:
        return True
    return (current.origin, dns.rdatatype.SOA) in current.rrsets
