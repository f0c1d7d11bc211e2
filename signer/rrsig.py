"""RRSIG creation (RFC 4034 section 3, RFC 6840 section 5.1).

The signed data of RFC 4034 section 3.1.8.1 is built directly as bytes::

    RRSIG_RDATA (without the signature) | RR(1) | RR(2) | ...

where every RR is ``owner | type | class | original TTL | RDLENGTH | RDATA`` in
canonical form (RFC 4034 section 6.2): the owner name in lowercase uncompressed wire
form, and the RDATA with embedded domain names lowercased only for the RR types that
RFC 4034 section 6.2 lists, as amended by RFC 6840 section 5.1 (NSEC removed; HINFO
carries no names).  The RRs are sorted by their canonical RDATA and duplicates are
dropped (RFC 4034 section 6.3).  Only the signature itself is made by
:meth:`signer.keys.KeyPair.sign`.
"""

from __future__ import annotations

import struct
import types
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import dns.dnssectypes
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.RRSIG import RRSIG

from signer.errors import SignerError
from signer.keys import KeyPair

__all__ = [
    "LOWERCASE_RDATA_TYPES",
    "InvalidRRsetError",
    "canonical_rdata",
    "label_count",
    "make_rrsig",
    "sign_canonical",
    "sign_rrset",
    "signed_data",
    "type_text",
]

_IN = dns.rdataclass.IN
_RRSIG = dns.rdatatype.RRSIG
_UINT32 = 1 << 32

#: RR types whose embedded domain names are lowercased in the canonical form:
#: RFC 4034 section 6.2 minus NSEC (RFC 6840 section 5.1) and HINFO (no names).
LOWERCASE_RDATA_TYPES: frozenset[int] = frozenset(
    {
        2,  # NS
        3,  # MD
        4,  # MF
        5,  # CNAME
        6,  # SOA
        7,  # MB
        8,  # MG
        9,  # MR
        12,  # PTR
        14,  # MINFO
        15,  # MX
        17,  # RP
        18,  # AFSDB
        21,  # RT
        24,  # SIG
        26,  # PX
        30,  # NXT
        33,  # SRV
        35,  # NAPTR
        36,  # KX
        38,  # A6
        39,  # DNAME
        46,  # RRSIG
    }
)


class InvalidRRsetError(SignerError):
    """An RRset that cannot be signed (bad TTL, times, rdata or owner name)."""


def type_text(rdtype: int) -> str:
    """Mnemonic of an RR type number, e.g. ``MX`` or ``TYPE65534``."""
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def canonical_rdata(rdtype: int, wire: bytes) -> bytes:
    """Canonical form (RFC 4034 section 6.2) of uncompressed rdata ``wire`` of ``rdtype``.

    Rdata of types outside :data:`LOWERCASE_RDATA_TYPES`, or without any uppercase
    ASCII letter, is already canonical and returned unchanged (no parsing).
    """
    if rdtype not in LOWERCASE_RDATA_TYPES or wire.lower() == wire:
        return wire
    try:
        rdata = dns.rdata.from_wire(_IN, dns.rdatatype.RdataType.make(rdtype), wire, 0, len(wire))
    except Exception as exc:
        raise InvalidRRsetError(
            f"{type_text(rdtype)} rdata is not valid uncompressed wire form: {exc}"
        ) from exc
    return rdata.to_digestable()


def label_count(owner: dns.name.Name) -> int:
    """RRSIG Labels field: labels of ``owner`` without the root and a leading ``*``."""
    labels = len(owner.labels) - 1 if owner.is_absolute() else len(owner.labels)
    if owner.is_wild():
        labels -= 1
    return labels


