"""A zone's key pairs: generating and saving them in the key directory, loading them to
sign with, and the keys made ahead of a zone's first signing (``zonefan keys generate``)
that `zone sign` must start with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dns.name

from nameserver.dnssec.policy import DEFAULT_POLICY, ZonePolicies
from nameserver.dnssec.timings import KeyTimings, changed_rows
from nameserver.errors import DnssecError
from nameserver.store.keys import ZoneDnssec
from nameserver.store.store import Store
from nameserver.zone.serial import Clock
from signer.errors import SignerError
from signer.keys import KeyPair, check_algorithm, generate, key_file_name, load_keypair, save
from signer.policy import Policy
from signer.timing import (
    Action,
    ActionKind,
    KeyTiming,
    Phase,
    Role,
    add_key,
    initial_keys,
    key_state,
)

_MAX_KEY_TRIES = 5


class KeyPairs:
    """The key pairs of one store's zones, in ``key_dir``; loaded pairs are kept."""

    def __init__(
        self,
        store: Store,
        key_dir: Path,
        policies: ZonePolicies,
        timings: KeyTimings,
        clock: Clock,
    ) -> None:
        self.store = store
        self.key_dir = key_dir
        self.policies = policies
        self.timings = timings
        self.clock = clock
        self._pairs: dict[str, KeyPair] = {}

    def generate_key(
        self, origin: dns.name.Name, role: Role, algorithm: int | None = None
    ) -> tuple[KeyTiming, tuple[str, ...]]:
        """Make a key for a zone that is not signed yet: stored with its created time,
        not published; `zone sign` then starts with it instead of generating its own.
        ``algorithm`` defaults to the policy's.

        Returns the key and notes (e.g. the zone's policy would not adopt it as is).
        Refused for a signed zone: the planner publishes and activates every key it
        finds that is not replacing another, so a "standby" key would start signing at
        once; `zonefan keys rollover` makes successors when RFC 7583 says.
        """
        policy = self.policies.policy(origin)
        chosen = policy.algorithm if algorithm is None else algorithm
        try:
            check_algorithm(chosen)
        except SignerError as e:
            raise DnssecError(f"no key generated for {origin}: {e}") from e
        now = int(self.clock())
        keys = self.timings.timings(origin)
        current = self.store.dnssec(origin)
        signed = current is not None and current.signed
        if signed or any(_in_zone(k, now, policy) for k in keys):
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
        key_id, key_tag = self.generate(origin, action, generated)
        new_keys = add_key(keys, action, key_id, key_tag, now)
        self.store.put_keys(origin, changed_rows(self.store.keys(origin), new_keys, generated))
        state = self.store.dnssec(origin)
        name = state.policy if state else DEFAULT_POLICY
        misfit = _pregenerated_misfit(origin, [*pending, new_keys[-1]], policy, name)
        new = next(k for k in new_keys if k.key_id == key_id)
        return new, (misfit,) if misfit else ()

    def check_pregenerated(self, origin: dns.name.Name, state: ZoneDnssec) -> None:
        """Before a zone's first signing: its pre-generated keys must be exactly the keys
        its policy starts with, or `zone sign` refuses (and changes nothing)."""
        policy = self.policies.configured(origin, state)
        now = int(self.clock())
        keys = self.timings.timings(origin)
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

    def loader(
        self, by_id: Mapping[str, KeyTiming], files: Mapping[str, str]
    ) -> Callable[[str], KeyPair]:
        """Loads a key pair by key id, from its file in the key directory (``files``;
        default ``ID.pem``)."""

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

    def generate(
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
