"""A 10k-record zone pushed to every native provider target, and one change after it, on the
product path; next to octoDNS with the same provider's plugin against the same back end where
one exists (pdns, moto's Route 53).

    CI=true python bench/provider_bench.py [--records 10000] [--providers pdns,route53,...]

Each back end runs on 127.0.0.1 (a real pdns_server; moto's standalone server; the emulators
of tests/emulators/, which enforce the provider's documented limits) behind the test kit's
fault proxy, which injects nothing here and counts every request. zonefan's figures are
``zonefan sync apply ZONE --config sync.toml`` as a subprocess (the zone transferred from a
running ``zonefan serve``): wall time, CPU time (user + system, from wait4) and peak RSS of
the process, and the requests the back end saw. The targets declare their provider's
documented rate limit and the shared HTTP client keeps to it, so the wall time is what the
push takes at that limit. octoDNS: ``octodns-sync --doit`` from a YAML zone with the same
records, measured the same way.

Writes the table to ``bench/work/providers/results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

# dnspython's DSA module warns on import with recent cryptography: not ours to show.
warnings.filterwarnings("ignore", module="dns")
BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_ROOT), str(BENCH_DIR)]

from sync_bench import (  # noqa: E402
    KEY,
    ORIGIN,
    host_records,
    primary_config,
    send_update,
    sync_config,
    write_octodns_zone,
    write_zone_file,
)

from sync.providers.testkit.faults import FaultProxy  # noqa: E402
from tests.pdns import PdnsServer  # noqa: E402
from tests.servers import ZonefanServer, _clean_env, run_cli  # noqa: E402
from tests.sidecar import SECRET_ENV  # noqa: E402
from tests.tools import free_port  # noqa: E402

WORKDIR = BENCH_DIR / "work" / "providers"
TIMEOUT = 900.0
TOKEN = "bench-token-0123456789abcdef"
TOKEN_ENV = "ZF_BENCH_PROVIDER_TOKEN"
CLOUDFLARE_ACCOUNT = "0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float
    peak_rss_mib: float
    requests: int


@dataclass(frozen=True)
class Backend:
    """A provider's back end: started as a context manager yielding its URL, the target's
    TOML table for an endpoint, and the octoDNS provider config for one (None: no plugin
    against this back end)."""

    name: str
    start: Callable[[Path], AbstractContextManager[str]]
    target: Callable[[str], str]
    octodns: Callable[[str], str] | None = None
    note: str = ""


def measure(command: list[str], env: dict[str, str], cwd: Path, proxy: FaultProxy) -> Measured:
    """Run ``command`` to its end; its wall and CPU time and peak RSS, and the requests the
    proxy forwarded meanwhile."""
    before = len(proxy.log)
    started = time.perf_counter()
    with open(cwd / "out.log", "ab") as out:
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=out)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{command[0]} ran past {TIMEOUT:.0f} s")
            time.sleep(0.005)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = (cwd / "out.log").read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command[:4])} exited {proc.returncode}:\n{tail}")
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(wall, cpu, usage.ru_maxrss / 1024, len(proxy.log) - before)


# -- back ends --------------------------------------------------------------------------------


@contextmanager
def _pdns(work: Path) -> Iterator[str]:
    with PdnsServer(work / "pdns") as server:
        os.environ[TOKEN_ENV + "_PDNS"] = server.api_key
        yield server.api_url


def _pdns_target(url: str) -> str:
    return f"""
[target.t]
type = "powerdns"
url = "{url}"
api-key-env = "{TOKEN_ENV}_PDNS"
signed-zones = "refuse"
timeout = "120s"
"""


def _pdns_octodns(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    return f"""
    class: octodns_powerdns.PowerDnsProvider
    host: {host}
    port: {port}
    scheme: http
    api_key: env/{TOKEN_ENV}_PDNS
"""


@contextmanager
def _hetzner(work: Path) -> Iterator[str]:
    from tests.emulators.hetzner import HetznerEmulator

    with HetznerEmulator(token=TOKEN) as emu:
        yield emu.url


def _hetzner_target(url: str) -> str:
    return f"""
[target.t]
type = "hetzner"
endpoint = "{url}"
api-token-env = "{TOKEN_ENV}"
timeout = "120s"
"""


@contextmanager
def _cloudflare(work: Path) -> Iterator[str]:
    from tests.emulators.cloudflare import CloudflareEmulator

    emu = CloudflareEmulator({TOKEN: CLOUDFLARE_ACCOUNT}).start()
    try:
        yield emu.url
    finally:
        emu.stop()


def _cloudflare_target(url: str) -> str:
    return f"""
