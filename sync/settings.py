"""Small parsers shared by the sync config and the target factories: addresses, durations,
TSIG keys and credentials. Every error is a :class:`SyncConfigError` naming the setting.

Credentials are read from an environment variable (``NAME-env``) or a file (``NAME-file``)
named in the config, never from the config itself, the state database or the logs.
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.tsig

from sync.errors import SyncConfigError

TSIG_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Address:
    """An IP address and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key from ``[key.NAME]``; the secret is never printed."""

    name: dns.name.Name
    algorithm: str
    secret: bytes = field(repr=False)

    @property
    def dns_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name, self.secret, TSIG_ALGORITHMS[self.algorithm])

    @property
    def secret_text(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")


@dataclass(frozen=True)
class TargetContext:
    """What a target factory may need beyond its own table: the configured TSIG keys, the
    primary's address (where provider-side secondaries transfer from) and the environment
    credentials are read from."""

    keys: Mapping[str, TsigKey]
    primary: Address | None
    env: Mapping[str, str]

    def key(self, section: Mapping[str, Any], setting: str, field_name: str) -> TsigKey | None:
        """The key named by ``section[field_name]`` (None when absent)."""
        value = section.get(field_name)
        if value is None:
            return None
        if not isinstance(value, str) or value not in self.keys:
            known = ", ".join(sorted(self.keys)) or "none"
            raise SyncConfigError(
                f"{setting}.{field_name}",
                f"unknown TSIG key {value!r}; define it as [key.{value}] (defined: {known})",
            )
        return self.keys[value]


def parse_address(value: Any, setting: str, default_port: int = 53) -> Address:
    """``ADDR``, ``ADDR:PORT``, ``[V6]:PORT`` or ``ADDR@PORT`` to an :class:`Address`."""
    if not isinstance(value, str) or not value:
        raise SyncConfigError(setting, f"expected an address like 127.0.0.1:5353, got {value!r}")
    text = value.replace("@", ":") if "@" in value else value
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port_text = rest.removeprefix(":")
            port = _port(port_text, setting, value)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, setting, value)
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise SyncConfigError(setting, f"{host!r} in {value!r} is not an IP address") from None
    return Address(host, port)


def _port(text: str, setting: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SyncConfigError(setting, f"bad port in {value!r}")
    return int(text)


def parse_duration(value: Any, setting: str) -> float:
    """Seconds from a number or text like ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise SyncConfigError(setting, f"expected a duration like 30s, 5m or 1h, got {value!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def read_secret(
    section: Mapping[str, Any], setting: str, field_name: str, env: Mapping[str, str]
) -> str | None:
    """The credential ``field_name`` given as ``FIELD-env`` (a variable name) or
    ``FIELD-file`` (a path); None when neither is set. A literal ``FIELD`` is refused so that
    secrets stay out of config files kept in version control."""
    if field_name in section:
        raise SyncConfigError(
            f"{setting}.{field_name}",
            f'put the secret in an environment variable ({field_name}-env = "VAR") or a '
            f'file ({field_name}-file = "/path"), not in the config',
        )
    var = section.get(f"{field_name}-env")
    path = section.get(f"{field_name}-file")
    if var is not None and path is not None:
        raise SyncConfigError(
            f"{setting}.{field_name}-env", f"set {field_name}-env or {field_name}-file, not both"
        )
    if var is not None:
        if not isinstance(var, str) or not env.get(var):
            raise SyncConfigError(
                f"{setting}.{field_name}-env", f"environment variable {var!r} is not set"
            )
        return env[var].strip()
    if path is not None:
        try:
            return Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SyncConfigError(
                f"{setting}.{field_name}-file", f"cannot read {path!r}: {exc.strerror}"
            ) from None
    return None


def require_secret(
    section: Mapping[str, Any], setting: str, field_name: str, env: Mapping[str, str]
) -> str:
    """Like :func:`read_secret` but the credential must be given."""
    value = read_secret(section, setting, field_name, env)
    if value is None:
        raise SyncConfigError(
            f"{setting}.{field_name}-env",
            f"missing credential: set {field_name}-env or {field_name}-file",
        )
    return value


def parse_keys(table: Any, env: Mapping[str, str]) -> dict[str, TsigKey]:
    """``[key.NAME]`` tables: ``algorithm`` (default hmac-sha256) and ``secret-env`` or
    ``secret-file`` holding the base64 secret."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise SyncConfigError("key", "must be a table of [key.NAME] tables")
    keys: dict[str, TsigKey] = {}
    for name, section in table.items():
        setting = f"key.{name}"
        if not isinstance(section, dict):
            raise SyncConfigError(setting, "must be a table")
        algorithm = section.get("algorithm", "hmac-sha256")
        if algorithm not in TSIG_ALGORITHMS:
            raise SyncConfigError(
                f"{setting}.algorithm",
                f"unknown algorithm {algorithm!r}; use one of {', '.join(TSIG_ALGORITHMS)}",
            )
        secret_text = require_secret(section, setting, "secret", env)
        try:
            secret = base64.b64decode(secret_text, validate=True)
        except (binascii.Error, ValueError):
            raise SyncConfigError(f"{setting}.secret", "the secret is not base64") from None
        try:
            key_name = dns.name.from_text(name)
        except dns.exception.DNSException as exc:
            raise SyncConfigError(setting, f"bad key name: {exc}") from None
        keys[name] = TsigKey(key_name, algorithm, secret)
    return keys


def parse_names(value: Any, setting: str, what: str = "host names") -> list[dns.name.Name]:
    """A list of domain names (zones, nameservers), absolute."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SyncConfigError(setting, f"expected a list of {what}, got {value!r}")
    try:
        return [dns.name.from_text(v) for v in value]
    except dns.exception.DNSException as exc:
        raise SyncConfigError(setting, f"bad name in {value!r}: {exc}") from None


def parse_count(section: Mapping[str, Any], setting: str, field_name: str, default: int) -> int:
    """A positive integer setting (``batch-size``)."""
    value = section.get(field_name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SyncConfigError(
            f"{setting}.{field_name}", f"expected a positive integer, got {value!r}"
        )
    return value


def parse_rate(section: Mapping[str, Any], setting: str) -> float:
    """``rate-limit``: requests per second, 0 for none."""
    value = section.get("rate-limit", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SyncConfigError(
            f"{setting}.rate-limit", f"expected requests per second (0: no limit), got {value!r}"
        )
    return float(value)


def parse_timeout(section: Mapping[str, Any], setting: str, default: float) -> float:
    """``timeout``: a duration above zero."""
    timeout = parse_duration(section.get("timeout", default), f"{setting}.timeout")
    if timeout <= 0:
        raise SyncConfigError(f"{setting}.timeout", "must be more than 0 seconds")
    return timeout
