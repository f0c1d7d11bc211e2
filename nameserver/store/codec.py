"""The store's row codec: records to ``records`` and journal rows and back.

Writing, :class:`_Encoder` converts each distinct owner name once and encodes the bulk
types directly; reading, :class:`_Decoder` rebuilds records, with fast decoders for the
bulk types checked against dnspython at import.
"""

from __future__ import annotations

import gc
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import dns.dnssectypes
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.nsbase

from nameserver.errors import StoreError
from nameserver.zone.records import (
    MAX_TTL,
    AnyRecord,
    Record,
    WireRecord,
    type_text,
)
from nameserver.zone.wirename import lower

_IN = dns.rdataclass.IN
_ADD = "add"
_REMOVE = "remove"

# Types whose rdata holds no domain name that canonical form would lowercase: for them the
# identity key is the wire form itself, which saves a second encoding per record.
_NAMELESS_TYPES = frozenset(
    int(t)
    for t in (
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.DS,
        dns.rdatatype.TXT,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.TLSA,
        dns.rdatatype.SSHFP,
        dns.rdatatype.CAA,
    )
)

# One row of ``records``: owner, owner_key, rtype, ttl, rdata, rdata_key.
_Row = tuple[str, str, int, int, bytes, bytes]
_Key = tuple[str, int, bytes]


# --- decoding -----------------------------------------------------------------------------
#
# Loading a zone must be fast (200k records well under 2 s), and dnspython's constructors
# re-validate every field, which costs tens of microseconds per record. The store only ever
# reads back wire data that dnspython itself produced, so the bulk types are rebuilt by
# setting their slots directly, the way dnspython's own unpickling does. Each fast decoder is
# checked against ``dns.rdata.from_wire`` at import and dropped if it disagrees (for example
# after a dnspython upgrade that changes the slots); everything else uses ``from_wire``.

_set = object.__setattr__
RdataDecoder = Callable[[bytes], dns.rdata.Rdata]


def _from_wire(rdtype: int, wire: bytes) -> dns.rdata.Rdata:
    """dnspython's full, validating decoder."""
    return dns.rdata.from_wire(_IN, dns.rdatatype.RdataType(rdtype), wire, 0, len(wire))


def _wire(rdata: dns.rdata.Rdata) -> bytes:
    """Uncompressed wire form of ``rdata``, names in their original case."""
    wire = rdata.to_wire()
    if wire is None:  # only when writing to a file, which we never do
        raise StoreError(f"cannot encode {rdata}")
    return wire


def _rdata_class(rdtype: dns.rdatatype.RdataType) -> type[dns.rdata.Rdata]:
    cls: type[dns.rdata.Rdata] = dns.rdata.get_rdata_class(_IN, rdtype)  # type: ignore[no-untyped-call]
    return cls


# The decoders below are closures with everything bound locally and no helper calls: at
# 200k records each saved call is worth ~0.1 s.


def _make_decode_a() -> RdataDecoder:
    rdtype = dns.rdatatype.A
    cls = _rdata_class(rdtype)
    new, ntoa = cls.__new__, socket.inet_ntoa

    def decode(wire: bytes) -> dns.rdata.Rdata:
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "address", ntoa(wire))
        return rd

    return decode


_EMBEDDED_V4_PREFIX = bytes(10)


def _make_decode_aaaa() -> RdataDecoder:
    rdtype = dns.rdatatype.AAAA
    cls = _rdata_class(rdtype)
    new, ntop, af = cls.__new__, socket.inet_ntop, socket.AF_INET6

    def decode(wire: bytes) -> dns.rdata.Rdata:
        if wire.startswith(_EMBEDDED_V4_PREFIX):
            # Embedded-IPv4 forms: dnspython and inet_ntop format these differently.
            return _from_wire(rdtype, wire)
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "address", ntop(af, wire))
        return rd

    return decode


