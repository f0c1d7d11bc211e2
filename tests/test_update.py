"""RFC 2136 dynamic UPDATE decided against a snapshot: zone section, every prerequisite kind
and its rcode, the prescan, every update kind with the apex SOA/NS and CNAME rules, RRs
applied in message order, the per-key update-policy, a property against a small reference
implementation of §3.4.2, and the decision committed through a real editor (plain and
signed)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig
import dns.update
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author, ZoneEditor
from nameserver.edit.update import UpdateDecision, process_update
from nameserver.edit.updatepolicy import UpdatePolicy, parse_rule, policies_from_config
from nameserver.errors import NameserverError, UpdatePolicyError, ZoneValidationError
from nameserver.store.store import Store
from nameserver.zone.records import Record, identity_key, parse_record
from nameserver.zone.serial import SerialPolicy, serial_gt
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.validate import SIGNER_TYPES
from nameserver.zone.zonefile import read_zone_file
from signer.policy import Denial
from tests.tools import PROJECT_ROOT, require_tool

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ORIGIN = dns.name.from_text("example.test.")
PARSED = read_zone_file(EXAMPLE)
ZONE = ZoneSnapshot.from_records(ORIGIN, PARSED.records)
ACME = dns.name.from_text("acme-key.")
ADMIN = dns.name.from_text("admin.")
POLICY = UpdatePolicy.parse(
    ORIGIN,
    [
        "grant acme-key name _acme-challenge.www TXT",
        "grant admin zonesub ANY",
    ],
)
NOERROR, FORMERR, NOTZONE, NOTAUTH = (
    dns.rcode.NOERROR,
    dns.rcode.FORMERR,
    dns.rcode.NOTZONE,
    dns.rcode.NOTAUTH,
)
REFUSED, YXDOMAIN, YXRRSET = dns.rcode.REFUSED, dns.rcode.YXDOMAIN, dns.rcode.YXRRSET
NXDOMAIN, NXRRSET = dns.rcode.NXDOMAIN, dns.rcode.NXRRSET

Build = Callable[[dns.update.UpdateMessage], None]


# -- helpers --------------------------------------------------------------------------------


def message(build: Build) -> dns.update.UpdateMessage:
    u = dns.update.UpdateMessage(ORIGIN)
    build(u)
    # dnspython keeps the names given as text relative to the zone; on the wire they are
    # absolute, which is what process_update expects.
    for section in u.sections[1:]:
        section[:] = [absolute_rrset(rrset) for rrset in section]
    return u


def absolute_rrset(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    name = rrset.name.derelativize(ORIGIN)
    fresh = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype, deleting=rrset.deleting)
    fresh.ttl = rrset.ttl
    for rd in rrset:
        fresh.add(absolute(rd), rrset.ttl)
    return fresh


def absolute(rd: dns.rdata.Rdata) -> dns.rdata.Rdata:
    text = rd.to_text(origin=ORIGIN, relativize=False)
    return dns.rdata.from_text(rd.rdclass, rd.rdtype, text)


def decide(
    build: Build,
    key: dns.name.Name | None = ADMIN,
    zone: ZoneSnapshot = ZONE,
    policy: UpdatePolicy = POLICY,
) -> UpdateDecision:
    return process_update(message(build), key, zone, policy)


def rr(name: str, ttl: int, rdtype: str, rdata: str) -> Record:
    return parse_record(name, ttl, rdtype, rdata, ORIGIN)


def applied(decision: UpdateDecision, zone: ZoneSnapshot = ZONE) -> ZoneSnapshot:
    assert decision.rcode == NOERROR, decision.reason
    return zone.patched(decision.remove, decision.add)


def at(zone: ZoneSnapshot, name: str, rdtype: str) -> set[str]:
    """The RRs of one RRset as ``TTL rdata`` texts."""
    owner = dns.name.from_text(name, ORIGIN)
    t = int(dns.rdatatype.from_text(rdtype))
    return {f"{r.ttl} {r.rdata.to_text(origin=ORIGIN)}" for r in zone.rrset_records(owner, t)}


def raw(
    section: int,
    name: str,
    rdtype: str,
    ttl: int = 0,
    rdata: str | None = None,
    rdclass: str = "IN",
    deleting: str | None = None,
) -> Build:
    """A step appending one RR as its own RRset to ``section`` (dnspython's helpers merge
    RRsets, and refuse some of the malformed RRs these tests need)."""
    owner = dns.name.from_text(name, ORIGIN)
    t = dns.rdatatype.from_text(rdtype)
    rrset = dns.rrset.RRset(
        owner,
        dns.rdataclass.from_text(rdclass),
        t,
        deleting=dns.rdataclass.from_text(deleting) if deleting else None,
    )
    if rdata is not None:
        rdclass_ = dns.rdataclass.from_text(rdclass)
        rd = dns.rdata.from_text(rdclass_, t, rdata, origin=ORIGIN, relativize=False)
        rrset.add(rd, ttl)
    else:
        rrset.ttl = ttl
    return lambda u: u.sections[section].append(rrset)


def seq(*steps: Build) -> Build:
    """Steps applied in order (RRs go into the message in this order)."""

    def build(u: dns.update.UpdateMessage) -> None:
        for step in steps:
            step(u)

    return build


def nothing_changes(decision: UpdateDecision) -> bool:
    return decision.remove == () and decision.add == ()


# -- the ACME pattern and whole-RRset replacement --------------------------------------------


def test_acme_add_then_delete_the_challenge() -> None:
    name = "_acme-challenge.www"
    added = decide(lambda u: u.add(name, 60, "TXT", '"token"'), key=ACME)
    assert added.rcode == NOERROR, added.reason
    assert added.add == (rr(name, 60, "TXT", '"token"'),) and added.remove == ()
    zone = applied(added)
    assert at(zone, name, "TXT") == {'60 "token"'}
    gone = decide(lambda u: u.delete(name, "TXT", '"token"'), key=ACME, zone=zone)
    assert gone.remove == (rr(name, 60, "TXT", '"token"'),) and gone.add == ()
    assert at(applied(gone, zone), name, "TXT") == set()


def test_acme_key_cannot_touch_anything_else() -> None:
    for build in (
        lambda u: u.add("_acme-challenge.www", 60, "A", "192.0.2.1"),  # type
        lambda u: u.add("_acme-challenge.web", 60, "TXT", '"x"'),  # name
        lambda u: u.delete("www"),
    ):
        d = decide(build, key=ACME)
        assert d.rcode == REFUSED and nothing_changes(d), d.reason


def test_replace_a_whole_rrset() -> None:
    d = decide(lambda u: u.replace("web", 300, "A", "192.0.2.81", "192.0.2.82"))
    zone = applied(d)
    assert at(zone, "web", "A") == {"300 192.0.2.81", "300 192.0.2.82"}
    assert at(zone, "web", "AAAA") == {"3600 2001:db8::80"}
    assert set(d.remove) == {rr("web", 3600, "A", "192.0.2.80")}


# -- §3.1 zone section ----------------------------------------------------------------------


def test_zone_section_errors() -> None:
    other = dns.update.UpdateMessage("example.org.")
    other.add("x.example.org.", 60, "A", "192.0.2.1")
    d = process_update(other, ADMIN, ZONE, POLICY)
    assert d.rcode == NOTAUTH and nothing_changes(d)

    two = message(lambda u: None)
    two.zone.append(dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.SOA))
    assert process_update(two, ADMIN, ZONE, POLICY).rcode == FORMERR

    chaos = dns.update.UpdateMessage(ORIGIN, rdclass=dns.rdataclass.CH)
    assert process_update(chaos, ADMIN, ZONE, POLICY).rcode == FORMERR

    not_soa = message(lambda u: None)
    not_soa.zone[0] = dns.rrset.RRset(ORIGIN, dns.rdataclass.IN, dns.rdatatype.A)
    assert process_update(not_soa, ADMIN, ZONE, POLICY).rcode == FORMERR

    query = dns.message.make_query("example.test.", "SOA")
    assert process_update(query, ADMIN, ZONE, POLICY).rcode == FORMERR


# -- §3.2 prerequisites ---------------------------------------------------------------------

PREREQUISITES: list[tuple[str, Build, dns.rcode.Rcode]] = [
    # §2.4.1 RRset exists (value independent)
    ("rrset exists", lambda u: u.present("web", "A"), NOERROR),
    ("rrset exists: no such name", lambda u: u.present("nothing", "A"), NXRRSET),
    ("rrset exists: no such type", lambda u: u.present("web", "MX"), NXRRSET),
    # §2.4.2 RRset exists (value dependent)
    (
        "rrset equals",
        lambda u: u.present("web", dns.rdata.from_text("IN", "A", "192.0.2.80")),
        NOERROR,
    ),
    (
        "rrset equals, names any case",
        lambda u: u.present("www", dns.rdata.from_text("IN", "CNAME", "WEB.example.test.")),
        NOERROR,
    ),
    (
        "rrset differs",
        lambda u: u.present("web", dns.rdata.from_text("IN", "A", "192.0.2.99")),
        NXRRSET,
    ),
    (
        "rrset subset",
        seq(
            lambda u: u.present("ns1", dns.rdata.from_text("IN", "A", "192.0.2.2")),
            raw(1, "ns1", "AAAA", rdata="2001:db8::2"),
            raw(1, "mail1", "A", rdata="192.0.2.25"),
        ),
        NOERROR,
    ),
    ("rrset missing an RR", raw(1, "@", "NS", rdata="ns1"), NXRRSET),
    (
        "rrset with an extra RR",
        seq(*(raw(1, "@", "NS", rdata=x) for x in ("ns1", "ns2", "ns3"))),
        NXRRSET,
    ),
    (
        "rrset equals, in two parts",
        seq(*(raw(1, "@", "NS", rdata=x) for x in ("ns1", "ns2"))),
        NOERROR,
    ),
    # §2.4.3 RRset does not exist
    ("rrset absent", lambda u: u.absent("web", "TXT"), NOERROR),
    ("rrset absent: exists", lambda u: u.absent("web", "A"), YXRRSET),
    # §2.4.4 name is in use
    ("name in use", lambda u: u.present("web"), NOERROR),
    ("name in use: no", lambda u: u.present("nothing"), NXDOMAIN),
    ("name in use: empty non-terminal", lambda u: u.present("deep"), NXDOMAIN),
    # §2.4.5 name is not in use
    ("name not in use", lambda u: u.absent("nothing"), NOERROR),
    ("name not in use: empty non-terminal", lambda u: u.absent("b.deep"), NOERROR),
    ("name not in use: in use", lambda u: u.absent("web"), YXDOMAIN),
    # form and zone
    ("outside the zone", lambda u: u.present("web.example.org.", "A"), NOTZONE),
    ("TTL not 0", raw(1, "web", "A", ttl=300, rdata="192.0.2.80"), FORMERR),
    ("TTL not 0, class ANY", raw(1, "web", "A", ttl=1, deleting="ANY"), FORMERR),
    (
        "class ANY with rdata",
        raw(1, "web", "A", rdata="192.0.2.80", deleting="ANY"),
        FORMERR,
    ),
    (
        "class NONE with rdata",
        raw(1, "web", "A", rdata="192.0.2.80", deleting="NONE"),
        FORMERR,
    ),
    ("class CH", raw(1, "web", "A", rdclass="CH", rdata="web 1"), FORMERR),
    ("class IN type ANY", raw(1, "web", "ANY"), FORMERR),
    (
        "first failure wins",
        seq(lambda u: u.present("nothing"), lambda u: u.absent("web", "A")),
        NXDOMAIN,
    ),
]


@pytest.mark.parametrize(
    ("build", "rcode"), [p[1:] for p in PREREQUISITES], ids=[p[0] for p in PREREQUISITES]
)
def test_prerequisites(build: Build, rcode: dns.rcode.Rcode) -> None:
    def with_an_update(u: dns.update.UpdateMessage) -> None:
        build(u)
        u.add("new", 300, "A", "192.0.2.7")

    d = decide(with_an_update)
    assert d.rcode == rcode, d.reason
    if rcode == NOERROR:
        assert d.add == (rr("new", 300, "A", "192.0.2.7"),)
    else:
        assert nothing_changes(d)


# -- §3.4.1 prescan -------------------------------------------------------------------------

PRESCAN: list[tuple[str, Build, dns.rcode.Rcode]] = [
    ("add outside the zone", lambda u: u.add("x.example.org.", 60, "A", "192.0.2.1"), NOTZONE),
    ("delete outside the zone", lambda u: u.delete("example.org."), NOTZONE),
    ("add of class CH", raw(2, "web", "A", 60, "web 1", rdclass="CH"), FORMERR),
    ("add of type ANY", raw(2, "web", "ANY", 60), FORMERR),
    ("add with a TTL too large", raw(2, "web", "A", 2**31, "192.0.2.1"), FORMERR),
    ("class ANY with a TTL", raw(2, "web", "A", 60, deleting="ANY"), FORMERR),
    (
        "class ANY with rdata",
        raw(2, "web", "A", 0, "192.0.2.80", deleting="ANY"),
        FORMERR,
    ),
    ("class ANY type AXFR", raw(2, "web", "AXFR", deleting="ANY"), FORMERR),
    (
        "class NONE with a TTL",
        raw(2, "web", "A", 60, "192.0.2.80", deleting="NONE"),
        FORMERR,
    ),
    ("class NONE type ANY", raw(2, "web", "ANY", deleting="NONE"), FORMERR),
    ("class NONE without rdata", raw(2, "web", "A", deleting="NONE"), FORMERR),
    # the prescan looks at every RR before any is applied
    (
        "bad RR after a good one",
        seq(lambda u: u.add("ok", 60, "A", "192.0.2.1"), raw(2, "web", "ANY", 60)),
        FORMERR,
    ),
]


@pytest.mark.parametrize(("build", "rcode"), [p[1:] for p in PRESCAN], ids=[p[0] for p in PRESCAN])
def test_prescan(build: Build, rcode: dns.rcode.Rcode) -> None:
    d = decide(build)
    assert d.rcode == rcode, d.reason
    assert nothing_changes(d)


# -- §3.4.2 update kinds --------------------------------------------------------------------

SOA_NOW = "ns1 hostmaster 2024060101 7200 3600 1209600 300"  # zones/example.test.zone
# (id, build, RRset to look at, its RRs afterwards)
UPDATES: list[tuple[str, Build, tuple[str, str], set[str]]] = [
    (
        "add to an RRset",
        lambda u: u.add("web", 3600, "A", "192.0.2.81"),
        ("web", "A"),
        {"3600 192.0.2.80", "3600 192.0.2.81"},
    ),
    (
        "add with another TTL sets the RRset's",
        lambda u: u.add("web", 60, "A", "192.0.2.81"),
        ("web", "A"),
        {"60 192.0.2.80", "60 192.0.2.81"},
    ),
    (
        "add an existing RR with a new TTL",
        lambda u: u.add("web", 60, "A", "192.0.2.80"),
        ("web", "A"),
        {"60 192.0.2.80"},
    ),
    (
        "add a new name",
        lambda u: u.add("new.deep", 300, "TXT", '"x"'),
        ("new.deep", "TXT"),
        {'300 "x"'},
    ),
    ("delete an RRset", lambda u: u.delete("web", "A"), ("web", "A"), set()),
    (
        "delete an absent RRset",
        lambda u: u.delete("web", "MX"),
        ("web", "AAAA"),
        {"3600 2001:db8::80"},
    ),
    ("delete a name", lambda u: u.delete("bastion"), ("bastion", "SSHFP"), set()),
    ("delete an RR", lambda u: u.delete("mail1", "AAAA", "2001:db8::25"), ("mail1", "AAAA"), set()),
    (
        "delete an absent RR",
        lambda u: u.delete("mail1", "A", "192.0.2.99"),
        ("mail1", "A"),
        {"3600 192.0.2.25"},
    ),
    (
        "delete one of two RRs",
        lambda u: u.delete("@", "MX", "10 mail1"),
        ("@", "MX"),
        {"3600 20 mail2"},
    ),
    # §3.4.2.3/4: the apex SOA and NS
    ("apex: delete all keeps the SOA", lambda u: u.delete("@"), ("@", "SOA"), {f"3600 {SOA_NOW}"}),
    (
        "apex: delete all keeps the NS",
        lambda u: u.delete("@"),
        ("@", "NS"),
        {"3600 ns1", "3600 ns2"},
    ),
    ("apex: delete all removes the rest", lambda u: u.delete("@"), ("@", "MX"), set()),
    (
        "apex: delete the SOA RRset",
        lambda u: u.delete("@", "SOA"),
        ("@", "SOA"),
        {f"3600 {SOA_NOW}"},
    ),
    (
        "apex: delete the SOA RR",
        lambda u: u.delete("@", "SOA", SOA_NOW),
        ("@", "SOA"),
        {f"3600 {SOA_NOW}"},
    ),
    (
        "apex: delete the NS RRset",
        lambda u: u.delete("@", "NS"),
        ("@", "NS"),
        {"3600 ns1", "3600 ns2"},
    ),
    ("apex: delete one NS", lambda u: u.delete("@", "NS", "ns2"), ("@", "NS"), {"3600 ns1"}),
    (
        "apex: the last NS stays",
        lambda u: u.delete("@", "NS", "ns1", "ns2"),
        ("@", "NS"),
        {"3600 ns2"},
    ),
    (
        "delegation: the last NS can go",
        lambda u: u.delete("sub", "NS", "ns1.sub", "ns2.sub"),
        ("sub", "NS"),
        set(),
    ),
    (
        "SOA: a newer serial replaces",
        lambda u: u.add("@", 3600, "SOA", SOA_NOW.replace("2024060101", "2024060200")),
        ("@", "SOA"),
        {"3600 " + SOA_NOW.replace("2024060101", "2024060200")},
    ),
    (
        "SOA: an older serial is ignored",
        lambda u: u.add("@", 3600, "SOA", SOA_NOW.replace("2024060101", "2024010100")),
        ("@", "SOA"),
        {f"3600 {SOA_NOW}"},
    ),
    ("SOA: not at the apex", lambda u: u.add("web", 3600, "SOA", SOA_NOW), ("web", "SOA"), set()),
    # §3.4.2.2: CNAME and other data
    (
        "CNAME: no other data beside it",
        lambda u: u.add("www", 3600, "A", "192.0.2.1"),
        ("www", "A"),
        set(),
    ),
    (
        "CNAME: not beside other data",
        lambda u: u.add("web", 3600, "CNAME", "mail1"),
        ("web", "CNAME"),
        set(),
    ),
    (
        "CNAME: replaces a CNAME",
        lambda u: u.add("www", 300, "CNAME", "mail1"),
        ("www", "CNAME"),
        {"300 mail1"},
    ),
    (
        "CNAME: after the other data went",
        seq(lambda u: u.delete("web"), raw(2, "web", "CNAME", 60, "mail1")),
        ("web", "CNAME"),
        {"60 mail1"},
    ),
    (
        "CNAME: at the apex is ignored",
        lambda u: u.add("@", 60, "CNAME", "web"),
        ("@", "CNAME"),
        set(),
    ),
]


@pytest.mark.parametrize(
    ("build", "rrset", "expected"), [p[1:] for p in UPDATES], ids=[p[0] for p in UPDATES]
)
def test_update_kinds(build: Build, rrset: tuple[str, str], expected: set[str]) -> None:
    d = decide(build)
    assert d.rcode == NOERROR, d.reason
    assert at(applied(d), *rrset) == expected


def test_an_add_with_another_ttl_moves_the_whole_rrset() -> None:
    d = decide(lambda u: u.add("web", 60, "A", "192.0.2.81"))
    assert d.remove == (rr("web", 3600, "A", "192.0.2.80"),)
    assert set(d.add) == {rr("web", 60, "A", "192.0.2.80"), rr("web", 60, "A", "192.0.2.81")}
    assert {r.ttl for r in d.add} == {60}


def test_ignored_rrs_are_reported_and_change_nothing() -> None:
    d = decide(seq(lambda u: u.delete("@", "SOA"), lambda u: u.add("www", 60, "A", "192.0.2.1")))
    assert d.rcode == NOERROR and not d.changes
    assert len(d.ignored) == 2 and "apex" in d.ignored[0] and "CNAME" in d.ignored[1]
    assert "ignored" in d.reason


def test_apex_delete_all_and_soa_replacement_records() -> None:
    d = decide(lambda u: u.delete("@"))
    assert {r.rdtype for r in d.remove} == {1, 28, 15, 16, 257, 65, 35, 29}
    newer = SOA_NOW.replace("2024060101", "2024060200")
    d = decide(lambda u: u.add("@", 3600, "SOA", newer))
    assert d.remove == (rr("@", 3600, "SOA", SOA_NOW),)
    assert d.add == (rr("@", 3600, "SOA", newer),)


@pytest.mark.parametrize("rdtype", sorted(SIGNER_TYPES))
def test_signer_types_are_refused(rdtype: int) -> None:
    name = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
    for build in (
        lambda u: u.delete("web", name),
        raw(2, "web", name, deleting="ANY"),
    ):
        d = decide(build)
        assert d.rcode == REFUSED and nothing_changes(d)
        assert "signer" in d.reason


def test_signer_records_are_refused_on_add() -> None:
    dnskey = "257 3 13 " + "A" * 88
    d = decide(lambda u: u.add("@", 3600, "DNSKEY", dnskey))
    assert d.rcode == REFUSED and "signer" in d.reason and nothing_changes(d)


# -- order within one message (§3.4.2: RR by RR) --------------------------------------------

SEQUENCES: list[tuple[str, Build, tuple[str, str], set[str]]] = [
    (
        "add then delete the RR",
        seq(raw(2, "t", "TXT", 60, '"x"'), raw(2, "t", "TXT", 0, '"x"', deleting="NONE")),
        ("t", "TXT"),
        set(),
    ),
    (
        "delete then add the RR",
        seq(
            raw(2, "web", "A", 0, "192.0.2.80", deleting="NONE"),
            raw(2, "web", "A", 3600, "192.0.2.80"),
        ),
        ("web", "A"),
        {"3600 192.0.2.80"},
    ),
    (
        "add, delete RRset, add",
        seq(
            raw(2, "web", "A", 60, "192.0.2.1"),
            raw(2, "web", "A", deleting="ANY"),
            raw(2, "web", "A", 60, "192.0.2.2"),
        ),
        ("web", "A"),
        {"60 192.0.2.2"},
    ),
    (
        "add then delete the name",
        seq(raw(2, "t", "A", 60, "192.0.2.1"), raw(2, "t", "ANY", deleting="ANY")),
        ("t", "A"),
        set(),
    ),
    (
        "CNAME then A: the A is ignored",
        seq(raw(2, "t", "CNAME", 60, "web"), raw(2, "t", "A", 60, "192.0.2.1")),
        ("t", "CNAME"),
        {"60 web"},
    ),
    (
        "A then CNAME: the CNAME is ignored",
        seq(raw(2, "t", "A", 60, "192.0.2.1"), raw(2, "t", "CNAME", 60, "web")),
        ("t", "CNAME"),
        set(),
    ),
    (
        "two SOAs: the second older than the first",
        seq(
            raw(2, "@", "SOA", 3600, SOA_NOW.replace("2024060101", "2024060300")),
            raw(2, "@", "SOA", 3600, SOA_NOW.replace("2024060101", "2024060200")),
        ),
        ("@", "SOA"),
        {"3600 " + SOA_NOW.replace("2024060101", "2024060300")},
    ),
    (
        "the last apex NS after adding one",
        seq(
            raw(2, "@", "NS", 3600, "ns3"),
            raw(2, "@", "NS", 0, "ns1", deleting="NONE"),
            raw(2, "@", "NS", 0, "ns2", deleting="NONE"),
            raw(2, "@", "NS", 0, "ns3", deleting="NONE"),
        ),
        ("@", "NS"),
        {"3600 ns3"},
    ),
]


@pytest.mark.parametrize(
    ("build", "rrset", "expected"), [p[1:] for p in SEQUENCES], ids=[p[0] for p in SEQUENCES]
)
def test_rrs_apply_in_message_order(
    build: Build, rrset: tuple[str, str], expected: set[str]
) -> None:
    d = decide(build)
    assert at(applied(d), *rrset) == expected


def test_add_then_delete_is_no_change() -> None:
    d = decide(seq(raw(2, "t", "TXT", 60, '"x"'), raw(2, "t", "TXT", 0, '"x"', deleting="NONE")))
    assert d.rcode == NOERROR and not d.changes


def test_wire_round_trip_keeps_the_order() -> None:
    u = message(
        seq(
            raw(2, "web", "A", 60, "192.0.2.1"),
            raw(2, "web", "A", deleting="ANY"),
            raw(2, "web", "A", 60, "192.0.2.2"),
        )
    )
    wire = u.to_wire()
    again = dns.message.from_wire(wire, one_rr_per_rrset=True)
    assert at(applied(process_update(again, ADMIN, ZONE, POLICY)), "web", "A") == {"60 192.0.2.2"}


# -- update-policy --------------------------------------------------------------------------

RULES = [
    "deny admin name locked.example.test.",
    "grant admin zonesub ANY",
    "grant acme-key subdomain _acme TXT",
    "grant acme-key wildcard *.hosts A AAAA",
    "grant *.robots. self . A",
    "grant *.robots. selfsub . TXT",
    "grant dhcp name dyn",
    "grant dns-admin name @ SOA NS",
]
MATCHES: list[tuple[str, str, str, str, bool]] = [
    # key, owner (relative), type, expected
    ("zonesub: anything", "admin.", "x.y", "MX", True),
    ("zonesub: the apex SOA with ANY", "admin.", "@", "SOA", True),
    ("deny before grant", "admin.", "locked", "A", False),
    ("subdomain: the name", "acme-key.", "_acme", "TXT", True),
    ("subdomain: below", "acme-key.", "a._acme", "TXT", True),
    ("subdomain: not beside", "acme-key.", "x_acme", "TXT", False),
    ("subdomain: other type", "acme-key.", "_acme", "A", False),
    ("wildcard: below", "acme-key.", "a.hosts", "AAAA", True),
    ("wildcard: deeper", "acme-key.", "a.b.hosts", "A", True),
    ("wildcard: not the parent", "acme-key.", "hosts", "A", False),
    ("self: the key's own name", "host1.robots.", "host1.robots.", "A", True),
    ("self: not below it", "host1.robots.", "x.host1.robots.", "A", False),
    ("selfsub: below", "host1.robots.", "x.host1.robots.", "TXT", True),
    ("default types: not NS", "dhcp.", "dyn", "NS", False),
    ("default types: not SOA", "dhcp.", "dyn", "SOA", False),
    ("default types: A", "dhcp.", "dyn", "A", True),
    ("name: exactly", "dhcp.", "x.dyn", "A", False),
    ("explicit SOA", "dns-admin.", "@", "SOA", True),
    ("explicit list only", "dns-admin.", "@", "MX", False),
    ("unknown key", "nobody.", "x", "A", False),
    ("key names are case-insensitive", "ADMIN.", "x", "A", True),
]


@pytest.mark.parametrize(
    ("key", "owner", "rdtype", "allowed"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES]
)
def test_policy_matching(key: str, owner: str, rdtype: str, allowed: bool) -> None:
    # robots' names live under the zone for self rules to mean something here
    origin = dns.name.from_text("robots.") if "robots" in key else ORIGIN
    policy = UpdatePolicy.parse(origin, RULES if origin == ORIGIN else RULES[4:6])
    owner_name = dns.name.from_text(owner, origin)
    verdict = policy.check(dns.name.from_text(key), owner_name, dns.rdatatype.from_text(rdtype))
    assert verdict.allowed is allowed, verdict.reason


def test_policy_refusals_through_process_update() -> None:
    policy = UpdatePolicy.parse(ORIGIN, RULES)
    none = process_update(message(lambda u: u.add("x", 60, "A", "192.0.2.1")), None, ZONE, policy)
    assert none.rcode == REFUSED and "unsigned" in none.reason
    unknown = dns.name.from_text("nobody.")
    d = process_update(message(lambda u: u.present("nothing")), unknown, ZONE, policy)
    # refused before the prerequisite: a key that may change nothing learns nothing
    assert d.rcode == REFUSED
    d = process_update(
        message(lambda u: u.add("locked", 60, "A", "192.0.2.1")), ADMIN, ZONE, policy
    )
    assert d.rcode == REFUSED and "rule 1" in d.reason and nothing_changes(d)
    # a prerequisite failure comes before the permission check (RFC 2136 §3.2, §3.3)
    d = process_update(
        message(
            seq(lambda u: u.present("nothing"), lambda u: u.add("locked", 60, "A", "192.0.2.1"))
        ),
        ADMIN,
        ZONE,
        policy,
    )
    assert d.rcode == NXDOMAIN


def test_delete_name_checks_each_type_there() -> None:
    policy = UpdatePolicy.parse(ORIGIN, ["grant k name bastion A AAAA"])
    key = dns.name.from_text("k.")
    d = process_update(message(lambda u: u.delete("bastion")), key, ZONE, policy)
    assert d.rcode == REFUSED and "SSHFP" in d.reason
    d = process_update(message(lambda u: u.delete("sip")), key, ZONE, policy)
    assert d.rcode == REFUSED  # not bastion
    policy = UpdatePolicy.parse(ORIGIN, ["grant k name bastion A AAAA SSHFP"])
    d = process_update(message(lambda u: u.delete("bastion")), key, ZONE, policy)
    assert d.rcode == NOERROR and len(d.remove) == 3
    # nothing there: the rule must cover every type
    d = process_update(message(lambda u: u.delete("nothing")), key, ZONE, policy)
    assert d.rcode == REFUSED


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ("grant admin", "rule"),
        ("allow admin zonesub", "action"),
        ("grant admin..x zonesub", "identity"),
        ("grant admin everything", "ruletype"),
        ("grant admin name", "name"),
        ("grant admin name www.example.org.", "name"),
        ("grant admin wildcard www", "name"),
        ("grant admin zonesub BOGUS", "types"),
        ("grant admin zonesub RRSIG", "types"),
        ("grant admin zonesub AXFR", "types"),
    ],
)
def test_policy_parse_errors_name_the_rule_and_field(rule: str, field: str) -> None:
    with pytest.raises(UpdatePolicyError) as e:
        parse_rule(rule, ORIGIN)
    assert e.value.field == field and e.value.rule == rule
    assert rule in str(e.value) and "example.test." in str(e.value)
    assert isinstance(e.value, NameserverError)


def test_policies_from_config() -> None:
    config = {
        "zone": {
            "example.test.": {"update-policy": ["grant acme-key name _acme-challenge TXT"]},
            "other.test.": {"serial": "date"},
        }
    }
    policies = policies_from_config(config)
    assert list(policies) == [ORIGIN]
    rule = policies[ORIGIN].rules[0]
    assert rule.name == dns.name.from_text("_acme-challenge.example.test.")
    with pytest.raises(UpdatePolicyError, match="list of rule strings"):
        policies_from_config({"zone": {"example.test.": {"update-policy": "grant x zonesub"}}})
    with pytest.raises(UpdatePolicyError, match="ruletype"):
        policies_from_config({"zone": {"example.test.": {"update-policy": ["grant x nope"]}}})
    assert policies_from_config({}) == {}


# -- property: the decision equals a reference §3.4.2, RR by RR ------------------------------

SMALL = [
    rr("@", 3600, "SOA", "ns1 hostmaster 100 7200 3600 432000 300"),
    rr("@", 3600, "NS", "ns1"),
    rr("@", 3600, "NS", "ns2"),
    rr("a", 3600, "A", "192.0.2.1"),
    rr("b", 3600, "CNAME", "a"),
]
SMALL_ZONE = ZoneSnapshot.from_records(ORIGIN, SMALL)
NAMES = ["@", "a", "b"]
RDATAS = {
    "A": ["192.0.2.1", "192.0.2.2"],
    "TXT": ['"x"', '"y"'],
    "CNAME": ["a", "elsewhere.example.net."],
    "NS": ["ns1", "ns2", "ns3"],
    "SOA": [f"ns1 hostmaster {s} 7200 3600 432000 300" for s in (99, 100, 101)],
}
# (class, name, type, ttl, rdata): class IN adds, ANY deletes an RRset/name, NONE an RR
Op = tuple[str, str, str, int, str | None]


def ops_for(names: list[str], types: list[str]) -> st.SearchStrategy[list[Op]]:
    """Update RRs at ``names`` of ``types``, rdata drawn from small pools so that adds and
    deletes hit the same RRs."""

    def pick(rdtype: str, i: int) -> str:
        return RDATAS[rdtype][i % len(RDATAS[rdtype])]

    add = st.tuples(
        st.sampled_from(names),
        st.sampled_from(types),
        st.sampled_from([60, 3600]),
        st.integers(0, 2),
    ).map(lambda t: ("IN", t[0], t[1], t[2], pick(t[1], t[3])))
    delete_rrset = st.tuples(st.sampled_from(names), st.sampled_from([*types, "ANY"])).map(
        lambda t: ("ANY", t[0], t[1], 0, None)
    )
    delete_rr = st.tuples(st.sampled_from(names), st.sampled_from(types), st.integers(0, 2)).map(
        lambda t: ("NONE", t[0], t[1], 0, pick(t[1], t[2]))
    )
    return st.lists(st.one_of(add, delete_rrset, delete_rr), max_size=8)


# The whole small zone, and the apex alone (where the SOA/NS rules bite) more often.
ops_strategy = st.one_of(ops_for(NAMES, list(RDATAS)), ops_for(["@"], ["NS", "SOA", "A"]))


def reference(records: list[Record], ops: list[Op]) -> set[tuple[bytes, int, int, bytes]]:
    """RFC 2136 §3.4.2.7's pseudocode over a plain list of RRs, with one TTL per RRset."""
    zone = list(records)
    for cls, name_text, type_text, ttl, rdata in ops:
        name = dns.name.from_text(name_text, ORIGIN) if name_text != "@" else ORIGIN
        rdtype = int(dns.rdatatype.from_text(type_text))
        here = [r for r in zone if r.name == name]
        rrset = [r for r in here if r.rdtype == rdtype]
        if cls == "IN":
            assert rdata is not None
            new = rr(name_text, ttl, type_text, rdata)
            if rdtype == 5 and any(r.rdtype != 5 for r in here):
                continue
            if rdtype != 5 and any(r.rdtype == 5 for r in here):
                continue
            if rdtype == 6 and (not rrset or serial_gt(soa_serial(rrset[0]), soa_serial(new))):
                continue
            if rdtype in (5, 6):
                zone = [r for r in zone if r not in rrset] + [new]
                continue
            others = [r for r in rrset if identity_key(r) != identity_key(new)]
            zone = [r for r in zone if r not in rrset]
            zone += [Record(r.name, ttl, r.rdata) for r in others] + [new]
        elif cls == "ANY":
            apex = name == ORIGIN
            if type_text == "ANY":
                zone = [r for r in zone if r.name != name or (apex and r.rdtype in (2, 6))]
            elif not (apex and rdtype in (2, 6)):
                zone = [r for r in zone if r not in rrset]
        else:
            assert rdata is not None
            gone = rr(name_text, 0, type_text, rdata)
            if rdtype == 6:
                continue
            left = [r for r in rrset if identity_key(r) != identity_key(gone)]
            if rdtype == 2 and name == ORIGIN and rrset and not left:
                continue
            zone = [r for r in zone if r not in rrset or r in left]
    return {as_row(r) for r in zone}


