"""deSEC (desec.io) as a sync target, through its REST API (desec.readthedocs.io).

deSEC signs every zone itself, so it takes our unsigned zone: the DNSSEC records it makes
(and the SOA) are its own, and a zone we sign is refused by the engine (a self-signing
target; deSEC would publish extra DNSKEYs for a multi-signer setup, "DNSKEY caveat", which
zonefan does not use yet). The apex NS set is an RRset like any other there (Caveats, NS
record): deSEC puts its own nameservers in it when it creates a domain, and the zone we
push replaces them with the set the zone lists, as every provider serving it should.

Every change of a push goes in bulk ``PATCH /domains/{name}/rrsets/`` requests, each
atomic at deSEC (Bulk Operations: Atomicity): a plan that fits one request is applied
whole or not at all, and a request that failed changed nothing, so the engine reads again
and plans what is left. RRset writes are limited per domain (Rate Limits:
``dns_api_per_domain_expensive``, 15/min): large batches keep a push to a few requests,
and a 429 is waited out (Retry-After) by the HTTP client base.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import SyncConfigError, TargetError, TargetRejectedError
from sync.model import FastName, RRset, RRsetKey, ZoneData
from sync.plan import Action, Change, Plan
from sync.providers.base import Held, RecordTarget
from sync.providers.capabilities import (
    Capabilities,
    DnssecMode,
    Normalized,
    Owner,
    Quoting,
    RateBudget,
    normalize,
)
from sync.providers.http import Account, HttpClient, Response
from sync.settings import (
    TargetContext,
    check_fields,
    parse_count,
    parse_timeout,
    parse_url,
    require_secret,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://desec.io/api/v1"
DEFAULT_TIMEOUT = 30.0
# Domain Field Reference, minimum_ttl: "set automatically by the server"; 3600 unless deSEC
# granted the account an exception. The domain's own value is read with the zone.
DEFAULT_MINIMUM_TTL = 3600
MAX_TTL = 86400  # RRset Field Reference, ttl: "The maximum value is 86400 (one day)."
MAX_RECORDS = 4091  # RRset Field Reference, records: at most 4091 elements ...
MAX_RECORDS_JSON = 64000  # ... and 64,000 characters of JSON
MAX_SUBNAME = 178  # RRset Field Reference, subname: "The maximum length is 178."
# The reference sets no limit on the RRsets of a bulk request, but deSEC's front end (nginx,
# desec-stack www/conf) sets no client_max_body_size: nginx's default of 1 MB applies, and a
# larger body is refused with 413. An A RRset takes about 70 bytes of JSON: 5000 of them
# are a third of the limit, and a 10k-record zone goes in two or three requests.
DEFAULT_BATCH_SIZE = 5000  # RRsets per request
BATCH_BYTES = 900_000  # JSON bytes per request
# What deSEC serves a domain from (its DEFAULT_NS, put at the apex of a new domain).
NAMESERVERS = ("ns1.desec.io.", "ns2.desec.org.")
# RRset Field Reference, subname: lowercase letters, digits, "-", "_" and dots; a wildcard
# "*" only once, at the beginning.
_SUBNAME = re.compile(r"^(\*|(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63})$")
# Supported Types ("At least the following record types are supported"), less what deSEC
# keeps to itself (Restricted Types): DNSKEY, CDS and CDNSKEY are made by its signer (extra
# values are for a multi-signer setup), and it has no SOA, RRSIG, NSEC(3) or NSEC3PARAM to
# write. DS stays: the delegation of a child zone.
RECORD_TYPES = frozenset(
    dns.rdatatype.from_text(t)
    for t in (
        "A", "AAAA", "AFSDB", "APL", "CAA", "CERT", "CNAME", "DHCID", "DNAME", "DLV", "DS",
        "EUI48", "EUI64", "HINFO", "HTTPS", "KX", "LOC", "MX", "NAPTR", "NS", "OPENPGPKEY",
        "PTR", "RP", "SMIMEA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI",
    )
)  # fmt: skip

CAPABILITIES = Capabilities(
    dnssec=DnssecMode.SELF_SIGNING,
    record_types=RECORD_TYPES,
    apex_soa=Owner.PROVIDER,  # SOA caveat: "cannot be read or written through this interface"
    apex_ns=Owner.OURS,
    ttl_min=DEFAULT_MINIMUM_TTL,
    ttl_max=MAX_TTL,
    txt=Quoting.WIRE,  # TXT caveat: quoted character-strings, as in a zone file
    atomic=True,
    batch_size=DEFAULT_BATCH_SIZE,
    batch_bytes=BATCH_BYTES,
    # Rate Limits: dns_api_cheap, 50/min for every read of the account (RRset writes have
    # their own 15/min per domain, answered 429 + Retry-After when exceeded).
    budget=RateBudget(50, 60.0, account=True),
)

FIELDS = frozenset({"endpoint", "api-token-env", "api-token-file", "timeout", "batch-size"})


@dataclass(frozen=True)
class DesecState:
    """What a read learnt that apply needs: the domain's minimum TTL, and the zone as read
    (apply returns it with the plan's changes made, so the next push needs no read)."""

    minimum_ttl: int
    data: ZoneData


# -- the codec: RRsets as deSEC's JSON ----------------------------------------------------


def subname_of(name: dns.name.Name, zone: dns.name.Name) -> str:
    """The ``subname`` of an owner: relative to the zone, lowercase, "" for the apex
    (Bulk Operations: "the zone apex is referred to by an empty subname string")."""
    if name == zone:
        return ""
    return name.relativize(zone).to_text().lower()


def holdable(rrset: RRset, zone: dns.name.Name) -> bool:
    """Whether deSEC can hold the RRset at all: an owner it can name as a subname, and
    records within the documented limits."""
    sub = subname_of(rrset.name, zone)
    if sub and (len(sub) > MAX_SUBNAME or not _SUBNAME.match(sub)):
        return False
    texts = rrset.texts()
    return len(texts) <= MAX_RECORDS and len(json.dumps(texts)) <= MAX_RECORDS_JSON


def rrset_item(rrset: RRset, zone: dns.name.Name) -> dict[str, Any]:
    """An RRset for a bulk write: every field, records in presentation format with
    absolute names (RRset Field Reference, records)."""
    return {
        "subname": subname_of(rrset.name, zone),
        "type": dns.rdatatype.to_text(rrset.rdtype),
        "ttl": rrset.ttl,
        "records": rrset.texts(),
    }


def delete_item(key: RRsetKey, zone: dns.name.Name) -> dict[str, Any]:
    """Bulk Deletion of RRsets: the RRset with an empty records list."""
    name, rdtype = key
    return {"subname": subname_of(name, zone), "type": dns.rdatatype.to_text(rdtype), "records": []}


def change_item(change: Change, zone: dns.name.Name) -> dict[str, Any]:
    """One change of a plan as a part of a bulk PATCH."""
    if change.action == Action.DELETE:
        return delete_item(change.key, zone)
    assert change.new is not None
    return rrset_item(change.new, zone)


def parse_rrset(obj: Mapping[str, Any], zone: dns.name.Name, suffix: str = "") -> RRset:
    """An RRset object of the API (RRset Field Reference) as ours; ValueError (or
    dnspython's SyntaxError) when it is not one. ``suffix`` is the zone's text (given once
    for a whole listing)."""
    subname, rtype, ttl, records = obj["subname"], obj["type"], obj["ttl"], obj["records"]
    if not isinstance(subname, str) or not isinstance(rtype, str) or not isinstance(ttl, int):
        raise ValueError(f"not an RRset object: {obj!r}")
    if not isinstance(records, list) or not all(isinstance(r, str) for r in records):
        raise ValueError(f"records is not a list of strings: {records!r}")
    owner = FastName.parse(f"{subname}.{suffix or zone.to_text()}") if subname else zone
    return RRset.parse(owner, dns.rdatatype.from_text(rtype), ttl, records, zone)


def error_text(response: Response) -> str:
    """deSEC's error body as one line: ``{"detail": ...}``, per-field errors, or a bulk
    request's list of them (Bulk Operations: Input validation)."""
    try:
        body = json.loads(response.raw)
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status}"
    return _errors(body)


