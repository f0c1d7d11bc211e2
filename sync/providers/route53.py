"""Amazon Route 53 as a sync target, through its REST API (version 2013-04-01).

The hosted zone is found by the zone's name (ListHostedZonesByName) and, with
``create = true``, created when absent (CreateHostedZone). Its records are read with
ListResourceRecordSets, 300 a page, and written with ChangeResourceRecordSets: each request
is one ChangeBatch, which Route 53 applies all or nothing, within the documented limits
(API Reference, ChangeResourceRecordSets; Developer Guide, Quotas): at most 1,000
ResourceRecord elements and 32,000 characters of Value elements per request, an UPSERT
counting both twice. Throttling and PriorRequestNotComplete (HTTP 400 with those codes,
Developer Guide "Throttling for Amazon Route 53 API requests") are waited out on the
account shared by every zone; then the last change is followed with GetChange until Route
53 reports it INSYNC on all its servers.

Requests are signed with Signature Version 4 by botocore (service ``route53``, region
us-east-1, where Route 53's global endpoint signs). Route 53 writes its own SOA and apex NS
(CreateHostedZone makes them, DeleteHostedZone takes a zone that holds only them) and signs
zones itself with a key-signing key it keeps in KMS, taking no foreign DNSKEY: the engine
therefore never plans those apex records and refuses signed zones here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from xml.sax.saxutils import escape

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import (
    SyncConfigError,
    TargetRateLimitedError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import RRset, RRsetKey, ZoneData
from sync.plan import Action, Change, Plan
from sync.providers.base import Held, RecordTarget
from sync.providers.capabilities import (
    MAX_TTL,
    Capabilities,
    DnssecMode,
    Owner,
    Quoting,
    RateBudget,
)
from sync.providers.http import Account, HttpClient, Response, Sleep
from sync.settings import (
    TargetContext,
    check_fields,
    parse_duration,
    parse_timeout,
    parse_url,
    read_secret,
)

log = logging.getLogger(__name__)
# botocore's signer logs each canonical request, string to sign and signature at debug
# level: signing material that has no place in zonefan's logs.
logging.getLogger("botocore.auth").setLevel(logging.INFO)

DEFAULT_ENDPOINT = "https://route53.amazonaws.com"
API = "2013-04-01"
XMLNS = f"https://route53.amazonaws.com/doc/{API}/"
# SigV4 scope of the global endpoint (AWS General Reference, Route 53 endpoints).
SIGNING_SERVICE = "route53"
SIGNING_REGION = "us-east-1"

# ChangeResourceRecordSets limits (API Reference; Developer Guide, Quotas, "Number of
# elements and characters in ChangeResourceRecordSets requests"): an UPSERT counts twice.
MAX_RECORDS = 1000  # ResourceRecord elements per request
MAX_VALUE_CHARS = 32_000  # characters of all Value elements per request
MAX_VALUE = 4000  # characters of one Value (API Reference, ResourceRecord)
# ListResourceRecordSets returns at most 300 per page (API Reference, maxitems);
# ListHostedZonesByName at most 100.
RRSET_PAGE = 300
ZONE_PAGE = 100
# Route 53's documented rate: five requests per second per account (Developer Guide,
# Quotas, "Frequency of Amazon Route 53 API requests"); its newer throttling page allows a
# burst of 50 refilled at 10/s. We pace at the lower figure and never lean on the burst.
BUDGET = RateBudget(requests=5, per=1.0, account=True)
# Record types a hosted zone holds (API Reference, ResourceRecordSet Type).
RECORD_TYPES = frozenset(
    dns.rdatatype.from_text(t)
    for t in (
        *("A", "AAAA", "CAA", "CNAME", "DS", "HTTPS", "MX", "NAPTR", "NS"),
        *("PTR", "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"),
    )
)
CAPABILITIES = Capabilities(
    dnssec=DnssecMode.SELF_SIGNING,  # its own KSK in KMS; no foreign DNSKEY published
    record_types=RECORD_TYPES,
    apex_soa=Owner.PROVIDER,  # made by CreateHostedZone, never deleted
    apex_ns=Owner.PROVIDER,  # its delegation set's four servers
    ttl_min=0,
    ttl_max=MAX_TTL,  # ResourceRecordSet TTL: 0 to 2147483647
    txt=Quoting.WIRE,  # each string quoted, at most 255 characters (TXT format)
    atomic=True,  # a ChangeBatch applies all or nothing
    batch_size=MAX_RECORDS,
    batch_records=MAX_RECORDS,
    batch_bytes=MAX_VALUE_CHARS,
    rate_limit=BUDGET.rate,
    budget=BUDGET,
)
# Error codes that mean "not processed, send it again later" (HTTP 400).
RETRY_CODES = frozenset({"Throttling", "ThrottlingException", "PriorRequestNotComplete"})
DEFAULT_TIMEOUT = 30.0
DEFAULT_PROPAGATION = 120.0  # seconds to wait for INSYNC (Route 53 says within 60 s)
POLL_INTERVAL = 2.0  # the first GetChange poll's wait, growing by half each time to 10 s:
POLL_GROWTH = 1.5  # a change takes about a minute to be INSYNC, and the polls share the
POLL_MAX = 10.0  # account's five requests a second with every other zone's push
RETRIES = 6
BACKOFF_BASE = 0.5
BACKOFF_MAX = 4.0  # within the HTTP client's MAX_WAIT: a longer hold is the engine's to wait
# Key and digest material unbroken, as Route 53 shows it.
_STYLE = dns.rdata.RdataStyle(base64_chunk_size=0, hex_chunk_size=0)
_ESCAPE = re.compile(r"\\(\d{3}|.)", re.DOTALL)
FIELDS = ("endpoint", "create", "timeout", "propagation-timeout")
SECRETS = ("access-key-id", "secret-access-key", "session-token")


# -- presentation format as Route 53 writes it -------------------------------------------------


def to_route53(text: str) -> str:
    """dnspython's presentation text with its ``\\DDD`` escapes (decimal, RFC 1035 §5.1)
    written the way Route 53 reads them: three octal digits (Developer Guide, DNS domain
    name format, and the TXT record format)."""
    if "\\" not in text:
        return text

    def octal(match: re.Match[str]) -> str:
        body = match.group(1)
        return f"\\{int(body):03o}" if len(body) == 3 else match.group(0)

    return _ESCAPE.sub(octal, text)


def from_route53(text: str) -> str:
    """Route 53's text (``\\ooo`` octal escapes: ListResourceRecordSets returns every name
    character other than a-z, 0-9, - and _ so) as dnspython's decimal presentation."""
    if "\\" not in text:
        return text

    def decimal(match: re.Match[str]) -> str:
        body = match.group(1)
        if len(body) == 3:
            return f"\\{int(body, 8):03d}" if set(body) <= set("01234567") else match.group(0)
        return match.group(0)

    return _ESCAPE.sub(decimal, text)


