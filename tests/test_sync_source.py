"""The sync sidecar's zone source against a real ``zonefan serve`` primary with TSIG: AXFR
equal to an independent transfer, IXFR after a CLI change equal to a fresh AXFR (and logged
as IXFR by the primary), "unchanged" when up to date, clear errors for a wrong secret or
nothing listening; and the NOTIFY listener, fed by the primary's [[secondary]] notify list,
by hand-made NOTIFYs with good and bad TSIG, and by hostile packets."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import dns.zone
import pytest

from sync.errors import SourceError
from sync.model import ZoneData
from sync.settings import Address, TsigKey
from sync.source import Fetched, NotifyListener, ZoneSource
from tests.servers import XfrKey, ZonefanServer
from tests.tools import PROJECT_ROOT, example_store, free_port, require_tool
from tests.update_targets import KnotUpdatePrimary

ZONE = dns.name.from_text("example.test.")
KEY = TsigKey(dns.name.from_text("sync-key."), "hmac-sha256", b"sync-source-test-secret-0123456")
WRONG = TsigKey(KEY.name, "hmac-sha256", b"not-the-secret-at-all-0123456789")
OTHER = TsigKey(dns.name.from_text("other-key."), "hmac-sha256", KEY.secret)
NOTIFY_DEADLINE = 5.0
TIMEOUT = 3.0


@dataclass
class Primary:
    server: ZonefanServer
    notify_port: int  # where the primary sends NOTIFY: the listener under test binds it

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.server.port)

    def source(self, key: TsigKey | None = KEY, timeout: float = TIMEOUT) -> ZoneSource:
        return ZoneSource(self.address, key, timeout=timeout)

    def add(self, name: str, address: str) -> None:
        """Add a record with the CLI and wait until the server, which follows its store by
        polling it, serves the new serial."""
        before = self.server.serial(str(ZONE))
        self.server.cli("record", "add", str(ZONE), name, "300", "A", address)
        deadline = time.monotonic() + TIMEOUT
        while self.server.serial(str(ZONE)) == before:
            assert time.monotonic() < deadline, f"the primary still serves serial {before}"
            time.sleep(0.01)


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Primary]:
    work = tmp_path_factory.mktemp("sync-source")
    db = example_store(work / "z.db", signed=True)
    notify_port = free_port()
    config = work / "zonefan.toml"
    config.write_text(
        f"""
[key.{KEY.name.to_text(omit_final_dot=True)}]
algorithm = "{KEY.algorithm}"
secret = "{KEY.secret_text}"

[[secondary]]
address = "127.0.0.1"
key = "{KEY.name.to_text(omit_final_dot=True)}"
notify = "127.0.0.1@{notify_port}"
""",
        encoding="utf-8",
    )
    config.chmod(0o600)  # it holds a secret: zonefan wants it private
    with ZonefanServer(work, db=db, probe_name=str(ZONE), config=config) as server:
        yield Primary(server, notify_port)


def _independent_axfr(primary: Primary) -> ZoneData:
    """The zone as dnspython's own blocking AXFR client sees it."""
    xfr = dns.query.xfr(
        "127.0.0.1",
        ZONE,
        port=primary.server.port,
        keyring={KEY.name: KEY.dns_key},
        relativize=False,
        timeout=TIMEOUT,
    )
    return ZoneData.from_dns_zone(dns.zone.from_xfr(xfr, relativize=False))


def _digests(data: ZoneData) -> dict[tuple[dns.name.Name, int], str]:
    return {key: rrset.digest() for key, rrset in data.rrsets.items()}


def _last_transfer(primary: Primary) -> dict[str, object]:
    status = json.loads(primary.server.cli("zone", "status", str(ZONE), "--json").stdout)
    (transfer,) = [t for t in status["transfers"] if t["client"] == "127.0.0.1"]
    assert isinstance(transfer, dict)
    return transfer


# -- transfers ---------------------------------------------------------------------------------


@pytest.mark.external
def test_axfr_equals_an_independent_transfer(primary: Primary) -> None:
    async def run() -> tuple[int, Fetched]:
        source = primary.source()
        return await source.serial(ZONE), await source.fetch(ZONE)

    serial, fetched = asyncio.run(run())
    independent = _independent_axfr(primary)
    assert fetched.method == "axfr"
    assert fetched.serial == serial == independent.serial
    data = fetched.data
    assert data.signed and len(data) > 50
    assert _digests(data) == _digests(independent)


