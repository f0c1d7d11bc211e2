"""``zonefan``: the command line, and the one place where nameserver, signer and sync meet.

The root group loads a command's module only when that command runs: ``zonefan sync ...``
starts without importing the nameserver package, and ``zonefan record ...`` without sync.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from settings import SettingsError
from zonefan.options import CONFIG
from zonefan.settings import (
    check_command_table,
    check_top_level,
    command_defaults,
    load_config,
    resolve_db,
)

# command name -> (module, attribute)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("zonefan.commands", "serve_cmd"),
    "zone": ("zonefan.commands", "zone_group"),
    "record": ("zonefan.commands", "record_group"),
    "keys": ("zonefan.commands", "keys_group"),
    "sync": ("zonefan.sync_cli", "sync_group"),
    "config": ("zonefan.config_cli", "config_group"),
    "healthcheck": ("zonefan.healthcheck", "healthcheck_cmd"),
    "health": ("zonefan.health_cli", "health_group"),
    "audit": ("zonefan.audit_cli", "audit_group"),
    "drain": ("zonefan.pools_cli", "drain_cmd"),
    "undrain": ("zonefan.pools_cli", "undrain_cmd"),
    "drill": ("zonefan.drill_cli", "drill_group"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        known = super().get_command(ctx, cmd_name)
        if known is not None or cmd_name not in LAZY_COMMANDS:
            return known
        module, attribute = LAZY_COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        # What is loaded now lives as long as the process: keep later full collections from
        # scanning it again (gc.freeze exists for this; it frees nothing and hides nothing
        # created afterwards).
        gc.freeze()
        assert isinstance(command, click.Command)
        self.add_command(command, cmd_name)
        return command


def json_error(e: click.ClickException) -> str:
    """A failure as ``{"error": {"kind", "message", "exit_code"[, "parameter"]}}``: ``kind``
    is ``usage`` (the command line is wrong, exit 2), ``bad-parameter`` (one option or
    argument is, exit 2) or ``error`` (the command could not be done, exit 1 or the code
    the command documents)."""
    error: dict[str, Any] = {
        "kind": "error",
        "message": e.format_message(),
        "exit_code": e.exit_code,
    }
    if isinstance(e, click.BadParameter):
        error["kind"] = "bad-parameter"
        if e.param is not None:
            error["parameter"] = e.param.opts[0] if e.param.opts else e.param.name
        elif e.param_hint is not None:
            error["parameter"] = str(e.param_hint)
    elif isinstance(e, click.UsageError):
        error["kind"] = "usage"
    return json.dumps({"error": error})


@click.group(
    cls=LazyGroup,
    context_settings={"auto_envvar_prefix": "ZONEFAN", "help_option_names": ["-h", "--help"]},
)
@click.option(
    "--db",
    envvar="ZONEFAN_DB",
    default=None,
    metavar="PATH",
    help="SQLite store (default ./zonefan.db). Env: ZONEFAN_DB.",
)
@click.option(
    "--config",
    envvar="ZONEFAN_CONFIG",
    default=None,
    metavar="FILE",
    help="TOML settings file (default ./zonefan.toml if present). Env: ZONEFAN_CONFIG.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(
    package_name="zonefan",  # the installed distribution's version, from its metadata
    message="zonefan %(version)s",
    help="Print the installed version and exit.",
)
@click.pass_context
def main(ctx: click.Context, db: str | None, config: str | None, verbose: int) -> None:
    """zonefan: a hidden-primary authoritative DNS server whose zones live in one SQLite file.

    \b
    Examples:
      zonefan zone import zones/example.test.zone
      zonefan serve --listen 127.0.0.1:5353
      zonefan record add example.test www 300 A 192.0.2.10
      zonefan zone history example.test
    """
    settings = load_config(config)
    try:
        check_top_level(settings, sorted(LAZY_COMMANDS))
        if ctx.invoked_subcommand is not None:
            command = ctx.command.get_command(ctx, ctx.invoked_subcommand)  # type: ignore[attr-defined]
            check_command_table(settings, ctx.invoked_subcommand, command)
        ctx.obj = resolve_db(db, settings)
    except SettingsError as e:
        raise click.ClickException(str(e)) from e
    ctx.default_map = command_defaults(settings)
    ctx.meta[CONFIG] = settings
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run() -> NoReturn:
    """The console entry point: the command, then an immediate exit. The interpreter's
    teardown frees every module and object one by one, 80 ms once aiohttp and the sync
    engine are loaded (a fifteenth of a 10k-record `zonefan sync apply`). By then every
    command has closed its database and sessions; logs and output are flushed here."""
    try:
        code = _json_run() if wants_json(sys.argv[1:]) else _plain_run()
    except SystemExit as exc:  # click ends every standalone run this way
        code = _exit_code(exc.code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to write
            code = code or 1
    os._exit(code)


def wants_json(argv: Sequence[str]) -> bool:
    """True when ``--json`` is among the options (not after ``--``)."""
    return "--json" in (argv[: list(argv).index("--")] if "--" in argv else argv)


def _plain_run() -> int:
    main()
    return 0


def _json_run() -> int:
    """The command with its failures as JSON on stderr (see :func:`json_error`), so a
    script reads a failure the way it reads a result."""
    try:
        code = main.main(standalone_mode=False)
    except click.ClickException as e:
        click.echo(json_error(e), err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo(json_error(click.ClickException("aborted")), err=True)
        return 1
    return code if isinstance(code, int) else 0


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    run()
