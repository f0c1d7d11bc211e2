"""The two PowerDNS targets: records through the API, or a secondary of our primary."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import (
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.plan import Plan
from sync.providers.base import (
    Capabilities,
    DnssecMode,
    Held,
    RecordTarget,
    SecondaryTarget,
    Target,
)
from sync.providers.powerdns.api import PowerDnsApi, query, query_ns
from sync.providers.powerdns.codec import (
    CREATE_ZONE,
    MAX_BODY_BYTES,
    SOA,
    batches,
    change_json,
    disabled,
    rrsets_body,
    zone_body,
    zone_from_json,
    zone_id,
)
from sync.providers.powerdns.config import (
    RECORD_FIELDS,
    SECONDARY_FIELDS,
    SIGNED_AS_SECONDARY,
    PowerDnsSettings,
    parse_settings,
    require_secondary_settings,
)
from sync.settings import (
    Address,
    TargetContext,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("sync.providers.powerdns")

DNS_TIMEOUT = 3.0


# -- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdnsZoneState:
    """What a read found that the apply planned against it must act on: zone settings to
    correct before writing (SOA-EDIT(-API) on, so pdns would rewrite our serial, or a kind
    other than Native, so a zone that was a secondary while it was signed would go on
    transferring from its masters), and whether the zone is hidden (held without an
    enabled SOA, so not served: a staged creation that did not finish, see apply)."""

    fixes: Mapping[str, Any] = field(default_factory=dict)
    hidden: bool = False


class PowerDnsTarget(RecordTarget[PdnsZoneState]):
    """Unsigned zones written as records through the PowerDNS HTTP API."""

    def __init__(self, settings: PowerDnsSettings, api: PowerDnsApi | None = None) -> None:
        super().__init__(
            settings.name,
            Capabilities(
                dnssec=DnssecMode.NONE,
                batch_size=settings.batch_size,
                rate_limit=settings.rate_limit,
            ),
        )
        self.settings = settings
        self.api = api if api is not None else PowerDnsApi(settings)
        self._secondary: PowerDnsSecondaryTarget | None = None

    async def open(self) -> None:
        """Check the API answers and accepts the key and, when signed zones go to pdns as
        secondaries, that pdns runs with ``secondary=yes``."""
        await self.api.open()
        if self.settings.signed_zones == "secondary":
            await self.api.require_secondary_mode(
                ' (it gets signed zones as secondaries: signed-zones = "secondary", the '
                'default), or set signed-zones = "refuse" to send it no signed zone'
            )

    async def close(self) -> None:
        """Close the HTTP session (shared with the secondary mode)."""
        await self.api.close()

    def dns_address(self) -> Address | None:
        return self.settings.dns

    def for_zone(self, signed: bool) -> Target:
        """A signed zone goes to pdns as a secondary of our primary (``signed-zones =
        "secondary"``), or stays here to be refused (``"refuse"``)."""
        if not signed or self.settings.signed_zones == "refuse":
            return self
        if self._secondary is None:
            self._secondary = PowerDnsSecondaryTarget(self.settings, self.api, owns_api=False)
        return self._secondary

    async def read(self, zone: dns.name.Name) -> Held[PdnsZoneState] | None:
        """The zone as pdns holds it (enabled records only), None when it has none."""
        body = await self.api.get_zone(zone)
        if body is None:
            return None
        fixes: dict[str, Any] = {}
        if body.get("soa_edit_api") or body.get("soa_edit"):
            fixes.update(soa_edit_api="", soa_edit="")
        if str(body.get("kind", "Native")).lower() != "native":
            fixes.update(kind="Native", masters=[])
        data, _ = zone_from_json(zone, body, self.name)
        # Without an SOA: a staged creation that did not finish (see apply); the push ends it.
        return Held(data, PdnsZoneState(fixes, hidden=(zone, SOA) not in data.rrsets))

    async def apply(self, plan: Plan, state: PdnsZoneState | None) -> Held[PdnsZoneState] | None:
        """Make the target serve ``plan``'s zone. Each request carries at most
        ``batch-size`` RRsets and 1.5 MB (pdns refuses bodies over 2 MB); each is atomic at
        pdns and costs it a pass over the zone (0.1 s at 10k RRsets), so they are as large
        as allowed.

        A zone pdns lacks is published whole, never in part: an SOA-only or half-written
        zone would answer NXDOMAIN for the rest, from a provider that may already be
        delegated to. One POST creates it when it fits; a larger one is staged (see
        :meth:`_publish`)."""
        path = f"zones/{zone_id(plan.zone)}"
        state = state or PdnsZoneState()
        done = None if plan.desired is None else Held(plan.desired, PdnsZoneState())
        items = [change_json(change) for change in plan.changes]
        soa = [i for c, i in zip(plan.changes, items, strict=True) if c.rdtype == SOA]
        rest = [i for c, i in zip(plan.changes, items, strict=True) if c.rdtype != SOA]
        if plan.create_zone:
            # pdns invents a placeholder SOA for a zone POSTed without one: ours goes first.
            whole = list(batches(soa + rest, self.settings.batch_size, MAX_BODY_BYTES))
            if len(whole) == 1:
                await self.api.request("POST", CREATE_ZONE, zone_body(plan.zone, whole[0]))
                await self.api.flush_cache(plan.zone)
                return done
            # Staged: created hidden (its SOA disabled, so pdns answers REFUSED as before),
            # filled, then published by enabling the SOA.
            hidden = zone_body(plan.zone, [disabled(i) for i in soa], api_rectify=False)
            await self.api.request("POST", CREATE_ZONE, hidden)
            state = PdnsZoneState(hidden=True)
        if state.hidden:
            await self._publish(plan.zone, soa, rest, state.fixes)
        else:
            if state.fixes:
                log.info("target %s: zone %s: setting %s", self.name, plan.zone, state.fixes)
                await self.api.request("PUT", path, dict(state.fixes))
            await self._patch(plan.zone, items)
        await self.api.flush_cache(plan.zone)
        return done

    async def _publish(
        self, zone: dns.name.Name, soa: list[str], rest: list[str], fixes: Mapping[str, Any]
    ) -> None:
        """Fill a hidden zone (one without an enabled SOA: answered REFUSED) with ``rest``,
        then enable its ``soa``: pdns serves the whole zone from that one transaction on,
        rectified in it (rectifying needs an SOA, so it is off while the zone is hidden)."""
        if not soa:
            raise TargetRejectedError(self.name, f"zone {zone} is hidden and has no SOA to publish")
        await self._patch(zone, rest)
        await self.api.request("PUT", f"zones/{zone_id(zone)}", {**fixes, "api_rectify": True})
        await self._patch(zone, soa)

    async def _patch(self, zone: dns.name.Name, items: list[str]) -> None:
        chunks = list(batches(items, self.settings.batch_size, MAX_BODY_BYTES))
        for number, chunk in enumerate(chunks, 1):
            log.debug(
                "target %s: zone %s: PATCH %d/%d (%d rrsets)",
                self.name,
                zone,
                number,
                len(chunks),
                len(chunk),
            )
            await self.api.request("PATCH", f"zones/{zone_id(zone)}", rrsets_body(chunk))

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The configured ``nameservers``, else the apex NS set pdns holds."""
        if self.settings.nameservers is not None:
            return list(self.settings.nameservers)
        held = await self.read(zone)
        ns = held.data.apex_ns() if held is not None else None
        if ns is None:
            return []
        return sorted(getattr(r, "target") for r in ns.rdatas)  # noqa: B009 - NS rdata


