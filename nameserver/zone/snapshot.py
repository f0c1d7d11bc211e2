"""The immutable in-memory zone: what the query path reads and what changes are checked on.

A snapshot is never modified after it is built. A change builds a new snapshot that shares
every untouched node with the old one (:meth:`ZoneSnapshot.patched`), and the server swaps
the reference in one assignment, so a query always sees one whole version of the zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from nameserver.zone.ordered import OrderedOwners
from nameserver.zone.records import AnyRecord, Record, WireRecord, decode_rdata, rdata_wire
from nameserver.zone.wirename import ancestors, key_of, lower

SOA = int(dns.rdatatype.SOA)
RRSIG = int(dns.rdatatype.RRSIG)
# RRSIGs are kept per covered type (their TTLs follow the RRset they cover), under keys
# above the 16-bit type space so they never collide with a real type.
_SIG_BASE = RRSIG << 16
_FOLD_AT = 1024  # overlay entries before a version folds them into a new shared dict

# (owner wire with original case, type, TTL, rdata wire): the rows the store keeps.
WireRow = tuple[bytes, int, int, bytes]


def sig_key(covered: int) -> int:
    """The :attr:`Node.rrsets` key of the RRSIGs covering ``covered``."""
    return _SIG_BASE | covered


def is_sig_key(rrset_key: int) -> bool:
    """True for a :func:`sig_key` (an RRSIG set), False for a data type."""
    return rrset_key >= _SIG_BASE


def rrset_key(rdtype: int, rdata: bytes) -> int:
    """Where an RR with uncompressed rdata ``rdata`` is kept in :attr:`Node.rrsets`."""
    if rdtype == RRSIG:
        return _SIG_BASE | int.from_bytes(rdata[:2], "big")
    return rdtype


@dataclass(frozen=True, slots=True)
class RRsetData:
    """One RRset in wire form: rdata as uncompressed wire with the case it was given."""

    rdtype: int
    ttl: int
    rdatas: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Node:
    """The RRsets at one owner name. ``owner`` keeps the case the name was entered with.

    ``rrsets`` is keyed by type, except RRSIGs, which are keyed by :func:`sig_key` of the
    type they cover (``RRsetData.rdtype`` is RRSIG for those)."""

    owner: bytes
    rrsets: Mapping[int, RRsetData]


class ZoneSnapshot:
    """One version of one zone, indexed by lowercased wire names.

    ``nodes`` holds names that own data; ``below`` counts, for every name that has data
    beneath it, how many data names lie strictly below. A name exists in the zone tree
    (RFC 4592 §2.2) when it owns data or has data below it (an empty non-terminal).
    """

    __slots__ = (
        "_below",
        "_changed",
        "_expirations",
        "_nodes",
        "_ordered",
        "_ttls",
        "origin",
        "origin_wire",
        "serial",
    )

    def __init__(
        self,
        origin_wire: bytes,
        nodes: dict[bytes, Node],
        below: dict[bytes, int],
        ordered: dict[int, OrderedOwners] | None = None,
        ttls: dict[int, int] | None = None,
        changed: dict[bytes, Node | None] | None = None,
        expirations: dict[int, int] | None = None,
    ) -> None:
        self.origin_wire = origin_wire
        self.origin = lower(origin_wire)
        # Nodes live in ``_nodes``, shared between versions and never modified, overlaid
        # by ``_changed`` (None: removed): a change copies the small overlay, not a
        # 100k-entry dict. The overlay is folded in once it grows (see _with_nodes).
        self._nodes = nodes
        self._changed: dict[bytes, Node | None] = changed or {}
        self._below = below
        # Built on first use per type, then carried along by patched(); a cache, not state.
        self._ordered: dict[int, OrderedOwners] = ordered or {}
        # How many data RRsets have each TTL: built on first max_ttl(), then carried along.
        self._ttls = ttls
        # How many RRSIGs expire at each time: built on first earliest_expiration(), then
        # carried along like the TTL tally (a signing run makes a few dozen distinct times).
        self._expirations = expirations
        self.serial = _serial_of(self.node(self.origin))

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_rows(cls, origin: dns.name.Name, rows: Iterable[WireRow]) -> ZoneSnapshot:
        """Build a snapshot from wire rows (owner, type, TTL, rdata); repeats are dropped."""
        grouped: dict[bytes, tuple[bytes, dict[int, tuple[int, list[bytes]]]]] = {}
        for owner, rdtype, ttl, rdata in rows:
            key = lower(owner)
            entry = grouped.get(key)
            if entry is None:
                entry = grouped[key] = (owner, {})
            sets = entry[1]
            where = rdtype if rdtype != RRSIG else rrset_key(rdtype, rdata)
            current = sets.get(where)
            if current is None:
                sets[where] = (ttl, [rdata])
            elif rdata not in current[1]:
                current[1].append(rdata)
        nodes = {
            key: Node(
                owner,
                {
                    t: RRsetData(RRSIG if is_sig_key(t) else t, ttl, tuple(rds))
                    for t, (ttl, rds) in sets.items()
                },
            )
            for key, (owner, sets) in grouped.items()
        }
        origin_wire = origin.to_wire() or b"\x00"
        origin_key = lower(origin_wire)
        below: dict[bytes, int] = {}
        for key in nodes:
            for up in ancestors(key, origin_key):
                below[up] = below.get(up, 0) + 1
        return cls(origin_wire, nodes, below)

    @classmethod
    def from_records(cls, origin: dns.name.Name, records: Iterable[Record]) -> ZoneSnapshot:
        """Build a snapshot from records."""
        return cls.from_rows(origin, (record_row(r) for r in records))

    def patched(self, removed: Iterable[AnyRecord], added: Iterable[AnyRecord]) -> ZoneSnapshot:
        """A new snapshot with ``removed`` taken out and then ``added`` put in.

        Removal matches RRs by identity (case-insensitive names, canonical rdata). Untouched
        nodes are shared with this snapshot; this one is left as it was.
        """
        work: dict[bytes, tuple[bytes, dict[int, RRsetData]]] = {}

        def node_for(owner: bytes) -> tuple[bytes, dict[int, RRsetData]]:
            key = lower(owner)
            if key not in work:
                old = self.node(key)
                work[key] = (old.owner if old else owner, dict(old.rrsets) if old else {})
            return work[key]

        for r in removed:
            owner, rdtype, _ttl, wire = row_of(r)
            sets = node_for(owner)[1]
            where = rrset_key(rdtype, wire)
            current = sets.get(where)
            if current is None:
                continue
            kept = tuple(w for w in current.rdatas if not _same_rdata(rdtype, w, wire, r))
            if kept:
                sets[where] = RRsetData(rdtype, current.ttl, kept)
            else:
                del sets[where]
        for r in added:
            owner, rdtype, ttl, wire = row_of(r)
            sets = node_for(owner)[1]
            where = rrset_key(rdtype, wire)
            current = sets.get(where)
            if current is None:
                sets[where] = RRsetData(rdtype, ttl, (wire,))
            elif not any(_same_rdata(rdtype, w, wire, r) for w in current.rdatas):
                sets[where] = RRsetData(rdtype, ttl, (*current.rdatas, wire))
        return self._with_nodes(work)

    def _with_nodes(self, work: dict[bytes, tuple[bytes, dict[int, RRsetData]]]) -> ZoneSnapshot:
        changed = dict(self._changed)
        below = dict(self._below)
        ordered = {t: self._reordered(t, index, work) for t, index in self._ordered.items()}
        for key, (owner, sets) in work.items():
            existed = self.node(key) is not None
            if sets:
                changed[key] = Node(owner, sets)
                if not existed:
                    for up in ancestors(key, self.origin):
                        below[up] = below.get(up, 0) + 1
            elif existed:
                changed[key] = None
                for up in ancestors(key, self.origin):
                    below[up] -= 1
                    if not below[up]:
                        del below[up]
        nodes = self._nodes
        # Fold the overlay in when it is large enough that a copy per fold costs little
        # per change, and before lookups through it get slow.
        if len(changed) > max(_FOLD_AT, len(nodes) >> 5):
            nodes = dict(nodes)
            for key, node in changed.items():
                if node is None:
                    nodes.pop(key, None)
                else:
                    nodes[key] = node
            changed = {}
        ttls = self._retallied(work)
        expirations = self._expirations_after(work)
        return ZoneSnapshot(self.origin_wire, nodes, below, ordered, ttls, changed, expirations)

    def _retallied(
        self, work: dict[bytes, tuple[bytes, dict[int, RRsetData]]]
    ) -> dict[int, int] | None:
        """The TTL tally after the nodes in ``work`` changed (None when never built)."""
        if self._ttls is None:
            return None
        ttls = dict(self._ttls)
        for key, (_owner, sets) in work.items():
            old = self.node(key)
            for t, rs in old.rrsets.items() if old else ():
                if t < _SIG_BASE:
                    ttls[rs.ttl] -= 1
                    if not ttls[rs.ttl]:
                        del ttls[rs.ttl]
            for t, rs in sets.items():
                if t < _SIG_BASE:
                    ttls[rs.ttl] = ttls.get(rs.ttl, 0) + 1
        return ttls

    def _expirations_after(
        self, work: dict[bytes, tuple[bytes, dict[int, RRsetData]]]
    ) -> dict[int, int] | None:
        """The RRSIG expiration tally after the nodes in ``work`` changed (None when never
        built)."""
        if self._expirations is None:
            return None
        tally = dict(self._expirations)
        for key, (_owner, sets) in work.items():
            old = self.node(key)
            for expiration in _sig_expirations(old.rrsets if old else {}):
                tally[expiration] -= 1
                if not tally[expiration]:
                    del tally[expiration]
            for expiration in _sig_expirations(sets):
                tally[expiration] = tally.get(expiration, 0) + 1
        return tally

    def _reordered(
        self,
        rdtype: int,
        index: OrderedOwners,
        work: dict[bytes, tuple[bytes, dict[int, RRsetData]]],
    ) -> OrderedOwners:
        added: list[bytes] = []
        removed: list[bytes] = []
        for key, (_owner, sets) in work.items():
            old = self.node(key)
            had = old is not None and rdtype in old.rrsets
            if rdtype in sets and not had:
                added.append(key)
            elif had and rdtype not in sets:
                removed.append(key)
        return index.changed(added, removed) if added or removed else index

    # -- reading --------------------------------------------------------------------------

    @property
    def origin_name(self) -> dns.name.Name:
        """The zone's origin as a dnspython name."""
        return dns.name.from_wire(self.origin_wire, 0)[0]

    @property
    def nodes(self) -> Mapping[bytes, Node]:
        """Every name that owns data, by key (read-only)."""
        if not self._changed:
            return MappingProxyType(self._nodes)
        return _Overlaid(self._nodes, self._changed)

    def node(self, key: bytes) -> Node | None:
        """The node at ``key``, or None when the name owns no data."""
        changed = self._changed
        if key in changed:
            return changed[key]
        return self._nodes.get(key)

    def exists(self, key: bytes) -> bool:
        """True when the name owns data or is an empty non-terminal."""
        changed = self._changed
        node = changed[key] if key in changed else self._nodes.get(key)
        return node is not None or key in self._below

    def count_below(self, key: bytes) -> int:
        """How many names owning data lie strictly below ``key``."""
        return self._below.get(key, 0)

    def rrset(self, key: bytes, rdtype: int) -> RRsetData | None:
        """The RRset of ``rdtype`` at ``key``, if any."""
        changed = self._changed
        node = changed[key] if key in changed else self._nodes.get(key)
        return node.rrsets.get(rdtype) if node else None

    def signatures(self, key: bytes, covered: int) -> RRsetData | None:
        """The RRSIGs at ``key`` covering ``covered``, if any."""
        changed = self._changed
        node = changed[key] if key in changed else self._nodes.get(key)
        return node.rrsets.get(_SIG_BASE | covered) if node else None

    def owners_of(self, rdtype: int) -> OrderedOwners:
        """Every name owning an RRset of ``rdtype``, in canonical order (built on first use,
        then kept up to date by :meth:`patched`)."""
        index = self._ordered.get(rdtype)
        if index is None:
            index = OrderedOwners.of(k for k, n in self.nodes.items() if rdtype in n.rrsets)
            self._ordered[rdtype] = index
        return index

    def max_ttl(self) -> int:
        """The largest TTL of the zone's data (RRSIGs excluded), 0 for an empty zone."""
        if self._ttls is None:
            ttls: dict[int, int] = {}
            for node in self.nodes.values():
                for t, rs in node.rrsets.items():
                    if t < _SIG_BASE:
                        ttls[rs.ttl] = ttls.get(rs.ttl, 0) + 1
            self._ttls = ttls
        return max(self._ttls, default=0)

    def earliest_expiration(self) -> int | None:
        """The earliest expiration of the zone's RRSIGs (seconds since the epoch, as the
        RRSIG holds it), None when it has none. The first call walks the zone; versions
        patched from it carry the tally, so later calls cost only its few distinct times.
        The RRSIG field is 32 bits (RFC 4034 §3.1.5): read as plain Unix time until 2106."""
        if self._expirations is None:
            tally: dict[int, int] = {}
            for node in self.nodes.values():
                for expiration in _sig_expirations(node.rrsets):
                    tally[expiration] = tally.get(expiration, 0) + 1
            self._expirations = tally
        return min(self._expirations, default=None)

    def rrset_records(self, name: dns.name.Name, rdtype: int) -> list[Record]:
        """The RRs of one RRset as :class:`Record` objects (empty when absent)."""
        node = self.node(key_of(name))
        rs = node.rrsets.get(rdtype) if node else None
        if node is None or rs is None:
            return []
        owner = dns.name.from_wire(node.owner, 0)[0]
        return [Record(owner, rs.ttl, decode_rdata(rdtype, w)) for w in rs.rdatas]

    def __len__(self) -> int:
        return sum(len(rs.rdatas) for n in self.nodes.values() for rs in n.rrsets.values())

    def records(self) -> Iterator[Record]:
        """Every RR as a :class:`Record` (decodes wire; meant for export and checks)."""
        for node in self.nodes.values():
            name = dns.name.from_wire(node.owner, 0)[0]
            for rs in node.rrsets.values():
                for wire in rs.rdatas:
                    rdata = decode_rdata(rs.rdtype, wire)
                    yield Record(name, rs.ttl, rdata)


