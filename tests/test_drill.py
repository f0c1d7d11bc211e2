"""`zonefan drill` against real servers: a signed zone with a pool whose members are
checked on HTTP backends on 127.0.0.2 (fra) and 127.0.0.3 (ams), served by `zonefan
serve`, a Knot and an NSD secondary (NOTIFY, IXFR) and pdns as a sync target through
`zonefan sync run`. The drill's per-endpoint times are compared with what the test's own
poller, one thread per endpoint asking every 10 ms, saw in the same run. Then the failures:
an endpoint that never converges, an interrupted drill, refusals; the report formats."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import pytest

from nameserver.store.drills import Drill, DrillEndpoint
from nameserver.store.store import Store
from tests.pdns import PdnsServer
from tests.servers import KnotSecondary, NsdSecondary, XfrKey, ZonefanServer, _clean_env
from tests.sidecar import API_KEY_ENV, SECRET_ENV, Sidecar
from tests.test_pools_serve import Backends
from tests.tools import example_store, free_port, require_tool, write_private
from tests.wait import wait_until

ZONE = "example.test."
POOL = "pool.example.test."
FRA, AMS = "127.0.0.2", "127.0.0.3"
KEY = XfrKey("drill-key", base64.b64encode(b"drill-test-secret-0123456789abcd").decode())
DRILL_INTERVAL = 0.05  # zonefan.drill.DEFAULT_INTERVAL
POLL_INTERVAL = 0.01  # the test's own poller


def zonefan(
    db: Path, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=db.parent,
        env={**_clean_env(), **(env or {})},
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"zonefan {args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done


def primary_config(
    path: Path, port: int, backend_port: int, notify: list[int], pool_extra: str = ""
) -> Path:
    """`zonefan serve`'s config: the pool (``pool_extra``: more keys of its table), the
    TSIG key and a secondary per port in ``notify``."""
    secondaries = "".join(
        f"""
[[secondary]]
address = "127.0.0.1"
key = "{KEY.name}"
notify = "127.0.0.1@{n}"
"""
        for n in notify
    )
    return write_private(
        path,
        f"""[serve]
listen = ["127.0.0.1:{port}"]

