"""``zonefan serve`` as a real process, checked from outside with dig and dnspython: flags,
negative answers, TCP, truncation, EDNS, pipelining, idle timeouts, hostile packets, live
changes and IPv6."""

from __future__ import annotations

import random
import re
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.zone
import pytest

from tests.servers import ZonefanServer, ipv6_loopback_available
from tests.tools import PROJECT_ROOT, require_tool

pytestmark = [pytest.mark.external, pytest.mark.timeout(120)]

EXAMPLE_ZONE = PROJECT_ROOT / "zones" / "example.test.zone"
FALLBACK_ZONE = Path(__file__).resolve().parent / "data" / "differential.test.zone"
BIG_LABEL = "big-integration"
BIG_COUNT = 30  # TXT records of 60 octets: about 2 KB, more than 512 and 1232
LIVE_DEADLINE = 2.0  # seconds for a committed change to be served
FORMERR = dns.rcode.FORMERR


@dataclass
class Served:
    server: ZonefanServer
    origin: str  # absolute, with the trailing dot
    host_name: str  # an owner with an A record in the zone, preferably www
    soa: dns.rdtypes.ANY.SOA.SOA
    soa_ttl: int
    big_texts: list[str] = field(default_factory=list)

    def name(self, relative: str) -> str:
        return f"{relative}.{self.origin}"


def _zone_under_test() -> tuple[Path, str]:
    """zones/example.test.zone; until another engineer has written it, the differential
    test zone."""
    if EXAMPLE_ZONE.exists():
        return EXAMPLE_ZONE, "example.test."
    return FALLBACK_ZONE, "diff.test."


def _host_name(zone: dns.zone.Zone) -> str:
    """``www`` when it owns an A record or a CNAME, otherwise the first authoritative name
    that owns an A record (not glue below a delegation, not a wildcard)."""
    origin = zone.origin
    assert origin is not None
    cuts = [
        n
        for n, node in zone.nodes.items()
        if n != origin and node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
    ]
    owners = [
        name
        for name, node in sorted(zone.nodes.items())
        if node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.A) is not None
        and not name.is_wild()
        and not any(name.is_subdomain(c) for c in cuts)
    ]
    www = dns.name.from_text("www", origin)
    if www in owners or zone.get_rdataset(www, "CNAME") is not None:
        return www.to_text()
    assert owners, "the zone under test has no A record"
    return owners[0].to_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """zonefan serving the example zone plus a large TXT RRset, on 127.0.0.1 (and ::1)."""
    path, origin = _zone_under_test()
    zone = dns.zone.from_file(str(path), origin=origin, relativize=False, check_origin=True)
    soa_set = zone.get_rdataset(origin, "SOA")
    assert soa_set is not None
    soa = soa_set[0]
    assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
    server = ZonefanServer(
        tmp_path_factory.mktemp("integration"),
        ipv6=ipv6_loopback_available(),
        probe_name=origin,
    )
    server.cli("zone", "import", str(path), "--origin", origin)
    texts = [f'"{(f"big-{i:02d}-" + "z" * 60)[:60]}"' for i in range(BIG_COUNT)]
    more = [arg for t in texts[1:] for arg in ("-r", t)]
    server.cli("record", "set", origin, BIG_LABEL, "300", "TXT", texts[0], *more)
    with server:
        yield Served(server, origin, _host_name(zone), soa, soa_set.ttl, texts)


# -- dig -------------------------------------------------------------------------------------


@dataclass
class Dig:
    status: str
    flags: set[str]
    sections: dict[str, list[str]]
    opt: str
    text: str


_HEADER = re.compile(r"status: (\w+), id: \d+")
_FLAGS = re.compile(r";; flags:([^;]*);")
_SECTION = re.compile(r";; (\w+) SECTION:")


def dig(server: str, port: int, *args: str) -> Dig:
    """Run ``dig @server -p port +norecurse ARGS`` and parse its default output."""
    tool = require_tool("dig")
    cmd = [tool, f"@{server}", "-p", str(port), "+norecurse", "+time=2", "+tries=1", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    text = done.stdout + done.stderr
    header = _HEADER.search(text)
    flags = _FLAGS.search(text)
    assert header and flags, f"dig gave no response:\n$ {' '.join(cmd)}\n{text}"
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group(1), [])
        elif not line.strip():
            current = None
        elif current is not None and not line.startswith(";"):
            current.append(line)
    opt = next((line for line in text.splitlines() if "EDNS: version" in line), "")
    return Dig(header.group(1), set(flags.group(1).split()), sections, opt, text)


