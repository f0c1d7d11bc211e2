"""Tests of batch signing (signer.batch) and the signing fast paths it relies on.

Parallel and sequential signing must make signatures that verify (ECDSA is randomized,
so compared by verification with dnspython's validator; Ed25519 is deterministic, so
compared byte for byte), keep the request order, and turn failures in a worker into a
SignerError.  A zone signed with two workers must pass ldns-verify-zone.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from dns.rdtypes.ANY.RRSIG import RRSIG

from signer import batch, keys
from signer.batch import PARALLEL_THRESHOLD, SigningError, SignRequest, sign_requests
from signer.errors import SignerError
from signer.keys import KeyPair, _der_to_raw
from signer.rrsig import canonical_rdata, label_count, make_rrsig
from tests.signing_oracle import sign_zone
from tests.tools import require_tool

ORIGIN = dns.name.from_text("batch.test.")
NOW = int(time.time())
INCEPTION = NOW - 3600
EXPIRATION = NOW + 14 * 86400
COUNT = PARALLEL_THRESHOLD + 500  # enough to take the parallel path

_A = int(dns.rdatatype.A)
_MX = int(dns.rdatatype.MX)
_TXT = int(dns.rdatatype.TXT)


def _rrset_for(i: int) -> dns.rrset.RRset:
    """A varied RRset per index: one or more RRs, names in rdata, mixed case."""
    owner = dns.name.from_text(f"Host{i}.{ORIGIN}")
    if i % 7 == 0:
        return dns.rrset.from_text(owner, 300, "IN", "MX", f"10 Mail{i}.Batch.TEST.", "20 b.test.")
    if i % 5 == 0:
        return dns.rrset.from_text(owner, 600, "IN", "TXT", f'"id {i}"', '"x"', '"x"')
    return dns.rrset.from_text(owner, 3600, "IN", "A", f"10.0.{i >> 8 & 255}.{i & 255}")


def _request(rrset: dns.rrset.RRset, key_index: int) -> SignRequest:
    rdtype = int(rrset.rdtype)
    rdatas = tuple(canonical_rdata(rdtype, rd.to_wire()) for rd in rrset)
    return SignRequest(
        rrset.name.to_digestable(), label_count(rrset.name), rdtype, rrset.ttl, rdatas, key_index
    )


def _batch(count: int, key_count: int = 1) -> tuple[list[dns.rrset.RRset], list[SignRequest]]:
    rrsets = [_rrset_for(i) for i in range(count)]
    return rrsets, [_request(r, i % key_count) for i, r in enumerate(rrsets)]


def _sign(
    requests: Sequence[SignRequest], key_list: Sequence[KeyPair], workers: int | None
) -> list[bytes]:
    return sign_requests(
        requests, key_list, ORIGIN.to_digestable(), INCEPTION, EXPIRATION, workers=workers
    )


def _validate_all(
    rrsets: Sequence[dns.rrset.RRset],
    requests: Sequence[SignRequest],
    key_list: Sequence[KeyPair],
    signatures: Sequence[bytes],
) -> None:
    """Each signature, as an RRSIG, validates its own RRset (so also: order kept)."""
    keyset = dns.rdataset.from_rdata_list(3600, [k.dnskey() for k in key_list])
    assert len(signatures) == len(requests)
    for rrset, request, signature in zip(rrsets, requests, signatures, strict=True):
        key = key_list[request.key]
        rrsig = make_rrsig(
            request.rdtype,
            key.algorithm,
            request.labels,
            request.ttl,
            EXPIRATION,
            INCEPTION,
            key.key_tag(),
            ORIGIN,
            signature,
        )
        dns.dnssec.validate_rrsig(rrset, rrsig, {ORIGIN: keyset}, now=NOW)


def _no_children_left() -> None:
    assert multiprocessing.active_children() == []


# --- parallel against sequential -----------------------------------------------------------


def test_parallel_ed25519_equals_sequential_byte_for_byte() -> None:
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS), keys.generate(keys.ED25519, 256)]
    rrsets, requests = _batch(COUNT, key_count=2)
    sequential = _sign(requests, key_list, workers=1)
    parallel = _sign(requests, key_list, workers=2)
    assert parallel == sequential
    _validate_all(rrsets[:300], requests[:300], key_list, parallel[:300])
    _no_children_left()


@pytest.mark.parametrize("algorithm", [keys.ECDSAP256SHA256, keys.ECDSAP384SHA384])
def test_parallel_ecdsa_signatures_verify_in_order(algorithm: int) -> None:
    key_list = [keys.generate(algorithm, keys.KSK_FLAGS)]
    rrsets, requests = _batch(COUNT)
    parallel = _sign(requests, key_list, workers=2)
    _validate_all(rrsets, requests, key_list, parallel)
    sequential = _sign(requests[:200], key_list, workers=1)
    _validate_all(rrsets[:200], requests[:200], key_list, sequential)
    _no_children_left()


def test_forkserver_start_method_signs_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """The start method used when the caller has other threads (keys sent as DER)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver start method on this platform")
    monkeypatch.setattr(batch, "_start_method", lambda: "forkserver")
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS)]
    _, requests = _batch(COUNT)
    assert _sign(requests, key_list, workers=2) == _sign(requests, key_list, workers=1)
    _no_children_left()


