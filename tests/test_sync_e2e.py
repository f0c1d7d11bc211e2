"""The sync sidecar end to end, against the real things: a `zonefan serve` primary, a
real pdns_server (the unsigned zone through its HTTP API, the signed zone provisioned as a
secondary of the primary through the same API) behind a fault-injecting proxy, and Knot
taking the signed zone as presigned data by RFC 2136 UPDATE. `zonefan sync run` runs as a
subprocess; answers are checked with `dig` against each provider and with unbound
validating from our trust anchor.

The signed zone is the example zone without its CNAMEs: Knot drops the RRSIGs of CNAME
owners received by UPDATE (see test_sync_rfc2136.py); the engine refuses such a push,
tested at the end of this file."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.zone
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from sync.providers.testkit.faults import FaultProxy
from tests.pdns import PdnsServer
from tests.servers import (
    UnboundServer,
    XfrKey,
    ZonefanServer,
    _clean_env,
    transfer_config,
    trust_anchor,
)
from tests.sidecar import API_KEY_ENV, SECRET_ENV, Sidecar
from tests.tools import PROJECT_ROOT, free_port, require_tool, write_private
from tests.update_targets import KnotUpdatePrimary
from tests.wait import wait_until

pytestmark = pytest.mark.external

PLAIN = "example.test."
SIGNED = "signed.test."
KEY = XfrKey("sync-key", base64.b64encode(b"sync-e2e-test-secret-0123456789ab").decode())
DEADLINE = 5.0  # the bound from a CLI change to the answer at every provider


def _example_text(origin: str, cnames: bool) -> str:
    text = (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8")
    lines = text.replace("example.test", origin.rstrip(".")).splitlines()
    return "\n".join(line for line in lines if cnames or " CNAME " not in line) + "\n"


def build_store(work: Path) -> Path:
    """PLAIN unsigned; SIGNED (no CNAMEs) signed with the default policy."""
    db = work / "z.db"
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"))
        editor = manager.editor()
        for origin, cnames in ((PLAIN, True), (SIGNED, False)):
            path = work / f"{origin}zone"
            path.write_text(_example_text(origin, cnames), encoding="utf-8")
            parsed = read_zone_file(path)
            plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
            editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(dns.name.from_text(SIGNED), Author("test"))
    return db


def minimal_zone(work: Path, origin: str) -> Path:
    """What the provider holds before the first push: SOA serial 1, our apex NS and glue."""
    lines = [
        f"$ORIGIN {origin}",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 1 7200 3600 432000 300",
    ]
    for line in _example_text(origin, False).splitlines():
        apex_ns = line.startswith("@") and " NS " in line
        if apex_ns or line.startswith(("ns1 ", "ns2 ")):
            lines.append(line)
    path = work / f"minimal-{origin}zone"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def primary_config(work: Path, sidecar_port: int) -> Path:
    config = work / "zonefan.toml"
    write_private(config, transfer_config(KEY, notify_port=sidecar_port))
    return config


def sync_config(
    work: Path,
    primary: ZonefanServer,
    pdns_api: str,
    pdns: PdnsServer,
    knot: KnotUpdatePrimary | None,
    sidecar_port: int,
    extra: str = "",
) -> Path:
    knot_table = (
        f"""
[target.knot]
type = "rfc2136"
server = "127.0.0.1:{knot.port}"
key = "{KEY.name}"
zones = ["{SIGNED}"]
nameservers = ["ns1.knot-provider.test."]
"""
        if knot is not None
        else ""
    )
    path = work / "sync.toml"
    path.write_text(
        f"""
state = "{work / "sync.db"}"
listen = "127.0.0.1:{sidecar_port}"
refresh-interval = "2s"
drift-interval = "1s"
retry-base = "0.2s"
retry-max = "2s"
secondary-wait = "10s"
{extra}
[primary]
address = "127.0.0.1:{primary.port}"
key = "{KEY.name}"
zones = ["{PLAIN}", "{SIGNED}"]