# -- the answering basics ----------------------------------------------------------------------


def test_authoritative_answer_with_dig_and_dnspython(served: Served) -> None:
    d = dig("127.0.0.1", served.server.port, served.host_name, "A")
    assert d.status == "NOERROR", d.text
    assert {"qr", "aa"} <= d.flags and "ra" not in d.flags and "rd" not in d.flags, d.text
    assert d.sections.get("ANSWER"), d.text
    m = served.server.query(served.host_name, "A", flags=dns.flags.RD)
    assert m.rcode() == dns.rcode.NOERROR
    assert m.flags & dns.flags.AA and m.flags & dns.flags.RD and not m.flags & dns.flags.RA
    assert m.answer and all(rr.rdtype in (dns.rdatatype.A, dns.rdatatype.CNAME) for rr in m.answer)


def test_nxdomain_carries_the_soa_with_the_negative_ttl(served: Served) -> None:
    name = served.name("no-such-name-zf")
    d = dig("127.0.0.1", served.server.port, name, "A")
    assert d.status == "NXDOMAIN" and "aa" in d.flags, d.text
    assert [line.split()[3] for line in d.sections.get("AUTHORITY", [])] == ["SOA"], d.text
    m = served.server.query(name, "A")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA and m.answer == []
    soa = [rs for rs in m.authority if rs.rdtype == dns.rdatatype.SOA]
    assert len(soa) == 1 and soa[0].name == dns.name.from_text(served.origin)
    # RFC 2308 §3: the SOA's TTL is the smaller of its own TTL and its MINIMUM field.
    assert soa[0].ttl == min(served.soa_ttl, served.soa.minimum)


def test_tcp_answer_with_dig(served: Served) -> None:
    udp = dig("127.0.0.1", served.server.port, served.host_name, "A")
    tcp = dig("127.0.0.1", served.server.port, "+tcp", served.host_name, "A")
    assert tcp.status == "NOERROR" and "aa" in tcp.flags, tcp.text
    assert sorted(tcp.sections["ANSWER"]) == sorted(udp.sections["ANSWER"])


def test_large_answer_is_truncated_over_udp_and_complete_over_tcp(served: Served) -> None:
    big = served.name(BIG_LABEL)
    for edns in ("+noedns", "+bufsize=1232", "+bufsize=4096"):
        d = dig("127.0.0.1", served.server.port, "+ignore", edns, big, "TXT")
        assert d.status == "NOERROR" and "tc" in d.flags, f"{edns}:\n{d.text}"
        # RRsets are never split (RFC 2181 §9): a truncated answer holds none of them.
        assert not d.sections.get("ANSWER"), d.text
    full = dig("127.0.0.1", served.server.port, "+tcp", big, "TXT")
    assert "tc" not in full.flags and len(full.sections["ANSWER"]) == BIG_COUNT, full.text
    m = served.server.query(big, "TXT", tcp=True)
    got = {rd.to_text() for rs in m.answer for rd in rs}
    assert got == set(served.big_texts)
    udp = served.server.query(big, "TXT", use_edns=0, payload=4096)
    assert udp.flags & dns.flags.TC and len(udp.to_wire()) <= 1232


def test_names_outside_our_zones_are_refused(served: Served) -> None:
    for name in ("example.org", "test", "zonefan-not-served.example"):
        d = dig("127.0.0.1", served.server.port, name, "A")
        assert d.status == "REFUSED" and "aa" not in d.flags, d.text
        assert not d.sections.get("ANSWER"), d.text


# -- EDNS ----------------------------------------------------------------------------------


