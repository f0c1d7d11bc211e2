"""The measuring core of `zonefan drill` on a fake clock and a fake query function: what
answer counts (addresses, authority, a signature that validates), when an endpoint is
timed as converged, the bounded query rate, the timeout, and the drill's order of events
(the region is restored whatever happens while measuring). The drill table of the store."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from nameserver.store.drills import Drill, DrillEndpoint
from nameserver.store.schema import SCHEMA_VERSION
from nameserver.store.store import Store
from settings import Address
from sync.config import load_sync_config
from tests.tools import example_store, write_private
from zonefan.cli import main
from zonefan.common import config_keys
from zonefan.drill import Ask, DrillPlan, Endpoint, Reached, Watch, judge, measure, reach, run_drill
from zonefan.drill_cli import _deferred_signals, find_endpoints
from zonefan.options import CONFIG
from zonefan.settings import load_config

ZONE = dns.name.from_text("example.test.")
POOL = dns.name.from_text("pool.example.test.")
FRA, AMS = "192.0.2.10", "192.0.2.20"
HERE = Address("127.0.0.1", 5300)
A = dns.rdatatype.A
ED25519 = 15  # the DNSSEC algorithm number


class FakeClock:
    """Time that moves only when the code under test sleeps or a fake query takes time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Signer:
    """A zone key and the DNSKEY RRset it makes, to sign answers as a server would."""

    key: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @property
    def dnskey(self) -> dns.rrset.RRset:
        rdata = dns.dnssec.make_dnskey(self.key.public_key(), ED25519, 257)
        return dns.rrset.from_rdata_list(ZONE, 3600, [rdata])

    def sign(self, rrset: dns.rrset.RRset, valid: bool = True) -> dns.rrset.RRset:
        now = 1_700_000_000 if valid else 1_000_000_000  # a stale one expired long ago
        sig = dns.dnssec.sign(
            rrset,
            self.key,
            ZONE,
            self.dnskey[0],
            inception=now - 3600,
            expiration=now + 86400 * 365 * 10 if valid else now + 3600,
        )
        return dns.rrset.from_rdata_list(rrset.name, rrset.ttl, [sig])


def response(
    addresses: Sequence[str],
    *,
    aa: bool = True,
    rcode: int = dns.rcode.NOERROR,
    signer: Signer | None = None,
    valid: bool = True,
    name: dns.name.Name = POOL,
) -> dns.message.Message:
    query = dns.message.make_query(name, A, want_dnssec=True)
    out = dns.message.make_response(query)
    out.set_rcode(dns.rcode.Rcode(rcode))
    if aa:
        out.flags |= dns.flags.AA
    if addresses:
        rrset = dns.rrset.from_text_list(name, 30, "IN", "A", list(addresses))
        out.answer.append(rrset)
        if signer is not None:
            out.answer.append(signer.sign(rrset, valid))
    return dns.message.from_wire(out.to_wire())  # as an answer off the wire


OUT = Watch(ZONE, POOL, A, absent=frozenset({FRA}))
BACK = Watch(ZONE, POOL, A, present=frozenset({FRA}))


def test_judge_reads_the_addresses_and_the_authority() -> None:
    assert judge(response([AMS]), OUT, None) == ""
    assert judge(response([FRA, AMS]), OUT, None) == f"still serves {FRA} at {POOL}"
    assert judge(response([AMS]), BACK, None) == f"does not serve {FRA} at {POOL} yet"
    assert judge(response([FRA, AMS]), BACK, None) == ""
    assert "serves no A" in judge(response([]), OUT, None)  # never empty
    assert "without authority" in judge(response([AMS], aa=False), OUT, None)
    assert judge(response([AMS], rcode=dns.rcode.SERVFAIL), OUT, None) == "answers SERVFAIL"


def test_judge_counts_a_signed_answer_only_when_its_signature_validates() -> None:
    signer = Signer()
    keys = signer.dnskey
    assert judge(response([AMS], signer=signer), OUT, keys) == ""
    assert "without its RRSIG" in judge(response([AMS]), OUT, keys)
    assert "does not validate" in judge(response([AMS], signer=signer, valid=False), OUT, keys)
    other = Signer()  # signed by a key that is not the zone's
    assert "does not validate" in judge(response([AMS], signer=other), OUT, keys)


def scripted(clock: FakeClock, change_at: float, rtt: float = 0.002) -> tuple[Ask, list[float]]:
    """A server that serves FRA and AMS until ``change_at`` (clock time), AMS after; each
    query takes ``rtt``. Returns the query function and the times queries were sent."""
    sent: list[float] = []

    async def ask(
        address: Address,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        dnssec: bool,
        timeout: float,
    ) -> dns.message.Message:
        sent.append(clock.now)
        clock.now += rtt
        return response([AMS] if clock.now >= change_at else [FRA, AMS])

    return ask, sent


