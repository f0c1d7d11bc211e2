"""DNSSEC maintenance inside ``zonefan serve``: signatures are refreshed and key events
applied when they fall due (fake clock for the scheduler; the real server for the end
to end check), and the warm zone versions it relies on stay equal to the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.RRSIG import RRSIG

from nameserver.dnssec.maintenance import MaintenanceScheduler, MaintenanceTiming
from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.zone.records import Record
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.zonefile import read_zone_file
from signer.policy import Policy
from signer.timing import Role, start_rollover
from tests.clock import FakeClock
from tests.servers import ZonefanServer, query_message
from tests.tools import scheduler_running, wait_for_runs

EXAMPLE = Path(__file__).resolve().parent.parent / "zones" / "example.test.zone"
ORIGIN = dns.name.from_text("example.test.")
DAY = 86400
RRSIG_TYPE = int(dns.rdatatype.RRSIG)


def _sign(db: Path, clock: Callable[[], float], policies: dict[str, Policy] | None = None) -> None:
    store = Store(db)
    try:
        manager = DnssecManager(store, Path(f"{db}.keys"), policies, clock=clock)
        editor = manager.editor()
        parsed = read_zone_file(EXAMPLE)
        plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(parsed.origin, Author("test"))
    finally:
        store.close()


def _expirations(db: Path) -> list[int]:
    with Store(db) as store:
        return [
            int(r.rdata.expiration) for r in store.records(ORIGIN) if isinstance(r.rdata, RRSIG)
        ]


def _serial(db: Path) -> int:
    with Store(db) as store:
        return store.serial(ORIGIN)


def _scheduler(db: Path, clock: FakeClock) -> MaintenanceScheduler:
    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(store, Path(f"{db}.keys"), clock=clock, versions=versions)

    return MaintenanceScheduler(db, factory, clock=clock, timing=MaintenanceTiming(rescan=3600))


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, FakeClock]:
    clock = FakeClock(1_800_000_000.0)
    db = tmp_path / "z.db"
    _sign(db, clock)
    return db, clock


def test_signatures_are_refreshed_when_due(signed: tuple[Path, FakeClock]) -> None:
    db, clock = signed
    with Store(db) as store:  # the lifetimes the zone is signed with (fitted to its EXPIRE)
        policy = DnssecManager(store, Path(f"{db}.keys"), clock=clock).policy(ORIGIN)
    first_serial = _serial(db)
    signed_at = clock.now

    async def scenario() -> None:
        scheduler = _scheduler(db, clock)
        async with scheduler_running(scheduler):
            await wait_for_runs(scheduler, 1)
            assert _serial(db) == first_serial, "freshly signed: nothing was due"
            # Follow the due times (key events, then the first refresh) past the moment
            # the first signatures come up for refresh; bounded.
            window = policy.rrsig_validity - policy.rrsig_refresh
            for runs in range(2, 202):
                due = scheduler.due_times()[ORIGIN]
                assert due > clock.now, "the next run is in the future"
                if clock.now > signed_at + window:
                    break
                clock.now = due
                scheduler.wake()
                await wait_for_runs(scheduler, runs)
            else:
                raise AssertionError("the refresh window was never reached")

    asyncio.run(scenario())
    assert _serial(db) != first_serial
    # Every signature now outlives the refresh margin: none is served close to expiry.
    assert min(_expirations(db)) > clock.now + policy.rrsig_refresh


def test_an_operator_key_change_is_noticed_by_a_rescan(signed: tuple[Path, FakeClock]) -> None:
    db, clock = signed

    async def scenario() -> None:
        scheduler = _scheduler(db, clock)
        async with scheduler_running(scheduler):
            await wait_for_runs(scheduler, 1)
            with Store(db) as store:
                manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
                keys = manager.timings(ORIGIN)
                manager.save_timings(
                    ORIGIN, start_rollover(keys, Role.CSK, Policy(), int(clock.now))
                )
            before = _serial(db)
            scheduler.wake(rescan=True)
            await wait_for_runs(scheduler, 2)
            assert _serial(db) != before

    asyncio.run(scenario())
    with Store(db) as store:
        assert len(store.keys(ORIGIN)) == 2, "the successor CSK was generated and stored"
        dnskeys = [r for r in store.records(ORIGIN) if r.rdtype == dns.rdatatype.DNSKEY]
    assert len(dnskeys) == 2, "the successor is published beside the old key"


def test_a_failing_zone_is_retried_later_and_nothing_changes(
    signed: tuple[Path, FakeClock],
) -> None:
    db, clock = signed
    with Store(db) as store:
        state = store.dnssec(ORIGIN)
        assert state is not None
        store.set_dnssec(ORIGIN, type(state)("missing-policy", state.denial, True))
    serial = _serial(db)

    async def scenario() -> float:
        scheduler = _scheduler(db, clock)
        async with scheduler_running(scheduler):
            await wait_for_runs(scheduler, 1)
            return scheduler.due_times()[ORIGIN]

    due = asyncio.run(scenario())
    assert due == clock.now + MaintenanceTiming().retry
    assert _serial(db) == serial


def test_zone_versions_follow_commits_by_others(signed: tuple[Path, FakeClock]) -> None:
    db, clock = signed
    with Store(db) as mine, Store(db) as theirs:
        versions = ZoneVersions(mine)
        editor = DnssecManager(mine, Path(f"{db}.keys"), clock=clock, versions=versions).editor()
        other = DnssecManager(theirs, Path(f"{db}.keys"), clock=clock).editor()
        name = dns.name.from_text("new", ORIGIN)
        a = dns.rdata.from_text("IN", "A", "192.0.2.7")
        editor.change_records(ORIGIN, [], [Record(name, 300, a)], Author("mine"))
        clock.now += 10
        b = dns.rdata.from_text("IN", "A", "192.0.2.8")
        other.change_records(ORIGIN, [], [Record(name, 300, b)], Author("theirs"))
        current = versions.current(ORIGIN)
        loaded = ZoneSnapshot.from_rows(ORIGIN, mine.rows(ORIGIN))
    assert current.serial == loaded.serial
    assert sorted(map(str, current.records())) == sorted(map(str, loaded.records()))
    assert current.max_ttl() == loaded.max_ttl()


@pytest.fixture
def stale_server(tmp_path: Path) -> Iterator[tuple[ZonefanServer, int]]:
    """The server, and the latest expiration of the signatures it starts with.

    Signed 8 days ago: the 24-day signatures (the example zone's EXPIRE is 14 days) have
    16 days left less jitter, past the 16-day refresh."""
    db = tmp_path / "z.db"
    _sign(db, lambda: time.time() - 8 * DAY)
    stale_until = max(_expirations(db))
    with ZonefanServer(tmp_path, db, probe_name="example.test.").start() as server:
        yield server, stale_until


def test_serve_refreshes_expiring_signatures(stale_server: tuple[ZonefanServer, int]) -> None:
    server, stale_until = stale_server
    deadline = time.monotonic() + 30
    while True:
        query = dns.message.make_query("web.example.test.", "A", want_dnssec=True)
        response = query_message(server.host, server.port, query)
        sigs = [rd for rrset in response.answer if rrset.rdtype == RRSIG_TYPE for rd in rrset]
        assert sigs, response
        if min(int(s.expiration) for s in sigs) > stale_until:  # every one of them new
            break
        assert time.monotonic() < deadline, f"not refreshed:\n{response}\n{server.log_text()}"
        time.sleep(0.1)
    assert response.flags & dns.flags.AA
    assert "DNSSEC maintenance of example.test." in server.log_text()


def test_zone_versions_start_from_shared_snapshots(signed: tuple[Path, FakeClock]) -> None:
    db, clock = signed
    with Store(db) as store:
        served = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
        versions = ZoneVersions(store, shared=lambda origin: served)
        assert versions.current(ORIGIN) is served, "the served snapshot is used, not a copy"
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
        name = dns.name.from_text("shared", ORIGIN)
        a = dns.rdata.from_text("IN", "A", "192.0.2.9")
        manager.editor().change_records(ORIGIN, [], [Record(name, 300, a)], Author("x"))
        # The server has not caught up: its snapshot is brought forward, not reloaded.
        current = versions.current(ORIGIN)
        assert current.serial == store.serial(ORIGIN) != served.serial
        assert current.node(served.origin) is not served.node(served.origin)  # new SOA
        untouched = next(k for k in served.nodes if k != served.origin)
        assert current.node(untouched) is served.node(untouched)  # shared, not copied
