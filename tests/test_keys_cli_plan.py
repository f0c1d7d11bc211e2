"""What the key commands tell an operator, run as a user runs them (`zonefan` subprocesses
on the real clock), for a zone with day-long TTLs:

* `keys status` and `keys list` give the next key event `zone maintain --json` gives
  (planned with the zone's largest TTL, 86400 here, not the DNSKEY TTL);
* right after `keys rollover --algorithm 15`, `keys ds` prints only the DS at the parent
  and announces the new one as coming, from the date `keys timeline` gives; the status
  gives no advice to start the algorithm rollover that is running;
* `keys timeline` (and its preview of `keys rollover`) gives each step of a CSK and an
  algorithm rollover at the date RFC 7583's intervals give for the default policy;
* `keys rollover --zsk`/`--ksk` on a CSK zone, `--csk` on a KSK/ZSK zone, say what to
  use instead and change nothing.

The zone is signed days in the past on a fake clock and its first DS recorded seen, so
the CLI finds it settled, as a zone that has been signed for a while.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_text
from signer.policy import DAY, HOUR, KeyStyle, Policy
from signer.timing import mark_ds_seen
from tests.servers import run_cli

ZONE = "day.test."
AUTHOR = Author("test", "a zone signed days ago")
# TTLs of a day (and EXPIRE 5 days, so the default policy's signatures fit).
ZONE_TEXT = """$ORIGIN day.test.
$TTL 86400
@    SOA  ns1 hostmaster 1 7200 3600 432000 300
@    NS   ns1
ns1  A    192.0.2.1
www  A    192.0.2.2
"""
MAX_TTL = 86400
P = Policy()  # the built-in default the CLI uses without a config
# RFC 7583 intervals for the default policy and this zone.
IPUB = P.zone_propagation_delay + P.dnskey_ttl + P.publish_safety  # §3.2.1 Ipub, §3.3.1 IpubC
SIG_PROPAGATION = P.zone_propagation_delay + MAX_TTL + P.publish_safety  # RFC 6781 §4.1.4
IRET_ZSK = P.sign_delay + P.zone_propagation_delay + MAX_TTL + P.retire_safety  # §3.2.1
IRET_KSK = P.parent_propagation_delay + P.parent_ds_ttl + P.retire_safety  # §3.3.1
DNSKEY_EXPIRY = P.zone_propagation_delay + P.dnskey_ttl + P.retire_safety


def _when(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _posix(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def _settled(db: Path, policy: Policy | None = None) -> None:
    """The zone signed five days ago (fake clock) and run until its first DS is seen."""
    now = int(time.time()) - 5 * DAY
    store = Store(db)
    try:
        policies = {"default": policy} if policy is not None else {}
        manager = DnssecManager(store, Path(f"{db}.keys"), policies, clock=lambda: now)
        editor = manager.editor()
        parsed = read_zone_text(ZONE_TEXT)
        editor.create_or_replace(
            editor.plan_import(parsed.origin, parsed.records, AUTHOR), SerialPolicy.INCREMENT
        )
        result = manager.enable(parsed.origin, AUTHOR)
        while not result.plan.ds_watch:
            assert result.next_due is not None and result.next_due < time.time() - HOUR
            now = result.next_due
            result = manager.maintain(parsed.origin, AUTHOR)
        keys = manager.timings(parsed.origin)
        for watch in result.plan.ds_watch:
            keys = mark_ds_seen(keys, watch.key_id, now)
        manager.save_timings(parsed.origin, keys)
    finally:
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "z.db"
    _settled(path)
    yield path


def _json(db: Path, *args: str) -> Any:
    return json.loads(run_cli(db, *args, "--json").stdout)


def _key(db: Path, **match: object) -> dict[str, Any]:
    (row,) = [
        r for r in _json(db, "keys", "list", ZONE) if all(r[k] == v for k, v in match.items())
    ]
    return dict(row)


def _next_event_everywhere(db: Path) -> str:
    """The next event as `keys status` (text and JSON) and `keys list` give it, once they
    agree with each other and with `zone maintain --json`."""
    status = _json(db, "keys", "status", ZONE)
    listed = {r["next_event"] for r in _json(db, "keys", "list", ZONE)}
    shown = {r["next_event"] for r in status["keys"]}
    text = run_cli(db, "keys", "status", ZONE).stdout.splitlines()[-1]
    maintained = _json(db, "zone", "maintain", ZONE)
    assert maintained["actions"] == []
    expected = _when(maintained["next_due"])
    assert listed == shown == {expected} and text == f"next event: {expected}"
    return expected


def test_next_event_is_the_one_maintenance_plans_with_the_largest_ttl(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    zone_file = tmp_path / "day.zone"
    zone_file.write_text(ZONE_TEXT)
    run_cli(db, "zone", "import", str(zone_file))
    run_cli(db, "zone", "sign", ZONE)
    key = _key(db, role="CSK")
    # The first DS is asked for once the zone's signatures are in every cache: TTLsig is
    # the zone's 86400, not the DNSKEY TTL (which would give 23 hours earlier).
    expected = _when(_posix(key["active"]) + SIG_PROPAGATION)
    assert _next_event_everywhere(db) == expected

    run_cli(db, "keys", "rollover", ZONE, "--algorithm", "15")
    new = _key(db, algorithm=15)
    assert new["published"] == "-"
    # The new algorithm's DNSKEY follows its signatures once they are in every cache.
    assert _next_event_everywhere(db) == _when(_posix(new["active"]) + SIG_PROPAGATION)


def test_keys_ds_during_an_algorithm_rollover(db: Path, tmp_path: Path) -> None:
    before = _json(db, "keys", "ds", ZONE)
    (old,) = before["publish"]
    assert before["coming"] == before["remove"] == []
    assert run_cli(db, "keys", "ds", ZONE).stdout == old["record"] + "\n"

    config = tmp_path / "ed25519.toml"  # not ./zonefan.toml, which every command reads
    config.write_text('[policy.default]\nalgorithm = "ED25519"\n')
    conf = ("--config", str(config))
    run_cli(db, *conf, "keys", "rollover", ZONE, "--algorithm", "15")
    new = _key(db, algorithm=15)
    timeline = _json(db, *conf, "keys", "timeline", ZONE)
    submit = next(s for s in timeline["steps"] if s["step"] == "submit-ds")
    assert submit["key"] == new["id"]
    assert submit["at"] == _when(_posix(new["active"]) + SIG_PROPAGATION + IPUB)

    # Only the DS at the parent is safe; the new one is coming, from the planner's date.
    data = _json(db, *conf, "keys", "ds", ZONE)
    assert [e["key"] for e in data["publish"]] == [old["key"]]
    assert data["publish"][0]["until"] == submit["at"]
    (coming,) = data["coming"]
    assert (coming["key"], coming["since"], coming["earliest"]) == (new["id"], submit["at"], False)
    fields = {"key", "tag", "role", "algorithm", "ds", "record", "since", "until", "earliest"}
    assert set(coming) == set(old) == fields
    assert data["remove"] == []
    text = run_cli(db, *conf, "keys", "ds", ZONE).stdout.splitlines()
    assert [line for line in text if not line.startswith(";")] == [old["record"]]
    assert f";   {coming['record']}" in text
    assert any(submit["at"] in line and f"CSK {new['tag']}" in line for line in text)

    status = run_cli(db, *conf, "keys", "status", ZONE).stdout
    assert "start an algorithm rollover" not in status and "note:" not in status
    # Nor a wait for a DS that must not be at the parent yet.
    assert f"DS of tag {new['tag']}" not in status
    # The policy left at 13: the note says to change it, not to start a rollover.
    notes = _json(db, "keys", "status", ZONE)["notes"]
    assert notes == [
        "an algorithm rollover to 15 is running but the policy says 13; set the policy's "
        "algorithm to 15, or roll back to 13 once this rollover has ended"
    ]


def _steps(timeline: dict[str, Any], shift: int = 0) -> list[tuple[str, str, str]]:
    """(date + ``shift``, step, old or new key) of a forecast's steps, sorted (the order
    of steps at one moment is not part of the plan)."""
    old = {s["key"] for s in timeline["steps"] if s["step"] == "remove"}
    return sorted(
        (_when(_posix(s["at"]) + shift), s["step"], "old" if s["key"] in old else "new")
        for s in timeline["steps"]
    )


def _expect(start: str, *steps: tuple[int, str, str]) -> list[tuple[str, str, str]]:
    """``steps`` as (seconds after ``start``, step, old/new), in the form of _steps."""
    return sorted((_when(_posix(start) + after), step, who) for after, step, who in steps)


def test_timeline_of_a_csk_rollover(db: Path) -> None:
    preview = _json(db, "keys", "timeline", ZONE, "--csk")
    assert preview["preview"] == f"zonefan keys rollover {ZONE} --csk"
    assert preview["max_ttl"] == MAX_TTL and preview["next_step"] is None
    assert preview["assumption"].startswith("every DS change at the parent is assumed")
    removal = max(IPUB + IRET_ZSK, IPUB + IRET_KSK)  # RFC 7583 §3.2.1 and §3.3.1 both done
    steps = [
        (0, "generate", "new"),
        (0, "publish", "new"),
        (IPUB, "activate", "new"),
        (IPUB, "retire", "old"),
        (IPUB, "submit-ds", "new"),
        (IPUB, "withdraw-ds", "old"),
        (IPUB, "ds-leaves", "old"),
        (IPUB, "ds-appears", "new"),
        (removal, "remove", "old"),
    ]
    assert _steps(preview) == _expect(preview["from"], *steps)
    assert all(s["assumed"] == s["step"].startswith("ds-") for s in preview["steps"])
    assert len(_json(db, "keys", "list", ZONE)) == 1  # a preview changes nothing

    run_cli(db, "keys", "rollover", ZONE, "--csk")
    new = _key(db, state="published")
    lived = _json(db, "keys", "timeline", ZONE)
    # The same steps at the same dates, from when the rollover started; generate and
    # publish are done.
    shift = _posix(new["published"]) - _posix(preview["from"])
    assert _steps(lived) == _expect(new["published"], *steps[2:])
    assert _steps(lived) == [
        s for s in _steps(preview, shift) if s[1] not in ("generate", "publish")
    ]
    assert not any(s["new_key"] for s in lived["steps"])
    text = run_cli(db, "keys", "timeline", ZONE).stdout
    assert f"waits for the DS of CSK {new['tag']} to appear at the parent (ds-check)" in text
    assert "assumed to be seen the moment it is awaited" in text
    assert "nothing more is planned" in text


def test_timeline_of_an_algorithm_rollover(db: Path) -> None:
    preview = _json(db, "keys", "timeline", ZONE, "--algorithm", "15")
    publish = SIG_PROPAGATION  # RFC 6781 §4.1.4: signatures first, in every cache
    swap = publish + IPUB  # the new DNSKEY in every cache: the DS is swapped
    remove = swap + IRET_KSK  # the old DS out of every cache
    assert _steps(preview) == _expect(
        preview["from"],
        (0, "generate", "new"),
        (0, "activate", "new"),
        (publish, "publish", "new"),
        (swap, "submit-ds", "new"),
        (swap, "withdraw-ds", "old"),
        (swap, "ds-leaves", "old"),
        (swap, "ds-appears", "new"),
        (remove, "remove", "old"),
        (remove + DNSKEY_EXPIRY, "retire", "old"),
    )
    assert {s["algorithm"] for s in preview["steps"] if s["new_key"]} == {15}
    # A horizon before the end: cut there, and the next step named.
    short = _json(db, "keys", "timeline", ZONE, "--algorithm", "15", "--horizon", "1d")
    assert [(s["after"], s["step"]) for s in short["steps"]] == [(0, "generate"), (0, "activate")]
    assert _posix(short["next_step"]) - _posix(short["from"]) == publish
    cut = run_cli(db, "keys", "timeline", ZONE, "--algorithm", "15", "--horizon", "1d").stdout
    assert "the next step is at " in cut and "after the horizon (--horizon to see it)" in cut
    bad = run_cli(db, "keys", "timeline", ZONE, "--horizon", "soon", check=False)
    assert bad.returncode == 2 and "'soon' is not a duration" in bad.stderr


def test_rollover_of_a_role_the_zone_lacks_says_what_to_use(db: Path, tmp_path: Path) -> None:
    before = (run_cli(db, "zone", "show", ZONE).stdout, _json(db, "keys", "list", ZONE))
    for flag in ("--zsk", "--ksk"):
        for command in ("rollover", "timeline"):
            refused = run_cli(db, "keys", command, ZONE, flag, check=False)
            assert refused.returncode == 1, refused
            assert f"{ZONE} signs with a CSK; use --csk" in refused.stderr
    assert (run_cli(db, "zone", "show", ZONE).stdout, _json(db, "keys", "list", ZONE)) == before

    split_db = tmp_path / "split" / "z.db"
    split_db.parent.mkdir()
    _settled(split_db, Policy(key_style=KeyStyle.KSK_ZSK))
    config = tmp_path / "split.toml"
    config.write_text('[policy.default]\nkey-style = "ksk-zsk"\n')
    conf = ("--config", str(config))
    refused = run_cli(split_db, *conf, "keys", "rollover", ZONE, "--csk", check=False)
    assert refused.returncode == 1
    assert f"{ZONE} signs with a KSK and a ZSK; use --ksk or --zsk" in refused.stderr
    # The roles it has roll as before.
    run_cli(split_db, *conf, "keys", "rollover", ZONE, "--zsk")