def test_reach_times_the_first_answer_without_the_drained_member() -> None:
    clock = FakeClock()
    ask, sent = scripted(clock, change_at=100.33)
    since = clock.now
    got = asyncio.run(
        reach(
            Endpoint("secondary", "knot", HERE), [OUT], {}, since, since + 5,
            ask=ask, clock=clock, sleep=clock.sleep, interval=0.05,
        )
    )  # fmt: skip
    # Queries at 0, .05, ..., .30 see the old answer; the one sent at .35 the new one.
    assert got.seconds == pytest.approx(0.352)
    assert got.queries == 8 == len(sent)
    assert [round(t - since, 3) for t in sent] == [round(0.05 * i, 3) for i in range(8)]
    assert all(s == pytest.approx(0.048) for s in clock.sleeps)  # interval minus the rtt


def test_reach_gives_up_at_the_deadline_with_what_it_last_saw() -> None:
    clock = FakeClock()
    ask, sent = scripted(clock, change_at=1e9, rtt=2**-9)
    got = asyncio.run(
        reach(
            Endpoint("secondary", "nsd", HERE), [OUT], {}, clock.now, clock.now + 2,
            ask=ask, clock=clock, sleep=clock.sleep, interval=2**-4,
        )
    )  # fmt: skip
    assert got.seconds is None
    assert got.last == f"still serves {FRA} at {POOL}"
    assert len(sent) == 32  # bounded by the interval: 2 s / 62.5 ms (exact in binary)


def test_reach_asks_again_after_a_query_fails() -> None:
    clock = FakeClock()
    calls = 0

    async def ask(*_: object) -> dns.message.Message:
        nonlocal calls
        calls += 1
        clock.now += 1.0  # a lost UDP answer costs the query's timeout
        if calls < 3:
            raise dns.exception.Timeout(timeout=1.0)  # type: ignore[no-untyped-call]
        return response([AMS])

    got = asyncio.run(
        reach(
            Endpoint("target", "pdns", HERE), [OUT], {}, clock.now, clock.now + 10,
            ask=ask, clock=clock, sleep=clock.sleep,
        )
    )  # fmt: skip
    assert got.seconds == pytest.approx(3.0) and got.queries == 3
    assert clock.sleeps == []  # a query longer than the interval is followed at once


def test_measure_asks_only_endpoints_with_an_address_for_their_zones() -> None:
    clock = FakeClock()
    asked: list[tuple[Address, dns.name.Name]] = []

    async def ask(address: Address, name: dns.name.Name, *_: object) -> dns.message.Message:
        asked.append((address, name))
        return response([AMS], name=name)

    other = Watch(dns.name.from_text("other.test."), dns.name.from_text("www.other.test."), A)
    endpoints = [
        Endpoint("primary", "primary", HERE),
        Endpoint("secondary", "elsewhere", None, note="not measured: no address"),
        Endpoint("target", "pdns", Address("127.0.0.1", 5301), frozenset({ZONE})),
    ]
    got = asyncio.run(
        measure(endpoints, [OUT, other], {}, clock.now, 5, ask=ask, clock=clock, sleep=clock.sleep)
    )
    assert set(got) == {"primary", "pdns"}
    # The primary is asked about both pools; pdns, serving only ZONE, about one.
    assert sorted(asked, key=str) == sorted(
        [(HERE, POOL), (HERE, other.name), (Address("127.0.0.1", 5301), POOL)], key=str
    )


# -- the drill's order of events -------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.started: list[Drill] = []
        self.finished: list[Drill] = []

    def start_drill(
        self,
        region: str,
        zones: Sequence[dns.name.Name],
        author: str,
        reason: str,
        start: float,
        timeout: float,
    ) -> Drill:
        drill = Drill(7, region, tuple(zones), author, reason, start, timeout=timeout)
        self.started.append(drill)
        return drill

    def finish_drill(self, drill: Drill) -> None:
        self.finished.append(drill)


PLAN = DrillPlan(
    "fra",
    (ZONE,),
    "ops",
    "quarterly",
    30.0,
    (
        Endpoint("primary", "primary", HERE),
        Endpoint("secondary", "knot", Address("127.0.0.1", 5302)),
        Endpoint("target", "cloud", None, note="not measured: no address"),
    ),
)


class Steps:
    """The drain, undrain and measurements of a drill, recorded in order on a fake clock."""

    def __init__(self, clock: FakeClock, results: list[object]) -> None:
        self.clock = clock
        self.results = results  # what each measurement returns, or raises
        self.done: list[str] = []

    def drain(self) -> list[Watch]:
        self.done.append("drain")
        return [OUT]

    def undrain(self) -> list[Watch]:
        self.done.append("undrain")
        self.clock.now += 0.5
        return [BACK]

    def measure(self, watches: Sequence[Watch], since: float) -> Mapping[str, Reached]:
        self.done.append(f"measure {'out' if watches == [OUT] else 'back'} from {since:g}")
        self.clock.now += 2
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, dict)
        return result


