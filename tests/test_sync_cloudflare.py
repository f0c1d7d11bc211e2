"""The ``cloudflare`` target against the strict Cloudflare API emulator
(tests/emulators/cloudflare.py): the contract kit, the record codec for every type, pages,
batches within the plan's limit, the rate budget (429 with Retry-After on a fake clock),
server errors in the middle of a large push, DNSSEC settings read into the capabilities,
settings refused by name, and the emulator refusing wrong requests."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import aiohttp
import dns.name
import dns.rdatatype
import pytest

from sync.errors import (
    SyncConfigError,
    TargetRateLimitedError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import RRset, ZoneData
from sync.plan import Action, Change, Plan
from sync.providers import build_target
from sync.providers.capabilities import DnssecMode, Owner
from sync.providers.cloudflare import (
    CloudflareSettings,
    CloudflareTarget,
    cloudflare_from_config,
)
from sync.providers.http import Account
from sync.providers.testkit.contract import CHECKS, Contract, run_check
from sync.providers.testkit.faults import FaultProxy
from sync.settings import TargetContext
from tests.clock import FakeClock
from tests.emulators.cloudflare import CloudflareEmulator

TOKEN = "cf-token-" + "Zq8x" * 8  # distinctive: any appearance in a log is a leak
ACCOUNT = "0123456789abcdef0123456789abcdef"
ORIGIN = dns.name.from_text("example.test.")
KEY = "257 3 13 " + "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+"
KEY += "KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="


@pytest.fixture
def emulator() -> Iterator[CloudflareEmulator]:
    emu = CloudflareEmulator({TOKEN: ACCOUNT}).start()
    try:
        yield emu
    finally:
        emu.stop()


def make_target(
    endpoint: str,
    *,
    batch: int = 50,
    page: int = 40,
    account_id: str | None = ACCOUNT,
    zones: tuple[dns.name.Name, ...] = (),
    clock: FakeClock | None = None,
    token: str = TOKEN,
) -> CloudflareTarget:
    settings = CloudflareSettings(
        "cf", token, endpoint, account_id, batch_records=batch, page_size=page, zones=zones
    )
    if clock is None:
        return CloudflareTarget(settings)
    # Waits move the fake clock the emulator's rate window runs on: nothing sleeps.
    account = Account(None, clock=clock, sleep=clock.sleep)
    return CloudflareTarget(settings, account=account, sleep=clock.sleep)


def zone_text(text: str, origin: dns.name.Name = ORIGIN) -> ZoneData:
    soa = f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} 1 7200 3600 1209600 300\n"
    return ZoneData.from_text(soa + text, origin)


def hosts(n: int, origin: dns.name.Name = ORIGIN, ttl: int = 3600) -> ZoneData:
    return zone_text("".join(f"h{i} {ttl} IN A 192.0.2.{i % 250 + 1}\n" for i in range(n)), origin)


def plan_for(
    target: CloudflareTarget, current: ZoneData | None, desired: ZoneData, owned: bool = True
) -> Plan:
    """The changes that make ``current`` hold ``desired`` as the provider holds it (RRsets
    only at the target are deleted when ``owned``), in the engine's order."""
    want = target.normalize(desired).data.rrsets
    have = current.rrsets if current is not None else {}
    changes = [Change(Action.DELETE, r, None) for k, r in have.items() if k not in want and owned]
    changes += [
        Change(Action.UPDATE, have[k], r) for k, r in want.items() if k in have and have[k] != r
    ]
    changes += [Change(Action.CREATE, None, r) for k, r in want.items() if k not in have]
    return Plan(
        zone=desired.origin,
        target=target.name,
        serial=0,
        changes=tuple(changes),
        create_zone=current is None,
        desired=target.normalize(desired).data,
    )


async def push(target: CloudflareTarget, desired: ZoneData, owned: bool = True) -> Plan:
    """Read, plan and apply once; the plan applied."""
    held = await target.read(desired.origin)
    plan = plan_for(target, held.data if held else None, desired, owned)
    await target.apply(plan, held.state if held else None)
    return plan


