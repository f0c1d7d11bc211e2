"""A strict emulator of the parts of the Hetzner Cloud API's DNS (zones and RRSets) that the
``hetzner`` sync target uses, written from the published reference
(https://docs.hetzner.cloud/reference/cloud, sections named in the comments below).

It is an aiohttp app in its own thread on 127.0.0.1 (an ephemeral port). A request the
reference does not allow fails as the API documents it, with its error body
``{"error": {"code", "message", "details"}}`` ("Errors"): a wrong token, a page size above
the maximum, an unknown field, a bad RRSet name, TTL or value, an empty or duplicated record
list, a SOA written by hand, an RRSet created twice. The rate limit ("Rate Limiting") is a
bucket of ``rate_limit`` requests refilled evenly over ``rate_window`` seconds, read from an
injectable clock, answered with 429 ``rate_limit_exceeded`` and the ``RateLimit-*`` headers.

Simplification: a write changes the data at once; its action ("Actions") reports
``running`` until it has been read ``settle_polls`` times, then ``success``, so the client's
wait for actions is exercised without any sleep here.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from aiohttp import web

from sync.providers.testkit.serve import AppThread

# "Zone RRSets": the types an RRSet may have.
RRSET_TYPES = frozenset(
    {
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
        "SOA",
        "SRV",
        "SVCB",
        "TLSA",
        "TXT",
    }
)
TTL_MIN, TTL_MAX = 60, 2_147_483_647  # "Change an RRSet's TTL": between 60s and 2147483647s
PER_PAGE_DEFAULT, PER_PAGE_MAX = 25, 50  # "Pagination"
# "Zones - Create a Zone": a default SOA and three NS records with the assigned nameservers.
ASSIGNED_NAMESERVERS = (
    "hydrogen.ns.hetzner.com.",
    "oxygen.ns.hetzner.com.",
    "helium.ns.hetzner.de.",
)
T = TypeVar("T")
_LABEL = re.compile(r"^(\*|[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)$")
_TXT_VALUE = re.compile(r'^"(?:[^"\\]|\\.)*"(?: "(?:[^"\\]|\\.)*")*$')


class ApiError(Exception):
    """An error answered with the documented body ("Errors")."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}


def invalid(field_name: str, message: str) -> ApiError:
    """``invalid_input`` naming the field, as in the reference's example response."""
    return ApiError(
        400,
        "invalid_input",
        f"invalid input in field '{field_name}': {message}",
        {"fields": [{"name": field_name, "messages": [message]}]},
    )


def check_records(rtype: str, records: Any, field_name: str) -> list[dict[str, Any]]:
    # "Records of the RRSet. Must not be empty and must only contain distinct record
    # values."
    if not isinstance(records, list) or not records:
        raise invalid(field_name, "must not be empty")
    seen: set[str] = set()
    result: list[dict[str, Any]] = []
    for i, record in enumerate(records):
        where = f"{field_name}[{i}]"
        if not isinstance(record, dict):
            raise invalid(where, "must be an object with value and comment")
        for key in record:
            if key not in ("value", "comment"):
                raise invalid(f"{where}.{key}", "unknown field")
        value = record.get("value")
        comment = record.get("comment", "")
        if not isinstance(value, str) or not value:
            raise invalid(f"{where}.value", "is required")
        if not isinstance(comment, str):
            raise invalid(f"{where}.comment", "must be a string")
        check_value(rtype, value, f"{where}.value")
        if value in seen:
            raise invalid(field_name, "must only contain distinct record values")
        seen.add(value)
        result.append({"value": value, "comment": comment})
    return result


def check_value(rtype: str, value: str, field_name: str) -> None:
    # Zone-file presentation format; TXT as one or more quoted strings of at most 255
    # characters each ("Zone RRSets"). Names in values must be fully qualified here (what
    # the target sends), stricter than the API, which also takes names relative to the zone.
    if rtype == "TXT" and not _TXT_VALUE.match(value):
        raise invalid(field_name, "must be one or more quoted strings")
    try:
        rdata = dns.rdata.from_text(
            dns.rdataclass.IN, dns.rdatatype.from_text(rtype), value, None, relativize=False
        )
        rdata.to_wire()
    except (dns.exception.DNSException, ValueError) as exc:
        raise invalid(field_name, f"is not a valid {rtype} value ({exc})") from None


