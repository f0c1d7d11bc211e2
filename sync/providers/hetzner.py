"""Hetzner DNS as a sync target (``type = "hetzner"``), through the zones and RRSets of the
Hetzner Cloud API (https://docs.hetzner.cloud/reference/cloud, sections cited below).

Which API: Hetzner moved DNS into the Hetzner Console and its Cloud API. Its documentation
says no new zone can be created in the old DNS Console, a migrated zone can no longer be
used through the classic DNS API (dns.hetzner.com/api/v1, ``Auth-API-Token``), and asks
every customer to migrate (docs.hetzner.com/networking/dns/migration-to-hetzner-console/
process; docs.hetzner.com/dns-console/dns/general/api-access-token). Integrations report
the classic API shut down in May 2026. A customer's zones are therefore at
``api.hetzner.cloud/v1/zones``, reached with a project's Bearer token: the API used here.

How the sync maps onto it:

- A new zone is one request: "Create a Zone" takes the zone's RRSets along. The Cloud API
  has no bulk RRSet endpoint, and "Import a Zone File" replaces every RRSet (it would wipe
  records others keep there), so after that each RRSet is its own request: "Create an
  RRSet", "Set Records of an RRSet" and "Change an RRSet's TTL" (an update of data and TTL
  takes both), "Delete an RRSet".
- Writes are asynchronous ("Actions"): the target waits for the actions it started and
  reports a failed one with the API's message.
- Hetzner writes the zone's SOA and its apex NS itself ("Create a Zone": a default SOA and
  three NS records with the assigned nameservers): both provider-owned, never planned.
- It holds the types in "Zone RRSets" only (no DNSKEY, RRSIG or NSEC): a signed zone
  cannot be served there, so the engine refuses one for this target.
- "Rate Limiting": 3600 requests an hour per project, refilled one a second; the headers
  ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset`` (a UNIX time)
  drive the shared account's pace in the HTTP base.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype

from sync.errors import SyncConfigError, TargetError, TargetRejectedError, TargetUnavailableError
from sync.model import RRset, RRsetKey, ZoneData
from sync.plan import Action, Change, Plan
from sync.providers.base import Held, RecordTarget
from sync.providers.capabilities import Capabilities, DnssecMode, Owner, Quoting, RateBudget
from sync.providers.http import Account, HttpClient, Response
from sync.settings import TargetContext, check_fields, parse_timeout, parse_url, require_secret

DEFAULT_ENDPOINT = "https://api.hetzner.cloud/v1"
DEFAULT_TIMEOUT = 30.0
PER_PAGE = 50  # "Pagination": at most 50 entries a page
ACTION_IDS_PER_REQUEST = 25  # ids asked for in one "Get multiple Actions"
ACTION_POLL = 0.5  # seconds between looks at running actions
ACTION_WAIT = 120.0  # how long actions may run before the push counts as failed

# "Zone RRSets": the RRSet types; SOA is the zone's own (see below), so not ours to write.
RECORD_TYPES = frozenset(
    dns.rdatatype.from_text(t)
    for t in (
        "A",
        "AAAA",
        "CAA",
        "CNAME",
        "DS",
        "HINFO",
        "HTTPS",
        "MX",
        "NS",
        "PTR",
        "RP",
        "SRV",
        "SVCB",
        "TLSA",
        "TXT",
    )
)

CAPABILITIES = Capabilities(
    dnssec=DnssecMode.NONE,
    record_types=RECORD_TYPES,
    apex_soa=Owner.PROVIDER,
    apex_ns=Owner.PROVIDER,
    ttl_min=60,  # "Change an RRSet's TTL": between 60s and 2147483647s
    ttl_max=2_147_483_647,
    txt=Quoting.WIRE,  # quoted strings of at most 255 characters, as in a zone file
    atomic=False,
    batch_size=1,  # one RRSet a write; a new zone takes all of them in one request
    rate_limit=1.0,
    budget=RateBudget(3600, 3600.0),
)

_FIELDS = frozenset({"endpoint", "api-token-env", "api-token-file", "timeout"})


@dataclass(frozen=True)
class HetznerState:
    """What a read learnt that a write needs: the zone's id, its default TTL (an RRSet
    without its own TTL takes it), the API's id of each RRSet (``NAME/TYPE``) and the zone
    as read, so that an apply can tell the engine what the zone holds after it without
    listing every RRSet again (50 a request)."""

    zone_id: int
    default_ttl: int
    rrset_ids: Mapping[RRsetKey, str] = field(default_factory=dict)
    held: ZoneData | None = None


@dataclass(frozen=True)
class HetznerSettings:
    name: str
    endpoint: str
    token: str
    timeout: float
    token_field: str = "api-token-env"  # the setting the token came from, for errors


# -- the codec: our RRsets as the API's RRSets ---------------------------------------------


def rrset_name(owner: dns.name.Name, origin: dns.name.Name) -> str:
    """The API's RRSet name ("Zone RRSets"): relative to the zone, lower case, no final
    dot, ``@`` for the apex."""
    if owner == origin:
        return "@"
    return owner.relativize(origin).to_text().lower()


def zone_name(zone: dns.name.Name) -> str:
    """The API's zone name ("Create a Zone"): lower case, no final dot, IDNs in punycode
    (which a DNS name already is)."""
    return zone.to_text(omit_final_dot=True).lower()


def rrset_body(rrset: RRset, origin: dns.name.Name) -> dict[str, Any]:
    """An RRSet to create: names in record values are absolute, TXT as quoted strings."""
    return {
        "name": rrset_name(rrset.name, origin),
        "type": dns.rdatatype.to_text(rrset.rdtype),
        "ttl": rrset.ttl,
        "records": records_body(rrset),
    }


def records_body(rrset: RRset) -> list[dict[str, str]]:
    """The records of an RRSet; the record ``value`` identifies a record ("Zone RRSets")."""
    return [{"value": text} for text in rrset.texts()]


def decode_rrset(item: Mapping[str, Any], origin: dns.name.Name, default_ttl: int) -> RRset:
    """An RRSet as the API shows it, as our RRset (its TTL is the zone's when null).
    ValueError naming the RRSet when the API's data does not parse."""
    name, rtype = item["name"], item["type"]
    try:
        owner = origin if name == "@" else dns.name.from_text(name, origin)
        kind = dns.rdatatype.from_text(rtype)
        ttl = item.get("ttl")
        values = [r["value"] for r in item["records"]]
        return RRset.parse(owner, kind, default_ttl if ttl is None else int(ttl), values, origin)
    except (dns.exception.DNSException, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"RRSet {name}/{rtype} does not parse: {exc}") from None


def error_text(response: Response) -> str:
    """The documented error body ("Errors"): ``{"error": {"code", "message", "details"}}``,
    with the fields ``invalid_input`` names."""
    try:
        body = response.json()
    except TargetError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        text = response.text.strip()
        return f"HTTP {response.status}: {text[:200] or 'no body'}"
    message = f"HTTP {response.status} {error.get('code', '?')}: {error.get('message', '')}"
    details = error.get("details")
    fields = details.get("fields") if isinstance(details, dict) else None
    if isinstance(fields, list):
        named = [
            f"{f.get('name')}: {'; '.join(f.get('messages') or [])}"
            for f in fields
            if isinstance(f, dict) and f.get("messages")
        ]
        if named:
            message += f" ({', '.join(named)})"
    return message


# -- the target ----------------------------------------------------------------------------


class HetznerTarget(RecordTarget[HetznerState]):
    """Zones in one Hetzner project, through the Cloud API."""

    def __init__(
        self,
        settings: HetznerSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        account: Account | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``sleep``, ``account`` and ``wall`` (the clock ``RateLimit-Reset`` is read
        against) are injected by tests; the account is shared by every target of one token."""
        super().__init__(settings.name, CAPABILITIES)
        self.settings = settings
        self._sleep = sleep
        self._checked = False
        if account is None:
            account = Account.shared("hetzner", settings.token, CAPABILITIES.budget)
        self.http = HttpClient(
            settings.name,
            settings.endpoint,
            headers={"Authorization": f"Bearer {settings.token}"},
            timeout=settings.timeout,
            account=account,
            secrets=(settings.token,),
            error_text=error_text,
            sleep=sleep,
            wall=wall,
        )

    async def open(self) -> None:
        """Check once that the API answers at ``endpoint`` and takes the token; a wrong
        setting is named."""
        if self._checked:
            return
        setting = f"target.{self.name}"
        try:
            response = await self.http.request(
                "GET", "/zones", params={"per_page": "1"}, ok=tuple(range(300, 600))
            )
        except TargetUnavailableError as exc:
            raise SyncConfigError(
                f"{setting}.endpoint",
                f"the Hetzner API at {self.settings.endpoint} is unreachable: {exc}",
            ) from None
        status = response.status
        if status >= 500:
            raise self.http._error(response)  # the API's trouble, not the config's
        if status in (401, 403):
            raise SyncConfigError(
                f"{setting}.{self.settings.token_field}",
                f"the Hetzner API at {self.settings.endpoint} refused the token "
                f"({self.http.redact(error_text(response))}): use an API token of the Hetzner "
                "Console project that holds the zones (Security, API tokens)",
            )
        if status != 200 or not isinstance(response.json(), dict) or "zones" not in response.json():
            raise SyncConfigError(
                f"{setting}.endpoint",
                f"no Hetzner zones API at {self.settings.endpoint} (GET /zones answered "
                f"HTTP {status}); the public one is {DEFAULT_ENDPOINT}",
            )
        self._checked = True

    async def close(self) -> None:
        await self.http.close()

    # -- reading --

    async def _zone(self, zone: dns.name.Name) -> dict[str, Any] | None:
        response = await self.http.request("GET", "/zones", params={"name": zone_name(zone)})
        zones = self._field(response, "zones", list)
        for item in zones:
            if isinstance(item, dict) and item.get("name") == zone_name(zone):
                return item
        return None

    def _field(self, response: Response, key: str, kind: type) -> Any:
        body = response.json()
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, kind):
            raise TargetRejectedError(self.name, f"the API's answer has no {key!r}: {body!r:.200}")
        return value

    async def read(self, zone: dns.name.Name) -> Held[HetznerState] | None:
        item = await self._zone(zone)
        if item is None:
            return None
        zone_id, default_ttl = int(item["id"]), int(item["ttl"])
        rrsets = await self.http.pages(
            f"/zones/{zone_id}/rrsets",
            params={"per_page": str(PER_PAGE)},
            items=lambda r: self._field(r, "rrsets", list),
            next_params=_next_page,
        )
        data: list[RRset] = []
        ids: dict[RRsetKey, str] = {}
        for raw in rrsets:
            try:
                rrset = decode_rrset(raw, zone, default_ttl)
            except ValueError as exc:
                raise TargetRejectedError(self.name, f"zone {zone}: {exc}") from None
            data.append(rrset)
            ids[rrset.key] = str(raw.get("id") or f"{raw['name']}/{raw['type']}")
        held = ZoneData.build(zone, data)
        return Held(held, HetznerState(zone_id, default_ttl, ids, held))

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        item = await self._zone(zone)
        if item is None:
            return []
        assigned = (item.get("authoritative_nameservers") or {}).get("assigned") or []
        return [dns.name.from_text(ns) for ns in assigned]

    # -- writing --

    async def apply(self, plan: Plan, state: HetznerState | None) -> Held[HetznerState] | None:
        origin = plan.zone
        actions: list[int] = []
        if plan.create_zone or state is None:
            creates = [c.new for c in plan.changes if c.action is Action.CREATE and c.new]
            body: dict[str, Any] = {
                "name": zone_name(origin),
                "mode": "primary",
                "rrsets": [rrset_body(r, origin) for r in creates],
            }
            response = await self.http.request("POST", "/zones", json=body)
            actions.extend(self._started(response))
            await self._wait(actions)
            return None
        base = f"/zones/{state.zone_id}/rrsets"
        for change in plan.changes:
            actions.extend(await self._change(base, origin, state, change))
        await self._wait(actions)
        return self._after(plan, state)

    @staticmethod
    def _after(plan: Plan, state: HetznerState) -> Held[HetznerState] | None:
        """The zone as Hetzner holds it once ``plan`` is applied to what was read (None
        when the read is not at hand: the engine reads again)."""
        if state.held is None:
            return None
        rrsets = dict(state.held.rrsets)
        ids = dict(state.rrset_ids)
        for change in plan.changes:
            if change.new is None:
                rrsets.pop(change.key, None)
                ids.pop(change.key, None)
            else:
                rrsets[change.key] = change.new
                ids.setdefault(
                    change.key,
                    f"{rrset_name(change.key[0], plan.zone)}/"
                    f"{dns.rdatatype.to_text(change.key[1])}",
                )
        held = ZoneData(state.held.origin, rrsets)
        return Held(held, HetznerState(state.zone_id, state.default_ttl, ids, held))

    async def _change(
        self, base: str, origin: dns.name.Name, state: HetznerState, change: Change
    ) -> list[int]:
        if change.action is Action.CREATE:
            assert change.new is not None
            response = await self.http.request("POST", base, json=rrset_body(change.new, origin))
            return self._started(response)
        path = f"{base}/{self._rrset_path(change.key, origin, state)}"
        if change.action is Action.DELETE:
            response = await self.http.request("DELETE", path)
            return self._started(response)
        old, new = change.old, change.new
        assert old is not None and new is not None
        started: list[int] = []
        if old.wire_set() != new.wire_set():
            response = await self.http.request(
                "POST", f"{path}/actions/set_records", json={"records": records_body(new)}
            )
            started.extend(self._started(response))
        if old.ttl != new.ttl:
            response = await self.http.request(
                "POST", f"{path}/actions/change_ttl", json={"ttl": new.ttl}
            )
            started.extend(self._started(response))
        return started

    @staticmethod
    def _rrset_path(key: RRsetKey, origin: dns.name.Name, state: HetznerState) -> str:
        rrset_id = state.rrset_ids.get(key)
        if rrset_id is None:
            rrset_id = f"{rrset_name(key[0], origin)}/{dns.rdatatype.to_text(key[1])}"
        return "/".join(urllib.parse.quote(part, safe="@*") for part in rrset_id.split("/"))

    def _started(self, response: Response) -> list[int]:
        """The action a write started, when it still runs (one that finished needs no
        look; one that failed is reported)."""
        action = self._field(response, "action", dict)
        return [int(action["id"])] if self._running(action) else []

    def _running(self, action: Mapping[str, Any]) -> bool:
        """Whether ``action`` still runs ("Actions": running, success or error); a failed
        one raises with the API's message."""
        status = action.get("status")
        if status == "error":
            error = action.get("error") or {}
            raise TargetRejectedError(
                self.name,
                f"action {action.get('command')} {action.get('id')} failed: "
                f"{error.get('code', '?')}: {error.get('message', '')}",
            )
        return status == "running"

    async def _wait(self, ids: Sequence[int]) -> None:
        """Until every action in ``ids`` finished ("Actions": status running, success or
        error); a failed one is reported with the API's message."""
        pending = list(ids)
        waited = 0.0
        while pending:
            running: list[int] = []
            for start in range(0, len(pending), ACTION_IDS_PER_REQUEST):
                chunk = pending[start : start + ACTION_IDS_PER_REQUEST]
                query = urllib.parse.urlencode([("id", str(i)) for i in chunk])
                response = await self.http.request("GET", f"/actions?{query}")
                running += [
                    int(action["id"])
                    for action in self._field(response, "actions", list)
                    if self._running(action)
                ]
            pending = running
            if pending:
                if waited >= ACTION_WAIT:
                    raise TargetUnavailableError(
                        self.name, f"{len(pending)} actions still running after {waited:.0f}s"
                    )
                await self._sleep(ACTION_POLL)
                waited += ACTION_POLL


def _next_page(response: Response, params: dict[str, str]) -> dict[str, str] | None:
    """ "Pagination": ``meta.pagination.next_page`` is null on the last page."""
    body = response.json()
    meta = body.get("meta") if isinstance(body, dict) else None
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    next_page = pagination.get("next_page") if isinstance(pagination, dict) else None
    if next_page is None:
        return None
    return {**params, "page": str(int(next_page))}


# -- settings ------------------------------------------------------------------------------


def parse_settings(name: str, section: Mapping[str, Any], ctx: TargetContext) -> HetznerSettings:
    """Validate ``[target.NAME]``; every error names ``target.NAME.field``."""
    setting = f"target.{name}"
    check_fields(section, setting, _FIELDS)
    if not any(k in section for k in ("api-token-env", "api-token-file")):
        raise SyncConfigError(
            f"{setting}.api-token-env",
            "required: the environment variable (api-token-env) or private file "
            "(api-token-file) holding the Hetzner Cloud project's API token",
        )
    token = require_secret(section, setting, "api-token", ctx)
    endpoint = parse_url(
        section.get("endpoint", DEFAULT_ENDPOINT), f"{setting}.endpoint", DEFAULT_ENDPOINT
    )
    timeout = parse_timeout(section, setting, DEFAULT_TIMEOUT)
    field_name = "api-token-file" if "api-token-file" in section else "api-token-env"
    return HetznerSettings(name, endpoint, token, timeout, field_name)


def hetzner_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> HetznerTarget:
    """The ``hetzner`` target of ``[target.NAME]``."""
    return HetznerTarget(parse_settings(name, section, ctx))
