"""Key states and the key rollover planner (RFC 7583, RFC 6781 §4.1, RFC 8078).

Everything here is a pure function of a key list, a :class:`~signer.policy.Policy` and
``now`` (POSIX seconds).  Nothing sleeps, reads the clock or touches key material: the
caller stores :class:`KeyTiming` rows, generates keys with :func:`signer.keys.generate`
when asked to, and checks the parent for DS records.

Timestamps record what *happened* (all ``int | None``):

* ``publish``/``remove``: the key's DNSKEY is in the zone during [publish, remove).
* ``active``/``retire``: the key makes signatures during [active, retire): a ZSK or CSK
  over the zone data.  A SEP key (KSK, CSK) also signs the DNSKEY, CDS and CDNSKEY
  RRsets during [min(publish, active), max(remove, retire)): from publication (RFC 7583
  §3.3.1, double-KSK) until its DNSKEY leaves, and from ``active`` when an algorithm
  rollover puts signatures in before the DNSKEY (RFC 6781 §4.1.4).
* ``ready``: when the DNSKEY is in every cache; derived as publish + Ipub when unset.
* ``ds_submitted``/``ds_withdrawn``: CDS/CDNSKEY for the key published/removed (in
  ``manual`` DS mode the operator updates the parent by hand at these moments);
  ``ds_seen``/``ds_gone``: its DS observed at / gone from every parent nameserver.

RFC 7583 names used below: Dprp (zone propagation delay), TTLkey (DNSKEY TTL), TTLsig
(largest TTL in the zone, passed in as ``max_ttl``), Dsgn (sign delay: rrsig_validity -
rrsig_refresh), DprpP and TTLds (parent propagation delay and DS TTL).

* ZSK pre-publication (§3.2.1): Ipub = Dprp + TTLkey (+ publish safety); the successor
  activates and the old key retires at publish + Ipub; the old DNSKEY goes at
  retire + Iret with Iret = Dsgn + Dprp + TTLsig (+ retire safety).
* KSK double-KSK (§3.3.1): the successor's DNSKEY is published and signs the DNSKEY
  RRset at once; at publish + IpubC (IpubC = Dprp + TTLkey (+ safety)) its CDS replaces
  the old one; once its DS is *seen* at the parent the old KSK stays DprpP + TTLds
  (+ retire safety) more, then its DNSKEY and signatures go.
* CSK (both): data signatures switch at publish + Ipub, together with the CDS; the old
  CSK goes at max(retire + Iret(ZSK), ds_seen(new) + Iret(KSK)).
* Algorithm rollover (RFC 6781 §4.1.4, conservative): new keys sign everything first;
  their DNSKEYs follow after Dprp + TTLsig; the DS is swapped once they are ready; the
  old DNSKEYs leave DprpP + TTLds after the new DS is seen *and* the old DS is gone;
  the old signatures leave Dprp + TTLkey after that.
* Emergency rollover (compromised key): the same safe sequence with no safety margins
  and Dsgn = 0 (see :func:`emergency_rollover` for what that asks of the caller).

Contract with the signer: when a key starts signing data with a new algorithm (an
algorithm rollover, or the first keys of a zone) every RRset is signed with it at once;
in a same-algorithm rollover old signatures may be replaced gradually, as they come up
for refresh (that is what Dsgn covers), except in an emergency rollover, where every
RRset is re-signed at once.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from signer.errors import SignerError
from signer.keys import KSK_FLAGS, SUPPORTED_ALGORITHMS, ZSK_FLAGS
from signer.policy import KeyStyle, Policy, format_duration

__all__ = [
    "Action",
    "ActionKind",
    "DsAdvice",
    "DsExpect",
    "DsState",
    "DsWatch",
    "Forecast",
    "ForecastStep",
    "KeyRequest",
    "KeyState",
    "KeyTiming",
    "KeyTimingError",
    "ParentDs",
    "Phase",
    "Plan",
    "Role",
    "RolloverInProgressError",
    "ZoneKeys",
    "add_key",
    "advance",
    "apply_action",
    "cds_keys",
    "data_signers",
    "dnskey_signers",
    "emergency_rollover",
    "forecast",
    "initial_keys",
    "key_state",
    "mark_ds_gone",
    "mark_ds_seen",
    "observe_parent_ds",
    "parent_ds",
    "plan",
    "published_keys",
    "retire",
    "start_algorithm_rollover",
    "start_rollover",
    "zone_keys",
]


class KeyTimingError(SignerError):
    """A key operation that does not fit the key list (unknown key id, wrong role, ...)."""


class RolloverInProgressError(KeyTimingError):
    """A rollover was asked for while another one that conflicts with it is running."""


class Role(enum.Enum):
    """What a key signs."""

    KSK = "ksk"
    ZSK = "zsk"
    CSK = "csk"

    @property
    def flags(self) -> int:
        """DNSKEY flags: 257 (SEP) for KSK and CSK, 256 for ZSK."""
        return ZSK_FLAGS if self is Role.ZSK else KSK_FLAGS

    @property
    def is_sep(self) -> bool:
        """True for keys the parent's DS points at (KSK, CSK)."""
        return self is not Role.ZSK

    @property
    def signs_data(self) -> bool:
        """True for keys that sign the zone data (ZSK, CSK)."""
        return self is not Role.KSK


class Phase(enum.Enum):
    """Where a key is in its life (RFC 7583 §3.1 names)."""

    GENERATED = "generated"  # created, nothing in the zone yet
    PUBLISHED = "published"  # DNSKEY in the zone, not yet in every cache
    READY = "ready"  # DNSKEY in every cache, not signing
    ACTIVE = "active"  # signing
    RETIRED = "retired"  # no longer signing or DNSKEY gone, the other not yet
    REMOVED = "removed"  # nothing left in the zone


class DsState(enum.Enum):
    """What the parent is expected to hold for a SEP key."""

    NONE = "none"
    SUBMITTED = "submitted"  # CDS/CDNSKEY published (or DS asked for), not seen yet
    SEEN = "seen"  # DS observed at the parent
    WITHDRAWN = "withdrawn"  # CDS/CDNSKEY removed (or removal asked for)
    GONE = "gone"  # DS observed gone from the parent


@dataclass(frozen=True)
class KeyState:
    """The state of one key at one moment: its phase and, for SEP keys, its DS."""

    phase: Phase
    ds: DsState


