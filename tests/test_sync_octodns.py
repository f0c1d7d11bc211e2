"""The octoDNS bridge (``type = "octodns"``) with real back ends: octodns-powerdns against a
real ``pdns_server`` (the contract kit through its fault proxy, and what pdns itself serves
afterwards) and octodns-route53 against moto's standalone server; plus what the bridge
refuses (signed zones, a bad class path, inline credentials, unknown settings), what it
skips (types the provider lacks, TXT octoDNS cannot carry), and that neither a credential
nor a library's log record or warning reaches the user."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.flags
import dns.name
import dns.rdatatype
import pytest
from octodns_powerdns import PowerDnsProvider  # type: ignore[import-untyped]
from octodns_route53 import Route53Provider  # type: ignore[import-untyped]

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import (
    CapabilityError,
    SyncConfigError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import RRset, ZoneData
from sync.plan import Action, Safety
from sync.providers import build_target
from sync.providers.capabilities import DnssecMode, Owner
from sync.providers.octodns import OctoDnsTarget, contained, octodns_from_config, target_error
from sync.providers.testkit.contract import (
    CHECKS,
    Contract,
    LogCapture,
    capture_logs,
    contract_zone,
    rich_zone,
    run_check,
)
from sync.settings import TargetContext
from sync.state import SyncState
from tests.pdns import PdnsServer
from tests.tools import PROJECT_ROOT, free_port

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

KEY_ENV = "OCTODNS_PDNS_KEY"
PDNS_CLASS = "octodns_powerdns.PowerDnsProvider"
R53_CLASS = "octodns_route53.Route53Provider"
BASE = dns.name.from_text("octodns.test.")
AWS_KEY_ID = "AKIAOCTODNSBRIDGE7Q"
AWS_SECRET = "octodns-bridge-secret-9f8e7d6c5b4a"


@pytest.fixture
def pdns(module_pdns: PdnsServer) -> PdnsServer:
    """The tests of this module share one pdns_server (each uses zones of its own)."""
    return module_pdns


def pdns_section(endpoint: str, **settings: Any) -> dict[str, Any]:
    host, _, port = endpoint.removeprefix("http://").partition(":")
    return {
        "type": "octodns",
        "class": PDNS_CLASS,
        "settings": {"host": host, "port": int(port), "api_key-env": KEY_ENV, **settings},
    }


def pdns_target(server: PdnsServer, endpoint: str | None = None) -> OctoDnsTarget:
    ctx = TargetContext({}, None, {KEY_ENV: server.api_key})
    return octodns_from_config("octo", pdns_section(endpoint or server.api_url), ctx)


def rr(origin: dns.name.Name, owner: str, rdtype: str, *texts: str, ttl: int = 3600) -> RRset:
    return RRset.from_text(owner, rdtype, ttl, texts, origin)


def with_rrsets(data: ZoneData, *rrsets: RRset) -> ZoneData:
    return ZoneData(data.origin, {**data.rrsets, **{r.key: r for r in rrsets}})


class Source:
    """The primary, as a zone the test replaces."""

    def __init__(self, data: ZoneData) -> None:
        self.current = data

    async def serial(self, zone: dns.name.Name) -> int:
        return self.current.serial

    async def fetch(self, zone: dns.name.Name, have: ZoneData | None) -> Any:
        return type("Fetched", (), {"data": self.current, "method": "AXFR"})()


@contextlib.contextmanager
def engine_for(
    target: OctoDnsTarget, data: ZoneData, strict: bool = False
) -> Iterator[tuple[SyncEngine, Source]]:
    source = Source(data)
    with tempfile.TemporaryDirectory(prefix="zonefan-octodns-") as work:
        state = SyncState(Path(work) / "state.db")
        spec = TargetSpec(target, safety=Safety(max_share=1.0), strict=strict)
        engine = SyncEngine(
            state,
            source,
            [data.origin],
            {"octo": spec},
            EngineSettings(retry_base=0.01, retry_max=0.05),
        )
        try:
            yield engine, source
        finally:
            state.close()


# -- octodns-powerdns against pdns_server -------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
def test_octodns_powerdns_meets_the_contract(pdns: PdnsServer, check: str) -> None:
    contract = Contract(
        make_target=lambda endpoint: pdns_target(pdns, endpoint),
        upstream=pdns.api_url,
        zone=BASE,
        secrets=(pdns.api_key,),
        # octodns-powerdns writes a whole plan in one PATCH (a new zone: PATCH, then POST):
        # faults hit whichever request of a push comes second
        fault_method=None,
        hosts=120,
    )
    asyncio.run(run_check(contract, check))


def test_push_change_delete_served_by_pdns(pdns: PdnsServer) -> None:
    """What pdns answers on DNS after each push, not what our read says: created, changed,
    deleted, a second plan empty, a record written there by someone else untouched."""
    origin = dns.name.from_text("served.octodns.test.")
    v1 = contract_zone(origin, 1, hosts=3)

    async def scenario() -> list[str]:
        target = pdns_target(pdns)
        with engine_for(target, v1) as (engine, source):
            await engine.refresh_zone(origin)
            first = await engine.push("octo", origin)
            assert first.detail.startswith(f"{len(v1) - 1} to create"), first.detail
            assert pdns_answer(pdns, "h1.served.octodns.test.", "A") == ["192.0.2.2"]
            # someone else's record, written through pdns's own API
            status, _ = pdns.api(
                "PATCH",
                "zones/served.octodns.test.",
                {"rrsets": [txt_rrset("theirs.served.octodns.test.", '"not ours"')]},
            )
            assert status == 204
            v2 = with_rrsets(
                v1,
                rr(origin, "@", "SOA", f"ns1.{origin} hostmaster.{origin} 2 7200 3600 1209600 300"),
                rr(origin, "h0", "A", "198.51.100.7", "198.51.100.8", ttl=600),
                rr(origin, "new", "AAAA", "2001:db8::7"),
            )
            v2 = ZoneData(
                origin, {k: r for k, r in v2.rrsets.items() if k[0] != name("h2", origin)}
            )
            source.current = v2
            await engine.refresh_zone(origin)
            plan = await engine.plan("octo", origin)
            assert plan is not None
            lines = plan.lines()
            assert {(c.action, c.name.to_text()) for c in plan.changes} == {
                (Action.UPDATE, "h0.served.octodns.test."),
                (Action.CREATE, "new.served.octodns.test."),
                (Action.DELETE, "h2.served.octodns.test."),
            }, lines
            second = await engine.push("octo", origin)
            assert second.detail == "1 to create, 1 to update, 1 to delete", second.detail
            again = await engine.plan("octo", origin)
            assert again is not None
            assert again.empty, again.lines()
            assert await target.nameservers(origin) == [
                dns.name.from_text("ns1.example.net."),
                dns.name.from_text("ns2.example.org."),
            ]
            assert await target.nameservers(dns.name.from_text("absent.octodns.test.")) == []
            return lines + again.lines()

    lines = asyncio.run(scenario())
    assert "! theirs TXT not managed by zonefan: left alone" in lines
    assert pdns_answer(pdns, "h0.served.octodns.test.", "A") == ["198.51.100.7", "198.51.100.8"]
    assert pdns_answer(pdns, "new.served.octodns.test.", "AAAA") == ["2001:db8::7"]
    assert pdns_answer(pdns, "h2.served.octodns.test.", "A") == []
    assert pdns_answer(pdns, "theirs.served.octodns.test.", "TXT") == ['"not ours"']
    # pdns made its own SOA (octoDNS has none): the zone is served with it
    soa = pdns.query("served.octodns.test.", "SOA", flags=0)
    assert soa.flags & dns.flags.AA and soa.answer


def test_the_providers_own_plan_as_plan_lines(pdns: PdnsServer) -> None:
    """What octoDNS's plan will do, as our plan lines: the same changes as the engine's
    plan, plus what changed at the provider after the engine's read (octoDNS reads again),
    and never a record of someone else's."""
    origin = dns.name.from_text("preview.octodns.test.")
    v1 = contract_zone(origin, 1, hosts=4)

    async def scenario() -> tuple[list[str], list[str]]:
        target = pdns_target(pdns)
        with engine_for(target, v1) as (engine, source):
            await engine.refresh_zone(origin)
            await engine.push("octo", origin)
            pdns.api(
                "PATCH",
                "zones/preview.octodns.test.",
                {"rrsets": [txt_rrset("theirs.preview.octodns.test.", '"not ours"')]},
            )
            source.current = with_rrsets(
                v1,
                rr(origin, "@", "SOA", f"ns1.{origin} hostmaster.{origin} 2 7200 3600 1209600 300"),
                rr(origin, "h0", "A", "198.51.100.70"),
            )
            await engine.refresh_zone(origin)
            plan = await engine.plan("octo", origin)
            assert plan is not None
            # h3 changed at pdns after the engine's read
            drift = {**txt_rrset("h3.preview.octodns.test.", ""), "type": "A", "ttl": 3600}
            drift["records"] = [{"content": "203.0.113.3", "disabled": False}]
            status, _ = pdns.api("PATCH", "zones/preview.octodns.test.", {"rrsets": [drift]})
            assert status == 204
            theirs = await target.preview(plan)
            assert theirs.foreign == plan.foreign and theirs.lines()[2:] == plan.lines()[1:]
            return [c.describe(origin) for c in plan.changes], [
                c.describe(origin) for c in theirs.changes
            ]

    ours, theirs = asyncio.run(scenario())
    assert len(ours) == 1 and ours[0] in theirs, (ours, theirs)
    assert len(theirs) == 2, theirs
    assert any(line.startswith("~ h3 3600 A") and "192.0.2.4" in line for line in theirs), theirs
    assert not [line for line in theirs if "theirs" in line]