async def converge(target: CloudflareTarget, desired: ZoneData, attempts: int = 6) -> list[str]:
    """Push until a push goes through (as the engine retries); the errors on the way."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            await push(target, desired)
            return errors
        except (TargetUnavailableError, TargetRateLimitedError) as exc:
            errors.append(str(exc))
    raise AssertionError(f"no convergence: {errors}")


async def fresh(emulator: CloudflareEmulator, zone: dns.name.Name = ORIGIN) -> ZoneData:
    target = make_target(emulator.url)
    try:
        held = await target.read(zone)
        assert held is not None
        return held.data
    finally:
        await target.close()


def assert_holds(target: CloudflareTarget, got: ZoneData, desired: ZoneData) -> None:
    want = target.normalize(desired).data.rrsets
    assert set(got.rrsets) == set(want), set(got.rrsets) ^ set(want)
    for key, rrset in want.items():
        assert got.rrsets[key] == rrset, f"{rrset!r} held as {got.rrsets[key]!r}"


# -- the contract kit ------------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
def test_contract(emulator: CloudflareEmulator, check: str) -> None:
    contract = Contract(
        make_target=make_target,
        upstream=emulator.url,
        zone=dns.name.from_text("contract.test."),
        secrets=[TOKEN],
        hosts=250,  # more than a page (40) and a batch (50)
        fault_method="POST",  # the batch writes: GETs are retried by the client itself
    )
    asyncio.run(run_check(contract, check))


# -- the record codec ------------------------------------------------------------------------

EVERY_TYPE = """
@ 300 IN A 192.0.2.1
@ 300 IN AAAA 2001:db8::1
@ 3600 IN MX 10 mail
@ 3600 IN MX 20 mail2.example.net.
@ 3600 IN TXT "v=spf1 -all"
@ 3600 IN TXT "two" "strings"
@ 3600 IN TXT ""
@ 3600 IN CAA 0 issue "letsencrypt.org"
@ 3600 IN CAA 128 iodef "mailto:sec@example.test"
@ 3600 IN HTTPS 1 . alpn="h3,h2" ipv4hint="192.0.2.1"
@ 3600 IN DNSKEY {key}
www 300 IN CNAME @
mail 3600 IN A 192.0.2.25
long 3600 IN TXT "{long_a}" "{long_b}"
quoted 3600 IN TXT "say \\"hi\\"; back\\\\slash" "caf\\195\\169"
_sip._tcp 3600 IN SRV 10 60 5060 sip
_sip._udp 3600 IN SRV 0 0 0 .
_ldap._tcp 3600 IN URI 10 1 "ldap://ldap.example.test/"
sub 3600 IN NS ns1.sub
sub 3600 IN DS 12345 13 2 3C5E0CD1AB54E1E1B7D2A4F8F5E08F5B3A6C1B63B8D3CB1E4D5F6A7B8C9D0E1F
ns1.sub 3600 IN A 192.0.2.53
_443._tcp 3600 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
smime 3600 IN SMIMEA 3 0 0 ab12cd34
host 3600 IN SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
svc 3600 IN SVCB 1 svc.example.net. port="8443"
sip 3600 IN NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp
cert 3600 IN CERT 1 12345 8 AQID
gpg 3600 IN OPENPGPKEY mQENBFVHm5sBCADRrR8dV1b5
1.2 3600 IN PTR host
""".format(long_a="a" * 255, long_b="b" * 45, key=KEY)


async def _every_type(emulator: CloudflareEmulator) -> None:
    emulator.add_zone("example.test").multi_signer = True
    target = make_target(emulator.url)
    desired = zone_text(EVERY_TYPE)
    try:
        plan = await push(target, desired)
        assert plan.count(Action.CREATE) == len(desired) - 1  # everything but the SOA
        got = await fresh(emulator)
        assert_holds(target, got, desired)
        # Read back and planned again: nothing to do.
        assert not plan_for(target, got, desired).changes
    finally:
        await target.close()


def test_every_type_round_trips(emulator: CloudflareEmulator) -> None:
    asyncio.run(_every_type(emulator))


def test_data_types_go_as_data_objects(emulator: CloudflareEmulator) -> None:
    """What the API holds: SRV and CAA as data objects, MX and URI with a priority, TXT
    as quoted strings, names without the final dot, nothing proxied."""
    asyncio.run(_every_type(emulator))
    zone = emulator.zone_named("example.test")
    assert zone is not None
    by = {(r["name"], r["type"], r["content"]): r for r in emulator.records(zone)}
    srv = by[("_sip._tcp.example.test", "SRV", "60 5060 sip.example.test")]
    assert srv["data"] == {
        "priority": 10,
        "weight": 60,
        "port": 5060,
        "target": "sip.example.test",
    }
    mx = by[("example.test", "MX", "mail.example.test")]
    assert mx["priority"] == 10
    assert by[("example.test", "CAA", '0 issue "letsencrypt.org"')]["data"]["tag"] == "issue"
    assert ("long.example.test", "TXT", f'"{"a" * 255}" "{"b" * 45}"') in by
    assert not any(r["proxied"] for r in by.values())


def test_ttls_are_moved_into_range_and_a_noop_plans_nothing(emulator: CloudflareEmulator) -> None:
    async def run() -> None:
        target = make_target(emulator.url)
        desired = zone_text(
            "short 5 IN A 192.0.2.1\nlong 604800 IN A 192.0.2.2\nok 60 IN A 192.0.2.3\n"
        )
        normalized = target.normalize(desired)
        assert {(a.key[0].to_text(), a.wanted, a.held) for a in normalized.ttls} == {
            ("short.example.test.", 5, 60),
            ("long.example.test.", 604800, 86400),
        }
        assert {k[1] for k in normalized.provider_owned} == {dns.rdatatype.SOA}
        try:
            await push(target, desired)
            got = await fresh(emulator)
            assert got.rrsets[(dns.name.from_text("short", ORIGIN), dns.rdatatype.A)].ttl == 60
            assert not plan_for(target, got, desired).changes
        finally:
            await target.close()

    asyncio.run(run())


def test_types_cloudflare_cannot_hold_are_left_out(emulator: CloudflareEmulator) -> None:
    target = make_target(emulator.url)
    desired = zone_text(
        "@ 3600 IN NS ns1.example.net.\n"
        "geo 3600 IN LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m\n"
        'old 3600 IN SPF "v=spf1 -all"\nok 3600 IN A 192.0.2.1\n'
    )
    normalized = target.normalize(desired)
    assert {dns.rdatatype.to_text(k[1]) for k in normalized.unsupported} == {"LOC", "SPF"}
    assert {dns.rdatatype.to_text(k[1]) for k in normalized.provider_owned} == {"SOA", "NS"}
    assert [dns.rdatatype.to_text(r.rdtype) for r in normalized.data] == ["A"]
    caps = target.capabilities
    assert caps.apex_soa is Owner.PROVIDER and caps.apex_ns is Owner.PROVIDER
    assert (caps.ttl_min, caps.ttl_max, caps.atomic) == (60, 86400, True)
    assert caps.budget is not None and (caps.budget.requests, caps.budget.per) == (1200, 300)


def test_data_the_api_cannot_carry_is_refused_before_anything_is_sent(
    emulator: CloudflareEmulator,
) -> None:
    emulator.add_zone("example.test")
    desired = zone_text('ok 3600 IN A 192.0.2.1\nbad 3600 IN CAA 0 issue "\\255"\n')

    async def run() -> None:
        target = make_target(emulator.url)
        try:
            with pytest.raises(TargetRejectedError, match=r"bad\.example\.test\. .*not UTF-8"):
                await push(target, desired)
        finally:
            await target.close()

    asyncio.run(run())
    assert emulator.committed == []


# -- changes, pages, batches -----------------------------------------------------------------


def test_change_keeps_ids_of_records_that_stay(emulator: CloudflareEmulator) -> None:
    """An RRset update deletes the rdatas gone, posts the new ones and leaves the rest
    alone (same record id), in one batch; a TTL change patches the records in place."""

    async def run() -> None:
        target = make_target(emulator.url)
        try:
            await push(target, zone_text("www 300 IN A 192.0.2.1\nwww 300 IN A 192.0.2.2\n"))
            zone = emulator.zone_named("example.test")
            assert zone is not None
            before = {r["content"]: r["id"] for r in emulator.records(zone)}
            writes = len(emulator.committed)
            await push(target, zone_text("www 300 IN A 192.0.2.2\nwww 300 IN A 192.0.2.3\n"))
            after = {r["content"]: r["id"] for r in emulator.records(zone)}
            assert set(after) == {"192.0.2.2", "192.0.2.3"}
            assert after["192.0.2.2"] == before["192.0.2.2"]
            assert len(emulator.committed) == writes + 1  # one batch
            await push(target, zone_text("www 900 IN A 192.0.2.2\nwww 900 IN A 192.0.2.3\n"))
            last = emulator.committed[-1]
            assert [len(last["patches"]), len(last["posts"]), len(last["deletes"])] == [2, 0, 0]
            assert {r["id"] for r in emulator.records(zone)} == set(after.values())
            assert_holds(
                target,
                await fresh(emulator),
                zone_text("www 900 IN A 192.0.2.2\nwww 900 IN A 192.0.2.3\n"),
            )
            await push(target, zone_text(""))
            assert emulator.records(zone) == []
        finally:
            await target.close()

    asyncio.run(run())


def test_what_apply_returns_is_what_a_read_would_give(emulator: CloudflareEmulator) -> None:
    """The held zone and record ids apply returns (learnt from the batch answers) carry the
    next push without a read: its deletes name the records the first push made."""

    async def run() -> None:
        emulator.add_zone("example.test")
        emulator.add_record(
            emulator.zone_named("example.test"),  # type: ignore[arg-type]
            {"name": "theirs", "type": "TXT", "content": '"foreign"', "ttl": 300},
        )
        target = make_target(emulator.url, batch=7)
        v1 = zone_text('a 300 IN A 192.0.2.1\nb 300 IN TXT "x"\nc 300 IN MX 10 a\n')
        v2 = zone_text("a 300 IN A 192.0.2.2\nc 600 IN MX 10 a\nd 300 IN AAAA 2001:db8::d\n")
        try:
            held = await target.read(ORIGIN)
            assert held is not None
            first = await target.apply(plan_for(target, held.data, v1, owned=False), held.state)
            assert first is not None
            read = await target.read(ORIGIN)
            assert read is not None and first.data.rrsets == read.data.rrsets
            assert first.state.ids == read.state.ids
            plan = plan_for(target, first.data, v2, owned=False)
            plan = dataclasses.replace(
                plan,
                changes=(
                    *plan.changes,
                    Change(Action.DELETE, first.data.rrsets[_key("b", "TXT")], None),
                ),
            )
            second = await target.apply(plan, first.state)
        finally:
            await target.close()
        assert second is not None
        got = await fresh(emulator)
        assert got.rrsets == second.data.rrsets
        assert _key("theirs", "TXT") in got.rrsets and _key("b", "TXT") not in got.rrsets
        assert got.rrsets[_key("c", "MX")].ttl == 600

    asyncio.run(run())


def _key(owner: str, rdtype: str) -> tuple[dns.name.Name, dns.rdatatype.RdataType]:
    return dns.name.from_text(owner, ORIGIN), dns.rdatatype.from_text(rdtype)


def test_pages_are_all_read(emulator: CloudflareEmulator) -> None:
    async def run() -> None:
        zone = emulator.add_zone("example.test")
        for i in range(130):
            emulator.add_record(
                zone, {"name": f"h{i}", "type": "A", "content": "192.0.2.7", "ttl": 120}
            )
        target = make_target(emulator.url, page=25)
        try:
            held = await target.read(ORIGIN)
        finally:
            await target.close()
        assert held is not None and len(held.data) == 130
        pages = [p for m, p, _ in emulator.requests if m == "GET" and "dns_records" in p]
        assert len(pages) == 6 and all("per_page=25" in p for p in pages)
        assert [p.rsplit("page=", 1)[1].split("&")[0] for p in pages] == [
            str(i) for i in range(1, 7)
        ]

    asyncio.run(run())


def test_batches_stay_within_the_plan_limit(emulator: CloudflareEmulator) -> None:
    async def run() -> None:
        target = make_target(emulator.url, batch=200)
        desired = hosts(450)
        try:
            await push(target, desired)
        finally:
            await target.close()
        sizes = [len(b["posts"]) for b in emulator.committed if "posts" in b]
        assert sizes == [200, 200, 50]
        assert_holds(target, await fresh(emulator), desired)

    asyncio.run(run())


def test_an_rrset_larger_than_a_batch_is_split_deletes_first(
    emulator: CloudflareEmulator,
) -> None:
    def big(net: str) -> ZoneData:
        return zone_text("".join(f"many 300 IN A {net}.{i}\n" for i in range(1, 121)))

    async def run() -> None:
        target = make_target(emulator.url, batch=50)
        try:
            await push(target, big("192.0.2"))
            first = len(emulator.committed)
            await push(target, big("198.51.100"))
        finally:
            await target.close()
        shapes = [
            (len(b.get("deletes", [])), len(b.get("posts", []))) for b in emulator.committed[first:]
        ]
        assert shapes == [(50, 0), (50, 0), (20, 30), (0, 50), (0, 40)]
        assert_holds(target, await fresh(emulator), big("198.51.100"))

    asyncio.run(run())


def test_a_batch_over_the_zone_plan_limit_is_refused_with_its_message(
    emulator: CloudflareEmulator,
) -> None:
    """A target configured for a larger plan than the zone has: the API's refusal reaches
    the user with its code, and nothing of the batch is applied."""

    async def run() -> None:
        zone = emulator.add_zone("example.test")
        target = make_target(emulator.url, batch=300)
        try:
            with pytest.raises(TargetRejectedError) as err:
                await push(target, hosts(250))
        finally:
            await target.close()
        assert "exceeds the zone plan's limit of 200" in str(err.value)
        assert "HTTP 400" in str(err.value)
        assert emulator.records(zone) == []

    asyncio.run(run())


# -- faults: 429, 5xx ------------------------------------------------------------------------


def test_rate_budget_is_waited_out_on_the_fake_clock(emulator: CloudflareEmulator) -> None:
    """The emulator's budget of 12 requests per 4 s runs out again and again during a large
    push; the `Ratelimit: ...;r=0;t=S` header of the answer that spends it holds the account
    for S s (on the fake clock), so no request is refused with a 429, and the push completes
    with every record once."""
    clock = FakeClock(1_000_000.0)
    emulator.clock = clock
    emulator.rate_requests, emulator.rate_per = 12, 4.0
    start = clock()

    async def run() -> None:
        target = make_target(emulator.url, batch=5, clock=clock)
        try:
            await push(target, hosts(300))
        finally:
            await target.close()

    asyncio.run(run())
    limited = [r for r in emulator.requests if r[2] == 429]
    answered = len(emulator.requests) - len(limited)
    assert answered > 60  # 60 batches of 5 and the reads
    assert limited == []
    # Each window of 12 is waited out to its end (4 s, no more) before the next request.
    assert clock() - start == 4 * ((answered - 1) // 12)
    zone = emulator.zone_named("example.test")
    assert zone is not None
    records = emulator.records(zone)
    assert len(records) == 300 == len({r["name"] for r in records})


def test_a_long_retry_after_goes_to_the_engine(emulator: CloudflareEmulator) -> None:
    """Past the client's own short waits, the 429 is the engine's: TargetRateLimitedError
    with the API's Retry-After, so the engine holds the target instead of a task."""
    clock = FakeClock(1_000_000.0)
    emulator.clock = clock
    emulator.rate_requests = 3  # per the documented 300 s

    async def run() -> None:
        target = make_target(emulator.url, clock=clock)
        try:
            with pytest.raises(TargetRateLimitedError) as err:
                await push(target, hosts(5))
        finally:
            await target.close()
        # The third answer spent the budget: the fourth request is not sent at all.
        assert err.value.retry_after == 300
        assert "request budget is spent for 300 s more" in str(err.value)
        assert [r for r in emulator.requests if r[2] == 429] == []

    asyncio.run(run())


