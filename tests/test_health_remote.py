"""Remote checkers: their reports as TSIG-signed UPDATEs to ``_zonefan-health.<pool>``,
taken by `zonefan serve` into the pools' quorum and never written to the zone."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.update
import pytest

from health import CheckerReport, ProbeResult, ReportError, parse_health
from health.errors import HealthConfigError
from nameserver.transfer.health_reports import (
    MAX_REPORTS,
    NotAReport,
    RawReport,
    is_report,
    raw_reports,
    report_owner,
)
from settings import Table, TsigKey
from tests.servers import ZonefanServer
from tests.test_pools_serve import Backends, addresses, pool_history
from tests.tools import example_store, free_port, write_private
from tests.wait import wait_until
from zonefan.health_remote import (
    REPORTS_PER_MEMBER,
    ReportIntake,
    remote_rounds,
    report_message,
    send_reports,
)

ZONE = "example.test."
POOL = "pool.example.test."
POOL_NAME = dns.name.from_text(POOL)
X, Y, Z = "127.0.0.2", "127.0.0.3", "127.0.0.4"  # backends, all up for the local checker
SECRETS = {
    "checker-b": base64.b64encode(b"remote-checker-b-0123456789abcde").decode(),
    "checker-c": base64.b64encode(b"remote-checker-c-0123456789abcde").decode(),
}
KEYS = {
    label: TsigKey(dns.name.from_text(label), "hmac-sha256", base64.b64decode(secret))
    for label, secret in SECRETS.items()
}


def report(checker: str, address: str, ok: bool, detail: str = "") -> CheckerReport:
    return CheckerReport(checker, POOL_NAME, address, ok, time.time(), detail)


# -- the fields of a report ---------------------------------------------------------------


def test_fields_round_trip() -> None:
    sent = CheckerReport("b", POOL_NAME, "192.0.2.10", False, 1765160000.25, "HTTP 503")
    strings = [f.encode() for f in sent.to_fields()]
    assert strings == [
        b"checker=b",
        b"address=192.0.2.10",
        b"ok=false",
        b"at=1765160000.25",
        b"detail=HTTP 503",
    ]
    assert CheckerReport.from_fields(POOL_NAME, strings) == sent
    up = CheckerReport("c", POOL_NAME, "2001:db8::1", True, 7.0)
    assert CheckerReport.from_fields(POOL_NAME, [f.encode() for f in up.to_fields()]) == up


GOOD = [b"checker=b", b"address=192.0.2.10", b"ok=true", b"at=100"]


@pytest.mark.parametrize(
    ("strings", "problem"),
    [
        ([*GOOD, b"nonsense"], "not a field"),
        ([*GOOD, b"ok=false"], "given twice"),
        ([*GOOD, b"pool=other.test."], "not a field"),
        ([*GOOD, b"colour=red"], "unknown field 'colour'"),
        ([b"checker=b", b"address=192.0.2.10", b"ok=maybe", b"at=1"], "not true or false"),
        ([b"checker=b", b"address=192.0.2.10", b"ok=true", b"at=soon"], "not a number"),
        ([b"checker=b", b"address=192.0.2.10", b"ok=true", b"at=nan"], "not a time"),
        ([b"checker=b", b"address=192.0.2.10", b"ok=true"], "needs the field 'at'"),
        ([b"checker=b b", b"address=192.0.2.10", b"ok=true", b"at=1"], "checker id"),
        ([b"checker=b", b"address=192.0.2.010", b"ok=true", b"at=1"], "not an IP address"),
        ([*GOOD, "detail=\u00e9".encode()], "not ASCII"),
    ],
)
def test_malformed_fields(strings: list[bytes], problem: str) -> None:
    with pytest.raises(ReportError, match=problem):
        CheckerReport.from_fields(POOL_NAME, strings)


# -- the UPDATE that carries reports -------------------------------------------------------


def parsed(message: dns.update.UpdateMessage) -> dns.update.UpdateMessage:
    """``message`` as the server reads it (one RR per RRset)."""
    found = dns.message.from_wire(message.to_wire(), keyring=False, one_rr_per_rrset=True)
    assert isinstance(found, dns.update.UpdateMessage)
    return found


def test_a_report_message_carries_one_txt_rr_per_member() -> None:
    sent = [report("b", X, False, "refused"), report("b", Y, True)]
    message = parsed(report_message(sent, KEYS["checker-b"]))
    assert message.sections[0][0].name == dns.name.from_text(ZONE)
    assert is_report(message)
    raw = raw_reports(message)
    assert [r.pool for r in raw] == [POOL_NAME, POOL_NAME]
    assert [CheckerReport.from_fields(r.pool, r.strings) for r in raw] == sent
    assert report_owner(POOL_NAME) == dns.name.from_text(f"_zonefan-health.{POOL}")


def txt(*strings: str) -> dns.rdtypes.ANY.TXT.TXT:
    return dns.rdtypes.ANY.TXT.TXT(
        dns.rdataclass.IN, dns.rdatatype.TXT, [s.encode() for s in strings]
    )


def test_an_ordinary_update_is_no_report() -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.add(f"www.{ZONE}", 300, txt("hello"))
    assert not is_report(parsed(update))


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda u: u.add(f"www.{ZONE}", 300, txt("x")), "not a report name"),
        (lambda u: u.delete(report_owner(POOL_NAME), "TXT"), "only adds TXT"),
        (lambda u: u.add(report_owner(POOL_NAME), 0, "A", "192.0.2.1"), "only adds TXT"),
        (lambda u: u.present(f"www.{ZONE}"), "no prerequisites"),
        (
            lambda u: [
                u.add(report_owner(POOL_NAME), 0, txt(f"n={i}")) for i in range(MAX_REPORTS + 1)
            ],
            "more than",
        ),
    ],
)
def test_a_report_changes_nothing_else(build: Any, problem: str) -> None:
    update = dns.update.UpdateMessage(ZONE)
    update.add(report_owner(POOL_NAME), 0, txt("checker=b"))
    build(update)
    message = parsed(update)
    assert is_report(message)
    with pytest.raises(NotAReport, match=problem):
        raw_reports(message)


# -- the key mapping in [health] ----------------------------------------------------------


def health_table(remote: str, keys: str = "") -> Table:
    import tomllib

    return Table(tomllib.loads(f"[health]\nremote-checkers = {remote}\n{keys}"), "")


def test_remote_checkers_name_their_keys() -> None:
    keys = "[key.checker-b]\nsecret = 'x'\n"
    health = parse_health(health_table('["a2", { id = "b", key = "checker-b" }]', keys))
    assert health.remote_checkers == {"a2", "b"}
    assert health.checker_keys == {"b": "checker-b"}


@pytest.mark.parametrize(
    ("remote", "where", "problem"),
    [
        ('[{ id = "b", key = "nokey" }]', "health.remote-checkers#1.key", "no [key.nokey]"),
        ('[{ id = "b", keys = "x" }]', "health.remote-checkers#1", "keys"),
        ('["b", { id = "b" }]', "health.remote-checkers#2.id", "listed twice"),
        ('[{ key = "checker-b" }]', "health.remote-checkers#1.id", "required"),
        ('"b"', "health.remote-checkers", "not a list"),
    ],
)
def test_remote_checker_errors_name_the_key_path(remote: str, where: str, problem: str) -> None:
    with pytest.raises(HealthConfigError) as caught:
        parse_health(health_table(remote, "[key.checker-b]\nsecret = 'x'\n"))
    assert where in str(caught.value)
    assert problem in str(caught.value)


def test_reports_beyond_the_limit_are_dropped_per_checker() -> None:
    keys = "".join(f'[key.{label}]\nsecret = "{s}"\n' for label, s in SECRETS.items())
    pool = (
        f'[pool."{POOL}"]\ntype = "A"\nttl = 30\n'
        f'members = [{{ address = "{X}", region = "fra" }}]\n'
        'check = { kind = "tcp", port = 80, interval = "5s" }\n'
    )
    remote = '[{ id = "b", key = "checker-b" }, { id = "c", key = "checker-c" }]'
    health = parse_health(health_table(remote, keys + pool))
    now = [0.0]
    intake = ReportIntake(health, KEYS, clock=lambda: now[0])
    assert (intake.window, intake.limit) == (5.0, REPORTS_PER_MEMBER)
    raw = [RawReport(POOL_NAME, tuple(f.encode() for f in report("b", X, True).to_fields()))]
    # No monitor yet: admitted reports find no checks to take them (SERVFAIL), and count.
    for _ in range(REPORTS_PER_MEMBER):
        assert intake(raw, KEYS["checker-b"].name) == dns.rcode.SERVFAIL
    assert intake(raw, KEYS["checker-b"].name) == dns.rcode.REFUSED  # over the limit
    c_raw = [RawReport(POOL_NAME, tuple(f.encode() for f in report("c", X, True).to_fields()))]
    assert intake(c_raw, KEYS["checker-c"].name) == dns.rcode.SERVFAIL  # c has its own
    now[0] = 5.0
    assert intake(raw, KEYS["checker-b"].name) == dns.rcode.SERVFAIL  # a new interval
    assert sorted(intake._windows) == ["b", "c"]  # state only for configured checkers


def test_a_remote_round_probes_every_member_and_sends_one_message_per_pool() -> None:
    keys = "[key.checker-b]\nsecret = 'x'\n"
    pool = (
        f'[pool."{POOL}"]\ntype = "A"\nttl = 30\n'
        f'members = [{{ address = "{X}", region = "fra" }},\n'
        f'           {{ address = "{Y}", region = "ams" }}]\n'
        'check = { kind = "tcp", port = 80, interval = "5s" }\n'
    )
    import tomllib

    health = parse_health(Table(tomllib.loads(f'[health]\nchecker = "b"\n{keys}{pool}'), ""))
    now = [100.0]
    slept: list[float] = []
    sent: list[list[CheckerReport]] = []

    async def probe(_: Any, address: str) -> ProbeResult:
        now[0] += 1.0
        return ProbeResult(address == X, "up" if address == X else "refused")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def send(reports: Sequence[CheckerReport]) -> int:
        sent.append(list(reports))
        return dns.rcode.REFUSED if len(sent) == 2 else dns.rcode.NOERROR

    rcodes = asyncio.run(
        remote_rounds(health, send, 2, probe=probe, clock=lambda: now[0], sleep=sleep)
    )
    assert rcodes == [dns.rcode.NOERROR, dns.rcode.REFUSED]  # a refusal does not stop it
    assert slept == [3.0]  # the rest of the 5s interval after 2s of probes
    first = sent[0]
    assert [(r.checker, r.address, r.ok, r.detail) for r in first] == [
        ("b", X, True, "up"),
        ("b", Y, False, "refused"),
    ]
    assert {r.pool for r in first} == {POOL_NAME}


# -- end to end: zonefan serve with a local checker "a" and remotes "b" and "c" -----------


def remote_config(path: Path, port: int) -> Path:
    keys = "".join(f'[key.{label}]\nsecret = "{s}"\n\n' for label, s in SECRETS.items())
    return write_private(
        path,
        f"""{keys}[health]
