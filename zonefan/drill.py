"""The measuring core of ``zonefan drill``: which servers to ask, what answer counts, when
each served it, and the drill's order of events (drain, measure, always restore, measure).

Every endpoint is asked directly and on its own (the primary, each secondary at its
NOTIFY address, each sync target at the DNS address of its config), at most once per
``interval``, until it serves the wanted answer or the timeout passes. In a signed zone an
answer counts only when its RRSIG validates against the zone's DNSKEY RRset as the store
holds it: a server that serves the new addresses under a stale signature has not
converged. Time is injected (``clock``, ``sleep``), so the tests drive it.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from nameserver.store.drills import Drill, DrillEndpoint
from settings import Address

DEFAULT_INTERVAL = 0.05  # seconds between two queries to one endpoint
QUERY_TIMEOUT = 1.0  # one query's wait; a lost UDP answer is asked again after it

Keys = Mapping[dns.name.Name, dns.rrset.RRset]  # zone -> its DNSKEY RRset (signed zones)


@dataclass(frozen=True)
class Endpoint:
    """A server that should serve the drilled zones: asked at ``address`` for the pools of
    ``zones`` (None: every zone); ``address`` None when it cannot be asked (``note``)."""

    kind: str  # primary, secondary, target, sidecar
    name: str
    address: Address | None
    zones: frozenset[dns.name.Name] | None = None
    note: str = ""

    def serves(self, zone: dns.name.Name) -> bool:
        return self.zones is None or zone in self.zones


@dataclass(frozen=True)
class Watch:
    """What a pool's RRset must be at an endpoint: none of ``absent`` in it, all of
    ``present``, and never empty."""

    zone: dns.name.Name
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    absent: frozenset[str] = frozenset()
    present: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Reached:
    """When an endpoint first served the wanted answers: ``seconds`` after the change
    began (the arrival of that answer), None when not within the timeout; ``last`` is
    what was wrong with the last answer before."""

    seconds: float | None
    queries: int
    last: str = ""


Ask = Callable[
    [Address, dns.name.Name, dns.rdatatype.RdataType, bool, float], Awaitable[dns.message.Message]
]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


async def ask(
    address: Address,
    name: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    dnssec: bool,
    timeout: float,
) -> dns.message.Message:
    """One non-recursive query to ``address`` over UDP, again over TCP when truncated."""
    from dns import asyncquery

    query = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
    query.flags &= ~dns.flags.RD
    response = await asyncquery.udp(query, address.host, timeout=timeout, port=address.port)
    if response.flags & dns.flags.TC:
        response = await asyncquery.tcp(query, address.host, timeout=timeout, port=address.port)
    return response


def _canonical(rdtype: dns.rdatatype.RdataType, text: str) -> object:
    """An RDATA text of a pool as compared: an address, or a CNAME's target name (names
    compare without case)."""
    if rdtype == dns.rdatatype.CNAME:
        return dns.name.from_text(text)
    return ipaddress.ip_address(text)


def judge(response: dns.message.Message, watch: Watch, keys: dns.rrset.RRset | None) -> str:
    """What is wrong with ``response`` for ``watch`` ("" when nothing): ``keys``, the
    zone's DNSKEY RRset when the zone is signed, must validate the answer."""
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return f"answers {dns.rcode.to_text(rcode)}"
    if not response.flags & dns.flags.AA:
        return "answers without authority (AA): it does not serve the zone"
    rrset = response.get_rrset(response.answer, watch.name, dns.rdataclass.IN, watch.rdtype)
    if rrset is None or not len(rrset):
        return f"serves no {dns.rdatatype.to_text(watch.rdtype)} at {watch.name}"
    served = {_canonical(watch.rdtype, r.to_text()) for r in rrset}
    stale = sorted(a for a in watch.absent if _canonical(watch.rdtype, a) in served)
    if stale:
        return f"still serves {', '.join(stale)} at {watch.name}"
    missing = sorted(a for a in watch.present if _canonical(watch.rdtype, a) not in served)
    if missing:
        return f"does not serve {', '.join(missing)} at {watch.name} yet"
    if keys is not None:
        sig = response.get_rrset(
            response.answer, watch.name, dns.rdataclass.IN, dns.rdatatype.RRSIG, watch.rdtype
        )
        if sig is None:
            return f"serves {watch.name} without its RRSIG"
        try:
            dns.dnssec.validate(rrset, sig, {watch.zone: keys})
        except dns.exception.ValidationFailure as e:
            return f"serves {watch.name} with a signature that does not validate ({e})"
    return ""


async def reach(
    endpoint: Endpoint,
    watches: Sequence[Watch],
    keys: Keys,
    since: float,
    deadline: float,
    *,
    ask: Ask = ask,
    clock: Clock,
    sleep: Sleep = asyncio.sleep,
    interval: float = DEFAULT_INTERVAL,
) -> Reached:
    """Ask ``endpoint`` about every watch, once per ``interval`` at most, until one round
    finds nothing wrong or ``deadline`` (a ``clock`` time) passes."""
    assert endpoint.address is not None
    queries, last = 0, "no answer"
    while True:
        sent = clock()
        if sent >= deadline:
            return Reached(None, queries, last)
        problem = ""
        for w in watches:
            queries += 1
            timeout = max(0.001, min(QUERY_TIMEOUT, deadline - clock()))
            try:
                response = await ask(endpoint.address, w.name, w.rdtype, w.zone in keys, timeout)
            except (dns.exception.DNSException, OSError) as e:
                problem = f"no answer ({type(e).__name__}: {e})" if str(e) else "no answer"
                if isinstance(e, dns.exception.Timeout):
                    problem = f"no answer within {timeout:.3g} s"
                break
            problem = judge(response, w, keys.get(w.zone))
            if problem:
                break
        if not problem:
            return Reached(clock() - since, queries)
        last = problem
        wait = min(sent + interval, deadline) - clock()
        if wait > 0:
            await sleep(wait)


