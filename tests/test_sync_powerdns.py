"""The PowerDNS targets against a real ``pdns_server`` (gsqlite3, HTTP API): the first push
creates the zone and pdns serves our data and serial; a second plan is empty; updates,
deletes and batches apply; foreign records are left alone; failures map to the sync errors;
a signed zone served by ``zonefan serve`` is provisioned at pdns as a TSIG-authenticated
secondary and pdns serves its serial and its NSEC proofs. Plus unit tests of Retry-After
parsing, HTTP error mapping and the config checks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import functools
import json
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from aiohttp import web

from nameserver.store.store import Store
from sync.errors import (
    SyncConfigError,
    TargetRateLimitedError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import RRset, ZoneData
from sync.plan import Action, compute_plan
from sync.providers.base import DnssecMode
from sync.providers.http import parse_retry_after
from sync.providers.powerdns import (
    CREATE_ZONE,
    DEFAULT_BATCH_SIZE,
    PowerDnsSecondaryTarget,
    PowerDnsTarget,
    batches,
    contents,
    powerdns_from_config,
    powerdns_secondary_from_config,
    render,
    rrset_json,
    rrsets_body,
    zone_body,
    zone_id,
)
from sync.providers.testkit.contract import read_zone
from sync.settings import Address, TargetContext, TsigKey
from tests.clock import FakeClock
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer
from tests.tools import PROJECT_ROOT, example_store, free_port
from tests.wait import until

pytestmark = [pytest.mark.external, pytest.mark.timeout(120)]

T = TypeVar("T")
ZONE = dns.name.from_text("example.test.")
RACE_ROUNDS = 50
KEY_ENV = "PDNS_TEST_API_KEY"
TSIG_NAME = "pdns-xfr"
TSIG_SECRET = base64.b64encode(b"powerdns-secondary-secret-012345").decode()
# Tests of unsigned data need no secondary settings (dns, primary) when they say so.
UNSIGNED = {"signed-zones": "refuse"}


def example_zone() -> ZoneData:
    """zones/example.test.zone as the sync engine sees it."""
    text = (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8")
    return ZoneData.from_text(text, ZONE)


def target(server: PdnsServer, **settings: Any) -> PowerDnsTarget:
    section: dict[str, Any] = {"url": server.api_url, "api-key-env": KEY_ENV, **UNSIGNED}
    section.update(settings)
    return powerdns_from_config("pdns", section, TargetContext({}, None, {KEY_ENV: server.api_key}))


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


async def push(t: PowerDnsTarget, desired: ZoneData, owned: set[Any] | None = None) -> Any:
    """Read, plan and apply once; the plan applied."""
    held = await t.read(desired.origin)
    current = None if held is None else held.data
    plan = compute_plan(desired, current, target=t.name, owned=owned or set(desired.rrsets))
    await t.apply(plan, None if held is None else held.state)
    return plan


def recorded_push(t: PowerDnsTarget, desired: ZoneData) -> tuple[list[Any], ZoneData | None]:
    """Push ``desired`` with every API request recorded; the requests and the zone read
    back afterwards."""

    async def scenario() -> tuple[list[Any], ZoneData | None]:
        await t.open()
        try:
            with mock.patch.object(t.api, "request", wraps=t.api.request) as spy:
                await push(t, desired)
                calls = list(spy.call_args_list)
            return calls, await read_zone(t, ZONE)
        finally:
            await t.close()

    return run(scenario)


def body_bytes(body: Any) -> bytes:
    """A request body as sent: PATCH bodies are JSON bytes already."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def answer(server: PdnsServer, name: str, rdtype: str) -> list[str]:
    response = server.query(name, rdtype, flags=0)
    assert response.flags & dns.flags.AA, response
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


def with_rrsets(zone: ZoneData, *rrsets: RRset, drop: tuple[Any, ...] = ()) -> ZoneData:
    sets = {k: v for k, v in zone.rrsets.items() if k not in drop}
    sets.update({r.key: r for r in rrsets})
    return ZoneData(zone.origin, sets)


def rr(name: str, ttl: int, rdtype: str, *texts: str) -> RRset:
    return RRset.from_text(name, rdtype, ttl, texts, ZONE)


# -- against pdns_server ---------------------------------------------------------------------