def test_edns_opt_is_echoed_only_when_asked(served: Served) -> None:
    with_opt = served.server.query(served.host_name, "A", use_edns=0, payload=1232)
    assert with_opt.edns == 0 and with_opt.payload >= 512
    assert not with_opt.ednsflags & dns.flags.DO
    do = served.server.query(served.host_name, "A", use_edns=0, want_dnssec=True)
    assert do.edns == 0 and do.ednsflags & dns.flags.DO  # RFC 3225 §3: DO is copied
    without = served.server.query(served.host_name, "A", use_edns=False)
    assert without.edns == -1 and without.rcode() == dns.rcode.NOERROR
    d = dig("127.0.0.1", served.server.port, served.host_name, "A")
    assert "version: 0" in d.opt, d.text


def test_unknown_edns_version_gets_badvers(served: Served) -> None:
    d = dig("127.0.0.1", served.server.port, "+edns=1", "+noednsneg", served.host_name, "A")
    assert d.status == "BADVERS", d.text
    assert "version: 0" in d.opt, d.text  # RFC 6891 §6.1.3: the version we do support
    m = served.server.query(served.host_name, "A", use_edns=1)
    assert m.rcode() == dns.rcode.BADVERS and m.edns == 0 and m.answer == []


# -- TCP connections -----------------------------------------------------------------------


def _read_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    data = b""
    while len(data) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} octets")
        data += chunk
    return data


def test_pipelined_queries_on_one_tcp_connection(served: Served) -> None:
    names = [served.host_name, served.origin, served.name("no-such-name-zf"), "example.org."]
    queries: dict[int, dns.message.Message] = {}
    payload = b""
    for i in range(20):
        q = dns.message.make_query(names[i % len(names)], "A" if i % 3 else "SOA")
        q.id = 1000 + i
        queries[q.id] = q
        wire = q.to_wire()
        payload += struct.pack("!H", len(wire)) + wire
    answers: dict[int, dns.message.Message] = {}
    deadline = time.monotonic() + 10
    with socket.create_connection(("127.0.0.1", served.server.port), timeout=5) as sock:
        sock.sendall(payload)  # all 20 in one write
        for _ in range(20):
            (length,) = struct.unpack("!H", _read_exact(sock, 2, deadline))
            m = dns.message.from_wire(_read_exact(sock, length, deadline))
            answers[m.id] = m
    assert set(answers) == set(queries)
    for qid, m in answers.items():
        assert m.question == queries[qid].question, qid
        assert m.flags & dns.flags.QR


def test_idle_tcp_connection_is_closed(tmp_path: Path, served: Served) -> None:
    server = ZonefanServer(
        tmp_path / "idle", db=served.server.db, extra_args=["--tcp-idle-timeout", "1"]
    )
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        # A query first: the connection works, then it goes idle.
        wire = dns.message.make_query(served.origin, "SOA").to_wire()
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        deadline = time.monotonic() + 5
        (length,) = struct.unpack("!H", _read_exact(sock, 2, deadline))
        _read_exact(sock, length, deadline)
        start = time.monotonic()
        sock.settimeout(6)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        elapsed = time.monotonic() - start
    assert closed, "the server sent data on an idle connection instead of closing it"
    assert 0.5 <= elapsed <= 5, f"closed after {elapsed:.2f} s; the idle timeout is 1 s"


# -- hostile packets -----------------------------------------------------------------------


def _malformed_packets() -> list[tuple[str, bytes]]:
    header = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 0)
    rng = random.Random(1034)
    garbage = bytearray(rng.randbytes(64))
    garbage[2:6] = b"\x00\x00\x00\x05"  # a query, opcode QUERY, QDCOUNT 5
    return [
        ("empty datagram", b""),
        ("3 octets", b"\x12\x34\x01"),
        ("11 octets", bytes(11)),
        ("header only, QDCOUNT 1", header),
        ("truncated question name", header + b"\x07exam"),
        ("question name without type and class", header + b"\x03www\x00"),
        ("compression pointer in the question", header + b"\xc0\x0c\x00\x01\x00\x01"),
        ("label longer than the packet", header + b"\x3fwww\x00\x00\x01\x00\x01"),
        ("random octets", bytes(garbage)),
        ("a response (QR set)", struct.pack("!HHHHHH", 0x4242, 0x8400, 1, 0, 0, 0)),
    ]


