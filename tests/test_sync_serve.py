"""`zonefan serve --sync SYNC.TOML`: the primary and its sidecar in one process (the
one-command set-up), against a real pdns_server."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, run_cli
from tests.sidecar import API_KEY_ENV, SECRET_ENV
from tests.test_sync_e2e import KEY, PLAIN, build_store, dig, primary_config, sync_config
from tests.tools import free_port, write_private
from tests.wait import wait_until

pytestmark = pytest.mark.external


def test_serve_with_sync_pushes_changes_to_the_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdns: PdnsServer
) -> None:
    db = build_store(tmp_path)
    sidecar_port = free_port()
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


def serve_with_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdns: PdnsServer, *extra: str
) -> ZonefanServer:
    """``zonefan serve --sync`` (plus ``extra`` options) of the e2e store, pushing to
    ``pdns``, with nothing in either file that the wiring can work out by itself."""
    db = build_store(tmp_path)
    config = write_private(
        tmp_path / "zonefan.toml",
        f'[key.{KEY.name}]\nalgorithm = "{KEY.algorithm}"\nsecret = "{KEY.secret}"\n',
    )
    monkeypatch.setenv(API_KEY_ENV, pdns.api_key)
    sync = tmp_path / "sync.toml"
    sync.write_text(
        f"""state = "sync.db"
refresh-interval = "1h"

[primary]
key = "{KEY.name}"
zones = ["{PLAIN}"]

[target.pdns]
type = "powerdns"
url = "{pdns.api_url}"
api-key-env = "{API_KEY_ENV}"
dns = "127.0.0.1:{pdns.dns_port}"
""",
        encoding="utf-8",
    )
    primary = ZonefanServer(tmp_path / "primary", db=db, probe_name=PLAIN, config=config)
    primary.extra_args = ["--sync", str(sync), *extra]
    return primary


def test_serve_with_sync_wires_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdns: PdnsServer
) -> None:
    """No [[secondary]] entry, no NOTIFY address, no key repeated in sync.toml, no primary
    address: the change still reaches the provider by NOTIFY, not by the SOA poll (an
    hour here)."""
    primary = serve_with_sync(tmp_path, monkeypatch, pdns)
    with primary:
        wait_until(lambda: dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"], 20)
        primary.cli("record", "add", PLAIN, "wired", "300", "A", "192.0.2.251")
        took = wait_until(lambda: dig(pdns.dns_port, f"wired.{PLAIN}", "A") == ["192.0.2.251"], 10)
        assert took < 5, f"served by pdns {took:.2f} s after the change"


def test_serve_with_sync_refuses_a_primary_it_is_not(tmp_path: Path) -> None:
    sync = write_private(
        tmp_path / "sync.toml",
        '[primary]\naddress = "127.0.0.1:1"\nzones = ["a.test"]\n'
        f'[key.k]\nsecret = "{KEY.secret}"\n'
        '[target.t]\ntype = "rfc2136"\nserver = "127.0.0.1:2"\nkey = "k"\n',
    )
    port = free_port()
    args = ("serve", "--listen", f"127.0.0.1:{port}", "--sync", str(sync))
    done = run_cli(tmp_path / "z.db", *args, check=False)
    assert done.returncode == 1
    assert (
        f"{sync}: primary.address: 127.0.0.1:1 is not an address this server listens on "
        f"(127.0.0.1:{port})"
    ) in done.stderr


def test_serve_with_a_bad_sync_config_does_not_start(tmp_path: Path) -> None:
    sync = tmp_path / "sync.toml"
    sync.write_text('[primary]\naddress = "127.0.0.1:53"\nzones = ["a.test"]\n', encoding="utf-8")
    args = ("serve", "--listen", f"127.0.0.1:{free_port()}", "--sync", str(sync))
    done = run_cli(tmp_path / "z.db", *args, check=False)
    assert done.returncode != 0
    assert "target: define at least one [target.NAME] table" in done.stderr