@dataclass(frozen=True)
class KeyTiming:
    """Timing metadata of one key, as stored next to the key file (plain ints and str).

    ``key_id`` is opaque to this module (e.g. the key file name or a database id).
    ``successor`` links an old key to the key replacing it.  ``roll_requested`` asks the
    planner for a successor now; ``next_algorithm`` gives that successor another
    algorithm; ``compromised`` marks a key rolled in an emergency.
    """

    key_id: str
    role: Role
    algorithm: int
    key_tag: int
    created: int | None = None
    publish: int | None = None
    ready: int | None = None
    active: int | None = None
    retire: int | None = None
    remove: int | None = None
    ds_submitted: int | None = None
    ds_seen: int | None = None
    ds_withdrawn: int | None = None
    ds_gone: int | None = None
    successor: str | None = None
    roll_requested: int | None = None
    next_algorithm: int | None = None
    compromised: int | None = None


class ActionKind(enum.Enum):
    """A step the caller applies (see :class:`Action` for what each one asks)."""

    GENERATE = "generate"
    PUBLISH = "publish"
    ACTIVATE = "activate"
    SUBMIT_DS = "submit-ds"
    WITHDRAW_DS = "withdraw-ds"
    RETIRE = "retire"
    REMOVE = "remove"


@dataclass(frozen=True)
class Action:
    """One step due now.

    * GENERATE: make a key (``signer.keys.generate(algorithm, role.flags)``), store it
      and record it with :func:`add_key`; ``key_id`` is None, ``predecessor`` names the
      key it replaces (None for a zone's first keys).
    * PUBLISH, ACTIVATE, RETIRE, REMOVE: record with :func:`apply_action`, then re-sign
      the zone as :func:`zone_keys` says (these change the zone).
    * SUBMIT_DS, WITHDRAW_DS: record with :func:`apply_action`; the CDS/CDNSKEY RRsets
      change (or, with ``ds-check = manual``, tell the operator to add/remove the DS at
      the parent); from then on check the parent (see :attr:`Plan.ds_watch`).
    """

    kind: ActionKind
    key_id: str | None
    role: Role
    algorithm: int
    predecessor: str | None = None
    reason: str = ""

    @property
    def needs_key_generation(self) -> bool:
        """True for GENERATE: the caller must make a key pair."""
        return self.kind is ActionKind.GENERATE

    @property
    def changes_zone(self) -> bool:
        """True when the zone's DNSKEY, RRSIG, CDS or CDNSKEY records change."""
        return self.kind is not ActionKind.GENERATE

    @property
    def needs_ds_check(self) -> bool:
        """True when the parent must be watched afterwards (DS to appear or go)."""
        return self.kind in (ActionKind.SUBMIT_DS, ActionKind.WITHDRAW_DS)


class DsExpect(enum.Enum):
    """What a DS check should look for."""

    PRESENT = "present"
    ABSENT = "absent"


@dataclass(frozen=True)
class DsWatch:
    """A key whose DS the caller should look for at the parent (or ask the operator)."""

    key_id: str
    key_tag: int
    algorithm: int
    expect: DsExpect


