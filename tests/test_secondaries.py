"""Real NSD, Knot and BIND as TSIG-authenticated secondaries of ``zonefan serve``: each does
the initial transfer and then answers a battery of queries exactly like zonefan, for a plain
and a signed zone; unbound, with our DS as its trust anchor and stubbed to the secondary,
validates the signed zone through it; after a change through the CLI each is told to
refresh and must serve the new serial, fetched by IXFR according to our transfer log
(NOTIFY without a forced refresh: tests/test_notify_secondaries.py)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.logs import TransferLogEntry
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from tests.servers import (
    BindSecondary,
    KnotSecondary,
    NsdSecondary,
    UnboundServer,
    XfrKey,
    ZonefanServer,
    _Secondary,
    make_query,
    run_cli,
    transfer_config,
    trust_anchor,
)
from tests.tools import PROJECT_ROOT, require_tool, write_private
from tests.wait import wait_until

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

PLAIN = "example.test."
SIGNED = "signed.test."  # the example zone under another name, signed
ZONES = (PLAIN, SIGNED)
KEY = XfrKey("xfr-key", base64.b64encode(b"secondaries-test-secret-01234567").decode())
SECONDARIES: dict[str, type[_Secondary]] = {
    "nsd": NsdSecondary,
    "knot": KnotSecondary,
    "bind": BindSecondary,
}
TOOLS = {"nsd": ("nsd", "nsd-control"), "knot": ("knotd", "knotc"), "bind": ("named", "rndc")}
BATTERY = 24  # (name, type) pairs asked per zone
REFRESH_DEADLINE = 10.0


def _store(work: Path) -> Path:
    db = work / "z.db"
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"))
        editor = manager.editor()
        example = PROJECT_ROOT / "zones" / "example.test.zone"
        signed = work / "signed.test.zone"
        text = example.read_text(encoding="utf-8")
        signed.write_text(text.replace("example.test", "signed.test"), encoding="utf-8")
        for path in (example, signed):
            parsed = read_zone_file(path)
            plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
            editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(dns.name.from_text(SIGNED), Author("test"))
    return db


@pytest.fixture(scope="module")
def primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonefanServer]:
    work = tmp_path_factory.mktemp("primary")
    db = _store(work)
    config = work / "zonefan.toml"
    write_private(config, transfer_config(KEY, zones=[PLAIN, SIGNED]))
    with ZonefanServer(work, db=db, probe_name=PLAIN, config=config) as server:
        yield server


@pytest.fixture(scope="module", params=list(SECONDARIES))
def secondary(
    request: pytest.FixtureRequest,
    primary: ZonefanServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[_Secondary]:
    kind = str(request.param)
    for tool in TOOLS[kind]:
        require_tool(tool)
    work = tmp_path_factory.mktemp(kind)
    with SECONDARIES[kind](work, ZONES, primary.port, KEY) as server:
        for zone in ZONES:
            server.wait_serial(zone, _serial(primary, zone), timeout=REFRESH_DEADLINE)
        yield server


def _serial(primary: ZonefanServer, zone: str) -> int:
    with Store(primary.db) as store:
        return store.serial(dns.name.from_text(zone))


def _battery(primary: ZonefanServer, zone: str) -> list[tuple[str, str]]:
    """Names and types from the zone, plus a few names and types it lacks."""
    origin = dns.name.from_text(zone)
    with Store(primary.db) as store:
        records = store.records(origin)
    pairs: list[tuple[str, str]] = []
    for r in records:
        if r.rdtype in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3):
            continue
        pair = (r.name.to_text(), dns.rdatatype.to_text(r.rdata.rdtype))
        if pair not in pairs:
            pairs.append(pair)
    step = max(1, len(pairs) // BATTERY)
    chosen = pairs[::step][:BATTERY]
    chosen += [(f"nonexistent.{zone}", "A"), (zone, "TXT"), (zone, "DNSKEY"), (zone, "SOA")]
    return chosen


def _answer(server: ZonefanServer | _Secondary, name: str, rdtype: str, do: bool) -> object:
    query = make_query(name, rdtype, flags=0, want_dnssec=do)
    response = server.ask(query, tcp=True)
    return (
        response.rcode(),
        bool(response.flags & dns.flags.AA),
        sorted(line for rrset in response.answer for line in rrset.to_text().splitlines()),
    )


def _compare(primary: ZonefanServer, secondary: _Secondary, zone: str) -> None:
    do = zone == SIGNED
    mismatches = []
    for name, rdtype in _battery(primary, zone):
        ours = _answer(primary, name, rdtype, do)
        theirs = _answer(secondary, name, rdtype, do)
        if ours != theirs:
            mismatches.append(f"{name} {rdtype}:\n zonefan {ours}\n {secondary.name} {theirs}")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("zone", ZONES)
def test_secondary_answers_like_the_primary(
    primary: ZonefanServer, secondary: _Secondary, zone: str
) -> None:
    _compare(primary, secondary, zone)


@pytest.mark.parametrize("zone", ZONES)
def test_change_reaches_the_secondary_by_ixfr(
    primary: ZonefanServer, secondary: _Secondary, zone: str
) -> None:
    before = _serial(primary, zone)
    label = f"{secondary.name}-new"
    run_cli(primary.db, "record", "add", zone, label, "300", "A", "192.0.2.123")
    after = _serial(primary, zone)
    assert after != before
    _wait_primary(primary, zone, after)
    started = time.monotonic()
    secondary.refresh(zone)
    secondary.wait_serial(zone, after, timeout=REFRESH_DEADLINE)
    took = time.monotonic() - started
    log = _log_after(primary, zone, before, after)
    ours = [e for e in log if e.serial_to == after and e.serial_from == before]
    assert ours, [(e.kind, e.serial_from, e.serial_to) for e in log]
    assert all(e.kind == "IXFR" for e in ours), [(e.kind, e.serial_from) for e in ours]
    assert ours[0].key == f"{KEY.name}."
    answer = secondary.query(f"{label}.{zone}", "A", flags=0)
    assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ["192.0.2.123"]
    _compare(primary, secondary, zone)
    print(f"{secondary.name} {zone}: new serial {after} served {took * 1000:.0f} ms after refresh")


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        (f"web.{SIGNED}", "A", "NOERROR"),
        (f"nothing-here.{SIGNED}", "A", "NXDOMAIN"),
        (f"web.{SIGNED}", "TXT", "NOERROR"),  # NODATA
        (f"anything.wild.{SIGNED}", "A", "NOERROR"),  # wildcard
    ],
)
def test_unbound_validates_the_signed_zone_through_the_secondary(
    primary: ZonefanServer,
    secondary: _Secondary,
    tmp_path: Path,
    name: str,
    rdtype: str,
    rcode: str,
) -> None:
    require_tool("unbound")
    anchor = trust_anchor(primary.db, SIGNED, cwd=tmp_path)
    with UnboundServer(tmp_path, anchor, secondary.port, SIGNED) as unbound:
        query = make_query(name, rdtype, want_dnssec=True)
        query.flags |= dns.flags.AD | dns.flags.RD
        response = unbound.ask(query)
    assert dns.rcode.to_text(response.rcode()) == rcode, response
    assert response.flags & dns.flags.AD, f"not validated:\n{response}\n{unbound.log_text()}"


def _log_after(
    primary: ZonefanServer, zone: str, before: int, after: int
) -> list[TransferLogEntry]:
    """The newest log entries, once one from ``before`` to ``after`` is there (it is written
    just after the transfer's last message, so the secondary may serve the serial first)."""
    deadline = time.monotonic() + 5
    while True:
        with Store(primary.db) as store:
            log = store.transfers(dns.name.from_text(zone), limit=10)
        if any(e.serial_from == before and e.serial_to == after for e in log):
            return log
        if time.monotonic() > deadline:
            return log
        time.sleep(0.02)


def _wait_primary(primary: ZonefanServer, zone: str, serial: int) -> None:
    wait_until(
        lambda: primary.serial(zone) == serial,
        interval=0.02,
        what=f"zonefan serves {zone} serial {serial}",
    )


def test_secondary_behind_the_compacted_journal_gets_the_full_zone(
    primary: ZonefanServer, secondary: _Secondary
) -> None:
    """The journal no longer holds the secondary's serial: the IXFR is answered with the
    whole zone (RFC 1995 §4) and the secondary takes it."""
    zone = PLAIN
    origin = dns.name.from_text(zone)
    before = _serial(primary, zone)
    label = f"{secondary.name}-compacted"
    run_cli(primary.db, "record", "add", zone, label, "300", "A", "192.0.2.124")
    after = _serial(primary, zone)
    with Store(primary.db) as store:
        store.compact_journal(origin, 0)
    _wait_primary(primary, zone, after)
    secondary.refresh(zone)
    secondary.wait_serial(zone, after, timeout=REFRESH_DEADLINE)
    log = _log_after(primary, zone, before, after)
    ours = [e for e in log if e.serial_to == after and e.serial_from == before]
    assert ours and all(e.kind == "IXFR-AXFR" for e in ours), [
        (e.kind, e.serial_from) for e in ours
    ]
    _compare(primary, secondary, zone)


def test_every_initial_transfer_was_logged(primary: ZonefanServer, secondary: _Secondary) -> None:
    with Store(primary.db) as store:
        for zone in ZONES:
            kinds = {e.kind for e in store.transfers(dns.name.from_text(zone))}
            assert kinds & {"AXFR", "IXFR-AXFR"}, kinds
