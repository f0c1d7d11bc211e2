"""The deSEC target against a strict emulator of deSEC's API (tests/emulators/desec.py): the
provider contract, deSEC's own rules (minimum TTL, the types it keeps, atomic bulk
writes, cursor pagination, per-domain write throttles), its settings, and the emulator
refusing requests the reference says are wrong.

Time is the emulator's clock: the client's waits (Retry-After, backoff, the account's hold)
advance it, so throttles are proved without sleeping."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dns.name
import dns.rdatatype
import pytest

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import CapabilityError, SyncConfigError, SyncError, TargetError
from sync.model import RRset, ZoneData
from sync.plan import Action, Safety
from sync.providers import build_target
from sync.providers.desec import (
    CAPABILITIES,
    DesecTarget,
    batches,
    desec_from_config,
    rrset_item,
)
from sync.providers.http import Account
from sync.providers.testkit.contract import CHECKS, Contract, run_check
from sync.providers.testkit.memory import StaticSource
from sync.settings import TargetContext
from sync.state import SyncState
from tests.emulators.desec import DesecEmulator, iter_pages

pytestmark = pytest.mark.timeout(120)

TOKEN = "tok-desec-5e3c1f0a9b7d"  # distinctive: searched for in every log line
ZONE = dns.name.from_text("example.test.")
NAME = "desec"


@pytest.fixture
def emu() -> Iterator[DesecEmulator]:
    emulator = DesecEmulator([TOKEN]).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def root(emu: DesecEmulator) -> str:
    return f"http://127.0.0.1:{emu.port}"


def make_target(emu: DesecEmulator, base: str | None = None, **kw: Any) -> DesecTarget:
    """A target on the emulator (or a proxy in front of it at ``base``), waiting on the
    emulator's clock."""
    clock = emu.clock
    return DesecTarget(
        NAME,
        kw.pop("token", TOKEN),
        endpoint=(base or root(emu)) + "/api/v1",
        account=Account(CAPABILITIES.budget, clock=clock.now, sleep=clock.sleep),
        sleep=clock.sleep,
        **kw,
    )


def zone_data(serial: int, hosts: int = 5, ttl: int = 3600, extra: str = "") -> ZoneData:
    text = [
        f"@ 3600 IN SOA ns1.example.net. hostmaster.example.test. {serial} 7200 3600 1209600 300",
        "@ 3600 IN NS ns1.desec.io.",
        "@ 3600 IN NS ns2.desec.org.",
        "@ 3600 IN NS ns1.example.net.",
        "@ 3600 IN MX 10 mail",
        "mail 3600 IN A 192.0.2.25",
    ]
    text += [f"h{i} {ttl} IN A 192.0.2.{i % 250 + 1}" for i in range(hosts)]
    return ZoneData.from_text("\n".join(text) + "\n" + extra, ZONE)


class Sidecar:
    """An engine pushing ZONE to one deSEC target."""

    def __init__(self, target: DesecTarget, tmp: Path, data: ZoneData) -> None:
        self.target = target
        self.source = StaticSource(data)
        self.state = SyncState(tmp / "state.db")
        self.engine = SyncEngine(
            self.state,
            self.source,
            [ZONE],
            {NAME: TargetSpec(target, safety=Safety(max_share=1.0))},
            EngineSettings(retry_base=0.01, retry_max=0.05),
        )

    async def push(self, data: ZoneData) -> str:
        self.source.current = data
        await self.engine.refresh_zone(ZONE)
        return (await self.engine.push(NAME, ZONE)).detail

    async def converge(self, data: ZoneData, attempts: int = 30) -> list[str]:
        self.source.current = data
        await self.engine.refresh_zone(ZONE)
        errors: list[str] = []
        for _ in range(attempts):
            try:
                await self.engine.push(NAME, ZONE)
                return errors
            except TargetError as exc:
                errors.append(str(exc))
                if exc.retry_after is not None:  # the engine holds the target this long
                    await self.target._client.sleep(exc.retry_after)
            except SyncError as exc:
                errors.append(str(exc))
        raise AssertionError(f"no convergence after {attempts} attempts: {errors[-3:]}")

    async def close(self) -> None:
        await self.engine.close_targets()
        self.state.close()


