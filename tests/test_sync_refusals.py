"""What the sidecar refuses, each against the real provider: a start with a bad config
(naming the setting), a plan deleting half the zone (until --force, with records not ours
left alone), and a signed zone at a provider that silently drops signatures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dns.name
import dns.zone
import pytest

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import CapabilityError
from sync.state import SyncState
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, _clean_env
from tests.sidecar import API_KEY_ENV, SECRET_ENV
from tests.test_sync_e2e import KEY, PLAIN, build_store, dig, primary_config, sync_config
from tests.test_sync_engine import MemorySource
from tests.test_sync_rfc2136 import KEY as UPDATE_KEY
from tests.test_sync_rfc2136 import MINIMAL, ORIGIN, signed_zone, target_for
from tests.tools import free_port, require_tool
from tests.update_targets import KnotUpdatePrimary

pytestmark = pytest.mark.external


def sync_cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "sync", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_clean_env(), **env},
        check=False,
    )


BAD_CONFIGS = {
    "unknown type": ('type = "powerdns"', 'type = "route53"', "target.pdns.type"),
    "missing credential": (
        f'api-key-env = "{API_KEY_ENV}"',
        'api-key-env = "ZF_NOT_SET"',
        "target.pdns.api-key-env",
    ),
    "unreachable url": ("url = ", "url = ", "target.pdns.url"),
    "unknown setting": ('timeout = "2s"', 'timeout = "2s"\nbatchsize = 5', "target.pdns.batchsize"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_at_start_naming_the_setting(tmp_path: Path, case: str) -> None:
    old, new, setting = BAD_CONFIGS[case]
    fake = ZonefanServer(tmp_path)  # only its port is written into the config
    fake.port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    pdns = PdnsServer.__new__(PdnsServer)
    pdns.port = free_port()
    config = sync_config(tmp_path, fake, dead, pdns, None, free_port())
    config.write_text(config.read_text().replace(old, new, 1), encoding="utf-8")
    env = {SECRET_ENV: KEY.secret, API_KEY_ENV: "key"}
    done = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "sync", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_clean_env(), **env},
        check=False,
    )
    assert done.returncode != 0
    assert setting in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "sync.db").exists() or case == "unreachable url"


def test_mass_deletion_needs_force_and_foreign_records_survive(tmp_path: Path) -> None:
    require_tool("pdns_server")
    db = build_store(tmp_path)
    with (
        ZonefanServer(
            tmp_path / "primary",
            db=db,
            probe_name=PLAIN,
            config=primary_config(tmp_path, free_port()),
        ) as primary,
        PdnsServer(tmp_path / "pdns") as pdns,
    ):
        config = sync_config(tmp_path, primary, pdns.api_url, pdns, None, free_port())
        env = {SECRET_ENV: KEY.secret, API_KEY_ENV: pdns.api_key}
        first = sync_cli(config, env, "apply", PLAIN)
        assert first.returncode == 0, first.stdout + first.stderr
        assert dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"]
        manual = {
            "name": f"manual.{PLAIN}",
            "type": "TXT",
            "ttl": 60,
            "changetype": "REPLACE",
            "records": [{"content": '"added by hand"', "disabled": False}],
        }
        status, _ = pdns.api(
            "PATCH",
            f"zones/{PLAIN}",
            {"rrsets": [manual]},
        )
        assert status == 204
        # Half the zone goes away at the primary.
        zone = dns.zone.from_file(str(tmp_path / f"{PLAIN}zone"), PLAIN)
        names = sorted(n for n in zone.nodes if n != dns.name.empty and not str(n).startswith("ns"))
        for name in names[: len(names) // 2 + 1]:
            del zone.nodes[name]
        smaller = tmp_path / "smaller.zone"
        zone.to_file(str(smaller), want_origin=True)
        primary.cli("zone", "import", str(smaller))
        plan = sync_cli(config, env, "plan", PLAIN, "--target", "pdns")
        assert plan.returncode == 0, plan.stderr
        assert "REFUSED without --force" in plan.stdout
        assert "manual TXT not managed by zonefan: left alone" in plan.stdout
        refused = sync_cli(config, env, "apply", PLAIN)
        assert refused.returncode == 1
        assert "--force" in refused.stdout and "deletes or replaces" in refused.stdout
        assert dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"]  # nothing applied
        status_text = sync_cli(config, env, "status").stdout
        assert "refused" in status_text and "BEHIND" in status_text
        forced = sync_cli(config, env, "apply", PLAIN, "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == []
        assert dig(pdns.dns_port, f"manual.{PLAIN}", "TXT") == ['"added', "by", 'hand"']
        again = sync_cli(config, env, "plan", PLAIN, "--target", "pdns")
        assert f"{PLAIN} at pdns: no changes" in again.stdout


async def test_signed_zone_is_refused_where_knot_drops_cname_signatures(tmp_path: Path) -> None:
    """The engine reads a signed zone back after pushing it: Knot keeps no RRSIG at a CNAME
    owner, so the push is refused (not reported as current) and the reason names it."""
    require_tool("knotd")
    zone_file = tmp_path / "minimal.zone"
    zone_file.write_text(MINIMAL, encoding="utf-8")
    desired = signed_zone(tmp_path)
    with KnotUpdatePrimary(tmp_path / "knot", "example.test", zone_file, UPDATE_KEY) as knot:
        state = SyncState(tmp_path / "sync.db")
        engine = SyncEngine(
            state,
            MemorySource(desired),
            [ORIGIN],
            {"knot": TargetSpec(target_for(knot))},
            EngineSettings(),
        )
        await engine.refresh_zone(ORIGIN)
        with pytest.raises(CapabilityError, match=r"did not keep \d+ RRset\(s\).* RRSIG") as caught:
            await engine.push("knot", ORIGIN)
        assert "secondary" in str(caught.value)
        (outcome,) = await engine.drain()
        assert not outcome.ok
        (row,) = state.status()
        assert row.pushed_serial is None and row.last_error is not None
