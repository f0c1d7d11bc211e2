"""Which DNSSEC policy each zone is signed with: the zone's choice among the configured
policies, its denial override, and the signature lifetimes fitted to the zone as it is now
(:func:`signer.policy.fit_to_zone`, from its SOA EXPIRE and largest TTL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import dns.name
import dns.rdatatype

from nameserver.errors import DnssecError
from nameserver.store.keys import ZoneDnssec
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions, current_snapshot
from nameserver.zone.snapshot import ZoneSnapshot, is_sig_key
from signer.policy import (
    Denial,
    Policy,
    PolicyError,
    PolicySource,
    ZoneFit,
    fit_to_zone,
    format_duration,
)

DEFAULT_POLICY = "default"
_SOA = 6


@dataclasses.dataclass(frozen=True)
class ZonePolicy:
    """The policy a zone is signed with now: its name, the config file that defines it
    (``source``; "" when built in or given in code), and the policy with its signature
    lifetimes fitted to the zone's current SOA EXPIRE and TTLs (``fit``; None when the
    zone has no SOA).  ``problem`` says why the zone cannot be signed with it (``policy``
    is then the policy as configured); None when it can."""

    name: str
    source: str
    policy: Policy
    fit: ZoneFit | None
    problem: str | None = None

    def describe(self) -> str:
        """``policy default (built-in): rrsig-validity 24d, rrsig-refresh 16d, derived
        from SOA EXPIRE 14d + largest TTL 1d``."""
        origin = self.source or ("built-in" if self.name == DEFAULT_POLICY else "")
        text = f"policy {self.name}" + (f" ({origin})" if origin else "")
        if self.problem is not None:
            return f"{text}: does not fit the zone"
        if self.fit is None:
            p = self.policy
            return (
                f"{text}: rrsig-validity {format_duration(p.rrsig_validity)}, "
                f"rrsig-refresh {format_duration(p.rrsig_refresh)}"
            )
        return f"{text}: {self.fit.describe()}"

    def to_json(self) -> dict[str, object]:
        """JSON-ready: durations in seconds, ``text`` as :meth:`describe` says it."""
        fit = self.fit
        return {
            "name": self.name,
            "source": self.source or ("built-in" if self.name == DEFAULT_POLICY else None),
            "rrsig_validity": self.policy.rrsig_validity,
            "rrsig_refresh": self.policy.rrsig_refresh,
            "derived": fit.derived if fit is not None else False,
            "soa_expire": fit.soa_expire if fit is not None else None,
            "largest_ttl": fit.largest_ttl if fit is not None else None,
            "problem": self.problem,
            "text": self.describe(),
        }


class ZonePolicies:
    """The policies of one store's zones.

    ``policies`` by name (``default`` is built in unless given); ``sources`` says, for
    those defined in a config file, which file and whether their table sets the
    signature lifetimes.  Lifetimes a policy's table does not set follow each zone,
    recomputed from its contents at every change and maintenance run; lifetimes set
    there are checked and refused if they do not fit.
    """

    def __init__(
        self,
        store: Store,
        policies: Mapping[str, Policy] | None = None,
        sources: Mapping[str, PolicySource] | None = None,
        versions: ZoneVersions | None = None,
    ) -> None:
        self.store = store
        self.policies = {DEFAULT_POLICY: Policy(), **(policies or {})}
        self.sources = dict(sources or {})
        self.versions = versions
        # (serial, SOA EXPIRE, largest data TTL) per zone, for policy() without a snapshot.
        self._zone_times: dict[dns.name.Name, tuple[int, tuple[int, int] | None]] = {}

    def policy(self, origin: dns.name.Name) -> Policy:
        """The zone's policy, with its denial override applied and its signature
        lifetimes fitted to the zone as it is now (see :meth:`zone_policy`)."""
        return self.zone_policy(origin).policy

    def zone_policy(self, origin: dns.name.Name) -> ZonePolicy:
        """The zone's policy, what it is fitted to and whether the zone fits it (a
        problem is reported, not raised: signing raises it)."""
        return self.fitted(origin, self.store.dnssec(origin), None)

    def lifetimes(self, origin: dns.name.Name) -> tuple[int, int] | None:
        """(rrsig-validity, rrsig-refresh) the zone is signed with now; None when its
        policy cannot be used. A change of the zone's EXPIRE or TTLs can move them."""
        try:
            chosen = self.zone_policy(origin)
        except DnssecError:
            return None
        if chosen.problem is not None:
            return None
        return chosen.policy.rrsig_validity, chosen.policy.rrsig_refresh

    def fitted(
        self, origin: dns.name.Name, state: ZoneDnssec | None, zone: ZoneSnapshot | None
    ) -> ZonePolicy:
        """The policy of ``state`` fitted to ``zone`` (None: the zone as stored)."""
        name = state.policy if state else DEFAULT_POLICY
        base = self.configured(origin, state)
        source = self.sources.get(name)
        file = source.file if source is not None else ""
        times = _zone_times(zone) if zone is not None else self._stored_zone_times(origin)
        if times is None:
            return ZonePolicy(name, file, base, None)
        expire, max_ttl = times

        def long_ttls(limit: int) -> tuple[list[str], int]:
            return _long_ttls(zone if zone is not None else self._snapshot(origin), limit)

        try:
            fit = fit_to_zone(base, expire, max_ttl, f"zone {origin}", source, long_ttls)
        except PolicyError as e:
            return ZonePolicy(name, file, base, None, str(e))
        return ZonePolicy(name, file, fit.policy, fit)

    def configured(self, origin: dns.name.Name, state: ZoneDnssec | None) -> Policy:
        """The policy ``state`` names, as configured, with its denial override."""
        name = state.policy if state else DEFAULT_POLICY
        try:
            policy = self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise DnssecError(
                f"zone {origin} uses DNSSEC policy {name!r}, which the config does not define "
                f"(known: {known}); add a [policy.{name}] table or pick another"
            ) from None
        if state is not None and state.denial is not None:
            policy = dataclasses.replace(policy, denial=Denial(state.denial))
        return policy

    def _stored_zone_times(self, origin: dns.name.Name) -> tuple[int, int] | None:
        """SOA EXPIRE and largest data TTL of the zone in the store (None: no zone),
        remembered per serial: policy() is asked several times per command."""
        if not self.store.has_zone(origin):
            return None
        serial = self.store.serial(origin)
        known = self._zone_times.get(origin)
        if known is not None and known[0] == serial:
            return known[1]
        times = _zone_times(self._snapshot(origin))
        self._zone_times[origin] = (serial, times)
        return times

    def _snapshot(self, origin: dns.name.Name) -> ZoneSnapshot:
        return current_snapshot(self.store, origin, self.versions)


