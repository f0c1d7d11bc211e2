"""`zonefan keys ...`, `zonefan zone sign` and `zonefan zone maintain`: DNSSEC from the
command line. Private keys are never printed; only public data and metadata are."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import click
import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.dnssectypes import DSDigest

from nameserver.dnssec import DnssecManager, MaintenanceResult
from signer.keys import DS_SHA256, DS_SHA384
from signer.policy import Denial
from signer.timing import (
    KeyTiming,
    Role,
    emergency_rollover,
    key_state,
    mark_ds_seen,
    plan,
    retire,
    start_algorithm_rollover,
    start_rollover,
)
from zonefan.common import (
    author_of,
    author_options,
    dnssec_manager,
    json_option,
    open_store,
    zone_name,
)

_ROLE_FLAGS = {"ksk": Role.KSK, "zsk": Role.ZSK, "csk": Role.CSK}


def _when(t: int | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _report(result: MaintenanceResult, origin: dns.name.Name, as_json: bool) -> None:
    data = {
        "zone": origin.to_text(),
        "serial": result.serial,
        "actions": [
            {"action": a.kind.value, "key": a.key_id, "role": a.role.name, "reason": a.reason}
            for a in result.actions
        ],
        "next_due": result.next_due,
        "notes": list(result.plan.notes),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    done = f"serial {result.serial}" if result.serial is not None else "nothing was due"
    click.echo(f"{origin}: {done}")
    for a in result.actions:
        click.echo(f"  {a.kind.value} {a.role.name} {a.key_id or ''} {a.reason}".rstrip())
    click.echo(f"  next maintenance due: {_when(result.next_due)}")
    for note in result.plan.notes:
        click.echo(f"  note: {note}")


@click.command("sign")
@click.argument("zone")
@click.option("--nsec", "denial", flag_value=Denial.NSEC.value, help="Deny with NSEC.")
@click.option("--nsec3", "denial", flag_value=Denial.NSEC3.value, help="Deny with NSEC3.")
@click.option("--policy", "policy_name", default=None, help="DNSSEC policy from the config.")
@author_options
@json_option
@click.pass_context
def zone_sign(
    ctx: click.Context,
    zone: str,
    denial: str | None,
    policy_name: str | None,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Sign ZONE (keys from its policy if it has none) or re-sign it fully; --nsec/--nsec3
    switch its denial method."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        who = author_of(author, message or "sign the zone")
        chosen = Denial(denial) if denial else None
        result = manager.enable(origin, who, policy_name, chosen)
    _report(result, origin, as_json)


@click.command("maintain")
@click.argument("zone")
@author_options
@json_option
@click.pass_context
def zone_maintain(
    ctx: click.Context, zone: str, author: str | None, message: str, as_json: bool
) -> None:
    """Apply the key events due now and refresh expiring signatures of ZONE (what
    `zonefan serve` does on its own schedule)."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        who = author_of(author, message or "DNSSEC maintenance")
        result = manager.maintain(origin, who)
    _report(result, origin, as_json)


@click.group("keys")
def keys_group() -> None:
    """DNSSEC keys: list, rollovers, DS records for the parent."""


def _key_rows(manager: DnssecManager, origin: dns.name.Name) -> list[dict[str, Any]]:
    now = int(time.time())
    policy = manager.policy(origin)
    keys = manager.timings(origin)
    upcoming = plan(keys, policy, now).next_event
    rows = []
    for key in keys:
        state = key_state(key, now, policy)
        rows.append(
            {
                "id": key.key_id,
                "tag": key.key_tag,
                "algorithm": key.algorithm,
                "role": key.role.name,
                "state": state.phase.value,
                "ds": state.ds.value,
                "published": _when(key.publish),
                "active": _when(key.active),
                "retire": _when(key.retire),
                "remove": _when(key.remove),
                "next_event": _when(upcoming),
            }
        )
    return rows


@keys_group.command("list")
@click.argument("zone")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, zone: str, as_json: bool) -> None:
    """The keys of ZONE: tag, algorithm, role, state and the next event time."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        rows = _key_rows(dnssec_manager(ctx, store), origin)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"{origin} has no keys; `zonefan zone sign {origin}` makes them")
        return
    click.echo(f"{'TAG':>5}  {'ALG':>3}  {'ROLE':4}  {'STATE':9}  {'DS':10}  NEXT EVENT")
    for r in rows:
        click.echo(
            f"{r['tag']:>5}  {r['algorithm']:>3}  {r['role']:4}  {r['state']:9}  "
            f"{r['ds']:10}  {r['next_event']}"
        )


@keys_group.command("status")
@click.argument("zone")
@json_option
@click.pass_context
def keys_status(ctx: click.Context, zone: str, as_json: bool) -> None:
    """The keys of ZONE with every timestamp, what is awaited and the policy's notes."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        rows = _key_rows(manager, origin)
        result = plan(manager.timings(origin), manager.policy(origin), int(time.time()))
    watch = [{"key": w.key_id, "tag": w.key_tag, "expect": w.expect.value} for w in result.ds_watch]
    if as_json:
        data = {"keys": rows, "ds_watch": watch, "notes": list(result.notes)}
        click.echo(json.dumps(data, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['id']}: {r['role']} alg {r['algorithm']} tag {r['tag']} {r['state']}, DS "
            f"{r['ds']}; published {r['published']}, active {r['active']}, retire "
            f"{r['retire']}, remove {r['remove']}"
        )
    for w in watch:
        click.echo(f"waiting for the DS of tag {w['tag']} to be {w['expect']} at the parent")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"next event: {_when(result.next_event)}")


