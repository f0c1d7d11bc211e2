"""A zone's DNSSEC life: its policy, its keys (metadata in the store, private halves in the
key directory), and the signer records every change and every maintenance run needs.

:class:`DnssecManager` is the :class:`nameserver.edit.editor.ChangeSigner` the editor calls
inside each change transaction. Key events (generate, publish, activate, DS submit,
retire, remove) are planned by :mod:`signer.timing` and applied by :meth:`maintain`,
which commits the new key states and the re-signed zone in one changeset.
:meth:`DnssecManager.check_parent_ds` asks the parent's nameservers for the zone's DS
(``ds-check = auto``) and records what every one of them serves;
:meth:`DnssecManager.generate_key` makes a zone's first keys ahead of `zone sign`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.RRSIG import RRSIG

from nameserver.dnssec.dscheck import (
    DEFAULT_TIMEOUT,
    DsCheckResult,
    ParentKey,
    ParentServer,
    Presence,
    check_parent_ds,
)
from nameserver.dnssec.signing import (
    KeySet,
    SigningParams,
    every_name,
    reconcile,
    seconds_left,
    touched_names,
)
from nameserver.edit.editor import Author, SignerDelta, ZoneEditor
from nameserver.errors import NameserverError
from nameserver.progress import Progress
from nameserver.store.keys import StoredKey, ZoneDnssec
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record
from nameserver.zone.serial import Clock
from nameserver.zone.snapshot import ZoneSnapshot, is_sig_key
from signer.errors import SignerError
from signer.keys import KeyPair, check_algorithm, generate, key_file_name, load_keypair, save
from signer.nsec3 import Nsec3Params
from signer.policy import (
    Denial,
    DsCheck,
    Policy,
    PolicyError,
    PolicySource,
    ZoneFit,
    fit_to_zone,
    format_duration,
)
from signer.timing import (
    Action,
    ActionKind,
    DsExpect,
    DsWatch,
    Forecast,
    KeyTiming,
    Phase,
    Plan,
    Role,
    add_key,
    advance,
    forecast,
    initial_keys,
    key_state,
    observe_parent_ds,
    plan,
    zone_keys,
)

__all__ = [
    "DEFAULT_POLICY",
    "DnssecError",
    "DnssecManager",
    "MaintenanceResult",
    "ParentDsReport",
    "ZonePolicy",
]

DEFAULT_POLICY = "default"
_SOA = 6
_MAX_KEY_TRIES = 5


class DnssecError(NameserverError):
    """A DNSSEC operation that cannot be done as asked (the message says why)."""


@dataclasses.dataclass(frozen=True)
class ZonePolicy:
    """The policy a zone is signed with now: its name, the config file that defines it
    (``source``; "" when built in or given in code), and the policy with its signature
    lifetimes fitted to the zone's current SOA EXPIRE and TTLs (``fit``; None when the
    zone has no SOA).  ``problem`` says why the zone cannot be signed with it (``policy``
    is then the policy as configured); None when it can."""

    name: str
    source: str
    policy: Policy
    fit: ZoneFit | None
    problem: str | None = None

    def describe(self) -> str:
        """``policy default (built-in): rrsig-validity 24d, rrsig-refresh 16d, derived
        from SOA EXPIRE 14d + largest TTL 1d``."""
        origin = self.source or ("built-in" if self.name == DEFAULT_POLICY else "")
        text = f"policy {self.name}" + (f" ({origin})" if origin else "")
        if self.problem is not None:
            return f"{text}: does not fit the zone"
        if self.fit is None:
            p = self.policy
            return (
                f"{text}: rrsig-validity {format_duration(p.rrsig_validity)}, "
                f"rrsig-refresh {format_duration(p.rrsig_refresh)}"
            )
        return f"{text}: {self.fit.describe()}"

    def to_json(self) -> dict[str, object]:
        """JSON-ready: durations in seconds, ``text`` as :meth:`describe` says it."""
        fit = self.fit
        return {
            "name": self.name,
            "source": self.source or ("built-in" if self.name == DEFAULT_POLICY else None),
            "rrsig_validity": self.policy.rrsig_validity,
            "rrsig_refresh": self.policy.rrsig_refresh,
            "derived": fit.derived if fit is not None else False,
            "soa_expire": fit.soa_expire if fit is not None else None,
            "largest_ttl": fit.largest_ttl if fit is not None else None,
            "problem": self.problem,
            "text": self.describe(),
        }


@dataclasses.dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance run did, and when the zone needs the next one."""

    serial: int | None  # the new serial, None when nothing was due
    actions: tuple[Action, ...]
    plan: Plan
    next_due: int | None
    policy: ZonePolicy  # what it signed with


