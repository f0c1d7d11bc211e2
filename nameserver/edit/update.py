"""RFC 2136 dynamic UPDATE, decided against one zone snapshot without touching the store.

:func:`process_update` takes an UPDATE whose TSIG the caller has verified and returns an
:class:`UpdateDecision`: the rcode to answer with and, on NOERROR, the RRs to remove and to
add, ready for :meth:`nameserver.edit.editor.ZoneEditor.change_records` (which validates,
re-signs and journals them as one changeset). The steps are the RFC's: zone section (§3.1),
prerequisites (§3.2), permissions (§3.3, per :mod:`nameserver.edit.updatepolicy`), update
prescan (§3.4.1) and update processing (§3.4.2), the last applied RR by RR, in message
order, to a scratch copy of the touched names.

Parse wire messages with ``dns.message.from_wire(..., one_rr_per_rrset=True)``: otherwise
dnspython merges RRs of one RRset that are far apart in the update section, and the order
RFC 2136 §3.4.2 applies them in is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset

from nameserver.edit.updatepolicy import UpdatePolicy
from nameserver.errors import UpdateRejected
from nameserver.zone.records import MAX_TTL, Record, decode_rdata, identity_key, type_text
from nameserver.zone.serial import serial_gt
from nameserver.zone.snapshot import ZoneSnapshot, is_sig_key
from nameserver.zone.validate import SIGNER_TYPES
from nameserver.zone.wirename import key_of

T = dns.rdatatype
SOA, NS, CNAME, WKS = int(T.SOA), int(T.NS), int(T.CNAME), int(T.WKS)
RRSIG, ANY = int(T.RRSIG), int(T.ANY)
IN = dns.rdataclass.IN

Rcode = dns.rcode.Rcode
# A node's RRsets by type while updates are applied (RRSIGs all under RRSIG).
RRsets = dict[int, list[Record]]


class Op(Enum):
    """The four update RR kinds of RFC 2136 §2.5."""

    ADD = "add to an RRset"  # class IN
    DELETE_RRSET = "delete an RRset"  # class ANY, type T
    DELETE_NAME = "delete all RRsets from a name"  # class ANY, type ANY
    DELETE_RR = "delete an RR from an RRset"  # class NONE


@dataclass(frozen=True)
class UpdateOp:
    """One update RR after the prescan. ``record`` carries the rdata of ADD and
    DELETE_RR (TTL 0 for the latter) and is None for the others."""

    op: Op
    name: dns.name.Name
    rdtype: int
    record: Record | None = None

    def describe(self) -> str:
        """Short text for the log."""
        if self.record is not None:
            return f"{self.op.value}: {self.record.to_text()}"
        return f"{self.op.value}: {self.name} {type_text(self.rdtype)}"


@dataclass(frozen=True)
class UpdateDecision:
    """What to answer and, on NOERROR, what to change (nothing for any other rcode).

    ``remove``/``add`` go to ``ZoneEditor.change_records`` as they are; when both are
    empty the update changed nothing (its RRs were no-ops) and the editor must not be
    called (it refuses an empty change): answer NOERROR as it is. ``zone_serial`` is the
    serial of the snapshot decided against: prerequisites held for that version only, so
    the caller must commit against it (else decide again on the newer version)."""

    rcode: Rcode
    reason: str
    zone_serial: int
    remove: tuple[Record, ...] = ()
    add: tuple[Record, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        """True when the zone must change."""
        return bool(self.remove or self.add)


def process_update(
    message: dns.message.Message,
    key_name: dns.name.Name | None,
    zone: ZoneSnapshot,
    policy: UpdatePolicy,
) -> UpdateDecision:
    """Decide an UPDATE for ``zone`` (the snapshot of the zone the caller matched with the
    zone section). ``key_name`` is the verified TSIG key, None for an unsigned request."""
    try:
        return _decide(message, key_name, zone, policy)
    except UpdateRejected as e:
        return UpdateDecision(Rcode.make(e.rcode), e.reason, zone.serial)


def _decide(
    message: dns.message.Message,
    key_name: dns.name.Name | None,
    zone: ZoneSnapshot,
    policy: UpdatePolicy,
) -> UpdateDecision:
    origin = zone.origin_name
    _check_zone_section(message, origin)
    # Refused before the prerequisites are evaluated, so that requests that may change
    # nothing learn nothing about the zone from prerequisite rcodes either.
    if not policy.knows(key_name):
        who = f"key {key_name}" if key_name is not None else "an unsigned request"
        raise _reject(Rcode.REFUSED, f"{who} may not update {origin}")
    _check_prerequisites(message.sections[1], zone)
    ops = _prescan(message.sections[2], origin)
    _check_permissions(ops, key_name, zone, policy)
    work = _Workspace(zone)
    for op in ops:
        work.apply(op)
    remove, add = work.difference()
    summary = f"{len(ops)} update RR(s): {len(remove)} RR(s) removed, {len(add)} added"
    if work.ignored:
        summary += f"; ignored: {'; '.join(work.ignored)}"
    return UpdateDecision(
        Rcode.NOERROR, summary, zone.serial, tuple(remove), tuple(add), tuple(work.ignored)
    )


def _reject(rcode: Rcode, reason: str) -> UpdateRejected:
    return UpdateRejected(int(rcode), reason)


# -- §3.1 zone section --------------------------------------------------------------------


def _check_zone_section(message: dns.message.Message, origin: dns.name.Name) -> None:
    if message.opcode() != dns.opcode.UPDATE:
        raise _reject(Rcode.FORMERR, "not an UPDATE message")
    zones = message.sections[0]
    if len(zones) != 1:
        raise _reject(Rcode.FORMERR, f"the zone section has {len(zones)} RRs, not one")
    z = zones[0]
    if z.rdtype != T.SOA or z.rdclass != IN:
        what = f"{dns.rdataclass.to_text(z.rdclass)} {type_text(z.rdtype)}"
        raise _reject(Rcode.FORMERR, f"the zone section asks {what}, not IN SOA")
    if z.name != origin:
        raise _reject(Rcode.NOTAUTH, f"{z.name} is not the zone {origin}")


# -- §3.2 prerequisites -------------------------------------------------------------------


def _check_prerequisites(section: Sequence[dns.rrset.RRset], zone: ZoneSnapshot) -> None:
    """RFC 2136 §3.2.5's pseudocode; the first failing prerequisite gives the rcode."""
    origin = zone.origin_name
    wanted: dict[tuple[bytes, int], tuple[dns.name.Name, set[tuple[bytes, int, bytes]]]] = {}
    for rrset in section:
        name, rdtype = rrset.name, int(rrset.rdtype)
        what = f"prerequisite {name} {type_text(rdtype)}"
        if rrset.ttl != 0:
            raise _reject(Rcode.FORMERR, f"{what}: TTL {rrset.ttl}, must be 0 (§2.4)")
        if not name.is_subdomain(origin):
            raise _reject(Rcode.NOTZONE, f"{what}: outside the zone {origin}")
        rdclass = _class_of(rrset)
        if rdclass in (dns.rdataclass.ANY, dns.rdataclass.NONE):
            if len(rrset):
                raise _reject(Rcode.FORMERR, f"{what}: class ANY/NONE must have no rdata")
            _check_existence(zone, name, rdtype, rdclass == dns.rdataclass.ANY)
        elif rdclass == IN:
            if dns.rdatatype.is_metatype(rrset.rdtype):
                raise _reject(Rcode.FORMERR, f"{what}: a meta-type cannot have rdata")
            _, rdatas = wanted.setdefault((key_of(name), rdtype), (name, set()))
            rdatas.update(identity_key(Record(name, 0, rd)) for rd in rrset)
        else:
            raise _reject(Rcode.FORMERR, f"{what}: class is not IN, ANY or NONE")
    # §2.4.2: the RRset must equal the one given, every RR and no other (order aside).
    for (_, rdtype), (name, rdatas) in wanted.items():
        have = {identity_key(r) for r in _zone_records(zone, name).get(rdtype, [])}
        if have != rdatas:
            raise _reject(Rcode.NXRRSET, f"prerequisite {name} {type_text(rdtype)}: differs")