def soa_serial(record: Record) -> int:
    assert isinstance(record.rdata, dns.rdtypes.ANY.SOA.SOA)
    return int(record.rdata.serial)


def as_row(r: Record) -> tuple[bytes, int, int, bytes]:
    owner, rdtype, rdata = identity_key(r)
    return (owner, rdtype, r.ttl, rdata)


def message_of(ops: list[Op]) -> dns.update.UpdateMessage:
    u = dns.update.UpdateMessage(ORIGIN)
    for cls, name, rdtype, ttl, rdata in ops:
        deleting = None if cls == "IN" else cls
        raw(2, name, rdtype, ttl, rdata, deleting=deleting)(u)
    return u


@settings(max_examples=400, deadline=None)
@given(ops_strategy)
def test_decision_matches_the_reference(ops: list[Op]) -> None:
    d = process_update(message_of(ops), ADMIN, SMALL_ZONE, POLICY)
    assert d.rcode == NOERROR, d.reason
    expected = reference(SMALL, ops)
    assert {as_row(r) for r in SMALL_ZONE.patched(d.remove, d.add).records()} == expected
    # The records themselves, taken literally (TTL included): what the editor will check
    # and journal; patched() alone would hide an RRset left with mixed TTLs.
    literal = {as_row(r) for r in SMALL} - {as_row(r) for r in d.remove}
    assert literal | {as_row(r) for r in d.add} == expected


