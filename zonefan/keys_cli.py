"""`zonefan keys ...`, `zonefan zone sign` and `zonefan zone maintain`: DNSSEC from the
command line. Private keys are never printed; only public data and metadata are."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import click
import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.dnssectypes import DSDigest

from nameserver.dnssec.dscheck import DEFAULT_TIMEOUT, Presence
from nameserver.dnssec.manager import DnssecManager, MaintenanceResult
from nameserver.dnssec.parentds import ParentDsReport
from nameserver.store.store import Store
from signer.keys import DS_SHA256, DS_SHA384
from signer.policy import DAY, Denial, DsCheck, Policy, format_duration
from signer.timing import (
    ActionKind,
    DsAdvice,
    DsExpect,
    DsWatch,
    Forecast,
    ForecastStep,
    KeyTiming,
    Role,
    emergency_rollover,
    key_state,
    mark_ds_gone,
    mark_ds_seen,
    parent_ds,
    retire,
    start_algorithm_rollover,
    start_rollover,
)
from zonefan.common import (
    author_of,
    author_options,
    dnssec_manager,
    open_store,
)
from zonefan.options import duration, json_option, zone_name
from zonefan.progress import Progress

_ROLE_FLAGS = {"ksk": Role.KSK, "zsk": Role.ZSK, "csk": Role.CSK}
# How far `keys timeline` and `keys ds` run the planner ahead: a year shows every
# rollover running or asked for, and four of a 90-day ZSK's.
_HORIZON = 366 * DAY
_ASSUMPTION = (
    "every DS change at the parent is assumed to be seen the moment it is awaited; a "
    "parent that takes longer moves the steps after it later by as much"
)


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
        "policy": result.policy.to_json(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    done = f"serial {result.serial}" if result.serial is not None else "nothing was due"
    click.echo(f"{origin}: {done}")
    click.echo(f"  {result.policy.describe()}")
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
    with open_store(ctx, create=False) as store, Progress(f"sign {origin}") as progress:
        manager = dnssec_manager(ctx, store, progress.signing)
        who = author_of(author, message or "sign the zone")
        chosen = Denial(denial) if denial else None
        progress.phase("preparing")
        result = manager.enable(origin, who, policy_name, chosen)
        progress.finish(f"signed, serial {result.serial}")
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
    with open_store(ctx, create=False) as store, Progress(f"maintain {origin}") as progress:
        manager = dnssec_manager(ctx, store, progress.signing)
        who = author_of(author, message or "DNSSEC maintenance")
        progress.phase("preparing")
        result = manager.maintain(origin, who)
        progress.finish("done" if result.serial is None else f"serial {result.serial}")
    _report(result, origin, as_json)


@click.group("keys")
def keys_group() -> None:
    """DNSSEC keys: list, generate, rollovers, DS records and checks at the parent."""


def _key_rows(manager: DnssecManager, origin: dns.name.Name) -> list[dict[str, Any]]:
    now = int(manager.clock())
    policy = manager.policy(origin)
    keys = manager.timings(origin)
    upcoming = manager.key_plan(origin, now).next_event
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
    with open_store(ctx, read_only=True) as store:
        rows = _key_rows(dnssec_manager(ctx, store), origin)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(
            f"{origin} has no keys; `zonefan zone sign {origin}` makes them from the policy "
            f"(or `zonefan keys generate {origin} --csk` first)"
        )
        return
    click.echo(f"{'TAG':>5}  {'ALG':>3}  {'ROLE':4}  {'STATE':9}  {'DS':10}  NEXT EVENT")
    for r in rows:
        click.echo(
            f"{r['tag']:>5}  {r['algorithm']:>3}  {r['role']:4}  {r['state']:9}  "
            f"{r['ds']:10}  {r['next_event']}"
        )


def _awaiting(w: DsWatch, origin: dns.name.Name, policy: Policy) -> str:
    """What the zone waits for at the parent, and who brings it about."""
    want = "to appear at" if w.expect is DsExpect.PRESENT else "to leave"
    text = f"waiting for the DS of tag {w.key_tag} {want} the parent"
    if policy.ds_check is DsCheck.AUTO:
        where = (
            "parent-servers " + ", ".join(policy.parent_servers)
            if policy.parent_servers
            else "the parent zone's nameservers"
        )
        return (
            f"{text}; `zonefan serve` asks {where} every "
            f"{format_duration(policy.ds_check_interval)} and records it once every one "
            f"agrees; `zonefan keys ds-check {origin}` asks now"
        )
    if w.expect is DsExpect.PRESENT:
        return (
            f"{text}; ds-check is manual: give it to the parent (`zonefan keys ds {origin}`), "
            f"then run `zonefan keys ds-seen {origin} {w.key_tag}`"
        )
    return (
        f"{text}; ds-check is manual: remove it at the parent, then run "
        f"`zonefan keys ds-gone {origin} {w.key_tag}`"
    )


@keys_group.command("status")
@click.argument("zone")
@json_option
@click.pass_context
def keys_status(ctx: click.Context, zone: str, as_json: bool) -> None:
    """The keys of ZONE with every timestamp, what is awaited and the policy's notes."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        manager = dnssec_manager(ctx, store)
        rows = _key_rows(manager, origin)
        chosen = manager.zone_policy(origin)
        policy = chosen.policy
        result = manager.key_plan(origin)
    watch = [{"key": w.key_id, "tag": w.key_tag, "expect": w.expect.value} for w in result.ds_watch]
    if as_json:
        data = {
            "keys": rows,
            "ds_watch": watch,
            "ds_check": {
                "mode": policy.ds_check.value,
                "parent_servers": list(policy.parent_servers),  # empty: the parent's NS set
                "interval": policy.ds_check_interval,
            },
            "notes": list(result.notes),
            "policy": chosen.to_json(),
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(chosen.describe())
    if chosen.problem is not None:
        click.echo(f"problem: {chosen.problem}")
    for r in rows:
        click.echo(
            f"{r['id']}: {r['role']} alg {r['algorithm']} tag {r['tag']} {r['state']}, DS "
            f"{r['ds']}; published {r['published']}, active {r['active']}, retire "
            f"{r['retire']}, remove {r['remove']}"
        )
    for w in result.ds_watch:
        click.echo(_awaiting(w, origin, policy))
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"next event: {_when(result.next_event)}")