async def held(emu: DesecEmulator) -> ZoneData:
    target = make_target(emu)
    try:
        got = await target.read(ZONE)
    finally:
        await target.close()
    assert got is not None
    return got.data


# -- the contract ------------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
def test_desec_meets_the_contract(emu: DesecEmulator, check: str) -> None:
    contract = Contract(
        # Batches of 250 RRsets: a push of the large zone takes several requests, so the
        # kit's faults land in the middle of one.
        make_target=lambda base: make_target(emu, base, batch_size=250),
        upstream=root(emu),
        zone=dns.name.from_text("contract.test."),
        secrets=(TOKEN,),
        fault_method="PATCH",
        hosts=700,  # more RRsets than one page (500)
    )
    asyncio.run(run_check(contract, check))


# -- pushes ------------------------------------------------------------------------------


def test_create_change_delete_and_noop(emu: DesecEmulator, tmp_path: Path) -> None:
    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
        try:
            detail = await sidecar.push(zone_data(1))
            assert "to create" in detail
            # The apex NS set is ours: the zone's replaces the one deSEC made.
            _, ns = emu.rrsets("example.test")[("", "NS")]
            assert sorted(ns) == ["ns1.desec.io.", "ns1.example.net.", "ns2.desec.org."]
            # The SOA is deSEC's: never sent.
            assert all(b'"SOA"' not in e.body for e in emu.requests("PATCH"))
            v2 = zone_data(2, hosts=3, extra='new 3600 IN TXT "added"\nh0 3600 IN A 198.51.100.7\n')
            sidecar.source.current = v2
            await sidecar.engine.refresh_zone(ZONE)
            plan = await sidecar.engine.plan(NAME, ZONE)
            assert plan is not None
            assert {(c.action, c.name.relativize(ZONE).to_text()) for c in plan.changes} == {
                (Action.UPDATE, "h0"),
                (Action.DELETE, "h3"),
                (Action.DELETE, "h4"),
                (Action.CREATE, "new"),
            }
            patches = len(emu.requests("PATCH"))
            await sidecar.push(v2)
            assert len(emu.requests("PATCH")) == patches + 1  # one atomic request
            rrsets = emu.rrsets("example.test")
            assert sorted(rrsets[("h0", "A")][1]) == ["192.0.2.1", "198.51.100.7"]
            assert rrsets[("new", "TXT")] == (3600, ['"added"'])
            assert ("h3", "A") not in rrsets and ("h4", "A") not in rrsets
            # Read afresh, nothing is left to do.
            fresh = make_target(emu)
            engine = SyncEngine(sidecar.state, sidecar.source, [ZONE], {NAME: TargetSpec(fresh)})
            try:
                await engine.refresh_zone(ZONE)
                again = await engine.plan(NAME, ZONE)
                assert again is not None
                assert again.empty, again.lines()
            finally:
                await fresh.close()
        finally:
            await sidecar.close()

    asyncio.run(main())


def test_ttl_below_the_domain_minimum_is_raised_and_reported(
    emu: DesecEmulator, tmp_path: Path
) -> None:
    emu.add_domain("example.test", minimum_ttl=7200)

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1, ttl=300))
        try:
            await sidecar.push(zone_data(1, hosts=2, ttl=300))
            sidecar.source.current = zone_data(2, hosts=3, ttl=300)
            await sidecar.engine.refresh_zone(ZONE)
            plan = await sidecar.engine.plan(NAME, ZONE)
            assert plan is not None
            h2 = (dns.name.from_text("h2", ZONE), dns.rdatatype.A)
            assert any(t.key == h2 and t.wanted == 300 and t.held == 7200 for t in plan.ttls)
        finally:
            await sidecar.close()
        assert emu.rrsets("example.test")[("h0", "A")] == (7200, ["192.0.2.1"])
        assert all(ttl >= 7200 for ttl, _ in emu.rrsets("example.test").values() if ttl != 3600)

    asyncio.run(main())


