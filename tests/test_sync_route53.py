"""The Route 53 target against moto's standalone server (``moto[server]``), an
implementation of the Route 53 API nobody here wrote: create, change, delete, no-op pushes,
round trips, foreign records, a 5,000-record push within the ChangeResourceRecordSets
quotas, Throttling / PriorRequestNotComplete / 429 waited out, credentials kept out of the
logs, and bad settings refused naming the key. Faults are injected by a proxy in front of
moto; every wait goes through an injected sleep, so no test sleeps on the wall clock."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import pytest
from aiohttp import web

from sync.errors import (
    CapabilityError,
    SyncConfigError,
    TargetRateLimitedError,
    TargetRejectedError,
)
from sync.model import RRset, ZoneData
from sync.plan import Action, Plan, compute_plan
from sync.providers import route53
from sync.providers.base import DnssecMode, Held, RecordTarget
from sync.providers.capabilities import served
from sync.providers.http import Account, Response
from sync.providers.route53 import (
    BUDGET,
    CAPABILITIES,
    MAX_RECORDS,
    MAX_VALUE_CHARS,
    Item,
    Route53Target,
    batches,
    from_route53,
    parse_settings,
    to_route53,
)
from sync.providers.testkit.contract import CHECKS, Contract, run_check
from sync.providers.testkit.faults import Fault, FaultProxy
from sync.settings import TargetContext
from tests.clock import FakeClock

ORIGIN = dns.name.from_text("example.test.")
KEY_ID = "AKIAZONEFANTESTKEY01"
SECRET = "zonefan/route53+secret-access-key-0123456789"
ENV = {"R53_KEY_ID": KEY_ID, "R53_SECRET": SECRET}
SECTION = {
    "type": "route53",
    "access-key-id-env": "R53_KEY_ID",
    "secret-access-key-env": "R53_SECRET",
    "create": True,
    "propagation-timeout": 10,
}


def ctx(env: Mapping[str, str] = ENV) -> TargetContext:
    return TargetContext(keys={}, primary=None, env=env)


def make_target(
    endpoint: str,
    clock: FakeClock | None = None,
    budget: bool = False,
    **extra: Any,
) -> Route53Target:
    """A target at ``endpoint`` with its own account (no test waits on another's budget);
    ``budget`` paces it at Route 53's documented rate on the real clock."""
    sleep = (clock or FakeClock()).sleep
    settings = parse_settings("r53", {**SECTION, "endpoint": endpoint, **extra}, ctx())
    account = Account(BUDGET if budget else None, sleep=sleep)
    return Route53Target(settings, sleep=sleep, account=account, rng=lambda: 0.5)


def plan_for(
    target: RecordTarget[Any],
    desired: ZoneData,
    held: Held[Any] | None,
    owned: frozenset[Any] = frozenset(),
) -> Plan:
    """The plan the engine makes: desired and current in the provider's terms, its own
    apex records out of both."""
    normalized = target.normalize(desired)
    current = None
    if held is not None:
        caps = target.capabilities
        current = ZoneData(
            held.data.origin,
            {
                k: r
                for k, r in held.data.rrsets.items()
                if not caps.provider_owned(k, held.data.origin)
            },
        )
    plan = compute_plan(
        normalized.data,
        current,
        target=target.name,
        owned=owned,
        served=served(None if held is None else held.data, target.capabilities),
        serial=desired.serial,
    )
    return plan


async def push(
    target: RecordTarget[Any], desired: ZoneData, owned: frozenset[Any] = frozenset()
) -> Plan:
    """Read, plan and apply once; the plan applied."""
    held = await target.read(desired.origin)
    plan = plan_for(target, desired, held, owned)
    if not plan.empty:
        await target.apply(plan, None if held is None else held.state)
    return plan


def ours(data: ZoneData | None, target: RecordTarget[Any]) -> dict[Any, RRset]:
    """The RRsets of ``data`` that are not the provider's own apex SOA and NS."""
    assert data is not None
    return {
        k: r
        for k, r in data.rrsets.items()
        if not target.capabilities.provider_owned(k, data.origin)
    }


def zone(origin: dns.name.Name, records: str) -> ZoneData:
    """A zone from zone-file lines (relative names), with an SOA and apex NS of ours."""
    text = (
        f"$ORIGIN {origin}\n"
        "@ 3600 IN SOA ns1.example.net. hostmaster.example.net. 7 7200 3600 864000 300\n"
        "@ 3600 IN NS ns1.example.net.\n" + records
    )
    return ZoneData.from_text(text, origin)


RICH = """
@ 300 IN A 192.0.2.1
@ 300 IN AAAA 2001:db8::1
@ 300 IN MX 10 mail
@ 300 IN TXT "v=spf1 -all"
@ 300 IN CAA 0 issue "ca.example.net"
www 60 IN CNAME @
mail 300 IN A 192.0.2.25
mail 300 IN A 192.0.2.26
*.wild 300 IN A 192.0.2.42
_sip._tcp 300 IN SRV 10 20 5060 sip
sip 300 IN A 192.0.2.5
long 300 IN TXT "{long}" "second string"
quoted 300 IN TXT "say \\"hi\\"" "back\\\\slash" "caf\\195\\169" "tab\\009here"
4.2.0.192.in-addr 300 IN PTR host.example.net.
naptr 300 IN NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:info@example.test!" .
ssh 300 IN SSHFP 4 2 {sha256}
_443._tcp 300 IN TLSA 3 1 1 {sha256}
child 300 IN NS ns1.child
ns1.child 300 IN A 192.0.2.53
child 300 IN DS 12345 13 2 {sha256}
spf 300 IN SPF "v=spf1 -all"
svc 300 IN SVCB 1 svc-target alpn="h2,h3" port=8443
web 300 IN HTTPS 1 . alpn="h2"
""".format(long="x" * 255, sha256="ab" * 32)


# -- the value codec and batching, on their own -------------------------------------------------


def test_escapes_are_octal_at_route53_and_decimal_in_dnspython() -> None:
    # Route 53 writes every name character outside a-z0-9-_ as \ooo (DNS domain name
    # format): a wildcard comes back as \052, "ü" (0xfc) as \374.
    assert from_route53("\\052.example.test.") == "\\042.example.test."
    assert dns.name.from_text(from_route53("\\052.example.test.")).labels[0] == b"*"
    assert to_route53('"caf\\195\\169" "a\\"b" "c\\\\d"') == '"caf\\303\\251" "a\\"b" "c\\\\d"'
    for text in ('"caf\\195\\169"', '"\\000\\255"', '"a\\\\123"', "f\\252bar.example."):
        assert from_route53(to_route53(text)) == text


def test_batches_keep_within_the_quotas_and_count_upserts_twice() -> None:
    def item(action: str, n: int, width: int) -> list[Item]:
        return [Item(action, "a.example.test.", "A", 300, tuple("x" * width for _ in range(n)))]

    # UPSERTs of 200 records count 400 each: two fit in a request, a third would be 1,200.
    groups = [item("UPSERT", 200, 1) for _ in range(3)]
    sent = list(batches(groups))
    assert [sum(i.records for i in b) for b in sent] == [800, 400]
    # Characters bind before records: 3 x 300 records of 40 characters is 36,000.
    sent = list(batches([item("CREATE", 300, 40) for _ in range(3)]))
    assert [sum(i.chars for i in b) for b in sent] == [24_000, 12_000]
    assert all(sum(i.records for i in b) <= MAX_RECORDS for b in sent)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            f'<ErrorResponse xmlns="{route53.XMLNS}"><Error><Type>Sender</Type><Code>Throttling'
            "</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId>"
            "</ErrorResponse>",
            "Throttling",
            "Rate exceeded",
        ),
        (
            "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>no match"
            "</Message></Error></Errors></ErrorResponse>",
            "SignatureDoesNotMatch",
            "no match",
        ),
        (
            f'<InvalidChangeBatch xmlns="{route53.XMLNS}"><Messages><Message>Tried to create '
            "a but it already exists</Message><Message>second</Message></Messages>"
            "</InvalidChangeBatch>",
            "InvalidChangeBatch",
            "Tried to create a but it already exists; second",
        ),
        ("<html>gateway</html>", "", "<html>gateway</html>"),
        ("not xml at all", "", "not xml at all"),
    ],
)
def test_error_bodies_are_read(body: str, code: str, message: str) -> None:
    response = Response(400, {}, body.encode(), "POST", "p", "r53")
    assert route53.error_code(response) == (code, message)