@dataclass(frozen=True)
class Plan:
    """What :func:`plan` found: actions due now, and when to call it again.

    ``next_event`` is the next moment a time-based step falls due (None: nothing is
    scheduled); steps waiting for the parent have no time, the caller polls the parent
    for the keys in ``ds_watch`` (``ds-check = auto``) or waits for the operator.
    ``notes`` explain waits and settings the planner does not act on.
    """

    actions: tuple[Action, ...]
    next_event: int | None
    ds_watch: tuple[DsWatch, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeyRequest:
    """A key a zone needs: its role and algorithm."""

    role: Role
    algorithm: int


@dataclass(frozen=True)
class ZoneKeys:
    """Which keys the zone uses at one moment (by key id)."""

    dnskey: tuple[str, ...]  # DNSKEY records published
    dnskey_signers: tuple[str, ...]  # keys signing the DNSKEY (and CDS/CDNSKEY) RRsets
    data_signers: tuple[str, ...]  # keys signing every other RRset
    cds: tuple[str, ...]  # keys with CDS/CDNSKEY records
    cds_delete: bool  # publish the RFC 8078 §4 delete CDS (0 0 0 00) / CDNSKEY (0 3 0 AA==)


# --- small helpers ------------------------------------------------------------------


def _at(value: int | None, now: int) -> bool:
    """True when the event ``value`` has happened by ``now``."""
    return value is not None and value <= now


def _when(t: int | None) -> str:
    if t is None:
        return "(not yet known)"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _describe(key: KeyTiming) -> str:
    return f"{key.role.name} {key.key_id!r} (tag {key.key_tag}, algorithm {key.algorithm})"


def _roles(style: KeyStyle) -> tuple[Role, ...]:
    return (Role.CSK,) if style is KeyStyle.CSK else (Role.KSK, Role.ZSK)


def _index(keys: Sequence[KeyTiming]) -> dict[str, KeyTiming]:
    found: dict[str, KeyTiming] = {}
    for key in keys:
        if key.key_id in found:
            raise KeyTimingError(f"key id {key.key_id!r} appears twice; key ids must be unique")
        found[key.key_id] = key
    return found


def _predecessor(keys: Sequence[KeyTiming], key: KeyTiming) -> KeyTiming | None:
    return next((k for k in keys if k.successor == key.key_id), None)


def _is_gone(key: KeyTiming, now: int) -> bool:
    """Nothing of the key is left in the zone (or ever was, for a removed plan)."""
    dnskey_gone = key.publish is None or _at(key.remove, now)
    sigs_gone = key.active is None or _at(key.retire, now)
    return dnskey_gone and sigs_gone and (key.remove is not None or key.retire is not None)


def _is_current(key: KeyTiming) -> bool:
    """In service and not being replaced: the key a new rollover would start from."""
    return key.retire is None and key.remove is None and key.successor is None


def _had_ds(key: KeyTiming) -> bool:
    return key.ds_submitted is not None or key.ds_seen is not None


def _emergency(keys: Sequence[KeyTiming], key: KeyTiming) -> bool:
    """The key is compromised, or it replaces a compromised one: no safety margins."""
    if key.compromised is not None:
        return True
    pred = _predecessor(keys, key)
    return pred is not None and pred.compromised is not None


def _replace(keys: Sequence[KeyTiming], new: KeyTiming) -> tuple[KeyTiming, ...]:
    return tuple(new if k.key_id == new.key_id else k for k in keys)


def _find(keys: Sequence[KeyTiming], key_id: str) -> KeyTiming:
    key = _index(keys).get(key_id)
    if key is None:
        known = ", ".join(repr(k.key_id) for k in keys) or "none"
        raise KeyTimingError(f"no key with id {key_id!r}; known keys: {known}")
    return key


# --- intervals (RFC 7583 §3) ----------------------------------------------------------


@dataclass(frozen=True)
class _Intervals:
    """The RFC 7583 intervals for one key, with or without the safety margins."""

    ipub: int  # Ipub (§3.2.1) and IpubC (§3.3.1): Dprp + TTLkey + publish safety
    iret_zsk: int  # Iret (§3.2.1): Dsgn + Dprp + TTLsig + retire safety
    iret_ksk: int  # Iret (§3.3.1): DprpP + TTLds + retire safety
    sig_propagation: int  # RFC 6781 §4.1.4: Dprp + TTLsig + publish safety
    dnskey_expiry: int  # Dprp + TTLkey + retire safety: old DNSKEY RRsets out of caches


def _intervals(policy: Policy, max_ttl: int, fast: bool = False) -> _Intervals:
    ttl_sig = max(max_ttl, policy.dnskey_ttl)
    pub_safety = 0 if fast else policy.publish_safety
    ret_safety = 0 if fast else policy.retire_safety
    sign_delay = 0 if fast else policy.sign_delay  # emergency: caller re-signs at once
    dprp = policy.zone_propagation_delay
    return _Intervals(
        ipub=dprp + policy.dnskey_ttl + pub_safety,
        iret_zsk=sign_delay + dprp + ttl_sig + ret_safety,
        iret_ksk=policy.parent_propagation_delay + policy.parent_ds_ttl + ret_safety,
        sig_propagation=dprp + ttl_sig + pub_safety,
        dnskey_expiry=dprp + policy.dnskey_ttl + ret_safety,
    )


def _ready_time(key: KeyTiming, policy: Policy, fast: bool = False) -> int | None:
    if key.ready is not None:
        return key.ready
    if key.publish is None:
        return None
    return key.publish + _intervals(policy, 0, fast).ipub


# --- states and zone contents ---------------------------------------------------------


def key_state(key: KeyTiming, now: int, policy: Policy) -> KeyState:
    """The phase of ``key`` at ``now`` and, for SEP keys, what the parent should hold."""
    return KeyState(_phase(key, now, policy), _ds_state(key, now))


def _phase(key: KeyTiming, now: int, policy: Policy) -> Phase:
    if _is_gone(key, now):
        return Phase.REMOVED
    if _at(key.retire, now) or _at(key.remove, now):
        return Phase.RETIRED
    if _at(key.active, now):
        return Phase.ACTIVE
    if _at(key.publish, now):
        ready = _ready_time(key, policy)
        return Phase.READY if ready is not None and ready <= now else Phase.PUBLISHED
    return Phase.GENERATED


def _ds_state(key: KeyTiming, now: int) -> DsState:
    if not key.role.is_sep:
        return DsState.NONE
    for value, state in (
        (key.ds_gone, DsState.GONE),
        (key.ds_withdrawn, DsState.WITHDRAWN),
        (key.ds_seen, DsState.SEEN),
        (key.ds_submitted, DsState.SUBMITTED),
    ):
        if _at(value, now):
            return state
    return DsState.NONE


def _in(start: int | None, end: int | None, now: int) -> bool:
    return _at(start, now) and not _at(end, now)


def published_keys(keys: Iterable[KeyTiming], now: int) -> tuple[KeyTiming, ...]:
    """Keys whose DNSKEY is in the zone at ``now``."""
    return tuple(k for k in keys if _in(k.publish, k.remove, now))


def dnskey_signers(keys: Iterable[KeyTiming], now: int) -> tuple[KeyTiming, ...]:
    """SEP keys signing the DNSKEY, CDS and CDNSKEY RRsets at ``now``."""
    found = []
    for k in keys:
        if not k.role.is_sep:
            continue
        starts = [t for t in (k.publish, k.active) if t is not None]
        ends = [t for t in (k.remove, k.retire) if t is not None]
        # Signing ends only when both the DNSKEY and the signing period have ended.
        end = max(ends) if len(ends) == 2 or (ends and k.active is None) else None
        if starts and _in(min(starts), end, now):
            found.append(k)
    return tuple(found)


def data_signers(keys: Iterable[KeyTiming], now: int) -> tuple[KeyTiming, ...]:
    """ZSKs and CSKs signing the zone data (everything but DNSKEY/CDS/CDNSKEY) at ``now``."""
    return tuple(k for k in keys if k.role.signs_data and _in(k.active, k.retire, now))


def cds_keys(keys: Iterable[KeyTiming], now: int, policy: Policy) -> tuple[KeyTiming, ...]:
    """SEP keys with CDS/CDNSKEY records at ``now`` (RFC 7344, RFC 8078).

    Empty when the policy turns CDS/CDNSKEY off or takes the zone insecure (then
    :func:`zone_keys` reports the delete form instead).
    """
    if not policy.cds_cdnskey or policy.insecure:
        return ()
    return tuple(
        k
        for k in keys
        if k.role.is_sep
        and _in(k.ds_submitted, k.ds_withdrawn, now)
        and _in(k.publish, k.remove, now)
    )


def zone_keys(keys: Sequence[KeyTiming], now: int, policy: Policy) -> ZoneKeys:
    """Everything the zone's DNSSEC records must reflect at ``now``."""
    published = published_keys(keys, now)
    # RFC 8078 §4: ask the parent to delete the DS while the zone is still signed.
    delete = policy.insecure and policy.cds_cdnskey and any(k.role.is_sep for k in published)
    return ZoneKeys(
        dnskey=tuple(k.key_id for k in published),
        dnskey_signers=tuple(k.key_id for k in dnskey_signers(keys, now)),
        data_signers=tuple(k.key_id for k in data_signers(keys, now)),
        cds=tuple(k.key_id for k in cds_keys(keys, now, policy)),
        cds_delete=delete,
    )


# --- the planner -------------------------------------------------------------------------

_Due = tuple[int, Action]


class _Ctx:
    """What every rule needs: the keys, the policy, now and the zone's largest TTL."""

    def __init__(self, keys: Sequence[KeyTiming], policy: Policy, now: int, max_ttl: int):
        self.keys = tuple(keys)
        self.by_id = _index(keys)
        self.policy = policy
        self.now = now
        self.max_ttl = max_ttl
        self.notes: list[str] = []

    def iv(self, key: KeyTiming) -> _Intervals:
        return _intervals(self.policy, self.max_ttl, _emergency(self.keys, key))

    def pred(self, key: KeyTiming) -> KeyTiming | None:
        return _predecessor(self.keys, key)

    def succ(self, key: KeyTiming) -> KeyTiming | None:
        return None if key.successor is None else self.by_id.get(key.successor)

    def ready(self, key: KeyTiming) -> int | None:
        return _ready_time(key, self.policy, _emergency(self.keys, key))

    def alg_roll_new(self, key: KeyTiming) -> bool:
        """True for a key brought in by an algorithm rollover."""
        pred = self.pred(key)
        return pred is not None and pred.algorithm != key.algorithm

    def alg_roll_old(self, key: KeyTiming) -> bool:
        succ = self.succ(key)
        return succ is not None and succ.algorithm != key.algorithm


def _action(kind: ActionKind, key: KeyTiming, reason: str) -> Action:
    return Action(kind, key.key_id, key.role, key.algorithm, reason=reason)


def _later(*times: int | None) -> int | None:
    """The latest of ``times``; None if any is still unknown."""
    if any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


# Rules: each yields (due time, action) for one kind of step; None due means "waits
# for something that has no time yet" and is left out.


def _rule_generate(c: _Ctx) -> Iterator[_Due]:
    if c.policy.insecure:
        return
    live = [k for k in c.keys if not _is_gone(k, c.now)]
    if not live:
        for request in initial_keys(c.policy, c.now):
            action = Action(
                ActionKind.GENERATE, None, request.role, request.algorithm, None, "first key"
            )
            yield c.now, action
        return
    for key in live:
        if not _is_current(key) or key.publish is None:
            continue
        due = _roll_due(c, key)
        if due is None:
            continue
        algorithm = key.next_algorithm or key.algorithm
        why = "compromised" if key.compromised is not None else "rollover"
        if key.roll_requested is None:
            why = f"lifetime of {format_duration(_lifetime(c.policy, key.role))} ends"
        yield (
            due,
            Action(ActionKind.GENERATE, None, key.role, algorithm, key.key_id, f"successor: {why}"),
        )


def _lifetime(policy: Policy, role: Role) -> int:
    return {
        Role.KSK: policy.ksk_lifetime,
        Role.ZSK: policy.zsk_lifetime,
        Role.CSK: policy.csk_lifetime,
    }[role]


def _roll_due(c: _Ctx, key: KeyTiming) -> int | None:
    """When a successor for the current ``key`` must be generated (RFC 7583 §3.2.1:
    Tpub(N+1) <= Tact(N) + L - Ipub, so it is ready when the lifetime ends)."""
    if key.roll_requested is not None:
        return key.roll_requested
    lifetime = _lifetime(c.policy, key.role)
    if lifetime == 0 or key.active is None:
        return None
    return key.active + lifetime - c.iv(key).ipub


def _rule_publish(c: _Ctx) -> Iterator[_Due]:
    for key in c.keys:
        if key.publish is not None or key.remove is not None or key.created is None:
            continue
        if c.alg_roll_new(key):
            # RFC 6781 §4.1.4: the new algorithm's signatures reach every cache first.
            if key.active is not None:
                yield (
                    key.active + c.iv(key).sig_propagation,
                    _action(ActionKind.PUBLISH, key, "new-algorithm signatures are in every cache"),
                )
        else:
            yield key.created, _action(ActionKind.PUBLISH, key, "new key")


def _activation_due(c: _Ctx, key: KeyTiming) -> int | None:
    """When ``key`` starts signing (None: not yet known)."""
    if c.alg_roll_new(key):
        return key.created  # signatures before the DNSKEY
    pred = c.pred(key)
    if pred is None or key.role is Role.KSK:
        return key.publish  # first keys sign at once; a KSK signs from publication
    return c.ready(key)  # pre-publication: sign once the DNSKEY is in every cache


def _rule_activate(c: _Ctx) -> Iterator[_Due]:
    for key in c.keys:
        if key.active is not None or key.retire is not None or key.created is None:
            continue
        due = _activation_due(c, key)
        if due is not None:
            yield due, _action(ActionKind.ACTIVATE, key, "start signing")


def _algorithm_signing_since(c: _Ctx, algorithm: int) -> int | None:
    """Since when zone data has been signed with ``algorithm`` (None: it is not)."""
    starts = [
        k.active
        for k in c.keys
        if k.algorithm == algorithm and k.role.signs_data and k.active is not None
    ]
    return min(starts, default=None)


def _submit_due(c: _Ctx, key: KeyTiming) -> int | None:
    """When the DS for SEP ``key`` may be asked for: every key of its algorithm is in
    every cache, and so are the algorithm's signatures over the data."""
    same_alg = [
        k for k in c.keys if k.algorithm == key.algorithm and k.retire is None and k.remove is None
    ]
    readies = [c.ready(k) for k in same_alg]
    since = _algorithm_signing_since(c, key.algorithm)
    signed = None if since is None else since + c.iv(key).sig_propagation
    return _later(*readies, signed)


def _rule_submit(c: _Ctx) -> Iterator[_Due]:
    if c.policy.insecure:
        return
    for key in c.keys:
        if not key.role.is_sep or key.publish is None or not _is_current(key):
            continue
        if key.ds_submitted is not None or key.ds_withdrawn is not None:
            continue
        due = _submit_due(c, key)
        if due is not None:
            yield due, _action(ActionKind.SUBMIT_DS, key, "DNSKEY and signatures are cached")


def _rule_withdraw(c: _Ctx) -> Iterator[_Due]:
    for key in c.keys:
        if not key.role.is_sep or not _had_ds(key) or key.ds_withdrawn is not None:
            continue
        if c.policy.insecure:
            yield c.now, _action(ActionKind.WITHDRAW_DS, key, "going insecure")
            continue
        succ = c.succ(key)
        if succ is not None and succ.ds_submitted is not None:
            yield succ.ds_submitted, _action(ActionKind.WITHDRAW_DS, key, "replaced by successor")
        elif key.retire is not None and succ is None:
            yield key.retire, _action(ActionKind.WITHDRAW_DS, key, "retired")


def _new_ds_seen(c: _Ctx, key: KeyTiming) -> int | None:
    """When the DS of the SEP key that replaces ``key`` was seen (None: not yet)."""
    succ = c.succ(key)
    while succ is not None and not succ.role.is_sep:
        succ = c.succ(succ)  # pragma: no cover - SEP keys are replaced by SEP keys
    if succ is None:
        return None
    if succ.ds_seen is None and succ.ds_submitted is not None:
        # Only once it is asked for: before that the parent must not have it.
        c.notes.append(
            f"waiting for the DS of {_describe(succ)} at the parent"
            + (
                "; zonefan checks the parent's nameservers"
                if c.policy.ds_check.value == "auto"
                else "; add it at the parent, then run `zonefan keys ds-seen`"
            )
        )
    return succ.ds_seen


def _old_algorithm_clear(c: _Ctx, algorithm: int) -> int | None:
    """When the parent stopped pointing at ``algorithm``: every new SEP key's DS seen
    and every old SEP key's DS gone (RFC 6781 §4.1.4 "new DS")."""
    times: list[int | None] = []
    for key in c.keys:
        if key.algorithm != algorithm or not key.role.is_sep or key.successor is None:
            continue
        times.append(_new_ds_seen(c, key))
        if _had_ds(key):
            if key.ds_gone is None and key.ds_withdrawn is not None:
                c.notes.append(f"waiting for the DS of {_describe(key)} to leave the parent")
            times.append(key.ds_gone)
    return _later(*times) if times else None


def _old_key_steps(c: _Ctx, key: KeyTiming) -> Iterator[_Due]:
    """RETIRE/REMOVE for a key with a successor."""
    succ = c.succ(key)
    assert succ is not None
    iv = c.iv(key)
    if c.alg_roll_old(key):
        yield from _alg_old_steps(c, key, iv)
        return
    if key.role.signs_data and key.retire is None:
        due = succ.active if succ.active is not None else _activation_due(c, succ)
        if due is not None:
            yield due, _action(ActionKind.RETIRE, key, "successor signs now")
    if key.remove is not None:
        return
    removal: list[int | None] = []
    if key.role.signs_data:
        removal.append(None if key.retire is None else key.retire + iv.iret_zsk)
    if key.role.is_sep:
        seen = _new_ds_seen(c, key)
        removal.append(None if seen is None else seen + iv.iret_ksk)
    due = _later(*removal)
    if due is not None:
        if key.role is Role.KSK and key.retire is None:
            yield due, _action(ActionKind.RETIRE, key, "successor's DS is seen and cached")
        yield due, _action(ActionKind.REMOVE, key, "no cache can need it any more")


def _alg_old_steps(c: _Ctx, key: KeyTiming, iv: _Intervals) -> Iterator[_Due]:
    """Old-algorithm keys: DNSKEY first, signatures after (RFC 6781 §4.1.4)."""
    if key.remove is None:
        clear = _old_algorithm_clear(c, key.algorithm)
        if clear is not None:
            yield (
                clear + iv.iret_ksk,
                _action(ActionKind.REMOVE, key, "the parent's DS no longer names this algorithm"),
            )
    elif key.retire is None:
        yield (
            key.remove + iv.dnskey_expiry,
            _action(ActionKind.RETIRE, key, "no cached DNSKEY RRset lists this algorithm"),
        )


def _rule_old_keys(c: _Ctx) -> Iterator[_Due]:
    if c.policy.insecure:
        return
    for key in c.keys:
        if key.successor is not None and not _is_gone(key, c.now):
            yield from _old_key_steps(c, key)
        elif key.successor is None and key.retire is not None and key.remove is None:
            yield from _retired_alone(c, key)


def _retired_alone(c: _Ctx, key: KeyTiming) -> Iterator[_Due]:
    """REMOVE for a key the operator retired without a successor."""
    assert key.retire is not None
    iv = c.iv(key)
    times: list[int | None] = [key.retire + (iv.iret_zsk if key.role.signs_data else 0)]
    if _had_ds(key):
        times.append(None if key.ds_gone is None else key.ds_gone + iv.iret_ksk)
    due = _later(*times)
    if due is not None:
        yield due, _action(ActionKind.REMOVE, key, "retired")


def _rule_insecure(c: _Ctx) -> Iterator[_Due]:
    """Going insecure: once no cache can hold a DS, stop signing and drop every key."""
    if not c.policy.insecure:
        return
    live = [k for k in c.keys if not _is_gone(k, c.now)]
    times: list[int | None] = [c.now]
    for key in live:
        if key.role.is_sep and _had_ds(key):
            if key.ds_gone is None:
                c.notes.append(f"going insecure: waiting for the DS of {_describe(key)} to go")
            times.append(None if key.ds_gone is None else key.ds_gone + c.iv(key).iret_ksk)
    due = _later(*times)
    if due is None:
        return
    for key in live:
        if key.retire is None and key.active is not None:
            yield due, _action(ActionKind.RETIRE, key, "zone goes insecure")
        if key.remove is None and key.publish is not None:
            yield due, _action(ActionKind.REMOVE, key, "zone goes insecure")


_RULES: tuple[Callable[[_Ctx], Iterator[_Due]], ...] = (
    _rule_generate,
    _rule_publish,
    _rule_activate,
    _rule_submit,
    _rule_withdraw,
    _rule_old_keys,
    _rule_insecure,
)


def _ds_watch(keys: Sequence[KeyTiming]) -> tuple[DsWatch, ...]:
    watch = []
    for key in keys:
        if not key.role.is_sep:
            continue
        if key.ds_submitted is not None and key.ds_seen is None and key.ds_withdrawn is None:
            watch.append(DsWatch(key.key_id, key.key_tag, key.algorithm, DsExpect.PRESENT))
        elif key.ds_withdrawn is not None and key.ds_gone is None and _had_ds(key):
            watch.append(DsWatch(key.key_id, key.key_tag, key.algorithm, DsExpect.ABSENT))
    return tuple(watch)


def _algorithm_rollover_target(c: _Ctx) -> int | None:
    """The algorithm an algorithm rollover asked for or running is moving to (None: no
    such rollover)."""
    for old, new in _running(c.keys, c.now):
        if old.algorithm != new.algorithm:
            return new.algorithm
    for key in c.keys:
        if _is_current(key) and key.roll_requested is not None and key.next_algorithm:
            return key.next_algorithm
    return None


def _policy_notes(c: _Ctx) -> None:
    current = [k for k in c.keys if _is_current(k) and k.publish is not None]
    algorithms = {k.algorithm for k in current}
    target = _algorithm_rollover_target(c)
    if target is not None:
        # No advice to start what is under way; only a policy that will disagree with
        # the keys once it ends is worth a word.
        if target != c.policy.algorithm:
            c.notes.append(
                f"an algorithm rollover to {target} is running but the policy says "
                f"{c.policy.algorithm}; set the policy's algorithm to {target}, or roll "
                f"back to {c.policy.algorithm} once this rollover has ended"
            )
    elif current and c.policy.algorithm not in algorithms:
        c.notes.append(
            f"the keys use algorithm {sorted(algorithms)} but the policy says "
            f"{c.policy.algorithm}; start an algorithm rollover to change it"
        )
    roles = {k.role for k in current}
    if current and not c.policy.insecure and not roles <= set(_roles(c.policy.key_style)):
        c.notes.append(
            f"the keys are {sorted(r.value for r in roles)} but the policy's key-style is "
            f"{c.policy.key_style.value}; changing the key style of a signed zone is not "
            "automated"
        )


def plan(keys: Sequence[KeyTiming], policy: Policy, now: int, max_ttl: int = 0) -> Plan:
    """The steps due at ``now`` and when to call again.

    ``max_ttl`` is the largest TTL in the zone (TTLsig in RFC 7583).  Apply every action
    (:func:`add_key` for GENERATE, :func:`apply_action` for the rest) and call ``plan``
    again with the same ``now`` until it returns no actions (steps can depend on each
    other, e.g. PUBLISH then ACTIVATE of a KSK); :func:`advance` does that loop.
    """
    c = _Ctx(keys, policy, now, max_ttl)
    due: list[int] = []
    actions: list[Action] = []
    seen: set[tuple[ActionKind, str | None, Role, str | None]] = set()
    for rule in _RULES:
        for time, action in rule(c):
            if time > now:
                due.append(time)
                continue
            ident = (action.kind, action.key_id, action.role, action.predecessor)
            if ident not in seen:
                seen.add(ident)
                actions.append(action)
    _policy_notes(c)
    return Plan(
        actions=tuple(actions),
        next_event=min(due, default=None),
        ds_watch=_ds_watch(c.keys),
        notes=tuple(dict.fromkeys(c.notes)),
    )


# --- applying actions ------------------------------------------------------------------

_FIELD_FOR: dict[ActionKind, str] = {
    ActionKind.PUBLISH: "publish",
    ActionKind.ACTIVATE: "active",
    ActionKind.SUBMIT_DS: "ds_submitted",
    ActionKind.WITHDRAW_DS: "ds_withdrawn",
    ActionKind.RETIRE: "retire",
    ActionKind.REMOVE: "remove",
}


def apply_action(keys: Sequence[KeyTiming], action: Action, now: int) -> tuple[KeyTiming, ...]:
    """Record that ``action`` (not GENERATE: see :func:`add_key`) happened at ``now``."""
    if action.kind is ActionKind.GENERATE or action.key_id is None:
        raise KeyTimingError("a GENERATE action is recorded with add_key, after generating")
    key = _find(keys, action.key_id)
    field = _FIELD_FOR[action.kind]
    if getattr(key, field) is not None:
        return tuple(keys)  # already recorded: applying twice changes nothing
    changes: dict[str, int] = {field: now}
    return _replace(keys, dataclasses.replace(key, **changes))  # type: ignore[arg-type]


def add_key(
    keys: Sequence[KeyTiming], action: Action, key_id: str, key_tag: int, now: int
) -> tuple[KeyTiming, ...]:
    """Record the key generated for a GENERATE ``action`` as ``key_id``/``key_tag``."""
    if action.kind is not ActionKind.GENERATE:
        raise KeyTimingError(f"add_key records GENERATE actions, not {action.kind.value}")
    if key_id in _index(keys):
        raise KeyTimingError(f"key id {key_id!r} is already used; give the new key its own id")
    new = KeyTiming(key_id, action.role, action.algorithm, key_tag, created=now)
    out = list(keys)
    if action.predecessor is not None:
        old = _find(keys, action.predecessor)
        if old.successor is not None:
            raise KeyTimingError(f"{_describe(old)} already has successor {old.successor!r}")
        out = list(_replace(out, dataclasses.replace(old, successor=key_id)))
    return (*out, new)


def advance(
    keys: Sequence[KeyTiming],
    policy: Policy,
    now: int,
    max_ttl: int,
    generate: Callable[[Action], tuple[str, int]],
) -> tuple[tuple[KeyTiming, ...], tuple[Action, ...], Plan]:
    """Plan and apply until nothing more is due at ``now``.

    ``generate(action)`` makes and stores a key for a GENERATE action and returns its
    (key id, key tag).  Returns the new keys, every action applied, and the final plan
    (its ``next_event``, ``ds_watch`` and ``notes``).
    """
    current = tuple(keys)
    applied: list[Action] = []
    for _ in range(64):  # each round moves at least one timestamp; a bound guards bugs
        result = plan(current, policy, now, max_ttl)
        if not result.actions:
            return current, tuple(applied), result
        for action in result.actions:
            if action.needs_key_generation:
                key_id, key_tag = generate(action)
                current = add_key(current, action, key_id, key_tag, now)
            else:
                current = apply_action(current, action, now)
            applied.append(action)
    raise KeyTimingError("the key plan did not settle; this is a bug in signer.timing")


# --- operator entry points --------------------------------------------------------------


def initial_keys(policy: Policy, now: int) -> tuple[KeyRequest, ...]:
    """The keys a zone without keys needs under ``policy`` (``now`` for symmetry)."""
    del now  # the answer does not depend on time; kept so every entry point looks alike
    if policy.insecure:
        return ()
    return tuple(KeyRequest(role, policy.algorithm) for role in _roles(policy.key_style))


def _running(keys: Sequence[KeyTiming], now: int) -> list[tuple[KeyTiming, KeyTiming]]:
    """(old, new) pairs of rollovers not finished at ``now``."""
    by_id = _index(keys)
    pairs = []
    for key in keys:
        if key.successor is not None and not _is_gone(key, now):
            new = by_id.get(key.successor)
            if new is not None:
                pairs.append((key, new))
    return pairs


def _rollover_text(old: KeyTiming, new: KeyTiming, policy: Policy) -> str:
    kind = "algorithm" if old.algorithm != new.algorithm else old.role.name
    started = new.created if new.created is not None else old.roll_requested
    if old.remove is not None:
        end = f"it ends at {_when(max(old.remove, old.retire or old.remove))}"
    elif old.role.is_sep and new.ds_seen is None:
        end = (
            f"it ends {format_duration(policy.parent_propagation_delay + policy.parent_ds_ttl)} "
            f"after the DS of {new.key_id!r} is seen at the parent"
        )
    else:
        iv = _intervals(policy, 0)
        base = old.retire if old.retire is not None else _ready_time(new, policy)
        end = "it ends when the old key is removed"
        if base is not None:
            end += f", not before {_when(base + iv.iret_zsk)}"
    return (
        f"a {kind} rollover from {_describe(old)} to {new.key_id!r} is running "
        f"(started {_when(started)}); {end}"
    )


def _check_no_rollover(
    keys: Sequence[KeyTiming], now: int, policy: Policy, roles: Collection[Role]
) -> None:
    for old, new in _running(keys, now):
        if old.algorithm != new.algorithm or old.role in roles:
            raise RolloverInProgressError(
                _rollover_text(old, new, policy) + "; wait for it to finish"
            )
    for key in keys:
        if key.roll_requested is not None and key.role in roles and _is_current(key):
            raise RolloverInProgressError(
                f"a rollover of {_describe(key)} was requested at "
                f"{_when(key.roll_requested)} and starts at the next plan"
            )


def _current_of(keys: Sequence[KeyTiming], role: Role) -> list[KeyTiming]:
    return [k for k in keys if k.role is role and _is_current(k) and k.publish is not None]


def start_rollover(
    keys: Sequence[KeyTiming], role: Role, policy: Policy, now: int
) -> tuple[KeyTiming, ...]:
    """Ask for a rollover of the current ``role`` key now; :func:`plan` does the steps.

    Raises RolloverInProgressError if a rollover of that role (or any algorithm
    rollover) is still running, KeyTimingError if there is no such key.
    """
    _check_no_rollover(keys, now, policy, {role})
    current = _current_of(keys, role)
    if not current:
        raise KeyTimingError(f"the zone has no published {role.name} to roll")
    out = tuple(keys)
    for key in current:
        out = _replace(out, dataclasses.replace(key, roll_requested=now))
    return out


def start_algorithm_rollover(
    keys: Sequence[KeyTiming], new_algorithm: int, policy: Policy, now: int
) -> tuple[KeyTiming, ...]:
    """Ask for an algorithm rollover of every current key to ``new_algorithm``.

    RFC 6781 §4.1.4: new-algorithm keys sign everything before their DNSKEYs appear,
    then the DS is swapped, then the old DNSKEYs and finally the old signatures go.
    Raises RolloverInProgressError if any rollover is running.  Change the policy's
    ``algorithm`` too, or :func:`plan` will keep noting the mismatch.
    """
    if new_algorithm not in SUPPORTED_ALGORITHMS:
        raise KeyTimingError(
            f"algorithm {new_algorithm} is not supported; use one of "
            + ", ".join(str(a) for a in SUPPORTED_ALGORITHMS)
        )
    _check_no_rollover(keys, now, policy, set(Role))
    current = [k for k in keys if _is_current(k) and k.publish is not None]
    if not current:
        raise KeyTimingError("the zone has no published keys to roll")
    if all(k.algorithm == new_algorithm for k in current):
        raise KeyTimingError(f"the keys already use algorithm {new_algorithm}")
    out = tuple(keys)
    for key in current:
        changed = dataclasses.replace(key, roll_requested=now, next_algorithm=new_algorithm)
        out = _replace(out, changed)
    return out


def emergency_rollover(
    keys: Sequence[KeyTiming], key_id: str, policy: Policy, now: int
) -> tuple[KeyTiming, ...]:
    """Roll a compromised key by the fastest path that keeps every resolver validating.

    What it trades: no publish/retire safety margins and Dsgn = 0, so the caller must
    re-sign every RRset at once when the successor activates (no gradual refresh), and
    nothing covers propagation or TTLs longer than configured.  What it cannot skip:
    the successor's DNSKEY must reach every cache before it signs (Dprp + TTLkey) and,
    for a KSK/CSK, the new DS must be seen at the parent, so the attacker can use the
    old key until its DNSKEY is removed and out of caches.  Breaking validation to cut
    that short (pulling the DNSKEY at once) is deliberately not offered.

    If the key is already being replaced, the running rollover continues without
    margins.  Raises RolloverInProgressError if the key is the incoming key of a running
    rollover (let that finish first), KeyTimingError if it is retired.
    """
    key = _find(keys, key_id)
    if _is_gone(key, now) or (key.retire is not None and key.successor is None):
        raise KeyTimingError(f"{_describe(key)} is retired; remove it instead of rolling it")
    for old, new in _running(keys, now):
        if new.key_id == key_id:
            raise RolloverInProgressError(
                _rollover_text(old, new, policy)
                + f"; {key_id!r} is its new key: let it finish, then roll {key_id!r}"
            )
    marked = dataclasses.replace(
        key, compromised=now, roll_requested=key.roll_requested if key.successor else now
    )
    return _replace(keys, marked)


def retire(keys: Sequence[KeyTiming], key_id: str, now: int) -> tuple[KeyTiming, ...]:
    """Retire a key that has no successor (e.g. a spare); :func:`plan` removes it later.

    Refuses the only key of its role still in service: roll it instead.
    """
    key = _find(keys, key_id)
    if key.retire is not None:
        return tuple(keys)
    if key.successor is not None:
        raise KeyTimingError(f"{_describe(key)} is being rolled; the rollover retires it")
    peers = [k for k in keys if k.role is key.role and _is_current(k) and k.key_id != key_id]
    if not peers:
        raise KeyTimingError(
            f"{_describe(key)} is the only {key.role.name} in service; start a rollover instead"
        )
    return _replace(keys, dataclasses.replace(key, retire=now))


def mark_ds_seen(keys: Sequence[KeyTiming], key_id: str, now: int) -> tuple[KeyTiming, ...]:
    """Record that every parent nameserver serves the DS of ``key_id`` (or the operator
    says so, with ``ds-check = manual``)."""
    key = _find(keys, key_id)
    if not key.role.is_sep:
        raise KeyTimingError(f"{_describe(key)} is a ZSK; the parent holds DS only for KSK/CSK")
    if key.ds_seen is not None:
        return tuple(keys)
    return _replace(keys, dataclasses.replace(key, ds_seen=now))


def mark_ds_gone(keys: Sequence[KeyTiming], key_id: str, now: int) -> tuple[KeyTiming, ...]:
    """Record that no parent nameserver serves the DS of ``key_id`` any more."""
    key = _find(keys, key_id)
    if not key.role.is_sep:
        raise KeyTimingError(f"{_describe(key)} is a ZSK; the parent holds DS only for KSK/CSK")
    if key.ds_gone is not None:
        return tuple(keys)
    return _replace(keys, dataclasses.replace(key, ds_gone=now))


def observe_parent_ds(
    keys: Sequence[KeyTiming], present: Collection[str], now: int
) -> tuple[KeyTiming, ...]:
    """Record a DS check of the parent: ``present`` holds the ids of the keys whose DS
    every parent nameserver serves (the caller matches DS digests to DNSKEYs).

    Marks submitted keys found as seen and withdrawn keys not found as gone.
    """
    out = tuple(keys)
    for key in keys:
        if not key.role.is_sep:
            continue
        if key.key_id in present and key.ds_seen is None and key.ds_withdrawn is None:
            out = mark_ds_seen(out, key.key_id, now)
        elif key.key_id not in present and key.ds_withdrawn is not None and key.ds_gone is None:
            out = mark_ds_gone(out, key.key_id, now)
    return out


# --- forecasting ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ForecastStep:
    """One step of a :class:`Forecast`.

    ``kind`` is the planner's action, or a DS change at the parent: ``DsExpect.PRESENT``
    for the DS of ``key_id`` appearing, ``DsExpect.ABSENT`` for it leaving.  Those are not
    planned but awaited (ds-check); a forecast assumes each happens the moment it is
    awaited (``assumed``).  A GENERATE step names the key the forecast made up for it.
    """

    at: int
    kind: ActionKind | DsExpect
    key_id: str
    role: Role
    algorithm: int
    reason: str = ""

    @property
    def assumed(self) -> bool:
        """True for a DS change at the parent (awaited, assumed at once)."""
        return isinstance(self.kind, DsExpect)


@dataclass(frozen=True)
class Forecast:
    """What :func:`forecast` found: the steps from ``start`` to ``until``.

    ``now_keys`` are the keys once the steps due at ``start`` are applied and before any
    parent change is assumed (the zone as maintenance leaves it now); ``keys`` are the
    keys after the last step.  ``new_keys`` holds the ids the forecast gave the keys it
    generated (they have key tag 0).  ``next_event`` is the first step after ``until``
    (None: nothing more is scheduled, every rollover has ended).
    """

    start: int
    until: int
    steps: tuple[ForecastStep, ...]
    now_keys: tuple[KeyTiming, ...]
    keys: tuple[KeyTiming, ...]
    new_keys: frozenset[str]
    next_event: int | None


_MAX_FORECAST_STEPS = 1000  # a bound on one forecast; a year of 90-day ZSKs is about 30


def forecast(
    keys: Sequence[KeyTiming], policy: Policy, start: int, max_ttl: int, until: int
) -> Forecast:
    """The planner run forward from ``start`` to ``until``: every step with its date.

    Pure, like :func:`plan`: each due step is applied as :func:`advance` does, and every
    DS change the plan awaits at the parent (``ds_watch``) is assumed observed the
    moment it is awaited, so dates that follow one are the earliest possible; a real
    parent moves them later by however long it takes.
    """
    made: list[str] = []
    taken = {k.key_id for k in keys}

    def generate(action: Action) -> tuple[str, int]:
        n = len(made) + 1
        key_id = f"new {action.role.name} {n}"
        while key_id in taken:
            n += 1
            key_id = f"new {action.role.name} {n}"
        taken.add(key_id)
        made.append(key_id)
        return key_id, 0

    steps: list[ForecastStep] = []
    current = tuple(keys)
    now_keys: tuple[KeyTiming, ...] | None = None
    t = start
    while True:
        for _ in range(64):  # each round records at least one DS change; a bound guards bugs
            first_new = len(made)
            current, applied, result = advance(current, policy, t, max_ttl, generate)
            new_ids = iter(made[first_new:])
            for action in applied:
                key_id = next(new_ids) if action.needs_key_generation else action.key_id
                assert key_id is not None
                steps.append(
                    ForecastStep(
                        t, action.kind, key_id, action.role, action.algorithm, action.reason
                    )
                )
            if now_keys is None:
                now_keys = current
            if not result.ds_watch:
                break
            by_id = _index(current)
            for w in result.ds_watch:
                steps.append(ForecastStep(t, w.expect, w.key_id, by_id[w.key_id].role, w.algorithm))
            present = {w.key_id for w in result.ds_watch if w.expect is DsExpect.PRESENT}
            current = observe_parent_ds(current, present, t)
        else:  # pragma: no cover - observe_parent_ds always settles what ds_watch awaits
            raise KeyTimingError("the forecast did not settle; this is a bug in signer.timing")
        nxt = result.next_event
        if nxt is None or nxt > until or len(steps) > _MAX_FORECAST_STEPS:
            break
        t = nxt
    assert now_keys is not None
    return Forecast(start, until, tuple(steps), now_keys, current, frozenset(made), nxt)


class DsAdvice(enum.Enum):
    """What to do with a SEP key's DS at the parent now (see :func:`parent_ds`)."""

    PUBLISH = "publish"  # safe at the parent now: it must be there (or go there)
    COMING = "coming"  # not safe yet: resolvers could lack its DNSKEY or signatures
    REMOVE = "remove"  # withdrawn: it must leave the parent


@dataclass(frozen=True)
class ParentDs:
    """One SEP key's DS as the plan wants it at the parent at a forecast's start.

    PUBLISH: ``since`` when it was (or is now) asked for, ``until`` when the plan
    withdraws it (None: not within the forecast).  COMING: ``since`` the first moment it
    is safe (None: not within the forecast); ``earliest`` when that moment follows a
    parent change the forecast assumed, so it may come later.  REMOVE: ``since`` when it
    was withdrawn.
    """

    key: KeyTiming
    advice: DsAdvice
    since: int | None
    until: int | None = None
    earliest: bool = False


def parent_ds(fc: Forecast) -> tuple[ParentDs, ...]:
    """The DS records the plan wants at the parent at ``fc.start``, from the planner.

    A DS is safe exactly while the plan has asked for it (SUBMIT_DS, done or due now)
    and not withdrawn it: SUBMIT_DS waits until every DNSKEY of the key's algorithm and
    the zone's signatures with it are in every cache (RFC 7583 §3.3.1 IpubC; RFC 6781
    §4.1.4: for a new algorithm the zone is fully signed with it and the DNSKEY RRset has
    propagated first).  Keys the forecast generated have no DS yet and are left out.
    """
    submit: dict[str, tuple[int, bool]] = {}  # key id -> (when, after an assumed change)
    withdraw: dict[str, int] = {}
    assumed = False
    for step in fc.steps:
        if step.kind is ActionKind.SUBMIT_DS:
            submit.setdefault(step.key_id, (step.at, assumed))
        elif step.kind is ActionKind.WITHDRAW_DS:
            withdraw.setdefault(step.key_id, step.at)
        assumed = assumed or step.assumed
    out = []
    for key in fc.now_keys:
        if not key.role.is_sep or key.key_id in fc.new_keys:
            continue
        state = _ds_state(key, fc.start)
        if state in (DsState.SUBMITTED, DsState.SEEN):
            out.append(ParentDs(key, DsAdvice.PUBLISH, key.ds_submitted, withdraw.get(key.key_id)))
        elif state is DsState.WITHDRAWN and _had_ds(key):
            out.append(ParentDs(key, DsAdvice.REMOVE, key.ds_withdrawn))
        elif state is DsState.NONE and _is_current(key):
            since, earliest = submit.get(key.key_id, (None, False))
            until = withdraw.get(key.key_id)
            out.append(ParentDs(key, DsAdvice.COMING, since, until, earliest=earliest))
    return tuple(out)
