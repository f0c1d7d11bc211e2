"""The ``hetzner`` target against a strict emulator of the Hetzner Cloud API's DNS
(tests/emulators/hetzner.py): the emulator refusing what the reference does not allow, the
codec, the target's pushes, rate limits and failures, and the settings."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.name
import dns.rdatatype
import pytest

from sync.engine import SyncEngine, TargetSpec
from sync.errors import CapabilityError, SyncConfigError, TargetError, TargetRejectedError
from sync.model import RRset, RRsetKey, ZoneData
from sync.plan import Plan, compute_plan
from sync.providers import build_target, registered
from sync.providers.hetzner import (
    CAPABILITIES,
    DEFAULT_ENDPOINT,
    HetznerSettings,
    HetznerTarget,
    decode_rrset,
    error_text,
    hetzner_from_config,
    parse_settings,
    rrset_body,
    rrset_name,
    zone_name,
)
from sync.providers.http import Account, Response
from sync.providers.testkit.contract import CHECKS, Contract, run_check
from sync.settings import TargetContext
from sync.state import SyncState
from tests.clock import FakeClock
from tests.emulators.hetzner import ASSIGNED_NAMESERVERS, HetznerEmulator, check_records

TOKEN = "hz-secret-token-7f3a9c"


@pytest.fixture
def emulator() -> Iterator[HetznerEmulator]:
    emu = HetznerEmulator(token=TOKEN).start()
    try:
        yield emu
    finally:
        emu.stop()


async def call(
    emu: HetznerEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str = TOKEN,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            emu.url + path,
            json=body if raw is None else None,
            data=raw,
            headers=headers,
        ) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


def error_of(payload: Any) -> tuple[str, str]:
    error = payload["error"]
    assert set(error) == {"code", "message", "details"}
    return error["code"], error["message"]


# -- the emulator refuses what the reference does not allow ----------------------------------


async def test_emulator_requires_the_bearer_token(emulator: HetznerEmulator) -> None:
    status, payload, _ = await call(emulator, "GET", "/zones", token="wrong")
    assert status == 401
    assert error_of(payload)[0] == "unauthorized"
    status, payload, _ = await call(emulator, "GET", "/zones")
    assert status == 200
    assert payload["zones"] == []


async def test_emulator_creates_a_zone_with_its_own_soa_and_ns(emulator: HetznerEmulator) -> None:
    status, payload, _ = await call(
        emulator,
        "POST",
        "/zones",
        {
            "name": "example.com",
            "mode": "primary",
            "rrsets": [
                {"name": "www", "type": "A", "ttl": 300, "records": [{"value": "192.0.2.1"}]}
            ],
        },
    )
    assert status == 201, payload
    assert payload["action"]["command"] == "create_zone"
    zone_id = payload["zone"]["id"]
    status, payload, _ = await call(emulator, "GET", f"/zones/{zone_id}/rrsets")
    ids = sorted(r["id"] for r in payload["rrsets"])
    assert ids == ["@/NS", "@/SOA", "www/A"]
    status, payload, _ = await call(
        emulator, "POST", "/zones", {"name": "example.com", "mode": "primary"}
    )
    assert status == 409 and error_of(payload)[0] == "uniqueness_error"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "WWW", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www.example.com", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www.", "type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
        ({"name": "www", "type": "SPF", "records": [{"value": '"v=spf1"'}]}, "type"),
        ({"name": "@", "type": "SOA", "records": [{"value": "a. b. 1 2 3 4 5"}]}, "type"),
        ({"name": "www", "type": "A", "ttl": 30, "records": [{"value": "192.0.2.1"}]}, "ttl"),
        ({"name": "www", "type": "A", "records": []}, "records"),
        (
            {
                "name": "www",
                "type": "A",
                "records": [{"value": "192.0.2.1"}, {"value": "192.0.2.1"}],
            },
            "records",
        ),
        (
            {"name": "www", "type": "A", "records": [{"value": "not-an-address"}]},
            "records[0].value",
        ),
        ({"name": "t", "type": "TXT", "records": [{"value": "unquoted text"}]}, "records[0].value"),
        (
            {"name": "t", "type": "TXT", "records": [{"value": '"' + "x" * 256 + '"'}]},
            "records[0].value",
        ),
        (
            {"name": "m", "type": "MX", "records": [{"value": "10 mail.example.com"}]},
            "records[0].value",
        ),
        ({"name": "www", "type": "A", "records": [{"value": "192.0.2.1"}], "prio": 1}, "prio"),
        (
            {"name": "www", "type": "A", "records": [{"value": "192.0.2.1", "id": 1}]},
            "records[0].id",
        ),
        ({"type": "A", "records": [{"value": "192.0.2.1"}]}, "name"),
    ],
)
async def test_emulator_rejects_bad_rrsets(
    emulator: HetznerEmulator, body: dict[str, Any], field: str
) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(emulator, "POST", "/zones/example.com/rrsets", body)
    assert status == 400, payload
    assert error_of(payload)[0] == "invalid_input"
    assert payload["error"]["details"]["fields"][0]["name"] == field
    assert set(emulator.rrsets("example.com")) == {("@", "SOA"), ("@", "NS")}


async def test_emulator_rejects_bad_json_and_unknown_routes(emulator: HetznerEmulator) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(emulator, "POST", "/zones/example.com/rrsets", raw=b"{nope")
    assert status == 400 and error_of(payload)[0] == "json_error"
    status, payload, _ = await call(emulator, "GET", "/zones/example.org/rrsets")
    assert status == 404 and error_of(payload)[0] == "not_found"
    status, payload, _ = await call(emulator, "PUT", "/zones/example.com/rrsets/www/A", {})
    assert status == 404 and error_of(payload)[0] == "not_found"
    status, payload, _ = await call(emulator, "DELETE", "/zones/example.com/rrsets/@/SOA")
    assert status == 400 and error_of(payload)[0] == "invalid_input"


async def test_emulator_paginates_and_refuses_pages_above_the_maximum(
    emulator: HetznerEmulator,
) -> None:
    emulator.add_zone("example.com")
    for i in range(60):
        emulator.put_rrset("example.com", f"h{i}", "A", [f"192.0.2.{i}"], 300)
    status, payload, _ = await call(emulator, "GET", "/zones/example.com/rrsets?per_page=51")
    assert status == 400 and payload["error"]["details"]["fields"][0]["name"] == "per_page"
    seen: list[str] = []
    page: int | None = 1
    while page is not None:
        status, payload, _ = await call(
            emulator, "GET", f"/zones/example.com/rrsets?per_page=50&page={page}"
        )
        assert status == 200
        seen += [r["id"] for r in payload["rrsets"]]
        page = payload["meta"]["pagination"]["next_page"]
    assert len(seen) == len(set(seen)) == 62
    status, payload, _ = await call(emulator, "GET", "/zones/example.com/rrsets")
    assert len(payload["rrsets"]) == 25  # the documented default page size


async def test_emulator_rate_limit_answers_429_with_the_documented_headers() -> None:
    clock = FakeClock()
    with HetznerEmulator(token=TOKEN, rate_limit=3, rate_window=3.0, clock=clock) as emu:
        for remaining in (2, 1, 0):
            status, _, headers = await call(emu, "GET", "/zones")
            assert status == 200
            assert headers["RateLimit-Limit"] == "3"
            assert headers["RateLimit-Remaining"] == str(remaining)
        status, payload, headers = await call(emu, "GET", "/zones")
        assert status == 429
        assert error_of(payload)[0] == "rate_limit_exceeded"
        assert headers["RateLimit-Remaining"] == "0"
        # A UNIX time: the whole budget back three seconds from now at one a second.
        assert int(headers["RateLimit-Reset"]) == int(clock.now) + 3
        clock.now += 1.0  # one request a second comes back
        status, _, _ = await call(emu, "GET", "/zones")
        assert status == 200
        status, _, _ = await call(emu, "GET", "/zones")
        assert status == 429


async def test_emulator_actions_run_until_read_then_succeed(emulator: HetznerEmulator) -> None:
    emulator.add_zone("example.com")
    status, payload, _ = await call(
        emulator,
        "POST",
        "/zones/example.com/rrsets",
        {"name": "www", "type": "A", "records": [{"value": "192.0.2.1"}]},
    )
    action = payload["action"]
    assert action["status"] == "running"
    status, payload, _ = await call(emulator, "GET", f"/actions?id={action['id']}")
    assert payload["actions"][0]["status"] == "running"
    status, payload, _ = await call(emulator, "GET", f"/actions?id={action['id']}")
    assert payload["actions"][0]["status"] == "success"
    status, payload, _ = await call(emulator, "GET", "/actions")
    assert status == 400 and payload["error"]["details"]["fields"][0]["name"] == "id"


# -- the codec --------------------------------------------------------------------------------

ORIGIN = dns.name.from_text("example.com")


def test_codec_names_and_bodies_follow_the_reference() -> None:
    assert rrset_name(ORIGIN, ORIGIN) == "@"
    assert rrset_name(dns.name.from_text("WWW.Example.COM."), ORIGIN) == "www"
    assert rrset_name(dns.name.from_text("*.dev.example.com."), ORIGIN) == "*.dev"
    assert zone_name(dns.name.from_text("Example.COM.")) == "example.com"
    mx = RRset.from_text("@", "MX", 3600, ["20 mail2.example.net.", "10 mail"], ORIGIN)
    assert rrset_body(mx, ORIGIN) == {
        "name": "@",
        "type": "MX",
        "ttl": 3600,
        "records": [{"value": "10 mail.example.com."}, {"value": "20 mail2.example.net."}],
    }
    txt = RRset.from_text("t", "TXT", 300, ['"' + "x" * 255 + '" "tail \\"q\\""'], ORIGIN)
    assert rrset_body(txt, ORIGIN)["records"] == [{"value": '"' + "x" * 255 + '" "tail \\"q\\""'}]


@pytest.mark.parametrize(
    ("rtype", "values"),
    [
        ("A", ["192.0.2.1", "192.0.2.2"]),
        ("AAAA", ["2001:db8::1"]),
        ("CAA", ['0 issue "letsencrypt.org"']),
        ("CNAME", ["target.example.net."]),
        ("DS", ["12345 13 2 " + "ab" * 32]),
        ("HINFO", ['"x86" "linux"']),
        ("MX", ["10 mail.example.com."]),
        ("NS", ["ns1.example.net."]),
        ("SRV", ["10 60 5060 sip.example.com."]),
        ("TLSA", ["3 1 1 " + "cd" * 32]),
        ("TXT", ['"v=spf1 -all"', '"two" "strings"']),
        ("HTTPS", ['1 . alpn="h2,h3"']),
    ],
)
def test_codec_round_trips_each_type(rtype: str, values: list[str]) -> None:
    rrset = RRset.from_text("x", rtype, 600, values, ORIGIN)
    body = rrset_body(rrset, ORIGIN)
    check_records(rtype, body["records"], "records")
    back = decode_rrset({**body, "id": f"x/{rtype}"}, ORIGIN, 3600)
    assert back == rrset


def test_codec_reads_the_zone_default_ttl_and_relative_names() -> None:
    item = {"name": "www", "type": "CNAME", "ttl": None, "records": [{"value": "web"}]}
    back = decode_rrset(item, ORIGIN, 7200)
    assert back.ttl == 7200
    assert back.texts() == ["web.example.com."]
    with pytest.raises(ValueError, match="www/A"):
        decode_rrset(
            {"name": "www", "type": "A", "ttl": 60, "records": [{"value": "x"}]}, ORIGIN, 1
        )


def test_error_text_names_the_code_message_and_fields() -> None:
    body = {
        "error": {
            "code": "invalid_input",
            "message": "invalid input in field 'ttl'",
            "details": {
                "fields": [{"name": "ttl", "messages": ["must be between 60 and 2147483647"]}]
            },
        }
    }
    response = Response(400, {}, json.dumps(body).encode())
    assert error_text(response) == (
        "HTTP 400 invalid_input: invalid input in field 'ttl' "
        "(ttl: must be between 60 and 2147483647)"
    )
    assert error_text(Response(502, {}, b"<html>bad gateway</html>")) == (
        "HTTP 502: <html>bad gateway</html>"
    )


# -- the target against the emulator ----------------------------------------------------------


class FakeTime:
    """Injected time for the target's waits: sleeping moves this clock (and the emulator's,
    when it follows one), never the test's."""

    def __init__(self, follow: FakeClock | None = None) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.follow = follow or FakeClock()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.follow.now += seconds


