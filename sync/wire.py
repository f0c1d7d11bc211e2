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
from sync.model import (
    NAME_AT,
    WIRE_TYPES,
    FastName,
    RRset,
    ZoneData,
    name_end,
    octets_hash,
    plain_labels,
    rdtype_of,
    reduced_hash,
)

_RR = struct.Struct("!HHIH")
_IN = dns.rdataclass.IN
MAX_POINTERS = 128  # more hops than a name can have labels: a pointer loop


class WireError(SyncError):
    """Malformed wire data; the message says where."""


# A name read from a message: the name, dnspython's hash before reduction (see
# sync.model.exact_hash) and its octets without length bytes; what a name under it needs.
NameEntry = tuple[FastName, int, int]
NameMemo = dict[int, NameEntry]  # by offset in one message
_ROOT: NameEntry = (FastName.from_labels((b"",)), 0, 0)


def read_name(wire: bytes, offset: int, memo: NameMemo) -> tuple[FastName, int]:
    """The name at ``offset`` (compression pointers followed, each strictly backwards) and
    the offset after it. ``memo`` holds the names already read from this message: a name
    ending in a pointer costs its own labels and one lookup, not a walk of the suffix."""
    entry, end = _read_name(wire, offset, memo, 0)
    return entry[0], end


def _read_name(wire: bytes, offset: int, memo: NameMemo, hops: int) -> tuple[NameEntry, int]:
    prefix: list[bytes] = []
    pos = offset
    size = len(wire)
    while True:
        if pos >= size:
            raise WireError(f"name at offset {offset} runs past the message")
        length = wire[pos]
        if length == 0:
            parent, end = _ROOT, pos + 1
            break
        if length >= 0xC0:
            if pos + 1 >= size:
                raise WireError(f"truncated compression pointer at offset {pos}")
            target = ((length & 0x3F) << 8) | wire[pos + 1]
            if target >= pos or hops >= MAX_POINTERS:
                raise WireError(f"bad compression pointer at offset {pos}")
            known = memo.get(target)
            parent = known if known is not None else _read_name(wire, target, memo, hops + 1)[0]
            end = pos + 2
            break
        if length & 0xC0:
            raise WireError(f"unknown label type at offset {pos}")
        prefix.append(wire[pos + 1 : pos + 1 + length])
        pos += 1 + length
    # The labels read here are the name's wire form up to the pointer (or root) at pos.
    entry = _under(prefix, wire[offset:pos], parent, offset) if prefix else parent
    memo[offset] = entry
    return entry, end


def _under(prefix: list[bytes], prefix_wire: bytes, parent: NameEntry, offset: int) -> NameEntry:
    """The name of ``prefix`` labels under ``parent``: its hash, wire form and text
    extended, not recomputed."""
    name, exact, octets = parent
    if len(prefix) == 1:  # the usual owner: one label and a pointer
        folded: tuple[bytes, ...] = (prefix[0].lower(),)
        joined = folded[0]
    else:
        folded = tuple(label.lower() for label in prefix)
        joined = b"".join(folded)
    labels = (*prefix, *name.labels)
    if octets + len(joined) + len(labels) > 255:
        raise WireError(f"name at offset {offset} is longer than 255 octets")
    exact += octets_hash(joined, octets)
    text = None
    if plain_labels(joined):  # escapes are left to FastName.to_text
        suffix = name.to_text() if len(name.labels) > 1 else ""  # the root's text is "."
        text = b".".join(prefix).decode("ascii") + "." + suffix
    fast = FastName.assemble(
        labels, folded + name.folded, reduced_hash(exact), prefix_wire + name.wire, text
    )
    return fast, exact, octets + len(joined)