def _check_existence(zone: ZoneSnapshot, name: dns.name.Name, rdtype: int, present: bool) -> None:
    """§2.4.1/2.4.3 (RRset exists / does not exist) and §2.4.4/2.4.5 (name in use / not).
    A name is in use when it owns RRs; an empty non-terminal is not (§2.4.4)."""
    found = _zone_records(zone, name)
    if rdtype == ANY:
        in_use = bool(found)
        if present and not in_use:
            raise _reject(Rcode.NXDOMAIN, f"prerequisite: {name} is not in use")
        if not present and in_use:
            raise _reject(Rcode.YXDOMAIN, f"prerequisite: {name} is in use")
        return
    exists = rdtype in found
    what = f"prerequisite: {name} {type_text(rdtype)}"
    if present and not exists:
        raise _reject(Rcode.NXRRSET, f"{what} does not exist")
    if not present and exists:
        raise _reject(Rcode.YXRRSET, f"{what} exists")


def _zone_records(zone: ZoneSnapshot, name: dns.name.Name) -> RRsets:
    """Every RR at ``name`` in the zone by type, the signer's included (RRSIGs under
    RRSIG, whatever they cover): prerequisites see the zone as it is served."""
    node = zone.node(key_of(name))
    out: RRsets = {}
    if node is None:
        return out
    owner = dns.name.from_wire(node.owner, 0)[0]
    for key, rs in node.rrsets.items():
        rdtype = RRSIG if is_sig_key(key) else key
        out.setdefault(rdtype, []).extend(
            Record(owner, rs.ttl, decode_rdata(rs.rdtype, w)) for w in rs.rdatas
        )
    return out