[pool."{POOL}"]
type = "A"
ttl = 30
members = [{{ address = "{FRA}", region = "fra" }}, {{ address = "{AMS}", region = "ams" }}]
check = {{ kind = "http", path = "/healthz", port = {backend_port}, interval = "1s", \
timeout = "0.5s", rise = 2, fall = 2 }}
{pool_extra}
[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret = "{KEY.secret}"
{secondaries}""",
    )


def sync_config(workdir: Path, port: int, sidecar_port: int, pdns: PdnsServer) -> Path:
    """`zonefan sync run`'s config in ``workdir``: the zone from the primary on ``port``,
    NOTIFY received on ``sidecar_port``, ``pdns`` its one target (through its API)."""
    sync = workdir / "sync.toml"
    sync.write_text(
        f"""state = "{workdir / "sync.db"}"
listen = "127.0.0.1:{sidecar_port}"
refresh-interval = "2s"
retry-base = "0.2s"
retry-max = "2s"

[primary]
address = "127.0.0.1:{port}"
key = "{KEY.name}"
zones = ["{ZONE}"]

[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret-env = "{SECRET_ENV}"

[target.pdns]
type = "powerdns"
url = "{pdns.api_url}"
api-key-env = "{API_KEY_ENV}"
dns = "127.0.0.1:{pdns.dns_port}"
tsig-key = "{KEY.name}"
nameservers = ["ns1.pdns-provider.test."]
""",
        encoding="utf-8",
    )
    return sync


def addresses(port: int) -> set[str] | None:
    """The pool's addresses as the server on ``port`` answers; None without an answer."""
    query = dns.message.make_query(POOL, "A")
    query.flags = 0
    try:
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
    except (dns.exception.DNSException, OSError):
        return None
    rrset = response.get_rrset(
        dns.message.ANSWER, dns.name.from_text(POOL), dns.rdataclass.IN, dns.rdatatype.A
    )
    return set() if rrset is None else {r.address for r in rrset}


@dataclass
class Poller:
    """One endpoint asked every 10 ms from a thread of its own: the wall times of the
    first answer without FRA, and of the first with it again after that."""

    port: int
    gone: float | None = None
    back: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            seen = addresses(self.port)
            now = time.time()
            if seen:
                if self.gone is None and FRA not in seen:
                    self.gone = now
                elif self.gone is not None and self.back is None and FRA in seen:
                    self.back = now
            time.sleep(max(0.0, sent + POLL_INTERVAL - time.monotonic()))


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = Backends(free_port())
    try:
        b.start(FRA)
        b.start(AMS)
        yield b
    finally:
        b.close()


@pytest.mark.external
def test_a_drill_times_every_endpoint_as_an_independent_poller_does(
    tmp_path: Path, backends: Backends
) -> None:
    for tool in ("knotd", "knotc", "nsd", "nsd-control", "pdns_server"):
        require_tool(tool)
    db = example_store(tmp_path / "zonefan.db", signed=True)
    port, knot_port, nsd_port, sidecar_port = (free_port() for _ in range(4))
    config = primary_config(
        tmp_path / "zonefan.toml", port, backends.port, [knot_port, nsd_port, sidecar_port]
    )
    primary = ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config)
    primary.fixed_port = port
    knot = KnotSecondary(tmp_path / "knot", [ZONE], port, KEY)
    knot.fixed_port = knot_port
    nsd = NsdSecondary(tmp_path / "nsd", [ZONE], port, KEY)
    nsd.fixed_port = nsd_port
    with primary, knot, nsd, PdnsServer(tmp_path / "pdns") as pdns:
        sync = sync_config(tmp_path, port, sidecar_port, pdns)
        env = {SECRET_ENV: KEY.secret, API_KEY_ENV: pdns.api_key}
        with Sidecar(tmp_path, sync, env):
            ports = {
                "primary": port,
                f"127.0.0.1:{knot_port}": knot_port,
                f"127.0.0.1:{nsd_port}": nsd_port,
                "pdns": pdns.dns_port,
            }
            for name, p in ports.items():

                def both(p: int = p) -> bool:
                    return addresses(p) == {FRA, AMS}

                wait_until(both, 60, 0.1, f"{name} has both")
            pollers = {name: Poller(p) for name, p in ports.items()}
            threads = [threading.Thread(target=q.run, daemon=True) for q in pollers.values()]
            for t in threads:
                t.start()
            try:
                done = zonefan(
                    db, "--config", str(config), "drill", "fra", "-m", "quarterly",
                    "--author", "ops", "--sync-config", str(sync), "--timeout", "30s",
                    "--json", env=env,
                )  # fmt: skip
            finally:
                for q in pollers.values():
                    q.stop.set()
                for t in threads:
                    t.join(5)
    drill = json.loads(done.stdout)
    assert drill["outcome"] == "passed", done.stdout
    start = _stamp(drill["start"])
    by_name = {e["name"]: e for e in drill["endpoints"]}
    assert set(by_name) == {*ports, f"127.0.0.1:{sidecar_port}"}
    assert by_name[f"127.0.0.1:{sidecar_port}"]["kind"] == "sidecar"
    assert not by_name[f"127.0.0.1:{sidecar_port}"]["measured"]
    # Each side polls on its own schedule: the two first sightings differ by at most the
    # drill's interval plus the poller's (and a query's round trip on a busy machine).
    tolerance = DRILL_INTERVAL + POLL_INTERVAL + 0.03
    labels = {f"127.0.0.1:{knot_port}": "knot", f"127.0.0.1:{nsd_port}": "nsd"}
    lines = []
    for name, q in pollers.items():
        e = by_name[name]
        assert q.gone is not None and q.back is not None, name
        out = q.gone - start
        back = q.back - start - drill["restore_started_at_seconds"]
        lines.append(
            f"{labels.get(name, name)}: drill {e['drained_at_seconds']:.3f}/"
            f"{e['restored_at_seconds']:.3f} s, poller {out:.3f}/{back:.3f} s"
        )
        assert abs(e["drained_at_seconds"] - out) <= tolerance, lines
        assert abs(e["restored_at_seconds"] - back) <= tolerance, lines
    print("drill vs poller (drained/restored): " + "; ".join(lines))
    with Store(db, read_only=True) as store:
        [stored] = store.drills()
        assert stored.outcome == "passed" and stored.author == "ops"
        assert store.drains() == []
        history = store.drains(active_only=False)
    assert [(d.author, d.reason, d.undrained is not None) for d in history] == [
        ("ops", "drill: quarterly", True)
    ]


def dead_setup(tmp_path: Path, backends: Backends) -> tuple[ZonefanServer, Path, Path, int]:
    """A signed zone served by `zonefan serve`, a secondary in the config whose address
    nothing answers at, and a sync config with a provider that names no DNS address."""
    db = example_store(tmp_path / "zonefan.db", signed=True)
    port, dead = free_port(), free_port()
    config = primary_config(tmp_path / "zonefan.toml", port, backends.port, [dead])
    primary = ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config)
    primary.fixed_port = port
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f"""[primary]
address = "127.0.0.1:{port}"
zones = ["{ZONE}"]

[target.cloud]
type = "desec"
api-token-env = "ZF_TEST_DESEC_TOKEN"
endpoint = "http://127.0.0.1:{free_port()}/api/v1"
""",
        encoding="utf-8",
    )
    return primary, config, sync, dead


