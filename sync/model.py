"""Zone contents as the sync engine sees them: immutable RRsets keyed by (owner, type).

RRSIGs form one RRset per owner (all covered types together), as both the PowerDNS API and
RFC 2136 UPDATE address them.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA

if TYPE_CHECKING:
    import dns.zone

RRsetKey = tuple[dns.name.Name, dns.rdatatype.RdataType]
P = ParamSpec("P")
R = TypeVar("R")

DNSSEC_TYPES = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.CDNSKEY,
    }
)


# Types whose rdata holds no domain name, so their wire form is already canonical
# (RFC 4034 §6.2): kept as wire bytes, turned into dnspython objects only when asked.
NAMELESS_TYPES = frozenset(
    {
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.TXT,
        dns.rdatatype.SPF,
        dns.rdatatype.CAA,
        dns.rdatatype.TLSA,
        dns.rdatatype.SMIMEA,
        dns.rdatatype.SSHFP,
        dns.rdatatype.DS,
        dns.rdatatype.CDS,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDNSKEY,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.OPENPGPKEY,
        dns.rdatatype.ZONEMD,
    }
)
# Types with one uncompressed name at a fixed place (RFC 4034 §3.1.7, §4.1.1): canonical
# form lowercases just that name. Value: the offset where the name starts.
NAME_AT = {dns.rdatatype.RRSIG: 18, dns.rdatatype.NSEC: 0}
WIRE_TYPES = NAMELESS_TYPES | frozenset(NAME_AT)
_ADDRESS_FAMILY = {dns.rdatatype.A: socket.AF_INET, dns.rdatatype.AAAA: socket.AF_INET6}
TEXT_TYPES = frozenset({dns.rdatatype.TXT, dns.rdatatype.SPF})
# Bytes a character-string shows as they are; dnspython escapes `"` and `\` with a
# backslash and every other byte outside 0x20-0x7e as \DDD (dns.rdata._escapify).
_TXT_PLAIN = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')
_TXT_ESCAPED = tuple(
    chr(c) if c in _TXT_PLAIN else "\\" + chr(c) if c in b'"\\' else f"\\{c:03d}"
    for c in range(256)
)


def txt_text(wire: bytes) -> str | None:
    """A TXT or SPF rdata in presentation format from its wire form, exactly as dnspython
    writes it (each character-string quoted, one space apart), without building its rdata
    object (~45 us); None when ``wire`` is not a well-formed TXT rdata (dnspython's parser
    then reports what is wrong)."""
    end = len(wire)
    if not end:
        return None
    parts: list[str] = []
    pos = 0
    while pos < end:
        stop = pos + 1 + wire[pos]
        if stop > end:
            return None
        chunk = wire[pos + 1 : stop]
        if chunk.translate(None, _TXT_PLAIN):
            parts.append('"' + "".join([_TXT_ESCAPED[c] for c in chunk]) + '"')
        else:
            parts.append('"' + chunk.decode("ascii") + '"')
        pos = stop
    return " ".join(parts)


def _canonical_wire(rdata: dns.rdata.Rdata) -> bytes:
    return rdata.to_digestable()


def gc_paused(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` with the cyclic garbage collector paused. Zone data holds no reference
    cycles, but building the objects of a 10k-RRset zone starts collections that scan every
    live object again and again (0.1 s of a 10k-record push). Reference counting still
    frees everything; the collector resumes when ``func`` returns."""

    @functools.wraps(func)
    def paused(*args: P.args, **kwargs: P.kwargs) -> R:
        if not gc.isenabled():  # paused already (a caller, another thread) or by choice
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return paused


def rdtype_of(rdtype: int) -> dns.rdatatype.RdataType:
    kind = _KINDS.get(rdtype)
    if kind is None:
        kind = _KINDS[rdtype] = dns.rdatatype.RdataType.make(rdtype)
    return kind


_KINDS: dict[int, dns.rdatatype.RdataType] = {}  # RdataType.make costs ~6 µs a call


def _wire(rdata: dns.rdata.Rdata) -> bytes:
    wire = rdata.to_wire()
    assert wire is not None  # None only when writing to a file
    return wire


