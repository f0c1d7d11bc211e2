"""The dnspython internals zonefan relies on, checked so that a dnspython release that changes
them fails here (pyproject pins dnspython to the minor these hold for).

Each fast path checks itself at import and falls back to dnspython's public, slower API when
the check fails; a silent fallback would cost the load and signing times the benchmarks
promise, so these tests fail instead. Already covered elsewhere: the store's slot-built rdata
decoders (tests/test_store.py::test_fast_decoders_agree_with_dnspython) and sync.model's
FastName hash and TXT text (tests/test_sync_wire.py, by hypothesis).
"""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.RRSIG import RRSIG
from hypothesis import given
from hypothesis import strategies as st

from nameserver.store import codec
from signer import rrsig as rrsig_module

# Labels that print without escapes (the store's fast name path takes only those).
plain_label = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*",
    min_size=1,
    max_size=63,
)


def test_store_builds_names_through_their_slots() -> None:
    assert codec._NAME_FROM_TEXT is codec._name_fast, (
        "dnspython's Name changed: the store fell back to dns.name.from_text (slow loads)"
    )


@given(st.lists(plain_label, min_size=1, max_size=6))
def test_store_names_equal_dnspythons(labels: list[str]) -> None:
    text = ".".join(labels) + "."
    fast, slow = codec._name_fast(text), dns.name.from_text(text)
    assert fast.labels == slow.labels
    assert fast == slow and hash(fast) == hash(slow)
    assert fast.to_text() == slow.to_text() and fast.to_wire() == slow.to_wire()


def test_signer_builds_rrsigs_through_their_slots() -> None:
    build = rrsig_module._BUILD_RRSIG
    assert build is not None, (
        "dnspython's RRSIG changed its slots: the signer fell back to the constructor"
    )
    signer = dns.name.from_text("example.test.")
    fields = (dns.rdatatype.A, 13, 3, 3600, 1_800_000_000, 1_790_000_000, 12345, signer, b"sig")
    built = build(*fields)
    made = RRSIG(dns.rdataclass.IN, dns.rdatatype.RRSIG, *fields)  # type: ignore[no-untyped-call]
    assert built == made and hash(built) == hash(made)
    assert built.to_text() == made.to_text()
    assert built.to_wire() == made.to_wire()
    assert built.__getstate__() == made.__getstate__()  # type: ignore[no-untyped-call]