def test_start_method_is_fork_only_for_a_single_thread() -> None:
    assert batch._start_method() in ("fork", "forkserver", "spawn")
    if "fork" in multiprocessing.get_all_start_methods():
        import threading

        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        try:
            assert batch._start_method() != "fork"
        finally:
            stop.set()
            thread.join()


def test_small_batches_stay_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pool(*args: object) -> list[bytes]:
        raise AssertionError("a pool was started for a small batch")

    monkeypatch.setattr(batch, "_sign_in_pool", no_pool)
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS)]
    rrsets, requests = _batch(PARALLEL_THRESHOLD - 1)
    signatures = _sign(requests, key_list, workers=4)
    _validate_all(rrsets[:50], requests[:50], key_list, signatures[:50])
    assert _sign([], key_list, workers=2) == []


def test_workers_zero_or_none_mean_all_cores() -> None:
    cores = batch.available_cores()
    assert cores >= 1
    assert batch._worker_count(0) == cores
    assert batch._worker_count(None) == cores
    assert batch._worker_count(3) == 3
    for bad in (-1, True, 1.5):
        with pytest.raises(SigningError):
            batch._worker_count(bad)  # type: ignore[arg-type]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_request_raises_signer_error_naming_it(workers: int) -> None:
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS)]
    _, requests = _batch(COUNT)
    bad = requests[COUNT - 10]
    requests[COUNT - 10] = SignRequest(
        bad.owner_wire, bad.labels, bad.rdtype, 1 << 40, bad.rdatas, bad.key
    )
    with pytest.raises(SignerError, match=rf"host{COUNT - 10}\.batch\.test\. "):
        _sign(requests, key_list, workers=workers)
    _no_children_left()


def test_bad_key_index_raises_signer_error() -> None:
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS)]
    _, requests = _batch(COUNT)
    requests.append(SignRequest(b"\x00", 0, _A, 60, (b"\x01\x02\x03\x04",), 5))
    with pytest.raises(SigningError, match="key index 5"):
        _sign(requests, key_list, workers=2)
    _no_children_left()


def _die(items: object) -> list[bytes]:
    """Stands in for the worker task: the worker process exits abruptly."""
    os._exit(3)


def test_dead_worker_raises_signer_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if batch._start_method() != "fork":
        pytest.skip("the patched task only reaches forked workers")
    monkeypatch.setattr(batch, "_sign_chunk", _die)
    key_list = [keys.generate(keys.ED25519, keys.KSK_FLAGS)]
    _, requests = _batch(COUNT)
    with pytest.raises(SigningError, match="worker process"):
        _sign(requests, key_list, workers=2)
    _no_children_left()


# --- fast paths ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 48])
def test_der_to_raw_matches_decode_dss_signature(size: int) -> None:
    bits = size * 8
    values = [1, 127, 128, 255, 256, (1 << (bits - 1)) - 1, 1 << (bits - 1), (1 << bits) - 1]
    values += [int.from_bytes(os.urandom(size), "big") >> (i % 17) for i in range(200)]
    for i, r in enumerate(values):
        s = values[-1 - i]
        der = encode_dss_signature(r, s)
        assert _der_to_raw(der, size) == r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert decode_dss_signature(der) == (r, s)


def test_der_to_raw_rejects_what_decode_dss_signature_rejects() -> None:
    der = encode_dss_signature(5, 7)
    for bad in (b"", b"\x30", der[:-1], b"\x31" + der[1:], b"\x30\x81" + der[1:]):
        with pytest.raises(ValueError):
            _der_to_raw(bad, 32)


