"""Moving a zone onto zonefan: `zone import --from-target` reads it through a sync target
(a real pdns_server through the PowerDNS target; a cloud-like provider that shows no SOA
through the kit's memory target), `zone import --axfr` transfers it from a running NSD with
and without TSIG; each goes through the file import's validation into one changeset, a dry
run stores nothing, and every failure names the cause and leaves no store behind. The
documented path runs end to end: import from one pdns, `config check`, `zonefan serve` as
the new primary, a push to a second pdns, `sync ns`."""

from __future__ import annotations

import asyncio
import base64
import calendar
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest
from click.testing import CliRunner

from nameserver.zone.serial import SerialPolicy
from sync.model import RRset, ZoneData
from sync.plan import compute_plan
from sync.providers import BUILTIN
from sync.providers.base import Capabilities, DnssecMode
from sync.providers.capabilities import Owner
from sync.providers.cloudflare import CloudflareSettings, CloudflareTarget
from sync.providers.powerdns import PowerDnsTarget, powerdns_from_config
from sync.providers.testkit.contract import read_zone
from sync.providers.testkit.memory import MemoryTarget
from sync.settings import TargetContext, read_secret
from tests.emulators.cloudflare import CloudflareEmulator
from tests.pdns import PdnsServer
from tests.servers import (
    NsdServer,
    XfrKey,
    ZonefanServer,
    _clean_env,
    transfer_config,
)
from tests.tools import PROJECT_ROOT, free_port, write_private
from tests.update_targets import KnotUpdatePrimary
from zonefan.cli import main
from zonefan.migrate import from_target, template_soa

pytestmark = [pytest.mark.external, pytest.mark.timeout(180)]

ZONE = dns.name.from_text("example.test.")
KEY_ENV = "ZF_TEST_PDNS_KEY"
SECRET_ENV = "ZF_TEST_XFR_SECRET"
KEY = XfrKey("migrate-key", base64.b64encode(b"migrate-test-secret-0123456789ab").decode())
SIGNED_FILE = PROJECT_ROOT / "tests" / "data" / "dnssec" / "diff.test.nsec.signed"


