"""The monitor with a fake clock against real servers on 127.0.0.1: a member whose server
stops is withdrawn after exactly ``fall`` rounds and is back ``rise`` rounds after it
restarts; the callback hears only changes and events. Each round is awaited (``rounds``), so no
test sleeps to show that a callback did not come."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import dns.name
import dns.rdatatype
import pytest
from aiohttp import web

from health import (
    Check,
    CheckerReport,
    HealthConfig,
    HealthMonitor,
    Member,
    Pool,
    PoolDecision,
    ProbeResult,
    ReportError,
    run_probe,
)
from tests.clock import FakeClock
from tests.wait import until

HOST = "127.0.0.1"
NAME = dns.name.from_text("www.example.test.")
A, B = "192.0.2.10", "192.0.2.20"
INTERVAL = 5.0


def http_pool(name: dns.name.Name = NAME, members: tuple[str, ...] = (A, B)) -> Pool:
    check = Check("http", 80, interval=INTERVAL, timeout=2.0, rise=2, fall=3, path="/healthz")
    return Pool(name, dns.rdatatype.A, 30, tuple(Member(a, "r") for a in members), check)


class Backend:
    """An aiohttp server on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self) -> None:
        self.port = 0
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, HOST, self.port).start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, Backend]]:
    servers = {A: Backend(), B: Backend()}
    for server in servers.values():
        await server.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


class Run:
    """A monitor on a manual fake clock, and the decisions its callback heard."""

    def __init__(self, config: HealthConfig, probe: object) -> None:
        self.clock = FakeClock(manual=True)
        self.heard: list[PoolDecision] = []
        self.monitor = HealthMonitor(
            config,
            self.hear,
            clock=self.clock,
            sleep=self.clock.sleep,
            probe=probe,  # type: ignore[arg-type]
            jitter=lambda interval: 0.0,
        )

    async def hear(self, decision: PoolDecision) -> None:
        self.heard.append(decision)

    async def round(self, name: dns.name.Name = NAME) -> int:
        """Move the clock one interval and wait for the round it starts; how many
        callbacks it made."""
        done, heard = self.monitor.rounds[name], len(self.heard)
        self.clock.advance(INTERVAL)
        await until(lambda: self.monitor.rounds[name] > done, f"round {done + 1}")
        return len(self.heard) - heard


async def test_a_stopped_server_is_withdrawn_after_fall_rounds_and_back_after_rise(
    backends: dict[str, Backend],
) -> None:
    async def probe(pool: Pool, address: str) -> ProbeResult:
        # The members' addresses are documentation ones; each is a server on 127.0.0.1.
        check = dataclasses.replace(pool.check, port=backends[address].port)
        return await run_probe(check, HOST)

    run = Run(HealthConfig(pools=(http_pool(),)), probe)
    run.monitor.start()
    try:
        await until(lambda: run.monitor.rounds[NAME] == 1, "the first round")
        assert [await run.round() for _ in range(3)] == [0, 0, 0]
        await backends[A].stop()
        assert [await run.round() for _ in range(3)] == [0, 0, 1]
        [withdrawn] = run.heard
        assert withdrawn.addresses == {B} and withdrawn.changed
        assert f"{A} (r) withdrawn: " in withdrawn.reason
        assert "connection refused" in withdrawn.reason
        assert [await run.round() for _ in range(3)] == [0, 0, 0]
        await backends[A].start()
        assert [await run.round() for _ in range(2)] == [0, 1]
        assert run.heard[-1].addresses == {A, B}
        assert run.heard[-1].reason.startswith(f"{A} (r) restored: HTTP 200 from")
        assert [await run.round() for _ in range(3)] == [0, 0, 0]
    finally:
        await run.monitor.stop()
    # stop() cancelled and awaited the pool's task: none is pending.
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("health ")] == []


async def test_a_failed_callback_is_retried_next_round() -> None:
    down = {A}

    async def probe(pool: Pool, address: str) -> ProbeResult:
        return ProbeResult(address not in down, "seen")

    run = Run(HealthConfig(pools=(http_pool(),)), probe)
    failures = [RuntimeError("store locked")]

    async def flaky(decision: PoolDecision) -> None:
        if failures:
            raise failures.pop()
        run.heard.append(decision)

    run.monitor.on_change = flaky
    run.monitor.start()
    try:
        await until(lambda: run.monitor.rounds[NAME] == 1, "the first round")
        # Round 3 withdraws A but its callback fails; round 4 delivers it again.
        assert [await run.round() for _ in range(3)] == [0, 0, 1]
        assert not failures and run.heard[0].addresses == {B} and run.heard[0].changed
        assert [await run.round() for _ in range(2)] == [0, 0]
    finally:
        await run.monitor.stop()