@pytest.mark.external
def test_ixfr_after_a_change_equals_a_fresh_axfr(primary: Primary) -> None:
    async def run() -> None:
        source = primary.source()
        before = await source.fetch(ZONE)
        primary.add("sync-ixfr", "192.0.2.91")
        announced = await source.serial(ZONE)
        assert announced != before.serial
        after = await source.fetch(ZONE, have=before.data, expect=announced)
        assert after.method == "ixfr" and after.serial == announced
        transfer = _last_transfer(primary)
        assert transfer["kind"] == "IXFR" and transfer["serial"] == announced, transfer
        assert transfer["key"] == str(KEY.name), transfer
        name = dns.name.from_text("sync-ixfr", ZONE)
        assert after.data.get(name, dns.rdatatype.A) is not None
        assert before.data.get(name, dns.rdatatype.A) is None  # ``have`` is untouched

        fresh = await primary.source().fetch(ZONE)  # another source: no cached base
        assert fresh.method == "axfr" and fresh.serial == announced
        assert _digests(after.data) == _digests(fresh.data)

        # A cold IXFR (``have`` rebuilt, as after a restart) gives the same zone too.
        primary.add("sync-cold", "192.0.2.92")
        copy = ZoneData(fresh.data.origin, dict(fresh.data.rrsets))
        cold = await primary.source().fetch(ZONE, have=copy)
        again = await primary.source().fetch(ZONE)
        assert cold.method == "ixfr" and cold.serial == again.serial
        assert _digests(cold.data) == _digests(again.data)

    asyncio.run(run())


@pytest.mark.external
def test_ixfr_over_several_changes_with_a_deletion_equals_a_fresh_axfr(primary: Primary) -> None:
    """Three changes of the signed zone since our copy (each re-signs, so RRSIGs and NSECs
    are deleted and added too): their difference sequences applied to our copy."""

    async def run() -> None:
        source = primary.source()
        before = await source.fetch(ZONE)
        primary.add("sync-multi", "192.0.2.93")
        primary.add("sync-multi", "192.0.2.94")
        before_delete = primary.server.serial(str(ZONE))
        primary.server.cli("record", "delete", str(ZONE), "sync-multi", "A", "192.0.2.93")
        deadline = time.monotonic() + TIMEOUT
        while primary.server.serial(str(ZONE)) == before_delete:
            assert time.monotonic() < deadline, "the deletion was not served"
            time.sleep(0.01)
        after = await source.fetch(ZONE, have=before.data)
        assert after.method == "ixfr"
        fresh = await primary.source().fetch(ZONE)
        assert after.serial == fresh.serial and _digests(after.data) == _digests(fresh.data)
        multi = after.data.get(dns.name.from_text("sync-multi", ZONE), dns.rdatatype.A)
        assert multi is not None and multi.texts() == ["192.0.2.94"]

    asyncio.run(run())


@pytest.mark.external
def test_up_to_date_is_unchanged(primary: Primary) -> None:
    async def run() -> None:
        source = primary.source()
        current = await source.fetch(ZONE)
        same = await source.fetch(ZONE, have=current.data)
        assert same.method == "unchanged" and same.data is current.data
        assert same.serial == current.serial == await source.serial(ZONE)

    asyncio.run(run())


@pytest.mark.external
def test_wrong_secret_is_a_source_error(primary: Primary) -> None:
    async def run() -> None:
        source = primary.source(WRONG)
        with pytest.raises(SourceError, match=r"example\.test.*(TSIG|BADSIG)"):
            await source.fetch(ZONE)
        with pytest.raises(SourceError, match=r"127\.0\.0\.1"):
            await source.serial(ZONE)

    asyncio.run(run())


@pytest.mark.external
def test_transfer_without_the_key_is_refused(primary: Primary) -> None:
    async def run() -> None:
        with pytest.raises(SourceError, match=r"AXFR of example\.test\..*(REFUSED|NOTAUTH)"):
            await primary.source(None).fetch(ZONE)

    asyncio.run(run())


@pytest.mark.external
def test_ixfr_from_an_unknown_serial_falls_back_to_axfr(primary: Primary) -> None:
    """A ``have`` whose serial the primary has no history for (here: our copy with a
    made-up older serial) still ends with the primary's zone."""

    async def run() -> None:
        source = primary.source()
        current = await source.fetch(ZONE)
        soa = current.data.get(ZONE, dns.rdatatype.SOA)
        assert soa is not None
        old_soa = soa.rdatas[0].replace(serial=1)
        stale = dict(current.data.rrsets)
        stale[soa.key] = type(soa).of(ZONE, dns.rdatatype.SOA, soa.ttl, [old_soa])
        got = await primary.source().fetch(ZONE, have=ZoneData(ZONE, stale))
        assert got.method == "axfr" and got.serial == current.serial
        assert _digests(got.data) == _digests(current.data)

    asyncio.run(run())


