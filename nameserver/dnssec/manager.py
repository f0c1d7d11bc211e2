"""A zone's DNSSEC life: the signer records every change and every maintenance run needs,
tied into the change transaction.

:class:`DnssecManager` is the :class:`nameserver.edit.editor.ChangeSigner` the editor calls
inside each change transaction, and the one object callers hold. It signs with the zone's
policy (:mod:`nameserver.dnssec.policy`), its keys' timings
(:mod:`nameserver.dnssec.timings`) and key pairs (:mod:`nameserver.dnssec.keygen`,
private halves in the key directory); key events (generate, publish, activate, DS submit,
retire, remove) are planned by :mod:`signer.timing` and applied by :meth:`maintain`,
which commits the new key states and the re-signed zone in one changeset.
:meth:`DnssecManager.check_parent_ds` (:mod:`nameserver.dnssec.parentds`) asks the
parent's nameservers for the zone's DS (``ds-check = auto``) and records what every one
of them serves; :meth:`DnssecManager.generate_key` makes a zone's first keys ahead of
`zone sign`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import dns.name
import dns.resolver
from dns.rdtypes.ANY.RRSIG import RRSIG

from nameserver.dnssec.dscheck import DEFAULT_TIMEOUT, ParentServer
from nameserver.dnssec.keygen import KeyPairs
from nameserver.dnssec.parentds import ParentDs, ParentDsReport
from nameserver.dnssec.policy import DEFAULT_POLICY, ZonePolicies, ZonePolicy, usable
from nameserver.dnssec.signing import (
    KeySet,
    SigningParams,
    every_name,
    reconcile,
    seconds_left,
    touched_names,
)
from nameserver.dnssec.timings import KeyTimings, changed_rows, timing_of
from nameserver.edit.editor import Author, SignerDelta, ZoneEditor
from nameserver.errors import DnssecError
from nameserver.progress import Progress
from nameserver.store.keys import StoredKey, ZoneDnssec
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions, current_snapshot
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import AnyRecord, WireRecord
from nameserver.zone.serial import Clock
from nameserver.zone.snapshot import ZoneSnapshot, is_sig_key
from signer.keys import KeyPair
from signer.nsec3 import Nsec3Params
from signer.policy import Denial, Policy, PolicySource
from signer.timing import Action, Forecast, KeyTiming, Plan, Role, advance, zone_keys

__all__ = [
    "DnssecManager",
    "MaintenanceResult",
    "ManagerFactory",
]


@dataclasses.dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance run did, and when the zone needs the next one."""

    serial: int | None  # the new serial, None when nothing was due
    actions: tuple[Action, ...]
    plan: Plan
    next_due: int | None
    policy: ZonePolicy  # what it signed with


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What one signing pass signs with, given rather than read from the store in the
    middle of it: the zone's DNSSEC setting, its key states, each key's file in the key
    directory (by key id) and the key rows to commit with the signatures."""

    state: ZoneDnssec | None
    keys: tuple[KeyTiming, ...]
    files: Mapping[str, str]
    rows: Sequence[StoredKey] = ()


class _Resign:
    """The editor's :class:`nameserver.edit.editor.ChangeSigner` for one maintenance or
    `zone sign` pass: it signs with the pass's :class:`_Inputs`, not the stored ones."""

    def __init__(self, manager: DnssecManager, inputs: _Inputs) -> None:
        self.manager = manager
        self.inputs = inputs

    def signs(self, origin: dns.name.Name) -> bool:
        return self.inputs.state is not None and self.inputs.state.signed

    def delta(
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[AnyRecord], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        delta = self.manager._sign_delta(old, new, changed, full, self.inputs)
        return delta, self.inputs.rows


class DnssecManager:
    """Signs the zones of one store; the editor calls :meth:`signs` and :meth:`delta`.

    ``policies``, ``sources``: see :class:`nameserver.dnssec.policy.ZonePolicies`. The
    policy, key timing, key pair and parent-DS methods below are those of its parts
    (``zone_policies``, ``key_timings``, ``key_pairs``, ``parent_ds``), kept here so
    callers hold one object.
    """

    def __init__(
        self,
        store: Store,
        key_dir: Path,
        policies: Mapping[str, Policy] | None = None,
        clock: Clock = time.time,
        workers: int = 1,
        versions: ZoneVersions | None = None,
        sources: Mapping[str, PolicySource] | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.key_dir = key_dir
        self.clock = clock
        self.workers = workers
        self.versions = versions  # warm snapshots for a long-lived manager (``serve``)
        self.progress = progress  # told how far each signing pass is (a CLI's display)
        self.zone_policies = ZonePolicies(store, policies, sources, versions)
        self.policies = self.zone_policies.policies  # the same dict: changes show in both
        self.sources = self.zone_policies.sources
        # The parts read the time through the manager: a caller may swap ``clock``.
        self.key_timings = KeyTimings(store, self.zone_policies, self._now, versions)
        self.key_pairs = KeyPairs(store, key_dir, self.zone_policies, self.key_timings, self._now)
        self.parent_ds = ParentDs(store, self.zone_policies, self.key_timings, self._now)
        # Told how long each signing step took (origin, seconds) and of every changeset
        # this manager's editors commit: the server's metrics; None for a one-shot command.
        self.on_signed: Callable[[dns.name.Name, float], None] | None = None
        self.on_commit: Callable[[Changeset], None] | None = None

    def _now(self) -> float:
        return self.clock()

    # -- the editor's interface ---------------------------------------------------------

    def signs(self, origin: dns.name.Name) -> bool:
        """True when ``origin`` is signed."""
        state = self.store.dnssec(origin)
        return state is not None and state.signed

    def delta(
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[AnyRecord], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        """The signer records for a change (``full``: every name, for maintenance), with
        the zone's DNSSEC setting and keys as stored."""
        origin = new.origin_name
        state = self.store.dnssec(origin)
        stored = self.store.keys(origin)
        keys = tuple(timing_of(k) for k in stored)
        files = {k.id: k.file for k in stored}
        delta = self._sign_delta(old, new, changed, full, _Inputs(state, keys, files))
        return delta, ()

    def _sign_delta(
        self,
        old: ZoneSnapshot,
        new: ZoneSnapshot,
        changed: Sequence[AnyRecord],
        full: bool,
        inputs: _Inputs,
    ) -> SignerDelta:
        """The signer records ``new`` needs, signed with the setting and key states of
        ``inputs`` (which may not be stored yet: they are committed with the records)."""
        origin = new.origin_name
        state = inputs.state
        fitted = self.zone_policies.fitted
        policy = usable(fitted(origin, state, new))
        if policy.rrsig_refresh > fitted(origin, state, old).policy.rrsig_refresh:
            # The change raised what signatures must cover (SOA EXPIRE, a TTL): every
            # name is looked at, and the signatures now too close to expiry are re-made
            # in this same changeset, before a secondary serves the new EXPIRE.
            full = True
        if not inputs.keys:
            raise DnssecError(
                f"zone {origin} is signed but has no keys; run `zonefan zone sign {origin}`"
            )
        params = self._params(policy, inputs.keys, inputs.files, int(self.clock()))
        nsec3 = params.nsec3 is not None
        names = every_name(new) if full else touched_names(old, new, changed, nsec3)
        started = time.perf_counter()
        delta = reconcile(new, old, names, params, full=full)
        if self.on_signed is not None:
            self.on_signed(origin, time.perf_counter() - started)
        return delta

    def _params(
        self, policy: Policy, keys: Sequence[KeyTiming], files: Mapping[str, str], now: int
    ) -> SigningParams:
        wanted = zone_keys(keys, now, policy)
        by_id = {k.key_id: k for k in keys}
        pair = self.key_pairs.loader(by_id, files)
        key_set = KeySet(
            tuple(pair(i) for i in wanted.dnskey),
            tuple(pair(i) for i in wanted.dnskey_signers),
            tuple(pair(i) for i in wanted.data_signers),
            tuple(pair(i) for i in wanted.cds) if policy.cds_cdnskey else (),
            wanted.cds_delete,
        )
        nsec3 = None
        if policy.denial is Denial.NSEC3:
            salt = bytes.fromhex(policy.nsec3_salt)
            nsec3 = Nsec3Params(policy.nsec3_iterations, salt, policy.nsec3_opt_out)
        return SigningParams(
            key_set,
            now,
            validity=policy.rrsig_validity,
            refresh=policy.rrsig_refresh,
            jitter=policy.rrsig_jitter,
            inception_offset=policy.inception_offset,
            dnskey_ttl=policy.dnskey_ttl,
            nsec3=nsec3,
            workers=self.workers,
            progress=self.progress,
        )

    # -- signing and maintenance ------------------------------------------------------------

    def editor(self) -> ZoneEditor:
        """An editor of this store that signs through this manager."""
        return ZoneEditor(
            self.store, self.clock, signer=self, versions=self.versions, on_commit=self.on_commit
        )

    def enable(
        self,
        origin: dns.name.Name,
        author: Author,
        policy_name: str | None = None,
        denial: Denial | None = None,
    ) -> MaintenanceResult:
        """Sign ``origin`` (keys from its policy when it has none) or re-sign it fully,
        switching its denial method when ``denial`` is given. One changeset: the zone's
        DNSSEC setting is committed in the transaction that commits its signatures, so
        a failure or a crash leaves it as it was, unsigned and unmarked or signed."""
        state = self.store.dnssec(origin)
        new_state = ZoneDnssec(
            policy_name or (state.policy if state else DEFAULT_POLICY),
            denial.value if denial is not None else (state.denial if state else None),
            True,
        )
        if state is None or not state.signed:
            self.key_pairs.check_pregenerated(origin, new_state)
        return self._resign(origin, author, new_state, force=True, commit_state=True)

    def maintain(
        self, origin: dns.name.Name, author: Author, force: bool = False
    ) -> MaintenanceResult:
        """Apply the key events due now and refresh expiring signatures, in one changeset
        (none when nothing is due and ``force`` is off)."""
        state = self.store.dnssec(origin)
        return self._resign(origin, author, state, force=force, commit_state=False)

    def _resign(
        self,
        origin: dns.name.Name,
        author: Author,
        state: ZoneDnssec | None,
        *,
        force: bool,
        commit_state: bool,
    ) -> MaintenanceResult:
        """One full pass with ``state``: the key events due now (new keys generated and
        saved, their rows and the advanced key states committed with the signatures),
        and ``state`` itself in that same commit when ``commit_state``."""
        now = int(self.clock())
        snapshot = current_snapshot(self.store, origin, self.versions)
        chosen = self.zone_policies.fitted(origin, state, snapshot)
        policy = usable(chosen)
        stored = self.store.keys(origin)
        generated: dict[str, tuple[str, KeyPair]] = {}
        keys, actions, plan = advance(
            tuple(timing_of(k) for k in stored),
            policy,
            now,
            snapshot.max_ttl(),
            lambda action: self.key_pairs.generate(origin, action, generated),
        )
        files = {k.id: k.file for k in stored}
        files.update((key_id, name) for key_id, (name, _) in generated.items())
        inputs = _Inputs(state, keys, files, changed_rows(stored, keys, generated))
        signer = _Resign(self, inputs)
        editor = ZoneEditor(
            self.store, self.clock, signer=signer, versions=self.versions, on_commit=self.on_commit
        )
        due = force or bool(actions)
        cs = editor.resign(
            origin,
            author,
            force=due,
            before=snapshot,
            dnssec=state if commit_state else None,
        )
        return MaintenanceResult(
            cs.serial_after if cs else None,
            actions,
            plan,
            _earliest(plan.next_event, _next_refresh(snapshot, cs, policy, now)),
            chosen,
        )

    # -- the parts, for callers that hold the manager -----------------------------------------

    def policy(self, origin: dns.name.Name) -> Policy:
        """See :meth:`nameserver.dnssec.policy.ZonePolicies.policy`."""
        return self.zone_policies.policy(origin)

    def zone_policy(self, origin: dns.name.Name) -> ZonePolicy:
        """See :meth:`nameserver.dnssec.policy.ZonePolicies.zone_policy`."""
        return self.zone_policies.zone_policy(origin)

    def lifetimes(self, origin: dns.name.Name) -> tuple[int, int] | None:
        """See :meth:`nameserver.dnssec.policy.ZonePolicies.lifetimes`."""
        return self.zone_policies.lifetimes(origin)

    def timings(self, origin: dns.name.Name) -> tuple[KeyTiming, ...]:
        """See :meth:`nameserver.dnssec.timings.KeyTimings.timings`."""
        return self.key_timings.timings(origin)

    def save_timings(self, origin: dns.name.Name, keys: Sequence[KeyTiming]) -> None:
        """See :meth:`nameserver.dnssec.timings.KeyTimings.save_timings`."""
        self.key_timings.save_timings(origin, keys)

    def max_ttl(self, origin: dns.name.Name) -> int:
        """See :meth:`nameserver.dnssec.timings.KeyTimings.max_ttl`."""
        return self.key_timings.max_ttl(origin)

    def key_plan(self, origin: dns.name.Name, now: int | None = None) -> Plan:
        """See :meth:`nameserver.dnssec.timings.KeyTimings.key_plan`."""
        return self.key_timings.key_plan(origin, now)

    def key_forecast(
        self, origin: dns.name.Name, horizon: int, keys: Sequence[KeyTiming] | None = None
    ) -> Forecast:
        """See :meth:`nameserver.dnssec.timings.KeyTimings.key_forecast`."""
        return self.key_timings.key_forecast(origin, horizon, keys)

    def check_parent_ds(
        self,
        origin: dns.name.Name,
        servers: Sequence[ParentServer] | None = None,
        resolver: dns.resolver.Resolver | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ParentDsReport:
        """See :meth:`nameserver.dnssec.parentds.ParentDs.check`."""
        return self.parent_ds.check(origin, servers, resolver, timeout)

    def generate_key(
        self, origin: dns.name.Name, role: Role, algorithm: int | None = None
    ) -> tuple[KeyTiming, tuple[str, ...]]:
        """See :meth:`nameserver.dnssec.keygen.KeyPairs.generate_key`."""
        return self.key_pairs.generate_key(origin, role, algorithm)


# -- helpers ----------------------------------------------------------------------------


def _next_refresh(
    zone: ZoneSnapshot, change: Changeset | None, policy: Policy, now: int
) -> int | None:
    """When the first signature of ``zone`` with ``change`` applied comes up for refresh.

    Worked out from the zone before the change and the change, without patching one
    into the other: a full pass adds a signature to every RRset, and a patched copy of
    the whole zone costs more time and memory than signing it. The signatures the change
    removes are taken out by their expiration times (a multiset: only the earliest of
    what is left matters)."""
    removed = Counter(_expirations(change.removed if change else ()))
    expirations: set[int] = set()
    for node in zone.nodes.values():
        for key, rs in node.rrsets.items():
            if not is_sig_key(key):
                continue
            for wire in rs.rdatas:
                expiration = int.from_bytes(wire[8:12], "big")
                if removed[expiration] > 0:
                    removed[expiration] -= 1
                else:
                    expirations.add(expiration)
    expirations.update(_expirations(change.added if change else ()))
    if not expirations:
        return None
    # RFC 4034 §3.1.5: serial arithmetic, so the earliest is the one with fewest seconds left.
    return now + min(_seconds_to(e, now) for e in expirations) - policy.rrsig_refresh


def _expirations(records: Iterable[AnyRecord]) -> Iterator[int]:
    """The expiration times of the RRSIGs among ``records``."""
    for r in records:
        if isinstance(r, WireRecord):
            if r.rdtype == dns.rdatatype.RRSIG:
                yield int.from_bytes(r.wire[8:12], "big")
        elif isinstance(r.rdata, RRSIG):
            yield int(r.rdata.expiration)


def _seconds_to(expiration: int, now: int) -> int:
    """Seconds from ``now`` to an RRSIG expiration (negative once past), as
    :func:`nameserver.dnssec.signing.seconds_left` reads it from an RRSIG's wire form."""
    return seconds_left(bytes(8) + expiration.to_bytes(4, "big"), now)


def _earliest(*times: int | None) -> int | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


# How the server's workers get a manager of their own store connection and zone versions.
ManagerFactory = Callable[[Store, ZoneVersions], DnssecManager]
