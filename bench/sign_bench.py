"""Whole-zone signing speed of zonefan against dnssec-signzone (BIND) and ldns-signzone.

    python bench/sign_bench.py [--names 100000] [--workers 2] [--rounds 3] [--nsec3] [--verify]

Steps: generate a deterministic zone in ``bench/work/sign/`` (query_bench.py's 100k-name
zone plus delegations with DS and glue); make one ECDSA P-256 CSK per signer (zonefan
in memory, BIND and ldns with their own key generators, untimed); then per round, in
alternating order, sign the zone with each: zonefan in this process (read the file,
``sign_zone`` with ``workers``, write the signed file; each phase timed), and the two
peers as subprocesses with matching options (same algorithm, a CSK, NSEC or NSEC3 with
0 iterations and an empty salt, BIND with ``-n <workers>``, no post-sign verification).
Prints a table with wall times, RRSIGs/s and zonefan's ratio to each peer (medians),
and the same as a markdown section (saved as ``bench/work/sign/results.md``).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import inspect
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
DEFAULT_WORKDIR = BENCH_DIR / "work" / "sign"
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import dns.name  # noqa: E402
import dns.rdata  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402
import query_bench  # noqa: E402
from dns.rdtypes.ANY.NSEC import NSEC  # noqa: E402
from dns.rdtypes.ANY.NSEC3 import NSEC3  # noqa: E402
from dns.rdtypes.ANY.RRSIG import RRSIG  # noqa: E402
from dns.rdtypes.IN.A import A  # noqa: E402
from dns.rdtypes.IN.AAAA import AAAA  # noqa: E402
from dns.rdtypes.rrsigbase import posixtime_to_sigtime  # noqa: E402

import signer.zone  # noqa: E402
from signer import keys  # noqa: E402
from signer.batch import available_cores  # noqa: E402

ORIGIN = query_bench.ORIGIN
DELEGATION_EVERY = 1000  # one extra delegation per this many host names
SIGN_TIMEOUT = 1800.0
Record = tuple[dns.name.Name, int, dns.rdata.Rdata]

ZONEFAN = "zonefan"
BIND = "dnssec-signzone"
LDNS = "ldns-signzone"


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


_FAST_TYPES: dict[str, Callable[..., dns.rdata.Rdata]] = {"A": A, "AAAA": AAAA}


def _rdata(rdtype: str, text: str, origin: dns.name.Name) -> dns.rdata.Rdata:
    """Rdata from text: A/AAAA straight through their constructors (which check the
    address), everything else through dnspython's tokenizer."""
    fast = _FAST_TYPES.get(rdtype)
    if fast is not None:
        return fast(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text.strip())
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=origin, relativize=False)


def read_zone(path: Path, origin: dns.name.Name) -> list[Record]:
    """The records of a file written by :func:`write_zone` (one RR per line, ``$ORIGIN``
    and ``$TTL``, owner always given): a line splitter plus dnspython's rdata parser."""
    records: list[Record] = []
    names: dict[str, dns.name.Name] = {"@": origin}
    default_ttl = 3600
    for line in path.read_text(encoding="ascii").splitlines():
        if line.startswith("$TTL"):
            default_ttl = int(line.split()[1])
        if not line or line.startswith(("$", ";")):
            continue
        owner, rest = line.split(None, 1)
        ttl = default_ttl
        if rest[0].isdigit():
            ttl_text, rest = rest.split(None, 1)
            ttl = int(ttl_text)
        _, rdtype, rdata_text = rest.split(None, 2)  # class IN, type, rdata
        name = names.get(owner)
        if name is None:
            name = names[owner] = dns.name.from_text(owner, origin)
        records.append((name, ttl, _rdata(rdtype, rdata_text, origin)))
    return records


