"""The contract every record target meets, as checks any provider's tests run.

Each check drives the target through the sync engine (normalize, plan, safety, apply, read
back), with a :class:`~sync.providers.testkit.faults.FaultProxy` between the target and its
back end (a real server, moto, or an emulator written from the provider's reference), and
judges by what the back end holds afterwards, read through a fresh target:

- ``create_from_empty``: a zone the provider does not hold (or holds empty) is created
  whole, and reads back as pushed.
- ``change`` and ``delete``: a second serial adds, replaces and removes RRsets.
- ``noop_is_empty``: planning against a fresh read after a push finds nothing to do (the
  provider's representation is normalized, not re-pushed forever).
- ``round_trip``: a zone of every common type, long and quoted TXT included, reads back
  equal to what was pushed after normalize.
- ``unmanaged_left_alone``: an RRset someone else wrote there is neither changed nor
  deleted, and is reported as foreign.
- ``partial_failure_converges``: a push cut by a server error after its first request
  converges on the next attempt, with nothing lost or doubled.
- ``rate_limit_storm_converges``: a run of HTTP 429 answers in the middle of a push is
  waited out and the push converges.
- ``credentials_never_logged``: no credential appears in any log record or error, at
  debug level, through failures.

A provider's test module runs them as::

    @pytest.mark.parametrize("check", CHECKS)
    def test_contract(backend, check):
        asyncio.run(run_check(Contract(make_target=..., upstream=backend.url, zone=...), check))
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import SyncError
from sync.model import RRset, ZoneData
from sync.plan import Action, Change, Plan, Safety
from sync.providers.base import RecordTarget
from sync.providers.testkit.faults import FaultProxy
from sync.providers.testkit.memory import StaticSource
from sync.state import SyncState

CHECKS = (
    "create_from_empty",
    "change",
    "delete",
    "noop_is_empty",
    "round_trip",
    "unmanaged_left_alone",
    "partial_failure_converges",
    "rate_limit_storm_converges",
    "credentials_never_logged",
)
NAME = "contract"
_RUNS = itertools.count(1)


@dataclass
class Contract:
    """How to reach one provider's back end.

    ``make_target(endpoint)`` builds the target with its API at ``endpoint`` (the proxy's
    URL). ``zone`` is the base name: each check works in a zone of its own below it
    (``create-from-empty-1.<zone>``, ...). ``prepare(zone)``, when given, makes the zone
    exist, empty, at the back end (for providers whose targets do not create zones).
    ``secrets`` are the credential strings that must never be logged. ``hosts`` sets the
    size of the large zone (more RRsets than one request or one page carries)."""

    make_target: Callable[[str], RecordTarget[Any]]
    upstream: str
    zone: dns.name.Name
    secrets: Sequence[str] = ()
    prepare: Callable[[dns.name.Name], Awaitable[None]] | None = None
    hosts: int = 250
    fault_method: str | None = None  # the method faults hit (None: any request)


async def read_zone(target: RecordTarget[Any], zone: dns.name.Name) -> ZoneData | None:
    """What ``target`` holds of ``zone`` (its records only, not its state)."""
    held = await target.read(zone)
    return None if held is None else held.data


def contract_zone(origin: dns.name.Name, serial: int, hosts: int = 12) -> ZoneData:
    """A plain zone: SOA, apex NS, MX, TXT and ``hosts`` A records (h0...)."""
    text = [
        f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} {serial} 7200 3600 1209600 300",
        "@ 3600 IN NS ns1.example.net.",
        "@ 3600 IN NS ns2.example.org.",
        "@ 3600 IN MX 10 mail",
        '@ 3600 IN TXT "v=spf1 -all"',
        "mail 3600 IN A 192.0.2.25",
    ]
    text += [f"h{i} 3600 IN A 192.0.2.{i % 250 + 1}" for i in range(hosts)]
    return ZoneData.from_text("\n".join(text) + "\n", origin)


def rich_zone(origin: dns.name.Name, serial: int) -> ZoneData:
    """Every common type, TXT that needs quoting and splitting, a delegation."""
    long_txt = "x" * 300  # two character-strings on the wire (255 + 45)
    text = [
        f"@ 3600 IN SOA ns1.{origin} hostmaster.{origin} {serial} 7200 3600 1209600 300",
        "@ 3600 IN NS ns1.example.net.",
        "@ 3600 IN NS ns2.example.org.",
        "@ 300 IN A 192.0.2.1",
        "@ 300 IN AAAA 2001:db8::1",
        "@ 3600 IN MX 10 mail",
        "@ 3600 IN MX 20 mail2.example.net.",
        '@ 3600 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"',
        '@ 3600 IN CAA 0 issue "letsencrypt.org"',
        "www 300 IN CNAME @",
        "mail 3600 IN A 192.0.2.25",
        '_dmarc 3600 IN TXT "v=DMARC1; p=reject; rua=mailto:d@example.net"',
        f'long 3600 IN TXT "{long_txt[:255]}" "{long_txt[255:]}"',
        'quoted 3600 IN TXT "say \\"hi\\"; back\\\\slash" "second string"',
        "_sip._tcp 3600 IN SRV 10 60 5060 sip",
        "sip 3600 IN A 192.0.2.50",
        "sub 3600 IN NS ns1.sub",
        "ns1.sub 3600 IN A 192.0.2.53",
    ]
    return ZoneData.from_text("\n".join(text) + "\n", origin)


class _Run:
    """One check's engine, proxy and state."""

    def __init__(self, contract: Contract, zone: dns.name.Name, work: Path) -> None:
        self.contract = contract
        self.zone = zone
        self.proxy = FaultProxy(contract.upstream).start()
        self.target = contract.make_target(self.proxy.url)
        self.source = StaticSource(contract_zone(zone, 1))
        self.state = SyncState(work / "state.db")
        self.engine = SyncEngine(
            self.state,
            self.source,
            [zone],
            {NAME: TargetSpec(self.target, safety=Safety(max_share=1.0))},
            EngineSettings(retry_base=0.01, retry_max=0.05),
        )

    async def close(self) -> None:
        await self.engine.close_targets()
        self.state.close()
        self.proxy.stop()

    async def push(self, data: ZoneData) -> str:
        """Serve ``data`` from the primary and push it once; the engine's detail."""
        self.source.current = data
        await self.engine.refresh_zone(self.zone)
        outcome = await self.engine.push(NAME, self.zone)
        return outcome.detail

    async def converge(self, data: ZoneData, attempts: int = 6) -> list[str]:
        """Push until an attempt succeeds; the errors of the attempts before."""
        self.source.current = data
        await self.engine.refresh_zone(self.zone)
        errors: list[str] = []
        for _ in range(attempts):
            try:
                await self.engine.push(NAME, self.zone)
                return errors
            except SyncError as exc:
                errors.append(str(exc))
        raise AssertionError(f"no convergence after {attempts} attempts: {errors}")

    async def fresh_read(self) -> ZoneData | None:
        """What the back end holds, through a new target (no cache, no proxy faults)."""
        target = self.contract.make_target(self.contract.upstream)
        try:
            return await read_zone(target, self.zone)
        finally:
            await target.close()

    async def assert_holds(self, data: ZoneData) -> ZoneData:
        """The back end holds ``data`` as the provider represents it: every RRset ours
        equal, nothing of ours extra (provider-owned apex records aside)."""
        got = await self.fresh_read()
        assert got is not None, f"{self.zone} is missing at the back end"
        want = self.target.normalize(data).data
        caps = self.target.capabilities
        mine = {k: r for k, r in got.rrsets.items() if not caps.provider_owned(k, self.zone)}
        missing = [str(want.rrsets[k]) for k in want.rrsets if k not in mine]
        assert not missing, f"missing at the back end: {missing[:5]}"
        wrong = [
            f"{want.rrsets[k]} held as {mine[k]}"
            for k in want.rrsets
            if not mine[k].same_data(want.rrsets[k]) or mine[k].ttl != want.rrsets[k].ttl
        ]
        assert not wrong, f"held differently: {wrong[:5]}"
        owned = self.state.owned(NAME, self.zone.to_text())
        extra = [str(mine[k]) for k in mine if k not in want.rrsets and k in owned]
        assert not extra, f"left behind: {extra[:5]}"
        return got