def _errors(body: Any) -> str:
    if isinstance(body, dict):
        if set(body) == {"detail"}:
            return str(body["detail"])
        return "; ".join(f"{k}: {_errors(v)}" for k, v in body.items())
    if isinstance(body, list):
        return " ".join(_errors(v) for v in body if v)
    return str(body)


def bulk_errors(body: Any, items: Sequence[Mapping[str, Any]]) -> str:
    """A refused bulk request, each error with the RRset it is about: the body is a list
    aligned with the request, ``{}`` for the parts that were fine."""
    if not isinstance(body, list) or len(body) != len(items):
        return _errors(body)
    out = []
    for item, errors in zip(items, body, strict=True):
        if errors:
            owner = item.get("subname") or "@"
            out.append(f"{owner} {item.get('type')}: {_errors(errors)}")
    return "; ".join(out[:5]) + (f"; and {len(out) - 5} more" if len(out) > 5 else "")


def batches(items: Sequence[dict[str, Any]], size: int, limit: int) -> list[list[dict[str, Any]]]:
    """``items`` in order, at most ``size`` RRsets and about ``limit`` bytes of JSON each."""
    out: list[list[dict[str, Any]]] = []
    batch: list[dict[str, Any]] = []
    used = 0
    for item in items:
        cost = len(json.dumps(item)) + 1
        if batch and (len(batch) >= size or used + cost > limit):
            out.append(batch)
            batch, used = [], 0
        batch.append(item)
        used += cost
    if batch:
        out.append(batch)
    return out


