"""``zonefan audit report`` against evidence made the ordinary way: a store changed by the
CLI (import, record adds with authors and messages, sign, rollback) and served by a real
``zonefan serve`` that logs the transfers it serves; the sync engine transferring from
it (the sidecar's own source) and pushing to the kit's memory target, whose first push
fails. Every figure of the report is checked against the raw tables, read here
independently of the code under test."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from html import escape
from pathlib import Path
from typing import Any

import dns.name
import dns.query
import dns.zone
import pytest
from click.testing import CliRunner, Result

from nameserver.store.continuity import HealthEvent
from nameserver.store.drills import DrillEndpoint
from nameserver.store.store import Store
from sync.engine import SyncEngine, TargetSpec
from sync.errors import TargetUnavailableError
from sync.providers.testkit.memory import Fault, MemoryTarget
from sync.settings import Address, TsigKey
from sync.source import ZoneSource
from sync.state import SyncState
from tests.servers import XfrKey, ZonefanServer, transfer_config
from tests.servers.zonefan_server import run_cli
from tests.test_file_modes import umask
from tests.tools import PROJECT_ROOT, write_private
from tests.wait import wait_until
from zonefan.audit import (
    SECTIONS,
    Period,
    build_report,
    iso,
    load_sync_evidence,
    register_section,
)
from zonefan.audit_render import render_html, render_json, render_text
from zonefan.cli import main

ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
XFR = XfrKey("audit-key", base64.b64encode(b"audit-report-test-secret-0123456").decode())
KEY = TsigKey(dns.name.from_text("audit-key."), "hmac-sha256", base64.b64decode(XFR.secret))
HOSTILE_AUTHOR = "eve <script>alert('a')</script>"
HOSTILE_MESSAGE = "why: <script>document.write(1)</script> & more"


@dataclass(frozen=True)
class Evidence:
    db: Path
    state: Path
    work: Path


def _serve_change(server: ZonefanServer, *args: str) -> None:
    """A CLI change, then wait until the server serves its serial."""
    before = server.serial(ZONE)
    server.cli(*args)
    wait_until(lambda: server.serial(ZONE) != before, what=f"the server serves `{args}`")


def _transfers(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM transfers").fetchone()[0])


def _axfr(server: ZonefanServer) -> None:
    """A secondary's AXFR (dnspython's client, TSIG-signed); wait until it is logged."""
    logged = _transfers(server.db)
    xfr = dns.query.xfr(
        "127.0.0.1", ORIGIN, port=server.port, keyring={KEY.name: KEY.dns_key}, timeout=5
    )
    dns.zone.from_xfr(xfr)
    wait_until(lambda: _transfers(server.db) > logged, what="the transfer is logged")


async def _sync(engine: SyncEngine, fail_first: bool) -> None:
    """What the sidecar does on a NOTIFY: transfer, push; a failed push is retried."""
    target = engine.targets["mem"].target
    assert isinstance(target, MemoryTarget)
    if fail_first:
        target.faults.append(Fault(TargetUnavailableError("mem", "HTTP 503 <b>down</b>"), 1))
    await engine.refresh_zone(ORIGIN)
    outcomes = await engine.drain()
    while not all(o.ok for o in outcomes):
        outcomes = await engine.drain()


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    work = tmp_path_factory.mktemp("audit")
    db = work / "z.db"
    run_cli(
        db, "zone", "import", str(PROJECT_ROOT / "zones" / "example.test.zone"),
        "--author", "alice", "-m", "first import",
    )  # fmt: skip
    config = work / "zonefan.toml"
    write_private(config, transfer_config(XFR))
    state = work / "sync.db"
    target = MemoryTarget("mem")
    with ZonefanServer(work, db=db, probe_name=ZONE, config=config) as server:
        engine = SyncEngine(
            SyncState(state),
            ZoneSource(Address("127.0.0.1", server.port), KEY, timeout=5),
            [ORIGIN],
            {"mem": TargetSpec(target=target)},
        )
        _serve_change(
            server, "record", "add", ZONE, "www2", "300", "A", "192.0.2.55",
            "--author", HOSTILE_AUTHOR, "-m", HOSTILE_MESSAGE,
        )  # fmt: skip
        _serve_change(
            server, "record", "add", ZONE, "www3", "300", "A", "192.0.2.56",
            "--author", "bob", "-m", "second host",
        )  # fmt: skip
        _axfr(server)
        asyncio.run(_sync(engine, fail_first=True))
        _serve_change(server, "zone", "sign", ZONE, "--author", "carol", "-m", "sign it")
        signed = server.serial(ZONE)
        assert signed is not None
        _serve_change(
            server, "record", "add", ZONE, "www4", "300", "A", "192.0.2.57",
            "--author", "bob", "-m", "a mistake",
        )  # fmt: skip
        _serve_change(
            server, "zone", "rollback", ZONE, str(signed), "--author", "dave", "-m", "undo it"
        )
        asyncio.run(_sync(engine, fail_first=False))
        _axfr(server)
        engine.state.close()
    _continuity(db)
    yield Evidence(db, state, work)


POOL = dns.name.from_text("www.example.test.")
ELSEWHERE = dns.name.from_text("www.other.test.")  # a pool of a zone the store lacks


def _continuity(db: Path) -> None:
    """Health events, drains and drills, written through the store's own methods (what
    `serve`, `drain` and `drill` write is tested with them; here: what the report reads)."""
    with Store(db) as store:
        # In the fixture's own past, so that a report up to now holds them; hundredths of a
        # second apart, between the first change and the next.
        t = min(c["time"] for c in raw_changes(db))
        store.record_health(
            [
                HealthEvent(t, POOL, "started", "health checks started: 2 of 2 members"),
                HealthEvent(
                    t + 0.01, POOL, "withdrawn", "HTTP 503 <b>", "192.0.2.10", "fra", ("local", "b")
                ),
                HealthEvent(t + 0.02, ELSEWHERE, "withdrawn", "timeout", "192.0.2.99", "fra"),
                HealthEvent(
                    t + 0.03, POOL, "restored", "HTTP 200", "192.0.2.10", "fra", ("local",)
                ),
            ]
        )
        ended = store.add_drain("fra", None, t + 0.04, "ops", "kernel update")
        store.end_drains([ended.id], t + 0.1, "ops", "done")
        store.add_drain("ams", dns.name.from_text("other.test."), t + 0.05, "ops", "elsewhere")
        store.add_drain("ams", ORIGIN, t + 0.06, "ops", HOSTILE_MESSAGE)
        passed = store.start_drill("fra", [ORIGIN], "ops", "quarterly", t + 0.2, 60)
        store.finish_drill(
            dataclasses.replace(
                passed,
                outcome="passed",
                restore_start=3.0,
                finished=t + 0.25,
                endpoints=(
                    DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.05, 0.04, 3),
                    DrillEndpoint("secondary", "knot", "127.0.0.1:5301", True, 0.21, 1.1, 9),
                    DrillEndpoint("target", "desec", None, False, note="no address"),
                ),
            )
        )
        failed = store.start_drill("ams", [ORIGIN], "ops", "after the move", t + 0.3, 60)
        store.finish_drill(
            dataclasses.replace(
                failed,
                outcome="failed",
                restore_start=60.5,
                finished=t + 0.4,
                endpoints=(
                    DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.05, 0.04, 3),
                    DrillEndpoint("secondary", "nsd", "127.0.0.1:5302", True, None, 0.3, 1200),
                ),
            )
        )


# -- the raw tables, read independently ----------------------------------------------------


def raw_changes(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, serial_before, serial_after, author, message, time, "
            "(SELECT count(*) FROM changeset_records r WHERE r.changeset_id = c.id "
            " AND op = 'add'), "
            "(SELECT count(*) FROM changeset_records r WHERE r.changeset_id = c.id "
            " AND op = 'remove') FROM changesets c ORDER BY id"
        ).fetchall()
    keys = ("id", "serial_before", "serial_after", "author", "message", "time", "added", "removed")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def raw_events(state: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(state) as conn:
        rows = conn.execute(
            "SELECT at, target, zone, kind, serial, detail FROM events ORDER BY id"
        ).fetchall()
    keys = ("at", "target", "zone", "kind", "serial", "detail")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def seconds_of(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def floor_iso(t: float, plus_us: int = 0) -> str:
    """``t`` as ISO 8601 to the microsecond, rounded down (then ``plus_us`` later)."""
    us = math.floor(Fraction(t) * 1_000_000) + plus_us  # exact: t * 1e6 may round up
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat()


def just_after(t: float) -> str:
    """The first microsecond whose time, read as seconds, is after ``t``: at 1.8e9 s a
    float is 0.24 µs apart, so the next microsecond may still read as ``t`` itself."""
    return next(floor_iso(t, k) for k in range(1, 4) if seconds_of(floor_iso(t, k)) > t)


def report(ev: Evidence, *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(
        main, ["--db", str(ev.db), "audit", "report", "--sync-state", str(ev.state), *args]
    )
    assert (result.exit_code == 0) == ok, result.output
    return result


def json_report(ev: Evidence, *args: str) -> dict[str, Any]:
    data = json.loads(report(ev, "--since", "2000-01-01", "--format", "json", *args).stdout)
    assert isinstance(data, dict)
    return data


def the_zone(data: dict[str, Any]) -> dict[str, Any]:
    (zone,) = data["zones"]
    assert zone["zone"] == ZONE
    return dict(zone)


# -- the report ----------------------------------------------------------------------------


def test_every_change_is_listed_with_author_message_time_and_counts(evidence: Evidence) -> None:
    raw = raw_changes(evidence.db)
    assert [r["author"] for r in raw] == ["alice", HOSTILE_AUTHOR, "bob", "carol", "bob", "dave"]
    changes = the_zone(json_report(evidence))["changes"]
    assert [c["id"] for c in changes] == [r["id"] for r in raw]
    for c, r in zip(changes, raw, strict=True):
        assert (c["serial_before"], c["serial_after"]) == (r["serial_before"], r["serial_after"])
        assert (c["author"], c["message"]) == (r["author"], r["message"])
        assert abs(seconds_of(c["time"]) - r["time"]) <= 1e-6
        assert (c["added"]["count"], c["removed"]["count"]) == (r["added"], r["removed"])
    www4 = next(c for c in changes if c["message"] == "a mistake")
    assert "www4.example.test. 300 IN A 192.0.2.57" in www4["added"]["records"]
    undo = next(c for c in changes if c["author"] == "dave")
    assert "www4.example.test. 300 IN A 192.0.2.57" in undo["removed"]["records"]


def test_rrs_listed_are_capped_and_the_counts_stay_whole(evidence: Evidence) -> None:
    changes = the_zone(json_report(evidence, "--rr-limit", "2"))["changes"]
    signing = next(c for c in changes if c["author"] == "carol")
    assert signing["added"]["count"] > 50 and signing["added"]["dnssec"] > 0
    assert signing["added"]["listed"] == len(signing["added"]["records"]) == 2
    # The zone's own data comes before the signer's records: the new host and the SOA,
    # not the RRSIGs and NSECs the same change added.
    mistake = next(c for c in changes if c["message"] == "a mistake")
    assert mistake["added"]["count"] - mistake["added"]["dnssec"] == 2
    assert mistake["added"]["dnssec"] > 0
    types = sorted(rr.split()[3] for rr in mistake["added"]["records"])
    assert types == ["A", "SOA"]


def test_the_journal_is_read_a_page_at_a_time_with_the_same_result(evidence: Evidence) -> None:
    with Store(evidence.db, read_only=True) as store:
        whole = list(store.changeset_summaries(ORIGIN, sample=5))
        paged = list(store.changeset_summaries(ORIGIN, sample=5, page=2))
    assert paged == whole and len(whole) == 6


def test_since_and_until_filter_exactly_at_the_boundaries(evidence: Evidence) -> None:
    raw = raw_changes(evidence.db)
    third, fifth = raw[2], raw[4]

    def ids(since: str, until: str) -> list[int]:
        data = json.loads(
            report(evidence, "--since", since, "--until", until, "--format", "json").stdout
        )
        return [c["id"] for c in the_zone(data)["changes"]]

    # At the time of a change (to the microsecond, rounded down: the command line's
    # precision): --since includes it and --until excludes it. At the first instant after
    # it that a date names, the other way round.
    assert ids(floor_iso(third["time"]), floor_iso(fifth["time"])) == [raw[2]["id"], raw[3]["id"]]
    after = just_after(third["time"]), just_after(fifth["time"])
    assert ids(*after) == [raw[3]["id"], raw[4]["id"]]


def test_key_events_are_the_keys_recorded_times(evidence: Evidence) -> None:
    columns = {
        "created": "generated",
        "publish": "published",
        "ready": "ready",
        "active": "active",
        "retire": "retired",
        "remove": "removed",
        "ds_submitted": "ds-submitted",
        "ds_seen": "ds-seen",
        "ds_withdrawn": "ds-withdrawn",
        "ds_gone": "ds-gone",
        "roll_requested": "rollover-requested",
        "compromised": "compromised",
    }
    with sqlite3.connect(evidence.db) as conn:
        keys = conn.execute(
            f"SELECT key_tag, role, {', '.join(columns)} FROM dnssec_keys"
        ).fetchall()
    assert keys
    expected = {
        (tag, role, event, t)
        for tag, role, *times in keys
        for event, t in zip(columns.values(), times, strict=True)
        if t is not None
    }
    got = the_zone(json_report(evidence))["key_events"]
    assert {(e["key_tag"], e["role"], e["event"], seconds_of(e["time"])) for e in got} == expected
    assert {e["source"] for e in got} == {"observed"}  # the period ends now
    # Recorded (in whole seconds) by `zone sign`: after the change before it, by its commit.
    raw = raw_changes(evidence.db)
    signing = next(i for i, r in enumerate(raw) if r["author"] == "carol")
    low, high = math.floor(raw[signing - 1]["time"]), raw[signing]["time"]
    assert all(low <= seconds_of(e["time"]) <= high for e in got)


def test_key_steps_ahead_are_the_planners_as_keys_timeline_shows_them(
    evidence: Evidence,
) -> None:
    """A period reaching past the report's time holds the planned steps, each with the
    date `keys timeline` gives it."""
    names = {
        "generate": "generated",
        "publish": "published",
        "activate": "active",
        "submit-ds": "ds-submitted",
        "withdraw-ds": "ds-withdrawn",
        "retire": "retired",
        "remove": "removed",
        "ds-appears": "ds-seen",
        "ds-leaves": "ds-gone",
    }
    timeline = json.loads(
        run_cli(evidence.db, "keys", "timeline", ZONE, "--horizon", "400d", "--json").stdout
    )
    until = seconds_of(timeline["until"]) - 86400  # inside both horizons
    expected = {
        (s["key"], names[s["step"]], seconds_of(s["at"]))
        for s in timeline["steps"]
        if seconds_of(s["at"]) < until
    }
    assert expected  # the new CSK's DS is yet to be submitted and seen
    data = json_report(evidence, "--until", iso(until) or "")
    planned = [e for e in the_zone(data)["key_events"] if e["source"] == "planned"]
    assert {(e["key_id"], e["event"], seconds_of(e["time"])) for e in planned} == expected
    assert all(seconds_of(e["time"]) > seconds_of(data["generated_at"]) for e in planned)


def test_sync_convergence_is_push_time_minus_commit_time(evidence: Evidence) -> None:
    raw = raw_changes(evidence.db)
    pushes = [e for e in raw_events(evidence.state) if e["kind"] == "push"]
    assert len(pushes) == 2  # the sidecar pushed serials 3 and 6 only
    expected = []
    for change in raw:
        push = next(
            p for p in pushes if p["at"] >= change["time"] and p["serial"] >= change["serial_after"]
        )
        expected.append((change["serial_after"], push["serial"], push["at"] - change["time"]))
    rows = the_zone(json_report(evidence))["sync"]
    assert [r["target"] for r in rows] == ["mem"] * len(raw)
    got = [(r["serial"], r["delivered_serial"], r["seconds"]) for r in rows]
    for (serial, delivered, seconds), want in zip(got, expected, strict=True):
        assert (serial, delivered) == want[:2]
        assert seconds == pytest.approx(want[2], abs=1e-6)
    assert {r["status"] for r in rows} == {"converged"}
    summary = the_zone(json_report(evidence))["summary"]["sync"]["mem"]
    assert summary["serials"] == summary["converged"] == len(raw)
    assert summary["max_seconds"] == pytest.approx(max(w[2] for w in expected), abs=1e-6)


def test_failures_are_listed_and_tied_to_the_serials_they_delayed(evidence: Evidence) -> None:
    (error,) = [e for e in raw_events(evidence.state) if e["kind"] == "error"]
    zone = the_zone(json_report(evidence))
    (failure,) = zone["sync_failures"]
    assert failure["target"] == "mem" and failure["kind"] == "error"
    assert failure["message"] == error["detail"] and "HTTP 503" in failure["message"]
    assert abs(seconds_of(failure["time"]) - error["at"]) <= 1e-6
    delayed = [r["serial"] for r in zone["sync"] if r["failures"]]
    first_three = [r["serial_after"] for r in raw_changes(evidence.db)[:3]]
    assert delayed == first_three  # committed before the failure, pushed after it


def test_secondaries_are_the_transfer_log(evidence: Evidence) -> None:
    with sqlite3.connect(evidence.db) as conn:
        raw = conn.execute("SELECT client, serial_to, kind, time FROM transfers ORDER BY id")
        expected = [(c, s, k) for c, s, k, _ in raw.fetchall()]
    zone = the_zone(json_report(evidence))
    got = [(t["address"], t["serial"], t["kind"]) for t in zone["secondaries"]]
    assert got == expected and len(got) >= 4  # two AXFRs of ours, two of the sidecar
    last = raw_changes(evidence.db)[-1]
    rows = [r for r in zone["secondary_convergence"] if r["serial"] == last["serial_after"]]
    assert [r["status"] for r in rows] == ["converged"]


def _check_fields(value: Any, path: str, schema: dict[str, list[str]]) -> int:
    """Check ``value`` against the README's field list; how many objects were checked."""
    checked = 0
    if isinstance(value, list):
        for item in value:
            checked += _check_fields(item, path + "[]", schema)
        return checked
    if not isinstance(value, dict):
        return 0
    if path in schema:
        assert sorted(value) == sorted(schema[path]), path
        checked += 1
        for key, item in value.items():
            checked += _check_fields(item, f"{path}.{key}" if path != "report" else key, schema)
    elif path.rsplit(".", 1)[0] + ".*" in schema:
        for item in value.values():
            checked += _check_fields(item, path.rsplit(".", 1)[0] + ".*", schema)
    return checked


