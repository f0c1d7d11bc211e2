"""Response rate limiting in-process, on an injected clock: how responses are grouped, the
token bucket, slip, prefixes, allow-listed networks and the bounds on memory; and the
`serve --rrl-*` settings as the CLI and the config file take them."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from nameserver.serve.responder import Responder
from nameserver.serve.rrl import (
    KIND_MEMO_ENTRIES,
    KIND_MEMO_SLOTS,
    SOURCE_MEMO_ENTRIES,
    RateLimiter,
    ResponseClass,
    RrlError,
    RrlSettings,
    classify,
    truncated,
)
from nameserver.server import UdpHandler
from nameserver.zone.zones import ZoneRegistry
from tests.clock import FakeClock
from tests.packets import udp_exchange
from tests.servers import run_cli
from tests.tools import write_private
from tests.zonedata import BASE, registry, snapshot

ATTACKER = ("192.0.2.7", 4242)
NEIGHBOUR = ("192.0.2.200", 53)  # the same /24 as the attacker
OTHER = ("198.51.100.7", 53)


class Setup:
    """A registry, a responder over it and a rate limiter on a fake clock."""

    def __init__(self, settings: RrlSettings, zones: ZoneRegistry | None = None) -> None:
        self.zones = zones if zones is not None else registry()
        self.responder = Responder(self.zones)
        self.clock = FakeClock(1000.0)
        self.rrl = RateLimiter(settings, self.zones, clock=self.clock)

    def ask(self, name: str, rdtype: str = "A", addr: tuple[str, int] = ATTACKER) -> bytes | None:
        """What the server would send ``addr`` for this question (None: dropped)."""
        query = dns.message.make_query(name, rdtype).to_wire()
        response = self.responder.respond(query, tcp=False)
        assert response is not None
        return self.rrl.limit(addr, query, response)

    def flood(self, names: list[str], rdtype: str = "A", addr: tuple[str, int] = ATTACKER) -> int:
        """Ask each name once at the same instant; how many were answered in full."""
        full = 0
        for name in names:
            sent = self.ask(name, rdtype, addr)
            if sent is not None and not sent[2] & 0x02:
                full += 1
        return full


def response_to(name: str, rdtype: str, zones: ZoneRegistry) -> tuple[bytes, bytes]:
    query = dns.message.make_query(name, rdtype, want_dnssec=True).to_wire()
    response = Responder(zones).respond(query, tcp=False)
    assert response is not None
    return query, response


# -- grouping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rdtype", "kind", "group"),
    [
        ("host.example.test.", "A", ResponseClass.ANSWER, "host.example.test. A"),
        ("HoSt.ExAmPlE.test.", "A", ResponseClass.ANSWER, "host.example.test. A"),
        ("www.example.test.", "A", ResponseClass.ANSWER, "www.example.test. A"),  # a CNAME
        ("sub.example.test.", "DS", ResponseClass.ANSWER, "sub.example.test. DS"),
        ("host.example.test.", "MX", ResponseClass.NODATA, "host.example.test."),
        ("host.example.test.", "TYPE65000", ResponseClass.NODATA, "host.example.test."),
        ("deep.example.test.", "A", ResponseClass.NODATA, "deep.example.test."),  # empty
        ("nope.example.test.", "A", ResponseClass.NXDOMAIN, "example.test."),
        ("x.y.nope.example.test.", "MX", ResponseClass.NXDOMAIN, "example.test."),
        ("host.sub.example.test.", "A", ResponseClass.REFERRAL, "sub.example.test."),
        ("a.b.sub.example.test.", "AAAA", ResponseClass.REFERRAL, "sub.example.test."),
        ("one.wild.example.test.", "A", ResponseClass.WILDCARD, "wild.example.test."),
        ("two.wild.example.test.", "MX", ResponseClass.WILDCARD, "wild.example.test."),
        ("x.dn.example.test.", "A", ResponseClass.WILDCARD, "dn.example.test."),  # DNAME
        ("example.org.", "A", ResponseClass.ERROR, ""),  # REFUSED: not served here
    ],
)  # fmt: skip
def test_responses_are_grouped_as_nsd_and_bind_group_them(
    name: str, rdtype: str, kind: ResponseClass, group: str
) -> None:
    query, response = response_to(name, rdtype, registry())
    got_kind, got_group = classify(query, response, registry())
    shown = dns.name.from_wire(got_group, 0)[0].to_text() if got_group else ""
    if kind == ResponseClass.ANSWER:
        shown += " " + dns.rdatatype.to_text(
            dns.rdatatype.RdataType(int.from_bytes(got_group[-2:]))
        )
    assert (got_kind, shown) == (kind, group)


def test_malformed_queries_and_errors_form_one_group() -> None:
    zones = registry()
    garbage = b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01"
    response = Responder(zones).respond(garbage, tcp=False)
    assert response is not None and response[3] & 0x0F == dns.rcode.FORMERR
    assert classify(garbage, response, zones) == (ResponseClass.ERROR, b"")
    # BADVERS has NOERROR in the header's four bits: still an error, not a referral.
    query = dns.message.make_query("host.example.test.", "A", use_edns=1).to_wire()
    response = Responder(zones).respond(query, tcp=False)
    assert response is not None and response[3] & 0x0F == 0
    assert classify(query, response, zones) == (ResponseClass.ERROR, b"")
    # A question with a compression pointer, paired with a NOERROR (as a transfer path that
    # parses more leniently might give): still no name to group by.
    _, ok = response_to("host.example.test.", "A", zones)
    assert classify(garbage, ok, zones) == (ResponseClass.ERROR, b"")


def test_a_zero_octet_inside_a_label_is_part_of_the_name() -> None:
    name = dns.name.Name([b"a\x00b", b"example", b"test", b""])
    query = dns.message.make_query(name, "A").to_wire()
    response = Responder(registry()).respond(query, tcp=False)
    assert response is not None and response[3] & 0x0F == dns.rcode.NXDOMAIN
    assert classify(query, response, registry()) == (
        ResponseClass.NXDOMAIN,
        b"\x07example\x04test\x00",
    )


# -- the token bucket --------------------------------------------------------------------------


def test_a_burst_of_one_second_then_the_rate() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0))
    assert s.flood(["host.example.test."] * 50) == 10  # the burst: one second's worth
    s.clock.now += 0.5
    assert s.flood(["host.example.test."] * 50) == 5
    s.clock.now += 10  # idle: the bucket refills, but never beyond one second's worth
    assert s.flood(["host.example.test."] * 50) == 10


def test_a_steady_flood_gets_the_rate_and_no_more() -> None:
    s = Setup(RrlSettings(ratelimit=20, slip=0))
    full = 0
    for _ in range(10 * 100):  # ten seconds at 1000 queries a second
        full += s.flood(["host.example.test."] * 10)
        s.clock.now += 0.01
    assert 20 * 10 <= full <= 20 * 11  # the rate, plus one burst


def test_slip_sends_every_nth_limited_response_truncated() -> None:
    s = Setup(RrlSettings(ratelimit=5, slip=3))
    sent = [s.ask("host.example.test.") for _ in range(5 + 30)]
    assert all(r is not None and not r[2] & 0x02 for r in sent[:5])
    limited = sent[5:]
    assert sum(r is None for r in limited) == 20
    slipped = [r for r in limited if r is not None]
    assert len(slipped) == 10 and s.rrl.slipped == 10 and s.rrl.limited == 30
    m = dns.message.from_wire(slipped[0])
    assert m.flags & dns.flags.TC and m.flags & dns.flags.QR
    assert m.question[0].name.to_text() == "host.example.test." and not m.answer


@pytest.mark.parametrize(("slip", "truncated_share"), [(0, 0.0), (1, 1.0), (2, 0.5)])
def test_slip_zero_drops_all_and_one_truncates_all(slip: int, truncated_share: float) -> None:
    s = Setup(RrlSettings(ratelimit=1, slip=slip))
    sent = [s.ask("nope.example.test.") for _ in range(1 + 100)]
    assert sum(r is not None for r in sent[1:]) == 100 * truncated_share


def test_truncated_keeps_header_and_question_only() -> None:
    query, response = response_to("mail.example.test.", "AAAA", registry())
    cut = truncated(response)
    m = dns.message.from_wire(cut)
    original = dns.message.from_wire(response)
    assert m.id == original.id and m.rcode() == original.rcode()
    assert m.flags & dns.flags.TC and m.flags & dns.flags.AA
    assert m.question == original.question and not m.answer and not m.additional
    assert len(cut) <= len(query)  # nothing to amplify
    header_only = truncated(response[:4] + b"\x00\x00" + bytes(6))
    assert len(header_only) == 12 and header_only[2] & 0x02


# -- what shares a limit -------------------------------------------------------------------


def test_one_network_is_limited_while_another_is_served() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0))
    assert s.flood(["host.example.test."] * 100) == 10
    assert s.flood(["host.example.test."] * 10, addr=NEIGHBOUR) == 0  # same /24
    assert s.flood(["host.example.test."] * 10, addr=OTHER) == 10


def test_the_prefix_lengths_set_who_shares() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0, ipv4_prefix=32, ipv6_prefix=64))
    assert s.flood(["host.example.test."] * 100) == 10
    assert s.flood(["host.example.test."] * 10, addr=NEIGHBOUR) == 10  # /32: its own
    six = Setup(RrlSettings(ratelimit=10, slip=0))  # IPv6 /56 by default
    assert six.flood(["host.example.test."] * 100, addr=("2001:db8:0:1::1", 53)) == 10
    assert six.flood(["host.example.test."] * 10, addr=("2001:db8:0:ff:1::9", 53)) == 0
    assert six.flood(["host.example.test."] * 10, addr=("2001:db8:0:100::1", 53)) == 10
    assert six.flood(["host.example.test."] * 10, addr=("fe80::1%lo", 53)) == 10


def test_kinds_and_names_are_limited_apart() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0))
    assert s.flood(["host.example.test."] * 100) == 10
    assert s.flood(["mail.example.test."] * 10) == 10  # another name
    assert s.flood(["host.example.test."] * 10, rdtype="AAAA") == 10  # NODATA, not ANSWER
    assert s.flood(["nope.example.test."] * 10) == 10  # NXDOMAIN


def test_random_names_do_not_escape_their_group() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0))
    for group in ("{}.nope.example.test.", "{}.wild.example.test.", "{}.dn.example.test."):
        names = [group.format(f"r{i}") for i in range(100)]
        assert s.flood(names) == 10, group
        assert s.flood(names[:10], rdtype="TXT") == 0, group  # nor by changing the type
    referrals = [f"r{i}.sub.example.test." for i in range(100)]
    assert s.flood(referrals) == 10
    assert s.flood(["example.org.", "example.net.", "a.b.example.com."] * 10) == 10  # errors


def test_an_allow_listed_network_is_never_limited() -> None:
    exempt = (ipaddress.ip_network("192.0.2.0/25"), ipaddress.ip_network("2001:db8::/32"))
    s = Setup(RrlSettings(ratelimit=1, slip=0, exempt=exempt))
    assert s.flood(["host.example.test."] * 1000) == 1000
    assert s.flood(["nope.example.test."] * 1000, addr=("2001:db8::53", 53)) == 1000
    assert s.flood(["host.example.test."] * 10, addr=NEIGHBOUR) == 1  # .200 is not in /25
    assert s.rrl.limited == 9


def test_a_new_zone_version_regroups_the_same_query() -> None:
    zones = registry()
    s = Setup(RrlSettings(ratelimit=10, slip=0), zones)
    assert s.flood(["late.example.test."] * 100) == 10  # NXDOMAIN: limited
    zones.install(snapshot([*BASE, ("late", 3600, "A", "192.0.2.99")]))
    assert s.flood(["late.example.test."] * 100) == 10  # now an answer: a fresh bucket


def test_the_log_gets_a_line_a_minute_however_hard_the_flood(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=2))
    with caplog.at_level("INFO", logger="nameserver.serve.rrl"):
        for _ in range(150):  # 150 s at 200 queries a second
            s.flood(["nope.example.test."] * 200)
            s.clock.now += 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "response rate limiting: limiting responses to 192.0.2.0/24"
    assert len(lines) == 3, lines  # at 0 s, 60 s and 120 s
    assert lines[1] == (
        "response rate limiting: 5700 UDP responses dropped and 5700 sent truncated in the "
        "last 60 s (latest to 192.0.2.0/24)"
    )


# -- bounds ---------------------------------------------------------------------------------


def test_memory_is_fixed_whatever_the_sources_and_names() -> None:
    s = Setup(RrlSettings(ratelimit=10, slip=0, table_size=1 << 10))
    for i in range(max(SOURCE_MEMO_ENTRIES, KIND_MEMO_ENTRIES) + 500):
        addr = (f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1", 53)
        s.ask(f"r{i}.nope.example.test.", addr=addr)
    assert len(s.rrl._sources) <= SOURCE_MEMO_ENTRIES
    assert s.rrl._kinds_used <= KIND_MEMO_ENTRIES
    assert len(s.rrl._kinds) == 2 * KIND_MEMO_SLOTS
    assert len(s.rrl._arrival) == 1 << 10


def test_settings_that_cannot_work_are_refused() -> None:
    for bad in (
        {"ratelimit": -1},
        {"slip": -1},
        {"ipv4_prefix": 33},
        {"ipv6_prefix": 129},
        {"table_size": 1000},
    ):
        with pytest.raises(RrlError):
            RrlSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(RrlError, match="off"):
        RateLimiter(RrlSettings(ratelimit=0), registry())


# -- in the UDP handler ----------------------------------------------------------------------


def test_the_udp_handler_sends_what_the_limiter_lets_through() -> None:
    zones = registry()
    responder = Responder(zones)
    clock = FakeClock(1000.0)
    handler = UdpHandler(
        responder, rrl=RateLimiter(RrlSettings(ratelimit=3, slip=2), zones, clock=clock)
    )
    query = dns.message.make_query("host.example.test.", "A").to_wire()
    # the first misses the response cache, the rest hit it
    sent = udp_exchange(handler, [(query, ATTACKER)] * (3 + 10))
    assert len(sent) == 3 + 5
    assert all(not data[2] & 0x02 for data, _ in sent[:3])
    assert all(data[2] & 0x02 for data, _ in sent[3:])
    sent = udp_exchange(handler, [(query, OTHER)])
    assert len(sent) == 1 and not sent[-1][0][2] & 0x02


# -- settings ------------------------------------------------------------------------------------

SERVE = ("serve", "--listen", "127.0.0.1:1")  # refused before it binds anything


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rrl-ratelimit", "-5"), "--rrl-ratelimit"),
        (("--rrl-ipv4-prefix", "33"), "--rrl-ipv4-prefix"),
        (("--rrl-ipv6-prefix", "129"), "--rrl-ipv6-prefix"),
        (("--rrl-exempt", "192.0.2.0/33"), "'192.0.2.0/33' is not an address or network"),
        (("--rrl-exempt", "192.0.2.1/24"), "has host bits set"),
        (("--rrl-exempt", "192.0.2.1@53"), "a network has no port here"),
    ],
)
def test_bad_flags_are_refused_by_name(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    done = run_cli(tmp_path / "z.db", *SERVE, *args, check=False)
    assert done.returncode == 2, done
    assert message in done.stderr
    assert not (tmp_path / "z.db").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rrl-ratelimit = 'lots'", "serve.rrl-ratelimit: 'lots' is not a valid integer"),
        ("rrl-slip = -1", "serve.rrl-slip: -1 is not in the range x>=0"),
        ("rrl-exempt = ['10.0.0.0/8', 'nonsense']", "serve.rrl-exempt: 'nonsense' is not an"),
        ("rrl-exempt = '10.0.0.0/8'", "serve.rrl-exempt: must be a list"),
        ("rrl-exmpt = ['10.0.0.0/8']", "serve.rrl-exmpt: unknown setting; did you mean"),
    ],
)
def test_the_config_takes_the_same_settings_under_serve(
    tmp_path: Path, text: str, message: str
) -> None:
    config = write_private(tmp_path / "zonefan.toml", f"[serve]\n{text}\n")
    done = run_cli(tmp_path / "z.db", "--config", str(config), *SERVE, check=False)
    assert done.returncode in (1, 2), done
    assert f"{config}: {message}" in done.stderr
    assert not (tmp_path / "z.db").exists()
