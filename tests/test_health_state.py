"""One member's state (rise/fall, RFC 2439 damping), the quorum of checkers and the pool's
decision, driven by a fake clock: an hour of flapping takes no time."""

from __future__ import annotations

import logging

import dns.name
import dns.rdatatype
import pytest

from health import (
    Check,
    CheckerReport,
    Damping,
    Degraded,
    Member,
    Pool,
    PoolDecision,
    PoolHealth,
    Recovered,
    ReportError,
    Transition,
)
from health.state import Flap, Streak
from tests.clock import FakeClock

NAME = dns.name.from_text("www.example.test.")
A, B, C = "192.0.2.10", "192.0.2.20", "192.0.2.30"
INTERVAL = 5.0


def pool(
    *addresses: str, quorum: int | None = None, damping: Damping | None = None, rise: int = 2
) -> Pool:
    members = tuple(Member(a, f"r{i}") for i, a in enumerate(addresses or (A, B)))
    check = Check("tcp", 80, interval=INTERVAL, timeout=2.0, rise=rise, fall=3)
    return Pool(NAME, dns.rdatatype.A, 30, members, check, quorum, damping or Damping())


def test_fall_failures_in_a_row_bring_a_member_down_and_rise_successes_bring_it_up() -> None:
    streak = Streak(rise=2, fall=3)
    assert [streak.record(False, t) for t in range(2)] == [False, False]
    assert streak.up
    assert not streak.record(True, 2)  # a success in between starts the count again
    assert [streak.record(False, t) for t in range(3, 6)] == [False, False, True]
    assert not streak.up
    assert [streak.record(True, 6), streak.record(True, 7)] == [False, True]
    assert streak.up


def round_of(health: PoolHealth, clock: FakeClock, results: dict[str, bool]) -> PoolDecision:
    for address, ok in results.items():
        health.observe("local", address, ok, clock(), f"{'ok' if ok else 'refused'} {address}")
    return health.decide(clock())


def test_a_member_is_withdrawn_after_exactly_fall_rounds_and_back_after_rise() -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B))
    changed = []
    for _ in range(6):
        decision = round_of(health, clock, {A: False, B: True})
        changed.append(decision.changed)
        clock.advance(INTERVAL)
    assert changed == [False, False, True, False, False, False]
    assert decision.addresses == {B}
    assert round_of(health, clock, {A: False, B: True}).events == ()  # nothing changes
    back = [round_of(health, clock, {A: True, B: True}) for _ in range(2)]
    assert [d.changed for d in back] == [False, True]
    assert back[1].addresses == {A, B}
    [event] = back[1].events
    assert isinstance(event, Transition) and event.published and event.checkers == ("local",)
    assert back[1].reason.startswith(f"{A} (r0) restored: ok {A}")


def test_the_withdrawal_says_which_check_failed_and_which_checkers_saw_it() -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B))
    for _ in range(3):
        decision = round_of(health, clock, {A: False, B: True})
    assert decision.changed and decision.addresses == {B}
    assert decision.reason == f"{A} (r0) withdrawn: refused {A} (down for local: 1 of 1 checkers)"
    assert decision.author == "health:www.example.test."
    assert (decision.rdtype, decision.ttl) == (dns.rdatatype.A, 30)