async def test_a_decision_failing_every_round_is_logged_once_per_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def probe(pool: Pool, address: str) -> ProbeResult:
        return ProbeResult(address != A, "seen")

    run = Run(HealthConfig(pools=(http_pool(),)), probe)
    errors = [RuntimeError("CNAME and other data"), *[RuntimeError("zone locked")] * 3]

    async def failing(decision: PoolDecision) -> None:
        if errors:
            raise errors.pop()
        run.heard.append(decision)

    run.monitor.on_change = failing
    caplog.set_level(logging.INFO, logger="zonefan.health")
    run.monitor.start()
    try:
        await until(lambda: run.monitor.rounds[NAME] == 1, "the first round")
        # A is withdrawn in round 3; rounds 3-6 fail (three times one error, then another)
        # and round 7 applies it.
        assert [await run.round() for _ in range(6)] == [0, 0, 0, 0, 0, 1]
    finally:
        await run.monitor.stop()
    failed = [r.getMessage() for r in caplog.records if "applying the decision failed" in r.message]
    assert len(failed) == 2
    assert "zone locked" in failed[0] and "CNAME and other data" in failed[1]
    assert any("applied again" in r.getMessage() for r in caplog.records)


async def test_every_member_down_at_once_is_heard_though_nothing_published_changes() -> None:
    down: set[str] = set()

    async def probe(pool: Pool, address: str) -> ProbeResult:
        return ProbeResult(address not in down, "seen")

    run = Run(HealthConfig(pools=(http_pool(),)), probe)
    run.monitor.start()
    try:
        await until(lambda: run.monitor.rounds[NAME] == 1, "the first round")
        down.update({A, B})
        assert [await run.round() for _ in range(3)] == [0, 0, 1]
        [degraded] = run.heard
        assert degraded.addresses == {A, B} and not degraded.changed and degraded.degraded
        assert [type(e).__name__ for e in degraded.events] == [
            "Transition",
            "Transition",
            "Degraded",
        ]
        assert [await run.round() for _ in range(2)] == [0, 0]  # once per episode
    finally:
        await run.monitor.stop()


async def test_probes_are_bounded_in_total_and_per_pool() -> None:
    release = asyncio.Event()
    flight: dict[dns.name.Name, int] = {}
    most = {"total": 0}

    async def probe(pool: Pool, address: str) -> ProbeResult:
        flight[pool.name] = flight.get(pool.name, 0) + 1
        most["total"] = max(most["total"], sum(flight.values()))
        most[pool.label] = max(most.get(pool.label, 0), flight[pool.name])
        await release.wait()
        flight[pool.name] -= 1
        return ProbeResult(True, "ok")

    members = tuple(f"192.0.2.{i}" for i in range(1, 9))
    pools = tuple(http_pool(dns.name.from_text(f"p{i}.test."), members) for i in range(3))
    run = Run(HealthConfig(pools=pools, max_probes=5, pool_probes=2), probe)
    run.monitor.start()
    try:
        await until(lambda: sum(flight.values()) == 5, "the probes in flight")
        for _ in range(20):
            await asyncio.sleep(0)  # give any probe beyond the bound its chance to start
        assert most["total"] == 5 and max(most[p.label] for p in pools) == 2
        release.set()
        await until(lambda: all(n == 1 for n in run.monitor.rounds.values()), "the rounds")
    finally:
        await run.monitor.stop()


async def test_remote_reports_enter_through_observe() -> None:
    down: set[str] = set()

    async def probe(pool: Pool, address: str) -> ProbeResult:
        return ProbeResult(address not in down, "seen")

    config = HealthConfig(pools=(http_pool(),), remote_checkers=frozenset({"b", "c"}))
    run = Run(config, probe)
    run.monitor.start()
    try:
        await until(lambda: run.monitor.rounds[NAME] == 1, "the first round")
        for _ in range(3):
            for checker in ("b", "c"):
                run.monitor.observe(CheckerReport(checker, NAME, A, False, run.clock(), "503"))
            changes = await run.round()
        assert changes == 1 and run.heard[0].addresses == {B}
        assert "503 (down for b, c: 2 of 3 checkers)" in run.heard[0].reason
        now = run.clock()
        with pytest.raises(ReportError, match="ahead"):
            run.monitor.observe(CheckerReport("b", NAME, A, True, now + 60))
        with pytest.raises(ReportError, match="older than 15s"):
            run.monitor.observe(CheckerReport("b", NAME, A, True, now - 16))
        with pytest.raises(ReportError, match="own id"):
            run.monitor.observe(CheckerReport("local", NAME, A, True, now))
        with pytest.raises(ReportError, match="unknown checker"):
            run.monitor.observe(CheckerReport("d", NAME, A, True, now))
        with pytest.raises(ReportError, match="no pool"):
            run.monitor.observe(CheckerReport("b", dns.name.from_text("x."), A, True, now))
    finally:
        await run.monitor.stop()