def test_an_endpoint_that_never_converges_fails_the_drill_and_the_region_is_restored(
    tmp_path: Path, backends: Backends
) -> None:
    primary, config, sync, dead = dead_setup(tmp_path, backends)
    with primary:
        wait_until(lambda: addresses(primary.port) == {FRA, AMS}, what="both published")
        done = zonefan(
            primary.db, "--config", str(config), "drill", "fra", "-m", "dead secondary",
            "--sync-config", str(sync), "--timeout", "1s", "--json",
            env={"ZF_TEST_DESEC_TOKEN": "t"}, check=False,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert addresses(primary.port) == {FRA, AMS}
    drill = json.loads(done.stdout)
    assert drill["outcome"] == "failed"
    assert drill["failures"] == [
        f"secondary 127.0.0.1:{dead} (127.0.0.1:{dead}) never served the drained nor the "
        "restored answer within 1 s"
    ]
    rows = {e["name"]: e for e in drill["endpoints"]}
    assert rows["primary"]["drained_at_seconds"] < 1 and not rows["primary"]["failed"]
    assert rows[f"127.0.0.1:{dead}"]["failed"]
    assert "no answer" in rows[f"127.0.0.1:{dead}"]["note"]
    assert rows["cloud"]["measured"] is False
    assert rows["cloud"]["note"].startswith("not measured: no address")
    assert drill["slowest_drained"] == {"name": f"127.0.0.1:{dead}", "seconds": None}
    with Store(primary.db, read_only=True) as store:
        assert store.drains() == []
        [stored] = store.drills()
    assert stored.outcome == "failed" and stored.restore_start is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_drill_restores_the_region_and_is_recorded(
    tmp_path: Path, backends: Backends, sig: signal.Signals
) -> None:
    primary, config, sync, _ = dead_setup(tmp_path, backends)
    with primary:
        wait_until(lambda: addresses(primary.port) == {FRA, AMS}, what="both published")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "zonefan.cli", "--db", str(primary.db), "--config",
                str(config), "drill", "fra", "-m", "interrupted", "--sync-config", str(sync),
                "--timeout", "60s",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**_clean_env(), "ZF_TEST_DESEC_TOKEN": "t"}, cwd=tmp_path,
        )  # fmt: skip
        try:

            def running() -> bool:
                with Store(primary.db, read_only=True) as store:
                    return [d.outcome for d in store.drills()] == ["running"]

            wait_until(running, what="the drill recorded as running")
            wait_until(lambda: addresses(primary.port) == {AMS}, what="fra drained")
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 1, err
        assert "drill interrupted; region fra was restored" in err
        assert "Traceback" not in err
        wait_until(lambda: addresses(primary.port) == {FRA, AMS}, what="fra restored")
    with Store(primary.db, read_only=True) as store:
        assert store.drains() == []
        [drill] = store.drills()
    assert drill.outcome == "failed"
    assert drill.error.startswith("interrupted while measuring the drain")
    assert drill.error.endswith("region fra was restored")


def test_a_drill_is_refused_as_a_drain_is_and_records_nothing(tmp_path: Path) -> None:
    db = example_store(tmp_path / "zonefan.db", signed=False)
    config = primary_config(tmp_path / "zonefan.toml", free_port(), free_port(), [])
    conf = ("--config", str(config))
    unknown = zonefan(db, *conf, "drill", "mars", "-m", "x", check=False)
    assert unknown.returncode == 1
    assert "no pool has a member in region 'mars'" in unknown.stderr
    assert "known regions: ams, fra" in unknown.stderr
    reasonless = zonefan(db, *conf, "drill", "fra", check=False)
    assert reasonless.returncode == 2 and "give the reason with -m" in reasonless.stderr
    zonefan(db, *conf, "drain", "ams", "-m", "maintenance")
    emptied = zonefan(db, *conf, "drill", "fra", "-m", "x", check=False)
    assert emptied.returncode == 1
    assert "would leave pool(s) pool.example.test. with no member" in emptied.stderr
    with Store(db, read_only=True) as store:
        assert store.drills() == []
        assert [d.region for d in store.drains()] == ["ams"]


