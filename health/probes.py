"""Probes: one check of one member, bounded in time and resources.

Every probe opens one connection and closes it, ends within the check's timeout, and reads
at most :data:`BODY_LIMIT` bytes of an HTTP body. A probe never raises for what the member
does: it returns a :class:`ProbeResult` whose detail names what failed, worded for an
operator ("HTTP 503 from 192.0.2.10:8080/healthz").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

from health.config import Check
from settings import format_duration

# The body substring is looked for in this much of the body; the rest is never read.
BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class ProbeResult:
    """One check's outcome: ``ok``, and what was seen (or what failed)."""

    ok: bool
    detail: str


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def run_probe(check: Check, address: str) -> ProbeResult:
    """The check of ``check.kind`` against ``address``, ended after ``check.timeout``."""
    where = endpoint(address, check.port)
    try:
        async with asyncio.timeout(check.timeout):
            if check.kind == "tcp":
                return await _tcp(address, check.port)
            if check.kind == "dns":
                return await _dns(check, address)
            return await _http(check, address)
    except TimeoutError:
        return ProbeResult(False, f"{where}: timeout after {format_duration(check.timeout)}")
    except ConnectionRefusedError:
        return ProbeResult(False, f"{where}: connection refused")
    except aiohttp.ClientConnectorCertificateError as exc:
        return ProbeResult(False, f"{where}: certificate not accepted: {exc.certificate_error}")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, ConnectionRefusedError):
            return ProbeResult(False, f"{where}: connection refused")
        return ProbeResult(False, f"{where}: cannot connect: {exc.os_error.strerror or exc}")
    except aiohttp.ClientError as exc:
        return ProbeResult(False, f"{where}: HTTP error: {exc}")
    except dns.exception.DNSException as exc:
        return ProbeResult(False, f"{where}: DNS error: {exc}")
    except OSError as exc:
        return ProbeResult(False, f"{where}: {exc.strerror or exc}")


async def _tcp(address: str, port: int) -> ProbeResult:
    _, writer = await asyncio.open_connection(address, port)
    writer.close()
    with contextlib.suppress(OSError):  # the connect succeeded, which is what was checked
        await writer.wait_closed()
    return ProbeResult(True, f"{endpoint(address, port)}: connected")


@functools.cache
def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying context (the system's CAs, or only those of ``ca_file``); one per CA file,
    as loading a CA bundle costs more than a probe."""
    return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))


async def _http(check: Check, address: str) -> ProbeResult:
    where = endpoint(address, check.port)
    url = f"{check.kind}://{where}{check.path}"
    tls: ssl.SSLContext | bool = False
    if check.kind == "https":
        tls = _tls_context(check.ca_file) if check.verify else False
    headers = {"Accept-Encoding": "identity", "Connection": "close"}
    if check.host:
        headers["Host"] = check.host
    server_name = (check.server_name or check.host) if check.kind == "https" else None
    # One connection, closed after; no proxies from the environment; no decompression, so
    # the bounded read is bounded in what the member sends.
    connector = aiohttp.TCPConnector(limit=1, force_close=True, ssl=tls)
    async with (
        aiohttp.ClientSession(connector=connector, auto_decompress=False) as session,
        session.get(
            url, headers=headers, allow_redirects=False, server_hostname=server_name
        ) as response,
    ):
        shown = f"{where}{check.path}"
        if response.status not in check.expect:
            return ProbeResult(False, f"HTTP {response.status} from {shown}")
        if check.body is None:
            return ProbeResult(True, f"HTTP {response.status} from {shown}")
        body = await _read_bounded(response.content, BODY_LIMIT)
        if check.body.encode() not in body:
            return ProbeResult(
                False,
                f"HTTP {response.status} from {shown} without {check.body!r} "
                f"in the first {len(body)} bytes",
            )
        return ProbeResult(True, f"HTTP {response.status} from {shown} with {check.body!r}")


async def _read_bounded(stream: aiohttp.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def _dns(check: Check, address: str) -> ProbeResult:
    assert check.qname is not None  # config.parse_check requires it for a dns check
    where = endpoint(address, check.port)
    query = dns.message.make_query(check.qname, check.qtype)
    response = await dns.asyncquery.udp(
        query, address, timeout=check.timeout, port=check.port, ignore_unexpected=True
    )
    rcode = response.rcode()
    asked = f"{check.qname} {check.qtype.name}"
    if rcode != check.expect_rcode:
        return ProbeResult(
            False,
            f"{where}: {dns.rcode.to_text(rcode)} for {asked}, "
            f"expected {dns.rcode.to_text(check.expect_rcode)}",
        )
    if check.expect_answer and not any(
        rrset.name == check.qname and rrset.rdtype == check.qtype for rrset in response.answer
    ):
        return ProbeResult(False, f"{where}: no answer for {asked}")
    return ProbeResult(True, f"{where}: {dns.rcode.to_text(rcode)} for {asked}")