def name(owner: str, origin: dns.name.Name) -> dns.name.Name:
    return dns.name.from_text(owner, origin)


def txt_rrset(owner: str, content: str) -> dict[str, Any]:
    return {
        "name": owner,
        "type": "TXT",
        "ttl": 300,
        "changetype": "REPLACE",
        "records": [{"content": content, "disabled": False}],
    }


def pdns_answer(server: PdnsServer, qname: str, rdtype: str) -> list[str]:
    response = server.query(qname, rdtype, flags=0)
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


def test_types_the_provider_lacks_are_listed_as_skipped(pdns: PdnsServer) -> None:
    origin = dns.name.from_text("skipped.octodns.test.")
    data = with_rrsets(
        contract_zone(origin, 1, hosts=2),
        rr(origin, "host", "HINFO", '"PC" "Linux"'),  # not in octoDNS's record types
        rr(origin, "@", "SPF", '"v=spf1 -all"'),  # octoDNS has SPF, octodns-powerdns does not
        rr(origin, "quoted", "TXT", '"say \\"hi\\""'),  # octoDNS's TXT model cannot carry it
    )

    async def scenario() -> tuple[list[str], ZoneData | None, str]:
        target = pdns_target(pdns)
        with engine_for(target, data) as (engine, _):
            await engine.refresh_zone(origin)
            plan = await engine.plan("octo", origin)
            assert plan is not None
            lines = plan.lines()
            await engine.push("octo", origin)
            held = await target.read(origin)
        with engine_for(pdns_target(pdns), data, strict=True) as (engine, _):
            await engine.refresh_zone(origin)
            with pytest.raises(CapabilityError) as refused:
                await engine.plan("octo", origin)
        return lines, None if held is None else held.data, str(refused.value)

    lines, held, refused = asyncio.run(scenario())
    assert "! host HINFO not supported by the target: skipped" in lines
    assert "! @ SPF not supported by the target: skipped" in lines
    assert "! quoted TXT not supported by the target: skipped" in lines
    assert "! @ SOA is the provider's own: left to it" in lines
    assert held is not None
    assert {k[1] for k in held.rrsets} >= {dns.rdatatype.A, dns.rdatatype.NS, dns.rdatatype.MX}
    assert dns.rdatatype.HINFO not in {k[1] for k in held.rrsets}
    assert "strict" in refused and "host HINFO" in refused