class _Overlaid(Mapping[bytes, Node]):
    """Read-only view of shared nodes overlaid by a version's changes (None: removed)."""

    __slots__ = ("_base", "_changed")

    def __init__(self, base: Mapping[bytes, Node], changed: Mapping[bytes, Node | None]) -> None:
        self._base = base
        self._changed = changed

    def __getitem__(self, key: bytes) -> Node:
        node = self._changed[key] if key in self._changed else self._base[key]
        if node is None:
            raise KeyError(key)
        return node

    def __iter__(self) -> Iterator[bytes]:
        changed = self._changed
        yield from (k for k in self._base if k not in changed)
        yield from (k for k, n in changed.items() if n is not None)

    def __len__(self) -> int:
        base, changed = self._base, self._changed
        added = sum(1 for k, n in changed.items() if n is not None and k not in base)
        removed = sum(1 for k, n in changed.items() if n is None and k in base)
        return len(base) + added - removed


def record_row(record: Record) -> WireRow:
    """The wire row of a record."""
    return (record.name.to_wire() or b"\x00", record.rdtype, record.ttl, rdata_wire(record.rdata))


def row_of(record: AnyRecord) -> WireRow:
    """The wire row of a record in either form."""
    if isinstance(record, WireRecord):
        return record.owner, record.rdtype, record.ttl, record.wire
    return record_row(record)


def _same_rdata(rdtype: int, wire: bytes, other: bytes, record: AnyRecord) -> bool:
    """RR identity on rdata (RFC 4034 §6.2 canonical form: names in rdata case-insensitive):
    ``wire`` against ``record``, whose rdata is ``other`` in wire form."""
    if wire == other:
        return True
    return bool(decode_rdata(rdtype, wire) == record.rdata)


def _sig_expirations(rrsets: Mapping[int, RRsetData]) -> Iterator[int]:
    """The expiration times of the RRSIGs among ``rrsets`` (wire offset 8, RFC 4034 §3.1)."""
    for t, rs in rrsets.items():
        if t >= _SIG_BASE:
            for wire in rs.rdatas:
                yield int.from_bytes(wire[8:12], "big")


def _serial_of(apex: Node | None) -> int:
    soa = apex.rrsets.get(SOA) if apex else None
    if soa is None or not soa.rdatas:
        return 0
    return int.from_bytes(soa.rdatas[0][-20:-16], "big")
