"""``zonefan drain`` and ``undrain``: a region taken out of every pool by hand, and back.

Each pool that changes is one changeset by the user (as ``record`` edits are), with the
reason as its message; the drain itself is kept in the store, so a running ``zonefan
serve`` (which reads the drains at each health decision) never publishes a drained member
again, and ``drain status`` says what is drained, since when, by whom and why.

Undrain brings back the members whose health is good as far as the store knows: the last
verdict of the checks since ``serve`` last started, and every member when there is none
(no check has failed it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click
import dns.name

from nameserver.edit.editor import Author
from nameserver.store.continuity import Drain
from nameserver.store.store import Store
from zonefan.common import author_of, author_options, editor_for, open_store
from zonefan.options import config_of, json_option, zone_name
from zonefan.pools import (
    PlacedPool,
    apply_pool,
    drained_addresses,
    health_config,
    place_pools,
    publish,
)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _pools(ctx: click.Context, store: Store, zone: dns.name.Name | None) -> list[PlacedPool]:
    """The configured pools (of ``zone`` when given)."""
    config = config_of(ctx)
    if "pool" not in config:
        raise click.ClickException(
            'no pools are configured: add [pool."NAME"] tables to the config (see README '
            '"Health checks (pools)")'
        )
    zones = store.zone_names()
    if zone is not None and zone not in zones:
        raise click.ClickException(f"{zone} is not a zone of the store")
    placed = place_pools(health_config(config), zones)
    return [p for p in placed if zone is None or p.zone == zone]


def _regions(placed: Sequence[PlacedPool]) -> list[str]:
    return sorted({m.region for p in placed for m in p.pool.members})


def _known_region(region: str, placed: Sequence[PlacedPool], zone: dns.name.Name | None) -> None:
    if region not in _regions(placed):
        where = f" in {zone}" if zone is not None else ""
        known = ", ".join(_regions(placed)) or "none"
        raise click.ClickException(
            f"no pool has a member in region {region!r}{where}; known regions: {known}"
        )


def _republish(
    store: Store, ctx: click.Context, placed: Sequence[PlacedPool], author: Author
) -> list[dict[str, Any]]:
    """Each pool's RRset as its health and the drains now in force make it; the
    changesets, one per pool that changed."""
    editor = editor_for(ctx, store)
    drains = store.drains()
    changes = []
    for p in placed:
        down = store.withdrawn_members(p.pool.name)
        healthy = [m.address for m in p.pool.members if m.address not in down]
        addresses = publish(p.pool, healthy, drained_addresses(p, drains))
        cs = apply_pool(editor, p, addresses, author)
        if cs is not None:
            changes.append(
                {
                    "pool": p.pool.label,
                    "zone": p.zone.to_text(),
                    "serial": cs.serial_after,
                    "published": addresses,
                }
            )
    return changes


def _say_changes(changes: list[dict[str, Any]]) -> None:
    for c in changes:
        published = ", ".join(c["published"]) or "nothing (the RRset is deleted)"
        click.echo(f"pool {c['pool']}: serial {c['serial']}: publishes {published}")


@click.command("drain")
@click.argument("region")
@click.option("--zone", "zone", default=None, help="Only the pools of this zone.")
@click.option("--force", is_flag=True, help="Drain even if a pool would be left empty.")
@author_options
@json_option
@click.pass_context
def drain_cmd(
    ctx: click.Context,
    region: str,
    zone: str | None,
    force: bool,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Withdraw every member in REGION from its pools, e.g. `zonefan drain fra -m
    "maintenance"`; `zonefan drain status` shows what is drained.

    Each pool that changes is a changeset by you with the reason as its message; the
    drain holds until `zonefan undrain REGION` (a running serve never publishes a drained
    member). A drain that would leave a pool empty is refused unless --force."""
    if region == "status":
        if force or message:
            raise click.UsageError("`zonefan drain status` takes only --zone and --json")
        _status(ctx, None if zone is None else zone_name(zone), as_json)
        return
    if not message:
        raise click.UsageError('give the reason with -m, e.g. -m "maintenance of fra"')
    origin = None if zone is None else zone_name(zone)
    who = author_of(author, message)
    with open_store(ctx, create=False) as store:
        drain, placed, changes = drain_region(ctx, store, region, origin, who, force)
    if as_json:
        click.echo(json.dumps({"drain": _drain_json(drain, placed), "changes": changes}, indent=2))
        return
    scope = "every zone" if origin is None else str(origin)
    click.echo(f"drained {region} in {scope}")
    _say_changes(changes)