def test_server_error_after_commit_applies_nothing_twice(emulator: CloudflareEmulator) -> None:
    """The worst 5xx: the batch was committed but the answer lost. The POST is not sent
    again; a new read sees what was applied, and the next push sends only the rest."""

    async def run() -> None:
        emulator.add_zone("example.test")
        target = make_target(emulator.url, batch=50)
        desired = hosts(220)
        emulator.fail_after_commit = 1
        try:
            errors = await converge(target, desired)
        finally:
            await target.close()
        assert len(errors) == 1 and "HTTP 500" in errors[0]
        zone = emulator.zone_named("example.test")
        assert zone is not None
        posted = sum(len(b.get("posts", [])) for b in emulator.committed if isinstance(b, dict))
        assert posted == 220  # every record posted exactly once
        assert len(emulator.records(zone)) == 220
        assert_holds(target, await fresh(emulator), desired)

    asyncio.run(run())


def test_storm_of_429_and_5xx_through_the_proxy_converges(emulator: CloudflareEmulator) -> None:
    proxy = FaultProxy(emulator.url).start()
    try:

        async def run() -> None:
            emulator.add_zone("example.test")
            target = make_target(proxy.url, batch=25)
            desired = hosts(300)
            proxy.inject("429", count=5, retry_after=0, method="POST", after=2)
            proxy.inject("500", count=1, method="POST", after=3)
            proxy.inject("down", count=1, method="GET", after=1)
            try:
                errors = await converge(target, desired)
                v2 = zone_text(
                    "".join(f"h{i} 3600 IN A 198.51.100.{i % 250 + 1}\n" for i in range(0, 300, 2))
                )
                proxy.inject("500", count=2, method="POST", after=1)
                errors += await converge(target, v2)
            finally:
                await target.close()
            assert any("HTTP 500" in e for e in errors)
            assert_holds(target, await fresh(emulator), v2)

        asyncio.run(run())
    finally:
        proxy.stop()
    assert any(status == 0 for _, _, status in proxy.log)