@dataclass
class ZoneBuilder:
    """Collects records of one zone and builds a :class:`ZoneData`. RRSIGs of an owner
    become one RRset (the model's convention), with the smallest TTL."""

    origin: dns.name.Name
    # One Name per owner across messages, whatever its case: the maps below key by identity.
    _names: dict[FastName, FastName] = field(default_factory=dict)
    # Keyed by the identity of the interned Name: dnspython hashes a plain Name by
    # lowercasing every label on each call.
    _wires: dict[tuple[int, int], tuple[dns.name.Name, list[int], list[bytes]]] = field(
        default_factory=dict
    )
    _objects: dict[tuple[int, int], tuple[dns.name.Name, list[int], list[dns.rdata.Rdata]]] = field(
        default_factory=dict
    )

    def intern(self, name: FastName) -> FastName:
        """The one Name object kept for ``name``'s owner."""
        return self._names.setdefault(name, name)

    def add_wire(self, owner: dns.name.Name, rdtype: int, ttl: int, rdata: bytes) -> None:
        entry = self._wires.get((id(owner), rdtype))
        if entry is None:
            self._wires[(id(owner), rdtype)] = (owner, [ttl], [rdata])
        else:
            entry[1][0] = min(entry[1][0], ttl)
            entry[2].append(rdata)

    def add_rdata(self, owner: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        key = (id(owner), int(rdata.rdtype))
        entry = self._objects.get(key)
        if entry is None:
            self._objects[key] = (owner, [ttl], [rdata])
        else:
            entry[1][0] = min(entry[1][0], ttl)
            entry[2].append(rdata)

    def build(self) -> ZoneData:
        rrsets: dict[tuple[dns.name.Name, dns.rdatatype.RdataType], RRset] = {}
        objects = self._objects
        for key, (owner, ttl, wires) in self._wires.items():
            kind = rdtype_of(key[1])
            extra = objects.pop(key, None) if objects else None
            if extra is None and len(wires) == 1 and kind not in NAME_AT:
                # Most RRsets: one rdata, already canonical (RRset.from_wires, shortened).
                rrsets[(owner, kind)] = RRset(
                    owner, kind, ttl[0], wires=(wires[0],), canonical=(wires[0],)
                )
            elif extra is None:
                rrsets[(owner, kind)] = RRset.from_wires(owner, kind, ttl[0], wires)
            else:  # the same RRset arrived both ways (an RRSIG with a compressed signer)
                rdatas = [dns.rdata.from_wire(_IN, kind, w, 0, len(w)) for w in wires]
                ttl_min = min(ttl[0], extra[1][0])
                rrsets[(owner, kind)] = RRset.of(owner, kind, ttl_min, rdatas + extra[2])
        for key, (owner, ttl, rdatas) in self._objects.items():
            rrsets[(owner, rdtype_of(key[1]))] = RRset.of(owner, key[1], ttl[0], rdatas)
        return ZoneData(self.origin, rrsets)


class RawRecord(NamedTuple):
    """A record as read from a message: rdata bytes for types in WIRE_TYPES, else a
    dnspython rdata (already decompressed)."""

    owner: dns.name.Name
    rdtype: int
    rdclass: int
    ttl: int
    rdata: bytes | dns.rdata.Rdata
    start: int  # offset of the record in the message (TSIG verification needs it)
    position: int  # its place in its section


def read_records(
    wire: bytes,
    offset: int,
    count: int,
    builder: ZoneBuilder,
    memo: NameMemo | None = None,
    *,
    collect: bool = False,
) -> tuple[list[RawRecord], int]:
    """Read ``count`` records from ``offset``; owners interned in ``builder``, ``memo`` the
    names already read from this message. Records kept as wire bytes (types in WIRE_TYPES)
    go straight into ``builder``, one dict update each; the others are returned for the
    caller to check and add. With ``collect``, every record is returned and none added (a
    section that is not zone data). Returns them and the offset after the last."""
    out: list[RawRecord] = []
    names: NameMemo = {} if memo is None else memo
    size = len(wire)
    intern, add_wire = builder.intern, builder.add_wire  # bound once: called per record
    pos = offset
    for position in range(count):
        start = pos
        # The usual owner in a transfer, one label and a pointer to a name read before, is
        # read here; anything else by read_name.
        length = wire[pos] if pos < size else 0
        after = pos + 1 + length
        parent = None
        if 0 < length < 64 and after + 1 < size and wire[after] >= 0xC0:
            target = ((wire[after] & 0x3F) << 8) | wire[after + 1]
            parent = names.get(target)
        if parent is not None:
            entry = _under([wire[pos + 1 : after]], wire[pos:after], parent, pos)
            names[pos] = entry
            name = entry[0]
            pos = after + 2
        else:
            name, pos = read_name(wire, pos, names)
        if pos + 10 > size:
            raise WireError(f"record at offset {start} is truncated")
        rdtype, rdclass, ttl, rdlen = _RR.unpack_from(wire, pos)
        pos += 10
        end = pos + rdlen
        if end > size:
            raise WireError(f"rdata of the record at offset {start} runs past the message")
        owner = intern(name)
        rdata: bytes | dns.rdata.Rdata
        if rdtype in WIRE_TYPES and rdclass == _IN:
            rdata = wire[pos:end]
            if rdtype not in NAME_AT or _plain_names(rdtype, rdata):
                if collect:
                    out.append(RawRecord(owner, rdtype, rdclass, ttl, rdata, start, position))
                else:
                    add_wire(owner, rdtype, ttl, rdata)
                pos = end
                continue
        try:
            rdata = dns.rdata.from_wire(rdclass, rdtype, wire, pos, rdlen)
        except dns.exception.DNSException as exc:
            raise WireError(
                f"bad {dns.rdatatype.to_text(rdtype)} rdata at offset {pos}: {exc}"
            ) from None
        out.append(RawRecord(owner, rdtype, rdclass, ttl, rdata, start, position))
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


def zone_from_wire(origin: dns.name.Name, wire: bytes) -> ZoneData:
    """The zone from its :attr:`ZoneData.wire` form (the state file's local copy)."""
    builder = ZoneBuilder(origin)
    pos = 0
    while pos < len(wire):
        records, pos = read_records(wire, pos, 1, builder)
        for record in records:
            add(builder, record)
    return builder.build()
