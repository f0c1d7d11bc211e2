"""The response cache and the quick answers: a byte budget with eviction by generations, one
entry per normalised question (case, ID, EDNS payload and options do not make new ones),
and every response, cached or quick, byte for byte what the general resolver and writer
give for that very query."""

from __future__ import annotations

import functools
import gc
import random
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nameserver.serve.responder as responder_module
from nameserver.serve.cache import ResponseCache, Shared
from nameserver.serve.responder import (
    ALIASES,
    CACHE_CEILING,
    CACHE_FLOOR,
    CACHE_PER_ZONE_BYTE,
    Responder,
    zone_wire_size,
)
from nameserver.zone.records import parse_record
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import label_starts, to_text
from nameserver.zone.zones import ZoneRegistry
from tests import dnssec_zones
from tests.zonedata import BASE, registry, snapshot

T = dns.rdatatype


# -- the budget ----------------------------------------------------------------------------


def _fill(cache: ResponseCache, names: range, size: int = 100) -> None:
    for i in names:
        cache.put_exact(b"q%06d" % i, b"r" * size)


def test_the_budget_is_never_exceeded_and_the_newest_entries_stay() -> None:
    cache = ResponseCache(50_000)
    for i in range(2_000):
        _fill(cache, range(i, i + 1))
        assert cache.size <= cache.budget
    assert cache.get_exact(b"q001999") is not None
    assert cache.get_exact(b"q000000") is None
    # Not cleared all at once: at least half the budget is held after the first rotation.
    assert cache.size >= cache.budget // 2


def test_an_entry_asked_for_again_outlives_those_that_were_not() -> None:
    cache = ResponseCache(50_000)
    _fill(cache, range(200))  # about one generation
    hot = b"q000007"
    for i in range(200, 1_200):
        _fill(cache, range(i, i + 1))
        if i % 50 == 0:
            assert cache.get_exact(hot) is not None  # asked for now and then
    assert cache.get_exact(hot) is not None
    assert cache.get_exact(b"q000008") is None


def test_what_cannot_fit_is_not_kept() -> None:
    cache = ResponseCache(1_000)
    cache.put_exact(b"big", b"x" * 2_000)
    cache.put_shared(b"big", Shared(b"x" * 2_000, None, 0))
    assert len(cache) == 0 and cache.size == 0
    nothing = ResponseCache(0)
    _fill(nothing, range(10))
    assert len(nothing) == 0


def test_replacing_a_shared_entry_counts_it_once() -> None:
    cache = ResponseCache(10_000)
    cache.put_shared(b"k", Shared(b"a" * 100, None, 0))
    before = cache.size
    cache.put_shared(b"k", Shared(b"b" * 100, None, 0))
    assert cache.size == before


@pytest.mark.parametrize("length", [60, 400, 1500])
def test_counted_bytes_are_what_the_entries_take(length: int) -> None:
    """The budget counts at least what Python allocates for the entries (measured with
    tracemalloc), and not wildly more (an exact alias sharing its response with the shared
    entry is counted as if it had its own copy)."""
    count = 5_000
    cache = ResponseCache(1 << 40)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            query = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07host%03d\x04test\x00\x00\x01" % (
                i % 1000
            ) + i.to_bytes(4, "big")
            response = query + b"r" * (length - len(query))
            cache.put_shared(query[10:] + b"key", Shared(response, None, ALIASES))
            cache.put_exact(query, response)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used <= cache.size <= 2.2 * used


# -- one entry per normalised question -----------------------------------------------------


def _wire(name: str, rdtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]


def test_ids_payloads_and_options_share_one_entry() -> None:
    responder = Responder(registry(), cache_size=1 << 20)
    first = responder.respond(_wire("host.example.test.", use_edns=0, payload=1232), False)
    assert first is not None
    entries = len(responder.cache)
    for payload in range(1233, 1400):
        cookie: list[dns.edns.Option] = [dns.edns.GenericOption(dns.edns.COOKIE, b"12345678")]
        for options in ([], cookie):
            q = dns.message.make_query(
                "host.example.test.", "A", use_edns=0, payload=payload, options=options
            )
            response = responder.respond(q.to_wire(), False)
            assert response is not None and response[:2] == q.to_wire()[:2]
            assert response[2:] == first[2:]
    # The first asker's alias, then the shared entry and aliases: ALIASES in all.
    assert len(responder.cache) <= entries + ALIASES