[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret-env = "{SECRET_ENV}"

[target.pdns]
type = "powerdns"
url = "{pdns_api}"
api-key-env = "{API_KEY_ENV}"
timeout = "2s"
dns = "127.0.0.1:{pdns.dns_port}"
tsig-key = "{KEY.name}"
nameservers = ["ns1.pdns-provider.test."]
{knot_table}""",
        encoding="utf-8",
    )
    return path


@dataclass
class Stack:
    work: Path
    primary: ZonefanServer
    pdns: PdnsServer
    knot: KnotUpdatePrimary
    proxy: FaultProxy
    sidecar: Sidecar
    config: Path

    def env(self) -> dict[str, str]:
        return {SECRET_ENV: KEY.secret, API_KEY_ENV: self.pdns.api_key}

    def sync_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*_zonefan(), "sync", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**_env(), **self.env()},
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"sync {args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done


def _zonefan() -> list[str]:
    return [sys.executable, "-m", "zonefan.cli"]


def _env() -> dict[str, str]:
    return _clean_env()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for tool in ("knotd", "pdns_server", "dig"):
        require_tool(tool)
    work = tmp_path_factory.mktemp("sync-e2e")
    db = build_store(work)
    sidecar_port = free_port()
    config = primary_config(work, sidecar_port)
    with (
        ZonefanServer(work / "primary", db=db, probe_name=PLAIN, config=config) as primary,
        PdnsServer(work / "pdns") as pdns,
        KnotUpdatePrimary(work / "knot", SIGNED, minimal_zone(work, SIGNED), KEY) as knot,
    ):
        proxy = FaultProxy(pdns.api_url, hang_seconds=4.0).start()
        try:
            sync = sync_config(work, primary, proxy.url, pdns, knot, sidecar_port)
            env = {SECRET_ENV: KEY.secret, API_KEY_ENV: pdns.api_key}
            with Sidecar(work, sync, env) as sidecar:
                s = Stack(work, primary, pdns, knot, proxy, sidecar, sync)
                for zone in (PLAIN, SIGNED):
                    wait_converged(s, zone, timeout=30)
                yield s
        finally:
            proxy.stop()


def primary_serial(stack: Stack, zone: str) -> int:
    with Store(stack.primary.db) as store:
        return store.serial(dns.name.from_text(zone))


def served_serial(port: int, zone: str) -> int | None:
    try:
        response = dns.query.udp(
            dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=1
        )
    except (dns.exception.DNSException, OSError):
        return None
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    return None


def providers(stack: Stack, zone: str) -> dict[str, int]:
    """Provider name -> DNS port of each provider that serves ``zone``."""
    ports = {"pdns": stack.pdns.dns_port}
    if zone == SIGNED:
        ports["knot"] = stack.knot.port
    return ports


def wait_converged(stack: Stack, zone: str, timeout: float) -> float:
    want = primary_serial(stack, zone)

    def done() -> bool:
        return all(served_serial(p, zone) == want for p in providers(stack, zone).values())

    try:
        return wait_until(done, timeout)
    except AssertionError:
        raise AssertionError(
            f"{zone} not at serial {want} everywhere within {timeout} s: "
            f"{ {n: served_serial(p, zone) for n, p in providers(stack, zone).items()} }\n"
            f"sidecar log:\n{stack.sidecar.log_text()[-4000:]}"
        ) from None


def dig(port: int, name: str, rdtype: str) -> list[str]:
    """``dig +short`` against a provider: what a user would check."""
    done = subprocess.run(
        [require_tool("dig"), "@127.0.0.1", "-p", str(port), "+short", "+norecurse", name, rdtype],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return sorted(done.stdout.split())


def change(stack: Stack, zone: str, owner: str, address: str) -> None:
    stack.primary.cli("record", "add", zone, owner, "300", "A", address)


def wait_answer(stack: Stack, zone: str, owner: str, address: str, timeout: float) -> float:
    fqdn = f"{owner}.{zone}"

    def everywhere() -> bool:
        return all(address in dig(p, fqdn, "A") for p in providers(stack, zone).values())

    try:
        return wait_until(everywhere, timeout, interval=0.02)
    except AssertionError:
        raise AssertionError(
            f"{fqdn} A {address} not served everywhere within {timeout} s\n"
            f"sidecar log:\n{stack.sidecar.log_text()[-4000:]}"
        ) from None


# -- propagation -----------------------------------------------------------------------------


@pytest.mark.parametrize("zone", [PLAIN, SIGNED])
def test_cli_change_is_served_by_every_provider_within_5_s(stack: Stack, zone: str) -> None:
    address = "192.0.2.201" if zone == PLAIN else "192.0.2.202"
    start = time.monotonic()
    change(stack, zone, "e2e", address)
    took = wait_answer(stack, zone, "e2e", address, DEADLINE + 5)
    elapsed = time.monotonic() - start
    assert elapsed < DEADLINE, f"{zone}: served after {elapsed:.2f} s ({took:.2f} s after the CLI)"
    wait_converged(stack, zone, timeout=5)


def test_unbound_validates_answers_from_each_provider(stack: Stack) -> None:
    require_tool("unbound")
    anchor = trust_anchor(stack.primary.db, SIGNED, cwd=stack.work)
    for name, port in providers(stack, SIGNED).items():
        with UnboundServer(stack.work / f"unbound-{name}", anchor, port, SIGNED) as unbound:
            for qname, rdtype, rcode in (
                (f"mail1.{SIGNED}", "A", dns.rcode.NOERROR),
                (SIGNED, "MX", dns.rcode.NOERROR),
                (f"nothing-here.{SIGNED}", "A", dns.rcode.NXDOMAIN),
                (f"mail1.{SIGNED}", "TXT", dns.rcode.NOERROR),
            ):
                query = dns.message.make_query(qname, rdtype, want_dnssec=True)
                query.flags |= dns.flags.RD
                response = unbound.ask(query)
                assert response.rcode() == rcode, (name, qname, rdtype, response)
                assert response.flags & dns.flags.AD, f"{name}: {qname} {rdtype} not validated"


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count", "retry_after"),
    [("500", 2, 0), ("429", 1, 2), ("hang", 1, 0), ("down", 3, 0)],
)
def test_provider_faults_are_retried_until_converged(
    stack: Stack, kind: str, count: int, retry_after: int
) -> None:
    address = {
        "500": "192.0.2.211",
        "429": "192.0.2.212",
        "hang": "192.0.2.213",
        "down": "192.0.2.214",
    }[kind]
    seen = len(stack.proxy.log)
    stack.proxy.inject(kind, count, retry_after=retry_after or 1)
    change(stack, PLAIN, f"fault-{kind}", address)
    wait_answer(stack, PLAIN, f"fault-{kind}", address, 30)
    log, arrived = stack.proxy.log[seen:], stack.proxy.arrived[seen:]
    faults = [entry for entry in log if entry[2] in (0, -1)]
    assert len(faults) == count, log
    # What was retried is in the evidence trail, and so is the push that followed.
    trail = [e for e in events(stack) if e["target"] == "pdns" and e["zone"] == PLAIN]
    assert trail[-1]["kind"] == "push"
    if kind == "429":
        # The retry of the refused request (the same path: one push sends its requests one
        # after another) left the sidecar only after Retry-After, counted from the 429.
        refused = next(i for i, entry in enumerate(log) if entry[2] == 0)
        retried = min(
            at
            for entry, at in zip(log, arrived, strict=True)
            if entry[1] == log[refused][1] and at > arrived[refused]
        )
        assert retried - arrived[refused] >= retry_after, "Retry-After was not honoured"
    wait_converged(stack, PLAIN, timeout=10)
    assert_same_as_primary(stack, PLAIN)


def test_change_while_provider_is_down_arrives_after_restart(stack: Stack) -> None:
    stack.pdns.fixed_port = stack.pdns.dns_port
    stack.pdns.stop()
    change(stack, PLAIN, "while-down", "192.0.2.221")

    def pdns_plain() -> dict[str, Any]:
        status = json.loads(stack.sync_cli("status", "--json").stdout)["targets"]
        row: dict[str, Any] = next(
            r for r in status if r["target"] == "pdns" and r["zone"] == PLAIN
        )
        return row

    # Polled until the sidecar holds the new serial and has failed to push it.
    serial = primary_serial(stack, PLAIN)
    wait_until(lambda: pdns_plain()["copy_serial"] == serial and pdns_plain()["last_error"], 30)
    row = pdns_plain()
    assert row["verdict"] == "behind" and row["last_error"], row
    assert row["primary_serial"] == serial
    stack.pdns.start()
    stack.proxy.upstream = stack.pdns.api_url
    wait_answer(stack, PLAIN, "while-down", "192.0.2.221", 30)
    wait_converged(stack, SIGNED, timeout=15)
    assert_same_as_primary(stack, PLAIN)


def test_sidecar_killed_mid_push_resumes_without_loss_or_repeat(stack: Stack) -> None:
    seen = len(stack.proxy.log)
    stack.proxy.inject("hang", 1, method="PATCH")
    change(stack, PLAIN, "crash", "192.0.2.231")
    wait_until(lambda: ("PATCH", _zone_path(PLAIN), 0) in stack.proxy.log[seen:], 10)
    stack.sidecar.kill()  # in the middle of the push: the provider holds our PATCH
    change(stack, PLAIN, "crash2", "192.0.2.232")  # and one more while the sidecar is dead
    stack.proxy.clear()
    stack.sidecar.start()
    wait_answer(stack, PLAIN, "crash", "192.0.2.231", 30)
    wait_answer(stack, PLAIN, "crash2", "192.0.2.232", 30)
    assert_same_as_primary(stack, PLAIN)
    # The resumed push is one PATCH carrying both changes: nothing sent twice.
    patches = [e for e in stack.proxy.log[seen:] if e[0] == "PATCH" and e[2] == 204]
    assert len(patches) == 1, f"the resumed change should be one PATCH: {stack.proxy.log[seen:]}"


def _zone_path(zone: str) -> str:
    return f"/api/v1/servers/localhost/zones/{zone}"


def test_drift_made_by_hand_is_found_and_repaired(stack: Stack) -> None:
    zone_id = PLAIN
    status, _ = stack.pdns.api(
        "PATCH",
        f"zones/{zone_id}",
        {"rrsets": [{"name": f"mail2.{PLAIN}", "type": "A", "changetype": "DELETE"}]},
    )
    assert status == 204
    assert dig(stack.pdns.dns_port, f"mail2.{PLAIN}", "A") == []
    wait_until(lambda: dig(stack.pdns.dns_port, f"mail2.{PLAIN}", "A") == ["198.51.100.25"], 15)
    rows = json.loads(stack.sync_cli("status", "--json").stdout)["targets"]
    row = next(r for r in rows if r["target"] == "pdns" and r["zone"] == PLAIN)
    log = stack.sidecar.log_text()
    assert "drift at pdns for example.test." in log and "mail2" in log, log[-3000:]
    assert row["current"], row
    drift = [e for e in events(stack) if e["kind"] == "drift" and e["target"] == "pdns"]
    assert drift and "mail2" in str(drift[-1]["detail"]), drift


def test_status_and_ns_report_every_target(stack: Stack) -> None:
    wait_converged(stack, PLAIN, timeout=10)
    rows = json.loads(stack.sync_cli("status", "--json").stdout)["targets"]
    pairs = {(r["target"], r["zone"]): r for r in rows}
    assert set(pairs) == {("pdns", PLAIN), ("pdns", SIGNED), ("knot", SIGNED)}
    for row in pairs.values():
        serial = primary_serial(stack, row["zone"])
        assert row["pushed_serial"] == row["primary_serial"] == serial
        assert row["verdict"] == "current" and row["last_success"] is not None
    text = stack.sync_cli("status").stdout
    serial = primary_serial(stack, SIGNED)
    assert f"{SIGNED} at knot: primary {serial}, pushed {serial} " in text
    kinds = {(e["target"], e["kind"]) for e in events(stack)}
    assert {("pdns", "push"), ("knot", "push")} <= kinds
    ns = json.loads(stack.sync_cli("ns", SIGNED, "--json").stdout)
    assert ns["ns_set"] == ["ns1.knot-provider.test.", "ns1.pdns-provider.test."]
    assert ns["matches"] is False
    assert ns["apex_ns"] == [f"ns1.{SIGNED}", f"ns2.{SIGNED}"]


def events(stack: Stack) -> list[dict[str, object]]:
    """The sidecar's evidence trail, newest last (`sync status --events`)."""
    out = json.loads(stack.sync_cli("status", "--events", "1000", "--json").stdout)
    trail: list[dict[str, object]] = out["events"]
    return trail


def assert_same_as_primary(stack: Stack, zone: str) -> None:
    """The provider's zone equals an AXFR from the primary, record for record (nothing lost,
    nothing twice)."""
    name = dns.name.from_text(KEY.name)
    key = {name: dns.tsig.Key(name, base64.b64decode(KEY.secret), dns.tsig.HMAC_SHA256)}
    ours = dns.zone.from_xfr(
        dns.query.xfr(
            "127.0.0.1", zone, port=stack.primary.port, keyring=key, keyalgorithm="hmac-sha256"
        )
    )
    status, body = stack.pdns.api("GET", f"zones/{zone}")
    assert status == 200
    theirs = sorted(
        (r["name"].lower(), rr["type"], r["content"])
        for rr in body["rrsets"]
        for r in [{"name": rr["name"], "content": c["content"]} for c in rr["records"]]
    )
    assert len(theirs) == len(set(theirs))
    count = sum(len(rds) for _, rds in ours.iterate_rdatasets())
    assert len(theirs) == count, (len(theirs), count)