class ZoneWriter:
    """Master-file lines with absolute names.  RRSIG, NSEC and NSEC3, two thirds of a
    signed zone, are formatted here (dnspython's ``to_text`` spends ~40 and ~70 us on
    RRSIG and NSEC, mostly on two strftime calls and on decoding the type bitmap); the
    text is dnspython's except that the base64 signature is not split into chunks."""

    _SIMPLE = re.compile(rb"[A-Za-z0-9_*-]+\Z")

    def __init__(self) -> None:
        # Keyed by id(): hashing a Name lowercases every label, each time.  The records
        # written keep every Name alive, so an id is not reused meanwhile.
        self._names: dict[int, str] = {}
        self._types: dict[int, str] = {}
        self._times: dict[int, str] = {}
        self._bitmaps: dict[object, str] = {}
        self._nsec3: dict[object, tuple[str, str]] = {}

    def name(self, name: dns.name.Name) -> str:
        text = self._names.get(id(name))
        if text is None:
            # Absolute names end in the empty root label, so the join ends in ".".
            simple = len(name) > 1 and all(self._SIMPLE.match(la) for la in name.labels[:-1])
            text = b".".join(name.labels).decode() if simple else name.to_text()
            self._names[id(name)] = text
        return text

    def type(self, rdtype: int) -> str:
        text = self._types.get(rdtype)
        if text is None:
            text = self._types[rdtype] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))
        return text

    def _sigtime(self, value: int) -> str:
        text = self._times.get(value)
        if text is None:
            text = self._times[value] = posixtime_to_sigtime(value)  # type: ignore[no-untyped-call]
        return text

    def rdata(self, rdata: dns.rdata.Rdata) -> str:
        if isinstance(rdata, RRSIG):
            return (
                f"{self.type(rdata.type_covered)} {rdata.algorithm} {rdata.labels} "
                f"{rdata.original_ttl} {self._sigtime(rdata.expiration)} "
                f"{self._sigtime(rdata.inception)} {rdata.key_tag} {self.name(rdata.signer)} "
                + base64.b64encode(rdata.signature).decode()
            )
        if isinstance(rdata, NSEC):
            bitmap = self._bitmaps.get(rdata.windows)
            if bitmap is None:
                bitmap = self._bitmaps[rdata.windows] = rdata.to_text().partition(" ")[2]
            return f"{self.name(rdata.next)} {bitmap}"
        if isinstance(rdata, NSEC3):
            # "alg flags iterations salt" and the bitmap repeat; the next hash does not.
            key = (rdata.algorithm, rdata.flags, rdata.iterations, rdata.salt, rdata.windows)
            parts = self._nsec3.get(key)
            if parts is None:
                fields = rdata.to_text().split(" ", 5)
                parts = self._nsec3[key] = (" ".join(fields[:4]), " ".join(fields[5:]))
            next_hash = base64.b32hexencode(rdata.next).decode().lower()
            return f"{parts[0]} {next_hash} {parts[1]}".rstrip()
        return rdata.to_text()

    def lines(self, records: Sequence[Record]) -> Iterator[str]:
        for name, ttl, rdata in records:
            rdtype = self.type(rdata.rdtype)
            yield f"{self.name(name)} {ttl} IN {rdtype} {self.rdata(rdata)}\n"


# -- zonefan -------------------------------------------------------------------------------


def nsec3_supported() -> bool:
    """True when signer.nsec3.Nsec3Params exists and sign_zone takes ``denial=``."""
    try:
        from signer import nsec3
    except ImportError:
        return False
    return (
        hasattr(nsec3, "Nsec3Params")
        and "denial" in inspect.signature(signer.zone.sign_zone).parameters
    )


class PhaseTimer:
    """Wraps functions sign_zone calls (by patching signer.zone) to time them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._saved: list[tuple[str, Any]] = []

    def wrap(self, attribute: str, phase: str) -> None:
        original = getattr(signer.zone, attribute, None)
        if original is None:
            return

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

        self._saved.append((attribute, original))
        setattr(signer.zone, attribute, timed)

    def restore(self) -> None:
        for attribute, original in reversed(self._saved):
            setattr(signer.zone, attribute, original)
        self._saved.clear()


@dataclasses.dataclass
class Run:
    """One signer's run: wall seconds, CPU seconds, RRSIGs made, optional phase split."""

    wall: float
    cpu: float
    rrsigs: int
    phases: dict[str, float] = dataclasses.field(default_factory=dict)


def run_zonefan(
    zone_file: Path, out: Path, key: keys.KeyPair, times: tuple[int, int], args: argparse.Namespace
) -> Run:
    """Read, sign and write with zonefan in this process; phases timed separately."""
    origin = dns.name.from_text(ORIGIN)
    extra: dict[str, Any] = {}
    if args.nsec3:
        from signer.nsec3 import Nsec3Params

        extra["denial"] = Nsec3Params(iterations=0, salt=b"")
    timer = PhaseTimer()
    timer.wrap("sign_requests", "signing (sign_requests)")
    timer.wrap("nsec_chain", "chain")
    timer.wrap("nsec3_chain", "chain")
    cpu0 = _cpu()
    start = time.perf_counter()
    records = read_zone(zone_file, origin)
    parsed = time.perf_counter()
    try:
        signed = signer.zone.sign_zone(
            origin, records, [key], *times, workers=args.workers, **extra
        )
    finally:
        timer.restore()
    done = time.perf_counter()
    with out.open("w", encoding="ascii") as handle:
        handle.writelines(ZoneWriter().lines(signed))
    end = time.perf_counter()
    phases = {"parse (file to records)": parsed - start, **timer.seconds}
    inside = sum(timer.seconds.values())
    phases["grouping, RRSIG objects, sorting"] = done - parsed - inside
    phases["output (records to file)"] = end - done
    phases["sign_zone total"] = done - parsed
    rrsigs = sum(1 for _, _, r in signed if r.rdtype == dns.rdatatype.RRSIG)
    return Run(end - start, _cpu() - cpu0, rrsigs, phases)


