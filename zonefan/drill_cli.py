"""``zonefan drill REGION``: a measured failover test of a region, and ``zonefan drill
report``: the drills of a period, as the evidence an auditor asks for.

The drill drains the region exactly as ``zonefan drain`` does (the same function, by the
user, the reason "drill: REASON"), times every endpoint until it serves the pools
without the region (:mod:`zonefan.drill`), undrains it whatever happens, times the way
back, and records it all in the store.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from types import FrameType
from typing import Any

import click
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from nameserver.store.drills import Drill, DrillEndpoint
from nameserver.store.store import Store
from nameserver.store.versions import current_snapshot
from settings import Address, SettingsError, parse_address
from sync.config import SyncConfig, load_sync_config
from zonefan.common import author_of, author_options, config_keys, open_store, transfer_settings
from zonefan.drill import (
    DrillPlan,
    Endpoint,
    Keys,
    Reached,
    Watch,
    measure,
    run_drill,
)
from zonefan.options import config_of, duration, json_option, parse_when, zone_name
from zonefan.pools import PlacedPool, health_config, place_pools
from zonefan.pools_cli import drain_region, undrain_region
from zonefan.serve_sync import _reachable

DEFAULT_LISTEN = "127.0.0.1:5353"  # serve's default, when [serve] names no listen


class DefaultGroup(click.Group):
    """``zonefan drill REGION`` runs ``drill run REGION``: a first word that is no
    subcommand is the region."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("drill", cls=DefaultGroup)
def drill_group() -> None:
    """Measured failover tests: `zonefan drill REGION -m REASON` drains REGION, times
    every endpoint until it serves the pools without it and again after the restore, and
    records it; `zonefan drill report --since DATE` shows the drills.

    \b
    Examples:
      zonefan drill fra -m "quarterly drill" --sync-config sync.toml
      zonefan drill report --since 2026-10-01 --format html > drills.html
    """