def make_target(
    emu: HetznerEmulator, fake: FakeTime | None = None, token: str = TOKEN
) -> HetznerTarget:
    fake = fake or FakeTime()
    settings = HetznerSettings("hz", emu.url, token, 10.0)
    account = Account(CAPABILITIES.budget, clock=fake.clock, sleep=fake.sleep)
    return HetznerTarget(settings, sleep=fake.sleep, account=account, wall=fake.follow)


def zone_text(origin: dns.name.Name, serial: int, hosts: int, extra: str = "") -> ZoneData:
    lines = [
        f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} {serial} 7200 3600 1209600 300",
        "@ 3600 IN NS ns1.example.net.",
        "@ 3600 IN MX 10 mail",
        "mail 3600 IN A 192.0.2.25",
    ]
    lines += [f"h{i} 300 IN A 192.0.2.{i % 250 + 1}" for i in range(hosts)]
    return ZoneData.from_text("\n".join(lines) + "\n" + extra, origin)


async def push(target: HetznerTarget, data: ZoneData) -> Plan:
    """What the engine does for one push, every RRset not the provider's counted as ours."""
    held = await target.read(data.origin)
    desired = target.normalize(data).data
    caps = target.capabilities
    current = None
    if held is not None:
        current = ZoneData(
            data.origin,
            {k: r for k, r in held.data.rrsets.items() if not caps.provider_owned(k, data.origin)},
        )
    plan = compute_plan(
        desired,
        current,
        target=target.name,
        owned=set(current.rrsets) if current else (),
        serial=data.serial,
    )
    await target.apply(plan, held.state if held is not None else None)
    return plan


