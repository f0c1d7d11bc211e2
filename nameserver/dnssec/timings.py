"""A zone's key timings: the keys as :mod:`signer.timing` sees them, the key rows a change
of them stores, and the key plan and forecast run from them with the inputs maintenance
uses (the zone's policy and largest TTL)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import dns.name

from nameserver.dnssec.policy import ZonePolicies
from nameserver.errors import DnssecError
from nameserver.store.keys import StoredKey
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions, current_snapshot
from nameserver.zone.serial import Clock
from signer.keys import KeyPair
from signer.timing import Forecast, KeyTiming, Plan, Role, forecast, plan


class KeyTimings:
    """The stored key timings of one store's zones and the plans made from them."""

    def __init__(
        self,
        store: Store,
        policies: ZonePolicies,
        clock: Clock,
        versions: ZoneVersions | None = None,
    ) -> None:
        self.store = store
        self.policies = policies
        self.clock = clock
        self.versions = versions

    def timings(self, origin: dns.name.Name) -> tuple[KeyTiming, ...]:
        """The zone's keys as :mod:`signer.timing` sees them."""
        return tuple(timing_of(k) for k in self.store.keys(origin))

    def save_timings(self, origin: dns.name.Name, keys: Sequence[KeyTiming]) -> None:
        """Store operator-made key changes (a rollover asked, a DS seen) without signing;
        maintenance acts on them."""
        stored = self.store.keys(origin)
        self.store.put_keys(origin, changed_rows(stored, keys, {}))

    def max_ttl(self, origin: dns.name.Name) -> int:
        """The zone's largest TTL (TTLsig in RFC 7583), which maintenance plans with."""
        return current_snapshot(self.store, origin, self.versions).max_ttl()

    def key_plan(self, origin: dns.name.Name, now: int | None = None) -> Plan:
        """The key plan at ``now`` (default: the clock) from the inputs maintenance
        uses (the zone's largest TTL included): the one way to get the next key event,
        the DS changes awaited and the planner's notes outside maintenance."""
        when = int(self.clock()) if now is None else now
        policy = self.policies.policy(origin)
        return plan(self.timings(origin), policy, when, self.max_ttl(origin))

    def key_forecast(
        self, origin: dns.name.Name, horizon: int, keys: Sequence[KeyTiming] | None = None
    ) -> Forecast:
        """The planner run forward from now for ``horizon`` seconds with the inputs of
        maintenance (:func:`signer.timing.forecast`: DS changes at the parent are
        assumed the moment they are awaited).  ``keys`` replaces the stored keys, e.g. to
        preview a rollover not asked for yet.  Changes nothing."""
        now = int(self.clock())
        chosen = self.timings(origin) if keys is None else tuple(keys)
        policy = self.policies.policy(origin)
        return forecast(chosen, policy, now, self.max_ttl(origin), now + horizon)


def timing_of(key: StoredKey) -> KeyTiming:
    """A stored key as :mod:`signer.timing` sees it."""
    fields = {name: value for name, value in key.times.items() if value is not None}
    return KeyTiming(key.id, Role[key.role], key.algorithm, key.key_tag, **fields)  # type: ignore[arg-type]


def changed_rows(
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
