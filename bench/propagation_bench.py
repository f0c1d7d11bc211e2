"""From an RFC 2136 UPDATE sent to zonefan to the new serial on NSD, Knot and BIND.

    python bench/propagation_bench.py [--names 100000] [--updates 10]

Uses a copy of change_bench.py's signed store (100k names, ECDSA P-256 CSK, NSEC), starts
``zonefan serve`` with a TSIG key, an update policy and the three secondaries as
``[[secondary]]`` entries with ``notify``, then NSD, Knot and BIND as TSIG secondaries
(the classes of tests/servers/, on free ports). Each round sends one TSIG-signed UPDATE
(a new TXT record) with dnspython and times, per secondary, until its SOA serial is the
new one: UPDATE -> validate, sign, journal, commit -> the server serves it -> NOTIFY ->
the secondary's SOA query and IXFR. Prints median and maximum per secondary and for all
three, and the same as markdown (``bench/work/propagation/results.md``).
"""

from __future__ import annotations

import argparse
import base64
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import change_bench  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.tsig  # noqa: E402
import dns.update  # noqa: E402
from query_bench import ORIGIN  # noqa: E402

from tests.servers import (  # noqa: E402
    BindSecondary,
    KnotSecondary,
    NsdSecondary,
    XfrKey,
    ZonefanServer,
    _Secondary,
)
from tests.tools import free_port  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "propagation"
KEY = XfrKey("bench-key", base64.b64encode(b"propagation-bench-secret-0123456").decode())
KINDS: dict[str, type[_Secondary]] = {
    "nsd": NsdSecondary,
    "knot": KnotSecondary,
    "bind": BindSecondary,
}
DEADLINE = 30.0  # seconds a secondary may take before the run fails
INITIAL = 600.0  # seconds for the initial transfers of the signed 100k zone


def config_text(ports: dict[str, int]) -> str:
    secondaries = "".join(
        f'\n[[secondary]]\naddress = "127.0.0.1"\nkey = "{KEY.name}"\nnotify = "127.0.0.1@{port}"\n'
        for port in ports.values()
    )
    return (
        f'[key.{KEY.name}]\nalgorithm = "{KEY.algorithm}"\nsecret = "{KEY.secret}"\n'
        f"{secondaries}\n"
        f'[zone."{ORIGIN}"]\nupdate-policy = ["grant {KEY.name}. zonesub ANY"]\n'
    )


def soa_serial(port: int) -> int | None:
    query = dns.message.make_query(ORIGIN, "SOA")
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except dns.exception.Timeout:
        return None
    return int(response.answer[0][0].serial) if response.answer else None


def send_update(port: int, label: str) -> None:
    update = dns.update.UpdateMessage(ORIGIN)
    update.add(label, 300, "TXT", f'"{label}"')
    update.use_tsig(dns.tsig.Key(f"{KEY.name}.", KEY.secret, dns.tsig.HMAC_SHA256))
    response = dns.query.udp(update, "127.0.0.1", port=port, timeout=10)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"UPDATE refused: {dns.rcode.to_text(response.rcode())}")


def run(args: argparse.Namespace) -> int:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    change_dir = change_bench.WORKDIR
    change_dir.mkdir(parents=True, exist_ok=True)
    zone_file = change_dir / "bench.test.zone"
    change_bench.write_zone(zone_file, args.names)
    source = change_dir / f"zonefan-{args.names}.db"
    change_bench.signed_store(zone_file, source, fresh=False)
    db = WORKDIR / "zonefan.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, db)
    shutil.rmtree(f"{db}.keys", ignore_errors=True)
    shutil.copytree(f"{source}.keys", f"{db}.keys")
    ports = {kind: free_port() for kind in KINDS}
    config = WORKDIR / "zonefan.toml"
    config.write_text(config_text(ports), encoding="utf-8")
    config.chmod(0o600)  # it holds a secret: zonefan wants it private
    times: dict[str, list[float]] = {kind: [] for kind in [*KINDS, "all three"]}
    with ZonefanServer(WORKDIR, db, probe_name=ORIGIN, config=config, start_timeout=INITIAL) as p:
        secondaries = []
        try:
            for kind, cls in KINDS.items():
                server = cls(WORKDIR / kind, [ORIGIN], p.port, KEY, start_timeout=INITIAL)
                server.fixed_port = ports[kind]
                secondaries.append((kind, server.start()))
            current = soa_serial(p.port)
            assert current is not None
            for _kind, server in secondaries:
                server.wait_serial(ORIGIN, current, timeout=INITIAL)
            for i in range(args.updates):
                started = time.perf_counter()
                send_update(p.port, f"prop-{int(time.time())}-{i}")
                target = soa_serial(p.port)
                while target == current:  # the commit is served within the 10 ms poll
                    if time.perf_counter() - started > DEADLINE:
                        raise RuntimeError("zonefan did not serve the UPDATE")
                    time.sleep(0.002)
                    target = soa_serial(p.port)
                assert target is not None
                pending = dict(secondaries)
                while pending:
                    for kind, server in list(pending.items()):
                        if soa_serial(server.port) == target:
                            times[kind].append(time.perf_counter() - started)
                            del pending[kind]
                    if time.perf_counter() - started > DEADLINE:
                        raise RuntimeError(f"{sorted(pending)} did not get serial {target}")
                    time.sleep(0.002)
                times["all three"].append(time.perf_counter() - started)
                current = target
                print(f"  update {i + 1}: all three in {times['all three'][-1] * 1000:.0f} ms")
        finally:
            for _kind, server in secondaries:
                server.stop()
    text = render(times, args)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def render(times: dict[str, list[float]], args: argparse.Namespace) -> str:
    rows = ["| secondary | median | max |", "|---|---:|---:|"]
    for kind, runs in times.items():
        rows.append(
            f"| {kind} | {statistics.median(runs) * 1000:.0f} ms | {max(runs) * 1000:.0f} ms |"
        )
    return "\n".join(
        [
            f"### UPDATE to new serial on NSD, Knot and BIND ({args.names:,} names, signed)",
            "",
            f"`python bench/propagation_bench.py --names {args.names} --updates {args.updates}` "
            f"on {platform.machine()}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}",
            "",
            *rows,
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=10)
    args = parser.parse_args(argv)
    if not 1 <= args.updates <= 200:
        parser.error("--updates must be between 1 and 200")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