def test_a_new_domain_with_a_higher_minimum_is_planned_again(
    tmp_path: Path,
) -> None:
    """deSEC may give a new domain a minimum above the documented default: the first
    attempt stops before any write, the next plans with the domain's own minimum."""
    emu = DesecEmulator([TOKEN], minimum_ttl=7200).start()
    try:

        async def main() -> None:
            sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
            try:
                errors = await sidecar.converge(zone_data(1))
                assert errors and "minimum TTL is 7200" in errors[0]
            finally:
                await sidecar.close()

        asyncio.run(main())
        assert emu.rrsets("example.test")[("mail", "A")] == (7200, ["192.0.2.25"])
        assert [e.status for e in emu.requests("PATCH")] == [200]
    finally:
        emu.stop()


def test_foreign_records_and_desec_keys_are_left_alone(emu: DesecEmulator, tmp_path: Path) -> None:
    domain = emu.add_domain("example.test")
    # A domain kept at deSEC already, its apex NS set as the zone has it (a changed apex
    # NS set of a served zone is refused unless forced).
    ours = ["ns1.desec.io.", "ns2.desec.org.", "ns1.example.net."]
    emu.set_rrset("example.test", "", "NS", 3600, ours)
    emu.set_rrset("example.test", "theirs", "TXT", 3600, ['"not ours"'])
    # An extra DNSKEY someone published for a multi-signer setup (DNSKEY caveat).
    key = domain.keys[0]["dnskey"]
    emu.set_rrset("example.test", "", "DNSKEY", 3600, [key])

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
        try:
            await sidecar.push(zone_data(1))
            await sidecar.push(zone_data(2, hosts=1))
            plan = await sidecar.engine.plan(NAME, ZONE)
            assert plan is not None
            lines = "\n".join(plan.lines())
            assert "theirs TXT not managed by zonefan" in lines
        finally:
            await sidecar.close()

    asyncio.run(main())
    rrsets = emu.rrsets("example.test")
    assert rrsets[("theirs", "TXT")] == (3600, ['"not ours"'])
    assert ("", "DNSKEY") in rrsets
    assert emu.applied.get(("example.test", "theirs", "TXT")) is None


def test_types_desec_keeps_are_skipped_and_reported(emu: DesecEmulator, tmp_path: Path) -> None:
    extra = "bad\\032owner 3600 IN A 192.0.2.9\n@ 3600 IN ZONEMD 1 1 1 " + "ab" * 48 + "\n"

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1, extra=extra))
        try:
            await sidecar.engine.refresh_zone(ZONE)
            plan = await sidecar.engine.plan(NAME, ZONE)
            assert plan is not None
            skipped = {(n.relativize(ZONE).to_text(), t) for n, t in plan.unsupported}
            assert skipped == {("bad\\032owner", dns.rdatatype.A), ("@", dns.rdatatype.ZONEMD)}
            assert any("not supported by the target" in line for line in plan.lines())
            await sidecar.push(zone_data(1, extra=extra))
        finally:
            await sidecar.close()

    asyncio.run(main())
    assert ("mail", "A") in emu.rrsets("example.test")


def test_signed_zone_is_refused(emu: DesecEmulator, tmp_path: Path) -> None:
    signed = zone_data(1, extra="@ 3600 IN DNSKEY 257 3 13 " + "A" * 88 + "\n")
    assert signed.signed

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, signed)
        try:
            await sidecar.engine.refresh_zone(ZONE)
            with pytest.raises(CapabilityError, match="desec"):
                await sidecar.engine.push(NAME, ZONE)
        finally:
            await sidecar.close()

    asyncio.run(main())
    assert not emu.requests("PATCH") and not emu.requests("POST")


