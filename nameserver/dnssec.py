"""A zone's DNSSEC life: its policy, its keys (metadata in the store, private halves in the
key directory), and the signer records every change and every maintenance run needs.

:class:`DnssecManager` is the :class:`nameserver.editor.ChangeSigner` the editor calls
inside each change transaction. Key events (generate, publish, activate, DS submit,
retire, remove) are planned by :mod:`signer.timing` and applied by :meth:`maintain`,
which commits the new key states and the re-signed zone in one changeset.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dns.name

from nameserver.editor import Author, ZoneEditor
from nameserver.errors import NameserverError
from nameserver.records import Record
from nameserver.serial import Clock
from nameserver.signing import (
    KeySet,
    SignerDelta,
    SigningParams,
    every_name,
    reconcile,
    seconds_left,
    touched_names,
)
from nameserver.snapshot import ZoneSnapshot, is_sig_key
from nameserver.store import Store, StoredKey, ZoneDnssec
from signer.errors import SignerError
from signer.keys import KeyPair, generate, key_file_name, load_keypair, save
from signer.nsec3 import Nsec3Params
from signer.policy import Denial, Policy, check_zone_fit
from signer.timing import Action, KeyTiming, Plan, Role, advance, zone_keys

__all__ = ["DEFAULT_POLICY", "DnssecError", "DnssecManager", "MaintenanceResult"]

DEFAULT_POLICY = "default"
_SOA = 6
_MAX_KEY_TRIES = 5


class DnssecError(NameserverError):
    """A DNSSEC operation that cannot be done as asked (the message says why)."""


@dataclasses.dataclass(frozen=True)
class MaintenanceResult:
    """What one maintenance run did, and when the zone needs the next one."""

    serial: int | None  # the new serial, None when nothing was due
    actions: tuple[Action, ...]
    plan: Plan
    next_due: int | None


class DnssecManager:
    """Signs the zones of one store; the editor calls :meth:`signs` and :meth:`delta`."""

    def __init__(
        self,
        store: Store,
        key_dir: Path,
        policies: Mapping[str, Policy] | None = None,
        clock: Clock = time.time,
        workers: int = 1,
    ) -> None:
        self.store = store
        self.key_dir = key_dir
        self.policies = {DEFAULT_POLICY: Policy(), **(policies or {})}
        self.clock = clock
        self.workers = workers
        self._pairs: dict[str, KeyPair] = {}
        # Keys made by maintain() and not stored yet: id -> (file name, key pair).
        self._generated: dict[str, tuple[str, KeyPair]] = {}
        # Key states advanced by maintain(), handed to delta() for the same commit.
        self._advanced: dict[dns.name.Name, tuple[KeyTiming, ...]] = {}

    # -- the editor's interface ---------------------------------------------------------

    def signs(self, origin: dns.name.Name) -> bool:
        """True when ``origin`` is signed."""
        state = self.store.dnssec(origin)
        return state is not None and state.signed

    def delta(
        self, old: ZoneSnapshot, new: ZoneSnapshot, changed: Sequence[Record], full: bool
    ) -> tuple[SignerDelta, Sequence[StoredKey]]:
        """The signer records for a change (``full``: every name, for maintenance)."""
        origin = new.origin_name
        policy = self.policy(origin)
        now = int(self.clock())
        timings = self._advanced.pop(origin, None)
        stored = self.store.keys(origin)
        keys = timings if timings is not None else tuple(_timing(k) for k in stored)
        if not keys:
            raise DnssecError(
                f"zone {origin} is signed but has no keys; run `zonefan zone sign {origin}`"
            )
        _check_fit(policy, new)
        files = {k.id: k.file for k in stored}
        files.update((i, name) for i, (name, _) in self._generated.items())
        params = self._params(policy, keys, files, now)
        nsec3 = params.nsec3 is not None
        names = every_name(new) if full else touched_names(old, new, changed, nsec3)
        delta = reconcile(new, old, names, params, full=full)
        changed_keys = [] if timings is None else _changed_rows(stored, timings, self._generated)
        return delta, changed_keys

    # -- operations ----------------------------------------------------------------------

    def policy(self, origin: dns.name.Name) -> Policy:
        """The zone's policy, with its denial override applied."""
        state = self.store.dnssec(origin)
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
        return ZoneEditor(self.store, self.clock, signer=self)

    def enable(
        self,
        origin: dns.name.Name,
        author: Author,
        policy_name: str | None = None,
        denial: Denial | None = None,
    ) -> MaintenanceResult:
        """Sign ``origin`` (keys from its policy when it has none) or re-sign it fully,
        switching its denial method when ``denial`` is given. One changeset."""
        state = self.store.dnssec(origin)
        new_state = ZoneDnssec(
            policy_name or (state.policy if state else DEFAULT_POLICY),
            denial.value if denial is not None else (state.denial if state else None),
            True,
        )
        before = state
        self.store.set_dnssec(origin, new_state)
        try:
            return self.maintain(origin, author, force=True)
        except BaseException:
            # Nothing was signed: put the zone's DNSSEC setting back as it was.
            self.store.set_dnssec(origin, before or ZoneDnssec(new_state.policy, None, False))
            raise

    def maintain(
        self, origin: dns.name.Name, author: Author, force: bool = False
    ) -> MaintenanceResult:
        """Apply the key events due now and refresh expiring signatures, in one changeset
        (none when nothing is due and ``force`` is off)."""
        policy = self.policy(origin)
        now = int(self.clock())
        snapshot = ZoneSnapshot.from_rows(origin, self.store.rows(origin))
        _check_fit(policy, snapshot)
        stored = self.store.keys(origin)
        keys, actions, plan = advance(
            tuple(_timing(k) for k in stored),
            policy,
            now,
            _max_ttl(snapshot),
            lambda action: self._generate(origin, action),
        )
        self._advanced[origin] = keys
        try:
            due = force or bool(actions)
            cs = self.editor().resign(origin, author, force=due, before=snapshot)
        finally:
            self._advanced.pop(origin, None)
            self._generated.clear()
        after = snapshot.patched(cs.removed, cs.added) if cs else snapshot
        return MaintenanceResult(
            cs.serial_after if cs else None,
            actions,
            plan,
            _earliest(plan.next_event, _next_refresh(after, policy, now)),
        )

    def save_timings(self, origin: dns.name.Name, keys: Sequence[KeyTiming]) -> None:
        """Store operator-made key changes (a rollover asked, a DS seen) without signing;
        :meth:`maintain` acts on them."""
        stored = self.store.keys(origin)
        self.store.put_keys(origin, _changed_rows(stored, keys, {}))

    def timings(self, origin: dns.name.Name) -> tuple[KeyTiming, ...]:
        """The zone's keys as :mod:`signer.timing` sees them."""
        return tuple(_timing(k) for k in self.store.keys(origin))

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

    def _generate(self, origin: dns.name.Name, action: Action) -> tuple[str, int]:
        """Make and save a key for a GENERATE action; returns (key id, key tag)."""
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
            self._generated[key_id] = (name, pair)
            return key_id, pair.key_tag()
        raise DnssecError(f"could not draw a key with an unused key tag for {origin}")