@drill_group.command("run")
@click.argument("region")
@click.option("--zone", "zone", default=None, help="Only the pools of this zone.")
@click.option(
    "--sync-config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="SYNC.TOML",
    help="The sync sidecar's config: its targets with a DNS address are measured. "
    "Default: ./sync.toml when it exists.",
)
@click.option(
    "--timeout",
    callback=duration,
    default="2m",
    show_default=True,
    metavar="DURATION",
    help="How long each endpoint may take, for the drain and again for the restore.",
)
@author_options
@json_option
@click.pass_context
def drill_run(
    ctx: click.Context,
    region: str,
    zone: str | None,
    sync_config: Path | None,
    timeout: float,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Drain REGION, measure, restore, measure; exit status 1 when an endpoint never
    served the drained or the restored answer (the drill is recorded either way)."""
    if not message:
        raise click.UsageError('give the reason with -m, e.g. -m "quarterly failover drill"')
    if timeout <= 0:
        raise click.BadParameter("must be more than 0", param_hint="--timeout")
    origin = None if zone is None else zone_name(zone)
    who = author_of(author, f"drill: {message}")
    sync = _sync_config(ctx, sync_config)
    with open_store(ctx, create=False) as store:
        # Everything that can fail is read before the drain: a drill that cannot be run
        # leaves nothing drained.
        config = config_of(ctx)
        placed = [
            p
            for p in (
                place_pools(health_config(config), store.zone_names()) if "pool" in config else []
            )
            if (origin is None or p.zone == origin) and _in_region(p, region)
        ]
        zones = sorted({p.zone for p in placed})
        keys = _keys(store, zones)
        endpoints = tuple(find_endpoints(ctx, zones, sync))
        plan = DrillPlan(region, tuple(zones), who.name, message, timeout, endpoints)

        def drain() -> list[Watch]:
            drain_region(ctx, store, region, origin, who)  # refuses as `zonefan drain` does
            return [
                Watch(p.zone, p.pool.name, p.pool.rdtype, absent=_in_region(p, region))
                for p in placed
            ]

        pending: list[str] = []  # a signal that came while the undrain was committed

        def undrain() -> list[Watch]:
            with _deferred_signals(pending):
                undrain_region(ctx, store, region, origin, who)
            return [
                Watch(
                    p.zone,
                    p.pool.name,
                    p.pool.rdtype,
                    present=_in_region(p, region) & _published(store, p),
                )
                for p in placed
            ]

        def timed(watches: Sequence[Watch], since: float) -> Mapping[str, Reached]:
            if pending:
                raise KeyboardInterrupt(pending[0])
            return asyncio.run(
                measure(endpoints, watches, keys, since, timeout, clock=time.monotonic)
            )

        with _sigterm_interrupts():
            try:
                drill = run_drill(
                    store, plan, drain, undrain, timed, clock=time.monotonic, wall=time.time
                )
            except KeyboardInterrupt:
                raise click.ClickException(
                    f"drill interrupted; region {region} was restored (see `zonefan drill report`)"
                ) from None
    if as_json:
        click.echo(json.dumps(drill_json(drill), indent=2))
    else:
        click.echo(render_text([drill]), nl=False)
    if drill.outcome != "passed":
        ctx.exit(1)


def _in_region(p: PlacedPool, region: str) -> frozenset[str]:
    return frozenset(m.value for m in p.pool.members if m.region == region)


def _published(store: Store, p: PlacedPool) -> frozenset[str]:
    """The pool's addresses as the store holds them now."""
    records = current_snapshot(store, p.zone, None).rrset_records(p.pool.name, p.pool.rdtype)
    return frozenset(r.rdata.to_text() for r in records)


def _keys(store: Store, zones: Sequence[dns.name.Name]) -> Keys:
    """The DNSKEY RRset of each signed zone, as the store holds it."""
    out = {}
    for zone in zones:
        state = store.dnssec(zone)
        if state is None or not state.signed:
            continue
        records = current_snapshot(store, zone, None).rrset_records(zone, dns.rdatatype.DNSKEY)
        if not records:
            raise click.ClickException(f"{zone} is signed but holds no DNSKEY RRset")
        out[zone] = dns.rrset.from_rdata_list(zone, records[0].ttl, [r.rdata for r in records])
    return out


def _sync_config(ctx: click.Context, path: Path | None) -> SyncConfig | None:
    """The sidecar's config (``--sync-config``, else ./sync.toml when present)."""
    if path is None:
        if not Path("sync.toml").exists():
            return None
        path = Path("sync.toml")
    try:
        return load_sync_config(path, shared_keys=config_keys(ctx))
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


def find_endpoints(
    ctx: click.Context, zones: Sequence[dns.name.Name], sync: SyncConfig | None
) -> list[Endpoint]:
    """The primary (the first ``[serve] listen``), every ``[[secondary]]`` that serves one
    of ``zones`` at its NOTIFY address, and every sync target of them at its DNS address;
    those that cannot be asked are listed with the reason."""
    serve = config_of(ctx).data.get("serve", {})
    listen = serve.get("listen", [DEFAULT_LISTEN]) if isinstance(serve, dict) else []
    try:
        primary = _reachable(parse_address(listen[0] if listen else DEFAULT_LISTEN))
    except ValueError as e:
        raise click.ClickException(f"[serve] listen: {e}") from None
    found = [Endpoint("primary", "primary", primary)]
    _, acl = transfer_settings(ctx, config_keys(ctx))
    sidecar = None if sync is None or sync.listen is None else _reachable(sync.listen)
    for s in acl.secondaries:
        if s.zones is not None and not s.zones & set(zones):
            continue
        if s.notify is None:
            found.append(
                Endpoint(
                    "secondary",
                    s.text,
                    None,
                    s.zones,
                    "not measured: no address (the entry has no notify address to ask)",
                )
            )
            continue
        address = Address(*s.notify)
        if sidecar is not None and address == sidecar:
            note = "not measured: the sync sidecar's NOTIFY listener (its targets are measured)"
            found.append(Endpoint("sidecar", str(address), None, s.zones, note))
            continue
        found.append(Endpoint("secondary", str(address), address, s.zones))
    for name, spec in ({} if sync is None else sync.targets).items():
        served = set(sync.zones if spec.zones is None else spec.zones) if sync else set()
        mine = frozenset(z for z in zones if z in served)
        if not mine:
            continue
        target_address = spec.target.dns_address()
        if target_address is None:
            note = "not measured: no address (its config names no DNS server to ask)"
            found.append(Endpoint("target", name, None, mine, note))
        else:
            found.append(Endpoint("target", name, target_address, mine))
    return found


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM interrupts the drill as Ctrl-C does, so the region is restored."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _deferred_signals(pending: list[str]) -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (the restore is never cut short);
    their names are added to ``pending``."""

    def defer(signum: int, frame: FrameType | None) -> None:
        pending.append(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, defer) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- report ----------------------------------------------------------------------------------


@drill_group.command("report")
@click.option("--since", required=True, metavar="DATE", help="Drills started from (included).")
@click.option("--until", default=None, metavar="DATE", help="Up to (excluded); default: now.")
@click.option("--zone", "zone", default=None, help="Only drills of this zone.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "html"]),
    default="text",
    show_default=True,
    help="html: one self-contained file.",
)
@json_option
@click.pass_context
def drill_report(
    ctx: click.Context,
    since: str,
    until: str | None,
    zone: str | None,
    fmt: str,
    as_json: bool,
) -> None:
    """The drills started from --since to --until: per endpoint the seconds to serve the
    drained and the restored answer, the slowest, and what failed."""
    if as_json:  # the CLI's --json: the same as --format json
        if fmt == "html":
            raise click.UsageError("--json prints JSON: give it or --format html, not both")
        fmt = "json"
    start = parse_when(since, "--since")
    end = time.time() if until is None else parse_when(until, "--until")
    if end <= start:
        raise click.BadParameter(
            f"{until or 'now'} is not after --since {since}", param_hint="--until"
        )
    origin = None if zone is None else zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        if origin is not None and origin not in store.zone_names():
            raise click.BadParameter(f"zone {origin} is not in the store", param_hint="--zone")
        drills = store.drills(start, end, origin)
    period = (_iso(start), _iso(end))
    if fmt == "json":
        doc = {"since": period[0], "until": period[1], "drills": [drill_json(d) for d in drills]}
        click.echo(json.dumps(doc, indent=2))
    elif fmt == "html":
        click.echo(render_html(drills, period), nl=False)
    else:
        if not drills:
            click.echo(f"no drill from {period[0]} to {period[1]}")
        click.echo(render_text(drills), nl=False)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def _endpoint_json(e: DrillEndpoint) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "name": e.name,
        "address": e.address,
        "measured": e.measured,
        "drained_at_seconds": e.drained_at,
        "restored_at_seconds": e.restored_at,
        "queries": e.queries,
        "failed": e.failed,
        "note": e.note,
    }


def drill_json(d: Drill) -> dict[str, Any]:
    """One drill as the JSON report holds it."""

    def slowest(phase: str) -> dict[str, Any] | None:
        e = d.slowest(phase)
        if e is None:
            return None
        return {"name": e.name, "seconds": e.drained_at if phase == "drained" else e.restored_at}

    return {
        "id": d.id,
        "region": d.region,
        "zones": [z.to_text() for z in d.zones],
        "by": d.author,
        "reason": d.reason,
        "start": _iso(d.start),
        "outcome": d.outcome,
        "timeout_seconds": d.timeout,
        "restore_started_at_seconds": d.restore_start,
        "finished": None if d.finished is None else _iso(d.finished),
        "endpoints": [_endpoint_json(e) for e in d.endpoints],
        "slowest_drained": slowest("drained"),
        "slowest_restored": slowest("restored"),
        "failures": d.failures,
    }


def render_text(drills: Sequence[Drill]) -> str:
    lines = []
    for d in drills:
        zones = ", ".join(z.to_text() for z in d.zones)
        lines.append(
            f"drill {d.id}: {d.region} in {zones}, {_iso(d.start)} by {d.author}: {d.reason}: "
            f"{d.outcome.upper()}"
        )
        width = max((len(e.name) for e in d.endpoints), default=0)
        for e in d.endpoints:
            if not e.measured:
                lines.append(f"  {e.kind:<9} {e.name:<{width}}  {e.note}")
                continue
            line = (
                f"  {e.kind:<9} {e.name:<{width}}  drained {_seconds(e.drained_at):>9}  "
                f"restored {_seconds(e.restored_at):>9}"
            )
            lines.append(line + (f"  ({e.note})" if e.note else ""))
        for phase in ("drained", "restored"):
            slow = d.slowest(phase)
            if slow is not None:
                took = slow.drained_at if phase == "drained" else slow.restored_at
                lines.append(
                    f"  slowest to serve the {phase} answer: {slow.name}, {_seconds(took)}"
                )
        lines.extend(f"  FAILED: {f}" for f in d.failures)
    return "".join(line + "\n" for line in lines)


_CSS = """body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: left; }
td.n { text-align: right; } th { background: #eee; } .failed { color: #a00; }"""


def render_html(drills: Sequence[Drill], period: tuple[str, str]) -> str:
    """One HTML file: inline CSS, no script, every text escaped."""
    title = escape(f"zonefan drills {period[0]} to {period[1]}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{title}</title><style>{_CSS}</style></head><body><h1>{title}</h1>",
    ]
    if not drills:
        parts.append("<p>No drill in this period.</p>")
    for d in drills:
        zones = ", ".join(z.to_text() for z in d.zones)
        parts.append(
            f"<h2>Drill {d.id}: {escape(d.region)} in {escape(zones)}: "
            f'<span class="{escape(d.outcome)}">{escape(d.outcome)}</span></h2>'
            f"<p>{escape(_iso(d.start))} by {escape(d.author)}: {escape(d.reason)}</p>"
            "<table><thead><tr><th>kind</th><th>name</th><th>address</th>"
            "<th>drained (s)</th><th>restored (s)</th><th>note</th></tr></thead><tbody>"
        )
        for e in d.endpoints:
            cells = [e.kind, e.name, e.address or "-"]
            row = "".join(f"<td>{escape(c)}</td>" for c in cells)
            for value in (e.drained_at, e.restored_at):
                shown = "-" if not e.measured else _seconds(value).removesuffix(" s")
                row += f'<td class="n">{escape(shown)}</td>'
            row += f"<td>{escape(e.note)}</td>"
            parts.append(f'<tr class="{"failed" if e.failed else "ok"}">{row}</tr>')
        parts.append("</tbody></table>")
        if d.failures:
            parts.append(
                '<ul class="failed">'
                + "".join(f"<li>{escape(f)}</li>" for f in d.failures)
                + "</ul>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)
