"""Whole key rollovers on a fake clock, checked by a real unbound at every step.

A small zone is signed by :class:`~nameserver.dnssec.manager.DnssecManager` whose clock is a
variable of the test.  The test plays the timeline: it moves the clock to the next moment
something is due (``maintain()``'s ``next_due``: a key event or a signature refresh, or a
change at the parent), runs ``maintain()``, and acts as the parent: the DS of a key joins
the parent's DS set ``PARENT_DELAY`` after ``maintain()`` asked for it (SUBMIT_DS) and
leaves ``PARENT_DELAY`` (plus ``swap_gap``) after it was withdrawn (WITHDRAW_DS); the
operator records each parent change at once (``ds-check = manual``: ``mark_ds_seen`` as
``zonefan keys ds-seen`` does, and ``mark_ds_gone``).

After every step that changed the served zone or the parent's DS set, ``zonefan serve``
(one per timeline, following the store) is asked through resolvers whose trust anchors
are exactly the parent's DS set at that step (none while the parent has no DS: then the
answers must be insecure, not bogus):

* a fresh unbound that judges RRSIG times at the step's fake time with no clock-skew
  allowance (``val-override-date``) and requires a signature of every DS algorithm
  (``harden-algo-downgrade``): positive, NODATA, NXDOMAIN, DNSKEY and CDS answers must all
  be AD;
* an unbound on the real clock (the fake clock runs two days behind it and signatures
  last 14 days, so every signature made is valid now too), asked the same, then kept to
  the next step and asked for names it has not seen there: the DNSKEY, DS and NSEC it
  cached at one step meet the zone of the next, as in a resolver that looked just before
  the change.

The CDS RRset served must name the keys :func:`signer.timing.zone_keys` says, and the
parent, once it has done what it was asked, must hold exactly the DS records the CDS
RRset listed.  Fresh resolvers cannot show what caches hold for longer than one step; the
resolver model in tests/test_signer_timing.py covers that.  Negative controls show that
the checks can fail: a parent that switches to a new DS too early, one that never does,
and a cache two steps old.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from dns.dnssectypes import DSDigest

from nameserver.dnssec.manager import DnssecManager, MaintenanceResult
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_text
from signer.keys import DS_SHA256
from signer.policy import Denial, DsCheck, KeyStyle, Policy, policy_to_mapping
from signer.timing import (
    Action,
    ActionKind,
    KeyTiming,
    Phase,
    Role,
    key_state,
    mark_ds_gone,
    mark_ds_seen,
    start_algorithm_rollover,
    start_rollover,
    zone_keys,
)
from tests.servers import (
    UnboundServer,
    ZonefanServer,
    make_query,
    query_message,
    run_cli,
    start_all,
)
from tests.tools import require_tool

pytestmark = pytest.mark.timeout(300)

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
ORIGIN_TEXT = "roll.test."
ORIGIN = dns.name.from_text(ORIGIN_TEXT)
POLICY_NAME = "roll"
AUTHOR = Author("test", "rollover timeline")
# Every TTL 60 s and SOA EXPIRE 10 minutes, so the policy's signatures fit (check_zone_fit).
ZONE_TEXT = """$ORIGIN roll.test.
$TTL 60
@     SOA   ns1 hostmaster 1 60 60 600 60
@     NS    ns1
ns1   A     127.0.0.1
www   A     192.0.2.1
mail  A     192.0.2.2
"""
PARENT_DELAY = 5 * MINUTE  # from SUBMIT_DS/WITHDRAW_DS to the parent's DS set changing
FAKE_PAST = 2 * DAY  # how far behind the real clock each timeline starts
MAX_STEPS = 40  # a bound on each timeline; the longest takes about 15
SERVE_TIMEOUT = 5.0  # seconds for `zonefan serve` to pick up a commit
# The resolvers carried between steps keep what they cache this long (real seconds), so
# their cache outlives the zone's 60-second TTLs however slow the machine.
CACHE_MIN_TTL = HOUR


def _policy(style: KeyStyle, algorithm: int = 13) -> Policy:
    """TTLs, delays and safety margins of a minute, so a rollover takes minutes (an hour
    and a bit when the sign delay counts); 14-day signatures refreshed once an hour old
    (Dsgn = 1 hour).  No jitter: signatures made together are refreshed together, which
    keeps the number of refresh steps small."""
    return Policy(
        algorithm=algorithm,
        key_style=style,
        ksk_lifetime=0,
        zsk_lifetime=0,
        csk_lifetime=0,
        rrsig_validity=14 * DAY,
        rrsig_refresh=14 * DAY - HOUR,
        rrsig_jitter=0,
        inception_offset=10 * MINUTE,
        dnskey_ttl=60,
        zone_propagation_delay=60,
        parent_ds_ttl=60,
        parent_propagation_delay=60,
        publish_safety=60,
        retire_safety=60,
        ds_check=DsCheck.MANUAL,
    )


def _config(policy: Policy) -> str:
    """A zonefan.toml defining ``policy`` as [policy.roll], for the CLI."""
    lines = [f"[policy.{POLICY_NAME}]"]
    for key, value in policy_to_mapping(policy).items():
        text = str(value).lower() if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Query:
    name: str
    rdtype: str
    rcode: str


def _step_queries(n: int) -> tuple[Query, ...]:
    return (
        Query(f"www.{ORIGIN_TEXT}", "A", "NOERROR"),
        Query(f"www.{ORIGIN_TEXT}", "TXT", "NOERROR"),  # NODATA
        Query(f"nx{n}.{ORIGIN_TEXT}", "A", "NXDOMAIN"),
        Query(ORIGIN_TEXT, "DNSKEY", "NOERROR"),
        Query(ORIGIN_TEXT, "CDS", "NOERROR"),  # NODATA while no DS is asked for
    )


def _carried_queries(n: int) -> tuple[Query, ...]:
    """Names the carried resolver has not asked: answered from the zone as it is now,
    validated with what the resolver cached at the previous step."""
    return (
        Query(f"mail.{ORIGIN_TEXT}", "A", "NOERROR"),
        Query(f"ns1.{ORIGIN_TEXT}", "AAAA", "NOERROR"),  # NODATA
        Query(f"gone{n}.{ORIGIN_TEXT}", "A", "NXDOMAIN"),
    )


def _ask(unbound: UnboundServer, query: Query) -> dns.message.Message:
    message = make_query(query.name, query.rdtype, want_dnssec=True)
    message.flags |= dns.flags.AD
    return query_message(unbound.host, unbound.port, message)


def _duration(seconds: int) -> str:
    return f"+{seconds // HOUR}h{seconds % HOUR // MINUTE:02d}m{seconds % MINUTE:02d}s"


@dataclass
class Step:
    """One line of a timeline: what changed at a fake time and what the resolvers said."""

    at: int  # seconds since the timeline started
    what: str
    zone: str  # the DNSKEY RRset and which keys sign what
    parent: str  # the DS set the resolvers trusted
    result: str


class Timeline:
    """One zone, its parent and the fake clock; :meth:`step` moves to the next event."""

    def __init__(self, workdir: Path, policy: Policy, swap_gap: int = 0) -> None:
        require_tool("unbound")
        self.workdir = workdir
        self.policy = policy
        self.swap_gap = swap_gap
        self.start = (int(time.time()) - FAKE_PAST) // HOUR * HOUR
        self.now = self.start
        self.store = Store(workdir / "zone.db")
        self.manager = DnssecManager(
            self.store, workdir / "keys", {POLICY_NAME: policy}, clock=lambda: self.now
        )
        editor = self.manager.editor()
        parsed = read_zone_text(ZONE_TEXT)
        plan = editor.plan_import(parsed.origin, parsed.records, AUTHOR)
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        self.parent: dict[str, str] = {}  # key id -> DS rdata (text) the parent serves
        self.pending: list[tuple[int, str, str]] = []  # (when, "add" | "remove", key id)
        self.cds: set[str] = set()  # the CDS RRset served (DS rdata text)
        self.actions: list[tuple[int, Action]] = []
        self.steps: list[Step] = []
        self.failures: list[str] = []
        self.serial = 0
        self.server: ZonefanServer | None = None
        self.carried: UnboundServer | None = None
        self._resolvers = 0
        self.result: MaintenanceResult | None = None

    def sign(self, denial: Denial) -> None:
        """Sign the zone (keys generated at the start of the fake clock)."""
        result = self._note(self.manager.enable(ORIGIN, AUTHOR, POLICY_NAME, denial))
        self.check("zone signed: " + self._describe(result.actions))

    def close(self) -> None:
        for server in (self.carried, self.server):
            if server is not None:
                server.stop()
        self.store.close()

    # -- the clock and the parent ---------------------------------------------------------

    def _note(self, result: MaintenanceResult) -> MaintenanceResult:
        """Remember a maintenance run; as the parent, schedule the DS changes it asks."""
        if result.serial is not None:
            self.serial = result.serial
        for action in result.actions:
            self.actions.append((self.now, action))
            if action.kind is ActionKind.SUBMIT_DS:
                self.pending.append((self.now + PARENT_DELAY, "add", str(action.key_id)))
            elif action.kind is ActionKind.WITHDRAW_DS:
                when = self.now + PARENT_DELAY + self.swap_gap
                self.pending.append((when, "remove", str(action.key_id)))
        self.result = result
        return result

    def maintain(self) -> MaintenanceResult:
        return self._note(self.manager.maintain(ORIGIN, AUTHOR))

    def timings(self) -> tuple[KeyTiming, ...]:
        return self.manager.timings(ORIGIN)

    def key(self, key_id: str) -> KeyTiming:
        return next(k for k in self.timings() if k.key_id == key_id)

    def operator(
        self, what: str, change: Callable[[tuple[KeyTiming, ...], int], tuple[KeyTiming, ...]]
    ) -> MaintenanceResult:
        """An operator's key change now, then maintenance (what `zonefan keys rollover`
        does), then the checks."""
        self.manager.save_timings(ORIGIN, change(self.timings(), self.now))
        result = self.maintain()
        self.check(f"{what}; {self._describe(result.actions)}")
        return result

    def busy(self) -> bool:
        """True while a key event or a parent change is still to come."""
        assert self.result is not None
        plan = self.result.plan
        return bool(self.pending) or plan.next_event is not None or bool(plan.ds_watch)

    def step(self) -> tuple[Action, ...]:
        """Move the clock to the next event, apply it, check; return the key events done."""
        assert self.result is not None
        times = [t for t, _, _ in self.pending]
        if self.result.next_due is not None:
            times.append(self.result.next_due)
        assert times, f"nothing is scheduled but the timeline is not finished:\n{self.table()}"
        self.now = max(min(times), self.now)
        assert self.now < time.time() - MINUTE, "the fake clock caught up with the real one"
        changes = []
        for when, op, key_id in sorted(self.pending):
            if when > self.now:
                continue
            self.pending.remove((when, op, key_id))
            mark: Callable[[Sequence[KeyTiming], str, int], tuple[KeyTiming, ...]]
            if op == "add":
                self.parent[key_id] = self.ds(key_id)
                mark = mark_ds_seen
            else:
                self.parent.pop(key_id, None)
                mark = mark_ds_gone
            changes.append(f"parent {op}s DS {self._tag(self.key(key_id))}")
            self.manager.save_timings(ORIGIN, mark(self.timings(), key_id, self.now))
        if changes and not self.pending and set(self.parent.values()) != self.cds:
            self.failures.append(
                f"at {_duration(self.now - self.start)} the parent did what it was asked and "
                f"holds {sorted(self.parent.values())}, but the zone's CDS is {sorted(self.cds)}"
            )
        before = self.serial
        result = self.maintain()
        if result.actions:
            changes.append(self._describe(result.actions))
        elif self.serial != before:
            changes.append("signatures refreshed")
        if changes:
            self.check("; ".join(changes))
        return result.actions

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Step until nothing is left to do (or ``until()`` holds)."""
        for _ in range(MAX_STEPS):
            if not self.busy() or (until is not None and until()):
                return
            self.step()
        pytest.fail(f"the timeline did not finish in {MAX_STEPS} steps:\n{self.table()}")

    def ds(self, key_id: str) -> str:
        """The DS rdata (SHA-256) of a key, as text."""
        stored = next(k for k in self.store.keys(ORIGIN) if k.id == key_id)
        wire = stored.dnskey
        dnskey = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
        return str(dns.dnssec.make_ds(ORIGIN, dnskey, DSDigest(DS_SHA256)).to_text())

    def anchors(self, ds: Sequence[str] | None = None) -> list[str]:
        """Trust anchor lines for ``ds`` (default: the parent's DS set now)."""
        chosen = list(self.parent.values()) if ds is None else ds
        return [f"{ORIGIN_TEXT} {self.policy.parent_ds_ttl} IN DS {d}" for d in chosen]

    # -- checking ---------------------------------------------------------------------------

    def _serve(self) -> ZonefanServer:
        """`zonefan serve`, once it serves the last commit."""
        if self.server is None:
            self.server = ZonefanServer(
                self.workdir / "serve", Path(self.store.path), probe_name=ORIGIN_TEXT
            )
            self.server.start()
        deadline = time.monotonic() + SERVE_TIMEOUT
        while True:
            response = self.server.query(ORIGIN_TEXT, "SOA", flags=0)
            serial = response.answer[0][0].serial if response.answer else None
            if serial == self.serial:
                return self.server
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"zonefan serve still serves serial {serial}, not {self.serial}"
                )
            time.sleep(0.02)

    def resolver(
        self,
        role: str,
        anchors: Sequence[str],
        *,
        at: int | None,
        carried: bool = False,
    ) -> UnboundServer:
        """An unbound for the served zone (not started) that judges RRSIG times at ``at``
        (the real clock when None).  ``carried``: made to be asked again later (a long
        cache, no NSEC synthesis, so new names reach the server)."""
        server = self._serve()
        self._resolvers += 1
        return UnboundServer(
            self.workdir / f"unbound-{self._resolvers}-{role}",
            anchors,
            server.port,
            ORIGIN_TEXT,
            validation_time=at,
            harden_algo_downgrade=True,
            aggressive_nsec=not carried,
            cache_min_ttl=CACHE_MIN_TTL if carried else 0,
        )

    def expect(self, unbound: UnboundServer, queries: Sequence[Query], secure: bool) -> list[str]:
        """Ask ``queries``; each must get its rcode, with AD exactly when ``secure``."""
        problems = []
        for query in queries:
            response = _ask(unbound, query)
            rcode = dns.rcode.to_text(response.rcode())
            ad = bool(response.flags & dns.flags.AD)
            if rcode != query.rcode or ad != secure:
                problems.append(
                    f"{query.name} {query.rdtype}: {rcode}{' AD' if ad else ''}, expected "
                    f"{query.rcode}{' AD' if secure else ''}"
                )
        if problems:
            log = "\n".join(unbound.log_text().splitlines()[-12:])
            problems.append(f"unbound log ({unbound.workdir.name}):\n{log}")
        return problems

    def expect_bogus(self, unbound: UnboundServer, queries: Sequence[Query]) -> list[str]:
        """Ask ``queries``; each must fail validation (SERVFAIL)."""
        problems = []
        for query in queries:
            response = _ask(unbound, query)
            if response.rcode() != dns.rcode.SERVFAIL:
                rcode = dns.rcode.to_text(response.rcode())
                problems.append(f"{query.name} {query.rdtype}: {rcode}, expected SERVFAIL")
        return problems

    def check(self, what: str) -> None:
        """The checks of one step (see the module docstring); failures are collected."""
        n = len(self.steps)
        anchors = self.anchors()
        problems = []
        if self.carried is not None:
            secure = bool(self.carried.anchors)
            found = self.expect(self.carried, _carried_queries(n), secure)
            problems += [f"cache of the previous step: {p}" for p in found]
            self.carried.stop()
            self.carried = None
        fresh = self.resolver("fresh", anchors, at=self.now)
        self.carried = self.resolver("real-clock", anchors, at=None, carried=True)
        start_all(fresh, self.carried)
        try:
            found = self.expect(fresh, _step_queries(n), bool(anchors))
            problems += [f"fresh resolver at the fake time: {p}" for p in found]
        finally:
            fresh.stop()
        found = self.expect(self.carried, _step_queries(n), bool(anchors))
        problems += [f"resolver on the real clock: {p}" for p in found]
        problems += self._check_cds()
        result = "FAILED" if problems else "AD" if anchors else "insecure (no DS), not bogus"
        self.add_step(what, result)
        where = f"step {n} ({_duration(self.now - self.start)}: {what})"
        self.failures += [f"{where}: {p}" for p in problems]

    def _check_cds(self) -> list[str]:
        """The CDS RRset served names the keys the planner says."""
        assert self.server is not None
        response = self.server.query(ORIGIN_TEXT, "CDS")
        self.cds = {rdata.to_text() for rrset in response.answer for rdata in rrset}
        wanted = zone_keys(self.timings(), self.now, self.manager.policy(ORIGIN)).cds
        expected = {self.ds(key_id) for key_id in wanted}
        if self.cds != expected:
            return [f"CDS served {sorted(self.cds)}, expected {sorted(expected)}"]
        return []

    def check_bogus(self, what: str, ds: Sequence[str], at: int | None = None) -> None:
        """Negative control: trusting ``ds`` and judging RRSIG times at ``at`` (default:
        the fake now), the zone as served now must be bogus."""
        when = self.now if at is None else at
        with self.resolver("control", self.anchors(ds), at=when) as control:
            queries = _step_queries(len(self.steps))
            problems = self.expect_bogus(control, (queries[0], queries[3]))
        self.add_step(what, "SERVFAIL, as it must" if not problems else "NOT BOGUS", ds)
        self.failures += [f"negative control ({what}): {p}" for p in problems]

    # -- describing -------------------------------------------------------------------------

    def _tag(self, key: KeyTiming) -> str:
        return f"{key.role.name} {key.key_tag}/{key.algorithm}"

    def _describe(self, actions: Sequence[Action]) -> str:
        keys = {k.key_id: k for k in self.timings()}
        parts = [
            f"{a.kind.value} {self._tag(keys[str(a.key_id)])}"
            for a in actions
            if a.kind is not ActionKind.GENERATE
        ]
        return ", ".join(parts) or "no key event"

    def add_step(self, what: str, result: str, ds: Sequence[str] | None = None) -> None:
        keys = {k.key_id: k for k in self.timings()}
        zk = zone_keys(tuple(keys.values()), self.now, self.manager.policy(ORIGIN))

        def tags(ids: Sequence[str]) -> str:
            return ",".join(f"{keys[i].key_tag}/{keys[i].algorithm}" for i in ids) or "-"

        zone = f"DNSKEY {tags(zk.dnskey)}; DNSKEY signed by {tags(zk.dnskey_signers)}; "
        zone += f"data by {tags(zk.data_signers)}; CDS {tags(zk.cds)}"
        chosen = list(self.parent.values()) if ds is None else list(ds)
        by_ds = {self.ds(i): i for i in keys}
        parent = ",".join(tags([by_ds[d]]) for d in chosen) or "-"
        self.steps.append(Step(self.now - self.start, what, zone, parent, result))

    def table(self) -> str:
        start = datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        lines = [f"fake clock starting at {start}"]
        for s in self.steps:
            lines.append(f"{_duration(s.at):>11}  {s.what}")
            lines.append(f"{'':13}zone: {s.zone}")
            lines.append(f"{'':13}parent DS: {s.parent}  ->  {s.result}")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        print(self.table())
        assert not self.failures, "\n".join(self.failures) + "\n\n" + self.table()

    # -- for the tests ----------------------------------------------------------------------

    def of_role(self, role: Role) -> list[KeyTiming]:
        return [k for k in self.timings() if k.role is role]

    def phase(self, key: KeyTiming) -> Phase:
        return key_state(self.key(key.key_id), self.now, self.manager.policy(ORIGIN)).phase

    def kinds(self, since: int) -> list[tuple[ActionKind, Role]]:
        return [(a.kind, a.role) for t, a in self.actions if t >= since]