# -- peers ---------------------------------------------------------------------------------


def tool(name: str) -> str | None:
    for candidate in (name, f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=SIGN_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def bind_keys(keydir: Path) -> None:
    """One ECDSA P-256 KSK (used as a CSK with -z) in ``keydir`` for -S smart signing."""
    keygen = tool("dnssec-keygen")
    if keygen is None:
        raise SystemExit("dnssec-keygen is not installed (Debian: apt-get install bind9-dnsutils)")
    shutil.rmtree(keydir, ignore_errors=True)
    keydir.mkdir(parents=True, mode=0o700)
    _run([keygen, "-q", "-K", str(keydir), "-a", "ECDSAP256SHA256", "-f", "KSK", ORIGIN], keydir)


def ldns_key(keydir: Path) -> str:
    """Base name of one ECDSA P-256 KSK made by ldns-keygen in ``keydir``."""
    keygen = tool("ldns-keygen")
    if keygen is None:
        raise SystemExit("ldns-keygen is not installed (Debian: apt-get install ldnsutils)")
    shutil.rmtree(keydir, ignore_errors=True)
    keydir.mkdir(parents=True, mode=0o700)
    return _run([keygen, "-a", "ECDSAP256SHA256", "-k", ORIGIN], keydir).strip()


def _stamp(posix: int) -> str:
    return datetime.datetime.fromtimestamp(posix, datetime.UTC).strftime("%Y%m%d%H%M%S")


def bind_command(
    zone_file: Path, out: Path, keydir: Path, times: tuple[int, int], args: argparse.Namespace
) -> list[str]:
    command = [str(tool(BIND)), "-S", "-K", str(keydir), "-z", "-P", "-N", "keep", "-O", "full"]
    command += ["-n", str(args.workers), "-o", ORIGIN, "-f", str(out)]
    command += ["-s", _stamp(times[0]), "-e", _stamp(times[1])]
    if args.nsec3:
        command += ["-3", "-", "-H", "0"]
    return [*command, str(zone_file)]


def ldns_command(
    zone_file: Path, out: Path, key: str, times: tuple[int, int], args: argparse.Namespace
) -> list[str]:
    command = [str(tool(LDNS)), "-o", ORIGIN, "-f", str(out)]
    command += ["-i", _stamp(times[0]), "-e", _stamp(times[1])]
    if args.nsec3:
        command += ["-n", "-t", "0"]
    return [*command, str(zone_file), key]


def run_peer(command: list[str], out: Path, cwd: Path) -> Run:
    cpu0 = _cpu()
    start = time.perf_counter()
    _run(command, cwd)
    wall = time.perf_counter() - start
    return Run(wall, _cpu() - cpu0, count_rrsigs(out))


def count_rrsigs(path: Path) -> int:
    """RRSIG lines of a signed master file (one RR per line, as all three write them)."""
    count = 0
    with path.open(encoding="ascii") as handle:
        for line in handle:
            fields = line.split(None, 5)
            if "RRSIG" in fields[2:5] and not line.startswith(";"):
                count += 1
    return count


# -- the run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Signer:
    """A signer under test: how to run it once, and its runs so far."""

    name: str
    run_once: Callable[[], Run]
    runs: list[Run] = dataclasses.field(default_factory=list)

    def median(self, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in self.runs))

    def median_phases(self) -> dict[str, float]:
        phases = self.runs[0].phases
        return {p: statistics.median(run.phases.get(p, 0.0) for run in self.runs) for p in phases}