# -- through a real editor ------------------------------------------------------------------

WHO = Author("nsupdate acme-key", "RFC 2136 UPDATE")


def test_decision_commits_through_the_editor(tmp_path: Path) -> None:
    store = Store(tmp_path / "z.db")
    editor = ZoneEditor(store)
    editor.create_or_replace(
        editor.plan_import(ORIGIN, PARSED.records, WHO), SerialPolicy.INCREMENT
    )
    zone = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
    d = process_update(
        message(lambda u: u.add("_acme-challenge.www", 60, "TXT", '"token"')), ACME, zone, POLICY
    )
    cs = editor.change_records(ORIGIN, d.remove, d.add, WHO)
    assert d.zone_serial == cs.serial_before == 2024060101 and cs.serial_after == 2024060102
    assert rr("_acme-challenge.www", 60, "TXT", '"token"') in cs.added
    assert store.changesets(ORIGIN)[-1].author == WHO.name
    # an add with another TTL moves the whole RRset: the editor takes it as one RRset
    zone = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
    d = process_update(message(lambda u: u.add("web", 60, "A", "192.0.2.81")), ADMIN, zone, POLICY)
    editor.change_records(ORIGIN, d.remove, d.add, WHO)
    web = [r for r in store.records(ORIGIN) if r.name == rr("web", 0, "A", "192.0.2.1").name]
    assert {(r.ttl, r.rdata.to_text()) for r in web if r.rdtype == 1} == {
        (60, "192.0.2.80"),
        (60, "192.0.2.81"),
    }
    # what RFC 2136 allows but the zone rules refuse is the editor's to refuse: nothing
    # is stored (the server answers REFUSED)
    zone = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
    d = process_update(message(lambda u: u.add("x.sub", 60, "TXT", '"x"')), ADMIN, zone, POLICY)
    assert d.rcode == NOERROR and d.changes
    serial = store.zone_info(ORIGIN).serial
    with pytest.raises(ZoneValidationError, match="delegation"):
        editor.change_records(ORIGIN, d.remove, d.add, WHO)
    assert store.zone_info(ORIGIN).serial == serial
    store.close()