# -- the report -------------------------------------------------------------------------------


def stored_drills(db: Path) -> None:
    """Two drills of 2026-11-02 and 2026-11-20: one passed, one failed with a reason that
    is HTML."""
    nov2 = datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp()
    nov20 = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
    zone = dns.name.from_text(ZONE)
    with Store(db) as store:
        knots: list[tuple[float, str, float | None, float]] = [
            (nov2, "quarterly", 0.41, 0.62),
            (nov20, "<script>alert(1)</script>", None, 0.8),
        ]
        for start, reason, out, back in knots:
            d = store.start_drill("fra", [zone], "ops", reason, start, 30.0)
            endpoints = (
                DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.05, 0.06, 3),
                DrillEndpoint("secondary", "knot", "127.0.0.1:5301", True, out, back, 20,
                              "" if out else "drain: no answer within 1 s"),
                DrillEndpoint("target", "cloud", None, False, note="not measured: no address"),
            )  # fmt: skip
            outcome = "passed" if out else "failed"
            store.finish_drill(
                Drill(d.id, "fra", (zone,), "ops", reason, start, outcome, 30.2, start + 61,
                      30.0, "", endpoints)
            )  # fmt: skip


def test_the_report_in_text_json_and_html(tmp_path: Path) -> None:
    db = example_store(tmp_path / "zonefan.db", signed=False)
    stored_drills(db)
    text = zonefan(db, "drill", "report", "--since", "2026-11-01").stdout
    assert text.splitlines()[:6] == [
        "drill 1: fra in example.test., 2026-11-02T10:00:00.000Z by ops: quarterly: PASSED",
        "  primary   primary  drained   0.050 s  restored   0.060 s",
        "  secondary knot     drained   0.410 s  restored   0.620 s",
        "  target    cloud    not measured: no address",
        "  slowest to serve the drained answer: knot, 0.410 s",
        "  slowest to serve the restored answer: knot, 0.620 s",
    ]
    assert (
        "  FAILED: secondary knot (127.0.0.1:5301) never served the drained answer within 30 s"
        in text
    )
    doc = json.loads(
        zonefan(db, "drill", "report", "--since", "2026-11-01", "--until", "2026-11-10",
                "--format", "json").stdout
    )  # fmt: skip
    [only] = doc["drills"]
    assert only["reason"] == "quarterly" and only["outcome"] == "passed"
    assert only["slowest_restored"] == {"name": "knot", "seconds": 0.62}
    assert [e["drained_at_seconds"] for e in only["endpoints"]] == [0.05, 0.41, None]
    page = zonefan(db, "drill", "report", "--since", "2026-11-01", "--format", "html").stdout
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http" not in page.replace('lang="en"', "")  # nothing fetched from elsewhere
    none = zonefan(db, "drill", "report", "--since", "2026-12-01", "--zone", ZONE).stdout
    assert none.startswith("no drill from 2026-12-01T00:00:00.000Z")


def test_the_report_refuses_bad_dates_and_unknown_zones(tmp_path: Path) -> None:
    db = example_store(tmp_path / "zonefan.db", signed=False)
    bad = zonefan(db, "drill", "report", "--since", "last tuesday", check=False)
    assert bad.returncode == 2
    assert "'last tuesday' is not a date or time; use ISO 8601" in bad.stderr
    backwards = zonefan(
        db, "drill", "report", "--since", "2026-11-10", "--until", "2026-11-01", check=False
    )
    assert backwards.returncode == 2 and "is not after --since" in backwards.stderr
    unknown = zonefan(db, "drill", "report", "--since", "2026-11-01", "--zone", "nope.test",
                      check=False)  # fmt: skip
    assert unknown.returncode == 2 and "zone nope.test. is not in the store" in unknown.stderr
    missing = zonefan(db, "drill", "report", check=False)
    assert missing.returncode == 2 and "--since" in missing.stderr
