"""Settings: command-line flags win over ZONEFAN_* environment variables, which win over the
TOML file (``--config``, ``ZONEFAN_CONFIG`` or ``./zonefan.toml``), which wins over defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import click

DEFAULT_DB = "zonefan.db"
DEFAULT_CONFIG = "zonefan.toml"


def load_config(path: str | None) -> dict[str, Any]:
    """The TOML settings file as a dict; {} when none is given and ./zonefan.toml is absent."""
    explicit = path is not None
    file = Path(path if path is not None else DEFAULT_CONFIG)
    if not file.exists():
        if explicit:
            raise click.BadParameter(f"config file {file} does not exist", param_hint="--config")
        return {}
    try:
        with file.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise click.BadParameter(f"{file}: {e}", param_hint="--config") from e


def resolve_db(flag: str | None, config: dict[str, Any]) -> str:
    """The store path: flag or ZONEFAN_DB (click fills both into ``flag``), then config."""
    value = flag or config.get("db") or DEFAULT_DB
    return os.fspath(value)


def command_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Config sections as click ``default_map`` entries: ``[serve]`` sets serve's options,
    ``[zone.import]`` those of ``zone import``; dashes and underscores are both accepted."""

    def normalise(value: Any) -> Any:
        if isinstance(value, dict):
            return {k.replace("-", "_"): normalise(v) for k, v in value.items()}
        return value

    out = normalise({k: v for k, v in config.items() if isinstance(v, dict)})
    assert isinstance(out, dict)
    return out