def drain_region(
    ctx: click.Context,
    store: Store,
    region: str,
    origin: dns.name.Name | None,
    who: Author,
    force: bool = False,
) -> tuple[Drain, list[PlacedPool], list[dict[str, Any]]]:
    """Drain ``region`` (in ``origin`` only, when given), ``who.message`` the reason: the
    drain recorded and each pool republished. Refused, with nothing changed, for an
    unknown region, a region drained already, or (unless ``force``) a pool left empty."""
    placed = _pools(ctx, store, origin)
    _known_region(region, placed, origin)
    active = store.drains()
    same = [d for d in active if d.region == region and (d.zone is None or d.zone == origin)]
    if same:
        d = same[0]
        scope = "every zone" if d.zone is None else str(d.zone)
        raise click.ClickException(
            f"region {region} is drained already in {scope} since {_iso(d.since)} by "
            f"{d.author}: {d.reason}"
        )
    planned = Drain(0, region, origin, time.time(), who.name, who.message)
    emptied = [
        p.pool.label
        for p in placed
        if any(m.region == region for m in p.pool.members)
        and drained_addresses(p, [*active, planned]) == {m.address for m in p.pool.members}
    ]
    if emptied and not force:
        raise click.ClickException(
            f"draining {region} would leave pool(s) {', '.join(emptied)} with no member; "
            "nothing was changed (drain with --force to delete their RRsets anyway)"
        )
    drain = store.add_drain(region, origin, planned.since, who.name, who.message)
    changes = _republish(store, ctx, placed, who)
    return drain, placed, changes


@click.command("undrain")
@click.argument("region")
@click.option("--zone", "zone", default=None, help="Only the drain of this zone.")
@author_options
@json_option
@click.pass_context
def undrain_cmd(
    ctx: click.Context,
    region: str,
    zone: str | None,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """End the drains of REGION (of one zone with --zone): its members whose checks are
    good return to their pools, each pool that changes a changeset by you."""
    origin = None if zone is None else zone_name(zone)
    who = author_of(author, message or f"undrain {region}")
    with open_store(ctx, create=False) as store:
        ending, changes = undrain_region(ctx, store, region, origin, who)
    if as_json:
        click.echo(json.dumps({"undrained": [d.id for d in ending], "changes": changes}, indent=2))
        return
    click.echo(f"undrained {region}")
    _say_changes(changes)


def undrain_region(
    ctx: click.Context, store: Store, region: str, origin: dns.name.Name | None, who: Author
) -> tuple[list[Drain], list[dict[str, Any]]]:
    """End the drains of ``region`` (of ``origin`` only, when given) and republish every
    pool; the drains ended and the changes. An error when it is not drained."""
    placed = _pools(ctx, store, None)
    active = store.drains()
    ending = [d for d in active if d.region == region and (origin is None or d.zone == origin)]
    if not ending:
        _known_region(region, placed, None)
        drained = ", ".join(sorted({d.region for d in active})) or "none"
        raise click.ClickException(
            f"region {region} is not drained"
            + (f" in {origin}" if origin is not None else "")
            + f" (drained regions: {drained})"
        )
    store.end_drains([d.id for d in ending], time.time(), who.name, who.message)
    changes = _republish(store, ctx, placed, who)
    return ending, changes


def _drain_json(drain: Drain, placed: Sequence[PlacedPool]) -> dict[str, Any]:
    members = [
        {"pool": p.pool.label, "address": m.address}
        for p in placed
        for m in p.pool.members
        if m.region == drain.region and drain.covers(p.zone)
    ]
    return {
        "id": drain.id,
        "region": drain.region,
        "zone": None if drain.zone is None else drain.zone.to_text(),
        "since": _iso(drain.since),
        "by": drain.author,
        "reason": drain.reason,
        "members": members,
    }


def _status(ctx: click.Context, zone: dns.name.Name | None, as_json: bool) -> None:
    with open_store(ctx, read_only=True) as store:
        drains = [d for d in store.drains() if zone is None or d.zone in (None, zone)]
        config = config_of(ctx)
        placed = place_pools(health_config(config), store.zone_names()) if "pool" in config else []
    rows = [_drain_json(d, placed) for d in drains]
    if as_json:
        click.echo(json.dumps({"drains": rows}, indent=2))
        return
    if not rows:
        click.echo("nothing is drained")
    for r in rows:
        scope = "every zone" if r["zone"] is None else r["zone"]
        click.echo(f"{r['region']} in {scope}: since {r['since']} by {r['by']}: {r['reason']}")
        for m in r["members"]:
            click.echo(f"  {m['pool']} {m['address']}")