def _signed(ctx: click.Context, store: Store, origin: dns.name.Name, so: str) -> DnssecManager:
    """The DNSSEC manager, once ``origin`` is known to be signed (else ``so``: what follows
    from it not being signed)."""
    manager = dnssec_manager(ctx, store)
    if not manager.signs(origin):
        raise click.ClickException(
            f"{origin} is not signed, so {so}; `zonefan zone sign {origin}` signs it"
        )
    return manager


def _iso(t: int | None) -> str | None:
    """A time for JSON output: ISO 8601 in UTC, null when unknown."""
    return None if t is None else _when(t)


def _ds_text(origin: dns.name.Name, wire: bytes, digest: str) -> str:
    """The DS rdata (presentation form) of the DNSKEY ``wire``."""
    dnskey = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
    ds = dns.dnssec.make_ds(origin, dnskey, DSDigest(DS_SHA256 if digest == "2" else DS_SHA384))
    return str(ds.to_text())


def _parent_ds_data(
    origin: dns.name.Name, fc: Forecast, wires: dict[str, bytes], digest: str, ttl: int
) -> dict[str, Any]:
    """`keys ds --json`: the DS records to publish now, those coming and those to remove."""
    data: dict[str, Any] = {
        "zone": origin.to_text(),
        "at": _iso(fc.start),
        "digest": int(digest),
        "ttl": ttl,
        "publish": [],
        "coming": [],
        "remove": [],
        "assumption": _ASSUMPTION,
    }
    for entry in parent_ds(fc):
        key = entry.key
        ds = _ds_text(origin, wires[key.key_id], digest)
        data[entry.advice.value].append(
            {
                "key": key.key_id,
                "tag": key.key_tag,
                "role": key.role.name,
                "algorithm": key.algorithm,
                "ds": ds,
                "record": f"{origin.to_text()} {ttl} IN DS {ds}",
                "since": _iso(entry.since),
                "until": _iso(entry.until),
                "earliest": entry.earliest,
            }
        )
    return data