def name_text(name: dns.name.Name) -> str:
    return to_route53(name.to_text())


def values(rrset: RRset) -> list[str]:
    """The rdatas as Route 53 Value elements: absolute names with their final dot, TXT as
    quoted strings of at most 255 octets, key and digest data unbroken."""
    if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT):
        return [to_route53(t) for t in rrset.texts()]
    return [to_route53(r.to_text(style=_STYLE)) for r in rrset.rdatas]


def parse_name(text: str) -> dns.name.Name:
    return dns.name.from_text(from_route53(text))


def parse_rrset(name: str, rtype: str, ttl: int, texts: Sequence[str]) -> RRset:
    """An RRset from a ResourceRecordSet element; ValueError or dnspython's SyntaxError
    for values it cannot read."""
    owner = parse_name(name)
    kind = dns.rdatatype.from_text(rtype)
    return RRset.parse(owner, kind, ttl, [from_route53(t) for t in texts], dns.name.root)


# -- XML -----------------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


def _children(element: ET.Element | None, name: str) -> list[ET.Element]:
    if element is None:
        return []
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element | None, name: str) -> str | None:
    child = None if element is None else _child(element, name)
    return None if child is None else (child.text or "")


def parse_xml(response: Response) -> ET.Element:
    """The body of a Route 53 answer; TargetRejectedError when it is not XML."""
    try:
        return ET.fromstring(response.raw)
    except ET.ParseError:
        raise TargetRejectedError(
            response.target,
            f"{response.method} {response.path}: HTTP {response.status} with a body that "
            f"is not XML: {response.text[:200]!r}",
        ) from None


