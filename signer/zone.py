"""Whole-zone signing with NSEC (RFC 4033-4035, RFC 6840, RFC 9077).

:func:`sign_zone` takes an unsigned zone and returns it signed: the DNSKEY RRset
at the apex, an NSEC chain, and RRSIGs over every authoritative RRset.

Key roles: keys with flags 257 (KSK/SEP) sign the DNSKEY RRset; keys with flags
256 (ZSK) sign everything else.  With no ZSK, the KSKs act as CSKs and sign every
RRset; with no KSK, the ZSKs sign the DNSKEY RRset too.

What is signed: every authoritative RRset, including DS at delegation points and
every NSEC.  Not signed: NS RRsets at delegation points and anything below a zone
cut (glue), which stay in the output unsigned.

TTLs: the DNSKEY RRset gets ``dnskey_ttl`` (default: the SOA record's TTL); NSEC
records get min(SOA TTL, SOA MINIMUM) (RFC 9077).  When the RRs of one input RRset
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
from signer.rrsig import label_count, make_rrsig, type_text

__all__ = ["SignedInputError", "ZoneDataError", "sign_zone"]

_SOA = int(dns.rdatatype.SOA)
_NS = int(dns.rdatatype.NS)
_DS = int(dns.rdatatype.DS)
_DNSKEY = int(dns.rdatatype.DNSKEY)
_NSEC = int(dns.rdatatype.NSEC)
_RRSIG = int(dns.rdatatype.RRSIG)
_UINT32 = 1 << 32
_MAX_TTL = (1 << 31) - 1

#: Input types that belong to a signed zone; sign_zone refuses them.
DNSSEC_TYPES: frozenset[int] = frozenset(
    {
        _DNSKEY,
        _NSEC,
        _RRSIG,
        int(dns.rdatatype.NSEC3),
        int(dns.rdatatype.NSEC3PARAM),
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


def sign_zone(
    origin: dns.name.Name,
    records: Iterable[Record],
    keys: Sequence[KeyPair],
    inception: int,
    expiration: int,
    *,
    dnskey_ttl: int | None = None,
    workers: int = 1,
) -> list[Record]:
    """Sign the unsigned zone ``origin`` and return all its records, signed.

    ``records`` are ``(owner, ttl, rdata)`` with absolute owner names, class IN,
    and no DNSSEC records (else SignedInputError).  ``keys``: one CSK (flags 257),
    or KSKs (257) plus ZSKs (256); see the module docstring for the roles.
    ``inception``/``expiration`` are POSIX times for every RRSIG.  ``workers``: how many
    processes may share the signing.

    Returns the input records (duplicates removed, TTLs of each RRset made equal),
    the DNSKEY RRset, the NSEC chain and the RRSIGs, sorted in canonical name order
    and then by type.  Raises ZoneDataError for data that cannot be signed.
    """
    if not origin.is_absolute():
        raise ZoneDataError(f"zone origin {origin} must be an absolute name (end with '.')")
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

    # NSEC chain.
    ttl_nsec = nsec_ttl(soa_set.ttl, soa.minimum)
    for owner, nsec in nsec_chain(origin, types_by_name):
        nsec_set = _RRset(owner, _NSEC, ttl_nsec)
        nsec_set.rdatas[nsec.to_digestable()] = nsec
        rrsets[(canonical_key(owner), _NSEC)] = nsec_set

    # RRSIGs.
    index_of = {id(k): i for i, k in enumerate(keys)}
    requests: list[SignRequest] = []
    owners: list[dns.name.Name] = []
    for info in infos:
        owner_wire = info.name.to_digestable()
        labels = label_count(info.name)
        for rdtype in sorted(info.signed_types() | {_NSEC}):
            rrset = rrsets[(info.key, rdtype)]
            rdatas = tuple(rrset.rdatas)
            for key_pair in dnskey_signers if rdtype == _DNSKEY else data_signers:
                requests.append(
                    SignRequest(
                        owner_wire, labels, rdtype, rrset.ttl, rdatas, index_of[id(key_pair)]
                    )
                )
                owners.append(info.name)
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

    output: list[tuple[tuple[bytes, ...], int, int, Record]] = []
    for (key, rdtype), rrset in rrsets.items():
        for rdata in rrset.rdatas.values():
            output.append((key, rdtype, 0, (rrset.name, rrset.ttl, rdata)))
    for record in signatures:
        covered = int(record[2].covers())
        output.append((canonical_key(record[0]), _RRSIG, covered, record))
    output.sort(key=lambda entry: entry[:3])
    return [entry[3] for entry in output]
