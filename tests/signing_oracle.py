"""The tests' oracle: a second, deliberately simple whole-zone signer, written from the
RFCs (4033-4035, 5155, 6840, 9077) apart from the product's. zonefan signs only through
``nameserver/dnssec/signing.py`` (``reconcile``: `zonefan zone sign`, every change, maintenance);
tests compare what it makes with what this makes (the NSEC/NSEC3 chain of the same
zone), and both with BIND's and ldns's verifiers. Not product code, and no benchmark
measures it.

:func:`sign_zone` takes an unsigned zone and returns it signed: the DNSKEY RRset
at the apex, a denial-of-existence chain, and RRSIGs over every authoritative
RRset.  The chain is NSEC (:mod:`signer.nsec`) by default, or NSEC3
(:mod:`signer.nsec3`) with an NSEC3PARAM RR at the apex when ``denial`` gives
NSEC3 parameters; a zone never holds both.

Key roles: keys with flags 257 (KSK/SEP) sign the DNSKEY RRset; keys with flags
256 (ZSK) sign everything else.  With no ZSK, the KSKs act as CSKs and sign every
RRset; with no KSK, the ZSKs sign the DNSKEY RRset too.

What is signed: every authoritative RRset, including DS at delegation points,
NSEC3PARAM, and every NSEC or NSEC3.  Not signed: NS RRsets at delegation points
and anything below a zone cut (glue), which stay in the output unsigned.

TTLs: the DNSKEY RRset gets ``dnskey_ttl`` (default: the SOA record's TTL); NSEC
and NSEC3 records get min(SOA TTL, SOA MINIMUM) (RFC 9077); NSEC3PARAM gets 0
(see :data:`signer.nsec3.NSEC3PARAM_TTL`).  When the RRs of one input RRset
have different TTLs, the smallest is used for all of them (RFC 2181 section 5.2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.SOA import SOA

from signer.batch import SignRequest, sign_requests
from signer.errors import SignerError
from signer.keys import KeyPair
from signer.nsec import NameInfo, authoritative_names, canonical_key, nsec_chain, nsec_ttl
from signer.nsec3 import NSEC3PARAM_TTL, Nsec3Params, nsec3_chain, nsec3param
from signer.rrsig import label_count, make_rrsig, type_text

__all__ = ["SignedInputError", "ZoneDataError", "sign_zone"]

_SOA = int(dns.rdatatype.SOA)
_NS = int(dns.rdatatype.NS)
_DS = int(dns.rdatatype.DS)
_DNSKEY = int(dns.rdatatype.DNSKEY)
_NSEC = int(dns.rdatatype.NSEC)
_RRSIG = int(dns.rdatatype.RRSIG)
_NSEC3 = int(dns.rdatatype.NSEC3)
_NSEC3PARAM = int(dns.rdatatype.NSEC3PARAM)
_UINT32 = 1 << 32
_MAX_TTL = (1 << 31) - 1

#: Input types that belong to a signed zone; sign_zone refuses them.
DNSSEC_TYPES: frozenset[int] = frozenset(
    {
        _DNSKEY,
        _NSEC,
        _RRSIG,
        _NSEC3,
        _NSEC3PARAM,
        int(dns.rdatatype.SIG),
        int(dns.rdatatype.NXT),
        int(dns.rdatatype.KEY),
    }
)

Record = tuple[dns.name.Name, int, dns.rdata.Rdata]


class ZoneDataError(SignerError):
    """Unsigned zone data that cannot be signed as given (what to fix is in the message)."""


class SignedInputError(ZoneDataError):
    """Input that already holds DNSSEC records (DNSKEY, RRSIG, NSEC, NSEC3, ...)."""


@dataclass
class _RRset:
    name: dns.name.Name
    rdtype: int
    ttl: int
    rdatas: dict[bytes, dns.rdata.Rdata] = field(default_factory=dict)


def _check_times(inception: int, expiration: int) -> tuple[int, int]:
    for value, what in ((inception, "inception"), (expiration, "expiration")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ZoneDataError(f"RRSIG {what} {value!r} must be a non-negative POSIX time")
    if expiration <= inception:
        raise ZoneDataError(
            f"RRSIG expiration {expiration} must be later than inception {inception}"
        )
    return inception % _UINT32, expiration % _UINT32


def _group(
    origin: dns.name.Name, records: Iterable[Record]
) -> tuple[dict[tuple[bytes, ...], dns.name.Name], dict[tuple[tuple[bytes, ...], int], _RRset]]:
    """Group records into RRsets keyed by (canonical name, type); drop duplicate RRs."""
    names: dict[tuple[bytes, ...], dns.name.Name] = {}
    rrsets: dict[tuple[tuple[bytes, ...], int], _RRset] = {}
    for name, ttl, rdata in records:
        rdtype = int(rdata.rdtype)
        if rdtype in DNSSEC_TYPES:
            raise SignedInputError(
                f"{name} {type_text(rdtype)}: the input already holds DNSSEC "
                "records; remove DNSKEY/RRSIG/NSEC/NSEC3 records and sign the unsigned zone"
            )
        if rdata.rdclass != dns.rdataclass.IN:
            raise ZoneDataError(f"{name}: only class IN zones can be signed")
        if not name.is_absolute() or not name.is_subdomain(origin):
            raise ZoneDataError(f"{name} is outside the zone {origin}; remove it")
        if isinstance(ttl, bool) or not 0 <= ttl <= _MAX_TTL:
            raise ZoneDataError(f"{name}: TTL {ttl!r} must be between 0 and {_MAX_TTL}")
        key = canonical_key(name)
        owner = names.setdefault(key, name)
        rrset = rrsets.get((key, rdtype))
        if rrset is None:
            rrset = rrsets[(key, rdtype)] = _RRset(owner, rdtype, ttl)
        rrset.ttl = min(rrset.ttl, ttl)
        rrset.rdatas.setdefault(rdata.to_digestable(), rdata)
    return names, rrsets


def _roles(keys: Sequence[KeyPair]) -> tuple[list[KeyPair], list[KeyPair]]:
    """(keys signing DNSKEY, keys signing all other RRsets)."""
    if not keys:
        raise ZoneDataError("no signing keys given; generate a CSK or a KSK and a ZSK")
    seen: set[bytes] = set()
    for key in keys:
        wire = key.dnskey().to_digestable()
        if wire in seen:
            raise ZoneDataError(f"{key} is given twice; pass each key once")
        seen.add(wire)
    ksks = [k for k in keys if k.is_ksk]
    zsks = [k for k in keys if not k.is_ksk]
    return (ksks or zsks), (zsks or ksks)


_RRsets = dict[tuple[tuple[bytes, ...], int], _RRset]


def _put(rrsets: _RRsets, owner: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> _RRset:
    """Store ``rdata`` as a new one-RR RRset of the signed zone and return it."""
    rrset = _RRset(owner, int(rdata.rdtype), ttl)
    rrset.rdatas[rdata.to_digestable()] = rdata
    rrsets[(canonical_key(owner), rrset.rdtype)] = rrset
    return rrset


def _add_denial(
    origin: dns.name.Name,
    apex: dns.name.Name,
    types_by_name: dict[dns.name.Name, set[int]],
    ttl: int,
    denial: Nsec3Params | None,
    rrsets: _RRsets,
) -> list[_RRset]:
    """Add the NSEC or NSEC3 chain (and NSEC3PARAM) to ``rrsets``.

    Returns the NSEC3 RRsets, whose hashed owners are not among the zone's names and
    are therefore signed apart; NSEC RRsets (and NSEC3PARAM) are signed with the
    other RRsets of their owner names.
    """
    if denial is None:
        for owner, nsec in nsec_chain(origin, types_by_name):
            _put(rrsets, owner, ttl, nsec)
        return []
    _put(rrsets, apex, NSEC3PARAM_TTL, nsec3param(denial))
    return [
        _put(rrsets, owner, nsec3_ttl, nsec3)
        for owner, nsec3_ttl, nsec3 in nsec3_chain(origin, types_by_name, denial, ttl)
    ]


def _requests(rrset: _RRset, key_indexes: Sequence[int]) -> list[SignRequest]:
    """One SignRequest for ``rrset`` per key (an index into the keys given to sign_zone)."""
    owner_wire = rrset.name.to_digestable()
    labels = label_count(rrset.name)
    rdatas = tuple(rrset.rdatas)  # the keys of rdatas are the canonical wire forms
    return [
        SignRequest(owner_wire, labels, rrset.rdtype, rrset.ttl, rdatas, k) for k in key_indexes
    ]


def _sorted_output(rrsets: _RRsets, signatures: list[Record]) -> list[Record]:
    """All records in canonical name order, then by type (RRSIGs by covered type)."""
    output: list[tuple[tuple[bytes, ...], int, int, Record]] = []
    for (key, rdtype), rrset in rrsets.items():
        for rdata in rrset.rdatas.values():
            output.append((key, rdtype, 0, (rrset.name, rrset.ttl, rdata)))
    for record in signatures:
        covered = int(record[2].covers())
        output.append((canonical_key(record[0]), _RRSIG, covered, record))
    output.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in output]


def sign_zone(
    origin: dns.name.Name,
    records: Iterable[Record],
    keys: Sequence[KeyPair],
    inception: int,
    expiration: int,
    *,
    dnskey_ttl: int | None = None,
    workers: int = 1,
    denial: Nsec3Params | None = None,
) -> list[Record]:
    """Sign the unsigned zone ``origin`` and return all its records, signed.

    ``records`` are ``(owner, ttl, rdata)`` with absolute owner names, class IN,
    and no DNSSEC records (else SignedInputError).  ``keys``: one CSK (flags 257),
    or KSKs (257) plus ZSKs (256); see the module docstring for the roles.
    ``inception``/``expiration`` are POSIX times for every RRSIG.  ``workers``: how many
    processes may share the signing.  ``denial``: None for an NSEC chain, or the
    NSEC3 parameters for an NSEC3 chain and an NSEC3PARAM RR.

    Returns the input records (duplicates removed, TTLs of each RRset made equal),
    the DNSKEY RRset, the NSEC or NSEC3 chain (plus NSEC3PARAM) and the RRSIGs,
    sorted in canonical name order and then by type.  Raises ZoneDataError for data
    that cannot be signed (Nsec3Error, also a SignerError, when two names have the
    same NSEC3 hash).
    """
    if not origin.is_absolute():
        raise ZoneDataError(f"zone origin {origin} must be an absolute name (end with '.')")
    if denial is not None and not isinstance(denial, Nsec3Params):
        raise ZoneDataError("denial must be None (NSEC) or an Nsec3Params (NSEC3)")
    inc, exp = _check_times(inception, expiration)
    dnskey_signers, data_signers = _roles(keys)
    names, rrsets = _group(origin, records)

    origin_key = canonical_key(origin)
    soa_set = rrsets.get((origin_key, _SOA))
    if soa_set is None:
        raise ZoneDataError(f"the zone {origin} has no SOA record at its apex; add one")
    if len(soa_set.rdatas) != 1:
        raise ZoneDataError(f"the zone {origin} has {len(soa_set.rdatas)} SOA records; keep one")
    soa = next(iter(soa_set.rdatas.values()))
    assert isinstance(soa, SOA)
    apex = soa_set.name

    types_by_name: dict[dns.name.Name, set[int]] = {}
    for (key, rdtype), rrset in rrsets.items():
        if rdtype == _SOA and key != origin_key:
            raise ZoneDataError(f"{rrset.name} has an SOA record below the apex; remove it")
        types_by_name.setdefault(names[key], set()).add(rdtype)
    types_by_name[apex].add(_DNSKEY)
    if denial is not None:
        types_by_name[apex].add(_NSEC3PARAM)
    infos: list[NameInfo] = authoritative_names(origin, types_by_name)
    for info in infos:
        if _DS in info.types and not info.is_delegation:
            where = "at the apex" if info.key == origin_key else "without NS (not a delegation)"
            raise ZoneDataError(f"{info.name} has a DS RRset {where}; remove it")

    # DNSKEY RRset at the apex.
    key_ttl = soa_set.ttl if dnskey_ttl is None else dnskey_ttl
    if isinstance(key_ttl, bool) or not 0 <= key_ttl <= _MAX_TTL:
        raise ZoneDataError(f"DNSKEY TTL {key_ttl!r} must be between 0 and {_MAX_TTL}")
    dnskey_set = _RRset(apex, _DNSKEY, key_ttl)
    for key_pair in keys:
        dnskey = key_pair.dnskey()
        dnskey_set.rdatas[dnskey.to_digestable()] = dnskey
    rrsets[(origin_key, _DNSKEY)] = dnskey_set

    # NSEC or NSEC3 chain.
    ttl_denial = nsec_ttl(soa_set.ttl, soa.minimum)
    nsec3_sets = _add_denial(origin, apex, types_by_name, ttl_denial, denial, rrsets)
    chain_type = {_NSEC} if denial is None else set()

    # RRSIGs, all made by one sign_requests call.
    index_of = {id(k): i for i, k in enumerate(keys)}
    dnskey_keys = [index_of[id(k)] for k in dnskey_signers]
    data_keys = [index_of[id(k)] for k in data_signers]
    to_sign = [
        rrsets[(info.key, rdtype)]
        for info in infos
        for rdtype in sorted(info.signed_types() | chain_type)
    ]
    to_sign.extend(nsec3_sets)
    requests: list[SignRequest] = []
    owners: list[dns.name.Name] = []
    for rrset in to_sign:
        batch = _requests(rrset, dnskey_keys if rrset.rdtype == _DNSKEY else data_keys)
        requests.extend(batch)
        owners.extend([rrset.name] * len(batch))
    signature_bytes = sign_requests(
        requests, keys, origin.to_digestable(), inc, exp, workers=workers
    )
    tags = [k.key_tag() for k in keys]
    signatures: list[Record] = []
    for owner, request, signature in zip(owners, requests, signature_bytes, strict=True):
        rrsig = make_rrsig(
            request.rdtype,
            keys[request.key].algorithm,
            request.labels,
            request.ttl,
            exp,
            inc,
            tags[request.key],
            origin,
            signature,
        )
        signatures.append((owner, request.ttl, rrsig))
    return _sorted_output(rrsets, signatures)
