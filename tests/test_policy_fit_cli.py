"""The built-in signing policy on ordinary zones, run as a user runs zonefan: `zone sign`
with no config on zones with SOA EXPIRE 7, 14 and 28 days and TTLs up to a day derives
signature lifetimes that fit, says what it chose, and the result passes BIND's
dnssec-verify and ldns-verify-zone and validates in unbound (our DS as trust anchor,
`zonefan serve` as the authority).  An explicit policy that does not fit is refused with
the block to paste and the file it goes in, changing nothing; a huge TTL or EXPIRE gets
advice about that TTL or EXPIRE; a later import that raises EXPIRE adapts the lifetimes
(re-signing what it must, in the same change), and `zonefan serve`'s maintenance follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.zone
import pytest
from dns.rdtypes.ANY.RRSIG import RRSIG

from nameserver.dnssec.maintenance import MaintenanceScheduler, MaintenanceTiming
from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from signer.policy import format_duration
from tests.clock import FakeClock
from tests.servers import (
    CLI_TIMEOUT,
    UnboundServer,
    ZonefanServer,
    _clean_env,
    query_message,
    run_cli,
    trust_anchor,
)
from tests.tools import require_tool, scheduler_running, wait_for_runs

DAY = 86400
ZONE = "ordinary.test."


def _zone_text(expire: int, extra: str = "") -> str:
    """An ordinary zone: $TTL a day, SOA EXPIRE ``expire``, TTLs from 5 minutes to a day."""
    return f"""$ORIGIN {ZONE}
