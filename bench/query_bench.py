"""Query throughput of ``zonefan serve`` against NSD on the same 100k-name zone, in one run.

    python bench/query_bench.py [--names 100000] [--seconds 20]

Steps: generate a deterministic zone and dnsperf query files in ``bench/work/``; import the
zone into a fresh zonefan store (timed); start zonefan and NSD pinned to one CPU and time
each from process start to its first SOA answer; run dnsperf pinned to the other CPU: a cold
pass against a fresh zonefan (every query new to its response cache), then for each server a
warm-up pass and the measured run. Prints a table and the same as a markdown section.

All traffic goes to 127.0.0.1. Every server is stopped by PID (SIGTERM, then SIGKILL) in a
``finally``, within a bounded time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import itertools
import os
import platform
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_WORKDIR = BENCH_DIR / "work"

ORIGIN = "bench.test."
HOST = "127.0.0.1"
SEED = 20261123

START_TIMEOUT = 300.0  # seconds until a started server must answer its first SOA query
ZONEFAN_RRL = ("--rrl-ratelimit", "0")  # like NSD's rrl-ratelimit: 0 below: no rate limits
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL, and after SIGKILL
IMPORT_TIMEOUT = 1800.0
PROBE_INTERVAL = 0.005  # seconds between readiness probes
IDLE_SAMPLE = 0.5  # seconds between CPU samples while waiting for a server to settle
IDLE_SHARE = 0.1  # settled: under this share of a CPU for two samples in a row
IDLE_TIMEOUT = 300.0
WARMUP_LIMIT = 60.0  # the warm-up pass through the query file never runs longer than this
TARGET_RATIO = 0.25
CPU_SAMPLE = 0.2  # seconds between /proc/stat samples during a dnsperf run
DNSPERF_GRACE = 60.0  # seconds a dnsperf run may take beyond its -l limit
BACKGROUND_SAMPLE = 1.0  # seconds of idle CPU sampling before the runs
BACKGROUND_WARN = 0.10  # warn when another process keeps a benchmark CPU this busy


# -- the zone ------------------------------------------------------------------------------


def host_kind(i: int) -> str:
    """What ``host<i>`` owns: most names an A record, 2% a CNAME instead."""
    return "cname" if i % 50 == 7 else "a"


def has_aaaa(i: int) -> bool:
    return i % 10 == 0


def has_mx(i: int) -> bool:
    return i % 100 == 1


def has_txt(i: int) -> bool:
    return i % 200 == 3


def _not_cname(i: int, names: int) -> int:
    """``i``, or the next host index when ``host<i>`` is a CNAME (MX must not name one)."""
    return (i + 1) % names if host_kind(i) == "cname" else i


def _v4(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def write_zone(path: Path, names: int) -> int:
    """A realistic zone with ``names`` host names; returns the number of RRs written."""
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 2026112301 7200 3600 1209600 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        "@ IN MX 10 mail",
        '@ IN TXT "v=spf1 mx -all"',
        "ns1 IN A 192.0.2.1",
        "ns1 IN AAAA 2001:db8::1",
        "ns2 IN A 192.0.2.2",
        "mail IN A 192.0.2.25",
        "www IN CNAME host1",
        # a wildcard
        "*.wild IN A 192.0.2.80",
        '*.wild IN TXT "wildcard"',
        # a delegation with in-bailiwick glue, and one with glue plus an out-of-zone server
        "sub1 IN NS ns.sub1",
        "ns.sub1 IN A 192.0.2.53",
        "sub2 IN NS ns.sub2",
        "sub2 IN NS ns1.example.net.",
        "ns.sub2 IN A 192.0.2.54",
        "ns.sub2 IN AAAA 2001:db8::54",
    ]
    count = len(lines) - 2
    for i in range(names):
        name = f"host{i}"
        if host_kind(i) == "cname":
            target = i + 1 if i + 1 < names else 0
            lines.append(f"{name} 300 IN CNAME host{target}")
            count += 1
            continue
        lines.append(f"{name} IN A {_v4(i)}")
        count += 1
        if i % 20 == 0:
            lines.append(f"{name} IN A {_v4(i + (1 << 20))}")
            count += 1
        if has_aaaa(i):
            lines.append(f"{name} IN AAAA 2001:db8:{(i >> 16) & 0xFFFF:x}:{i & 0xFFFF:x}::1")
            count += 1
        if has_mx(i):
            lines.append(f"{name} IN MX 10 mail")
            lines.append(f"{name} IN MX 20 host{_not_cname((i * 7919) % names, names)}")
            count += 2
        if has_txt(i):
            lines.append(f'{name} IN TXT "id={i}" "bench"')
            count += 1
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return count


# -- the queries ---------------------------------------------------------------------------


def make_queries(names: int, count: int, seed: int = SEED) -> list[str]:
    """dnsperf lines: 90% A (of existing names, some CNAMEs, a few wildcard and referral
    names), 5% AAAA, 2% MX, 3% NXDOMAIN; deterministic for a given seed."""
    rng = random.Random(seed)
    aaaa_hosts = [i for i in range(0, names, 10) if has_aaaa(i)]
    mx_hosts = [i for i in range(1, names, 100) if has_mx(i)]
    out: list[str] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.90:
            sub = rng.random()
            if sub < 0.01:
                out.append(f"w{rng.randrange(1000)}.wild.{ORIGIN} A")
            elif sub < 0.015:
                out.append(f"h{rng.randrange(100)}.sub1.{ORIGIN} A")
            else:
                out.append(f"host{rng.randrange(names)}.{ORIGIN} A")
        elif roll < 0.95:
            out.append(f"host{rng.choice(aaaa_hosts)}.{ORIGIN} AAAA")
        elif roll < 0.97:
            out.append(f"host{rng.choice(mx_hosts)}.{ORIGIN} MX")
        else:
            out.append(f"nx{n}-{rng.getrandbits(32):08x}.{ORIGIN} A")
    return out


def write_query_files(workdir: Path, names: int, count: int) -> tuple[Path, Path, int, int]:
    """The measured query file and the cold file (its distinct queries, in another order)."""
    queries = make_queries(names, count)
    distinct = sorted(set(queries))
    random.Random(SEED + 1).shuffle(distinct)
    main = workdir / "queries.txt"
    cold = workdir / "queries-distinct.txt"
    main.write_text("\n".join(queries) + "\n", encoding="ascii")
    cold.write_text("\n".join(distinct) + "\n", encoding="ascii")
    return main, cold, len(queries), len(distinct)


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """An ephemeral port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((HOST, 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found for UDP and TCP on 127.0.0.1")


def soa_query(qid: int) -> bytes:
    """A plain SOA query for the zone apex (no RD, no EDNS)."""
    qname = b"".join(bytes([len(p)]) + p.encode() for p in ORIGIN.rstrip(".").split("."))
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + qname + b"\x00" + struct.pack("!HH", 6, 1)


def wait_first_answer(proc: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    """Probe with SOA queries until one is answered; False if the process died or timed out."""
    deadline = time.monotonic() + timeout
    qid = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(PROBE_INTERVAL)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            qid = (qid + 1) & 0xFFFF
            with contextlib.suppress(OSError):
                s.sendto(soa_query(qid), (HOST, port))
            end = time.monotonic() + PROBE_INTERVAL
            while time.monotonic() < end:
                try:
                    data = s.recv(4096)
                except (TimeoutError, OSError):
                    break
                if len(data) >= 4 and data[:2] == qid.to_bytes(2, "big") and data[2] & 0x80:
                    return True
    return False


def children_of(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest last."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or another /proc/PID/status field in kB, e.g. VmHWM, the peak) of one process
    in KiB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    """User plus system CPU time of one process, in clock ticks (0 if it is gone)."""
    fields = _stat_fields(pid)
    return int(fields[11]) + int(fields[12]) if len(fields) > 12 else 0


def _start_time(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, started: str) -> bool:
    """True while ``pid`` is the process that started at ``started`` and not a zombie."""
    fields = _stat_fields(pid)
    return len(fields) > 19 and fields[19] == started and fields[0] != "Z"


class Server:
    """A server subprocess pinned to one CPU, timed from start to its first answer."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log: Path,
        pythonpath: Path | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.log = log
        self.pythonpath = pythonpath  # the source tree to import zonefan from (default: this)
        self.proc: subprocess.Popen[bytes] | None = None
        self.load_seconds = 0.0
        self.known_children: list[tuple[int, str]] = []  # (PID, start time)

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start and wait for the first answer; ``load_seconds`` is the time that took."""
        with self.log.open("ab") as log:
            started = time.monotonic()
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log.parent,
                env=_clean_env(self.pythonpath),
            )
        if not wait_first_answer(self.proc, self.port, timeout):
            self.stop()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} did not answer on port {self.port}:\n{tail}")
        self.load_seconds = time.monotonic() - started
        self.known_children = [(c, _start_time(c)) for c in children_of(self.proc.pid)]
        return self

    def wait_idle(self, timeout: float = IDLE_TIMEOUT) -> float:
        """Wait until the server uses less than IDLE_SHARE of a CPU (a signed zone is
        maintained at start: index builds, signature refreshes); the seconds waited."""
        started = time.monotonic()
        ticks = _cpu_ticks(self.pid)
        calm = 0
        while time.monotonic() - started < timeout and calm < 2:
            time.sleep(IDLE_SAMPLE)
            now = _cpu_ticks(self.pid)
            calm = calm + 1 if (now - ticks) / _TICKS < IDLE_SHARE * IDLE_SAMPLE else 0
            ticks = now
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server's process and its children (NSD forks a server and xfrd)."""
        if self.proc is None:
            return []
        return [self.pid, *children_of(self.pid)]

    def rss_kib(self) -> int:
        return sum(rss_kib(p) for p in self.pids())

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after STOP_TIMEOUT; then any child left behind."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        children = set(self.known_children) | {(c, _start_time(c)) for c in children_of(proc.pid)}
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child, started in sorted(children):
            while _alive(child, started) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(child, started):  # the same process (same start time): still ours
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)


def _clean_env(project: Path | None = None) -> dict[str, str]:
    """The environment without ZONEFAN_* settings, with the project (or the source tree
    ``project``) importable first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZONEFAN_")}
    path = env.get("PYTHONPATH")
    root = str(project or PROJECT_ROOT)
    env["PYTHONPATH"] = f"{root}{os.pathsep}{path}" if path else root
    return env


def zonefan_command() -> list[str]:
    """``zonefan`` of this interpreter's environment (or ``python -m zonefan.cli``)."""
    beside = Path(sys.executable).parent / "zonefan"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("zonefan")
    return [found] if found else [sys.executable, "-m", "zonefan.cli"]


def tool(name: str) -> str:
    for candidate in (name, f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    raise SystemExit(f"{name} is not installed (Debian: apt-get install {name})")


def write_nsd_conf(workdir: Path, zone_file: Path, port: int) -> Path:
    d = workdir / "nsd"
    d.mkdir(exist_ok=True)
    conf = d / "nsd.conf"
    conf.write_text(
        "\n".join(
            [
                "server:",
                f'    ip-address: "{HOST}@{port}"',
                f"    port: {port}",
                '    username: ""',
                '    chroot: ""',
                f'    zonesdir: "{d}"',
                f'    pidfile: "{d}/nsd.pid"',
                f'    xfrdfile: "{d}/xfrd.state"',
                f'    xfrdir: "{d}"',
                f'    zonelistfile: "{d}/zone.list"',
                '    database: ""',  # load from the zone file (NSD >= 4.8 default)
                f'    logfile: "{d}/nsd.log"',
                "    verbosity: 0",
                "    server-count: 1",
                "    reuseport: no",
                "    rrl-ratelimit: 0",  # else RRL silently drops answers under dnsperf
                "",
                "remote-control:",
                "    control-enable: no",
                "",
                "zone:",
                f'    name: "{ORIGIN}"',
                f'    zonefile: "{zone_file}"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    check = subprocess.run(
        [tool("nsd-checkconf"), str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    if check.returncode != 0:
        raise RuntimeError(f"nsd-checkconf rejected {conf}:\n{check.stdout}{check.stderr}")
    return conf


# -- dnsperf -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Perf:
    """What one dnsperf run reports."""

    sent: int
    completed: int
    lost: int
    qps: float
    latency_s: float
    run_s: float
    rcodes: str
    server_busy: float = 0.0  # share of the server's CPU that was busy during the run
    client_busy: float = 0.0  # the same for dnsperf's CPU
    rcvbuf_drops: int = 0  # UDP datagrams the kernel dropped for a full receive buffer


def _field(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in dnsperf output:\n{text}")
    return match.group(1)


def parse_dnsperf(text: str) -> Perf:
    rcodes = re.search(r"^\s*Response codes:\s+(.*)$", text, re.MULTILINE)
    return Perf(
        sent=int(_field(r"^\s*Queries sent:\s+(\d+)", text)),
        completed=int(_field(r"^\s*Queries completed:\s+(\d+)", text)),
        lost=int(_field(r"^\s*Queries lost:\s+(\d+)", text)),
        qps=float(_field(r"^\s*Queries per second:\s+([\d.]+)", text)),
        latency_s=float(_field(r"^\s*Average Latency \(s\):\s+([\d.]+)", text)),
        run_s=float(_field(r"^\s*Run time \(s\):\s+([\d.]+)", text)),
        rcodes=rcodes.group(1).strip() if rcodes else "",
    )


@dataclasses.dataclass(frozen=True)
class PerfSettings:
    server_cpu: int
    cpu: int
    clients: int
    outstanding: int
    dnssec: bool = False  # set DO in every query (dnsperf -D)


def dnsperf(
    port: int, queries: Path, seconds: float, s: PerfSettings, max_runs: int | None = None
) -> Perf:
    """One dnsperf run against 127.0.0.1:``port`` (one pass when ``max_runs`` is 1)."""
    cmd = [
        tool("taskset"),
        "-c",
        str(s.cpu),
        tool("dnsperf"),
        "-s",
        HOST,
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        f"{seconds:g}",
        "-c",
        str(s.clients),
        "-q",
        str(s.outstanding),
    ]
    if max_runs is not None:
        cmd += ["-n", str(max_runs)]
    if s.dnssec:
        cmd.append("-D")
    samples: list[tuple[float, Counters]] = [(time.monotonic(), _counters())]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        deadline = samples[0][0] + seconds + DNSPERF_GRACE
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(CPU_SAMPLE)
            samples.append((time.monotonic(), _counters()))
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf exited {proc.returncode}:\n{stdout}\n{stderr}")
    perf = parse_dnsperf(stdout)
    # CPU use while queries flowed: dnsperf then waits out its timeout for lost queries.
    start, first = samples[0]
    end = next((c for t, c in samples[1:] if t >= start + perf.run_s), samples[-1][1])
    return dataclasses.replace(
        perf,
        server_busy=_busy(first, end, s.server_cpu),
        client_busy=_busy(first, end, s.cpu),
        rcvbuf_drops=samples[-1][1].rcvbuf_errors - first.rcvbuf_errors,
    )


@dataclasses.dataclass(frozen=True)
class Counters:
    """Per-CPU (total, idle) jiffies and the UDP receive-buffer drop count, system-wide."""

    cpus: dict[int, tuple[int, int]]
    rcvbuf_errors: int


def _counters() -> Counters:
    cpus: dict[int, tuple[int, int]] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in values]
            cpus[int(name[3:])] = (sum(v[:8]), v[3] + v[4])  # idle + iowait
    rcvbuf = 0
    udp = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    for head, values in itertools.pairwise(udp):
        if head[0] == "Udp:" and values[0] == "Udp:" and "RcvbufErrors" in head:
            rcvbuf = int(values[head.index("RcvbufErrors")])
            break
    return Counters(cpus, rcvbuf)


def _busy(before: Counters, after: Counters, cpu: int) -> float:
    total = after.cpus[cpu][0] - before.cpus[cpu][0]
    idle = after.cpus[cpu][1] - before.cpus[cpu][1]
    return 1 - idle / total if total > 0 else 0.0


# -- a sanity check: both servers give the same answers ------------------------------------


def same_answers(port_a: int, port_b: int, names: int) -> tuple[int, list[str]]:
    """How many probe queries were asked, and the differences in rcode, AA and answer
    section between the two servers."""
    import dns.message
    import dns.query

    probes = [
        (ORIGIN, "SOA"),
        ("host0." + ORIGIN, "A"),
        ("host0." + ORIGIN, "AAAA"),
        (f"host{min(7, names - 1)}." + ORIGIN, "A"),
        (f"host{min(1, names - 1)}." + ORIGIN, "MX"),
        ("www." + ORIGIN, "A"),
        ("nothere." + ORIGIN, "A"),
        ("x.wild." + ORIGIN, "A"),
        ("a.sub1." + ORIGIN, "A"),
        ("host0." + ORIGIN, "TXT"),
    ]
    problems = []
    for name, rdtype in probes:
        q = dns.message.make_query(name, rdtype)
        q.flags = 0
        seen = []
        for port in (port_a, port_b):
            r = dns.query.udp(q, HOST, port=port, timeout=2.0)
            answer = sorted(rr.to_text() for rr in r.answer)
            seen.append((r.rcode(), bool(r.flags & 0x0400), answer))
        if seen[0] != seen[1]:
            problems.append(f"{name} {rdtype}: zonefan {seen[0]} / NSD {seen[1]}")
    return len(probes), problems


# -- the run -------------------------------------------------------------------------------

COLD = "cold"
FLOOD = "random names"
WARM = "warm"
PASSES = (COLD, FLOOD, WARM)
NSD = "NSD"
ZONEFAN = "zonefan"
BASELINE = "zonefan, baseline"


@dataclasses.dataclass
class Row:
    server: str  # ZONEFAN, BASELINE or NSD
    kind: str  # one of PASSES
    perf: Perf
    load_s: float
    rss_kib: int
    peak_kib: int  # VmHWM: the largest RSS so far (main process only)


def write_flood_file(workdir: Path, count: int, seed: int = SEED + 2) -> Path:
    """``count`` distinct random names under the zone (a random-subdomain flood: every
    query a cache miss and an NXDOMAIN), A queries; deterministic for a given seed."""
    rng = random.Random(seed)
    names = sorted({f"{rng.getrandbits(48):012x}.{ORIGIN} A" for _ in range(count)})
    rng.shuffle(names)
    path = workdir / "queries-flood.txt"
    path.write_text("\n".join(names) + "\n", encoding="ascii")
    return path


def _zonefan_cli(workdir: Path, db: Path, *args: str, timeout: float = IMPORT_TIMEOUT) -> str:
    done = subprocess.run(
        [*zonefan_command(), "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_clean_env(),
        cwd=workdir,
    )
    if done.returncode != 0:
        raise SystemExit(f"zonefan {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout.strip()


def _rrl_off(tree: Path) -> tuple[str, ...]:
    """ZONEFAN_RRL for a source tree whose serve has response rate limiting (older code
    has no such option, and no limiting)."""
    commands = tree / "zonefan" / "commands.py"
    known = commands.exists() and "rrl-ratelimit" in commands.read_text(encoding="utf-8")
    return ZONEFAN_RRL if known else ()


def _background(args: argparse.Namespace, say: Callable[[str], None], notes: list[str]) -> None:
    before = _counters()
    time.sleep(BACKGROUND_SAMPLE)
    after = _counters()
    background = {cpu: _busy(before, after, cpu) for cpu in (args.server_cpu, args.client_cpu)}
    busy_text = ", ".join(f"CPU {c} {b:.0%}" for c, b in background.items())
    say(f"background load with the servers idle: {busy_text}")
    notes.append(f"background load before the runs (servers idle): {busy_text}")
    if max(background.values()) > BACKGROUND_WARN:
        say("WARNING: the CPUs are busy with something else; expect noisy figures")
        notes.append("WARNING: other processes were using the CPUs: figures are noisy")


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    if not (os.cpu_count() or 1) > max(args.server_cpu, args.client_cpu):
        raise SystemExit(f"needs CPUs {args.server_cpu} and {args.client_cpu}")
    for name in ("taskset", "dnsperf", "nsd", "nsd-checkconf"):
        tool(name)
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("*.log"):
        old.unlink()
    say = _printer()

    zone_file = workdir / "bench.test.zone"
    rrs = write_zone(zone_file, args.names)
    main_q, cold_q, n_queries, n_distinct = write_query_files(workdir, args.names, args.queries)
    flood_q = write_flood_file(workdir, args.flood)
    say(f"zone: {zone_file} ({args.names} host names, {rrs} RRs)")
    say(f"queries: {n_queries} lines, {n_distinct} distinct; flood: {args.flood} random names")

    db = workdir / "zonefan.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    started = time.monotonic()
    out = _zonefan_cli(workdir, db, "zone", "import", str(zone_file), "-m", "bench")
    import_s = time.monotonic() - started
    say(f"import: {import_s:.2f} s ({out})")
    served_file = zone_file
    notes: list[str] = []
    if args.dnssec != "none":
        started = time.monotonic()
        _zonefan_cli(workdir, db, "zone", "sign", ORIGIN, f"--{args.dnssec}", "-m", "bench")
        served_file = workdir / "bench.test.signed.zone"
        served_file.write_text(_zonefan_cli(workdir, db, "zone", "export", ORIGIN) + "\n")
        say(
            f"signed ({args.dnssec}) in {time.monotonic() - started:.2f} s; "
            f"NSD serves {served_file.name}"
        )
        notes.append(f"zone signed by zonefan with {args.dnssec.upper()}; NSD serves its export")
    if args.compare is not None:
        shutil.copyfile(db, workdir / "baseline.db")

    perf = PerfSettings(
        args.server_cpu, args.client_cpu, args.clients, args.outstanding, args.dnssec != "none"
    )
    pin = [tool("taskset"), "-c", str(args.server_cpu)]
    servers: dict[str, Server] = {}
    rows: list[Row] = []
    try:
        port = free_port()
        servers[ZONEFAN] = Server(
            ZONEFAN,
            [
                *pin,
                *zonefan_command(),
                "--db",
                str(db),
                "serve",
                "--listen",
                f"{HOST}:{port}",
                *ZONEFAN_RRL,
            ],
            port,
            workdir / "zonefan.log",
        )
        if args.compare is not None:
            port_b = free_port()
            servers[BASELINE] = Server(
                BASELINE,
                [
                    *pin,
                    sys.executable,
                    "-m",
                    "zonefan.cli",
                    "--db",
                    str(workdir / "baseline.db"),
                    "serve",
                    "--listen",
                    f"{HOST}:{port_b}",
                    *_rrl_off(args.compare),
                ],
                port_b,
                workdir / "baseline.log",
                pythonpath=args.compare,
            )
        port_n = free_port()
        conf = write_nsd_conf(workdir, served_file, port_n)
        servers[NSD] = Server(
            NSD, [*pin, tool("nsd"), "-d", "-c", str(conf)], port_n, workdir / "nsd.log"
        )
        idle = []
        for server in servers.values():
            server.start()
            settled = server.wait_idle()
            idle.append(f"{server.name} {_mib(server.rss_kib())}")
            say(
                f"{server.name} pid {server.pid}: first answer after {server.load_seconds:.2f} s,"
                f" idle {settled:.1f} s later"
            )
        notes.append("RSS right after load: " + ", ".join(idle) + " (NSD: with its children)")
        _background(args, say, notes)

        def record(name: str, kind: str, result: Perf) -> None:
            server = servers[name]
            rows.append(
                Row(
                    name,
                    kind,
                    result,
                    server.load_seconds,
                    server.rss_kib(),
                    rss_kib(server.pid, "VmHWM"),
                )
            )
            say(
                f"{kind} {name}: {result.qps:,.0f} q/s, lost {result.lost}, server CPU "
                f"{result.server_busy:.0%}, dnsperf CPU {result.client_busy:.0%} ({result.rcodes})"
            )

        # Cold first: every distinct query once, into caches that have never seen any; then
        # the random-name flood, every query a new name. Short passes: with --cold-rounds N,
        # each zonefan is restarted for every round (a fresh, empty cache) and the median
        # counts.
        passes = ((COLD, cold_q, args.cold_seconds), (FLOOD, flood_q, args.flood_seconds))
        cold_runs: dict[tuple[str, str], list[Perf]] = {}
        for r in range(args.cold_rounds):
            for name in list(servers) if r % 2 == 0 else list(reversed(servers)):
                server = servers[name]
                if r and name != NSD:
                    server.stop()
                    server.start()
                    server.wait_idle()
                for kind, queries, limit in passes:
                    result = dnsperf(server.port, queries, limit, perf, max_runs=1)
                    cold_runs.setdefault((name, kind), []).append(result)
                    say(f"{kind} round {r + 1} {name}: {result.qps:,.0f} q/s")
        for kind, _, _ in passes:
            for name in servers:
                results = cold_runs[(name, kind)]
                record(name, kind, sorted(results, key=lambda p: p.qps)[(len(results) - 1) // 2])
                if len(results) > 1:
                    qps = ", ".join(f"{p.qps:,.0f}" for p in results)
                    notes.append(f"{name}, {kind}: median of {len(results)} rounds ({qps} q/s)")

        asked, problems = same_answers(servers[ZONEFAN].port, servers[NSD].port, args.names)
        notes += [f"answer differs: {p}" for p in problems]
        say(f"answer check: {asked - len(problems)}/{asked} probe queries agree")

        for server in servers.values():
            warm = dnsperf(server.port, main_q, min(args.warmup, WARMUP_LIMIT), perf, max_runs=1)
            say(f"{server.name} warm-up: {warm.completed} queries, {warm.qps:,.0f} q/s")
        runs: dict[str, list[Perf]] = {name: [] for name in servers}
        order = list(servers)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else reversed(order):  # alternate who goes first
                runs[name].append(dnsperf(servers[name].port, main_q, args.seconds, perf))
                say(f"round {r + 1} {name}: {runs[name][-1].qps:,.0f} q/s")
        for name, results in runs.items():
            median = sorted(results, key=lambda p: p.qps)[(len(results) - 1) // 2]
            record(name, WARM, median)
            if len(results) > 1:
                qps = ", ".join(f"{p.qps:,.0f}" for p in results)
                notes.append(f"{name}, warm: median of {len(results)} rounds ({qps} q/s)")
    finally:
        for server in reversed(servers.values()):
            server.stop()

    table = render_table(rows)
    say("")
    say(table)
    markdown = render_markdown(rows, args, import_s, rrs, n_queries, n_distinct, notes)
    (workdir / "results.md").write_text(markdown, encoding="utf-8")
    print()
    print(markdown)
    return 0


def _printer() -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, flush=True)

    return say


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _ratio(rows: Sequence[Row], server: str, kind: str) -> float | None:
    """``server``'s q/s over NSD's in the same pass (None when either did not run)."""
    nsd = next((r for r in rows if r.server == NSD and r.kind == kind), None)
    ours = next((r for r in rows if r.server == server and r.kind == kind), None)
    if nsd is None or ours is None or not nsd.perf.qps:
        return None
    return ours.perf.qps / nsd.perf.qps


COLUMNS = (
    "pass",
    "server",
    "QPS",
    "vs NSD",
    "avg latency",
    "lost",
    "RSS after",
    "peak RSS",
    "server CPU",
    "dnsperf CPU",
    "rcvbuf drops",
)


def _cells(row: Row, rows: Sequence[Row]) -> list[str]:
    p = row.perf
    lost = f"{p.lost} ({100 * p.lost / p.sent:.2f}%)" if p.sent else "0"
    ratio = _ratio(rows, row.server, row.kind)
    return [
        row.kind,
        row.server,
        f"{p.qps:,.0f}",
        "" if row.server == NSD or ratio is None else f"{ratio:.2f}",
        f"{p.latency_s * 1000:.3f} ms",
        lost,
        _mib(row.rss_kib),
        "" if row.server == NSD else _mib(row.peak_kib),
        f"{p.server_busy:.0%}",
        f"{p.client_busy:.0%}",
        str(p.rcvbuf_drops),
    ]


def _summary(rows: Sequence[Row]) -> str:
    parts = []
    for kind in PASSES:
        ratio = _ratio(rows, ZONEFAN, kind)
        if ratio is None:
            continue
        text = f"{kind} {ratio:.2f}"
        base = _ratio(rows, BASELINE, kind)
        if base is not None:
            text += f" (baseline {base:.2f})"
        parts.append(text)
    return "zonefan/NSD QPS: " + ", ".join(parts) + f"; target >= {TARGET_RATIO} each"


def render_table(rows: Sequence[Row]) -> str:
    cells = [list(COLUMNS), *(_cells(r, rows) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(_summary(rows))
    return "\n".join(lines)


def _versions() -> str:
    def first_line(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else "?"

    help_text = subprocess.run(
        [tool("dnsperf"), "-h"], capture_output=True, text=True, timeout=10, check=False
    )
    match = re.search(r"Version ([\d.]+)", help_text.stdout + help_text.stderr)
    dnsperf_v = f"dnsperf {match.group(1)}" if match else first_line([tool("dnsperf"), "-h"])
    nsd_v = first_line([tool("nsd"), "-v"])
    return f"Python {platform.python_version()}, {nsd_v}, {dnsperf_v}"


def render_markdown(
    rows: Sequence[Row],
    args: argparse.Namespace,
    import_s: float,
    rrs: int,
    n_queries: int,
    n_distinct: int,
    notes: Sequence[str],
) -> str:
    command = f"python bench/query_bench.py --names {args.names} --seconds {args.seconds:g}"
    if args.rounds != 1:
        command += f" --rounds {args.rounds}"
    if args.cold_rounds != 1:
        command += f" --cold-rounds {args.cold_rounds}"
    if args.dnssec != "none":
        command += f" --dnssec {args.dnssec}"
    if args.compare is not None:
        command += f" --compare {args.compare}"
    do = " `-D` (DO bit)" if args.dnssec != "none" else ""
    out = [
        f"## Query throughput, zonefan vs NSD ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}` (dnsperf `-c {args.clients} -q {args.outstanding}`{do}).",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}); servers pinned to CPU "
        f"{args.server_cpu} (`taskset -c {args.server_cpu}`), dnsperf to CPU {args.client_cpu}. "
        f"{_versions()}.",
        f"Zone: {args.names} host names, {rrs} RRs; zonefan import {import_s:.2f} s. "
        f"Queries: {n_queries} lines ({n_distinct} distinct), 90% A / 5% AAAA / 2% MX / "
        f"3% NXDOMAIN; flood: {args.flood} distinct random names.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(COLUMNS) - 2)) + "|",
        *("| " + " | ".join(_cells(r, rows)) + " |" for r in rows),
        "",
        f"**{_summary(rows)}**",
        "",
        "- cold: freshly started servers, each distinct query of the mix once (`dnsperf -n 1`, "
        f"at most {args.cold_seconds:g} s): every zonefan answer is computed, none comes from "
        "its cache. NSD has no response cache; it runs the same file.",
        "- random names: every query a distinct random name under the zone (a random-subdomain "
        f"flood: cache misses and NXDOMAIN), one pass, at most {args.flood_seconds:g} s.",
        "- warm: after one warm-up pass through the query file (`-n 1`), which fills zonefan's "
        f"response cache; then {args.seconds:g} s measured. NSD gets the same warm-up.",
        "- vs NSD: the server's q/s over NSD's in the same pass. baseline: the code of "
        "`--compare DIR` run beside it in the same run, for before/after figures.",
        "- RSS after: VmRSS after the pass; NSD is the sum of its main process and its "
        "children. peak RSS: VmHWM, the most the process held so far.",
        "- server CPU / dnsperf CPU: how busy each pinned CPU was during the run (/proc/stat); "
        "a server below ~95% was not saturated. rcvbuf drops: UDP datagrams the kernel dropped "
        "for a full socket receive buffer (/proc/net/snmp), the usual cause of lost queries.",
    ]
    out += [f"- Note: {n}" for n in notes]
    return "\n".join(out) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--names", type=int, default=100_000, help="host names in the zone")
    p.add_argument("--seconds", type=float, default=20.0, help="measured dnsperf run per server")
    p.add_argument("--cold-seconds", type=float, default=20.0, help="cap on the cold pass")
    p.add_argument("--flood", type=int, default=200_000, help="random names in the flood pass")
    p.add_argument("--flood-seconds", type=float, default=30.0, help="cap on the flood pass")
    p.add_argument("--warmup", type=float, default=30.0, help="cap on the warm-up pass")
    p.add_argument("--queries", type=int, default=0, help="query file lines (default: --names)")
    p.add_argument("--rounds", type=int, default=1, help="measured runs per server (median)")
    p.add_argument(
        "--cold-rounds", type=int, default=1, help="cold and flood passes per server (median)"
    )
    p.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    p.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument(
        "--dnssec",
        choices=("none", "nsec", "nsec3"),
        default="none",
        help="sign the zone (zonefan zone sign; NSD serves the export) and set DO in queries",
    )
    p.add_argument(
        "--compare",
        type=Path,
        default=None,
        metavar="DIR",
        help="also run the zonefan of another source tree (e.g. `git worktree add DIR main`)",
    )
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = p.parse_args(argv)
    if args.names < 1:
        p.error("--names must be at least 1")
    if args.rounds < 1 or args.cold_rounds < 1:
        p.error("--rounds and --cold-rounds must be at least 1")
    if args.flood < 1:
        p.error("--flood must be at least 1")
    if args.compare is not None and not (args.compare / "nameserver").is_dir():
        p.error(f"--compare {args.compare}: no nameserver package there")
    if args.queries <= 0:
        args.queries = args.names
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