# -- credentials, DNSSEC, zones, settings ----------------------------------------------------


def test_credentials_never_logged(emulator: CloudflareEmulator, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)

    async def run() -> None:
        good = make_target(emulator.url)
        bad = make_target(emulator.url, token=TOKEN[::-1])
        try:
            await push(good, hosts(3))
            with pytest.raises(TargetRejectedError) as err:
                await bad.read(ORIGIN)
        finally:
            await good.close()
            await bad.close()
        text = str(err.value)
        assert "Authentication error (code 10000)" in text and "check the credentials" in text
        assert TOKEN[::-1] not in text
        bad = make_target(emulator.url, token=TOKEN[::-1])
        try:
            with pytest.raises(TargetRejectedError, match="check the credentials"):
                await bad.open()  # the token is checked at start
        finally:
            await bad.close()

    asyncio.run(run())
    assert any("dns_records" in r.getMessage() for r in caplog.records)
    assert not [
        r for r in caplog.records if TOKEN in r.getMessage() or TOKEN[::-1] in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("status", "multi", "mode"),
    [
        ("active", True, DnssecMode.MULTI_SIGNER),
        ("active", False, DnssecMode.SELF_SIGNING),
        ("disabled", False, DnssecMode.NONE),
    ],
)
def test_dnssec_settings_become_the_capability(
    emulator: CloudflareEmulator, status: str, multi: bool, mode: DnssecMode
) -> None:
    zone = emulator.add_zone("example.test")
    zone.dnssec_status, zone.multi_signer = status, multi
    emulator.add_zone("absent-yet.test")  # configured zones not there yet are skipped

    async def run() -> None:
        target = make_target(emulator.url, zones=(ORIGIN, dns.name.from_text("missing.test.")))
        try:
            await target.open()
            assert target.capabilities.dnssec is mode
        finally:
            await target.close()

    asyncio.run(run())


