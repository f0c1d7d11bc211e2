"""`zonefan keys ...`, `zonefan zone sign` and `zonefan zone maintain`: DNSSEC from the
command line. Private keys are never printed; only public data and metadata are."""

from __future__ import annotations

import dataclasses
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

from nameserver.dnssec import DnssecManager, MaintenanceResult, ParentDsReport
from nameserver.dscheck import DEFAULT_TIMEOUT, Presence
from signer.keys import DS_SHA256, DS_SHA384
from signer.policy import Denial, DsCheck, Policy, format_duration
from signer.timing import (
    DsExpect,
    DsWatch,
    KeyTiming,
    Phase,
    Role,
    emergency_rollover,
    key_state,
    mark_ds_gone,
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
    open_store,
)
from zonefan.options import json_option, zone_name

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
    """DNSSEC keys: list, generate, rollovers, DS records and checks at the parent."""


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
    with open_store(ctx) as store:
        manager = dnssec_manager(ctx, store)
        rows = _key_rows(manager, origin)
        policy = manager.policy(origin)
        result = plan(manager.timings(origin), policy, int(time.time()))
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
        }
        click.echo(json.dumps(data, indent=2))
        return
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
            # A DS must never point at a key before its DNSKEY is in the zone.
            if k.role.is_sep
            and key_state(k, now, policy).phase not in (Phase.GENERATED, Phase.REMOVED)
        ]
    if not sep:
        raise click.ClickException(
            f"{origin} has no KSK or CSK in the zone; `zonefan zone sign {origin}` first"
        )
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
        if not manager.signs(origin):
            click.echo(f"{origin}: recorded; the zone is not signed, so nothing else changes")
            return
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


@keys_group.command("ds-gone")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who saw it go.")
@click.pass_context
def keys_ds_gone(ctx: click.Context, zone: str, key: str, author: str | None) -> None:
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

    _change_keys(ctx, zone, "DS gone from the parent", change, author)


@keys_group.command("retire")
@click.argument("zone")
@click.argument("key")
@click.option("--author", envvar="ZONEFAN_AUTHOR", default=None, help="Who retires it.")
@click.pass_context
def keys_retire(ctx: click.Context, zone: str, key: str, author: str | None) -> None:
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

    _change_keys(ctx, zone, "key retired", change, author)


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
    with open_store(ctx) as store:
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
    with open_store(ctx) as store:
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