def test_capabilities_as_documented() -> None:
    caps = CAPABILITIES
    assert caps.dnssec is DnssecMode.SELF_SIGNING
    assert caps.provider_owned((ORIGIN, dns.rdatatype.SOA), ORIGIN)
    assert caps.provider_owned((ORIGIN, dns.rdatatype.NS), ORIGIN)
    assert not caps.provider_owned((dns.name.from_text("child", ORIGIN), dns.rdatatype.NS), ORIGIN)
    assert not caps.supports(dns.rdatatype.DNSKEY) and not caps.supports(dns.rdatatype.LOC)
    assert caps.atomic and caps.batch_records == 1000 and caps.batch_bytes == 32_000
    assert caps.budget is not None and caps.budget.rate == 5.0 and caps.budget.account


def test_values_too_large_are_refused_before_anything_is_sent() -> None:
    # One value over 4,000 characters, and one RRset over 32,000: neither fits a request.
    target = make_target("http://127.0.0.1:9")  # nothing listens: nothing may be sent
    big_value = zone(ORIGIN, "big 300 IN TXT " + " ".join(['"' + "y" * 250 + '"'] * 17) + "\n")
    plan = plan_for(target, big_value, None)
    with pytest.raises(TargetRejectedError, match="at most 4000 per record"):
        asyncio.run(target.apply(plan, None))
    texts = "\n".join(f'big 300 IN TXT "{i:03d}{"z" * 250}"' for i in range(130))
    plan = plan_for(target, zone(ORIGIN, texts + "\n"), None)
    with pytest.raises(TargetRejectedError, match="32000 characters"):
        asyncio.run(target.apply(plan, None))
    assert target.http.requests == 0


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"zone-id": "Z1"}, "target.r53.zone-id", "unknown setting"),
        ({"endpoint": "ftp://x"}, "target.r53.endpoint", "expected the API's base URL"),
        ({"endpoint": "http://127.0.0.1:5000/api"}, "target.r53.endpoint", "no path"),
        ({"create": "yes"}, "target.r53.create", "true or false"),
        ({"timeout": 0}, "target.r53.timeout", "more than 0"),
        ({"propagation-timeout": -1}, "target.r53.propagation-timeout", "0 or more"),
        ({"secret-access-key-env": None}, "target.r53.secret-access-key-env", "set both"),
        ({"access-key-id-env": None}, "target.r53.access-key-id-env", "set both"),
        ({"access-key-id-env": "UNSET_VARIABLE"}, "target.r53.access-key-id", "UNSET_VARIABLE"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    change: dict[str, Any], key: str, words: str
) -> None:
    section = {k: v for k, v in {**SECTION, **change}.items() if v is not None}
    with pytest.raises(SyncConfigError) as caught:
        parse_settings("r53", section, ctx())
    assert key in str(caught.value)
    assert words in str(caught.value)


