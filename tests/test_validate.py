"""Each zone rule refuses what breaks it, with a message naming the owner and the rule."""

from __future__ import annotations

import pytest

from nameserver.errors import Problem
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.validate import check_change, check_records, check_zone
from nameserver.zone.wirename import key_of
from tests.zonedata import BASE, ORIGIN, records

Row = tuple[str, int, str, str]


def problems_for(rows: list[Row]) -> list[Problem]:
    recs = records(rows)
    found = check_records(ORIGIN, recs)
    inside = [r for r in recs if r.name.is_subdomain(ORIGIN)]
    return found + check_zone(ZoneSnapshot.from_records(ORIGIN, inside))


def test_the_base_zone_is_valid() -> None:
    assert problems_for(BASE) == []


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("host", 3600, "TXT", '"x"'), None),
        (("www", 3600, "TXT", '"x"'), "CNAME cannot coexist with other data (TXT)"),
        (("@", 3600, "CNAME", "host"), "CNAME at the zone apex"),
        (("www", 3600, "CNAME", "other"), "more than one CNAME"),
        (("host.example.org.", 3600, "A", "192.0.2.1"), "outside the zone"),
        (("www.sub", 3600, "TXT", '"x"'), "below the delegation at sub.example.test."),
        (("sub", 3600, "TXT", '"x"'), "data at a delegation point other than NS, DS and glue"),
        (("x.sub", 3600, "A", "192.0.2.1"), None),
        (("host", 3600, "SOA", "a b 1 2 3 4 5"), "SOA is only allowed at the zone apex"),
        (("host", 3600, "DS", "1 13 2 " + "00" * 32), "DS is only allowed at a delegation"),
        (("x.dn", 3600, "A", "192.0.2.1"), "below the DNAME"),
        (("*.wild", 3600, "NS", "ns1"), "wildcard"),
        (("host", 60, "A", "192.0.2.4"), "differs from 3600"),
        (
            (
                "host",
                3600,
                "RRSIG",
                "A 13 3 3600 20300101000000 20200101000000 1 example.test. AAAA",
            ),
            "belong to the signer",
        ),
    ],
)
def test_rules(extra: Row, fragment: str | None) -> None:
    found = problems_for([*BASE, extra])
    if fragment is None:
        assert found == []
    else:
        assert any(fragment in str(p) for p in found), found


def test_apex_needs_soa_and_ns() -> None:
    rows = [r for r in BASE if r[2] not in ("SOA", "NS") or r[0] != "@"]
    found = " ".join(str(p) for p in problems_for(rows))
    assert "no SOA" in found and "no NS" in found


def test_new_delegation_over_existing_data_is_caught_by_the_change_check() -> None:
    snap = ZoneSnapshot.from_records(ORIGIN, records([*BASE, ("x.deep2", 3600, "TXT", '"x"')]))
    ns = records([("deep2", 3600, "NS", "ns1")])
    after = snap.patched([], ns)
    found = check_change(after, {key_of(ns[0].name)})
    assert any("below the delegation at deep2.example.test." in str(p) for p in found)