def example_zone() -> ZoneData:
    text = (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8")
    return ZoneData.from_text(text, ZONE)


def zonefan(
    db: Path, *args: str | Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``zonefan --db DB ARGS`` as a subprocess, with ``env`` added (never raises)."""
    return subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", str(db), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or db.parent,
        env={**_clean_env(), **(env or {})},
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def exported(db: Path, zone: str) -> ZoneData:
    """The zone as `zonefan zone export` writes it, read back."""
    text = ok(zonefan(db, "zone", "export", zone)).stdout
    return ZoneData.from_text(text, dns.name.from_text(zone))


def history(db: Path, zone: str) -> list[dict[str, Any]]:
    rows = json.loads(ok(zonefan(db, "zone", "history", zone, "--json")).stdout)
    assert isinstance(rows, list)
    return rows


# -- pdns ----------------------------------------------------------------------------------


def pdns_table(server: PdnsServer, nameservers: list[str] | None = None) -> str:
    lines = [
        'type = "powerdns"',
        f'url = "{server.api_url}"',
        f'api-key-env = "{KEY_ENV}"',
        'signed-zones = "refuse"',
    ]
    if nameservers is not None:
        lines.append("nameservers = [" + ", ".join(f'"{n}"' for n in nameservers) + "]")
    return "\n".join(lines)


def sync_toml(
    work: Path,
    targets: Mapping[str, str],
    primary_port: int = 53,
    key: bool = False,
    zones: str = "example.test.",
) -> Path:
    """A sidecar config with these ``[target.NAME]`` tables; the primary at 127.0.0.1."""
    head = [
        f'state = "{work / "sync.db"}"',
        "[primary]",
        f'address = "127.0.0.1:{primary_port}"',
        f'zones = ["{zones}"]',
    ]
    if key:
        head[-1:-1] = [f'key = "{KEY.name}"']
        head += [f"[key.{KEY.name}]", f'secret-env = "{SECRET_ENV}"']
    tables = [f"[target.{name}]\n{body}" for name, body in targets.items()]
    path = work / "sync.toml"
    path.write_text("\n".join(head) + "\n\n" + "\n\n".join(tables) + "\n", encoding="utf-8")
    return path


def pdns_target(server: PdnsServer) -> PowerDnsTarget:
    section = {"url": server.api_url, "api-key-env": KEY_ENV, "signed-zones": "refuse"}
    ctx = TargetContext({}, None, {KEY_ENV: server.api_key})
    return powerdns_from_config("pdns", section, ctx)


def push(server: PdnsServer, desired: ZoneData) -> ZoneData:
    """Push ``desired`` to pdns through the PowerDNS target; what pdns holds then."""

    async def scenario() -> ZoneData:
        target = pdns_target(server)
        await target.open()
        try:
            held = await target.read(desired.origin)
            current = None if held is None else held.data
            plan = compute_plan(desired, current, target="pdns", owned=set(desired.rrsets))
            await target.apply(plan, None if held is None else held.state)
            got = await read_zone(target, desired.origin)
            assert got is not None
            return got
        finally:
            await target.close()

    return asyncio.run(scenario())


def test_from_target_pdns_round_trip(pdns: PdnsServer, tmp_path: Path) -> None:
    """A zone at pdns comes in whole: a dry run shows every record and stores nothing; the
    import is one changeset with the author and message given; the export equals what pdns
    holds, RRset for RRset, and equals what was pushed there; a second import changes
    nothing."""
    held = push(pdns, example_zone())
    assert set(held) == set(example_zone())
    config = sync_toml(tmp_path, {"pdns": pdns_table(pdns)})
    env = {KEY_ENV: pdns.api_key}
    db = tmp_path / "z.db"
    args = ("zone", "import", "--from-target", "pdns", "example.test", "--config", config)

    dry = ok(zonefan(db, *args, "--dry-run", env=env))
    assert dry.stdout.startswith("plan (nothing stored): zone example.test.")
    added = [line for line in dry.stdout.splitlines() if line.startswith("+ ")]
    assert len(added) == sum(len(r.rdatas) for r in held)
    assert not db.exists()

    done = ok(zonefan(db, *args, "--author", "mover", "-m", "off pdns", env=env))
    assert f"created with {len(added)} records, serial {held.serial}" in done.stdout
    assert set(exported(db, "example.test.")) == set(held)
    (change,) = history(db, "example.test.")
    assert (change["author"], change["message"]) == ("mover", "off pdns")

    again = ok(zonefan(db, *args, env=env))
    assert f"no change (serial {held.serial})" in again.stdout
    assert len(history(db, "example.test.")) == 1


def test_from_target_replaces_a_stored_zone_in_one_changeset(
    pdns: PdnsServer, tmp_path: Path
) -> None:
    """A zone already in the store is replaced by what the provider holds, through the
    same diff as a file import: one changeset, a higher serial, only the difference."""
    db = tmp_path / "z.db"
    ok(zonefan(db, "zone", "import", PROJECT_ROOT / "zones" / "example.test.zone"))
    before = exported(db, "example.test.")
    at_pdns = example_zone()
    web = dns.name.from_text("web.example.test.")
    moved = RRset.from_text("web", "A", 3600, ["198.51.100.80"], ZONE)
    at_pdns = ZoneData.build(ZONE, [r for r in at_pdns if r.key != (web, moved.rdtype)] + [moved])
    push(pdns, at_pdns)
    config = sync_toml(tmp_path, {"pdns": pdns_table(pdns)})
    env = {KEY_ENV: pdns.api_key}
    args = ("zone", "import", "--from-target", "pdns", "example.test", "--config", config)
    plan = ok(zonefan(db, *args, "--dry-run", env=env)).stdout
    assert "+ web.example.test. 3600 IN A 198.51.100.80" in plan
    assert exported(db, "example.test.") == before
    done = json.loads(ok(zonefan(db, *args, "--json", env=env)).stdout)
    assert done["serial_after"] > before.serial
    assert done["message"] == "import from target pdns"
    after = exported(db, "example.test.")
    assert after.get(web, dns.rdatatype.A) == moved
    assert {r for r in after if r.rdtype != dns.rdatatype.SOA} == {
        r for r in at_pdns if r.rdtype != dns.rdatatype.SOA
    }
    assert len(history(db, "example.test.")) == 2


def test_from_target_errors_name_the_cause_and_store_nothing(
    pdns: PdnsServer, tmp_path: Path
) -> None:
    """An unknown target lists the configured ones; a secondary-only target points to
    --axfr; a zone the provider lacks, a rejected API key and a missing config each say
    so. None leaves a store file."""
    config = sync_toml(
        tmp_path,
        {
            "pdns": pdns_table(pdns),
            "pdns2": (
                'type = "powerdns-secondary"\n'
                f'url = "{pdns.api_url}"\napi-key-env = "{KEY_ENV}"\n'
                f'dns = "127.0.0.1:{pdns.dns_port}"\n'
            ),
        },
    )
    db = tmp_path / "z.db"
    env = {KEY_ENV: pdns.api_key}

    def attempt(target: str, *extra: str, env: Mapping[str, str] = env) -> str:
        done = zonefan(
            db, "zone", "import", "--from-target", target, "example.test", *extra, env=env
        )
        assert done.returncode != 0, done.stdout
        assert not db.exists()
        return done.stderr

    unknown = attempt("cloud", "--config", str(config))
    assert "unknown target 'cloud'" in unknown and "configured: pdns, pdns2" in unknown
    secondary = attempt("pdns2", "--config", str(config))
    assert "target pdns2 is a secondary" in secondary
    assert "zonefan zone import --axfr ADDR example.test." in secondary
    absent = attempt("pdns", "--config", str(config))
    assert "target pdns holds no zone example.test." in absent
    wrong_key = attempt("pdns", "--config", str(config), env={KEY_ENV: "not-the-key"})
    assert "target.pdns" in wrong_key and "401" in wrong_key, wrong_key
    assert "not-the-key" not in wrong_key
    missing = attempt("pdns", "--config", str(tmp_path / "nope.toml"))
    assert "no sync config at" in missing and "--config" in missing


# -- a provider that shows no SOA (a cloud) --------------------------------------------------

CLOUD_NS = ("ns-b.cloud.example.", "ns-a.cloud.example.")


def cloud_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> MemoryTarget:
    """A provider as the clouds are: it makes its SOA and NS itself and its API shows
    neither (read() returns only the records), it signs the zone itself (its DNSKEY and
    RRSIGs show in the API), and names its nameservers. The data comes from the zone file
    ``data`` names; ``api-key`` is required as a cloud's is."""
    read_secret(section, f"target.{name}", "api-key", ctx)
    target = CloudTarget(
        name,
        capabilities=Capabilities(
            dnssec=DnssecMode.SELF_SIGNING, apex_soa=Owner.PROVIDER, apex_ns=Owner.PROVIDER
        ),
    )
    text = Path(str(section["data"])).read_text(encoding="utf-8")
    zone = ZoneData.from_text(text, ZONE)
    target.data = {
        k: r for k, r in zone.rrsets.items() if not target.capabilities.provider_owned(k, ZONE)
    }
    return target


class CloudTarget(MemoryTarget):
    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        return [dns.name.from_text(n) for n in CLOUD_NS]


def test_from_target_without_soa_gets_a_template_soa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider showing no SOA and no apex NS: the NS set is made of its nameservers,
    the SOA of the first of them with the template timers and serial 1, each said on
    stderr; its own DNSKEY and RRSIGs are dropped with a note; the rest is imported as
    it is there."""
    monkeypatch.setitem(BUILTIN, "cloud", f"{__name__}:cloud_from_config")
    signed = (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8")
    signed += (
        "@ 3600 IN DNSKEY 257 3 13 "
        "mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n"
        "web 3600 IN RRSIG A 13 3 3600 20460101000000 20260101000000 1 example.test. "
        "K2mr3If4ubztt5xGtlVnQi1+hSAWBEw+H7CLNG7XpW2N8tKyeRw7G24joMHmp2uiKHeEjwD/KF60b5zruti9Hw==\n"
    )
    data = tmp_path / "cloud.zone"
    data.write_text(signed, encoding="utf-8")
    config = sync_toml(
        tmp_path, {"cloud": f'type = "cloud"\napi-key-env = "CLOUD_KEY"\ndata = "{data}"'}
    )
    db = tmp_path / "z.db"
    monkeypatch.setenv("CLOUD_KEY", "token-123")
    monkeypatch.delenv("ZONEFAN_SYNC_CONFIG", raising=False)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "--db",
            str(db),
            "zone",
            "import",
            "--from-target",
            "cloud",
            "example.test",
            "--config",
            str(config),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    notes = result.stderr
    assert (
        "target cloud shows no apex NS set for example.test.: made one of its nameservers "
        "(ns-a.cloud.example. ns-b.cloud.example.)" in notes
    )
    assert (
        "shows no SOA for example.test. (the provider makes its own): made one from the apex "
        "NS: ns-a.cloud.example. hostmaster.example.test. 1 7200 3600 1209600 300" in notes
    )
    assert "dropped 2 DNSSEC records of target cloud; the signer makes its own" in notes
    got = exported(db, "example.test.")
    soa = got.get(ZONE, dns.rdatatype.SOA)
    assert soa is not None and soa.texts() == [
        "ns-a.cloud.example. hostmaster.example.test. 1 7200 3600 1209600 300"
    ]
    ns = got.apex_ns()
    assert ns is not None and sorted(ns.texts()) == sorted(CLOUD_NS)
    plain = example_zone()
    owned = {(ZONE, dns.rdatatype.SOA), (ZONE, dns.rdatatype.NS)}
    assert {r for r in got if r.key not in owned} == {r for r in plain if r.key not in owned}


CF_TOKEN = "cf-token-" + "Mq7w" * 8
CF_ACCOUNT = "0123456789abcdef0123456789abcdef"


def test_from_target_cloudflare_without_soa_or_ns(tmp_path: Path) -> None:
    """The Cloudflare target against its emulator, a provider whose API shows neither the
    SOA nor the apex NS: the zone pushed there comes back with the NS set of the
    nameservers Cloudflare assigned and an SOA made from them; a wrong token is refused
    with the provider's status, the token never shown, and no store left behind."""
    emulator = CloudflareEmulator({CF_TOKEN: CF_ACCOUNT}).start()
    try:
        settings = CloudflareSettings("cf", CF_TOKEN, emulator.url, CF_ACCOUNT)
        target = CloudflareTarget(settings)
        pushed = target.normalize(example_zone()).data

        async def push_cf() -> None:
            await target.open()
            try:
                owned = set(pushed.rrsets)
                serial = example_zone().serial
                plan = compute_plan(pushed, None, target="cf", owned=owned, serial=serial)
                await target.apply(plan, None)
            finally:
                await target.close()

        asyncio.run(push_cf())
        zone = emulator.zone_named("example.test")
        assert zone is not None and zone.name_servers
        table = (
            f'type = "cloudflare"\napi-token-env = "CF_TOKEN"\nendpoint = "{emulator.url}"\n'
            f'account-id = "{CF_ACCOUNT}"'
        )
        config = sync_toml(tmp_path, {"cf": table})
        db = tmp_path / "z.db"
        args = ("zone", "import", "--from-target", "cf", "example.test", "--config", config)
        wrong = zonefan(db, *args, env={"CF_TOKEN": CF_TOKEN[::-1]})
        assert wrong.returncode == 1 and "403" in wrong.stderr, wrong.stderr
        assert CF_TOKEN[::-1] not in wrong.stderr and not db.exists()
        done = ok(zonefan(db, *args, env={"CF_TOKEN": CF_TOKEN}))
    finally:
        emulator.stop()
    servers = sorted(dns.name.from_text(n) for n in zone.name_servers)
    assert "shows no apex NS set for example.test.: made one of its nameservers" in done.stderr
    assert f"made one from the apex NS: {servers[0]} hostmaster.example.test. 1 " in done.stderr
    got = exported(db, "example.test.")
    ns = got.apex_ns()
    assert ns is not None and sorted(ns.texts()) == sorted(n.to_text() for n in servers)
    soa = got.get(ZONE, dns.rdatatype.SOA)
    assert soa is not None
    assert soa.texts() == [f"{servers[0]} hostmaster.example.test. 1 7200 3600 1209600 300"]
    assert {r for r in got if r.key not in {soa.key, ns.key}} == set(pushed)


def test_template_soa_serial_follows_the_serial_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the date policy the made SOA starts at today's date serial (the clock is the
    one given); a zone missing from [primary] zones is imported with a note saying so."""
    monkeypatch.setitem(BUILTIN, "cloud", f"{__name__}:cloud_from_config")
    data = tmp_path / "cloud.zone"
    data.write_text(
        (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    table = f'type = "cloud"\napi-key-env = "CLOUD_KEY"\ndata = "{data}"'
    config = sync_toml(tmp_path, {"cloud": table}, zones="other.test.")
    noon = float(calendar.timegm((2030, 1, 15, 12, 0, 0)))
    fetched = from_target(
        config, "cloud", ZONE, SerialPolicy.DATE, env={"CLOUD_KEY": "t"}, clock=lambda: noon
    )
    soa = fetched.data.get(ZONE, dns.rdatatype.SOA)
    assert soa is not None and soa.rdatas[0].serial == 2030011500  # type: ignore[attr-defined]
    assert any("not among the [primary] zones" in note for note in fetched.notes)
    assert fetched.strip_dnssec


def test_template_soa_takes_the_first_nameserver_and_the_ns_ttl() -> None:
    ns = RRset.from_text("@", "NS", 600, ["b.ns.example.", "a.ns.example."], ZONE)
    soa = template_soa(ZoneData.build(ZONE, [ns]), 2026120800)
    assert soa.ttl == 600
    assert soa.texts() == [
        "a.ns.example. hostmaster.example.test. 2026120800 7200 3600 1209600 300"
    ]


# -- AXFR from NSD -----------------------------------------------------------------------------


class NsdPrimary(NsdServer):
    """NSD serving ``zones`` and allowing AXFR from 127.0.0.1: the zones named in
    ``keyed`` only with TSIG ``KEY``, the others without."""

    def __init__(self, workdir: Path, zones: list[tuple[str, Path]], keyed: set[str]) -> None:
        super().__init__(workdir, zones)
        self.keyed = keyed

    def _write_conf(self, rrl: bool) -> None:
        super()._write_conf(rrl)
        lines = [
            "key:",
            f'    name: "{KEY.name}"',
            f"    algorithm: {KEY.algorithm}",
            f'    secret: "{KEY.secret}"',
            "",
        ]
        for origin, path in self.zones:
            allowed = KEY.name if origin in self.keyed else "NOKEY"
            lines += [
                "zone:",
                f'    name: "{origin}"',
                f'    zonefile: "{path}"',
                f"    provide-xfr: 127.0.0.1 {allowed}",
                "",
            ]
        text = self.conf.read_text(encoding="utf-8")
        head = text[: text.index("zone:")] if "zone:" in text else text
        self.conf.write_text(head + "\n".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdPrimary]:
    work = tmp_path_factory.mktemp("nsd")
    example = PROJECT_ROOT / "zones" / "example.test.zone"
    keyed = work / "keyed.test.zone"
    keyed.write_text(
        example.read_text(encoding="utf-8").replace("example.test", "keyed.test"),
        encoding="utf-8",
    )
    zones = [("example.test.", example), ("keyed.test.", keyed), ("diff.test.", SIGNED_FILE)]
    with NsdPrimary(work / "nsd", zones, keyed={"keyed.test."}) as server:
        yield server


def test_axfr_without_tsig(nsd: NsdPrimary, tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    server = f"127.0.0.1:{nsd.port}"
    dry = ok(zonefan(db, "zone", "import", "--axfr", server, "example.test", "--dry-run"))
    assert "plan (nothing stored)" in dry.stdout and not db.exists()
    done = ok(zonefan(db, "zone", "import", "--axfr", server, "example.test"))
    assert "zone example.test.: created with" in done.stdout
    assert exported(db, "example.test.") == example_zone()
    assert history(db, "example.test.")[0]["message"] == f"import by AXFR from {server}"


def test_axfr_with_tsig_from_env_and_from_file(nsd: NsdPrimary, tmp_path: Path) -> None:
    zone = dns.name.from_text("keyed.test.")
    want = ZoneData.from_text(
        (PROJECT_ROOT / "zones" / "example.test.zone")
        .read_text(encoding="utf-8")
        .replace("example.test", "keyed.test"),
        zone,
    )
    server = f"127.0.0.1:{nsd.port}"
    db = tmp_path / "env.db"
    ok(
        zonefan(
            db,
            "zone",
            "import",
            "--axfr",
            server,
            "keyed.test",
            "--key",
            KEY.name,
            "--key-secret-env",
            SECRET_ENV,
            env={SECRET_ENV: KEY.secret},
        )
    )
    assert exported(db, "keyed.test.") == want
    secret = write_private(tmp_path / "xfr.secret", KEY.secret + "\n")
    db = tmp_path / "file.db"
    ok(
        zonefan(
            db,
            "zone",
            "import",
            "--axfr",
            server,
            "keyed.test",
            "--key",
            KEY.name,
            "--key-file",
            secret,
        )
    )
    assert exported(db, "keyed.test.") == want
    # The same key from a [key.NAME] table of zonefan.toml.
    config = write_private(tmp_path / "zonefan.toml", transfer_config(KEY))
    db = tmp_path / "config.db"
    ok(
        zonefan(
            db,
            "--config",
            config,
            "zone",
            "import",
            "--axfr",
            server,
            "keyed.test",
            "--key",
            KEY.name,
        )
    )
    assert exported(db, "keyed.test.") == want


def test_axfr_refusals_name_server_and_cause_and_store_nothing(
    nsd: NsdPrimary, tmp_path: Path
) -> None:
    db = tmp_path / "z.db"
    server = f"127.0.0.1:{nsd.port}"

    def refused(*args: str | Path, env: Mapping[str, str] | None = None) -> str:
        done = zonefan(db, "zone", "import", "--axfr", server, *args, env=env)
        assert done.returncode != 0, done.stdout
        assert not db.exists()
        return done.stderr

    no_key = refused("keyed.test")
    assert f"AXFR of keyed.test. from primary {server} failed" in no_key
    assert "REFUSED" in no_key or "NOTAUTH" in no_key, no_key
    assert "nothing was imported" in no_key
    wrong = base64.b64encode(b"not-the-right-secret-0123456789").decode()
    bad_secret = refused(
        "keyed.test", "--key", KEY.name, "--key-secret-env", SECRET_ENV, env={SECRET_ENV: wrong}
    )
    assert f"from primary {server} failed" in bad_secret
    assert "BADSIG" in bad_secret or "NOTAUTH" in bad_secret or "TSIG" in bad_secret, bad_secret
    assert wrong not in bad_secret
    unset = refused("keyed.test", "--key", KEY.name, "--key-secret-env", SECRET_ENV)
    assert "--key-secret-env" in unset and f"{SECRET_ENV!r} is not set" in unset
    readable = tmp_path / "open.secret"
    readable.write_text(KEY.secret, encoding="utf-8")
    readable.chmod(0o644)
    open_file = refused("keyed.test", "--key", KEY.name, "--key-file", readable)
    assert "--key-file" in open_file and "chmod 600" in open_file
    unknown = refused("keyed.test", "--key", "nokey")
    assert "'nokey' is not a [key.NAME] table" in unknown and "--key-secret-env" in unknown
    nothing_there = zonefan(db, "zone", "import", "--axfr", "127.0.0.1:1", "example.test")
    assert nothing_there.returncode != 0 and "connection refused" in nothing_there.stderr
    not_address = zonefan(db, "zone", "import", "--axfr", "ns1.example.test", "example.test")
    assert not_address.returncode == 2 and "--axfr" in not_address.stderr
    assert not db.exists()


def test_axfr_of_a_signed_zone_is_refused_unless_stripped(nsd: NsdPrimary, tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    server = f"127.0.0.1:{nsd.port}"
    refused = zonefan(db, "zone", "import", "--axfr", server, "diff.test")
    assert refused.returncode == 1
    assert f"the AXFR of diff.test. from {server} holds" in refused.stderr
    assert "DNSSEC records" in refused.stderr and "--strip-dnssec" in refused.stderr
    assert not db.exists()
    done = ok(zonefan(db, "zone", "import", "--axfr", server, "diff.test", "--strip-dnssec"))
    assert done.stderr.startswith("--strip-dnssec: dropped 114 DNSSEC records of the AXFR")
    assert "Warning" not in done.stderr
    signed = ZoneData.from_text(
        SIGNED_FILE.read_text(encoding="utf-8"), dns.name.from_text("diff.test.")
    )
    dnssec = {dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.DNSKEY}
    assert set(exported(db, "diff.test.")) == {r for r in signed if r.rdtype not in dnssec}


# -- the documented path, end to end ---------------------------------------------------------


def test_documented_path_import_check_push_ns(tmp_path: Path) -> None:
    """README "Moving a zone onto zonefan": the zone is at pdns1 today. Import it from
    there (a dry run first), serve it with `zonefan serve` as the new hidden primary,
    `config check` the sidecar's config, push to a second provider (pdns2) that then holds
    and serves the same RRsets, push back to pdns1 (nothing to change but what we own),
    and `sync ns` gives the NS set of both, which the zone's apex NS set matches: what to
    register at the parent."""
    env = {"PDNS1_KEY": "", "PDNS2_KEY": "", SECRET_ENV: KEY.secret}
    with (
        PdnsServer(tmp_path / "pdns1") as pdns1,
        PdnsServer(tmp_path / "pdns2") as pdns2,
    ):
        env.update(PDNS1_KEY=pdns1.api_key, PDNS2_KEY=pdns2.api_key)
        before = push(pdns1, example_zone())
        primary_config = write_private(tmp_path / "zonefan.toml", transfer_config(KEY))
        db = tmp_path / "zonefan.db"
        primary = ZonefanServer(
            tmp_path / "primary", db=db, probe_name="example.test.", config=primary_config
        )
        primary.fixed_port = free_port()
        tables = {
            "pdns1": pdns_table(pdns1, ["ns1.example.test."]).replace(KEY_ENV, "PDNS1_KEY"),
            "pdns2": pdns_table(pdns2, ["ns2.example.test."]).replace(KEY_ENV, "PDNS2_KEY"),
        }
        config = sync_toml(tmp_path, tables, primary_port=primary.fixed_port, key=True)

        def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
            return ok(zonefan(db, "--config", primary_config, *args, env=env, cwd=tmp_path))

        # 1. import, with its plan first
        take = ("zone", "import", "--from-target", "pdns1", "example.test", "--config", config)
        assert "plan (nothing stored)" in cli(*take, "--dry-run").stdout and not db.exists()
        cli(*take, "-m", "moved from pdns1")
        assert set(exported(db, "example.test.")) == set(before)
        with primary:
            # 2. check: every setting, both targets opened, the primary asked for the serial
            checked = cli("config", "check", "--sync", config)
            assert "no problems found" in checked.stdout
            assert f"example.test. serial {before.serial}" in checked.stdout
            # 3. push to the second provider
            plan = cli("sync", "plan", "example.test", "--target", "pdns2", "--config", config)
            assert "pdns2" in plan.stdout
            cli("sync", "apply", "example.test", "--target", "pdns2", "--config", config)
            at_pdns2 = asyncio.run(read_zone(pdns_target(pdns2), ZONE))
            assert at_pdns2 is not None and set(at_pdns2) == set(before)
            assert served_a(pdns2.dns_port, "web.example.test.") == ["192.0.2.80"]
            cli("sync", "apply", "example.test", "--target", "pdns1", "--config", config)
            assert asyncio.run(read_zone(pdns_target(pdns1), ZONE)) == before
            # 4. the NS set for the parent
            ns = json.loads(cli("sync", "ns", "example.test", "--config", config, "--json").stdout)
        assert ns["targets"] == {"pdns1": ["ns1.example.test."], "pdns2": ["ns2.example.test."]}
        assert ns["ns_set"] == ["ns1.example.test.", "ns2.example.test."]
        assert ns["matches"] is True


def served_a(port: int, name: str) -> list[str]:
    """The A records pdns answers for ``name``, asked as a resolver would."""
    query = dns.message.make_query(name, "A")
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
    return sorted(
        r.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for r in rrset
    )


def test_axfr_from_knot_with_tsig(tmp_path: Path) -> None:
    """Knot as the primary the zone leaves: it allows AXFR only with the key; without it
    the transfer is refused and nothing stored, with it the zone comes in whole."""
    with KnotUpdatePrimary(
        tmp_path / "knot", "example.test.", PROJECT_ROOT / "zones" / "example.test.zone", KEY
    ) as knot:
        server = f"127.0.0.1:{knot.port}"
        db = tmp_path / "z.db"
        refused = zonefan(db, "zone", "import", "--axfr", server, "example.test")
        assert refused.returncode == 1 and f"from primary {server} failed" in refused.stderr
        assert not db.exists()
        key = ("--key", KEY.name, "--key-secret-env", SECRET_ENV)
        ok(zonefan(db, "zone", "import", "--axfr", server, "example.test", *key,
                   env={SECRET_ENV: KEY.secret}))  # fmt: skip
    assert exported(db, "example.test.") == example_zone()