def test_decision_commits_signed(tmp_path: Path) -> None:
    store = Store(tmp_path / "z.db")
    manager = DnssecManager(store, tmp_path / "keys")
    editor = manager.editor()
    editor.create_or_replace(
        editor.plan_import(ORIGIN, PARSED.records, WHO), SerialPolicy.INCREMENT
    )
    manager.enable(ORIGIN, WHO, denial=Denial.NSEC)
    zone = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
    name = "_acme-challenge.www"
    d = process_update(message(lambda u: u.add(name, 60, "TXT", '"token"')), ACME, zone, POLICY)
    assert d.add == (rr(name, 60, "TXT", '"token"'),)  # no signer records from the client side
    cs = editor.change_records(ORIGIN, d.remove, d.add, WHO)
    owner = dns.name.from_text(name, ORIGIN)
    covered = {
        int(r.rdata.covers())
        for r in cs.added
        if r.rdtype == dns.rdatatype.RRSIG and r.name == owner
    }
    assert {int(dns.rdatatype.TXT), int(dns.rdatatype.NSEC)} <= covered
    assert any(r.rdtype == dns.rdatatype.NSEC and r.name == owner for r in cs.added)
    # and a delete of the whole name in the signed zone takes only data (the signer
    # removes its own records in the same changeset)
    zone = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
    d = process_update(message(lambda u: u.delete(name, "TXT")), ACME, zone, POLICY)
    assert [r.rdtype for r in d.remove] == [int(dns.rdatatype.TXT)]
    cs = editor.change_records(ORIGIN, d.remove, d.add, WHO)
    assert any(r.rdtype == dns.rdatatype.NSEC and r.name == owner for r in cs.removed)
    store.close()