# -- helpers ----------------------------------------------------------------------------


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


def _check_fit(policy: Policy, zone: ZoneSnapshot) -> None:
    soa = zone.rrset(zone.origin, _SOA)
    if soa is None:
        return
    expire = int.from_bytes(soa.rdatas[0][-8:-4], "big")
    try:
        check_zone_fit(policy, expire, _max_ttl(zone), where=f"zone {zone.origin_name}")
    except SignerError as e:
        raise DnssecError(str(e)) from e


def _max_ttl(zone: ZoneSnapshot) -> int:
    return max(
        (
            rs.ttl
            for node in zone.nodes.values()
            for t, rs in node.rrsets.items()
            if not is_sig_key(t)
        ),
        default=0,
    )


def _next_refresh(zone: ZoneSnapshot, policy: Policy, now: int) -> int | None:
    """When the first signature of the zone comes up for refresh."""
    earliest: int | None = None
    for node in zone.nodes.values():
        for key, rs in node.rrsets.items():
            if not is_sig_key(key):
                continue
            for wire in rs.rdatas:
                absolute = now + seconds_left(wire, now)
                if earliest is None or absolute < earliest:
                    earliest = absolute
    return None if earliest is None else earliest - policy.rrsig_refresh


def _earliest(*times: int | None) -> int | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None
