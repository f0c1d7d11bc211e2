"""A strict emulator of the parts of the deSEC API the ``desec`` target uses, written from
the published reference (desec.readthedocs.io): domains, RRsets with cursor pagination,
atomic bulk writes with per-item errors, the domain's minimum TTL, the types the API keeps
to itself, token authentication and the documented throttles with 429 and Retry-After.

It runs an aiohttp server in its own thread on 127.0.0.1 (an ephemeral port). Time is the
emulator's :class:`Clock`, which a test advances: throttles are proved without sleeping.
Each rule cites the section of the reference it comes from; where the reference leaves the
exact wording of an error open, the message is ours but its shape (``{"detail": ...}`` or
per-field lists) is the documented one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import dns.dnssec
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from aiohttp import web

from sync.providers.testkit.serve import AppThread

API = "/api/v1"
PAGE_SIZE = 500  # "Up to 500 items are returned at a time" (Retrieving all RRsets: Pagination)
# Domain object: "minimum_ttl ... set automatically by the server" (Domain Field Reference);
# every example shows 3600, deSEC's default.
DEFAULT_MINIMUM_TTL = 3600
MAX_TTL = 86400  # RRset Field Reference, ttl: "The maximum value is 86400 (one day)."
MAX_RECORDS = 4091  # RRset Field Reference, records: "maximum number of array elements"
MAX_RECORDS_JSON = 64000  # ... "and the maximum length of the array is 64,000 (after JSON)"
MAX_SUBNAME = 178  # RRset Field Reference, subname: "The maximum length is 178."
# The front end (desec-stack www/conf, nginx) sets no client_max_body_size: nginx's default.
MAX_BODY = 1024 * 1024
MAX_DOMAIN = 191  # Domain Field Reference, name: "The maximum length is 191."
# What deSEC puts in a new domain (desec-stack settings DEFAULT_NS, DEFAULT_NS_TTL).
DEFAULT_NS = ("ns1.desec.io.", "ns2.desec.org.")
DEFAULT_NS_TTL = 3600
# Supported Types: "At least the following record types are supported".
SUPPORTED = frozenset(
    {
        "A", "AAAA", "AFSDB", "APL", "CAA", "CDNSKEY", "CDS", "CERT", "CNAME", "DHCID",
        "DNAME", "DNSKEY", "DLV", "DS", "EUI48", "EUI64", "HINFO", "HTTPS", "KX", "LOC",
        "MX", "NAPTR", "NS", "OPENPGPKEY", "PTR", "RP", "SMIMEA", "SPF", "SRV", "SSHFP",
        "SVCB", "TLSA", "TXT", "URI",
    }
)  # fmt: skip
# Restricted Types: the SOA and the DNSSEC records the backend makes itself cannot be
# written (400); ALIAS/ANAME are not supported (400). DNSKEY, DS, CDNSKEY and CDS take
# extra values ("DNSKEY caveat"), so they stay in SUPPORTED.
MANAGED = frozenset({"SOA", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM"})
REFUSED = frozenset({"ALIAS", "ANAME"})
# RRset Field Reference, subname: lowercase alphanumerics, "-", "_" and dots; a wildcard
# "*" only once, at the beginning.
SUBNAME = re.compile(r"^(\*|(\*\.)?([a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63})$")
# Domain Field Reference, name: lowercase alphanumerics, "-" and "_" (not first).
DOMAIN = re.compile(r"^([a-z0-9_][a-z0-9_-]{0,62}\.)+[a-z0-9][a-z0-9-]{0,62}$")

# Rate Limits (API Request Throttling): name -> every (requests, seconds) enforced at once.
THROTTLES: dict[str, tuple[tuple[int, float], ...]] = {
    "dns_api_cheap": ((10, 1), (50, 60)),  # DNS read operations
    "dns_api_expensive": ((10, 1), (300, 60), (1000, 3600)),  # domain creation/deletion
    # RRset creation/deletion/modification, per domain
    "dns_api_per_domain_expensive": ((2, 1), (15, 60), (100, 3600), (300, 86400)),
    "user": ((2000, 86400),),  # any activity of an authenticated user
}


class Clock:
    """The emulator's time, in seconds (thread-safe): only a test moves it, unless ``real``
    (a benchmark, where clients wait in real time), when it runs with the wall clock too."""

    def __init__(self, start: float = 1_800_000_000.0, *, real: bool = False) -> None:
        self._now = start
        self._real = real
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now + (time.monotonic() - self._started if self._real else 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` for the client under test: time passes at once."""
        self.advance(seconds)
        await asyncio.sleep(0)