def test_initial_push_creates_the_zone_and_pdns_serves_it(pdns: PdnsServer) -> None:
    desired = example_zone()

    async def scenario() -> tuple[Any, ZoneData | None, Any]:
        t = target(pdns)
        await t.open()
        try:
            assert await read_zone(t, ZONE) is None
            plan = await push(t, desired)
            again = await read_zone(t, ZONE)
            second = compute_plan(desired, again, target="pdns", owned=set(desired.rrsets))
            return plan, again, second
        finally:
            await t.close()

    plan, again, second = run(scenario)
    assert plan.create_zone and plan.count(Action.CREATE) == len(desired)
    assert again is not None and again.rrsets.keys() == desired.rrsets.keys()
    assert second.empty, second.lines()
    _, zone = pdns.api("GET", f"zones/{zone_id(ZONE)}")
    assert zone["kind"] == "Native" and zone["soa_edit_api"] == "" and zone["soa_edit"] == ""
    soa = pdns.query("example.test.", "SOA", flags=0)
    assert soa.flags & dns.flags.AA
    assert soa.answer[0][0].serial == desired.serial == 2024060101
    for rrset in desired:
        if rrset.rdtype == dns.rdatatype.NS and rrset.name != ZONE:
            continue  # a delegation: answered as a referral
        if rrset.name.is_subdomain(dns.name.from_text("sub.example.test.")):
            continue  # below the zone cut: glue and the DS (asked at the parent side below)
        assert answer(pdns, rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype)) == sorted(
            r.to_text() for r in rrset.rdatas
        ), rrset
    ds = answer(pdns, "sub.example.test.", "DS")
    assert ds == sorted(
        r.to_text()
        for r in desired.rrsets[(dns.name.from_text("sub.example.test."), dns.rdatatype.DS)].rdatas
    )


def test_updates_and_deletes_apply(pdns: PdnsServer) -> None:
    desired = example_zone()
    web_a = (dns.name.from_text("web.example.test."), dns.rdatatype.A)
    mail2 = (dns.name.from_text("mail2.example.test."), dns.rdatatype.A)
    soa = desired.rrsets[(ZONE, dns.rdatatype.SOA)]
    changed = with_rrsets(
        desired,
        rr("web", 600, "A", "192.0.2.81", "192.0.2.82"),
        rr("new", 300, "TXT", '"added by the second push"'),
        rr("@", soa.ttl, "SOA", "ns1 hostmaster 2024060102 7200 3600 432000 300"),
        drop=(mail2,),
    )

    async def scenario() -> tuple[Any, Any]:
        t = target(pdns)
        await t.open()
        try:
            await push(t, desired)
            plan = await push(t, changed, owned=set(desired.rrsets))
            after = compute_plan(
                changed, await read_zone(t, ZONE), target="pdns", owned=set(changed.rrsets)
            )
            return plan, after
        finally:
            await t.close()

    plan, after = run(scenario)
    assert (plan.count(Action.CREATE), plan.count(Action.UPDATE), plan.count(Action.DELETE)) == (
        1,
        2,
        1,
    )
    assert web_a in {c.key for c in plan.changes}
    assert after.empty, after.lines()
    assert answer(pdns, "web.example.test.", "A") == ["192.0.2.81", "192.0.2.82"]
    assert answer(pdns, "new.example.test.", "TXT") == ['"added by the second push"']
    assert pdns.query("mail2.example.test.", "A", flags=0).rcode() == dns.rcode.NXDOMAIN
    assert pdns.query("example.test.", "SOA", flags=0).answer[0][0].serial == 2024060102


def test_a_new_zone_is_created_whole_by_one_post(pdns: PdnsServer) -> None:
    """One request, so pdns never serves part of the zone (an empty one: NXDOMAIN for
    every name) while the rest is still on its way."""
    desired = with_rrsets(
        example_zone(), *(rr(f"host{i}", 300, "A", f"192.0.2.{i}") for i in range(100))
    )
    # Asked before the zone exists: pdns caches its REFUSED, and a POST does not purge that.
    assert pdns.query("host99.example.test.", "A", flags=0).rcode() == dns.rcode.REFUSED
    calls, again = recorded_push(target(pdns), desired)
    writes = [c for c in calls if c.args[0] not in ("GET",)]
    assert [c.args[:2] for c in writes] == [
        ("POST", "zones?rrsets=false"),
        ("PUT", "cache/flush?domain=example.test."),
    ]
    body = json.loads(body_bytes(writes[0].args[2]))
    assert len(body["rrsets"]) == len(desired)
    assert again is not None and compute_plan(desired, again, target="pdns").empty
    assert answer(pdns, "host99.example.test.", "A") == ["192.0.2.99"]


def test_pdns_answers_the_creating_post_without_the_records(pdns: PdnsServer) -> None:
    """What :data:`CREATE_ZONE` relies on: pdns 4.7 honours ``rrsets=false`` on a POST
    (its answer is the zone document alone) and still stores every record."""
    desired = with_rrsets(
        example_zone(), *(rr(f"host{i}", 300, "A", f"192.0.2.{i}") for i in range(50))
    )
    plan = compute_plan(desired, None, target="pdns")
    t = target(pdns)

    async def scenario() -> tuple[int, Any, ZoneData | None]:
        await t.open()
        try:
            soa_first = sorted(desired, key=lambda r: r.rdtype != dns.rdatatype.SOA)
            body = zone_body(ZONE, [rrset_json(r) for r in soa_first])
            status, created = await t.api.request("POST", CREATE_ZONE, body)
            return status, created, await read_zone(t, ZONE)
        finally:
            await t.close()

    status, created, stored = run(scenario)
    assert plan.create_zone and status == 201
    assert isinstance(created, dict) and created["name"] == "example.test."
    assert "rrsets" not in created
    assert stored is not None and compute_plan(desired, stored, target="pdns").empty


