"""``zonefan config check``: load every setting, open every target, say what was found and
list every problem at once (exit 1 when there is one), before anything is started."""

from __future__ import annotations

import asyncio
import functools
import json
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from nameserver.edit.updatepolicy import policies_from_config
from nameserver.errors import NameserverError
from nameserver.store.store import Store
from nameserver.transfer.acl import parse_secondaries
from nameserver.transfer.tsig import keyring
from settings import Address, SettingsError, Table, TsigKey, format_duration, parse_tsig_keys
from signer.errors import SignerError
from signer.policy import policy_from_mapping
from zonefan.options import CONFIG, config_of, json_option
from zonefan.settings import (
    check_command_table,
    check_top_level,
    key_dir,
    load_config,
    resolve_db,
)


@dataclass
class Report:
    """What the check found (``found``: section -> lines) and every problem."""

    found: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def note(self, section: str, line: str) -> None:
        self.found.setdefault(section, []).append(line)

    def check(self, action: Callable[[], object]) -> Any:
        """``action()``, or None with its error recorded."""
        try:
            return action()
        except (SettingsError, SignerError, NameserverError, click.ClickException) as e:
            text = e.format_message() if isinstance(e, click.ClickException) else str(e)
            self.problems.append(text)
            return None


@click.group("config")
def config_group() -> None:
    """Check the configuration files before starting anything."""


@config_group.command("check")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The primary's settings file (default: the one `zonefan --config` names, else "
    "./zonefan.toml).",
)
@click.option(
    "--sync",
    "sync_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="SYNC.TOML",
    help="Also check the sync sidecar's config: every target opened, the primary asked.",
)
@json_option
@click.pass_context
def config_check(
    ctx: click.Context, config_path: Path | None, sync_path: Path | None, as_json: bool
) -> None:
    """Load zonefan.toml (and SYNC.TOML), open every sync target, ask the primary for each
    zone's serial; print what was found. Exit 1 with every problem listed."""
    report = Report()
    config = config_of(ctx) if config_path is None else load_config(str(config_path))
    if config_path is not None:
        ctx.find_root().meta[CONFIG] = config
    keys = _check_primary(ctx, config, report)
    if sync_path is not None:
        asyncio.run(_check_sync(sync_path, keys, report))
    if as_json:
        click.echo(json.dumps({"found": report.found, "problems": report.problems}, indent=2))
    else:
        for section, lines in report.found.items():
            click.echo(f"{section}:")
            for line in lines:
                click.echo(f"  {line}")
        if report.problems:
            click.echo(f"{len(report.problems)} problem(s):", err=True)
            for problem in report.problems:
                click.echo(f"  {problem}", err=True)
        else:
            click.echo("no problems found")
    if report.problems:
        ctx.exit(1)


