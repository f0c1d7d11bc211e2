"""``zonefan audit ...``: the audit report of the primary's store and the sidecar's state."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import click
import dns.name

from nameserver.store.store import Store
from settings.files import create_data_file
from signer.timing import ForecastStep
from sync.config import load_sync_config
from sync.errors import SyncError
from zonefan.audit import (
    DEFAULT_RR_LIMIT,
    KeyPlan,
    Period,
    SyncEvidence,
    build_report,
    load_sync_evidence,
)
from zonefan.audit_render import RENDERERS
from zonefan.common import dnssec_manager, open_store
from zonefan.options import DATE_FORMAT, json_option, parse_when, zone_name


@click.group("audit")
def audit_group() -> None:
    """Evidence for auditors, read from the store and the sync state.

    \b
    Examples:
      zonefan audit report --since 2026-11-01 --format html -o november.html
      zonefan audit report --since 2026-12-01 --zone example.test --format json
    """


@audit_group.command("report")
@click.option("--since", required=True, metavar="DATE", help=f"Start (included); {DATE_FORMAT}.")
@click.option("--until", default=None, metavar="DATE", help="End (excluded); default: now.")
@click.option("--zone", "zones", multiple=True, metavar="ZONE", help="Only this zone (repeatable).")
@click.option(
    "--format",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
    help="json: the documented schema; html: one self-contained file; text: a summary.",
)
@click.option(
    "--sync-state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="The sync sidecar's state file.",
)
@click.option(
    "--sync-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="SYNC.TOML",
    help="The sidecar's config: its `state` is the state file read. Default: ./sync.toml "
    "when it exists.",
)
@click.option("--no-sync", is_flag=True, help="A primary without a sync sidecar: no sync sections.")
@click.option(
    "--rr-limit",
    type=click.IntRange(min=0),
    default=DEFAULT_RR_LIMIT,
    show_default=True,
    help="RRs listed per side of each change (the counts are always whole).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write the report to FILE (replaced only once the whole report is made).",
)
@json_option
@click.pass_context
def audit_report(
    ctx: click.Context,
    since: str,
    until: str | None,
    zones: tuple[str, ...],
    format: str,
    sync_state: Path | None,
    sync_config: Path | None,
    no_sync: bool,
    rr_limit: int,
    output: Path | None,
    as_json: bool,
) -> None:
    """Every change (who, when, what, why), every key event, every transfer to a
    secondary, and per sync target how long each serial took to converge and every
    failure, from --since to --until. Written only when all of it was read."""
    if as_json:  # the CLI's --json: the same as --format json
        if format == "html":
            raise click.UsageError("--json prints JSON: give it or --format html, not both")
        format = "json"
    now = time.time()
    start = parse_when(since, "--since")
    end = now if until is None else parse_when(until, "--until")
    if end <= start:
        raise click.BadParameter(
            f"{until or 'now'} is not after --since {since}", param_hint="--until"
        )
    state_path = _state_path(sync_state, sync_config, no_sync)
    with open_store(ctx, read_only=True) as store:
        chosen = _zones(zones, store.zone_names())
        evidence: SyncEvidence | None = None
        if state_path is not None:
            try:
                evidence = load_sync_evidence(state_path, start)
            except SyncError as exc:
                raise click.ClickException(str(exc)) from None
        plan = _key_plan(ctx, store, now)
        report = build_report(
            store, chosen, Period(start, end), now, evidence, rr_limit, key_plan=plan
        )
    text = RENDERERS[format](report)
    if output is None:
        click.echo(text, nl=False)
    else:
        _write(output, text)


def _key_plan(ctx: click.Context, store: Store, now: float) -> KeyPlan:
    """The key steps the planner has ahead for a signed zone, from the report's time."""
    manager = dnssec_manager(ctx, store)
    manager.clock = lambda: now

    def steps(zone: dns.name.Name, horizon: int) -> Sequence[ForecastStep]:
        state = store.dnssec(zone)
        if state is None or not state.signed:
            return ()
        return manager.key_forecast(zone, horizon).steps

    return steps


def _state_path(state: Path | None, config: Path | None, no_sync: bool) -> Path | None:
    if no_sync:
        if state is not None or config is not None:
            raise click.UsageError("--no-sync excludes --sync-state and --sync-config")
        return None
    if state is not None and config is not None:
        raise click.UsageError("give --sync-state or --sync-config, not both")
    if state is not None:
        return state
    if config is None:
        config = Path("sync.toml")
        if not config.exists():
            raise click.UsageError(
                "no sync state to read: give --sync-state PATH or --sync-config SYNC.TOML "
                "(there is no ./sync.toml), or --no-sync for a primary without a sidecar"
            )
    try:
        return load_sync_config(config).state
    except SyncError as exc:
        raise click.ClickException(f"{exc}; or give its state file with --sync-state") from None


def _zones(given: tuple[str, ...], stored: list[dns.name.Name]) -> list[dns.name.Name]:
    if not given:
        return stored
    chosen = []
    for text in given:
        name = zone_name(text)
        if name not in stored:
            raise click.BadParameter(f"zone {name} is not in the store", param_hint="--zone")
        if name not in chosen:
            chosen.append(name)
    return chosen


def _write(path: Path, text: str) -> None:
    """Replace ``path`` at once, a file of zonefan's data mode (settings.files): a reader
    never sees half a report, and a failed run leaves the old one."""
    tmp = path.absolute().parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        create_data_file(tmp)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