def test_no_answer_cached_while_a_change_commits_outlives_the_push(pdns: PdnsServer) -> None:
    """pdns's purge of its cache at a PATCH's commit races queries: one that read the old
    data caches its NXDOMAIN after the purge, served for ``cache-ttl`` (20 s) more; 3-6 of
    100 PATCHes did so here under steady queries. The target flushes the zone's cache after
    each push, so every added name answers once the push returns. (Without the flush this
    test failed 6 runs of 6.)"""
    base = with_rrsets(
        example_zone(), *(rr(f"host{i}", 300, "A", "192.0.2.1") for i in range(2000))
    )
    t = target(pdns)
    asking: dict[str, str] = {}
    done = False
    # The scenario's phase, and per asker the phase its last finished query began in.
    phase = [0]
    finished = [0] * 4

    async def ask_steadily(k: int) -> None:
        while not done:
            began = phase[0]
            query = dns.message.make_query(asking["name"], "A", flags=0)
            with contextlib.suppress(dns.exception.DNSException, OSError):
                await dns.asyncquery.udp(query, pdns.host, port=pdns.port, timeout=1)
            finished[k] = began
            await asyncio.sleep(0.001)  # leave the loop to the push

    async def everyone_asked(what: str) -> None:
        """A new phase, then wait until every asker has finished a query begun in it (one
        at a time each: whatever it asked before has been answered by then)."""
        phase[0] += 1
        await until(lambda: min(finished) >= phase[0], what)

    async def scenario() -> list[str]:
        nonlocal done
        stale: list[str] = []
        await t.open()
        askers: list[asyncio.Task[None]] = []
        try:
            await push(t, base)
            current = base
            for i in range(RACE_ROUNDS):
                name = asking["name"] = f"chg{i}.example.test."
                askers = askers or [asyncio.create_task(ask_steadily(k)) for k in range(4)]
                await everyone_asked(f"{name} asked (NXDOMAIN) before the change")
                changed = with_rrsets(current, rr(f"chg{i}", 300, "A", "198.51.100.1"))
                plan = compute_plan(changed, current, target=t.name, owned=set(changed.rrsets))
                await t.apply(plan, None)
                await everyone_asked(f"{name}: the queries that raced the commit have ended")
                if pdns.query(name, "A", flags=0).rcode() != dns.rcode.NOERROR:
                    stale.append(name)
                current = changed
        finally:
            done = True
            await asyncio.gather(*askers, return_exceptions=True)
            await t.close()
        return stale

    assert run(scenario) == []