def flap_for(health: PoolHealth, clock: FakeClock, seconds: float) -> list[Transition]:
    """A backend down 20s, up 20s, for ``seconds``; the transitions published."""
    transitions: list[Transition] = []
    end = clock() + seconds
    while clock() < end:
        ok = int(clock() // 20) % 2 == 1
        decision = round_of(health, clock, {A: ok, B: True})
        transitions += [e for e in decision.events if isinstance(e, Transition)]
        clock.advance(INTERVAL)
    return transitions


def test_an_hour_of_flapping_without_damping_is_a_transition_storm() -> None:
    clock = FakeClock(0.0)
    transitions = flap_for(PoolHealth(pool(A, B, damping=Damping(penalty=0))), clock, 3600)
    assert len(transitions) >= 150  # every 40s cycle withdraws and restores


def test_an_hour_of_flapping_with_damping_causes_a_bounded_number_of_transitions() -> None:
    """RFC 2439 defaults here: 1000 per withdrawal, half-life 5m, suppress 2000: the third
    withdrawal within minutes holds the member out; flapping on keeps it out."""
    clock = FakeClock(0.0)
    health = PoolHealth(pool(A, B))
    transitions = flap_for(health, clock, 3600)
    assert [t.published for t in transitions] == [False, True, False, True, False]
    assert "flapping (penalty 2" in transitions[-1].reason
    assert "held out until it decays below 750" in transitions[-1].reason
    # Once it stops flapping it is back within max-suppress (20m), not before reuse.
    steady: list[Transition] = []
    start = clock()
    while not steady:
        decision = round_of(health, clock, {A: True, B: True})
        steady = [e for e in decision.events if isinstance(e, Transition)]
        clock.advance(INTERVAL)
    waited = clock() - INTERVAL - start
    assert 300 < waited <= 1200
    assert steady[0].published and "flap penalty decayed" in steady[0].reason


def test_the_figure_of_merit_decays_by_half_each_half_life_and_is_capped() -> None:
    flap = Flap(Damping(penalty=1000, half_life=60, suppress=2000, reuse=750, max_suppress=240))
    flap.withdrawn(0)
    assert flap.value(60) == pytest.approx(500)
    assert not flap.suppressed
    for t in range(1, 30):
        flap.withdrawn(t)
    assert flap.suppressed and flap.merit == pytest.approx(750 * 16)
    assert flap.reuse_at() == pytest.approx(29 + 240)
    assert not flap.update(29 + 239) and flap.update(29 + 241)


def test_all_members_down_keeps_all_and_reports_it_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B, damping=Damping(penalty=0)))
    decisions = []
    with caplog.at_level(logging.ERROR, logger="zonefan.health"):
        for _ in range(3):
            decisions.append(round_of(health, clock, {A: False, B: True}))
        for _ in range(10):
            decisions.append(round_of(health, clock, {A: False, B: False}))
    assert decisions[2].addresses == {B}
    degraded = [d for d in decisions if any(isinstance(e, Degraded) for e in d.events)]
    assert len(degraded) == 1 and degraded[0] is decisions[5]
    assert degraded[0].addresses == {A, B} and degraded[0].changed and degraded[0].degraded
    assert "all members down: keeping all 2, pool degraded" in degraded[0].reason
    assert all(d.degraded and not d.changed for d in decisions[6:])
    assert [r.getMessage() for r in caplog.records] == [
        "pool www.example.test.: all members down: keeping all 2, pool degraded"
    ]
    # B comes back: the episode ends; a second episode is reported again.
    up = [round_of(health, clock, {A: False, B: True}) for _ in range(2)]
    assert up[1].addresses == {B} and not up[1].degraded
    assert any(isinstance(e, Recovered) for e in up[1].events)
    again = [round_of(health, clock, {A: False, B: False}) for _ in range(3)]
    assert sum(isinstance(e, Degraded) for d in again for e in d.events) == 1


def test_a_healthy_member_held_for_flapping_beats_publishing_dead_ones() -> None:
    clock = FakeClock(0.0)
    health = PoolHealth(pool(A, B, rise=1))
    flap_for(health, clock, 600)  # A is held out
    for _ in range(3):
        decision = round_of(health, clock, {A: True, B: False})
    assert decision.addresses == {A} and not decision.degraded


# --- quorum --------------------------------------------------------------------------------

CHECKERS = ("local", "b", "c")


def votes(health: PoolHealth, clock: FakeClock, down: set[str], rounds: int = 3) -> PoolDecision:
    for _ in range(rounds):
        for checker in CHECKERS:
            health.observe(checker, A, checker not in down, clock(), f"seen by {checker}")
            health.observe(checker, B, True, clock())
        decision = health.decide(clock())
        clock.advance(INTERVAL)
    return decision


