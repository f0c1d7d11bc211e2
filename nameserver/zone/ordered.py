"""Owner names in DNSSEC canonical order (RFC 4034 §6.1), for finding NSEC/NSEC3 neighbours.

An :class:`OrderedOwners` is immutable; :meth:`OrderedOwners.changed` returns a copy with
names added and removed. The keys are kept in sorted chunks and a copy shares every chunk
it did not touch, so a change to a 100k-name zone copies a few hundred references and one
chunk, not the whole list.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from nameserver.zone.wirename import canonical_key, from_canonical

__all__ = ["OrderedOwners"]

Key = tuple[bytes, ...]
CHUNK = 512  # keys per chunk when built; a chunk is split at twice this


class OrderedOwners:
    """Sorted keys of the names that own one RR type (e.g. every name with an NSEC)."""

    __slots__ = ("_chunks", "_len", "_maxes")

    def __init__(self, chunks: list[list[Key]]) -> None:
        self._chunks = chunks  # sorted, unique canonical keys; no chunk is empty
        self._maxes = [c[-1] for c in chunks]
        self._len = sum(len(c) for c in chunks)

    @classmethod
    def of(cls, wire_keys: Iterable[bytes]) -> OrderedOwners:
        """Build from lowercased wire keys in any order."""
        keys = sorted({canonical_key(k) for k in wire_keys})
        return cls([keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)])

    def __len__(self) -> int:
        return self._len

    def __contains__(self, wire_key: bytes) -> bool:
        ckey = canonical_key(wire_key)
        ci = bisect.bisect_left(self._maxes, ckey)
        if ci == len(self._chunks):
            return False
        chunk = self._chunks[ci]
        return chunk[bisect.bisect_left(chunk, ckey)] == ckey

    def floor(self, wire_key: bytes) -> bytes | None:
        """The greatest owner at or before ``wire_key``; wraps to the last one (the owner
        whose NSEC covers a name past the end of the chain). None when empty."""
        if not self._len:
            return None
        ckey = canonical_key(wire_key)
        ci = bisect.bisect_right(self._maxes, ckey)
        i = bisect.bisect_right(self._chunks[ci], ckey) if ci < len(self._chunks) else 0
        return from_canonical(self._before(ci, i))

    def before(self, wire_key: bytes) -> bytes | None:
        """The greatest owner strictly before ``wire_key`` (wrapping). None when empty."""
        if not self._len:
            return None
        ckey = canonical_key(wire_key)
        ci = bisect.bisect_left(self._maxes, ckey)
        i = bisect.bisect_left(self._chunks[ci], ckey) if ci < len(self._chunks) else 0
        return from_canonical(self._before(ci, i))

    def after(self, wire_key: bytes) -> bytes | None:
        """The least owner strictly after ``wire_key`` (wrapping to the first). None when
        empty."""
        if not self._len:
            return None
        ckey = canonical_key(wire_key)
        ci = bisect.bisect_right(self._maxes, ckey)
        if ci == len(self._chunks):
            return from_canonical(self._chunks[0][0])
        chunk = self._chunks[ci]
        return from_canonical(chunk[bisect.bisect_right(chunk, ckey)])

    def _before(self, ci: int, i: int) -> Key:
        """The key just before position ``i`` of chunk ``ci`` (wrapping to the last)."""
        if ci < len(self._chunks) and i > 0:
            return self._chunks[ci][i - 1]
        return self._chunks[ci - 1][-1]  # ci == 0 wraps to the last chunk

    def changed(self, added: Iterable[bytes], removed: Iterable[bytes]) -> OrderedOwners:
        """A copy with ``added`` put in and ``removed`` taken out (wire keys)."""
        chunks = list(self._chunks)
        maxes = list(self._maxes)
        copied: set[int] = set()  # ids of chunks this copy owns (may change in place)

        def own(ci: int) -> list[Key]:
            chunk = chunks[ci]
            if id(chunk) not in copied:
                chunk = chunks[ci] = list(chunk)
                copied.add(id(chunk))
            return chunk

        for wire_key in removed:
            ckey = canonical_key(wire_key)
            ci = bisect.bisect_left(maxes, ckey)
            if ci == len(chunks):
                continue
            i = bisect.bisect_left(chunks[ci], ckey)
            if chunks[ci][i] != ckey:
                continue
            chunk = own(ci)
            del chunk[i]
            if chunk:
                maxes[ci] = chunk[-1]
            else:
                del chunks[ci], maxes[ci]
        for wire_key in added:
            ckey = canonical_key(wire_key)
            ci = min(bisect.bisect_left(maxes, ckey), len(chunks) - 1)
            if ci < 0:  # empty: the first chunk
                chunks.append([ckey])
                maxes.append(ckey)
                copied.add(id(chunks[0]))
                continue
            i = bisect.bisect_left(chunks[ci], ckey)
            if i < len(chunks[ci]) and chunks[ci][i] == ckey:
                continue
            chunk = own(ci)
            chunk.insert(i, ckey)
            maxes[ci] = chunk[-1]
            if len(chunk) >= 2 * CHUNK:
                half = chunk[CHUNK:]
                del chunk[CHUNK:]
                chunks.insert(ci + 1, half)
                maxes[ci : ci + 1] = [chunk[-1], half[-1]]
                copied.add(id(half))
        return OrderedOwners(chunks)

    def wire_keys(self) -> list[bytes]:
        """Every owner in canonical order."""
        return [from_canonical(k) for chunk in self._chunks for k in chunk]