@contextmanager
def timeline(
    tmp_path: Path, policy: Policy, denial: Denial, swap_gap: int = 0
) -> Iterator[Timeline]:
    """A signed zone whose first DS is at the parent, and nothing else pending."""
    line = Timeline(tmp_path, policy, swap_gap)
    try:
        line.sign(denial)
        line.run()
        assert line.parent, "the first DS never reached the parent"
        yield line
    finally:
        line.close()


def test_zsk_rollover(tmp_path: Path) -> None:
    with timeline(tmp_path, _policy(KeyStyle.KSK_ZSK), Denial.NSEC) as line:
        (old,) = line.of_role(Role.ZSK)
        ksk_ds = dict(line.parent)
        # A resolver that cached the zone before the rollover and is not asked again until
        # the new ZSK signs: a cache two steps old, which the pre-publication rules out.
        stale = line.resolver("stale", line.anchors(), at=None, carried=True).start()
        try:
            line.failures += line.expect(stale, _step_queries(0), secure=True)
            start = line.now
            line.operator(
                "ZSK rollover requested", lambda k, t: start_rollover(k, Role.ZSK, line.policy, t)
            )
            line.run(until=lambda: line.key(old.key_id).retire is not None)
            problems = line.expect_bogus(stale, _carried_queries(0)[:1])
        finally:
            stale.stop()
        result = "SERVFAIL, as it must" if not problems else "NOT BOGUS"
        line.add_step("control: the cache from before the rollover meets the new ZSK", result)
        line.failures += [f"negative control (stale cache): {p}" for p in problems]
        line.run()
        line.assert_ok()
        new = next(k for k in line.of_role(Role.ZSK) if k.key_id != old.key_id)
        assert line.phase(old) is Phase.REMOVED and line.phase(new) is Phase.ACTIVE
        assert line.parent == ksk_ds, "a ZSK rollover does not touch the parent"
        assert (ActionKind.REMOVE, Role.ZSK) in line.kinds(start)


