"""`zonefan sync ...`: the sidecar that pushes the primary's zones to external providers.

The sidecar reads its own TOML file (``--config``, default ``./sync.toml``, env
``ZONEFAN_SYNC_CONFIG``) and keeps its own state file; it talks to the primary only through
DNS, so it runs beside zonefan's primary or any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import dns.name

from sync.config import SyncConfig, load_sync_config
from sync.engine import SyncEngine
from sync.errors import SyncConfigError, SyncError
from sync.providers.base import SecondaryTarget
from sync.settings import Address
from sync.source import NotifyListener, ZoneSource
from sync.state import SyncState
from zonefan.options import json_option, zone_name

T = TypeVar("T")

config_option = click.option(
    "--config",
    "-c",
    "config_path",
    envvar="ZONEFAN_SYNC_CONFIG",
    default="sync.toml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sidecar's TOML config. Env: ZONEFAN_SYNC_CONFIG.",
)
target_option = click.option(
    "--target", "-t", "targets", multiple=True, help="Only this target (repeatable)."
)


@click.group("sync")
def sync_group() -> None:
    """Keep external DNS providers serving exactly the primary's zones.

    \b
    Examples:
      zonefan sync run --config sync.toml        # the sidecar: NOTIFY/IXFR in, pushes out
      zonefan sync plan example.test             # what each target would be changed
      zonefan sync apply --target pdns --force   # push now, overriding the safety checks
      zonefan sync status                        # per zone and target: pushed, lag, errors
      zonefan sync ns example.test               # the NS set to register at the parent
    """


def load_config_or_exit(path: Path) -> SyncConfig:
    """The sync config, or a ClickException naming the file and the setting."""
    try:
        return load_sync_config(path)
    except SyncConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _run(coro: Coroutine[Any, Any, T], *, bounded: bool = True) -> T:
    """Run a command's coroutine; sync errors become click errors. A ``bounded`` command
    (all but the sidecar) runs without the cyclic garbage collector: its garbage ends with
    the process, and collections scanning a 10k-RRset zone's objects again and again cost
    45 ms of a 1.2 s initial push. Reference counting still frees all that is not a cycle."""
    paused = bounded and gc.isenabled()
    if paused:
        gc.disable()
    try:
        return asyncio.run(coro)
    except SyncConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if paused:
            gc.enable()


@contextlib.asynccontextmanager
async def _engine(cfg: SyncConfig, open_targets: bool = True) -> AsyncIterator[SyncEngine]:
    state = SyncState(cfg.state)
    source = ZoneSource(cfg.primary, cfg.primary_key, timeout=cfg.primary_timeout)
    engine = SyncEngine(state, source, cfg.zones, cfg.targets, cfg.settings)
    try:
        if open_targets:
            await engine.open_targets()
        yield engine
    finally:
        await engine.close_targets()
        state.close()


def _chosen(cfg: SyncConfig, targets: tuple[str, ...]) -> list[str]:
    unknown = [t for t in targets if t not in cfg.targets]
    if unknown:
        raise click.BadParameter(
            f"unknown target {unknown[0]!r}; configured: {', '.join(cfg.targets)}",
            param_hint="--target",
        )
    return list(targets) or list(cfg.targets)


def _zones(cfg: SyncConfig, zone: str | None) -> list[dns.name.Name]:
    if zone is None:
        return list(cfg.zones)
    name = zone_name(zone)
    if name not in cfg.zones:
        raise click.BadParameter(f"{name} is not among [primary] zones", param_hint="ZONE")
    return [name]


async def _refresh(engine: SyncEngine, zones: list[dns.name.Name]) -> None:
    for zone in zones:
        await engine.refresh_zone(zone)


# -- run -----------------------------------------------------------------------------------


@sync_group.command("run")
@config_option
def sync_run(config_path: Path) -> None:
    """The sidecar: transfer on NOTIFY (and by SOA polling), push to every target in
    parallel, retry until each converges, repair drift. Stops on SIGTERM/SIGINT."""
    cfg = load_config_or_exit(config_path)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    _run(sidecar(cfg), bounded=False)


async def sidecar(
    cfg: SyncConfig,
    handle_signals: bool = True,
    on_listening: Callable[[Address], None] | None = None,
) -> None:
    """The sidecar until SIGTERM/SIGINT (``handle_signals``) or until cancelled (inside
    ``zonefan serve --sync``, whose server owns the signals). ``on_listening`` learns where
    the NOTIFY listener is bound (its port, when ``listen`` asks for any free one)."""
    async with _engine(cfg) as engine:
        listener = None
        if cfg.listen is not None:
            listener = NotifyListener(
                cfg.listen, cfg.primary, cfg.zones, engine.notified, key=cfg.primary_key
            )
            await listener.start()
            if on_listening is not None:
                on_listening(Address(cfg.listen.host, listener.port))
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, engine.stop)
        try:
            await engine.run()
        finally:
            if listener is not None:
                await listener.stop()


# -- plan / apply --------------------------------------------------------------------------


@sync_group.command("plan")
@click.argument("zone", required=False)
@target_option
@config_option
@json_option
def sync_plan(zone: str | None, targets: tuple[str, ...], config_path: Path, as_json: bool) -> None:
    """Show what each target would be changed to serve ZONE (default: every zone). Nothing
    is written to any target."""
    cfg = load_config_or_exit(config_path)
    chosen = _chosen(cfg, targets)
    zones = _zones(cfg, zone)
    report = _run(_plans(cfg, chosen, zones))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for entry in report:
        click.echo(f"{entry['zone']} at {entry['target']}: {entry['summary']}")
        for line in entry["lines"]:
            click.echo(f"  {line}")


async def _plans(
    cfg: SyncConfig, chosen: list[str], zones: list[dns.name.Name]
) -> list[dict[str, Any]]:
    async with _engine(cfg) as engine:
        await _refresh(engine, zones)
        report = []
        for zone in zones:
            for name in chosen:
                if cfg.targets[name].serves(zone):
                    report.append(await _plan_entry(engine, name, zone))
        return report


async def _plan_entry(engine: SyncEngine, name: str, zone: dns.name.Name) -> dict[str, Any]:
    entry: dict[str, Any] = {"zone": zone.to_text(), "target": name, "lines": []}
    try:
        data = engine.require_zone(zone)
        target = engine.route(name, data)
        if isinstance(target, SecondaryTarget):
            serial = await target.serial(zone)
            entry["summary"] = f"secondary: serves serial {serial}, primary {data.serial}" + (
                " (current)" if serial == data.serial else " (a transfer is due)"
            )
            return entry
        plan = await engine.plan(name, zone)
        assert plan is not None
        entry["summary"] = "no changes" if plan.empty else plan.summary()
        if plan.create_zone:
            entry["summary"] += " (the zone is created)"
        entry["lines"] = plan.lines()
        try:
            engine.targets[name].safety.check(plan)
        except SyncError as exc:
            entry["refused"] = str(exc)
            entry["lines"].append(f"REFUSED without --force: {exc}")
    except SyncError as exc:
        entry["summary"] = f"error: {exc}"
        entry["error"] = str(exc)
    return entry


@sync_group.command("apply")
@click.argument("zone", required=False)
@target_option
@click.option("--force", is_flag=True, help="Apply plans the safety checks would refuse.")
@config_option
@json_option
def sync_apply(
    zone: str | None, targets: tuple[str, ...], force: bool, config_path: Path, as_json: bool
) -> None:
    """Push ZONE (default: every zone) to the targets now, in parallel; exit 1 when a
    target did not converge (its error is in `sync status`; `sync run` keeps retrying)."""
    cfg = load_config_or_exit(config_path)
    chosen = _chosen(cfg, targets)
    zones = _zones(cfg, zone)
    outcomes = _run(_apply(cfg, chosen, zones, force))
    if as_json:
        click.echo(json.dumps(outcomes, indent=2))
    else:
        for o in outcomes:
            mark = "ok" if o["ok"] else "FAILED"
            click.echo(f"{o['zone']} at {o['target']}: {mark} serial {o['serial']}: {o['detail']}")
    if not all(o["ok"] for o in outcomes):
        raise SystemExit(1)


async def _apply(
    cfg: SyncConfig, chosen: list[str], zones: list[dns.name.Name], force: bool
) -> list[dict[str, Any]]:
    async with _engine(cfg) as engine:
        await _refresh(engine, zones)
        for zone in zones:
            data = engine.require_zone(zone)
            for name in chosen:
                if cfg.targets[name].serves(zone):
                    engine.state.enqueue(name, zone, data.serial, force=force)
        outcomes = await engine.drain(chosen)
        wanted = {z.to_text() for z in zones}
        return [o.__dict__ for o in outcomes if o.zone in wanted]


# -- status / ns ---------------------------------------------------------------------------


@sync_group.command("status")
@click.option(
    "--events", type=click.IntRange(min=0), default=0, metavar="N",
    help="Also the N newest events (pushes, errors, refusals, drift): the evidence trail.",
)  # fmt: skip
@config_option
@json_option
def sync_status(config_path: Path, as_json: bool, events: int) -> None:
    """Per zone and target, from the sidecar's state: the serial pushed against the
    primary's, the lag, the last success, the last error and the last drift found."""
    cfg = load_config_or_exit(config_path)
    state = SyncState(cfg.state)
    try:
        rows = _status_rows(cfg, state, time.time)
        trail = state.events(events) if events else []
    finally:
        state.close()
    if as_json:
        click.echo(json.dumps({"targets": rows, "events": trail} if events else rows, indent=2))
        return
    for event in trail:
        click.echo(
            f"{_when(event['at'])} {event['target']} {event['zone']} serial {event['serial']}: "
            f"{event['kind']} {event['detail'] or ''}".rstrip()
        )
    if not rows:
        click.echo("nothing pushed yet: run `zonefan sync apply` or `zonefan sync run`")
    for r in rows:
        state_text = "current" if r["current"] else f"BEHIND by {r['lag_seconds']:.0f} s"
        digest = f" (content {r['pushed_digest'][:16]})" if r["pushed_digest"] else ""
        click.echo(
            f"{r['zone']} at {r['target']}: pushed {r['pushed_serial']}{digest}, primary "
            f"{r['primary_serial']}: {state_text}; last success {_when(r['last_success'])}"
        )
        if r["last_error"]:
            click.echo(f"  last error ({_when(r['last_error_at'])}): {r['last_error']}")
        if r["drift"]:
            click.echo(f"  drift found ({_when(r['drift_at'])}): {r['drift']}")
        if r["pending_serial"] is not None:
            click.echo(
                f"  pending: serial {r['pending_serial']}, attempt {r['attempts'] + 1} "
                f"at {_when(r['next_attempt'])}"
            )


