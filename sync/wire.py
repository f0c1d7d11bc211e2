"""Reading DNS records from wire form without a dnspython object per record.

dnspython needs about 120 µs per RR to parse a transfer message (a 10k-record AXFR: 1.2 s),
almost all of it building immutable name and rdata objects. Here a record costs one owner
name lookup and a slice: names are decoded to label tuples and interned, rdatas of the
types in :data:`sync.model.WIRE_TYPES` stay bytes, and only other types (those that may hold
compressed names: NS, MX, CNAME, SOA, SRV, ...) go through ``dns.rdata.from_wire``.

Used for AXFR (:mod:`sync.axfr`) and for the local copy in the state file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import SyncError
from sync.model import WIRE_TYPES, FastName, RRset, ZoneData, name_end

_RR = struct.Struct("!HHIH")
_IN = dns.rdataclass.IN
MAX_POINTERS = 128  # more hops than a name can have labels: a pointer loop


class WireError(SyncError):
    """Malformed wire data; the message says where."""


def read_labels(wire: bytes, offset: int) -> tuple[tuple[bytes, ...], int]:
    """The name at ``offset`` (compression pointers followed, each strictly backwards) as
    a label tuple ending with the root label, and the offset after it."""
    labels: list[bytes] = []
    pos = offset
    end = -1
    hops = 0
    size = 1
    while True:
        if pos >= len(wire):
            raise WireError(f"name at offset {offset} runs past the message")
        length = wire[pos]
        if length == 0:
            if end < 0:
                end = pos + 1
            break
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(wire):
                raise WireError(f"truncated compression pointer at offset {pos}")
            target = ((length & 0x3F) << 8) | wire[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= pos or hops >= MAX_POINTERS:
                raise WireError(f"bad compression pointer at offset {pos}")
            hops += 1
            pos = target
            continue
        if length & 0xC0:
            raise WireError(f"unknown label type at offset {pos}")
        size += length + 1
        if size > 255:
            raise WireError(f"name at offset {offset} is longer than 255 octets")
        labels.append(wire[pos + 1 : pos + 1 + length])
        pos += 1 + length
    labels.append(b"")
    return tuple(labels), end


@dataclass
class ZoneBuilder:
    """Collects records of one zone and builds a :class:`ZoneData`. RRSIGs of an owner
    become one RRset (the model's convention), with the smallest TTL."""

    origin: dns.name.Name
    _names: dict[tuple[bytes, ...], dns.name.Name] = field(default_factory=dict)
    # Keyed by the identity of the interned Name (one per owner, see name()): dnspython
    # hashes a Name by lowercasing every label on each call.
    _wires: dict[tuple[int, int], tuple[dns.name.Name, list[int], list[bytes]]] = field(
        default_factory=dict
    )
    _objects: dict[tuple[int, int], tuple[dns.name.Name, list[int], list[dns.rdata.Rdata]]] = field(
        default_factory=dict
    )
    count: int = 0

    def name(self, labels: tuple[bytes, ...]) -> dns.name.Name:
        """One Name object per distinct owner (building one costs about 6 µs); owners
        differing only in case share one."""
        folded = tuple(label.lower() for label in labels)
        known = self._names.get(folded)
        if known is None:
            known = self._names[folded] = FastName.from_labels(labels)
        return known

    def add_wire(self, owner: dns.name.Name, rdtype: int, ttl: int, rdata: bytes) -> None:
        entry = self._wires.get((id(owner), rdtype))
        if entry is None:
            self._wires[(id(owner), rdtype)] = (owner, [ttl], [rdata])
        else:
            entry[1][0] = min(entry[1][0], ttl)
            entry[2].append(rdata)
        self.count += 1

    def add_rdata(self, owner: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        key = (id(owner), int(rdata.rdtype))
        entry = self._objects.get(key)
        if entry is None:
            self._objects[key] = (owner, [ttl], [rdata])
        else:
            entry[1][0] = min(entry[1][0], ttl)
            entry[2].append(rdata)
        self.count += 1

    def build(self) -> ZoneData:
        rrsets: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], RRset] = {}
        kinds = {t: dns.rdatatype.RdataType.make(t) for _, t in (*self._wires, *self._objects)}
        for key, (owner, ttl, wires) in self._wires.items():
            kind = kinds[key[1]]
            extra = self._objects.pop(key, None)
            if extra is None:
                rrsets[(owner, kind)] = RRset.from_wires(owner, kind, ttl[0], wires)
            else:  # the same RRset arrived both ways (an RRSIG with a compressed signer)
                rdatas = [dns.rdata.from_wire(_IN, kind, w, 0, len(w)) for w in wires]
                ttl_min = min(ttl[0], extra[1][0])
                rrsets[(owner, kind)] = RRset.of(owner, kind, ttl_min, rdatas + extra[2])
        for key, (owner, ttl, rdatas) in self._objects.items():
            rrsets[(owner, kinds[key[1]])] = RRset.of(owner, kinds[key[1]], ttl[0], rdatas)
        return ZoneData(self.origin, rrsets)