[target.t]
type = "cloudflare"
endpoint = "{url}"
api-token-env = "{TOKEN_ENV}"
account-id = "{CLOUDFLARE_ACCOUNT}"
timeout = "120s"
"""


@contextmanager
def _desec(work: Path) -> Iterator[str]:
    from tests.emulators.desec import Clock, DesecEmulator

    # deSEC's documented throttles, in real time: the push waits them out as it would there.
    with DesecEmulator([TOKEN], clock=Clock(real=True)) as emu:
        yield f"http://127.0.0.1:{emu.port}"


def _desec_target(url: str) -> str:
    return f"""
[target.t]
type = "desec"
endpoint = "{url}/api/v1"
api-token-env = "{TOKEN_ENV}"
timeout = "120s"
"""


@contextmanager
def _route53(work: Path) -> Iterator[str]:
    from tests.moto import moto_server

    os.environ[TOKEN_ENV + "_AWS_ID"] = "AKIAZONEFANBENCH0001"
    with moto_server() as url:
        yield url


def _route53_octodns(url: str) -> str:
    # octodns-route53 takes no endpoint: botocore's AWS_ENDPOINT_URL_ROUTE_53 (set for the
    # octoDNS run, see bench_backend) points it at the proxy in front of moto.
    return f"""
    class: octodns_route53.Route53Provider
    access_key_id: env/{TOKEN_ENV}_AWS_ID
    secret_access_key: env/{TOKEN_ENV}
    # Its default (1000 changes a request) counts a change once, so a 10k push ends in
    # "InvalidChangeBatch: Number of records limit of 1000 exceeded": halved, as a user must.
    max_changes: 500
"""


def _route53_target(url: str) -> str:
    return f"""
[target.t]
type = "route53"
endpoint = "{url}"
access-key-id-env = "{TOKEN_ENV}_AWS_ID"
secret-access-key-env = "{TOKEN_ENV}"
create = true
timeout = "120s"
"""


BACKENDS: dict[str, Backend] = {
    "route53": Backend(
        "route53", _route53, _route53_target, _route53_octodns, "moto 5.2 standalone"
    ),
    "pdns": Backend("pdns", _pdns, _pdns_target, _pdns_octodns, "pdns_server 4.7, gsqlite3"),
    "hetzner": Backend("hetzner", _hetzner, _hetzner_target, None, "emulator"),
    "cloudflare": Backend(
        "cloudflare", _cloudflare, _cloudflare_target, None, "emulator, Free plan batches"
    ),
    "desec": Backend("desec", _desec, _desec_target, None, "emulator"),
}


# -- one back end ------------------------------------------------------------------------------


def octodns_config(work: Path, provider: str) -> Path:
    path = work / "octodns.yaml"
    path.write_text(
        f"""---
providers:
  config:
    class: octodns.provider.yaml.YamlProvider
    directory: {work / "zones"}
    default_ttl: 3600
    enforce_order: true
  target:{provider}
zones:
  {ORIGIN}:
    sources:
    - config
    targets:
    - target
