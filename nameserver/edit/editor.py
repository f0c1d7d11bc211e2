"""Changing zones: every edit becomes one validated changeset committed in one transaction.

The flow is the same for an import, a record edit or a rollback: compute the removed and
added RRs against the current version, move the SOA serial by the zone's policy, check the
result, then commit (the store refuses it if the zone moved meanwhile).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.SOA

from nameserver.errors import Problem, SignedZoneDataError, ZoneValidationError
from nameserver.store.keys import StoredKey, ZoneDnssec
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions, current_snapshot
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import AnyRecord, Record, WireRecord, dedupe, type_text
from nameserver.zone.serial import Clock, SerialPolicy, next_serial, serial_gt
from nameserver.zone.snapshot import ZoneSnapshot, record_row
from nameserver.zone.validate import (
    SIGNER_TYPES,
    Locator,
    check_change,
    check_records,
    check_rows,
    check_zone,
    nowhere,
)
from nameserver.zone.wirename import key_of

SOA = int(dns.rdatatype.SOA)
RRSIG = int(dns.rdatatype.RRSIG)


@dataclass(frozen=True)
class Author:
    """Who makes a change and why; goes into the journal."""

    name: str
    message: str = ""


@dataclass(frozen=True)
class ChangeSize:
    """How much a changeset changes, counted one way for every report (the command's
    summary, the history): ``removed``/``added`` are the zone's data RRs, an SOA included
    only when more than its serial changes; ``dnssec_removed``/``dnssec_added`` are the
    signer's records (RRSIG, NSEC, DNSKEY, ...), which follow the data by themselves."""

    removed: int
    added: int
    dnssec_removed: int
    dnssec_added: int

    @property
    def is_empty(self) -> bool:
        """True when the zone's data stays as it was (a serial and signatures may move)."""
        return not (self.removed or self.added)


def change_size(cs: Changeset) -> ChangeSize:
    """The :class:`ChangeSize` of ``cs``."""
    old = [r for r in cs.removed if r.rdtype == SOA]
    new = [r for r in cs.added if r.rdtype == SOA]
    serial_only = (
        len(old) == len(new) == 1
        and old[0].ttl == new[0].ttl
        and _soa_rdata(old[0]).replace(serial=_soa_rdata(new[0]).serial) == new[0].rdata
    )
    skip = SOA if serial_only else -1

    def counts(records: Sequence[AnyRecord]) -> tuple[int, int]:
        signer = sum(1 for r in records if r.rdtype in SIGNER_TYPES)
        return len(records) - signer - sum(1 for r in records if r.rdtype == skip), signer

    removed, dnssec_removed = counts(cs.removed)
    added, dnssec_added = counts(cs.added)
    return ChangeSize(removed, added, dnssec_removed, dnssec_added)


@dataclass(frozen=True)
class Plan:
    """A change worked out but not yet committed (what ``--dry-run`` shows)."""

    changeset: Changeset
    dropped_dnssec: int = 0
    keys: Sequence[StoredKey] = ()


@dataclass
class SignerDelta:
    """Signer records to take out of and put into a zone, for one changeset."""

    removed: list[WireRecord] = field(default_factory=list)
    added: list[WireRecord] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """True when the zone's DNSSEC records are already right."""
        return not self.removed and not self.added


