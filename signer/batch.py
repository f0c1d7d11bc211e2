"""Signing many RRsets at once: the one place whole-zone and incremental signing make
signatures, so speed-ups (e.g. spreading the work over several cores) apply to both."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from signer.keys import KeyPair
from signer.rrsig import sign_canonical

__all__ = ["SignRequest", "sign_requests"]


@dataclass(frozen=True, slots=True)
class SignRequest:
    """One RRSIG to make: the RRset in canonical form and which key signs it.

    ``owner_wire`` is the lowercase uncompressed owner name, ``labels`` the RRSIG Labels
    field, ``rdatas`` the canonical rdata (RFC 4034 §6.2), ``key`` an index into the
    ``keys`` given to :func:`sign_requests`.
    """

    owner_wire: bytes
    labels: int
    rdtype: int
    ttl: int
    rdatas: tuple[bytes, ...]
    key: int


def sign_requests(
    requests: Sequence[SignRequest],
    keys: Sequence[KeyPair],
    signer_wire: bytes,
    inception: int,
    expiration: int,
    *,
    workers: int = 1,
) -> list[bytes]:
    """The signature bytes for each request, in order.

    ``signer_wire`` is the zone apex in lowercase wire form; ``inception`` and
    ``expiration`` are already reduced modulo 2**32.  ``workers`` is how many processes
    may share the work (1: sign in this process).
    """
    del workers  # one process for now
    tags = [key.key_tag() for key in keys]
    return [
        sign_canonical(
            r.owner_wire,
            r.labels,
            r.rdtype,
            r.ttl,
            r.rdatas,
            signer_wire,
            keys[r.key],
            tags[r.key],
            inception,
            expiration,
        )
        for r in requests
    ]