def _status_rows(
    cfg: SyncConfig, state: SyncState, clock: Callable[[], float]
) -> list[dict[str, Any]]:
    rows = []
    for s in state.status():
        if s.target not in cfg.targets:
            continue
        local = state.zone_serial(dns.name.from_text(s.zone))
        primary_serial, seen_at = local if local is not None else (None, None)
        current = primary_serial is not None and s.pushed_serial == primary_serial
        lag = 0.0 if current or seen_at is None else max(0.0, clock() - seen_at)
        row = dict(s.__dict__)
        row.update(primary_serial=primary_serial, current=current, lag_seconds=lag)
        rows.append(row)
    return rows


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@sync_group.command("ns")
@click.argument("zone")
@config_option
@json_option
def sync_ns(zone: str, config_path: Path, as_json: bool) -> None:
    """The NS set made of every target's nameservers, to register at the parent, and
    whether the zone's apex NS set matches it."""
    cfg = load_config_or_exit(config_path)
    (name,) = _zones(cfg, zone)
    report = _run(_ns(cfg, name))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for target, servers in report["targets"].items():
        click.echo(f"{target}: {' '.join(servers) or '(none known)'}")
    click.echo(f"NS set for the parent: {' '.join(report['ns_set'])}")
    if report["matches"]:
        click.echo("the zone's apex NS set matches it")
    else:
        click.echo(f"MISMATCH: the zone's apex NS set is {' '.join(report['apex_ns'])}")
        for n in report["missing_from_apex"]:
            click.echo(f"  missing from the apex: {n}")
        for n in report["not_at_any_target"]:
            click.echo(f"  at the apex but no target's: {n}")


async def _ns(cfg: SyncConfig, zone: dns.name.Name) -> dict[str, Any]:
    async with _engine(cfg) as engine:
        await engine.refresh_zone(zone)
        data = engine.require_zone(zone)
        per_target: dict[str, list[str]] = {}
        for name, spec in cfg.targets.items():
            if spec.serves(zone):
                target = spec.target.for_zone(data.signed)
                servers = await target.nameservers(zone)
                per_target[name] = sorted(n.to_text() for n in servers)
        ns_set = sorted({n for servers in per_target.values() for n in servers})
        apex = data.apex_ns()
        apex_names = sorted(r.to_text() for r in apex.rdatas) if apex is not None else []
        return {
            "zone": zone.to_text(),
            "targets": per_target,
            "ns_set": ns_set,
            "apex_ns": apex_names,
            "matches": set(ns_set) == set(apex_names),
            "missing_from_apex": sorted(set(ns_set) - set(apex_names)),
            "not_at_any_target": sorted(set(apex_names) - set(ns_set)),
        }