def test_a_signed_zone_is_refused_and_nothing_is_written(pdns: PdnsServer) -> None:
    origin = dns.name.from_text("signed.octodns.test.")
    key = base64.b64encode(bytes(range(64))).decode()
    data = with_rrsets(contract_zone(origin, 1), rr(origin, "@", "DNSKEY", f"257 3 13 {key}"))
    target = pdns_target(pdns)
    assert target.capabilities.dnssec is DnssecMode.NONE

    async def scenario() -> str:
        with engine_for(target, data) as (engine, _):
            await engine.refresh_zone(origin)
            with pytest.raises(CapabilityError) as refused:
                await engine.push("octo", origin)
            return str(refused.value)

    message = asyncio.run(scenario())
    assert "the zone is signed" in message and "'none'" in message, message
    status, _ = pdns.api("GET", "zones/signed.octodns.test.")
    assert status == 404


class PowerDnsWithoutRootNs(PowerDnsProvider):  # type: ignore[misc]
    """octodns-powerdns declaring what many cloud plugins do: no root NS records."""

    SUPPORTS_ROOT_NS = False


def test_who_writes_the_apex_ns_comes_from_the_class(pdns: PdnsServer) -> None:
    section = pdns_section(pdns.api_url)
    section["class"] = f"{__name__}.PowerDnsWithoutRootNs"
    assert build(section, {KEY_ENV: pdns.api_key}).capabilities.apex_ns is Owner.PROVIDER
    with pytest.raises(SyncConfigError) as refused:
        build({**section, "apex-ns": "ours"}, {KEY_ENV: pdns.api_key})
    assert refused.value.setting == "target.x.apex-ns"
    assert "SUPPORTS_ROOT_NS is false" in str(refused.value)
    provider_ns = build({**pdns_section(pdns.api_url), "apex-ns": "provider"})
    assert provider_ns.capabilities.apex_ns is Owner.PROVIDER