@dataclass
class StoredRRset:
    ttl: int
    records: list[str]
    created: float
    touched: float
    seq: int  # creation order: what the cursor pagination walks


@dataclass
class Domain:
    name: str
    minimum_ttl: int
    created: float
    seq: int
    rrsets: dict[tuple[str, str], StoredRRset] = field(default_factory=dict)
    published: float | None = None
    keys: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    """What the next ``count`` matching requests get: ``status`` instead of the answer, or
    (``after_apply``) after the request was carried out, as when a proxy loses the reply."""

    status: int
    count: int
    method: str | None = None
    after_apply: bool = False
    retry_after: int | None = None


@dataclass(frozen=True)
class Logged:
    method: str
    path: str
    query: str
    status: int
    authorization: str | None
    body: bytes


class BadRequest(Exception):
    """400 with a documented error body."""

    def __init__(self, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.body = body
        self.headers = dict(headers or {})


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _detail(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Errors outside a payload: ``{"detail": "..."}`` (the API's error body)."""
    return web.json_response({"detail": detail}, status=status, headers=headers)


class DesecEmulator:
    """The deSEC API for one account holding ``tokens``. Use as a context manager (or
    :meth:`start` / :meth:`stop` in a ``finally``); ``url`` is the API base
    (``http://127.0.0.1:PORT/api/v1``)."""

    def __init__(
        self,
        tokens: Sequence[str] = ("test-token",),
        *,
        clock: Clock | None = None,
        throttles: Mapping[str, Sequence[tuple[int, float]]] | None = None,
        minimum_ttl: int = DEFAULT_MINIMUM_TTL,
        page_size: int = PAGE_SIZE,
        taken: Sequence[str] = (),
        max_domains: int | None = None,
    ) -> None:
        self.tokens = set(tokens)
        self.clock = clock or Clock()
        self.throttles = {
            k: tuple(v) for k, v in (THROTTLES if throttles is None else throttles).items()
        }
        self.minimum_ttl = minimum_ttl
        self.page_size = page_size
        self.taken = set(taken)  # domains of other accounts: unavailable to this one
        self.max_domains = max_domains  # the account's domain limit (None: none)
        self.domains: dict[str, Domain] = {}
        self.log: list[Logged] = []
        # (domain, subname, type) -> how many applied writes set or deleted it
        self.applied: dict[tuple[str, str, str], int] = {}
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._history: dict[tuple[str, str], list[float]] = {}
        self._seq = 0
        self._server = AppThread(self._handle, "deSEC emulator")

    # -- life cycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> DesecEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> DesecEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------------------------

    def inject(
        self,
        status: int,
        count: int = 1,
        *,
        method: str | None = None,
        after_apply: bool = False,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``count`` requests (of ``method``) with ``status``."""
        with self.lock:
            self.faults.append(Fault(status, count, method, after_apply, retry_after))

    def add_domain(self, name: str, minimum_ttl: int | None = None) -> Domain:
        """A domain of the account, as POST /domains/ makes it (apex NS included)."""
        with self.lock:
            return self._create_domain(name, minimum_ttl)

    def set_rrset(
        self, domain: str, subname: str, rtype: str, ttl: int, records: list[str]
    ) -> None:
        """Write an RRset directly, as another tool or the web interface would."""
        with self.lock:
            now = self.clock.now()
            self._seq += 1
            self.domains[domain].rrsets[(subname, rtype)] = StoredRRset(
                ttl, list(records), now, now, self._seq
            )

    def rrsets(self, domain: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
        """A snapshot of a domain's RRsets: (subname, type) -> (ttl, records)."""
        with self.lock:
            return {k: (r.ttl, list(r.records)) for k, r in self.domains[domain].rrsets.items()}

    def requests(self, method: str | None = None) -> list[Logged]:
        with self.lock:
            return [e for e in self.log if method is None or e.method == method]

    # -- the server ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self.lock:
            fault = self._next_fault(request.method)
            if len(body) > MAX_BODY:
                response = web.Response(
                    status=413, text="<html>413 Request Entity Too Large</html>"
                )
            elif fault is not None and not fault.after_apply:
                response = self._fault_response(fault)
            else:
                try:
                    response = self._dispatch(request, body)
                except BadRequest as exc:
                    response = web.json_response(exc.body, status=400, headers=exc.headers)
                except _Unsupported as exc:
                    response = _detail(415, f'Unsupported media type "{exc.args[0]}" in request.')
                if fault is not None:  # carried out, but the client hears only the fault
                    response = self._fault_response(fault)
            self.log.append(
                Logged(
                    request.method,
                    request.path,
                    request.query_string,
                    response.status,
                    request.headers.get("Authorization"),
                    body,
                )
            )
            return response

    def _next_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method in (None, method):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(fault: Fault) -> web.Response:
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault.status == 429:
            return _detail(429, "Request was throttled.", headers)
        return web.Response(status=fault.status, text="injected fault", headers=headers)

    def _dispatch(self, request: web.Request, body: bytes) -> web.Response:
        path = request.path
        if not path.startswith(API + "/"):
            return _detail(404, "Not found.")
        parts = path[len(API) + 1 :].split("/")
        # Every endpoint ends in a slash (Endpoint Reference).
        if parts[-1] != "" or parts[0] != "domains":
            return _detail(404, "Not found.")
        parts = parts[1:-1]
        # Authentication: "Authorization: Token {token}"; DRF answers 401 before anything.
        auth = request.headers.get("Authorization")
        if auth is None:
            return _detail(
                401, "Authentication credentials were not provided.", {"WWW-Authenticate": "Token"}
            )
        kind, _, token = auth.partition(" ")
        if kind != "Token" or token not in self.tokens:
            return _detail(401, "Invalid token.", {"WWW-Authenticate": "Token"})
        method = request.method
        if not parts:
            if method == "GET":
                return self._throttled("dns_api_cheap", None) or self._list_domains(request)
            if method == "POST":
                return self._throttled("dns_api_expensive", None) or self._post_domain(
                    request, body
                )
            return _detail(405, f'Method "{method}" not allowed.')
        name = parts[0]
        if len(parts) == 1:
            if method == "GET":
                return self._throttled("dns_api_cheap", None) or self._get_domain(name)
            if method == "DELETE":
                return self._throttled("dns_api_expensive", None) or self._delete_domain(name)
            return _detail(405, f'Method "{method}" not allowed.')
        if parts[1] != "rrsets":
            return _detail(404, "Not found.")
        if len(parts) == 2:
            if method == "GET":
                return self._throttled("dns_api_cheap", None) or self._list_rrsets(request, name)
            if method in ("POST", "PATCH", "PUT"):
                return self._throttled("dns_api_per_domain_expensive", name) or self._bulk(
                    request, name, body
                )
            return _detail(405, f'Method "{method}" not allowed.')
        if len(parts) == 4:
            if method == "GET":
                return self._throttled("dns_api_cheap", None) or self._get_rrset(
                    name, parts[2], parts[3]
                )
            # Single-RRset writes exist at deSEC; the target uses bulk requests only, so
            # the emulator refuses them rather than implement them loosely.
            return _detail(405, f'Method "{method}" not emulated on a single RRset.')
        return _detail(404, "Not found.")

    # -- throttling (Rate Limits: sliding windows, all rates of a name at once) -------------

    def _throttled(self, scope: str, domain: str | None) -> web.Response | None:
        now = self.clock.now()
        scopes = [(scope, domain or ""), ("user", "")]
        wait = 0.0
        for name, key in scopes:
            history = self._history.setdefault((name, key), [])
            for count, per in self.throttles.get(name, ()):
                recent = [t for t in history if t > now - per]
                if len(recent) >= count:
                    wait = max(wait, recent[-count] + per - now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            # "the server will return status 429 Too Many Requests and give a human-readable
            # explanation in the response body ... also given by the Retry-After header."
            return _detail(
                429,
                f"Request was throttled. Expected available in {seconds} seconds.",
                {"Retry-After": str(seconds)},
            )
        for name, key in scopes:
            history = self._history[(name, key)]
            history.append(now)
            longest = max((per for _, per in self.throttles.get(name, ())), default=0.0)
            del history[: sum(1 for t in history if t <= now - longest)]
        return None

    # -- domains (Domain Management) -------------------------------------------------------

    def _listed_domain(self, domain: Domain) -> dict[str, Any]:
        return self._domain_json(domain, keys=False)

    def _domain_json(self, domain: Domain, keys: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "created": _iso(domain.created),
            "minimum_ttl": domain.minimum_ttl,
            "name": domain.name,
            "published": _iso(domain.published),
            "touched": _iso(
                max(
                    [domain.published or domain.created]
                    + [r.touched for r in domain.rrsets.values()]
                )
            ),
        }
        if keys:  # "when listing all domains, the keys field is omitted"
            out["keys"] = domain.keys
        return out

    def _create_domain(self, name: str, minimum_ttl: int | None) -> Domain:
        now = self.clock.now()
        self._seq += 1
        domain = Domain(name, minimum_ttl or self.minimum_ttl, now, self._seq, published=now)
        # A key deSEC signs the zone with (Domain Field Reference, keys).
        origin = dns.name.from_text(name)
        public = base64.b64encode(bytes(range(64))).decode()
        key = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, f"257 3 13 {public}")
        domain.keys = [
            {
                "dnskey": key.to_text(),
                "ds": [dns.dnssec.make_ds(origin, key, d).to_text() for d in ("SHA256", "SHA384")],
                "flags": 257,
                "keytype": "csk",
                "managed": True,
            }
        ]
        self._seq += 1
        domain.rrsets[("", "NS")] = StoredRRset(
            DEFAULT_NS_TTL, list(DEFAULT_NS), now, now, self._seq
        )
        self.domains[name] = domain
        return domain

    def _owned(self, name: str) -> Domain:
        domain = self.domains.get(name)
        if domain is None:  # "domains that don't exist or you don't own": 404
            raise _NotFound
        return domain

    def _list_domains(self, request: web.Request) -> web.Response:
        items = sorted(self.domains.values(), key=lambda d: -d.seq)
        qname = request.query.get("owns_qname")
        if qname is not None:  # Identifying the Responsible Domain for a DNS Name
            best = [d for d in items if qname == d.name or qname.endswith("." + d.name)]
            best.sort(key=lambda d: -len(d.name))
            items = best[:1]
        return self._page(request, [(d.seq, d) for d in items], self._listed_domain)

    def _post_domain(self, request: web.Request, body: bytes) -> web.Response:
        data = self._json(request, body)
        if not isinstance(data, dict):
            raise BadRequest({"non_field_errors": ["Invalid data. Expected a dictionary."]})
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest({"name": ["This field is required."]})
        if len(name) > MAX_DOMAIN or not DOMAIN.match(name):
            raise BadRequest({"name": [f"Invalid value (not a DNS name): {name!r}."]})
        if name in self.domains or name in self.taken:
            raise BadRequest(
                {
                    "name": [
                        "This domain name conflicts with an existing domain, "
                        "or is disallowed by policy."
                    ]
                }
            )
        if self.max_domains is not None and len(self.domains) >= self.max_domains:
            # Creating a Domain: "If you have reached the maximum number of domains for your
            # account, the API responds with 403 Forbidden."
            return _detail(
                403, "You reached the maximum number of domains allowed for your account."
            )
        domain = self._create_domain(name, None)
        return web.json_response(self._domain_json(domain, keys=True), status=201)

    def _get_domain(self, name: str) -> web.Response:
        try:
            domain = self._owned(name)
        except _NotFound:
            return _detail(404, "Not found.")
        return web.json_response(self._domain_json(domain, keys=True))

    def _delete_domain(self, name: str) -> web.Response:
        self.domains.pop(name, None)  # "Upon success or if the domain did not exist": 204
        return web.Response(status=204)

    # -- pagination (Retrieving all RRsets in a Zone: Pagination) ---------------------------

    def _page(
        self,
        request: web.Request,
        items: Sequence[tuple[int, Any]],
        render: Callable[[Any], dict[str, Any]],
    ) -> web.Response:
        """``items`` newest first, each with its position (creation order); ``render``
        makes the JSON of those on the page sent."""
        cursor = request.query.get("cursor")
        if cursor is None:
            if len(items) > self.page_size:
                # "If no pagination parameter is given although pagination is required,
                # the server will return 400 Bad Request, along with a Link: header
                # containing the first link, and human-readable instructions".
                link = f'<{self._link(request, "")}>; rel="first"'
                return _detail(
                    400,
                    f"Pagination required. You can query up to {self.page_size} items at a time "
                    f"({len(items)} total). Please use the `first` page link (see Link header).",
                    {"Link": link},
                )
            return web.json_response([render(i) for _, i in items])
        start = 0
        if cursor:
            position = _decode_cursor(cursor)
            if position is None:
                return _detail(404, "Invalid cursor")
            reverse, seq = position
            if reverse:  # the page before the item at seq
                before = [n for n, (s, _) in enumerate(items) if s > seq]
                start = max(0, (before[-1] + 1 if before else 0) - self.page_size)
            else:
                start = next((n for n, (s, _) in enumerate(items) if s < seq), len(items))
        page = items[start : start + self.page_size]
        links = [f'<{self._link(request, "")}>; rel="first"']
        if start > 0 and page:
            links.append(f'<{self._link(request, _encode_cursor(True, page[0][0]))}>; rel="prev"')
        if start + self.page_size < len(items) and page:
            links.append(f'<{self._link(request, _encode_cursor(False, page[-1][0]))}>; rel="next"')
        body = [render(i) for _, i in page]
        return web.json_response(body, headers={"Link": ", ".join(links)})

    def _link(self, request: web.Request, cursor: str) -> str:
        query = [(k, v) for k, v in request.query.items() if k != "cursor"]
        query.append(("cursor", cursor))
        return f"http://127.0.0.1:{self.port}{request.path}?{urlencode(query)}"

    # -- RRsets (Retrieving and Creating DNS Records) --------------------------------------

    def _rrset_json(
        self, domain: Domain, key: tuple[str, str], rrset: StoredRRset
    ) -> dict[str, Any]:
        subname, rtype = key
        return {
            "created": _iso(rrset.created),
            "domain": domain.name,
            "subname": subname,
            "name": f"{subname}.{domain.name}." if subname else f"{domain.name}.",
            "type": rtype,
            "records": list(rrset.records),
            "ttl": rrset.ttl,
            "touched": _iso(rrset.touched),
        }

    def _list_rrsets(self, request: web.Request, name: str) -> web.Response:
        try:
            domain = self._owned(name)
        except _NotFound:
            return _detail(404, "Not found.")
        # "RRsets are returned in reverse chronological order of their creation."
        found = sorted(domain.rrsets.items(), key=lambda kv: -kv[1].seq)
        rtype = request.query.get("type")
        subname = request.query.get("subname")
        found = [
            (k, r)
            for k, r in found
            if (rtype is None or k[1] == rtype) and (subname is None or k[0] == subname)
        ]
        return self._page(
            request, [(r.seq, (k, r)) for k, r in found], lambda i: self._rrset_json(domain, *i)
        )

    def _get_rrset(self, name: str, subname: str, rtype: str) -> web.Response:
        try:
            domain = self._owned(name)
        except _NotFound:
            return _detail(404, "Not found.")
        if rtype in MANAGED:  # Restricted Types: SOA and DNSSEC types cannot be read (403)
            return _detail(403, f"You cannot tinker with the {rtype} RRset.")
        # Accessing the Zone Apex: "@" or "{subname}..." address the apex.
        if subname.endswith("..."):
            subname = subname[:-3]
        elif subname == "@":
            subname = ""
        rrset = domain.rrsets.get((subname, rtype))
        if rrset is None:
            return _detail(404, "Not found.")
        return web.json_response(self._rrset_json(domain, (subname, rtype), rrset))

    @staticmethod
    def _json(request: web.Request, body: bytes) -> Any:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype != "application/json":  # every write example sends JSON with this type
            raise _Unsupported(ctype)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BadRequest({"detail": f"JSON parse error - {exc}"}) from None

    def _bulk(self, request: web.Request, name: str, body: bytes) -> web.Response:
        """Bulk Operations: POST creates, PUT creates or replaces (all fields), PATCH creates,
        modifies or (``records: []``) deletes; all given RRsets or none (Atomicity)."""
        try:
            domain = self._owned(name)
        except _NotFound:
            return _detail(404, "Not found.")
        method = request.method
        data = self._json(request, body)
        if isinstance(data, dict) and method == "POST":
            items, single = [data], True
        elif isinstance(data, list):
            items, single = data, False
        else:
            raise BadRequest(
                {
                    "non_field_errors": [
                        f'Expected a list of items but got type "{type(data).__name__}".'
                    ]
                }
            )
        errors, parsed = self._validate(domain, method, items)
        if any(errors):
            raise BadRequest(errors[0] if single else errors)
        now = self.clock.now()
        out = []
        for item in parsed:
            key = (item.subname, item.type)
            self.applied[(name, *key)] = self.applied.get((name, *key), 0) + 1
            old = domain.rrsets.get(key)
            if item.records == []:  # "an empty array ... the RRset is deleted"
                domain.rrsets.pop(key, None)
                continue
            if old is None:
                self._seq += 1
                assert item.ttl is not None and item.records is not None
                stored = StoredRRset(item.ttl, item.records, now, now, self._seq)
            else:
                stored = StoredRRset(
                    old.ttl if item.ttl is None else item.ttl,
                    old.records if item.records is None else item.records,
                    old.created,
                    # touched: "the most recent write request to the RRset", even one that
                    # changes nothing; stamped in microseconds, so it moves on every write.
                    max(now, old.touched + 1e-6),
                    old.seq,
                )
            domain.rrsets[key] = stored
            out.append(self._rrset_json(domain, key, stored))
        domain.published = now
        status = 201 if method == "POST" else 200
        return web.json_response(out[0] if single and out else out, status=status)

    def _validate(
        self, domain: Domain, method: str, items: list[Any]
    ) -> tuple[list[dict[str, list[str]]], list[_Item]]:
        """Input validation: per item, errors aligned with the request ({} where fine)."""
        errors: list[dict[str, list[str]]] = [{} for _ in items]
        parsed: list[_Item] = []
        origin = dns.name.from_text(domain.name)
        for n, raw in enumerate(items):
            err = errors[n]
            if not isinstance(raw, dict):
                err["non_field_errors"] = [
                    f"Invalid data. Expected a dictionary, but got {type(raw).__name__}."
                ]
                parsed.append(_Item("", "", None, None))
                continue
            item = _Item("", "", None, None)
            # Field requirements: POST and PUT need every field; PATCH subname and type.
            required = (
                ("subname", "type", "ttl", "records") if method != "PATCH" else ("subname", "type")
            )
            for key in required:
                if key not in raw:
                    err.setdefault(key, []).append("This field is required.")
            subname = raw.get("subname", "")
            if not isinstance(subname, str):
                err.setdefault("subname", []).append("Not a valid string.")
            elif subname and (len(subname) > MAX_SUBNAME or not SUBNAME.match(subname)):
                err.setdefault("subname", []).append(
                    f"Subname can only use (lowercase) a-z, 0-9, ., -, and _, may start with "
                    f"a '*.', or just be '*'. Got {subname!r}."
                )
            else:
                item.subname = subname
            rtype = raw.get("type")
            if "type" in raw:
                if not isinstance(rtype, str) or rtype != rtype.upper():
                    err.setdefault("type", []).append("Type must be given in uppercase.")
                elif rtype in MANAGED:
                    err.setdefault("type", []).append(
                        f"You cannot tinker with the {rtype} RR set. It is managed automatically."
                    )
                elif rtype in REFUSED or rtype not in SUPPORTED:
                    err.setdefault("type", []).append(
                        f"The {rtype} RR set type is currently unsupported."
                    )
                else:
                    item.type = rtype
            if "ttl" in raw:
                ttl = raw["ttl"]
                # "ttl is an integer field, so the JSON value does not contain quotes"
                if isinstance(ttl, bool) or not isinstance(ttl, int):
                    err.setdefault("ttl", []).append("A valid integer is required.")
                elif ttl < domain.minimum_ttl:  # the domain's minimum TTL
                    err.setdefault("ttl", []).append(
                        f"Ensure this value is greater than or equal to {domain.minimum_ttl}."
                    )
                elif ttl > MAX_TTL:
                    err.setdefault("ttl", []).append(
                        f"Ensure this value is less than or equal to {MAX_TTL}."
                    )
                else:
                    item.ttl = ttl
            if "records" in raw:
                item.records = self._records(raw["records"], item.type, origin, err)
            parsed.append(item)
        self._check_set(domain, method, items, parsed, errors)
        return errors, parsed

    @staticmethod
    def _records(
        value: Any, rtype: str, origin: dns.name.Name, err: dict[str, list[str]]
    ) -> list[str] | None:
        """records: presentation format, canonicalized; at most 4091 and 64,000 of JSON."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            err.setdefault("records", []).append("Expected a list of strings.")
            return None
        if len(value) > MAX_RECORDS:
            err.setdefault("records", []).append(
                f"Ensure this field has no more than {MAX_RECORDS} elements."
            )
            return None
        if len(json.dumps(value)) > MAX_RECORDS_JSON:
            err.setdefault("records", []).append(
                f"Ensure this field has no more than {MAX_RECORDS_JSON} characters."
            )
            return None
        if not rtype:
            return None
        canonical: list[str] = []
        seen: set[bytes] = set()
        kind = dns.rdatatype.from_text(rtype)
        for text in value:
            try:
                rdata = dns.rdata.from_text(dns.rdataclass.IN, kind, text, None)
                # Records: "when a record value contains a domain name, it is in almost
                # all cases required to add a final dot"; a relative name fails here.
                digest = rdata.to_digestable()
            except (dns.exception.DNSException, ValueError, UnicodeError) as exc:
                err.setdefault("records", []).append(f"Record content malformed: {text!r} ({exc}).")
                continue
            if digest in seen:
                err.setdefault("records", []).append(f"Duplicate record content: {text!r}.")
                continue
            seen.add(digest)
            canonical.append(rdata.to_text())
        if rtype == "CNAME" and len(value) > 1:  # Caveats, CNAME: "Only one value is allowed."
            err.setdefault("records", []).append(
                "RRset of type CNAME cannot have multiple records."
            )
        return canonical

    def _check_set(
        self,
        domain: Domain,
        method: str,
        items: list[Any],
        parsed: list[_Item],
        errors: list[dict[str, list[str]]],
    ) -> None:
        """Uniqueness within the request and against the domain, what creating needs, and
        CNAME exclusivity on the result (Input validation)."""
        seen: dict[tuple[str, str], list[int]] = {}
        for n, item in enumerate(parsed):
            if item.type and not errors[n].get("subname"):
                seen.setdefault((item.subname, item.type), []).append(n)
        for where in seen.values():
            if len(where) > 1:
                for n in where:
                    others = ", ".join(str(m) for m in where if m != n)
                    errors[n].setdefault("non_field_errors", []).append(
                        f"Same subname and type as in position(s) {others}, but must be unique."
                    )
        result = {k: r.records for k, r in domain.rrsets.items()}
        for n, item in enumerate(parsed):
            if errors[n] or not item.type:
                continue
            key = (item.subname, item.type)
            exists = key in domain.rrsets
            if method == "POST" and exists:
                errors[n].setdefault("non_field_errors", []).append(
                    "Another RRset with the same subdomain and type exists for this domain."
                )
                continue
            if method == "POST" and item.records == []:
                errors[n].setdefault("records", []).append("This list may not be empty.")
                continue
            if method == "PATCH" and not exists and item.records != []:
                # "To create a new RRset using PATCH, all fields but subname must be specified."
                for field_name in ("ttl", "records"):
                    if field_name not in items[n]:
                        errors[n].setdefault(field_name, []).append("This field is required.")
            if item.records == []:
                result.pop(key, None)
            elif item.records is not None:
                result[key] = item.records
        types: dict[str, set[str]] = {}
        for subname, rtype in result:
            types.setdefault(subname, set()).add(rtype)
        for n, item in enumerate(parsed):
            if errors[n] or not item.type or item.records == []:
                continue
            names = types.get(item.subname, set())
            if "CNAME" in names and item.subname == "":
                errors[n].setdefault("non_field_errors", []).append(
                    "Cannot have a CNAME RRset at the zone apex."
                )
            elif "CNAME" in names and len(names) > 1:
                other = sorted(names - {"CNAME"})
                errors[n].setdefault("non_field_errors", []).append(
                    f"RRset with conflicting type present: {', '.join(other)}. "
                    "(No other RRsets are allowed alongside CNAME.)"
                )


@dataclass
class _Item:
    subname: str
    type: str
    ttl: int | None
    records: list[str] | None


class _NotFound(Exception):
    pass


class _Unsupported(Exception):
    pass


def _encode_cursor(reverse: bool, seq: int) -> str:
    text = f"r={int(reverse)}&p={seq}"
    return base64.urlsafe_b64encode(text.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[bool, int] | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        fields = dict(part.split("=", 1) for part in text.split("&"))
        return fields["r"] == "1", int(fields["p"])
    except (binascii.Error, UnicodeError, ValueError, KeyError):
        return None


def iter_pages(link: str | None) -> Iterator[tuple[str, str]]:
    """(rel, url) of a Link header, for tests that walk pages by hand."""
    for part in (link or "").split(","):
        url, _, rel = part.partition(";")
        yield rel.strip().removeprefix("rel=").strip('"'), url.strip().strip("<>")