def test_a_drill_drains_measures_restores_measures_and_records() -> None:
    clock, log = FakeClock(), Log()
    out = {"primary": Reached(0.05, 2), "knot": Reached(0.4, 9)}
    back = {"primary": Reached(0.06, 2), "knot": Reached(0.7, 15)}
    steps = Steps(clock, [out, back])
    drill = run_drill(
        log, PLAN, steps.drain, steps.undrain, steps.measure, clock=clock, wall=lambda: 5000.0
    )
    assert steps.done == ["drain", "measure out from 100", "undrain", "measure back from 102"]
    assert log.finished == [drill] and drill.outcome == "passed" and drill.error == ""
    assert drill.start == 5000.0 and drill.restore_start == pytest.approx(2.0)
    knot = drill.endpoints[1]
    assert (knot.drained_at, knot.restored_at, knot.queries) == (0.4, 0.7, 24)
    cloud = drill.endpoints[2]
    assert not cloud.measured and cloud.note == "not measured: no address" and not cloud.failed
    assert drill.slowest("drained") == knot and drill.slowest("restored") == knot
    assert drill.failures == []


def test_an_endpoint_that_never_converges_fails_the_drill_and_is_named() -> None:
    clock, log = FakeClock(), Log()
    out = {"primary": Reached(0.05, 2), "knot": Reached(None, 600, "no answer within 1 s")}
    back = {"primary": Reached(0.06, 2), "knot": Reached(None, 600, "no answer within 1 s")}
    steps = Steps(clock, [out, back])
    drill = run_drill(
        log, PLAN, steps.drain, steps.undrain, steps.measure, clock=clock, wall=lambda: 5000.0
    )
    assert "undrain" in steps.done
    assert drill.outcome == "failed"
    assert drill.failures == [
        "secondary knot (127.0.0.1:5302) never served the drained nor the restored answer "
        "within 30 s"
    ]
    assert drill.endpoints[1].note == "drain: no answer within 1 s; restore: no answer within 1 s"
    assert drill.slowest("drained") == drill.endpoints[1]


@pytest.mark.parametrize("when", [0, 1])
def test_an_interruption_while_measuring_still_restores_and_records(when: int) -> None:
    clock, log = FakeClock(), Log()
    results: list[object] = [{"primary": Reached(0.05, 2), "knot": Reached(0.4, 9)}]
    results.insert(when, KeyboardInterrupt())
    steps = Steps(clock, results)
    with pytest.raises(KeyboardInterrupt):
        run_drill(
            log, PLAN, steps.drain, steps.undrain, steps.measure, clock=clock, wall=lambda: 1.0
        )
    assert steps.done.count("undrain") == 1
    [drill] = log.finished
    assert drill.outcome == "failed"
    phase = "the drain" if when == 0 else "the way back"
    assert (
        drill.error
        == f"interrupted while measuring {phase} (KeyboardInterrupt); region fra was restored"
    )


def test_a_failed_restore_is_recorded_as_leaving_the_region_drained() -> None:
    clock, log = FakeClock(), Log()
    steps = Steps(clock, [{"primary": Reached(0.05, 2), "knot": Reached(0.4, 9)}])

    def undrain() -> list[Watch]:
        raise RuntimeError("store locked")

    with pytest.raises(RuntimeError):
        run_drill(log, PLAN, steps.drain, undrain, steps.measure, clock=clock, wall=lambda: 1.0)
    [drill] = log.finished
    assert drill.error.startswith("the restore failed (RuntimeError: store locked): region fra")
    assert "zonefan undrain fra" in drill.error


def test_a_refused_drain_records_nothing() -> None:
    clock, log = FakeClock(), Log()
    steps = Steps(clock, [])

    def drain() -> list[Watch]:
        raise ValueError("would leave pool empty")

    with pytest.raises(ValueError):
        run_drill(log, PLAN, drain, steps.undrain, steps.measure, clock=clock, wall=lambda: 1.0)
    assert log.started == [] and log.finished == [] and steps.done == []


# -- the store -------------------------------------------------------------------------------


