"""NSEC3 hashed denial of existence (RFC 5155, parameters per RFC 9276).

Hashing (RFC 5155 section 5): ``IH(salt, x, 0) = SHA-1(x | salt)`` and
``IH(salt, x, k) = SHA-1(IH(salt, x, k-1) | salt)``, where ``x`` is the owner name in
canonical (lowercase, uncompressed) wire form.  The hashed owner name is the digest in
base32hex without padding (RFC 4648 section 7), as one label prepended to the apex.

Which names get an NSEC3 (RFC 5155 section 7.1):

* every authoritative owner name (see :func:`signer.nsec.authoritative_names`):
  the apex, ordinary names, wildcards (``*.x`` is an ordinary owner name) and
  delegation points;
* every empty non-terminal (ENT) between the apex and those names; ENTs below a
  zone cut (those only glue or other occluded data creates) are not in the zone's
  authoritative data and get none, as with BIND's ``dnssec-signzone``;
* with Opt-Out, insecure delegations (NS without DS) are left out, and so are
  ENTs that exist only because of them ("unless the empty non-terminal is only
  derived from an insecure delegation covered by an Opt-Out NSEC3 RR"); every
  NSEC3 then carries the Opt-Out flag.  Secure delegations always stay.

Type bitmaps hold the types present at the *original* owner name, never NSEC3
itself (RFC 5155 sections 3.1.8 and 7.1): the authoritative types, plus RRSIG when
the name owns a signed RRset.  So an ENT has an empty bitmap, an insecure
delegation has ``NS`` only (its NS RRset is not signed and the NSEC3's own RRSIG
lives at the hashed owner name), a secure delegation ``NS DS RRSIG``.  This is
what ``dnssec-signzone -3`` emits too.

The NSEC3PARAM RR (RFC 5155 section 4) carries the same algorithm, iterations and
salt with flags 0: the Opt-Out bit is never set in it (section 4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.NSEC3 import NSEC3
from dns.rdtypes.ANY.NSEC3PARAM import NSEC3PARAM

from signer.errors import SignerError
from signer.nsec import NameInfo, authoritative_names, canonical_key, type_bitmap

__all__ = [
    "MAX_ITERATIONS",
    "MAX_SALT_LENGTH",
    "NSEC3PARAM_TTL",
    "OPT_OUT_FLAG",
    "SHA1",
    "Nsec3Error",
    "Nsec3Name",
    "Nsec3Params",
    "encode_hash",
    "hash_name",
    "hashed_owner_label",
    "make_nsec3",
    "nsec3_bitmap_types",
    "nsec3_chain",
    "nsec3_hash",
    "nsec3_names",
    "nsec3_owner",
    "nsec3param",
]

#: NSEC3 hash algorithm 1, SHA-1: the only one defined (RFC 5155 section 11).
SHA1 = 1
#: Opt-Out bit of the NSEC3 Flags field (RFC 5155 section 3.1.2.1).
OPT_OUT_FLAG = 0x01
#: Highest iteration count accepted.  RFC 9276 section 3.1: 0 MUST be used; section
#: 3.2: validators MAY treat any higher count as insecure, and several do above 100.
MAX_ITERATIONS = 100
#: The Salt Length field is one octet (RFC 5155 section 3.2).
MAX_SALT_LENGTH = 255
#: TTL of the NSEC3PARAM RR.  RFC 5155 section 4 gives none; the record is only read
#: by authoritative servers, never by resolvers, so it is not meant to be cached.
#: BIND (dnssec-signzone, named) and Knot DNS publish it with TTL 0 as well.
NSEC3PARAM_TTL = 0

_NSEC3 = int(dns.rdatatype.NSEC3)
_RRSIG = int(dns.rdatatype.RRSIG)
_DIGEST_OCTETS = 20  # SHA-1


class Nsec3Error(SignerError):
    """NSEC3 parameters or zone data from which no valid NSEC3 chain can be built."""


@dataclass(frozen=True, slots=True)
class Nsec3Params:
    """NSEC3 parameters: hash algorithm 1 (SHA-1), ``iterations`` extra hash rounds,
    ``salt``, and whether insecure delegations are opted out.

    The defaults are RFC 9276's recommendation: no extra iterations, no salt, no
    Opt-Out.  Raises Nsec3Error for values outside RFC 5155 / RFC 9276 limits.
    """

    iterations: int = 0
    salt: bytes = b""
    opt_out: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int):
            raise Nsec3Error(f"NSEC3 iterations {self.iterations!r} must be an integer")
        if not 0 <= self.iterations <= MAX_ITERATIONS:
            raise Nsec3Error(
                f"NSEC3 iterations {self.iterations} must be between 0 and {MAX_ITERATIONS}; "
                "use 0, as RFC 9276 section 3.1 requires: validators may treat zones "
                "with more iterations as insecure (RFC 9276 section 3.2)"
            )
        if not isinstance(self.salt, bytes):
            raise Nsec3Error(f"NSEC3 salt must be bytes, not {type(self.salt).__name__}")
        if len(self.salt) > MAX_SALT_LENGTH:
            raise Nsec3Error(
                f"NSEC3 salt of {len(self.salt)} octets is longer than {MAX_SALT_LENGTH}; "
                "use an empty salt, as RFC 9276 section 3.1 recommends"
            )
        if not isinstance(self.opt_out, bool):
            raise Nsec3Error(f"NSEC3 opt_out {self.opt_out!r} must be True or False")

    @property
    def flags(self) -> int:
        """The NSEC3 Flags field: the Opt-Out bit when ``opt_out``."""
        return OPT_OUT_FLAG if self.opt_out else 0


def nsec3_hash(name_wire_lowercase: bytes, params: Nsec3Params) -> bytes:
    """The raw 20-octet NSEC3 hash (RFC 5155 section 5) of a name.

    ``name_wire_lowercase`` is the absolute name in canonical wire form, as given by
    ``dns.name.Name.to_digestable()``; it is hashed as given.
    """
    return hash_name(name_wire_lowercase, params.salt, params.iterations)


def hash_name(name_wire_lowercase: bytes, salt: bytes, iterations: int) -> bytes:
    """IH(salt, x, k) of RFC 5155 section 5, for any iteration count: a zone signed
    elsewhere may use more than :class:`Nsec3Params` lets zonefan sign with."""
    digest = hashlib.sha1(name_wire_lowercase + salt).digest()
    for _ in range(iterations):
        digest = hashlib.sha1(digest + salt).digest()
    return digest


def encode_hash(digest: bytes) -> str:
    """Base32hex of ``digest``, lowercase and without padding (RFC 5155 section 3.3)."""
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()


def hashed_owner_label(name_wire_lowercase: bytes, params: Nsec3Params) -> str:
    """The first label of the NSEC3 owner name of a name: its encoded hash."""
    return encode_hash(nsec3_hash(name_wire_lowercase, params))


def _owner_from_hash(digest: bytes, origin: dns.name.Name) -> dns.name.Name:
    return dns.name.Name((encode_hash(digest).encode("ascii"), *origin.labels))


def nsec3_owner(name: dns.name.Name, origin: dns.name.Name, params: Nsec3Params) -> dns.name.Name:
    """The owner name of the NSEC3 RR that matches ``name`` in the zone ``origin``."""
    if not name.is_absolute() or not name.is_subdomain(origin):
        raise Nsec3Error(f"{name} is not a name in the zone {origin}")
    return _owner_from_hash(nsec3_hash(name.to_digestable(), params), origin)


def make_nsec3(next_hash: bytes, types: Iterable[int], params: Nsec3Params) -> NSEC3:
    """One NSEC3 rdata: ``next_hash`` is the raw hash of the next owner in hash
    order, ``types`` the bitmap types (see :func:`nsec3_bitmap_types`)."""
    if len(next_hash) != _DIGEST_OCTETS:
        raise Nsec3Error(f"next hashed owner must be {_DIGEST_OCTETS} octets, not {len(next_hash)}")
    type_list = list(types)
    if _NSEC3 in type_list:
        raise Nsec3Error("an NSEC3 type bitmap never lists NSEC3 itself (RFC 5155 section 7.1)")
    return NSEC3(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN,
        dns.rdatatype.NSEC3,
        SHA1,
        params.flags,
        params.iterations,
        params.salt,
        next_hash,
        type_bitmap(type_list),
    )


def nsec3param(params: Nsec3Params) -> NSEC3PARAM:
    """The NSEC3PARAM rdata for ``params``: flags 0, Opt-Out is never signalled there."""
    return NSEC3PARAM(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN, dns.rdatatype.NSEC3PARAM, SHA1, 0, params.iterations, params.salt
    )


@dataclass(frozen=True, slots=True)
class Nsec3Name:
    """An original owner name that needs an NSEC3, with its type bitmap types.

    ``is_ent`` marks empty non-terminals (their ``types`` are empty).
    """

    name: dns.name.Name
    key: tuple[bytes, ...]
    types: frozenset[int]
    is_ent: bool = False


def nsec3_bitmap_types(info: NameInfo) -> frozenset[int]:
    """Bitmap types of an authoritative name: its types, plus RRSIG if it has a
    signed RRset (so not for an insecure delegation, whose bitmap is just NS)."""
    return info.types | {_RRSIG} if info.signed_types() else info.types


def _is_opted_out(info: NameInfo) -> bool:
    return info.is_delegation and not info.signed_types()


def _empty_non_terminals(
    origin: dns.name.Name, names: list[NameInfo]
) -> list[tuple[tuple[bytes, ...], dns.name.Name]]:
    """ENTs: ancestors of ``names`` below the apex that own nothing themselves."""
    seen = {info.key for info in names}
    origin_depth = len(origin.labels)
    ents: list[tuple[tuple[bytes, ...], dns.name.Name]] = []
    for info in names:
        name = info.name
        while len(name.labels) > origin_depth + 1:
            name = name.parent()
            key = canonical_key(name)
            if key in seen:
                break  # this ancestor and all above it are already known
            seen.add(key)
            ents.append((key, name))
    return ents


def nsec3_names(
    origin: dns.name.Name,
    names_types: Mapping[dns.name.Name, AbstractSet[int]],
    params: Nsec3Params,
) -> list[Nsec3Name]:
    """The original owner names that get an NSEC3 in the zone ``origin``, with the
    types of their bitmaps, in canonical order.

    ``names_types`` is as for :func:`signer.nsec.nsec_chain` (glue included, it is
    filtered out; DNSKEY and NSEC3PARAM included at the apex when they are
    published).  The result is the authoritative names plus the empty
    non-terminals above them; with ``params.opt_out``, insecure delegations and the
    ENTs only they create are left out.  Incremental signing can diff two results
    of this function to find which NSEC3 RRs to add, remove or rewrite.
    """
    infos = [
        info
        for info in authoritative_names(origin, names_types)
        if not (params.opt_out and _is_opted_out(info))
    ]
    result = [Nsec3Name(info.name, info.key, nsec3_bitmap_types(info)) for info in infos]
    for key, name in _empty_non_terminals(origin, infos):
        result.append(Nsec3Name(name, key, frozenset(), is_ent=True))
    result.sort(key=lambda entry: entry.key)
    return result


def nsec3_chain(
    origin: dns.name.Name,
    names_types: Mapping[dns.name.Name, AbstractSet[int]],
    params: Nsec3Params,
    ttl: int,
) -> list[tuple[dns.name.Name, int, NSEC3]]:
    """The NSEC3 RRs ``(owner, ttl, rdata)`` of the zone ``origin``, in hash order.

    ``names_types`` is as for :func:`nsec3_names`, which decides the names and
    bitmaps.  Each NSEC3 points to the next hashed owner; the last one wraps to the
    first.  ``ttl`` is given to every RR (RFC 9077: min(SOA TTL, SOA MINIMUM)).
    Raises Nsec3Error when two names hash alike (choose another salt then, RFC 5155
    section 7.1).
    """
    hashed = sorted(
        (
            (nsec3_hash(entry.name.to_digestable(), params), entry)
            for entry in nsec3_names(origin, names_types, params)
        ),
        key=lambda pair: pair[0],  # raw digests sort like their base32hex owner labels
    )
    for (digest, first), (following, second) in itertools.pairwise(hashed):
        if digest == following:
            raise Nsec3Error(
                f"{first.name} and {second.name} have the same NSEC3 hash; "
                "choose a different salt (RFC 5155 section 7.1)"
            )
    chain: list[tuple[dns.name.Name, int, NSEC3]] = []
    for index, (digest, entry) in enumerate(hashed):
        next_hash = hashed[(index + 1) % len(hashed)][0]
        rdata = make_nsec3(next_hash, entry.types, params)
        chain.append((_owner_from_hash(digest, origin), ttl, rdata))
    return chain
