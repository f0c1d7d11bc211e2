"""Declared capabilities in the engine: what a provider cannot hold is left out and
reported (or refused when strict), TTLs moved into its range, its own apex records never
planned, a zone it holds counts as served without an SOA in its API, and its own
representation of an RRset never makes a push with nothing to do plan something."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import CapabilityError, PlanRefusedError
from sync.model import RRset, ZoneData
from sync.providers.capabilities import (
    Capabilities,
    DnssecMode,
    Owner,
    normalize,
    served,
)
from sync.providers.testkit.memory import MemoryTarget, StaticSource
from sync.state import SyncState

ORIGIN = dns.name.from_text("example.test.")
A, NS, SOA, TXT, CAA = (
    dns.rdatatype.A,
    dns.rdatatype.NS,
    dns.rdatatype.SOA,
    dns.rdatatype.TXT,
    dns.rdatatype.CAA,
)
CLOUD = Capabilities(
    DnssecMode.NONE,
    record_types=frozenset({SOA, NS, A, TXT}),
    apex_soa=Owner.PROVIDER,
    apex_ns=Owner.PROVIDER,
    ttl_min=60,
    ttl_max=86400,
)


def zone(serial: int, hosts: int = 12, ttl: int = 300) -> ZoneData:
    lines = [
        f"@ 3600 IN SOA ns1 hostmaster {serial} 7200 3600 1209600 300",
        "@ 3600 IN NS ns1.example.net.",
        '@ 3600 IN CAA 0 issue "ca.example"',
        '@ 30 IN TXT "short ttl"',
        "big 172800 IN A 192.0.2.200",
    ]
    lines += [f"h{i} {ttl} IN A 192.0.2.{i + 1}" for i in range(hosts)]
    return ZoneData.from_text("\n".join(lines) + "\n", ORIGIN)


def engine(
    tmp_path: Path, target: MemoryTarget, source: StaticSource, strict: bool = False
) -> SyncEngine:
    specs = {target.name: TargetSpec(target=target, strict=strict)}
    return SyncEngine(
        SyncState(tmp_path / "s.db"), source, [ORIGIN], specs, EngineSettings(retry_base=0.01)
    )


def key(
    owner: str, rdtype: dns.rdatatype.RdataType
) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    return (dns.name.from_text(owner, ORIGIN), rdtype)


def test_normalize_leaves_out_clamps_and_reports() -> None:
    got = normalize(zone(1), CLOUD)
    assert set(got.unsupported) == {key("@", CAA)}
    assert set(got.provider_owned) == {key("@", SOA), key("@", NS)}
    assert {(a.key, a.wanted, a.held) for a in got.ttls} == {
        (key("@", TXT), 30, 60),
        (key("big", A), 172800, 86400),
    }
    assert got.data.rrsets[key("@", TXT)].ttl == 60
    assert got.data.rrsets[key("big", A)].ttl == 86400
    # Nothing to change: the same object, no copy of a large zone.
    plain = Capabilities(DnssecMode.PRESIGNED)
    data = zone(1)
    assert normalize(data, plain).data is data


def test_served_without_an_soa_in_the_api() -> None:
    no_soa = ZoneData(ORIGIN, {key("h0", A): zone(1).rrsets[key("h0", A)]})
    assert served(no_soa, CLOUD)  # the cloud shows no SOA: holding the zone is serving it
    assert not served(no_soa, Capabilities(DnssecMode.NONE))  # ours to write: staged
    assert not served(None, CLOUD)


async def test_the_engine_plans_in_the_providers_terms(tmp_path: Path) -> None:
    target = MemoryTarget("cloud", capabilities=CLOUD)
    source = StaticSource(zone(1))
    eng = engine(tmp_path, target, source)
    await eng.refresh_zone(ORIGIN)
    plan = await eng.plan("cloud", ORIGIN)
    assert plan is not None and plan.create_zone
    assert {c.key for c in plan.changes} == set(normalize(zone(1), CLOUD).data.rrsets)
    lines = "\n".join(plan.lines())
    assert "@ CAA not supported by the target: skipped" in lines
    assert "@ SOA is the provider's own: left to it" in lines
    assert "@ TXT TTL 30 held as 60: outside the target's TTL range" in lines
    await eng.push("cloud", ORIGIN)
    # The provider writes its own SOA and NS; a read shows them; nothing is planned for them.
    assert target.data is not None
    their_soa = RRset.from_text("@", "SOA", 3600, ["a.ns hostmaster 99 1 1 1 1"], ORIGIN)
    their_ns = RRset.from_text("@", "NS", 3600, ["a.ns.cloud.", "b.ns.cloud."], ORIGIN)
    target.data[their_soa.key] = their_soa
    target.data[their_ns.key] = their_ns
    fresh = await eng.plan("cloud", ORIGIN)
    assert fresh is not None
    assert fresh.empty and not fresh.foreign, fresh.lines()
    # A new serial: only data changes are planned, never the provider's SOA or NS.
    source.current = zone(2, hosts=13)
    await eng.refresh_zone(ORIGIN)
    await eng.push("cloud", ORIGIN, force=True)
    assert target.data[their_soa.key] is their_soa and target.data[their_ns.key] is their_ns
    assert key("h12", A) in target.data


async def test_safety_holds_for_a_provider_without_an_soa(tmp_path: Path) -> None:
    target = MemoryTarget("cloud", capabilities=CLOUD)
    source = StaticSource(zone(1, hosts=30))
    eng = engine(tmp_path, target, source)
    await eng.refresh_zone(ORIGIN)
    await eng.push("cloud", ORIGIN)
    source.current = zone(2, hosts=5)
    await eng.refresh_zone(ORIGIN)
    plan = await eng.plan("cloud", ORIGIN)
    assert plan is not None and plan.served
    with pytest.raises(PlanRefusedError, match="deletes or replaces 25 of"):
        await eng.push("cloud", ORIGIN)


async def test_a_strict_target_refuses_what_it_cannot_hold(tmp_path: Path) -> None:
    target = MemoryTarget("cloud", capabilities=CLOUD)
    eng = engine(tmp_path, target, StaticSource(zone(1)), strict=True)
    await eng.refresh_zone(ORIGIN)
    with pytest.raises(CapabilityError, match=r"cannot hold 1 RRset\(s\) of the zone \(@ CAA\)"):
        await eng.push("cloud", ORIGIN)
    assert target.data is None


class Joins(MemoryTarget):
    """Holds TXT as one string (as some APIs do): its read shows them joined."""

    def normalize_rrset(self, rrset: RRset) -> RRset:
        if rrset.rdtype != TXT:
            return rrset
        joined = [
            '"' + "".join(t.strip('"') for t in text.split('" "')) + '"' for text in rrset.texts()
        ]
        return RRset.from_text(rrset.name.to_text(), "TXT", rrset.ttl, joined, ORIGIN)


async def test_the_providers_representation_makes_a_noop_push_empty(tmp_path: Path) -> None:
    data = ZoneData.from_text(
        "@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
        '@ 3600 IN TXT "part one" "part two"\n',
        ORIGIN,
    )
    target = Joins("joins", capabilities=Capabilities(DnssecMode.NONE))
    eng = engine(tmp_path, target, StaticSource(data))
    await eng.refresh_zone(ORIGIN)
    await eng.push("joins", ORIGIN)
    assert target.data is not None
    assert target.data[key("@", TXT)].texts() == ['"part onepart two"']
    plan = await eng.plan("joins", ORIGIN)
    assert plan is not None
    assert plan.empty, plan.lines()