@dataclasses.dataclass(frozen=True)
class ParentDsReport:
    """What one :meth:`DnssecManager.check_parent_ds` saw and recorded.

    ``watch`` is what the key plan awaited at the parent; ``result`` what the parent's
    nameservers serve (None when nothing was asked, ``skipped`` says why);
    ``recorded`` the (key id, ``"seen"`` or ``"gone"``) observations stored.
    """

    origin: dns.name.Name
    mode: DsCheck
    watch: tuple[DsWatch, ...]
    result: DsCheckResult | None
    recorded: tuple[tuple[str, str], ...] = ()
    skipped: str = ""


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
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[Record], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        delta = self.manager._sign_delta(old, new, changed, full, self.inputs)
        return delta, self.inputs.rows


class DnssecManager:
    """Signs the zones of one store; the editor calls :meth:`signs` and :meth:`delta`.

    ``policies`` by name (``default`` is built in unless given); ``sources`` says, for
    those defined in a config file, which file and whether their table sets the
    signature lifetimes.  Lifetimes a policy's table does not set follow each zone
    (:func:`signer.policy.fit_to_zone`), recomputed from its contents at every change
    and maintenance run; lifetimes set there are checked and refused if they do not fit.
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
        self.policies = {DEFAULT_POLICY: Policy(), **(policies or {})}
        self.sources = dict(sources or {})
        self.clock = clock
        self.workers = workers
        self.versions = versions  # warm snapshots for a long-lived manager (``serve``)
        self.progress = progress  # told how far each signing pass is (a CLI's display)
        self._pairs: dict[str, KeyPair] = {}
        # (serial, SOA EXPIRE, largest data TTL) per zone, for policy() without a snapshot.
        self._zone_times: dict[dns.name.Name, tuple[int, tuple[int, int] | None]] = {}

    # -- the editor's interface ---------------------------------------------------------

    def signs(self, origin: dns.name.Name) -> bool:
        """True when ``origin`` is signed."""
        state = self.store.dnssec(origin)
        return state is not None and state.signed

    def delta(
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[Record], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        """The signer records for a change (``full``: every name, for maintenance), with
        the zone's DNSSEC setting and keys as stored."""
        origin = new.origin_name
        state = self.store.dnssec(origin)
        stored = self.store.keys(origin)
        keys = tuple(_timing(k) for k in stored)
        files = {k.id: k.file for k in stored}
        delta = self._sign_delta(old, new, changed, full, _Inputs(state, keys, files))
        return delta, ()

    def _sign_delta(
        self,
        old: ZoneSnapshot,
        new: ZoneSnapshot,
        changed: Sequence[Record],
        full: bool,
        inputs: _Inputs,
    ) -> SignerDelta:
        """The signer records ``new`` needs, signed with the setting and key states of
        ``inputs`` (which may not be stored yet: they are committed with the records)."""
        origin = new.origin_name
        state = inputs.state
        policy = _usable(self._zone_policy(origin, state, new))
        if policy.rrsig_refresh > self._zone_policy(origin, state, old).policy.rrsig_refresh:
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
        return reconcile(new, old, names, params, full=full)

    # -- operations ----------------------------------------------------------------------

    def policy(self, origin: dns.name.Name) -> Policy:
        """The zone's policy, with its denial override applied and its signature
        lifetimes fitted to the zone as it is now (see :meth:`zone_policy`)."""
        return self.zone_policy(origin).policy

    def zone_policy(self, origin: dns.name.Name) -> ZonePolicy:
        """The zone's policy, what it is fitted to and whether the zone fits it (a
        problem is reported, not raised: signing raises it)."""
        return self._zone_policy(origin, self.store.dnssec(origin), None)

    def lifetimes(self, origin: dns.name.Name) -> tuple[int, int] | None:
        """(rrsig-validity, rrsig-refresh) the zone is signed with now; None when its
        policy cannot be used. A change of the zone's EXPIRE or TTLs can move them."""
        try:
            chosen = self.zone_policy(origin)
        except DnssecError:
            return None
        if chosen.problem is not None:
            return None
        return chosen.policy.rrsig_validity, chosen.policy.rrsig_refresh

    def _zone_policy(
        self, origin: dns.name.Name, state: ZoneDnssec | None, zone: ZoneSnapshot | None
    ) -> ZonePolicy:
        name = state.policy if state else DEFAULT_POLICY
        base = self._policy_of(origin, state)
        source = self.sources.get(name)
        file = source.file if source is not None else ""
        times = _zone_times(zone) if zone is not None else self._stored_zone_times(origin)
        if times is None:
            return ZonePolicy(name, file, base, None)
        expire, max_ttl = times

        def long_ttls(limit: int) -> tuple[list[str], int]:
            return _long_ttls(zone if zone is not None else self._snapshot(origin), limit)

        try:
            fit = fit_to_zone(base, expire, max_ttl, f"zone {origin}", source, long_ttls)
        except PolicyError as e:
            return ZonePolicy(name, file, base, None, str(e))
        return ZonePolicy(name, file, fit.policy, fit)

    def _stored_zone_times(self, origin: dns.name.Name) -> tuple[int, int] | None:
        """SOA EXPIRE and largest data TTL of the zone in the store (None: no zone),
        remembered per serial: policy() is asked several times per command."""
        if not self.store.has_zone(origin):
            return None
        serial = self.store.serial(origin)
        known = self._zone_times.get(origin)
        if known is not None and known[0] == serial:
            return known[1]
        times = _zone_times(self._snapshot(origin))
        self._zone_times[origin] = (serial, times)
        return times

    def _policy_of(self, origin: dns.name.Name, state: ZoneDnssec | None) -> Policy:
        name = state.policy if state else DEFAULT_POLICY
        try:
            policy = self.policies[name]
        except KeyError:
            known = ", ".join(sorted(self.policies))
            raise DnssecError(
                f"zone {origin} uses DNSSEC policy {name!r}, which the config does not define "
                f"(known: {known}); add a [policy.{name}] table or pick another"
            ) from None
        if state is not None and state.denial is not None:
            policy = dataclasses.replace(policy, denial=Denial(state.denial))
        return policy

    def editor(self) -> ZoneEditor:
        """An editor of this store that signs through this manager."""
        return ZoneEditor(self.store, self.clock, signer=self, versions=self.versions)

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
            self._check_pregenerated(origin, new_state)
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
        snapshot = self._snapshot(origin)
        chosen = self._zone_policy(origin, state, snapshot)
        policy = _usable(chosen)
        stored = self.store.keys(origin)
        generated: dict[str, tuple[str, KeyPair]] = {}
        keys, actions, plan = advance(
            tuple(_timing(k) for k in stored),
            policy,
            now,
            _max_ttl(snapshot),
            lambda action: self._generate(origin, action, generated),
        )
        files = {k.id: k.file for k in stored}
        files.update((key_id, name) for key_id, (name, _) in generated.items())
        inputs = _Inputs(state, keys, files, _changed_rows(stored, keys, generated))
        signer = _Resign(self, inputs)
        editor = ZoneEditor(self.store, self.clock, signer=signer, versions=self.versions)
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

    def save_timings(self, origin: dns.name.Name, keys: Sequence[KeyTiming]) -> None:
        """Store operator-made key changes (a rollover asked, a DS seen) without signing;
        :meth:`maintain` acts on them."""
        stored = self.store.keys(origin)
        self.store.put_keys(origin, _changed_rows(stored, keys, {}))

    def timings(self, origin: dns.name.Name) -> tuple[KeyTiming, ...]:
        """The zone's keys as :mod:`signer.timing` sees them."""
        return tuple(_timing(k) for k in self.store.keys(origin))

    # -- the key plan, as maintenance sees it ----------------------------------------------

    def max_ttl(self, origin: dns.name.Name) -> int:
        """The zone's largest TTL (TTLsig in RFC 7583), which :meth:`maintain` plans with."""
        return _max_ttl(self._snapshot(origin))

    def key_plan(self, origin: dns.name.Name, now: int | None = None) -> Plan:
        """The key plan at ``now`` (default: the clock) from the inputs :meth:`maintain`
        uses (the zone's largest TTL included): the one way to get the next key event,
        the DS changes awaited and the planner's notes outside maintenance."""
        when = int(self.clock()) if now is None else now
        return plan(self.timings(origin), self.policy(origin), when, self.max_ttl(origin))

    def key_forecast(
        self, origin: dns.name.Name, horizon: int, keys: Sequence[KeyTiming] | None = None
    ) -> Forecast:
        """The planner run forward from now for ``horizon`` seconds with the inputs of
        :meth:`maintain` (:func:`signer.timing.forecast`: DS changes at the parent are
        assumed the moment they are awaited).  ``keys`` replaces the stored keys, e.g. to
        preview a rollover not asked for yet.  Changes nothing."""
        now = int(self.clock())
        chosen = self.timings(origin) if keys is None else tuple(keys)
        return forecast(chosen, self.policy(origin), now, self.max_ttl(origin), now + horizon)

    def _snapshot(self, origin: dns.name.Name) -> ZoneSnapshot:
        if self.versions is not None:
            return self.versions.current(origin)
        return ZoneSnapshot.from_rows(origin, self.store.rows(origin))

    # -- the parent's DS (ds-check = auto) ---------------------------------------------------

    def check_parent_ds(
        self,
        origin: dns.name.Name,
        servers: Sequence[ParentServer] | None = None,
        resolver: dns.resolver.Resolver | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> ParentDsReport:
        """Ask the parent's nameservers for the DS of ``origin``'s KSK/CSKs and record, for
        the keys the plan awaits (``ds_watch``), a DS seen at every server or gone from
        every server (:func:`signer.timing.observe_parent_ds`).  Nothing is recorded
        unless every server answered.  :meth:`maintain` then takes the next steps.

        ``servers`` default to the policy's ``parent-servers``, else the parent zone's NS
        set found with ``resolver`` (the system resolver by default).  With ``ds-check =
        manual`` nothing is asked.  Raises DsCheckError when no server can be found.
        """
        policy = self.policy(origin)
        now = int(self.clock())
        keys = self.timings(origin)
        watch = plan(keys, policy, now).ds_watch
        if policy.ds_check is DsCheck.MANUAL:
            why = (
                "ds-check is manual in this zone's policy: confirm the parent's DS with "
                f"`zonefan keys ds-seen {origin} KEY` (or `keys ds-gone`)"
            )
            return ParentDsReport(origin, policy.ds_check, watch, None, skipped=why)
        watched = {w.key_id for w in watch}
        # The keys awaited, and for the operator's view every SEP key in the zone.
        wanted = [
            k
            for k in keys
            if k.role.is_sep
            and (
                k.key_id in watched
                or key_state(k, now, policy).phase not in (Phase.GENERATED, Phase.REMOVED)
            )
        ]
        if not wanted:
            why = f"{origin} has no KSK or CSK in its zone, so the parent has no DS to hold"
            return ParentDsReport(origin, policy.ds_check, watch, None, skipped=why)
        stored = {k.id: k for k in self.store.keys(origin)}
        parent_keys = [
            ParentKey(k.key_id, k.key_tag, k.algorithm, _dnskey(stored[k.key_id].dnskey))
            for k in wanted
        ]
        if servers is None and policy.parent_servers:
            servers = [ParentServer(a, p) for a, p in policy.parent_server_addresses]
        result = check_parent_ds(origin, parent_keys, servers, resolver=resolver, timeout=timeout)
        recorded = self._record_parent_ds(origin, policy, result)
        return ParentDsReport(origin, policy.ds_check, watch, result, recorded)

    def _record_parent_ds(
        self, origin: dns.name.Name, policy: Policy, result: DsCheckResult
    ) -> tuple[tuple[str, str], ...]:
        if not result.complete:
            return ()  # a server that did not answer could hold anything
        now = int(self.clock())
        keys = self.timings(origin)  # again: maintenance may have moved on meanwhile
        expected = {w.key_id: w.expect for w in plan(keys, policy, now).ds_watch}
        # observe_parent_ds marks every withdrawn key missing from ``present`` gone, so
        # only keys proven absent at every server may be left out of it.
        present: set[str] = set()
        for key in keys:
            expect = expected.get(key.key_id)
            seen = result.presence(key.key_id)
            confirmed = expect is DsExpect.PRESENT and seen is Presence.PRESENT
            not_proven_gone = key.ds_withdrawn is not None and not (
                expect is DsExpect.ABSENT and seen is Presence.ABSENT
            )
            if confirmed or not_proven_gone:
                present.add(key.key_id)
        updated = observe_parent_ds(keys, present, now)
        recorded = tuple(
            (new.key_id, "seen" if new.ds_seen != old.ds_seen else "gone")
            for old, new in zip(keys, updated, strict=True)
            if old != new
        )
        if recorded:
            self.save_timings(origin, updated)
        return recorded

    # -- keys made ahead of signing -------------------------------------------------------------

    def generate_key(
        self, origin: dns.name.Name, role: Role, algorithm: int | None = None
    ) -> tuple[KeyTiming, tuple[str, ...]]:
        """Make a key for a zone that is not signed yet: stored with its created time,
        not published; `zone sign` (:meth:`enable`) then starts with it instead of
        generating its own.  ``algorithm`` defaults to the policy's.

        Returns the key and notes (e.g. the zone's policy would not adopt it as is).
        Refused for a signed zone: the planner publishes and activates every key it
        finds that is not replacing another, so a "standby" key would start signing at
        once; `zonefan keys rollover` makes successors when RFC 7583 says.
        """
        policy = self.policy(origin)
        chosen = policy.algorithm if algorithm is None else algorithm
        try:
            check_algorithm(chosen)
        except SignerError as e:
            raise DnssecError(f"no key generated for {origin}: {e}") from e
        now = int(self.clock())
        keys = self.timings(origin)
        if self.signs(origin) or any(_in_zone(k, now, policy) for k in keys):
            raise DnssecError(
                f"{origin} is signed: zonefan keeps no standby keys (a key added now would "
                "be published and start signing at once). To replace its "
                f"{role.name}, run `zonefan keys rollover {origin} --{role.value}`: it "
                "generates the successor and publishes it, switches the signatures and "
                "the DS when RFC 7583 says"
            )
        pending = _pregenerated(keys, now, policy)
        for key in pending:
            if key.role is role or Role.CSK in (key.role, role):
                raise DnssecError(
                    f"{origin} already has a pre-generated {_key_text(key)}; a zone starts "
                    "with one CSK, or one KSK and one ZSK. Discard it with `zonefan keys "
                    f"retire {origin} {key.key_tag}` first to generate another"
                )
            if key.algorithm != chosen:
                raise DnssecError(
                    f"{origin} already has a pre-generated {_key_text(key)}; a zone starts "
                    f"with one algorithm: add --algorithm {key.algorithm}, or discard it "
                    f"with `zonefan keys retire {origin} {key.key_tag}`"
                )
        action = Action(ActionKind.GENERATE, None, role, chosen, None, "operator request")
        generated: dict[str, tuple[str, KeyPair]] = {}
        key_id, key_tag = self._generate(origin, action, generated)
        new_keys = add_key(keys, action, key_id, key_tag, now)
        self.store.put_keys(origin, _changed_rows(self.store.keys(origin), new_keys, generated))
        state = self.store.dnssec(origin)
        name = state.policy if state else DEFAULT_POLICY
        misfit = _pregenerated_misfit(origin, [*pending, new_keys[-1]], policy, name)
        new = next(k for k in new_keys if k.key_id == key_id)
        return new, (misfit,) if misfit else ()

    def _check_pregenerated(self, origin: dns.name.Name, state: ZoneDnssec) -> None:
        """Before a zone's first signing: its pre-generated keys must be exactly the keys
        its policy starts with, or `zone sign` refuses (and changes nothing)."""
        policy = self._policy_of(origin, state)
        now = int(self.clock())
        keys = self.timings(origin)
        if any(_in_zone(k, now, policy) for k in keys):
            return  # keys already in the zone: a re-sign, not a first signing
        misfit = _pregenerated_misfit(
            origin, _pregenerated(keys, now, policy), policy, state.policy
        )
        if misfit:
            raise DnssecError(
                f"cannot sign {origin}: {misfit}; or discard the pre-generated keys with "
                f"`zonefan keys retire {origin} TAG` and sign again to get keys from the policy"
            )

    # -- keys ----------------------------------------------------------------------------

    def _params(
        self, policy: Policy, keys: Sequence[KeyTiming], files: Mapping[str, str], now: int
    ) -> SigningParams:
        wanted = zone_keys(keys, now, policy)
        by_id = {k.key_id: k for k in keys}
        pair = self._pair_loader(by_id, files)
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

    def _pair_loader(
        self, by_id: Mapping[str, KeyTiming], files: Mapping[str, str]
    ) -> Callable[[str], KeyPair]:
        def pair(key_id: str) -> KeyPair:
            cached = self._pairs.get(key_id)
            if cached is None:
                timing = by_id[key_id]
                path = self.key_dir / files.get(key_id, f"{key_id}.pem")
                try:
                    cached = load_keypair(path, timing.algorithm, timing.role.flags)
                except SignerError as e:
                    raise DnssecError(f"key {key_id}: {e}") from e
                self._pairs[key_id] = cached
            return cached

        return pair

    def _generate(
        self,
        origin: dns.name.Name,
        action: Action,
        generated: dict[str, tuple[str, KeyPair]],
    ) -> tuple[str, int]:
        """Make and save a key for a GENERATE action and note it in ``generated`` (key id
        -> file name and key pair, until its row is stored); returns (key id, key tag)."""
        for _ in range(_MAX_KEY_TRIES):
            pair = generate(action.algorithm, action.role.flags)
            name = key_file_name(pair, origin)
            if (self.key_dir / name).exists():
                continue  # a key tag already used for this zone: draw another key
            try:
                save(pair, self.key_dir, origin)
            except SignerError as e:
                raise DnssecError(f"cannot store a new key for {origin}: {e}") from e
            key_id = name.removesuffix(".pem")
            self._pairs[key_id] = pair
            generated[key_id] = (name, pair)
            return key_id, pair.key_tag()
        raise DnssecError(f"could not draw a key with an unused key tag for {origin}")


# -- helpers ----------------------------------------------------------------------------


def _dnskey(wire: bytes) -> dns.rdata.Rdata:
    return dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))