def error_code(response: Response) -> tuple[str, str]:
    """(code, message) of a Route 53 error body: ``ErrorResponse/Error/{Code,Message}``,
    or ``InvalidChangeBatch/Messages/Message`` (one message per bad change)."""
    try:
        root = ET.fromstring(response.raw) if response.raw else None
    except ET.ParseError:
        root = None
    if root is None:
        text = response.text.strip()
        return "", text[:300] if text else "no error text"
    if _local(root.tag) == "InvalidChangeBatch":
        messages = [m.text or "" for m in _children(_child(root, "Messages"), "Message")]
        single = _text(root, "Message")
        if single:
            messages.append(single)
        return "InvalidChangeBatch", "; ".join(messages) or "invalid change batch"
    # ErrorResponse/Error as documented; some servers wrap it in Errors.
    error = next((e for e in root.iter() if _local(e.tag) == "Error"), None)
    if error is None:
        return "", response.text.strip()[:300]
    code = _text(error, "Code") or ""
    message = _text(error, "Message") or ""
    return code, message or code or "no error text"


def error_text(response: Response) -> str:
    """Route 53's error as ``Code: Message`` (the HTTP client's ``error_text`` hook)."""
    code, message = error_code(response)
    return f"{code}: {message}" if code else message


class Item(NamedTuple):
    """One Change element of a ChangeBatch."""

    action: str  # CREATE, DELETE or UPSERT
    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]

    @property
    def records(self) -> int:
        """ResourceRecord elements as the quota counts them (an UPSERT twice)."""
        return len(self.values) * (2 if self.action == "UPSERT" else 1)

    @property
    def chars(self) -> int:
        """Characters of the Value elements as the quota counts them."""
        return sum(len(v) for v in self.values) * (2 if self.action == "UPSERT" else 1)

    def xml(self) -> str:
        records = "".join(
            f"<ResourceRecord><Value>{escape(v)}</Value></ResourceRecord>" for v in self.values
        )
        return (
            f"<Change><Action>{self.action}</Action><ResourceRecordSet>"
            f"<Name>{escape(self.name)}</Name><Type>{self.rtype}</Type><TTL>{self.ttl}</TTL>"
            f"<ResourceRecords>{records}</ResourceRecords></ResourceRecordSet></Change>"
        )


def change_batch(items: Sequence[Item], comment: str) -> bytes:
    """A ChangeResourceRecordSetsRequest document."""
    body = "".join(item.xml() for item in items)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<ChangeResourceRecordSetsRequest xmlns="{XMLNS}"><ChangeBatch>'
        f"<Comment>{escape(comment)}</Comment><Changes>{body}</Changes>"
        f"</ChangeBatch></ChangeResourceRecordSetsRequest>"
    ).encode()


def batches(
    groups: Sequence[Sequence[Item]],
    max_records: int = MAX_RECORDS,
    max_chars: int = MAX_VALUE_CHARS,
) -> Iterator[list[Item]]:
    """``groups`` in order, packed into requests within the quotas. A group (the changes of
    one RRset: one, or a DELETE and CREATE that replace it) never spans two requests."""
    batch: list[Item] = []
    records = chars = 0
    for group in groups:
        g_records = sum(i.records for i in group)
        g_chars = sum(i.chars for i in group)
        if batch and (records + g_records > max_records or chars + g_chars > max_chars):
            yield batch
            batch, records, chars = [], 0, 0
        batch.extend(group)
        records += g_records
        chars += g_chars
    if batch:
        yield batch


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    setting: str = ""  # the setting that names them
    from_environment: bool = False  # AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY


@dataclass(frozen=True)
class Route53Settings:
    """One ``[target.NAME]`` table of type route53, parsed."""

    name: str
    credentials: Credentials = field(repr=False)
    endpoint: str = DEFAULT_ENDPOINT
    create: bool = False
    timeout: float = DEFAULT_TIMEOUT
    propagation_timeout: float = DEFAULT_PROPAGATION

    @property
    def setting(self) -> str:
        return f"target.{self.name}"

    @property
    def secrets(self) -> tuple[str, ...]:
        c = self.credentials
        return tuple(s for s in (c.secret_access_key, c.session_token, c.access_key_id) if s)


def parse_settings(name: str, section: Mapping[str, Any], ctx: TargetContext) -> Route53Settings:
    """Validate a ``[target.NAME]`` table; every error names ``target.NAME.key``."""
    setting = f"target.{name}"
    check_fields(section, setting, FIELDS, SECRETS)
    endpoint = parse_url(
        section.get("endpoint", DEFAULT_ENDPOINT),
        f"{setting}.endpoint",
        DEFAULT_ENDPOINT,
        path=False,  # the API's paths start at the host: /2013-04-01/...
    )
    create = section.get("create", False)
    if not isinstance(create, bool):
        raise SyncConfigError(
            f"{setting}.create",
            f"expected true or false (create the hosted zone when absent), got {create!r}",
        )
    timeout = parse_timeout(section, setting, DEFAULT_TIMEOUT)
    propagation = parse_duration(
        section.get("propagation-timeout", DEFAULT_PROPAGATION), f"{setting}.propagation-timeout"
    )
    if propagation < 0:
        raise SyncConfigError(f"{setting}.propagation-timeout", "must be 0 or more seconds")
    return Route53Settings(
        name=name,
        credentials=_credentials(section, setting, ctx),
        endpoint=endpoint,
        create=create,
        timeout=timeout,
        propagation_timeout=propagation,
    )