class RawRecord(NamedTuple):
    """A record as read from a message: rdata bytes for types in WIRE_TYPES, else a
    dnspython rdata (already decompressed). A tuple: one is made per record."""

    owner: dns.name.Name
    rdtype: int
    rdclass: int
    ttl: int
    rdata: bytes | dns.rdata.Rdata
    start: int  # offset of the record in the message (TSIG verification needs it)


def read_records(
    wire: bytes, offset: int, count: int, builder: ZoneBuilder
) -> tuple[list[RawRecord], int]:
    """``count`` records from ``offset`` and the offset after them; owner names interned
    in ``builder``."""
    out: list[RawRecord] = []
    pos = offset
    for _ in range(count):
        start = pos
        labels, pos = read_labels(wire, pos)
        if pos + 10 > len(wire):
            raise WireError(f"record at offset {start} is truncated")
        rdtype, rdclass, ttl, rdlen = _RR.unpack_from(wire, pos)
        pos += 10
        end = pos + rdlen
        if end > len(wire):
            raise WireError(f"rdata of the record at offset {start} runs past the message")
        owner = builder.name(labels)
        rdata: bytes | dns.rdata.Rdata
        if rdtype in WIRE_TYPES and rdclass == _IN:
            rdata = wire[pos:end]
            if rdtype not in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC) or _plain_names(
                rdtype, rdata
            ):
                out.append(RawRecord(owner, rdtype, rdclass, ttl, rdata, start))
                pos = end
                continue
        try:
            rdata = dns.rdata.from_wire(rdclass, rdtype, wire, pos, rdlen)
        except dns.exception.DNSException as exc:
            raise WireError(
                f"bad {dns.rdatatype.to_text(rdtype)} rdata at offset {pos}: {exc}"
            ) from None
        out.append(RawRecord(owner, rdtype, rdclass, ttl, rdata, start))
        pos = end
    return out, pos


def _plain_names(rdtype: int, rdata: bytes) -> bool:
    """True when the name inside an RRSIG/NSEC rdata is uncompressed, as RFC 4034 requires;
    a sender that compressed it anyway is parsed by dnspython instead."""
    try:
        name_end(rdata, 18 if rdtype == dns.rdatatype.RRSIG else 0)
    except ValueError:
        return False
    return True


def add(builder: ZoneBuilder, record: RawRecord) -> None:
    """Put ``record`` into ``builder``."""
    if isinstance(record.rdata, bytes):
        builder.add_wire(record.owner, record.rdtype, record.ttl, record.rdata)
    else:
        builder.add_rdata(record.owner, record.ttl, record.rdata)


# -- the state file's copy -------------------------------------------------------------------


def zone_to_wire(zone: ZoneData) -> bytes:
    """Every record, uncompressed, in canonical order: owner, type, TTL, rdata."""
    out = bytearray()
    for rrset in zone:
        owner = rrset.name.to_wire()
        assert owner is not None
        head = struct.pack("!HHI", rrset.rdtype, _IN, rrset.ttl)
        for rdata in rrset.wires():
            out += owner + head + struct.pack("!H", len(rdata)) + rdata
    return bytes(out)


def zone_from_wire(origin: dns.name.Name, wire: bytes) -> ZoneData:
    """The inverse of :func:`zone_to_wire`."""
    builder = ZoneBuilder(origin)
    pos = 0
    while pos < len(wire):
        records, pos = read_records(wire, pos, 1, builder)
        add(builder, records[0])
    return builder.build()