def _mixed_case(text: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def test_0x20_case_shares_an_entry_and_each_asker_gets_its_own_case_back() -> None:
    responder = Responder(registry(), cache_size=1 << 20)
    rng = random.Random(20)
    responder.respond(_wire("host.example.test."), False)
    for _ in range(200):
        for name, rdtype in (("host.example.test.", "A"), ("nothing-here.example.test.", "A")):
            asked = _mixed_case(name, rng)
            q = dns.message.make_query(asked, rdtype)
            wire = responder.respond(q.to_wire(), False)
            assert wire is not None
            m = dns.message.from_wire(wire)
            assert m.id == q.id
            assert m.question[0].name.to_text() == asked  # case preserved, not just equal
            if m.answer:
                assert m.answer[0].name.to_text() == asked
            else:
                # The SOA owner points into the question: it reads in the asker's case.
                assert m.rcode() == dns.rcode.NXDOMAIN
                assert m.authority[0].name.to_text() == asked.split(".", 1)[1]
    # Two questions, each with a shared entry and at most ALIASES exact aliases, and an
    # NXDOMAIN template.
    assert len(responder.cache) <= 2 * (ALIASES + 1) + 1


def test_a_dname_answer_is_kept_per_spelling() -> None:
    """The synthesized CNAME's target repeats the query name's labels in the query's case
    (RFC 6672 §2.2), so a cached answer serves only the same spelling."""
    responder = Responder(registry(), cache_size=1 << 20)
    for asked in ("FOO.dn.example.test.", "foo.dn.example.test.", "FOO.dn.example.test."):
        m = dns.message.from_wire(responder.respond(_wire(asked), False) or b"")
        cname = next(rs for rs in m.answer if rs.rdtype == T.CNAME)
        assert cname[0].target.to_text() == asked.split(".", 1)[0] + ".target.example.net."


def test_the_bits_a_response_copies_make_separate_entries() -> None:
    responder = Responder(registry(), cache_size=1 << 20)
    variants = {
        "plain": dns.message.make_query("host.example.test.", "A", flags=0).to_wire(),
        "rd": dns.message.make_query("host.example.test.", "A", flags=dns.flags.RD).to_wire(),
        "cd": dns.message.make_query("host.example.test.", "A", flags=dns.flags.CD).to_wire(),
        "edns": _wire("host.example.test.", use_edns=0),
        "do": _wire("host.example.test.", want_dnssec=True),
    }
    seen = {}
    for _round in range(2):  # the second round comes from the cache
        for label, wire in variants.items():
            m = dns.message.from_wire(responder.respond(wire, False) or b"")
            seen[label] = (m.flags & (dns.flags.RD | dns.flags.CD), m.edns, m.ednsflags)
    assert seen["plain"] == (0, -1, 0)
    assert seen["rd"][0] == dns.flags.RD and seen["cd"][0] == dns.flags.CD
    assert seen["edns"][1] == 0 and not seen["edns"][2] & dns.flags.DO
    assert seen["do"][2] & dns.flags.DO


def _big_txt_registry() -> ZoneRegistry:
    """example.test with a 3 KB TXT RRset at big.example.test."""
    rows = [*BASE, *(("big", 3600, "TXT", f'"{i:02d}' + "x" * 250 + '"') for i in range(12))]
    return registry(rows)


def test_a_response_that_does_not_fit_is_kept_per_limit_and_the_full_one_once() -> None:
    responder = Responder(_big_txt_registry(), cache_size=1 << 20)
    full = responder.respond(_wire("big.example.test.", "TXT"), True)
    assert full is not None and len(full) > 3000
    for payload in (512, 1232, 1232, 4096, 4096):
        wire = responder.respond(_wire("big.example.test.", "TXT", payload=payload), False)
        m = dns.message.from_wire(wire or b"")
        assert m.flags & dns.flags.TC and len(wire or b"") <= max(512, min(payload, 1232))
    again = responder.respond(_wire("big.example.test.", "TXT"), True)
    assert again is not None and again[2:] == full[2:]
    # Payloads above the server's 1232 all get the answer made for 1232: one entry.
    entries = len(responder.cache)
    for payload in range(1300, 1400):
        responder.respond(_wire("big.example.test.", "TXT", payload=payload), False)
    assert len(responder.cache) <= entries + ALIASES
    # Over TCP, 50 case variants of the big answer share its entry (plus a few aliases).
    before = responder.cache.size
    rng = random.Random(3)
    for _ in range(50):
        wire = _wire(_mixed_case("big.example.test.", rng), "TXT")
        assert len(responder.respond(wire, True) or b"") == len(full)
    assert responder.cache.size - before <= ALIASES * (len(full) + 400)


def test_a_zone_change_drops_cached_answers() -> None:
    reg = registry()
    responder = Responder(reg, cache_size=1 << 20)
    wire = _wire("host.example.test.")
    assert b"\xc0\x00\x02\x03" in (responder.respond(wire, False) or b"")
    reg.install(snapshot([*(r for r in BASE if r[0] != "host"), ("host", 60, "A", "192.0.2.4")]))
    assert b"\xc0\x00\x02\x04" in (responder.respond(wire, False) or b"")
    assert len(responder.cache) <= 2


def test_the_default_budget_follows_the_served_zones() -> None:
    reg = ZoneRegistry()
    responder = Responder(reg)
    assert responder.cache.budget == CACHE_FLOOR
    zone = snapshot()
    reg.install(zone)
    # RFC 1035 §4.1.3: owner, type, class, TTL, rdlength and rdata, as dnspython writes them.
    wire = sum(
        len(r.name.to_wire() or b"") + 10 + len(r.rdata.to_wire() or b"") for r in zone.records()
    )
    assert zone_wire_size(zone) == wire
    assert responder.cache.budget == CACHE_FLOOR + CACHE_PER_ZONE_BYTE * wire
    reg.remove(zone.origin)
    assert responder.cache.budget == CACHE_FLOOR
    assert Responder(registry(), cache_size=12345).cache.budget == 12345
    assert responder_module.default_cache_size(1 << 40) == CACHE_CEILING


# -- cached and quick answers are the general path's, byte for byte -----------------------


def _never(*args: object) -> None:
    return None


@contextmanager
def _general_only() -> Iterator[None]:
    """Answer every query through nameserver.serve.answer and nameserver.serve.response alone."""
    with mock.patch.object(responder_module, "quick_answer", _never):
        yield


def _general(reg: ZoneRegistry, data: bytes, tcp: bool) -> bytes | None:
    with _general_only():
        return Responder(reg, cache_size=0).respond(data, tcp)


@functools.cache
def _variant(name: str) -> tuple[ZoneRegistry, tuple[str, ...]]:
    """A registry and the names worth asking about in it."""
    reg = ZoneRegistry()
    if name == "example":
        zone = snapshot()
    elif name == "unsigned":
        records = [
            parse_record(n.to_text(), ttl, T.to_text(rd.rdtype), rd.to_text(), dns.name.root)
            for n, ttl, rd in __import__("dns.zone")
            .zone.from_text(dnssec_zones.unsigned_text(), dnssec_zones.ORIGIN, relativize=False)
            .iterate_rdatas()
        ]
        zone = ZoneSnapshot.from_records(dns.name.from_text(dnssec_zones.ORIGIN), records)
    else:
        variant = next(v for v in dnssec_zones.VARIANTS if v.name == name)
        zone = dnssec_zones.signed_snapshot(dnssec_zones.fixture(variant))
    reg.install(zone)
    origin = zone.origin
    names = set()
    for key in zone.nodes:
        for start in label_starts(key):  # the name and its ancestors (empty non-terminals)
            if key[start:].endswith(origin):
                names.add(key[start:])
    base = sorted(names)
    for key in base:  # names that do not exist, below every name that does
        names.add(b"\x06nosuch" + key)
        names.add(b"\x01a\x02bc" + key)
    for label in (b"hostmaster", b"ns1", b"ns9", b"*"):
        names.add(bytes((len(label),)) + label + origin)
        names.add(b"\x01x" + bytes((len(label),)) + label + origin)
    names.add(b"\x07example\x03org\x00")  # not ours: REFUSED
    return reg, tuple(sorted(to_text(n) for n in names))


QTYPES = ("A", "AAAA", "TXT", "MX", "NS", "SOA", "CNAME", "DS", "ANY", "RRSIG", "NSEC", "SRV")


@st.composite
def _queries(draw: st.DrawFn, names: tuple[str, ...]) -> tuple[bytes, bool]:
    name = draw(st.sampled_from(names))
    rng = random.Random(draw(st.integers(0, 2**16)))
    asked = _mixed_case(name, rng) if draw(st.booleans()) else name
    q = dns.message.make_query(asked, draw(st.sampled_from(QTYPES)), flags=0)
    q.id = draw(st.integers(0, 0xFFFF))
    q.flags = draw(st.sampled_from([0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD]))
    edns = draw(st.sampled_from(["none", "plain", "do", "cookie"]))
    if edns != "none":
        options: list[dns.edns.Option] = []
        if edns == "cookie":
            options.append(dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8))
        payload = draw(st.sampled_from([512, 600, 1232, 1233, 4096]))
        q.use_edns(0, dns.flags.DO if edns == "do" else 0, payload, options=options)
    return q.to_wire(), draw(st.booleans())