def _next_params(response: Response, params: dict[str, str]) -> dict[str, str] | None:
    """Pagination: the ``next`` link of the ``Link`` header as the next request's query."""
    link = next((v for k, v in response.headers.items() if k.lower() == "link"), "")
    for part in link.split(","):
        url, _, rel = part.partition(";")
        if rel.strip() == 'rel="next"':
            query = urllib.parse.urlsplit(url.strip().strip("<>")).query
            return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    return None


def _items(response: Response) -> Sequence[Any]:
    """The objects of one page: a JSON list of objects, else the answer is refused."""
    body = response.json()
    if not isinstance(body, list) or not all(isinstance(i, dict) for i in body):
        raise TargetRejectedError(
            response.target,
            f"{response.method} {response.path}: expected a JSON list of objects, got "
            f"{response.text[:200]!r}",
        )
    return body


# -- the target ---------------------------------------------------------------------------


class DesecTarget(RecordTarget[DesecState]):
    """A deSEC account; each zone is a deSEC domain of that account."""

    def __init__(
        self,
        name: str,
        token: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = DEFAULT_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        token_setting: str = "api-token-env",
        account: Account | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(name, dataclasses.replace(CAPABILITIES, batch_size=batch_size))
        self._token_setting = f"target.{name}.{token_setting}"
        self._client = HttpClient(
            name,
            endpoint,
            headers={"Authorization": f"Token {token}"},  # Authentication: token scheme
            timeout=timeout,
            account=account or Account.shared("desec", token, CAPABILITIES.budget),
            secrets=(token,),
            error_text=error_text,
            sleep=sleep,
            rng=rng,
        )
        # The minimum TTL of each domain, as last read: the range its TTLs are planned in.
        self._minimum_ttl: dict[dns.name.Name, int] = {}

    async def open(self) -> None:
        """The token works: list the account's domains (and learn their minimum TTLs)."""
        first = await self._client.request("GET", "domains/", params={"cursor": ""}, ok=(401, 403))
        if first.status in (401, 403):
            raise SyncConfigError(
                self._token_setting,
                f"deSEC refused the token (HTTP {first.status}: {error_text(first)}); "
                "give a valid API token",
            )
        domains = list(_items(first))
        following = _next_params(first, {})
        if following is not None:
            domains += await self._client.pages(
                "domains/", params=following, items=_items, next_params=_next_params
            )
        for domain in domains:
            self._remember(domain)

    async def close(self) -> None:
        await self._client.close()

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        return [dns.name.from_text(n) for n in NAMESERVERS]

    async def dnskeys(self, zone: dns.name.Name) -> list[dns.rdata.Rdata]:
        """The keys deSEC signs the domain with (Domain Field Reference, keys)."""
        domain = await self._domain(zone)
        if domain is None:
            return []
        return [
            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, key["dnskey"])
            for key in domain.get("keys") or []
        ]

    def normalize(self, data: ZoneData) -> Normalized:
        """The zone as deSEC holds it: TTLs within the domain's own minimum, and owners or
        RRsets it cannot hold (a subname outside its rules, too many records) skipped and
        reported like a type it does not take."""
        low = self._minimum_ttl.get(data.origin, DEFAULT_MINIMUM_TTL)
        caps = dataclasses.replace(self.capabilities, ttl_min=low)
        normalized = normalize(data, caps, self.normalize_rrset)
        refused = [r.key for r in normalized.data if not holdable(r, data.origin)]
        if not refused:
            return normalized
        skip = set(refused)
        kept = ZoneData.build(data.origin, [r for r in normalized.data if r.key not in skip])
        return dataclasses.replace(
            normalized, data=kept, unsupported=normalized.unsupported + tuple(refused)
        )

    async def read(self, zone: dns.name.Name) -> Held[DesecState] | None:
        domain = await self._domain(zone)
        if domain is None:
            return None
        minimum = self._remember(domain)
        rrsets = await self._client.pages(
            f"domains/{_domain_name(zone)}/rrsets/",
            params={"cursor": ""},  # Pagination: the first page, whatever the zone's size
            items=_items,
            next_params=_next_params,
        )
        held: list[RRset] = []
        suffix = zone.to_text()
        for obj in rrsets:
            try:
                held.append(parse_rrset(obj, zone, suffix))
            except (KeyError, ValueError, TypeError, dns.exception.DNSException) as exc:
                # Not ours (we write nothing it cannot parse back): left alone, unseen.
                log.warning(
                    "%s: %s: skipping an RRset deSEC returned (%s): %r", self.name, zone, exc, obj
                )
        if _untouched(rrsets):
            # A domain holding only the apex NS deSEC made with it, never written since, has
            # nothing of ours: it is read as absent, so a push that created it and failed
            # before its first write is planned again as a creation (not as a change of a
            # served apex NS, which the safety rules would hold back).
            return None
        data = ZoneData.build(zone, held)
        return Held(data, DesecState(minimum, data))

    async def apply(self, plan: Plan, state: DesecState | None) -> Held[DesecState] | None:
        zone = plan.zone
        minimum = state.minimum_ttl if state is not None else None
        if plan.create_zone or state is None:
            minimum = await self._create(zone)
        assert minimum is not None
        low = [c for c in plan.changes if c.new is not None and c.new.ttl < minimum]
        if low:
            # Planned with a lower minimum than deSEC set for the domain (a new domain of an
            # account with another default): every request would be refused. Plan again.
            raise TargetError(
                self.name,
                f"{zone}: the domain's minimum TTL is {minimum}, above {len(low)} planned "
                "TTL(s); planning again with it",
            )
        items = [change_item(c, zone) for c in plan.changes]
        for batch in batches(items, self.capabilities.batch_size, BATCH_BYTES):
            await self._patch(zone, batch)
        # What the domain holds now: what it held with the plan's changes made (a new one
        # held only the apex NS deSEC put there, which the zone's own replaces).
        kept = {} if state is None else dict(state.data.rrsets)
        for change in plan.changes:
            if change.new is None:
                kept.pop(change.key, None)
            else:
                kept[change.key] = change.new
        if (zone, dns.rdatatype.NS) not in kept:
            return None  # deSEC's own apex NS is still there: read it next time
        after = ZoneData(zone, kept)
        return Held(after, DesecState(minimum, after))

    # -- requests ------------------------------------------------------------------------

    async def _domain(self, zone: dns.name.Name) -> Mapping[str, Any] | None:
        """Retrieving a Specific Domain; None for 404 (not one of the account's)."""
        response = await self._client.request("GET", f"domains/{_domain_name(zone)}/", ok=(404,))
        if response.status == 404:
            return None
        body = response.json()
        if not isinstance(body, dict):
            raise TargetRejectedError(
                self.name, f"{zone}: not a domain object: {response.text[:200]}"
            )
        return body

    def _remember(self, domain: Mapping[str, Any]) -> int:
        minimum = domain.get("minimum_ttl")
        if isinstance(minimum, bool) or not isinstance(minimum, int):
            minimum = DEFAULT_MINIMUM_TTL
        name = domain.get("name")
        if isinstance(name, str):
            self._minimum_ttl[dns.name.from_text(name)] = minimum
        return minimum

    async def _create(self, zone: dns.name.Name) -> int:
        """Creating a Domain (201); one already in the account (a creation whose answer was
        lost) is used as it is. Returns its minimum TTL."""
        name = _domain_name(zone)
        response = await self._client.request(
            "POST", "domains/", json={"name": name}, ok=(400, 403)
        )
        if response.status == 201:
            created = response.json()
            if not isinstance(created, dict):
                raise TargetRejectedError(
                    self.name, f"POST domains/: not a domain object: {response.text[:200]!r}"
                )
            return self._remember(created)
        existing = await self._domain(zone)
        if existing is not None:
            return self._remember(existing)
        # 400: taken by another account or refused by policy; 403: the account's domain limit.
        raise TargetRejectedError(
            self.name,
            f"deSEC refused to create domain {name} (HTTP {response.status}: "
            f"{error_text(response)})",
        )

    async def _patch(self, zone: dns.name.Name, items: list[dict[str, Any]]) -> None:
        """One atomic bulk PATCH (Bulk Operations); a refusal names the RRsets at fault."""
        path = f"domains/{_domain_name(zone)}/rrsets/"
        response = await self._client.request("PATCH", path, json=items, ok=(400, 404))
        if response.status == 404:  # the domain went away meanwhile: read and plan again
            raise TargetError(self.name, f"{zone}: the domain is gone from deSEC; planning again")
        if response.status == 400:
            try:
                body = json.loads(response.raw)
            except ValueError:
                body = response.text
            raise TargetRejectedError(
                self.name,
                f"deSEC refused the change to {zone} (HTTP 400): {bulk_errors(body, items)}",
            )


