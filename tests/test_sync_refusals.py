"""What the sidecar refuses, each against the real provider: a start with a bad config
(naming the setting), a plan deleting half the zone (until --force, with records not ours
left alone), a signed zone at a provider that silently drops signatures, and a signed zone
at a target configured for unsigned data. A refusal is a state of the (target, zone), not
a failure retried on the backoff timer."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.zone
import pytest

from sync.engine import EngineSettings, SyncEngine, TargetSpec
from sync.errors import CapabilityError
from sync.model import ZoneData
from sync.providers.rfc2136 import rfc2136_from_config
from sync.providers.testkit.memory import StaticSource
from sync.settings import TargetContext
from sync.state import SyncState
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, _clean_env, run_cli
from tests.sidecar import API_KEY_ENV, SECRET_ENV
from tests.test_sync_e2e import KEY, PLAIN, build_store, dig, primary_config, sync_config
from tests.test_sync_rfc2136 import KEY as UPDATE_KEY
from tests.test_sync_rfc2136 import MINIMAL, ORIGIN, signed_zone, target_for, tsig
from tests.tools import example_store, free_port, require_tool
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


# case: (edits to the good config: (text, its replacement), or (None, text to append); the
# setting the error must name; what the message must say)
Edits = tuple[tuple[str | None, str], ...]
BAD_CONFIGS: dict[str, tuple[Edits, str, str]] = {
    "unknown type": (
        (('type = "powerdns"', 'type = "nosuchprovider"'),),
        "target.pdns.type",
        "unknown",
    ),
    "missing credential": (
        ((f'api-key-env = "{API_KEY_ENV}"', 'api-key-env = "ZF_NOT_SET"'),),
        "target.pdns.api-key-env",
        "is not set",
    ),
    "unreachable url": ((), "target.pdns.url", "unreachable"),
    "unknown setting": (
        (('timeout = "2s"', 'timeout = "2s"\nbatchsize = 5'),),
        "target.pdns.batchsize",
        "unknown setting",
    ),
    # Every setting a target may need for any zone it gets is required at start.
    "powerdns without url": ((("url = ", "# url = "),), "target.pdns.url", "required"),
    "powerdns without api key": (
        (("api-key-env = ", "# api-key-env = "),),
        "target.pdns.api-key",
        "missing: set api-key-env",
    ),
    "powerdns without dns": ((("dns = ", "# dns = "),), "target.pdns.dns", "required"),
    "powerdns-secondary without dns": (
        (('type = "powerdns"', 'type = "powerdns-secondary"'), ("dns = ", "# dns = ")),
        "target.pdns.dns",
        "required",
    ),
    "powerdns-secondary with a record setting": (
        (('type = "powerdns"', 'type = "powerdns-secondary"\nsigned-zones = "refuse"'),),
        "target.pdns.signed-zones",
        "unknown setting",
    ),
    "rfc2136 without server": (
        ((None, '\n[target.knot]\ntype = "rfc2136"\nkey = "sync-key"\n'),),
        "target.knot.server",
        "required",
    ),
    "rfc2136 without key": (
        ((None, '\n[target.knot]\ntype = "rfc2136"\nserver = "127.0.0.1:53"\n'),),
        "target.knot.key",
        "required",
    ),
    "rfc2136 with an unknown setting": (
        ((None, '\n[target.knot]\ntype = "rfc2136"\nserver = "127.0.0.1"\nurl = "x"\n'),),
        "target.knot.url",
        "unknown setting",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_refused_at_start_naming_the_setting(tmp_path: Path, case: str) -> None:
    edits, setting, says = BAD_CONFIGS[case]
    fake = ZonefanServer(tmp_path)  # only its port is written into the config
    fake.port = free_port()
    dead = f"http://127.0.0.1:{free_port()}"
    pdns = PdnsServer.__new__(PdnsServer)
    pdns.port = free_port()
    config = sync_config(tmp_path, fake, dead, pdns, None, free_port())
    text = config.read_text()
    for old, new in edits:
        assert old is None or old in text, old
        text = text + new if old is None else text.replace(old, new, 1)
    config.write_text(text, encoding="utf-8")
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
    assert f"Error: {config}: {setting}: " in done.stderr, done.stderr  # file, then setting
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "sync.db").exists() or case == "unreachable url"


@contextlib.contextmanager
def primary_and_pdns(work: Path) -> Iterator[tuple[ZonefanServer, PdnsServer]]:
    """A `zonefan serve` primary of PLAIN and SIGNED (letting 127.0.0.1 transfer with KEY)
    and a pdns_server, both in ``work``."""
    require_tool("pdns_server")
    db = build_store(work)
    with (
        ZonefanServer(
            work / "primary",
            db=db,
            probe_name=PLAIN,
            config=primary_config(work, free_port()),
        ) as primary,
        PdnsServer(work / "pdns") as pdns,
    ):
        yield primary, pdns


def test_mass_deletion_needs_force_and_foreign_records_survive(tmp_path: Path) -> None:
    with primary_and_pdns(tmp_path) as (primary, pdns):
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
        assert refused.returncode == 3  # refused: an operator decides
        assert "--force" in refused.stdout and "deletes or replaces" in refused.stdout
        assert dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"]  # nothing applied
        status_text = sync_cli(config, env, "status").stdout
        assert f"{PLAIN} at pdns: primary" in status_text and "REFUSED" in status_text
        assert "refused by safety" in status_text and "sync apply --force" in status_text
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
            StaticSource(desired),
            [ORIGIN],
            {"knot": TargetSpec(target_for(knot))},
            EngineSettings(),
        )
        await engine.refresh_zone(ORIGIN)
        with pytest.raises(CapabilityError, match=r"did not keep \d+ RRset\(s\).* RRSIG") as caught:
            await engine.push("knot", ORIGIN)
        assert "secondary" in str(caught.value)
        (outcome,) = await engine.drain()
        assert not outcome.ok and outcome.refused == "capability"
        (row,) = state.status()
        assert row.pushed_serial is None and row.refused_kind == "capability"
        assert row.refused is not None and "did not keep" in row.refused
        assert state.pending() == [] and await engine.drain() == []  # a state, not a retry


async def test_signed_zone_to_a_dnssec_none_target_is_refused_once_per_serial(
    tmp_path: Path,
) -> None:
    """Knot configured as an unsigned target (``dnssec = "none"``) gets a signed zone: the
    push is refused and recorded, and leaves the outbox, so no timer tries it again (the
    engine's clock is moved an hour on, past every backoff: nothing is due, nothing is
    attempted); a new serial of the zone is judged again. Knot is never written to."""
    require_tool("knotd")
    zone_file = tmp_path / "minimal.zone"
    zone_file.write_text(MINIMAL, encoding="utf-8")
    db = example_store(tmp_path / "zonefan.db", signed=True)

    def export() -> ZoneData:
        out = tmp_path / "signed.zone"
        run_cli(db, "zone", "export", "example.test", "-o", str(out))
        return ZoneData.from_text(out.read_text(encoding="utf-8"), ORIGIN)

    first_zone = export()
    assert first_zone.signed
    now = [1_000_000.0]

    def clock() -> float:
        return now[0]

    with KnotUpdatePrimary(tmp_path / "knot", "example.test", zone_file, UPDATE_KEY) as knot:
        ctx = TargetContext({UPDATE_KEY.name: tsig(UPDATE_KEY)}, None, {})
        section = {
            "type": "rfc2136",
            "server": f"127.0.0.1:{knot.port}",
            "key": UPDATE_KEY.name,
            "dnssec": "none",
            "zones": ["example.test."],
        }
        target = rfc2136_from_config("knot", section, ctx)
        state = SyncState(tmp_path / "sync.db", clock=clock)
        source = StaticSource(first_zone)
        settings = EngineSettings(retry_base=1.0, retry_max=60.0)
        engine = SyncEngine(
            state, source, [ORIGIN], {"knot": TargetSpec(target)}, settings, clock=clock
        )
        await engine.open_targets()
        try:
            await engine.refresh_zone(ORIGIN)
            (outcome,) = await engine.drain()
            assert (outcome.ok, outcome.refused) == (False, "capability")
            assert "DNSSEC mode is 'none'" in outcome.detail

            def attempts() -> list[tuple[str, int]]:
                return [(e["kind"], e["serial"]) for e in state.events() if e["target"] == "knot"]

            now[0] += 3600
            assert state.pending() == []
            assert await engine.drain() == []
            assert attempts() == [("refused", first_zone.serial)]
            (row,) = state.status()
            assert (row.refused_kind, row.refused_serial) == ("capability", first_zone.serial)
            # A new serial (a record added at the primary, the zone signed again).
            run_cli(db, "record", "add", "example.test", "later", "300", "A", "192.0.2.77")
            source.current = second_zone = export()
            assert second_zone.serial != first_zone.serial
            await engine.refresh_zone(ORIGIN)
            (again,) = await engine.drain()
            assert again.refused == "capability" and again.serial == second_zone.serial
            assert attempts() == [
                ("refused", first_zone.serial),
                ("refused", second_zone.serial),
            ]
            assert knot.zone_serial() == 1  # nothing was ever sent to Knot
        finally:
            await engine.close_targets()
