"""Authenticated denial of existence for DO queries: which NSEC (RFC 4035 §3.1.3) or NSEC3
(RFC 5155 §7.2) records prove a negative answer, a wildcard answer or an insecure referral.

Only used for signed zones and queries with the DO bit, so nothing here runs on the plain
query path. A :class:`Denial` appends the proving records, each followed by its RRSIGs, to
the authority section of an answer, never the same RRset twice.
"""

from __future__ import annotations

import functools
from typing import Protocol

import dns.rdatatype

from nameserver.zone.ordered import OrderedOwners
from nameserver.zone.snapshot import RRsetData, ZoneSnapshot, sig_key
from nameserver.zone.wirename import WILDCARD_LABEL, label_starts, parent
from signer.nsec3 import encode_hash, hash_name

__all__ = [
    "Denial",
    "Nsec3Denial",
    "NsecDenial",
    "denial_for",
    "next_closer",
]

NSEC = int(dns.rdatatype.NSEC)
NSEC3 = int(dns.rdatatype.NSEC3)
NSEC3PARAM = int(dns.rdatatype.NSEC3PARAM)
SHA1 = 1  # the only NSEC3 hash algorithm (RFC 5155 §11)
OPT_OUT = 0x01

# (owner wire, RRset): the same shape as nameserver.serve.answer.Entry.
Entry = tuple[bytes, RRsetData]


@functools.lru_cache(maxsize=8192)
def _hashed_label(key: bytes, salt: bytes, iterations: int) -> bytes:
    """The NSEC3 owner label of a lowercased wire name (lowercase, as NSEC3 owners are
    kept); cached because proofs hash the same encloser names again and again."""
    return encode_hash(hash_name(key, salt, iterations)).encode("ascii")


def next_closer(key: bytes, encloser: bytes) -> bytes:
    """The ancestor-or-self of ``key`` one label longer than ``encloser`` (RFC 5155 §1.3)."""
    depth = len(key) - len(encloser)
    return key[max(s for s in label_starts(key) if s < depth) :]


class Denial(Protocol):
    """Proofs one denial method gives; each appends to ``authority``."""

    def nodata(self, authority: list[Entry], key: bytes) -> None:
        """The name ``key`` exists (or is a delegation) but has no RRset of the type asked."""

    def nxdomain(self, authority: list[Entry], key: bytes, encloser: bytes) -> None:
        """``key`` does not exist; ``encloser`` is its closest encloser, without a wildcard."""

    def wildcard(self, authority: list[Entry], key: bytes, encloser: bytes, nodata: bool) -> None:
        """``key`` was answered from ``*.<encloser>``: prove ``key`` itself does not exist
        (the wildcard's own NODATA proof, when ``nodata``, comes from :meth:`nodata`)."""

    def nxdomain_varies(self, key: bytes, encloser: bytes) -> bytes:
        """What :meth:`nxdomain` adds that depends on more of ``key`` than its closest
        encloser: the owner of the record covering it (empty when there is none). With the
        encloser, it determines every record that :meth:`nxdomain` adds."""


def denial_for(zone: ZoneSnapshot) -> Denial | None:
    """NSEC3 when the apex has an NSEC3PARAM with SHA-1, NSEC when it has an NSEC, else
    None (a signed zone without a chain gets signatures but no proofs)."""
    apex = zone.node(zone.origin)
    if apex is None:
        return None
    param = apex.rrsets.get(NSEC3PARAM)
    if param is not None:
        for rdata in param.rdatas:
            if rdata[0] == SHA1:
                iterations = int.from_bytes(rdata[2:4], "big")
                return Nsec3Denial(zone, rdata[5 : 5 + rdata[4]], iterations)
    if NSEC in apex.rrsets:
        return NsecDenial(zone)
    return None


def _add(zone: ZoneSnapshot, authority: list[Entry], key: bytes, rdtype: int) -> None:
    """Append the ``rdtype`` RRset at ``key`` and its RRSIGs, unless already there."""
    node = zone.node(key)
    rs = node.rrsets.get(rdtype) if node is not None else None
    if node is None or rs is None or any(e[1] is rs for e in authority):
        return
    authority.append((node.owner, rs))
    sigs = node.rrsets.get(sig_key(rdtype))
    if sigs is not None:
        authority.append((node.owner, sigs))