def _constructed(*fields: object) -> RRSIG:
    return RRSIG(dns.rdataclass.IN, dns.rdatatype.RRSIG, *fields)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    "fields",
    [
        (1, 13, 3, 3600, EXPIRATION, INCEPTION, 12345, ORIGIN, b"\x01" * 64),
        (65280, 200, 0, 0, 0, 0, 0, dns.name.root, b""),
        (46, 15, 255, (1 << 32) - 1, (1 << 32) - 1, (1 << 32) - 1, 65535, ORIGIN, b"x"),
    ],
)
def test_make_rrsig_fast_path_equals_constructor(fields: tuple[object, ...]) -> None:
    ours = make_rrsig(*fields)  # type: ignore[arg-type]
    theirs = _constructed(*fields)
    assert type(ours) is RRSIG
    assert ours == theirs and hash(ours) == hash(theirs)
    assert ours.to_text() == theirs.to_text()
    assert ours.to_wire() == theirs.to_wire()
    for slot in ("rdclass", "rdtype", "type_covered", "algorithm", "signer", "rdcomment"):
        assert getattr(ours, slot) == getattr(theirs, slot)
        assert type(getattr(ours, slot)) is type(getattr(theirs, slot))
    with pytest.raises(TypeError):
        ours.labels = 1


def test_make_rrsig_slow_path_converts_or_rejects_like_constructor() -> None:
    converted = make_rrsig(
        dns.rdatatype.MX,
        13,
        2,
        60,
        2,
        1,
        7,
        "example.",  # type: ignore[arg-type]
        b"sig",
    )
    assert converted == _constructed(15, 13, 2, 60, 2, 1, 7, dns.name.from_text("example."), b"sig")
    for bad in ((1, 13, 256, 60, 2, 1, 7), (1, 13, 2, 60, 2, 1, 1 << 16), (1, 13, 2, -1, 2, 1, 7)):
        with pytest.raises(ValueError):
            make_rrsig(*bad, ORIGIN, b"sig")


# --- a whole zone, two workers, checked by ldns ---------------------------------------------


def _zone_records(hosts: int) -> list[tuple[dns.name.Name, int, dns.rdata.Rdata]]:
    def rr(
        owner: str, ttl: int, rdtype: str, text: str
    ) -> tuple[dns.name.Name, int, dns.rdata.Rdata]:
        name = dns.name.from_text(owner, ORIGIN)
        rdata = dns.rdata.from_text("IN", rdtype, text, origin=ORIGIN, relativize=False)
        return name, ttl, rdata

    records = [
        rr("@", 3600, "SOA", "ns1 hostmaster 2026010101 7200 3600 1209600 300"),
        rr("@", 3600, "NS", "ns1"),
        rr("ns1", 3600, "A", "192.0.2.1"),
        rr("sub", 3600, "NS", "ns.sub"),
        rr("sub", 3600, "DS", "12345 13 2 " + "ab" * 32),
        rr("ns.sub", 3600, "A", "192.0.2.53"),
        rr("*.wild", 300, "TXT", '"wild"'),
    ]
    for i in range(hosts):
        records.append(rr(f"host{i}", 3600, "A", f"10.0.{i >> 8 & 255}.{i & 255}"))
        if i % 10 == 0:
            records.append(rr(f"host{i}", 3600, "MX", f"10 host{i + 1}"))
    return records


@pytest.mark.external
def test_zone_signed_with_two_workers_passes_ldns_verify_zone(tmp_path: Path) -> None:
    ldns = require_tool("ldns-verify-zone")
    key_list = [keys.generate(keys.ECDSAP256SHA256, keys.KSK_FLAGS)]
    records = _zone_records(PARALLEL_THRESHOLD)  # > 2 * threshold RRSIGs: parallel
    signed = sign_zone(ORIGIN, records, key_list, INCEPTION, EXPIRATION, workers=2)
    assert sum(1 for _, _, r in signed if isinstance(r, RRSIG)) > PARALLEL_THRESHOLD
    path = tmp_path / "batch.test.signed"
    path.write_text(
        "".join(
            f"{n.to_text()} {t} IN {dns.rdatatype.to_text(r.rdtype)} {r.to_text()}\n"
            for n, t, r in signed
        )
    )
    result = subprocess.run(
        [ldns, str(path)], check=False, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _no_children_left()
