"""The HTTP API of one pdns server (on the shared client, :mod:`sync.providers.http`), and
the DNS queries that check what pdns serves."""

from __future__ import annotations

import json
import json.encoder
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
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
from sync.providers.capabilities import RateBudget
from sync.providers.http import Account, HttpClient, Response
from sync.providers.powerdns.codec import zone_id
from sync.providers.powerdns.config import PowerDnsSettings
from sync.settings import (
    Address,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("sync.providers.powerdns")


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


async def query_ns(zone: dns.name.Name, server: Address, timeout: float) -> list[dns.name.Name]:
    """The zone's apex NS set as ``server`` answers it authoritatively."""
    response = await query(zone, dns.rdatatype.NS, server, timeout)
    if response is None or not response.flags & dns.flags.AA:
        return []
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name == zone:
            return sorted(r.target for r in rrset)
    return []


async def query(
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
