"""TSIG and transfer attacks against a running ``zonefan serve``, as a client with captured
traffic would make them: a request signed far off our clock with the largest Fudge (BADTIME,
RFC 8945 §5.2.3), a captured UPDATE replayed after its delete (over UDP and TCP: the record
stays deleted), a captured transfer request replayed, AXFR in another class and IXFR with
another zone's SOA. The window and replay logic with an injected clock:
tests/test_tsig_replay.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from tests.servers import QUERY_TIMEOUT, NsdServer, ZonefanServer
from tests.tools import PROJECT_ROOT, example_store, require_tool, write_private
from tests.wait import wait_until

pytestmark = [pytest.mark.external, pytest.mark.timeout(120)]

ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
SECRET = base64.b64encode(b"attack-tsig-secret-0123456789abc").decode()
SHORT_SECRET = base64.b64encode(b"attack-tsig-short-0123456789abcd").decode()
KEYRING = dns.tsigkeyring.from_text(
    {"acme-key": ("hmac-sha256", SECRET), "short-key": ("hmac-sha256", SHORT_SECRET)}
)
ACME = dns.name.from_text("acme-key.")
SHORT = dns.name.from_text("short-key.")
CONFIG = f"""[key.acme-key]
secret = "{SECRET}"

[key.short-key]
secret = "{SHORT_SECRET}"
fudge = "30s"

[[secondary]]
address = "127.0.0.1"
key = "acme-key"

[zone."example.test."]
update-policy = ["grant acme-key. wildcard *.example.test. TXT",
                 "grant short-key. wildcard *.example.test. TXT"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonefanServer]:
    work = tmp_path_factory.mktemp("attack-tsig")
    db = example_store(work / "z.db", signed=False)
    config = write_private(work / "zonefan.toml", CONFIG)
    with ZonefanServer(work, db, probe_name=ZONE, config=config) as running:
        yield running


# -- clients -----------------------------------------------------------------------------------


def signed_update(
    owner: str, action: str = "add", key: dns.name.Name = ACME, skew: float = 0, fudge: int = 300
) -> tuple[bytes, bytes]:
    """A signed UPDATE adding (or deleting) a TXT at ``owner``, signed ``skew`` seconds
    off our clock: its wire and its MAC."""
    message = dns.update.UpdateMessage(ORIGIN)
    if action == "add":
        message.add(owner, 60, "TXT", "token")
    else:
        message.delete(owner, "TXT")
    message.use_tsig(KEYRING, key, fudge=fudge)
    with mock.patch("time.time", return_value=time.time() + skew):
        wire = message.to_wire()
    assert message.mac is not None
    return wire, message.mac