def test_nothing_listening_is_a_source_error() -> None:
    async def run() -> None:
        source = ZoneSource(Address("127.0.0.1", free_port()), KEY, timeout=1.0)
        with pytest.raises(SourceError, match=r"127\.0\.0\.1.*refused"):
            await source.fetch(ZONE)
        with pytest.raises(SourceError, match=r"SOA query of example\.test\. from primary"):
            await source.serial(ZONE)

    asyncio.run(run())


# -- NOTIFY ------------------------------------------------------------------------------------


@dataclass
class Calls:
    seen: list[tuple[dns.name.Name, int | None]] = field(default_factory=list)

    def __call__(self, zone: dns.name.Name, serial: int | None) -> None:
        self.seen.append((zone, serial))

    async def wait(self, serial: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (ZONE, serial) not in self.seen:
            assert time.monotonic() < deadline, f"no NOTIFY for {serial}; got {self.seen}"
            await asyncio.sleep(0.02)


@pytest.mark.external
def test_primary_notify_reaches_the_callback(primary: Primary) -> None:
    async def run() -> None:
        calls = Calls()
        address = Address("127.0.0.1", primary.notify_port)
        async with NotifyListener(address, Address("127.0.0.1", 53), [ZONE], calls, KEY):
            started = time.monotonic()
            primary.add("sync-notify", "192.0.2.93")
            serial = await primary.source().serial(ZONE)
            await calls.wait(serial, NOTIFY_DEADLINE - (time.monotonic() - started))

    asyncio.run(run())


def _notify(zone: dns.name.Name = ZONE, serial: int | None = 7) -> dns.message.Message:
    message = dns.message.make_query(zone, dns.rdatatype.SOA)
    message.set_opcode(dns.opcode.NOTIFY)
    message.flags = dns.flags.Flag(message.flags | dns.flags.AA) & ~dns.flags.RD
    if serial is not None:
        rrset = message.find_rrset(
            message.answer, zone, dns.rdataclass.IN, dns.rdatatype.SOA, create=True
        )
        rrset.add(dns.rdata.from_text("IN", "SOA", f". . {serial} 1 1 1 1"), 0)
    return message


def _signed(message: dns.message.Message, key: TsigKey) -> bytes:
    message.use_tsig(key.dns_key)
    return message.to_wire()


async def _udp(port: int, wire: bytes, wait: float = 0.5) -> bytes | None:
    """Send ``wire`` and return the answer, or None when none comes within ``wait`` s."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        await loop.sock_sendto(sock, wire, ("127.0.0.1", port))
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
        except TimeoutError:
            return None


async def _tcp(port: int, wire: bytes) -> bytes | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        try:
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 2))
            return await asyncio.wait_for(reader.readexactly(length), 2)
        except asyncio.IncompleteReadError:
            return None
    finally:
        writer.close()


def _rcode(wire: bytes | None) -> dns.rcode.Rcode:
    assert wire is not None, "no answer"
    return dns.rcode.from_flags(struct.unpack("!H", wire[2:4])[0], 0)


def test_notify_checks_tsig_source_and_zone() -> None:
    async def run() -> None:
        calls = Calls()
        listener = NotifyListener(
            Address("127.0.0.1", 0), Address("127.0.0.1", 53), [ZONE], calls, KEY
        )
        async with listener:
            port = listener.port
            # Signed with the right key: NOERROR, AA, question echoed, signed answer.
            request = _notify(serial=2024)
            wire = await _udp(port, _signed(request, KEY))
            assert wire is not None
            response = dns.message.from_wire(wire, keyring=KEY.dns_key, request_mac=request.mac)
            assert response.rcode() == dns.rcode.NOERROR and response.had_tsig
            assert response.flags & dns.flags.AA and response.opcode() == dns.opcode.NOTIFY
            assert response.question == request.question and response.id == request.id
            assert calls.seen == [(ZONE, 2024)]
            # Same over TCP, and a NOTIFY without an SOA in the answer: serial None.
            assert _rcode(await _tcp(port, _signed(_notify(serial=None), KEY))) == 0
            assert calls.seen[-1] == (ZONE, None)
            calls.seen.clear()

            # Wrong secret, unknown key, unsigned: NOTAUTH, no callback.
            for key in (WRONG, OTHER):
                answer = await _udp(port, _signed(_notify(), key))
                assert _rcode(answer) == dns.rcode.NOTAUTH
            assert _rcode(await _udp(port, _notify().to_wire())) == dns.rcode.NOTAUTH
            # A zone it does not watch: REFUSED.
            other = _signed(_notify(dns.name.from_text("other.test.")), KEY)
            assert _rcode(await _udp(port, other)) == dns.rcode.REFUSED
            assert calls.seen == []

        # Another source than the primary: REFUSED, even when correctly signed.
        listener = NotifyListener(
            Address("127.0.0.1", 0), Address("127.0.0.2", 53), [ZONE], calls, KEY
        )
        async with listener:
            answer = await _udp(listener.port, _signed(_notify(), KEY))
            assert _rcode(answer) == dns.rcode.REFUSED
        assert calls.seen == []

    asyncio.run(run())


def test_notify_without_a_key_refuses_signed_messages() -> None:
    async def run() -> None:
        calls = Calls()
        listener = NotifyListener(Address("127.0.0.1", 0), Address("127.0.0.1", 53), [ZONE], calls)
        async with listener:
            assert _rcode(await _udp(listener.port, _notify(serial=5).to_wire())) == 0
            assert _rcode(await _udp(listener.port, _signed(_notify(), KEY))) == 9
        assert calls.seen == [(ZONE, 5)]

    asyncio.run(run())


def test_hostile_packets_do_not_stop_the_listener() -> None:
    async def run() -> None:
        calls = Calls()
        listener = NotifyListener(
            Address("127.0.0.1", 0), Address("127.0.0.1", 53), [ZONE], calls, KEY
        )
        async with listener:
            port = listener.port
            notify = _signed(_notify(serial=11), KEY)
            assert await _udp(port, b"") is None
            assert await _udp(port, b"\x12\x34\x28") is None  # shorter than a header
            assert _rcode(await _udp(port, notify[:20])) == dns.rcode.FORMERR  # truncated
            assert _rcode(await _udp(port, notify[:-5])) in (
                dns.rcode.FORMERR,
                dns.rcode.NOTAUTH,  # cut inside the TSIG: its MAC no longer verifies
            )
            query = dns.message.make_query(ZONE, dns.rdatatype.SOA).to_wire()
            assert _rcode(await _udp(port, query)) == dns.rcode.NOTIMP
            response = dns.message.make_response(_notify()).to_wire()
            assert await _udp(port, response) is None  # a response: never answered
            rng = random.Random(1996)
            for size in (12, 13, 40, 512, 1400):
                for _ in range(20):
                    blob = bytes(rng.randrange(256) for _ in range(size))
                    answer = await _udp(port, blob, wait=0.05)
                    if answer is not None:
                        assert answer[:2] == blob[:2] and answer[2] & 0x80  # a response
            # Over TCP: garbage, then a good NOTIFY on a new connection.
            garbage = struct.pack("!HHHHHH", 77, 0x2000, 1, 0, 0, 0) + b"\xff" * 18
            assert _rcode(await _tcp(port, garbage)) == dns.rcode.FORMERR  # a NOTIFY header
            assert _rcode(await _tcp(port, query)) == dns.rcode.NOTIMP
            # Still answering.
            assert _rcode(await _udp(port, notify)) == dns.rcode.NOERROR
            assert _rcode(await _tcp(port, _signed(_notify(serial=12), KEY))) == 0
        assert calls.seen == [(ZONE, 11), (ZONE, 12)]

    asyncio.run(run())


def test_ixfr_from_knot_as_the_primary(tmp_path: Path) -> None:
    """The sidecar follows any primary, not only zonefan: Knot here, changed by an UPDATE
    (its journal answers the IXFR), then compared with a fresh AXFR from Knot."""
    require_tool("knotd")
    key = XfrKey("knot-source", base64.b64encode(b"sync-source-knot-secret-01234567").decode())
    tsig = TsigKey(dns.name.from_text(key.name), key.algorithm, base64.b64decode(key.secret))
    zone_file = tmp_path / "example.test.zone"
    zone_file.write_text(
        (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    with KnotUpdatePrimary(tmp_path / "knot", "example.test", zone_file, key) as knot:
        source = ZoneSource(Address("127.0.0.1", knot.port), tsig)

        async def scenario() -> tuple[Fetched, Fetched, ZoneData]:
            first = await source.fetch(ZONE)
            update = dns.update.UpdateMessage(ZONE, keyring=tsig.dns_key)
            update.add("from-knot", 300, "A", "192.0.2.99")
            response = await dns.asyncquery.tcp(update, "127.0.0.1", port=knot.port, timeout=5)
            assert response.rcode() == dns.rcode.NOERROR
            second = await source.fetch(ZONE, first.data)
            fresh = (await ZoneSource(Address("127.0.0.1", knot.port), tsig).fetch(ZONE)).data
            return first, second, fresh

        first, second, fresh = asyncio.run(scenario())
    assert first.method == "axfr"
    assert second.method == "ixfr" and second.serial > first.serial
    assert _digests(second.data) == _digests(fresh)
    assert (dns.name.from_text("from-knot", ZONE), dns.rdatatype.A) in second.data.rrsets
