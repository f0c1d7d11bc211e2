"""The one interface every sync target implements, and what a target declares it can do.

Two kinds of target exist. A :class:`RecordTarget` holds records the engine writes through
the provider's API (PowerDNS HTTP API, RFC 2136 UPDATE): the engine reads it, plans, and
applies the plan. A :class:`SecondaryTarget` transfers the zone from the primary itself: the
engine only provisions the zone there, asks for a refresh and checks the SOA serial.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Generic, TypeVar

import dns.name
import dns.rdata

from sync.model import RRset, ZoneData
from sync.plan import Plan
from sync.providers.capabilities import Capabilities, DnssecMode, Normalized, normalize
from sync.settings import Address

__all__ = [
    "Capabilities",
    "DnssecMode",
    "Held",
    "RecordTarget",
    "SecondaryTarget",
    "Target",
]

S = TypeVar("S")


@dataclass(frozen=True)
class Held(Generic[S]):
    """The zone as a record target holds it, with the provider's own handles on it (zone
    and record ids, etags, settings to correct) that :meth:`RecordTarget.apply` needs:
    typed state passed from a read to the apply planned against it, never kept aside."""

    data: ZoneData
    state: S


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

    def dns_address(self) -> Address | None:
        """Where the target answers DNS queries for its zones, when its config says
        (``zonefan drill`` asks it there); None for a provider whose nameservers the
        config does not name."""
        return None


class RecordTarget(Target, Generic[S]):
    """A target whose records the engine writes. ``S`` is the provider's state type."""

    @abc.abstractmethod
    async def read(self, zone: dns.name.Name) -> Held[S] | None:
        """The zone as the target holds it now (provider-owned apex records included: the
        engine leaves them out), or None when the zone does not exist there."""

    @abc.abstractmethod
    async def apply(self, plan: Plan, state: S | None) -> Held[S] | None:
        """Make the target match ``plan.desired``: create the zone if ``plan.create_zone``,
        then apply ``plan.changes`` in order, within the batch limits of
        ``capabilities``. ``state`` is what the read the plan was made against returned
        (None for a zone to create). Return what the target holds now when the provider
        told us (the engine plans the next change against it without a read), else None.
        Raise :class:`~sync.errors.TargetError`."""

    async def preview(self, plan: Plan) -> Plan:
        """``plan`` as the provider itself would carry it out, for ``sync plan``: a target
        that plans on its own side (the octoDNS bridge) shows its plan's changes here. The
        engine's plan by default."""
        return plan

    def normalize(self, data: ZoneData) -> Normalized:
        """``data`` as this provider holds it (see :func:`~sync.providers.capabilities.
        normalize`): what the engine plans against, so a push with nothing to do is empty."""
        return normalize(data, self.capabilities, self.normalize_rrset)

    def normalize_rrset(self, rrset: RRset) -> RRset:
        """The provider's own representation of one RRset; as sent by default."""
        return rrset


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