def name_end(wire: bytes, start: int) -> int:
    """Where the uncompressed name at ``start`` ends; ValueError for a compression
    pointer, a bad label type or a name running past the data."""
    pos = start
    while True:
        if pos >= len(wire):
            raise ValueError("name runs past the rdata")
        length = wire[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0:
            raise ValueError("compressed or extended label where none is allowed")
        pos += 1 + length


def canonical_of_wire(rdtype: int, wire: bytes) -> bytes:
    """The canonical form of an uncompressed rdata of a type in :data:`WIRE_TYPES`. Label
    length bytes are below 64, so ``bytes.lower`` only touches the name's letters."""
    at = NAME_AT.get(rdtype)  # type: ignore[call-overload]  # IntEnum keys match ints
    if at is None:
        return wire
    end = name_end(wire, at)
    return wire[:at] + wire[at:end].lower() + wire[end:]


_TYPE_CLASS_TTL = struct.Struct("!HHI")
_IN = dns.rdataclass.IN
_HASH_MODULUS = sys.hash_info.modulus
_FITS = 2 ** (sys.hash_info.width - 1)
# Octets dnspython prints as they are in a label (it escapes "().;\\@$, spaces and
# non-printables): a name made only of these needs no escaper either way.
_SAFE = bytes(c for c in range(0x21, 0x7F) if chr(c) not in '"().;\\@$')


def exact_hash(folded: tuple[bytes, ...]) -> int:
    """dnspython's ``Name.__hash__`` before CPython reduces it: h = 9h + c over every octet
    of the lowercased labels. Over a concatenation, H(a + b) = H(a) * 9**len(b) + H(b)."""
    return octets_hash(b"".join(folded), 0)


def octets_hash(octets: bytes, after: int) -> int:
    """The part of :func:`exact_hash` that ``octets`` contribute when ``after`` more octets
    follow them (a name's labels above a known suffix)."""
    h = 0
    for c in octets:  # small integers until the one multiplication below
        h = h * 9 + c
    return h * _POW9[after]


_POW9: tuple[int, ...] = tuple(9**k for k in range(256))  # a name has at most 255 octets


def reduced_hash(exact: int) -> int:
    """What hash() gives for a Name whose ``__hash__`` returned ``exact``: CPython keeps a
    value that fits a signed 64-bit integer and reduces a larger one modulo 2**61 - 1."""
    return exact if exact < _FITS else exact % _HASH_MODULUS


def plain_labels(octets: bytes) -> bool:
    """True when labels made of ``octets`` print as they are (no escapes, no quotes)."""
    return not octets.translate(None, _SAFE)


class FastName(dns.name.Name):
    """A dnspython Name that computes its hash and case-folded form once. dnspython's
    ``Name.__hash__`` lowercases every label on each call (about 4 µs) and ``__eq__``
    runs a full comparison; the sync engine hashes and compares every owner of a zone
    several times per plan. Equal to, and hashing like, the plain Name it stands for."""

    __slots__ = ("_folded", "_hash", "_text", "_wire")

    _folded: tuple[bytes, ...]
    _hash: int
    _text: str | None  # to_text(), made on first use
    _wire: bytes | None  # the wire form, given by the wire reader or made on first use

    @classmethod
    def of(cls, name: dns.name.Name) -> FastName:
        """``name`` as a FastName (itself when it is one)."""
        if isinstance(name, FastName):
            return name
        return cls.from_labels(name.labels)

    @classmethod
    def from_labels(cls, labels: tuple[bytes, ...]) -> FastName:
        """From labels already checked (a parsed wire name or an existing Name)."""
        folded = tuple(label.lower() for label in labels)
        return cls.assemble(labels, folded, reduced_hash(exact_hash(folded)))

    @classmethod
    def assemble(
        cls,
        labels: tuple[bytes, ...],
        folded: tuple[bytes, ...],
        hashed: int,
        wire: bytes | None = None,
        text: str | None = None,
    ) -> FastName:
        """From checked labels, their lowercased form, the hash a dnspython Name of them
        has (see :func:`reduced_hash`) and, when known, their uncompressed wire form and
        their text (as :meth:`to_text` gives it)."""
        fast = object.__new__(cls)
        setattr_ = object.__setattr__  # dnspython names refuse plain attribute writes
        setattr_(fast, "labels", labels)
        setattr_(fast, "_folded", folded)
        setattr_(fast, "_hash", hashed)
        setattr_(fast, "_text", text)
        setattr_(fast, "_wire", wire)
        return fast

    @classmethod
    def parse(cls, text: str) -> dns.name.Name:
        """An absolute name from text, without dnspython's parser when the text needs no
        unescaping (the usual case for names an API returns)."""
        raw = text.encode("ascii", "replace")
        if raw.endswith(b".") and raw != b"." and not raw.translate(None, _SAFE + b"."):
            labels = (*raw[:-1].split(b"."), b"")
            if all(0 < len(label) < 64 for label in labels[:-1]) and len(raw) < 255:
                return cls.from_labels(labels)
        return cls.of(dns.name.from_text(text))

    def to_text(self, omit_final_dot: bool = False, style: dns.name.NameStyle | None = None) -> str:
        """dnspython's text form; labels that need no escaping skip its escaper, and the
        usual form (absolute, final dot) is kept once made."""
        if omit_final_dot or style is not None:
            return self._make_text(omit_final_dot, style)
        text = self._text
        if text is None:
            text = self._make_text(False, None)
            object.__setattr__(self, "_text", text)
        return text

    def _make_text(self, omit_final_dot: bool, style: dns.name.NameStyle | None) -> str:
        labels = self.labels
        plain = style is None and len(labels) > 1 and not labels[-1]
        if plain and plain_labels(b"".join(labels)):
            text = b".".join(labels[:-1]).decode("ascii")
            return text if omit_final_dot else text + "."
        return super().to_text(omit_final_dot, style)

    @property
    def wire(self) -> bytes:
        """The uncompressed wire form in the original case (an absolute name)."""
        wire = self._wire
        if wire is None:
            wire = b"".join(bytes((len(label),)) + label for label in self.labels)
            object.__setattr__(self, "_wire", wire)
        return wire

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FastName):
            return self._hash == other._hash and self._folded == other._folded
        return bool(super().__eq__(other))  # type: ignore[no-untyped-call]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    @property
    def canonical_order(self) -> tuple[bytes, ...]:
        """Labels from the root, lowercased: sorting these is RFC 4034 §6.1 order."""
        return self._folded[::-1]

    @property
    def folded(self) -> tuple[bytes, ...]:
        """The labels, lowercased."""
        return self._folded