def _key_text(key: KeyTiming) -> str:
    return f"{key.role.name} (tag {key.key_tag}, algorithm {key.algorithm})"


def _in_zone(key: KeyTiming, now: int, policy: Policy) -> bool:
    """The key is, or was until it left, part of the signed zone."""
    phase = key_state(key, now, policy).phase
    return phase is not Phase.REMOVED and (key.publish is not None or key.active is not None)


def _pregenerated(keys: Sequence[KeyTiming], now: int, policy: Policy) -> list[KeyTiming]:
    """Keys made by `keys generate` and not used yet (a discarded one is removed)."""
    return [k for k in keys if key_state(k, now, policy).phase is Phase.GENERATED]


def _pregenerated_misfit(
    origin: dns.name.Name, keys: Sequence[KeyTiming], policy: Policy, name: str
) -> str:
    """Why the policy named ``name`` would not start the zone with ``keys`` ("" if it
    would, or when there are none and the policy makes its own)."""
    if not keys:
        return ""
    needed = initial_keys(policy, 0)
    wants = (
        f"policy {name!r} starts a zone with "
        + (" and ".join(f"a {r.role.name}" for r in needed) or "no keys (insecure)")
        + f" of algorithm {policy.algorithm}"
    )
    roles = {r.role for r in needed}
    for key in keys:
        if key.role not in roles or key.algorithm != policy.algorithm:
            return (
                f"the pre-generated {_key_text(key)} does not fit: {wants}; sign with a "
                "policy that matches (`zonefan zone sign --policy NAME`)"
            )
    missing = [r.role for r in needed if r.role not in {k.role for k in keys}]
    if missing:
        return (
            f"{wants}, but only "
            + " and ".join(_key_text(k) for k in keys)
            + " was generated; generate the rest with "
            + " and ".join(f"`zonefan keys generate {origin} --{r.value}`" for r in missing)
        )
    return ""