def make_signers(workdir: Path, zone_file: Path, args: argparse.Namespace) -> list[Signer]:
    """zonefan and each installed peer, with keys made and options matched."""
    now = int(time.time())
    times = (now - 3600, now + 30 * 86400)
    key = keys.generate(keys.ECDSAP256SHA256, keys.KSK_FLAGS)
    signers = [
        Signer(
            ZONEFAN,
            lambda: run_zonefan(zone_file, workdir / "zonefan.signed", key, times, args),
        )
    ]
    if tool(BIND) is not None:
        bind_keys(workdir / "bind-keys")
        out = workdir / "bind.signed"
        command = bind_command(zone_file, out, workdir / "bind-keys", times, args)
        signers.append(Signer(BIND, lambda: run_peer(command, out, workdir)))
    else:
        print(f"{BIND} is not installed: skipped")
    if tool(LDNS) is not None:
        base = ldns_key(workdir / "ldns-keys")
        out_l = workdir / "ldns.signed"
        command_l = ldns_command(zone_file, out_l, base, times, args)
        signers.append(Signer(LDNS, lambda: run_peer(command_l, out_l, workdir / "ldns-keys")))
    else:
        print(f"{LDNS} is not installed: skipped")
    return signers


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
    if args.nsec3 and not nsec3_supported():
        print("NSEC3: signer.nsec3.Nsec3Params / sign_zone(denial=) not available; skipped")
        return 0
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    zone_file = workdir / "bench.test.zone"
    rrs = write_zone(zone_file, args.names)
    signers = make_signers(workdir, zone_file, args)
    for round_no in range(args.rounds):
        order = signers if round_no % 2 == 0 else signers[::-1]
        for s in order:
            s.runs.append(s.run_once())
            print(f"round {round_no + 1}: {s.name}: {s.runs[-1].wall:.2f} s", flush=True)
    notes = [f"zonefan output: {verify(workdir / 'zonefan.signed')}"] if args.verify else []
    text = render(signers, args, rrs, notes)
    print(text)
    (workdir / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


# -- output --------------------------------------------------------------------------------


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name, flag in ((BIND, "-V"), (LDNS, "-v")):
        path = tool(name)
        if path is not None:
            result = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            parts.append((result.stdout + result.stderr).strip().splitlines()[0])
    return "; ".join(parts)


def render(signers: Sequence[Signer], args: argparse.Namespace, rrs: int, notes: list[str]) -> str:
    denial = "NSEC3 (0 iterations, no salt)" if args.nsec3 else "NSEC"
    zonefan = signers[0]
    lines = [
        f"## Zone signing, zonefan vs dnssec-signzone and ldns-signzone "
        f"({datetime.date.today().isoformat()})",
        "",
        f"Command: `python bench/sign_bench.py {' '.join(args.argv)}`.",
        f"Machine: {available_cores()} cores usable, load average before the run "
        f"{args.load_before}. {_versions()}.",
        f"Zone: {args.names} host names, {rrs} RRs; ECDSA P-256 CSK, {denial}; "
        f"zonefan workers={args.workers}, dnssec-signzone -n {args.workers}. "
        f"Median of {args.rounds} rounds.",
        "",
        "| signer | wall time | RRSIGs | RRSIGs/s | CPU time | zonefan / this |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in signers:
        wall, rrsigs = s.median("wall"), int(s.median("rrsigs"))
        ratio = zonefan.median("wall") / wall
        lines.append(
            f"| {s.name} | {wall:.2f} s | {rrsigs:,} | {rrsigs / wall:,.0f} | "
            f"{s.median('cpu'):.2f} s | {ratio:.2f} |"
        )
    lines += ["", "zonefan's phases (median seconds):", ""]
    lines += ["| phase | seconds |", "|---|---:|"]
    lines += [f"| {p} | {v:.2f} |" for p, v in zonefan.median_phases().items()]
    sign_only = zonefan.median_phases()["sign_zone total"]
    lines.append("")
    for s in signers[1:]:
        lines.append(
            f"- sign_zone alone (records in memory, no parse/output) / {s.name} wall: "
            f"{sign_only / s.median('wall'):.2f}"
        )
    lines += [f"- {n}" for n in notes]
    for s in signers:
        lines.append(f"- {s.name} rounds: " + ", ".join(f"{r.wall:.2f}" for r in s.runs) + " s")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000, help="host names in the zone")
    parser.add_argument("--workers", type=int, default=2, help="processes / threads to sign with")
    parser.add_argument("--rounds", type=int, default=1, help="runs per signer; medians shown")
    parser.add_argument("--nsec3", action="store_true", help="NSEC3 (0 iterations, no salt)")
    parser.add_argument("--verify", action="store_true", help="ldns-verify-zone zonefan's output")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.load_before = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