def test_large_push_pages_and_batches(emu: DesecEmulator, tmp_path: Path) -> None:
    async def main() -> None:
        target = make_target(emu, batch_size=400)
        sidecar = Sidecar(target, tmp_path, zone_data(1, hosts=1200))
        try:
            await sidecar.push(zone_data(1, hosts=1200))
            got = await held(emu)
            assert len(got.rrsets) == 1203  # apex NS, MX, mail and the hosts
        finally:
            await sidecar.close()

    asyncio.run(main())
    # 1203 RRsets by 400; the per-domain limit of 2/s answered 429 to the rest, waited out.
    statuses = [e.status for e in emu.requests("PATCH")]
    assert statuses.count(200) == 4 and set(statuses) <= {200, 429}
    pages = [e for e in emu.requests("GET") if e.path.endswith("/rrsets/")]
    assert len(pages) == 3 and all("cursor=" in e.query for e in pages)


def test_storm_and_lost_replies_converge_nothing_lost_or_applied_twice(
    emu: DesecEmulator, tmp_path: Path
) -> None:
    """The documented write throttles (2/s, 15/min per domain) answer 429 through a push of
    many requests, a 500 arrives after a write was carried out, another before one: the
    push converges, each RRset written exactly once."""

    async def main() -> None:
        target = make_target(emu, batch_size=40)
        data = zone_data(1, hosts=1000)
        sidecar = Sidecar(target, tmp_path, data)
        emu.inject(500, method="PATCH", after_apply=True)  # the reply lost, the write made
        emu.inject(502, method="PATCH")  # refused before anything happened
        try:
            errors = await sidecar.converge(data, attempts=60)
            assert any("HTTP 500" in e for e in errors) and any("HTTP 502" in e for e in errors)
            assert any("429" in e for e in errors)
            assert (await sidecar.push(data)) == "already current"
        finally:
            await sidecar.close()

    asyncio.run(main())
    statuses = [e.status for e in emu.requests("PATCH")]
    assert statuses.count(429) >= 10, statuses
    rrsets = emu.rrsets("example.test")
    assert len(rrsets) == 1003
    written = {k: n for k, n in emu.applied.items() if k[0] == "example.test"}
    assert len(written) == 1003 and set(written.values()) == {1}, sorted(
        (n, k) for k, n in written.items() if n != 1
    )[:5]


def test_untouched_domain_reads_as_absent_and_is_taken_over(
    emu: DesecEmulator, tmp_path: Path
) -> None:
    """A domain holding only the NS deSEC made with it (a push that created it and then
    failed) is planned as a creation, not as a change of a served apex NS."""
    emu.add_domain("example.test")

    async def main() -> None:
        target = make_target(emu)
        assert await target.read(ZONE) is None
        await target.close()
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
        try:
            assert "to create" in await sidecar.push(zone_data(1))
        finally:
            await sidecar.close()

    asyncio.run(main())
    posts = emu.requests("POST")
    assert [e.status for e in posts] == [400]  # it exists: taken over as it is
    assert ("mail", "A") in emu.rrsets("example.test")