async def converge(target: HetznerTarget, data: ZoneData, attempts: int = 8) -> list[str]:
    """Push until a push finds nothing left to do; the errors on the way."""
    errors: list[str] = []
    for _ in range(attempts):
        try:
            plan = await push(target, data)
        except TargetError as exc:
            errors.append(str(exc))
            continue
        if plan.empty:
            return errors
    raise AssertionError(f"no convergence: {errors}")


async def held_data(target: HetznerTarget, origin: dns.name.Name) -> dict[RRsetKey, RRset]:
    held = await target.read(origin)
    assert held is not None
    caps = target.capabilities
    return {k: r for k, r in held.data.rrsets.items() if not caps.provider_owned(k, origin)}


ZONE = dns.name.from_text("zonefan-test.de")


async def test_create_from_empty_is_one_request_and_reads_back(emulator: HetznerEmulator) -> None:
    target = make_target(emulator)
    try:
        assert await target.read(ZONE) is None
        data = zone_text(ZONE, 1, hosts=120)
        plan = await push(target, data)
        assert plan.create_zone
        writes = [(m, p) for m, p, _ in emulator.log if m != "GET"]
        assert writes == [("POST", "/v1/zones")]
        want = target.normalize(data).data.rrsets
        assert await held_data(target, ZONE) == want
        # The listing took three pages of at most 50 RRSets (122 ours and SOA and NS).
        base = f"/v1/zones/{emulator.zone_id('zonefan-test.de')}/rrsets?per_page=50"
        pages = [p for m, p, _ in emulator.log if m == "GET" and "/rrsets" in p]
        assert pages[:3] == [base, base + "&page=2", base + "&page=3"]
        # Hetzner's own SOA and apex NS are read, never planned.
        held = await target.read(ZONE)
        assert held is not None and (ZONE, dns.rdatatype.SOA) in held.data.rrsets
        assert [str(n) for n in await target.nameservers(ZONE)] == list(ASSIGNED_NAMESERVERS)
        assert (await push(target, data)).empty
    finally:
        await target.close()