def _timing(key: StoredKey) -> KeyTiming:
    fields = {name: value for name, value in key.times.items() if value is not None}
    return KeyTiming(key.id, Role[key.role], key.algorithm, key.key_tag, **fields)  # type: ignore[arg-type]


def _changed_rows(
    stored: Sequence[StoredKey],
    keys: Sequence[KeyTiming],
    generated: Mapping[str, tuple[str, KeyPair]],
) -> list[StoredKey]:
    """Store rows for the keys that are new or whose metadata changed."""
    before = {k.id: k for k in stored}
    rows = []
    for timing in keys:
        old = before.get(timing.key_id)
        times = {
            f.name: getattr(timing, f.name)
            for f in dataclasses.fields(KeyTiming)
            if f.name not in ("key_id", "role", "algorithm", "key_tag")
        }
        if old is not None and dict(old.times) == times:
            continue
        if old is not None:
            rows.append(dataclasses.replace(old, times=times))
            continue
        if timing.key_id not in generated:
            raise DnssecError(f"key {timing.key_id} has no key file; generate it again")
        rows.append(_new_row(timing, times, *generated[timing.key_id]))
    return rows


def _new_row(
    timing: KeyTiming, times: dict[str, int | str | None], file_name: str, pair: KeyPair
) -> StoredKey:
    wire = pair.dnskey().to_wire()
    assert wire is not None
    return StoredKey(
        timing.key_id,
        timing.role.name,
        timing.algorithm,
        timing.key_tag,
        wire,
        file_name,
        times,
    )