async def measure(
    endpoints: Sequence[Endpoint],
    watches: Sequence[Watch],
    keys: Keys,
    since: float,
    timeout: float,
    *,
    ask: Ask = ask,
    clock: Clock,
    sleep: Sleep = asyncio.sleep,
    interval: float = DEFAULT_INTERVAL,
) -> dict[str, Reached]:
    """Every endpoint that can be asked, all at once, each on its own: by name."""
    asked = [e for e in endpoints if e.address is not None]

    async def one(e: Endpoint) -> Reached:
        mine = [w for w in watches if e.serves(w.zone)]
        deadline = since + timeout
        return await reach(
            e, mine, keys, since, deadline, ask=ask, clock=clock, sleep=sleep, interval=interval
        )

    results = await asyncio.gather(*(one(e) for e in asked))
    return {e.name: r for e, r in zip(asked, results, strict=True)}


# -- the drill -------------------------------------------------------------------------------


class DrillLog(Protocol):
    """Where a drill is recorded (the store's drills)."""

    def start_drill(
        self,
        region: str,
        zones: Sequence[dns.name.Name],
        author: str,
        reason: str,
        start: float,
        timeout: float,
    ) -> Drill: ...

    def finish_drill(self, drill: Drill) -> None: ...


Measure = Callable[[Sequence[Watch], float], Mapping[str, Reached]]


@dataclass(frozen=True)
class DrillPlan:
    region: str
    zones: tuple[dns.name.Name, ...]
    author: str
    reason: str
    timeout: float
    endpoints: tuple[Endpoint, ...]


def run_drill(
    log: DrillLog,
    plan: DrillPlan,
    drain: Callable[[], Sequence[Watch]],
    undrain: Callable[[], Sequence[Watch]],
    measure: Measure,
    *,
    clock: Clock,
    wall: Clock,
) -> Drill:
    """Drain, measure the way out, restore (always, whatever happens while measuring),
    measure the way back, and record it all.

    ``drain`` commits the drain and returns what the endpoints must then serve; when it
    raises nothing was drained and nothing is recorded. ``measure(watches, since)`` times
    every endpoint from ``since`` (a ``clock`` time). An interruption (Ctrl-C, SIGTERM as
    KeyboardInterrupt) or an error while measuring still restores the region, records the
    drill as failed and is raised again."""
    began, start = clock(), wall()
    watches = drain()
    drill = log.start_drill(plan.region, plan.zones, plan.author, plan.reason, start, plan.timeout)
    out: Mapping[str, Reached] = {}
    back: Mapping[str, Reached] = {}
    restore_start: float | None = None
    error = ""
    try:
        try:
            out = measure(watches, began)
        finally:
            restored_from = clock()
            try:
                restore = undrain()
            except BaseException as e:
                error = (
                    f"the restore failed ({type(e).__name__}: {e}): region {plan.region} is "
                    f"still drained; run `zonefan undrain {plan.region}`"
                )
                raise
            restore_start = restored_from - began
        back = measure(restore, restored_from)
    except BaseException as e:
        if not error:
            phase = "the way back" if restore_start is not None and out else "the drain"
            error = (
                f"interrupted while measuring {phase} ({type(e).__name__}"
                + (f": {e}" if str(e) else "")
                + f"); region {plan.region} was restored"
            )
        log.finish_drill(_finished(drill, plan, out, back, restore_start, wall(), error))
        raise
    done = _finished(drill, plan, out, back, restore_start, wall(), error)
    log.finish_drill(done)
    return done


def _finished(
    drill: Drill,
    plan: DrillPlan,
    out: Mapping[str, Reached],
    back: Mapping[str, Reached],
    restore_start: float | None,
    finished: float,
    error: str,
) -> Drill:
    rows = []
    for e in plan.endpoints:
        address = None if e.address is None else str(e.address)
        if e.address is None:
            rows.append(DrillEndpoint(e.kind, e.name, address, False, note=e.note))
            continue
        o, b = out.get(e.name), back.get(e.name)
        notes = []
        if o is None or o.seconds is None:
            notes.append("drain: " + (o.last if o is not None else "not measured"))
        if b is None or b.seconds is None:
            notes.append("restore: " + (b.last if b is not None else "not measured"))
        rows.append(
            DrillEndpoint(
                e.kind,
                e.name,
                address,
                True,
                None if o is None else o.seconds,
                None if b is None else b.seconds,
                (0 if o is None else o.queries) + (0 if b is None else b.queries),
                "; ".join(notes),
            )
        )
    done = replace(
        drill,
        restore_start=restore_start,
        finished=finished,
        error=error,
        endpoints=tuple(rows),
    )
    failed = bool(error) or any(r.failed for r in rows)
    return replace(done, outcome="failed" if failed else "passed")