def _class_of(rrset: dns.rrset.RRset) -> dns.rdataclass.RdataClass:
    """The RR's CLASS as on the wire: dnspython moves ANY/NONE to ``deleting`` when it
    parses a message, but keeps them in ``rdclass`` for RRsets built in code."""
    if rrset.deleting is not None:
        return dns.rdataclass.RdataClass.make(rrset.deleting)
    return dns.rdataclass.RdataClass.make(rrset.rdclass)


# -- §3.4.1 prescan -----------------------------------------------------------------------


def _prescan(section: Iterable[dns.rrset.RRset], origin: dns.name.Name) -> list[UpdateOp]:
    """Every update RR checked for form (§3.4.1) and turned into an :class:`UpdateOp`; the
    whole section is checked before anything is applied."""
    ops: list[UpdateOp] = []
    for rrset in section:
        name, rdtype = rrset.name, int(rrset.rdtype)
        what = f"update {name} {type_text(rdtype)}"
        if not name.is_subdomain(origin):
            raise _reject(Rcode.NOTZONE, f"{what}: outside the zone {origin}")
        rdclass = _class_of(rrset)
        meta = dns.rdatatype.is_metatype(rrset.rdtype)
        if rdclass == IN:
            if meta:
                raise _reject(Rcode.FORMERR, f"{what}: a meta-type cannot be added")
            if not 0 <= rrset.ttl <= MAX_TTL:
                raise _reject(Rcode.FORMERR, f"{what}: TTL {rrset.ttl} out of range")
            ops.extend(UpdateOp(Op.ADD, name, rdtype, Record(name, rrset.ttl, rd)) for rd in rrset)
        elif rdclass == dns.rdataclass.ANY:
            if rrset.ttl != 0 or len(rrset):
                raise _reject(Rcode.FORMERR, f"{what}: class ANY needs TTL 0 and no rdata")
            if meta and rdtype != ANY:
                raise _reject(Rcode.FORMERR, f"{what}: a meta-type cannot be deleted")
            ops.append(UpdateOp(Op.DELETE_NAME if rdtype == ANY else Op.DELETE_RRSET, name, rdtype))
        elif rdclass == dns.rdataclass.NONE:
            if rrset.ttl != 0 or meta or not len(rrset):
                raise _reject(Rcode.FORMERR, f"{what}: class NONE needs TTL 0 and rdata")
            ops.extend(UpdateOp(Op.DELETE_RR, name, rdtype, Record(name, 0, rd)) for rd in rrset)
        else:
            raise _reject(Rcode.FORMERR, f"{what}: class is not IN, ANY or NONE")
    return ops


# -- §3.3 permissions ---------------------------------------------------------------------


def _check_permissions(
    ops: Sequence[UpdateOp],
    key_name: dns.name.Name | None,
    zone: ZoneSnapshot,
    policy: UpdatePolicy,
) -> None:
    """Every update RR must be allowed; the signer's records are never client data."""
    for op in ops:
        if op.rdtype in SIGNER_TYPES:
            raise _reject(
                Rcode.REFUSED,
                f"{op.describe()}: {type_text(op.rdtype)} records are made by zonefan's "
                "signer and cannot be updated",
            )
    for op in ops:
        for rdtype in _types_touched(op, zone):
            verdict = policy.check(key_name, op.name, rdtype)
            if not verdict.allowed:
                raise _reject(Rcode.REFUSED, verdict.reason)


def _types_touched(op: UpdateOp, zone: ZoneSnapshot) -> list[int]:
    """The types an op may change. Deleting a whole name checks each type there, as BIND
    does; with nothing there, the rule must cover every type (ANY)."""
    if op.op is not Op.DELETE_NAME:
        return [op.rdtype]
    found = [t for t in _zone_records(zone, op.name) if t not in SIGNER_TYPES]
    if op.name == zone.origin_name:
        found = [t for t in found if t not in (SOA, NS)]  # kept anyway (§3.4.2.3)
    return found or [ANY]


# -- §3.4.2 update processing -------------------------------------------------------------


