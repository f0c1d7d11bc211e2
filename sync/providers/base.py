"""The one interface every sync target implements, and what a target declares it can do.

Two kinds of target exist. A :class:`RecordTarget` holds records the engine writes through
the provider's API (PowerDNS HTTP API, RFC 2136 UPDATE): the engine reads it, plans, and
applies the plan. A :class:`SecondaryTarget` transfers the zone from the primary itself: the
engine only provisions the zone there, asks for a refresh and checks the SOA serial.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdatatype

from sync.model import ZoneData
from sync.plan import Plan


class DnssecMode(enum.Enum):
    """How a target serves a signed zone."""

    PRESIGNED = "presigned"  # takes our DNSKEY/RRSIG/NSEC(3)/CDS as data
    SECONDARY = "secondary"  # transfers the signed zone from the primary
    SELF_SIGNING = "self-signing"  # signs with its own keys (multi-signer: a later issue)
    NONE = "none"  # cannot serve a signed zone


@dataclass(frozen=True)
class Capabilities:
    """What a target supports; the engine never asks it for more."""

    dnssec: DnssecMode
    record_types: frozenset[dns.rdatatype.RdataType] | None = None  # None: every type
    batch_size: int = 1000  # RRsets per request
    rate_limit: float = 0.0  # requests per second; 0 means no limit of ours

    def supports(self, rdtype: dns.rdatatype.RdataType) -> bool:
        """Whether the target takes RRsets of ``rdtype``."""
        return self.record_types is None or rdtype in self.record_types


class Target(abc.ABC):
    """A provider that should serve the zone. ``name`` is the target's name in the config."""

    def __init__(self, name: str, capabilities: Capabilities) -> None:
        self.name = name
        self.capabilities = capabilities

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Check the target is reachable and the credentials work; raise
        :class:`~sync.errors.SyncConfigError` naming the setting when they don't."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def for_zone(self, signed: bool) -> Target:
        """The target to use for a zone; a provider whose API cannot carry signatures may
        hand a signed zone to its secondary mode."""
        return self

    @abc.abstractmethod
    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The provider's nameservers for the zone (to list at the parent)."""

    async def dnskeys(self, zone: dns.name.Name) -> list[dns.rdata.Rdata]:
        """The provider's own DNSKEYs (self-signing targets only)."""
        return []


class RecordTarget(Target):
    """A target whose records the engine writes."""

    @abc.abstractmethod
    async def read(self, zone: dns.name.Name) -> ZoneData | None:
        """The zone as the target holds it now, or None when the zone does not exist there."""

    @abc.abstractmethod
    async def apply(self, plan: Plan) -> None:
        """Make the target match ``plan.desired``: create the zone if ``plan.create_zone``,
        then apply ``plan.changes`` in order, in batches of at most
        ``capabilities.batch_size`` RRsets. Raise :class:`~sync.errors.TargetError`."""


class SecondaryTarget(Target):
    """A target that transfers the zone from the primary by itself."""

    @abc.abstractmethod
    async def provision(self, zone: dns.name.Name) -> bool:
        """Make sure the provider has the zone as a secondary of the primary; True when it
        had to be created."""

    @abc.abstractmethod
    async def refresh(self, zone: dns.name.Name) -> None:
        """Ask the provider to transfer the zone now (NOTIFY or its API)."""

    @abc.abstractmethod
    async def serial(self, zone: dns.name.Name) -> int | None:
        """The SOA serial the provider serves (a DNS query), None if it serves none."""

    async def transferred(self, zone: dns.name.Name) -> None:
        """The provider serves the serial asked for: a provider that may still answer from
        a cache filled before its transfer drops that cache here. Nothing by default."""
