"""Tests of signer.keys against independent implementations.

Signatures made by ``KeyPair.sign`` are checked by dnspython's validator (which
decodes the DNSKEY and the signature format itself); DS records are checked
against BIND's dnssec-dsfromkey and ldns-key2ds, and against hashlib.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path
from typing import cast

import dns.dnssec
import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.RRSIG import RRSIG

from signer import keys
from signer.errors import (
    InvalidKeyError,
    KeyFileError,
    KeyPermissionError,
    SignerError,
    UnsupportedAlgorithmError,
)
from tests.tools import PROJECT_ROOT, require_tool

ORIGIN = dns.name.from_text("example.com.")
ALGORITHMS = [13, 14, 15, 8]
SIG_SIZES = {13: 64, 14: 96, 15: 64, 8: 256}
NOW = 1_700_000_000


@pytest.fixture(scope="module", params=ALGORITHMS, ids=lambda a: f"alg{a}")
def ksk(request: pytest.FixtureRequest) -> keys.KeyPair:
    return keys.generate(request.param, 257)


@pytest.fixture(scope="module", params=ALGORITHMS, ids=lambda a: f"alg{a}")
def zsk(request: pytest.FixtureRequest) -> keys.KeyPair:
    return keys.generate(request.param, 256)


def signed_data(rrset: dns.rrset.RRset, rrsig: RRSIG) -> bytes:
    """RFC 4034 section 3.1.8.1 signed data, built here independently of the signer."""
    fixed = struct.pack(
        "!HBBIIIH",
        rrsig.type_covered,
        rrsig.algorithm,
        rrsig.labels,
        rrsig.original_ttl,
        rrsig.expiration,
        rrsig.inception,
        rrsig.key_tag,
    )
    signer = rrsig.signer.canonicalize().to_wire()
    assert signer is not None
    data = fixed + signer
    owner = rrset.name.canonicalize().to_wire()
    assert owner is not None
    head = struct.pack("!HHI", rrset.rdtype, rrset.rdclass, rrsig.original_ttl)
    for rdata in sorted(rd.to_digestable(ORIGIN) for rd in rrset):
        data += owner + head + struct.pack("!H", len(rdata)) + rdata
    return data


def make_rrsig(pair: keys.KeyPair, rrset: dns.rrset.RRset) -> RRSIG:
    template = RRSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.IN,
        dns.rdatatype.RRSIG,
        rrset.rdtype,
        pair.algorithm,
        len(rrset.name) - 1,
        rrset.ttl,
        NOW + 86400,
        NOW - 3600,
        pair.key_tag(),
        ORIGIN,
        b"",
    )
    return cast(RRSIG, template.replace(signature=pair.sign(signed_data(rrset, template))))


def dnskey_keys(pair: keys.KeyPair) -> dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset]:
    return {ORIGIN: dns.rdataset.from_rdata(3600, pair.dnskey())}


def sample_rrset() -> dns.rrset.RRset:
    return dns.rrset.from_text(
        "WWW.Example.COM.", 300, "IN", "A", "192.0.2.2", "192.0.2.1", "198.51.100.7"
    )


# --- signatures --------------------------------------------------------------------


def test_signature_validates_with_dnspython(zsk: keys.KeyPair) -> None:
    rrset = sample_rrset()
    rrsig = make_rrsig(zsk, rrset)
    assert len(rrsig.signature) == SIG_SIZES[zsk.algorithm]
    dns.dnssec.validate_rrsig(rrset, rrsig, dnskey_keys(zsk), now=NOW)


def test_dnskey_rrset_self_signature_validates(ksk: keys.KeyPair) -> None:
    rrset = dns.rrset.from_rdata(ORIGIN, 3600, ksk.dnskey())
    rrsig = make_rrsig(ksk, rrset)
    dns.dnssec.validate_rrsig(rrset, rrsig, dnskey_keys(ksk), now=NOW)


def test_tampered_signature_or_data_fails(zsk: keys.KeyPair) -> None:
    rrset = sample_rrset()
    rrsig = make_rrsig(zsk, rrset)
    sig = bytearray(rrsig.signature)
    sig[len(sig) // 2] ^= 0x01
    with pytest.raises(dns.exception.ValidationFailure):
        dns.dnssec.validate_rrsig(
            rrset, cast(RRSIG, rrsig.replace(signature=bytes(sig))), dnskey_keys(zsk), now=NOW
        )
    other = dns.rrset.from_text("www.example.com.", 300, "IN", "A", "192.0.2.99")
    with pytest.raises(dns.exception.ValidationFailure):
        dns.dnssec.validate_rrsig(other, rrsig, dnskey_keys(zsk), now=NOW)


def test_signature_does_not_validate_with_another_key(zsk: keys.KeyPair) -> None:
    other = keys.generate(zsk.algorithm, 256)
    rrset = sample_rrset()
    rrsig = make_rrsig(zsk, rrset)
    forged = cast(RRSIG, rrsig.replace(key_tag=other.key_tag()))
    with pytest.raises(dns.exception.ValidationFailure):
        dns.dnssec.validate_rrsig(rrset, forged, dnskey_keys(other), now=NOW)


def test_ecdsa_signature_keeps_fixed_size_with_leading_zeros() -> None:
    """r and s are left-padded: about 1 in 128 signatures has a short r or s (1000 tries)."""
    pair = keys.generate(13, 256)
    rrset = sample_rrset()
    for _ in range(1000):
        rrsig = make_rrsig(pair, rrset)
        assert len(rrsig.signature) == 64
    dns.dnssec.validate_rrsig(rrset, rrsig, dnskey_keys(pair), now=NOW)


# --- DNSKEY and key tag --------------------------------------------------------------


def test_dnskey_matches_dnspython_encoding(ksk: keys.KeyPair) -> None:
    public = ksk.private_key.public_key()
    expected = dns.dnssec.make_dnskey(public, ksk.algorithm, ksk.flags)
    dnskey = ksk.dnskey()
    assert isinstance(dnskey, DNSKEY)
    assert dnskey == expected
    assert dnskey.protocol == 3
    assert dnskey.flags == 257


def test_key_tag_matches_rfc4034_appendix_b(ksk: keys.KeyPair) -> None:
    wire = ksk.dnskey().to_wire()
    assert wire is not None
    acc = 0
    for i, byte in enumerate(wire):
        acc += byte if i & 1 else byte << 8
    acc += (acc >> 16) & 0xFFFF
    assert ksk.key_tag() == acc & 0xFFFF


def test_zsk_and_ksk_differ_in_flags_and_tag() -> None:
    pair = keys.generate(13, 257)
    zsk = keys.KeyPair(13, 256, pair.private_key)
    assert zsk.dnskey().flags == 256
    assert zsk.key_tag() == (pair.key_tag() - 1) % 65536  # tag sums the flags field
    assert not zsk.is_ksk and pair.is_ksk


def test_known_ed25519_vector_rfc8080() -> None:
    """RFC 8080 section 6.1: private key ODIyNjAz... gives this DNSKEY and DS."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519

    seed = base64.b64decode("ODIyNjAzODQ2MjgwODAxMjI2NDUxOTAyMDQxNDIyNjI=")
    pair = keys.KeyPair(15, 257, ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    assert base64.b64encode(pair.dnskey().key).decode() == (
        "l02Woi0iS8Aa25FQkUd9RMzZHJpBoRQwAQEX1SxZJA4="
    )
    assert pair.key_tag() == 3613
    ds = pair.ds(dns.name.from_text("example.com."))
    assert ds.digest.hex() == "3aa5ab37efce57f737fc1627013fee07bdf241bd10f3b1964ab55c78e79a304b"


# --- DS against independent tools ------------------------------------------------------


def write_key_file(tmp_path: Path, pair: keys.KeyPair) -> Path:
    path = tmp_path / "dnskey.txt"
    path.write_text(f"{ORIGIN} 3600 IN DNSKEY {pair.dnskey().to_text()}\n")
    return path


def parse_ds_line(output: str) -> tuple[int, int, int, str]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    tokens = lines[0].split()
    assert tokens[0].lower() == str(ORIGIN)
    i = tokens.index("DS")
    return int(tokens[i + 1]), int(tokens[i + 2]), int(tokens[i + 3]), "".join(tokens[i + 4 :])


def ds_fields(pair: keys.KeyPair, digest: int) -> tuple[int, int, int, str]:
    ds = pair.ds(ORIGIN, digest)
    return ds.key_tag, ds.algorithm, ds.digest_type, ds.digest.hex()


@pytest.mark.external
@pytest.mark.parametrize("digest", [2, 4])
def test_ds_matches_bind_dnssec_dsfromkey(ksk: keys.KeyPair, digest: int, tmp_path: Path) -> None:
    tool = require_tool("dnssec-dsfromkey")
    path = write_key_file(tmp_path, ksk)
    option = ["-2"] if digest == 2 else ["-a", "SHA-384"]
    out = subprocess.run(
        [tool, *option, "-f", str(path), str(ORIGIN)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    tag, alg, dtype, hexdigest = parse_ds_line(out)
    assert (tag, alg, dtype, hexdigest.lower()) == ds_fields(ksk, digest)


@pytest.mark.external
@pytest.mark.parametrize("digest", [2, 4])
def test_ds_matches_ldns_key2ds(zsk: keys.KeyPair, digest: int, tmp_path: Path) -> None:
    tool = require_tool("ldns-key2ds")
    path = write_key_file(tmp_path, zsk)
    out = subprocess.run(
        [tool, "-n", "-f", f"-{digest}", str(path)],  # -f: also for keys without SEP
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
    ).stdout
    tag, alg, dtype, hexdigest = parse_ds_line(out)
    assert (tag, alg, dtype, hexdigest.lower()) == ds_fields(zsk, digest)


def test_ds_matches_hashlib(ksk: keys.KeyPair) -> None:
    owner = ORIGIN.to_wire()
    rdata = ksk.dnskey().to_wire()
    assert owner is not None and rdata is not None
    assert ksk.ds(ORIGIN).digest == hashlib.sha256(owner + rdata).digest()
    assert ksk.ds(ORIGIN, 4).digest == hashlib.sha384(owner + rdata).digest()


def test_ds_refuses_sha1_and_relative_owner() -> None:
    pair = keys.generate()
    with pytest.raises(UnsupportedAlgorithmError, match="use 2"):
        pair.ds(ORIGIN, 1)
    with pytest.raises(InvalidKeyError):
        pair.ds(dns.name.from_text("example", None))


# --- algorithms and flags ----------------------------------------------------------------


def test_default_is_ecdsap256_ksk() -> None:
    pair = keys.generate()
    assert (pair.algorithm, pair.flags) == (13, 257)


def test_rsa_default_is_2048_bits() -> None:
    pair = keys.generate(8)
    assert isinstance(pair.private_key, rsa.RSAPrivateKey)
    assert pair.private_key.key_size == 2048


@pytest.mark.parametrize("algorithm", [1, 3, 5, 6, 7, 10, 12, 16, 253])
def test_unsupported_algorithm(algorithm: int) -> None:
    with pytest.raises(UnsupportedAlgorithmError) as info:
        keys.generate(algorithm)
    message = str(info.value)
    assert str(algorithm) in message
    assert "ECDSAP256SHA256" in message and "ED25519" in message and "RSASHA256" in message
    assert isinstance(info.value, SignerError)


def test_unsupported_algorithm_names_it() -> None:
    with pytest.raises(UnsupportedAlgorithmError, match=r"5 \(RSASHA1\)"):
        keys.generate(5)


def test_bad_flags_and_mismatched_key_rejected() -> None:
    with pytest.raises(InvalidKeyError):
        keys.generate(13, 385)
    p256 = keys.generate(13)
    with pytest.raises(InvalidKeyError):
        keys.KeyPair(14, 257, p256.private_key)
    with pytest.raises(InvalidKeyError):
        keys.KeyPair(15, 257, p256.private_key)
    with pytest.raises(UnsupportedAlgorithmError):
        keys.KeyPair(16, 257, p256.private_key)


# --- no private material in repr/str -----------------------------------------------


def test_repr_and_str_hold_no_private_material(ksk: keys.KeyPair) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = ksk.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(ksk), str(ksk), f"{ksk}", f"{ksk!r}"):
        assert "private" not in text.lower()
        assert "PRIVATE" not in text
        assert body[:32] not in text and body[-32:] not in text
        assert "object at 0x" not in text
        assert str(ksk.key_tag()) in text
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(ksk)


# --- key files --------------------------------------------------------------------------


def test_save_load_round_trip(ksk: keys.KeyPair, tmp_path: Path) -> None:
    directory = tmp_path / "keys" / "example.com"
    path = keys.save(ksk, directory, ORIGIN)
    assert path.parent == directory
    assert path.name == f"Kexample.com.+{ksk.algorithm:03d}+{ksk.key_tag():05d}.pem"
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert [p.name for p in directory.iterdir()] == [path.name]  # no temp file left
    loaded = keys.load_keypair(path, ksk.algorithm, ksk.flags)
    assert loaded.dnskey() == ksk.dnskey()
    assert keys.load_keypair(path).dnskey() == ksk.dnskey()  # algorithm from key type
    rrset = sample_rrset()
    dns.dnssec.validate_rrsig(rrset, make_rrsig(loaded, rrset), dnskey_keys(ksk), now=NOW)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_save_modes_are_exact_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    old = os.umask(umask)
    try:
        path = keys.save(keys.generate(), tmp_path / "k", "example.org")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_save_twice_is_idempotent(tmp_path: Path) -> None:
    pair = keys.generate(15)
    first = keys.save(pair, tmp_path / "k", ORIGIN)
    assert keys.save(pair, tmp_path / "k", ORIGIN) == first
    assert len(list((tmp_path / "k").iterdir())) == 1


def test_save_refuses_to_overwrite_a_different_key(tmp_path: Path) -> None:
    pair = keys.generate(13)
    directory = tmp_path / "k"
    path = keys.save(pair, directory, ORIGIN)
    other = keys.generate(13)
    # Simulate a key tag collision: the other key under this key's file name.
    os.unlink(path)
    keys.save(other, directory, ORIGIN).rename(path)
    with pytest.raises(KeyFileError, match="different key"):
        keys.save(pair, directory, ORIGIN)
    # The existing file still holds the other key.
    assert keys.public_key_wire(keys.load(path)) == keys.public_key_wire(other.private_key)


def test_load_refuses_group_readable_file(tmp_path: Path) -> None:
    path = keys.save(keys.generate(), tmp_path / "k", ORIGIN)
    os.chmod(path, 0o644)
    with pytest.raises(KeyPermissionError, match="chmod 600") as info:
        keys.load(path)
    assert str(path) in str(info.value)
    os.chmod(path, 0o640)
    with pytest.raises(KeyPermissionError, match="chmod"):
        keys.load_keypair(path)
    os.chmod(path, 0o600)
    keys.load(path)


def test_load_refuses_open_directory(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    path = keys.save(keys.generate(), directory, ORIGIN)
    os.chmod(directory, 0o755)
    with pytest.raises(KeyPermissionError, match="chmod 700") as info:
        keys.load(path)
    assert str(directory) in str(info.value)
    with pytest.raises(KeyPermissionError, match="chmod 700"):
        keys.save(keys.generate(), directory, ORIGIN)


def test_load_refuses_symlink(tmp_path: Path) -> None:
    path = keys.save(keys.generate(), tmp_path / "k", ORIGIN)
    link = path.parent / "Klink.pem"
    link.symlink_to(path)
    with pytest.raises(KeyFileError):
        keys.load(link)


def test_corrupt_file_is_key_file_error(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    path = keys.save(keys.generate(), directory, ORIGIN)
    data = path.read_bytes()
    os.chmod(path, 0o600)
    path.write_bytes(data[:40] + b"garbage" + data[60:])
    with pytest.raises(KeyFileError) as info:
        keys.load(path)
    assert str(path) in str(info.value)
    empty = directory / "empty.pem"
    fd = os.open(empty, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(KeyFileError, match=r"empty\.pem"):
        keys.load(empty)


def test_missing_file_is_key_file_error(tmp_path: Path) -> None:
    directory = tmp_path / "k"
    keys.save(keys.generate(), directory, ORIGIN)
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.load(directory / "Knothere.pem")


def test_load_keypair_with_wrong_flags_is_refused(tmp_path: Path) -> None:
    pair = keys.generate(13, 257)
    path = keys.save(pair, tmp_path / "k", ORIGIN)
    with pytest.raises(KeyFileError, match="flags"):
        keys.load_keypair(path, flags=256)
    with pytest.raises(InvalidKeyError):
        keys.load_keypair(path, algorithm=14)


def test_unsupported_key_type_in_file(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448

    directory = tmp_path / "k"
    directory.mkdir(mode=0o700)
    for name, key in (
        ("ed448.pem", ed448.Ed448PrivateKey.generate()),
        ("p521.pem", ec.generate_private_key(ec.SECP521R1())),
    ):
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(
            fd,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        os.close(fd)
        with pytest.raises(UnsupportedAlgorithmError):
            keys.load_keypair(path)


def test_signer_imports_neither_nameserver_nor_sync() -> None:
    code = (
        "import sys, signer, signer.keys, signer.errors; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('nameserver', 'sync')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=PROJECT_ROOT)