def test_foreign_dnskey_needs_multi_signer(emulator: CloudflareEmulator) -> None:
    emulator.add_zone("example.test")
    desired = zone_text(f"@ 3600 IN DNSKEY {KEY}\n")

    async def run() -> None:
        target = make_target(emulator.url)
        try:
            with pytest.raises(TargetRejectedError, match="multi-signer"):
                await push(target, desired)
        finally:
            await target.close()

    asyncio.run(run())


def test_nameservers_are_the_zones_assigned_ones(emulator: CloudflareEmulator) -> None:
    emulator.add_zone("example.test")

    async def run() -> list[dns.name.Name]:
        target = make_target(emulator.url)
        try:
            return await target.nameservers(ORIGIN)
        finally:
            await target.close()

    names = asyncio.run(run())
    assert [n.to_text() for n in names] == ["ada.ns.cloudflare.com.", "bob.ns.cloudflare.com."]


def test_a_missing_zone_without_account_id_is_refused_by_name(
    emulator: CloudflareEmulator,
) -> None:
    async def run() -> None:
        target = make_target(emulator.url, account_id=None)
        try:
            assert await target.read(ORIGIN) is None
            with pytest.raises(TargetRejectedError, match=r"target\.cf\.account-id"):
                await push(target, hosts(2))
        finally:
            await target.close()

    asyncio.run(run())
    assert emulator.zones == {}


