"""A strict emulator of the parts of the Cloudflare API v4 that zonefan's ``cloudflare``
target uses, written from the published reference (developers.cloudflare.com/api):

- List Zones ``GET /zones`` (``name``, ``page``, ``per_page`` 5..50), Zone Details
  ``GET /zones/{id}``, Create Zone ``POST /zones`` (``name``, ``account.id``),
- DNSSEC Details ``GET /zones/{id}/dnssec`` (``status``, ``dnssec_multi_signer``) and
  Edit DNSSEC Status ``PATCH /zones/{id}/dnssec``,
- Show DNS Settings ``GET /zones/{id}/dns_settings`` (the zone's own SOA and NS TTL),
- List DNS Records ``GET /zones/{id}/dns_records`` (``page``, ``per_page``, ``name``,
  ``type``; ``result_info`` with page, per_page, count, total_count, total_pages),
- Create DNS Record ``POST /zones/{id}/dns_records`` and Delete DNS Record,
- Batch DNS Records ``POST /zones/{id}/dns_records/batch``: deletes, patches, puts and
  posts executed in that order in one database transaction (all or nothing), at most
  ``batch_limit`` operations (the plan's limit: Free 200, Pro and above 3,500, "Batch
  record changes" in the DNS docs).

Every response carries the documented envelope ``{"success", "errors", "messages",
"result"}``; errors are ``{"code": N, "message": "..."}`` with the documented HTTP status.
Auth is ``Authorization: Bearer TOKEN`` ("API Token" security scheme): a missing or
malformed header is 400 code 6003 with error_chain 6111, an unknown token 403 code 10000; a
body that is not ``Content-Type: application/json`` is 400 code 6003 with error_chain 6105.

The global rate limit ("Rate limits" in Fundamentals: 1,200 requests per five minutes per
user, every call blocked with HTTP 429 once it is exceeded, ``retry-after`` in seconds
rounded up) is enforced per token on an injectable clock, so tests prove it with a small
budget and without sleeping.

Like Cloudflare, the emulator makes the zone's SOA and apex NS itself: they are never in
the record list, the NS names are the zone's ``name_servers`` and the SOA is in its DNS
settings; an SOA record cannot be created. Error codes the reference does not list are
marked "emulator" where they are produced.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import itertools
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from aiohttp import web

from sync.providers.testkit.serve import AppThread

TTL_AUTOMATIC = 1  # "Setting to 1 means 'automatic'" (DNS Records: ttl)
TTL_MIN = 60  # "Value must be between 60 and 86400" (30 for Enterprise zones)
TTL_MAX = 86400
PROXIABLE = frozenset({"A", "AAAA", "CNAME"})  # only these can be proxied (DNS docs)
# The record types of the DNS Records API (its create/batch bodies), LOC left out here.
CONTENT_TYPES = frozenset({"A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "OPENPGPKEY"})
# Types whose body carries a ``data`` object: field -> kind (int range or text form).
DATA_FIELDS: dict[str, dict[str, tuple[str, int]]] = {
    "CAA": {"flags": ("int", 255), "tag": ("token", 0), "value": ("text", 0)},
    "SRV": {
        "priority": ("int", 65535),
        "weight": ("int", 65535),
        "port": ("int", 65535),
        "target": ("host", 0),
    },
    "URI": {"weight": ("int", 65535), "target": ("text", 0)},
    "DS": {
        "key_tag": ("int", 65535),
        "algorithm": ("int", 255),
        "digest_type": ("int", 255),
        "digest": ("hex", 0),
    },
    "DNSKEY": {
        "flags": ("int", 65535),
        "protocol": ("int", 255),
        "algorithm": ("int", 255),
        "public_key": ("b64", 0),
    },
    "TLSA": {
        "usage": ("int", 255),
        "selector": ("int", 255),
        "matching_type": ("int", 255),
        "certificate": ("hex", 0),
    },
    "SMIMEA": {
        "usage": ("int", 255),
        "selector": ("int", 255),
        "matching_type": ("int", 255),
        "certificate": ("hex", 0),
    },
    "SSHFP": {"algorithm": ("int", 255), "type": ("int", 255), "fingerprint": ("hex", 0)},
    "HTTPS": {"priority": ("int", 65535), "target": ("host", 0), "value": ("params", 0)},
    "SVCB": {"priority": ("int", 65535), "target": ("host", 0), "value": ("params", 0)},
    "NAPTR": {
        "order": ("int", 65535),
        "preference": ("int", 65535),
        "flags": ("text", 0),
        "service": ("text", 0),
        "regex": ("text", 0),
        "replacement": ("host", 0),
    },
    "CERT": {
        "type": ("int", 65535),
        "key_tag": ("int", 65535),
        "algorithm": ("int", 255),
        "certificate": ("b64", 0),
    },
}
PRIORITY_TYPES = frozenset({"MX", "URI"})  # "priority: Required for MX, SRV and URI records"
RECORD_TYPES = CONTENT_TYPES | frozenset(DATA_FIELDS)
# Fields a record body may carry (DNS Records: request body); anything else is refused.
BODY_FIELDS = frozenset(
    {"name", "type", "content", "data", "ttl", "proxied", "priority", "comment", "tags", "settings"}
)
BATCH_KEYS = ("deletes", "patches", "puts", "posts")  # and their order of execution


class ApiError(Exception):
    """A request the API refuses: the HTTP status and the documented error objects."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        chain: list[str] | None = None,
        chain_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.chain = list(chain or ())
        self.chain_code = chain_code if chain_code is not None else code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.chain:
            error["error_chain"] = [{"code": self.chain_code, "message": m} for m in self.chain]
        return {"success": False, "errors": [error], "messages": [], "result": None}