def readme_schema() -> dict[str, list[str]]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- audit-schema -->", 1)[1].split("```text\n", 1)[1].split("```")[0]
    schema = {}
    for line in block.splitlines():
        name, fields = line.split(": ", 1)
        schema[name] = [f.strip() for f in fields.split(",")]
    return schema


def test_the_json_has_exactly_the_fields_the_readme_documents(evidence: Evidence) -> None:
    data = json_report(evidence)
    assert (data["schema"], data["version"]) == ("zonefan-audit-report", 1)
    schema = readme_schema()
    checked = _check_fields(data, "report", schema)
    assert checked > 50
    # Every documented object occurs in this report, so each line above was checked.
    seen = set()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item, path + "[]")
        elif isinstance(value, dict):
            seen.add(path)
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path != "report" else key)

    walk(data, "report")
    wild = {p for p in schema if p.endswith(".*")}
    assert set(schema) - wild <= seen


def test_the_schema_check_can_fail() -> None:
    schema = {"report": ["a", "b"]}
    with pytest.raises(AssertionError):
        _check_fields({"a": 1}, "report", schema)


def test_html_has_the_json_data_escaped_and_nothing_external(evidence: Evidence) -> None:
    with Store(evidence.db, read_only=True) as store:
        period = Period(0.0, 4e9)
        data = build_report(store, [ORIGIN], period, 3e9, load_sync_evidence(evidence.state, 0))
    html = render_html(data)
    for change in the_zone(data)["changes"]:
        assert f">{change['serial_after']}<" in html
        assert escape(change["author"]) in html and escape(change["message"]) in html
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert not re.search(r"\b(src|href)\s*=|<link|@import|url\(", html, re.IGNORECASE)
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert json.loads(render_json(data)) == data
    assert "6 change(s)" in render_text(data)


