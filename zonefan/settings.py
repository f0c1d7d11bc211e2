"""The primary's settings file, ``zonefan.toml``: command-line flags win over ZONEFAN_*
environment variables, which win over the file (``--config``, ``ZONEFAN_CONFIG`` or
``./zonefan.toml``), which wins over defaults.

The file is read in the one settings grammar (:mod:`settings`) and every key in it is
checked: a key nobody reads is refused with its key path, not ignored. Top-level keys are the
store (``db``, ``key-dir``, ``catalog-zone``), the tables the server and signer read
(``[key.NAME]``, ``[[secondary]]``, ``[policy.NAME]``, ``[zone."NAME"]``, ``[pool."NAME"]``,
``[health]``) and, for any
command, a table of its option defaults (``[serve]``, ``[zone.import]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from settings import SettingsError, Source, Table, load_toml, parse_name

DEFAULT_DB = "zonefan.db"
DEFAULT_CONFIG = "zonefan.toml"
# Read by the server, signer and store (zonefan.common); the rest are command defaults.
STORE_KEYS = ("db", "key-dir", "catalog-zone", "key", "secondary", "policy", "pool", "health")
ZONE_TABLE_KEYS = ("update-policy",)


def load_config(path: str | None) -> Table:
    """The settings file as a :class:`Table`; an empty one when no file is named and
    ./zonefan.toml is absent. A named file that does not exist is an error."""
    explicit = path is not None
    file = Path(path if path is not None else DEFAULT_CONFIG)
    if not file.exists():
        if explicit:
            raise click.BadParameter(f"config file {file} does not exist", param_hint="--config")
        return Table({}, "", Source(None))
    try:
        return load_toml(file)
    except SettingsError as e:
        raise click.BadParameter(str(e), param_hint="--config") from e


def resolve_db(flag: str | None, config: Table) -> str:
    """The store path: flag or ZONEFAN_DB (click fills both into ``flag``), then config."""
    value = flag or config.get("db", _path_text, DEFAULT_DB)
    return os.fspath(value)


def key_dir(config: Table, db: str) -> Path:
    """Where private keys live: ``key-dir``, else ``<db>.keys`` beside the store."""
    return Path(config.get("key-dir", _path_text, f"{db}.keys"))


def _path_text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} must be a path")
    return value


def command_defaults(config: Table) -> dict[str, Any]:
    """Config tables as click ``default_map`` entries: ``[serve]`` sets serve's options,
    ``[zone.import]`` those of ``zone import`` (keys kebab-case, as on the command line)."""

    def normalise(value: Any) -> Any:
        if isinstance(value, dict):
            return {k.replace("-", "_"): normalise(v) for k, v in value.items()}
        return value

    out = normalise({k: v for k, v in config.data.items() if isinstance(v, dict)})
    assert isinstance(out, dict)
    return out


def check_top_level(config: Table, commands: list[str]) -> None:
    """Every top-level key is known (a store setting or a command's table), and the store
    settings have the right type."""
    config.allow([*STORE_KEYS, *commands])
    resolve_db(None, config)
    config.optional("catalog-zone", parse_name)
    config.optional("key-dir", _path_text)
    for name in ("key", "policy"):
        config.table(name)


def check_command_table(config: Table, name: str, command: click.Command) -> None:
    """The ``[NAME]`` table of defaults for ``command``: every key an option of it (or, for
    a group, a table for a subcommand). A store setting's table of the same name (``[health]``
    of ``zonefan health``) is its own grammar's, checked where it is read."""
    if name in STORE_KEYS:
        return
    table = config.table(name)
    if table is not None:
        _check_defaults(table, command)


def _check_defaults(table: Table, command: click.Command) -> None:
    if isinstance(command, click.Group):
        for key in table:
            sub = command.commands.get(key)
            if sub is None and command.name == "zone" and "." in key:
                zone = table.table(key)
                assert zone is not None
                zone.allow(ZONE_TABLE_KEYS)
                continue
            if sub is None:
                known = ", ".join(sorted(command.commands))
                raise table.error(
                    key,
                    f"not a subcommand of `zonefan {command.name}` (known: {known})"
                    + (
                        '; a zone\'s table is written [zone."example.com."]'
                        if command.name == "zone"
                        else ""
                    ),
                )
            sub_table = table.table(key)
            assert sub_table is not None
            _check_defaults(sub_table, sub)
        return
    options = {
        p.name.replace("_", "-"): p
        for p in command.params
        if isinstance(p, click.Option) and p.name and not p.hidden
    }
    table.allow(options)
    # The value as the option would take it from the command line, so a bad one is named
    # by its key path here rather than as a flag the user never typed.
    ctx = click.Context(command)
    for key, option in options.items():
        if key not in table:
            continue
        if option.multiple and not isinstance(table.data[key], list):
            raise table.error(key, f"must be a list, [...]: --{key} can be given more than once")
        try:
            value = option.type_cast_value(ctx, table.data[key])
            if option.callback is not None:
                option.callback(ctx, option, value)
        except click.BadParameter as e:
            raise table.error(key, e.message) from None