def usable(chosen: ZonePolicy) -> Policy:
    """The policy to sign with; DnssecError when the zone does not fit it."""
    if chosen.problem is not None:
        raise DnssecError(chosen.problem)
    return chosen.policy


def _zone_times(zone: ZoneSnapshot) -> tuple[int, int] | None:
    """(SOA EXPIRE, largest data TTL); None for a zone without SOA."""
    soa = zone.rrset(zone.origin, _SOA)
    if soa is None:
        return None
    return int.from_bytes(soa.rdatas[0][-8:-4], "big"), zone.max_ttl()


_LONG_TTLS_SHOWN = 3


def _long_ttls(zone: ZoneSnapshot, limit: int) -> tuple[list[str], int]:
    """The RRsets with a TTL above ``limit``: the longest few described, and how many."""
    found = [
        (rs.ttl, node.owner, rs.rdtype)
        for node in zone.nodes.values()
        for key, rs in node.rrsets.items()
        if not is_sig_key(key) and rs.ttl > limit
    ]
    found.sort(key=lambda f: (-f[0], f[1].lower(), f[2]))
    shown = [
        f"{dns.name.from_wire(owner, 0)[0]} {dns.rdatatype.RdataType.to_text(rdtype)} has TTL "
        f"{format_duration(ttl)}"
        for ttl, owner, rdtype in found[:_LONG_TTLS_SHOWN]
    ]
    return shown, len(found)
