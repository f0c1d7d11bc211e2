"""The record value type shared by the store, the zone model, zone files and the server."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.ttl

from nameserver.errors import RecordSyntaxError

MAX_TTL = 2**31 - 1  # RFC 2181 §8


class Record(NamedTuple):
    """One resource record of class IN: absolute owner name, TTL and rdata."""

    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def rdtype(self) -> int:
        """The record's type code."""
        return int(self.rdata.rdtype)

    @property
    def identity(self) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
        """What makes two records the same RR (RFC 2181 §5): owner, type and rdata, not TTL."""
        return (self.name, int(self.rdata.rdtype), self.rdata)

    def to_text(self, origin: dns.name.Name | None = None) -> str:
        """Presentation form, names relative to ``origin`` when given."""
        name = self.name.relativize(origin) if origin is not None else self.name
        rdtype = type_text(self.rdata.rdtype)
        rdata = self.rdata.to_text(origin=origin, relativize=origin is not None)
        return f"{name} {self.ttl} IN {rdtype} {rdata}"


class WireRecord(NamedTuple):
    """One RR of class IN in wire form, as the signer makes it: owner and rdata
    uncompressed with their original case. The store writes it without decoding it
    (for the signer's types, whose canonical form it derives from the wire, see
    ``nameserver.store.codec``); ``name``, ``rdata`` and ``to_text`` decode on demand."""

    owner: bytes
    rdtype: int
    ttl: int
    wire: bytes

    @property
    def name(self) -> dns.name.Name:
        """The owner as a dnspython name."""
        return dns.name.from_wire(self.owner, 0)[0]

    @property
    def rdata(self) -> dns.rdata.Rdata:
        """The rdata as a dnspython object."""
        return decode_rdata(self.rdtype, self.wire)

    @property
    def identity(self) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
        """As :attr:`Record.identity`."""
        return (self.name, self.rdtype, self.rdata)

    def record(self) -> Record:
        """The same RR as a :class:`Record`."""
        return Record(self.name, self.ttl, self.rdata)

    def to_text(self, origin: dns.name.Name | None = None) -> str:
        """As :meth:`Record.to_text`."""
        return self.record().to_text(origin)


#: An RR of a changeset: decoded, or in wire form as the signer made it.
AnyRecord = Record | WireRecord


def type_text(rdtype: int) -> str:
    """The mnemonic of a type code (``TYPE65534`` for unknown ones)."""
    return str(dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype)))


def decode_rdata(rdtype: int, wire: bytes) -> dns.rdata.Rdata:
    """Rdata from its uncompressed wire form."""
    t = dns.rdatatype.RdataType.make(rdtype)
    return dns.rdata.from_wire(dns.rdataclass.IN, t, wire, 0, len(wire))


def rdata_wire(rdata: dns.rdata.Rdata) -> bytes:
    """Uncompressed wire form of rdata, names in the case they were given."""
    wire = rdata.to_wire()
    assert wire is not None
    return wire


def canonical_key(name: dns.name.Name) -> tuple[bytes, ...]:
    """A sort key that orders names in DNSSEC canonical order (RFC 4034 §6.1)."""
    return tuple(label.lower() for label in reversed(name.labels))


def parse_name(text: str, origin: dns.name.Name) -> dns.name.Name:
    """Parse an owner name; ``@`` and relative names are taken relative to ``origin``."""
    try:
        if text == "@":
            return origin
        return dns.name.from_text(text, origin=origin)
    except dns.exception.DNSException as e:
        raise RecordSyntaxError(f"name {text!r}: {e}") from e


def parse_rdtype(text: str) -> int:
    """Parse a type mnemonic (``A``, ``TYPE65``)."""
    try:
        rdtype = dns.rdatatype.from_text(text)
    except dns.exception.DNSException as e:
        raise RecordSyntaxError(f"type {text!r} is not a known RR type") from e
    if dns.rdatatype.is_metatype(rdtype) or rdtype == dns.rdatatype.OPT:
        raise RecordSyntaxError(f"type {text!r} is a meta-type and cannot be stored")
    return int(rdtype)


# A TTL as written: seconds or BIND units (1h30m), whatever its size; a sign makes a
# number that is out of range rather than malformed.
_TTL_FORM = re.compile(r"[+-]?\d+|(?:\d+[smhdw])+", re.IGNORECASE)


def is_ttl_form(word: str) -> bool:
    """True when ``word`` is written as a TTL (its value may still be out of range)."""
    return _TTL_FORM.fullmatch(word) is not None


def ttl_out_of_range(ttl: str | int) -> str:
    """The one message for a TTL outside what RFC 2181 §8 allows."""
    return f"TTL {ttl} is outside 0..{MAX_TTL} (RFC 2181 §8)"


def parse_ttl(value: str | int) -> int:
    """Parse a TTL (seconds or BIND units like ``1h``) and check its range (RFC 2181 §8)."""
    try:
        ttl = int(dns.ttl.from_text(value)) if isinstance(value, str) else int(value)
    except dns.exception.DNSException as e:
        # dnspython refuses values past 2**32 - 1 (and signs) as it does garbage.
        if isinstance(value, str) and is_ttl_form(value):
            raise RecordSyntaxError(ttl_out_of_range(value)) from e
        raise RecordSyntaxError(
            f"TTL {value!r} is not a number of seconds (or BIND units like 1h30m)"
        ) from e
    if not 0 <= ttl <= MAX_TTL:
        raise RecordSyntaxError(ttl_out_of_range(ttl))
    return ttl


def parse_rdata(rdtype: int, text: str, origin: dns.name.Name) -> dns.rdata.Rdata:
    """Parse rdata in presentation form; relative names in it are relative to ``origin``."""
    try:
        t = dns.rdatatype.RdataType.make(rdtype)
        return dns.rdata.from_text(dns.rdataclass.IN, t, text, origin=origin, relativize=False)
    except dns.exception.DNSException as e:
        tname = type_text(rdtype)
        raise RecordSyntaxError(f"{tname} rdata {text!r} is malformed: {e}") from e


def parse_record(
    name: str, ttl: str | int, rdtype: str, rdata: str, origin: dns.name.Name
) -> Record:
    """Build a :class:`Record` from its text fields, raising :class:`RecordSyntaxError`."""
    t = parse_rdtype(rdtype)
    return Record(parse_name(name, origin), parse_ttl(ttl), parse_rdata(t, rdata, origin))


def dedupe(records: Iterable[Record]) -> list[Record]:
    """Drop repeated RRs (same owner, type and rdata), keeping the first; order is kept."""
    seen: set[tuple[bytes, int, bytes]] = set()
    out: list[Record] = []
    for r in records:
        key = identity_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def identity_key(record: Record) -> tuple[bytes, int, bytes]:
    """:attr:`Record.identity` as bytes, cheap to hash: lowercased owner, type and the
    canonical rdata (RFC 4034 §6.2: names in rdata of the old types compare lowercased)."""
    owner = record.name.canonicalize().to_wire() or b"\x00"
    return (owner, record.rdtype, record.rdata.to_digestable())