def _credentials(section: Mapping[str, Any], setting: str, ctx: TargetContext) -> Credentials:
    """``access-key-id`` and ``secret-access-key`` (``-env``/``-file``), with an optional
    ``session-token``; without them, the standard AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    and AWS_SESSION_TOKEN environment variables."""
    key_id = read_secret(section, setting, "access-key-id", ctx)
    secret = read_secret(section, setting, "secret-access-key", ctx)
    token = read_secret(section, setting, "session-token", ctx)
    if key_id is None and secret is None:
        key_id = ctx.env.get("AWS_ACCESS_KEY_ID") or None
        secret = ctx.env.get("AWS_SECRET_ACCESS_KEY") or None
        if token is None:
            token = ctx.env.get("AWS_SESSION_TOKEN") or None
        if key_id is None or secret is None:
            raise SyncConfigError(
                f"{setting}.access-key-id-env",
                "no AWS credentials: set access-key-id-env and secret-access-key-env (or "
                "-file), or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
        return Credentials(key_id, secret, token, f"{setting}.access-key-id-env", True)
    if key_id is None:
        raise SyncConfigError(
            f"{setting}.access-key-id-env",
            "secret-access-key is set but access-key-id is not: set both (-env or -file)",
        )
    if secret is None:
        raise SyncConfigError(
            f"{setting}.secret-access-key-env",
            "access-key-id is set but secret-access-key is not: set both (-env or -file)",
        )
    source = next(
        f"{setting}.access-key-id{s}"
        for s in ("-env", "-file", "")
        if f"access-key-id{s}" in section
    )
    return Credentials(key_id, secret, token, source)


def sigv4_signer(
    credentials: Credentials,
) -> Callable[[str, str, dict[str, str], bytes], dict[str, str]]:
    """Headers signed with Signature Version 4 by botocore, for the HTTP client's ``sign``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    auth = SigV4Auth(
        BotoCredentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        SIGNING_SERVICE,
        SIGNING_REGION,
    )

    def sign(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        auth.add_auth(request)
        return dict(request.headers.items())

    return sign


# -- the target ----------------------------------------------------------------------------------


class Raw(NamedTuple):
    """An RRset exactly as Route 53 holds it: a DELETE must repeat its TTL and values."""

    ttl: int
    values: tuple[str, ...]


@dataclass(frozen=True)
class Route53State:
    """What a read learnt that apply needs: the hosted zone, the records as Route 53 wrote
    them, and what it holds beyond plain RRsets (alias and routing-policy records, never
    ours)."""

    zone_id: str
    data: ZoneData
    raw: Mapping[RRsetKey, Raw]
    special: frozenset[RRsetKey] = frozenset()


class Route53Target(RecordTarget[Route53State]):
    """One Route 53 account's hosted zones, named by the zones' names."""

    def __init__(
        self,
        settings: Route53Settings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] | None = None,
        account: Account | None = None,
    ) -> None:
        super().__init__(settings.name, CAPABILITIES)
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.rng = rng if rng is not None else random.random
        creds = settings.credentials
        self.http = HttpClient(
            settings.name,
            settings.endpoint,
            timeout=settings.timeout,
            account=account
            if account is not None
            else Account.shared("route53", creds.access_key_id, BUDGET),
            secrets=settings.secrets,
            error_text=error_text,
            sign=sigv4_signer(creds),
            sleep=sleep,
        )

    # -- requests ----------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        ok: Sequence[int] = (),
    ) -> Response:
        """A request whose Throttling or PriorRequestNotComplete answer (HTTP 400: not
        processed) holds the account and is sent again with a growing, jittered wait."""
        headers = {"Content-Type": "text/xml"} if data is not None else None
        attempt = 0
        while True:
            attempt += 1
            response = await self.http.request(
                method, path, params=params, data=data, headers=headers, ok=(400, *ok)
            )
            if response.status != 400 or 400 in ok:
                return response
            code, message = error_code(response)
            if code not in RETRY_CODES:
                raise TargetRejectedError(
                    self.name,
                    self.http.redact(f"{method} {path} answered HTTP 400: {code}: {message}"),
                )
            step = min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (attempt - 1))
            wait = step / 2 + self.rng() * step / 2  # equal jitter
            if attempt > RETRIES:
                raise TargetRateLimitedError(
                    self.name,
                    f"{method} {path}: still {code} after {RETRIES} waits: {message}",
                    retry_after=wait,
                )
            log.info(
                "target %s: %s %s: %s, sending again in %.1f s", self.name, method, path, code, wait
            )
            self.http.account.hold(wait)  # every zone of the account waits it out

    async def find_zone(self, zone: dns.name.Name) -> str | None:
        """The id of the public hosted zone named ``zone``, None when there is none."""
        response = await self.call(
            "GET",
            f"{API}/hostedzonesbyname",
            params={"dnsname": name_text(zone), "maxitems": str(ZONE_PAGE)},
        )
        root = parse_xml(response)
        found: list[str] = []
        for hz in _children(_child(root, "HostedZones"), "HostedZone"):
            hz_name, hz_id = _text(hz, "Name"), _text(hz, "Id")
            if hz_name is None or hz_id is None or parse_name(hz_name) != zone:
                continue
            if (_text(_child(hz, "Config"), "PrivateZone") or "false").lower() == "true":
                continue  # a private zone answers only inside its VPCs
            found.append(hz_id.rpartition("/")[2])
        if len(found) > 1:
            raise TargetRejectedError(
                self.name,
                f"the account has {len(found)} public hosted zones named {zone} "
                f"({', '.join(found)}): delete the ones that are not delegated to",
            )
        return found[0] if found else None

    async def list_rrsets(self, zone_id: str) -> list[ET.Element]:
        """Every ResourceRecordSet element of the hosted zone, page after page (through
        :meth:`call`, so a page refused with Throttling is waited out like any request)."""
        path = f"{API}/hostedzone/{zone_id}/rrset"
        params = {"maxitems": str(RRSET_PAGE)}
        out: list[ET.Element] = []
        while True:
            root = parse_xml(await self.call("GET", path, params=params))
            out += _children(_child(root, "ResourceRecordSets"), "ResourceRecordSet")
            if (_text(root, "IsTruncated") or "false").lower() != "true":
                return out
            # API Reference, ListResourceRecordSets: the next page starts at NextRecordName
            # and NextRecordType (and NextRecordIdentifier among routing-policy records).
            following = {"maxitems": str(RRSET_PAGE)}
            for element, param in (
                ("NextRecordName", "name"),
                ("NextRecordType", "type"),
                ("NextRecordIdentifier", "identifier"),
            ):
                value = _text(root, element)
                if value:
                    following[param] = value
            if "name" not in following or following == params:
                raise TargetUnavailableError(
                    self.name,
                    f"ListResourceRecordSets {zone_id}: a truncated page that does not say "
                    "where the next one starts",
                )
            params = following

    async def read(self, zone: dns.name.Name) -> Held[Route53State] | None:
        """The hosted zone's records (its SOA and NS included), None when there is none."""
        zone_id = await self.find_zone(zone)
        if zone_id is None:
            return None
        return await self._read_records(zone, zone_id)

    async def _read_records(self, zone: dns.name.Name, zone_id: str) -> Held[Route53State]:
        elements = await self.list_rrsets(zone_id)
        rrsets: list[RRset] = []
        raw: dict[RRsetKey, Raw] = {}
        special: set[RRsetKey] = set()
        for element in elements:
            name, rtype = _text(element, "Name") or "", _text(element, "Type") or ""
            try:
                key = (parse_name(name), dns.rdatatype.from_text(rtype))
            except (dns.exception.DNSException, ValueError) as exc:
                raise TargetRejectedError(
                    self.name, f"zone {zone}: cannot read record set {name} {rtype}: {exc}"
                ) from None
            if (
                _child(element, "AliasTarget") is not None
                or _child(element, "SetIdentifier") is not None
            ):
                special.add(key)  # alias or routing policy: Route 53's own kind of record
                continue
            texts = tuple(
                _text(r, "Value") or ""
                for r in _children(_child(element, "ResourceRecords"), "ResourceRecord")
            )
            ttl = int(_text(element, "TTL") or 0)
            try:
                rrset = parse_rrset(name, rtype, ttl, texts)
            except (dns.exception.DNSException, ValueError) as exc:
                if CAPABILITIES.provider_owned(key, zone):
                    # Route 53's own SOA or NS, which we never write nor compare (an
                    # emulator may show its default SOA in a form of its own).
                    log.debug(
                        "target %s: zone %s: %s %s unread: %s", self.name, zone, name, rtype, exc
                    )
                    continue
                raise TargetRejectedError(
                    self.name, f"zone {zone}: cannot read {name} {rtype} {list(texts)}: {exc}"
                ) from None
            rrsets.append(rrset)
            raw[rrset.key] = Raw(ttl, texts)
        data = ZoneData.build(zone, rrsets)
        return Held(data, Route53State(zone_id, data, raw, frozenset(special)))

    # -- apply -------------------------------------------------------------------------------

    def groups(self, plan: Plan, state: Route53State | None) -> list[list[Item]]:
        """The plan's changes as Change elements, one group per RRset, checked against the
        limits before anything is sent: a plan that cannot be sent changes nothing."""
        raw = state.raw if state is not None else {}
        special = state.special if state is not None else frozenset()
        out: list[list[Item]] = []
        for change in plan.changes:
            key = change.key
            if key in special and change.action != Action.DELETE:
                raise TargetRejectedError(
                    self.name,
                    f"zone {plan.zone}: {key[0]} {dns.rdatatype.to_text(key[1])} is an alias or "
                    "routing-policy record at Route 53: delete it there, or drop that RRset "
                    "from the zone",
                )
            group = self._items(change, raw)
            self._check_limits(plan.zone, group)
            out.append(group)
        return out

    def _items(self, change: Change, raw: Mapping[RRsetKey, Raw]) -> list[Item]:
        rtype = dns.rdatatype.to_text(change.rdtype)
        name = name_text(change.key[0])
        if change.action == Action.DELETE:
            assert change.old is not None
            held = raw.get(change.key)  # a DELETE must match what Route 53 holds exactly
            if held is None:
                held = Raw(change.old.ttl, tuple(values(change.old)))
            return [Item("DELETE", name, rtype, held.ttl, held.values)]
        assert change.new is not None
        new = Item("CREATE", name, rtype, change.new.ttl, tuple(values(change.new)))
        if change.action == Action.CREATE:
            return [new]
        upsert = new._replace(action="UPSERT")
        if upsert.records <= MAX_RECORDS and upsert.chars <= MAX_VALUE_CHARS:
            return [upsert]
        # Too large to UPSERT (counted twice): the old set deleted and the new one created in
        # the same atomic batch count once each.
        assert change.old is not None
        held = raw.get(change.key) or Raw(change.old.ttl, tuple(values(change.old)))
        return [Item("DELETE", name, rtype, held.ttl, held.values), new]

    def _check_limits(self, zone: dns.name.Name, group: list[Item]) -> None:
        item = group[-1]
        what = f"zone {zone}: {item.name} {item.rtype}"
        for value in item.values:
            if len(value) > MAX_VALUE:
                raise TargetRejectedError(
                    self.name,
                    f"{what}: a value of {len(value)} characters; Route 53 takes at most "
                    f"{MAX_VALUE} per record (API Reference, ResourceRecord)",
                )
        records = sum(i.records for i in group)
        chars = sum(i.chars for i in group)
        if records > MAX_RECORDS or chars > MAX_VALUE_CHARS:
            raise TargetRejectedError(
                self.name,
                f"{what}: {records} records of {chars} characters; one Route 53 request "
                f"takes at most {MAX_RECORDS} records and {MAX_VALUE_CHARS} characters",
            )

    async def apply(self, plan: Plan, state: Route53State | None) -> Held[Route53State] | None:
        """Create the hosted zone when the plan says so (``create = true``), then send the
        changes in order, as few atomic ChangeBatches as the quotas allow, and wait until
        Route 53 reports the last one INSYNC."""
        zone = plan.zone
        groups = self.groups(plan, state)
        if state is None:  # the read found no hosted zone (plan.create_zone)
            if not self.settings.create:
                raise TargetRejectedError(
                    self.name,
                    f"the account has no hosted zone {zone}: create it, or set "
                    f"create = true in [{self.settings.setting}]",
                )
            zone_id = await self.create_zone(zone)
            held = Route53State(zone_id, ZoneData(zone, {}), {})
        else:
            zone_id, held = state.zone_id, state
        requests = list(batches(groups))
        change_id = None
        for number, batch in enumerate(requests, 1):
            log.debug(
                "target %s: zone %s: ChangeResourceRecordSets %d/%d (%d changes, %d records)",
                self.name,
                zone,
                number,
                len(requests),
                len(batch),
                sum(i.records for i in batch),
            )
            body = change_batch(batch, f"zonefan serial {plan.serial}")
            response = await self.call("POST", f"{API}/hostedzone/{zone_id}/rrset/", data=body)
            change_id = _text(_child(parse_xml(response), "ChangeInfo"), "Id")
        if change_id is not None:
            await self.wait_insync(change_id)
        return self._after(plan, zone_id, held)

    def _after(self, plan: Plan, zone_id: str, state: Route53State) -> Held[Route53State]:
        """What the hosted zone holds once ``plan`` is applied to ``state``."""
        rrsets = dict(state.data.rrsets)
        raw = dict(state.raw)
        for change in plan.changes:
            if change.new is None:
                rrsets.pop(change.key, None)
                raw.pop(change.key, None)
            else:
                rrsets[change.key] = change.new
                raw[change.key] = Raw(change.new.ttl, tuple(values(change.new)))
        data = ZoneData(plan.zone, rrsets)
        return Held(data, Route53State(zone_id, data, raw, state.special))

    async def create_zone(self, zone: dns.name.Name) -> str:
        """CreateHostedZone (a POST: never resent); its id. Should its answer be lost, the
        engine's next read finds the zone, so a zone is never created twice."""
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><CreateHostedZoneRequest xmlns="{XMLNS}">'
            f"<Name>{escape(name_text(zone))}</Name>"
            f"<CallerReference>zonefan-{uuid.uuid4()}</CallerReference>"
            f"<HostedZoneConfig><Comment>managed by zonefan</Comment>"
            f"<PrivateZone>false</PrivateZone></HostedZoneConfig></CreateHostedZoneRequest>"
        ).encode()
        response = await self.call("POST", f"{API}/hostedzone", data=body)
        hz_id = _text(_child(parse_xml(response), "HostedZone"), "Id")
        if not hz_id:
            raise TargetUnavailableError(self.name, f"CreateHostedZone {zone}: no HostedZone Id")
        log.info("target %s: created hosted zone %s (%s)", self.name, zone, hz_id)
        return hz_id.rpartition("/")[2]

    async def wait_insync(self, change_id: str) -> None:
        """Poll GetChange until the change is INSYNC (on every Route 53 server), at most
        ``propagation-timeout`` seconds; past that, the push stands and a warning says so."""
        timeout = self.settings.propagation_timeout
        if timeout <= 0:
            return
        deadline = self.clock() + timeout
        path = f"{API}/change/{change_id.rpartition('/')[2]}"
        interval = POLL_INTERVAL
        while True:
            response = await self.call("GET", path)
            status = _text(_child(parse_xml(response), "ChangeInfo"), "Status")
            if status == "INSYNC":
                return
            if self.clock() >= deadline:
                log.warning(
                    "target %s: change %s still %s after %g s",
                    self.name,
                    change_id,
                    status,
                    timeout,
                )
                return
            await self.sleep(interval)
            interval = min(POLL_MAX, interval * POLL_GROWTH)

    # -- the rest ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the endpoint answers and takes the credentials, with a request the target
        makes anyway (ListHostedZonesByName): a policy granting only what the target needs
        passes."""
        try:
            await self.call("GET", f"{API}/hostedzonesbyname", params={"maxitems": "1"})
        except TargetRejectedError as exc:
            if "(check the credentials)" in str(exc):
                creds = self.settings.credentials
                whose = (
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment"
                    if creds.from_environment
                    else "the credentials"
                )
                raise SyncConfigError(creds.setting, f"Route 53 refused {whose}: {exc}") from None
            raise

    async def close(self) -> None:
        await self.http.close()

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The hosted zone's delegation set (GetHostedZone), the servers to list at the
        parent; none when the zone is not there."""
        zone_id = await self.find_zone(zone)
        if zone_id is None:
            return []
        response = await self.call("GET", f"{API}/hostedzone/{zone_id}")
        servers = _children(
            _child(_child(parse_xml(response), "DelegationSet"), "NameServers"), "NameServer"
        )
        return sorted(dns.name.from_text(s.text or "") for s in servers if s.text)


def route53_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> Route53Target:
    """The ``route53`` target of ``[target.NAME]``."""
    return Route53Target(parse_settings(name, section, ctx))
