"""From one record change to its signed answer being served: zonefan against Knot DNS.

    python bench/change_bench.py [--names 100000] [--changes 30] [--fresh]

Both servers hold the same signed 100k-name zone (query_bench.py's zone, SOA EXPIRE 5 d
so the default 14-day signatures fit; one ECDSA P-256 CSK, NSEC). Each change adds a new
name with an A record, which also re-links and re-signs the NSEC chain around it.

* zonefan: ``zonefan serve`` in a subprocess; the change is made in this process by a
  long-lived editor with the zone kept warm (the path UPDATE and the API take): validate,
  sign incrementally, journal, commit. The server notices the commit and patches its
  snapshot.
* Knot: ``knotd`` with automatic signing; the change is an RFC 2136 UPDATE sent from this
  process, which Knot validates, signs incrementally, journals and serves.

For each change the clock starts just before the change is made and stops when a DO query
(sent every ~1 ms) returns the new A record with its RRSIG. Prints median, 90th
percentile and maximum per server and zonefan's ratio to Knot, and the same as markdown
(``bench/work/change/results.md``). The signed zonefan store is kept in
``bench/work/change/`` and reused unless ``--fresh``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rdata  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.update  # noqa: E402
import query_bench  # noqa: E402
from query_bench import HOST, ORIGIN, Server, free_port, tool, zonefan_command  # noqa: E402

from nameserver.dnssec.manager import DnssecManager  # noqa: E402
from nameserver.edit.editor import Author, ZoneEditor  # noqa: E402
from nameserver.store.store import Store  # noqa: E402
from nameserver.store.versions import ZoneVersions  # noqa: E402
from nameserver.zone.records import Record  # noqa: E402
from nameserver.zone.serial import SerialPolicy  # noqa: E402
from nameserver.zone.zonefile import read_zone_file  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "change"
ANSWER_TIMEOUT = 10.0  # seconds a change may take to be served before the run fails
WARMUP_TIMEOUT = 300.0
POLL = 0.001  # seconds between DO queries while waiting
EXPIRE = 432000  # SOA EXPIRE, so that 14-day signatures refreshed 7 days ahead fit
Change = Callable[[str, str], None]  # (owner label, address) -> made


# -- the zone ------------------------------------------------------------------------------


def write_zone(path: Path, names: int) -> None:
    """query_bench.py's zone with SOA EXPIRE lowered to :data:`EXPIRE`."""
    query_bench.write_zone(path, names)
    text = path.read_text(encoding="ascii")
    old = " 1209600 300\n"
    assert old in text, "query_bench's SOA line changed; update change_bench.write_zone"
    path.write_text(text.replace(old, f" {EXPIRE} 300\n", 1), encoding="ascii")


def signed_store(zone_file: Path, db: Path, fresh: bool) -> float:
    """Import and sign the zone into ``db`` (kept between runs); returns seconds taken."""
    if db.exists() and not fresh:
        return 0.0
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(f"{db}.keys", ignore_errors=True)
    started = time.monotonic()
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"), workers=0)
        editor = manager.editor()
        parsed = read_zone_file(zone_file)
        plan = editor.plan_import(parsed.origin, parsed.records, Author("bench"))
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(parsed.origin, Author("bench"))
    return time.monotonic() - started


# -- waiting for the answer ----------------------------------------------------------------


def signed_answer_served(sock: socket.socket, port: int, qname: str, address: str) -> bool:
    """One DO query: True when the answer holds ``address`` and an RRSIG over it."""
    query = dns.message.make_query(qname, "A", want_dnssec=True)
    sock.sendto(query.to_wire(), (HOST, port))
    while True:  # skip late answers to earlier queries
        try:
            response = dns.message.from_wire(sock.recv(65535))
        except TimeoutError:
            return False
        if response.id == query.id:
            break
    found = signed = False
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.A and any(rd.address == address for rd in rrset):
            found = True
        if rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == dns.rdatatype.A:
            signed = True
    return found and signed


def time_change(
    port: int, change: Change, label: str, address: str, timeout: float = ANSWER_TIMEOUT
) -> tuple[float, float]:
    """Seconds from the start of ``change`` until it returned (committed) and until the
    signed answer is served."""
    qname = f"{label}.{ORIGIN}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.05)
        started = time.perf_counter()
        change(label, address)
        committed = time.perf_counter() - started
        deadline = started + timeout
        while not signed_answer_served(sock, port, qname, address):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{qname} A {address} not served after {timeout} s")
            time.sleep(POLL)
        return committed, time.perf_counter() - started


# -- the two writers -----------------------------------------------------------------------


def zonefan_writer(db: Path) -> tuple[Change, Callable[[], None]]:
    """Changes through a long-lived editor of the store; and how to close it."""
    store = Store(db)
    versions = ZoneVersions(store)
    manager = DnssecManager(store, Path(f"{db}.keys"), versions=versions)
    editor: ZoneEditor = manager.editor()
    origin = dns.name.from_text(ORIGIN)
    versions.current(origin)  # load the zone once, untimed, as a running server has it

    def change(label: str, address: str) -> None:
        rdata = dns.rdata.from_text("IN", "A", address)
        record = Record(dns.name.from_text(label, origin), 300, rdata)
        editor.change_records(origin, [], [record], Author("bench", "latency"))

    return change, store.close


def knot_writer(port: int) -> Change:
    """Changes as RFC 2136 UPDATEs to Knot; returns once Knot answered NOERROR."""

    def change(label: str, address: str) -> None:
        update = dns.update.UpdateMessage(ORIGIN)
        update.add(label, 300, "A", address)
        response = dns.query.udp(update, HOST, port=port, timeout=ANSWER_TIMEOUT)
        if response.rcode() != 0:
            raise RuntimeError(f"Knot refused the UPDATE: {response}")

    return change