@pytest.mark.parametrize(
    "variant", ["example", "unsigned", "nsec", "nsec3", "nsec3-optout", "nsec3-optout-bind"]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_response_is_what_the_general_path_gives(variant: str, data: st.DataObject) -> None:
    """Sequences of queries (case, ID, flags, EDNS payload, DO, options, UDP or TCP drawn at
    random, names repeated) through one caching responder: each response equals the general
    path's answer to that very query. A small budget keeps evicting meanwhile."""
    reg, names = _variant(variant)
    budget = data.draw(st.sampled_from([0, 3_000, 1 << 20]))
    responder = Responder(reg, cache_size=budget)
    for wire, tcp in data.draw(st.lists(_queries(names), min_size=1, max_size=40)):
        assert responder.respond(wire, tcp) == _general(reg, wire, tcp), dns.message.from_wire(wire)
        assert responder.cache.size <= budget


@pytest.mark.parametrize("variant", ["example", "unsigned", "nsec", "nsec3", "nsec3-optout-bind"])
def test_quick_answers_are_the_general_answers(variant: str) -> None:
    """Every name of the zone and below it, every type, with and without DO, in two cases:
    the quick answers (and the NXDOMAIN templates) equal the general path's, and they are
    what most such questions get."""
    reg, names = _variant(variant)
    quick = 0
    total = 0
    rng = random.Random(7)
    for name in names:
        for rdtype in ("A", "TXT", "MX", "DS", "NSEC", "ANY"):
            for do in (False, True):
                for asked in {name, _mixed_case(name, rng)}:
                    wire = _wire(asked, rdtype, want_dnssec=do, payload=1232)
                    # A fresh responder: the template is made here and used by the next.
                    responder = Responder(reg, cache_size=1 << 20)
                    for _ in range(2):
                        try:
                            with mock.patch.object(
                                responder_module, "resolve", side_effect=AssertionError
                            ):
                                got = responder.respond(wire, False)
                            quick += 1
                        except AssertionError:
                            got = responder.respond(wire, False)
                        total += 1
                        assert got == _general(reg, wire, False), (asked, rdtype, do)
                        _forget_answers(responder)
    # NSEC3 owner names (a third of the names asked in NSEC3 zones) go the general way.
    assert quick > total // 4


def _forget_answers(responder: Responder) -> None:
    """Drop the cached answers but keep the NXDOMAIN templates (keys starting 0xFF), so the
    next query is answered again, from a template this time."""
    cache = responder.cache
    assert not cache._old_exact and not cache._old_shared  # no rotation with this budget
    cache.exact = {}
    cache.shared = {k: v for k, v in cache.shared.items() if k[0] == 0xFF}


@pytest.mark.parametrize("variant", ["unsigned", "nsec", "nsec3"])
def test_random_names_share_prepared_nxdomain_answers(variant: str) -> None:
    """A random-subdomain flood: every name new, each answered from a template made once
    per name length (and, for DO queries to a signed zone, per covering NSEC/NSEC3)."""
    reg, _ = _variant(variant)
    responder = Responder(reg, cache_size=1 << 20)
    rng = random.Random(11)
    covering: set[bytes] = set()
    for i in range(300):
        name = f"{rng.getrandbits(40):010x}.{dnssec_zones.ORIGIN}"
        do = variant != "unsigned" and i % 2 == 1
        wire = _wire(name, "A", want_dnssec=do)
        with mock.patch.object(responder_module, "resolve", side_effect=AssertionError):
            got = responder.respond(wire, False)
        assert got == _general(reg, wire, False)
        m = dns.message.from_wire(got or b"")
        assert m.rcode() == dns.rcode.NXDOMAIN
        covering.add(b"".join(rs.name.to_wire() or b"" for rs in m.authority[2:] if do))
    # Signed templates are in the cache, unsigned ones (a few per zone) with the zone.
    templates: list[bytes | tuple[int, bytes]] = [k for k in responder.cache.shared if k[0] == 0xFF]
    templates += [k for p in responder._prepared.values() for k in p.templates]
    assert 1 <= len(templates) <= 1 + len(covering)


def test_nxdomain_and_refusals_are_kept_when_asked_again_only() -> None:
    """Cheap answers (an NXDOMAIN from a template, REFUSED) are kept on their second ask: a
    resolver asking again gets the one-lookup path, a flood of new names keeps nothing."""
    responder = Responder(registry(), cache_size=1 << 20)
    rng = random.Random(4)
    for i in range(2_000):
        responder.respond(_wire(f"n{i}-{rng.getrandbits(32):x}.example.test."), False)
        responder.respond(_wire(f"n{i}.example.org."), False)  # not ours: REFUSED
    kept = [k for k in responder.cache.shared if k[0] != 0xFF]  # templates aside
    assert kept == [] and len(responder.cache.exact) == 0  # none came twice
    for name in ("again.example.test.", "again.example.org."):
        wire = _wire(name)
        first = responder.respond(wire, False)
        assert wire[2:] not in responder.cache.exact
        assert responder.respond(wire, False) == first
        assert responder.cache.exact[wire[2:]] == (first or b"")[2:]