def _bump(
    data: ZoneData, serial: int, add: Sequence[RRset] = (), drop: Sequence[str] = ()
) -> ZoneData:
    """``data`` at ``serial`` with ``add`` and without the owners in ``drop``."""
    origin = data.origin
    dropped = {dns.name.from_text(n, origin) for n in drop}
    soa = data.rrsets[(origin, dns.rdatatype.SOA)]
    soa_text = soa.texts()[0].split()
    soa_text[2] = str(serial)
    replaced = {a.key for a in add}
    kept = [
        r
        for r in data
        if r.name not in dropped and r.rdtype != dns.rdatatype.SOA and r.key not in replaced
    ]
    new_soa = RRset.parse(origin, dns.rdatatype.SOA, soa.ttl, [" ".join(soa_text)], origin)
    return ZoneData.build(origin, [new_soa, *kept, *add])


def _rr(origin: dns.name.Name, owner: str, rdtype: str, *texts: str, ttl: int = 3600) -> RRset:
    return RRset.from_text(owner, rdtype, ttl, texts, origin)


# -- the checks ------------------------------------------------------------------------------


async def _create_from_empty(run: _Run) -> None:
    before = await run.fresh_read()
    assert before is None or run.contract.prepare is not None, f"{run.zone} exists already"
    detail = await run.push(contract_zone(run.zone, 1))
    assert "to create" in detail or "created" in detail, detail
    await run.assert_holds(contract_zone(run.zone, 1))


