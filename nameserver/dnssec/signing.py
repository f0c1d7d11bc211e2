"""Keeping a signed zone's DNSSEC records right: RRSIGs, the NSEC or NSEC3 chain, and the
apex DNSKEY, CDS, CDNSKEY and NSEC3PARAM RRsets.

:func:`reconcile` compares, name by name, what a zone holds with what it must hold and
returns the signer records to remove and to add. A change passes only the names it
touched (plus their chain neighbours, found here), so an edit re-signs a handful of
RRsets; maintenance passes every name, so expiring signatures, key changes and a switch
between NSEC and NSEC3 are handled by the same code. A signature is kept when its key
still signs that RRset, the RRset did not change and it does not expire within the
refresh margin; every other one is made again. The crypto and record formats come from
``signer``; this module decides what the zone needs.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import TypeVar

import dns.name
import dns.rdataclass
import dns.rdatatype

from nameserver.edit.editor import SignerDelta
from nameserver.progress import Progress
from nameserver.zone.ordered import OrderedOwners
from nameserver.zone.records import AnyRecord, WireRecord
from nameserver.zone.snapshot import (
    Node,
    RRsetData,
    ZoneSnapshot,
    is_sig_key,
    sig_key,
)
from nameserver.zone.wirename import ancestors, canonical_key, is_below_or_at, label_starts, lower
from signer.batch import SignRequest, sign_requests
from signer.keys import KeyPair
from signer.nsec import type_bitmap
from signer.nsec3 import NSEC3PARAM_TTL, Nsec3Params, encode_hash, nsec3_hash, nsec3param
from signer.rrsig import LOWERCASE_RDATA_TYPES, canonical_rdata

T = dns.rdatatype
SOA, NS, DS, RRSIG = int(T.SOA), int(T.NS), int(T.DS), int(T.RRSIG)
NSEC, NSEC3, NSEC3PARAM = int(T.NSEC), int(T.NSEC3), int(T.NSEC3PARAM)
DNSKEY, CDS, CDNSKEY = int(T.DNSKEY), int(T.CDS), int(T.CDNSKEY)

#: Types only the signer writes; zone data never holds them.
SIGNER_OWNED = frozenset({RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY, CDS, CDNSKEY})
_APEX_SETS = (DNSKEY, CDS, CDNSKEY, NSEC3PARAM)
_PROGRESS_CHUNK = 4096  # signatures per progress report, when one is asked for
_Item = TypeVar("_Item")
_UINT32 = 1 << 32
_SETTLED = tuple(SIGNER_OWNED - {RRSIG})  # the signer's RRsets besides signatures
_SIG_KEYS = sig_key(0)  # RRSIG sets are kept under keys from here on (snapshot.sig_key)
_OWNER = itemgetter(0)  # a WireRecord's owner
_RRSIG_HEAD = struct.Struct("!HBBIIIH")  # type covered ... key tag (RFC 4034 §3.1)
# RFC 8078 §4: the CDS/CDNSKEY that ask the parent to remove the DS RRset.
_CDS_DELETE = b"\x00\x00\x00\x00\x00"  # tag 0, algorithm 0, digest type 0, digest 00
_CDNSKEY_DELETE = b"\x00\x00\x03\x00\x00"


@dataclass(frozen=True)
class KeySet:
    """The keys of a zone as the zone must show them at one moment."""

    dnskeys: tuple[KeyPair, ...]  # the DNSKEY RRset
    dnskey_signers: tuple[KeyPair, ...]  # sign DNSKEY, CDS and CDNSKEY
    data_signers: tuple[KeyPair, ...]  # sign everything else
    cds: tuple[KeyPair, ...] = ()  # keys whose CDS/CDNSKEY the parent should see
    cds_delete: bool = False  # publish the RFC 8078 delete form instead


@dataclass(frozen=True)
class SigningParams:
    """Everything :func:`reconcile` needs besides the zone."""

    keys: KeySet
    now: int
    validity: int  # seconds from now to a fresh signature's expiration
    refresh: int  # a signature expiring sooner than this is made again
    jitter: int = 0  # expirations spread over [validity - jitter, validity]
    inception_offset: int = 3600  # back-dating, for resolvers with slow clocks
    dnskey_ttl: int = 3600
    nsec3: Nsec3Params | None = None
    workers: int = 1
    progress: Progress | None = None  # told (signatures made, to make) after each batch

    def window(self, owner: bytes, rdtype: int) -> tuple[int, int]:
        """(inception, expiration) of a signature made now, both modulo 2**32. The
        jitter is derived from the RRset so a re-run makes the same times."""
        return self.windows()(owner, rdtype)

    def windows(self) -> Callable[[bytes, int], tuple[int, int]]:
        """:meth:`window` as a function, with all but the RRset's hash worked out once
        (a pass asks it once per signature)."""
        inception = (self.now - self.inception_offset) % _UINT32
        # Whole buckets keep one batch per expiration time (see _sign).
        step = max(self.jitter // 64, 1)
        times = tuple(
            (inception, (self.now + self.validity - min(bucket * step, self.jitter)) % _UINT32)
            for bucket in range(64 if self.jitter > 0 else 1)
        )
        if self.jitter <= 0:
            return lambda owner, rdtype: times[0]
        blake2b = hashlib.blake2b

        def window(owner: bytes, rdtype: int) -> tuple[int, int]:
            seed = blake2b(owner + rdtype.to_bytes(2, "big"), digest_size=4).digest()
            return times[seed[3] & 63]  # the seed modulo 64: its last octet's low bits

        return window


# -- which names a change touches -------------------------------------------------------


def touched_names(
    old: ZoneSnapshot, new: ZoneSnapshot, changed: Iterable[AnyRecord], nsec3: bool
) -> set[bytes]:
    """Names whose DNSSEC records a data change may alter: the changed owners, the apex,
    every name below a delegation that appeared or went, and with NSEC3 the ancestors of
    changed names (they may become or stop being empty non-terminals)."""
    names = {new.origin}
    for record in changed:
        owner = record.owner if isinstance(record, WireRecord) else record.name.to_wire()
        names.add(lower(owner or b"\x00"))
    cuts = [k for k in names if k != new.origin and _has(old, k, NS) != _has(new, k, NS)]
    for cut in cuts:
        names.update(k for k in new.nodes if is_below_or_at(k, cut))
    if nsec3:
        for key in list(names):
            names.update(ancestors(key, new.origin))
    return names


def every_name(zone: ZoneSnapshot) -> set[bytes]:
    """Every name of a zone, empty non-terminals included, for a full pass; NSEC3 owners
    are left out (the pass finds them through the chain)."""
    names = {k for k, node in zone.nodes.items() if not _only_nsec3(node)}
    for key in list(names):
        names.update(ancestors(key, zone.origin))
    return {k for k in names if is_below_or_at(k, zone.origin)}


def _only_signer_records(node: Node | None) -> bool:
    return node is not None and not _data_types(node)


def _only_nsec3(node: Node) -> bool:
    return all(t == NSEC3 or t == sig_key(NSEC3) for t in node.rrsets)


# -- the pass ---------------------------------------------------------------------------


def reconcile(
    new: ZoneSnapshot,
    old: ZoneSnapshot,
    names: set[bytes],
    params: SigningParams,
    full: bool = False,
) -> SignerDelta:
    """The signer records ``new`` needs changed, looking at ``names``.

    ``new`` holds the new data with the signer records of ``old`` still in it (``old``
    patched with the data change); ``old`` tells which RRsets changed. ``full``: ``names``
    is every name of the zone, so chains are rebuilt rather than patched.
    """
    pass_ = _Pass(new, old, params)
    pass_.run(names, full)
    return pass_.delta


@dataclass
class _Want:
    """What one original-name owner must hold, found in the first phase."""

    status: str  # "apex", "name", "delegation", "ent" or "out"
    types: frozenset[int]  # its data types


class _Pass:
    def __init__(self, new: ZoneSnapshot, old: ZoneSnapshot, params: SigningParams) -> None:
        self.new = new
        self.old = old
        self.params = params
        self.origin = new.origin
        self.delta = SignerDelta()
        self.requests: list[tuple[bytes, RRsetData, KeyPair]] = []
        self._bitmaps: dict[tuple[str, frozenset[int], bool], bytes] = {}
        # (algorithm, key tag) -> key of the signers of each type, for this pass.
        self._wanted: dict[int, dict[tuple[int, int], KeyPair]] = {}
        self._nsec_ttl: int | None = None  # of the pass's zone, which it does not change
        self.apex_sets = _apex_sets(params, new)

    # ---- phases

    def run(self, names: set[bytes], full: bool) -> None:
        # Names whose data this change removed still hold their old signer records until
        # this pass takes them out; they must not make their ancestors look non-empty.
        self.stale = [k for k in names if _only_signer_records(self.new.node(k))]
        wants = {key: self._classify(key) for key in names}
        nsec3 = self.params.nsec3
        nsec_writes = self._nsec_chain(wants, full) if nsec3 is None else {}
        if nsec3 is not None:
            self._nsec3_chain(wants, nsec3, full)
        elif full:
            self._drop_nsec3_chain()
        for key, want in wants.items():
            self._settle_name(key, want, nsec_writes.get(key))
        for key, nsec in nsec_writes.items():
            if key not in wants:  # a chain neighbour outside ``names``
                self._settle_name(key, self._classify(key), nsec)
        self._sign()
        # Grouped by owner rather than in hash and signing-window order: the store's
        # identity index takes the rows of a big pass far faster when they come near
        # each other.
        self.delta.removed.sort(key=_OWNER)
        self.delta.added.sort(key=_OWNER)

    def _classify(self, key: bytes) -> _Want:
        node = self.new.node(key)
        types = frozenset(_data_types(node)) if node else frozenset()
        if not is_below_or_at(key, self.origin) or self._occluded(key):
            return _Want("out", types)
        if key == self.origin:
            return _Want("apex", types)
        if NS in types:
            return _Want("delegation", types)
        if types:
            return _Want("name", types)
        return _Want("ent" if self._has_data_below(key) else "out", types)

    def _has_data_below(self, key: bytes) -> bool:
        stale = sum(1 for k in self.stale if k != key and is_below_or_at(k, key))
        return self.new.count_below(key) > stale

    def _occluded(self, key: bytes) -> bool:
        """True below a zone cut (glue and anything else the parent is not authoritative
        for)."""
        if key[key[0] + 1 :] == self.origin:
            return False  # a child of the apex: the apex is no cut
        return any(u != self.origin and _has(self.new, u, NS) for u in ancestors(key, self.origin))

    # ---- NSEC

    def _nsec_chain(self, wants: dict[bytes, _Want], full: bool) -> dict[bytes, bytes]:
        """The NSEC rdata (wire) each name must hold, for the names whose NSEC may change."""
        members = {k for k, w in wants.items() if w.status in ("apex", "name", "delegation")}
        if full:
            # Every member is rewritten: its next name is its successor in one sort.
            ordered = sorted(members, key=canonical_key)
            nexts = dict(zip(ordered, [*ordered[1:], *ordered[:1]], strict=True))
        else:
            old_chain = self.new.owners_of(NSEC)
            enter = [k for k in members if k not in old_chain]
            leave = [k for k in wants if k not in members and k in old_chain]
            chain = old_chain.changed(enter, leave)
            members.update(chain.before(k) or k for k in (*enter, *leave))
            members = {k for k in members if k in chain}
            nexts = {k: chain.after(k) or k for k in members}
        writes: dict[bytes, bytes] = {}
        for key, nxt in nexts.items():
            want = wants.get(key) or self._classify(key)
            node = self.new.node(nxt)
            next_wire = node.owner if node else nxt
            writes[key] = next_wire + self._nsec_bitmap(key, want)
        return writes

    def _nsec_bitmap(self, key: bytes, want: _Want) -> bytes:
        """The type bitmap of the NSEC at ``key``, made once per distinct type set."""
        shape = (want.status, want.types, key == self.origin)
        bitmap = self._bitmaps.get(shape)
        if bitmap is None:
            bitmap = self._bitmaps[shape] = _bitmap_wire(self._nsec_types(key, want))
        return bitmap

    def _nsec_types(self, key: bytes, want: _Want) -> set[int]:
        # RRSIG is set even at an insecure delegation: the NSEC there is signed.
        types = {NSEC, RRSIG}
        if want.status == "delegation":
            return types | (want.types & {NS, DS})
        types |= want.types
        if key == self.origin:
            types |= set(self.apex_sets)
        return types

    # ---- NSEC3

    def _nsec3_chain(self, wants: dict[bytes, _Want], nsec3: Nsec3Params, full: bool) -> None:
        """Put the NSEC3 records right for ``wants`` (hashed owners are their own nodes)."""
        desired: dict[bytes, bytes] = {}  # hashed owner key -> rdata without next hash
        gone: set[bytes] = set()
        head = _nsec3_head(nsec3)
        for key, want in wants.items():
            hashed = _hashed_key(key, self.origin, nsec3)
            if self._in_nsec3_chain(want, nsec3):
                desired[hashed] = (
                    bytes([1, nsec3.flags]) + head + _bitmap_wire(self._nsec3_types(want))
                )
            else:
                gone.add(hashed)
        old_chain = self.new.owners_of(NSEC3)
        if full:
            chain = OrderedOwners.of(desired)
            gone = set(old_chain.wire_keys()) - set(desired)
        else:
            enter = [k for k in desired if k not in old_chain]
            leave = [k for k in gone if k in old_chain]
            chain = old_chain.changed(enter, leave)
            for k in (*enter, *leave):
                before = chain.before(k)
                if before is not None and before not in desired:
                    desired[before] = self._nsec3_without_next(before)
        for hashed in gone:
            self._settle_hashed(hashed, None)
        for hashed, body in desired.items():
            nxt = chain.after(hashed)
            assert nxt is not None
            raw = base64.b32hexdecode(nxt[1 : 1 + nxt[0]].upper())
            # body = alg, flags, iterations, salt; then hash length, next hash, bitmap.
            head_len = 2 + len(head)
            rdata = body[:head_len] + bytes([len(raw)]) + raw + body[head_len:]
            self._settle_hashed(hashed, rdata)

    def _in_nsec3_chain(self, want: _Want, nsec3: Nsec3Params) -> bool:
        if want.status in ("apex", "name", "ent"):
            return True
        if want.status == "delegation":
            return DS in want.types or not nsec3.opt_out
        return False

    def _nsec3_types(self, want: _Want) -> set[int]:
        if want.status == "ent":
            return set()
        if want.status == "delegation":
            return {NS, DS, RRSIG} if DS in want.types else {NS}
        types = set(want.types) | {RRSIG}
        if want.status == "apex":
            types |= set(self.apex_sets)
        return types

    def _nsec3_without_next(self, hashed: bytes) -> bytes:
        """A chain neighbour's NSEC3 as it stands, minus its next hash (kept bitmap)."""
        rs = self.new.rrset(hashed, NSEC3)
        assert rs is not None
        wire = rs.rdatas[0]
        salt_len = wire[4]
        head_len = 5 + salt_len
        hash_len = wire[head_len]
        return wire[:head_len] + wire[head_len + 1 + hash_len :]

    def _drop_nsec3_chain(self) -> None:
        for hashed in self.new.owners_of(NSEC3).wire_keys():
            self._settle_hashed(hashed, None)

    def _settle_hashed(self, hashed: bytes, rdata: bytes | None) -> None:
        """Make the hashed owner hold exactly ``rdata`` as NSEC3 (None: nothing)."""
        node = self.new.node(hashed)
        owner = node.owner if node else hashed
        want: dict[int, RRsetData] = {}
        if rdata is not None:
            want[NSEC3] = RRsetData(NSEC3, self._denial_ttl(), (rdata,))
        self._settle_sets(hashed, owner, want, set(want))

    # ---- per name

    def _settle_name(self, key: bytes, want: _Want, nsec: bytes | None) -> None:
        node = self.new.node(key)
        if node is None and nsec is None:
            return  # an empty non-terminal or a name that is gone: nothing to hold
        owner = node.owner if node else key
        sets: dict[int, RRsetData] = {}
        if key == self.origin and want.status == "apex":
            sets.update(self.apex_sets)
        if nsec is not None:
            sets[NSEC] = RRsetData(NSEC, self._denial_ttl(), (nsec,))
        if want.status == "out":
            signed: set[int] = set()
        elif want.status == "delegation":
            signed = set(want.types & {DS}) | set(sets)
        else:
            signed = set(want.types) | set(sets)
        self._settle_sets(key, owner, sets, signed)

    def _settle_sets(
        self, key: bytes, owner: bytes, sets: dict[int, RRsetData], signed: set[int]
    ) -> None:
        """Make the signer RRsets at ``key`` equal ``sets`` and sign each type in
        ``signed``, reusing signatures that still hold."""
        node = self.new.node(key)
        current = node.rrsets if node else {}
        changed: set[int] = set()
        for rdtype in _SETTLED:
            have = current.get(rdtype)
            wanted = sets.get(rdtype)
            if have is None and wanted is None:
                continue
            if have is not None and wanted is not None and _same_set(have, wanted):
                continue
            changed.add(rdtype)
            if have is not None:
                self._remove(owner, have)
            if wanted is not None:
                self._add(owner, wanted)
        for rset_key, sigs in current.items():
            if rset_key >= _SIG_KEYS and (rset_key & 0xFFFF) not in signed:
                self._remove(owner, sigs)
        for rdtype in signed:
            rrset = sets.get(rdtype) or current.get(rdtype)
            assert rrset is not None
            have_sigs = current.get(sig_key(rdtype))
            # Whether the RRset changed matters only to signatures it already has.
            stale = have_sigs is not None and (
                rdtype in changed or (rdtype not in sets and self._data_changed(key, rdtype, rrset))
            )
            self._settle_signatures(owner, rrset, have_sigs, stale)

    def _data_changed(self, key: bytes, rdtype: int, rrset: RRsetData) -> bool:
        before = self.old.rrset(key, rdtype)
        return before is None or not _same_set(before, rrset)

    def _settle_signatures(
        self,
        owner: bytes,
        rrset: RRsetData,
        sigs: RRsetData | None,
        changed: bool,
    ) -> None:
        wanted = self._wanted.get(rrset.rdtype)
        if wanted is None:
            signers = self._signers(rrset.rdtype)
            wanted = self._wanted[rrset.rdtype] = {(k.algorithm, k.key_tag()): k for k in signers}
        kept: set[tuple[int, int]] = set()
        stale: list[bytes] = []
        for wire in sigs.rdatas if sigs else ():
            ident = (wire[2], int.from_bytes(wire[16:18], "big"))
            if (
                changed
                or ident not in wanted
                or ident in kept
                or int.from_bytes(wire[4:8], "big") != rrset.ttl
                or seconds_left(wire, self.params.now) <= self.params.refresh
            ):
                stale.append(wire)
            else:
                kept.add(ident)
        if stale:
            assert sigs is not None
            self._remove(owner, RRsetData(RRSIG, sigs.ttl, tuple(stale)))
        for ident, key_pair in wanted.items():
            if ident not in kept:
                self.requests.append((owner, rrset, key_pair))

    def _signers(self, rdtype: int) -> tuple[KeyPair, ...]:
        keys = self.params.keys
        if rdtype == DNSKEY:
            return keys.dnskey_signers
        if rdtype in (CDS, CDNSKEY):
            # RFC 7344 §4.1: the parent checks them with a key it trusts: the SEP keys.
            return _unique((*keys.dnskey_signers, *keys.data_signers))
        return keys.data_signers

    def _denial_ttl(self) -> int:
        """RFC 9077: min(SOA TTL, SOA MINIMUM) for NSEC and NSEC3."""
        if self._nsec_ttl is None:
            soa = self.new.rrset(self.origin, SOA)
            assert soa is not None
            self._nsec_ttl = min(soa.ttl, int.from_bytes(soa.rdatas[0][-4:], "big"))
        return self._nsec_ttl

    # ---- output

    def _remove(self, owner: bytes, rrset: RRsetData) -> None:
        self.delta.removed.extend(_wire_records(owner, rrset))

    def _add(self, owner: bytes, rrset: RRsetData) -> None:
        if len(rrset.rdatas) == 1:  # every NSEC and NSEC3
            self.delta.added.append(WireRecord(owner, rrset.rdtype, rrset.ttl, rrset.rdatas[0]))
        else:
            self.delta.added.extend(_wire_records(owner, rrset))

    def _sign(self) -> None:
        """Make every requested signature, one batch per validity window."""
        keys = _unique(k for _, _, k in self.requests)
        index = {id(k): i for i, k in enumerate(keys)}
        batches: dict[tuple[int, int], list[tuple[bytes, SignRequest]]] = {}
        window = self.params.windows()
        owners: dict[bytes, tuple[bytes, int]] = {}  # owner -> lowered, RRSIG labels
        for owner, rrset, key_pair in self.requests:
            known = owners.get(owner)
            if known is None:
                lowered = lower(owner)
                known = owners[owner] = (lowered, _label_count(lowered))
            rdtype, rdatas = rrset.rdtype, rrset.rdatas
            if rdtype in LOWERCASE_RDATA_TYPES:
                rdatas = tuple(canonical_rdata(rdtype, w) for w in rdatas)
            lowered, labels = known
            request = SignRequest(lowered, labels, rdtype, rrset.ttl, rdatas, index[id(key_pair)])
            batches.setdefault(window(lowered, rdtype), []).append((owner, request))
        signer_wire = self.origin
        done, total = 0, len(self.requests)
        for (inception, expiration), whole in sorted(batches.items()):
            for batch in _chunks(whole, _PROGRESS_CHUNK if self.params.progress else len(whole)):
                self._sign_batch(batch, keys, signer_wire, inception, expiration)
                done += len(batch)
                if self.params.progress is not None:
                    self.params.progress(done, total)

    def _sign_batch(
        self,
        batch: list[tuple[bytes, SignRequest]],
        keys: tuple[KeyPair, ...],
        signer_wire: bytes,
        inception: int,
        expiration: int,
    ) -> None:
        """Sign one batch of requests sharing a validity window."""
        signatures = sign_requests(
            [r for _, r in batch],
            keys,
            signer_wire,
            inception,
            expiration,
            workers=self.params.workers,
        )
        # The RRSIG rdata (RFC 4034 §3.1) as the signed data began it, signer name in
        # the zone's own case, then the signature.
        tail = self.new.origin_wire
        added = self.delta.added.append
        for (owner, r), signature in zip(batch, signatures, strict=True):
            k = keys[r.key]
            head = _RRSIG_HEAD.pack(
                r.rdtype, k.algorithm, r.labels, r.ttl, expiration, inception, k.key_tag()
            )
            added(WireRecord(owner, RRSIG, r.ttl, head + tail + signature))