def _make_decode_ds() -> RdataDecoder:
    rdtype = dns.rdatatype.DS
    cls = _rdata_class(rdtype)
    new = cls.__new__
    algorithms: dict[int, dns.dnssectypes.Algorithm] = {}
    digests: dict[int, dns.dnssectypes.DSDigest] = {}

    def decode(wire: bytes) -> dns.rdata.Rdata:
        alg = algorithms.get(wire[2])
        if alg is None:
            alg = algorithms[wire[2]] = dns.dnssectypes.Algorithm.make(wire[2])
        dig = digests.get(wire[3])
        if dig is None:
            dig = digests[wire[3]] = dns.dnssectypes.DSDigest.make(wire[3])
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "key_tag", (wire[0] << 8) | wire[1])
        _set(rd, "algorithm", alg)
        _set(rd, "digest_type", dig)
        _set(rd, "digest", wire[4:])
        return rd

    return decode


_FAST_SAMPLES: dict[int, tuple[str, ...]] = {
    int(dns.rdatatype.A): ("192.0.2.1", "0.0.0.0", "255.255.255.255"),
    int(dns.rdatatype.AAAA): (
        "2001:db8::1",
        "2001:db8:0:1:0:0:0:1",
        "1:0:0:1:0:0:0:1",
        "fe80::",
        "::1",
        "::ffff:192.0.2.1",
        "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
    ),
    int(dns.rdatatype.DS): (
        "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118",
        "2371 13 2 C988EC423E3880EB8DD8A46FE06CA230EE23F35B578F64D5ADB1C8D3B8F7E0C5",
    ),
}


def _agrees(decode: RdataDecoder, rdtype: int, samples: Iterable[str]) -> bool:
    """True when ``decode`` rebuilds exactly what ``dns.rdata.from_wire`` does."""
    try:
        for text in samples:
            wire = _wire(dns.rdata.from_text(_IN, dns.rdatatype.RdataType(rdtype), text))
            slow = _from_wire(rdtype, wire)
            fast = decode(wire)
            same = (
                type(fast) is type(slow)
                and fast.__getstate__() == slow.__getstate__()  # type: ignore[no-untyped-call]
                and fast == slow
                and fast.to_text() == slow.to_text()
            )
            if not same:
                return False
    except Exception:  # any failure just means "use the slow, safe path"
        return False
    return True


def _fast_decoders() -> dict[int, RdataDecoder]:
    makers = {
        int(dns.rdatatype.A): _make_decode_a,
        int(dns.rdatatype.AAAA): _make_decode_aaaa,
        int(dns.rdatatype.DS): _make_decode_ds,
    }
    out: dict[int, RdataDecoder] = {}
    for rdtype, make in makers.items():
        decode = make()
        if _agrees(decode, rdtype, _FAST_SAMPLES[rdtype]):
            out[rdtype] = decode
    return out


_FAST_DECODERS = _fast_decoders()


def _name_fast(text: str) -> dns.name.Name:
    """Rebuild an absolute name from the text the store wrote (``Name.to_text()``)."""
    if "\\" in text or not text.endswith(".") or text == ".":
        return dns.name.from_text(text)
    # Without escapes every dot is a label separator; the labels were validated on write.
    name: dns.name.Name = dns.name.Name.__new__(dns.name.Name)
    _set(name, "labels", tuple(text.encode("ascii").split(b".")))
    return name


def _owner_wire(text: str) -> bytes:
    """Wire form of a stored owner name (absolute presentation text)."""
    if "\\" in text:
        return dns.name.from_text(text).to_wire() or b"\x00"
    if text == ".":
        return b"\x00"
    return b"".join(bytes((len(label),)) + label for label in text.encode("ascii").split(b"."))


def _names_agree() -> bool:
    try:
        for text in ("example.com.", "Mixed.Case.Example.", "*.wild.example.", "x."):
            fast, slow = _name_fast(text), dns.name.from_text(text)
            if fast.labels != slow.labels or hash(fast) != hash(slow) or fast != slow:
                return False
    except Exception:  # fall back to the public parser on any surprise
        return False
    return True


