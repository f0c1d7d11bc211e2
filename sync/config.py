"""The sidecar's configuration file (TOML), checked whole at start.

```toml
state = "sync.db"                  # the sidecar's SQLite state (relative: to this file)
listen = "127.0.0.1:5300"          # where the primary sends NOTIFY (optional)
refresh-interval = "60s"           # SOA poll of the primary, the fallback for a lost NOTIFY
drift-interval = "5m"              # read-back of every converged target
retry-base = "1s"                  # first retry after a failure; doubles up to retry-max
retry-max = "5m"

[primary]
address = "127.0.0.1:5353"         # any primary that allows us IXFR/AXFR (zonefan, BIND, Knot)
key = "xfr"                        # TSIG key for transfers and for NOTIFY from the primary
zones = ["example.test"]

[key.xfr]
algorithm = "hmac-sha256"
secret-env = "ZONEFAN_XFR_SECRET"  # or secret-file = "/etc/zonefan/xfr.key", or secret = "..."

[target.pdns]
type = "powerdns"                  # or "powerdns-secondary", "rfc2136"
zones = ["example.test"]           # default: every zone of [primary]
drift = "repair"                   # or "report"
max-change-share = 0.3             # safety: share of RRsets a plan may delete or replace
strict = false                     # true: refuse a zone with types the target cannot hold
# ... the provider's own settings (see the README)
```

Every error is a :class:`SyncConfigError` naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name

from settings import SettingsError, Source, Table, load_toml
from sync.engine import EngineSettings, TargetSpec
from sync.errors import SyncConfigError
from sync.plan import Safety
from sync.providers import build_target
from sync.settings import (
    Address,
    TargetContext,
    TsigKey,
    parse_address,
    parse_duration,
    parse_keys,
    parse_names,
    sync_error,
)

_TOP = {
    "state",
    "listen",
    "refresh-interval",
    "drift-interval",
    "retry-base",
    "retry-max",
    "secondary-wait",
    "primary",
    "key",
    "target",
}
_PRIMARY = {"address", "key", "zones", "timeout"}


@dataclass(frozen=True)
class SyncConfig:
    """Everything ``zonefan sync`` needs, parsed and checked."""

    path: Path
    state: Path
    listen: Address | None
    primary: Address
    primary_key: TsigKey | None
    primary_timeout: float
    zones: tuple[dns.name.Name, ...]
    targets: dict[str, TargetSpec]
    settings: EngineSettings


def load_sync_config(
    path: Path,
    env: Mapping[str, str] | None = None,
    shared_keys: Mapping[str, TsigKey] | None = None,
    default_primary: Address | None = None,
    problems: list[SettingsError] | None = None,
) -> SyncConfig:
    """Read and check ``path``; targets are built (not yet opened). Errors name the file.

    ``shared_keys`` are ``[key.NAME]`` tables defined elsewhere (the primary's
    zonefan.toml, when one process runs both) that the file may name without repeating
    them; ``default_primary`` is the primary's address when ``[primary]`` gives none. With
    ``problems``, a target whose table is wrong is left out and its error recorded there,
    so that every broken target is reported at once.
    """
    try:
        table = load_toml(path, env)
        return parse_sync_config(
            table.data, path, table.source.env, shared_keys, default_primary, problems
        )
    except SettingsError as exc:
        raise sync_error(exc).located(str(path)) from None


def parse_sync_config(
    raw: Mapping[str, Any],
    path: Path,
    env: Mapping[str, str],
    shared_keys: Mapping[str, TsigKey] | None = None,
    default_primary: Address | None = None,
    problems: list[SettingsError] | None = None,
) -> SyncConfig:
    """Check a parsed TOML document (see the module docstring for the format)."""
    _no_unknown(raw, _TOP, "the top level")
    keys = _merge_keys(
        shared_keys or {}, parse_keys(Table(raw, "", Source(path, env)).table("key"))
    )
    primary_table = raw.get("primary")
    if not isinstance(primary_table, dict):
        raise SyncConfigError("primary", "missing [primary] table with address and zones")
    _no_unknown(primary_table, _PRIMARY, "[primary]")
    if "address" in primary_table or default_primary is None:
        primary = parse_address(primary_table.get("address"), "primary.address")
    else:
        primary = default_primary
    ctx = TargetContext(keys=keys, primary=primary, env=env, path=path)
    primary_key = ctx.key(primary_table, "primary", "key")
    zones = _zones(primary_table.get("zones"), "primary.zones")
    if not zones:
        raise SyncConfigError("primary.zones", "list at least one zone to sync")
    targets_table = raw.get("target")
    if not isinstance(targets_table, dict) or not targets_table:
        raise SyncConfigError("target", "define at least one [target.NAME] table")
    targets: dict[str, TargetSpec] = {}
    for name, section in targets_table.items():
        try:
            targets[name] = _target_spec(name, section, ctx, zones)
        except SettingsError as exc:
            if problems is None:
                raise
            problems.append(sync_error(exc).located(str(path)))
    base = path.parent
    state = Path(str(raw.get("state", "sync.db")))
    return SyncConfig(
        path=path,
        state=state if state.is_absolute() else base / state,
        listen=parse_address(raw["listen"], "listen") if "listen" in raw else None,
        primary=primary,
        primary_key=primary_key,
        primary_timeout=parse_duration(primary_table.get("timeout", 10), "primary.timeout"),
        zones=tuple(zones),
        targets=targets,
        settings=EngineSettings(
            retry_base=parse_duration(raw.get("retry-base", 1), "retry-base"),
            retry_max=parse_duration(raw.get("retry-max", "5m"), "retry-max"),
            drift_interval=parse_duration(raw.get("drift-interval", "5m"), "drift-interval"),
            refresh_interval=parse_duration(raw.get("refresh-interval", "60s"), "refresh-interval"),
            secondary_wait=parse_duration(raw.get("secondary-wait", "30s"), "secondary-wait"),
        ),
    )


def _merge_keys(shared: Mapping[str, TsigKey], own: Mapping[str, TsigKey]) -> dict[str, TsigKey]:
    """The keys of both files; one defined in both must be the same key."""
    for name, key in own.items():
        if name in shared and shared[name] != key:
            raise SyncConfigError(
                f"key.{name}",
                "is also defined, differently, in the primary's config; define it in one "
                "place (the sidecar reads the primary's [key.*] tables)",
            )
    return {**shared, **own}


def _target_spec(
    name: str, section: Any, ctx: TargetContext, zones: list[dns.name.Name]
) -> TargetSpec:
    setting = f"target.{name}"
    if not isinstance(section, dict):
        raise SyncConfigError(setting, "must be a table")
    target = build_target(name, section, ctx)
    subset = _zones(section["zones"], f"{setting}.zones") if "zones" in section else None
    if subset is not None:
        extra = [z for z in subset if z not in zones]
        if extra:
            raise SyncConfigError(f"{setting}.zones", f"{extra[0]} is not among [primary] zones")
    drift = section.get("drift", "repair")
    if drift not in ("repair", "report"):
        raise SyncConfigError(f"{setting}.drift", f"use 'repair' or 'report', not {drift!r}")
    share = section.get("max-change-share", 0.3)
    if not isinstance(share, int | float) or not 0 < share <= 1:
        raise SyncConfigError(f"{setting}.max-change-share", "a number in (0, 1], e.g. 0.3")
    strict = section.get("strict", False)
    if not isinstance(strict, bool):
        raise SyncConfigError(f"{setting}.strict", f"true or false, not {strict!r}")
    return TargetSpec(
        target=target,
        zones=frozenset(subset) if subset is not None else None,
        drift=drift,
        safety=Safety(max_share=float(share)),
        strict=strict,
    )


def _zones(value: Any, setting: str) -> list[dns.name.Name]:
    return parse_names(value, setting, 'zone names, e.g. ["example.test"]')


def _no_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise SyncConfigError(
            unknown[0], f"unknown setting in {where}; allowed: {', '.join(sorted(allowed))}"
        )
