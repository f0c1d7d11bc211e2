"""Probes against real servers on 127.0.0.1: HTTP(S) by aiohttp, a TCP listener, a UDP DNS
responder, and ports that refuse or never answer."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from health import Check, ProbeResult, run_probe
from health.config import Kind
from health.probes import BODY_LIMIT
from tests.tools import free_port

HOST = "127.0.0.1"


def check(kind: Kind, port: int, **options: object) -> Check:
    return Check(kind, port, interval=2.0, timeout=0.5, **options)  # type: ignore[arg-type]


async def start_app(app: web.Application, tls: ssl.SSLContext | None = None) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0, ssl_context=tls).start()
    return runner


def port_of(runner: web.AppRunner) -> int:
    port: int = runner.addresses[0][1]
    return port


def backend() -> web.Application:
    never = asyncio.Event()

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="status: healthy")

    async def fail(_: web.Request) -> web.Response:
        return web.Response(status=503, text="status: draining")

    async def slow(_: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        chunk = b"x" * 65536
        while True:  # until the probe hangs up
            await response.write(chunk)

    async def host(request: web.Request) -> web.Response:
        return web.Response(text=f"host={request.host}")

    async def release(_: web.Application) -> None:
        never.set()  # a handler still waiting would hold the shutdown

    app = web.Application()
    app.on_shutdown.append(release)
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    app.router.add_get("/endless", endless)
    app.router.add_get("/host", host)
    return app


@pytest.fixture
async def http_port() -> AsyncIterator[int]:
    runner = await start_app(backend())
    try:
        yield port_of(runner)
    finally:
        await runner.cleanup()


async def test_http_status_as_expected(http_port: int) -> None:
    result = await run_probe(check("http", http_port, path="/ok"), HOST)
    assert result == ProbeResult(True, f"HTTP 200 from {HOST}:{http_port}/ok")


async def test_http_status_not_as_expected(http_port: int) -> None:
    result = await run_probe(check("http", http_port, path="/fail"), HOST)
    assert result == ProbeResult(False, f"HTTP 503 from {HOST}:{http_port}/fail")
    listed = check("http", http_port, path="/fail", expect=frozenset({200, 503}))
    assert (await run_probe(listed, HOST)).ok


async def test_http_body_substring(http_port: int) -> None:
    assert (await run_probe(check("http", http_port, path="/ok", body="healthy"), HOST)).ok
    result = await run_probe(check("http", http_port, path="/ok", body="ready"), HOST)
    assert not result.ok and "without 'ready' in the first 15 bytes" in result.detail


async def test_the_host_header_is_sent(http_port: int) -> None:
    probe = check("http", http_port, path="/host", host="www.example.test", body="host=www.")
    assert (await run_probe(probe, HOST)).ok


async def test_a_slow_server_times_out(http_port: int) -> None:
    result = await run_probe(check("http", http_port, path="/slow"), HOST)
    assert result == ProbeResult(False, f"{HOST}:{http_port}: timeout after 0.5s")


async def test_an_endless_body_is_read_only_up_to_the_limit(http_port: int) -> None:
    """The body never ends: a probe reading it all would time out instead."""
    result = await run_probe(check("http", http_port, path="/endless", body="healthy"), HOST)
    assert not result.ok
    assert f"without 'healthy' in the first {BODY_LIMIT} bytes" in result.detail


async def test_http_to_a_closed_port_is_refused() -> None:
    port = free_port()
    result = await run_probe(check("http", port, path="/ok"), HOST)
    assert result == ProbeResult(False, f"{HOST}:{port}: connection refused")


async def test_tcp_connect_and_refused() -> None:
    accepted: list[bool] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(True)
        writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await run_probe(check("tcp", port), HOST)
    assert result == ProbeResult(True, f"{HOST}:{port}: connected")
    closed = free_port()
    result = await run_probe(check("tcp", closed), HOST)
    assert result == ProbeResult(False, f"{HOST}:{closed}: connection refused")


# --- DNS ----------------------------------------------------------------------------------

ZONE = dns.name.from_text("example.test.")


class Responder(asyncio.DatagramProtocol):
    """Answers SOA example.test. with one record, anything else with NXDOMAIN."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name == ZONE and question.rdtype == dns.rdatatype.SOA:
            response.answer.append(
                dns.rrset.from_text(ZONE, 60, "IN", "SOA", "ns. host. 1 60 60 60 60")
            )
        elif question.name != ZONE:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def dns_port() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Responder, local_addr=(HOST, 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_dns_answer(dns_port: int) -> None:
    soa = check("dns", dns_port, qname=ZONE, qtype=dns.rdatatype.SOA, expect_answer=True)
    assert await run_probe(soa, HOST) == ProbeResult(
        True, f"{HOST}:{dns_port}: NOERROR for example.test. SOA"
    )
    a = check("dns", dns_port, qname=ZONE, qtype=dns.rdatatype.A, expect_answer=True)
    assert await run_probe(a, HOST) == ProbeResult(
        False, f"{HOST}:{dns_port}: no answer for example.test. A"
    )
    assert (await run_probe(check("dns", dns_port, qname=ZONE), HOST)).ok  # NODATA is NOERROR


async def test_dns_rcode_not_as_expected(dns_port: int) -> None:
    other = dns.name.from_text("other.test.")
    result = await run_probe(check("dns", dns_port, qname=other), HOST)
    assert result == ProbeResult(
        False, f"{HOST}:{dns_port}: NXDOMAIN for other.test. A, expected NOERROR"
    )
    nx = check("dns", dns_port, qname=other, expect_rcode=dns.rcode.NXDOMAIN)
    assert (await run_probe(nx, HOST)).ok


async def test_dns_server_that_never_answers_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        port = silent.getsockname()[1]
        result = await run_probe(check("dns", port, qname=ZONE), HOST)
    assert result == ProbeResult(False, f"{HOST}:{port}: timeout after 0.5s")


# --- HTTPS --------------------------------------------------------------------------------


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    san: list[x509.GeneralName] | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """A CA of the test's own and a server certificate it signed for health.test only."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("health test CA", ca_key, None, ca_key, None)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("health.test", key, ca, ca_key, [x509.DNSName("health.test")])
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    yield paths


@pytest.fixture
async def https_port(tls_files: tuple[Path, Path, Path]) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files[1], tls_files[2])
    runner = await start_app(backend(), context)
    try:
        yield port_of(runner)
    finally:
        await runner.cleanup()


async def test_https_verifies_the_certificate(
    https_port: int, tls_files: tuple[Path, Path, Path]
) -> None:
    ca = tls_files[0]
    unknown_ca = await run_probe(check("https", https_port, path="/ok"), HOST)
    assert not unknown_ca.ok and "certificate not accepted" in unknown_ca.detail
    # The CA is pinned but the certificate names health.test, not the address.
    wrong_name = await run_probe(check("https", https_port, path="/ok", ca_file=ca), HOST)
    assert not wrong_name.ok and "certificate not accepted" in wrong_name.detail
    named = check("https", https_port, path="/ok", ca_file=ca, server_name="health.test")
    assert await run_probe(named, HOST) == ProbeResult(
        True, f"HTTP 200 from {HOST}:{https_port}/ok"
    )
    by_host = check(
        "https", https_port, path="/host", ca_file=ca, host="health.test", body="host=health.test"
    )
    assert (await run_probe(by_host, HOST)).ok
    unverified = check("https", https_port, path="/fail", verify=False)
    assert (await run_probe(unverified, HOST)).detail == f"HTTP 503 from {HOST}:{https_port}/fail"


async def test_an_ipv6_member_is_written_in_brackets() -> None:
    runner = web.AppRunner(backend())
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, "::1", 0).start()
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        port = runner.addresses[0][1]
        result = await run_probe(check("http", port, path="/ok"), "::1")
        assert result == ProbeResult(True, f"HTTP 200 from [::1]:{port}/ok")
    finally:
        await runner.cleanup()
