"""`zonefan sync status` and `zonefan sync apply` as an operator runs them, with no sidecar
running: a `zonefan serve` primary, a real pdns_server behind a fault-injecting proxy, and
the commands as subprocesses.

Status asks the primary for its serial instead of trusting the sidecar's copy, so a change
made while no sidecar runs shows as BEHIND; with the primary down it says so and does not
claim anything is current. `sync apply` exits 0 when every target converged, 1 when a push
failed (retry later), 3 when one was refused (an operator must decide)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sync.providers.testkit.faults import FaultProxy
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer
from tests.sidecar import API_KEY_ENV, SECRET_ENV
from tests.test_sync_e2e import (
    KEY,
    PLAIN,
    SIGNED,
    dig,
    served_serial,
    sync_config,
)
from tests.test_sync_refusals import primary_and_pdns, sync_cli
from tests.tools import free_port
from tests.wait import wait_until

pytestmark = pytest.mark.external


@dataclass
class Setup:
    primary: ZonefanServer
    pdns: PdnsServer
    proxy: FaultProxy
    config: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {SECRET_ENV: KEY.secret, API_KEY_ENV: self.pdns.api_key}
        return sync_cli(self.config, env, *args)

    def change(self, owner: str, address: str) -> int:
        """Add a record at the primary; the serial it then serves."""
        before = served_serial(self.primary.port, PLAIN)
        self.primary.cli("record", "add", PLAIN, owner, "300", "A", address)
        wait_until(lambda: served_serial(self.primary.port, PLAIN) != before, 10)
        after = served_serial(self.primary.port, PLAIN)
        assert after is not None
        return after

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    def row(self, zone: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = self.status()["targets"]
        (row,) = [r for r in rows if r["zone"] == zone]
        return row


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """The primary serving PLAIN and SIGNED; one pdns target, behind the proxy, that takes
    unsigned zones only (``signed-zones = "refuse"``): SIGNED is refused there."""
    work = tmp_path_factory.mktemp("sync-status")
    with primary_and_pdns(work) as (primary, pdns):
        proxy = FaultProxy(pdns.api_url).start()
        try:
            config = sync_config(work, primary, proxy.url, pdns, None, free_port())
            config.write_text(config.read_text() + 'signed-zones = "refuse"\n', encoding="utf-8")
            yield Setup(primary, pdns, proxy, config)
        finally:
            proxy.stop()


def test_status_asks_the_primary_and_shows_a_change_made_without_a_sidecar(
    setup: Setup,
) -> None:
    first = setup.cli("apply", PLAIN)
    assert first.returncode == 0, first.stdout + first.stderr
    row = setup.row(PLAIN)
    served = served_serial(setup.primary.port, PLAIN)
    assert (row["verdict"], row["primary_serial"], row["pushed_serial"]) == (
        "current",
        served,
        served,
    )
    # A change at the primary, no sidecar running: the sidecar's copy is now old.
    newer = setup.change("no-sidecar", "192.0.2.141")
    assert served is not None and newer > served
    report = setup.status()
    (zone,) = [z for z in report["zones"] if z["zone"] == PLAIN]
    assert (zone["primary_serial"], zone["copy_serial"], zone["primary_error"]) == (
        newer,
        served,
        None,
    )
    row = setup.row(PLAIN)
    assert row["verdict"] == "behind" and not row["current"]
    assert (row["primary_serial"], row["copy_serial"], row["pushed_serial"]) == (
        newer,
        served,
        served,
    )
    assert row["lag_seconds"] is None  # the sidecar has not seen that serial at all
    text = setup.cli("status").stdout
    assert f"{PLAIN} at pdns: primary {newer}, pushed {served} " in text
    assert "BEHIND" in text and "current" not in text.split(f"{PLAIN} at pdns")[1]
    assert f"the sidecar has not transferred serial {newer}" in text
    # `sync plan` agrees: there is something to push.
    plan = setup.cli("plan", PLAIN)
    assert "+ no-sidecar 300 A 192.0.2.141" in plan.stdout, plan.stdout
    again = setup.cli("apply", PLAIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert dig(setup.pdns.dns_port, f"no-sidecar.{PLAIN}", "A") == ["192.0.2.141"]
    row = setup.row(PLAIN)
    assert (row["verdict"], row["primary_serial"], row["pushed_serial"]) == (
        "current",
        newer,
        newer,
    )


def test_apply_exit_codes_converged_failed_refused(setup: Setup) -> None:
    converged = setup.cli("apply", PLAIN)
    assert converged.returncode == 0, converged.stdout + converged.stderr
    # Failed: pdns answers the change with HTTP 500 (transient): exit 1, retried later.
    setup.change("exit-one", "192.0.2.142")
    setup.proxy.inject("500", 1, method="PATCH")
    failed = setup.cli("apply", PLAIN)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED" in failed.stdout and "HTTP 500" in failed.stdout
    row = setup.row(PLAIN)
    assert row["verdict"] == "behind" and row["pending_serial"] == row["primary_serial"]
    # Refused: a signed zone for a target that takes unsigned data only: exit 3.
    refused = setup.cli("apply", SIGNED, "--json")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    (outcome,) = json.loads(refused.stdout)
    assert (outcome["result"], outcome["refused"], outcome["ok"]) == (
        "refused",
        "capability",
        False,
    )
    row = setup.row(SIGNED)
    assert (row["verdict"], row["refused_kind"], row["pending_serial"]) == (
        "refused",
        "capability",
        None,
    )
    assert (
        row["refused_serial"] == row["primary_serial"] == served_serial(setup.primary.port, SIGNED)
    )
    text = setup.cli("status").stdout
    assert f"{SIGNED} at pdns: primary {row['primary_serial']}, pushed nothing: REFUSED" in text
    assert "\n  refused (" in text
    assert "DNSSEC mode is 'none'" in text and "not retried on a timer" in text
    plan = setup.cli("plan", SIGNED)
    assert f"{SIGNED} at pdns: refused: target pdns refused for zone {SIGNED}" in plan.stdout
    # `apply SIGNED` left the pending PLAIN alone; both at once, one failing and one
    # refused: the failure is what the exit status says (1).
    assert setup.row(PLAIN)["pending_serial"] is not None
    setup.proxy.inject("500", 1, method="PATCH")
    both = setup.cli("apply")
    assert both.returncode == 1, both.stdout + both.stderr
    assert "REFUSED" in both.stdout and "FAILED" in both.stdout
    # Without the fault the unsigned zone converges; the refusal stands: exit 3.
    last = setup.cli("apply")
    assert last.returncode == 3, last.stdout + last.stderr
    assert setup.row(PLAIN)["verdict"] == "current"
    assert dig(setup.pdns.dns_port, f"exit-one.{PLAIN}", "A") == ["192.0.2.142"]


def test_status_with_the_primary_down_says_it_could_not_ask(setup: Setup) -> None:
    converged = setup.cli("apply", PLAIN)
    assert converged.returncode == 0, converged.stdout + converged.stderr
    copy = setup.row(PLAIN)["pushed_serial"]
    primary = setup.primary
    primary.fixed_port = primary.port
    primary.stop()
    try:
        report = setup.status()
        (zone,) = [z for z in report["zones"] if z["zone"] == PLAIN]
        assert zone["primary_serial"] is None and "did not answer" in zone["primary_error"]
        row = setup.row(PLAIN)
        assert row["verdict"] == "unknown" and not row["current"]
        assert (row["primary_serial"], row["copy_serial"]) == (None, copy)
        done = setup.cli("status")
        assert done.returncode == 0, done.stderr
        assert (
            f"{PLAIN}: primary 127.0.0.1:{primary.port} did not answer: no answer within 2 s"
            in done.stdout
        )
        assert f"showing the sidecar's last copy (serial {copy})" in done.stdout
        (line,) = [x for x in done.stdout.splitlines() if x.startswith(f"{PLAIN} at pdns")]
        assert line.startswith(f"{PLAIN} at pdns: primary not asked (sidecar's copy {copy})")
        assert "UNKNOWN" in line and "current" not in line
    finally:
        primary.start()
    assert setup.row(PLAIN)["verdict"] == "current"