async def test_change_and_delete_use_one_request_per_rrset(emulator: HetznerEmulator) -> None:
    target = make_target(emulator)
    try:
        await push(target, zone_text(ZONE, 1, hosts=6))
        emulator.log.clear()
        v2 = zone_text(ZONE, 2, hosts=4, extra='new 600 IN TXT "added"\n')
        v2 = ZoneData(
            ZONE,
            {
                **v2.rrsets,
                (dns.name.from_text("h0", ZONE), dns.rdatatype.A): RRset.from_text(
                    "h0", "A", 900, ["198.51.100.7"], ZONE
                ),
                (dns.name.from_text("mail", ZONE), dns.rdatatype.A): RRset.from_text(
                    "mail", "A", 60, ["192.0.2.25"], ZONE
                ),
            },
        )
        plan = await push(target, v2)
        assert len(plan.changes) == 5
        writes = sorted(p for m, p, _ in emulator.log if m != "GET")
        zone_id = emulator.zone_id("zonefan-test.de")
        base = f"/v1/zones/{zone_id}/rrsets"
        assert writes == sorted(
            [
                base,  # new/TXT created
                f"{base}/h0/A/actions/set_records",
                f"{base}/h0/A/actions/change_ttl",
                f"{base}/mail/A/actions/change_ttl",
                f"{base}/h4/A",
                f"{base}/h5/A",
            ]
        )
        assert await held_data(target, ZONE) == target.normalize(v2).data.rrsets
        assert (await push(target, v2)).empty
        # What apply said the zone holds after it is what a read finds: the engine plans
        # the next push against it without listing the zone again.
        held = await target.read(ZONE)
        assert held is not None
        v3 = target.normalize(zone_text(ZONE, 3, hosts=2)).data
        current = {
            k: r for k, r in held.data.rrsets.items() if not CAPABILITIES.provider_owned(k, ZONE)
        }
        plan = compute_plan(v3, ZoneData(ZONE, current), target="hz", owned=set(current), serial=3)
        after = await target.apply(plan, held.state)
        reread = await target.read(ZONE)
        assert after is not None and reread is not None
        assert after.data.rrsets == reread.data.rrsets
        assert after.state.rrset_ids == reread.state.rrset_ids
    finally:
        await target.close()


