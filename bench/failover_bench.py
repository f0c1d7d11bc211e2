"""From a backend's death to the last endpoint serving the signed answer without it, and back.

    CI=true python bench/failover_bench.py [--runs 20] [--run-timeout 60]

The product path, with the classes of tests/: HTTP backends on 127.0.0.2 (fra) and
127.0.0.3 (ams), `zonefan serve` (a subprocess) with a pool of the two, checked over HTTP
every 1 s, fall 2, rise 2, flap damping off (else the third withdrawal in minutes would hold
fra out), serving a signed zone; a Knot secondary (NOTIFY, IXFR; its defaults) and pdns as a
target of `zonefan sync run` (the sidecar, NOTIFYed by serve). Each run stops the fra
backend (its listener closed: connections are refused) and polls every endpoint with
dnspython from a thread of its own every 10 ms until it serves the pool as {ams} with an
RRSIG that validates against the DNSKEY the same endpoint serves (dns.dnssec.validate);
then starts the backend again and measures the way back to {fra, ams} likewise. Times are
from the stop (start) of the backend, which comes after a random wait of up to one check
interval (``--seed``): a backend dies at any moment of the checks' schedule, and without
the wait every run would start just after the check that ended the run before. Prints
median and max per endpoint and of the last endpoint of each run, serve's time (detection:
between interval x (fall - 1) and interval x fall after the death, as the first failing
check comes at any moment of an interval) and the others' minus serve's (propagation);
saves it as ``bench/work/failover/results.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# dnspython's DSA module warns on import with recent cryptography: not ours to show.
warnings.filterwarnings("ignore", module="dns")
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import dns.dnssec  # noqa: E402
import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.rrset  # noqa: E402

from tests.pdns import PdnsServer  # noqa: E402
from tests.servers import KnotSecondary, ZonefanServer  # noqa: E402
from tests.sidecar import API_KEY_ENV, SECRET_ENV, Sidecar  # noqa: E402
from tests.test_drill import AMS, FRA, KEY, POOL, ZONE, primary_config, sync_config  # noqa: E402
from tests.test_pools_serve import Backends  # noqa: E402
from tests.tools import example_store, free_port, require_tool  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "failover"
POLL = 0.01  # seconds between one endpoint's queries
INTERVAL, FALL, RISE = 1.0, 2, 2  # tests.test_drill.primary_config's check
SETTINGS = f"HTTP check every {INTERVAL:g} s, timeout 0.5 s, fall {FALL}, rise {RISE}, damping off"
BOTH, WITHOUT = frozenset({FRA, AMS}), frozenset({AMS})


def validated(port: int, keys: dict[int, dns.rrset.RRset]) -> frozenset[str] | None:
    """The pool's addresses as the endpoint on ``port`` serves them, if their RRSIG validates
    against the DNSKEY RRset it serves (fetched once, again when validation fails); None
    otherwise (no answer, no signature, a bad one)."""
    pool, zone = dns.name.from_text(POOL), dns.name.from_text(ZONE)
    try:
        query = dns.message.make_query(pool, "A", want_dnssec=True)
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        rrset = response.find_rrset(response.answer, pool, dns.rdataclass.IN, dns.rdatatype.A)
        sig = response.find_rrset(
            response.answer, pool, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.A
        )
        for attempt in range(2):
            if port not in keys or attempt:
                query = dns.message.make_query(zone, "DNSKEY", want_dnssec=True)
                answer = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
                keys[port] = answer.find_rrset(
                    answer.answer, zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY
                )
            try:
                dns.dnssec.validate(rrset, sig, {zone: keys[port]})
                break
            except dns.exception.ValidationFailure:
                if attempt:
                    return None
    except (dns.exception.DNSException, KeyError, OSError):
        return None
    return frozenset(r.address for r in rrset)


@dataclass
class Poller:
    """One endpoint asked every POLL seconds from a thread of its own until it serves
    ``want`` validated: the monotonic time of that answer."""

    port: int
    want: frozenset[str]
    seen: float | None = None
    keys: dict[int, dns.rrset.RRset] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            if validated(self.port, self.keys) == self.want:
                self.seen = time.monotonic()
                return
            self.stop.wait(max(0.0, sent + POLL - time.monotonic()))


def phase(
    endpoints: dict[str, int],
    want: frozenset[str],
    act: threading.Thread,
    timeout: float,
    delay: float = 0.0,
) -> dict[str, float]:
    """Start one poller per endpoint, wait ``delay`` seconds, then ``act`` (the backend's
    stop or start, timed from its beginning); the seconds each endpoint took to serve
    ``want``."""
    pollers = {name: Poller(port, want) for name, port in endpoints.items()}
    threads = [threading.Thread(target=p.run, daemon=True) for p in pollers.values()]
    for t in threads:
        t.start()
    time.sleep(delay)  # the moment of the failure in the checks' schedule
    begun = time.monotonic()
    act.start()
    deadline = begun + timeout
    try:
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        for p in pollers.values():
            p.stop.set()
        act.join(10)
    late = [name for name, p in pollers.items() if p.seen is None]
    if late:
        raise RuntimeError(f"{late} did not serve {sorted(want)} within {timeout:g} s")
    return {name: p.seen - begun for name, p in pollers.items()}  # type: ignore[operator]


def versions() -> str:
    def first_line(*cmd: str) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        return (done.stdout or done.stderr).strip().splitlines()[0]

    knot = first_line(require_tool("knotd"), "--version")
    pdns = next(
        (
            line
            for line in subprocess.run(
                [require_tool("pdns_server"), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            ).stderr.splitlines()
            if "PowerDNS Authoritative Server" in line
        ),
        "PowerDNS Authoritative Server ?",
    )
    pdns = pdns[pdns.index("PowerDNS") :].split("(")[0].strip()
    return f"{knot}; {pdns}; Python {platform.python_version()}"


def run(args: argparse.Namespace) -> int:
    for tool in ("knotd", "knotc", "pdns_server"):
        require_tool(tool)
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    db = example_store(WORKDIR / "zonefan.db", signed=True)
    port, knot_port, sidecar_port = free_port(), free_port(), free_port()
    backends = Backends(free_port())
    results: dict[str, dict[str, list[float]]] = {"drained": {}, "restored": {}}
    rng = random.Random(args.seed)
    args.load_before = os.getloadavg()
    try:
        backends.start(FRA)
        backends.start(AMS)
        config = primary_config(
            WORKDIR / "zonefan.toml",
            port,
            backends.port,
            [knot_port, sidecar_port],
            pool_extra="damping = { penalty = 0 }",
        )
        primary = ZonefanServer(WORKDIR / "serve", db=db, probe_name=ZONE, config=config)
        primary.fixed_port = port
        knot = KnotSecondary(WORKDIR / "knot", [ZONE], port, KEY)
        knot.fixed_port = knot_port
        with primary, knot, PdnsServer(WORKDIR / "pdns") as pdns:
            sync = sync_config(WORKDIR, port, sidecar_port, pdns)
            env = {SECRET_ENV: KEY.secret, API_KEY_ENV: pdns.api_key}
            with Sidecar(WORKDIR, sync, env):
                endpoints = {"serve": port, "knot": knot_port, "pdns": pdns.dns_port}
                # Everything serves both members, signed, before the first run.
                phase(endpoints, BOTH, threading.Thread(target=lambda: None), 120)
                for i in range(args.runs):
                    for name, want, act in (
                        ("drained", WITHOUT, backends.stop),
                        ("restored", BOTH, backends.start),
                    ):
                        took = phase(
                            endpoints,
                            want,
                            threading.Thread(target=act, args=(FRA,)),
                            args.run_timeout,
                            rng.uniform(0, INTERVAL),
                        )
                        took["last endpoint"] = max(took.values())
                        for endpoint, seconds in took.items():
                            results[name].setdefault(endpoint, []).append(seconds)
                    print(
                        f"  run {i + 1}: "
                        + "; ".join(
                            f"{name} " + ", ".join(f"{e} {s[-1]:.2f}" for e, s in per.items())
                            for name, per in results.items()
                        ),
                        flush=True,
                    )
    finally:
        backends.close()
    text = render(results, args)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def render(results: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> str:
    rows = [
        "| direction | endpoint | median | max | min | propagation: minus serve's, median | max |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for direction, per in results.items():
        serve = per["serve"]
        for endpoint, runs in per.items():
            extra = [s - d for s, d in zip(runs, serve, strict=True)]
            prop = (
                " | "
                if endpoint == "serve"
                else f"{statistics.median(extra):.3f} s | {max(extra):.3f} s"
            )
            rows.append(
                f"| {direction} | {endpoint} | {statistics.median(runs):.3f} s | "
                f"{max(runs):.3f} s | {min(runs):.3f} s | {prop} |"
            )
    load = " ".join(f"{x:.2f}" for x in args.load_before)
    load += " before, " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " after"
    return "\n".join(
        [
            f"`CI=true python bench/failover_bench.py --runs {args.runs} --seed {args.seed}` "
            f"on {platform.machine()}, {os.cpu_count()} CPUs, load average {load} the runs; "
            f"{versions()}; {time.strftime('%Y-%m-%d')}",
            "",
            f"Pool: {SETTINGS}. Detection: a failure is seen by the first check after it, "
            f"so serve's drained time is between {INTERVAL * (FALL - 1):g} and "
            f"{INTERVAL * FALL:g} s (interval x fall), its restored time between "
            f"{INTERVAL * (RISE - 1):g} and {INTERVAL * RISE:g} s, plus the commit.",
            "",
            *rows,
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="failovers and returns measured")
    parser.add_argument(
        "--run-timeout", type=float, default=60.0, help="seconds each direction may take"
    )
    parser.add_argument(
        "--seed", type=int, default=18, help="of the random wait before each stop and start"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.runs <= 500:
        parser.error("--runs must be between 1 and 500")
    if not 0 < args.run_timeout <= 600:
        parser.error("--run-timeout must be in (0, 600] seconds")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args()))
