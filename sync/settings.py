"""The settings grammar (:mod:`settings`) as the sync config and the target factories use
it: addresses, durations, TSIG keys and credentials. Every error is a
:class:`SyncConfigError` naming the setting.

A credential is ``NAME`` (inline, only in a config file no one else can read), ``NAME-file``
(a private file) or ``NAME-env`` (an environment variable); it never goes to the state
database or the logs.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name

from settings import Address, SettingsError, Source, Table, TsigKey, grammar, parse_tsig_keys
from settings.secrets import read_secret as _read_secret
from sync.errors import SyncConfigError

__all__ = [
    "ENGINE_FIELDS",
    "Address",
    "TargetContext",
    "TsigKey",
    "check_fields",
    "parse_address",
    "parse_count",
    "parse_duration",
    "parse_keys",
    "parse_names",
    "parse_rate",
    "parse_timeout",
    "parse_url",
    "read_secret",
    "require_secret",
    "sync_error",
]


# Keys of a [target.NAME] table the engine reads (sync.config), whatever the target's type.
ENGINE_FIELDS = frozenset({"type", "zones", "drift", "max-change-share", "strict"})


def check_fields(
    section: Mapping[str, Any],
    setting: str,
    allowed: Iterable[str],
    secrets: Iterable[str] = (),
) -> None:
    """Refuse a key of ``section`` that is neither the engine's, nor in ``allowed``, nor a
    credential of ``secrets`` (``NAME``, ``NAME-env``, ``NAME-file``); the error names it."""
    own = set(allowed)
    for secret in secrets:
        own |= {secret, f"{secret}-env", f"{secret}-file"}
    unknown = sorted(k for k in section if k not in own and k not in ENGINE_FIELDS)
    if unknown:
        listed = ", ".join(sorted(own - set(secrets)))
        raise SyncConfigError(
            f"{setting}.{unknown[0]}",
            f"unknown setting(s) {', '.join(unknown)}; allowed: {listed}",
        )


@dataclass(frozen=True)
class TargetContext:
    """What a target factory may need beyond its own table: the configured TSIG keys, the
    primary's address (where provider-side secondaries transfer from), the environment
    credentials are read from, and the config file (relative paths, inline secrets)."""

    keys: Mapping[str, TsigKey]
    primary: Address | None
    env: Mapping[str, str]
    path: Path | None = None

    @property
    def source(self) -> Source:
        return Source(self.path, self.env)

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


def sync_error(exc: SettingsError) -> SyncConfigError:
    """A settings error as the sync package's own (the same file, key path and reason)."""
    if isinstance(exc, SyncConfigError):
        return exc
    return SyncConfigError(exc.path, exc.reason, exc.source)


def parse_address(value: Any, setting: str, default_port: int = 53) -> Address:
    """An :class:`Address` in the settings grammar (``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``,
    ``ADDR@PORT``)."""
    try:
        return grammar.parse_address(value, default_port)
    except ValueError as exc:
        raise SyncConfigError(setting, str(exc)) from None


def parse_duration(value: Any, setting: str) -> float:
    """Seconds in the settings grammar: a number, or ``"30s"``, ``"5m"``, ``"1.5h"``."""
    try:
        return grammar.parse_duration(value)
    except ValueError as exc:
        raise SyncConfigError(setting, str(exc)) from None


def read_secret(
    section: Mapping[str, Any], setting: str, field_name: str, ctx: TargetContext
) -> str | None:
    """The credential ``field_name`` given as ``FIELD`` (inline, in a private config file),
    ``FIELD-file`` or ``FIELD-env``; None when none is set."""
    try:
        return _read_secret(Table(section, setting, ctx.source), field_name, required=False)
    except SettingsError as exc:
        raise sync_error(exc) from None


def require_secret(
    section: Mapping[str, Any], setting: str, field_name: str, ctx: TargetContext
) -> str:
    """Like :func:`read_secret` but the credential must be given."""
    try:
        value = _read_secret(Table(section, setting, ctx.source), field_name)
    except SettingsError as exc:
        raise sync_error(exc) from None
    assert value is not None
    return value


def parse_keys(table: Table | None) -> dict[str, TsigKey]:
    """``[key.NAME]`` tables, by NAME (the settings grammar's keys)."""
    try:
        return parse_tsig_keys(table)
    except SettingsError as exc:
        raise sync_error(exc) from None


def parse_names(value: Any, setting: str, what: str = "host names") -> list[dns.name.Name]:
    """A list of domain names (zones, nameservers), absolute, each given once."""
    if not isinstance(value, list):
        raise SyncConfigError(setting, f"expected a list of {what}, got {value!r}")
    try:
        return grammar.parse_names(value)
    except ValueError as exc:
        raise SyncConfigError(setting, str(exc)) from None


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


def parse_url(value: Any, setting: str, example: str, path: bool = True) -> str:
    """An API's base URL (``http`` or ``https``, a host, no query, fragment or user: the
    credential goes in its own setting; no path unless ``path``), without a trailing
    slash. ``example`` ends the error message, e.g. ``"https://api.example.com/v1"``."""
    wanted = f"expected the API's base URL, like {example}"
    if value is None:
        raise SyncConfigError(setting, f"required: {wanted}")
    if not isinstance(value, str):
        raise SyncConfigError(setting, f"{wanted}, got {value!r}")
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SyncConfigError(setting, f"{wanted}, got {value!r}")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise SyncConfigError(setting, f"bad port in {value!r}") from None
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise SyncConfigError(
            setting, f"{wanted} (no query, fragment or user in it), got {value!r}"
        )
    if not path and parsed.path.strip("/"):
        raise SyncConfigError(setting, f"{wanted} (a host, no path), got {value!r}")
    return value.rstrip("/")
