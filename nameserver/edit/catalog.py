"""A catalog zone (RFC 9432, schema version 2) listing every zone of the store, so that
secondaries that consume catalogs (Knot, BIND, NSD >= 4.9) provision new zones by
themselves and drop deleted ones.

The catalog is an ordinary zone of the store: it is kept in step by a change like any
other (journalled, so secondaries follow it by IXFR), made by :func:`sync_catalog`
whenever a zone is created or deleted. Its content (RFC 9432 §4):

* the apex: an SOA and the single NS ``invalid.`` (§4.1), both TTL 0;
* ``version`` TXT ``"2"`` (§4.3.1);
* one ``<id>.zones`` PTR per member zone (§4.2), where ``<id>`` is derived from the member's
  name, so it is stable across restarts and the same on every run.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from nameserver.edit.editor import Author, ZoneEditor, change_size
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record
from nameserver.zone.serial import SerialPolicy

SCHEMA_VERSION = "2"
_INVALID = dns.name.from_text("invalid.")
_SOA_TIMERS = "3600 600 2419200 0"  # refresh, retry, expire, negative TTL: consumers poll it


def member_id(zone: dns.name.Name) -> str:
    """The ``<id>`` label of ``zone`` in the catalog: a hash of its lowercased name (RFC
    9432 §4.2 asks only that it be unique within the catalog)."""
    digest = hashlib.sha256(zone.canonicalize().to_wire() or b"").digest()
    return base64.b32hexencode(digest[:10]).decode("ascii").lower()


def catalog_records(
    catalog: dns.name.Name, members: Iterable[dns.name.Name], serial: int = 1
) -> list[Record]:
    """Every record of the catalog zone ``catalog`` listing ``members``."""
    soa = dns.rdata.from_text(
        dns.rdataclass.IN, dns.rdatatype.SOA, f"invalid. invalid. {serial} {_SOA_TIMERS}"
    )
    ns = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.NS, _INVALID.to_text())
    version = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, f'"{SCHEMA_VERSION}"')
    records = [
        Record(catalog, 0, soa),
        Record(catalog, 0, ns),
        Record(dns.name.from_text("version", catalog), 0, version),
    ]
    zones = dns.name.from_text("zones", catalog)
    for member in sorted(set(members)):
        ptr = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.PTR, member.to_text())
        records.append(Record(dns.name.Name((member_id(member).encode(), *zones.labels)), 0, ptr))
    return records


def sync_catalog(editor: ZoneEditor, catalog: dns.name.Name, author: Author) -> Changeset | None:
    """Make the catalog zone list exactly the store's other zones; creates it when it does
    not exist yet. Returns the change made, None when it was already right."""
    store = editor.store
    members: Sequence[dns.name.Name] = [z for z in store.zone_names() if z != catalog]
    if not store.has_zone(catalog):
        plan = editor.plan_import(catalog, catalog_records(catalog, members), author)
        return editor.create_or_replace(plan, SerialPolicy.INCREMENT)
    wanted = catalog_records(catalog, members, store.serial(catalog))
    plan = editor.plan_import(catalog, wanted, author)
    if change_size(plan.changeset).is_empty:  # a signed catalog: its signatures do not count
        return None
    return editor.create_or_replace(plan, store.serial_policy(catalog))