class PowerDnsSecondaryTarget(SecondaryTarget):
    """pdns as a secondary of our primary: the zone is provisioned through the API (kind
    Slave, our primary as master, optionally a TSIG key) and pdns transfers it itself."""

    def __init__(
        self, settings: PowerDnsSettings, api: PowerDnsApi | None = None, owns_api: bool = True
    ) -> None:
        super().__init__(settings.name, Capabilities(dnssec=DnssecMode.SECONDARY))
        self.settings = settings
        self.primary, self.dns = require_secondary_settings(
            settings, "" if owns_api else SIGNED_AS_SECONDARY
        )
        self.api = api if api is not None else PowerDnsApi(settings)
        self._owns_api = owns_api
        self._tsig_key_id: str | None = None

    async def open(self) -> None:
        """Check the API answers and accepts the key, and that pdns runs with
        ``secondary=yes``."""
        await self.api.open()
        if self._owns_api:  # else the record target it came from checked it
            await self.api.require_secondary_mode("")

    async def close(self) -> None:
        """Close the HTTP session unless the record target it came from owns it."""
        if self._owns_api:
            await self.api.close()

    def dns_address(self) -> Address | None:
        return self.dns

    async def provision(self, zone: dns.name.Name) -> bool:
        """Create the zone as a Slave of the primary, or correct its kind, masters and TSIG
        key; True when it was created."""
        key_ids = [await self._ensure_tsig_key()] if self.settings.tsig_key is not None else []
        masters = [str(self.primary)]
        body = {
            "name": zone.to_text(),
            "kind": "Slave",
            "masters": masters,
            "nameservers": [],
            "slave_tsig_key_ids": key_ids,
        }
        status, _ = await self.api.request("POST", "zones", body, ok=(409,))
        if status != 409:
            log.info("target %s: zone %s created as secondary of %s", self.name, zone, masters)
            return True
        current = await self.api.get_zone(zone, rrsets=False)
        if current is None:  # deleted between the two requests: let the next run create it
            raise TargetUnavailableError(self.name, f"zone {zone} vanished while provisioning")
        if (
            str(current.get("kind", "")).lower() != "slave"
            or list(current.get("masters", [])) != masters
            or list(current.get("slave_tsig_key_ids", [])) != key_ids
        ):
            log.info("target %s: zone %s corrected to a secondary of %s", self.name, zone, masters)
            await self.api.request(
                "PUT",
                f"zones/{zone_id(zone)}",
                {"kind": "Slave", "masters": masters, "slave_tsig_key_ids": key_ids},
            )
        return False

    async def _ensure_tsig_key(self) -> str:
        """Create our TSIG key at pdns (or correct its secret); its id."""
        key = self.settings.tsig_key
        assert key is not None
        if self._tsig_key_id is not None:
            return self._tsig_key_id
        body = {
            "name": key.name.to_text(),
            "algorithm": key.algorithm,
            "key": key.secret_text,
        }
        status, created = await self.api.request("POST", "tsigkeys", body, ok=(409,))
        key_id = zone_id(key.name)
        if status == 409:
            _, current = await self.api.request("GET", f"tsigkeys/{key_id}")
            if not isinstance(current, Mapping) or (
                current.get("key") != key.secret_text
                or str(current.get("algorithm", "")).rstrip(".").lower() != key.algorithm
            ):
                await self.api.request(
                    "PUT",
                    f"tsigkeys/{key_id}",
                    {"algorithm": key.algorithm, "key": key.secret_text},
                )
        elif isinstance(created, Mapping) and created.get("id"):
            key_id = str(created["id"])
        self._tsig_key_id = key_id
        return key_id

    async def refresh(self, zone: dns.name.Name) -> None:
        """Ask pdns to transfer the zone now (``axfr-retrieve``)."""
        await self.api.request("PUT", f"zones/{zone_id(zone)}/axfr-retrieve")

    async def transferred(self, zone: dns.name.Name) -> None:
        """pdns serves the new serial: drop answers cached from the old data (see
        :meth:`PowerDnsApi.flush_cache`; its purge after a transfer races queries too)."""
        await self.api.flush_cache(zone)

    async def serial(self, zone: dns.name.Name) -> int | None:
        """The serial pdns serves authoritatively; None when it serves none."""
        response = await query(zone, dns.rdatatype.SOA, self.dns, DNS_TIMEOUT)
        if response is None:
            raise TargetUnavailableError(self.name, f"no DNS answer from {self.dns} for {zone} SOA")
        if response.rcode() != dns.rcode.NOERROR or not response.flags & dns.flags.AA:
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == zone:
                return int(getattr(rrset[0], "serial"))  # noqa: B009 - SOA rdata
        return None

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The configured ``nameservers``, else the apex NS set pdns serves."""
        if self.settings.nameservers is not None:
            return list(self.settings.nameservers)
        return await query_ns(zone, self.dns, DNS_TIMEOUT)


# -- factories -------------------------------------------------------------------------------


def powerdns_from_config(
    name: str, section: Mapping[str, Any], ctx: TargetContext
) -> PowerDnsTarget:
    """A ``type = "powerdns"`` target from its config table. Unless ``signed-zones =
    "refuse"``, a signed zone it gets is served as a secondary, so that mode's settings are
    required here, at start, not when a zone is first signed."""
    settings = parse_settings(name, section, ctx, RECORD_FIELDS)
    if settings.signed_zones == "secondary":
        require_secondary_settings(settings, SIGNED_AS_SECONDARY)
    return PowerDnsTarget(settings)


def powerdns_secondary_from_config(
    name: str, section: Mapping[str, Any], ctx: TargetContext
) -> PowerDnsSecondaryTarget:
    """A ``type = "powerdns-secondary"`` target from its config table: ``primary`` (or the
    primary's own address) and ``dns`` are required."""
    return PowerDnsSecondaryTarget(parse_settings(name, section, ctx, SECONDARY_FIELDS))
