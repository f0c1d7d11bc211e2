"""The parent's DS as the key plan awaits it (``ds-check = auto``): which keys to ask the
parent's nameservers about (:mod:`nameserver.dnssec.dscheck` asks), and the DS seen at
every server or gone from every one, recorded in the keys' timings
(:func:`signer.timing.observe_parent_ds`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from nameserver.dnssec.dscheck import (
    DEFAULT_TIMEOUT,
    DsCheckResult,
    ParentKey,
    ParentServer,
    Presence,
    check_parent_ds,
)
from nameserver.dnssec.policy import ZonePolicies
from nameserver.dnssec.timings import KeyTimings
from nameserver.store.store import Store
from nameserver.zone.serial import Clock
from signer.policy import DsCheck, Policy
from signer.timing import DsExpect, DsWatch, Phase, key_state, observe_parent_ds, plan


@dataclasses.dataclass(frozen=True)
class ParentDsReport:
    """What one :meth:`ParentDs.check` saw and recorded.

    ``watch`` is what the key plan awaited at the parent; ``result`` what the parent's
    nameservers serve (None when nothing was asked, ``skipped`` says why);
    ``recorded`` the (key id, ``"seen"`` or ``"gone"``) observations stored.
    """

    origin: dns.name.Name
    mode: DsCheck
    watch: tuple[DsWatch, ...]
    result: DsCheckResult | None
    recorded: tuple[tuple[str, str], ...] = ()
    skipped: str = ""


class ParentDs:
    """Checks the parent's DS of one store's zones and records what it finds."""

    def __init__(
        self, store: Store, policies: ZonePolicies, timings: KeyTimings, clock: Clock
    ) -> None:
        self.store = store
        self.policies = policies
        self.timings = timings
        self.clock = clock

    def check(
        self,
        origin: dns.name.Name,
        servers: Sequence[ParentServer] | None = None,
        resolver: dns.resolver.Resolver | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ParentDsReport:
        """Ask the parent's nameservers for the DS of ``origin``'s KSK/CSKs and record, for
        the keys the plan awaits (``ds_watch``), a DS seen at every server or gone from
        every server (:func:`signer.timing.observe_parent_ds`).  Nothing is recorded
        unless every server answered.  Maintenance then takes the next steps.

        ``servers`` default to the policy's ``parent-servers``, else the parent zone's NS
        set found with ``resolver`` (the system resolver by default).  With ``ds-check =
        manual`` nothing is asked.  Raises DsCheckError when no server can be found.
        """
        policy = self.policies.policy(origin)
        now = int(self.clock())
        keys = self.timings.timings(origin)
        watch = plan(keys, policy, now).ds_watch
        if policy.ds_check is DsCheck.MANUAL:
            why = (
                "ds-check is manual in this zone's policy: confirm the parent's DS with "
                f"`zonefan keys ds-seen {origin} KEY` (or `keys ds-gone`)"
            )
            return ParentDsReport(origin, policy.ds_check, watch, None, skipped=why)
        watched = {w.key_id for w in watch}
        # The keys awaited, and for the operator's view every SEP key in the zone.
        wanted = [
            k
            for k in keys
            if k.role.is_sep
            and (
                k.key_id in watched
                or key_state(k, now, policy).phase not in (Phase.GENERATED, Phase.REMOVED)
            )
        ]
        if not wanted:
            why = f"{origin} has no KSK or CSK in its zone, so the parent has no DS to hold"
            return ParentDsReport(origin, policy.ds_check, watch, None, skipped=why)
        stored = {k.id: k for k in self.store.keys(origin)}
        parent_keys = [
            ParentKey(k.key_id, k.key_tag, k.algorithm, _dnskey(stored[k.key_id].dnskey))
            for k in wanted
        ]
        if servers is None and policy.parent_servers:
            servers = [ParentServer(a, p) for a, p in policy.parent_server_addresses]
        result = check_parent_ds(origin, parent_keys, servers, resolver=resolver, timeout=timeout)
        recorded = self._record(origin, policy, result)
        return ParentDsReport(origin, policy.ds_check, watch, result, recorded)

    def _record(
        self, origin: dns.name.Name, policy: Policy, result: DsCheckResult
    ) -> tuple[tuple[str, str], ...]:
        if not result.complete:
            return ()  # a server that did not answer could hold anything
        now = int(self.clock())
        keys = self.timings.timings(origin)  # again: maintenance may have moved on meanwhile
        expected = {w.key_id: w.expect for w in plan(keys, policy, now).ds_watch}
        # observe_parent_ds marks every withdrawn key missing from ``present`` gone, so
        # only keys proven absent at every server may be left out of it.
        present: set[str] = set()
        for key in keys:
            expect = expected.get(key.key_id)
            seen = result.presence(key.key_id)
            confirmed = expect is DsExpect.PRESENT and seen is Presence.PRESENT
            not_proven_gone = key.ds_withdrawn is not None and not (
                expect is DsExpect.ABSENT and seen is Presence.ABSENT
            )
            if confirmed or not_proven_gone:
                present.add(key.key_id)
        updated = observe_parent_ds(keys, present, now)
        recorded = tuple(
            (new.key_id, "seen" if new.ds_seen != old.ds_seen else "gone")
            for old, new in zip(keys, updated, strict=True)
            if old != new
        )
        if recorded:
            self.timings.save_timings(origin, updated)
        return recorded


def _dnskey(wire: bytes) -> dns.rdata.Rdata:
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