def _wire_records(owner: bytes, rrset: RRsetData) -> Iterator[WireRecord]:
    return (WireRecord(owner, rrset.rdtype, rrset.ttl, w) for w in rrset.rdatas)


def _chunks(items: list[_Item], size: int) -> Iterator[list[_Item]]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


# -- helpers ----------------------------------------------------------------------------


def _apex_sets(params: SigningParams, zone: ZoneSnapshot) -> dict[int, RRsetData]:
    """The DNSKEY, CDS, CDNSKEY and NSEC3PARAM RRsets the apex must hold."""
    keys = params.keys
    ttl = params.dnskey_ttl
    sets = {DNSKEY: RRsetData(DNSKEY, ttl, tuple(_dnskey_wire(k) for k in keys.dnskeys))}
    if keys.cds_delete:
        sets[CDS] = RRsetData(CDS, ttl, (_CDS_DELETE,))
        sets[CDNSKEY] = RRsetData(CDNSKEY, ttl, (_CDNSKEY_DELETE,))
    elif keys.cds:
        origin = zone.origin_name
        sets[CDS] = RRsetData(CDS, ttl, tuple(_wire(k.ds(origin)) for k in keys.cds))
        sets[CDNSKEY] = RRsetData(CDNSKEY, ttl, tuple(_dnskey_wire(k) for k in keys.cds))
    if params.nsec3 is not None:
        wire = _wire(nsec3param(params.nsec3))
        sets[NSEC3PARAM] = RRsetData(NSEC3PARAM, NSEC3PARAM_TTL, (wire,))
    return sets