def _invalid(message: str, *details: str) -> ApiError:
    # 1004 "DNS Validation Error" is what the DNS Records endpoints answer for a bad body.
    return ApiError(400, 1004, message, list(details))


@dataclass
class Zone:
    id: str
    name: str
    account_id: str
    name_servers: list[str]
    dnssec_status: str = "active"
    multi_signer: bool = False
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> record

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": "active",
            "type": "full",
            "paused": False,
            "name_servers": list(self.name_servers),
            "account": {"id": self.account_id, "name": "emulated account"},
        }


@dataclass
class Budget:
    """One token's window: ``used`` requests since ``start``; blocked until ``start + per``
    once more than ``requests`` were made ("all API calls for the next five minutes will
    be blocked")."""

    start: float
    used: int = 0


class CloudflareEmulator:
    """The API on ``http://127.0.0.1:PORT/client/v4`` in its own thread; :meth:`stop` in a
    ``finally``. ``tokens`` maps each valid API token to its account id."""

    def __init__(
        self,
        tokens: Mapping[str, str],
        *,
        rate_requests: int = 1200,
        rate_per: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        batch_limit: int = 200,
        max_per_page: int = 5_000_000,
        ttl_min: int = TTL_MIN,
    ) -> None:
        self.tokens = dict(tokens)
        self.rate_requests = rate_requests
        self.rate_per = rate_per
        self.clock = clock
        self.batch_limit = batch_limit
        self.max_per_page = max_per_page
        self.ttl_min = ttl_min
        self.zones: dict[str, Zone] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.committed: list[Any] = []  # the result of every committed write, in order
        self.fail_after_commit = 0  # the next N writes are applied, then answered 500
        self._budgets: dict[str, Budget] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = AppThread(self._handle, "cloudflare emulator")

    # -- life cycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> CloudflareEmulator:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    # -- test helpers (no HTTP) ------------------------------------------------------------

    def add_zone(self, name: str, account_id: str | None = None) -> Zone:
        account = account_id or next(iter(self.tokens.values()))
        with self._lock:
            return self._create_zone(name.rstrip(".").lower(), account)

    def zone_named(self, name: str) -> Zone | None:
        wanted = name.rstrip(".").lower()
        return next((z for z in self.zones.values() if z.name == wanted), None)

    def add_record(self, zone: Zone, body: Mapping[str, Any]) -> dict[str, Any]:
        """A record made outside zonefan (the dashboard, another tool)."""
        with self._lock:
            records = zone.records
            record = self._build(zone, dict(body), None)
            self._check_conflicts(_at(records.values(), record["name"]), record)
            records[record["id"]] = record
            return record

    def records(self, zone: Zone) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(r) for r in zone.records.values()]

    # -- dispatch --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            result, info, status = self._dispatch(request, raw)
            body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
            if info is not None:
                body["result_info"] = info
            headers = self._rate_headers(request)
        except _RateLimited as limited:
            status = 429
            body = ApiError(
                429, 971, "Please wait and consider throttling your request speed"
            ).body()
            headers = {"Retry-After": str(limited.retry_after)}
        except ApiError as exc:
            status, body, headers = exc.status, exc.body(), {}
        with self._lock:
            self.requests.append((request.method, request.path_qs, status))
        return web.json_response(body, status=status, headers=headers)

    def _dispatch(self, request: web.Request, raw: bytes) -> tuple[Any, dict[str, Any] | None, int]:
        account = self._authenticate(request)
        self._spend(request)
        path = request.path
        prefix = "/client/v4/"
        if not path.startswith(prefix):
            raise ApiError(400, 7000, "No route for that URI")  # emulator: unknown route
        parts = [p for p in path[len(prefix) :].split("/") if p]
        method = request.method
        body = None
        if method in ("POST", "PATCH", "PUT"):
            kind = request.headers.get("Content-Type", "").split(";")[0].strip()
            if kind != "application/json":
                raise ApiError(
                    400,
                    6003,
                    "Invalid request headers",
                    [
                        "Invalid Content-Type header, valid values are "
                        "application/json,multipart/form-data"
                    ],
                    chain_code=6105,
                )
            body = self._json_body(raw)
        with self._lock:
            if parts == ["zones"]:
                if method == "GET":
                    return self._list_zones(request.query, account)
                if method == "POST":
                    return self._post_zone(body, account), None, 200
            if len(parts) >= 2 and parts[0] == "zones":
                zone = self._zone(parts[1], account)
                rest = parts[2:]
                if rest == [] and method == "GET":
                    return zone.json(), None, 200
                if rest == ["dnssec"] and method == "GET":
                    return self._dnssec(zone), None, 200
                if rest == ["dnssec"] and method == "PATCH":
                    return self._patch_dnssec(zone, body), None, 200
                if rest == ["dns_settings"] and method == "GET":
                    return self._dns_settings(zone), None, 200
                if rest == ["dns_records"] and method == "GET":
                    return self._list_records(zone, request.query)
                if rest == ["dns_records"] and method == "POST":
                    return self._write(lambda: self._post_record(zone, body)), None, 200
                if rest == ["dns_records", "batch"] and method == "POST":
                    return self._write(lambda: self._batch(zone, body)), None, 200
                if len(rest) == 2 and rest[0] == "dns_records" and method == "DELETE":
                    return self._write(lambda: self._delete_record(zone, rest[1])), None, 200
        raise ApiError(400, 7000, "No route for that URI")

    @staticmethod
    def _json_body(raw: bytes) -> Any:
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(400, 9207, "Request body is invalid.") from None  # emulator

    def _write(self, apply: Callable[[], Any]) -> Any:
        result = apply()
        self.committed.append(result)
        if self.fail_after_commit > 0:  # applied, but the client never hears of it
            self.fail_after_commit -= 1
            raise ApiError(500, 10001, "emulated server error after commit")  # emulator
        return result

    # -- auth and rate limit ---------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        """``Authorization: Bearer TOKEN`` (API Token scheme, "Make API calls")."""
        header = request.headers.get("Authorization")
        if header is None or not header.startswith("Bearer ") or not header[7:].strip():
            raise ApiError(
                400,
                6003,
                "Invalid request headers",
                ["Invalid format for Authorization header"],
                chain_code=6111,
            )
        account = self.tokens.get(header[7:].strip())
        if account is None:
            raise ApiError(403, 10000, "Authentication error")
        return account

    def _spend(self, request: web.Request) -> None:
        token = request.headers["Authorization"][7:].strip()
        now = self.clock()
        with self._lock:
            budget = self._budgets.get(token)
            if budget is None or now >= budget.start + self.rate_per:
                budget = self._budgets[token] = Budget(start=now)
            budget.used += 1
            if budget.used > self.rate_requests:
                # "retry-after: the number of seconds, rounded up, until more capacity".
                raise _RateLimited(max(1, math.ceil(budget.start + self.rate_per - now)))

    def _rate_headers(self, request: web.Request) -> dict[str, str]:
        """``Ratelimit`` and ``Ratelimit-Policy`` as "Rate limiting headers" describes."""
        token = request.headers["Authorization"][7:].strip()
        with self._lock:
            budget = self._budgets[token]
            left = max(0, self.rate_requests - budget.used)
            reset = max(0, math.ceil(budget.start + self.rate_per - self.clock()))
        return {
            "Ratelimit": f'"default";r={left};t={reset}',
            "Ratelimit-Policy": f'"default";q={self.rate_requests};w={int(self.rate_per)}',
        }

    # -- zones -----------------------------------------------------------------------------

    def _list_zones(
        self, query: Mapping[str, str], account: str
    ) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
        # List Zones: per_page 5..50, default 20; page from 1.
        page, per_page = _paging(query, default=20, low=5, high=50)
        unknown = set(query) - {"name", "page", "per_page", "account.id", "status"}
        if unknown:
            raise ApiError(400, 1001, f"unknown query parameter {sorted(unknown)[0]}")  # emulator
        name = query.get("name")
        zones = [
            z
            for z in self.zones.values()
            if z.account_id == account and (name is None or z.name == name)
        ]
        return _page(zones, page, per_page, Zone.json)

    def _post_zone(self, body: Any, account: str) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            raise ApiError(400, 1001, "Invalid zone name: name is required")  # emulator
        given = body.get("account")
        if not isinstance(given, dict) or given.get("id") != account:
            raise ApiError(400, 1001, "account.id is required and must be the token's account")
        name = body["name"].lower()
        if name.endswith("."):
            raise ApiError(400, 1001, f"Invalid zone name {name!r}")  # emulator
        if any(z.name == name for z in self.zones.values()):
            raise ApiError(400, 1061, f"{name} already exists")
        return self._create_zone(name, account).json()

    def _create_zone(self, name: str, account: str) -> Zone:
        zone_id = uuid.uuid4().hex
        # Cloudflare assigns two of its nameservers to every zone (Nameservers docs).
        zone = Zone(zone_id, name, account, ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"])
        self.zones[zone_id] = zone
        return zone

    def _zone(self, zone_id: str, account: str) -> Zone:
        zone = self.zones.get(zone_id)
        if len(zone_id) > 32 or zone is None or zone.account_id != account:
            raise ApiError(
                400,
                7003,
                f"Could not route to /zones/{zone_id}, perhaps your object identifier is invalid?",
            )
        return zone

    def _dnssec(self, zone: Zone) -> dict[str, Any]:
        return {
            "status": zone.dnssec_status,
            "dnssec_multi_signer": zone.multi_signer,
            "dnssec_presigned": False,
        }

    def _patch_dnssec(self, zone: Zone, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"status", "dnssec_multi_signer"}:
            raise ApiError(400, 1001, "unknown DNSSEC setting")  # emulator
        if "status" in body:
            if body["status"] not in ("active", "disabled"):
                raise ApiError(400, 1001, "status must be active or disabled")
            zone.dnssec_status = body["status"]
        if "dnssec_multi_signer" in body:
            if not isinstance(body["dnssec_multi_signer"], bool):
                raise ApiError(400, 1001, "dnssec_multi_signer must be a boolean")
            zone.multi_signer = body["dnssec_multi_signer"]
        return self._dnssec(zone)

    def _dns_settings(self, zone: Zone) -> dict[str, Any]:
        # The SOA Cloudflare makes for a zone (DNS Settings: soa).
        return {
            "multi_provider": False,
            "ns_ttl": 86400,
            "soa": {
                "mname": zone.name_servers[0],
                "rname": "dns.cloudflare.com",
                "refresh": 10000,
                "retry": 2400,
                "expire": 604800,
                "min_ttl": 1800,
                "ttl": 3600,
            },
        }

    # -- records ---------------------------------------------------------------------------

    def _list_records(
        self, zone: Zone, query: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
        # List DNS Records: per_page from 1 to 5,000,000, default 100 (dns-records_per_page).
        page, per_page = _paging(query, default=100, low=1, high=self.max_per_page)
        unknown = set(query) - {"page", "per_page", "name", "type", "order", "direction"}
        if unknown:
            raise ApiError(400, 1001, f"unknown query parameter {sorted(unknown)[0]}")  # emulator
        records = [
            r
            for r in zone.records.values()
            if ("name" not in query or r["name"] == query["name"])
            and ("type" not in query or r["type"] == query["type"])
        ]
        # Stored records are replaced, never changed in place: they are sent as they are.
        return _page(records, page, per_page, lambda r: r)

    def _post_record(self, zone: Zone, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid("Request body must be a DNS record object")
        record = self._build(zone, body, None)
        self._check_conflicts(_at(zone.records.values(), record["name"]), record)
        zone.records[record["id"]] = record
        return record

    def _delete_record(self, zone: Zone, record_id: str) -> dict[str, Any]:
        if record_id not in zone.records:
            raise ApiError(404, 81044, "Record does not exist.")
        del zone.records[record_id]
        return {"id": record_id}

    def _batch(self, zone: Zone, body: Any) -> dict[str, Any]:
        """Batch DNS Records: deletes, patches, puts, posts in that order, in one
        transaction (any failure leaves the zone as it was), at most ``batch_limit``
        operations."""
        if not isinstance(body, dict):
            raise _invalid("Request body must be an object with deletes, patches, puts, posts")
        extra = sorted(set(body) - set(BATCH_KEYS))
        if extra:
            raise _invalid(f"Unknown batch field {extra[0]!r}")
        lists: dict[str, list[Any]] = {}
        for key in BATCH_KEYS:
            value = body.get(key, [])
            if not isinstance(value, list):
                raise _invalid(f"{key} must be an array")
            lists[key] = value
        total = sum(len(v) for v in lists.values())
        if total == 0:
            raise _invalid("A batch must contain at least one operation")  # emulator
        if total > self.batch_limit:
            raise ApiError(
                400,
                81085,  # emulator
                f"Batch of {total} operations exceeds the zone plan's limit of "
                f"{self.batch_limit} records per batch",
            )
        records = dict(zone.records)  # the transaction: committed only at the end
        by_name: dict[str, dict[str, dict[str, Any]]] = {}
        for record in records.values():
            by_name.setdefault(record["name"], {})[record["id"]] = record
        touched: set[str] = set()
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in BATCH_KEYS}
        for i, item in enumerate(lists["deletes"]):
            if not isinstance(item, dict) or set(item) != {"id"}:
                raise _invalid(f"deletes[{i}] must be an object with only an id")
            record_id = item["id"]
            if not isinstance(record_id, str) or record_id not in records:
                raise ApiError(404, 81044, f"deletes[{i}]: Record does not exist.")
            touched.add(record_id)
            gone = records.pop(record_id)
            del by_name[gone["name"]][record_id]
            out["deletes"].append(gone)
        for key in ("patches", "puts"):
            for i, item in enumerate(lists[key]):
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise _invalid(f"{key}[{i}] must be a record object with an id")
                old = records.get(item["id"])
                if old is None:
                    raise ApiError(404, 81044, f"{key}[{i}]: Record does not exist.")
                if item["id"] in touched:
                    raise _invalid(f"{key}[{i}]: record {item['id']} is changed twice in one batch")
                touched.add(item["id"])
                fields = {k: v for k, v in item.items() if k != "id"}
                if key == "patches":  # a patch changes only the fields it gives
                    merged: dict[str, Any] = {
                        k: old[k] for k in ("name", "type", "ttl", "proxied") if k in old
                    }
                    if "data" in old:
                        merged["data"] = old["data"]
                    else:
                        merged["content"] = old["content"]
                    if "priority" in old:
                        merged["priority"] = old["priority"]
                    merged.update(fields)
                    fields = merged
                try:
                    new = self._build(zone, fields, old)
                    del records[old["id"]]
                    del by_name[old["name"]][old["id"]]
                    self._check_conflicts(by_name.get(new["name"], {}).values(), new)
                except ApiError as exc:
                    raise _prefixed(exc, f"{key}[{i}]") from None
                records[new["id"]] = new
                by_name.setdefault(new["name"], {})[new["id"]] = new
                out[key].append(new)
        for i, item in enumerate(lists["posts"]):
            if not isinstance(item, dict):
                raise _invalid(f"posts[{i}] must be a record object")
            if "id" in item:
                raise _invalid(f"posts[{i}]: a new record takes no id")
            try:
                new = self._build(zone, item, None)
                self._check_conflicts(by_name.get(new["name"], {}).values(), new)
            except ApiError as exc:
                raise _prefixed(exc, f"posts[{i}]") from None
            records[new["id"]] = new
            by_name.setdefault(new["name"], {})[new["id"]] = new
            out["posts"].append(new)
        zone.records = records  # commit
        return out

    @staticmethod
    def _check_conflicts(at_name: Iterable[dict[str, Any]], new: dict[str, Any]) -> None:
        """A CNAME shares its name with nothing; no two records are identical."""
        for other in at_name:
            if other["id"] == new["id"]:
                continue
            if new["type"] == "CNAME" or other["type"] == "CNAME":
                if new["type"] == other["type"] == "CNAME":
                    raise ApiError(400, 81054, "A CNAME record with that host already exists.")
                raise ApiError(
                    400, 81053, "An A, AAAA, or CNAME record with that host already exists."
                )
            if other["type"] == new["type"] and _same_value(other, new):
                raise ApiError(400, 81058, "An identical record already exists.")

    def _build(
        self, zone: Zone, body: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """A stored record from a create/put body (or a patch merged onto ``old``)."""
        extra = sorted(set(body) - BODY_FIELDS)
        if extra:
            raise _invalid(f"Unknown field {extra[0]!r}")
        kind = body.get("type")
        if not isinstance(kind, str) or kind not in RECORD_TYPES:
            raise _invalid("Invalid or missing DNS record type", f"type {kind!r} is not supported")
        if old is not None and kind != old["type"]:
            raise _invalid("A record's type cannot be changed")  # emulator
        name = _record_name(body.get("name"), zone.name)
        ttl = body.get("ttl", TTL_AUTOMATIC)
        if (
            isinstance(ttl, bool)
            or not isinstance(ttl, int)
            or not (ttl == TTL_AUTOMATIC or self.ttl_min <= ttl <= TTL_MAX)
        ):
            raise ApiError(
                400,
                9021,
                f"TTL must be between {self.ttl_min} and {TTL_MAX} seconds, or 1 for Automatic.",
            )
        proxied = body.get("proxied", False)
        if not isinstance(proxied, bool):
            raise _invalid("proxied must be a boolean")
        if proxied and kind not in PROXIABLE:
            raise ApiError(400, 9004, "This record type cannot be proxied.")
        if kind == "DNSKEY" and not zone.multi_signer:
            # dnssec_multi_signer "is required for DNSKEY records (except those
            # automatically generated by Cloudflare) to be added to the zone" (DNSSEC).
            raise _invalid("DNSKEY records require multi-signer DNSSEC on the zone")
        record: dict[str, Any] = {
            "id": old["id"] if old is not None else self._new_id(),
            "zone_id": zone.id,
            "zone_name": zone.name,
            "name": name,
            "type": kind,
            "ttl": ttl,
            "proxied": proxied,
            "proxiable": kind in PROXIABLE,
            "comment": body.get("comment"),
            "tags": body.get("tags", []),
            "settings": {},
            "meta": {},
            "created_on": old["created_on"] if old is not None else "2026-01-01T00:00:00Z",
            "modified_on": "2026-01-01T00:00:00Z",
        }
        if kind in DATA_FIELDS:
            if "content" in body and old is None:
                raise _invalid(f"{kind} records take their value in data, not content")
            data = _check_data(kind, body.get("data"))
            record["data"] = data
            record["content"] = _data_content(kind, data)
            if kind == "SRV":
                record["priority"] = data["priority"]
        else:
            if "data" in body:
                raise _invalid(f"{kind} records take content, not data")
            record["content"] = _check_content(kind, body.get("content"))
        if kind in PRIORITY_TYPES:
            priority = body.get("priority")
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise _invalid(f"priority is required for {kind} records")
            if not 0 <= priority <= 65535:
                raise _invalid("priority must be between 0 and 65535")
            record["priority"] = priority
        _check_rdata(kind, record)
        return record

    def _new_id(self) -> str:
        return f"{next(self._ids):032x}"


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _at(records: Iterable[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r["name"] == name]


def _prefixed(exc: ApiError, where: str) -> ApiError:
    return ApiError(exc.status, exc.code, f"{where}: {exc.message}", exc.chain, exc.chain_code)


def _paging(query: Mapping[str, str], *, default: int, low: int, high: int) -> tuple[int, int]:
    try:
        page = int(query.get("page", "1"))
        per_page = int(query.get("per_page", str(default)))
    except ValueError:
        raise ApiError(400, 1001, "page and per_page must be integers") from None  # emulator
    if page < 1:
        raise ApiError(400, 1001, "page must be at least 1")  # emulator
    if not low <= per_page <= high:
        raise ApiError(400, 1001, f"per_page must be between {low} and {high}")  # emulator
    return page, per_page


def _page(
    items: list[Any], page: int, per_page: int, render: Callable[[Any], dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
    chunk = items[(page - 1) * per_page : page * per_page]
    info = {
        "page": page,
        "per_page": per_page,
        "count": len(chunk),
        "total_count": len(items),
        "total_pages": max(1, math.ceil(len(items) / per_page)),
    }
    return [render(i) for i in chunk], info, 200


def _record_name(value: Any, zone: str) -> str:
    """ "DNS record name (or @ for the zone apex) in Punycode": a name outside the zone is
    taken as relative to it, as the dashboard does."""
    if not isinstance(value, str) or not value:
        raise _invalid("name is required")
    if not value.isascii():
        raise _invalid("DNS record name must be in Punycode", f"name {value!r}")
    name = value.lower().removesuffix(".")
    if name == "@":
        return zone
    if name != zone and not name.endswith("." + zone):
        name = f"{name}.{zone}"
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise _invalid("Invalid DNS record name", str(exc)) from None
    if len(name) > 253:
        raise _invalid("DNS record name is too long")
    return name


def _hostname(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or not value.isascii():
        raise _invalid(f"{what} must be a valid hostname in Punycode")
    try:
        dns.name.from_text(value)
    except dns.exception.DNSException as exc:
        raise _invalid(f"{what} must be a valid hostname", str(exc)) from None
    return value.removesuffix(".") or "."


def _check_content(kind: str, content: Any) -> str:
    if not isinstance(content, str) or not content:
        raise _invalid(f"content is required for {kind} records")
    if kind == "A":
        try:
            return str(ipaddress.IPv4Address(content))
        except ValueError:
            raise ApiError(
                400, 9005, "Content for A record must be a valid IPv4 address."
            ) from None
    if kind == "AAAA":
        try:
            return str(ipaddress.IPv6Address(content))
        except ValueError:
            raise ApiError(
                400, 9005, "Content for AAAA record must be a valid IPv6 address."
            ) from None
    if kind in ("CNAME", "NS", "PTR", "MX"):
        return _hostname(content, "content")
    if kind == "TXT":
        return _txt_content(content)
    if kind == "OPENPGPKEY":
        try:
            base64.b64decode(content, validate=True)
        except binascii.Error:
            raise _invalid("content must be a Base64-encoded OpenPGP key") from None
        return content
    raise AssertionError(kind)


def _txt_content(content: str) -> str:
    """ "The content must consist of quoted character strings (RFC 1035), each with a length
    of up to 255 bytes. Strings exceeding this allowed maximum length are automatically
    split." Unquoted text is one string. Stored as the quoted strings, one space apart."""
    if not content.startswith('"'):
        raw = content.encode()
        chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    else:
        try:
            rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, content)
        except (dns.exception.DNSException, ValueError) as exc:
            raise _invalid("TXT content must be quoted character strings", str(exc)) from None
        chunks = list(rdata.strings)  # type: ignore[attr-defined]
    rdata = dns.rdata.from_wire(
        dns.rdataclass.IN,
        dns.rdatatype.TXT,
        b"".join(bytes((len(c),)) + c for c in chunks),
        0,
        sum(len(c) + 1 for c in chunks),
    )
    return str(rdata.to_text())


def _check_data(kind: str, data: Any) -> dict[str, Any]:
    spec = DATA_FIELDS[kind]
    if not isinstance(data, dict):
        raise _invalid(f"data is required for {kind} records")
    extra = sorted(set(data) - set(spec))
    if extra:
        raise _invalid(f"Unknown field data.{extra[0]} for {kind} records")
    out: dict[str, Any] = {}
    for name, (form, high) in spec.items():
        if name not in data:
            raise _invalid(f"data.{name} is required for {kind} records")
        value = data[name]
        if form == "int":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise _invalid(f"data.{name} must be an integer from 0 to {high}")
        elif not isinstance(value, str):
            raise _invalid(f"data.{name} must be a string")
        elif form == "host":
            value = _hostname(value, f"data.{name}")
        elif form == "token" and not (value.isascii() and value.isalnum()):
            raise _invalid(f"data.{name} must be letters and digits")
        elif form == "hex":
            try:
                bytes.fromhex(value)
            except ValueError:
                raise _invalid(f"data.{name} must be hexadecimal") from None
        elif form == "b64":
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                raise _invalid(f"data.{name} must be Base64") from None
        out[name] = value
    return out


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _data_content(kind: str, d: Mapping[str, Any]) -> str:
    """The record's presentation text, as the API shows in ``content`` (SRV and URI
    without the priority, which is a field of its own)."""
    if kind == "CAA":
        return f"{d['flags']} {d['tag']} {_quoted(d['value'])}"
    if kind == "SRV":
        return f"{d['weight']} {d['port']} {d['target']}"
    if kind == "URI":
        return f"{d['weight']} {_quoted(d['target'])}"
    if kind == "DS":
        return f"{d['key_tag']} {d['algorithm']} {d['digest_type']} {d['digest']}"
    if kind == "DNSKEY":
        return f"{d['flags']} {d['protocol']} {d['algorithm']} {d['public_key']}"
    if kind in ("TLSA", "SMIMEA"):
        return f"{d['usage']} {d['selector']} {d['matching_type']} {d['certificate']}"
    if kind == "SSHFP":
        return f"{d['algorithm']} {d['type']} {d['fingerprint']}"
    if kind in ("HTTPS", "SVCB"):
        return f"{d['priority']} {d['target']} {d['value']}".rstrip()
    if kind == "NAPTR":
        return (
            f"{d['order']} {d['preference']} {_quoted(d['flags'])} {_quoted(d['service'])} "
            f"{_quoted(d['regex'])} {d['replacement']}"
        )
    if kind == "CERT":
        return f"{d['type']} {d['key_tag']} {d['algorithm']} {d['certificate']}"
    raise AssertionError(kind)


def _presentation(kind: str, record: Mapping[str, Any]) -> str:
    """The whole rdata as zone-file text, to let dnspython judge it."""
    content: str = record["content"]
    d = record.get("data", {})
    if kind in ("CNAME", "NS", "PTR"):
        return _fq(content)
    if kind == "MX":
        return f"{record['priority']} {_fq(content)}"
    if kind == "SRV":
        return f"{d['priority']} {d['weight']} {d['port']} {_fq(d['target'])}"
    if kind == "URI":
        return f"{record['priority']} {content}"
    if kind in ("HTTPS", "SVCB"):
        return f"{d['priority']} {_fq(d['target'])} {d['value']}"
    if kind == "NAPTR":
        return str(content).rsplit(" ", 1)[0] + " " + _fq(d["replacement"])
    return str(content)


def _fq(host: str) -> str:
    return host if host == "." else host + "."


def _check_rdata(kind: str, record: Mapping[str, Any]) -> None:
    text = _presentation(kind, record)
    try:
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(kind), text)
    except (dns.exception.DNSException, ValueError) as exc:
        raise _invalid(f"Invalid {kind} record", f"{text!r}: {exc}") from None


def _same_value(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(
        a.get("content") == b.get("content")
        and a.get("data") == b.get("data")
        and a.get("priority") == b.get("priority")
    )