def test_credentials_from_the_standard_aws_environment() -> None:
    section = {"type": "route53"}
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "t"}
    settings = parse_settings("r53", section, ctx(env))
    assert settings.credentials.access_key_id == KEY_ID
    assert settings.credentials.session_token == "t"
    assert settings.endpoint == route53.DEFAULT_ENDPOINT and settings.create is False
    with pytest.raises(SyncConfigError, match=r"target\.r53\.access-key-id-env.*AWS_ACCESS_KEY_ID"):
        parse_settings("r53", section, ctx({}))


def test_the_registry_builds_a_route53_target(moto: str) -> None:
    # The product path: the registry's factory, the account shared by every target of one
    # access key and paced at Route 53's documented rate.
    from sync.providers import build_target

    origin = dns.name.from_text("registry.example.test.")
    target = build_target("r53", {**SECTION, "endpoint": moto}, ctx())
    other = build_target("r53b", {**SECTION, "endpoint": moto}, ctx())
    assert isinstance(target, Route53Target) and isinstance(other, Route53Target)
    assert target.http.account is other.http.account
    assert target.http.account.budget == BUDGET

    async def run() -> None:
        try:
            desired = zone(origin, "a 300 IN A 192.0.2.1\n")
            await push(target, desired)
            held = await other.read(origin)
            assert held is not None
            assert ours(held.data, other) == dict(other.normalize(desired).data.rrsets)
        finally:
            await target.close()
            await other.close()

    asyncio.run(run())


class NoPrimary:
    """A primary never asked: routing a zone needs none."""

    async def serial(self, zone: dns.name.Name) -> int:
        raise AssertionError("not asked")

    async def fetch(self, zone: dns.name.Name, have: ZoneData | None) -> Any:
        raise AssertionError("not asked")


def test_signed_zones_are_refused_by_the_engine(tmp_path: Path) -> None:
    from sync.engine import SyncEngine, TargetSpec
    from sync.state import SyncState

    signed = zone(ORIGIN, "@ 300 IN DNSKEY 257 3 13 " + "A" * 88 + "\n")
    state = SyncState(tmp_path / "state.db")
    try:
        spec = TargetSpec(make_target("http://127.0.0.1:9"))
        engine = SyncEngine(state, NoPrimary(), [ORIGIN], {"r53": spec})
        with pytest.raises(CapabilityError, match="signed and the target's DNSSEC mode is"):
            engine.route("r53", signed)
        assert engine.route("r53", zone(ORIGIN, "a 300 IN A 192.0.2.1\n")) is spec.target
    finally:
        state.close()


# -- against moto --------------------------------------------------------------------------------