def test_a_zone_larger_than_one_request_is_staged_hidden_then_published(
    pdns: PdnsServer,
) -> None:
    """Created with its SOA disabled (pdns answers REFUSED, as before the zone existed),
    filled in batches, then published by one PATCH enabling the SOA, rectified in it."""
    desired = with_rrsets(
        example_zone(), *(rr(f"host{i}", 300, "A", f"192.0.2.{i}") for i in range(10))
    )
    assert len(desired) >= 50
    t = target(pdns, **{"batch-size": 7})
    assert t.capabilities.batch_size == 7
    served_at_each: list[tuple[str, bool]] = []
    send = t.api.request

    async def watched(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        soa = pdns.query("example.test.", "SOA", flags=0)
        served_at_each.append((method, soa.rcode() == dns.rcode.NOERROR))
        return await send(method, path, body, **kw)

    async def scenario() -> tuple[list[Any], ZoneData | None]:
        await t.open()
        try:
            with mock.patch.object(t.api, "request", side_effect=watched) as spy:
                await push(t, desired)
                calls = list(spy.call_args_list)
            return calls, await read_zone(t, ZONE)
        finally:
            await t.close()

    calls, again = run(scenario)
    writes = [c for c in calls if c.args[0] != "GET"]
    batches_ = -(-(len(desired) - 1) // 7)
    assert [c.args[0] for c in writes] == ["POST"] + ["PATCH"] * batches_ + ["PUT", "PATCH", "PUT"]
    post = json.loads(body_bytes(writes[0].args[2]))
    assert post["api_rectify"] is False
    assert [(r["type"], r["records"][0]["disabled"]) for r in post["rrsets"]] == [("SOA", True)]
    patches = [json.loads(body_bytes(c.args[2]))["rrsets"] for c in writes[1 : 1 + batches_]]
    assert max(map(len, patches)) == 7 and sum(map(len, patches)) == len(desired) - 1
    assert writes[-3].args[2] == {"api_rectify": True}
    assert [r["type"] for r in json.loads(body_bytes(writes[-2].args[2]))["rrsets"]] == ["SOA"]
    assert writes[-1].args[1] == "cache/flush?domain=example.test."
    # Not served at all until the publishing PATCH (every request above was preceded by an
    # SOA query, REFUSED and cached by pdns); served right after it: the query before the
    # final cache flush gets the SOA already.
    assert [served for _, served in served_at_each] == [False] * (len(calls) - 1) + [True]
    assert pdns.query("example.test.", "SOA", flags=0).rcode() == dns.rcode.NOERROR
    assert again is not None and compute_plan(desired, again, target="pdns").empty
    assert answer(pdns, "host9.example.test.", "A") == ["192.0.2.9"]
    _, zone = pdns.api("GET", f"zones/{zone_id(ZONE)}")
    assert zone["api_rectify"] is True
    # Rectified: the delegation is answered as a referral, without AA.
    referral = pdns.query("www.sub.example.test.", "A", flags=0)
    assert not referral.flags & dns.flags.AA and referral.authority, referral


def test_a_staging_cut_short_is_published_by_the_next_push(pdns: PdnsServer) -> None:
    """A push that stopped while the zone was hidden (here: pdns down at the publishing
    step) leaves nothing served; the next push, by a fresh target as after a restart,
    finds the zone without an SOA and publishes it whole."""
    desired = with_rrsets(
        example_zone(), *(rr(f"host{i}", 300, "A", f"192.0.2.{i}") for i in range(10))
    )
    first = target(pdns, **{"batch-size": 7})
    send = first.api.request

    async def down_at_publish(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if method == "PUT" and body == {"api_rectify": True}:
            raise TargetUnavailableError("pdns", "connection refused")
        return await send(method, path, body, **kw)

    async def cut_short() -> None:
        await first.open()
        try:
            with (
                mock.patch.object(first.api, "request", side_effect=down_at_publish),
                pytest.raises(TargetUnavailableError),
            ):
                await push(first, desired)
        finally:
            await first.close()

    run(cut_short)
    assert pdns.query("host9.example.test.", "A", flags=0).rcode() == dns.rcode.REFUSED
    calls, again = recorded_push(target(pdns, **{"batch-size": 7}), desired)
    assert [c.args[0] for c in calls if c.args[0] != "GET"][-3:] == ["PUT", "PATCH", "PUT"]
    assert again is not None and compute_plan(desired, again, target="pdns").empty
    assert answer(pdns, "host9.example.test.", "A") == ["192.0.2.9"]
    assert pdns.api("GET", f"zones/{zone_id(ZONE)}")[1]["api_rectify"] is True


def test_large_batches_are_split_below_the_body_limit(pdns: PdnsServer) -> None:
    """1,000 RRsets of 2 kB are over pdns's 2 MB body limit in one PATCH (HTTP 400): the
    target splits them by size as well as by count."""
    big = [
        rr(f"t{i}", 300, "TXT", *(f'"{c * 250}" "{c * 250}" "{c * 250}" "{i:0250d}"' for c in "ab"))
        for i in range(1000)
    ]
    desired = with_rrsets(example_zone(), *big)
    status, _ = pdns.api(
        "POST", "zones", {"name": "probe.test.", "kind": "Native", "nameservers": []}
    )
    assert status == 201
    too_big = [
        {**json.loads(rrset_json(r)), "name": r.name.to_text().replace("example", "probe")}
        for r in big
    ]
    status, body = pdns.api("PATCH", "zones/probe.test.", {"rrsets": too_big})
    assert status == 400, (status, body)

    calls, again = recorded_push(target(pdns), desired)
    writes = [c for c in calls if c.args[0] in ("POST", "PATCH")]
    assert len(writes) >= 2
    assert all(len(body_bytes(c.args[2])) < 1_600_000 for c in writes)
    assert again is not None and compute_plan(desired, again, target="pdns").empty


def test_foreign_records_are_reported_and_survive(pdns: PdnsServer) -> None:
    desired = example_zone()
    foreign = {
        "name": "by-hand.example.test.",
        "type": "TXT",
        "ttl": 60,
        "changetype": "REPLACE",
        "records": [{"content": '"added through the API"', "disabled": False}],
    }

    async def scenario() -> tuple[Any, Any]:
        t = target(pdns)
        await t.open()
        try:
            await push(t, desired)
            status, body = pdns.api("PATCH", f"zones/{zone_id(ZONE)}", {"rrsets": [foreign]})
            assert status == 204, body
            changed = with_rrsets(desired, rr("web", 600, "A", "192.0.2.81"))
            plan = await push(t, changed, owned=set(desired.rrsets))
            after = compute_plan(
                changed, await read_zone(t, ZONE), target="pdns", owned=set(changed.rrsets)
            )
            return plan, after
        finally:
            await t.close()

    plan, after = run(scenario)
    key = (dns.name.from_text("by-hand.example.test."), dns.rdatatype.TXT)
    assert plan.foreign == (key,) and key not in {c.key for c in plan.changes}
    assert after.foreign == (key,) and after.empty
    assert answer(pdns, "by-hand.example.test.", "TXT") == ['"added through the API"']


def test_soa_edit_api_is_turned_off_on_a_zone_made_by_hand(pdns: PdnsServer) -> None:
    """A zone created outside zonefan has SOA-EDIT-API DEFAULT, which would rewrite our
    serial on every PATCH: apply() turns it off."""
    status, body = pdns.api(
        "POST", "zones", {"name": "example.test.", "kind": "Native", "nameservers": []}
    )
    assert status == 201 and body["soa_edit_api"] == "DEFAULT", body
    desired = example_zone()

    async def scenario() -> Any:
        t = target(pdns, **{"batch-size": 5})
        await t.open()
        try:
            await push(t, desired)
            return compute_plan(desired, await read_zone(t, ZONE), target="pdns")
        finally:
            await t.close()

    after = run(scenario)
    assert after.empty, after.lines()
    assert pdns.query("example.test.", "SOA", flags=0).answer[0][0].serial == desired.serial


def test_a_secondary_zone_becomes_native_again(pdns: PdnsServer) -> None:
    """A zone left as a Slave (it was signed) is turned Native before records are written."""
    status, _ = pdns.api(
        "POST",
        "zones",
        {
            "name": "example.test.",
            "kind": "Slave",
            "masters": ["127.0.0.1:5300"],
            "nameservers": [],
        },
    )
    assert status == 201
    desired = example_zone()

    async def scenario() -> Any:
        t = target(pdns)
        await t.open()
        try:
            await push(t, desired)
            return compute_plan(desired, await read_zone(t, ZONE), target="pdns")
        finally:
            await t.close()

    after = run(scenario)
    assert after.empty, after.lines()
    _, zone = pdns.api("GET", f"zones/{zone_id(ZONE)}")
    assert zone["kind"] == "Native" and zone["masters"] == [], zone
    assert pdns.query("example.test.", "SOA", flags=0).answer[0][0].serial == desired.serial


def test_wrong_api_key_is_a_config_error_naming_the_key(pdns: PdnsServer) -> None:
    section = {"url": pdns.api_url, "api-key-env": KEY_ENV, **UNSIGNED}
    t = powerdns_from_config("pdns", section, TargetContext({}, None, {KEY_ENV: "wrong"}))
    with pytest.raises(SyncConfigError) as caught:
        run(t.open)
    assert caught.value.setting == "target.pdns.api-key-env"
    assert "rejected the API key" in str(caught.value)


def test_nothing_listening_is_a_config_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    section = {"url": url, "api-key-env": KEY_ENV, "timeout": 2, **UNSIGNED}
    t = powerdns_from_config("pdns", section, TargetContext({}, None, {KEY_ENV: "k"}))
    with pytest.raises(SyncConfigError) as caught:
        run(t.open)
    assert caught.value.setting == "target.pdns.url"
    assert "unreachable" in str(caught.value)


class PdnsWithout(PdnsServer):
    """pdns started without one of the settings a secondary of a signed zone needs."""

    def __init__(self, workdir: Path, setting: str) -> None:
        super().__init__(workdir)
        self.setting = setting

    def _prepare(self) -> None:
        super()._prepare()
        conf = self.workdir / "pdns.conf"
        text = conf.read_text(encoding="utf-8")
        assert f"{self.setting}=yes" in text
        conf.write_text(text.replace(f"{self.setting}=yes", f"{self.setting}=no"), encoding="utf-8")


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("secondary", "runs with secondary=no, so it would never transfer"),
        ("gsqlite3-dnssec", "gsqlite3-dnssec=no, so it would serve the signed zones"),
    ],
)
def test_a_server_that_cannot_be_a_signed_secondary_is_refused_at_open(
    tmp_path: Path, setting: str, says: str
) -> None:
    """Where signed zones would go to pdns as secondaries, a pdns without secondary=yes
    (it takes each zone and never transfers it) or without DNSSEC in its backend (it serves
    the zone without its NSEC proofs: see test_signed_zone_goes_to_pdns_as_a_tsig_secondary)
    stops the start; a target sending it no signed zone is fine."""
    with PdnsWithout(tmp_path / "pdns", setting) as pdns:
        ctx = TargetContext({}, Address("127.0.0.1", 53), {KEY_ENV: pdns.api_key})
        base = {"url": pdns.api_url, "api-key-env": KEY_ENV, "dns": f"127.0.0.1:{pdns.dns_port}"}

        async def opened(t: PowerDnsTarget | PowerDnsSecondaryTarget) -> None:
            try:
                await t.open()
            finally:
                await t.close()

        records = powerdns_from_config("pdns", base, ctx)
        secondary = powerdns_secondary_from_config("pdns", base, ctx)
        for t in (records, secondary):
            with pytest.raises(SyncConfigError, match=says) as caught:
                run(functools.partial(opened, t))
            assert caught.value.setting == "target.pdns.url"
            assert f"set {setting}=yes in its pdns.conf" in str(caught.value)
        unsigned_only = powerdns_from_config("pdns", {**base, **UNSIGNED}, ctx)
        run(functools.partial(opened, unsigned_only))


def test_pdns_stopped_after_open_is_target_unavailable(pdns: PdnsServer) -> None:
    desired = example_zone()

    async def scenario() -> None:
        t = target(pdns, timeout=2)
        await t.open()
        try:
            plan = compute_plan(desired, None, target="pdns")
            pdns.stop()
            await t.apply(plan, None)
        finally:
            await t.close()

    with pytest.raises(TargetUnavailableError) as caught:
        run(scenario)
    assert caught.value.transient


def test_rejected_content_is_a_target_rejected_error(pdns: PdnsServer) -> None:
    """pdns refuses a CNAME beside other data with 422 and its own error text."""
    desired = with_rrsets(example_zone(), rr("web", 300, "CNAME", "www.example.net."))

    async def scenario() -> None:
        t = target(pdns)
        await t.open()
        try:
            await push(t, desired)
        finally:
            await t.close()

    with pytest.raises(TargetRejectedError) as caught:
        run(scenario)
    assert "HTTP 422" in str(caught.value) and not caught.value.transient


def test_nameservers_from_config_or_the_apex(pdns: PdnsServer) -> None:
    async def scenario() -> tuple[list[dns.name.Name], list[dns.name.Name]]:
        t = target(pdns)
        fixed = target(pdns, nameservers=["a.ns.example.net.", "b.ns.example.net."])
        await t.open()
        try:
            await push(t, example_zone())
            return await t.nameservers(ZONE), await fixed.nameservers(ZONE)
        finally:
            await t.close()
            await fixed.close()

    read, fixed = run(scenario)
    assert [n.to_text() for n in read] == ["ns1.example.test.", "ns2.example.test."]
    assert [n.to_text() for n in fixed] == ["a.ns.example.net.", "b.ns.example.net."]


def test_signed_zone_goes_to_pdns_as_a_tsig_secondary(tmp_path: Path) -> None:
    (tmp_path / "primary").mkdir()
    db = example_store(tmp_path / "primary" / "z.db")
    config = tmp_path / "primary" / "zonefan.toml"
    config.write_text(
        f"""
[key.{TSIG_NAME}]
algorithm = "hmac-sha256"
secret = "{TSIG_SECRET}"

[[secondary]]
address = "127.0.0.1"
key = "{TSIG_NAME}"
""",
        encoding="utf-8",
    )
    config.chmod(0o600)  # it holds a secret: zonefan wants it private
    with Store(db) as store:
        serial = store.serial(ZONE)
    key = TsigKey(dns.name.from_text(TSIG_NAME), "hmac-sha256", base64.b64decode(TSIG_SECRET))
    with (
        ZonefanServer(
            tmp_path / "primary", db=db, probe_name="example.test.", config=config
        ) as primary,
        PdnsServer(tmp_path / "pdns") as pdns,
    ):
        ctx = TargetContext(
            {TSIG_NAME: key}, Address("127.0.0.1", primary.port), {KEY_ENV: pdns.api_key}
        )
        section = {
            "url": pdns.api_url,
            "api-key-env": KEY_ENV,
            "tsig-key": TSIG_NAME,
            "dns": f"127.0.0.1:{pdns.dns_port}",
        }

        async def scenario() -> tuple[bool, bool, int | None, list[dns.name.Name]]:
            records = powerdns_from_config("pdns", section, ctx)
            secondary = records.for_zone(True)
            assert isinstance(secondary, PowerDnsSecondaryTarget)
            assert secondary.capabilities.dnssec == DnssecMode.SECONDARY
            assert records.for_zone(False) is records
            await records.open()
            await secondary.open()
            try:
                created = await secondary.provision(ZONE)
                again = await secondary.provision(ZONE)
                await secondary.refresh(ZONE)
                seen = None
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    seen = await secondary.serial(ZONE)
                    if seen == serial:
                        break
                    await asyncio.sleep(0.1)
                return created, again, seen, await secondary.nameservers(ZONE)
            finally:
                await secondary.close()
                await records.close()

        created, again, seen, nameservers = run(scenario)
        assert (created, again) == (True, False)
        assert seen == serial, pdns.log_text()[-3000:]
        _, zone = pdns.api("GET", f"zones/{zone_id(ZONE)}")
        assert zone["kind"] == "Slave" and zone["masters"] == [f"127.0.0.1:{primary.port}"]
        assert zone["slave_tsig_key_ids"] == [f"{TSIG_NAME}."]
        assert [n.to_text() for n in nameservers] == ["ns1.example.test.", "ns2.example.test."]
        # An NXDOMAIN proof from pdns is the primary's: the same NSEC(3)s and RRSIGs.
        theirs = pdns.query("nothere.example.test.", "A", flags=0, want_dnssec=True)
        ours = primary.query("nothere.example.test.", "A", flags=0, want_dnssec=True)
        assert theirs.rcode() == ours.rcode() == dns.rcode.NXDOMAIN
        proof = {r.rdtype for r in theirs.authority}
        assert dns.rdatatype.RRSIG in proof and proof & {dns.rdatatype.NSEC, dns.rdatatype.NSEC3}
        assert _records(theirs.authority) == _records(ours.authority)


def test_secondary_fixes_a_zone_with_the_wrong_masters(pdns: PdnsServer) -> None:
    status, _ = pdns.api(
        "POST", "zones", {"name": "example.test.", "kind": "Native", "nameservers": []}
    )
    assert status == 201
    section = {"url": pdns.api_url, "api-key-env": KEY_ENV, "dns": f"127.0.0.1:{pdns.dns_port}"}
    ctx = TargetContext({}, Address("127.0.0.1", 5300), {KEY_ENV: pdns.api_key})
    t = powerdns_secondary_from_config("pdns", section, ctx)

    async def scenario() -> bool:
        await t.open()
        try:
            return await t.provision(ZONE)
        finally:
            await t.close()

    assert run(scenario) is False
    _, zone = pdns.api("GET", f"zones/{zone_id(ZONE)}")
    assert zone["kind"] == "Slave" and zone["masters"] == ["127.0.0.1:5300"]


def _records(section: list[dns.rrset.RRset]) -> set[tuple[str, int, str]]:
    return {(s.name.to_text(), int(s.rdtype), r.to_text()) for s in section for r in s}


# -- units -----------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None


def test_rendering_matches_what_pdns_prints() -> None:
    zone = example_zone()
    loc = zone.rrsets[(ZONE, dns.rdatatype.LOC)].rdatas[0]
    assert render(loc) == "52 22 23.000 N 4 53 32.000 E -2.00m 1.00m 10000.00m 10.00m"
    https = zone.rrsets[(ZONE, dns.rdatatype.HTTPS)].rdatas[0]
    assert render(https) == "1 . alpn=h3,h2 ipv4hint=192.0.2.1 ipv6hint=2001:db8::1"
    key = RRset.from_text("@", "DNSKEY", 300, ["257 3 13 " + "A" * 86 + "=="], ZONE).rdatas[0]
    assert " " not in render(key).split(" ", 3)[3]
    assert zone_id(dns.name.from_text("_tcp.Example.test.")) == "=5Ftcp.Example.test."
    assert zone_id(dns.name.root) == "=2E"


def test_batches_respect_count_and_bytes() -> None:
    items = ['{"n":"' + "x" * 100 + '"}' for _ in range(10)]
    assert [len(b) for b in batches(items, 4, 10_000)] == [4, 4, 2]
    assert [len(b) for b in batches(items, 100, 350)] == [3, 3, 3, 1]
    assert [len(b) for b in batches(['"' + "x" * 500 + '"'], 10, 100)] == [1]
    body = json.loads(rrsets_body(items[:2]))
    assert body == {"rrsets": [{"n": "x" * 100}] * 2}


def test_rrset_json_is_what_json_dumps_would_say() -> None:
    """The hand-written JSON parses to the documented fields, quoting included."""
    zone = example_zone()
    txt = RRset.from_text("q", "TXT", 60, ['"say \\"hi\\" \\\\ caf\\195\\169"'], ZONE)
    for rrset in [*zone, txt]:
        parsed = json.loads(rrset_json(rrset))
        assert parsed == {
            "name": rrset.name.to_text(),
            "type": dns.rdatatype.to_text(rrset.rdtype),
            "ttl": rrset.ttl,
            "changetype": "REPLACE",
            "records": [{"content": c} for c in contents(rrset)],
        }


def test_config_errors() -> None:
    ctx = TargetContext({}, None, {KEY_ENV: "k"})
    base = {"url": "http://127.0.0.1:8081", "api-key-env": KEY_ENV, **UNSIGNED}
    with pytest.raises(SyncConfigError) as caught:
        powerdns_from_config("p", {**base, "bogus": 1}, ctx)
    assert caught.value.setting == "target.p.bogus"
    assert "allowed:" in str(caught.value) and "batch-size" in str(caught.value)
    # Fields the engine handles pass.
    t = powerdns_from_config(
        "p",
        {**base, "type": "powerdns", "zones": ["a."], "drift": "1h", "max-change-share": 0.5},
        ctx,
    )
    assert t.capabilities.dnssec == DnssecMode.NONE
    assert t.capabilities.batch_size == DEFAULT_BATCH_SIZE
    with pytest.raises(SyncConfigError) as caught:
        powerdns_from_config("p", base, TargetContext({}, None, {}))
    assert caught.value.setting == "target.p.api-key-env"
    with pytest.raises(SyncConfigError) as caught:
        powerdns_from_config("p", {"api-key-env": KEY_ENV}, ctx)
    assert caught.value.setting == "target.p.url"
    for field, value in [
        ("url", "ftp://x"),
        ("batch-size", 0),
        ("rate-limit", -1),
        ("timeout", "soon"),
        ("signed-zones", "presigned"),
        ("nameservers", "ns1."),
        ("primary", "localhost"),
        ("dns", "127.0.0.1:99999"),
        ("tsig-key", "nokey"),
    ]:
        with pytest.raises(SyncConfigError) as caught:
            powerdns_from_config("p", {**base, field: value}, ctx)
        assert caught.value.setting == f"target.p.{field}", (field, caught.value)
    # A secondary needs the primary's address and pdns's DNS address.
    secondary = {"url": "http://127.0.0.1:8081", "api-key-env": KEY_ENV}
    with pytest.raises(SyncConfigError) as caught:
        powerdns_secondary_from_config("p", {**secondary, "dns": "127.0.0.1:53"}, ctx)
    assert caught.value.setting == "target.p.primary"
    with_primary = TargetContext({}, Address("127.0.0.1", 53), {KEY_ENV: "k"})
    with pytest.raises(SyncConfigError) as caught:
        powerdns_secondary_from_config("p", secondary, with_primary)
    assert caught.value.setting == "target.p.dns"
    assert str(caught.value).startswith("target.p.dns: required: where pdns answers DNS")
    for field, value in [("batch-size", 5), ("signed-zones", "refuse")]:
        with pytest.raises(SyncConfigError) as caught:
            powerdns_secondary_from_config(
                "p", {**secondary, "dns": "127.0.0.1:53", field: value}, with_primary
            )
        assert caught.value.setting == f"target.p.{field}"
        assert "unknown setting" in str(caught.value)
    # signed-zones = "secondary" (the default): the secondary mode's settings are required
    # when the config is loaded, before any zone is signed; "refuse" needs none of them.
    with pytest.raises(SyncConfigError) as caught:
        powerdns_from_config("p", secondary, with_primary)
    assert caught.value.setting == "target.p.dns"
    assert 'signed-zones = "refuse"' in str(caught.value)
    with pytest.raises(SyncConfigError) as caught:
        powerdns_from_config("p", {**secondary, "dns": "127.0.0.1:53"}, ctx)
    assert caught.value.setting == "target.p.primary"
    both = powerdns_from_config("p", {**secondary, "dns": "127.0.0.1:53"}, with_primary)
    assert isinstance(both.for_zone(True), PowerDnsSecondaryTarget)
    refusing = powerdns_from_config("p", base, ctx)
    assert refusing.for_zone(True) is refusing


def test_http_errors_map_to_target_errors() -> None:
    """429 with Retry-After, 5xx and other 4xx from a stand-in API on 127.0.0.1."""
    answers: dict[str, tuple[int, dict[str, str], str]] = {
        "busy": (429, {"Retry-After": "7"}, '{"error": "slow down"}'),
        "broken": (503, {}, '{"error": "backend down"}'),
        "bad": (422, {}, '{"error": "Name is out of zone"}'),
    }

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith("/servers/localhost"):
            return web.json_response({"id": "localhost"})
        status, headers, body = answers[request.match_info["zone"].split(".")[0]]
        assert "Expect" not in request.headers
        return web.Response(
            status=status, headers=headers, text=body, content_type="application/json"
        )

    async def scenario() -> list[Exception]:
        app = web.Application()
        app.router.add_get("/api/v1/servers/localhost", handler)
        app.router.add_get("/api/v1/servers/localhost/zones/{zone}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        ctx = TargetContext({}, None, {KEY_ENV: "k"})
        section = {"url": f"http://127.0.0.1:{port}", "api-key-env": KEY_ENV, **UNSIGNED}
        t = powerdns_from_config("p", section, ctx)
        errors: list[Exception] = []
        try:
            await t.open()
            # A 429 holds the whole account (7 s here): "busy" goes last, then one more
            # request finds the hold and is not sent.
            for name in ("broken", "bad", "busy", "bad"):
                try:
                    await read_zone(t, dns.name.from_text(f"{name}.test."))
                except Exception as exc:
                    errors.append(exc)
        finally:
            await t.close()
            await runner.cleanup()
        return errors

    broken, bad, busy, held = run(scenario)
    assert isinstance(busy, TargetRateLimitedError) and busy.retry_after == 7.0
    assert isinstance(held, TargetRateLimitedError) and "spent for 7 s more" in str(held)
    assert isinstance(broken, TargetUnavailableError) and "503" in str(broken)
    assert "backend down" in str(broken)
    assert isinstance(bad, TargetRejectedError) and "Name is out of zone" in str(bad)
    assert re.search(r"HTTP 422", str(bad))


def test_rate_limit_spaces_requests() -> None:
    ctx = TargetContext({}, None, {KEY_ENV: "k"})
    section = {"url": "http://127.0.0.1:1", "api-key-env": KEY_ENV, "rate-limit": 20, **UNSIGNED}
    t = powerdns_from_config("p", section, ctx)
    assert t.capabilities.rate_limit == 20.0

    # The account's bucket on a fake clock: its waits are recorded, not slept.
    clock = FakeClock(0.0)
    bucket = t.api.http.account._bucket
    bucket.clock, bucket.sleep, bucket._last = clock, clock.sleep, clock()

    async def scenario() -> None:
        for _ in range(5):
            await t.api.http.account.ready()

    run(scenario)
    assert clock.waits == [pytest.approx(0.05)] * 4  # the first goes at once, then one per 50 ms