def _domain_name(zone: dns.name.Name) -> str:
    """A domain's ``name`` (Domain Field Reference): no final dot, lowercase."""
    return zone.to_text(omit_final_dot=True).lower()


def _untouched(rrsets: Sequence[Mapping[str, Any]]) -> bool:
    """Only deSEC's apex NS, as it made it: ``touched`` moves on every write to an RRset,
    even one that changes nothing (RRset Field Reference), so ``created`` equal to it says
    no one wrote the RRset since."""
    if len(rrsets) != 1:
        return False
    ns = rrsets[0]
    return (
        ns.get("subname") == ""
        and ns.get("type") == "NS"
        and sorted(ns.get("records") or []) == sorted(NAMESERVERS)
        and ns.get("created") == ns.get("touched")
    )


# -- configuration ------------------------------------------------------------------------


def desec_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> DesecTarget:
    """``[target.NAME]`` with ``type = "desec"``: ``api-token-env`` or ``api-token-file``
    (an API token of the account), optional ``endpoint``, ``timeout``, ``batch-size``."""
    setting = f"target.{name}"
    if "api-token" in section:  # credentials only from the environment or a private file
        raise SyncConfigError(
            f"{setting}.api-token",
            "give the deSEC API token by api-token-env (an environment variable) or api-token-file",
        )
    check_fields(section, setting, FIELDS)
    if "api-token-env" not in section and "api-token-file" not in section:
        raise SyncConfigError(
            f"{setting}.api-token-env",
            "required: the deSEC API token, by api-token-env (an environment variable) or "
            "api-token-file",
        )
    token = require_secret(section, setting, "api-token", ctx)
    endpoint = parse_url(
        section.get("endpoint", DEFAULT_ENDPOINT), f"{setting}.endpoint", DEFAULT_ENDPOINT
    )
    return DesecTarget(
        name,
        token,
        endpoint=endpoint,
        timeout=parse_timeout(section, setting, DEFAULT_TIMEOUT),
        batch_size=parse_count(section, setting, "batch-size", DEFAULT_BATCH_SIZE),
        token_setting="api-token-file" if "api-token-file" in section else "api-token-env",
    )
