"""AXFR of a signed 100k-name zone: zonefan against NSD serving the same signed zone.

    python bench/xfr_bench.py [--names 100000] [--rounds 3]

Uses change_bench.py's signed store (``bench/work/change/zonefan-N.db``; made on first use),
exports the signed zone for NSD, starts ``zonefan serve`` (with a TSIG key and a
``[[secondary]]`` entry allowing 127.0.0.1) and NSD (``provide-xfr`` with the same key) on
free ports, then per round, alternating, times ``kdig AXFR`` (TSIG-signed, output
discarded) against each, and checks both transfers hold the same number of RRs. Prints
median wall times, RRs/s and zonefan's ratio to NSD, and the same as markdown
(``bench/work/xfr/results.md``).
"""

from __future__ import annotations

import argparse
import base64
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import change_bench  # noqa: E402
from query_bench import HOST, ORIGIN, Server, free_port, tool, zonefan_command  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "xfr"
KEY_NAME = "bench-xfr"
KEY_SECRET = base64.b64encode(bytes(range(32))).decode()
XFR_TIMEOUT = 600


def zonefan_config(path: Path) -> Path:
    path.write_text(
        f"""[key.{KEY_NAME}]
algorithm = "hmac-sha256"
secret = "{KEY_SECRET}"

[[secondary]]
address = "{HOST}"
key = "{KEY_NAME}"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)  # it holds a secret: zonefan wants it private
    return path


def nsd_conf(workdir: Path, zone_file: Path, port: int) -> Path:
    d = workdir / "nsd"
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "nsd.conf"
    conf.write_text(
        f"""server:
    ip-address: "{HOST}@{port}"
    port: {port}
    username: ""
    chroot: ""
    zonesdir: "{d}"
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    xfrdir: "{d}"
    zonelistfile: "{d}/zone.list"
    database: ""
    logfile: "{d}/nsd.log"
    verbosity: 0
    server-count: 1
    reuseport: no
    rrl-ratelimit: 0
remote-control:
    control-enable: no
key:
    name: "{KEY_NAME}"
    algorithm: hmac-sha256
    secret: "{KEY_SECRET}"
zone:
    name: "{ORIGIN}"
    zonefile: "{zone_file}"
    provide-xfr: {HOST} {KEY_NAME}
""",
        encoding="utf-8",
    )
    check = subprocess.run(
        [tool("nsd-checkconf"), str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"nsd-checkconf rejected {conf}:\n{check.stdout}{check.stderr}")
    return conf


def axfr(port: int) -> tuple[float, int]:
    """Seconds for one TSIG-signed AXFR with kdig, and how many RRs came."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            tool("kdig"),
            f"@{HOST}",
            "-p",
            str(port),
            "-y",
            f"hmac-sha256:{KEY_NAME}:{KEY_SECRET}",
            "AXFR",
            ORIGIN,
            "+noall",
            "+answer",
        ],
        capture_output=True,
        text=True,
        timeout=XFR_TIMEOUT,
        check=False,
    )
    took = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith(";")]
    if done.returncode != 0 or not lines or "SOA" not in lines[-1].split():
        raise RuntimeError(f"AXFR from port {port} failed:\n{done.stdout[-2000:]}{done.stderr}")
    return took, len(lines)


def run(args: argparse.Namespace) -> int:
    WORKDIR.mkdir(parents=True, exist_ok=True)
    change_dir = change_bench.WORKDIR
    change_dir.mkdir(parents=True, exist_ok=True)
    zone_file = change_dir / "bench.test.zone"
    change_bench.write_zone(zone_file, args.names)
    db = change_dir / f"zonefan-{args.names}.db"
    change_bench.signed_store(zone_file, db, fresh=False)
    signed_file = WORKDIR / "bench.test.signed"
    exported = subprocess.run(
        [*zonefan_command(), "--db", str(db), "zone", "export", ORIGIN, "-o", str(signed_file)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if exported.returncode != 0:
        raise RuntimeError(f"zonefan zone export failed:\n{exported.stderr}")
    config = zonefan_config(WORKDIR / "zonefan.toml")
    zonefan_port, nsd_port = free_port(), free_port()
    command = [*zonefan_command(), "--config", str(config), "--db", str(db), "serve"]
    servers = {
        "zonefan": Server(
            "zonefan",
            [*command, "--listen", f"{HOST}:{zonefan_port}"],
            zonefan_port,
            WORKDIR / "zonefan.log",
        ),
        "nsd": Server(
            "nsd",
            [tool("nsd"), "-d", "-c", str(nsd_conf(WORKDIR, signed_file, nsd_port))],
            nsd_port,
            WORKDIR / "nsd.log",
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in servers}
    counts: dict[str, int] = {}
    try:
        for server in servers.values():
            server.start()
            change_bench.wait_idle(server)
        for round_no in range(args.rounds):
            order = list(servers) if round_no % 2 == 0 else list(reversed(servers))
            for name in order:
                took, count = axfr(servers[name].port)
                times[name].append(took)
                counts[name] = count
                print(f"  round {round_no + 1} {name}: {took:.2f} s, {count:,} RRs")
    finally:
        for server in servers.values():
            server.stop()
    if counts["zonefan"] != counts["nsd"]:
        raise RuntimeError(f"the transfers differ in size: {counts}")
    text = render(times, counts["nsd"], args)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def render(times: dict[str, list[float]], rrs: int, args: argparse.Namespace) -> str:
    ours = statistics.median(times["zonefan"])
    rows = ["| server | AXFR wall time (median) | RRs/s | zonefan / this |", "|---|---:|---:|---:|"]
    for name, runs in times.items():
        median = statistics.median(runs)
        rows.append(f"| {name} | {median:.2f} s | {rrs / median:,.0f} | {ours / median:.2f} |")
    return "\n".join(
        [
            f"### AXFR of the signed {args.names:,}-name zone ({rrs:,} RRs), TSIG hmac-sha256",
            "",
            f"`python bench/xfr_bench.py --names {args.names} --rounds {args.rounds}` on "
            f"{platform.machine()}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}; client `kdig`, output discarded",
            "",
            *rows,
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
