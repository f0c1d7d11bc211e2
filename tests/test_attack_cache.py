"""Attacks on the response cache and the cache-miss path of ``zonefan serve``, run from
127.0.0.0/8 against the server as a process, each bounded in count and time:

* 120k UDP queries that differ only in their EDNS payload size: they share cached answers,
  so resident memory barely moves (it grew by 143 MB when each made an entry);
* 60k TCP queries for a 3 KB TXT RRset, pipelined on a few connections, each with its own
  letter case (0x20) and ID: one cached answer, patched with each asker's question (188 MB
  before);
* a random-subdomain ("water torture") flood from another address with dnsperf: the cache
  stays within its byte budget (``--cache-size``) and a second client's real questions are
  all answered meanwhile; NSD gets the same flood in the same test;
* ``--cache-size`` and ``[serve] cache-size`` take the settings grammar's sizes, and a
  wrong one is refused naming the option or the key.

RSS is read from /proc (tests/attack.py); the limits asserted leave room for the allocator
and for the machine's other work, and the figures are printed (``pytest -s``)."""

from __future__ import annotations

import random
import re
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.attack import cpu_seconds, peak_rss_mib, rss_mib
from tests.servers import NsdServer, ZonefanServer, run_cli
from tests.tools import PROJECT_ROOT, require_tool, write_private

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

ZONE_FILE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
BIG = f"big.{ZONE}"  # a TXT RRset of about 3 KB
REAL = [(f"www.{ZONE}", "A"), (ZONE, "MX"), (ZONE, "SOA"), (BIG, "TXT")]
REPLY_TIMEOUT = 2.0


def _zone_with_big_txt(workdir: Path) -> Path:
    """The example zone plus a 3 KB TXT RRset at big.example.test (two-label text strings,
    so a UDP answer is truncated and a TCP one carries it all)."""
    texts = "\n".join(f'big 300 IN TXT "big-{i:02d}-' + "z" * 90 + '"' for i in range(30))
    path = workdir / "example.test.zone"
    path.write_text(ZONE_FILE.read_text(encoding="utf-8") + "\n" + texts + "\n", encoding="utf-8")
    return path


def _zonefan(workdir: Path, *args: str) -> ZonefanServer:
    # Without response rate limiting: the floods come from one address, and RRL would drop
    # most of them before they reach the cache this module measures (the worst case).
    server = ZonefanServer(workdir, probe_name=ZONE, extra_args=("--rrl-ratelimit", "0", *args))
    server.cli("zone", "import", str(_zone_with_big_txt(workdir)))
    return server


def _mixed_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def _query(name: str, rdtype: str, qid: int, payload: int | None = None) -> bytes:
    q = dns.message.make_query(name, rdtype, flags=0)
    q.id = qid
    if payload is not None:
        q.use_edns(0, 0, payload)
    return q.to_wire()