def _check_primary(ctx: click.Context, config: Table, report: Report) -> dict[str, TsigKey]:
    """zonefan.toml: every key known, every table parsed; the store looked at, not made."""
    root = ctx.find_root().command
    assert isinstance(root, click.Group)
    name = config.source.name or "zonefan.toml"
    section = f"{name}" if config.source.path else "no zonefan.toml (built-in defaults)"
    report.note(section, f"tables: {', '.join(sorted(config)) or 'none'}")
    commands = root.list_commands(ctx)
    report.check(lambda: check_top_level(config, commands))
    for command_name in commands:
        command = root.get_command(ctx, command_name)
        if command is not None:
            report.check(functools.partial(check_command_table, config, command_name, command))
    db = report.check(lambda: resolve_db(ctx.find_root().params.get("db"), config)) or "zonefan.db"
    _check_store(Path(db), report, section)
    directory = report.check(lambda: key_dir(config, db))
    if directory is not None:
        _check_key_dir(directory, report, section)
    labelled: dict[str, TsigKey] = report.check(lambda: parse_tsig_keys(config.table("key"))) or {}
    for label, key in labelled.items():
        report.note(section, f"key {label}: {key.algorithm}, fudge {format_duration(key.fudge)}")
    keys = keyring(labelled)
    acl = report.check(lambda: parse_secondaries(config.entries("secondary"), keys))
    for entry in acl.secondaries if acl is not None else ():
        zones = "every zone" if entry.zones is None else ", ".join(sorted(map(str, entry.zones)))
        signed = f" key {entry.key}" if entry.key is not None else ""
        notify = f", NOTIFY to {Address(*entry.notify)}" if entry.notify else ""
        report.note(section, f"secondary {entry.text}{signed}: {zones}{notify}")
    policies = report.check(lambda: config.table("policy"))
    for policy_name, table in policies.tables() if policies is not None else ():
        where = f"{name} [policy.{policy_name}]"
        if report.check(functools.partial(policy_from_mapping, table.data, where)) is not None:
            report.note(section, f"policy {policy_name}")
    updates = report.check(lambda: policies_from_config(config.data)) or {}
    for zone, policy in updates.items():
        report.note(section, f"update-policy for {zone}: {len(policy.rules)} rule(s)")
    if "pool" in config or "health" in config:  # the health package loads only for pools
        from zonefan.pools import health_config

        health = report.check(lambda: health_config(config))
        for pool in health.pools if health is not None else ():
            regions = ", ".join(sorted({m.region for m in pool.members}))
            report.note(section, f"pool {pool.label}: {len(pool.members)} member(s) in {regions}")
    return labelled


def _check_store(db: Path, report: Report, section: str) -> None:
    if not db.exists():
        report.note(section, f"store {db}: not there yet (`zonefan zone import` makes it)")
        return
    mode = db.stat().st_mode
    if mode & 0o007:
        # A store made before zonefan created it 0640 may still be readable by everyone.
        report.problems.append(
            f"store {db} has mode {stat.filemode(mode)}: every local user can read the "
            f"zones' data; `chmod 640 {db}*`"
        )
    store = report.check(lambda: Store(db, create=False, read_only=True))
    if store is not None:
        try:
            report.note(section, f"store {db}: {len(store.zone_names())} zone(s)")
        finally:
            store.close()


def _check_key_dir(directory: Path, report: Report, section: str) -> None:
    if not directory.exists():
        report.note(section, f"key directory {directory}: not there yet (signing makes it)")
        return
    mode = directory.stat().st_mode
    if mode & 0o077:
        report.problems.append(
            f"key directory {directory} has mode {stat.filemode(mode)}: other users can "
            f"read private keys; `chmod 700 {directory}`"
        )
    else:
        report.note(section, f"key directory {directory}")


async def _check_sync(path: Path, keys: dict[str, TsigKey], report: Report) -> None:
    """sync.toml: parsed with the primary's keys, every target opened, the primary asked."""
    from sync.config import load_sync_config
    from sync.errors import SyncConfigError, SyncError
    from sync.source import ZoneSource

    problems: list[SettingsError] = []
    cfg = report.check(lambda: load_sync_config(path, shared_keys=keys, problems=problems))
    report.problems.extend(str(p) for p in problems)
    if cfg is None:
        return
    section = str(path)
    source = ZoneSource(cfg.primary, cfg.primary_key, timeout=cfg.primary_timeout)
    key = f" with key {cfg.primary_key.name}" if cfg.primary_key is not None else ""
    for zone in cfg.zones:
        try:
            serial = await source.serial(zone)
            report.note(section, f"primary {cfg.primary}{key}: {zone} serial {serial}")
        except SyncError as e:
            report.problems.append(f"{path}: primary: {zone}: {e}")
    for name, spec in cfg.targets.items():
        target = spec.target
        zones = "every zone" if spec.zones is None else ", ".join(sorted(map(str, spec.zones)))
        try:
            await target.open()
            report.note(section, f"target {name} ({type(target).__name__}): opened; {zones}")
        except SyncConfigError as e:  # names the setting: a rejected key, a URL, ...
            report.problems.append(str(e.located(str(path))))
        except SyncError as e:
            report.problems.append(f"{path}: target.{name}: {e}")
        finally:
            await target.close()