def test_html_written_to_a_file(evidence: Evidence, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    with umask(0o022):  # the usual one: it would make a plain file 0644
        report(evidence, "--since", "2000-01-01", "--format", "html", "-o", str(out))
    html = out.read_text(encoding="utf-8")
    assert "<script" not in html.lower() and escape(HOSTILE_AUTHOR) in html
    assert not list(tmp_path.glob(".report.html.*"))  # no temporary file left
    assert out.stat().st_mode & 0o777 == 0o640  # zonefan's data files' mode


def test_text_summary_and_json_flag(evidence: Evidence) -> None:
    out = report(evidence, "--since", "2000-01-01").stdout
    assert "example.test. (serial" in out and "6 change(s)" in out and "1 sync failure(s)" in out
    flag = json.loads(report(evidence, "--since", "2000-01-01", "--json").stdout)
    assert flag["zones"] == json_report(evidence)["zones"]  # --json is --format json


def test_a_new_section_shows_in_every_format(evidence: Evidence) -> None:
    class Drills:
        key = "drills"
        title = "Drills <measured>"

        def collect(self, ctx: Any) -> list[dict[str, Any]]:
            return [{"region": "fra", "seconds": 4.5}]

        def summarise(self, rows: Any) -> dict[str, Any]:
            return {"count": len(rows)}

    with Store(evidence.db, read_only=True) as store:
        data = build_report(store, [ORIGIN], Period(0.0, 4e9), 3e9, None, 5, [*SECTIONS, Drills()])
    zone = the_zone(data)
    assert zone["drills"] == [{"region": "fra", "seconds": 4.5}]
    assert zone["summary"]["drills"] == {"count": 1}
    assert "Drills &lt;measured&gt;" in render_html(data) and ">fra<" in render_html(data)
    assert "Drills <measured>: count 1" in render_text(data)


def test_a_section_key_is_taken_once() -> None:
    class Clash:
        title = "Clash"

        def __init__(self, key: str) -> None:
            self.key = key

        def collect(self, ctx: Any) -> list[dict[str, Any]]:
            return []

        def summarise(self, rows: Any) -> dict[str, Any]:
            return {}

    for key in ("changes", "summary", "zone"):
        with pytest.raises(ValueError, match="already taken"):
            register_section(Clash(key))
    assert [s.key for s in SECTIONS].count("changes") == 1


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since"),
        (["--since", "2026-13-01"], "--since"),
        (["--since", "2026-12-01", "--until", "2026-12-01T25:00"], "--until"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], "is not after --since"),
        (["--since", "2026-12-01", "--zone", "nowhere.test"], "nowhere.test. is not in the store"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    evidence: Evidence, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "r.json"
    result = report(evidence, *args, "--format", "json", "-o", str(out), ok=False)
    assert message in result.output
    if "--since" in message and "not after" not in message:
        assert "ISO 8601" in result.output
    assert not out.exists()


def test_a_missing_sync_state_is_an_error_not_an_empty_section(
    evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./sync.toml
    out = tmp_path / "r.json"
    base = ["--db", str(evidence.db), "audit", "report", "--since", "2026-01-01", "-o", str(out)]
    missing = tmp_path / "nope.db"
    result = CliRunner().invoke(main, [*base, "--sync-state", str(missing)])
    assert result.exit_code != 0 and f"no sync state at {missing}" in result.output
    assert not missing.exists()  # not created by looking
    result = CliRunner().invoke(main, base)
    assert result.exit_code != 0 and "--no-sync" in result.output
    assert not out.exists()
    result = CliRunner().invoke(main, [*base, "--no-sync", "--format", "json"])
    assert result.exit_code == 0, result.output
    zone = json.loads(out.read_text(encoding="utf-8"))["zones"][0]
    assert zone["sync"] == [] and len(zone["changes"]) == 6


def test_a_file_that_is_not_a_sync_state_is_refused(evidence: Evidence) -> None:
    before = evidence.db.read_bytes()
    result = CliRunner().invoke(
        main,
        ["--db", str(evidence.db), "audit", "report", "--since", "2026-01-01",
         "--sync-state", str(evidence.db)],
    )  # fmt: skip
    assert result.exit_code != 0 and "is not a zonefan sync state file" in result.output
    assert evidence.db.read_bytes() == before


def test_the_sync_state_is_only_read(evidence: Evidence) -> None:
    before = evidence.state.read_bytes()
    report(evidence, "--since", "2000-01-01")
    assert evidence.state.read_bytes() == before


def test_iso_is_utc_to_the_microsecond() -> None:
    assert iso(1_800_000_000.25) == "2027-01-15T08:00:00.250000Z"
    assert iso(None) is None


# -- continuity: health checks, drains, drills -----------------------------------------------


def test_health_drains_and_drills_are_the_stored_ones_of_the_zone(evidence: Evidence) -> None:
    [zone] = json_report(evidence)["zones"]
    assert [(h["event"], h["member"], h["checkers"]) for h in zone["health"]] == [
        ("started", None, []),
        ("withdrawn", "192.0.2.10", ["local", "b"]),  # not the pool of other.test.
        ("restored", "192.0.2.10", ["local"]),
    ]
    assert zone["summary"]["health"] == {
        "count": 3,
        "events": {"started": 1, "withdrawn": 1, "restored": 1},
    }
    drains = {(d["region"], d["scope"]): d for d in zone["drains"]}
    assert set(drains) == {("fra", "every zone"), ("ams", ZONE)}
    assert drains["fra", "every zone"]["seconds"] == 0.06
    assert drains["fra", "every zone"]["undrained_by"] == "ops"
    assert drains["ams", ZONE]["undrained"] is None
    assert zone["summary"]["drains"] == {"count": 2, "in_force": 1}

    passed, failed = zone["drills"]
    assert (passed["outcome"], failed["outcome"]) == ("passed", "failed")
    assert passed["slowest_drained"] == {"name": "knot", "seconds": 0.21}
    assert passed["slowest_restored"] == {"name": "knot", "seconds": 1.1}
    assert passed["failures"] == []
    assert [e["measured"] for e in passed["endpoints"]] == [True, True, False]
    assert failed["slowest_drained"] == {"name": "nsd", "seconds": None}
    [failure] = failed["failures"]
    assert "nsd" in failure and "drained" in failure
    # A drill that never converged leaves the worst time unknown, not its best part.
    assert zone["summary"]["drills"] == {
        "count": 2,
        "failed": 1,
        "max_drained_seconds": None,
        "max_restored_seconds": 1.1,
    }
    totals = json_report(evidence)["summary"]
    assert (totals["drills"], totals["drills_failed"], totals["drains"]) == (2, 1, 2)


def test_continuity_rows_keep_to_the_period(evidence: Evidence) -> None:
    with Store(evidence.db, read_only=True) as store:
        [first, second] = store.drills()
        [fra] = [d for d in store.drains(active_only=False) if d.region == "fra"]
    between = ["--since", just_after(first.start), "--until", just_after(second.start)]
    [zone] = json_report(evidence, *between)["zones"]
    assert [d["id"] for d in zone["drills"]] == [second.id]
    assert zone["health"] == []  # every health event is before the first drill
    assert fra.undrained is not None
    # The fra drain ended before the period; the ams drain of the zone is still in force.
    assert [d["region"] for d in zone["drains"]] == ["ams"]


def test_the_html_shows_the_drills_escaped(evidence: Evidence) -> None:
    html = report(evidence, "--since", "2000-01-01", "--format", "html").stdout
    assert "Failover drills" in html and "Maintenance drains" in html
    assert "quarterly" in html and "knot" in html
    assert "<b>" not in html and escape("HTTP 503 <b>") in html