async def _change(run: _Run) -> None:
    v1 = contract_zone(run.zone, 1)
    await run.push(v1)
    o = run.zone
    v2 = _bump(
        v1,
        2,
        add=[_rr(o, "h0", "A", "198.51.100.7"), _rr(o, "new", "TXT", '"added"')],
        drop=["h1"],
    )
    run.source.current = v2
    await run.engine.refresh_zone(o)
    plan = await run.engine.plan(NAME, o)
    assert plan is not None
    data_changes = {(c.action, c.key) for c in plan.changes if c.rdtype != dns.rdatatype.SOA}
    assert data_changes == {
        (Action.UPDATE, (dns.name.from_text("h0", o), dns.rdatatype.A)),
        (Action.CREATE, (dns.name.from_text("new", o), dns.rdatatype.TXT)),
        (Action.DELETE, (dns.name.from_text("h1", o), dns.rdatatype.A)),
    }, plan.lines()
    await run.push(v2)
    await run.assert_holds(v2)


async def _delete(run: _Run) -> None:
    v1 = contract_zone(run.zone, 1)
    await run.push(v1)
    v2 = _bump(v1, 2, drop=[f"h{i}" for i in range(6)] + ["mail"])
    await run.push(v2)
    got = await run.assert_holds(v2)
    gone = {dns.name.from_text(n, run.zone) for n in ("h0", "h5", "mail")}
    assert not [k for k in got.rrsets if k[0] in gone]


async def _noop_is_empty(run: _Run) -> None:
    data = rich_zone(run.zone, 1)
    await run.push(data)
    # A new engine on the same state and a new target: it plans against a read of the
    # back end, not against its memory of the push.
    target = run.contract.make_target(run.proxy.url)
    engine = SyncEngine(run.state, run.source, [run.zone], {NAME: TargetSpec(target)})
    try:
        await engine.refresh_zone(run.zone)
        plan = await engine.plan(NAME, run.zone)
        assert plan is not None
        assert plan.empty, "a push with nothing to do plans: " + "; ".join(plan.lines()[:5])
        assert (await engine.push(NAME, run.zone)).detail == "already current"
    finally:
        await target.close()


async def _round_trip(run: _Run) -> None:
    data = rich_zone(run.zone, 1)
    await run.push(data)
    got = await run.assert_holds(data)
    # Read back, normalized again, it is the same zone: what we read is what we would push.
    again = run.target.normalize(ZoneData(run.zone, dict(got.rrsets))).data
    want = run.target.normalize(data).data
    for key, rrset in want.rrsets.items():
        assert again.rrsets[key].same_data(rrset), f"{rrset} read back as {again.rrsets[key]}"


