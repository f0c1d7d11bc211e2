"""NOTIFY in practice: NSD, Knot and BIND as secondaries listed with `notify` in the
primary's config get each new serial within 5 s by NOTIFY then IXFR, with no forced
refresh: after a change through the CLI and after one through `nsupdate`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.name
import pytest

from nameserver.store.store import Store
from tests.servers import ZonefanServer, _Secondary, run_cli, transfer_config
from tests.test_secondaries import KEY, PLAIN, SECONDARIES, TOOLS, ZONES, _store
from tests.tools import free_port, require_tool, write_private

DEADLINE = 5.0  # the bound from a change to the new serial at every secondary


@pytest.fixture(scope="module", params=list(SECONDARIES))
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ZonefanServer, _Secondary]]:
    """A primary that NOTIFYs one secondary, the secondary holding both zones."""
    kind = str(request.param)
    for tool in TOOLS[kind]:
        require_tool(tool)
    work = tmp_path_factory.mktemp(f"notify-{kind}")
    db = _store(work)
    secondary_port = free_port()
    config = work / "zonefan.toml"
    write_private(
        config,
        transfer_config(KEY, notify_port=secondary_port)
        + f"""
[zone."{PLAIN}"]
update-policy = ["grant {KEY.name}. zonesub ANY"]
""",
    )
    with ZonefanServer(work, db=db, probe_name=PLAIN, config=config) as primary:
        secondary = SECONDARIES[kind](work / kind, ZONES, primary.port, KEY)
        secondary.fixed_port = secondary_port
        with secondary:
            for zone in ZONES:
                secondary.wait_serial(zone, _serial(db, zone), timeout=10)
            yield primary, secondary


def _serial(db: Path, zone: str) -> int:
    with Store(db) as store:
        return store.serial(dns.name.from_text(zone))


def _transfer_kinds(db: Path, zone: str, serial: int) -> list[str]:
    deadline = time.monotonic() + 2
    while True:
        with Store(db) as store:
            log = store.transfers(dns.name.from_text(zone), limit=10)
        kinds = [e.kind for e in log if e.serial_to == serial]
        if kinds or time.monotonic() > deadline:
            return kinds
        time.sleep(0.02)


@pytest.mark.parametrize("zone", ZONES)
def test_cli_change_reaches_the_secondary_by_notify_and_ixfr(
    pair: tuple[ZonefanServer, _Secondary], zone: str
) -> None:
    primary, secondary = pair
    started = time.monotonic()
    run_cli(primary.db, "record", "add", zone, f"n-{secondary.name}", "300", "A", "192.0.2.7")
    serial = _serial(primary.db, zone)
    secondary.wait_serial(zone, serial, timeout=DEADLINE - (time.monotonic() - started))
    assert _transfer_kinds(primary.db, zone, serial) == ["IXFR"]


def test_nsupdate_change_reaches_the_secondary(pair: tuple[ZonefanServer, _Secondary]) -> None:
    primary, secondary = pair
    name = f"u-{secondary.name}.{PLAIN}"
    script = (
        f"server 127.0.0.1 {primary.port}\nzone {PLAIN}\n"
        f'update add {name} 300 TXT "via nsupdate"\nsend\n'
    )
    before = _serial(primary.db, PLAIN)
    started = time.monotonic()
    done = subprocess.run(
        [require_tool("nsupdate"), "-y", f"hmac-sha256:{KEY.name}:{KEY.secret}"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    serial = _serial(primary.db, PLAIN)
    assert serial != before
    secondary.wait_serial(PLAIN, serial, timeout=DEADLINE - (time.monotonic() - started))
    answer = secondary.query(name, "TXT", flags=0)
    assert [rr.to_text() for rrset in answer.answer for rr in rrset] == ['"via nsupdate"']
    assert _transfer_kinds(primary.db, PLAIN, serial) == ["IXFR"]


def test_zone_status_shows_notify_acked_and_the_last_transfer(
    pair: tuple[ZonefanServer, _Secondary],
) -> None:
    primary, secondary = pair
    run_cli(primary.db, "record", "add", PLAIN, f"s-{secondary.name}", "300", "A", "192.0.2.8")
    serial = _serial(primary.db, PLAIN)
    secondary.wait_serial(PLAIN, serial, timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while True:
        status = json.loads(primary.cli("zone", "status", PLAIN, "--json").stdout)
        notified = [n for n in status["notify"] if n["target"] == f"127.0.0.1@{secondary.port}"]
        if notified and notified[0]["current"] and status["transfers"]:
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    assert status["serial"] == serial
    (transfer,) = status["transfers"]
    assert transfer["client"] == "127.0.0.1" and transfer["current"], transfer
    assert transfer["kind"] == "IXFR" and transfer["key"] == f"{KEY.name}."
    text = primary.cli("zone", "status", PLAIN).stdout
    assert "[current]" in text and "BEHIND" not in text, text