@dataclass
class RRSetData:
    name: str
    type: str
    ttl: int | None
    records: list[dict[str, Any]]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ZoneRecord:
    id: int
    name: str
    ttl: int
    labels: dict[str, str]
    created: str
    rrsets: dict[tuple[str, str], RRSetData] = field(default_factory=dict)


@dataclass
class Action:
    id: int
    command: str
    zone_id: int
    reads: int = 0
    failed: bool = False


@dataclass
class HetznerEmulator:
    """The API for one project. ``token`` is the project's API token; ``log`` records
    (method, path with query, status) for every request; ``applied`` records every write
    that changed data as (command, zone, rrset id)."""

    token: str = "hz-token-0123456789abcdef"
    rate_limit: int = 3600  # "Rate Limiting": 3600 requests per hour and per project
    rate_window: float = 3600.0
    clock: Callable[[], float] = time.time
    settle_polls: int = 1
    port: int = 0
    log: list[tuple[str, str, int]] = field(default_factory=list)
    applied: list[tuple[str, str, str]] = field(default_factory=list)
    zones: dict[int, ZoneRecord] = field(default_factory=dict)
    # Test hooks: the next N writes are applied and then answered with a 500, as a backend
    # failing after the commit would; the next N writes are answered 503 unprocessed.
    fail_after_apply: int = 0
    fail_before: int = 0
    fail_actions: bool = False  # actions end in "error" (publishing failed)
    # Another client of the same project spends the whole budget before every Nth request
    # (0: never): 429s arrive with no exhausted RateLimit-Remaining seen before them.
    drained_every: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1000)
        self._action_ids = itertools.count(1)
        self.actions: dict[int, Action] = {}
        self._lock = threading.Lock()
        self._server = AppThread(self._handle, "Hetzner emulator", self.port)
        self._tokens = float(self.rate_limit)
        self._refilled = self.clock()
        self._seen = 0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API's base URL, like the public ``https://api.hetzner.cloud/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> HetznerEmulator:
        self._server.start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> HetznerEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------------------------

    def add_zone(self, name: str, ttl: int = 3600) -> ZoneRecord:
        """A zone as the console would create it (SOA and the assigned NS included)."""
        with self._lock:
            return self._create_zone(name, ttl, {})

    def put_rrset(
        self, zone: str, name: str, rtype: str, values: list[str], ttl: int | None = None
    ) -> None:
        """An RRSet written by someone else (the console, another tool)."""
        with self._lock:
            record = self._zone_by_name(zone)
            record.rrsets[(name, rtype)] = RRSetData(
                name, rtype, ttl, [{"value": v, "comment": ""} for v in values]
            )

    def rrsets(self, zone: str) -> dict[tuple[str, str], RRSetData]:
        with self._lock:
            return dict(self._zone_by_name(zone).rrsets)

    def zone_id(self, name: str) -> int:
        with self._lock:
            return self._zone_by_name(name).id

    def writes(self) -> int:
        """Requests that were not GETs (what the rate limit and the batching are about)."""
        return sum(1 for method, _, _ in self.log if method != "GET")

    def _zone_by_name(self, name: str) -> ZoneRecord:
        for zone in self.zones.values():
            if zone.name == name:
                return zone
        raise KeyError(name)

    # -- rate limit ("Rate Limiting") ------------------------------------------------------

    def _take(self) -> tuple[bool, dict[str, str]]:
        now = self.clock()
        self._seen += 1
        if self.drained_every and self._seen % self.drained_every == 0:
            self._tokens = 0.0
            self._refilled = now
        rate = self.rate_limit / self.rate_window
        self._tokens = min(float(self.rate_limit), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        allowed = self._tokens >= 1.0
        if allowed:
            self._tokens -= 1.0
        missing = self.rate_limit - self._tokens
        headers = {
            "RateLimit-Limit": str(self.rate_limit),
            "RateLimit-Remaining": str(int(self._tokens)),
            # A UNIX timestamp of when the full number of requests is available again.
            "RateLimit-Reset": str(int(now + missing / rate + 0.999)),
        }
        return allowed, headers

    # -- dispatch --------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            status, payload, headers = self._dispatch(request, body)
            self.log.append((request.method, request.path_qs, status))
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    def _dispatch(self, request: web.Request, body: bytes) -> tuple[int, Any, dict[str, str]]:
        allowed, headers = self._take()
        if not allowed:
            error = ApiError(429, "rate_limit_exceeded", "limit of requests per hour reached")
            return 429, self._error_body(error), headers
        if self.fail_before > 0 and request.method != "GET":
            self.fail_before -= 1
            error = ApiError(503, "unavailable", "service temporarily unavailable")
            return 503, self._error_body(error), headers
        try:
            # "Authentication": every request carries "Authorization: Bearer TOKEN".
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(401, "unauthorized", "unable to authenticate")
            status, payload = self._route(request, body)
        except ApiError as exc:
            return exc.status, self._error_body(exc), headers
        if request.method != "GET" and self.fail_after_apply > 0:
            self.fail_after_apply -= 1
            error = ApiError(500, "server_error", "error within the API backend")
            return 500, self._error_body(error), headers
        return status, payload, headers

    @staticmethod
    def _error_body(error: ApiError) -> dict[str, Any]:
        return {"error": {"code": error.code, "message": error.message, "details": error.details}}

    def _route(self, request: web.Request, body: bytes) -> tuple[int, Any]:
        parts = [p for p in request.path.split("/") if p]
        if not parts or parts[0] != "v1":
            raise ApiError(404, "not_found", "not found")
        parts = parts[1:]
        method = request.method
        query = request.query
        if parts == ["zones"] and method == "GET":
            return 200, self._list_zones(query)
        if parts == ["zones"] and method == "POST":
            return 201, self._post_zone(self._json(body))
        if parts == ["actions"] and method == "GET":
            return 200, self._get_actions(query)
        if len(parts) == 2 and parts[0] == "actions" and method == "GET":
            return 200, {"action": self._read_action(self._int(parts[1], "id"))}
        if len(parts) >= 2 and parts[0] == "zones":
            zone = self._find_zone(parts[1])
            rest = parts[2:]
            if not rest and method == "GET":
                self._no_query(query)
                return 200, {"zone": self._zone_json(zone)}
            if not rest and method == "DELETE":
                del self.zones[zone.id]
                self.applied.append(("delete_zone", zone.name, ""))
                return 201, {"action": self._action("delete_zone", zone)}
            if rest == ["rrsets"] and method == "GET":
                return 200, self._list_rrsets(zone, query)
            if rest == ["rrsets"] and method == "POST":
                return 201, self._post_rrset(zone, self._json(body))
            if len(rest) >= 3 and rest[0] == "rrsets":
                key = (rest[1], rest[2])
                tail = rest[3:]
                if not tail and method == "GET":
                    return 200, {"rrset": self._rrset_json(zone, self._rrset(zone, key))}
                if not tail and method == "DELETE":
                    return 201, self._delete_rrset(zone, key)
                if len(tail) == 2 and tail[0] == "actions" and method == "POST":
                    return 201, self._rrset_action(zone, key, tail[1], self._json(body))
        raise ApiError(404, "not_found", f"no route for {method} {request.path}")

    # -- request parsing -------------------------------------------------------------------

    @staticmethod
    def _json(body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(400, "json_error", "invalid JSON input in your request") from None
        if not isinstance(data, dict):
            raise ApiError(400, "json_error", "the request body must be a JSON object")
        return data

    @staticmethod
    def _fields(data: dict[str, Any], allowed: set[str], required: set[str]) -> None:
        for key in data:
            if key not in allowed:
                raise invalid(key, "unknown field")
        for key in sorted(required):
            if key not in data:
                raise invalid(key, "is required")

    @staticmethod
    def _int(text: str, name: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise invalid(name, "must be an integer") from None

    @staticmethod
    def _no_query(query: Any) -> None:
        for key in query:
            raise invalid(key, "unknown query parameter")

    def _page(self, query: Any, allowed: set[str]) -> tuple[int, int]:
        for key in query:
            if key not in allowed | {"page", "per_page"}:
                raise invalid(key, "unknown query parameter")
        page = self._int(query.get("page", "1"), "page")
        per_page = self._int(query.get("per_page", str(PER_PAGE_DEFAULT)), "per_page")
        if page < 1:
            raise invalid("page", "must be at least 1")
        if not 1 <= per_page <= PER_PAGE_MAX:
            raise invalid("per_page", f"must be between 1 and {PER_PAGE_MAX}")
        return page, per_page

    @staticmethod
    def _paginated(
        key: str, items: list[T], page: int, per_page: int, show: Callable[[T], Any]
    ) -> dict[str, Any]:
        # "Pagination": meta.pagination with page numbers, null where there is none.
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        return {
            key: [show(item) for item in chunk],
            "meta": {
                "pagination": {
                    "page": page,
                    "per_page": per_page,
                    "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None,
                    "last_page": last,
                    "total_entries": len(items),
                }
            },
        }

    # -- zones ("Zones") -------------------------------------------------------------------

    def _find_zone(self, id_or_name: str) -> ZoneRecord:
        if id_or_name.isdigit():
            zone = self.zones.get(int(id_or_name))
            if zone is not None:
                return zone
        else:
            for zone in self.zones.values():
                if zone.name == id_or_name:
                    return zone
        raise ApiError(404, "not_found", f"zone with ID or name {id_or_name!r} not found")

    def _list_zones(self, query: Any) -> dict[str, Any]:
        page, per_page = self._page(query, {"name", "mode", "label_selector", "sort"})
        zones = sorted(self.zones.values(), key=lambda z: z.id)
        if "name" in query:
            zones = [z for z in zones if z.name == query["name"]]
        return self._paginated("zones", zones, page, per_page, self._zone_json)

    def _check_zone_name(self, name: Any) -> str:
        # "Create a Zone": lower case, no final dot, punycode for IDNs, no subdomains of
        # public suffixes enforced here beyond the syntax.
        if not isinstance(name, str) or not name:
            raise invalid("name", "must be a domain name")
        if name != name.lower() or name.endswith(".") or "." not in name:
            raise invalid("name", "must be in lower case, with no final dot")
        if not all(_LABEL.match(label) and label != "*" for label in name.split(".")):
            raise invalid("name", "is not a valid domain name")
        return name

    def _post_zone(self, data: dict[str, Any]) -> dict[str, Any]:
        self._fields(
            data,
            {"name", "mode", "ttl", "labels", "primary_nameservers", "rrsets", "zonefile"},
            {"name", "mode"},
        )
        name = self._check_zone_name(data["name"])
        if data["mode"] != "primary":
            raise invalid("mode", "only primary zones are emulated")
        ttl = data.get("ttl", 3600)
        self._check_ttl(ttl, "ttl", allow_null=False)
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise invalid("labels", "must be an object")
        if any(z.name == name for z in self.zones.values()):
            raise ApiError(
                409, "uniqueness_error", "zone name is already used", {"fields": [{"name": "name"}]}
            )
        rrsets_in = data.get("rrsets", [])
        if not isinstance(rrsets_in, list):
            raise invalid("rrsets", "must be a list")
        # Validate every RRSet before creating anything: the request is all or nothing.
        parsed = [self._parse_rrset(name, r, f"rrsets[{i}]") for i, r in enumerate(rrsets_in)]
        keys = [(r.name, r.type) for r in parsed]
        if len(set(keys)) != len(keys):
            raise ApiError(409, "uniqueness_error", "duplicate RRSet in rrsets")
        zone = self._create_zone(name, int(ttl), labels)
        for rrset in parsed:
            zone.rrsets[(rrset.name, rrset.type)] = rrset
        self.applied.append(("create_zone", name, ""))
        return {"zone": self._zone_json(zone), "action": self._action("create_zone", zone)}

    def _create_zone(self, name: str, ttl: int, labels: dict[str, str]) -> ZoneRecord:
        zone = ZoneRecord(next(self._ids), name, ttl, labels, "2026-12-07T00:00:00+00:00")
        soa = f"{ASSIGNED_NAMESERVERS[0]} dns.hetzner.com. 2026120701 86400 10800 3600000 3600"
        zone.rrsets[("@", "SOA")] = RRSetData("@", "SOA", None, [{"value": soa, "comment": ""}])
        zone.rrsets[("@", "NS")] = RRSetData(
            "@", "NS", None, [{"value": ns, "comment": ""} for ns in ASSIGNED_NAMESERVERS]
        )
        self.zones[zone.id] = zone
        return zone

    def _zone_json(self, zone: ZoneRecord) -> dict[str, Any]:
        return {
            "id": zone.id,
            "name": zone.name,
            "created": zone.created,
            "mode": "primary",
            "ttl": zone.ttl,
            "labels": zone.labels,
            "protection": {"delete": False},
            "status": "ok",
            "record_count": sum(len(r.records) for r in zone.rrsets.values()),
            "registrar": "other",
            "primary_nameservers": [],
            "authoritative_nameservers": {
                "assigned": list(ASSIGNED_NAMESERVERS),
                "delegated": [],
                "delegation_last_check": None,
                "delegation_status": "unknown",
            },
        }

    # -- RRSets ("Zone RRSets", "Zone RRSet Actions") --------------------------------------

    def _rrset(self, zone: ZoneRecord, key: tuple[str, str]) -> RRSetData:
        rrset = zone.rrsets.get(key)
        if rrset is None:
            raise ApiError(404, "not_found", f"RRSet {key[0]}/{key[1]} not found")
        return rrset

    def _rrset_json(self, zone: ZoneRecord, rrset: RRSetData) -> dict[str, Any]:
        return {
            "id": f"{rrset.name}/{rrset.type}",
            "name": rrset.name,
            "type": rrset.type,
            "ttl": rrset.ttl,
            "labels": rrset.labels,
            "protection": {"change": False},
            # "The order of records returned in responses is not guaranteed": reversed here,
            # so a client comparing in the order it sent fails.
            "records": [dict(r) for r in reversed(rrset.records)],
            "zone": zone.id,
        }

    def _list_rrsets(self, zone: ZoneRecord, query: Any) -> dict[str, Any]:
        page, per_page = self._page(query, {"name", "type", "label_selector", "sort"})
        rrsets = list(zone.rrsets.values())
        if "name" in query:
            rrsets = [r for r in rrsets if r.name == query["name"]]
        types = query.getall("type", [])
        if types:
            rrsets = [r for r in rrsets if r.type in types]
        return self._paginated(
            "rrsets", rrsets, page, per_page, lambda r: self._rrset_json(zone, r)
        )

    def _check_rrset_name(self, zone: str, name: Any, field_name: str) -> str:
        # "Zone RRSets": lower case, no final dot, not ending with the zone name; "@" is
        # the apex.
        if not isinstance(name, str) or not name:
            raise invalid(field_name, "must be a name relative to the zone, or @")
        if name == "@":
            return name
        if name != name.lower() or name.endswith(".") or name == zone or name.endswith("." + zone):
            raise invalid(field_name, "must be in lower case, relative to the zone, no final dot")
        labels = name.split(".")
        if not all(_LABEL.match(label) for label in labels) or "*" in labels[1:]:
            raise invalid(field_name, "is not a valid record name")
        return name

    @staticmethod
    def _check_ttl(ttl: Any, field_name: str, allow_null: bool) -> None:
        if ttl is None and allow_null:
            return
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not TTL_MIN <= ttl <= TTL_MAX:
            raise invalid(field_name, f"must be between {TTL_MIN} and {TTL_MAX}")

    def _parse_rrset(self, zone: str, data: Any, where: str) -> RRSetData:
        if not isinstance(data, dict):
            raise invalid(where, "must be an object")
        self._fields(
            data, {"name", "type", "ttl", "labels", "records"}, {"name", "type", "records"}
        )
        name = self._check_rrset_name(zone, data["name"], f"{where}.name" if where else "name")
        rtype = data["type"]
        prefix = f"{where}." if where else ""
        if rtype not in RRSET_TYPES:
            raise invalid(f"{prefix}type", f"must be one of {', '.join(sorted(RRSET_TYPES))}")
        if rtype == "SOA":  # created and deleted with the zone
            raise invalid(f"{prefix}type", "SOA RRSets are managed by the zone")
        if rtype == "CNAME" and name == "@":
            raise invalid(f"{prefix}name", "a CNAME cannot be at the zone apex")
        ttl = data.get("ttl")
        self._check_ttl(ttl, f"{prefix}ttl", allow_null=True)
        records = check_records(rtype, data["records"], f"{prefix}records")
        if rtype == "CNAME" and len(records) != 1:
            raise invalid(f"{prefix}records", "a CNAME RRSet holds exactly one record")
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise invalid(f"{prefix}labels", "must be an object")
        return RRSetData(name, rtype, ttl, records, labels)

    def _post_rrset(self, zone: ZoneRecord, data: dict[str, Any]) -> dict[str, Any]:
        rrset = self._parse_rrset(zone.name, data, "")
        key = (rrset.name, rrset.type)
        if key in zone.rrsets:
            raise ApiError(
                409,
                "uniqueness_error",
                f"RRSet {rrset.name}/{rrset.type} already exists",
                {"fields": [{"name": "name"}, {"name": "type"}]},
            )
        zone.rrsets[key] = rrset
        self.applied.append(("create_rrset", zone.name, f"{rrset.name}/{rrset.type}"))
        return {
            "rrset": self._rrset_json(zone, rrset),
            "action": self._action("create_rrset", zone),
        }

    def _delete_rrset(self, zone: ZoneRecord, key: tuple[str, str]) -> dict[str, Any]:
        rrset = self._rrset(zone, key)
        if rrset.type == "SOA":
            raise invalid("type", "SOA RRSets are managed by the zone")
        del zone.rrsets[key]
        self.applied.append(("delete_rrset", zone.name, f"{key[0]}/{key[1]}"))
        return {"action": self._action("delete_rrset", zone)}

    def _rrset_action(
        self, zone: ZoneRecord, key: tuple[str, str], command: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        rrset = self._rrset(zone, key)
        if command == "set_records":
            self._fields(data, {"records"}, {"records"})
            if rrset.type == "SOA":
                raise invalid("type", "SOA RRSets are managed by the zone")
            records = check_records(rrset.type, data["records"], "records")
            if rrset.type == "CNAME" and len(records) != 1:
                raise invalid("records", "a CNAME RRSet holds exactly one record")
            rrset.records = records
        elif command == "change_ttl":
            self._fields(data, {"ttl"}, {"ttl"})
            self._check_ttl(data["ttl"], "ttl", allow_null=True)
            rrset.ttl = data["ttl"]
        else:
            raise ApiError(404, "not_found", f"no action {command!r} is emulated")
        self.applied.append((command, zone.name, f"{key[0]}/{key[1]}"))
        return {"action": self._action(command, zone)}

    # -- actions ("Actions") ---------------------------------------------------------------

    def _action(self, command: str, zone: ZoneRecord) -> dict[str, Any]:
        action = Action(next(self._action_ids), command, zone.id, failed=self.fail_actions)
        self.actions[action.id] = action
        return self._action_json(action)

    def _action_json(self, action: Action) -> dict[str, Any]:
        done = action.reads >= self.settle_polls
        status = ("error" if action.failed else "success") if done else "running"
        error = {"code": "action_failed", "message": "publishing the zone failed"}
        return {
            "id": action.id,
            "command": action.command,
            "status": status,
            "progress": 100 if done else 0,
            "started": "2026-12-07T00:00:00+00:00",
            "finished": "2026-12-07T00:00:01+00:00" if done else None,
            "resources": [{"id": action.zone_id, "type": "zone"}],
            "error": error if status == "error" else None,
        }

    def _read_action(self, action_id: int) -> dict[str, Any]:
        action = self.actions.get(action_id)
        if action is None:
            raise ApiError(404, "not_found", f"action {action_id} not found")
        body = self._action_json(action)
        action.reads += 1
        return body

    def _get_actions(self, query: Any) -> dict[str, Any]:
        # "Get multiple Actions": by id only (listing all was removed), one id per `id`.
        for key in query:
            if key not in ("id", "page", "per_page", "sort", "status"):
                raise invalid(key, "unknown query parameter")
        ids = query.getall("id", [])
        if not ids:
            raise invalid("id", "is required")
        return {"actions": [self._read_action(self._int(i, "id")) for i in ids]}
