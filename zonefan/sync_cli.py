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
from typing import TYPE_CHECKING, Any, TypeVar

import click
import dns.name
import dns.rdatatype

from sync.config import SyncConfig, load_sync_config
from sync.engine import SyncEngine
from sync.errors import RefusedError, SyncConfigError, SyncError
from sync.providers.base import SecondaryTarget
from sync.settings import Address
from sync.source import NotifyListener, ZoneSource
from sync.state import SyncState
from sync.status import STATUS_TIMEOUT, ask_primary, target_rows, zone_statuses
from zonefan.options import json_option, metrics_option, zone_name
from zonefan.progress import Progress

if TYPE_CHECKING:  # imported with --metrics only: other commands start faster
    from prometheus_client.registry import CollectorRegistry

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
      zonefan sync status                        # per zone and target: primary vs pushed
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
    except SyncError as exc:  # a SyncConfigError names its file and setting
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
            try:
                await engine.open_targets()
            except SyncConfigError as exc:  # a rejected API key, an unreachable URL, ...
                raise exc.located(str(cfg.path)) from None
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
@metrics_option
def sync_run(config_path: Path, metrics: Address | None) -> None:
    """The sidecar: transfer on NOTIFY (and by SOA polling), push to every target in
    parallel, retry until each converges, repair drift. Stops on SIGTERM/SIGINT."""
    cfg = load_config_or_exit(config_path)
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    _run(sidecar(cfg, metrics=metrics), bounded=False)