_NAME_FROM_TEXT: Callable[[str], dns.name.Name] = (
    _name_fast if _names_agree() else dns.name.from_text
)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many objects: it would otherwise run every 700
    allocations and rescan the growing list (~25% of the load time); the records built hold
    no reference cycles, so nothing is left for it to collect."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Decoder:
    """Turns stored rows back into :class:`Record` objects, sharing equal names and rdata."""

    def __init__(self) -> None:
        self._names: dict[str, dns.name.Name] = {}
        self._rdatas: dict[tuple[int, bytes], dns.rdata.Rdata] = {}

    def record(self, owner: str, rtype: int, ttl: int, wire: bytes) -> Record:
        """One record from its stored columns."""
        name = self._names.get(owner)
        if name is None:
            name = self._names[owner] = _NAME_FROM_TEXT(owner)
        fast = _FAST_DECODERS.get(rtype)
        if fast is not None:
            return Record(name, ttl, fast(wire))
        # Rdata objects are immutable, so repeated values (NS targets, MX...) are shared.
        key = (rtype, wire)
        rdata = self._rdatas.get(key)
        if rdata is None:
            rdata = self._rdatas[key] = _from_wire(rtype, wire)
        return Record(name, ttl, rdata)

    def records(self, rows: Iterable[tuple[str, int, int, bytes]]) -> list[Record]:
        """Records from (owner, rtype, ttl, rdata) rows: the hot loop of loading a zone."""
        with _gc_paused():
            return self._records(rows)

    def _records(self, rows: Iterable[tuple[str, int, int, bytes]]) -> list[Record]:
        names, rdatas, fast_decoders = self._names, self._rdatas, _FAST_DECODERS
        out: list[Record] = []
        append = out.append
        for owner, rtype, ttl, wire in rows:
            name = names.get(owner)
            if name is None:
                name = names[owner] = _NAME_FROM_TEXT(owner)
            fast = fast_decoders.get(rtype)
            if fast is not None:
                append(Record(name, ttl, fast(wire)))
                continue
            rdata = rdatas.get((rtype, wire))
            if rdata is None:
                rdata = rdatas[rtype, wire] = _from_wire(rtype, wire)
            append(Record(name, ttl, rdata))
        return out


# --- encoding -----------------------------------------------------------------------------


def _zone_key(zone: dns.name.Name) -> str:
    return zone.to_text().lower()


def _name_wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    if wire is None:  # only when writing to a file, which we never do
        raise StoreError(f"cannot encode {name}")
    return wire


def _fast_encoding_agrees() -> bool:
    """True when _Encoder's direct encodings equal dnspython's to_wire()/to_digestable()."""
    samples = [
        ("A", "192.0.2.1"),
        ("AAAA", "2001:DB8::1"),
        ("AAAA", "::ffff:192.0.2.1"),
        ("NS", "NS1.Example.COM."),
        ("CNAME", "Www.Example."),
        ("PTR", "Host.Example."),
        ("DNAME", "Other.Example."),
        ("NS", "\\.A\\.\\200.example."),
    ]
    try:
        encoder = _Encoder(fast=True)
        for rtype, text in samples:
            rdata = dns.rdata.from_text(_IN, rtype, text)
            if encoder.rdata(rdata) != (_wire(rdata), rdata.to_digestable()):
                return False
    except Exception:  # any surprise: use dnspython's encoders
        return False
    return True


# --- signer rows in wire form -----------------------------------------------------------
#
# The signer hands its RRs over as wire (WireRecord), so a signing pass of a big zone is
# not decoded into dnspython objects only to be encoded again here. They are checked
# instead: a well-formed owner, and rdata of one of the signer's types whose shape holds
# and whose identity key is derived from the wire as dnspython's to_digestable() makes it
# (RFC 4034 §6.2 lowercases the signer name of an RRSIG; RFC 6840 §5.1 leaves the next
# name of an NSEC as it is; the other types hold no domain name).