async def test_foreign_rrsets_and_hetzners_own_records_are_left_alone(
    emulator: HetznerEmulator,
) -> None:
    target = make_target(emulator)
    try:
        await push(target, zone_text(ZONE, 1, hosts=3))
        emulator.put_rrset("zonefan-test.de", "theirs", "TXT", ['"someone else"'], 300)
        held = await target.read(ZONE)
        assert held is not None
        desired = target.normalize(zone_text(ZONE, 2, hosts=2)).data
        current = ZoneData(
            ZONE,
            {k: r for k, r in held.data.rrsets.items() if not CAPABILITIES.provider_owned(k, ZONE)},
        )
        mine = {k for k in current.rrsets if k[0] != dns.name.from_text("theirs", ZONE)}
        plan = compute_plan(desired, current, target="hz", owned=mine, serial=2)
        assert plan.foreign == ((dns.name.from_text("theirs", ZONE), dns.rdatatype.TXT),)
        await target.apply(plan, held.state)
        rrsets = emulator.rrsets("zonefan-test.de")
        assert ("theirs", "TXT") in rrsets and ("h2", "A") not in rrsets
        assert [r["value"] for r in rrsets[("@", "NS")].records] == list(ASSIGNED_NAMESERVERS)
        assert ("@", "SOA") in rrsets
    finally:
        await target.close()


