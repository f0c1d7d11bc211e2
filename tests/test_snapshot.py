"""A snapshot patched by a change equals one built from scratch, and the old one is kept."""

from __future__ import annotations

from typing import cast

import dns.name
from dns.rdtypes.ANY.RRSIG import RRSIG
from hypothesis import given, settings
from hypothesis import strategies as st

from nameserver.zone.records import Record, parse_record
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import key_of
from tests.zonedata import ORIGIN, records

LABELS = ["a", "b", "c", "*"]
names = st.lists(st.sampled_from(LABELS), min_size=1, max_size=3).map(".".join)
# TTLs differ by RRset (and reach above the base zone's) so max_ttl() is exercised.
rr = st.tuples(names, st.sampled_from(["A", "TXT"]), st.integers(1, 4)).map(
    lambda t: parse_record(
        t[0],
        50_000 * len(t[0]) + (t[1] == "A"),
        t[1],
        f"192.0.2.{t[2]}" if t[1] == "A" else f'"{t[2]}"',
        ORIGIN,
    )
)


def view(s: ZoneSnapshot, probe: list[dns.name.Name]) -> tuple[object, ...]:
    content = sorted(
        (k, t, rs.ttl, tuple(sorted(rs.rdatas)))
        for k, n in s.nodes.items()
        for t, rs in n.rrsets.items()
    )
    return (tuple(content), tuple(s.exists(key_of(p)) for p in probe), s.serial)


@settings(max_examples=300, deadline=None)
@given(st.lists(rr, max_size=12), st.lists(rr, max_size=12), st.data())
def test_patched_equals_rebuilt(
    start: list[Record], add: list[Record], data: st.DataObject
) -> None:
    base = records()
    before = ZoneSnapshot.from_records(ORIGIN, [*base, *start])
    frozen = view(before, [])
    if data.draw(st.booleans()):
        before.max_ttl()  # known before the patch: patched() carries it along
    remove = data.draw(st.lists(st.sampled_from(start), max_size=len(start))) if start else []
    patched = before.patched(remove, add)
    gone = {r.identity for r in remove}
    kept = [r for r in [*base, *start] if r.identity not in gone]
    rebuilt = ZoneSnapshot.from_records(ORIGIN, [*kept, *add])
    probe = [dns.name.from_text(n, ORIGIN) for n in ("a", "b", "a.b", "b.a", "c.b.a", "*.a")]
    assert view(patched, probe) == view(rebuilt, probe)
    assert patched.max_ttl() == rebuilt.max_ttl()
    assert view(before, []) == frozen  # the old version is untouched


def test_serial_comes_from_the_soa() -> None:
    assert ZoneSnapshot.from_records(ORIGIN, records()).serial == 2026010101


# RRSIGs over A and TXT with a few expiration times (Unix seconds), so patches remove the
# earliest, add an earlier one, or leave it alone.
rrsig = st.tuples(
    names, st.sampled_from(["A", "TXT"]), st.sampled_from([1_900_000_000 + i for i in range(5)])
).map(
    lambda t: parse_record(
        t[0], 300, "RRSIG", f"{t[1]} 13 3 300 {t[2]} 1800000000 12345 test. AAAA", ORIGIN
    )
)


@settings(max_examples=300, deadline=None)
@given(st.lists(rrsig, max_size=10), st.lists(rrsig, max_size=6), st.data())
def test_the_earliest_expiration_is_carried_along_by_patches(
    start: list[Record], add: list[Record], data: st.DataObject
) -> None:
    before = ZoneSnapshot.from_records(ORIGIN, [*records(), *start])
    if data.draw(st.booleans()):
        before.earliest_expiration()  # tallied before the patch: patched() carries it along
    remove = data.draw(st.lists(st.sampled_from(start), max_size=len(start))) if start else []
    patched = before.patched(remove, add)
    gone = {r.identity for r in remove}
    kept = [r for r in start if r.identity not in gone]
    expected = min((int(cast(RRSIG, r.rdata).expiration) for r in [*kept, *add]), default=None)
    assert patched.earliest_expiration() == expected
    rebuilt = ZoneSnapshot.from_records(ORIGIN, [*records(), *kept, *add])
    assert rebuilt.earliest_expiration() == expected