_RRSIG_T, _NSEC_T, _NSEC3_T = (
    int(t) for t in (dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.NSEC3)
)
_DECODED_WIRE_TYPES = frozenset(
    int(t)
    for t in (
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.NSEC3PARAM,
    )
)
# Names whose labels hold only bytes that Name.to_text() writes as they are (no escape).
_PLAIN_NAME = re.compile(rb"[A-Za-z0-9_*.-]+")


def _name_end(wire: bytes, at: int) -> int | None:
    """Where the uncompressed name at ``wire[at:]`` ends (None: not a well-formed name)."""
    start, size = at, len(wire)
    while at < size:
        length = wire[at]
        if length == 0:
            return at + 1 if at + 1 - start <= 255 else None
        if length > 63:
            return None
        at += length + 1
    return None


def _owner_text(wire: bytes) -> str | None:
    """The presentation form of an owner name in wire form, as Name.to_text() writes it
    (None: not exactly one well-formed name)."""
    if _name_end(wire, 0) != len(wire):
        return None
    labels = []
    at = 0
    while wire[at]:
        labels.append(wire[at + 1 : at + 1 + wire[at]])
        at += wire[at] + 1
    if not labels:
        return "."
    text = b".".join(labels)
    # One check for the whole name: only plain bytes, and no dot but the separators.
    if _PLAIN_NAME.fullmatch(text) and text.count(b".") == len(labels) - 1:
        return text.decode("ascii") + "."
    return str(dns.name.from_wire(wire, 0)[0].to_text())


def _bitmap_ok(wire: bytes, at: int) -> bool:
    """A well-formed type bitmap fills ``wire[at:]`` (RFC 4034 §4.1.2)."""
    last = -1
    size = len(wire)
    while at < size:
        if at + 2 > size or wire[at] <= last or not 1 <= wire[at + 1] <= 32:
            return False
        last = wire[at]
        at += 2 + wire[at + 1]
    return at == size


def _wire_key(rtype: int, wire: bytes) -> bytes | None:
    """The identity key of a signer RR's rdata, or None when it is not well formed."""
    if rtype == _RRSIG_T:
        end = _name_end(wire, 18)
        if end is None or end >= len(wire):
            return None
        return wire[:18] + lower(wire[18:end]) + wire[end:]
    if rtype == _NSEC_T:
        end = _name_end(wire, 0)
        return wire if end is not None and _bitmap_ok(wire, end) else None
    if rtype == _NSEC3_T:
        if len(wire) < 6:
            return None
        at = 5 + wire[4]  # algorithm, flags, iterations, salt length, salt
        if at >= len(wire) or wire[at] == 0:
            return None
        return wire if _bitmap_ok(wire, at + 1 + wire[at]) else None
    if rtype in _DECODED_WIRE_TYPES:
        try:  # apex RRsets: a few RRs a pass, checked by dnspython
            _from_wire(rtype, wire)
        except dns.exception.DNSException:
            return None
        return wire
    return None


