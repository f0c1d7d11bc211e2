"""Signing many RRsets at once: the one place whole-zone and incremental signing make
signatures, so speed-ups (e.g. spreading the work over several cores) apply to both.

Parallel signing (``workers`` > 1, at least :data:`PARALLEL_THRESHOLD` requests) runs the
requests in chunks on a pool of worker processes, one per worker, started for the call
and shut down before it returns.  The private keys reach the workers in memory only: as
PKCS#8 DER bytes passed to the pool initializer, which a ``fork`` start inherits and a
``forkserver`` start sends over its Unix socket; nothing is written to disk or logged.
``fork`` is used when the caller runs a single thread (cheapest start); with other threads
alive (e.g. a server) ``forkserver``, because a fork could copy a lock another thread holds.
"""

from __future__ import annotations

import multiprocessing
import os
import struct
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import NamedTuple

import dns.exception
import dns.name
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from signer.errors import SignerError
from signer.keys import KeyPair
from signer.rrsig import signed_data, type_text

__all__ = [
    "PARALLEL_THRESHOLD",
    "SignRequest",
    "SigningError",
    "available_cores",
    "sign_requests",
]

#: Fewer requests than this are signed in the calling process whatever ``workers`` says:
#: starting and feeding worker processes costs ~10-50 ms with ``fork`` and a few hundred
#: ms with ``forkserver``; 2,000 ECDSA signatures take ~0.1 s in one process.
PARALLEL_THRESHOLD = 2000
_MIN_CHUNK = 250
_MAX_CHUNK = 4000
_CHUNKS_PER_WORKER = 4  # more chunks than workers: a worker slowed by other load gets fewer

# One request as sent to a worker: a plain tuple pickles faster than a SignRequest (which
# pickles with its class).  (owner_wire, labels, rdtype, ttl, rdatas, key index)
_Item = tuple[bytes, int, int, int, tuple[bytes, ...], int]


class SigningError(SignerError):
    """A request that could not be signed, or a worker process that failed."""


class SignRequest(NamedTuple):
    """One RRSIG to make: the RRset in canonical form and which key signs it.

    ``owner_wire`` is the lowercase uncompressed owner name, ``labels`` the RRSIG Labels
    field, ``rdatas`` the canonical rdata (RFC 4034 §6.2), ``key`` an index into the
    ``keys`` given to :func:`sign_requests`. A tuple: a zone makes one per signature,
    and the signing loop takes it as it is.
    """

    owner_wire: bytes
    labels: int
    rdtype: int
    ttl: int
    rdatas: tuple[bytes, ...]
    key: int


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_count(workers: int | None) -> int:
    """Number of processes for ``workers``: 0 or None mean :func:`available_cores`."""
    if workers is None:
        return available_cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise SigningError(f"workers={workers!r}: use a positive number, or 0 for all cores")
    return workers or available_cores()


# -- the signing loop (in this process, or in a worker) --------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What every request of one call shares: the keys and the RRSIG fields."""

    keys: tuple[KeyPair, ...]
    tags: tuple[int, ...]
    signer_wire: bytes
    inception: int
    expiration: int


def _context(
    keys: Sequence[KeyPair], signer_wire: bytes, inception: int, expiration: int
) -> _Context:
    tags = tuple(key.key_tag() for key in keys)
    return _Context(tuple(keys), tags, signer_wire, inception, expiration)


def _sign_items(items: Iterable[_Item], ctx: _Context) -> list[bytes]:
    """Signatures of ``items``, in order; a request that cannot be signed raises
    SigningError naming its owner and type."""
    keys, tags, signer_wire = ctx.keys, ctx.tags, ctx.signer_wire
    inception, expiration = ctx.inception, ctx.expiration
    signatures: list[bytes] = []
    append = signatures.append
    item: _Item | None = None
    try:
        for item in items:
            owner_wire, labels, rdtype, ttl, rdatas, index = item
            key = keys[index]
            data = signed_data(
                owner_wire,
                labels,
                rdtype,
                ttl,
                rdatas,
                signer_wire,
                key.algorithm,
                tags[index],
                inception,
                expiration,
            )
            append(key.sign(data))
    except (struct.error, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise SigningError(f"cannot sign {_describe(item)}: {exc}") from exc
    return signatures


def _describe(item: _Item | None) -> str:
    """``owner TYPE`` of a request, for error messages (never key material)."""
    if item is None:
        return "a request"
    try:
        owner = dns.name.from_wire(item[0], 0)[0].to_text()
    except (dns.exception.DNSException, ValueError, IndexError, TypeError):
        owner = repr(item[0][:64])
    try:
        rdtype = type_text(item[2])
    except (ValueError, TypeError):
        rdtype = repr(item[2])
    return f"{owner} {rdtype} (key index {item[5]!r})"


def _item(request: SignRequest) -> _Item:
    return (
        request.owner_wire,
        request.labels,
        request.rdtype,
        request.ttl,
        request.rdatas,
        request.key,
    )


# -- worker processes --------------------------------------------------------------------

_PRIVATE_KEY_TYPES = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)
_KeyBlob = tuple[int, int, bytes]  # algorithm, flags, PKCS#8 DER of the private key
_WORKER_CONTEXT: _Context | None = None  # set by _init_worker in each worker process


