"""`zonefan serve --sync SYNC.TOML`: the primary and its sidecar in one process (the
one-command set-up), against a real pdns_server."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, _clean_env
from tests.sidecar import API_KEY_ENV, SECRET_ENV, wait_until
from tests.test_sync_e2e import KEY, PLAIN, build_store, dig, primary_config, sync_config
from tests.tools import free_port, require_tool

pytestmark = pytest.mark.external


def test_serve_with_sync_pushes_changes_to_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("pdns_server")
    db = build_store(tmp_path)
    sidecar_port = free_port()
    with PdnsServer(tmp_path / "pdns") as pdns:
        monkeypatch.setenv(SECRET_ENV, KEY.secret)
        monkeypatch.setenv(API_KEY_ENV, pdns.api_key)
        primary = ZonefanServer(
            tmp_path / "primary",
            db=db,
            probe_name=PLAIN,
            config=primary_config(tmp_path, sidecar_port),
        )
        primary.fixed_port = free_port()
        primary.port = primary.fixed_port
        sync = sync_config(tmp_path, primary, pdns.api_url, pdns, None, sidecar_port)
        primary.extra_args = ["--sync", str(sync)]
        with primary:
            wait_until(lambda: dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"], 20)
            primary.cli("record", "add", PLAIN, "one-process", "300", "A", "192.0.2.250")
            took = wait_until(
                lambda: dig(pdns.dns_port, f"one-process.{PLAIN}", "A") == ["192.0.2.250"], 10
            )
            assert took < 5, f"served by pdns {took:.2f} s after the change"
            assert primary.proc is not None
            primary.proc.send_signal(signal.SIGTERM)
            assert primary.proc.wait(10) == 0, primary.log_text()[-3000:]
        assert "stopping:" not in primary.log_text()


def test_serve_with_a_bad_sync_config_does_not_start(tmp_path: Path) -> None:
    sync = tmp_path / "sync.toml"
    sync.write_text('[primary]\naddress = "127.0.0.1:53"\nzones = ["a.test"]\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", str(tmp_path / "z.db"), "serve",
         "--listen", f"127.0.0.1:{free_port()}", "--sync", str(sync)],
        capture_output=True,
        text=True,
        timeout=30,
        env=_clean_env(),
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "target: define at least one [target.NAME] table" in done.stderr