def test_capabilities_come_from_the_provider_class(pdns: PdnsServer) -> None:
    caps = pdns_target(pdns).capabilities
    assert caps.apex_soa is Owner.PROVIDER and caps.apex_ns is Owner.OURS
    assert caps.record_types is not None
    held = {dns.rdatatype.to_text(t) for t in caps.record_types}
    # octodns-powerdns's SUPPORTS, less what dnspython cannot parse (ALIAS, its LUA)
    assert held >= {"A", "AAAA", "CAA", "CNAME", "DS", "MX", "NS", "PTR", "SRV", "TLSA", "TXT"}
    assert not held & {"SOA", "SPF", "HINFO", "DNSKEY", "RRSIG"}


def test_normalize_neither_waits_for_a_provider_call_nor_warns(pdns: PdnsServer) -> None:
    """normalize runs in the engine's event loop: while another thread holds octoDNS for a
    provider call (seconds, for a large apply) it goes on, and it emits no warning of its
    own. (Were it to wait, this test would hang until its timeout.)"""
    target = pdns_target(pdns)
    origin = dns.name.from_text("normalize.octodns.test.")
    data = with_rrsets(rich_zone(origin, 1), rr(origin, "bs", "TXT", '"back\\\\slash"'))
    holding, release = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def provider_call() -> None:
        with contained():
            holding.set()
            release.wait()

    def normalize() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["normalized"] = target.normalize(data)
        result["warnings"] = [str(w.message) for w in caught]

    holder = threading.Thread(target=provider_call)
    holder.start()
    try:
        assert holding.wait(60)
        worker = threading.Thread(target=normalize, daemon=True)
        worker.start()
        worker.join(60)  # returns as soon as normalize does
        assert not worker.is_alive(), "normalize waited for the provider call"
    finally:
        release.set()
        holder.join()
    normalized = result["normalized"]
    assert result["warnings"] == []
    skipped = {(n.relativize(origin).to_text(), t) for n, t in normalized.unsupported}
    assert skipped == {("quoted", dns.rdatatype.TXT), ("bs", dns.rdatatype.TXT)}
    long_txt = normalized.data.rrsets[(name("long", origin), dns.rdatatype.TXT)]
    assert long_txt.texts() == data.rrsets[(name("long", origin), dns.rdatatype.TXT)].texts()


# -- octodns-route53 against moto ---------------------------------------------------------