def _key_blobs(keys: Sequence[KeyPair]) -> tuple[_KeyBlob, ...]:
    """The keys as bytes for the worker initializer (in memory only, never on disk)."""
    return tuple(
        (
            key.algorithm,
            key.flags,
            key.private_key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        for key in keys
    )


def _init_worker(
    blobs: tuple[_KeyBlob, ...], signer_wire: bytes, inception: int, expiration: int
) -> None:
    """Pool initializer: rebuild the KeyPairs once per worker process."""
    global _WORKER_CONTEXT
    keys = []
    for algorithm, flags, der in blobs:
        private_key = serialization.load_der_private_key(der, password=None)
        if not isinstance(private_key, _PRIVATE_KEY_TYPES):
            raise SigningError(f"worker got a {type(private_key).__name__}, not a signing key")
        keys.append(KeyPair(algorithm, flags, private_key))
    _WORKER_CONTEXT = _context(keys, signer_wire, inception, expiration)


def _sign_chunk(items: list[_Item]) -> list[bytes]:
    """Pool task: the signatures of one chunk, in order."""
    if _WORKER_CONTEXT is None:
        raise SigningError("signing worker was not initialised")
    return _sign_items(items, _WORKER_CONTEXT)


def _start_method() -> str:
    """``fork`` when the caller runs one thread and the platform has it, else
    ``forkserver`` (or ``spawn``): forking a multi-threaded process may copy a held lock."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _chunks(requests: Sequence[SignRequest], workers: int) -> list[list[_Item]]:
    size = -(-len(requests) // (workers * _CHUNKS_PER_WORKER))
    size = max(_MIN_CHUNK, min(_MAX_CHUNK, size))
    return [
        [_item(r) for r in requests[start : start + size]]
        for start in range(0, len(requests), size)
    ]


def _sign_in_pool(
    requests: Sequence[SignRequest],
    keys: Sequence[KeyPair],
    signer_wire: bytes,
    inception: int,
    expiration: int,
    workers: int,
) -> list[bytes]:
    """Sign ``requests`` on ``workers`` processes; results in request order."""
    chunks = _chunks(requests, workers)
    executor = ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)),
        mp_context=multiprocessing.get_context(_start_method()),
        initializer=_init_worker,
        initargs=(_key_blobs(keys), signer_wire, inception, expiration),
    )
    try:
        futures: list[Future[list[bytes]]] = [executor.submit(_sign_chunk, c) for c in chunks]
        signatures: list[bytes] = []
        for future in futures:
            signatures += future.result()
    except BrokenProcessPool as exc:
        raise SigningError(
            "a signing worker process failed to start or exited unexpectedly (killed, "
            "out of memory?); retry, or sign with workers=1"
        ) from exc
    finally:
        # Waits for the workers to exit (no zombies); queued chunks are dropped on error.
        executor.shutdown(wait=True, cancel_futures=True)
    return signatures


def sign_requests(
    requests: Sequence[SignRequest],
    keys: Sequence[KeyPair],
    signer_wire: bytes,
    inception: int,
    expiration: int,
    *,
    workers: int | None = 1,
) -> list[bytes]:
    """The signature bytes for each request, in order.

    ``signer_wire`` is the zone apex in lowercase wire form; ``inception`` and
    ``expiration`` are already reduced modulo 2**32.  ``workers`` is how many processes
    may share the work: 1 signs in this process; 0 or None use every core this process
    may run on (:func:`available_cores`).  Fewer than :data:`PARALLEL_THRESHOLD` requests
    are always signed in this process.  Raises SigningError for a request that cannot be
    signed or a worker process that fails.
    """
    count = _worker_count(workers)
    if count <= 1 or len(requests) < PARALLEL_THRESHOLD:
        ctx = _context(keys, signer_wire, inception, expiration)
        return _sign_items(requests, ctx)
    return _sign_in_pool(requests, keys, signer_wire, inception, expiration, count)