class ChangeSigner(Protocol):
    """What the editor asks of DNSSEC: whether a zone is signed, and the signer records a
    change needs (see :mod:`nameserver.dnssec.manager`)."""

    def signs(self, origin: dns.name.Name) -> bool:
        """True when changes to ``origin`` must be signed."""
        ...

    def delta(
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[AnyRecord], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        """Signer records for ``new`` (``old`` patched with a data change), and key
        metadata to store with the change."""
        ...


class ZoneEditor:
    """Validated changes to the zones of one store; signed zones are re-signed in the same
    changeset when a :class:`ChangeSigner` is given."""

    def __init__(
        self,
        store: Store,
        clock: Clock = time.time,
        signer: ChangeSigner | None = None,
        versions: ZoneVersions | None = None,
        on_commit: Callable[[Changeset], None] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.signer = signer
        # Long-lived editors keep zones warm; one-shot ones (the CLI) load them whole.
        self.versions = versions
        # Told of every changeset committed (the server counts them for its metrics).
        self.on_commit = on_commit

    # -- whole zones ----------------------------------------------------------------------

    def plan_import(
        self,
        origin: dns.name.Name,
        records: Sequence[Record],
        author: Author,
        policy: SerialPolicy | None = None,
        strip_dnssec: bool = False,
        locate: Locator = nowhere,
    ) -> Plan:
        """Plan creating ``origin`` from ``records``, or replacing its contents if it exists."""
        kept = [r for r in records if r.rdtype not in SIGNER_TYPES]
        dropped = len(records) - len(kept)
        if dropped and not strip_dnssec:
            # Said once: each RRSIG refused on its own line buries the one fix.
            counts = Counter(type_text(r.rdtype) for r in records if r.rdtype in SIGNER_TYPES)
            raise SignedZoneDataError(str(origin), dict(counts.most_common()))
        records = dedupe(kept)
        rows = [record_row(r) for r in records]
        _refuse(origin, check_rows(key_of(origin), rows, locate))
        if not self.store.has_zone(origin):
            snapshot = ZoneSnapshot.from_rows(origin, rows)
            _refuse(origin, check_zone(snapshot, locate))
            serial = int(_soa_rdata(_soa_record(records, origin)).serial)
            cs = self._changeset(origin, None, serial, (), tuple(_soa_first(records)), author)
            return Plan(cs, dropped)
        info = self.store.zone_info(origin)
        current = _data_only(self.store.records(origin))
        old_soa = _soa_record(current, origin)
        before = int(_soa_rdata(old_soa).serial)  # the version the diff is against
        new_soa = _soa_record(records, origin)
        serial = _next_serial_for(
            before, policy or info.serial_policy, _soa_rdata(new_soa), self.clock
        )
        wanted = [r for r in records if r.rdtype != SOA]
        removed, added = _difference(current, wanted)
        cs = self._plan_edit(origin, (before, serial), (removed, added), old_soa, new_soa, author)
        old = self._snapshot(origin)
        snapshot = old.patched(cs.removed, cs.added)
        _refuse(origin, check_zone(snapshot, locate))
        cs, keys = self._signed(origin, old, snapshot, cs, full=False)
        return Plan(cs, dropped, keys)

    def create_or_replace(self, plan: Plan, policy: SerialPolicy) -> Changeset:
        """Commit a plan made by :meth:`plan_import`."""
        cs = plan.changeset
        if self.versions is not None:
            self.versions.forget(cs.zone)
        if cs.serial_before is None:
            return self.store.create_zone(cs, policy)
        committed = self.store.commit(cs, plan.keys)
        if self.on_commit is not None:
            self.on_commit(committed)
        return committed

    def rollback(self, origin: dns.name.Name, serial: int, author: Author) -> Changeset:
        """A new version whose data equals the version at ``serial`` (its SOA fields too),
        with a serial greater than the current one."""
        policy = self.store.serial_policy(origin)
        target = _data_only(self.store.records_at(origin, serial))
        target_soa = _soa_record(target, origin)
        current = _data_only(self.store.records(origin))
        old_soa = _soa_record(current, origin)
        before = int(_soa_rdata(old_soa).serial)  # the version the diff is against
        new_serial = _next_serial_for(before, policy, None, self.clock)
        wanted = [r for r in target if r.rdtype != SOA]
        removed, added = _difference(current, wanted)
        if not author.message:
            author = Author(author.name, f"rollback to serial {serial}")
        serials = (before, new_serial)
        cs = self._plan_edit(origin, serials, (removed, added), old_soa, target_soa, author)
        return self._validated_commit(origin, cs)

    # -- records --------------------------------------------------------------------------

    def change_records(
        self,
        origin: dns.name.Name,
        remove: Iterable[Record],
        add: Iterable[Record],
        author: Author,
        base: ZoneSnapshot | None = None,
    ) -> Changeset:
        """Remove then add RRs; removing an absent RR or adding a present one is a no-op,
        so the changeset says exactly what changed. SOA edits keep our serial rule.

        ``base``: the version the change was worked out against (an UPDATE's prerequisites
        were checked on it); the store refuses the commit with ConflictError if the zone
        moved since. Default: the current version."""
        snapshot = base if base is not None else self._snapshot(origin)
        return self._change(origin, snapshot, list(remove), add, author)

    def set_rrset(
        self,
        origin: dns.name.Name,
        name: dns.name.Name,
        rdtype: int,
        records: Sequence[Record],
        author: Author,
    ) -> Changeset:
        """Replace the whole RRset ``name``/``rdtype`` with ``records`` (empty: delete it)."""
        snapshot = self._snapshot(origin)
        return self._change(origin, snapshot, snapshot.rrset_records(name, rdtype), records, author)

    def _change(
        self,
        origin: dns.name.Name,
        snapshot: ZoneSnapshot,
        remove: Sequence[Record],
        add: Iterable[Record],
        author: Author,
    ) -> Changeset:
        """Only the RRsets a change touches are decoded; ``snapshot.serial`` is the version
        the change is computed against, so the store refuses it if the zone moved since."""
        rrsets: dict[tuple[dns.name.Name, int], dict[object, Record]] = {}

        def stored(r: Record) -> Record | None:
            rrset = (r.name, r.rdtype)
            if rrset not in rrsets:
                found = snapshot.rrset_records(r.name, r.rdtype)
                rrsets[rrset] = {x.identity: x for x in found}
            return rrsets[rrset].get(r.identity)

        add = dedupe(add)
        new_soa = next((r for r in add if r.rdtype == SOA), None)
        wanted = {r.identity: r for r in add if r.rdtype != SOA}
        removed = []
        for r in dedupe(remove):
            old = stored(r) if r.rdtype != SOA else None
            again = wanted.get(r.identity)
            # An RR removed and added back with the same TTL does not change.
            if old is not None and not (again is not None and again.ttl == old.ttl):
                removed.append(old)
        gone = {r.identity for r in removed}
        added = [r for i, r in wanted.items() if stored(r) is None or i in gone]
        policy = self.store.serial_policy(origin)
        given = _soa_rdata(new_soa) if new_soa else None
        serial = _next_serial_for(snapshot.serial, policy, given, self.clock)
        old_soa = _soa_record(snapshot.rrset_records(origin, SOA), origin)
        # The RRs an added one joins: its TTL must match theirs (RFC 2181 §5.2).
        staying = [
            x
            for r in added
            for x in rrsets.get((r.name, r.rdtype), {}).values()
            if x.identity not in gone
        ]
        _refuse(origin, check_records(origin, [*staying, *added, new_soa or old_soa]))
        serials = (snapshot.serial, serial)
        cs = self._plan_edit(origin, serials, (removed, added), old_soa, new_soa or old_soa, author)
        if cs.is_empty and new_soa is None:
            raise ZoneValidationError(
                str(origin), [Problem("the change changes nothing (the records are as asked)")]
            )
        return self._validated_commit(origin, cs, snapshot)

    # -- plumbing -------------------------------------------------------------------------

    def _snapshot(self, origin: dns.name.Name) -> ZoneSnapshot:
        return current_snapshot(self.store, origin, self.versions)

    def _commit(
        self,
        data_changed: ZoneSnapshot,
        plain: Changeset,
        signed: Changeset,
        keys: Sequence[StoredKey] = (),
        dnssec: ZoneDnssec | None = None,
    ) -> Changeset:
        """Commit ``signed`` (``plain`` plus the signer's records, with ``keys`` and the
        zone's ``dnssec`` setting in the same transaction). ``data_changed`` is the
        zone with ``plain`` applied: the version kept warm is it plus the signer's part,
        so indexes built on it while signing carry over to the next change."""
        committed = self.store.commit(signed, keys, dnssec)
        if self.on_commit is not None:
            self.on_commit(committed)
        if self.versions is not None:
            signer_part = replace(
                committed,
                removed=committed.removed[len(plain.removed) :],
                added=committed.added[len(plain.added) :],
            )
            self.versions.committed(data_changed, signer_part)
        return committed

    def _validated_commit(
        self, origin: dns.name.Name, cs: Changeset, before: ZoneSnapshot | None = None
    ) -> Changeset:
        old = before if before is not None else self._snapshot(origin)
        snapshot = old.patched(cs.removed, cs.added)
        touched = {key_of(r.name) for r in (*cs.removed, *cs.added)}
        _refuse(origin, check_change(snapshot, touched))
        signed, keys = self._signed(origin, old, snapshot, cs, full=False)
        return self._commit(snapshot, cs, signed, keys)

    def _signed(
        self,
        origin: dns.name.Name,
        old: ZoneSnapshot,
        new: ZoneSnapshot,
        cs: Changeset,
        full: bool,
    ) -> tuple[Changeset, Sequence[StoredKey]]:
        """``cs`` with the signer records the change needs, when the zone is signed."""
        if self.signer is None or not self.signer.signs(origin):
            return cs, ()
        delta, keys = self.signer.delta(old, new, (*cs.removed, *cs.added), full)
        signed = replace(cs, removed=(*cs.removed, *delta.removed), added=(*cs.added, *delta.added))
        return signed, keys

    def resign(
        self,
        origin: dns.name.Name,
        author: Author,
        *,
        force: bool = False,
        before: ZoneSnapshot | None = None,
        dnssec: ZoneDnssec | None = None,
    ) -> Changeset | None:
        """Bring the zone's DNSSEC records up to date (expiring signatures, key events, a
        new denial method) in one changeset with a new serial; None when nothing was due
        and ``force`` is off. ``force`` re-checks every name and always commits.
        ``before``: the zone as the caller already loaded it (the store refuses the commit
        if it moved since). ``dnssec``: the zone's DNSSEC setting to commit with the
        signatures (turning signing on is one transaction with its first signatures)."""
        if self.signer is None or not self.signer.signs(origin):
            raise ZoneValidationError(
                str(origin), [Problem("the zone is not signed; sign it with `zonefan zone sign`")]
            )
        old = before if before is not None else self._snapshot(origin)
        old_soa = _soa_record(old.rrset_records(origin, SOA), origin)
        policy = self.store.serial_policy(origin)
        serial = _next_serial_for(old.serial, policy, None, self.clock)
        cs = self._plan_edit(origin, (old.serial, serial), ((), ()), old_soa, old_soa, author)
        new = old.patched(cs.removed, cs.added)
        signed, keys = self._signed(origin, old, new, cs, full=True)
        if not force and not keys and _only_soa_signatures(signed, cs):
            return None
        return self._commit(new, cs, signed, keys, dnssec)

    def _plan_edit(
        self,
        origin: dns.name.Name,
        serials: tuple[int, int],
        diff: tuple[Sequence[Record], Sequence[Record]],
        old_soa: Record,
        soa: Record,
        author: Author,
    ) -> Changeset:
        """The changeset of an edit: the old SOA goes, ``soa`` with the new serial comes."""
        before, after = serials
        removed, added = diff
        new_soa = _with_serial(soa, after)
        return self._changeset(
            origin, before, after, (old_soa, *removed), (new_soa, *added), author
        )

    def _changeset(
        self,
        origin: dns.name.Name,
        before: int | None,
        after: int,
        removed: tuple[Record, ...],
        added: tuple[Record, ...],
        author: Author,
    ) -> Changeset:
        return Changeset(
            origin, before, after, removed, added, author.name, author.message, self.clock()
        )


def _refuse(origin: dns.name.Name, problems: list[Problem]) -> None:
    if problems:
        raise ZoneValidationError(str(origin), problems)


def _difference(
    current: Iterable[Record], wanted: Iterable[Record]
) -> tuple[list[Record], list[Record]]:
    """RRs to remove and to add to go from ``current`` to ``wanted`` (SOA excluded); an RR
    whose TTL changes is removed and added again."""
    have = {r.identity: r for r in current if r.rdtype != SOA}
    want = {r.identity: r for r in wanted}
    removed = [r for i, r in have.items() if i not in want or want[i].ttl != r.ttl]
    added = [r for i, r in want.items() if i not in have or have[i].ttl != r.ttl]
    return removed, added


def _data_only(records: Iterable[Record]) -> list[Record]:
    """Zone data without what the signer wrote (diffs and rollbacks work on data; the
    signer then makes its own records for the result)."""
    return [r for r in records if r.rdtype not in SIGNER_TYPES]


def _only_soa_signatures(signed: Changeset, plain: Changeset) -> bool:
    """True when signing added nothing but the new SOA's signature (and took out the old)."""
    extra = (*signed.removed[len(plain.removed) :], *signed.added[len(plain.added) :])
    return all(int(r.rdata.covers()) == SOA for r in extra if r.rdtype == RRSIG) and all(
        r.rdtype == RRSIG for r in extra
    )


def _soa_first(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.rdtype != SOA)


def _soa_record(records: Iterable[Record], origin: dns.name.Name) -> Record:
    for r in records:
        if r.rdtype == SOA and r.name == origin:
            return r
    raise ZoneValidationError(str(origin), [Problem("the zone apex has no SOA record")])


def _soa_rdata(record: AnyRecord) -> dns.rdtypes.ANY.SOA.SOA:
    assert isinstance(record.rdata, dns.rdtypes.ANY.SOA.SOA)
    return record.rdata


def _with_serial(soa: Record, serial: int) -> Record:
    assert isinstance(soa.rdata, dns.rdtypes.ANY.SOA.SOA)
    return Record(soa.name, soa.ttl, soa.rdata.replace(serial=serial))


def _next_serial_for(
    current: int,
    policy: SerialPolicy,
    given: dns.rdtypes.ANY.SOA.SOA | None,
    clock: Clock,
) -> int:
    """The policy's next serial, or the one given with the new SOA when that is larger."""
    serial = next_serial(current, policy, clock)
    if given is not None and serial_gt(given.serial, serial):
        return int(given.serial)
    return serial