def test_one_checker_of_three_reporting_failure_withdraws_nothing() -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B), CHECKERS)
    decision = votes(health, clock, {"local"}, rounds=20)
    assert decision.addresses == {A, B}
    assert health.down_votes(A, clock()) == (["local"], 3)


def test_two_checkers_of_three_reporting_failure_withdraw() -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B), CHECKERS)
    decision = votes(health, clock, {"b", "c"})
    assert decision.addresses == {B}
    [event] = decision.events
    assert isinstance(event, Transition) and event.checkers == ("b", "c")
    assert "seen by b (down for b, c: 2 of 3 checkers)" in event.reason


def test_stale_reports_do_not_count() -> None:
    """b and c said down, then fell silent: once their reports are older than
    stale-intervals intervals only the local checker counts, and it says up."""
    clock = FakeClock()
    health = PoolHealth(pool(A, B), CHECKERS, stale_intervals=3)
    assert votes(health, clock, {"b", "c"}).addresses == {B}
    silent_since = clock() - INTERVAL
    decisions = []
    for _ in range(5):
        health.observe("local", A, True, clock())
        health.observe("local", B, True, clock())
        decisions.append(health.decide(clock()))
        clock.advance(INTERVAL)
    back = next(i for i, d in enumerate(decisions) if d.changed)
    assert decisions[back].addresses == {A, B}
    assert silent_since + 3 * INTERVAL < silent_since + INTERVAL * (back + 1)


def test_a_fixed_quorum_is_not_met_by_the_local_checker_alone() -> None:
    clock = FakeClock()
    health = PoolHealth(pool(A, B, quorum=2), CHECKERS)
    for _ in range(10):
        health.observe("local", A, False, clock())
        health.observe("local", B, True, clock())
        decision = health.decide(clock())
        clock.advance(INTERVAL)
    assert decision.addresses == {A, B}


def test_reports_from_unknown_checkers_or_about_unknown_members_are_refused() -> None:
    health = PoolHealth(pool(A, B), CHECKERS)
    with pytest.raises(ReportError, match="unknown checker 'd'"):
        health.observe("d", A, False, 0.0)
    with pytest.raises(ReportError, match="not a member"):
        health.observe("b", C, False, 0.0)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"checker": "b", "pool": "www.example.test.", "address": A, "ok": "yes", "at": 1}, "ok"),
        ({"checker": "b", "pool": "www.example.test.", "address": A, "ok": True}, "'at'"),
        ({"checker": "b c", "pool": "w.test.", "address": A, "ok": True, "at": 1}, "checker id"),
        ({"checker": "b", "pool": "w.test.", "address": "192.0.2.010", "ok": True, "at": 1}, "IP"),
        ({"checker": "b", "pool": "w.test.", "address": "::0001", "ok": True, "at": 1}, "written"),
        ({"checker": "b", "pool": "w..test.", "address": A, "ok": True, "at": 1}, "domain name"),
        ({"checker": "b", "pool": "w.test.", "address": A, "ok": True, "at": 1, "x": 1}, "'x'"),
        ({"checker": "b", "pool": "w.", "address": A, "ok": True, "at": float("nan")}, "time"),
        (
            {"checker": "b", "pool": "w.", "address": A, "ok": True, "at": 1, "detail": "x" * 201},
            "detail",
        ),
    ],
)
def test_a_malformed_check_report_is_refused(data: dict[str, object], words: str) -> None:
    with pytest.raises(ReportError, match=words):
        CheckerReport.from_mapping(data)


def test_a_well_formed_check_report() -> None:
    data = {"checker": "b", "pool": "www.example.test.", "address": A, "ok": False, "at": 5}
    report = CheckerReport.from_mapping({**data, "detail": "HTTP 503"})
    assert report == CheckerReport("b", NAME, A, False, 5.0, "HTTP 503")
