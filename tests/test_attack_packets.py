"""Attack: fuzzed UDP queries against ``zonefan serve``. No reply may be larger than the
packet that caused it unless that packet is a well-formed query (dnspython parses it whole,
nothing after its last record): malformed packets get FORMERR (header, question, our OPT)
or nothing, so the server cannot be used to amplify garbage.

The packets are the queries clients send (plain, EDNS with DO and options, TSIG-signed with
a key the server knows) damaged as a fuzzer damages them: trailing junk, a mangled
additional section, bits flipped anywhere after the ID, the end cut off. Each gets its own
ID, and a batch ends with a query that is always answered: the server reads a socket in
order, so once that answer is back every earlier packet has been answered or dropped.
"""

from __future__ import annotations

import base64
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import pytest

from tests.packets import (
    FORMERR,
    KEY,
    NAMES,
    TYPES,
    mutate_additional,
    option,
    query_wire,
    rcode_of,
    well_formed,
)
from tests.servers import ZonefanServer
from tests.tools import example_store, write_private

pytestmark = [pytest.mark.external, pytest.mark.timeout(240)]

PACKETS = 20_000
BATCH = 100  # packets between two sentinel queries: well inside a socket's receive buffer
DEADLINE_S = 150.0  # the whole attack, sending and receiving
SENTINEL_WAIT_S = 2.0
ZONE = "example.test."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonefanServer]:
    work = tmp_path_factory.mktemp("attack-packets")
    db = example_store(work / "z.db")
    secret = base64.b64encode(KEY.secret).decode()
    config = write_private(work / "zonefan.toml", f'[key.probe-key]\nsecret = "{secret}"\n')
    # Without response rate limiting: it would truncate most replies to this one source,
    # and a truncated reply is never larger than its packet, whatever the parser did.
    rrl_off = ["--rrl-ratelimit", "0"]
    with ZonefanServer(work, db=db, probe_name=ZONE, config=config, extra_args=rrl_off) as s:
        yield s


def _seed(rng: random.Random) -> bytes:
    options = [option(10, rng.randbytes(8))] if rng.random() < 0.3 else []
    if rng.random() < 0.1:
        options.append(option(rng.choice([3, 8, 12, 15, 65001]), rng.randbytes(rng.randrange(9))))
    return query_wire(
        rng.choice(NAMES),
        rng.choice(TYPES),
        edns=rng.random() < 0.6,
        dnssec=rng.random() < 0.4,
        payload=rng.choice([512, 1232, 4096]),
        options=options,
        signed=rng.random() < 0.2,
    )


def _fuzz(seed: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return seed + rng.randbytes(rng.randint(1, 48))
    if kind == 1:
        return mutate_additional(seed, rng)
    if kind == 2:
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(2, len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    return seed[: rng.randrange(12, len(seed))]


@dataclass
class Tally:
    sent: int = 0
    well_formed: int = 0
    replies: int = 0
    larger: int = 0  # replies larger than their packet (all to well-formed queries)
    rcodes: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)


def _with_id(data: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid) + data[2:]


def _collect(sock: socket.socket, sentinel: int, replies: dict[int, bytes]) -> bool:
    """Read replies into ``replies`` until the sentinel's arrives (False: it did not)."""
    deadline = time.monotonic() + SENTINEL_WAIT_S
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return False
        if len(data) >= 2:
            qid = struct.unpack_from("!H", data)[0]
            replies.setdefault(qid, data)
            if qid == sentinel:
                return True
    return False


def _attack(host: str, port: int, rng: random.Random) -> Tally:
    tally = Tally()
    sentinel_query = dns.message.make_query(ZONE, "SOA").to_wire()
    replies: dict[int, bytes] = {}
    sent: dict[int, bytes] = {}
    qid = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((host, port))
        while tally.sent < PACKETS:
            assert time.monotonic() - started < DEADLINE_S, f"attack over time: {tally}"
            for _ in range(min(BATCH, PACKETS - tally.sent)):
                qid += 1
                packet = _with_id(_fuzz(_seed(rng), rng), qid)
                sent[qid] = packet
                sock.send(packet)
                tally.sent += 1
            for _ in range(3):  # the sentinel itself may be lost: ask again
                qid += 1
                sock.send(_with_id(sentinel_query, qid))
                if _collect(sock, qid, replies):
                    break
            else:
                raise AssertionError(f"the server stopped answering after {tally.sent} packets")
    for packet_id, packet in sent.items():
        _judge(packet, replies.get(packet_id), tally)
    return tally


def _judge(packet: bytes, reply: bytes | None, tally: Tally) -> None:
    valid = well_formed(packet)
    tally.well_formed += valid
    if reply is None:
        return
    tally.replies += 1
    try:
        rcode = dns.rcode.to_text(dns.rcode.Rcode(rcode_of(reply)))
    except Exception as exc:  # a reply dnspython cannot parse is itself a finding
        tally.bad.append(f"unparsable reply {reply.hex()} to {packet.hex()}: {exc}")
        return
    tally.rcodes[rcode if valid else f"{rcode} (malformed)"] += 1
    if len(reply) > len(packet):
        tally.larger += 1
        if not valid:
            tally.bad.append(f"{len(reply)}-byte {rcode} to the {len(packet)}-byte {packet.hex()}")


def test_fuzzed_queries_never_earn_a_reply_larger_than_themselves(
    server: ZonefanServer,
) -> None:
    tally = _attack(server.host, server.port, random.Random(15))
    print(
        f"\n{tally.sent} packets, {tally.well_formed} well-formed; {tally.replies} replies, "
        f"{tally.larger} larger than their packet; rcodes {dict(tally.rcodes)}"
    )
    assert not tally.bad, f"{len(tally.bad)} bad replies, e.g.:\n" + "\n".join(tally.bad[:10])
    assert tally.rcodes["FORMERR (malformed)"] > PACKETS // 4
    assert tally.rcodes["NOERROR"] > 0  # queries that survived the damage are still answered
    assert server.running()


def _udp(server: ZonefanServer, data: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.sendto(data, (server.host, server.port))
        return sock.recv(65535)


def test_signed_queries_are_answered_signed_and_their_damaged_copies_formerr(
    server: ZonefanServer,
) -> None:
    signed = query_wire(ZONE, "SOA", edns=True, signed=True)
    request = dns.message.from_wire(signed, keyring=False)
    assert request.tsig is not None
    answer = dns.message.from_wire(
        _udp(server, signed), keyring={KEY.name: KEY}, request_mac=request.tsig[0].mac
    )
    assert answer.rcode() == dns.rcode.NOERROR and answer.had_tsig and answer.answer
    for damaged in (
        signed + b"\x00",  # trailing junk after the TSIG
        signed[:-4] + b"\xff\xff" + signed[-2:],  # a TSIG error dnspython cannot read
    ):
        assert not well_formed(damaged)
        reply = _udp(server, damaged)
        assert rcode_of(reply) == FORMERR and len(reply) <= len(damaged)


def test_the_attack_packets_are_judged_by_an_independent_parser() -> None:
    """The judge: a query with trailing data or a cut-off OPT is not well-formed; one with
    an unknown or malformed option's contents is (options are opaque, RFC 6891 §6.1.2)."""
    plain = query_wire("www.example.test", "A", edns=False)
    assert well_formed(plain)
    assert not well_formed(plain + b"\x00")
    with_cookie = query_wire("www.example.test", "A", True, options=[option(10, b"12345")])
    assert well_formed(with_cookie)
    assert not well_formed(with_cookie[:-1])
    assert not well_formed(plain[:11])  # not even a header