def _print_parent_ds(origin: dns.name.Name, data: dict[str, Any]) -> None:
    """Records safe now on their own lines; everything else as zone-file comments."""
    for e in data["publish"]:
        click.echo(e["record"])
    if not data["publish"]:
        now = "is safe to publish at the parent yet" if data["coming"] else "belongs at the parent"
        click.echo(f"; no DS of {origin} {now}")
    for e in data["publish"]:
        if e["until"] is not None:
            click.echo(
                f"; the DS of {e['role']} {e['tag']} is withdrawn from {e['until']}: "
                f"`zonefan keys ds {origin}` then says what replaces it"
            )
    for e in data["coming"]:
        label = f"{e['role']} {e['tag']} (algorithm {e['algorithm']})"
        if e["since"] is None:
            when = "not within the next year (`zonefan keys timeline` shows the plan)"
        else:
            when = f"from {e['since']}" + (" at the earliest" if e["earliest"] else "")
        click.echo(
            f"; coming, not before: the DS of {label}, safe {when}, once its DNSKEY "
            "and signatures are in every cache:"
        )
        click.echo(f";   {e['record']}")
    for e in data["remove"]:
        label = f"{e['role']} {e['tag']} (algorithm {e['algorithm']})"
        click.echo(f"; withdrawn {e['since']}, remove it from the parent: the DS of {label}:")
        click.echo(f";   {e['record']}")


@keys_group.command("ds")
@click.argument("zone")
@click.option(
    "--digest",
    type=click.Choice(["2", "4"]),
    default="2",
    show_default=True,
    help="2: SHA-256, 4: SHA-384.",
)
@json_option
@click.pass_context
def keys_ds(ctx: click.Context, zone: str, digest: str, as_json: bool) -> None:
    """The DS records for ZONE's parent: those safe to publish now, one per line in
    zone-file format; then, as comments, those coming (and from when) and those to remove.

    A DS is safe once the key plan asks for it: its DNSKEY is published and in every
    cache, and for a new algorithm the zone is signed with it everywhere and that has
    reached every cache (RFC 7583 §3.3.1, RFC 6781 §4.1.4). A DS published earlier makes
    validating resolvers fail the zone. A withdrawn DS is never listed to publish."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        manager = _signed(ctx, store, origin, "no DS belongs at the parent")
        policy = manager.policy(origin)
        fc = manager.key_forecast(origin, _HORIZON)
        wires = {k.id: k.dnskey for k in store.keys(origin)}
    data = _parent_ds_data(origin, fc, wires, digest, policy.parent_ds_ttl)
    if not any(data[a.value] for a in DsAdvice):
        raise click.ClickException(
            f"{origin} has no KSK or CSK whose DS belongs at the parent; "
            f"`zonefan keys status {origin}` shows its keys"
        )
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        _print_parent_ds(origin, data)


def _find_key(keys: tuple[KeyTiming, ...], which: str) -> str:
    """A key id from an id or a key tag given on the command line."""
    matches = [k.key_id for k in keys if which in (k.key_id, str(k.key_tag))]
    if len(matches) != 1:
        known = ", ".join(f"{k.key_tag} ({k.key_id})" for k in keys) or "none"
        reason = "matches several keys" if matches else "matches no key"
        raise click.BadParameter(f"{which!r} {reason}; keys: {known}", param_hint="KEY")
    return matches[0]


def _change_keys(
    ctx: click.Context, zone: str, how: str, change: Any, author: str | None, as_json: bool
) -> None:
    """Record an operator's key change, then run maintenance so it takes effect."""
    origin = zone_name(zone)
    with open_store(ctx, create=False) as store:
        manager = dnssec_manager(ctx, store)
        now = int(manager.clock())
        keys = manager.timings(origin)
        if not keys:
            raise click.ClickException(f"{origin} has no keys; `zonefan zone sign {origin}`")
        manager.save_timings(origin, change(manager, origin, keys, now))
        if not manager.signs(origin):
            text = f"{origin}: recorded; the zone is not signed, so nothing else changes"
            data: dict[str, Any] = {"zone": origin.to_text(), "serial": None, "actions": []}
            click.echo(json.dumps(data, indent=2) if as_json else text)
            return
        result = manager.maintain(origin, author_of(author, how))
    _report(result, origin, as_json)