def test_the_store_keeps_drills_and_reads_them_by_period_and_zone(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db", signed=False)
    other = dns.name.from_text("other.test.")
    with Store(db) as store:
        first = store.start_drill("fra", [ZONE], "ops", "q1", 1000.0, 30.0)
        second = store.start_drill("ams", [other], "ops", "q2", 2000.0, 30.0)
        endpoints = (
            DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.1, 0.2, 4),
            DrillEndpoint("target", "cloud", None, False, note="not measured: no address"),
        )
        done = Drill(
            first.id, "fra", (ZONE,), "ops", "q1", 1000.0, "passed", 1.5, 1003.0, 30.0, "",
            endpoints,
        )  # fmt: skip
        store.finish_drill(done)
        with pytest.raises(Exception, match="not a running drill"):
            store.finish_drill(done)
        assert store.drills() == [done, second]
        assert store.drills(since=1500.0) == [second]
        assert store.drills(until=1500.0) == [done]
        assert store.drills(zone=other) == [second]
        assert second.outcome == "running" and second.endpoints == ()


def test_a_schema_5_store_gains_the_drill_tables(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db", signed=False)
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE drill_endpoints")
    conn.execute("DROP TABLE drills")
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    with Store(db) as store:
        store.start_drill("fra", [ZONE], "ops", "q", 1.0, 5.0)
        assert len(store.drills()) == 1
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    conn.close()


# -- which endpoints ---------------------------------------------------------------------------


def test_the_endpoints_come_from_both_configs(tmp_path: Path) -> None:
    other = "other.test."
    primary_toml = write_private(
        tmp_path / "zonefan.toml",
        f"""[serve]
listen = ["0.0.0.0:5399"]

[key.k]
algorithm = "hmac-sha256"
secret = "{"a" * 44}"

[[secondary]]
address = "127.0.0.1"
key = "k"
notify = "127.0.0.1@5301"

[[secondary]]
address = "192.0.2.7"
zones = ["{other}"]
notify = "192.0.2.7@53"

[[secondary]]
address = "192.0.2.8"

[[secondary]]
address = "127.0.0.1"
notify = "127.0.0.1@5399"
""",
    )
    sync_toml = tmp_path / "sync.toml"
    sync_toml.write_text(
        f"""listen = "127.0.0.1:5399"

[primary]
address = "127.0.0.1:5399"
zones = ["{ZONE}", "{other}"]

[target.pdns]
type = "powerdns-secondary"
url = "http://127.0.0.1:8081"
api-key-env = "ZF_TEST_PDNS"
dns = "127.0.0.1:5302"

[target.knot]
type = "rfc2136"
server = "127.0.0.1:5303"
key = "k"
zones = ["{other}"]

[target.cloud]
type = "desec"
api-token-env = "ZF_TEST_DESEC"
""",
        encoding="utf-8",
    )
    ctx = click.Context(main)
    ctx.meta[CONFIG] = load_config(str(primary_toml))
    with ctx, pytest.MonkeyPatch.context() as env:
        env.setenv("ZF_TEST_PDNS", "x")
        env.setenv("ZF_TEST_DESEC", "y")
        sync = load_sync_config(sync_toml, shared_keys=config_keys(ctx))
        found = find_endpoints(ctx, [ZONE], sync)
    assert [(e.kind, e.name, e.address and str(e.address), bool(e.note)) for e in found] == [
        ("primary", "primary", "127.0.0.1:5399", False),  # the wildcard, asked on loopback
        ("secondary", "127.0.0.1:5301", "127.0.0.1:5301", False),
        ("secondary", "192.0.2.8", None, True),  # no notify address: listed, not asked
        ("sidecar", "127.0.0.1:5399", None, True),
        ("target", "pdns", "127.0.0.1:5302", False),
        ("target", "cloud", None, True),
    ]  # 192.0.2.7 and the knot target serve only other.test.
    assert found[2].note.startswith("not measured: no address")
    assert found[5].note.startswith("not measured: no address")


def test_ctrl_c_and_sigterm_during_the_restore_wait_until_it_is_done() -> None:
    pending: list[str] = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with _deferred_signals(pending):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        done = "the undrain committed"  # reached: neither signal cut the block short
    assert done and pending == ["signal SIGINT", "signal SIGTERM"]
    assert {s: signal.getsignal(s) for s in before} == before


def test_judge_reads_a_cname_pools_target_without_case() -> None:
    query = dns.message.make_query(POOL, dns.rdatatype.CNAME)
    out = dns.message.make_response(query)
    out.flags |= dns.flags.AA
    out.answer.append(dns.rrset.from_text(POOL, 60, "IN", "CNAME", "AMS.cdn.example.net."))
    answer = dns.message.from_wire(out.to_wire())
    cname = dns.rdatatype.CNAME
    away = Watch(ZONE, POOL, cname, absent=frozenset({"fra.cdn.example.net."}))
    back = Watch(ZONE, POOL, cname, present=frozenset({"fra.cdn.example.net."}))
    assert judge(answer, away, None) == ""
    assert judge(answer, Watch(ZONE, POOL, cname, absent=frozenset({"ams.cdn.example.net."})), None)
    assert judge(answer, back, None) == f"does not serve fra.cdn.example.net. at {POOL} yet"