class NsecDenial:
    """RFC 4035 §3.1.3 with NSEC records."""

    __slots__ = ("_owners", "_zone")

    def __init__(self, zone: ZoneSnapshot) -> None:
        self._zone = zone
        self._owners: OrderedOwners = zone.owners_of(NSEC)

    def _covering(self, authority: list[Entry], key: bytes) -> None:
        """The NSEC at ``key``, or the one whose span covers it (its canonical predecessor)."""
        owner = self._owners.floor(key)
        if owner is not None:
            _add(self._zone, authority, owner, NSEC)

    def nodata(self, authority: list[Entry], key: bytes) -> None:
        # An empty non-terminal has no NSEC: the preceding NSEC, whose next name lies below
        # it, proves it exists without data.
        self._covering(authority, key)

    def nxdomain(self, authority: list[Entry], key: bytes, encloser: bytes) -> None:
        self._covering(authority, key)
        self._covering(authority, WILDCARD_LABEL + encloser)

    def wildcard(self, authority: list[Entry], key: bytes, encloser: bytes, nodata: bool) -> None:
        self._covering(authority, key)

    def nxdomain_varies(self, key: bytes, encloser: bytes) -> bytes:
        return self._owners.floor(key) or b""


class Nsec3Denial:
    """RFC 5155 §7.2 with the NSEC3 chain of the apex's NSEC3PARAM."""

    __slots__ = ("_iterations", "_owners", "_salt", "_zone")

    def __init__(self, zone: ZoneSnapshot, salt: bytes, iterations: int) -> None:
        self._zone = zone
        self._salt = salt
        self._iterations = iterations
        self._owners: OrderedOwners = zone.owners_of(NSEC3)

    def _owner_of(self, key: bytes) -> bytes:
        label = _hashed_label(key, self._salt, self._iterations)
        return bytes((len(label),)) + label + self._zone.origin

    def _matching(self, key: bytes) -> bytes | None:
        """The NSEC3 owner whose hash is that of ``key``, if any."""
        owner = self._owner_of(key)
        return owner if owner in self._owners else None

    def _cover(self, authority: list[Entry], key: bytes) -> None:
        """The NSEC3 whose hash span covers the hash of ``key`` (wrapping at the end)."""
        owner = self._owners.floor(self._owner_of(key))
        if owner is not None:
            _add(self._zone, authority, owner, NSEC3)

    def _match(self, authority: list[Entry], key: bytes) -> None:
        owner = self._matching(key)
        if owner is not None:
            _add(self._zone, authority, owner, NSEC3)

    def _provable(self, encloser: bytes) -> bytes:
        """The closest *provable* encloser: Opt-Out spans may leave ``encloser`` itself
        without an NSEC3."""
        origin = self._zone.origin
        while encloser != origin and self._matching(encloser) is None:
            encloser = parent(encloser)
        return encloser

    def _encloser_proof(self, authority: list[Entry], key: bytes, encloser: bytes) -> bytes:
        """RFC 5155 §7.2.1: the NSEC3 matching the closest provable encloser and the NSEC3
        covering the next closer name. Returns the provable encloser."""
        encloser = self._provable(encloser)
        self._match(authority, encloser)
        self._cover(authority, next_closer(key, encloser))
        return encloser

    def nodata(self, authority: list[Entry], key: bytes) -> None:
        # §7.2.3, and §7.2.4 / §7.2.7: a name without its own NSEC3 (an Opt-Out delegation)
        # is shown by the closest provable encloser proof, the next closer span Opt-Out.
        if self._matching(key) is not None or key == self._zone.origin:
            self._match(authority, key)
        else:
            self._encloser_proof(authority, key, parent(key))

    def nxdomain(self, authority: list[Entry], key: bytes, encloser: bytes) -> None:
        # §7.2.2: closest encloser proof, and the NSEC3 covering the wildcard there.
        provable = self._encloser_proof(authority, key, encloser)
        self._cover(authority, WILDCARD_LABEL + provable)

    def nxdomain_varies(self, key: bytes, encloser: bytes) -> bytes:
        next_name = next_closer(key, self._provable(encloser))
        return self._owners.floor(self._owner_of(next_name)) or b""

    def wildcard(self, authority: list[Entry], key: bytes, encloser: bytes, nodata: bool) -> None:
        # §7.2.6: the next closer name is covered; §7.2.5 adds the encloser's own NSEC3.
        if nodata:
            self._match(authority, encloser)
        self._cover(authority, next_closer(key, encloser))