# -- the real client: nsupdate's messages, TSIG-signed, through the decision -----------------

SECRET = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="  # base64, 32 octets


class _UpdateResponder:
    """A UDP stand-in for the server: verifies TSIG with dnspython, decides, applies the
    decision to its snapshot and answers, signed."""

    def __init__(self, zone: ZoneSnapshot) -> None:
        self.zone = zone
        self.decisions: list[UpdateDecision] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.keyring = {ACME: dns.tsig.Key(ACME, SECRET, "hmac-sha256")}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            request = dns.message.from_wire(data, keyring=self.keyring, one_rr_per_rrset=True)
            decision = process_update(request, request.keyname, self.zone, POLICY)
            self.decisions.append(decision)
            if decision.changes:
                self.zone = self.zone.patched(decision.remove, decision.add)
            response = dns.message.make_response(request)
            response.set_rcode(decision.rcode)
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def nsupdate(port: int, *lines: str) -> subprocess.CompletedProcess[str]:
    script = "\n".join([f"server 127.0.0.1 {port}", "zone example.test.", *lines, "send", ""])
    return subprocess.run(
        [require_tool("nsupdate"), "-y", f"hmac-sha256:acme-key:{SECRET}", "-t", "5"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_nsupdate_acme_flow_and_refusals() -> None:
    responder = _UpdateResponder(ZONE)
    try:
        name = "_acme-challenge.www.example.test."
        done = nsupdate(responder.port, f'update add {name} 60 TXT "token"')
        assert done.returncode == 0, done.stderr
        assert at(responder.zone, name, "TXT") == {'60 "token"'}
        refused = nsupdate(responder.port, 'update add web.example.test. 60 TXT "x"')
        assert refused.returncode != 0 and "REFUSED" in refused.stdout + refused.stderr
        failed = nsupdate(
            responder.port, f"prereq nxdomain {name}", f'update delete {name} TXT "token"'
        )
        assert failed.returncode != 0 and "YXDOMAIN" in failed.stdout + failed.stderr
        assert at(responder.zone, name, "TXT") == {'60 "token"'}
        done = nsupdate(
            responder.port, f"prereq yxrrset {name} TXT", f'update delete {name} TXT "token"'
        )
        assert done.returncode == 0, done.stderr
        assert at(responder.zone, name, "TXT") == set()
        rcodes = [d.rcode for d in responder.decisions]
        assert rcodes == [NOERROR, REFUSED, YXDOMAIN, NOERROR]
    finally:
        responder.close()
