"""The sync sidecar against octoDNS: an initial 10k-record push into PowerDNS, and one change
converged on three providers.

    CI=true python bench/sync_bench.py [--records 10000] [--rounds 3] [--changes 10]

Needs pdns_server with the gsqlite3 backend, knotd, and ``octodns`` + ``octodns-powerdns``
installed in this interpreter's environment (run as subprocesses: ``octodns-sync`` beside
``sys.executable``). Everything goes to ``bench/work/sync/``; every server listens on
127.0.0.1 on free ports and is stopped by its PID (the fixture classes of tests/).

1. **Initial push** (``--rounds`` times each, alternating who goes first, a fresh pdns_server
   every time): zonefan = wall time of ``zonefan sync apply ZONE --config ...`` as a
   subprocess (AXFR from a running ``zonefan serve`` primary, zone created, PATCHes);
   octoDNS = wall time of ``octodns-sync --config-file ... --doit`` from a YAML zone with the
   same records (YamlProvider -> PowerDnsProvider). Each result is checked through the pdns
   API (same record count) and a DNS query for the last host.
2. **One change**: ``zonefan sync run`` converged on three targets (pdns through its API,
   Knot by RFC 2136 UPDATE, a second pdns provisioned as a secondary of the primary); each
   round runs ``zonefan --db DB record add ZONE chgNN 300 A ...`` and polls the three with
   dnspython every few ms until each serves the new record, timed from the CLI's start.
   octoDNS: the same record added to the YAML, ``octodns-sync --doit``, until pdns serves it.
3. Prints the table, also written to ``bench/work/sync/results.md``.
"""

from __future__ import annotations

import argparse
import base64
import compileall
import importlib.metadata
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
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.tsig  # noqa: E402
import dns.update  # noqa: E402

from tests.pdns import PdnsServer  # noqa: E402
from tests.servers import XfrKey, ZonefanServer, _clean_env, run_cli  # noqa: E402
from tests.sidecar import API_KEY_ENV, SECRET_ENV, Sidecar  # noqa: E402
from tests.tools import free_port, require_tool  # noqa: E402
from tests.update_targets import KnotUpdatePrimary  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "sync"
ORIGIN = "syncbench.test."
SERIAL = 2026112300  # far above Knot's serial 1: the initial UPDATE push may take many steps
KEY = XfrKey("bench-sync", base64.b64encode(b"sync-bench-secret-0123456789abcd").decode())
OCTO_KEY_ENV = "ZF_BENCH_OCTO_PDNS_KEY"
PUSH_TIMEOUT = 600.0  # one initial push, either tool
CONVERGE_TIMEOUT = 600.0  # the sidecar's first push to all three targets
CHANGE_TIMEOUT = 60.0  # one change until served everywhere
POLL = 0.003  # seconds between polling rounds
GLUE = {"ns1": "192.0.2.1", "ns2": "192.0.2.2"}

Record = tuple[str, str, str]  # relative owner, type, rdata text (zone-file form)


# -- the zone --------------------------------------------------------------------------------