async def test_a_429_storm_during_a_large_push_converges_and_applies_nothing_twice() -> None:
    """The emulator's own hourly budget, shrunk to 20 requests refilled at 10 a second, and
    spent by another client of the project before every 15th request: the target's account
    waits out each RateLimit-Reset (injected time, so none passes in the test) and every
    RRSet is written exactly once."""
    clock = FakeClock()
    fake = FakeTime(follow=clock)  # the emulator's clock moves with the target's sleeps
    with HetznerEmulator(
        token=TOKEN, rate_limit=20, rate_window=2.0, clock=clock, drained_every=15
    ) as emu:
        target = make_target(emu, fake)
        try:
            emu.add_zone("zonefan-test.de")
            data = zone_text(ZONE, 1, hosts=150)
            errors = await converge(target, data)
            assert sum(1 for _, _, s in emu.log if s == 429) >= 5, "no storm happened"
            # Waits come from the headers: a drained budget of 20 at 10 a second is back in
            # 2 s, and RateLimit-Reset is a whole second.
            assert fake.slept and max(fake.slept) < 3.0
            assert await held_data(target, ZONE) == target.normalize(data).data.rrsets
            creates = [a for a in emu.applied if a[0] == "create_rrset"]
            assert len(creates) == len(set(creates)) == 152
            assert errors == [] or all("429" in e for e in errors)
        finally:
            await target.close()


async def test_server_errors_during_a_large_push_converge_with_nothing_lost_or_doubled(
    emulator: HetznerEmulator,
) -> None:
    """A write the backend applied and then answered 500 for, and one refused with 503
    before it was processed: the POST is not sent again blindly (the re-read finds what was
    applied), so every RRSet is created once and none is missing."""
    target = make_target(emulator)
    try:
        emulator.add_zone("zonefan-test.de")
        data = zone_text(ZONE, 1, hosts=80)
        await push(target, zone_text(ZONE, 1, hosts=0))  # mail and MX first
        emulator.fail_after_apply = 1
        errors = await converge(target, data)
        assert errors and "HTTP 500" in errors[0]
        emulator.fail_before = 1  # a 503 that a POST must not retry by itself
        v2 = zone_text(ZONE, 2, hosts=80, extra='x 300 IN TXT "late"\n')
        errors = await converge(target, v2)
        assert errors and "HTTP 503" in errors[0]
        assert emulator.fail_before == 0
        assert await held_data(target, ZONE) == target.normalize(v2).data.rrsets
        creates = [a for a in emulator.applied if a[0] == "create_rrset"]
        assert len(creates) == len(set(creates)) == 83
    finally:
        await target.close()


async def test_actions_are_looked_at_only_while_they_run() -> None:
    with HetznerEmulator(token=TOKEN, settle_polls=0) as emu:  # done when started
        target = make_target(emu)
        try:
            await push(target, zone_text(ZONE, 1, hosts=3))
            await push(target, zone_text(ZONE, 2, hosts=5))
            assert not [p for _, p, _ in emu.log if p.startswith("/v1/actions")]
        finally:
            await target.close()
    with HetznerEmulator(token=TOKEN, settle_polls=3) as emu:  # three looks each
        fake = FakeTime()
        target = make_target(emu, fake)
        try:
            await push(target, zone_text(ZONE, 1, hosts=3))
            polls = [p for _, p, _ in emu.log if p.startswith("/v1/actions")]
            assert len(polls) == 4  # running three times, then success
            assert fake.slept == [0.5, 0.5, 0.5]
        finally:
            await target.close()