async def sidecar(
    cfg: SyncConfig,
    handle_signals: bool = True,
    on_listening: Callable[[Address], None] | None = None,
    metrics: Address | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """The sidecar until SIGTERM/SIGINT (``handle_signals``) or until cancelled (inside
    ``zonefan serve --sync``, whose server owns the signals). ``on_listening`` learns where
    the NOTIFY listener is bound (its port, when ``listen`` asks for any free one). Its
    metrics go to ``registry`` (the server's, which serves them) or are served at
    ``metrics``."""
    async with _engine(cfg) as engine, contextlib.AsyncExitStack() as stack:
        if metrics is not None and registry is None:
            from zonefan.metrics import MetricsEndpoint, new_registry

            registry = new_registry()
            endpoint = MetricsEndpoint(registry, metrics)
            await endpoint.start()
            stack.push_async_callback(endpoint.stop)
        if registry is not None:
            from sync.metrics import SyncCollector

            collector = SyncCollector(engine)
            registry.register(collector)
            stack.callback(registry.unregister, collector)
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
        # What the provider will not hold as we have it, for scripts (the lines say it too).
        entry["unsupported"] = [_key_text(zone, k) for k in plan.unsupported]
        entry["provider_owned"] = [_key_text(zone, k) for k in plan.provider_owned]
        entry["ttl_adjusted"] = [
            {"rrset": _key_text(zone, a.key), "ttl": a.wanted, "held": a.held} for a in plan.ttls
        ]
        try:
            engine.targets[name].safety.check(plan)
        except SyncError as exc:
            entry["refused"] = str(exc)
            entry["lines"].append(f"REFUSED without --force: {exc}")
    except RefusedError as exc:
        entry["summary"] = f"refused: {exc}"
        entry["refused"] = str(exc)
    except SyncError as exc:
        entry["summary"] = f"error: {exc}"
        entry["error"] = str(exc)
    return entry


def _key_text(zone: dns.name.Name, key: tuple[dns.name.Name, dns.rdatatype.RdataType]) -> str:
    return f"{key[0].relativize(zone)} {dns.rdatatype.to_text(key[1])}"


EXIT_FAILED = 1
EXIT_REFUSED = 3


@sync_group.command("apply")
@click.argument("zone", required=False)
@target_option
@click.option("--force", is_flag=True, help="Apply plans the safety checks would refuse.")
@config_option
@json_option
def sync_apply(
    zone: str | None, targets: tuple[str, ...], force: bool, config_path: Path, as_json: bool
) -> None:
    """Push ZONE (default: every zone) to the targets now, in parallel, once each. Pushes
    refused before are judged again here.

    \b
    Exit status:
      0  every target converged
      1  a push failed (provider down, HTTP 5xx, timeout, 429; or the primary, the config):
         retry later (`sync run` retries by itself)
      3  a push was refused and nothing failed: retrying alone cannot help, an operator
         must decide (a safety limit: review with `sync plan`, then --force; a target
         that cannot serve the zone or rejected the change: change the zone or the target)
    Each outcome is printed (--json: a list of objects with "result": converged, failed
    or refused, and "refused": capability, rejected, safety or null); `sync status` keeps
    them.
    """
    cfg = load_config_or_exit(config_path)
    chosen = _chosen(cfg, targets)
    zones = _zones(cfg, zone)
    with Progress("sync apply") as progress:
        outcomes = _run(_apply(cfg, chosen, zones, force, progress))
        converged = sum(1 for o in outcomes if o["result"] == "converged")
        progress.finish(f"{converged} of {len(outcomes)} push(es) converged")
    if as_json:
        click.echo(json.dumps(outcomes, indent=2))
    else:
        for o in outcomes:
            mark = {"converged": "ok", "failed": "FAILED", "refused": "REFUSED"}[o["result"]]
            click.echo(f"{o['zone']} at {o['target']}: {mark} serial {o['serial']}: {o['detail']}")
    results = {o["result"] for o in outcomes}
    if "failed" in results:
        raise SystemExit(EXIT_FAILED)
    if "refused" in results:
        raise SystemExit(EXIT_REFUSED)


async def _apply(
    cfg: SyncConfig,
    chosen: list[str],
    zones: list[dns.name.Name],
    force: bool,
    progress: Progress,
) -> list[dict[str, Any]]:
    progress.phase("opening the targets")
    async with _engine(cfg) as engine:
        for zone in zones:
            progress.phase(f"transferring {zone} from the primary")
            await engine.refresh_zone(zone)
        progress.phase(f"pushing to {len(chosen)} target(s)")
        for zone in zones:
            data = engine.require_zone(zone)
            for name in chosen:
                if cfg.targets[name].serves(zone):
                    engine.state.enqueue(name, zone, data.serial, force=force)
        outcomes = await engine.drain(chosen, zones=zones)
        return [{**o.__dict__, "result": _result(o.ok, o.refused)} for o in outcomes]


def _result(ok: bool, refused: str | None) -> str:
    return "converged" if ok else "refused" if refused is not None else "failed"


# -- status / ns ---------------------------------------------------------------------------


@sync_group.command("status")
@click.option(
    "--events", type=click.IntRange(min=0), default=0, metavar="N",
    help="Also the N newest events (pushes, errors, refusals, drift): the evidence trail.",
)  # fmt: skip
@config_option
@json_option
def sync_status(config_path: Path, as_json: bool, events: int) -> None:
    """Per zone and target: the serial the primary serves (asked by an SOA query, TSIG-signed
    with the primary key), the serial pushed to the target, and a verdict: current (the
    target holds what the primary serves), BEHIND (with the lag), refused (why, and what
    makes it tried again) or unknown (the primary did not answer: the sidecar's last copy is
    shown instead). Also the last success, error, drift and pending retry.

    \b
    --json prints one object: {"primary": ADDR, "zones": [...], "targets": [...],
    "events": [...]}; each target row has "verdict" (current, behind, refused, unknown),
    "primary_serial" (null when not asked), "copy_serial" (the sidecar's copy),
    "pushed_serial", "refused" and "refused_kind" (capability, rejected, safety).
    """
    cfg = load_config_or_exit(config_path)
    source = ZoneSource(
        cfg.primary, cfg.primary_key, timeout=min(cfg.primary_timeout, STATUS_TIMEOUT)
    )
    answers = _run(ask_primary(source, cfg.zones))
    # A sidecar that never ran has no state file yet; status does not create one.
    try:
        state = SyncState(cfg.state) if cfg.state.exists() else None
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        zones = zone_statuses(state, answers)
        pairs = [
            (name, zone.to_text())
            for zone in cfg.zones
            for name, spec in cfg.targets.items()
            if spec.serves(zone)
        ]
        rows = target_rows(zones, pairs, state.status() if state else [], time.time)
        trail = state.events(events) if events and state else []
    finally:
        if state is not None:
            state.close()
    if as_json:
        report = {
            "primary": str(cfg.primary),
            "zones": [z.__dict__ for z in zones],
            "targets": rows,
            "events": trail,
        }
        click.echo(json.dumps(report, indent=2))
        return
    for event in trail:
        click.echo(
            f"{_when(event['at'])} {event['target']} {event['zone']} serial {event['serial']}: "
            f"{event['kind']} {event['detail'] or ''}".rstrip()
        )
    for z in zones:
        if z.primary_error is not None:
            copy = "none" if z.copy_serial is None else f"serial {z.copy_serial}"
            click.echo(
                f"{z.zone}: primary {cfg.primary} {z.primary_error}; showing the sidecar's "
                f"last copy ({copy})"
            )
    for r in rows:
        click.echo(_status_line(r))
        if r["verdict"] == "refused":
            by = " by safety" if r["refused_kind"] == "safety" else ""
            click.echo(f"  refused{by} ({_when(r['refused_at'])}): {r['refused']}")
        if r["note"]:
            click.echo(f"  {r['note']}")
        if r["last_error"] and r["verdict"] != "refused":
            click.echo(f"  last error ({_when(r['last_error_at'])}): {r['last_error']}")
        if r["drift"]:
            click.echo(f"  drift found ({_when(r['drift_at'])}): {r['drift']}")
        if r["pending_serial"] is not None:
            click.echo(
                f"  pending: serial {r['pending_serial']}, attempt {r['attempts'] + 1} "
                f"at {_when(r['next_attempt'])}"
            )


def _status_line(r: dict[str, Any]) -> str:
    """``ZONE at TARGET: primary P, pushed S (content D): VERDICT; last success T``."""
    primary = r["primary_serial"]
    if primary is None:
        copy = r["copy_serial"]
        primary_text = "not asked" if copy is None else f"not asked (sidecar's copy {copy})"
    else:
        primary_text = str(primary)
    pushed = "nothing" if r["pushed_serial"] is None else str(r["pushed_serial"])
    digest = f" (content {r['pushed_digest'][:16]})" if r["pushed_digest"] else ""
    verdict = r["verdict"]
    if verdict == "behind":
        lag = r["lag_seconds"]
        verdict_text = "BEHIND" if lag is None else f"BEHIND by {lag:.0f} s"
    elif verdict == "refused":
        verdict_text = f"REFUSED (serial {r['refused_serial']})"
    elif verdict == "unknown":
        verdict_text = "UNKNOWN"
    else:
        verdict_text = "current"
    return (
        f"{r['zone']} at {r['target']}: primary {primary_text}, pushed {pushed}{digest}: "
        f"{verdict_text}; last success {_when(r['last_success'])}"
    )


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