def test_create_from_empty_round_trip_change_delete_noop(moto: str) -> None:
    origin = dns.name.from_text("rich.example.test.")
    desired = zone(origin, RICH)

    async def run() -> None:
        target = make_target(moto)
        try:
            await target.open()  # reachable, credentials taken
            assert await target.read(origin) is None
            assert await target.nameservers(origin) == []
            plan = await push(target, desired)
            assert plan.create_zone and {c.action for c in plan.changes} == {Action.CREATE}
            held = await target.read(origin)
            assert held is not None
            # Round trip: what Route 53 holds is what we pushed, in its own terms.
            assert ours(held.data, target) == dict(target.normalize(desired).data.rrsets)
            # Its own NS at the apex: its delegation set, not ours (moto shows its SOA in a
            # form of its own, which the target leaves unread).
            ns = await target.nameservers(origin)
            apex_ns = held.data.apex_ns()
            assert ns and apex_ns is not None
            assert sorted(getattr(r, "target") for r in apex_ns.rdatas) == ns  # noqa: B009
            # Nothing to do now.
            assert plan_for(target, desired, held).empty
            # A change, a delete and a create in one push.
            changed = zone(
                origin,
                RICH.replace("192.0.2.25", "192.0.2.125").replace("sip 300 IN A 192.0.2.5\n", "")
                + "new 300 IN AAAA 2001:db8::99\n",
            )
            owned = frozenset(desired.rrsets)
            plan = await push(target, changed, owned)
            kinds = sorted((c.action.name, str(c.key[0])) for c in plan.changes)
            assert kinds == [
                ("CREATE", "new.rich.example.test."),
                ("DELETE", "sip.rich.example.test."),
                ("UPDATE", "mail.rich.example.test."),
            ]
            held = await target.read(origin)
            assert held is not None
            assert ours(held.data, target) == dict(target.normalize(changed).data.rrsets)
            assert plan_for(target, changed, held, owned).empty
        finally:
            await target.close()

    asyncio.run(run())


def test_apply_returns_what_the_zone_holds(moto: str) -> None:
    origin = dns.name.from_text("after.example.test.")
    desired = zone(origin, 'a 300 IN A 192.0.2.1\nb 300 IN TXT "b"\n')

    async def run() -> None:
        target = make_target(moto)
        try:
            plan = plan_for(target, desired, None)
            after = await target.apply(plan, None)
            assert after is not None
            again = zone(origin, "a 300 IN A 192.0.2.2\n")
            plan = plan_for(target, again, after, frozenset(desired.rrsets))
            assert {c.action for c in plan.changes} == {Action.UPDATE, Action.DELETE}
            after = await target.apply(plan, after.state)
            held = await target.read(origin)
            assert after is not None and held is not None
            assert ours(after.data, target) == ours(held.data, target)
        finally:
            await target.close()

    asyncio.run(run())


def test_a_missing_zone_is_created_only_with_create_true(moto: str) -> None:
    origin = dns.name.from_text("nocreate.example.test.")

    async def run() -> None:
        target = make_target(moto, create=False)
        try:
            plan = plan_for(target, zone(origin, "a 300 IN A 192.0.2.1\n"), None)
            with pytest.raises(TargetRejectedError, match="create = true"):
                await target.apply(plan, None)
            assert await target.read(origin) is None
        finally:
            await target.close()

    asyncio.run(run())


def test_foreign_records_are_left_alone(moto: str) -> None:
    origin = dns.name.from_text("foreign.example.test.")
    desired = zone(origin, "a 300 IN A 192.0.2.1\n")

    async def run() -> None:
        target = make_target(moto)
        try:
            await push(target, desired)
            held = await target.read(origin)
            assert held is not None
            # Someone else's record, written straight through the API.
            other = Item("CREATE", "theirs.foreign.example.test.", "TXT", 60, ('"not ours"',))
            await target.call(
                "POST",
                f"{route53.API}/hostedzone/{held.state.zone_id}/rrset/",
                data=route53.change_batch([other], "someone else"),
            )
            plan = await push(
                target, zone(origin, "a 300 IN A 192.0.2.9\n"), frozenset(desired.rrsets)
            )
            assert [c.action for c in plan.changes] == [Action.UPDATE]
            assert [str(n) for n, _ in plan.foreign] == ["theirs.foreign.example.test."]
            held = await target.read(origin)
            assert held is not None
            theirs = held.data.get(dns.name.from_text("theirs", origin), dns.rdatatype.TXT)
            assert theirs is not None and theirs.texts() == ['"not ours"']
        finally:
            await target.close()

    asyncio.run(run())


