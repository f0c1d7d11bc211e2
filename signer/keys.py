"""DNSSEC key material: generation, DNSKEY/DS records, signing and private key files.

Supported algorithms (RFC 8624 recommendations for signing):

* 13 ECDSAP256SHA256 (default) and 14 ECDSAP384SHA384 -- RFC 6605
* 15 ED25519 -- RFC 8080
* 8 RSASHA256 -- RFC 5702 (public key format RFC 3110), 2048 bits by default

Private keys are stored as unencrypted PKCS#8 PEM files, mode 0600, inside a
directory of mode 0700.  Loading refuses files or directories that other users
could access.  A private key never appears in ``repr``/``str`` of a :class:`KeyPair`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeAlias, cast

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from dns.dnssectypes import DSDigest
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS

from signer.errors import (
    InvalidKeyError,
    KeyFileError,
    KeyPermissionError,
    UnsupportedAlgorithmError,
)

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

RSASHA256 = 8
ECDSAP256SHA256 = 13
ECDSAP384SHA384 = 14
ED25519 = 15

#: Supported DNSSEC algorithm numbers, in order of preference.
SUPPORTED_ALGORITHMS: tuple[int, ...] = (ECDSAP256SHA256, ECDSAP384SHA384, ED25519, RSASHA256)
DEFAULT_ALGORITHM = ECDSAP256SHA256

ZSK_FLAGS = 256  # ZONE
KSK_FLAGS = 257  # ZONE | SEP (also used for a CSK)
SUPPORTED_FLAGS: tuple[int, ...] = (ZSK_FLAGS, KSK_FLAGS)

DS_SHA256 = 2
DS_SHA384 = 4
SUPPORTED_DIGESTS: tuple[int, ...] = (DS_SHA256, DS_SHA384)

DEFAULT_RSA_BITS = 2048
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096

_EC_CURVES: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    ECDSAP256SHA256: (ec.SECP256R1, 32),
    ECDSAP384SHA384: (ec.SECP384R1, 48),
}
_MAX_KEY_FILE_BYTES = 64 * 1024
_KEY_FILE_RE = re.compile(r"^K(?P<zone>.+)\+(?P<alg>\d{3})\+(?P<tag>\d{5})\.pem$")


def _algorithm_name(algorithm: int) -> str:
    """Mnemonic of a DNSSEC algorithm number, e.g. ``13 (ECDSAP256SHA256)``."""
    try:
        text = dns.dnssec.algorithm_to_text(algorithm)
    except Exception:  # pragma: no cover - dnspython renders unknown numbers itself
        text = str(algorithm)
    return f"{algorithm} ({text})" if text != str(algorithm) else str(algorithm)


def check_algorithm(algorithm: int) -> int:
    """Return ``algorithm`` if zonefan can sign with it, else raise UnsupportedAlgorithmError."""
    if isinstance(algorithm, bool) or not isinstance(algorithm, int):
        raise UnsupportedAlgorithmError(
            f"DNSSEC algorithm {algorithm!r} is not a number; use one of "
            + ", ".join(_algorithm_name(a) for a in SUPPORTED_ALGORITHMS)
        )
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise UnsupportedAlgorithmError(
            f"DNSSEC algorithm {_algorithm_name(algorithm)} is not supported; use one of "
            + ", ".join(_algorithm_name(a) for a in SUPPORTED_ALGORITHMS)
        )
    return int(algorithm)


def _check_flags(flags: int) -> None:
    if flags not in SUPPORTED_FLAGS:
        raise InvalidKeyError(
            f"DNSKEY flags {flags} are not supported; use 256 (ZSK) or 257 (KSK/CSK)"
        )


def _check_key_matches(private_key: object, algorithm: int) -> None:
    """Raise InvalidKeyError unless ``private_key`` is usable with ``algorithm``."""
    if algorithm in _EC_CURVES:
        curve_cls, _ = _EC_CURVES[algorithm]
        if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
            private_key.curve, curve_cls
        ):
            return
        expected = f"an ECDSA key on curve {curve_cls.name}"
    elif algorithm == ED25519:
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            return
        expected = "an Ed25519 key"
    else:  # RSASHA256
        if isinstance(private_key, rsa.RSAPrivateKey):
            if not MIN_RSA_BITS <= private_key.key_size <= MAX_RSA_BITS:
                raise InvalidKeyError(
                    f"RSA key of {private_key.key_size} bits: use {MIN_RSA_BITS} to "
                    f"{MAX_RSA_BITS} bits, or better an ECDSA/Ed25519 key"
                )
            return
        expected = "an RSA key"
    raise InvalidKeyError(
        f"algorithm {_algorithm_name(algorithm)} needs {expected}, "
        f"got a {type(private_key).__name__}; pass the algorithm that matches the key"
    )


def _rsa_public_wire(public_key: rsa.RSAPublicKey) -> bytes:
    """RFC 3110 section 2: exponent length, exponent, modulus (big-endian, minimal)."""
    numbers = public_key.public_numbers()
    exponent = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    if len(exponent) <= 255:
        prefix = struct.pack("!B", len(exponent))
    else:  # pragma: no cover - cryptography never makes such exponents
        prefix = struct.pack("!BH", 0, len(exponent))
    return prefix + exponent + modulus


def public_key_wire(private_key: PrivateKey) -> bytes:
    """The public key field of a DNSKEY for ``private_key`` (RFC 6605, 8080, 3110)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        point = private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return point[1:]  # RFC 6605 section 4: x || y, without the 0x04 prefix
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return _rsa_public_wire(private_key.public_key())


def _der_to_raw(der: bytes, size: int) -> bytes:
    """ECDSA signature DER ``SEQUENCE {r INTEGER, s INTEGER}`` to ``r || s`` of ``size`` each.

    Slicing the DER is several times cheaper than ``decode_dss_signature`` plus two
    ``int.to_bytes``.  For P-256/P-384 the SEQUENCE is always shorter than 128 bytes
    (short-form lengths); anything unexpected goes through ``decode_dss_signature``.
    """
    length = len(der)
    r_len = der[3] if length > 3 else length
    s_at = 4 + r_len  # where the INTEGER s starts
    if (
        length > 5
        and der[0] == 0x30
        and der[1] == length - 2
        and der[2] == 0x02
        and r_len <= size + 1
        and s_at + 1 < length
        and der[s_at] == 0x02
        and der[s_at + 1] == length - s_at - 2 <= size + 1
    ):
        # INTEGERs are minimal and signed: drop a 0x00 sign octet, left-pad short ones.
        r = der[4:s_at][-size:].rjust(size, b"\0")
        return r + der[s_at + 2 :][-size:].rjust(size, b"\0")
    r_int, s_int = decode_dss_signature(der)
    return r_int.to_bytes(size, "big") + s_int.to_bytes(size, "big")


def _make_signer(key: PrivateKey, algorithm: int) -> Callable[[bytes], bytes]:
    """A function signing data with ``key`` for ``algorithm``, returning RRSIG wire format."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, size = _EC_CURVES[algorithm]
        ecdsa = ec.ECDSA(hashes.SHA256() if algorithm == ECDSAP256SHA256 else hashes.SHA384())
        ec_sign = key.sign

        def sign_ecdsa(data: bytes) -> bytes:
            return _der_to_raw(ec_sign(data, ecdsa), size)

        return sign_ecdsa
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    pkcs1, sha256, rsa_sign = padding.PKCS1v15(), hashes.SHA256(), key.sign

    def sign_rsa(data: bytes) -> bytes:
        return rsa_sign(data, pkcs1, sha256)

    return sign_rsa


@dataclass(frozen=True, eq=False)
class KeyPair:
    """A DNSSEC private key with its algorithm and DNSKEY flags.

    Two KeyPair objects compare by identity; compare ``dnskey()`` to compare keys.
    The private key is kept out of ``repr``/``str``.
    """

    algorithm: int
    flags: int
    private_key: PrivateKey = field(repr=False)
    # The key tag is needed for every RRSIG made; computed once, from the checked key.
    _key_tag: int = field(init=False, repr=False)
    # sign() is the hot path of zone signing: the algorithm dispatch and the hash and
    # padding objects are resolved once here, not per signature.
    _signer: Callable[[bytes], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm)
        _check_flags(self.flags)
        _check_key_matches(self.private_key, self.algorithm)
        object.__setattr__(self, "_key_tag", int(dns.dnssec.key_id(self.dnskey())))
        object.__setattr__(self, "_signer", _make_signer(self.private_key, self.algorithm))

    def __repr__(self) -> str:
        return (
            f"KeyPair(algorithm={_algorithm_name(self.algorithm)}, flags={self.flags}, "
            f"key_tag={self.key_tag()})"
        )

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("KeyPair holds a private key and cannot be pickled; use save()/load()")

    @property
    def is_ksk(self) -> bool:
        """True for a key with the SEP flag (KSK or CSK)."""
        return self.flags == KSK_FLAGS

    def dnskey(self) -> DNSKEY:
        """The DNSKEY rdata (protocol 3) holding this key's public half."""
        wire = struct.pack("!HBB", self.flags, 3, self.algorithm)
        wire += public_key_wire(self.private_key)
        rdata = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
        return cast(DNSKEY, rdata)

    def key_tag(self) -> int:
        """The RFC 4034 Appendix B key tag of :meth:`dnskey`."""
        return self._key_tag

    def ds(self, origin: dns.name.Name, digest: int = DS_SHA256) -> DS:
        """DS rdata for this key at ``origin``: digest 2 (SHA-256, default) or 4 (SHA-384)."""
        if digest not in SUPPORTED_DIGESTS:
            raise UnsupportedAlgorithmError(
                f"DS digest type {digest} is not supported; use 2 (SHA-256) or 4 (SHA-384)"
            )
        if not origin.is_absolute():
            raise InvalidKeyError(f"DS owner {origin} must be an absolute name (end with '.')")
        return dns.dnssec.make_ds(origin, self.dnskey(), DSDigest(digest))

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` and return the signature in DNSSEC RRSIG wire format.

        ECDSA: r || s, each fixed-size (RFC 6605 section 4); Ed25519: raw 64 bytes
        (RFC 8080); RSA: PKCS#1 v1.5 with SHA-256 (RFC 5702).
        """
        return self._signer(data)


def generate(
    algorithm: int = DEFAULT_ALGORITHM, flags: int = KSK_FLAGS, rsa_bits: int = DEFAULT_RSA_BITS
) -> KeyPair:
    """Generate a new key pair (``flags`` 257 for a KSK/CSK, 256 for a ZSK)."""
    check_algorithm(algorithm)
    _check_flags(flags)
    private_key: PrivateKey
    if algorithm in _EC_CURVES:
        curve_cls, _ = _EC_CURVES[algorithm]
        private_key = ec.generate_private_key(curve_cls())
    elif algorithm == ED25519:
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        if not MIN_RSA_BITS <= rsa_bits <= MAX_RSA_BITS:
            raise InvalidKeyError(f"RSA key size {rsa_bits}: use {MIN_RSA_BITS} to {MAX_RSA_BITS}")
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    return KeyPair(algorithm=algorithm, flags=flags, private_key=private_key)


def _zone_file_label(zone: dns.name.Name | str) -> str:
    """Zone name as used in key file names: absolute text, '/' and NUL escaped."""
    name = dns.name.from_text(zone) if isinstance(zone, str) else zone
    if not name.is_absolute():
        name = name.derelativize(dns.name.root)
    text = name.to_text()
    return text.replace("/", "\\047").replace("\x00", "\\000")


def key_file_name(pair: KeyPair, zone: dns.name.Name | str) -> str:
    """BIND-style file name ``K{zone}+{alg:03d}+{tag:05d}.pem`` for ``pair``."""
    return f"K{_zone_file_label(zone)}+{pair.algorithm:03d}+{pair.key_tag():05d}.pem"


def _mode_text(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"


def _ensure_private_directory(directory: Path) -> None:
    """Create ``directory`` with mode 0700 if missing; refuse one others can access."""
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        os.chmod(directory, 0o700)  # the umask may have removed bits; make it exact
    _check_directory(directory)


def _check_directory(directory: Path) -> None:
    try:
        st = os.stat(directory)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key directory {directory} does not exist") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise KeyFileError(f"key directory {directory} is not a directory")
    if st.st_mode & 0o077:
        raise KeyPermissionError(
            f"key directory {directory} has mode {_mode_text(st.st_mode)}, other users can "
            f"access it; run: chmod 700 {directory}"
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(pair: KeyPair, directory: Path | str, zone: dns.name.Name | str) -> Path:
    """Write ``pair``'s private key as PKCS#8 PEM into ``directory`` and return its path.

    The directory is created with mode 0700 if missing (an existing one must not be
    accessible by group/others).  The file is written atomically with mode 0600.
    Saving the same key again is a no-op; a different key with the same file name
    (a key tag collision) raises KeyFileError and leaves the existing file alone.
    """
    directory = Path(directory)
    _ensure_private_directory(directory)
    target = directory / key_file_name(pair, zone)
    pem = pair.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = directory / f".{target.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(pem)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)  # atomic and never overwrites an existing key
        except FileExistsError:
            existing = load(target)
            if public_key_wire(existing) != public_key_wire(pair.private_key):
                raise KeyFileError(
                    f"{target} already holds a different key with the same key tag; "
                    "generate a new key instead"
                ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_directory(directory)
    return target


def _read_private_file(path: Path) -> bytes:
    """Read a key file after checking its directory and its own permissions."""
    _check_directory(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} does not exist; check the key directory") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyPermissionError(
                f"key file {path} has mode {_mode_text(st.st_mode)}, other users can access "
                f"it; run: chmod 600 {path}"
            )
        if st.st_size > _MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"key file {path} is too large to be a private key")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load(path: Path | str) -> PrivateKey:
    """Load an unencrypted PEM private key, refusing unsafe permissions.

    Raises KeyPermissionError if the directory or file is accessible by group/others,
    KeyFileError if the file is missing or not a usable PEM key.
    """
    path = Path(path)
    data = _read_private_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise KeyFileError(
            f"key file {path} is encrypted; store it unencrypted (PKCS#8 PEM, mode 0600)"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(
            f"key file {path} is not a valid PEM private key; restore it from backup"
        ) from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise UnsupportedAlgorithmError(
            f"key file {path} holds a {type(key).__name__}; use one of "
            + ", ".join(_algorithm_name(a) for a in SUPPORTED_ALGORITHMS)
        )
    return key


def _algorithm_for_key(key: PrivateKey, path: Path) -> int:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        for algorithm, (curve_cls, _) in _EC_CURVES.items():
            if isinstance(key.curve, curve_cls):
                return algorithm
        raise UnsupportedAlgorithmError(
            f"key file {path} holds an ECDSA key on curve {key.curve.name}; use "
            f"{_algorithm_name(ECDSAP256SHA256)} or {_algorithm_name(ECDSAP384SHA384)}"
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return ED25519
    return RSASHA256


def load_keypair(path: Path | str, algorithm: int | None = None, flags: int = KSK_FLAGS) -> KeyPair:
    """Load a key file as a KeyPair.

    ``algorithm`` defaults to the one implied by the key type.  When the file name
    has the ``K{zone}+{alg}+{tag}.pem`` form, its algorithm and key tag must match
    the loaded key with ``flags`` (else KeyFileError: wrong flags or renamed file).
    """
    path = Path(path)
    key = load(path)
    if algorithm is None:
        algorithm = _algorithm_for_key(key, path)
    check_algorithm(algorithm)
    try:
        pair = KeyPair(algorithm=algorithm, flags=flags, private_key=key)
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"key file {path}: {exc}") from exc
    match = _KEY_FILE_RE.match(path.name)
    if match is not None:
        named_alg, named_tag = int(match["alg"]), int(match["tag"])
        if named_alg != pair.algorithm or named_tag != pair.key_tag():
            raise KeyFileError(
                f"key file {path} is named for algorithm {named_alg} tag {named_tag} but "
                f"holds algorithm {pair.algorithm} tag {pair.key_tag()} with flags "
                f"{flags}; pass the right flags (256 ZSK, 257 KSK) or rename the file"
            )
    return pair