@pytest.fixture
def aws(moto: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Route 53 clients of this test at moto (botocore's service endpoint variable; the
    provider takes no endpoint setting), with no credentials but the target's."""
    for var in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ROUTE_53", moto)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto


def route53_target() -> OctoDnsTarget:
    section = {
        "type": "octodns",
        "class": R53_CLASS,
        "settings": {"access_key_id-env": "AWS_KEY", "secret_access_key-env": "AWS_SECRET"},
    }
    ctx = TargetContext({}, None, {"AWS_KEY": AWS_KEY_ID, "AWS_SECRET": AWS_SECRET})
    target = build_target("r53", section, ctx)  # by its registered type, as a config does
    assert isinstance(target, OctoDnsTarget)
    return target


def moto_records(endpoint: str, zone: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
    """What moto holds, asked with boto3 itself (not through octoDNS)."""
    import boto3  # type: ignore[import-untyped]

    client = boto3.client(
        "route53",
        endpoint_url=endpoint,
        aws_access_key_id="reader",
        aws_secret_access_key="reader",
        region_name="us-east-1",
    )
    zones = client.list_hosted_zones_by_name(DNSName=zone)["HostedZones"]
    ids = [z["Id"] for z in zones if z["Name"] == zone]
    assert len(ids) == 1, zones
    held = {}
    for item in client.list_resource_record_sets(HostedZoneId=ids[0])["ResourceRecordSets"]:
        values = sorted(r["Value"] for r in item.get("ResourceRecords", []))
        held[(item["Name"], item["Type"])] = (int(item.get("TTL", 0)), values)
    return held


@pytest.fixture
def root_log() -> Iterator[LogCapture]:
    with capture_logs() as capture:
        yield capture


def test_octodns_route53_push_and_one_change(aws: str, root_log: LogCapture) -> None:
    origin = dns.name.from_text("r53.octodns.test.")
    v1 = with_rrsets(
        contract_zone(origin, 1, hosts=4),
        rr(origin, "_sip._tcp", "SRV", "10 60 5060 sip"),
        rr(origin, "www", "CNAME", "h0"),
        rr(origin, "@", "CAA", '0 issue "letsencrypt.org"'),
    )

    async def scenario() -> tuple[str, str, bool]:
        target = route53_target()
        await target.open()
        with engine_for(target, v1) as (engine, source):
            await engine.refresh_zone(origin)
            first = await engine.push("octo", origin)
            v2 = with_rrsets(
                v1,
                rr(origin, "@", "SOA", f"ns1.{origin} hostmaster.{origin} 2 7200 3600 1209600 300"),
                rr(origin, "h1", "A", "203.0.113.9", ttl=120),
            )
            source.current = v2
            await engine.refresh_zone(origin)
            second = await engine.push("octo", origin)
            fresh = route53_target()
            plan = await engine.plan("octo", origin)
            again = await fresh.read(origin)
            assert again is not None
            return first.detail, second.detail, plan is not None and plan.empty

    first, second, empty = asyncio.run(scenario())
    # the SOA is Route 53's own; everything else is created, then one RRset replaced
    assert first == f"{len(v1) - 1} to create, 0 to update, 0 to delete", first
    assert second == "0 to create, 1 to update, 0 to delete", second
    assert empty
    held = moto_records(aws, "r53.octodns.test.")
    assert held[("h1.r53.octodns.test.", "A")] == (120, ["203.0.113.9"])
    assert held[("h0.r53.octodns.test.", "A")] == (3600, ["192.0.2.1"])
    assert held[("_sip._tcp.r53.octodns.test.", "SRV")] == (
        3600,
        ["10 60 5060 sip.r53.octodns.test."],
    )
    assert held[("www.r53.octodns.test.", "CNAME")] == (3600, ["h0.r53.octodns.test."])
    assert held[("r53.octodns.test.", "NS")][1] == ["ns1.example.net.", "ns2.example.org."]
    # octodns-route53 logs the key id it is given, and botocore signs with it: redacted
    logged = "\n".join(root_log.lines)
    assert AWS_KEY_ID not in logged and AWS_SECRET not in logged
    assert "***" in logged, "no log record carried the redacted key id: the check proved nothing"


class Route53AtEndpoint(Route53Provider):  # type: ignore[misc]
    """octodns-route53 with its boto3 client at ``endpoint_url``: the provider has no such
    setting (botocore's AWS_ENDPOINT_URL_ROUTE_53 is one per process), and the contract
    kit puts its fault proxy between each target and moto."""

    def __init__(self, id: str, endpoint_url: str, **settings: Any) -> None:
        self._endpoint_url = endpoint_url
        super().__init__(id, **settings)

    def client(self, *args: Any, **kwargs: Any) -> Any:
        return super().client(*args, endpoint_url=self._endpoint_url, **kwargs)


@pytest.mark.parametrize("check", CHECKS)
def test_octodns_route53_meets_the_contract(aws: str, check: str) -> None:
    ctx = TargetContext({}, None, {"AWS_KEY": AWS_KEY_ID, "AWS_SECRET": AWS_SECRET})

    def make_target(endpoint: str) -> OctoDnsTarget:
        section = {
            "type": "octodns",
            "class": f"{__name__}.Route53AtEndpoint",
            "settings": {
                "endpoint_url": endpoint,
                "access_key_id-env": "AWS_KEY",
                "secret_access_key-env": "AWS_SECRET",
                "client_max_attempts": 0,  # retries: faults reach the engine, not botocore
            },
        }
        return octodns_from_config("r53", section, ctx)

    contract = Contract(
        make_target=make_target,
        upstream=aws,
        zone=dns.name.from_text("contract.octodns.test."),
        secrets=(AWS_KEY_ID, AWS_SECRET),
        hosts=120,
    )
    asyncio.run(run_check(contract, check))


def test_octodns_route53_apex_ns_left_to_the_provider(aws: str) -> None:
    """``apex-ns = "provider"``: Route 53's own delegation set stays, never planned."""
    origin = dns.name.from_text("own-ns.octodns.test.")
    data = contract_zone(origin, 1, hosts=2)
    section = {
        "type": "octodns",
        "class": R53_CLASS,
        "apex-ns": "provider",
        "settings": {"access_key_id-env": "AWS_KEY", "secret_access_key-env": "AWS_SECRET"},
    }
    ctx = TargetContext({}, None, {"AWS_KEY": AWS_KEY_ID, "AWS_SECRET": AWS_SECRET})
    target = octodns_from_config("r53", section, ctx)
    assert target.capabilities.apex_ns is Owner.PROVIDER

    async def scenario() -> tuple[list[str], str, bool]:
        with engine_for(target, data) as (engine, _):
            await engine.refresh_zone(origin)
            plan = await engine.plan("octo", origin)
            assert plan is not None
            pushed = await engine.push("octo", origin)
            again = await engine.plan("octo", origin)
            assert again is not None
            return plan.lines(), pushed.detail, again.empty

    lines, detail, empty = asyncio.run(scenario())
    assert "! @ NS is the provider's own: left to it" in lines, lines
    assert detail == f"{len(data) - 2} to create, 0 to update, 0 to delete", detail
    assert empty
    ns = moto_records(aws, "own-ns.octodns.test.")[("own-ns.octodns.test.", "NS")][1]
    assert ns and all("awsdns" in n for n in ns), ns
    section["class"] = "octodns_bind.Rfc2136Provider"
    section["apex-ns"] = "sometimes"
    with pytest.raises(SyncConfigError) as refused:
        octodns_from_config("r53", section, ctx)
    assert refused.value.setting == "target.r53.apex-ns"


# -- octodns-bind's RFC 2136 provider against knotd -----------------------------------------


def test_octodns_bind_rfc2136_against_knot(tmp_path: Path) -> None:
    """A third real back end: octodns-bind's Rfc2136Provider (AXFR to read, TSIG-signed
    UPDATE to write) against knotd serving the zone: a push, one change, Knot's SOA left
    to it and the records already in its zone file left alone."""
    from tests.test_sync_rfc2136 import KEY, MINIMAL, ORIGIN
    from tests.update_targets import KnotUpdatePrimary

    zone_file = tmp_path / "example.test.zone"
    zone_file.write_text(MINIMAL, encoding="utf-8")
    v1 = with_rrsets(
        contract_zone(ORIGIN, 1, hosts=3),
        rr(ORIGIN, "_sip._tcp", "SRV", "10 60 5060 sip"),
        rr(ORIGIN, "@", "CAA", '0 issue "letsencrypt.org"'),
        rr(ORIGIN, "@", "NS", "ns1", "ns2"),  # the zone file's: no apex NS change to force
    )
    with KnotUpdatePrimary(tmp_path / "knot", "example.test", zone_file, KEY) as knot:
        section = {
            "type": "octodns",
            "class": "octodns_bind.Rfc2136Provider",
            "settings": {
                "host": knot.host,
                "port": knot.port,
                "key_name": KEY.name,
                "key_secret-env": "KNOT_KEY",
                "key_algorithm": KEY.algorithm,
            },
        }
        ctx = TargetContext({}, None, {"KNOT_KEY": KEY.secret})
        target = octodns_from_config("knot", section, ctx)
        assert target.capabilities.apex_soa is Owner.PROVIDER

        async def scenario() -> tuple[str, list[str], str, bool]:
            with engine_for(target, v1) as (engine, source):
                await engine.refresh_zone(ORIGIN)
                plan = await engine.plan("octo", ORIGIN)
                assert plan is not None
                first = await engine.push("octo", ORIGIN)
                source.current = with_rrsets(
                    v1,
                    rr(ORIGIN, "@", "SOA", "ns1 hostmaster 2 7200 3600 1209600 300"),
                    rr(ORIGIN, "h1", "A", "203.0.113.9", ttl=120),
                )
                await engine.refresh_zone(ORIGIN)
                second = await engine.push("octo", ORIGIN)
                again = await engine.plan("octo", ORIGIN)
                assert again is not None
                return first.detail, plan.lines(), second.detail, again.empty

        first, lines, second, empty = asyncio.run(scenario())
        # all but the SOA (Knot's) and the apex NS (already the same) created
        assert first == f"{len(v1) - 2} to create, 0 to update, 0 to delete", first
        assert "! ns1 A not managed by zonefan: left alone" in lines, lines
        assert second == "0 to create, 1 to update, 0 to delete", second
        assert empty

        def served(owner: str, rdtype: str) -> list[str]:
            response = knot.query(f"{owner}.example.test.", rdtype, flags=0)
            return sorted(r.to_text() for rrset in response.answer for r in rrset)

        assert served("h1", "A") == ["203.0.113.9"]
        assert served("_sip._tcp", "SRV") == ["10 60 5060 sip.example.test."]
        assert served("ns1", "A") == ["192.0.2.2"]  # the zone file's, not ours: still there
        assert (knot.zone_serial() or 0) > 1  # Knot's own SOA, its serial raised per UPDATE


# -- settings --------------------------------------------------------------------------------


def build(section: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    ctx = TargetContext({}, None, env if env is not None else {KEY_ENV: "k" * 16})
    return octodns_from_config("x", section, ctx)


@pytest.mark.parametrize(
    ("class_path", "reason"),
    [
        ("PowerDnsProvider", "dotted path"),
        ("octodns_nosuchplugin.NoSuchProvider", "pip install octodns-nosuchplugin"),
        ("octodns_powerdns.PowerDnsProviderr", "has no 'PowerDnsProviderr'; it has "),
        ("octodns.zone.Zone", "is not an octoDNS provider"),
        ("octodns.source.envvar.EnvVarSource", "a source cannot be a target"),
    ],
)
def test_a_bad_class_path_is_refused_naming_the_key(class_path: str, reason: str) -> None:
    section = pdns_section("http://127.0.0.1:1")
    section["class"] = class_path
    with pytest.raises(SyncConfigError) as refused:
        build(section)
    assert refused.value.setting == "target.x.class"
    assert reason in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("settings", "env", "setting", "reason"),
    [
        ({"hostname": "h"}, None, "target.x.settings.hostname", "takes no setting 'hostname'"),
        ({"api_key": "inline"}, None, "target.x.settings.api_key", "never written inline"),
        ({"api-key": "inline"}, None, "target.x.settings.api-key", "set api-key-env"),
        ({"api_key-env": "UNSET"}, {}, "target.x.settings.api_key-env", "'UNSET' is not set"),
        ({"api_key": "env/PDNS_KEY"}, None, "target.x.settings.api_key", "never written inline"),
        ({"scheme": "env/SCHEME"}, None, "target.x.settings.scheme", 'scheme-env = "SCHEME"'),
        ({"id": "other"}, None, "target.x.settings.id", "not a provider setting"),
        ({"api-key-env": KEY_ENV}, None, "target.x.settings.api-key-env", "given twice"),
        ({"soa_edit_api": "sometimes"}, None, "target.x.settings", "invalid soa_edit_api"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    settings: dict[str, Any], env: dict[str, str] | None, setting: str, reason: str
) -> None:
    section = pdns_section("http://127.0.0.1:1")
    if "given twice" not in reason and any(k.startswith("api") for k in settings):
        del section["settings"]["api_key-env"]
    section["settings"].update(settings)
    with pytest.raises(SyncConfigError) as refused:
        build(section, env)
    assert refused.value.setting == setting, str(refused.value)
    assert reason in str(refused.value), str(refused.value)


def test_a_missing_argument_and_unknown_keys_are_named() -> None:
    section = pdns_section("http://127.0.0.1:1")
    del section["settings"]["api_key-env"]
    with pytest.raises(SyncConfigError) as refused:
        build(section)
    assert refused.value.setting == "target.x.settings"
    assert "needs api_key (a credential as api_key-env or api_key-file)" in str(refused.value)
    with pytest.raises(SyncConfigError) as unknown:
        build({**pdns_section("http://127.0.0.1:1"), "url": "http://x"})
    assert unknown.value.setting == "target.x.url"


def test_a_credential_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "pdns.key"
    key.write_text("s3cret-from-a-file\n")
    key.chmod(0o644)
    section = pdns_section("http://127.0.0.1:1")
    del section["settings"]["api_key-env"]
    section["settings"]["api_key-file"] = str(key)
    with pytest.raises(SyncConfigError) as refused:
        build(section)
    assert refused.value.setting == "target.x.settings.api_key-file"
    assert "chmod 600" in str(refused.value)
    key.chmod(0o600)
    target = build(section)
    assert target.settings.kwargs["api_key"] == "s3cret-from-a-file"
    assert "s3cret" not in repr(target.settings)


def test_provider_errors_become_typed_errors_without_the_credential(pdns: PdnsServer) -> None:
    wrong = "wrong-key-0123456789"
    ctx = TargetContext({}, None, {KEY_ENV: wrong})
    target = octodns_from_config("octo", pdns_section(pdns.api_url), ctx)
    with pytest.raises(SyncConfigError) as refused:
        asyncio.run(target.open())
    assert "check the credentials in target.octo.settings" in str(refused.value)
    assert wrong not in str(refused.value)
    closed = f"http://127.0.0.1:{free_port()}"
    down = pdns_target(pdns, closed)
    with pytest.raises(TargetUnavailableError):
        asyncio.run(down.read(dns.name.from_text("down.octodns.test.")))


def test_error_mapping_reads_requests_and_botocore_errors() -> None:
    class Response:
        status_code = 422
        headers: dict[str, str] = {}
        text = '{"error": "RRset x. IN TXT: Conflicts with pre-existing RRset"}'

    class HTTPError(Exception):
        response = Response()

    class ClientError(Exception):
        response = {
            "Error": {"Code": "PriorRequestNotComplete", "Message": "still applying"},
            "ResponseMetadata": {"HTTPStatusCode": 400, "HTTPHeaders": {"retry-after": "2"}},
        }

    rejected = target_error("t", "applying", HTTPError("422"), ["sekrit"], "target.t.settings")
    assert isinstance(rejected, TargetRejectedError) and "Conflicts with" in str(rejected)
    throttled = target_error("t", "applying", ClientError(), [], "target.t.settings")
    assert throttled.transient and throttled.retry_after == 2.0
    assert type(throttled).__name__ == "TargetRateLimitedError"


# -- nothing of octoDNS on the user's terminal ------------------------------------------------

QUIET_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys, warnings

    import zonefan  # the command line's warning filters, as `zonefan sync` has them
    import dns.name
    logging.basicConfig(level=logging.INFO)  # as `zonefan sync run` logs: INFO to stderr
    warnings.simplefilter("default")
    relayed = logging.getLogger("zonefan.sync.octodns.library")
    relayed.setLevel(logging.DEBUG)
    relayed.propagate = False
    relayed.addHandler(logging.StreamHandler(sys.stdout))

    from sync.model import ZoneData
    from sync.plan import compute_plan
    from sync.providers.octodns import octodns_from_config
    from sync.settings import TargetContext

    url, key = sys.argv[1], sys.argv[2]
    host, port = url.removeprefix("http://").split(":")
    section = {"type": "octodns", "class": "octodns_powerdns.PowerDnsProvider",
               "settings": {"host": host, "port": int(port), "api_key-env": "K"}}
    target = octodns_from_config("quiet", section, TargetContext({}, None, {"K": key}))
    origin = dns.name.from_text("quiet.octodns.test.")
    # no apex NS: octodns-powerdns warns that none is configured
    data = ZoneData.from_text(
        "@ 300 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\\n"
        "www 300 IN A 192.0.2.1\\n", origin)

    async def main():
        await target.open()
        held = await target.read(origin)
        normalized = target.normalize(data).data
        plan = compute_plan(normalized, None if held is None else held.data,
                            target="quiet", serial=1)
        await target.apply(plan, None)
        print("pushed", plan.summary())

    asyncio.run(main())
    """
)


def test_no_library_log_or_warning_reaches_stderr(pdns: PdnsServer) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", QUIET_SCRIPT, pdns.api_url, pdns.api_key],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=PROJECT_ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pushed 1 to create" in done.stdout, done.stdout
    # octoDNS did warn and log: relayed at debug level, not shown
    assert "root NS record supported, but no record is configured" in done.stdout, done.stdout
    assert "populate:" in done.stdout, done.stdout
    assert done.stderr == "", done.stderr
    assert pdns.api_key not in done.stdout


# -- the command line, with a zonefan primary -------------------------------------------------


def test_sync_plan_and_apply_through_an_octodns_target(tmp_path: Path) -> None:
    """A config file's [target.NAME] with its [target.NAME.settings] sub-table, as `zonefan
    sync` reads it: the unsigned zone planned and pushed through octodns-powerdns, the
    signed one refused with the reason, and nothing of octoDNS on stderr."""
    from tests.test_sync_e2e import KEY, PLAIN, SIGNED
    from tests.test_sync_refusals import primary_and_pdns, sync_cli

    with primary_and_pdns(tmp_path) as (primary, pdns):
        config = tmp_path / "sync.toml"
        config.write_text(
            textwrap.dedent(
                f"""
                state = "{tmp_path / "sync.db"}"
                retry-base = "0.2s"

                [primary]
                address = "127.0.0.1:{primary.port}"
                key = "{KEY.name}"
                zones = ["{PLAIN}", "{SIGNED}"]

                [key.{KEY.name}]
                algorithm = "{KEY.algorithm}"
                secret-env = "ZF_XFR_SECRET"

                [target.octo]
                type = "octodns"
                class = "{PDNS_CLASS}"

                [target.octo.settings]
                host = "127.0.0.1"
                port = {pdns.api_port}
                api-key-env = "ZF_PDNS_KEY"
                timeout = 10
                """
            ),
            encoding="utf-8",
        )
        env = {"ZF_XFR_SECRET": KEY.secret, "ZF_PDNS_KEY": pdns.api_key}
        plan = sync_cli(config, env, "plan")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert f"{PLAIN} at octo:" in plan.stdout and "to create" in plan.stdout, plan.stdout
        assert "SOA is the provider's own: left to it" in plan.stdout, plan.stdout
        assert f"{SIGNED} at octo" in plan.stdout and "the zone is signed" in plan.stdout
        applied = sync_cli(config, env, "apply", PLAIN)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        refused = sync_cli(config, env, "apply", SIGNED)
        assert refused.returncode != 0 and "DNSSEC mode is 'none'" in refused.stdout, (
            refused.stdout + refused.stderr
        )
        again = sync_cli(config, env, "plan", PLAIN)
        assert f"{PLAIN} at octo: no changes" in again.stdout, again.stdout
        for done in (plan, applied, refused, again):
            # zonefan's own log lines only (the refusal is one), none of octoDNS's
            logged = done.stderr.splitlines()
            assert all(re.match(r"\S+ \S+ [A-Z]+ zonefan\.", line) for line in logged), logged
            assert pdns.api_key not in done.stdout + done.stderr
        assert pdns_answer(pdns, f"mail1.{PLAIN}", "A") == ["192.0.2.25"]
        status, _ = pdns.api("GET", f"zones/{SIGNED}")
        assert status == 404