def _ctx(env: dict[str, str] | None = None) -> TargetContext:
    return TargetContext(keys={}, primary=None, env=env or {"CF_TOKEN": TOKEN})


def test_settings_from_config() -> None:
    target = build_target(
        "cf",
        {
            "type": "cloudflare",
            "api-token-env": "CF_TOKEN",
            "account-id": ACCOUNT,
            "batch-records": 3500,
            "zones": ["example.test"],
        },
        _ctx(),
    )
    assert isinstance(target, CloudflareTarget)
    assert target.settings.endpoint == "https://api.cloudflare.com/client/v4"
    assert target.settings.token == TOKEN
    assert target.capabilities.batch_records == 3500


@pytest.mark.parametrize(
    ("extra", "key", "why"),
    [
        ({"api-tokn-env": "CF_TOKEN"}, "target.cf.api-tokn-env", "unknown setting"),
        ({"endpoint": "ftp://x"}, "target.cf.endpoint", "base URL"),
        ({"endpoint": "http://127.0.0.1:99999"}, "target.cf.endpoint", "bad port"),
        ({"batch-records": 5000}, "target.cf.batch-records", "at most 3500"),
        ({"batch-records": 0}, "target.cf.batch-records", "positive integer"),
        ({"page-size": "big"}, "target.cf.page-size", "positive integer"),
        ({"account-id": "not/an/id"}, "target.cf.account-id", "32-character id"),
    ],
)
def test_bad_settings_are_refused_by_name(extra: dict[str, Any], key: str, why: str) -> None:
    section = {"type": "cloudflare", "api-token-env": "CF_TOKEN", **extra}
    with pytest.raises(SyncConfigError) as err:
        cloudflare_from_config("cf", section, _ctx())
    assert err.value.setting == key and why in str(err.value)


def test_a_missing_token_is_refused_by_name() -> None:
    with pytest.raises(SyncConfigError) as err:
        cloudflare_from_config("cf", {"type": "cloudflare"}, _ctx())
    assert "api-token" in err.value.setting
    with pytest.raises(SyncConfigError) as err:
        cloudflare_from_config("cf", {"type": "cloudflare", "api-token-env": "NOPE"}, _ctx())
    assert "api-token-env" in err.value.setting and TOKEN not in str(err.value)


# -- the emulator refuses wrong requests -----------------------------------------------------


async def _call(
    emulator: CloudflareEmulator,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = TOKEN,
    params: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, emulator.url + path, json=body, headers=headers, params=params
        ) as resp,
    ):
        return resp.status, await resp.json(), dict(resp.headers)


