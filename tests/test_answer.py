"""The answering rules, checked through the responder on wire messages."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from nameserver.serve.responder import Responder
from nameserver.zone.records import parse_record
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.zones import ZoneRegistry
from tests.zonedata import BASE, ORIGIN, registry, snapshot

RESPONDER = Responder(registry())


def ask(name: str, rdtype: str, tcp: bool = False, **kw: object) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    wire = RESPONDER.respond(q.to_wire(), tcp=tcp)
    assert wire is not None
    m = dns.message.from_wire(wire)
    assert m.id == q.id
    return m


def texts(section: list[dns.rrset.RRset]) -> list[str]:
    return [f"{rr.name} {dns.rdatatype.to_text(rr.rdtype)} {rd}" for rr in section for rd in rr]


def aa(m: dns.message.Message) -> bool:
    return bool(m.flags & dns.flags.AA)


def test_positive_answer_is_authoritative_and_minimal() -> None:
    m = ask("host.example.test", "A")
    assert m.rcode() == dns.rcode.NOERROR and aa(m)
    assert texts(m.answer) == ["host.example.test. A 192.0.2.3"]
    assert m.authority == [] and m.additional == []
    assert not m.flags & dns.flags.RA


def test_question_case_is_preserved() -> None:
    m = ask("HoSt.ExAmple.TEST", "A")
    assert m.question[0].name.to_text() == "HoSt.ExAmple.TEST."
    assert m.answer[0].name.to_text() == "HoSt.ExAmple.TEST."


def test_cname_chain_is_followed_inside_the_zone() -> None:
    m = ask("chain.example.test", "A")
    assert texts(m.answer) == [
        "chain.example.test. CNAME www.example.test.",
        "www.example.test. CNAME host.example.test.",
        "host.example.test. A 192.0.2.3",
    ]


def test_cname_loop_stops() -> None:
    m = ask("loop1.example.test", "A")
    assert len(m.answer) == 2 and m.rcode() == dns.rcode.NOERROR


def test_dangling_cname_gives_nxdomain_with_the_cname() -> None:
    m = ask("dangling.example.test", "A")
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert texts(m.answer) == ["dangling.example.test. CNAME nothing.example.test."]
    assert m.authority[0].rdtype == dns.rdatatype.SOA


def test_nxdomain_negative_ttl_is_min_of_soa_ttl_and_minimum() -> None:
    m = ask("nope.example.test", "A")
    assert m.rcode() == dns.rcode.NXDOMAIN and aa(m)
    assert m.authority[0].ttl == 300  # SOA TTL 3600, MINIMUM 300


def test_nodata_and_empty_non_terminal() -> None:
    for name in ("host.example.test", "b.deep.example.test", "deep.example.test"):
        m = ask(name, "AAAA")
        assert m.rcode() == dns.rcode.NOERROR and m.answer == [], name
        assert m.authority[0].rdtype == dns.rdatatype.SOA


def test_wildcard_synthesis_and_its_limits() -> None:
    m = ask("Any.Thing.wild.example.test", "TXT")
    assert texts(m.answer) == ['Any.Thing.wild.example.test. TXT "wild"']
    assert ask("x.wild.example.test", "MX").answer == []  # NODATA from the wildcard
    # The wildcard does not cover an existing empty non-terminal's subtree (RFC 4592 §2.2.2).
    assert ask("x.deep.example.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_referral_has_no_aa_ns_in_authority_and_glue() -> None:
    m = ask("www.sub.example.test", "A")
    assert m.rcode() == dns.rcode.NOERROR and not aa(m)
    assert m.answer == []
    assert sorted(texts(m.authority)) == [
        "sub.example.test. NS ns.example.net.",
        "sub.example.test. NS ns1.sub.example.test.",
    ]
    assert texts(m.additional) == ["ns1.sub.example.test. A 192.0.2.53"]


def test_ds_at_the_cut_is_answered_by_the_parent() -> None:
    m = ask("sub.example.test", "DS")
    assert aa(m) and texts(m.answer)[0].startswith("sub.example.test. DS 12345")


def test_dname_synthesizes_a_cname() -> None:
    m = ask("a.b.dn.example.test", "A")
    assert texts(m.answer) == [
        "dn.example.test. DNAME target.example.net.",
        "a.b.dn.example.test. CNAME a.b.target.example.net.",
    ]


def test_mx_answer_carries_target_addresses() -> None:
    m = ask("example.test", "MX")
    assert texts(m.additional) == [
        "mail.example.test. A 192.0.2.2",
        "mail.example.test. AAAA 2001:db8::2",
    ]


def test_any_is_minimal_over_udp_and_full_over_tcp() -> None:
    udp = ask("example.test", "ANY")
    tcp = ask("example.test", "ANY", tcp=True)
    assert len(udp.answer) == 1
    assert {rr.rdtype for rr in tcp.answer} == {
        dns.rdatatype.SOA,
        dns.rdatatype.NS,
        dns.rdatatype.MX,
    }


def test_outside_our_zones_is_refused() -> None:
    m = ask("example.org", "A")
    assert m.rcode() == dns.rcode.REFUSED and not aa(m) and m.answer == []


def test_non_in_class_is_refused() -> None:
    assert ask("example.test", "TXT", rdclass="CH").rcode() == dns.rcode.REFUSED


def big_registry() -> Responder:
    rows = [*BASE, *[("big", 3600, "TXT", '"' + "x" * 200 + f'{i}"') for i in range(8)]]
    return Responder(registry(rows))


def test_truncation_over_udp_and_full_answer_over_tcp() -> None:
    responder = big_registry()
    q = dns.message.make_query("big.example.test", "TXT")
    udp = dns.message.from_wire(responder.respond(q.to_wire(), tcp=False) or b"")
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = dns.message.from_wire(responder.respond(q.to_wire(), tcp=True) or b"")
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 8


def test_edns_payload_is_honoured_and_opt_echoed() -> None:
    responder = big_registry()
    q = dns.message.make_query(
        "big.example.test", "TXT", use_edns=0, payload=4096, want_dnssec=True
    )
    wire = responder.respond(q.to_wire(), tcp=False) or b""
    m = dns.message.from_wire(wire)
    # 4096 asked, but we never send more than our advertised 1232 over UDP.
    assert m.flags & dns.flags.TC and len(wire) <= 1232
    assert m.edns == 0 and m.payload == 1232 and m.ednsflags & dns.flags.DO
    q = dns.message.make_query("host.example.test", "A", use_edns=0, payload=100)
    assert dns.message.from_wire(responder.respond(q.to_wire(), tcp=False) or b"").answer


def test_ds_at_a_child_apex_comes_from_a_served_parent() -> None:
    reg = registry()
    child = dns.name.from_text("sub.example.test.")
    rows = [
        parse_record("@", 3600, "SOA", "ns1 h 1 2 3 4 5", child),
        parse_record("@", 3600, "NS", "ns1", child),
        parse_record("ns1", 3600, "A", "192.0.2.53", child),
    ]
    reg.install(ZoneSnapshot.from_records(child, rows))
    responder = Responder(reg)
    q = dns.message.make_query("sub.example.test", "DS")
    m = dns.message.from_wire(responder.respond(q.to_wire(), tcp=False) or b"")
    assert m.answer and m.answer[0].rdtype == dns.rdatatype.DS
    q = dns.message.make_query("sub.example.test", "SOA")
    m = dns.message.from_wire(responder.respond(q.to_wire(), tcp=False) or b"")
    assert aa(m) and m.answer[0].rdtype == dns.rdatatype.SOA


def test_cache_is_dropped_when_a_zone_changes() -> None:
    reg = ZoneRegistry()
    reg.install(snapshot())
    responder = Responder(reg)
    q = dns.message.make_query("new.example.test", "A").to_wire()
    assert dns.message.from_wire(responder.respond(q, tcp=False) or b"").rcode() == 3
    added = parse_record("new", 60, "A", "192.0.2.77", ORIGIN)
    current = reg.get(snapshot().origin)
    assert current is not None
    reg.install(current.patched([], [added]))
    m = dns.message.from_wire(responder.respond(q, tcp=False) or b"")
    assert texts(m.answer) == ["new.example.test. A 192.0.2.77"]