def test_pagination_reads_every_rrset(moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pages of 7 RRsets: a page boundary falls between types of one name.
    origin = dns.name.from_text("pages.example.test.")
    lines = "".join(
        f'n{i} 300 IN A 192.0.2.{i}\nn{i} 300 IN TXT "t{i}"\nn{i} 300 IN AAAA 2001:db8::{i}\n'
        for i in range(1, 12)
    )
    desired = zone(origin, lines)
    monkeypatch.setattr(route53, "RRSET_PAGE", 7)

    async def run() -> None:
        proxy = Route53Faults(moto)
        proxy.start()
        target = make_target(proxy.url)
        try:
            await push(target, desired)
            gets = target.http.requests
            # Throttled in the middle of the listing: the third page is refused twice.
            proxy.refuse("Throttling", count=2, method="GET", after=3)
            held = await target.read(origin)
            assert held is not None
            assert ours(held.data, target) == dict(target.normalize(desired).data.rrsets)
            # 33 RRsets + SOA + NS in pages of 7: one find, at least five pages, two refusals.
            assert target.http.requests - gets >= 1 + math.ceil(35 / 7) + 2
            assert [s for _, _, s in proxy.log].count(400) == 2
        finally:
            await target.close()
            proxy.stop()

    asyncio.run(run())


class Route53Faults(FaultProxy):
    """The kit's fault proxy, plus Route 53's own refusals (:meth:`refuse`: HTTP 400 with
    the documented ``ErrorResponse`` body, Developer Guide, throttling): ``Throttling`` or
    ``PriorRequestNotComplete``; and it keeps the body of every request it forwards."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refusals: list[Fault] = []
        self.bodies: list[tuple[str, str, bytes]] = []
        self.pending = 0  # GetChange answers PENDING this many times before moto's answer

    def refuse(self, code: str, count: int = 1, method: str | None = None, after: int = 0) -> None:
        with self._lock:
            self.refusals.append(Fault(code, count, 0, method, after))

    def _next_refusal(self, method: str) -> str | None:
        with self._lock:
            if not self.refusals or self.refusals[0].method not in (None, method):
                return None
            fault = self.refusals[0]
            if fault.after > 0:  # let this many through first
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self.refusals.pop(0)
            return fault.kind

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        code = self._next_refusal(request.method)
        if code is not None:
            self.log.append((request.method, request.path, 400))
            message = (
                "Rate exceeded"
                if code == "Throttling"
                else "The request was rejected because Route 53 was still processing a "
                "prior request."
            )
            xml = (
                f'<?xml version="1.0"?><ErrorResponse xmlns="{route53.XMLNS}"><Error>'
                f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                "<RequestId>0f1e2d3c</RequestId></ErrorResponse>"
            )
            return web.Response(status=400, body=xml.encode(), content_type="text/xml")
        self.bodies.append((request.method, request.path, body))
        if request.method == "GET" and "/change/" in request.path and self.pending > 0:
            self.pending -= 1
            self.log.append((request.method, request.path, 200))
            xml = (
                f'<?xml version="1.0"?><GetChangeResponse xmlns="{route53.XMLNS}"><ChangeInfo>'
                f"<Id>{request.path.rpartition('/')[2]}</Id><Status>PENDING</Status>"
                "<SubmittedAt>2026-12-07T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
            )
            return web.Response(body=xml.encode(), content_type="text/xml")
        return await super()._handle(request)


def counted(body: bytes) -> tuple[int, int, int]:
    """(Change elements, ResourceRecord elements, Value characters) of a request as the
    quotas count them: UPSERT twice."""
    root = ET.fromstring(body)
    changes = records = chars = 0
    for change in root.iter(f"{{{route53.XMLNS}}}Change"):
        twice = 2 if change.findtext(f"{{{route53.XMLNS}}}Action") == "UPSERT" else 1
        values = [v.text or "" for v in change.iter(f"{{{route53.XMLNS}}}Value")]
        changes += 1
        records += twice * len(values)
        chars += twice * sum(len(v) for v in values)
    return changes, records, chars


def big_zone(origin: dns.name.Name, records: int) -> ZoneData:
    """``records`` records: A, two-address AAAA and two-string TXT RRsets."""
    lines: list[str] = []
    count = i = 0
    while count < records:
        kind = i % 3
        if kind == 0:
            lines.append(f"a{i} 300 IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            count += 1
        elif kind == 1 and records - count >= 2:
            lines += [f"v{i} 300 IN AAAA 2001:db8::{i:x}", f"v{i} 300 IN AAAA 2001:db8:1::{i:x}"]
            count += 2
        elif records - count >= 2:
            lines += [f't{i} 300 IN TXT "site-verification={i:08d}-{"k" * 40}"'] * 1
            lines += [f't{i} 300 IN TXT "other={i:08d}"']
            count += 2
        i += 1
    return zone(origin, "\n".join(lines) + "\n")


def test_a_5000_record_push_within_the_quotas_then_one_change(moto: str) -> None:
    origin = dns.name.from_text("big.example.test.")
    desired = big_zone(origin, 5000)
    assert sum(len(r.rdatas) for r in desired if r.rdtype != dns.rdatatype.SOA) - 1 == 5000

    async def run() -> None:
        proxy = Route53Faults(moto)
        proxy.start()
        target = make_target(proxy.url)
        try:
            await push(target, desired)
            posts = [
                counted(b) for m, p, b in proxy.bodies if m == "POST" and p.endswith("/rrset/")
            ]
            total = sum(r for _, r, _ in posts), sum(c for _, _, c in posts)
            assert total[0] == 5000
            for _changes, records, chars in posts:
                assert records <= MAX_RECORDS and chars <= MAX_VALUE_CHARS
            # As few requests as the quotas allow: none could have taken the next RRset.
            bound = max(math.ceil(total[0] / MAX_RECORDS), math.ceil(total[1] / MAX_VALUE_CHARS))
            assert bound <= len(posts) <= bound + 1, (len(posts), total)
            print(
                f"5000 records: {len(posts)} ChangeResourceRecordSets, {target.http.requests} "
                f"requests in all, {total[1]} value characters"
            )
            held = await target.read(origin)
            assert held is not None
            assert ours(held.data, target) == dict(target.normalize(desired).data.rrsets)
            # One change: one request with one UPSERT.
            proxy.bodies.clear()
            changed = ZoneData(
                origin,
                {
                    **desired.rrsets,
                    (dns.name.from_text("a0", origin), dns.rdatatype.A): RRset.from_text(
                        "a0", "A", 300, ["192.0.2.200"], origin
                    ),
                },
            )
            plan = await push(target, changed, frozenset(desired.rrsets))
            assert [c.action for c in plan.changes] == [Action.UPDATE]
            posts = [counted(b) for m, p, b in proxy.bodies if m == "POST"]
            assert posts == [(1, 2, 2 * len("192.0.2.200"))]
        finally:
            await target.close()
            proxy.stop()

    asyncio.run(run())


@pytest.mark.parametrize("code", ["Throttling", "PriorRequestNotComplete", "429"])
def test_throttling_and_prior_request_not_complete_are_waited_out(moto: str, code: str) -> None:
    origin = dns.name.from_text(f"{code.lower()}.example.test.")
    desired = zone(origin, "".join(f"h{i} 300 IN A 192.0.2.{i}\n" for i in range(1, 30)))

    async def run() -> None:
        proxy = Route53Faults(moto)
        proxy.start()
        clock = FakeClock()
        target = make_target(proxy.url, clock)
        try:
            # Every kind of request refused three times over, the change batch included.
            inject = proxy.inject if code == "429" else proxy.refuse
            inject(code, count=3, method="GET")
            inject(code, count=3, method="POST")
            await push(target, desired)
            refused = [s for _, _, s in proxy.log if s in (400, 0)]
            assert len(refused) == 6
            held = await target.read(origin)
            assert held is not None
            assert ours(held.data, target) == dict(target.normalize(desired).data.rrsets)
            # Each refusal was waited out (on the injected sleep), none of them sent at once.
            assert len([w for w in clock.waits if w > 0]) >= 6
        finally:
            await target.close()
            proxy.stop()

    asyncio.run(run())


@pytest.mark.parametrize("timeout", [30, 3])
def test_the_last_change_is_followed_until_insync(moto: str, timeout: int) -> None:
    # GetChange says PENDING three times: polled after growing waits (injected sleep and
    # clock) until INSYNC, or until propagation-timeout, after which the push stands.
    origin = dns.name.from_text(f"insync{timeout}.example.test.")

    async def run() -> tuple[list[float], int]:
        proxy = Route53Faults(moto)
        proxy.start()
        clock = FakeClock(0.0)
        settings = parse_settings(
            "r53", {**SECTION, "endpoint": proxy.url, "propagation-timeout": timeout}, ctx()
        )
        target = Route53Target(
            settings, sleep=clock.sleep, clock=clock, account=Account(sleep=clock.sleep)
        )
        try:
            proxy.pending = 3
            await push(target, zone(origin, "a 300 IN A 192.0.2.1\n"))
            polls = [p for m, p, _ in proxy.log if m == "GET" and "/change/" in p]
            return clock.waits, len(polls)
        finally:
            await target.close()
            proxy.stop()

    waits, polls = asyncio.run(run())
    if timeout == 30:  # polled after 2, 3 and 4.5 s: INSYNC at the fourth
        assert polls == 4 and waits == [2.0, 3.0, 4.5]
    else:  # still PENDING past 3 s: the third poll is the last
        assert polls == 3 and waits == [2.0, 3.0]


def test_alias_records_are_left_alone_and_never_overwritten(moto: str) -> None:
    origin = dns.name.from_text("alias.example.test.")

    async def run() -> None:
        target = make_target(moto)
        try:
            await push(target, zone(origin, "a 300 IN A 192.0.2.1\n"))
            held = await target.read(origin)
            assert held is not None
            alias = (
                f'<?xml version="1.0"?><ChangeResourceRecordSetsRequest xmlns="{route53.XMLNS}">'
                "<ChangeBatch><Changes><Change><Action>CREATE</Action><ResourceRecordSet>"
                "<Name>www.alias.example.test.</Name><Type>A</Type><AliasTarget>"
                f"<HostedZoneId>{held.state.zone_id}</HostedZoneId>"
                "<DNSName>a.alias.example.test.</DNSName><EvaluateTargetHealth>false"
                "</EvaluateTargetHealth></AliasTarget></ResourceRecordSet></Change></Changes>"
                "</ChangeBatch></ChangeResourceRecordSetsRequest>"
            )
            await target.call(
                "POST",
                f"{route53.API}/hostedzone/{held.state.zone_id}/rrset/",
                data=alias.encode(),
            )
            held = await target.read(origin)
            assert held is not None
            www = (dns.name.from_text("www", origin), dns.rdatatype.A)
            assert www in held.state.special and www not in held.data.rrsets
            clash = zone(origin, "a 300 IN A 192.0.2.1\nwww 300 IN A 192.0.2.80\n")
            plan = plan_for(target, clash, held)
            with pytest.raises(
                TargetRejectedError, match=r"www\.alias\.example\.test\. A is an alias"
            ):
                await target.apply(plan, held.state)
            # A push that leaves it out leaves it there.
            await push(target, zone(origin, "a 300 IN A 192.0.2.2\n"))
            held = await target.read(origin)
            assert held is not None and www in held.state.special
        finally:
            await target.close()

    asyncio.run(run())


def test_a_storm_that_does_not_end_is_reported_as_rate_limited(moto: str) -> None:
    origin = dns.name.from_text("storm.example.test.")

    async def run() -> None:
        proxy = Route53Faults(moto)
        proxy.start()
        target = make_target(proxy.url)
        try:
            proxy.refuse("Throttling", count=100)
            with pytest.raises(TargetRateLimitedError, match="Throttling"):
                await target.read(origin)
        finally:
            await target.close()
            proxy.stop()

    asyncio.run(run())


def test_credentials_never_logged(moto: str, caplog: pytest.LogCaptureFixture) -> None:
    origin = dns.name.from_text("creds.example.test.")
    caplog.set_level(logging.DEBUG)

    async def run() -> list[str]:
        proxy = Route53Faults(moto)
        proxy.start()
        target = make_target(proxy.url)
        errors: list[str] = []
        try:
            proxy.refuse("Throttling", count=2)
            await push(target, zone(origin, "a 300 IN A 192.0.2.1\n"))
            proxy.inject("500", count=1, method="POST")
            try:
                await push(target, zone(origin, "a 300 IN A 192.0.2.2\n"))
            except Exception as exc:
                errors.append(str(exc))
            # A hosted zone that is not there: refused with Route 53's message.
            bad = Item("CREATE", "a.creds.example.test.", "A", 300, ("192.0.2.2",))
            try:
                await target.call(
                    "POST",
                    f"{route53.API}/hostedzone/ZNOSUCHZONE0/rrset/",
                    data=route53.change_batch([bad], "bad"),
                )
            except Exception as exc:
                errors.append(str(exc))
        finally:
            await target.close()
            proxy.stop()
        return errors

    errors = asyncio.run(run())
    assert len(errors) == 2 and "HTTP 500" in errors[0]
    assert "NoSuchHostedZone" in errors[1] and "ZNOSUCHZONE0" in errors[1], errors[1]
    text = "\n".join([r.getMessage() for r in caplog.records] + errors)
    assert "ChangeResourceRecordSets" in text or "rrset" in text  # the requests were logged
    for secret in (SECRET, KEY_ID):
        assert secret not in text
    assert "Signature=" not in text


def test_settings_in_a_real_config_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text(SECRET + "\n")
    key_file.chmod(0o600)
    section = {
        "type": "route53",
        "access-key-id-env": "R53_KEY_ID",
        "secret-access-key-file": str(key_file),
        "endpoint": "http://127.0.0.1:5000",
    }
    settings = parse_settings("r53", section, TargetContext({}, None, ENV, tmp_path / "z.toml"))
    assert settings.credentials.secret_access_key == SECRET
    assert SECRET not in repr(settings)


def test_requests_are_signed_with_sigv4_for_route53() -> None:
    # moto does not check signatures of Route 53 requests (with its IAM access control on,
    # it refuses botocore's own), so the signature is recomputed here from the published
    # algorithm (AWS General Reference, Signature Version 4): scope us-east-1/route53.
    creds = route53.Credentials(KEY_ID, SECRET, "session-token-1")
    sign = route53.sigv4_signer(creds)
    url = "https://route53.amazonaws.com/2013-04-01/hostedzonesbyname?maxitems=100&dnsname=a.b."
    body = b"<x/>"
    headers = sign("POST", url, {"Content-Type": "text/xml"}, body)
    when = headers["X-Amz-Date"]
    assert headers["X-Amz-Security-Token"] == "session-token-1"
    auth = headers["Authorization"]
    scope = f"{when[:8]}/us-east-1/route53/aws4_request"
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{scope}, ")
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" in signed and "x-amz-date" in signed
    values = {
        "content-type": "text/xml",
        "host": "route53.amazonaws.com",
        "x-amz-date": when,
        "x-amz-security-token": "session-token-1",
    }
    canonical = "\n".join(
        [
            "POST",
            "/2013-04-01/hostedzonesbyname",
            "dnsname=a.b.&maxitems=100",  # sorted by name
            *(f"{h}:{values[h]}" for h in signed),
            "",
            ";".join(signed),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", when, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + SECRET).encode()
    for part in (when[:8], "us-east-1", "route53", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    assert auth.endswith(f"Signature={expected}")


@pytest.mark.external  # pdns_server
def test_route53_to_the_internal_zone_to_cloudflare_and_pdns(moto: str, tmp_path: Path) -> None:
    # The migration path: a zone read from Route 53 (moto) becomes the internal zone, which
    # is pushed to the Cloudflare emulator and a real pdns; all three then hold the same
    # RRsets, each in its own terms (normalize).
    from sync.providers.cloudflare import cloudflare_from_config
    from sync.providers.powerdns import powerdns_from_config
    from tests.emulators.cloudflare import CloudflareEmulator
    from tests.pdns import PdnsServer

    origin = dns.name.from_text("crossing.example.test.")
    desired = zone(origin, RICH)
    token, account = "cf-token-route53-crossing-0123", "0123456789abcdef0123456789abcdef"

    async def run(cf_url: str, pdns: PdnsServer) -> None:
        r53 = make_target(moto)
        env = {"CF": token, "PDNS": pdns.api_key}
        cf = cloudflare_from_config(
            "cf",
            {"endpoint": cf_url, "api-token-env": "CF", "account-id": account},
            ctx(env),
        )
        pd = powerdns_from_config(
            "pdns",
            {"url": pdns.api_url, "api-key-env": "PDNS", "signed-zones": "refuse"},
            ctx(env),
        )
        targets: list[RecordTarget[Any]] = [cf, pd]
        try:
            await push(r53, desired)
            held = await r53.read(origin)
            assert held is not None
            # The internal zone: what Route 53 serves, with our SOA and NS at the apex.
            apex = [desired.rrsets[(origin, t)] for t in (dns.rdatatype.SOA, dns.rdatatype.NS)]
            internal = ZoneData.build(origin, [*ours(held.data, r53).values(), *apex])
            assert ours(internal, r53) == dict(r53.normalize(desired).data.rrsets)
            holds = {"route53": ours(held.data, r53)}
            for target in targets:
                await push(target, internal)
                back = await target.read(origin)
                assert back is not None
                mine = ours(back.data, target)
                want = target.normalize(internal).data
                assert {k: r for k, r in mine.items() if k in want.rrsets} == {
                    k: r
                    for k, r in want.rrsets.items()
                    if not target.capabilities.provider_owned(k, origin)
                }, target.name
                holds[target.name] = mine
            # Every RRset two of them hold, they hold alike.
            common = set.intersection(*(set(h) for h in holds.values()))
            assert len(common) >= 20, sorted(map(str, common))
            for key in common:
                versions = {name: h[key] for name, h in holds.items()}
                first = versions["route53"]
                assert all(r.same_data(first) for r in versions.values()), versions
        finally:
            for t in (r53, *targets):
                await t.close()

    emulator = CloudflareEmulator({token: account}).start()
    try:
        with PdnsServer(tmp_path / "pdns") as pdns:
            asyncio.run(run(emulator.url, pdns))
    finally:
        emulator.stop()


def test_zone_import_from_route53(moto: str, tmp_path: Path) -> None:
    # Migration in: `zonefan zone import --from-target` reads the hosted zone through this
    # target (the product path: config file, credentials from the environment) into the
    # store; what the store exports is what Route 53 serves, with Route 53's own NS.
    import subprocess
    import sys

    from tests.servers import _clean_env

    origin = dns.name.from_text("import.example.test.")
    desired = zone(origin, RICH)

    async def seed() -> list[dns.name.Name]:
        target = make_target(moto)
        try:
            await push(target, desired)
            return await target.nameservers(origin)
        finally:
            await target.close()

    servers = asyncio.run(seed())
    config = tmp_path / "sync.toml"
    config.write_text(
        f'state = "{tmp_path / "sync.db"}"\n[primary]\naddress = "127.0.0.1:53"\n'
        f'zones = ["{origin}"]\n\n[target.r53]\ntype = "route53"\nendpoint = "{moto}"\n',
        encoding="utf-8",
    )
    env = {**_clean_env(), "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}

    def zonefan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zonefan.cli", "--db", str(tmp_path / "z.db"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=env,
            check=False,
        )

    done = zonefan("zone", "import", "--from-target", "r53", str(origin), "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stderr + done.stdout
    exported = zonefan("zone", "export", str(origin))
    assert exported.returncode == 0, exported.stderr
    got = ZoneData.from_text(exported.stdout, origin)
    ns = got.apex_ns()
    assert ns is not None and sorted(getattr(r, "target") for r in ns.rdatas) == servers  # noqa: B009
    assert got.get(origin, dns.rdatatype.SOA) is not None
    apex = {(origin, dns.rdatatype.SOA), (origin, dns.rdatatype.NS)}
    want = {k: r for k, r in desired.rrsets.items() if k not in apex}
    assert {k: r for k, r in got.rrsets.items() if k not in apex} == want


# -- the provider contract -----------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
def test_route53_meets_the_contract(moto: str, check: str) -> None:
    # 1,200 hosts: more records than one ChangeBatch takes and than one page lists.
    contract = Contract(
        make_target=make_target,
        upstream=moto,
        zone=dns.name.from_text("contract.test."),
        secrets=(SECRET, KEY_ID),
        hosts=1200,
        fault_method="POST",
    )
    asyncio.run(run_check(contract, check))
