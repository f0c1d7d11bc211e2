"""OrderedOwners (chunked, copy-on-write) against a plain sorted list, with chunks small
enough that splits, emptied chunks and wrap-around are all exercised."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nameserver.zone import ordered
from nameserver.zone.ordered import OrderedOwners
from nameserver.zone.wirename import canonical_key, key_of

ORIGIN = dns.name.from_text("z.test.")
labels = st.text(alphabet="ab-9", min_size=1, max_size=3)
names = st.lists(labels, min_size=0, max_size=2).map(
    lambda ls: key_of(dns.name.Name([*ls, *ORIGIN.labels]))
)


@pytest.fixture(autouse=True)
def tiny_chunks() -> Iterator[None]:
    saved = ordered.CHUNK
    ordered.CHUNK = 2
    yield
    ordered.CHUNK = saved


def _model_neighbours(model: list[bytes], key: bytes) -> tuple[bytes, bytes, bytes]:
    """(floor, before, after) with wrap-around, from a sorted list of wire keys."""
    ckeys = [canonical_key(k) for k in model]
    ck = canonical_key(key)
    right = bisect.bisect_right(ckeys, ck)
    left = bisect.bisect_left(ckeys, ck)
    return model[right - 1], model[left - 1], model[right % len(model)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(names, max_size=12),
    st.lists(st.tuples(st.lists(names, max_size=4), st.lists(names, max_size=4)), max_size=20),
    st.lists(names, min_size=1, max_size=6),
)
def test_changed_copies_equal_a_sorted_list(
    start: list[bytes], steps: list[tuple[list[bytes], list[bytes]]], probes: list[bytes]
) -> None:
    index = OrderedOwners.of(start)
    model = set(start)
    versions = [(index, sorted(model, key=canonical_key))]
    for added, removed in steps:
        index = index.changed(added, removed)
        model = (model - set(removed)) | set(added)
        versions.append((index, sorted(model, key=canonical_key)))
    # Every version, old ones included, still answers as its own sorted list.
    for version, expected in versions:
        assert version.wire_keys() == expected
        assert len(version) == len(expected)
        for probe in probes:
            assert (probe in version) == (probe in expected)
            if not expected:
                assert version.floor(probe) is None and version.after(probe) is None
                continue
            floor, before, after = _model_neighbours(expected, probe)
            assert (version.floor(probe), version.before(probe), version.after(probe)) == (
                floor,
                before,
                after,
            )