class RRset:
    """One RRset: owner, type, TTL and its rdatas in canonical order (no duplicates).

    Immutable. Built either from dnspython rdatas (:meth:`of`) or, for the common types in
    :data:`WIRE_TYPES`, from uncompressed wire rdatas (:meth:`from_wires`): parsing a
    transfer then costs no dnspython object per record (dnspython takes about 45 µs to
    build one A rdata), and ``rdatas`` is built on first use.
    """

    __slots__ = ("_canonical", "_rdatas", "_wires", "name", "rdtype", "ttl")

    def __init__(
        self,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        ttl: int,
        rdatas: tuple[dns.rdata.Rdata, ...] | None = None,
        wires: tuple[bytes, ...] | None = None,
        canonical: tuple[bytes, ...] | None = None,
    ) -> None:
        self.name: FastName = FastName.of(name)
        self.rdtype = rdtype
        self.ttl = ttl
        self._rdatas = rdatas
        self._wires = wires
        self._canonical = canonical

    @classmethod
    def of(
        cls,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType | int,
        ttl: int,
        rdatas: Iterable[dns.rdata.Rdata],
    ) -> RRset:
        """An RRset with its rdatas sorted canonically and duplicates dropped."""
        unique = {_canonical_wire(r): r for r in rdatas}
        order = sorted(unique)
        kind = dns.rdatatype.RdataType.make(rdtype)
        return cls(name, kind, ttl, rdatas=tuple(unique[w] for w in order), canonical=tuple(order))

    @classmethod
    def from_wires(
        cls,
        name: dns.name.Name,
        rdtype: dns.rdatatype.RdataType | int,
        ttl: int,
        wires: Iterable[bytes],
    ) -> RRset:
        """An RRset of a type in :data:`WIRE_TYPES` from uncompressed rdata wires; other
        types are parsed with dnspython. ValueError for a malformed rdata."""
        kind = rdtype if isinstance(rdtype, dns.rdatatype.RdataType) else rdtype_of(rdtype)
        if kind not in WIRE_TYPES:
            rdatas = [dns.rdata.from_wire(dns.rdataclass.IN, kind, w, 0, len(w)) for w in wires]
            return cls.of(name, kind, ttl, rdatas)
        if not isinstance(wires, list | tuple):
            wires = list(wires)
        if len(wires) == 1:  # most RRsets: nothing to sort or deduplicate
            return cls(
                name, kind, ttl, wires=tuple(wires), canonical=(canonical_of_wire(kind, wires[0]),)
            )
        unique = {canonical_of_wire(kind, w): w for w in wires}
        order = sorted(unique)
        return cls(name, kind, ttl, wires=tuple(unique[c] for c in order), canonical=tuple(order))

    @classmethod
    def from_text(
        cls, name: str, rdtype: str, ttl: int, texts: Iterable[str], origin: dns.name.Name
    ) -> RRset:
        """Parse presentation-format rdatas (relative names resolve against ``origin``)."""
        owner = dns.name.from_text(name, origin)
        kind = dns.rdatatype.from_text(rdtype)
        return cls.parse(owner, kind, ttl, texts, origin)

    @classmethod
    def parse(
        cls,
        owner: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        ttl: int,
        texts: Iterable[str],
        origin: dns.name.Name | None = None,
    ) -> RRset:
        """Presentation-format rdatas of ``rdtype``; addresses take a fast path. Raises
        dnspython's SyntaxError (or ValueError) for bad text."""
        family = _ADDRESS_FAMILY.get(rdtype)
        if family is not None:
            try:
                return cls.from_wires(
                    owner, rdtype, ttl, [socket.inet_pton(family, t) for t in texts]
                )
            except OSError:
                raise ValueError(
                    f"bad {dns.rdatatype.to_text(rdtype)} address in {texts}"
                ) from None
        rdatas = [
            dns.rdata.from_text(dns.rdataclass.IN, rdtype, t, origin, relativize=False)
            for t in texts
        ]
        return cls.of(owner, rdtype, ttl, rdatas)

    def with_ttl(self, ttl: int) -> RRset:
        """The same data with another TTL (the rdatas are shared, not copied)."""
        return RRset(self.name, self.rdtype, ttl, self._rdatas, self._wires, self._canonical)

    @property
    def rdatas(self) -> tuple[dns.rdata.Rdata, ...]:
        if self._rdatas is None:
            wires = self._wires or ()
            self._rdatas = tuple(
                dns.rdata.from_wire(dns.rdataclass.IN, self.rdtype, w, 0, len(w)) for w in wires
            )
        return self._rdatas

    def wires(self) -> tuple[bytes, ...]:
        """The rdatas in uncompressed wire form, original case."""
        if self._wires is None:
            self._wires = tuple(_wire(r) for r in self.rdatas)
        return self._wires

    @property
    def key(self) -> RRsetKey:
        """(owner, type): what a plan creates, updates or deletes."""
        return (self.name, self.rdtype)

    def texts(self, origin: dns.name.Name | None = None) -> list[str]:
        """The rdatas in presentation format, absolute names unless ``origin`` is given."""
        wires = self._wires
        if wires is not None:
            family = _ADDRESS_FAMILY.get(self.rdtype)
            if family is not None:
                return [socket.inet_ntop(family, w) for w in wires]
            if self.rdtype in TEXT_TYPES:
                texts = [txt_text(w) for w in wires]
                made = [t for t in texts if t is not None]
                if len(made) == len(texts):
                    return made
        return [r.to_text(origin=origin, relativize=origin is not None) for r in self.rdatas]

    def same_data(self, other: RRset) -> bool:
        """True when TTL and rdatas are equal (owner and type are the caller's concern)."""
        return self.ttl == other.ttl and self.wire_set() == other.wire_set()

    def wire_set(self) -> tuple[bytes, ...]:
        """The canonical wire forms, sorted: what equality of RRsets means."""
        if self._canonical is None:
            self._canonical = tuple(_canonical_wire(r) for r in self.rdatas)
        return self._canonical

    def digest(self) -> str:
        """SHA-256 over owner, type, TTL and canonical rdatas: what state records as pushed."""
        h = hashlib.sha256()
        h.update(self.name.canonicalize().to_digestable())
        h.update(int(self.rdtype).to_bytes(2, "big"))
        h.update(self.ttl.to_bytes(4, "big"))
        for wire in self.wire_set():
            h.update(len(wire).to_bytes(2, "big"))
            h.update(wire)
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RRset):
            return NotImplemented
        return self.key == other.key and self.same_data(other)

    def __hash__(self) -> int:
        return hash((self.name, self.rdtype, self.ttl, self.wire_set()))

    def __repr__(self) -> str:
        return f"RRset({self}: {' '.join(self.texts())})"

    def __str__(self) -> str:
        return f"{self.name} {self.ttl} {dns.rdatatype.to_text(self.rdtype)}"