def _usable(chosen: ZonePolicy) -> Policy:
    """The policy to sign with; DnssecError when the zone does not fit it."""
    if chosen.problem is not None:
        raise DnssecError(chosen.problem)
    return chosen.policy


def _zone_times(zone: ZoneSnapshot) -> tuple[int, int] | None:
    """(SOA EXPIRE, largest data TTL); None for a zone without SOA."""
    soa = zone.rrset(zone.origin, _SOA)
    if soa is None:
        return None
    return int.from_bytes(soa.rdatas[0][-8:-4], "big"), _max_ttl(zone)


_LONG_TTLS_SHOWN = 3


def _long_ttls(zone: ZoneSnapshot, limit: int) -> tuple[list[str], int]:
    """The RRsets with a TTL above ``limit``: the longest few described, and how many."""
    found = [
        (rs.ttl, node.owner, rs.rdtype)
        for node in zone.nodes.values()
        for key, rs in node.rrsets.items()
        if not is_sig_key(key) and rs.ttl > limit
    ]
    found.sort(key=lambda f: (-f[0], f[1].lower(), f[2]))
    shown = [
        f"{dns.name.from_wire(owner, 0)[0]} {dns.rdatatype.RdataType.to_text(rdtype)} has TTL "
        f"{format_duration(ttl)}"
        for ttl, owner, rdtype in found[:_LONG_TTLS_SHOWN]
    ]
    return shown, len(found)


def _max_ttl(zone: ZoneSnapshot) -> int:
    return zone.max_ttl()


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


def _expirations(records: Iterable[Record]) -> Iterator[int]:
    """The expiration times of the RRSIGs among ``records``."""
    for r in records:
        if isinstance(r.rdata, RRSIG):
            yield int(r.rdata.expiration)


def _seconds_to(expiration: int, now: int) -> int:
    """Seconds from ``now`` to an RRSIG expiration (negative once past), as
    :func:`nameserver.dnssec.signing.seconds_left` reads it from an RRSIG's wire form."""
    return seconds_left(bytes(8) + expiration.to_bytes(4, "big"), now)


def _earliest(*times: int | None) -> int | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None
