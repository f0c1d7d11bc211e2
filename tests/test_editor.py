"""Changes through the editor: validated, journaled, serial moved by policy, nothing stored
when refused, and rollback to an earlier version."""

from __future__ import annotations

import calendar
from pathlib import Path

import dns.name
import pytest

from nameserver.edit.editor import Author, ZoneEditor
from nameserver.errors import ConflictError, ZoneValidationError
from nameserver.store.store import Store
from nameserver.zone.records import parse_record
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.snapshot import ZoneSnapshot
from tests.zonedata import BASE, ORIGIN, records

WHO = Author("tester", "test change")
DAY = float(calendar.timegm((2026, 11, 28, 12, 0, 0)))


@pytest.fixture
def editor(tmp_path: Path) -> ZoneEditor:
    store = Store(tmp_path / "z.db")
    ed = ZoneEditor(store, clock=lambda: DAY)
    plan = ed.plan_import(ORIGIN, records(), WHO)
    ed.create_or_replace(plan, SerialPolicy.INCREMENT)
    return ed


def rr(name: str, ttl: int, rdtype: str, rdata: str):  # type: ignore[no-untyped-def]
    return parse_record(name, ttl, rdtype, rdata, ORIGIN)


def texts(ed: ZoneEditor) -> set[str]:
    return {r.to_text(ORIGIN) for r in ed.store.records(ORIGIN) if r.rdtype != 6}


def test_add_moves_the_serial_and_journals_who_and_why(editor: ZoneEditor) -> None:
    cs = editor.change_records(ORIGIN, [], [rr("new", 300, "A", "192.0.2.50")], WHO)
    assert (cs.serial_before, cs.serial_after) == (2026010101, 2026010102)
    assert editor.store.zone_info(ORIGIN).serial == 2026010102
    assert "new 300 IN A 192.0.2.50" in texts(editor)
    last = editor.store.changesets(ORIGIN)[-1]
    assert (last.author, last.message) == ("tester", "test change")
    assert [r.rdtype for r in last.removed] == [6] and [r.rdtype for r in last.added] == [6, 1]


def test_refused_change_stores_nothing(editor: ZoneEditor) -> None:
    before = texts(editor)
    with pytest.raises(ZoneValidationError, match="CNAME cannot coexist"):
        editor.change_records(ORIGIN, [], [rr("www", 3600, "A", "192.0.2.1")], WHO)
    with pytest.raises(ZoneValidationError, match="below the delegation"):
        editor.change_records(ORIGIN, [], [rr("x.sub", 3600, "TXT", '"x"')], WHO)
    with pytest.raises(ZoneValidationError, match="differs from 3600"):
        editor.change_records(ORIGIN, [], [rr("host", 60, "A", "192.0.2.99")], WHO)
    assert texts(editor) == before
    assert editor.store.zone_info(ORIGIN).serial == 2026010101


def test_a_change_against_an_old_version_is_refused(editor: ZoneEditor) -> None:
    # What an UPDATE needs: its prerequisites held on ``base``, so a zone that moved on
    # since must refuse the change rather than apply it to a different zone.
    base = ZoneSnapshot.from_rows(ORIGIN, editor.store.rows(ORIGIN))
    editor.change_records(ORIGIN, [], [rr("first", 300, "A", "192.0.2.51")], WHO)
    before = texts(editor)
    with pytest.raises(ConflictError, match="reload the zone"):
        editor.change_records(ORIGIN, [], [rr("second", 300, "A", "192.0.2.52")], WHO, base=base)
    assert texts(editor) == before


def test_duplicate_add_is_nothing_to_do(editor: ZoneEditor) -> None:
    with pytest.raises(ZoneValidationError, match="changes nothing"):
        editor.change_records(ORIGIN, [], [rr("host", 3600, "A", "192.0.2.3")], WHO)


def test_set_rrset_replaces_and_changes_ttl(editor: ZoneEditor) -> None:
    name = dns.name.from_text("host", ORIGIN)
    new = [rr("host", 60, "A", "192.0.2.7"), rr("host", 60, "A", "192.0.2.8")]
    editor.set_rrset(ORIGIN, name, 1, new, WHO)
    got = {t for t in texts(editor) if t.startswith("host ")}
    assert got == {"host 60 IN A 192.0.2.7", "host 60 IN A 192.0.2.8"}


def test_date_policy_serial(tmp_path: Path) -> None:
    ed = ZoneEditor(Store(tmp_path / "d.db"), clock=lambda: DAY)
    ed.create_or_replace(ed.plan_import(ORIGIN, records(), WHO), SerialPolicy.DATE)
    cs = ed.change_records(ORIGIN, [], [rr("d1", 300, "A", "192.0.2.1")], WHO)
    assert cs.serial_after == 2026112800
    cs = ed.change_records(ORIGIN, [], [rr("d2", 300, "A", "192.0.2.1")], WHO)
    assert cs.serial_after == 2026112801


def test_reimport_computes_a_diff(editor: ZoneEditor) -> None:
    rows = [r for r in BASE if r[0] != "chain"] + [("fresh", 300, "TXT", '"hi"')]
    plan = editor.plan_import(ORIGIN, records(rows), WHO)
    cs = plan.changeset
    assert {r.to_text(ORIGIN) for r in cs.removed if r.rdtype != 6} == {"chain 3600 IN CNAME www"}
    assert {r.to_text(ORIGIN) for r in cs.added if r.rdtype != 6} == {'fresh 300 IN TXT "hi"'}
    editor.create_or_replace(plan, SerialPolicy.INCREMENT)
    assert 'fresh 300 IN TXT "hi"' in texts(editor)


def test_rollback_restores_an_earlier_version(editor: ZoneEditor) -> None:
    original = texts(editor)
    editor.change_records(ORIGIN, [], [rr("a1", 300, "A", "192.0.2.1")], WHO)
    editor.change_records(ORIGIN, [rr("host", 3600, "A", "192.0.2.3")], [], WHO)
    cs = editor.rollback(ORIGIN, 2026010101, Author("tester"))
    assert texts(editor) == original
    assert cs.serial_after == 2026010104 and "rollback to serial 2026010101" in cs.message


def test_setting_an_rrset_to_what_it_is_changes_nothing(editor: ZoneEditor) -> None:
    name = dns.name.from_text("host", ORIGIN)
    with pytest.raises(ZoneValidationError, match="changes nothing"):
        editor.set_rrset(ORIGIN, name, 1, [rr("host", 3600, "A", "192.0.2.3")], WHO)
    cs = editor.set_rrset(
        ORIGIN,
        name,
        1,
        [rr("host", 3600, "A", "192.0.2.3"), rr("host", 3600, "A", "192.0.2.4")],
        WHO,
    )
    assert [r.to_text(ORIGIN) for r in cs.removed if r.rdtype != 6] == []
    assert [r.to_text(ORIGIN) for r in cs.added if r.rdtype != 6] == ["host 3600 IN A 192.0.2.4"]
