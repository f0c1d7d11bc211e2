"""Small zones built in code for unit tests of the zone model and the query path."""

from __future__ import annotations

import dns.name

from nameserver.zone.records import Record, parse_record
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.zones import ZoneRegistry

ORIGIN = dns.name.from_text("example.test.")

BASE = [
    ("@", 3600, "SOA", "ns1 hostmaster 2026010101 7200 3600 1209600 300"),
    ("@", 3600, "NS", "ns1"),
    ("@", 3600, "NS", "ns2.example.net."),
    ("@", 3600, "MX", "10 mail"),
    ("ns1", 3600, "A", "192.0.2.1"),
    ("mail", 3600, "A", "192.0.2.2"),
    ("mail", 3600, "AAAA", "2001:db8::2"),
    ("www", 3600, "CNAME", "host"),
    ("host", 3600, "A", "192.0.2.3"),
    ("chain", 3600, "CNAME", "www"),
    ("loop1", 3600, "CNAME", "loop2"),
    ("loop2", 3600, "CNAME", "loop1"),
    ("dangling", 3600, "CNAME", "nothing"),
    ("*.wild", 3600, "A", "192.0.2.9"),
    ("*.wild", 3600, "TXT", '"wild"'),
    ("a.b.deep", 3600, "TXT", '"deep"'),
    ("sub", 3600, "NS", "ns1.sub"),
    ("sub", 3600, "NS", "ns.example.net."),
    ("sub", 3600, "DS", "12345 13 2 " + "00" * 32),
    ("ns1.sub", 3600, "A", "192.0.2.53"),
    ("dn", 3600, "DNAME", "target.example.net."),
]


def records(rows: list[tuple[str, int, str, str]] = BASE) -> list[Record]:
    """Records of ``rows`` in the example.test zone."""
    return [parse_record(n, t, ty, rd, ORIGIN) for n, t, ty, rd in rows]


def snapshot(rows: list[tuple[str, int, str, str]] = BASE) -> ZoneSnapshot:
    """A snapshot of ``rows``."""
    return ZoneSnapshot.from_records(ORIGIN, records(rows))


def registry(rows: list[tuple[str, int, str, str]] = BASE) -> ZoneRegistry:
    """A registry serving ``rows`` as example.test."""
    reg = ZoneRegistry()
    reg.install(snapshot(rows))
    return reg