def udp(server: ZonefanServer, wire: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(QUERY_TIMEOUT * 2)
        s.sendto(wire, (server.host, server.port))
        return s.recv(65535)


def tcp(host: str, port: int, wire: bytes) -> list[bytes]:
    """Every message the server sends back on one TCP connection, up to the transfer's
    closing SOA or a single error message."""
    out: list[bytes] = []
    with socket.create_connection((host, port), timeout=QUERY_TIMEOUT * 2) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        stream = s.makefile("rb")
        soas = 0
        while True:
            head = stream.read(2)
            if len(head) < 2:
                break
            out.append(stream.read(int.from_bytes(head, "big")))
            reply = dns.message.from_wire(out[-1], keyring=False, one_rr_per_rrset=True)
            soas += sum(1 for rs in reply.answer if rs.rdtype == dns.rdatatype.SOA)
            if reply.rcode() != dns.rcode.NOERROR or soas >= 2 or not reply.answer:
                break
    return out


def served_txt(server: ZonefanServer, owner: str) -> bool:
    """Whether ``owner`` has a TXT, asked with dig."""
    done = subprocess.run(
        [require_tool("dig"), f"@{server.host}", "-p", str(server.port), "+short", owner, "TXT"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return '"token"' in done.stdout


def wait_served(server: ZonefanServer, owner: str, present: bool = True) -> None:
    wait_until(
        lambda: served_txt(server, owner) == present,
        what=f"{owner} TXT served with present={present}",
    )


def barrier(server: ZonefanServer, owner: str) -> None:
    """A fresh UPDATE, then wait until it is served: UPDATEs run one at a time in one worker
    and are served in commit order, so anything sent before it would show by then."""
    reply = dns.message.from_wire(udp(server, signed_update(owner)[0]), keyring=False)
    assert reply.rcode() == dns.rcode.NOERROR
    wait_served(server, owner)


def _wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None
    return wire


def mac_is_valid(response: bytes, secret: str, request_mac: bytes) -> bool:
    """The response's TSIG MAC recomputed from RFC 8945 §4.3 with hmac, not dnspython: the
    request MAC, the message without its TSIG (ARCOUNT less one, the original ID), then the
    TSIG variables (§4.3.3)."""
    message = dns.message.from_wire(response, keyring=False)
    assert message.tsig is not None
    owner, tsig = message.tsig.name, message.tsig[0]
    rdata = tsig.to_wire()
    record = _wire(owner) + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata
    assert response.endswith(record)
    body = response[: -len(record)]
    arcount = int.from_bytes(body[10:12], "big") - 1
    body = struct.pack("!H", tsig.original_id) + body[2:10] + struct.pack("!H", arcount) + body[12:]
    variables = (
        _wire(owner.canonicalize())
        + struct.pack("!HI", 255, 0)
        + _wire(tsig.algorithm.canonicalize())
        + tsig.time_signed.to_bytes(6, "big")
        + struct.pack("!HHH", tsig.fudge, tsig.error, len(tsig.other))
        + tsig.other
    )
    data = struct.pack("!H", len(request_mac)) + request_mac + body + variables
    expected = hmac.new(base64.b64decode(secret), data, hashlib.sha256).digest()
    return hmac.compare_digest(expected, tsig.mac)


# -- the time window ---------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-30_000, 30_000], ids=["past", "future"])
def test_largest_fudge_far_off_our_clock_is_badtime(server: ZonefanServer, skew: int) -> None:
    owner = f"_acme-challenge.fudge{skew}.example.test."
    wire, mac = signed_update(owner, skew=skew, fudge=65535)
    response = udp(server, wire)
    with pytest.raises(dns.tsig.PeerBadTime):  # how a dnspython client reads it
        dns.message.from_wire(response, keyring=KEYRING, request_mac=mac)
    reply = dns.message.from_wire(response, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH
    assert reply.tsig is not None
    tsig = reply.tsig[0]
    request = dns.message.from_wire(wire, keyring=False).tsig
    assert request is not None
    # RFC 8945 §5.2.3: signed with the key, the client's time signed, ours in Other Data.
    assert tsig.error == dns.rcode.BADTIME
    assert tsig.time_signed == request[0].time_signed
    assert len(tsig.other) == 6 and abs(int.from_bytes(tsig.other, "big") - time.time()) < 60
    assert mac_is_valid(response, SECRET, mac)
    barrier(server, f"_acme-challenge.after{skew}.example.test.")
    assert not served_txt(server, owner)
    log = server.log_text()
    assert "outside the key's fudge of 300 s" in log, log


def test_200_s_off_is_accepted_within_the_default_fudge(server: ZonefanServer) -> None:
    # Ahead of our clock: one behind by more than the server has been up is refused until
    # then (the replay memory starts empty; see ReplayGuard), which the unit tests show.
    owner = "_acme-challenge.skewed.example.test."
    wire, mac = signed_update(owner, skew=200)
    response = dns.message.from_wire(udp(server, wire), keyring=KEYRING, request_mac=mac)
    assert response.rcode() == dns.rcode.NOERROR
    wait_served(server, owner)


def test_a_keys_own_fudge_is_honoured(server: ZonefanServer) -> None:
    owner = "_acme-challenge.short.example.test."
    wire, mac = signed_update(owner, key=SHORT, skew=-200)
    response = udp(server, wire)
    reply = dns.message.from_wire(response, keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH
    assert reply.tsig is not None and reply.tsig[0].error == dns.rcode.BADTIME
    assert reply.tsig[0].fudge == 30  # the key's window, in our answer too
    assert mac_is_valid(response, SHORT_SECRET, mac)
    assert "signed 200 s before our clock, outside the key's fudge of 30 s" in server.log_text()
    wire, mac = signed_update(owner, key=SHORT, skew=20)
    accepted = dns.message.from_wire(udp(server, wire), keyring=KEYRING, request_mac=mac)
    assert accepted.rcode() == dns.rcode.NOERROR
    wait_served(server, owner)


# -- replays ---------------------------------------------------------------------------------


def test_replayed_update_is_not_applied_again(server: ZonefanServer) -> None:
    owner = "_acme-challenge.replay.example.test."
    add, _ = signed_update(owner)
    first = udp(server, add)
    assert dns.message.from_wire(first, keyring=False).rcode() == dns.rcode.NOERROR
    wait_served(server, owner)
    delete, _ = signed_update(owner, "delete")
    assert dns.message.from_wire(udp(server, delete), keyring=False).rcode() == 0
    wait_served(server, owner, present=False)
    serial = server.serial(ZONE)
    # The captured add, over UDP then TCP: the answer the add got, byte for byte (a UDP
    # retransmission learns what happened), and the record stays deleted.
    assert udp(server, add) == first
    assert tcp(server.host, server.port, add) == [first]
    barrier(server, "_acme-challenge.replay-barrier.example.test.")
    assert not served_txt(server, owner)
    assert server.serial(ZONE) == (serial or 0) + 1  # the barrier's change only


class LossyRelay(threading.Thread):
    """Relays UDP datagrams to ``upstream`` and their answers back, dropping the first
    ``drop`` answers: a lost reply, as a client sees it. ``seen`` holds every datagram."""

    def __init__(self, upstream: tuple[str, int], drop: int = 1) -> None:
        super().__init__(daemon=True)
        self.upstream, self.drop = upstream, drop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.seen: list[bytes] = []
        self.done = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up, self.sock:
            up.settimeout(QUERY_TIMEOUT * 2)
            while not self.done.is_set():
                try:
                    data, client = self.sock.recvfrom(65535)
                except TimeoutError:
                    continue
                self.seen.append(data)
                up.sendto(data, self.upstream)
                answer = up.recv(65535)
                if len(self.seen) > self.drop:
                    self.sock.sendto(answer, client)


def test_nsupdate_retransmission_after_a_lost_answer_is_applied_once(
    server: ZonefanServer,
) -> None:
    """nsupdate resends the same signed bytes over UDP when no answer comes: the copy gets
    the first answer (so nsupdate reports success) and the change is made once."""
    owner = "_acme-challenge.retransmit.example.test."
    before = server.serial(ZONE)
    relay = LossyRelay((server.host, server.port))
    relay.start()
    script = (
        f'server 127.0.0.1 {relay.port}\nzone {ZONE}\nupdate add {owner} 60 TXT "token"\nsend\n'
    )
    # -u 1: resend after 1 s without an answer, up to -r 3 times.
    command = [require_tool("nsupdate"), "-t", "10", "-u", "1", "-r", "3"]
    try:
        done = subprocess.run(
            [*command, "-y", f"hmac-sha256:acme-key:{SECRET}"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        relay.done.set()
        relay.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(relay.seen) >= 2 and len(set(relay.seen)) == 1  # the same bytes, resent
    wait_served(server, owner)
    assert server.serial(ZONE) == (before or 0) + 1


def test_replayed_transfer_request_is_badtime(server: ZonefanServer) -> None:
    axfr = dns.message.make_query(ZONE, "AXFR")
    axfr.use_tsig(KEYRING, ACME)
    wire = axfr.to_wire()
    first = tcp(server.host, server.port, wire)
    assert dns.message.from_wire(first[0], keyring=False).answer  # the zone
    again = tcp(server.host, server.port, wire)
    assert len(again) == 1
    reply = dns.message.from_wire(again[0], keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and not reply.answer
    assert reply.tsig is not None and reply.tsig[0].error == dns.rcode.BADTIME
    assert axfr.mac is not None and mac_is_valid(again[0], SECRET, axfr.mac)
    # IXFR over UDP (answered with our SOA) likewise.
    ixfr = dns.message.make_query(ZONE, "IXFR")
    ixfr.authority.append(dns.rrset.from_text(ZONE, 0, "IN", "SOA", ". . 1 0 0 0 0"))
    ixfr.use_tsig(KEYRING, ACME)
    wire = ixfr.to_wire()
    assert dns.message.from_wire(udp(server, wire), keyring=False).answer
    reply = dns.message.from_wire(udp(server, wire), keyring=False)
    assert reply.rcode() == dns.rcode.NOTAUTH and not reply.answer


def test_signed_queries_are_answered_again(server: ZonefanServer) -> None:
    """A signed SOA query (a secondary's refresh check) grants nothing an unsigned one does
    not: its retransmission is answered, signed."""
    query = dns.message.make_query(ZONE, "SOA")
    query.use_tsig(KEYRING, ACME)
    wire = query.to_wire()
    for _ in range(2):
        answer = dns.message.from_wire(udp(server, wire), keyring=KEYRING, request_mac=query.mac)
        assert answer.rcode() == dns.rcode.NOERROR and answer.answer


# -- transfer oddities ---------------------------------------------------------------------------


class _TransferNsd(NsdServer):
    """NSD serving its zones to 127.0.0.1 by AXFR, without a key."""

    def _write_conf(self, rrl: bool) -> None:
        super()._write_conf(rrl)
        text = self.conf.read_text(encoding="utf-8")
        text = text.replace("    zonefile:", "    provide-xfr: 127.0.0.1 NOKEY\n    zonefile:")
        self.conf.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("rdclass", ["CH", "HS", "ANY"])
def test_axfr_in_another_class_is_refused(
    server: ZonefanServer, tmp_path: Path, rdclass: str
) -> None:
    query = dns.message.make_query(ZONE, "AXFR", rdclass)
    query.use_tsig(KEYRING, ACME)
    replies = tcp(server.host, server.port, query.to_wire())
    assert len(replies) == 1
    reply = dns.message.from_wire(replies[0], keyring=KEYRING, request_mac=query.mac)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    if rdclass == "CH":
        key = f"hmac-sha256:acme-key:{SECRET}"
        where = [f"@{server.host}", "-p", str(server.port)]
        done = subprocess.run(
            [require_tool("kdig"), *where, "-y", key, "-c", "CH", ZONE, "AXFR"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert "REFUSED" in done.stdout + done.stderr and "SOA" not in done.stdout, done.stdout
        # What NSD answers to the same request (unsigned: it has no key here).
        zone = PROJECT_ROOT / "zones" / "example.test.zone"
        with _TransferNsd(tmp_path, [(ZONE, zone)]) as nsd:
            plain = dns.message.make_query(ZONE, "AXFR", rdclass)
            (nsd_reply,) = tcp(nsd.host, nsd.port, plain.to_wire())
            assert dns.message.from_wire(nsd_reply).rcode() == dns.rcode.REFUSED
            ok = tcp(nsd.host, nsd.port, dns.message.make_query(ZONE, "AXFR").to_wire())
            assert dns.message.from_wire(ok[0]).answer  # the same NSD transfers IN


@pytest.mark.parametrize(
    ("owner", "rdclass", "rcode"),
    [
        (ZONE, "IN", dns.rcode.NOERROR),
        ("www.example.test.", "IN", dns.rcode.FORMERR),
        ("other.test.", "IN", dns.rcode.FORMERR),
        (ZONE, "CH", dns.rcode.FORMERR),
    ],
)
@pytest.mark.parametrize("over_tcp", [False, True], ids=["udp", "tcp"])
def test_ixfr_needs_the_zones_own_soa(
    server: ZonefanServer, owner: str, rdclass: str, rcode: dns.rcode.Rcode, over_tcp: bool
) -> None:
    """RFC 1995 §3: the authority section holds the SOA of the client's copy of the zone;
    another name's (or class's) SOA is FORMERR (as Knot answers), not a serial to trust."""
    query = dns.message.make_query(ZONE, "IXFR")
    query.authority.append(dns.rrset.from_text(owner, 0, rdclass, "SOA", ". . 1 0 0 0 0"))
    query.use_tsig(KEYRING, ACME)
    wire = query.to_wire()
    reply_wire = tcp(server.host, server.port, wire)[0] if over_tcp else udp(server, wire)
    reply = dns.message.from_wire(reply_wire, keyring=KEYRING, request_mac=query.mac)
    assert reply.rcode() == rcode
    assert bool(reply.answer) == (rcode == dns.rcode.NOERROR)