def _check_role(origin: dns.name.Name, keys: tuple[KeyTiming, ...], flag: str) -> None:
    """Refuse to roll a role the zone does not sign with, naming the option to use."""
    roles = {k.role for k in keys if k.publish is not None and k.remove is None}
    if not roles or _ROLE_FLAGS[flag] in roles:
        return  # nothing to hint: the planner says what is wrong, if anything
    if roles == {Role.CSK}:
        raise click.ClickException(
            f"{origin} signs with a CSK; use --csk (--{flag} is for a zone with a KSK and a ZSK)"
        )
    if Role.CSK not in roles:
        raise click.ClickException(
            f"{origin} signs with a KSK and a ZSK; use --ksk or --zsk (--csk is for a zone "
            "signed with one combined signing key)"
        )


@keys_group.command("rollover")
@click.argument("zone")
@click.option("--ksk", "role", flag_value="ksk", help="Roll the KSK.")
@click.option("--zsk", "role", flag_value="zsk", help="Roll the ZSK.")
@click.option("--csk", "role", flag_value="csk", help="Roll the CSK.")
@click.option("--algorithm", type=int, default=None, help="Roll every key to this algorithm.")
@click.option("--emergency", "compromised", default=None, metavar="KEY", help="Key compromised.")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who asks.")
@json_option
@click.pass_context
def keys_rollover(
    ctx: click.Context,
    zone: str,
    role: str | None,
    algorithm: int | None,
    compromised: str | None,
    author: str | None,
    as_json: bool,
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
        _check_role(origin, keys, role)
        return start_rollover(keys, _ROLE_FLAGS[role], policy, now)

    _change_keys(ctx, zone, "key rollover", change, author, as_json)


@keys_group.command("ds-seen")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who saw it.")
@json_option
@click.pass_context
def keys_ds_seen(
    ctx: click.Context, zone: str, key: str, author: str | None, as_json: bool
) -> None:
    """Tell zonefan the parent now serves the DS of KEY (a key tag or id)."""

    def change(
        _m: DnssecManager, _o: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        return mark_ds_seen(keys, _find_key(keys, key), now)

    _change_keys(ctx, zone, "DS seen at the parent", change, author, as_json)


@keys_group.command("ds-gone")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who saw it go.")
@json_option
@click.pass_context
def keys_ds_gone(
    ctx: click.Context, zone: str, key: str, author: str | None, as_json: bool
) -> None:
    """Tell zonefan the parent no longer serves the DS of KEY (a key tag or id), after
    its DS was withdrawn (`keys status` says so)."""

    def change(
        _m: DnssecManager, _o: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        key_id = _find_key(keys, key)
        if next(k for k in keys if k.key_id == key_id).ds_withdrawn is None:
            # Guards a mistyped tag: a DS still wanted must not be recorded gone.
            raise click.ClickException(
                f"the DS of {key_id} has not been withdrawn, so it is not awaited to leave "
                "the parent; see `zonefan keys status`"
            )
        return mark_ds_gone(keys, key_id, now)

    _change_keys(ctx, zone, "DS gone from the parent", change, author, as_json)


@keys_group.command("retire")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who retires it.")
@json_option
@click.pass_context
def keys_retire(ctx: click.Context, zone: str, key: str, author: str | None, as_json: bool) -> None:
    """Stop signing with KEY (a key tag or id); it leaves the zone when that is safe. A
    pre-generated key that was never published is discarded at once."""

    def change(
        _m: DnssecManager, _o: dns.name.Name, keys: tuple[KeyTiming, ...], now: int
    ) -> tuple[KeyTiming, ...]:
        key_id = _find_key(keys, key)
        found = next(k for k in keys if k.key_id == key_id)
        unused = found.publish is None and found.active is None and found.retire is None
        if unused and not any(k.successor == key_id for k in keys):
            # A pre-generated key never reached the zone: nothing to wait for, drop it.
            gone = dataclasses.replace(found, retire=now, remove=now)
            return tuple(gone if k.key_id == key_id else k for k in keys)
        return retire(keys, key_id, now)

    _change_keys(ctx, zone, "key retired", change, author, as_json)


def _step_text(fc: Forecast, step: ForecastStep, origin: dns.name.Name, policy: Policy) -> str:
    new = step.key_id in fc.new_keys
    tag = "TAG" if new else str(next(k.key_tag for k in fc.keys if k.key_id == step.key_id))
    label = step.key_id if new else f"{step.role.name} {tag}"
    if isinstance(step.kind, ActionKind):
        return f"{step.kind.value} {label} (algorithm {step.algorithm}): {step.reason}"
    appear = step.kind is DsExpect.PRESENT
    if policy.ds_check is DsCheck.AUTO:
        how = "ds-check"
    else:
        how = f"`zonefan keys {'ds-seen' if appear else 'ds-gone'} {origin} {tag}`"
    where = "to appear at the parent" if appear else "to leave the parent"
    return f"waits for the DS of {label} {where} ({how}); assumed at once"


def _timeline_data(
    origin: dns.name.Name, fc: Forecast, max_ttl: int, preview: str | None
) -> dict[str, Any]:
    by_id = {k.key_id: k for k in fc.keys}
    steps = []
    for step in fc.steps:
        new = step.key_id in fc.new_keys
        kind = step.kind
        steps.append(
            {
                "at": _iso(step.at),
                "after": step.at - fc.start,
                "step": kind.value
                if isinstance(kind, ActionKind)
                else ("ds-appears" if kind is DsExpect.PRESENT else "ds-leaves"),
                "key": step.key_id,
                "tag": None if new else by_id[step.key_id].key_tag,
                "new_key": new,
                "role": step.role.name,
                "algorithm": step.algorithm,
                "reason": step.reason,
                "assumed": step.assumed,
            }
        )
    return {
        "zone": origin.to_text(),
        "from": _iso(fc.start),
        "until": _iso(fc.until),
        "max_ttl": max_ttl,
        "preview": preview,
        "assumption": _ASSUMPTION,
        "steps": steps,
        "next_step": _iso(fc.next_event),
    }


@keys_group.command("timeline")
@click.argument("zone")
@click.option("--ksk", "role", flag_value="ksk", help="Preview a KSK rollover started now.")
@click.option("--zsk", "role", flag_value="zsk", help="Preview a ZSK rollover started now.")
@click.option("--csk", "role", flag_value="csk", help="Preview a CSK rollover started now.")
@click.option(
    "--algorithm", type=int, default=None, help="Preview an algorithm rollover started now."
)
@click.option(
    "--horizon",
    default="366d",
    show_default=True,
    callback=duration,
    metavar="DURATION",
    help="How far ahead, e.g. 90d or 1d12h.",
)
@json_option
@click.pass_context
def keys_timeline(
    ctx: click.Context,
    zone: str,
    role: str | None,
    algorithm: int | None,
    horizon: float,
    as_json: bool,
) -> None:
    """The key steps planned for ZONE from now on, each with its date: the rollovers
    running, those the key lifetimes start, and with --ksk/--zsk/--csk/--algorithm N the
    one `zonefan keys rollover` would start now. Nothing is changed.

    The planner that `zone maintain` follows is run forward from now with the zone's
    largest TTL; a DS change at the parent has no date of its own, so each is shown as a
    wait (ds-check) and assumed to happen the moment it is awaited."""
    if role is not None and algorithm is not None:
        raise click.UsageError("give at most one of --ksk, --zsk, --csk, --algorithm")
    if horizon < 1:
        raise click.BadParameter("must be 1s or more, e.g. 90d", param_hint="'--horizon'")
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        manager = _signed(ctx, store, origin, "no key steps are planned")
        policy = manager.policy(origin)
        keys = manager.timings(origin)
        now = int(manager.clock())
        preview = None
        if role is not None:
            _check_role(origin, keys, role)
            keys = start_rollover(keys, _ROLE_FLAGS[role], policy, now)
            preview = f"zonefan keys rollover {origin} --{role}"
        elif algorithm is not None:
            keys = start_algorithm_rollover(keys, algorithm, policy, now)
            preview = f"zonefan keys rollover {origin} --algorithm {algorithm}"
        fc = manager.key_forecast(origin, int(horizon), keys)
        max_ttl = manager.max_ttl(origin)
    data = _timeline_data(origin, fc, max_ttl, preview)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    what = f", if `{preview}` were run now (nothing is changed)" if preview else ""
    click.echo(f"{origin}: key steps from {data['from']} to {data['until']}{what}")
    click.echo(f"  planned with the zone's largest TTL, {max_ttl} s; {_ASSUMPTION}")
    for step in fc.steps:
        offset = "now" if step.at == fc.start else f"+{format_duration(step.at - fc.start)}"
        click.echo(f"{_when(step.at)}  {offset:>15}  {_step_text(fc, step, origin, policy)}")
    if not fc.steps:
        click.echo(f"  nothing is planned until {data['until']}")
    if fc.next_event is None:
        click.echo("  after that nothing more is planned: every rollover has ended")
    else:
        click.echo(
            f"  the next step is at {data['next_step']}, after the horizon (--horizon to see it)"
        )


@keys_group.command("generate")
@click.argument("zone")
@click.option("--ksk", "role", flag_value="ksk", help="A key-signing key.")
@click.option("--zsk", "role", flag_value="zsk", help="A zone-signing key.")
@click.option("--csk", "role", flag_value="csk", help="A combined signing key.")
@click.option("--algorithm", type=int, default=None, help="Algorithm number (default: policy's).")
@json_option
@click.pass_context
def keys_generate(
    ctx: click.Context, zone: str, role: str | None, algorithm: int | None, as_json: bool
) -> None:
    """Make a key for ZONE before it is first signed; `zone sign` then starts with it
    (it must match the policy's algorithm and key style). A signed zone gets new keys
    from `keys rollover`."""
    if role is None:
        raise click.UsageError("give one of --ksk, --zsk, --csk")
    origin = zone_name(zone)
    with open_store(ctx, create=False) as store:
        manager = dnssec_manager(ctx, store)
        key, notes = manager.generate_key(origin, _ROLE_FLAGS[role], algorithm)
        row = next(r for r in _key_rows(manager, origin) if r["id"] == key.key_id)
    if as_json:
        click.echo(json.dumps({**row, "notes": list(notes)}, indent=2))
        return
    click.echo(
        f"{origin}: generated {key.role.name} tag {key.key_tag}, algorithm {key.algorithm} "
        f"({key.key_id}), not published; `zonefan zone sign {origin}` publishes it"
    )
    for note in notes:
        click.echo(f"note: {note}")


def _ds_check_data(report: ParentDsReport) -> dict[str, Any]:
    """The check as JSON-ready data: every server's answer and every key's verdict."""
    watch = {w.key_id: w.expect.value for w in report.watch}
    recorded = dict(report.recorded)
    data: dict[str, Any] = {
        "zone": report.origin.to_text(),
        "mode": report.mode.value,
        "skipped": report.skipped or None,
        "parent": None,
        "complete": False,
        "servers": [],
        "keys": [],
        "errors": [],
        "recorded": [{"key": k, "event": e} for k, e in report.recorded],
    }
    result = report.result
    if result is None:
        return data
    data["parent"] = result.parent.to_text() if result.parent is not None else None
    data["complete"] = result.complete
    data["errors"] = [str(e) for e in result.errors]
    for a in result.answers:
        data["servers"].append(
            {
                "server": str(a.server),
                "address": a.server.address,
                "port": a.server.port,
                "name": a.server.name.to_text() if a.server.name is not None else None,
                "ds": list(a.ds),
                "keys": sorted(a.keys),
                "unmatched": list(a.unmatched),
                "error": str(a.error) if a.error is not None else None,
                "tcp": a.tcp,
            }
        )
    for item in result.keys:
        data["keys"].append(
            {
                "id": item.key.key_id,
                "tag": item.key.key_tag,
                "algorithm": item.key.algorithm,
                "presence": item.presence.value,
                "served_by": list(item.served_by),
                "missing_at": list(item.missing_at),
                "awaited": watch.get(item.key.key_id),
                "recorded": recorded.get(item.key.key_id),
            }
        )
    return data


def _print_ds_check(report: ParentDsReport) -> None:
    origin = report.origin
    if report.result is None:
        click.echo(f"{origin}: nothing asked: {report.skipped}")
        return
    result = report.result
    source = (
        f"address(es) of the nameservers of {result.parent} (its NS set)"
        if result.parent is not None
        else "nameserver(s) from parent-servers"
    )
    count = len(result.answers)
    click.echo(f"{origin}: asked {count} {source} for the DS of {origin}")
    for a in result.answers:
        if a.error is not None:
            click.echo(f"  {a.error}")
        elif not a.ds:
            click.echo(f"  {a.server}: no DS")
        else:
            for ds in a.ds:
                click.echo(f"  {a.server}: DS {ds}")
    for problem in result.problems:
        click.echo(f"  {problem}")
    watch = {w.key_id: w.expect for w in report.watch}
    recorded = dict(report.recorded)
    total = sum(1 for a in result.answers if a.ok)
    for item in result.keys:
        key = item.key
        verdict = {
            Presence.PRESENT: "present at every server",
            Presence.ABSENT: "at no server",
            Presence.PARTIAL: (
                f"at {len(item.served_by)} of {total} servers (missing at "
                + ", ".join(item.missing_at)
                + ")"
            ),
            Presence.UNKNOWN: "unknown: not every server answered",
        }[item.presence]
        line = f"  key {key.key_tag} ({key.key_id}): DS {verdict}"
        expect = watch.get(key.key_id)
        if expect is not None:
            awaited = "to appear" if expect is DsExpect.PRESENT else "to leave"
            done = recorded.get(key.key_id)
            line += f"; awaited {awaited}: " + (f"recorded {done}" if done else "not recorded")
        click.echo(line)
    for a in result.answers:
        for ds in a.unmatched:
            click.echo(f"  note: {a.server} serves DS {ds}, which matches none of our keys")


@keys_group.command("ds-check")
@click.argument("zone")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=60.0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each server's answer.",
)
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who asks.")
@json_option
@click.pass_context
def keys_ds_check(
    ctx: click.Context, zone: str, timeout: float, author: str | None, as_json: bool
) -> None:
    """Ask the parent's nameservers now which DS records they serve for ZONE; a DS the
    zone waits for that every one of them serves is recorded as seen (one none of them
    serves any more as gone), and the key steps that follow are applied.

    The servers are the policy's parent-servers, else the parent zone's NS set (found
    with the system resolver). Exits 1 when a server did not answer: nothing is
    recorded then."""
    origin = zone_name(zone)
    result: MaintenanceResult | None = None
    with open_store(ctx, create=False) as store:
        manager = dnssec_manager(ctx, store)
        if not manager.timings(origin):
            raise click.ClickException(f"{origin} has no keys; `zonefan zone sign {origin}`")
        report = manager.check_parent_ds(origin, timeout=timeout)
        if report.recorded and manager.signs(origin):
            result = manager.maintain(origin, author_of(author, "DS checked at the parent"))
    if as_json:
        data = _ds_check_data(report)
        data["maintenance"] = None if result is None else {"serial": result.serial}
        click.echo(json.dumps(data, indent=2))
    else:
        _print_ds_check(report)
        if result is not None:
            _report(result, origin, False)
    if report.result is not None and not report.result.complete:
        failed = len(report.result.errors)
        raise click.ClickException(
            f"the DS check of {origin} is incomplete ({failed} failure(s) above); nothing "
            "was recorded: a server that does not answer could still serve an old DS"
        )