""",
        encoding="utf-8",
    )
    return path


def octodns_sync() -> str:
    path = Path(sys.executable).parent / "octodns-sync"
    if not path.exists():
        raise RuntimeError(f"{path} not found: pip install octodns and its provider plugins")
    return str(path)


def bench_backend(
    backend: Backend, primary: ZonefanServer, hosts: list[tuple[str, str, str]], db: Path
) -> dict[str, Measured]:
    out: dict[str, Measured] = {}
    work = WORKDIR / backend.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**_clean_env(), SECRET_ENV: KEY.secret, TOKEN_ENV: TOKEN}
    with backend.start(work) as url:
        env.update({k: v for k, v in os.environ.items() if k.startswith(TOKEN_ENV)})
        proxy = FaultProxy(url).start()
        try:
            config = sync_config(work / "sync.toml", primary, backend.target(proxy.url))
            apply = [sys.executable, "-m", "zonefan.cli", "sync", "apply", ORIGIN]
            out["zonefan push"] = measure([*apply, "--config", str(config)], env, work, proxy)
            verify(config, env, work, exact=True)
            before = _serial(primary)
            send_update(primary, f"change-{backend.name}", "198.51.100.1")
            deadline = time.monotonic() + 10
            while _serial(primary) == before:
                if time.monotonic() > deadline:
                    raise RuntimeError("the primary's serial did not move after the UPDATE")
                time.sleep(0.01)
            out["zonefan change"] = measure([*apply, "--config", str(config)], env, work, proxy)
            verify(config, env, work, exact=True)
        finally:
            proxy.stop()
    if backend.octodns is not None:
        octo = work / "octodns"
        octo.mkdir()
        write_octodns_zone(octo / "zones", hosts)
        with backend.start(octo) as url:
            env.update({k: v for k, v in os.environ.items() if k.startswith(TOKEN_ENV)})
            proxy = FaultProxy(url).start()
            try:
                config = octodns_config(octo, backend.octodns(proxy.url))
                env["AWS_ENDPOINT_URL_ROUTE_53"] = proxy.url
                env["AWS_DEFAULT_REGION"] = "us-east-1"
                command = [octodns_sync(), "--config-file", str(config), "--doit"]
                out["octoDNS push"] = measure(command, env, octo, proxy)
                # Read back by zonefan's own target: nothing of the zone missing there.
                check = sync_config(octo / "check.toml", primary, backend.target(proxy.url))
                verify(check, env, octo, exact=False)
            finally:
                proxy.stop()
    return out


def verify(config: Path, env: dict[str, str], cwd: Path, exact: bool) -> None:
    """``zonefan sync plan`` finds the back end holding the zone: nothing to do (``exact``),
    or nothing to create but this bench's changes (another tool's push: the provider's SOA
    serial and the like may differ)."""
    command = [sys.executable, "-m", "zonefan.cli", "sync", "plan", ORIGIN]
    for _ in range(3):
        done = subprocess.run(
            [*command, "--config", str(config), "--json"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"sync plan exited {done.returncode}: {done.stderr[-2000:]}")
        entry = json.loads(done.stdout)[0]
        # A full read after a push may exceed a provider's per-minute budget (deSEC: 50
        # reads a minute, 21 pages for 10k records): wait the window out, as the sidecar would.
        if "HTTP 429" not in entry.get("error", "") and "budget is spent" not in entry.get(
            "error", ""
        ):
            break
        time.sleep(61)
    summary = entry["summary"]
    # The primary has gained this bench's one-record changes since octoDNS's YAML was made.
    creates = [line for line in entry["lines"] if line.startswith("+ ")]
    ok = summary == "no changes" if exact else all(line.startswith("+ change-") for line in creates)
    if not ok:
        lines = "; ".join(entry["lines"][:5])
        raise RuntimeError(f"the back end does not hold the zone: {summary}: {lines}")


def _serial(primary: ZonefanServer) -> int:
    import dns.message
    import dns.query

    query = dns.message.make_query(ORIGIN, "SOA")
    response = dns.query.udp(query, "127.0.0.1", 2, primary.port)
    return int(response.answer[0][0].serial)


# -- report ------------------------------------------------------------------------------------


def render(results: dict[str, dict[str, Measured]], records: int) -> str:
    rows = [
        "| provider | run | wall | CPU | peak RSS | requests | wall vs zonefan |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        ours = runs.get("zonefan push")
        for label, m in runs.items():
            ratio = "" if ours is None or label != "octoDNS push" else f"{m.wall / ours.wall:.2f}"
            rows.append(
                f"| {name} ({BACKENDS[name].note}) | {label} | {m.wall:.2f} s | {m.cpu:.2f} s | "
                f"{m.peak_rss_mib:.0f} MiB | {m.requests:,} | {ratio} |"
            )
    return f"{records:,} records\n\n" + "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    chosen = [p for p in args.providers.split(",") if p]
    unknown = [p for p in chosen if p not in BACKENDS]
    if unknown:
        raise SystemExit(f"--providers: unknown {unknown}; known: {', '.join(BACKENDS)}")
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    hosts = host_records(args.records)
    zone_file = WORKDIR / f"{ORIGIN}zone"
    write_zone_file(zone_file, hosts)
    db = WORKDIR / "zonefan.db"
    run_cli(db, "zone", "import", str(zone_file), cwd=WORKDIR)
    config = primary_config(WORKDIR / "zonefan.toml", free_port())
    results: dict[str, dict[str, Measured]] = {}
    with ZonefanServer(WORKDIR / "primary", db=db, probe_name=ORIGIN, config=config) as primary:
        for name in chosen:
            print(f"{name}: ...", flush=True)
            results[name] = bench_backend(BACKENDS[name], primary, hosts, db)
            for label, m in results[name].items():
                print(f"  {label}: {m.wall:.2f} s, CPU {m.cpu:.2f} s, {m.requests} requests")
    text = render(results, args.records)
    print()
    print(text)
    (WORKDIR / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000, help="host records in the zone")
    parser.add_argument("--providers", default=",".join(BACKENDS), help="comma-separated")
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 99_999:
        parser.error("--records must be between 1 and 99999")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args()))