class _Workspace:
    """The data RRsets of the names an update touches, changed RR by RR; the zone
    snapshot stays as it was. Signer records are left out: the editor's signer remakes
    them for the result."""

    def __init__(self, zone: ZoneSnapshot) -> None:
        self.zone = zone
        self.origin = zone.origin_name
        self.before: dict[bytes, RRsets] = {}
        self.after: dict[bytes, RRsets] = {}
        self.ignored: list[str] = []

    def at(self, name: dns.name.Name) -> RRsets:
        """The current RRsets at ``name`` (loaded from the zone on first use)."""
        key = key_of(name)
        if key not in self.after:
            found = _zone_records(self.zone, name)
            data = {t: rs for t, rs in found.items() if t not in SIGNER_TYPES}
            self.before[key] = data
            self.after[key] = {t: list(rs) for t, rs in data.items()}
        return self.after[key]

    def apply(self, op: UpdateOp) -> None:
        """One update RR, by the §3.4.2.7 pseudocode."""
        match op.op:
            case Op.ADD:
                assert op.record is not None
                self._add(op.record)
            case Op.DELETE_RRSET:
                self._delete_rrset(op.name, op.rdtype)
            case Op.DELETE_NAME:
                self._delete_name(op.name)
            case Op.DELETE_RR:
                assert op.record is not None
                self._delete_rr(op.record)

    def _ignore(self, record: Record | str, why: str) -> None:
        text = record.to_text() if isinstance(record, Record) else record
        self.ignored.append(f"{text} ({why})")

    def _add(self, r: Record) -> None:
        sets = self.at(r.name)
        t = r.rdtype
        # §3.4.2.2: a CNAME is not added beside other data, nor other data beside a CNAME.
        if t == CNAME and any(x != CNAME for x in sets):
            return self._ignore(r, "a CNAME cannot be added where other data exists")
        if t != CNAME and CNAME in sets:
            return self._ignore(r, "the name is a CNAME")
        if t == SOA:
            current = sets.get(SOA)
            if not current:
                return self._ignore(r, "an SOA can only replace the zone's own SOA")
            if serial_gt(_serial(current[0]), _serial(r)):
                return self._ignore(r, "the SOA serial is older than the zone's (§3.6)")
        if t in (CNAME, SOA):
            sets[t] = [r]
            return None
        kept = [x for x in sets.get(t, []) if not _replaced_by(x, r)]
        # RFC 2181 §5.2: the RRs of an RRset share one TTL, so the added RR's TTL becomes
        # the RRset's (as BIND does); RFC 2136 alone would leave the others' TTLs mixed.
        sets[t] = [x._replace(ttl=r.ttl) for x in kept] + [r]
        return None

    def _delete_rrset(self, name: dns.name.Name, rdtype: int) -> None:
        if name == self.origin and rdtype in (SOA, NS):
            return self._ignore(f"{name} {type_text(rdtype)}", "the apex SOA/NS stay (§3.4.2.3)")
        self.at(name).pop(rdtype, None)
        return None

    def _delete_name(self, name: dns.name.Name) -> None:
        sets = self.at(name)
        keep = (SOA, NS) if name == self.origin else ()
        for t in [t for t in sets if t not in keep]:
            del sets[t]

    def _delete_rr(self, r: Record) -> None:
        sets = self.at(r.name)
        if r.rdtype == SOA:
            return self._ignore(r, "the SOA cannot be deleted (§3.4.2.4)")
        current = sets.get(r.rdtype, [])
        ident = identity_key(r)
        left = [x for x in current if identity_key(x) != ident]
        if r.rdtype == NS and r.name == self.origin and current and not left:
            return self._ignore(r, "the apex keeps its last NS (§3.4.2.4)")
        if left:
            sets[r.rdtype] = left
        else:
            sets.pop(r.rdtype, None)
        return None

    def difference(self) -> tuple[list[Record], list[Record]]:
        """The RRs to remove and to add to go from the zone to the result; an RR whose
        TTL changed is in both."""
        remove: list[Record] = []
        add: list[Record] = []
        for key, after in self.after.items():
            before = self.before[key]
            for t in sorted(set(before) | set(after)):
                old = {identity_key(r): r for r in before.get(t, [])}
                new = {identity_key(r): r for r in after.get(t, [])}
                remove += [r for i, r in old.items() if i not in new or new[i].ttl != r.ttl]
                add += [r for i, r in new.items() if i not in old or old[i].ttl != r.ttl]
        return remove, add


def _replaced_by(existing: Record, new: Record) -> bool:
    """§3.4.2.2: the same RR (WKS: the same address and protocol) is replaced."""
    if new.rdtype == WKS:
        a, b = existing.rdata, new.rdata
        return bool(a.address == b.address and a.protocol == b.protocol)  # type: ignore[attr-defined]
    return identity_key(existing) == identity_key(new)


def _serial(record: Record) -> int:
    assert isinstance(record.rdata, dns.rdtypes.ANY.SOA.SOA)
    return int(record.rdata.serial)
