"""Whole-zone signing as a user runs it: `zonefan zone sign` on a store, against
dnssec-signzone (BIND), ldns-signzone and Knot's kzonesign, in the same run.

    python bench/sign_bench.py [--names 100000] [--workers 2] [--rounds 1] [--nsec3] [--verify]

Steps: generate a deterministic zone in ``bench/work/sign/`` (query_bench.py's 100k-name
zone plus delegations with DS and glue); import it once into a store with `zonefan zone
import` (untimed); make one ECDSA P-256 CSK for each peer with its own tools (untimed).
Then per round, in alternating order, each signer as a subprocess:

- zonefan full: a copy of the unsigned store, `zonefan zone sign` (keys generated, the
  whole zone signed, committed in one transaction): what an operator runs;
- zonefan incremental: `zonefan record add` of one name to that signed store (load,
  validate, re-sign the name and its NSEC neighbours, commit);
- dnssec-signzone ``-z -n <workers>``, ldns-signzone (one thread), kzonesign with
  ``signing-threads: <workers>``: same algorithm, a CSK, NSEC (or NSEC3 with 0 iterations
  and no salt), no post-sign verification.

Each subprocess is reaped with ``os.wait4``: its rusage gives CPU time (user + system,
its own and its waited-for children's) and peak RSS (the largest of the process and
those children, not their sum). Prints a markdown section with wall, CPU and peak RSS,
and zonefan's ratios to each peer (medians), saved as ``bench/work/sign/results.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_WORKDIR = BENCH_DIR / "work" / "sign"
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import query_bench  # noqa: E402

ORIGIN = query_bench.ORIGIN
DELEGATION_EVERY = 1000  # one extra delegation per this many host names
SIGN_TIMEOUT = 1800.0

ZONEFAN = "zonefan zone sign"
ZONEFAN_INC = "zonefan record add (incremental)"
BIND = "dnssec-signzone"
LDNS = "ldns-signzone"
KNOT = "kzonesign"


# -- the zone ------------------------------------------------------------------------------


def write_zone(path: Path, names: int) -> int:
    """query_bench.py's zone plus ``names / 1000`` delegations (glue; DS on every other)."""
    count = query_bench.write_zone(path, names)
    lines = []
    for i in range(0, names, DELEGATION_EVERY):
        lines += [
            f"dlg{i} IN NS ns.dlg{i}",
            f"ns.dlg{i} IN A 192.0.2.{i // DELEGATION_EVERY % 250}",
        ]
        count += 2
        if i % (2 * DELEGATION_EVERY) == 0:
            lines.append(f"dlg{i} IN DS {i % 65536} 13 2 {(i * 2654435761 % (1 << 256)):064x}")
            count += 1
    with path.open("a", encoding="ascii") as out:
        out.write("\n".join(lines) + "\n")
    return count


# -- running a signer ----------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """One subprocess: wall seconds, CPU seconds (user + system), peak RSS in MiB."""

    wall: float
    cpu: float
    rss: float