def test_a_zone_of_only_desecs_nameservers_is_current_once_pushed(
    emu: DesecEmulator, tmp_path: Path
) -> None:
    """The zone itself lists just deSEC's NS: once written it is ours (its ``touched``
    moved), so the next push has nothing to do."""
    bare = ZoneData.from_text(
        "@ 3600 IN SOA ns1.desec.io. hostmaster.example.test. 1 7200 3600 1209600 300\n"
        "@ 3600 IN NS ns1.desec.io.\n@ 3600 IN NS ns2.desec.org.\n",
        ZONE,
    )

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, bare)
        try:
            assert "to create" in await sidecar.push(bare)
        finally:
            await sidecar.close()
        sidecar = Sidecar(make_target(emu), tmp_path, bare)  # no memory of the push
        try:
            assert await sidecar.push(bare) == "already current"
        finally:
            await sidecar.close()

    asyncio.run(main())
    assert [e.status for e in emu.requests("POST")] == [201]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"taken": ["example.test"]}, "HTTP 400: name: This domain name conflicts"),
        ({"max_domains": 0}, "HTTP 403: You reached the maximum number of domains"),
    ],
)
def test_a_domain_desec_will_not_create_is_refused(
    tmp_path: Path, options: dict[str, Any], why: str
) -> None:
    emu = DesecEmulator([TOKEN], **options).start()
    try:

        async def main() -> None:
            sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
            try:
                await sidecar.engine.refresh_zone(ZONE)
                with pytest.raises(SyncError) as refused:
                    await sidecar.engine.push(NAME, ZONE)
                assert "refused to create domain example.test" in str(refused.value)
                assert why in str(refused.value)
            finally:
                await sidecar.close()

        asyncio.run(main())
    finally:
        emu.stop()
    assert not emu.requests("PATCH")  # nothing written anywhere


def test_minimum_ttl_is_learnt_at_open(emu: DesecEmulator) -> None:
    emu.add_domain("example.test", minimum_ttl=7200)

    async def main() -> None:
        target = make_target(emu)
        try:
            assert target.normalize(zone_data(1, ttl=300)).ttls[0].held == 3600  # documented
            await target.open()
            ttls = target.normalize(zone_data(1, ttl=300)).ttls
            assert ttls and {t.held for t in ttls} == {7200}
        finally:
            await target.close()

    asyncio.run(main())


def test_requests_stay_below_the_front_end_body_limit(emu: DesecEmulator, tmp_path: Path) -> None:
    """Long TXT RRsets: more than 1 MB of them, sent in several requests under nginx's
    default limit (which the emulator enforces with 413)."""
    text = "".join(f'long{i} 3600 IN TXT "{"x" * 250}" "{"y" * 250}"\n' for i in range(2000))

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1, extra=text))
        try:
            await sidecar.converge(zone_data(1, extra=text))
        finally:
            await sidecar.close()

    asyncio.run(main())
    sent = [e for e in emu.requests("PATCH") if e.status == 200]
    assert len(sent) == 2 and all(len(e.body) <= 900_000 for e in sent)
    assert sum(len(json.loads(e.body)) for e in sent) == 2000 + 8
    assert len([k for k in emu.rrsets("example.test") if k[0].startswith("long")]) == 2000


def test_a_refused_change_names_the_rrset(emu: DesecEmulator, tmp_path: Path) -> None:
    """A CNAME where someone else keeps an A: deSEC refuses the whole request; the error
    says which RRset and why, and nothing of the request was applied."""
    emu.add_domain("example.test")
    ours = ["ns1.desec.io.", "ns2.desec.org.", "ns1.example.net."]
    emu.set_rrset("example.test", "", "NS", 3600, ours)
    emu.set_rrset("example.test", "www", "A", 3600, ["192.0.2.80"])
    data = zone_data(1, extra="www 3600 IN CNAME mail\n")

    async def main() -> None:
        sidecar = Sidecar(make_target(emu), tmp_path, data)
        try:
            await sidecar.engine.refresh_zone(ZONE)
            with pytest.raises(SyncError) as refused:
                await sidecar.engine.push(NAME, ZONE)
            message = str(refused.value)
            assert "HTTP 400" in message and "www CNAME" in message and "conflicting" in message
        finally:
            await sidecar.close()

    asyncio.run(main())
    assert ("mail", "A") not in emu.rrsets("example.test")  # atomic: none of it