async def test_a_failed_action_is_reported_with_the_api_message(emulator: HetznerEmulator) -> None:
    target = make_target(emulator)
    try:
        await push(target, zone_text(ZONE, 1, hosts=1))
        emulator.fail_actions = True
        with pytest.raises(
            TargetRejectedError, match=r"action create_rrset \d+ failed: action_failed: publishing"
        ):
            await push(target, zone_text(ZONE, 2, hosts=2))
    finally:
        await target.close()


async def test_wrong_token_is_refused_and_never_logged(
    emulator: HetznerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "hz-wrong-token-55aa"
    target = make_target(emulator, token=wrong)
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(TargetRejectedError) as caught:
            await target.read(ZONE)
        assert "401" in str(caught.value) and "check the credentials" in str(caught.value)
        assert wrong not in str(caught.value)
        assert caplog.records, "nothing was logged: the check proves nothing"
        assert all(wrong not in r.getMessage() for r in caplog.records)
    finally:
        await target.close()


# -- what the target declares -----------------------------------------------------------------


def test_a_signed_zone_is_refused_clearly(tmp_path: Path) -> None:
    """Hetzner holds no DNSKEY, RRSIG or NSEC ("Zone RRSets" types): the engine refuses a
    signed zone for this target instead of serving it unsigned."""
    signed = zone_text(ZONE, 1, hosts=1, extra="@ 3600 IN DNSKEY 257 3 13 " + "A" * 88 + "\n")
    assert signed.signed
    state = SyncState(tmp_path / "state.db")
    target = hetzner_from_config("hz", {"api-token-env": "HZ_TOKEN"}, ctx())
    engine = SyncEngine(state, NoSource(), [ZONE], {"hz": TargetSpec(target)})
    try:
        with pytest.raises(CapabilityError, match=r"signed.*DNSSEC mode is 'none'"):
            engine.route("hz", signed)
        assert engine.route("hz", zone_text(ZONE, 1, hosts=1)) is target
    finally:
        state.close()


def test_normalize_reports_what_hetzner_cannot_hold() -> None:
    target = hetzner_from_config("hz", {"api-token-env": "HZ_TOKEN"}, ctx())
    data = zone_text(
        ZONE,
        1,
        hosts=1,
        extra='spf 300 IN SPF "v=spf1 -all"\nfast 30 IN A 192.0.2.9\n'
        'n 300 IN NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:a@example.com!" .\n',
    )
    normalized = target.normalize(data)
    names = {
        (n.relativize(ZONE).to_text(), dns.rdatatype.to_text(t)) for n, t in normalized.unsupported
    }
    assert names == {("spf", "SPF"), ("n", "NAPTR")}
    owned = {
        (n.relativize(ZONE).to_text(), dns.rdatatype.to_text(t))
        for n, t in normalized.provider_owned
    }
    assert owned == {("@", "SOA"), ("@", "NS")}
    assert [(a.wanted, a.held) for a in normalized.ttls] == [(30, 60)]
    fast = normalized.data.rrsets[(dns.name.from_text("fast", ZONE), dns.rdatatype.A)]
    assert fast.ttl == 60


def test_the_type_is_registered() -> None:
    assert registered()["hetzner"] == "sync.providers.hetzner:hetzner_from_config"
    target = build_target("hz", {"type": "hetzner", "api-token-env": "HZ_TOKEN"}, ctx())
    assert isinstance(target, HetznerTarget)
    assert target.settings.endpoint == "https://api.hetzner.cloud/v1"


class NoSource:
    """A primary the refusal test never reaches."""

    async def serial(self, zone: dns.name.Name) -> int:
        raise AssertionError("not reached")

    async def fetch(self, zone: dns.name.Name, have: ZoneData | None) -> Any:
        raise AssertionError("not reached")


# -- the contract kit -------------------------------------------------------------------------


async def no_wait(seconds: float) -> None:
    """Action polls and backoffs without the test's time passing."""
    await asyncio.sleep(0)


@pytest.mark.parametrize("check", CHECKS)
def test_contract(check: str) -> None:
    with HetznerEmulator(token=TOKEN) as emu:
        contract = Contract(
            make_target=lambda url: HetznerTarget(
                HetznerSettings("contract", url, TOKEN, 10.0), sleep=no_wait
            ),
            upstream=emu.url,
            zone=dns.name.from_text("zonefan-contract.de"),
            secrets=(TOKEN,),
        )
        asyncio.run(run_check(contract, check))


async def test_open_names_the_setting_that_is_wrong(emulator: HetznerEmulator) -> None:
    good = make_target(emulator)
    wrong = make_target(emulator, token="hz-wrong-token-55aa")
    settings = HetznerSettings("hz", emulator.url.removesuffix("/v1"), TOKEN, 10.0)
    no_v1 = HetznerTarget(settings, sleep=no_wait)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = HetznerTarget(
        HetznerSettings("hz", f"http://127.0.0.1:{port}/v1", TOKEN, 2.0), sleep=no_wait
    )
    try:
        await good.open()
        with pytest.raises(SyncConfigError) as caught:
            await wrong.open()
        assert caught.value.setting == "target.hz.api-token-env"
        assert "unauthorized" in str(caught.value) and "hz-wrong-token-55aa" not in str(
            caught.value
        )
        with pytest.raises(SyncConfigError) as caught:
            await no_v1.open()
        assert caught.value.setting == "target.hz.endpoint" and "HTTP 404" in str(caught.value)
        with pytest.raises(SyncConfigError) as caught:
            await closed.open()
        assert caught.value.setting == "target.hz.endpoint" and "unreachable" in str(caught.value)
    finally:
        for target in (good, wrong, no_v1, closed):
            await target.close()


# -- settings ---------------------------------------------------------------------------------


def ctx(env: dict[str, str] | None = None) -> TargetContext:
    return TargetContext(keys={}, primary=None, env=env or {"HZ_TOKEN": TOKEN})


def test_settings_read_the_token_from_the_environment_or_a_file(tmp_path: Path) -> None:
    settings = parse_settings("hz", {"type": "hetzner", "api-token-env": "HZ_TOKEN"}, ctx())
    assert settings.token == TOKEN and settings.endpoint == DEFAULT_ENDPOINT
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    settings = parse_settings(
        "hz",
        {
            "type": "hetzner",
            "api-token-file": str(token_file),
            "endpoint": "http://127.0.0.1:1/v1/",
        },
        ctx(),
    )
    assert settings.token == TOKEN and settings.endpoint == "http://127.0.0.1:1/v1"
    assert isinstance(
        hetzner_from_config("hz", {"api-token-env": "HZ_TOKEN"}, ctx()), HetznerTarget
    )


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"api-token-env": "HZ_TOKEN", "zone-id": 5}, "target.hz.zone-id", "unknown setting"),
        ({"api-token": TOKEN}, "target.hz.api-token", "unknown setting"),
        ({}, "target.hz.api-token-env", "required"),
        ({"api-token-env": "MISSING"}, "target.hz.api-token-env", "MISSING"),
        ({"api-token-env": "HZ_TOKEN", "endpoint": "ftp://x"}, "target.hz.endpoint", "base URL"),
        ({"api-token-env": "HZ_TOKEN", "endpoint": 5}, "target.hz.endpoint", "base URL"),
        ({"api-token-env": "HZ_TOKEN", "timeout": 0}, "target.hz.timeout", "more than 0"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    section: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(SyncConfigError) as caught:
        parse_settings("hz", {"type": "hetzner", **section}, ctx())
    assert caught.value.setting == key
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)
