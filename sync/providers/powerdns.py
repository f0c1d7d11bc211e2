"""PowerDNS Authoritative as a sync target, through its HTTP API.

Two modes share one HTTP client:

* :class:`PowerDnsTarget` writes unsigned zones as records: a Native zone with
  ``soa_edit_api`` and ``soa_edit`` off (so our SOA serial is served unchanged), published
  whole (one POST, or staged hidden when larger than one request), then PATCHes of whole
  RRsets, each atomic at pdns.
* :class:`PowerDnsSecondaryTarget` provisions a zone as a Slave of our primary (optionally
  with a TSIG key) and lets pdns transfer it. Signed zones go this way: presigned data written
  through 4.7's API is served with wrongly synthesised NSEC proofs (rows inserted through
  the API keep an empty ``ordername``), and the API cannot set PRESIGNED at all.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
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
    SyncConfigError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import TEXT_TYPES, FastName, RRset, ZoneData
from sync.plan import Action, Change, Plan
from sync.providers.base import (
    Capabilities,
    DnssecMode,
    Held,
    RecordTarget,
    SecondaryTarget,
    Target,
)
from sync.providers.capabilities import RateBudget
from sync.providers.http import Account, HttpClient, Response
from sync.settings import (
    Address,
    TargetContext,
    TsigKey,
    check_fields,
    parse_address,
    parse_count,
    parse_names,
    parse_rate,
    parse_timeout,
    parse_url,
    require_secret,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 100_000  # RRsets per request; MAX_BODY_BYTES binds first
DEFAULT_TIMEOUT = 10.0
DNS_TIMEOUT = 3.0
# pdns refuses bodies over webserver-max-bodysize (2 MB by default) with HTTP 400; stay
# well below it so a batch of long TXT or key records still fits.
MAX_BODY_BYTES = 1_500_000
# The API reads and writes key and signature material only as unbroken base64 and hex.
_PDNS_STYLE = dns.rdata.RdataStyle(base64_chunk_size=0, hex_chunk_size=0)
# A quoted SvcParam value without spaces, quotes or escapes: pdns prints it bare.
_SVC_QUOTED = re.compile(r'([a-z0-9-]+)="([^"\\\s]*)"')
# A JSON string literal of any text, ASCII only (the C encoder json.dumps itself uses).
_quote = json.encoder.encode_basestring_ascii
_COMMON_FIELDS = frozenset(
    {
        "url",
        "server-id",
        "timeout",
        "rate-limit",
        "nameservers",
        "primary",
        "tsig-key",
        "dns",
    }
)
RECORD_FIELDS = _COMMON_FIELDS | {"batch-size", "signed-zones"}
SECONDARY_FIELDS = _COMMON_FIELDS
SIGNED_ZONE_MODES = ("secondary", "refuse")


# -- helpers ---------------------------------------------------------------------------------


def zone_id(zone: dns.name.Name) -> str:
    """The zone's id in API URLs, as pdns's ``apiZoneNameToId`` makes it: letters, digits,
    dots and hyphens kept, every other byte as ``=XX``; the root is ``=2E``."""
    text = zone.to_text()
    out = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in ".-") else f"={ord(ch):02X}" for ch in text
    )
    return "=2E" if out == "." else out


def render(rdata: dns.rdata.Rdata) -> str:
    """Record content exactly as pdns writes it: 4.7 re-renders what it parsed and refuses
    content that differs ("Not in expected format"). Absolute names, base64 and hex
    unbroken; LOC with its size and precisions even when they are the defaults; SVCB and
    HTTPS parameter values unquoted."""
    text = rdata.to_text(style=_PDNS_STYLE)
    if rdata.rdtype == dns.rdatatype.LOC and len(text.split()) == 9:
        size = getattr(rdata, "size")  # noqa: B009 - LOC rdata, untyped in dnspython
        hp = getattr(rdata, "horizontal_precision")  # noqa: B009
        vp = getattr(rdata, "vertical_precision")  # noqa: B009
        text += f" {size / 100:.2f}m {hp / 100:.2f}m {vp / 100:.2f}m"
    elif rdata.rdtype in (dns.rdatatype.SVCB, dns.rdatatype.HTTPS):
        text = _SVC_QUOTED.sub(r"\1=\2", text)
    return text


_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
_PLAIN_TYPES = _ADDRESS_TYPES | TEXT_TYPES
# pdns answers a POST with the zone it created, every RRset included unless told not to:
# at 10k RRsets, 1.4 MB that it takes 0.13 s to write and we 0.05 s to read, for nothing.
CREATE_ZONE = "zones?rrsets=false"
_SOA = dns.rdatatype.SOA


def contents(rrset: RRset) -> list[str]:
    """The records' content as pdns writes it; addresses and TXT without a dnspython
    object (pdns writes both as dnspython does)."""
    if rrset.rdtype in _PLAIN_TYPES:
        return rrset.texts()
    return [render(r) for r in rrset.rdatas]


def _type_text(rdtype: dns.rdatatype.RdataType) -> str:
    return _TYPE_TEXT.get(rdtype) or _TYPE_TEXT.setdefault(rdtype, dns.rdatatype.to_text(rdtype))


_TYPE_TEXT: dict[dns.rdatatype.RdataType, str] = {}


def rrset_json(rrset: RRset) -> str:
    """An RRset for a PATCH that replaces it whole, as compact JSON text. Written directly:
    a dict per RRset through ``json.dumps`` costs more than pdns takes to store it, and
    ``disabled`` (false unless given) is left out."""
    texts = contents(rrset)
    if len(texts) == 1:
        records = '{"content":' + _quote(texts[0]) + "}"
    else:
        records = ",".join(['{"content":' + _quote(text) + "}" for text in texts])
    return (
        f'{{"name":{_quote(rrset.name.to_text())},"type":"{_type_text(rrset.rdtype)}",'
        f'"ttl":{rrset.ttl},"changetype":"REPLACE","records":[{records}]}}'
    )


def change_json(change: Change) -> str:
    """One plan change as a PATCH rrset (JSON text): REPLACE with every record, or DELETE."""
    if change.action == Action.DELETE:
        assert change.old is not None
        name = _quote(change.old.name.to_text())
        return f'{{"name":{name},"type":"{_type_text(change.old.rdtype)}","changetype":"DELETE"}}'
    assert change.new is not None
    return rrset_json(change.new)


def batches(items: Sequence[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """JSON ``items`` in order, at most ``size`` per batch and ``max_bytes`` of them each
    (an item larger than that on its own still goes, alone)."""
    batch: list[str] = []
    used = 0
    for item in items:
        length = len(item) + 1
        if batch and (len(batch) >= size or used + length > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += length
    if batch:
        yield batch


def rrsets_body(items: Sequence[str]) -> bytes:
    """A PATCH body of JSON ``items`` (ASCII: the quoting escapes everything else)."""
    return ('{"rrsets":[' + ",".join(items) + "]}").encode("ascii")


def zone_body(
    zone: dns.name.Name, items: Sequence[str], *, api_rectify: bool | None = None
) -> bytes:
    """The POST body creating ``zone`` with the RRsets ``items`` (JSON text): Native, with
    ``soa_edit_api`` and ``soa_edit`` off so that our SOA serial is served unchanged, and
    ``api_rectify`` when given (pdns's default otherwise)."""
    settings: dict[str, Any] = {
        "name": zone.to_text(),
        "kind": "Native",
        "soa_edit_api": "",
        "soa_edit": "",
        "nameservers": [],
    }
    if api_rectify is not None:
        settings["api_rectify"] = api_rectify
    head = json.dumps(settings, separators=(",", ":"))
    return (head[:-1] + ',"rrsets":[' + ",".join(items) + "]}").encode("ascii")


def _disabled(item: str) -> str:
    """A REPLACE ``item`` (JSON text) with its records disabled."""
    rrset = json.loads(item)
    for record in rrset.get("records", []):
        record["disabled"] = True
    return json.dumps(rrset, separators=(",", ":"))


def zone_from_json(
    origin: dns.name.Name, body: Mapping[str, Any], target: str
) -> tuple[ZoneData, list[str]]:
    """The API's zone document as ZoneData, and the problems met (records that do not
    parse). An RRset whose records all fail to parse is kept without rdatas, so the plan
    replaces it when it is ours and reports it as foreign otherwise."""
    sets: list[RRset] = []
    problems: list[str] = []
    for item in body.get("rrsets", []):
        try:
            owner = FastName.parse(str(item["name"]))
            rdtype = dns.rdatatype.from_text(str(item["type"]))
            ttl = int(item["ttl"])
        except (KeyError, TypeError, ValueError, dns.exception.DNSException) as exc:
            problems.append(f"unreadable rrset {item!r}: {exc}")
            continue
        enabled = [
            str(r.get("content", "")) for r in item.get("records", []) if not r.get("disabled")
        ]
        if rdtype in _ADDRESS_TYPES and enabled:
            try:  # the bulk of most zones: no dnspython object per address
                sets.append(RRset.parse(owner, rdtype, ttl, enabled))
                continue
            except ValueError:
                pass  # one of them is bad: find which, below
        rdatas: list[dns.rdata.Rdata] = []
        for record in item.get("records", []):
            if record.get("disabled"):
                continue  # not served: for the plan it is not there
            content = str(record.get("content", ""))
            try:
                rdatas.append(dns.rdata.from_text(dns.rdataclass.IN, rdtype, content, None))
            except (dns.exception.DNSException, ValueError) as exc:
                problems.append(f"{owner} {item['type']} {content!r}: {exc}")
        if rdatas or enabled:  # all disabled: not served, so not there
            sets.append(RRset.of(owner, rdtype, ttl, rdatas))
    for problem in problems:
        log.warning("target %s: zone %s: %s", target, origin, problem)
    return ZoneData.build(origin, sets), problems


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerDnsSettings:
    """One ``[target.NAME]`` table of type powerdns, parsed."""

    name: str
    url: str
    api_key: str
    server_id: str = "localhost"
    batch_size: int = DEFAULT_BATCH_SIZE
    rate_limit: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    nameservers: tuple[dns.name.Name, ...] | None = None
    signed_zones: str = "secondary"
    primary: Address | None = None
    tsig_key: TsigKey | None = None
    dns: Address | None = None
    api_key_field: str = "api-key-env"  # where the key came from, for error messages

    @property
    def setting(self) -> str:
        return f"target.{self.name}"


def parse_settings(
    name: str, section: Mapping[str, Any], ctx: TargetContext, allowed: frozenset[str]
) -> PowerDnsSettings:
    """Validate a target table; every error names ``target.NAME.field``."""
    setting = f"target.{name}"
    check_fields(section, setting, allowed, secrets=("api-key",))
    url = parse_url(section.get("url"), f"{setting}.url", "http://127.0.0.1:8081")
    api_key = require_secret(section, setting, "api-key", ctx)
    server_id = section.get("server-id", "localhost")
    if not isinstance(server_id, str) or not server_id or "/" in server_id:
        raise SyncConfigError(f"{setting}.server-id", f"expected a server id, got {server_id!r}")
    batch_size = parse_count(section, setting, "batch-size", DEFAULT_BATCH_SIZE)
    rate_limit = parse_rate(section, setting)
    timeout = parse_timeout(section, setting, DEFAULT_TIMEOUT)
    signed_zones = section.get("signed-zones", "secondary")
    if signed_zones not in SIGNED_ZONE_MODES:
        raise SyncConfigError(
            f"{setting}.signed-zones",
            f"expected one of {', '.join(SIGNED_ZONE_MODES)}, got {signed_zones!r}",
        )
    primary = (
        parse_address(section["primary"], f"{setting}.primary")
        if "primary" in section
        else ctx.primary
    )
    dns_address = parse_address(section["dns"], f"{setting}.dns") if "dns" in section else None
    return PowerDnsSettings(
        name=name,
        url=url,
        api_key=api_key,
        server_id=server_id,
        batch_size=batch_size,
        rate_limit=rate_limit,
        timeout=timeout,
        nameservers=_parse_nameservers(section.get("nameservers"), f"{setting}.nameservers"),
        signed_zones=str(signed_zones),
        primary=primary,
        tsig_key=ctx.key(section, setting, "tsig-key"),
        dns=dns_address,
        api_key_field="api-key-file" if "api-key-file" in section else "api-key-env",
    )


def _parse_nameservers(value: Any, setting: str) -> tuple[dns.name.Name, ...] | None:
    return None if value is None else tuple(parse_names(value, setting))


def _require_secondary_settings(settings: PowerDnsSettings, why: str) -> tuple[Address, Address]:
    """``primary`` and ``dns``, which a zone served by pdns as a secondary needs; ``why``
    ends the message."""
    if settings.primary is None:
        raise SyncConfigError(
            f"{settings.setting}.primary",
            f'required: the address pdns transfers the zone from, primary = "ADDR:PORT" '
            f"(default: the [primary] address){why}",
        )
    if settings.dns is None:
        raise SyncConfigError(
            f"{settings.setting}.dns",
            f'required: where pdns answers DNS, dns = "ADDR:PORT" (the sidecar checks there '
            f"which serial pdns serves){why}",
        )
    return settings.primary, settings.dns


_SIGNED_AS_SECONDARY = (
    '. signed-zones = "secondary" (the default) serves any signed zone from pdns as a '
    'secondary of the primary; set signed-zones = "refuse" to send pdns no signed zone'
)


# -- HTTP client -----------------------------------------------------------------------------


class PowerDnsApi:
    """The API of one pdns server, on the shared HTTP client (:mod:`sync.providers.http`)."""

    def __init__(self, settings: PowerDnsSettings) -> None:
        self.settings = settings
        self.base = f"{settings.url}/api/v1/servers/{urllib.parse.quote(settings.server_id)}"
        # ``rate-limit`` is requests per second with no burst: one request per 1/rate s.
        rate = settings.rate_limit
        budget = RateBudget(1, 1.0 / rate, account=False) if rate > 0 else None
        self.http = HttpClient(
            settings.name,
            self.base,
            headers={"X-API-Key": settings.api_key, "Accept": "application/json"},
            timeout=settings.timeout,
            account=Account(budget),
            secrets=(settings.api_key,),
            error_text=_error_text,
        )
        self._checked = False  # open() verified the URL and key once

    @property
    def target(self) -> str:
        return self.settings.name

    async def open(self) -> None:
        """Open the session and check (once) that the server answers and takes our key."""
        if self._checked:
            return
        try:
            response = await self.http.request("GET", "", ok=tuple(range(300, 600)))
        except TargetUnavailableError as exc:
            await self.close()
            raise SyncConfigError(
                f"{self.settings.setting}.url",
                f"the PowerDNS API at {self.settings.url} is unreachable: {exc}",
            ) from None
        status = response.status
        if status >= 500:
            await self.close()
            raise self.http._error(response)  # transient, not the config
        if status in (401, 403):
            await self.close()
            raise SyncConfigError(
                f"{self.settings.setting}.{self.settings.api_key_field}",
                f"the PowerDNS API at {self.settings.url} rejected the API key (HTTP {status})",
            )
        if status == 404:
            await self.close()
            raise SyncConfigError(
                f"{self.settings.setting}.server-id",
                f"the PowerDNS API at {self.settings.url} has no server "
                f"{self.settings.server_id!r}",
            )
        if status != 200:
            await self.close()
            raise SyncConfigError(
                f"{self.settings.setting}.url",
                f"the PowerDNS API at {self.settings.url} answered HTTP {status}: "
                f"{_error_text(response)}",
            )
        self._checked = True

    async def require_secondary_mode(self, why: str) -> None:
        """Refuse a server that cannot serve our signed zones as a secondary: one running
        without ``secondary=yes`` creates Slave zones and answers ``axfr-retrieve`` with
        200 but never transfers them (pushes would wait and retry forever); one whose SQL
        backend runs without ``<backend>-dnssec=yes`` serves the transferred zone without
        its NSEC proofs and signatures, bogus to validators (both measured with pdns 4.7).
        ``why`` ends the message. Servers whose API does not list their settings are
        trusted."""
        status, body = await self.request("GET", "config", ok=(401, 403, 404))
        if status != 200 or not isinstance(body, list):
            return
        values = {
            str(item.get("name")): str(item.get("value", "")).lower()
            for item in body
            if isinstance(item, Mapping)
        }
        modes = [values[name] for name in ("secondary", "slave") if name in values]
        problem = None
        if modes and "yes" not in modes:
            problem = (
                "runs with secondary=no, so it would never transfer the zones it serves as "
                "secondaries: set secondary=yes"
            )
        for launched in values.get("launch", "").replace(" ", "").split(","):
            backend, _, instance = launched.partition(":")
            switch = f"{backend}-{instance}-dnssec" if instance else f"{backend}-dnssec"
            if problem is None and values.get(switch) == "no":
                problem = (
                    f"runs its {launched} backend with {switch}=no, so it would serve the "
                    f"signed zones it transfers without their DNSSEC records: set "
                    f"{switch}=yes"
                )
        if problem is not None:
            await self.close()
            raise SyncConfigError(
                f"{self.settings.setting}.url",
                f"the PowerDNS server at {self.settings.url} {problem} in its pdns.conf and "
                f"restart it{why}",
            )

    async def close(self) -> None:
        """Close the session; a later request reopens one."""
        self._checked = False
        await self.http.close()

    async def request(
        self, method: str, path: str, body: Any = None, *, ok: Sequence[int] = ()
    ) -> tuple[int, Any]:
        """Send a request; a 2xx or a status in ``ok`` is returned with its decoded body,
        anything else raised as the matching TargetError. ``body``: JSON-able, or bytes
        that are JSON already (PATCH bodies, see rrsets_body)."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        # aiohttp sends no "Expect: 100-continue" unless asked; pdns never answers one.
        response = await self.http.request(method, path, data=data, headers=headers, ok=ok)
        return response.status, _decode(response.raw)

    async def flush_cache(self, zone: dns.name.Name) -> None:
        """Drop pdns's cached answers for ``zone``, after every change it took. pdns 4.7
        purges them itself after a PATCH or an incoming transfer but not after a POST, and
        the purge races queries: one that read the old data while the change committed
        caches its answer after the purge, for up to ``cache-ttl`` (20 s by default).
        Measured here: 3-6 of 100 PATCHes under steady queries left a name NXDOMAIN that
        the PATCH had added; none with this flush."""
        domain = urllib.parse.quote(zone.to_text(), safe="")
        await self.request("PUT", f"cache/flush?domain={domain}")

    async def get_zone(self, zone: dns.name.Name, rrsets: bool = True) -> Mapping[str, Any] | None:
        """The zone document (without its records unless ``rrsets``), None when pdns has no
        such zone."""
        query = "" if rrsets else "?rrsets=false"
        status, body = await self.request("GET", f"zones/{zone_id(zone)}{query}", ok=(404, 422))
        if status == 200 and isinstance(body, Mapping):
            return body
        if status == 422 and "could not find domain" not in _error_text(body).lower():
            raise TargetRejectedError(
                self.target, f"GET zones/{zone_id(zone)} answered HTTP 422: {_error_text(body)}"
            )
        return None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace").strip()  # pdns answers 404 as plain text


def _error_text(body: Any) -> str:
    """pdns's error message: ``{"error": ...}``, or its plain-text 404 pages."""
    if isinstance(body, Response):
        body = _decode(body.raw)
    if isinstance(body, Mapping) and "error" in body:
        return str(body["error"])
    if isinstance(body, str) and body:
        return body[:300]
    return "no error text"


async def _query_ns(zone: dns.name.Name, server: Address, timeout: float) -> list[dns.name.Name]:
    """The zone's apex NS set as ``server`` answers it authoritatively."""
    response = await _query(zone, dns.rdatatype.NS, server, timeout)
    if response is None or not response.flags & dns.flags.AA:
        return []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name == zone:
            return sorted(r.target for r in rrset)
    return []


async def _query(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, server: Address, timeout: float
) -> dns.message.Message | None:
    """One query over UDP, again over TCP when truncated; None when nothing answers."""
    from dns import asyncquery  # only secondaries and `sync ns` ask; ~10 ms to load

    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    try:
        response = await asyncquery.udp(query, server.host, timeout=timeout, port=server.port)
        if response.flags & dns.flags.TC:
            response = await asyncquery.tcp(query, server.host, timeout=timeout, port=server.port)
    except (dns.exception.DNSException, OSError) as exc:
        log.debug("query %s %s to %s failed: %s", name, rdtype, server, exc)
        return None
    return response


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
        return Held(data, PdnsZoneState(fixes, hidden=(zone, _SOA) not in data.rrsets))

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
        soa = [i for c, i in zip(plan.changes, items, strict=True) if c.rdtype == _SOA]
        rest = [i for c, i in zip(plan.changes, items, strict=True) if c.rdtype != _SOA]
        if plan.create_zone:
            # pdns invents a placeholder SOA for a zone POSTed without one: ours goes first.
            whole = list(batches(soa + rest, self.settings.batch_size, MAX_BODY_BYTES))
            if len(whole) == 1:
                await self.api.request("POST", CREATE_ZONE, zone_body(plan.zone, whole[0]))
                await self.api.flush_cache(plan.zone)
                return done
            # Staged: created hidden (its SOA disabled, so pdns answers REFUSED as before),
            # filled, then published by enabling the SOA.
            hidden = zone_body(plan.zone, [_disabled(i) for i in soa], api_rectify=False)
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
        self.primary, self.dns = _require_secondary_settings(
            settings, "" if owns_api else _SIGNED_AS_SECONDARY
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
        response = await _query(zone, dns.rdatatype.SOA, self.dns, DNS_TIMEOUT)
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
        return await _query_ns(zone, self.dns, DNS_TIMEOUT)


# -- factories -------------------------------------------------------------------------------


def powerdns_from_config(
    name: str, section: Mapping[str, Any], ctx: TargetContext
) -> PowerDnsTarget:
    """A ``type = "powerdns"`` target from its config table. Unless ``signed-zones =
    "refuse"``, a signed zone it gets is served as a secondary, so that mode's settings are
    required here, at start, not when a zone is first signed."""
    settings = parse_settings(name, section, ctx, RECORD_FIELDS)
    if settings.signed_zones == "secondary":
        _require_secondary_settings(settings, _SIGNED_AS_SECONDARY)
    return PowerDnsTarget(settings)


def powerdns_secondary_from_config(
    name: str, section: Mapping[str, Any], ctx: TargetContext
) -> PowerDnsSecondaryTarget:
    """A ``type = "powerdns-secondary"`` target from its config table: ``primary`` (or the
    primary's own address) and ``dns`` are required."""
    return PowerDnsSecondaryTarget(parse_settings(name, section, ctx, SECONDARY_FIELDS))