def _check_time(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRRsetError(f"RRSIG {what} {value!r} must be a non-negative POSIX time")
    return value % _UINT32


_HEAD = struct.Struct("!HBBIIIH")  # RRSIG RDATA fields before the signer name
_RR_HEAD = struct.Struct("!HHI")  # type, class, original TTL of each RR
_RDLENGTH = struct.Struct("!H")
_ONE_RR_HEAD = struct.Struct("!HHIH")  # the same plus RDLENGTH, for one-RR RRsets


def signed_data(
    owner_wire: bytes,
    labels: int,
    rdtype: int,
    ttl: int,
    rdatas: Sequence[bytes],
    signer_wire: bytes,
    algorithm: int,
    key_tag: int,
    inception: int,
    expiration: int,
) -> bytes:
    """The data an RRSIG signs (RFC 4034 section 3.1.8.1); arguments as for
    :func:`sign_canonical`.  Sorting and de-duplication of ``rdatas`` happen here."""
    head = _HEAD.pack(rdtype, algorithm, labels, ttl, expiration, inception, key_tag)
    if len(rdatas) == 1:  # most RRsets: nothing to sort, one join
        rdata = rdatas[0]
        rr_head = _ONE_RR_HEAD.pack(rdtype, _IN, ttl, len(rdata))
        return b"".join((head, signer_wire, owner_wire, rr_head, rdata))
    parts = [head, signer_wire]
    prefix = owner_wire + _RR_HEAD.pack(rdtype, _IN, ttl)
    pack_len = _RDLENGTH.pack
    for rdata in sorted(set(rdatas)):
        parts += (prefix, pack_len(len(rdata)), rdata)
    return b"".join(parts)


def sign_canonical(
    owner_wire: bytes,
    labels: int,
    rdtype: int,
    ttl: int,
    rdatas: Iterable[bytes],
    signer_wire: bytes,
    key: KeyPair,
    key_tag: int,
    inception: int,
    expiration: int,
) -> bytes:
    """Low-level signer for hot loops: return only the signature bytes.

    ``owner_wire`` and ``signer_wire`` must be lowercase uncompressed wire names,
    ``rdatas`` already canonical (see :func:`canonical_rdata`), ``inception`` and
    ``expiration`` already reduced modulo 2**32.  Sorting and de-duplication of
    ``rdatas`` happen here.
    """
    if not isinstance(rdatas, tuple | list):
        rdatas = tuple(rdatas)
    data = signed_data(
        owner_wire,
        labels,
        rdtype,
        ttl,
        rdatas,
        signer_wire,
        key.algorithm,
        key_tag,
        inception,
        expiration,
    )
    return key.sign(data)


def sign_rrset(
    owner: dns.name.Name,
    rdtype: int,
    ttl: int,
    rdatas: Sequence[bytes],
    signer: dns.name.Name,
    key: KeyPair,
    inception: int,
    expiration: int,
) -> RRSIG:
    """Sign one RRset of class IN and return the RRSIG rdata.

    ``rdatas`` are the RRs' rdata in uncompressed wire form (any case; they are
    canonicalised here).  ``owner`` and ``signer`` must be absolute; ``owner`` may
    be a wildcard (``*.example.``), which reduces the Labels field by one.
    ``inception``/``expiration`` are POSIX times, stored modulo 2**32 (RFC 4034
    section 3.1.5 serial number arithmetic).
    """
    if not owner.is_absolute() or not signer.is_absolute():
        raise InvalidRRsetError(f"owner {owner} and signer {signer} must be absolute names")
    if not owner.is_subdomain(signer):
        raise InvalidRRsetError(f"owner {owner} is not in the signer's zone {signer}")
    if rdtype == _RRSIG:
        raise InvalidRRsetError("RRSIG RRsets are never signed (RFC 4035 section 2.2)")
    if not rdatas:
        raise InvalidRRsetError(f"empty RRset {owner} {type_text(rdtype)}")
    if isinstance(ttl, bool) or not 0 <= ttl < (1 << 31):
        raise InvalidRRsetError(f"TTL {ttl!r} must be between 0 and 2147483647")
    if not 0 < rdtype < 65536:
        raise InvalidRRsetError(f"RR type {rdtype!r} must be between 1 and 65535")
    inc = _check_time(inception, "inception")
    exp = _check_time(expiration, "expiration")
    if expiration <= inception:
        raise InvalidRRsetError(
            f"RRSIG expiration {expiration} must be later than inception {inception}"
        )
    tag = key.key_tag()
    signature = sign_canonical(
        owner.to_digestable(),
        label_count(owner),
        rdtype,
        ttl,
        (canonical_rdata(rdtype, r) for r in rdatas),
        signer.to_digestable(),
        key,
        tag,
        inc,
        exp,
    )
    return make_rrsig(
        rdtype, key.algorithm, label_count(owner), ttl, exp, inc, tag, signer, signature
    )


_RRSIG_SLOTS = (
    "rdclass",
    "rdtype",
    "rdcomment",
    "type_covered",
    "algorithm",
    "labels",
    "original_ttl",
    "expiration",
    "inception",
    "key_tag",
    "signer",
    "signature",
)
_Builder = Callable[
    [dns.rdatatype.RdataType, int, int, int, int, int, int, dns.name.Name, bytes], RRSIG
]


def _slot_builder() -> _Builder | None:
    """A function storing RRSIG fields straight into a new RRSIG's ``__slots__`` (as
    dnspython's own unpickling does), or None when dnspython's RRSIG is not (any more) a
    plain slotted class with exactly :data:`_RRSIG_SLOTS`."""
    slots = {slot for cls in RRSIG.__mro__ for slot in getattr(cls, "__slots__", ())}
    descriptors = [getattr(RRSIG, name, None) for name in _RRSIG_SLOTS]
    if slots != set(_RRSIG_SLOTS) or not all(
        isinstance(d, types.MemberDescriptorType) for d in descriptors
    ):
        return None
    setters = [cast(types.MemberDescriptorType, d).__set__ for d in descriptors]
    # Unrolled, with each setter a closure variable: half the cost of a loop.
    s_class, s_type, s_comment, s_covered, s_alg, s_labels = setters[:6]
    s_ttl, s_exp, s_inc, s_tag, s_signer, s_signature = setters[6:]
    new = RRSIG.__new__

    def build(
        covered: dns.rdatatype.RdataType,
        algorithm: int,
        labels: int,
        ttl: int,
        expiration: int,
        inception: int,
        key_tag: int,
        signer: dns.name.Name,
        signature: bytes,
    ) -> RRSIG:
        rrsig: RRSIG = new(RRSIG)
        s_class(rrsig, _IN)
        s_type(rrsig, _RRSIG)
        s_comment(rrsig, None)
        s_covered(rrsig, covered)
        s_alg(rrsig, algorithm)
        s_labels(rrsig, labels)
        s_ttl(rrsig, ttl)
        s_exp(rrsig, expiration)
        s_inc(rrsig, inception)
        s_tag(rrsig, key_tag)
        s_signer(rrsig, signer)
        s_signature(rrsig, signature)
        return rrsig

    return build


_BUILD_RRSIG = _slot_builder()
_RDTYPES: dict[int, dns.rdatatype.RdataType] = {}
_ALGORITHMS: dict[int, int] = {}  # Algorithm members; unknown numbers stay int
_MAX_RDATA_TTL = (1 << 32) - 1  # what the RRSIG constructor accepts as original TTL


def _fast_path_ok(
    rdtype: object,
    algorithm: object,
    labels: object,
    ttl: object,
    expiration: object,
    inception: object,
    key_tag: object,
    signer: object,
    signature: object,
) -> bool:
    """True when every field is already of the type and range the constructor checks."""
    return (
        type(rdtype) is int
        and 0 <= rdtype <= 0xFFFF
        and type(algorithm) is int
        and 0 <= algorithm <= 0xFF
        and type(labels) is int
        and 0 <= labels <= 0xFF
        and type(ttl) is int
        and 0 <= ttl <= _MAX_RDATA_TTL
        and type(expiration) is int
        and 0 <= expiration < _UINT32
        and type(inception) is int
        and 0 <= inception < _UINT32
        and type(key_tag) is int
        and 0 <= key_tag <= 0xFFFF
        and isinstance(signer, dns.name.Name)
        and type(signature) is bytes
    )


def make_rrsig(
    rdtype: int,
    algorithm: int,
    labels: int,
    ttl: int,
    expiration: int,
    inception: int,
    key_tag: int,
    signer: dns.name.Name,
    signature: bytes,
) -> RRSIG:
    """Build an RRSIG rdata object from its fields.

    Whole-zone signing makes one per signature, and dnspython's constructor (checks
    and an immutability context per field) costs more than the rest of the work
    outside the signature itself.  Fields that are already plain, in-range ints, a Name
    and bytes are stored straight into the slots, as dnspython's own unpickling does;
    anything else goes through the constructor, which converts or rejects it.  The
    result is the same object either way (equal, same text and wire form).
    """
    build = _BUILD_RRSIG
    if build is None or not _fast_path_ok(
        rdtype, algorithm, labels, ttl, expiration, inception, key_tag, signer, signature
    ):
        return RRSIG(  # type: ignore[no-untyped-call]
            _IN,
            _RRSIG,
            rdtype,
            algorithm,
            labels,
            ttl,
            expiration,
            inception,
            key_tag,
            signer,
            signature,
        )
    covered = _RDTYPES.get(rdtype)
    if covered is None:
        covered = _RDTYPES[rdtype] = dns.rdatatype.RdataType.make(rdtype)
    alg = _ALGORITHMS.get(algorithm)
    if alg is None:
        alg = _ALGORITHMS[algorithm] = dns.dnssectypes.Algorithm.make(algorithm)
    return build(covered, alg, labels, ttl, expiration, inception, key_tag, signer, signature)
