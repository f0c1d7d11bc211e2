"""Whole responses kept for reuse, bounded by a byte budget.

Two maps share the budget. ``exact`` maps the bytes of a query after its ID to the bytes of
its response after the ID: a hit costs one dict lookup, which is what nearly every query
under load gets. ``shared`` maps a normalised key (the question in lower case and only what
the response depends on, see :mod:`nameserver.serve.responder`) to a :class:`Shared` response
that serves every query with that key, whatever its ID, case, EDNS payload or options.

Eviction is by generations, so a hit needs no bookkeeping: entries go into the young
generation; when it holds the whole budget it becomes the old one, and each new entry then
pushes old entries out until the old generation is gone and the young one turns old in turn.
An old entry asked for again moves back to the young generation. So what was asked for
during the last generation stays, what was not goes, without a list to keep in order on
every hit (a least-recently-used order would cost the hot path a write per hit).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "ASKED_ONCE",
    "EXACT_OVERHEAD",
    "SHARED_OVERHEAD",
    "ExactKey",
    "ResponseCache",
    "Shared",
]

# A UDP query's bytes after the ID, or a 1-tuple of them for TCP (a TCP query may get a
# larger answer than the same bytes over UDP).
ExactKey = bytes | tuple[bytes]

# Bytes an entry takes beyond the lengths of its key and response, measured with
# tracemalloc on CPython 3.11 (tests/test_response_cache.py checks they stay close): two
# bytes objects (33 octets each, rounded up by the allocator) and the dict's share of its
# table; a shared entry adds its Shared object.
EXACT_OVERHEAD = 130
SHARED_OVERHEAD = 190
# How many keys asked_before() remembers before it starts over.
ASKED_ONCE = 32768


class Shared:
    """A response that serves every query with the same normalised key. ``response`` is
    its bytes after the ID, with the question of the query that made it; ``qname`` is set
    when the response repeats that query's name outside the question (a DNAME's
    synthesized CNAME), so only that exact spelling may reuse it; ``aliases`` is how many
    more exact keys may still point at it."""

    __slots__ = ("aliases", "qname", "response")

    def __init__(self, response: bytes, qname: bytes | None, aliases: int) -> None:
        self.response = response
        self.qname = qname
        self.aliases = aliases


K = TypeVar("K")
V = TypeVar("V")


class ResponseCache:
    """Responses bounded by ``budget`` bytes (keys, responses and the overhead per entry
    counted); 0 keeps nothing."""

    __slots__ = (
        "_asked",
        "_old_bytes",
        "_old_exact",
        "_old_shared",
        "_young_bytes",
        "budget",
        "exact",
        "shared",
    )

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.exact: dict[ExactKey, bytes] = {}
        self.shared: dict[bytes, Shared] = {}
        self._old_exact: dict[ExactKey, bytes] = {}
        self._old_shared: dict[bytes, Shared] = {}
        self._young_bytes = 0
        self._old_bytes = 0
        self._asked: set[int] = set()

    def clear(self) -> None:
        """Forget every response (the zones changed)."""
        self.exact = {}
        self.shared = {}
        self._old_exact = {}
        self._old_shared = {}
        self._young_bytes = self._old_bytes = 0
        self._asked = set()

    def asked_before(self, key: bytes) -> bool:
        """True when ``key`` was passed here before, among about the last ASKED_ONCE keys
        (kept as hashes, ~2 MiB at most); remembers it. What is cheap to make again is kept
        only on its second ask: a flood of new names, never asked twice, keeps nothing."""
        asked, seen = self._asked, hash(key)
        if seen in asked:
            return True
        if len(asked) >= ASKED_ONCE:
            asked.clear()  # what it held was not asked again for a long while
        asked.add(seen)
        return False

    @property
    def size(self) -> int:
        """Bytes held, as counted against the budget."""
        return self._young_bytes + self._old_bytes

    def __len__(self) -> int:
        return len(self.exact) + len(self.shared) + len(self._old_exact) + len(self._old_shared)

    # -- lookups ----------------------------------------------------------------------------

    def get_exact(self, key: ExactKey) -> bytes | None:
        """The response for these exact query bytes, if kept."""
        hit = self.exact.get(key)
        if hit is None and self._old_exact:
            hit = self._promote(self._old_exact, self.exact, key, _exact_cost)
        return hit

    def get_shared(self, key: bytes) -> Shared | None:
        """The shared response for a normalised key, if kept."""
        hit = self.shared.get(key)
        if hit is None and self._old_shared:
            hit = self._promote(self._old_shared, self.shared, key, _shared_cost)
        return hit

    def _promote(
        self, old: dict[K, V], young: dict[K, V], key: K, cost_of: Callable[[K, V], int]
    ) -> V | None:
        """Move an old entry back to the young generation: it was asked for again."""
        value = old.pop(key, None)
        if value is not None:
            young[key] = value
            cost = cost_of(key, value)
            self._old_bytes -= cost
            self._young_bytes += cost
        return value

    # -- inserts ----------------------------------------------------------------------------

    def put_exact(self, key: ExactKey, response: bytes) -> None:
        """Keep ``response`` (after the ID) for the exact query bytes ``key``."""
        cost = _exact_cost(key, response)
        if self._make_room(cost):
            if key in self.exact:
                return  # already counted
            self.exact[key] = response
            self._young_bytes += cost

    def put_shared(self, key: bytes, entry: Shared) -> None:
        """Keep ``entry`` for the normalised key ``key`` (replacing one kept before)."""
        cost = _shared_cost(key, entry)
        if self._make_room(cost):
            old = self.shared.get(key)
            if old is not None:
                self._young_bytes -= _shared_cost(key, old)
            self.shared[key] = entry
            self._young_bytes += cost

    def put(self, exact: ExactKey, key: bytes, entry: Shared) -> None:
        """:meth:`put_shared` and :meth:`put_exact` of its response, for the query that
        made it."""
        exact_cost = _exact_cost(exact, entry.response)
        shared_cost = _shared_cost(key, entry)
        if self._make_room(exact_cost + shared_cost):
            old = self.shared.get(key)
            if old is not None:
                self._young_bytes -= _shared_cost(key, old)
            self.shared[key] = entry
            self._young_bytes += shared_cost
            if exact not in self.exact:
                self.exact[exact] = entry.response
                self._young_bytes += exact_cost

    def _make_room(self, cost: int) -> bool:
        """Evict until ``cost`` more bytes fit; False when they never can."""
        if cost > self.budget:
            return False
        while self._young_bytes + self._old_bytes + cost > self.budget:
            # Exact aliases first: losing one costs a normalised lookup, not a new answer.
            # popitem() takes the entry put in last, in O(1); which of the old entries goes
            # first matters little, none was asked for since it turned old.
            if self._old_exact:
                key, response = self._old_exact.popitem()
                self._old_bytes -= _exact_cost(key, response)
            elif self._old_shared:
                skey, entry = self._old_shared.popitem()
                self._old_bytes -= _shared_cost(skey, entry)
            else:
                # The young generation holds the budget: it turns old.
                self._old_exact, self.exact = self.exact, {}
                self._old_shared, self.shared = self.shared, {}
                self._old_bytes, self._young_bytes = self._young_bytes, 0
        return True


def _exact_cost(key: ExactKey, response: bytes) -> int:
    klen = len(key) if isinstance(key, bytes) else len(key[0]) + 48  # the 1-tuple
    return klen + len(response) + EXACT_OVERHEAD


def _shared_cost(key: bytes, entry: Shared) -> int:
    return len(key) + len(entry.response) + SHARED_OVERHEAD