def host_records(count: int) -> list[Record]:
    """``host00000``... one RR each: AAAA on every 10th, TXT on every 20th (offset 4), MX on
    every 50th (offset 7), A otherwise. Deterministic."""
    records: list[Record] = []
    for i in range(count):
        name = f"host{i:05d}"
        if i % 10 == 9:
            records.append((name, "AAAA", f"2001:db8::{i:x}"))
        elif i % 20 == 4:
            records.append((name, "TXT", f'"bench record {i}"'))
        elif i % 50 == 7:
            records.append((name, "MX", f"10 mail{i % 7}.{ORIGIN}"))
        else:
            records.append((name, "A", f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"))
    return records


def write_zone_file(path: Path, hosts: list[Record]) -> int:
    """The primary's zone: SOA (serial ``SERIAL``), apex NS, glue, ``hosts``. Returns the
    number of RRs other than the SOA."""
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        f"@ IN SOA ns1 hostmaster {SERIAL} 7200 3600 1209600 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        *(f"{name} IN A {address}" for name, address in GLUE.items()),
        *(f"{name} IN {rdtype} {rdata}" for name, rdtype, rdata in hosts),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 2 + len(GLUE) + len(hosts)


def minimal_zone_file(path: Path) -> Path:
    """What Knot holds before the first push: SOA serial 1, apex NS and glue."""
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300",
        "@ IN NS ns1",
        "@ IN NS ns2",
        *(f"{name} IN A {address}" for name, address in GLUE.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _yaml_value(rdtype: str, rdata: str) -> str:
    if rdtype == "MX":
        preference, exchange = rdata.split()
        return f"{{exchange: {exchange}, preference: {preference}}}"
    if rdtype == "TXT":
        return "'" + rdata.strip('"') + "'"
    return f"'{rdata}'"


def write_octodns_zone(directory: Path, hosts: list[Record]) -> None:
    """The same zone for octoDNS's YamlProvider (``ZONE.yaml``, keys in sorted order, as
    ``enforce_order`` wants; the SOA is pdns's own)."""
    entries: dict[str, list[str]] = {
        "": [
            "  type: NS",
            "  values:",
            *(f"  - {name}.{ORIGIN}" for name in sorted(GLUE)),
        ]
    }
    for name, address in GLUE.items():
        entries[name] = ["  type: A", f"  value: '{address}'"]
    for name, rdtype, rdata in hosts:
        entries[name] = [f"  type: {rdtype}", f"  value: {_yaml_value(rdtype, rdata)}"]
    lines = ["---"]
    for key in sorted(entries):
        lines.append(f"'{key}':")
        lines.extend(entries[key])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{ORIGIN}yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def octodns_config(workdir: Path, pdns: PdnsServer) -> Path:
    path = workdir / "octodns.yaml"
    path.write_text(
        f"""---
providers:
  config:
    class: octodns.provider.yaml.YamlProvider
    directory: {workdir / "zones"}
    default_ttl: 3600
    enforce_order: true
  pdns:
    class: octodns_powerdns.PowerDnsProvider
    host: 127.0.0.1
    port: {pdns.api_port}
    scheme: http
    api_key: env/{OCTO_KEY_ENV}
zones:
  {ORIGIN}:
    sources:
    - config
    targets:
    - pdns
""",
        encoding="utf-8",
    )
    return path


# -- zonefan configuration -------------------------------------------------------------------


def primary_config(path: Path, sidecar_port: int) -> Path:
    """Keys, transfers allowed to 127.0.0.1 with the key, NOTIFY to the sidecar."""
    path.write_text(
        f"""[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret = "{KEY.secret}"

[zone."{ORIGIN}"]
update-policy = ["grant {KEY.name}. zonesub ANY"]

[[secondary]]
address = "127.0.0.1"
key = "{KEY.name}"
notify = "127.0.0.1@{sidecar_port}"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)  # it holds a secret: zonefan wants it private
    return path


def sync_config(
    path: Path,
    primary: ZonefanServer,
    targets: str,
    listen: int | None = None,
) -> Path:
    state = path.with_suffix(".db")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    path.write_text(
        f"""state = "{state}"
{f'listen = "127.0.0.1:{listen}"' if listen is not None else ""}

[primary]
address = "127.0.0.1:{primary.port}"
key = "{KEY.name}"
zones = ["{ORIGIN}"]
timeout = "120s"

[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret-env = "{SECRET_ENV}"
{targets}""",
        encoding="utf-8",
    )
    path.chmod(0o600)  # it holds a secret: zonefan wants it private
    return path


def pdns_target(name: str, pdns: PdnsServer, kind: str = "powerdns") -> str:
    return f"""
[target.{name}]
type = "{kind}"
url = "{pdns.api_url}"
api-key-env = "{API_KEY_ENV}_{name.upper()}"
dns = "127.0.0.1:{pdns.dns_port}"
tsig-key = "{KEY.name}"
timeout = "60s"
"""


def knot_target(name: str, knot: KnotUpdatePrimary) -> str:
    return f"""
[target.{name}]
type = "rfc2136"
server = "127.0.0.1:{knot.port}"
key = "{KEY.name}"
timeout = "60s"
"""


# -- measuring -------------------------------------------------------------------------------


def answer(port: int, qname: str, rdtype: str = "A", timeout: float = 0.5) -> list[str]:
    """The rdata texts of the answer (empty on error or timeout)."""
    query = dns.message.make_query(qname, rdtype)
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return []
    wanted = dns.rdatatype.from_text(rdtype)
    return [rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset]


def served_serial(port: int) -> int | None:
    found = answer(port, ORIGIN, "SOA")
    return int(found[0].split()[2]) if found else None


def pdns_record_count(pdns: PdnsServer) -> int:
    """Records other than the SOA in the zone, read through pdns's API."""
    status, body = pdns.api("GET", f"zones/{ORIGIN}", timeout=60)
    if status != 200:
        raise RuntimeError(f"pdns API GET zone: HTTP {status}: {body!r}")
    return sum(len(rrset["records"]) for rrset in body["rrsets"] if rrset["type"] != "SOA")


def api_serial(pdns: PdnsServer) -> int | None:
    """The zone's serial in pdns's database (None: no such zone yet)."""
    status, body = pdns.api("GET", f"zones/{ORIGIN}?rrsets=false", timeout=10)
    return int(body["serial"]) if status == 200 else None


def timed(command: list[str], env: dict[str, str], cwd: Path, what: str) -> float:
    """Wall time of ``command``; raises with its output when it fails."""
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=PUSH_TIMEOUT,
        env=env,
        cwd=cwd,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return took


def zonefan_cli() -> list[str]:
    return [sys.executable, "-m", "zonefan.cli"]


def record_add(owner: str, address: str) -> list[str]:
    return ["record", "add", ORIGIN, owner, "300", "A", address]


def octodns_sync() -> str:
    path = Path(sys.executable).parent / "octodns-sync"
    if not path.exists():
        raise RuntimeError(f"{path} not found: pip install octodns octodns-powerdns")
    return str(path)


def check_push(pdns: PdnsServer, expected: int, last: Record, who: str) -> None:
    count = pdns_record_count(pdns)
    if count != expected:
        raise RuntimeError(f"{who}: pdns holds {count} records, expected {expected}")
    name, rdtype, rdata = last
    got = answer(pdns.dns_port, f"{name}.{ORIGIN}", rdtype, timeout=2)
    if not got:
        raise RuntimeError(f"{who}: pdns does not answer {name} {rdtype} ({rdata})")


def push_zonefan(round_dir: Path, primary: ZonefanServer, expected: int, last: Record) -> float:
    with PdnsServer(round_dir / "pdns") as pdns:
        config = sync_config(round_dir / "sync.toml", primary, pdns_target("pdns", pdns))
        env = {
            **_clean_env(),
            SECRET_ENV: KEY.secret,
            f"{API_KEY_ENV}_PDNS": pdns.api_key,
        }
        took = timed(
            [*zonefan_cli(), "sync", "apply", ORIGIN, "--config", str(config)],
            env,
            round_dir,
            "zonefan sync apply",
        )
        check_push(pdns, expected, last, "zonefan")
    return took


def push_octodns(round_dir: Path, hosts: list[Record], expected: int, last: Record) -> float:
    write_octodns_zone(round_dir / "zones", hosts)
    with PdnsServer(round_dir / "pdns") as pdns:
        config = octodns_config(round_dir, pdns)
        env = {**os.environ, OCTO_KEY_ENV: pdns.api_key}
        took = timed(
            [octodns_sync(), "--config-file", str(config), "--doit"],
            env,
            round_dir,
            "octodns-sync",
        )
        check_push(pdns, expected, last, "octoDNS")
    return took


def poll_served(
    targets: dict[str, int], qname: str, address: str, started: float
) -> dict[str, float]:
    """Poll every target until each answers ``address`` for ``qname``: seconds from
    ``started`` per target."""
    seen: dict[str, float] = {}
    while len(seen) < len(targets):
        for name, port in targets.items():
            if name not in seen and address in answer(port, qname, timeout=0.2):
                seen[name] = time.perf_counter() - started
        if time.perf_counter() - started > CHANGE_TIMEOUT:
            missing = sorted(set(targets) - set(seen))
            raise RuntimeError(f"{qname} A {address} not served by {missing} in time")
        time.sleep(POLL)
    return seen


def send_update(primary: ZonefanServer, owner: str, address: str) -> None:
    """Add ``owner`` A ``address`` by a TSIG-signed RFC 2136 UPDATE to the primary: the
    way `zonefan serve` takes changes without loading the zone in a new process."""
    name = dns.name.from_text(KEY.name)
    key = dns.tsig.Key(name, base64.b64decode(KEY.secret), dns.tsig.HMAC_SHA256)
    update = dns.update.UpdateMessage(ORIGIN, keyring=key)
    update.add(owner, 300, "A", address)
    response = dns.query.tcp(update, "127.0.0.1", port=primary.port, timeout=10)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError(f"UPDATE answered {dns.rcode.to_text(response.rcode())}")


def wait_served(
    targets: dict[str, int], qname: str, address: str, started: float, proc: subprocess.Popen[str]
) -> tuple[dict[str, float], float]:
    """Poll every target until each answers ``address`` for ``qname``: seconds from
    ``started`` per target, and when ``proc`` (the change) exited."""
    seen: dict[str, float] = {}
    exited = 0.0
    while len(seen) < len(targets) or not exited:
        now = time.perf_counter()
        if not exited and proc.poll() is not None:
            exited = now - started
        for name, port in targets.items():
            if name not in seen and address in answer(port, qname, timeout=0.2):
                seen[name] = time.perf_counter() - started
        if now - started > CHANGE_TIMEOUT:
            proc.kill()
            proc.wait(5)
            missing = sorted(set(targets) - set(seen))
            raise RuntimeError(f"{qname} A {address} not served by {missing} in time")
        time.sleep(POLL)
    out, err = proc.communicate(timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"the change exited {proc.returncode}:\n{out}{err}")
    return seen, exited


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - started


def all_at(ports: dict[str, int], serial: int) -> Callable[[], bool]:
    """A check: every port serves the zone at ``serial``."""
    return lambda: all(served_serial(p) == serial for p in ports.values())


def primary_serial(primary: ZonefanServer) -> int:
    serial = served_serial(primary.port)
    if serial is None:
        raise RuntimeError("the primary does not answer its SOA")
    return serial


# -- the runs --------------------------------------------------------------------------------


def initial_push(
    args: argparse.Namespace,
    primary: ZonefanServer,
    hosts: list[Record],
    expected: int,
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"zonefan": [], "octoDNS": []}
    last = hosts[-1]
    for r in range(args.rounds):
        order = ["zonefan", "octoDNS"] if r % 2 == 0 else ["octoDNS", "zonefan"]
        for who in order:
            round_dir = WORKDIR / f"push-{who}-{r}"
            shutil.rmtree(round_dir, ignore_errors=True)
            round_dir.mkdir(parents=True)
            if who == "zonefan":
                took = push_zonefan(round_dir, primary, expected, last)
            else:
                took = push_octodns(round_dir, hosts, expected, last)
            times[who].append(took)
            print(f"  push round {r + 1}, {who}: {took:.2f} s ({expected:,} records checked)")
    return times


def zonefan_changes(
    args: argparse.Namespace, primary: ZonefanServer, sidecar_port: int
) -> tuple[dict[str, list[float]], float]:
    """Per target (and "all three", "CLI exit"), seconds from the CLI's start until served;
    and how long the sidecar's first convergence took."""
    d = WORKDIR / "change"
    names = ("pdns", "knot", "pdns-secondary")
    times: dict[str, list[float]] = {n: [] for n in [*names, "all three", "CLI exit"]}
    with (
        PdnsServer(d / "pdns") as pdns,
        PdnsServer(d / "pdns-secondary") as pdns2,
        KnotUpdatePrimary(d / "knot", ORIGIN, minimal_zone_file(d / "minimal.zone"), KEY) as knot,
    ):
        targets_text = (
            pdns_target("pdns", pdns)
            + knot_target("knot", knot)
            + pdns_target("secondary", pdns2, "powerdns-secondary")
        )
        config = sync_config(d / "sync.toml", primary, targets_text, listen=sidecar_port)
        env = {
            SECRET_ENV: KEY.secret,
            f"{API_KEY_ENV}_PDNS": pdns.api_key,
            f"{API_KEY_ENV}_SECONDARY": pdns2.api_key,
        }
        ports = {"pdns": pdns.dns_port, "knot": knot.port, "pdns-secondary": pdns2.dns_port}
        with Sidecar(d, config, env) as sidecar:
            want = primary_serial(primary)
            try:
                # pdns read through its API: a DNS query before the zone exists there is
                # answered from pdns's packet cache for up to 20 s (cache-ttl) afterwards.
                converged = wait_for(
                    lambda: (
                        api_serial(pdns) == want
                        and api_serial(pdns2) == want
                        and served_serial(knot.port) == want
                    ),
                    CONVERGE_TIMEOUT,
                    "first convergence",
                )
                wait_for(all_at(ports, want), 60, "first convergence served")
            except RuntimeError:
                print(sidecar.log_text()[-4000:])
                raise
            print(f"  sidecar converged on the three targets in {converged:.1f} s")
            for i in range(args.changes):
                owner, address = f"chg{i:02d}", f"198.51.100.{i + 1}"
                started = time.perf_counter()
                try:
                    if args.change_via == "update":
                        send_update(primary, owner, address)
                        exited = time.perf_counter() - started
                        seen = poll_served(ports, f"{owner}.{ORIGIN}", address, started)
                    else:
                        proc = subprocess.Popen(
                            [*zonefan_cli(), "--db", str(primary.db), *record_add(owner, address)],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True,
                            env=_clean_env(),
                            cwd=primary.workdir,
                        )
                        seen, exited = wait_served(
                            ports, f"{owner}.{ORIGIN}", address, started, proc
                        )
                except RuntimeError:
                    print(sidecar.log_text()[-4000:])
                    raise
                for name, took in seen.items():
                    times[name].append(took)
                times["all three"].append(max(seen.values()))
                times["CLI exit"].append(exited)
                print(
                    f"  change {i + 1}: "
                    + ", ".join(f"{n} {seen[n] * 1000:.0f} ms" for n in names)
                    + f" (the change returned at {exited * 1000:.0f} ms)"
                )
                now_serial = primary_serial(primary)
                wait_for(
                    all_at(ports, now_serial),
                    30,
                    "serial after the change",
                )
                time.sleep(0.3)
    return times, converged


def octodns_changes(args: argparse.Namespace, hosts: list[Record]) -> list[float]:
    d = WORKDIR / "change-octodns"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    times: list[float] = []
    write_octodns_zone(d / "zones", hosts)
    with PdnsServer(d / "pdns") as pdns:
        config = octodns_config(d, pdns)
        env = {**os.environ, OCTO_KEY_ENV: pdns.api_key}
        command = [octodns_sync(), "--config-file", str(config), "--doit"]
        timed(command, env, d, "octodns-sync (initial)")
        added: list[Record] = []
        for i in range(args.changes):
            owner, address = f"chg{i:02d}", f"198.51.100.{i + 1}"
            added.append((owner, "A", address))
            write_octodns_zone(d / "zones", added + hosts)
            started = time.perf_counter()
            proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=d,
            )
            seen, exited = wait_served(
                {"pdns": pdns.dns_port}, f"{owner}.{ORIGIN}", address, started, proc
            )
            times.append(seen["pdns"])
            print(
                f"  octoDNS change {i + 1}: pdns {seen['pdns'] * 1000:.0f} ms"
                f" (octodns-sync exited at {exited * 1000:.0f} ms)"
            )
    return times


# -- report ----------------------------------------------------------------------------------


def summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return statistics.median(ordered), p90, ordered[-1]


def versions() -> str:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    pdns_out = subprocess.run(
        [require_tool("pdns_server"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    pdns_line = next(
        (line for line in (pdns_out.stdout + pdns_out.stderr).splitlines() if "PowerDNS" in line),
        "",
    )
    pdns_version = pdns_line.split("Server ")[-1].split(" ")[0] if pdns_line else "?"
    knot_out = subprocess.run(
        [require_tool("knotd"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    knot_version = knot_out.stdout.strip().split("version ")[-1] or "?"
    return (
        f"Python {platform.python_version()}, pdns {pdns_version}, Knot {knot_version}, "
        f"octoDNS {version('octodns')} + octodns-powerdns {version('octodns-powerdns')}, "
        f"dnspython {version('dnspython')}"
    )


def render(
    args: argparse.Namespace,
    pushes: dict[str, list[float]],
    changes: dict[str, list[float]],
    octo_changes: list[float],
    converged: float,
    expected: int,
    load: tuple[float, float, float],
) -> str:
    zf = statistics.median(pushes["zonefan"])
    octo = statistics.median(pushes["octoDNS"])
    octo_change = statistics.median(octo_changes)
    rows = [
        "| measurement | median | p90 | max | octoDNS / zonefan |",
        "|---|---:|---:|---:|---:|",
        f"| initial push, zonefan `sync apply` | {zf:.2f} s | | {max(pushes['zonefan']):.2f} s "
        f"| **{octo / zf:.1f}x** |",
        f"| initial push, octoDNS `octodns-sync --doit` | {octo:.2f} s | "
        f"| {max(pushes['octoDNS']):.2f} s | |",
    ]
    labels = {
        "pdns": "change served by pdns (API)",
        "knot": "change served by Knot (RFC 2136)",
        "pdns-secondary": "change served by pdns (secondary)",
        "all three": "change served by all three",
        "CLI exit": f"the change returned ({args.change_via})",
    }
    for key, label in labels.items():
        median, p90, worst = summary(changes[key])
        ratio = f"{octo_change / median:.1f}x" if key in ("pdns", "all three") else ""
        rows.append(
            f"| {label} | {median * 1000:.0f} ms | {p90 * 1000:.0f} ms | {worst * 1000:.0f} ms "
            f"| {ratio} |"
        )
    median, p90, worst = summary(octo_changes)
    rows.append(
        f"| change served by pdns, octoDNS | {median * 1000:.0f} ms | {p90 * 1000:.0f} ms "
        f"| {worst * 1000:.0f} ms | |"
    )
    cmd = (
        f"CI=true .venv/bin/python bench/sync_bench.py --records {args.records} "
        f"--rounds {args.rounds} --changes {args.changes}"
    )
    return "\n".join(
        [
            "### Sync: initial push and one change, zonefan vs octoDNS "
            f"({time.strftime('%Y-%m-%d')})",
            "",
            f"Command: `{cmd}`.",
            f"Machine: {os.cpu_count()} cores ({platform.machine()}), load average before the "
            f"runs {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. {versions()}.",
            f"Zone: {ORIGIN} with {expected:,} records besides the SOA ({args.records:,} hosts: "
            "A, every 10th AAAA, every 20th TXT, every 50th MX; apex NS and glue). Initial push: "
            f"median of {args.rounds} (a fresh pdns_server each); changes: {args.changes}, "
            "timed from the start of the change command until the record is served.",
            "",
            *rows,
            "",
            f"- **Initial push: octoDNS / zonefan = {octo / zf:.1f}x** (target ≥ 5x). Rounds: "
            f"zonefan {', '.join(f'{t:.2f}' for t in pushes['zonefan'])} s; octoDNS "
            f"{', '.join(f'{t:.2f}' for t in pushes['octoDNS'])} s.",
            f"- **One change on all three targets: median "
            f"{statistics.median(changes['all three']) * 1000:.0f} ms, max "
            f"{max(changes['all three']) * 1000:.0f} ms** (target < 1 s), from "
            + (
                "sending the UPDATE to `zonefan serve` (its commit included)."
                if args.change_via == "update"
                else "starting `zonefan record add` (Python start-up, loading the zone, commit)."
            ),
            f"- The sidecar's first push of the zone to all three (pdns API, Knot by UPDATE, "
            f"pdns secondary by AXFR) took {converged:.1f} s.",
        ]
    )


def compile_project() -> None:
    """Byte-compile zonefan's packages, as pip does for installed ones (octoDNS's): an
    editable checkout run with PYTHONDONTWRITEBYTECODE (set on some machines) otherwise
    compiles every module at each start."""
    for package in ("zonefan", "sync", "nameserver", "signer"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


def run(args: argparse.Namespace) -> int:
    for tool in ("pdns_server", "knotd", "knotc"):
        require_tool(tool)
    octodns_sync()
    compile_project()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    load = os.getloadavg()
    hosts = host_records(args.records)
    zone_file = WORKDIR / f"{ORIGIN}zone"
    expected = write_zone_file(zone_file, hosts)
    db = WORKDIR / "zonefan.db"
    run_cli(db, "zone", "import", str(zone_file), cwd=WORKDIR)
    sidecar_port = free_port()
    config = primary_config(WORKDIR / "zonefan.toml", sidecar_port)
    with ZonefanServer(WORKDIR / "primary", db=db, probe_name=ORIGIN, config=config) as primary:
        serial = primary_serial(primary)
        print(f"primary serves {ORIGIN} serial {serial}, {expected:,} records besides the SOA")
        print("initial push into an empty pdns_server:")
        pushes = initial_push(args, primary, hosts, expected)
        print("one change, zonefan sync run on three targets:")
        changes, converged = zonefan_changes(args, primary, sidecar_port)
    print("one change, octoDNS into pdns:")
    octo_changes = octodns_changes(args, hosts)
    text = render(args, pushes, changes, octo_changes, converged, expected, load)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="host records in the zone")
    parser.add_argument("--rounds", type=int, default=3, help="initial pushes per tool")
    parser.add_argument("--changes", type=int, default=10, help="one-record changes per tool")
    parser.add_argument(
        "--change-via",
        choices=("update", "cli"),
        default="update",
        help="make each change by an RFC 2136 UPDATE to `zonefan serve` (default) or by "
        "`zonefan record add`, which loads the zone in a new process first",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 99_999:
        parser.error("--records must be between 1 and 99999")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    if not 1 <= args.changes <= 99:
        parser.error("--changes must be between 1 and 99")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