checker = "a"
stale-intervals = 10   # the remotes' reports outlive a slow CLI call under load
remote-checkers = [{{ id = "b", key = "checker-b" }}, {{ id = "c", key = "checker-c" }}]

[pool."{POOL}"]
type = "A"
ttl = 30
members = [{{ address = "{X}", region = "fra" }}, {{ address = "{Y}", region = "ams" }},
           {{ address = "{Z}", region = "lon" }}]
check = {{ kind = "http", path = "/healthz", port = {port}, interval = "1s", timeout = "0.5s", \
rise = 2, fall = 2 }}
""",
    )


def send(server: ZonefanServer, key: str, *reports: CheckerReport) -> int:
    return send_reports(reports, KEYS[key], (server.host, server.port))


def round_of(server: ZonefanServer, b_fails: set[str], c_fails: set[str]) -> None:
    """One report of b and of c about every member; each must be taken."""
    for checker, fails in (("b", b_fails), ("c", c_fails)):
        sent = [
            report(checker, m, m not in fails, "" if m not in fails else "refused")
            for m in (X, Y, Z)
        ]
        assert send(server, f"checker-{checker}", *sent) == dns.rcode.NOERROR


def test_a_quorum_of_checkers_withdraws_and_one_does_not(tmp_path: Path) -> None:
    backends = Backends(free_port())
    try:
        for member in (X, Y, Z):
            backends.start(member)
        db = example_store(tmp_path / "zonefan.db")
        config = remote_config(tmp_path / "zonefan.toml", backends.port)
        with ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config) as server:
            wait_until(lambda: addresses(server) == {X, Y, Z}, what="every member published")

            # Refused: b signing with c's key, a member the pool lacks, the local id.
            assert send(server, "checker-c", report("b", X, False)) == dns.rcode.REFUSED
            assert send(server, "checker-b", report("b", "127.0.0.9", False)) == dns.rcode.REFUSED
            assert send(server, "checker-b", report("a", X, False)) == dns.rcode.REFUSED
            malformed = dns.update.UpdateMessage(ZONE)
            malformed.add(report_owner(POOL_NAME), 0, txt("checker=b", f"address={X}", "ok=no"))
            malformed.use_tsig(KEYS["checker-b"].dns_key)
            reply = dns.query.udp(malformed, server.host, port=server.port, timeout=5)
            assert reply.rcode() == dns.rcode.FORMERR

            # b alone says X is down (a and c: up); b and c say Y is down (a: up). Y's
            # withdrawal is the round in which b's reports about X counted too.
            def y_withdrawn() -> bool:
                round_of(server, b_fails={X, Y}, c_fails={Y})
                return addresses(server) == {X, Z}

            wait_until(y_withdrawn, 15, 0.5, "Y withdrawn by b and c")
            history = pool_history(server)
            [y_change] = [h for h in history if f"{Y} (ams) withdrawn" in h["message"]]
            assert "refused (down for b, c: 2 of 3 checkers)" in y_change["message"]
            assert not any(f"{X} (fra) withdrawn" in h["message"] for h in history)

            # c now agrees with b about X: two of three, though X's backend is up.
            def x_withdrawn() -> bool:
                round_of(server, b_fails={X, Y}, c_fails={X, Y})
                return addresses(server) == {Z}

            wait_until(x_withdrawn, 15, 0.5, "X withdrawn by b and c")
            [x_change] = [h for h in pool_history(server) if f"{X} (fra) withdrawn" in h["message"]]
            assert "down for b, c: 2 of 3 checkers" in x_change["message"]

            # The one-shot sender, as a script runs it.
            conf = ["--config", str(config)]
            target = f"{server.host}:{server.port}"
            args = ["--server", target, "--checker", "b", "--pool", POOL, "--address", Z]
            done = server.cli(*conf, "health", "report", "--key", "checker-b", *args, "--ok")
            assert "reported (NOERROR)" in done.stdout
            done = server.cli(
                *conf, "health", "report", "--key", "checker-c", *args, "--fail", check=False
            )
            assert done.returncode == 1
            assert "answered REFUSED" in done.stderr

            # The remote checker's loop, one round, as checker c with its own config.
            pools = config.read_text().split("[pool.", 1)[1]
            c_config = write_private(
                tmp_path / "checker-c.toml",
                f'[key.checker-c]\nsecret = "{SECRETS["checker-c"]}"\n\n'
                f'[health]\nchecker = "c"\n\n[pool.{pools}',
            )
            done = server.cli(
                "--config", str(c_config), "health", "check", "--report-to", target,
                "--key", "checker-c", "--rounds", "1", "--json",
            )  # fmt: skip
            assert json.loads(done.stdout) == {"checker": "c", "rcodes": ["NOERROR"]}

            # Nothing of the reports is in the zone.
            query = dns.message.make_query(report_owner(POOL_NAME), "TXT")
            served = dns.query.udp(query, server.host, port=server.port, timeout=2)
            assert served.rcode() == dns.rcode.NXDOMAIN
    finally:
        backends.close()