def tool(name: str) -> str | None:
    for candidate in (name, f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def measure(command: Sequence[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` to its end and reap it with wait4 for its rusage."""
    with log.open("w", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{text}")
    # ru_maxrss is in KiB on Linux.
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def _quiet(command: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=SIGN_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


# -- zonefan -------------------------------------------------------------------------------


class Zonefan:
    """`zonefan` as installed beside this interpreter, on stores in ``workdir``."""

    def __init__(self, workdir: Path, zone_file: Path, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.args = args
        self.cli = str(Path(sys.executable).with_name("zonefan"))
        self.unsigned = workdir / "unsigned.db"
        self.db = workdir / "zonefan.db"
        self.changes = 0
        for path in _store_files(self.unsigned):
            path.unlink(missing_ok=True)
        _quiet([self.cli, "zone", "import", str(zone_file)], workdir, self.env(self.unsigned))

    def env(self, db: Path) -> dict[str, str]:
        # cwd is the work directory: no zonefan.toml of the developer's is read.
        return {**os.environ, "ZONEFAN_DB": str(db), "ZONEFAN_AUTHOR": "bench"}

    def full(self) -> Run:
        """A fresh copy of the unsigned store (untimed), then `zone sign`."""
        for path in _store_files(self.db):
            path.unlink(missing_ok=True)
        shutil.rmtree(f"{self.db}.keys", ignore_errors=True)
        for src, dst in zip(_store_files(self.unsigned), _store_files(self.db), strict=True):
            if src.exists():
                shutil.copy(src, dst)
        command = [self.cli, "zone", "sign", ORIGIN, "--nsec3" if self.args.nsec3 else "--nsec"]
        return measure(command, self.workdir, self.workdir / "zonefan.log", self.env(self.db))

    def incremental(self) -> Run:
        """One name added to the store :meth:`full` signed."""
        self.changes += 1
        name = f"bench-added-{self.changes}"
        command = [self.cli, "record", "add", ORIGIN, name, "300", "A", "192.0.2.99"]
        return measure(command, self.workdir, self.workdir / "zonefan-inc.log", self.env(self.db))

    def export(self, out: Path) -> Path:
        out.write_text(
            _quiet([self.cli, "zone", "export", ORIGIN], self.workdir, self.env(self.db))
        )
        return out


def _store_files(db: Path) -> list[Path]:
    return [db, Path(f"{db}-wal"), Path(f"{db}-shm")]


# -- peers ---------------------------------------------------------------------------------


#: A peer ready to run: its output file and one timed run.
Made = tuple[Path, Callable[[], Run]] | None


def _fresh_dir(path: Path) -> Path:
    """An empty directory only its owner can read (private keys go there)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    return path


def _stamp(posix: int) -> str:
    return datetime.datetime.fromtimestamp(posix, datetime.UTC).strftime("%Y%m%d%H%M%S")


def bind_setup(
    workdir: Path, zone_file: Path, times: tuple[int, int], args: argparse.Namespace
) -> Made:
    keygen = tool("dnssec-keygen")
    if keygen is None or tool(BIND) is None:
        return None
    keydir = _fresh_dir(workdir / "bind-keys")
    _quiet([keygen, "-q", "-K", str(keydir), "-a", "ECDSAP256SHA256", "-f", "KSK", ORIGIN], keydir)
    out = workdir / "bind.signed"
    command = [str(tool(BIND)), "-S", "-K", str(keydir), "-z", "-P", "-N", "keep", "-O", "full"]
    command += ["-n", str(args.workers), "-o", ORIGIN, "-f", str(out)]
    command += ["-s", _stamp(times[0]), "-e", _stamp(times[1])]
    if args.nsec3:
        command += ["-3", "-", "-H", "0"]
    command.append(str(zone_file))
    return out, lambda: measure(command, workdir, workdir / "bind.log")


def ldns_setup(
    workdir: Path, zone_file: Path, times: tuple[int, int], args: argparse.Namespace
) -> Made:
    keygen = tool("ldns-keygen")
    if keygen is None or tool(LDNS) is None:
        return None
    keydir = _fresh_dir(workdir / "ldns-keys")
    base = _quiet([keygen, "-a", "ECDSAP256SHA256", "-k", ORIGIN], keydir).strip()
    out = workdir / "ldns.signed"
    command = [str(tool(LDNS)), "-o", ORIGIN, "-f", str(out)]
    command += ["-i", _stamp(times[0]), "-e", _stamp(times[1])]
    if args.nsec3:
        command += ["-n", "-t", "0"]
    command += [str(zone_file), base]
    return out, lambda: measure(command, keydir, workdir / "ldns.log")


def _knot_conf(d: Path, zone_file: Path, args: argparse.Namespace) -> Path:
    nsec3 = "on\n    nsec3-iterations: 0\n    nsec3-salt-length: 0" if args.nsec3 else "off"
    conf = d / "knot.conf"
    conf.write_text(
        f"""server:
    rundir: "{d}"
database:
    storage: "{d}"
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
    signing-threads: {args.workers}
    nsec3: {nsec3}
zone:
  - domain: {ORIGIN}
    storage: "{d}"
    file: "{zone_file}"
    dnssec-signing: on
    dnssec-policy: csk
""",
        encoding="utf-8",
    )
    return conf


def knot_setup(
    workdir: Path, zone_file: Path, times: tuple[int, int], args: argparse.Namespace
) -> Made:
    """kzonesign with its key made by a first, untimed run on a two-record zone."""
    if tool(KNOT) is None:
        return None
    d = workdir / "knot"
    shutil.rmtree(d, ignore_errors=True)
    (d / "out").mkdir(parents=True)
    seed = d / "seed.zone"
    seed.write_text(
        f"$ORIGIN {ORIGIN}\n@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
        "@ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.1\n",
        encoding="ascii",
    )
    _quiet([str(tool(KNOT)), "-c", str(_knot_conf(d, seed, args)), "-o", str(d), ORIGIN], d)
    conf = _knot_conf(d, zone_file, args)
    command = [str(tool(KNOT)), "-c", str(conf), "-o", str(d / "out"), ORIGIN]
    out = d / "out" / f"{ORIGIN}zone"
    return out, lambda: measure(command, d, workdir / "knot.log")


# -- the run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Signer:
    """A signer under test: how to run it once, its output file, and its runs so far."""

    name: str
    run_once: Callable[[], Run]
    output: Path | None
    runs: list[Run] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in self.runs))


def count_rrsigs(path: Path) -> int:
    """RRSIG records of a signed master file (one RR per line, as all four write them)."""
    count = 0
    with path.open(encoding="ascii") as handle:
        for line in handle:
            if not line.startswith(";") and "RRSIG" in line.split(None, 5)[2:5]:
                count += 1
    return count


def verify(path: Path) -> str:
    """ldns-verify-zone's verdict on a signed file."""
    verifier = tool("ldns-verify-zone")
    if verifier is None:
        return "ldns-verify-zone not installed"
    result = subprocess.run(
        [verifier, str(path)], capture_output=True, text=True, timeout=SIGN_TIMEOUT, check=False
    )
    return "valid" if result.returncode == 0 else f"INVALID: {result.stdout}{result.stderr}"


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    zone_file = workdir / "bench.test.zone"
    rrs = write_zone(zone_file, args.names)
    zonefan = Zonefan(workdir, zone_file, args)
    now = int(time.time())
    times = (now - 3600, now + 30 * 86400)
    signers = [Signer(ZONEFAN, zonefan.full, workdir / "zonefan.signed")]
    for name, setup in ((BIND, bind_setup), (LDNS, ldns_setup), (KNOT, knot_setup)):
        made = setup(workdir, zone_file, times, args)
        if made is None:
            print(f"{name} is not installed: skipped")
            continue
        signers.append(Signer(name, made[1], made[0]))
    incremental = Signer(ZONEFAN_INC, zonefan.incremental, None)
    for round_no in range(args.rounds):
        order = signers if round_no % 2 == 0 else signers[::-1]
        for s in order:
            s.runs.append(s.run_once())
            print(f"round {round_no + 1}: {s.name}: {_describe(s.runs[-1])}", flush=True)
            if s.name == ZONEFAN:
                incremental.runs.append(incremental.run_once())
                print(f"round {round_no + 1}: {ZONEFAN_INC}: {_describe(incremental.runs[-1])}")
    notes = []
    assert signers[0].output is not None
    zonefan.export(signers[0].output)
    rrsigs = {s.name: count_rrsigs(s.output) for s in signers if s.output is not None}
    if args.verify:
        notes += [f"{s.name} output: {verify(s.output)}" for s in signers if s.output]
    text = render(signers, incremental, rrsigs, args, rrs, notes)
    print(text)
    (workdir / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def _describe(r: Run) -> str:
    return f"{r.wall:.2f} s wall, {r.cpu:.2f} s CPU, {r.rss:.0f} MiB peak RSS"


# -- output --------------------------------------------------------------------------------


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name, flag in ((BIND, "-V"), (LDNS, "-v"), (KNOT, "-V")):
        path = tool(name)
        if path is not None:
            result = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            parts.append((result.stdout + result.stderr).strip().splitlines()[0])
    return "; ".join(parts)


def render(
    signers: Sequence[Signer],
    incremental: Signer,
    rrsigs: dict[str, int],
    args: argparse.Namespace,
    rrs: int,
    notes: list[str],
) -> str:
    denial = "NSEC3 (0 iterations, no salt)" if args.nsec3 else "NSEC"
    zonefan = signers[0]
    lines = [
        f"## Zone signing on the product path: `zonefan zone sign` vs dnssec-signzone, "
        f"ldns-signzone and kzonesign ({datetime.date.today().isoformat()})",
        "",
        f"Command: `python bench/sign_bench.py {' '.join(args.argv)}`.",
        f"Machine: {os.cpu_count()} cores, load average before the run {args.load_before}. "
        f"{_versions()}.",
        f"Zone: {args.names} host names, {rrs} RRs; ECDSA P-256 CSK, {denial}; "
        f"dnssec-signzone -n {args.workers}, kzonesign signing-threads {args.workers}, "
        f"ldns-signzone one thread, zonefan as `zone sign` runs it. "
        f"Median of {args.rounds} round(s). CPU and peak RSS from each process's rusage "
        "(wait4).",
        "",
        "| signer | wall | CPU | peak RSS | RRSIGs | zonefan CPU / this | zonefan RSS / this |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    zf_cpu, zf_rss = zonefan.median("cpu"), zonefan.median("rss")
    for s in [*signers, incremental]:
        cpu, rss = s.median("cpu"), s.median("rss")
        full = s is not incremental
        lines.append(
            f"| {s.name} | {s.median('wall'):.2f} s | {cpu:.2f} s | {rss:.0f} MiB | "
            + (f"{rrsigs[s.name]:,} | " if s.name in rrsigs else " | ")
            + (f"{zf_cpu / cpu:.2f} | {zf_rss / rss:.2f} |" if full else " | |")
        )
    lines.append("")
    lines += [f"- {n}" for n in notes]
    for s in [*signers, incremental]:
        lines.append(f"- {s.name} rounds: " + "; ".join(_describe(r) for r in s.runs))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000, help="host names in the zone")
    parser.add_argument("--workers", type=int, default=2, help="threads for BIND and Knot")
    parser.add_argument("--rounds", type=int, default=1, help="runs per signer; medians shown")
    parser.add_argument("--nsec3", action="store_true", help="NSEC3 (0 iterations, no salt)")
    parser.add_argument("--verify", action="store_true", help="ldns-verify-zone every output")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.load_before = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