async def _unmanaged_left_alone(run: _Run) -> None:
    v1 = contract_zone(run.zone, 1)
    await run.push(v1)
    foreign = _rr(run.zone, "theirs", "TXT", '"written by someone else"')
    # Written straight through another target, as another tool would: not in our state.
    writer = run.contract.make_target(run.contract.upstream)
    try:
        held = await writer.read(run.zone)
        assert held is not None
        plan = Plan(
            zone=run.zone,
            target="someone-else",
            serial=v1.serial,
            changes=(Change(Action.CREATE, None, foreign),),
            desired=ZoneData(run.zone, {**held.data.rrsets, foreign.key: foreign}),
        )
        await writer.apply(plan, held.state)
    finally:
        await writer.close()
    seen = await run.engine.plan(NAME, run.zone)  # a read of the back end
    assert seen is not None and foreign.key in seen.foreign, seen
    assert any("theirs TXT not managed by zonefan" in line for line in seen.lines())
    v2 = _bump(v1, 2, add=[_rr(run.zone, "h0", "A", "198.51.100.9")], drop=["h1"])
    await run.push(v2)
    await run.engine.push(NAME, run.zone, force=True)  # forced: read, planned, applied
    got = await run.assert_holds(v2)
    assert foreign.key in got.rrsets and got.rrsets[foreign.key].same_data(foreign)


async def _partial_failure_converges(run: _Run) -> None:
    big = contract_zone(run.zone, 1, hosts=run.contract.hosts)
    run.proxy.inject("500", count=1, method=run.contract.fault_method, after=1)
    errors = await run.converge(big)
    assert errors, "the injected server error never reached the push"
    await run.assert_holds(big)
    changed = _bump(big, 2, add=[_rr(run.zone, f"h{i}", "A", "198.51.100.1") for i in range(40)])
    run.proxy.inject("500", count=1, method=run.contract.fault_method, after=1)
    await run.converge(changed)
    await run.assert_holds(changed)


async def _rate_limit_storm_converges(run: _Run) -> None:
    big = contract_zone(run.zone, 1, hosts=run.contract.hosts)
    run.proxy.inject("429", count=6, retry_after=0, method=run.contract.fault_method, after=1)
    await run.converge(big, attempts=10)
    assert any(status == 0 for _, _, status in run.proxy.log), "no 429 was answered"
    await run.assert_holds(big)


class LogCapture(logging.Handler):
    """Every record that reaches the root logger (where a terminal's handler sits), formatted."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def capture_logs() -> Iterator[LogCapture]:
    """Every log record, at debug level, while the block runs."""
    handler = LogCapture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def _credentials_never_logged(run: _Run) -> None:
    secrets = [s for s in run.contract.secrets if s]
    assert secrets, "the contract names no credential to look for"
    with capture_logs() as logs:
        run.proxy.inject("500", count=1, after=1)
        run.proxy.inject("429", count=1, retry_after=0)
        errors = await run.converge(contract_zone(run.zone, 1, hosts=40))
        run.proxy.inject("down", count=8)
        try:
            await run.push(_bump(contract_zone(run.zone, 1, hosts=40), 2, drop=["h0"]))
        except SyncError as exc:
            errors.append(str(exc))
    seen = logs.lines + errors + [str(s.last_error) for s in run.state.status()]
    leaked = [line for line in seen if any(s in line for s in secrets)]
    assert not leaked, f"a credential was logged: {leaked[:2]}"
    assert logs.lines, "nothing was logged at debug level: the check proved nothing"


_CHECKS: dict[str, Callable[[_Run], Awaitable[None]]] = {
    "create_from_empty": _create_from_empty,
    "change": _change,
    "delete": _delete,
    "noop_is_empty": _noop_is_empty,
    "round_trip": _round_trip,
    "unmanaged_left_alone": _unmanaged_left_alone,
    "partial_failure_converges": _partial_failure_converges,
    "rate_limit_storm_converges": _rate_limit_storm_converges,
    "credentials_never_logged": _credentials_never_logged,
}


async def run_check(contract: Contract, check: str) -> None:
    """Run one check of the contract; AssertionError says what the target got wrong."""
    # A zone of its own on every run: a back end kept between runs holds the earlier ones.
    zone = dns.name.from_text(f"{check.replace('_', '-')}-{next(_RUNS)}", contract.zone)
    if contract.prepare is not None:
        await contract.prepare(zone)
    with tempfile.TemporaryDirectory(prefix="zonefan-contract-") as work:
        run = _Run(contract, zone, Path(work))
        try:
            await _CHECKS[check](run)
        finally:
            await run.close()