async def _raw_post(emulator: CloudflareEmulator, path: str, body: bytes) -> tuple[int, Any]:
    """A body sent without ``Content-Type: application/json``."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.url + path, data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


def _code(answer: Any) -> int:
    assert answer["success"] is False and answer["result"] is None and answer["messages"] == []
    return int(answer["errors"][0]["code"])


A = {"name": "www.example.test", "type": "A", "content": "192.0.2.1", "ttl": 300}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({**A, "ttl": 30}, 9021, "between 60 and 86400"),
        ({**A, "ttl": 100000}, 9021, "between 60 and 86400"),
        ({**A, "content": "192.0.2"}, 9005, "valid IPv4"),
        ({**A, "type": "SOA"}, 1004, "type"),
        ({**A, "type": "LOC"}, 1004, "type"),
        ({**A, "proxy": False}, 1004, "Unknown field 'proxy'"),
        (
            {"name": "mx.example.test", "type": "MX", "content": "mail.example.test"},
            1004,
            "priority",
        ),
        (
            {
                "name": "x.example.test",
                "type": "MX",
                "content": "m",
                "priority": 10,
                "proxied": True,
            },
            9004,
            "cannot be proxied",
        ),
        ({"name": "c.example.test", "type": "CAA", "content": '0 issue "x"'}, 1004, "data"),
        (
            {
                "name": "s.example.test",
                "type": "SRV",
                "data": {"priority": 1, "weight": 1, "port": 1},
            },
            1004,
            "data.target",
        ),
        (
            {
                "name": "s.example.test",
                "type": "SRV",
                "data": {"priority": 1, "weight": 1, "port": 70000, "target": "x"},
            },
            1004,
            "0 to 65535",
        ),
        ({"name": "t.example.test", "type": "TXT", "content": '"unterminated'}, 1004, "quoted"),
        ({"name": "tést.example.test", "type": "A", "content": "192.0.2.1"}, 1004, "Punycode"),
        (
            {
                "name": "k.example.test",
                "type": "DNSKEY",
                "data": {"flags": 257, "protocol": 3, "algorithm": 13, "public_key": "AQID"},
            },
            1004,
            "multi-signer",
        ),
    ],
)
def test_emulator_refuses_bad_records(
    emulator: CloudflareEmulator, body: dict[str, Any], code: int, words: str
) -> None:
    zone = emulator.add_zone("example.test")
    status, answer, _ = asyncio.run(_call(emulator, "POST", f"/zones/{zone.id}/dns_records", body))
    assert (status, _code(answer)) == (400, code)
    assert words in answer["errors"][0]["message"] + str(answer["errors"][0].get("error_chain"))
    assert emulator.records(zone) == []


def test_emulator_auth() -> None:
    emulator = CloudflareEmulator({TOKEN: ACCOUNT}).start()
    try:
        status, answer, _ = asyncio.run(_call(emulator, "GET", "/zones", token=None))
        assert (status, _code(answer)) == (400, 6003)
        assert answer["errors"][0]["error_chain"][0]["message"] == (
            "Invalid format for Authorization header"
        )
        assert answer["errors"][0]["error_chain"][0]["code"] == 6111
        status, answer, _ = asyncio.run(_call(emulator, "GET", "/zones", token="wrong"))
        assert (status, _code(answer)) == (403, 10000)
        status, answer = asyncio.run(_raw_post(emulator, "/zones", b'{"name": "x.test"}'))
        assert (status, _code(answer)) == (400, 6003)
        assert answer["errors"][0]["error_chain"][0]["code"] == 6105
        # A zone of another account is not found, not shown.
        other = emulator.add_zone("other.test", account_id="f" * 32)
        status, answer, _ = asyncio.run(_call(emulator, "GET", f"/zones/{other.id}/dns_records"))
        assert (status, _code(answer)) == (400, 7003)
    finally:
        emulator.stop()


def test_emulator_batch_is_one_transaction(emulator: CloudflareEmulator) -> None:
    zone = emulator.add_zone("example.test")
    kept = emulator.add_record(zone, A)
    path = f"/zones/{zone.id}/dns_records/batch"

    def batch(body: Any) -> tuple[int, Any]:
        status, answer, _ = asyncio.run(_call(emulator, "POST", path, body))
        return status, answer

    # A valid delete, then a bad post: nothing happens.
    status, answer = batch({"deletes": [{"id": kept["id"]}], "posts": [{**A, "ttl": 5}]})
    assert (status, _code(answer)) == (400, 9021) and "posts[0]" in answer["errors"][0]["message"]
    assert [r["id"] for r in emulator.records(zone)] == [kept["id"]]
    # Deletes run before posts: the same record deleted and posted again is fine, and an
    # A beside a CNAME only works because the delete came first.
    cname = {"name": "www.example.test", "type": "CNAME", "content": "example.test", "ttl": 300}
    status, answer = batch({"posts": [cname], "deletes": [{"id": kept["id"]}]})
    assert status == 200 and answer["result"]["posts"][0]["type"] == "CNAME"
    # CNAME conflicts, identical records, unknown ids, unknown keys, an id on a post.
    status, answer = batch({"posts": [A]})
    assert (status, _code(answer)) == (400, 81053)
    txt = {"name": "t.example.test", "type": "TXT", "content": '"x"', "ttl": 300}
    status, answer = batch({"posts": [txt, txt]})
    assert (status, _code(answer)) == (400, 81058)
    status, answer = batch({"deletes": [{"id": "0" * 32}]})
    assert (status, _code(answer)) == (404, 81044)
    status, answer = batch({"creates": [txt]})
    assert (status, _code(answer)) == (400, 1004)
    status, answer = batch({"posts": [{**txt, "id": "1" * 32}]})
    assert (status, _code(answer)) == (400, 1004)
    status, answer = batch({"patches": [{"ttl": 600}]})
    assert (status, _code(answer)) == (400, 1004)
    status, answer = batch({"posts": [{**txt, "name": f"t{i}.example.test"} for i in range(201)]})
    assert (status, _code(answer)) == (400, 81085)
    assert len(emulator.records(zone)) == 1


def test_emulator_pages_and_limits(emulator: CloudflareEmulator) -> None:
    zone = emulator.add_zone("example.test")
    for i in range(7):
        emulator.add_record(zone, {**A, "name": f"h{i}"})
    path = f"/zones/{zone.id}/dns_records"
    status, answer, _ = asyncio.run(
        _call(emulator, "GET", path, params={"per_page": "3", "page": "3"})
    )
    assert status == 200 and answer["result_info"] == {
        "page": 3,
        "per_page": 3,
        "count": 1,
        "total_count": 7,
        "total_pages": 3,
    }
    emulator.max_per_page = 5
    status, answer, _ = asyncio.run(_call(emulator, "GET", path, params={"per_page": "6"}))
    assert (status, _code(answer)) == (400, 1001)
    status, answer, _ = asyncio.run(_call(emulator, "GET", "/zones", params={"per_page": "100"}))
    assert (status, _code(answer)) == (400, 1001)  # List Zones: at most 50


def test_emulator_rate_limit_answers_429_with_retry_after(emulator: CloudflareEmulator) -> None:
    clock = FakeClock(1_000_000.0)
    emulator.clock, emulator.rate_requests = clock, 2
    answers = [asyncio.run(_call(emulator, "GET", "/zones")) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[1][2]["Ratelimit"] == '"default";r=0;t=300'
    assert answers[2][2]["Retry-After"] == "300" and _code(answers[2][1]) == 971
    clock.advance(120)
    assert asyncio.run(_call(emulator, "GET", "/zones"))[2]["Retry-After"] == "180"
    clock.advance(180)
    assert asyncio.run(_call(emulator, "GET", "/zones"))[0] == 200


def test_emulator_keeps_soa_and_ns_its_own(emulator: CloudflareEmulator) -> None:
    zone = emulator.add_zone("example.test")
    status, answer, _ = asyncio.run(_call(emulator, "GET", f"/zones/{zone.id}/dns_settings"))
    assert status == 200 and answer["result"]["soa"]["mname"] == "ada.ns.cloudflare.com"
    status, answer, _ = asyncio.run(_call(emulator, "GET", f"/zones/{zone.id}"))
    assert answer["result"]["name_servers"] == ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]
    status, answer, _ = asyncio.run(_call(emulator, "GET", f"/zones/{zone.id}/dns_records"))
    assert answer["result"] == []
    soa = {"name": "example.test", "type": "SOA", "content": "a b 1 2 3 4 5", "ttl": 3600}
    status, answer, _ = asyncio.run(_call(emulator, "POST", f"/zones/{zone.id}/dns_records", soa))
    assert status == 400


def test_emulator_normalizes_names_and_txt(emulator: CloudflareEmulator) -> None:
    zone = emulator.add_zone("example.test")
    long = "x" * 300
    record = emulator.add_record(zone, {"name": "WWW", "type": "TXT", "content": long, "ttl": 1})
    assert record["name"] == "www.example.test"
    assert record["content"] == f'"{"x" * 255}" "{"x" * 45}"'
    apex = emulator.add_record(zone, {"name": "@", "type": "A", "content": "192.0.2.9"})
    assert apex["name"] == "example.test" and apex["ttl"] == 1

    async def run() -> ZoneData:
        return await fresh(emulator)

    got = asyncio.run(run())
    www = got.rrsets[(dns.name.from_text("www", ORIGIN), dns.rdatatype.TXT)]
    assert www.ttl == 300  # automatic
    assert www == RRset.from_text("www", "TXT", 300, [f'"{"x" * 255}" "{"x" * 45}"'], ORIGIN)