def sort_key(key: RRsetKey) -> tuple[tuple[bytes, ...], int]:
    """Canonical DNSSEC name order (RFC 4034 §6.1: labels from the root, lowercased, as
    octet strings), then type number: the deterministic order of plans. Comparing tuples
    of bytes is many times faster than comparing dnspython names."""
    name = key[0]
    if isinstance(name, FastName):
        return (name.canonical_order, int(key[1]))
    return (tuple(label.lower() for label in reversed(name.labels)), int(key[1]))


@dataclass(frozen=True)
class ZoneData:
    """An immutable zone: its origin and RRsets by key."""

    origin: dns.name.Name
    rrsets: Mapping[RRsetKey, RRset] = field(default_factory=dict)

    @classmethod
    def build(cls, origin: dns.name.Name, rrsets: Iterable[RRset]) -> ZoneData:
        return cls(origin, {r.key: r for r in rrsets})

    @classmethod
    def from_dns_zone(cls, zone: dns.zone.Zone) -> ZoneData:
        """Convert a dnspython zone (absolute names)."""
        origin = zone.origin
        assert origin is not None
        sets: list[RRset] = []
        for rel, node in zone.nodes.items():
            owner = rel.derelativize(origin)
            for rds in node.rdatasets:
                sets.extend(_split_rdataset(owner, rds))
        return cls.build(origin, _merge_rrsigs(sets))

    def __iter__(self) -> Iterator[RRset]:
        return iter(self.ordered)

    @functools.cached_property
    def ordered(self) -> tuple[RRset, ...]:
        """The RRsets in canonical order (see :func:`sort_key`), sorted once per zone."""
        rrsets = self.rrsets
        return tuple(rrsets[key] for key in sorted(rrsets, key=sort_key))

    def __len__(self) -> int:
        return len(self.rrsets)

    def get(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> RRset | None:
        return self.rrsets.get((name, rdtype))

    @property
    def soa(self) -> dns.rdtypes.ANY.SOA.SOA:
        rrset = self.get(self.origin, dns.rdatatype.SOA)
        if rrset is None:
            raise ValueError(f"zone {self.origin} has no SOA")
        soa = rrset.rdatas[0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        return soa

    @property
    def serial(self) -> int:
        return int(self.soa.serial)

    @property
    def signed(self) -> bool:
        """A zone with a DNSKEY at its apex: providers must serve its signatures too."""
        return (self.origin, dns.rdatatype.DNSKEY) in self.rrsets

    @functools.cached_property
    def wire(self) -> bytes:
        """Every record, uncompressed, in canonical order: owner, type, class, TTL, rdata
        length and rdata (original case). The state file keeps this as the local copy."""
        parts: list[bytes] = []
        add = parts.append
        for rrset in self.ordered:
            head = rrset.name.wire + _TYPE_CLASS_TTL.pack(rrset.rdtype, _IN, rrset.ttl)
            for rdata in rrset.wires():
                add(head)
                add(len(rdata).to_bytes(2, "big"))
                add(rdata)
        return b"".join(parts)

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of :attr:`wire`: what the state records as pushed to a target, made
        once per zone version from the bytes the local copy is stored as anyway."""
        return hashlib.sha256(self.wire).hexdigest()

    def apex_ns(self) -> RRset | None:
        return self.get(self.origin, dns.rdatatype.NS)

    def without_types(self, types: frozenset[dns.rdatatype.RdataType]) -> ZoneData:
        """The same zone without RRsets of ``types`` (e.g. DNSSEC data for a signing target)."""
        return ZoneData(
            self.origin, {k: v for k, v in self.rrsets.items() if v.rdtype not in types}
        )

    def to_text(self) -> str:
        """Presentation format, one RR per line, absolute names (for other tools)."""
        lines = [f"$ORIGIN {self.origin}"]
        for rrset in self:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            lines.extend(f"{rrset.name} {rrset.ttl} IN {kind} {t}" for t in rrset.texts())
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, origin: dns.name.Name) -> ZoneData:
        from dns import zone as dns_zone  # for tests and tools: the sync path parses no text

        zone = dns_zone.from_text(text, origin, relativize=False, check_origin=False)
        return cls.from_dns_zone(zone)


def _split_rdataset(owner: dns.name.Name, rds: dns.rdataset.Rdataset) -> list[RRset]:
    return [RRset.of(owner, rds.rdtype, rds.ttl, rds)]


def _merge_rrsigs(sets: list[RRset]) -> list[RRset]:
    """dnspython keeps one rdataset per covered type; providers want one RRSIG set per owner.
    The merged TTL is the smallest (RRSIG TTLs follow their RRsets and may differ)."""
    merged: dict[dns.name.Name, list[RRset]] = {}
    out: list[RRset] = []
    for rrset in sets:
        if rrset.rdtype == dns.rdatatype.RRSIG:
            merged.setdefault(rrset.name, []).append(rrset)
        else:
            out.append(rrset)
    for owner, parts in merged.items():
        ttl = min(p.ttl for p in parts)
        out.append(RRset.of(owner, dns.rdatatype.RRSIG, ttl, (r for p in parts for r in p.rdatas)))
    return out