def _udp_exchange(port: int, packets: list[bytes], source: str, window: int = 64) -> list[bytes]:
    """Send ``packets`` from ``source`` with at most ``window`` unanswered; the replies."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.settimeout(REPLY_TIMEOUT)
        for start in range(0, len(packets), window):
            batch = packets[start : start + window]
            for packet in batch:
                s.sendto(packet, ("127.0.0.1", port))
            for _ in batch:
                try:
                    replies.append(s.recv(65535))
                except TimeoutError:
                    break
    return replies


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return bytes(data)


def _tcp_pipeline(port: int, packets: list[bytes], source: str, batch: int = 200) -> list[bytes]:
    """Send ``packets`` on one TCP connection ``batch`` at a time without waiting, then read
    that many answers (RFC 7766 §6.2.1.1 pipelining)."""
    replies: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), 10, (source, 0)) as s:
        for start in range(0, len(packets), batch):
            chunk = packets[start : start + batch]
            s.sendall(b"".join(struct.pack("!H", len(p)) + p for p in chunk))
            for _ in chunk:
                (length,) = struct.unpack("!H", _read_exactly(s, 2))
                replies.append(_read_exactly(s, length))
    return replies


# -- queries that differ only in what the answer does not depend on ------------------------


def test_edns_payload_variants_do_not_multiply_cached_answers(tmp_path: Path) -> None:
    """120k distinct UDP queries: four questions, each with 30k EDNS payload sizes from 1232
    up (the answer fits in all of them). Each question has one cached answer."""
    with _zonefan(tmp_path) as server:
        warm = [_query(name, rdtype, 1, 1232) for name, rdtype in REAL]
        assert len(_udp_exchange(server.port, warm, "127.0.0.2")) == len(warm)
        before = rss_mib(server.pid)
        packets = [
            _query(name, rdtype, random.getrandbits(16), payload)
            for payload in range(1232, 1232 + 30_000)
            for name, rdtype in REAL
        ]
        replies = _udp_exchange(server.port, packets, "127.0.0.2")
        grown = rss_mib(server.pid) - before
        print(f"\n120k payload variants: {len(replies)} replies, RSS {before:.1f} MiB +{grown:.1f}")
    assert len(replies) >= 0.99 * len(packets)
    for wire in replies[:: len(replies) // 50]:
        m = dns.message.from_wire(wire)
        assert m.rcode() == dns.rcode.NOERROR and (m.answer or m.flags & dns.flags.TC)
    assert grown < 4


def test_letter_case_variants_of_a_large_answer_share_it_over_tcp(tmp_path: Path) -> None:
    """60k TCP queries for the 3 KB TXT RRset, each in its own letter case and with its own
    ID, pipelined on four connections: every asker gets its own case back, and the one
    cached answer (plus a few aliases) is all the cache keeps of them."""
    rng = random.Random(60)
    with _zonefan(tmp_path) as server:
        first = _tcp_pipeline(server.port, [_query(BIG, "TXT", 1)], "127.0.0.2")[0]
        before = rss_mib(server.pid)
        names = [_mixed_case(BIG, rng) for _ in range(60_000)]
        packets = [_query(n, "TXT", rng.getrandbits(16)) for n in names]
        replies: list[bytes] = []
        for c in range(4):
            replies += _tcp_pipeline(server.port, packets[c::4], f"127.0.0.{3 + c}")
        grown = rss_mib(server.pid) - before
        print(f"\n60k TCP case variants of {len(first)} octets: RSS {before:.1f} MiB +{grown:.1f}")
    assert len(replies) == len(packets)
    asked = [n for c in range(4) for n in names[c::4]]
    for wire, name in list(zip(replies, asked, strict=True))[::997]:
        m = dns.message.from_wire(wire)
        assert m.question[0].name.to_text() == name  # the asker's case, not the first one's
        assert len(wire) == len(first) and sum(len(rs) for rs in m.answer) == 30
    assert grown < 4


def test_dig_gets_its_own_letter_case_back_from_a_cached_answer(tmp_path: Path) -> None:
    """dig asks in three spellings (0x20 style), over UDP and TCP: the answers after the
    first come from the cache, and each shows dig's own spelling in the question and as the
    owner of the answer (a pointer to the question, RFC 1035 §4.1.4)."""
    dig = require_tool("dig")
    shown = ("+norec", "+noall", "+question", "+answer")
    with _zonefan(tmp_path) as server:
        for spelling in ("web.example.test.", "WeB.eXaMpLe.TeSt.", "wEb.ExAmPlE.tEsT."):
            for transport in ("+notcp", "+tcp"):
                done = subprocess.run(
                    [dig, "@127.0.0.1", "-p", str(server.port), spelling, "A", transport, *shown],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                )
                lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
                assert lines[0][0] == ";" + spelling, done.stdout
                assert [line[0] for line in lines[1:]] == [spelling], done.stdout
                assert lines[1][-1] == "192.0.2.80"


# -- a random-subdomain flood --------------------------------------------------------------


@dataclass
class Asker:
    """A resolver on 127.0.0.1 asking the zone's real questions, one every ``interval``
    seconds, until stopped: how many were answered correctly and how fast."""

    port: int
    interval: float = 0.01
    asked: int = 0
    answered: int = 0
    latencies: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(REPLY_TIMEOUT)
            while not self.stop.is_set():
                name, rdtype = REAL[self.asked % len(REAL)]
                qid = self.asked & 0xFFFF
                self.asked += 1
                sent = time.monotonic()
                s.sendto(_query(name, rdtype, qid, 1232), ("127.0.0.1", self.port))
                try:
                    while True:
                        wire = s.recv(65535)
                        if wire[:2] == qid.to_bytes(2, "big"):
                            break
                except TimeoutError:
                    continue
                self.latencies.append(time.monotonic() - sent)
                m = dns.message.from_wire(wire)
                if m.rcode() == dns.rcode.NOERROR and (m.answer or m.flags & dns.flags.TC):
                    self.answered += 1
                self.stop.wait(self.interval)


@dataclass
class Flood:
    """What dnsperf reported."""

    completed: int
    lost: int
    qps: float
    nxdomain: int


def _flood(port: int, names: Path, seconds: float) -> Flood:
    """dnsperf from 127.0.0.2: every line of ``names`` once, at most ``seconds``."""
    # -c 2 -q 100: the queries in flight fit the socket's receive buffer, so none is lost
    # to it and the flood goes as fast as the server answers.
    limits = ["-n", "1", "-l", f"{seconds:g}", "-c", "2", "-q", "100"]
    target = ["-s", "127.0.0.1", "-p", str(port), "-a", "127.0.0.2", "-d", str(names)]
    done = subprocess.run(
        [require_tool("dnsperf"), *target, *limits],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )

    def number(label: str) -> float:
        match = re.search(rf"{label}:?\s+([\d.]+)", done.stdout)
        assert match is not None, done.stdout
        return float(match.group(1))

    return Flood(
        int(number("Queries completed")),
        int(number("Queries lost")),
        number("Queries per second"),
        int(number("NXDOMAIN")),
    )


def _under_flood(port: int, names: Path, seconds: float) -> tuple[Flood, Asker]:
    asker = Asker(port)
    thread = threading.Thread(target=asker.run, daemon=True)
    thread.start()
    try:
        flood = _flood(port, names, seconds)
    finally:
        asker.stop.set()
        thread.join(REPLY_TIMEOUT + 5)
    return flood, asker


def _report(label: str, flood: Flood, asker: Asker, extra: str = "") -> None:
    latencies = sorted(asker.latencies) or [0.0]
    print(
        f"\n{label}: flood {flood.completed} answered, {flood.lost} lost ({flood.qps:,.0f} q/s, "
        f"{flood.nxdomain} NXDOMAIN); real questions {asker.answered}/{asker.asked} answered, "
        f"median {1000 * latencies[len(latencies) // 2]:.1f} ms, "
        f"max {1000 * latencies[-1]:.1f} ms{extra}"
    )


FLOOD_SECONDS = 8.0
FLOOD_NAMES = 600_000  # more than a flood of FLOOD_SECONDS asks: every query a new name
BUDGET_MIB = 8


def test_random_subdomain_flood_stays_in_the_budget_and_real_queries_are_answered(
    tmp_path: Path,
) -> None:
    """dnsperf asks a new random name under the zone every time (each a cache miss: an
    NXDOMAIN, or an answer from a wildcard) for FLOOD_SECONDS, as fast as the server
    answers, while a resolver on another address asks real questions: zonefan answers them
    all and its memory grows by no more than its cache budget allows. NSD gets the same
    flood and the same resolver."""
    rng = random.Random(7)
    names = tmp_path / "flood.txt"
    # A third under *.wild: answers from the wildcard, each kept in the cache until the
    # budget pushes it out; the rest NXDOMAIN from a prepared template, not kept at all.
    lines = [
        f"{rng.getrandbits(48):012x}.{'wild.' if i % 3 == 0 else ''}{ZONE} A"
        for i in range(FLOOD_NAMES)
    ]
    names.write_text("\n".join(lines) + "\n", encoding="ascii")

    with _zonefan(tmp_path / "zonefan", "--cache-size", f"{BUDGET_MIB}M") as server:
        _udp_exchange(server.port, [_query(n, t, 1, 1232) for n, t in REAL], "127.0.0.1")
        before, cpu = rss_mib(server.pid), cpu_seconds(server.pid)
        started = time.monotonic()
        flood, asker = _under_flood(server.port, names, FLOOD_SECONDS)
        busy = (cpu_seconds(server.pid) - cpu) / (time.monotonic() - started)
        grown = rss_mib(server.pid) - before
        peak = peak_rss_mib(server.pid)
        _report(
            f"zonefan --cache-size {BUDGET_MIB}M",
            flood,
            asker,
            f"; RSS {before:.1f} MiB +{grown:.1f} (peak {peak:.1f}), server CPU {busy:.0%}",
        )
    assert flood.completed > 50_000 and flood.nxdomain > flood.completed // 2
    assert asker.asked > 100 and asker.answered >= 0.98 * asker.asked
    # Without a budget each new name would keep ~500 bytes: 25 MB per 50k names.
    assert grown < 3 * BUDGET_MIB

    nsd_zone = _zone_with_big_txt(tmp_path)
    with NsdServer(tmp_path / "nsd", [(ZONE, nsd_zone)]) as nsd:
        flood, asker = _under_flood(nsd.port, names, FLOOD_SECONDS)
        _report("NSD", flood, asker)
    assert asker.answered >= 0.98 * asker.asked


# -- the option ----------------------------------------------------------------------------


def test_cache_size_takes_the_size_grammar_and_refuses_a_wrong_one(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    run_cli(db, "zone", "import", str(ZONE_FILE))
    bad = run_cli(db, "serve", "--listen", "127.0.0.1:1", "--cache-size", "64Q", check=False)
    assert bad.returncode == 2
    assert "--cache-size" in bad.stderr and '"64M"' in bad.stderr
    config = write_private(tmp_path / "zonefan.toml", '[serve]\ncache-size = "1.5"\n')
    bad = run_cli(db, "--config", str(config), "serve", "--listen", "127.0.0.1:1", check=False)
    assert bad.returncode != 0
    assert f"{config}: serve.cache-size: '1.5' is not a whole number of bytes" in bad.stderr
    config.write_text('[serve]\ncache-size = "16M"\n', encoding="utf-8")
    server = ZonefanServer(tmp_path / "ok", db=db, probe_name=ZONE, config=config)
    with server:
        assert server.query(f"www.{ZONE}", "A").answer