@keys_group.command("ds")
@click.argument("zone")
@click.option(
    "--digest",
    type=click.Choice(["2", "4"]),
    default="2",
    show_default=True,
    help="2: SHA-256, 4: SHA-384.",
)
@click.pass_context
def keys_ds(ctx: click.Context, zone: str, digest: str) -> None:
    """The DS records to give the registrar for ZONE, one per line in zone-file format."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        policy = manager.policy(origin)
        now = int(time.time())
        stored = {k.id: k for k in store.keys(origin)}
        sep = [
            k
            for k in manager.timings(origin)
            if k.role.is_sep and key_state(k, now, policy).phase.value not in ("removed",)
        ]
    if not sep:
        raise click.ClickException(f"{origin} has no KSK or CSK; `zonefan zone sign {origin}`")
    for key in sep:
        wire = stored[key.key_id].dnskey
        dnskey = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
        ds = dns.dnssec.make_ds(origin, dnskey, DSDigest(DS_SHA256 if digest == "2" else DS_SHA384))
        click.echo(f"{origin.to_text()} {policy.parent_ds_ttl} IN DS {ds.to_text()}")


def _find_key(keys: tuple[KeyTiming, ...], which: str) -> str:
    """A key id from an id or a key tag given on the command line."""
    matches = [k.key_id for k in keys if which in (k.key_id, str(k.key_tag))]
    if len(matches) != 1:
        known = ", ".join(f"{k.key_tag} ({k.key_id})" for k in keys) or "none"
        reason = "matches several keys" if matches else "matches no key"
        raise click.BadParameter(f"{which!r} {reason}; keys: {known}", param_hint="KEY")
    return matches[0]


def _change_keys(ctx: click.Context, zone: str, how: str, change: Any, author: str | None) -> None:
    """Record an operator's key change, then run maintenance so it takes effect."""
    origin = zone_name(zone)
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        now = int(time.time())
        keys = manager.timings(origin)
        if not keys:
            raise click.ClickException(f"{origin} has no keys; `zonefan zone sign {origin}`")
        manager.save_timings(origin, change(manager, origin, keys, now))
        result = manager.maintain(origin, author_of(author, how))
    _report(result, origin, False)


@keys_group.command("rollover")
@click.argument("zone")
@click.option("--ksk", "role", flag_value="ksk", help="Roll the KSK.")
@click.option("--zsk", "role", flag_value="zsk", help="Roll the ZSK.")
@click.option("--csk", "role", flag_value="csk", help="Roll the CSK.")
@click.option("--algorithm", type=int, default=None, help="Roll every key to this algorithm.")
@click.option("--emergency", "compromised", default=None, metavar="KEY", help="Key compromised.")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who asks.")
@click.pass_context
def keys_rollover(
    ctx: click.Context,
    zone: str,
    role: str | None,
    algorithm: int | None,
    compromised: str | None,
    author: str | None,
) -> None:
    """Start a rollover of ZONE's KSK, ZSK or CSK, an algorithm rollover (--algorithm) or
    an emergency rollover of a compromised key (--emergency KEY)."""
    if sum(x is not None for x in (role, algorithm, compromised)) != 1:
        raise click.UsageError("give exactly one of --ksk, --zsk, --csk, --algorithm, --emergency")

    def change(
        manager: DnssecManager, origin: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        policy = manager.policy(origin)
        if algorithm is not None:
            return start_algorithm_rollover(keys, algorithm, policy, now)
        if compromised is not None:
            return emergency_rollover(keys, _find_key(keys, compromised), policy, now)
        assert role is not None
        return start_rollover(keys, _ROLE_FLAGS[role], policy, now)

    _change_keys(ctx, zone, "key rollover", change, author)


@keys_group.command("ds-seen")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who saw it.")
@click.pass_context
def keys_ds_seen(ctx: click.Context, zone: str, key: str, author: str | None) -> None:
    """Tell zonefan the parent now serves the DS of KEY (a key tag or id)."""

    def change(
        _m: DnssecManager, _o: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        return mark_ds_seen(keys, _find_key(keys, key), now)

    _change_keys(ctx, zone, "DS seen at the parent", change, author)


@keys_group.command("retire")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who retires it.")
@click.pass_context
def keys_retire(ctx: click.Context, zone: str, key: str, author: str | None) -> None:
    """Stop signing with KEY (a key tag or id); it leaves the zone when that is safe."""

    def change(
        _m: DnssecManager, _o: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        return retire(keys, _find_key(keys, key), now)

    _change_keys(ctx, zone, "key retired", change, author)