def test_ksk_rollover(tmp_path: Path) -> None:
    # The parent adds the new DS first and drops the old one a minute later: for that
    # minute it holds both (two trust anchors).
    with timeline(tmp_path, _policy(KeyStyle.KSK_ZSK), Denial.NSEC3, swap_gap=MINUTE) as line:
        (old,) = line.of_role(Role.KSK)
        old_ds = list(line.parent.values())
        start = line.now
        line.operator(
            "KSK rollover requested", lambda k, t: start_rollover(k, Role.KSK, line.policy, t)
        )
        line.run()
        # Negative control: a parent that never took the new DS.
        line.check_bogus("control: the parent still holds only the old DS", old_ds)
        line.assert_ok()
        new = next(k for k in line.of_role(Role.KSK) if k.key_id != old.key_id)
        assert line.phase(old) is Phase.REMOVED and line.phase(new) is Phase.ACTIVE
        assert list(line.parent) == [new.key_id]
        assert (ActionKind.REMOVE, Role.KSK) in line.kinds(start)
        # `zonefan keys ds` (on the real clock, after every fake event) prints the parent's DS.
        (tmp_path / "zonefan.toml").write_text(_config(line.policy), encoding="utf-8")
        shown = run_cli(Path(line.store.path), "keys", "ds", ORIGIN_TEXT, cwd=tmp_path).stdout
        assert shown.split() == line.anchors()[0].split()