def test_nameservers_and_keys(emu: DesecEmulator) -> None:
    domain = emu.add_domain("example.test")

    async def main() -> None:
        target = make_target(emu)
        try:
            ns = await target.nameservers(ZONE)
            assert [n.to_text() for n in ns] == ["ns1.desec.io.", "ns2.desec.org."]
            keys = await target.dnskeys(ZONE)
            assert [k.to_text() for k in keys] == [domain.keys[0]["dnskey"]]
        finally:
            await target.close()

    asyncio.run(main())


# -- credentials and settings ------------------------------------------------------------


def test_token_never_logged_and_bad_token_names_the_setting(
    emu: DesecEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> list[str]:
        messages = []
        bad = make_target(emu, token="wrong-" + TOKEN)
        with pytest.raises(SyncConfigError) as refused:
            await bad.open()
        messages.append(str(refused.value))
        assert refused.value.setting == "target.desec.api-token-env"
        await bad.close()
        sidecar = Sidecar(make_target(emu), tmp_path, zone_data(1))
        emu.inject(500, method="PATCH")
        try:
            messages += await sidecar.converge(zone_data(1))
        finally:
            await sidecar.close()
        return messages

    messages = asyncio.run(main())
    assert caplog.records and any("PATCH" in r.getMessage() for r in caplog.records)
    text = "\n".join([r.getMessage() for r in caplog.records] + messages)
    assert TOKEN not in text
    assert all(e.authorization in (f"Token {TOKEN}", f"Token wrong-{TOKEN}") for e in emu.log)


def ctx(**env: str) -> TargetContext:
    return TargetContext({}, None, env)


@pytest.mark.parametrize(
    ("section", "setting", "reason"),
    [
        ({"api-token": TOKEN}, "target.d.api-token", "api-token-env"),
        ({"api-token-env": "T", "api-key-env": "T"}, "target.d.api-key-env", "unknown"),
        ({}, "target.d.api-token-env", "required"),
        ({"api-token-env": "MISSING"}, "target.d.api-token-env", "MISSING"),
        ({"api-token-env": "T", "endpoint": "ftp://desec.io"}, "target.d.endpoint", "URL"),
        ({"api-token-env": "T", "endpoint": 5}, "target.d.endpoint", "URL"),
        ({"api-token-env": "T", "batch-size": 0}, "target.d.batch-size", "positive"),
        ({"api-token-env": "T", "timeout": -1}, "target.d.timeout", ""),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    section: dict[str, Any], setting: str, reason: str
) -> None:
    with pytest.raises(SyncConfigError) as refused:
        desec_from_config("d", {"type": "desec", **section}, ctx(T=TOKEN))
    assert refused.value.setting == setting
    assert reason in str(refused.value)
    assert TOKEN not in str(refused.value)


def test_registered_and_configured(emu: DesecEmulator) -> None:
    section = {"type": "desec", "api-token-env": "T", "endpoint": root(emu) + "/api/v1"}
    target = build_target("d", section, ctx(T=TOKEN))
    assert isinstance(target, DesecTarget)
    assert target.capabilities.ttl_min == 3600 and target.capabilities.atomic
    asyncio.run(target.open())
    asyncio.run(target.close())
    default = desec_from_config("d", {"type": "desec", "api-token-env": "T"}, ctx(T=TOKEN))
    assert default._client.base_url == "https://desec.io/api/v1"


# -- the codec ---------------------------------------------------------------------------


def test_items_are_what_the_reference_shows() -> None:
    rrset = RRset.from_text("_443._tcp.WWW", "TLSA", 3600, ["3 1 1 " + "AB" * 32], ZONE)
    assert rrset_item(rrset, ZONE) == {
        "subname": "_443._tcp.www",
        "type": "TLSA",
        "ttl": 3600,
        "records": ["3 1 1 " + "ab" * 32],
    }
    apex = RRset.from_text("@", "MX", 3600, ["10 mail"], ZONE)
    assert rrset_item(apex, ZONE)["subname"] == ""
    assert rrset_item(apex, ZONE)["records"] == ["10 mail.example.test."]
    txt = RRset.from_text("t", "TXT", 3600, ['"a \\"b\\"" "c"'], ZONE)
    assert rrset_item(txt, ZONE)["records"] == ['"a \\"b\\"" "c"']
    items = [{"n": "x" * 100} for _ in range(10)]
    assert [len(b) for b in batches(items, 4, 10**6)] == [4, 4, 2]
    assert [len(b) for b in batches(items, 100, 250)] == [2, 2, 2, 2, 2]


# -- the emulator refuses what the reference says is wrong --------------------------------


async def call(
    emu: DesecEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    ctype: str = "application/json",
    wait: float = 0.0,
) -> tuple[int, Any, dict[str, str]]:
    """One request; ``wait`` seconds pass on the emulator's clock before it."""
    emu.clock.advance(wait)
    headers = {} if token is None else {"Authorization": f"Token {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = ctype
        data = json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emu.url + path, data=data, headers=headers) as resp,
    ):
        raw = await resp.read()
        return resp.status, (json.loads(raw) if raw else None), dict(resp.headers)


def test_emulator_authentication(emu: DesecEmulator) -> None:
    async def main() -> None:
        assert (await call(emu, "GET", "/domains/", token=None))[:2] == (
            401,
            {"detail": "Authentication credentials were not provided."},
        )
        assert (await call(emu, "GET", "/domains/", token="nope"))[:2] == (
            401,
            {"detail": "Invalid token."},
        )
        assert (await call(emu, "GET", "/domains/"))[:2] == (200, [])
        assert (await call(emu, "GET", "/domains/example.test/"))[:2] == (
            404,
            {"detail": "Not found."},
        )

    asyncio.run(main())


def test_emulator_bulk_is_validated_per_item_and_atomic(emu: DesecEmulator) -> None:
    emu.add_domain("example.test")
    path = "/domains/example.test/rrsets/"

    async def main() -> None:
        body = [
            {"subname": "ok", "type": "A", "ttl": 3600, "records": ["192.0.2.1"]},
            {"subname": "low", "type": "A", "ttl": 60, "records": ["192.0.2.1"]},
            {"subname": "case", "type": "a", "ttl": 3600, "records": ["192.0.2.1"]},
            {"subname": "", "type": "SOA", "ttl": 3600, "records": ["a. b. 1 2 3 4 5"]},
            {"subname": "rel", "type": "MX", "ttl": 3600, "records": ["10 mail"]},
            {"subname": "Upper", "type": "A", "ttl": 3600, "records": ["192.0.2.1"]},
            {"type": "A", "ttl": 3600, "records": ["192.0.2.1"]},
            {"subname": "new", "type": "AAAA", "records": ["2001:db8::1"]},
            {"subname": "sig", "type": "RRSIG", "records": []},
            {"subname": "long", "type": "A", "ttl": 86401, "records": ["192.0.2.1"]},
            {"subname": "str", "type": "A", "ttl": "3600", "records": ["192.0.2.1"]},
        ]
        status, errors, _ = await call(emu, "PATCH", path, body, wait=60)
        assert status == 400 and len(errors) == len(body)
        assert errors[0] == {}
        assert "greater than or equal to 3600" in errors[1]["ttl"][0]
        assert "uppercase" in errors[2]["type"][0]
        assert "SOA" in errors[3]["type"][0]
        assert "records" in errors[4]
        assert "subname" in errors[5]
        assert errors[6] == {"subname": ["This field is required."]}
        assert set(errors[7]) == {"ttl"}  # creating by PATCH needs every field
        assert "type" in errors[8]
        assert "less than or equal to 86400" in errors[9]["ttl"][0]
        assert "ttl" in errors[10]
        assert ("ok", "A") not in emu.rrsets("example.test")  # all or nothing
        # Duplicates within one request, CNAME beside other data.
        dup = [
            {"subname": "x", "type": "A", "ttl": 3600, "records": ["192.0.2.1"]},
            {"subname": "x", "type": "A", "ttl": 3600, "records": ["192.0.2.2"]},
            {"subname": "x", "type": "CNAME", "ttl": 3600, "records": ["a.example."]},
        ]
        status, errors, _ = await call(emu, "PATCH", path, dup[:2], wait=60)
        assert status == 400 and all("unique" in e["non_field_errors"][0] for e in errors)
        status, errors, _ = await call(emu, "PATCH", path, [dup[0], dup[2]], wait=60)
        assert status == 400 and all("CNAME" in e["non_field_errors"][0] for e in errors)
        # A dict where a list belongs, another media type, a method not emulated.
        assert (await call(emu, "PATCH", path, dup[0], wait=60))[0] == 400
        assert (await call(emu, "PATCH", path, [dup[0]], ctype="text/plain", wait=60))[0] == 415
        assert (await call(emu, "PUT", path, [{"subname": "y", "type": "A"}], wait=60))[0] == 400
        # Deleting and replacing at once: the CNAME is checked against the result.
        await call(emu, "PATCH", path, [dup[0]], wait=60)
        swap = [{"subname": "x", "type": "A", "records": []}, dup[2]]
        status, _, _ = await call(emu, "PATCH", path, swap, wait=60)
        assert status == 200
        assert emu.rrsets("example.test")[("x", "CNAME")] == (3600, ["a.example."])

    asyncio.run(main())


def test_emulator_paginates_with_cursors(emu: DesecEmulator) -> None:
    emu.add_domain("example.test")
    for i in range(1100):
        emu.set_rrset("example.test", f"h{i}", "A", 3600, ["192.0.2.1"])

    async def main() -> None:
        path = "/domains/example.test/rrsets/"
        status, body, headers = await call(emu, "GET", path)
        assert status == 400 and "Pagination required" in body["detail"]
        assert dict((r, u) for r, u in iter_pages(headers["Link"]))["first"].endswith("cursor=")
        seen: list[str] = []
        url = path + "?cursor="
        for _ in range(5):
            status, body, headers = await call(emu, "GET", url)
            assert status == 200 and len(body) <= 500
            seen += [r["subname"] for r in body]
            links = dict(iter_pages(headers.get("Link")))
            if "next" not in links:
                break
            url = path + "?" + links["next"].split("?", 1)[1]
        assert len(seen) == 1101 and len(set(seen)) == 1101
        assert seen[0] == "h1099"  # newest first
        assert (await call(emu, "GET", path + "?cursor=garbage"))[0] == 404

    asyncio.run(main())


def test_emulator_throttles_writes_per_domain(emu: DesecEmulator) -> None:
    emu.add_domain("example.test")
    emu.add_domain("other.test")
    item = [{"subname": "a", "type": "A", "ttl": 3600, "records": ["192.0.2.1"]}]

    async def main() -> None:
        path = "/domains/example.test/rrsets/"
        assert [(await call(emu, "PATCH", path, item))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await call(emu, "PATCH", path, item)
        assert status == 429 and headers["Retry-After"] == "1"
        assert "throttled" in body["detail"]
        # Another domain has budget of its own.
        assert (await call(emu, "PATCH", "/domains/other.test/rrsets/", item))[0] == 200
        emu.clock.advance(1)
        for _ in range(13):
            status, _, _ = await call(emu, "PATCH", path, item)
            assert status == 200
            emu.clock.advance(1)
        status, _, headers = await call(emu, "PATCH", path, item)  # 15 in the last minute
        assert status == 429 and 40 <= int(headers["Retry-After"]) <= 60
        emu.clock.advance(int(headers["Retry-After"]))
        assert (await call(emu, "PATCH", path, item))[0] == 200

    asyncio.run(main())