def knot_conf(workdir: Path, zone_file: Path, port: int) -> Path:
    d = workdir / "knot"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copy(zone_file, d / "bench.test.zone")
    conf = d / "knot.conf"
    conf.write_text(
        f"""server:
    listen: {HOST}@{port}
    rundir: "{d}"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 2
database:
    storage: "{d}"
log:
  - target: "{d}/knot.log"
    any: info
acl:
  - id: local-update
    address: {HOST}
    action: update
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
    nsec3: off
zone:
  - domain: {ORIGIN}
    storage: "{d}"
    file: "bench.test.zone"
    dnssec-signing: on
    dnssec-policy: csk
    acl: local-update
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
""",
        encoding="utf-8",
    )
    check = subprocess.run(
        [tool("knotc"), "-c", str(conf), "conf-check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"knotc conf-check rejected {conf}:\n{check.stdout}{check.stderr}")
    return conf


# -- the run -------------------------------------------------------------------------------


def wait_idle(server: Server, timeout: float = 600.0) -> float:
    """Wait until the server process is idle (its start-up work, e.g. zonefan's first
    DNSSEC maintenance pass over every name, is done); returns seconds waited."""
    started = time.monotonic()
    clock_ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / clock_ticks

    while time.monotonic() - started < timeout:
        before = cpu()
        time.sleep(1.0)
        if cpu() - before < 0.05:
            break
    return time.monotonic() - started


def measure(
    name: str, port: int, change: Change, args: argparse.Namespace
) -> list[tuple[float, float]]:
    """Warm up (untimed), then ``args.changes`` timed changes; (committed, served) each."""
    run_id = time.strftime("%H%M%S")
    for i in range(args.warmup):
        # The first answers may wait for the server's start-up maintenance pass.
        label, address = f"warm{run_id}-{i}", f"198.51.100.{i % 250 + 1}"
        time_change(port, change, label, address, timeout=WARMUP_TIMEOUT)
    times = []
    for i in range(args.changes):
        times.append(time_change(port, change, f"lat{run_id}-{i}", f"192.0.2.{i % 250 + 1}"))
    served = statistics.median(t[1] for t in times) * 1000
    print(f"  {name}: median {served:.1f} ms over {len(times)} changes")
    return times


def summary(times: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return statistics.median(ordered) * 1000, p90 * 1000, ordered[-1] * 1000


def render(
    results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, notes: list[str]
) -> str:
    rows = [
        "| server | change returned (median) | served: median | p90 | max "
        "| zonefan / this (median served) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    zonefan_median = summary([t[1] for t in results["zonefan"]])[0]
    for name, times in results.items():
        median, p90, worst = summary([t[1] for t in times])
        committed = statistics.median(t[0] for t in times) * 1000
        rows.append(
            f"| {name} | {committed:.1f} ms | {median:.1f} ms | {p90:.1f} ms | {worst:.1f} ms "
            f"| {zonefan_median / median:.2f} |"
        )
    return "\n".join(
        [
            f"### Change to signed answer, {args.names:,} names, {args.changes} changes each",
            "",
            f"`python bench/change_bench.py --names {args.names} --changes {args.changes}` "
            f"on {platform.machine()}, {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}",
            "",
            *rows,
            "",
            *notes,
        ]
    )


def run(args: argparse.Namespace) -> int:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    zone_file = WORKDIR / "bench.test.zone"
    write_zone(zone_file, args.names)
    db = WORKDIR / f"zonefan-{args.names}.db"
    took = signed_store(zone_file, db, args.fresh)
    notes = [f"- zonefan import + sign: {took:.1f} s" if took else "- zonefan store reused"]
    results: dict[str, list[tuple[float, float]]] = {}

    port = free_port()
    server = Server(
        "zonefan",
        [*zonefan_command(), "--db", str(db), "serve", "--listen", f"{HOST}:{port}"],
        port,
        WORKDIR / "zonefan.log",
    )
    change, close = zonefan_writer(db)
    try:
        server.start()
        idle = wait_idle(server)
        notes.append(
            f"- zonefan serve: first answer after {server.load_seconds:.1f} s, "
            f"idle (first maintenance pass done) {idle:.0f} s later"
        )
        results["zonefan"] = measure("zonefan", port, change, args)
    finally:
        close()
        server.stop()

    if args.no_knot:
        return _print(results, args, notes)
    port = free_port()
    conf = knot_conf(WORKDIR, zone_file, port)
    knot = Server("knot", [tool("knotd"), "-c", str(conf)], port, WORKDIR / "knotd.log")
    try:
        knot.start()
        idle = wait_idle(knot)
        notes.append(
            f"- knotd: first (signed) answer after {knot.load_seconds:.1f} s, "
            f"idle {idle:.0f} s later"
        )
        results["knot"] = measure("knot", port, knot_writer(port), args)
    finally:
        knot.stop()
    return _print(results, args, notes)


def _print(
    results: dict[str, list[tuple[float, float]]], args: argparse.Namespace, notes: list[str]
) -> int:
    text = render(results, args, notes)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=30, help="timed changes per server")
    parser.add_argument("--warmup", type=int, default=3, help="untimed changes first")
    parser.add_argument("--fresh", action="store_true", help="sign the zonefan store again")
    parser.add_argument("--no-knot", action="store_true", help="zonefan only")
    args = parser.parse_args(argv)
    if not 1 <= args.changes <= 1000:
        parser.error("--changes must be between 1 and 1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return run(parse_args(argv))
    return 130


if __name__ == "__main__":
    sys.exit(main())