class _Encoder:
    """Turns records into ``records`` rows, converting each distinct owner name once."""

    def __init__(self, fast: bool | None = None) -> None:
        self._fast = _FAST_ENCODING if fast is None else fast
        self._owners: dict[tuple[bytes, ...], tuple[str, str]] = {}
        self._targets: dict[tuple[bytes, ...], tuple[bytes, bytes]] = {}
        self._wire_owners: dict[bytes, tuple[str, str]] = {}
        self._signer = (b"\x00", b"\x00")  # RRSIG signer name: wire, lowered

    def row(self, record: AnyRecord) -> _Row:
        """Original-case owner text and rdata wire, plus the identity keys."""
        if isinstance(record, WireRecord):
            return self._wire_row(record)
        name, ttl, rdata = record
        owner = self._owners.get(name.labels)  # labels, not name: the cache is case-exact
        if owner is None:
            owner = self._owners[name.labels] = self._owner(record)
        if rdata.rdclass != _IN:
            raise StoreError(f"cannot store {record.to_text()}: only class IN is stored")
        try:
            wire, key = self.rdata(rdata)
        except dns.exception.DNSException as e:
            raise StoreError(
                f"cannot store {record.to_text()}: {e}; names in rdata must be absolute"
            ) from e
        return owner[0], owner[1], int(rdata.rdtype), ttl, wire, key

    def rdata(self, rdata: dns.rdata.Rdata) -> tuple[bytes, bytes]:
        """(uncompressed original-case wire, canonical identity key) of ``rdata``.

        Addresses and single-name types (NS, CNAME, PTR, DNAME...) are the bulk of big zones;
        they are encoded directly, names once per distinct target (checked at import).
        """
        if self._fast:
            if isinstance(rdata, dns.rdtypes.IN.A.A):
                wire = socket.inet_aton(rdata.address)
                return wire, wire
            if isinstance(rdata, dns.rdtypes.IN.AAAA.AAAA):
                wire = socket.inet_pton(socket.AF_INET6, rdata.address)
                return wire, wire
            if isinstance(rdata, dns.rdtypes.nsbase.NSBase) and rdata.target.is_absolute():
                target = rdata.target
                encoded = self._targets.get(target.labels)
                if encoded is None:
                    encoded = (_name_wire(target), _name_wire(target.canonicalize()))
                    self._targets[target.labels] = encoded
                return encoded
        wire = _wire(rdata)
        return wire, wire if int(rdata.rdtype) in _NAMELESS_TYPES else rdata.to_digestable()

    def _wire_row(self, record: WireRecord) -> _Row:
        """The row of an RR the signer made in wire form: checked, not decoded."""
        owner_wire, rtype, ttl, wire = record
        owner = self._wire_owners.get(owner_wire)
        if owner is None:
            text = _owner_text(owner_wire)
            if text is None:
                raise StoreError(
                    f"cannot store a {type_text(rtype)} RR in wire form: its owner "
                    f"{owner_wire!r} is not one well-formed domain name"
                )
            owner = self._wire_owners[owner_wire] = (text, text.lower())
        signer, lowered = self._signer
        key: bytes | None
        if rtype == _RRSIG_T and wire.startswith(signer, 18) and len(wire) > 18 + len(signer):
            # The signer name of the last RRSIG again (a zone's RRSIGs share one): a
            # name ends where its bytes say, so the same bytes are the same whole name.
            key = wire[:18] + lowered + wire[18 + len(signer) :]
        else:
            key = _wire_key(rtype, wire)
            if key is not None and rtype == _RRSIG_T:
                end = _name_end(wire, 18)
                assert end is not None
                self._signer = (wire[18:end], key[18:end])
        if key is None:
            raise StoreError(
                f"cannot store the {type_text(rtype)} RR of {owner[0]} in wire form: only the "
                f"signer's types are, and its rdata must be well formed ({wire.hex()})"
            )
        if type(ttl) is not int or not 0 <= ttl <= MAX_TTL:
            raise StoreError(f"cannot store the {type_text(rtype)} RR of {owner[0]}: TTL {ttl}")
        return owner[0], owner[1], rtype, ttl, wire, key

    @staticmethod
    def _owner(record: Record) -> tuple[str, str]:
        if not record.name.is_absolute():
            raise StoreError(f"cannot store {record.to_text()}: the owner must be absolute")
        text = record.name.to_text()
        # to_text() escapes every non-ASCII byte, so str.lower() folds only A-Z, exactly as
        # DNS name comparison does (RFC 4343).
        return text, text.lower()

    def key(self, record: AnyRecord) -> _Key:
        """The RR identity: lowercase owner, type, canonical rdata (TTL excluded)."""
        _owner, owner_key, rtype, _ttl, _wire, key = self.row(record)
        return owner_key, rtype, key


_FAST_ENCODING = _fast_encoding_agrees()


def _chunks(items: Iterable[AnyRecord], size: int) -> Iterator[list[AnyRecord]]:
    """Consume ``items`` lazily, ``size`` at a time (the caller may stream a huge change)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk
