"""Secrets and TSIG keys: ``[key.NAME]`` tables, and every credential a setting names.

A secret is given one of three ways, the same for a TSIG key and a provider's API key::

    secret = "base64..."                   # inline: the file must be private (mode 0600)
    secret-file = "/etc/zonefan/xfr.key"   # a file only its owner can read
    secret-env = "ZONEFAN_XFR_SECRET"      # an environment variable

A config file or secret file that group or others can read is refused, as the DNSSEC key
files are: a secret anybody on the host can read is no secret.

A ``[key.NAME]`` table may also set ``fudge`` (a duration, default ``"300s"``): how far a
request's time signed may be from the server's clock, whatever Fudge the request carries.
"""

from __future__ import annotations

import base64
import binascii
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.tsig

from settings.grammar import format_duration, parse_seconds

if TYPE_CHECKING:
    from settings.table import Table

TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}
DEFAULT_TSIG_ALGORITHM = "hmac-sha256"
# RFC 8945 §6: a key shorter than the HMAC output weakens it; 16 bytes is the floor BIND's
# tsig-keygen and `openssl rand -base64 32` are well above.
MIN_TSIG_SECRET = 16
# The time window a server accepts a request signed with the key in, whatever Fudge the
# request carries: RFC 8945 §10 recommends 300 s. At most what the TSIG Fudge field holds.
DEFAULT_FUDGE = 300
MAX_FUDGE = 0xFFFF
KEY_FIELDS = ("algorithm", "secret", "secret-file", "secret-env", "fudge")


def private_mode_problem(path: Path) -> str | None:
    """Why ``path`` is not private (group or others may read, write or execute it), or
    None: the one check of config files with inline secrets and of secret files."""
    mode = path.stat().st_mode
    if not mode & 0o077:
        return None
    others = mode | mode >> 3  # group's bits and others' together
    can = " and ".join(
        verb for bit, verb in ((4, "read"), (2, "write"), (1, "execute")) if others & bit
    )
    return f"{path} has mode {stat.filemode(mode)}, so other users can {can} it; `chmod 600 {path}`"


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key (RFC 8945). The secret is never printed (``repr`` leaves it out)."""

    name: dns.name.Name
    algorithm: str  # e.g. "hmac-sha256"
    secret: bytes = field(repr=False)
    fudge: int = DEFAULT_FUDGE  # seconds a request's time may be off ours (RFC 8945 §5.2.3)

    @property
    def dns_key(self) -> dns.tsig.Key:
        """The key as dnspython's dns.tsig.Key."""
        return dns.tsig.Key(self.name, self.secret, TSIG_ALGORITHMS[self.algorithm])

    @property
    def algorithm_name(self) -> dns.name.Name:
        return TSIG_ALGORITHMS[self.algorithm]

    @property
    def secret_text(self) -> str:
        """The secret in base64, as configs of other servers write it."""
        return base64.b64encode(self.secret).decode("ascii")


# Settings whose inline form is a secret (``[key.NAME] secret``, a provider's ``api-key``,
# ``api-token`` or ``token``, AWS credentials): a file holding one is refused when it is
# loaded, by every command, if others can read it.
CREDENTIALS = (
    "secret",
    "api-key",
    "api-token",
    "access-key-id",
    "secret-access-key",
    "session-token",
)
INLINE_SECRET_PROBLEM = "an inline secret needs a private config file"


def read_secret(table: Table, key: str, required: bool = True) -> str | None:
    """The secret ``key`` of ``table`` from ``KEY``, ``KEY-file`` or ``KEY-env`` (exactly
    one); None when none is given and it is not ``required``."""
    assert key in CREDENTIALS, f"{key!r}: add it to CREDENTIALS, so load_toml checks the file"
    given = [k for k in (key, f"{key}-file", f"{key}-env") if k in table]
    if len(given) > 1:
        raise table.error(given[1], f"give one of {key}, {key}-file or {key}-env, not several")
    if not given:
        if not required:
            return None
        raise table.error(
            key,
            f'missing: set {key}-env = "VARIABLE", {key}-file = "/path" or {key} = "..." '
            "(inline only in a file only its owner can read)",
        )
    which = given[0]
    if which == key:
        text = table.get(key, _text)
        problem = table.source.private_problem()
        if problem is not None:
            raise table.error(key, f"{INLINE_SECRET_PROBLEM}: {problem}")
        return text
    if which.endswith("-env"):
        var = table.get(which, _text)
        value = table.source.env.get(var, "").strip()
        if not value:
            raise table.error(which, f"environment variable {var!r} is not set")
        return value
    path = table.source.resolve(table.get(which, _text))
    try:
        problem = private_mode_problem(path)
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise table.error(which, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if problem is not None:
        raise table.error(which, problem)
    if not text:
        raise table.error(which, f"{path} is empty")
    return text


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} must be a non-empty string")
    return value.strip()


def _algorithm(value: object) -> str:
    text = str(value).strip().lower().rstrip(".")
    if text not in TSIG_ALGORITHMS:
        raise ValueError(f"{value!r} is not supported; use one of {', '.join(TSIG_ALGORITHMS)}")
    return text


def _fudge(value: object) -> int:
    seconds = parse_seconds(value)
    if not 1 <= seconds <= MAX_FUDGE:
        raise ValueError(
            f"{value!r} is outside 1s..{format_duration(MAX_FUDGE)} (the TSIG Fudge field); "
            f"RFC 8945 recommends {DEFAULT_FUDGE}s"
        )
    return seconds


def parse_tsig_key(label: str, table: Table) -> TsigKey:
    """One ``[key.NAME]`` table: the key's DNS name is NAME."""
    table.allow(KEY_FIELDS)
    try:
        name = dns.name.from_text(label)
    except dns.exception.DNSException as exc:
        raise table.error("", f"the key name {label!r} is not a domain name: {exc}") from None
    algorithm = table.get("algorithm", _algorithm, DEFAULT_TSIG_ALGORITHM)
    text = read_secret(table, "secret")
    assert text is not None
    where = next(k for k in ("secret", "secret-file", "secret-env") if k in table)
    try:
        secret = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise table.error(where, f"the secret is not valid base64: {exc}") from None
    if len(secret) < MIN_TSIG_SECRET:
        raise table.error(
            where,
            f"the secret is {len(secret)} bytes; use at least {MIN_TSIG_SECRET} "
            "(e.g. `openssl rand -base64 32`)",
        )
    return TsigKey(name, algorithm, secret, table.get("fudge", _fudge, DEFAULT_FUDGE))


def parse_tsig_keys(table: Table | None) -> dict[str, TsigKey]:
    """Every ``[key.NAME]`` table of ``table`` (the ``key`` table), by NAME as written."""
    if table is None:
        return {}
    return {label: parse_tsig_key(label, sub) for label, sub in table.tables()}
