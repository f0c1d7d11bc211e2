"""Owner names in DNSSEC canonical order (RFC 4034 §6.1), for finding NSEC/NSEC3 neighbours.

An :class:`OrderedOwners` is immutable; :meth:`OrderedOwners.changed` returns a copy with
names added and removed, so a patched snapshot does not re-sort the whole zone.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from nameserver.wirename import canonical_key, from_canonical

__all__ = ["OrderedOwners"]


class OrderedOwners:
    """Sorted keys of the names that own one RR type (e.g. every name with an NSEC)."""

    __slots__ = ("_keys",)

    def __init__(self, keys: list[tuple[bytes, ...]]) -> None:
        self._keys = keys  # sorted, unique canonical keys

    @classmethod
    def of(cls, wire_keys: Iterable[bytes]) -> OrderedOwners:
        """Build from lowercased wire keys in any order."""
        return cls(sorted({canonical_key(k) for k in wire_keys}))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, wire_key: bytes) -> bool:
        ckey = canonical_key(wire_key)
        i = bisect.bisect_left(self._keys, ckey)
        return i < len(self._keys) and self._keys[i] == ckey

    def floor(self, wire_key: bytes) -> bytes | None:
        """The greatest owner at or before ``wire_key``; wraps to the last one (the owner
        whose NSEC covers a name past the end of the chain). None when empty."""
        if not self._keys:
            return None
        i = bisect.bisect_right(self._keys, canonical_key(wire_key))
        return from_canonical(self._keys[i - 1])  # i == 0 wraps to the last via [-1]

    def before(self, wire_key: bytes) -> bytes | None:
        """The greatest owner strictly before ``wire_key`` (wrapping). None when empty."""
        if not self._keys:
            return None
        i = bisect.bisect_left(self._keys, canonical_key(wire_key))
        return from_canonical(self._keys[i - 1])

    def after(self, wire_key: bytes) -> bytes | None:
        """The least owner strictly after ``wire_key`` (wrapping to the first). None when
        empty."""
        if not self._keys:
            return None
        i = bisect.bisect_right(self._keys, canonical_key(wire_key))
        return from_canonical(self._keys[i % len(self._keys)])

    def changed(self, added: Iterable[bytes], removed: Iterable[bytes]) -> OrderedOwners:
        """A copy with ``added`` put in and ``removed`` taken out (wire keys)."""
        keys = list(self._keys)
        for wire_key in removed:
            ckey = canonical_key(wire_key)
            i = bisect.bisect_left(keys, ckey)
            if i < len(keys) and keys[i] == ckey:
                del keys[i]
        for wire_key in added:
            ckey = canonical_key(wire_key)
            i = bisect.bisect_left(keys, ckey)
            if i == len(keys) or keys[i] != ckey:
                keys.insert(i, ckey)
        return OrderedOwners(keys)

    def wire_keys(self) -> list[bytes]:
        """Every owner in canonical order."""
        return [from_canonical(k) for k in self._keys]