def _nsec3_head(nsec3: Nsec3Params) -> bytes:
    """Iterations and salt as they sit in NSEC3 and NSEC3PARAM rdata."""
    return struct.pack("!HB", nsec3.iterations, len(nsec3.salt)) + nsec3.salt


def _hashed_key(key: bytes, origin: bytes, nsec3: Nsec3Params) -> bytes:
    """The lowercased wire key of the NSEC3 owner for the name ``key`` (RFC 5155 §5)."""
    label = encode_hash(nsec3_hash(key, nsec3)).encode()
    return bytes([len(label)]) + label + origin


def _dnskey_wire(key: KeyPair) -> bytes:
    return _wire(key.dnskey())


def _wire(rdata: dns.rdata.Rdata) -> bytes:
    wire = rdata.to_wire()
    assert wire is not None
    return wire


def _bitmap_wire(types: Iterable[int]) -> bytes:
    return b"".join(bytes([w, len(b)]) + b for w, b in type_bitmap(types))


def _data_types(node: Node) -> list[int]:
    return [t for t in node.rrsets if not is_sig_key(t) and t not in SIGNER_OWNED]


def _has(zone: ZoneSnapshot, key: bytes, rdtype: int) -> bool:
    node = zone.node(key)
    return node is not None and rdtype in node.rrsets


def _same_set(a: RRsetData, b: RRsetData) -> bool:
    return a.ttl == b.ttl and sorted(a.rdatas) == sorted(b.rdatas)


def seconds_left(rrsig_wire: bytes, now: int) -> int:
    """Seconds until an RRSIG expires (RFC 4034 §3.1.5 serial arithmetic; negative once
    expired)."""
    expiration = int.from_bytes(rrsig_wire[8:12], "big")
    delta = (expiration - now) % _UINT32
    return delta - _UINT32 if delta >= 1 << 31 else delta


def _label_count(key: bytes) -> int:
    """RRSIG Labels: the owner's labels without the root and a leading ``*``."""
    count = len(label_starts(key)) - 1
    return count - 1 if key.startswith(b"\x01*") else count


def _unique(keys: Iterable[KeyPair]) -> tuple[KeyPair, ...]:
    seen: dict[int, KeyPair] = {}
    for k in keys:
        seen.setdefault(id(k), k)
    return tuple(seen.values())


__all__ = [
    "SIGNER_OWNED",
    "KeySet",
    "Nsec3Params",
    "SigningParams",
    "every_name",
    "reconcile",
    "seconds_left",
    "touched_names",
]