def test_csk_rollover(tmp_path: Path) -> None:
    # The parent swaps the DS in one go.
    with timeline(tmp_path, _policy(KeyStyle.CSK), Denial.NSEC) as line:
        (old,) = line.of_role(Role.CSK)
        start = line.now
        line.operator(
            "CSK rollover requested", lambda k, t: start_rollover(k, Role.CSK, line.policy, t)
        )
        line.run()
        # Negative controls: the fake-time resolver does judge signatures at its time.
        ds = list(line.parent.values())
        line.check_bogus(
            "control: judged 15 days on, when the signatures expired", ds, line.now + 15 * DAY
        )
        line.check_bogus(
            "control: judged an hour before the zone was signed", ds, line.start - HOUR
        )
        line.assert_ok()
        new = next(k for k in line.of_role(Role.CSK) if k.key_id != old.key_id)
        assert line.phase(old) is Phase.REMOVED and line.phase(new) is Phase.ACTIVE
        assert list(line.parent) == [new.key_id]
        assert (ActionKind.REMOVE, Role.CSK) in line.kinds(start)


@pytest.mark.parametrize(
    ("style", "denial", "before", "after"),
    [(KeyStyle.CSK, Denial.NSEC, 13, 15), (KeyStyle.KSK_ZSK, Denial.NSEC3, 8, 13)],
    ids=["csk-13-15", "ksk-zsk-8-13"],
)
def test_algorithm_rollover(
    tmp_path: Path, style: KeyStyle, denial: Denial, before: int, after: int
) -> None:
    # RFC 6781 §4.1.4; the parent holds both DS records for a minute.
    with timeline(tmp_path, _policy(style, before), denial, swap_gap=MINUTE) as line:
        old = list(line.timings())
        line.manager.policies[POLICY_NAME] = dataclasses.replace(line.policy, algorithm=after)
        line.operator(
            f"algorithm rollover {before} -> {after} requested",
            lambda k, t: start_algorithm_rollover(k, after, line.policy, t),
        )
        new_sep = [k for k in line.timings() if k.algorithm == after and k.role.is_sep]
        assert new_sep and all(k.publish is None for k in new_sep)
        # Negative control: a parent that switches to the new algorithm's DS while the new
        # keys only sign, their DNSKEYs not yet published.
        line.check_bogus(
            "control: the parent holds only the new DS before its DNSKEY is out",
            [line.ds(k.key_id) for k in new_sep],
        )
        line.run()
        line.assert_ok()
        for key in old:
            assert line.phase(key) is Phase.REMOVED
        assert sorted(line.parent) == sorted(k.key_id for k in new_sep)
        final = zone_keys(line.timings(), line.now, line.manager.policy(ORIGIN))
        assert {line.key(i).algorithm for i in (*final.dnskey, *final.data_signers)} == {after}
