"""The catalog zone (RFC 9432): its form, and that it follows zones created and deleted."""

from __future__ import annotations

from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.catalog import catalog_records, member_id, sync_catalog
from nameserver.edit.editor import Author, ZoneEditor
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from tests.tools import PROJECT_ROOT

CATALOG = dns.name.from_text("catalog.zonefan.test.")
EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
WHO = Author("test")


def _members(store: Store) -> dict[str, str]:
    """PTR owner label -> member zone, read back from the stored catalog."""
    out = {}
    for r in store.records(CATALOG):
        if r.rdtype == dns.rdatatype.PTR:
            assert r.name.parent() == dns.name.from_text("zones", CATALOG)
            out[r.name.labels[0].decode()] = r.rdata.to_text()
    return out


@pytest.fixture
def editor(tmp_path: Path) -> ZoneEditor:
    store = Store(tmp_path / "z.db")
    ed = ZoneEditor(store)
    parsed = read_zone_file(EXAMPLE)
    ed.create_or_replace(ed.plan_import(parsed.origin, parsed.records, WHO), SerialPolicy.INCREMENT)
    return ed


def _add_zone(ed: ZoneEditor, name: str) -> dns.name.Name:
    """A minimal zone ``name`` created through the editor."""
    path = Path(ed.store.path).parent / f"{name}zone"
    path.write_text(
        f"$ORIGIN {name}\n@ 300 SOA ns1 hostmaster 1 7200 3600 432000 300\n"
        "@ 300 NS ns1.example.net.\n"
    )
    parsed = read_zone_file(path)
    ed.create_or_replace(ed.plan_import(parsed.origin, parsed.records, WHO), SerialPolicy.INCREMENT)
    return parsed.origin


def test_catalog_form_follows_rfc9432() -> None:
    members = [dns.name.from_text("b.test."), dns.name.from_text("a.test.")]
    records = catalog_records(CATALOG, members, serial=5)
    by_type = {(r.name, r.rdtype): r for r in records}
    soa = by_type[(CATALOG, dns.rdatatype.SOA)]
    assert soa.rdata.serial == 5  # type: ignore[attr-defined]
    assert by_type[(CATALOG, dns.rdatatype.NS)].rdata.to_text() == "invalid."
    version = by_type[(dns.name.from_text("version", CATALOG), dns.rdatatype.TXT)]
    assert version.rdata.to_text() == '"2"'
    ptrs = sorted(r.rdata.to_text() for r in records if r.rdtype == dns.rdatatype.PTR)
    assert ptrs == ["a.test.", "b.test."]
    assert all(r.ttl == 0 for r in records)
    # One label per member, unique, stable, and the same for a name in any case.
    ids = {member_id(m) for m in members}
    assert len(ids) == 2 and all(len(i) == 16 and i.isalnum() for i in ids)
    assert member_id(dns.name.from_text("A.Test.")) == member_id(dns.name.from_text("a.test."))


def test_catalog_follows_created_and_deleted_zones(editor: ZoneEditor) -> None:
    store = editor.store
    created = sync_catalog(editor, CATALOG, WHO)
    assert created is not None and created.serial_before is None
    assert set(_members(store).values()) == {"example.test."}
    assert sync_catalog(editor, CATALOG, WHO) is None, "nothing to do when in step"
    new = _add_zone(editor, "second.test.")
    change = sync_catalog(editor, CATALOG, WHO)
    assert change is not None
    added = [r for r in change.added if r.rdtype == dns.rdatatype.PTR]
    assert [r.rdata.to_text() for r in added] == ["second.test."]
    assert added[0].name.labels[0].decode() == member_id(new)
    assert not [r for r in change.removed if r.rdtype == dns.rdatatype.PTR]
    store.delete_zone(new)
    change = sync_catalog(editor, CATALOG, WHO)
    assert change is not None
    assert [r.rdata.to_text() for r in change.removed if r.rdtype == dns.rdatatype.PTR] == [
        "second.test."
    ]
    assert set(_members(store).values()) == {"example.test."}
    # Each step is a journalled change with a new serial (secondaries follow by IXFR).
    serials = [cs.serial_after for cs in store.changesets(CATALOG)]
    assert len(serials) == 3 and serials == sorted(serials)


def test_a_signed_catalog_in_step_is_left_alone(tmp_path: Path, editor: ZoneEditor) -> None:
    sync_catalog(editor, CATALOG, WHO)
    manager = DnssecManager(editor.store, tmp_path / "keys")
    manager.enable(CATALOG, WHO)
    serial = editor.store.serial(CATALOG)
    assert sync_catalog(manager.editor(), CATALOG, WHO) is None
    assert editor.store.serial(CATALOG) == serial
