"""NOTIFY out (RFC 1996): the message's form, TSIG, resends with backoff until an answer,
a newer serial replacing an older one; and a real NSD acknowledging our NOTIFY."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import pytest

from nameserver.transfer.notify import Notifier, NotifyTarget, notify_message
from tests.servers import NsdServer
from tests.tools import free_port, require_tool
from tests.wait import until

ORIGIN = dns.name.from_text("example.test.")
KEY_NAME = dns.name.from_text("notify-key.")
SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
KEY = dns.tsig.Key(KEY_NAME, SECRET, dns.tsig.HMAC_SHA256)


def _soa(serial: int) -> dns.rdata.Rdata:
    text = f"ns1.example.test. hostmaster.example.test. {serial} 7200 3600 432000 300"
    return dns.rdata.from_text("IN", "SOA", text)


class Secondary(asyncio.DatagramProtocol):
    """A UDP listener standing in for a secondary: verifies TSIG with its own keyring,
    ignores the first ``drop`` NOTIFYs, then answers."""

    def __init__(self, keyring: dict[dns.name.Name, dns.tsig.Key], drop: int = 0) -> None:
        self.keyring = keyring
        self.drop = drop
        self.received: list[tuple[float, dns.message.Message]] = []
        self.refused = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        assert self.transport is not None
        try:
            message = dns.message.from_wire(data, keyring=self.keyring)
        except dns.message.UnknownTSIGKey:
            self.refused += 1
            return  # a secondary that does not know the key does not act on it
        self.received.append((time.monotonic(), message))
        if len(self.received) <= self.drop:
            return
        response = dns.message.make_response(message)
        self.transport.sendto(response.to_wire(), addr)


async def _listen(secondary: Secondary) -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: secondary, local_addr=("127.0.0.1", 0)
    )
    return transport, int(transport.get_extra_info("sockname")[1])


def test_notify_message_form() -> None:
    message = notify_message(ORIGIN, _soa(7), 3600, KEY)
    wire = message.to_wire()
    parsed = dns.message.from_wire(wire, keyring={KEY_NAME: KEY})
    assert parsed.opcode() == dns.opcode.NOTIFY
    assert parsed.flags & dns.flags.AA and not parsed.flags & dns.flags.RD
    assert [(q.name, q.rdtype) for q in parsed.question] == [(ORIGIN, dns.rdatatype.SOA)]
    (hint,) = parsed.answer
    assert hint.name == ORIGIN and hint[0].serial == 7
    assert parsed.had_tsig and parsed.keyname == KEY_NAME


def test_lost_notifies_are_resent_with_backoff_until_acked() -> None:
    async def scenario() -> None:
        secondary = Secondary({KEY_NAME: KEY}, drop=3)
        transport, port = await _listen(secondary)
        target = NotifyTarget("127.0.0.1", port, KEY)
        notifier = Notifier(lambda _o: [target], first_retry=0.05, timeout=0.1)
        try:
            notifier.serial_changed(ORIGIN, _soa(42), 3600)
            status = notifier.status()[(ORIGIN, target)]
            await until(lambda: status.acked is not None, "the NOTIFY was acknowledged")
            assert status.attempts == 4 and status.serial == 42 and status.error == ""
            times = [t for t, _ in secondary.received]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            # Each wait is the answer timeout plus a doubling pause: 0.05, 0.1, 0.2.
            assert gaps[1] > gaps[0] and gaps[2] > gaps[1], gaps
            assert all(m.keyname == KEY_NAME for _, m in secondary.received)
        finally:
            await notifier.close()
            transport.close()

    asyncio.run(scenario())


def test_a_secondary_without_our_key_never_acks() -> None:
    async def scenario() -> None:
        secondary = Secondary({})  # knows no key: ignores what we send
        transport, port = await _listen(secondary)
        target = NotifyTarget("127.0.0.1", port, KEY)
        notifier = Notifier(lambda _o: [target], first_retry=0.02, timeout=0.05)
        try:
            notifier.serial_changed(ORIGIN, _soa(1), 3600)
            await until(lambda: secondary.refused >= 2, "two NOTIFYs refused")
            status = notifier.status()[(ORIGIN, target)]
            assert status.acked is None and "no answer" in status.error
        finally:
            await notifier.close()
            transport.close()

    asyncio.run(scenario())


def test_a_newer_serial_replaces_the_older_sender() -> None:
    async def scenario() -> None:
        secondary = Secondary({KEY_NAME: KEY}, drop=1_000_000)  # never answers
        transport, port = await _listen(secondary)
        target = NotifyTarget("127.0.0.1", port, KEY)
        notifier = Notifier(lambda _o: [target], first_retry=0.02, timeout=0.05)
        try:
            notifier.serial_changed(ORIGIN, _soa(1), 3600)
            await until(lambda: len(secondary.received) >= 2, "two NOTIFYs received")
            notifier.serial_changed(ORIGIN, _soa(2), 3600)
            seen = len(secondary.received)
            await until(lambda: len(secondary.received) >= seen + 2, "two more NOTIFYs received")
            later = [m.answer[0][0].serial for _, m in secondary.received[seen:]]
            assert set(later) == {2}, "the old serial is no longer sent"
            assert notifier.status()[(ORIGIN, target)].serial == 2
        finally:
            await notifier.close()
            transport.close()

    asyncio.run(scenario())


# -- a real secondary ------------------------------------------------------------------------


class NotifiedNsd(NsdServer):
    """NSD that accepts NOTIFYs for its zones from 127.0.0.1 signed with KEY."""

    def _write_conf(self, rrl: bool) -> None:
        super()._write_conf(rrl)
        text = self.conf.read_text(encoding="utf-8")
        key = (
            f'key:\n    name: "{KEY_NAME}"\n    algorithm: hmac-sha256\n    secret: "{SECRET}"\n\n'
        )
        # NSD wants a primary to transfer from once notified; nobody listens there.
        allow = (
            f"    allow-notify: 127.0.0.1 {KEY_NAME}\n"
            f"    request-xfr: 127.0.0.1@{free_port()} {KEY_NAME}\n"
        )
        head, sep, zones = text.partition("zone:")
        zones = re.sub(r"(    zonefile: .*\n)", lambda m: m.group(1) + allow, sep + zones)
        self.conf.write_text(head + key + zones, encoding="utf-8")


@pytest.fixture
def nsd_secondary(tmp_path: Path) -> Iterator[NsdServer]:
    require_tool("nsd")
    zone = tmp_path / "example.test.zone"
    zone.write_text(
        "$ORIGIN example.test.\n$TTL 3600\n"
        "@ SOA ns1 hostmaster 1 7200 3600 432000 300\n@ NS ns1\nns1 A 192.0.2.1\n"
    )
    with NotifiedNsd(tmp_path, [("example.test.", zone)]) as server:
        yield server


def test_nsd_acknowledges_our_signed_notify(nsd_secondary: NsdServer) -> None:
    async def scenario() -> None:
        target = NotifyTarget("127.0.0.1", nsd_secondary.port, KEY)
        notifier = Notifier(lambda _o: [target], timeout=2.0)
        try:
            notifier.serial_changed(ORIGIN, _soa(2), 3600)
            status = notifier.status()[(ORIGIN, target)]
            await until(
                lambda: status.acked is not None or status.attempts > 3,
                "acknowledged or given up on",
            )
            assert status.acked is not None, status
        finally:
            await notifier.close()

    asyncio.run(scenario())


def test_nsd_ignores_a_notify_with_an_unknown_key(nsd_secondary: NsdServer) -> None:
    other = dns.tsig.Key(dns.name.from_text("other-key."), SECRET, dns.tsig.HMAC_SHA256)

    async def scenario() -> None:
        target = NotifyTarget("127.0.0.1", nsd_secondary.port, other)
        notifier = Notifier(lambda _o: [target], first_retry=0.05, timeout=0.5)
        try:
            notifier.serial_changed(ORIGIN, _soa(2), 3600)
            status = notifier.status()[(ORIGIN, target)]
            await until(lambda: status.attempts >= 2, "a second attempt")
            assert status.acked is None and status.error, status
        finally:
            await notifier.close()

    asyncio.run(scenario())
