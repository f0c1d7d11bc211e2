"""The per-query cost of zonefan's query path in-process, without sockets or the event loop.

    python bench/hotpath.py [--db bench/work/zonefan.db] [--queries bench/work/queries.txt]

Run ``bench/query_bench.py`` first: it leaves the 100k-name store and the query files in
``bench/work/``. This loads the zone the way the server does (store rows to a snapshot) and
times, in microseconds per query:

* miss: ``Responder.respond`` with an empty cache (each distinct query once), and its parts:
  ``parse_query``, ``ZoneRegistry.find`` + ``resolve``, ``render``;
* hit: ``UdpHandler.datagram_received`` with a warm cache and a transport whose ``sendto``
  does nothing: the Python share of a cached answer (the network stack is not included).

Numbers are the best of ``--repeat`` passes (least disturbed by other load on the machine).
"""

from __future__ import annotations

import argparse
import gc
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


def _project_dir(argv: Sequence[str]) -> str:
    """``--project DIR`` (a copy of the tree to measure), read before the imports below."""
    for i, arg in enumerate(argv):
        if arg == "--project" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--project="):
            return arg.split("=", 1)[1]
    return str(BENCH_DIR.parent)


sys.path.insert(0, _project_dir(sys.argv[1:]))

import dns.name  # noqa: E402
import dns.rdatatype  # noqa: E402

from nameserver.serve.answer import resolve  # noqa: E402
from nameserver.serve.query import parse_query  # noqa: E402
from nameserver.serve.responder import Responder  # noqa: E402
from nameserver.serve.response import render, udp_limit  # noqa: E402
from nameserver.server import UdpHandler  # noqa: E402
from nameserver.store.store import Store  # noqa: E402
from nameserver.zone.snapshot import ZoneSnapshot  # noqa: E402
from nameserver.zone.wirename import lower  # noqa: E402
from nameserver.zone.zones import ZoneRegistry  # noqa: E402

ADDR = ("127.0.0.1", 40000)


def wire_query(line: str, qid: int) -> bytes:
    """A query as dnsperf sends it by default: RD set, no EDNS."""
    name, rdtype = line.split()
    qname = dns.name.from_text(name).to_wire()
    assert qname is not None
    head = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return head + qname + struct.pack("!HH", int(dns.rdatatype.from_text(rdtype)), 1)


def load_packets(path: Path) -> list[bytes]:
    rng = random.Random(1)
    lines = [x for x in path.read_text(encoding="ascii").splitlines() if x.strip()]
    return [wire_query(line, rng.randrange(65536)) for line in lines]


class NullTransport:
    """Stands in for the UDP transport: counts answers, sends nothing."""

    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1


def best_of(repeat: int, n: int, run: Callable[[], None]) -> float:
    """Microseconds per item: the fastest of ``repeat`` timed calls of ``run`` (n items)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", type=Path, default=BENCH_DIR / "work" / "zonefan.db")
    p.add_argument("--queries", type=Path, default=BENCH_DIR / "work" / "queries.txt")
    p.add_argument("--distinct", type=Path, default=BENCH_DIR / "work" / "queries-distinct.txt")
    p.add_argument("--zone", default="bench.test.")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--project", help="measure the nameserver package of this tree instead")
    p.add_argument("--profile", action="store_true", help="also cProfile the miss path")
    args = p.parse_args(argv)
    for path in (args.db, args.queries, args.distinct):
        if not path.exists():
            raise SystemExit(f"{path} is missing: run bench/query_bench.py first")

    origin = dns.name.from_text(args.zone)
    start = time.perf_counter()
    store = Store(args.db)
    rows = store.rows(origin)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    snapshot = ZoneSnapshot.from_rows(origin, rows)
    build_s = time.perf_counter() - start
    store.close()
    registry = ZoneRegistry()
    registry.install(snapshot)
    print(f"store read {read_s:.2f} s ({len(rows)} rows), snapshot build {build_s:.2f} s")

    distinct = load_packets(args.distinct)
    packets = load_packets(args.queries)
    n = len(distinct)
    queries = [q for q in (parse_query(d) for d in distinct) if q is not None]
    answers = [resolve(registry.find(lower(q.qname), q.qtype), q.qname, q.qtype) for q in queries]  # type: ignore[arg-type]

    def miss() -> None:
        responder = Responder(registry, cache_size=1 << 30)  # not sized to the zone here
        respond = responder.respond
        for d in distinct:
            respond(d, False)

    def parse() -> None:
        for d in distinct:
            parse_query(d)

    def find_resolve() -> None:
        find = registry.find
        for q in queries:
            zone = find(lower(q.qname), q.qtype)
            assert zone is not None
            resolve(zone, q.qname, q.qtype)

    def render_all() -> None:
        for q, a in zip(queries, answers, strict=True):
            render(q, a, a.rcode, udp_limit(q))

    warm = Responder(registry)
    handler = UdpHandler(warm)
    transport = NullTransport()
    handler.transport = transport  # type: ignore[assignment]
    for d in packets:
        warm.respond(d, False)

    def hit() -> None:
        received = handler.datagram_received
        for d in packets:
            received(d, ADDR)

    def loop_overhead() -> None:
        for d in packets:
            transport.sendto(d, ADDR)

    r = args.repeat
    rows_out = [
        ("miss: Responder.respond, empty cache", best_of(r, n, miss)),
        ("  parse_query", best_of(r, n, parse)),
        ("  ZoneRegistry.find + resolve", best_of(r, n, find_resolve)),
        ("  render", best_of(r, n, render_all)),
        ("hit: UdpHandler.datagram_received", best_of(r, len(packets), hit)),
        ("  (of which: loop + call of a no-op sendto)", best_of(r, len(packets), loop_overhead)),
    ]
    import nameserver

    print(f"nameserver from {Path(nameserver.__file__).parent}")
    print(f"{n} distinct queries, {len(packets)} in the mix, best of {r}")
    for label, micros in rows_out:
        print(f"{label:<46} {micros:7.2f} µs/query  ({1e6 / micros:>10,.0f} /s)")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(miss)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return 0


if __name__ == "__main__":
    sys.exit(main())