def test_malformed_udp_packets_get_no_reply_or_a_small_formerr(served: Served) -> None:
    port = served.server.port
    problems: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        for what, packet in _malformed_packets():
            sock.send(packet)
            sock.settimeout(0.5)
            try:
                reply: bytes | None = sock.recv(65535)
            except TimeoutError:
                reply = None
            if reply is not None:
                rcode = reply[3] & 0x0F if len(reply) >= 4 else None
                if len(reply) > len(packet) or rcode != FORMERR:
                    problems.append(
                        f"{what}: {len(packet)} octets got a {len(reply)}-octet reply "
                        f"with rcode {rcode}: {reply.hex()}"
                    )
            m = served.server.query(served.host_name, "A")
            if m.rcode() != dns.rcode.NOERROR or not m.answer:
                problems.append(f"after {what}: the server no longer answers")
    assert served.server.running(), served.server.log_text()
    assert not problems, "\n".join(problems)


# -- live changes --------------------------------------------------------------------------


def _serial(served: Served) -> int:
    m = served.server.query(served.origin, "SOA")
    rd = m.answer[0][0]
    assert isinstance(rd, dns.rdtypes.ANY.SOA.SOA)
    return int(rd.serial)


def test_committed_change_is_served_without_restart(served: Served) -> None:
    name = served.name("live-change-zf")
    pid = served.server.pid
    before = _serial(served)
    assert served.server.query(name, "A").rcode() == dns.rcode.NXDOMAIN
    served.server.cli("record", "add", served.origin, "live-change-zf", "60", "A", "192.0.2.201")
    committed = time.monotonic()
    seen: dns.message.Message | None = None
    while time.monotonic() - committed < LIVE_DEADLINE:
        m = served.server.query(name, "A")
        if m.answer:
            seen = m
            break
        time.sleep(0.05)
    waited = time.monotonic() - committed
    assert seen is not None, f"the new record was not served within {LIVE_DEADLINE} s"
    assert [rd.to_text() for rs in seen.answer for rd in rs] == ["192.0.2.201"]
    assert seen.flags & dns.flags.AA, waited
    assert served.server.pid == pid and served.server.running()
    after = _serial(served)
    assert after != before, "the SOA serial did not move with the change"


# -- IPv6 ----------------------------------------------------------------------------------


def test_ipv6_loopback(served: Served) -> None:
    if not served.server.ipv6:
        pytest.skip("::1 cannot be bound here (IPv6 disabled in this host or container)")
    port6 = served.server.port6
    q = dns.message.make_query(served.host_name, "A", flags=0)
    m = dns.query.udp(q, "::1", port=port6, timeout=2)
    assert m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AA and m.answer
    t = dns.query.tcp(q, "::1", port=port6, timeout=2)
    assert t.answer == m.answer
    d = dig("::1", port6, served.host_name, "A")
    assert d.status == "NOERROR" and "aa" in d.flags, d.text


# -- many zones ----------------------------------------------------------------------------


def _wait_rcode(server: ZonefanServer, name: str, rcode: int) -> bool:
    deadline = time.monotonic() + LIVE_DEADLINE
    while time.monotonic() < deadline:
        if server.query(name, "SOA").rcode() == rcode:
            return True
        time.sleep(0.05)
    return False


def test_zones_added_and_deleted_while_serving(served: Served, tmp_path: Path) -> None:
    other = tmp_path / "second.test.zone"
    other.write_text(
        "$ORIGIN second.test.\n$TTL 300\n"
        "@ SOA ns1 hostmaster 7 3600 600 86400 60\n@ NS ns1\nns1 A 192.0.2.7\n"
    )
    server = served.server
    assert server.query("second.test.", "SOA").rcode() == dns.rcode.REFUSED
    server.cli("zone", "import", str(other))
    assert _wait_rcode(server, "second.test.", dns.rcode.NOERROR), "new zone not served"
    m = server.query("ns1.second.test.", "A")
    assert m.flags & dns.flags.AA and m.answer[0][0].to_text() == "192.0.2.7"
    # The first zone is still served alongside.
    assert server.query(served.origin, "SOA").rcode() == dns.rcode.NOERROR
    server.cli("zone", "delete", "second.test.", "--yes")
    assert _wait_rcode(server, "second.test.", dns.rcode.REFUSED), "deleted zone still served"
    assert server.query(served.origin, "SOA").rcode() == dns.rcode.NOERROR