$TTL 86400
@       SOA   ns1 hostmaster 2024060101 7200 3600 {expire} 3600
@       NS    ns1
@       NS    ns2
@       A     192.0.2.1
@       MX    10 mail
ns1     A     192.0.2.2
ns2     3600  A     198.51.100.2
mail    3600  A     192.0.2.25
web     3600  A     192.0.2.80
web     3600  AAAA  2001:db8::80
www     300   CNAME web
*.wild  600   TXT   "synthesised"
{extra}"""


def _import(db: Path, tmp_path: Path, text: str, name: str = "zone.txt") -> None:
    path = tmp_path / name
    path.write_text(text)
    run_cli(db, "zone", "import", str(path))


def _signatures(db: Path) -> list[RRSIG]:
    exported = run_cli(db, "zone", "export", ZONE).stdout
    zone = dns.zone.from_text(exported, ZONE, relativize=False)
    return [rd for _, _, rd in zone.iterate_rdatas() if isinstance(rd, RRSIG)]


def _verify(db: Path, tmp_path: Path) -> None:
    """dnssec-verify and ldns-verify-zone accept the exported zone."""
    path = tmp_path / "signed.zone"
    path.write_text(run_cli(db, "zone", "export", ZONE).stdout)
    for command in (
        [require_tool("dnssec-verify"), "-z", "-o", ZONE, str(path)],
        [require_tool("ldns-verify-zone"), str(path)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def _ask(unbound: UnboundServer, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return query_message(unbound.host, unbound.port, query)


@contextlib.contextmanager
def _validating(db: Path, tmp_path: Path) -> Iterator[UnboundServer]:
    """`zonefan serve` for the store and an unbound trusting our DS, stub to it."""
    require_tool("unbound")
    anchor = trust_anchor(db, ZONE)
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(ZonefanServer(tmp_path, db, probe_name=ZONE))
        yield stack.enter_context(UnboundServer(tmp_path, anchor, primary.port, ZONE))


# -- the built-in policy on ordinary zones ------------------------------------------------------


@pytest.mark.parametrize(
    ("expire", "validity", "refresh"),
    [(7 * DAY, "17d", "9d"), (14 * DAY, "24d", "16d"), (28 * DAY, "38d", "30d")],
    ids=["expire-7d", "expire-14d", "expire-28d"],
)
def test_default_policy_signs_ordinary_zones(
    tmp_path: Path, expire: int, validity: str, refresh: str
) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(expire))
    signed = run_cli(db, "zone", "sign", ZONE)
    chosen = (
        f"policy default (built-in): rrsig-validity {validity}, rrsig-refresh {refresh}, "
        f"derived from SOA EXPIRE {format_duration(expire)} + largest TTL 1d"
    )
    assert chosen in signed.stdout.splitlines()[1], signed.stdout
    status = run_cli(db, "keys", "status", ZONE).stdout
    assert status.splitlines()[0] == chosen
    as_json = json.loads(run_cli(db, "keys", "status", ZONE, "--json").stdout)["policy"]
    assert as_json["name"] == "default" and as_json["source"] == "built-in"
    assert as_json["derived"] is True and as_json["soa_expire"] == expire
    assert format_duration(as_json["rrsig_validity"]) == validity
    assert format_duration(as_json["rrsig_refresh"]) == refresh

    # Every signature made now lasts the derived validity (less jitter) and outlasts
    # what a cut-off secondary and the caches behind it can serve: EXPIRE + a day.
    now = time.time()
    sigs = _signatures(db)
    assert sigs
    for sig in sigs:
        left = sig.expiration - now
        assert expire + DAY < as_json["rrsig_refresh"] < left <= as_json["rrsig_validity"]
    _verify(db, tmp_path)

    with _validating(db, tmp_path) as unbound:
        for name, rdtype, rcode in [
            ("web.ordinary.test.", "AAAA", dns.rcode.NOERROR),
            ("www.ordinary.test.", "A", dns.rcode.NOERROR),  # CNAME to web
            ("x.wild.ordinary.test.", "TXT", dns.rcode.NOERROR),  # wildcard
            ("missing.ordinary.test.", "A", dns.rcode.NXDOMAIN),
            ("mail.ordinary.test.", "TXT", dns.rcode.NOERROR),  # NODATA
        ]:
            response = _ask(unbound, name, rdtype)
            assert response.rcode() == rcode, response
            assert response.flags & dns.flags.AD, (
                f"not validated:\n{response}\n{unbound.log_text()}"
            )


def test_sign_json_says_what_it_chose(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(5 * DAY))
    data = json.loads(run_cli(db, "zone", "sign", ZONE, "--json").stdout)
    # EXPIRE 5d + 1d fits the defaults: they are kept, not derived.
    assert data["policy"] == {
        "name": "default",
        "source": "built-in",
        "rrsig_validity": 14 * DAY,
        "rrsig_refresh": 7 * DAY,
        "derived": False,
        "soa_expire": 5 * DAY,
        "largest_ttl": DAY,
        "problem": None,
        "text": "policy default (built-in): rrsig-validity 14d, rrsig-refresh 7d, which "
        "cover SOA EXPIRE 5d + largest TTL 1d",
    }


# -- explicit policies --------------------------------------------------------------------------


def _unsigned(db: Path, serial_before: str) -> None:
    """Nothing changed: no signer records, no keys, the same serial."""
    exported = run_cli(db, "zone", "export", ZONE).stdout
    assert "RRSIG" not in exported and "DNSKEY" not in exported and "NSEC" not in exported
    assert json.loads(run_cli(db, "keys", "list", ZONE, "--json").stdout) == []
    assert run_cli(db, "zone", "show", ZONE).stdout == serial_before


def _error(stderr: str) -> str:
    """The CLI's error message (what may precede it is not this test's business)."""
    assert "Error: " in stderr, stderr
    return stderr[stderr.index("Error: ") :]


def _pasted_block(stderr: str) -> str:
    found = re.search(r"\n\n(\[policy\.[^\n]*\n[^\n]*\n[^\n]*)", stderr)
    assert found, stderr
    return found.group(1)


def test_an_explicit_policy_that_does_not_fit_is_refused_with_a_block(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(14 * DAY))
    before = run_cli(db, "zone", "show", ZONE).stdout
    # ./zonefan.toml, found in the working directory (the store's directory here).
    config = tmp_path / "zonefan.toml"
    config.write_text('[policy.default]\nkey-style = "csk"\nrrsig-refresh = "7d"\n')
    refused = run_cli(db, "zone", "sign", ZONE, check=False)
    assert refused.returncode == 1
    assert f"Error: {config} [policy.default] rrsig-refresh: 7d does not fit zone {ZONE}" in (
        refused.stderr
    )
    assert f"Set both in {config}:" in refused.stderr
    block = _pasted_block(refused.stderr)
    assert tomllib.loads(block) == {
        "policy": {"default": {"rrsig-refresh": "16d", "rrsig-validity": "24d"}}
    }
    _unsigned(db, before)
    status = run_cli(db, "keys", "status", ZONE).stdout
    assert status.startswith(f"policy default ({config}): does not fit the zone\nproblem: ")

    # Pasting the block as told (replacing the table's lifetimes) makes it sign.
    config.write_text(block.replace("[policy.default]", '[policy.default]\nkey-style = "csk"'))
    signed = run_cli(db, "zone", "sign", ZONE).stdout
    assert (
        f"policy default ({config}): rrsig-validity 24d, rrsig-refresh 16d, which cover "
        "SOA EXPIRE 14d + largest TTL 1d"
    ) in signed
    _verify(db, tmp_path)


SLOW = ("--policy", "slow.one")


def test_the_refusal_names_the_config_file_in_use(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(28 * DAY))
    before = run_cli(db, "zone", "show", ZONE).stdout
    config = tmp_path / "etc" / "primary.toml"
    config.parent.mkdir()
    config.write_text('[policy."slow.one"]\nrrsig-validity = "20d"\nrrsig-refresh = "10d"\n')
    # Through ZONEFAN_CONFIG, as a service unit would set it.
    refused = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", str(db), "zone", "sign", ZONE, *SLOW],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        cwd=tmp_path,
        env={**_clean_env(), "ZONEFAN_CONFIG": str(config)},
        check=False,
    )
    assert refused.returncode == 1, refused
    assert f'Error: {config} [policy."slow.one"] rrsig-refresh: 10d does not fit' in refused.stderr
    assert tomllib.loads(_pasted_block(refused.stderr)) == {
        # The table's spacing of 10d between refresh and validity is kept (+ jitter).
        "policy": {"slow.one": {"rrsig-refresh": "30d", "rrsig-validity": "41d"}}
    }
    _unsigned(db, before)


def test_a_table_without_lifetimes_derives_them(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(14 * DAY))
    config = tmp_path / "zonefan.toml"
    config.write_text('[policy.hashed]\ndenial = "nsec3"\n')
    out = run_cli(db, "--config", str(config), "zone", "sign", ZONE, "--policy", "hashed")
    assert (
        f"policy hashed ({config}): rrsig-validity 24d, rrsig-refresh 16d, derived from "
        "SOA EXPIRE 14d + largest TTL 1d"
    ) in out.stdout
    assert "NSEC3PARAM" in run_cli(db, "zone", "export", ZONE).stdout
    _verify(db, tmp_path)


# -- zones too long-lived to derive lifetimes for ------------------------------------------------


def test_a_huge_ttl_gets_advice_about_that_ttl(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(14 * DAY))
    run_cli(db, "zone", "sign", ZONE)
    before = run_cli(db, "zone", "show", ZONE).stdout
    refused = run_cli(db, "record", "add", ZONE, "old", "2592000", "A", "192.0.2.9", check=False)
    assert refused.returncode == 1
    text = _error(refused.stderr)
    assert text.startswith(f"Error: zone {ZONE} TTL: old.{ZONE} A has TTL 30d: "), text
    assert "lower it to 1d or less (with this EXPIRE, up to 15d would do)" in text
    assert "below 0" not in text
    assert run_cli(db, "zone", "show", ZONE).stdout == before
    # A long TTL that still fits is signed, with lifetimes grown to cover it.
    run_cli(db, "record", "add", ZONE, "old", "604800", "A", "192.0.2.9")
    status = run_cli(db, "keys", "status", ZONE).stdout.splitlines()[0]
    assert status.endswith(
        "rrsig-validity 30d, rrsig-refresh 22d, derived from SOA EXPIRE 14d + largest TTL 7d"
    )
    _verify(db, tmp_path)


def test_an_absurd_expire_gets_advice_about_the_expire(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(365 * DAY))
    before = run_cli(db, "zone", "show", ZONE).stdout
    refused = run_cli(db, "zone", "sign", ZONE, check=False)
    assert refused.returncode == 1
    text = _error(refused.stderr)
    assert text.startswith(f"Error: zone {ZONE} SOA EXPIRE: SOA EXPIRE 365d is beyond")
    assert "RFC 1912 §2.2" in refused.stderr and "lower it to 28d or less" in refused.stderr
    _unsigned(db, before)


# -- the lifetimes follow the zone ---------------------------------------------------------------


def test_raising_expire_by_import_adapts_the_lifetimes(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, tmp_path, _zone_text(5 * DAY), "short.zone")
    assert (
        "rrsig-validity 14d, rrsig-refresh 7d, which cover"
        in run_cli(db, "zone", "sign", ZONE).stdout
    )
    _import(db, tmp_path, _zone_text(14 * DAY), "long.zone")
    status = run_cli(db, "keys", "status", ZONE).stdout.splitlines()[0]
    assert status.endswith(
        "rrsig-validity 24d, rrsig-refresh 16d, derived from SOA EXPIRE 14d + largest TTL 1d"
    )
    # The import re-signed, in its own change, every signature the new refresh reached:
    # none is left that a secondary could serve past its expiration.
    now = time.time()
    assert min(s.expiration for s in _signatures(db)) - now > 16 * DAY
    _verify(db, tmp_path)
    kept = {(s.type_covered, s.expiration, s.signature) for s in _signatures(db)}

    # Lowering EXPIRE back: the defaults fit again; signatures that are still good are
    # kept (only the new SOA is signed again), nothing is re-made at once.
    _import(db, tmp_path, _zone_text(5 * DAY), "short.zone")
    status = run_cli(db, "keys", "status", ZONE).stdout.splitlines()[0]
    assert status.endswith(
        "rrsig-validity 14d, rrsig-refresh 7d, which cover SOA EXPIRE 5d + largest TTL 1d"
    )
    after = {(s.type_covered, s.expiration, s.signature) for s in _signatures(db)}
    changed = {t for t, _, _ in after - kept}
    assert changed == {dns.rdatatype.SOA}, changed
    _verify(db, tmp_path)


def test_maintenance_follows_a_change_of_the_lifetimes(tmp_path: Path) -> None:
    """Signed with EXPIRE 14d (refresh 16d), then EXPIRE 21d (refresh 23d): the fresh
    signatures need no re-signing yet, but need it days before the old schedule said.
    `zonefan serve`'s scheduler notices the new lifetimes at its next rescan."""
    db = tmp_path / "z.db"
    clock = FakeClock(1_800_000_000.0)
    origin = dns.name.from_text(ZONE)
    zone_file = tmp_path / "zone.txt"
    zone_file.write_text(_zone_text(14 * DAY))
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
        parsed = read_zone_file(zone_file)
        editor = manager.editor()
        editor.create_or_replace(
            editor.plan_import(origin, parsed.records, Author("test")), SerialPolicy.INCREMENT
        )
        manager.enable(origin, Author("test"))

    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(store, Path(f"{db}.keys"), clock=clock, versions=versions)

    # Rescans an hour of (fake) time apart: only the rescan asked for below can find it.
    timing = MaintenanceTiming(rescan=3600)
    scheduler = MaintenanceScheduler(db, factory, clock=clock, timing=timing)

    async def scenario() -> tuple[float, float]:
        async with scheduler_running(scheduler):
            await wait_for_runs(scheduler, 1)
            first = scheduler.due_times()[origin]
            clock.now += 60
            assert first > clock.now, "nothing is due at the change"
            zone_file.write_text(_zone_text(21 * DAY))
            with Store(db) as store:
                editor = DnssecManager(store, Path(f"{db}.keys"), clock=clock).editor()
                parsed = read_zone_file(zone_file)
                plan = editor.plan_import(origin, parsed.records, Author("test"))
                editor.create_or_replace(plan, SerialPolicy.INCREMENT)
            scheduler.wake(rescan=True)
            # Maintained at once, not at the time planned under the old lifetimes.
            await wait_for_runs(scheduler, 2, timeout=10)
            return first, scheduler.due_times()[origin]

    _first, second = asyncio.run(scenario())
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
        policy = manager.policy(origin)
        earliest = min(
            int(r.rdata.expiration) for r in store.records(origin) if isinstance(r.rdata, RRSIG)
        )
    assert (policy.rrsig_validity, policy.rrsig_refresh) == (31 * DAY, 23 * DAY)
    # The next run comes before the first signature gets down to 23 days left.
    assert second <= earliest - 23 * DAY
