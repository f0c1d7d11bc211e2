"""The commands of ``zonefan`` that work on the store: ``serve``, ``zone ...``, ``record ...``
(and ``keys ...``, defined in keys_cli). Loaded by the root group in :mod:`zonefan.cli` only
when one of them runs."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import dns.name
import dns.rdatatype

from nameserver.edit.editor import Author, Plan, change_size
from nameserver.errors import (
    JournalError,
    NameserverError,
    RecordSyntaxError,
    SignedZoneDataError,
)
from nameserver.serve.rrl import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    DEFAULT_RATELIMIT,
    DEFAULT_SLIP,
    RrlSettings,
)
from nameserver.server import (
    TCP_MAX_CONNECTIONS,
    TCP_MAX_PER_CLIENT,
    TCP_PIPELINE_DEPTH,
    TRANSFERS_PER_CLIENT,
    Companion,
    ListenError,
    ServerConfig,
    counted,
    serve,
)
from nameserver.store.copies import zone_copies
from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import (
    AnyRecord,
    Record,
    canonical_key,
    parse_name,
    parse_rdata,
    parse_rdtype,
    parse_ttl,
    type_text,
)
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.validate import Locator, nowhere
from nameserver.zone.wirename import key_of
from nameserver.zone.zonefile import read_zone_file, write_zone_file
from settings import TSIG_ALGORITHMS, Address, Network, parse_address
from zonefan.common import (
    author_of,
    author_options,
    catalog_zone,
    config_keys,
    dnssec_factory,
    editor_for,
    open_store,
    sync_catalog_zone,
    transfer_settings,
    update_policies,
)
from zonefan.keys_cli import keys_group, zone_maintain, zone_sign
from zonefan.options import (
    F,
    addresses,
    config_of,
    duration,
    json_option,
    metrics_option,
    networks,
    size,
    zone_name,
)
from zonefan.progress import Progress
from zonefan.serve_sync import link_sidecar

DEFAULT_LISTEN = (Address("127.0.0.1", 5353),)


# -- serve ---------------------------------------------------------------------------------


def limit_option(flag: str, default: int, help: str) -> Callable[[F], F]:
    """A serve option that is a count of at least 1 (a server limit), shown with its
    default."""
    return click.option(
        flag, type=click.IntRange(min=1), default=default, metavar="N", show_default=True, help=help
    )


@click.command("serve")
@click.option(
    "--listen",
    "-l",
    multiple=True,
    callback=addresses,
    metavar="ADDR:PORT",
    help="Address to answer on, UDP and TCP; repeatable; [::1]:5353 or ::1@5353 for IPv6. "
    "Default 127.0.0.1:5353.",
)
@click.option(
    "--tcp-idle-timeout",
    callback=duration,
    default="10s",
    metavar="DURATION",
    show_default=True,
    help="Close a TCP connection idle this long, or whose peer takes none of its answers "
    "this long: seconds, or e.g. 30s.",
)
@click.option(
    "--journal-keep",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Keep at most N changesets per zone in the journal (IXFR reaches back that far); "
    "default: keep all. Config: [serve] journal-keep.",
)
@click.option(
    "--tcp-message-timeout",
    callback=duration,
    default="2s",
    metavar="DURATION",
    show_default=True,
    help="Close a TCP connection that takes longer than this to send one whole message, "
    "however it trickles in.",
)
@limit_option(
    "--tcp-max-connections",
    TCP_MAX_CONNECTIONS,
    "Open TCP connections in all; when all are taken, the one stalled for the longest "
    "is closed to let a new one in.",
)
@limit_option(
    "--tcp-max-connections-per-client",
    TCP_MAX_PER_CLIENT,
    "Open TCP connections per client address; one more is closed at once.",
)
@limit_option(
    "--tcp-pipeline-depth",
    TCP_PIPELINE_DEPTH,
    "Queries read on one TCP connection while a transfer or UPDATE is answered; "
    "beyond that the connection is not read until they are answered.",
)
@limit_option(
    "--transfers-per-client",
    TRANSFERS_PER_CLIENT,
    "Zone transfers (AXFR/IXFR) served at once to one client address; more wait.",
)
@click.option(
    "--rrl-ratelimit",
    type=click.IntRange(min=0),
    default=DEFAULT_RATELIMIT,
    show_default=True,
    metavar="N",
    help="Response rate limiting: at most N UDP responses a second alike (one name and "
    "type; one zone's NXDOMAINs; one delegation; errors) to one client network; over it "
    "they are dropped or sent truncated. TCP is never limited. 0: off.",
)
@click.option(
    "--rrl-slip",
    type=click.IntRange(min=0),
    default=DEFAULT_SLIP,
    show_default=True,
    metavar="N",
    help="Send every Nth rate-limited response truncated (TC: a real client retries over "
    "TCP) and drop the rest; 1: truncate all, 0: drop all.",
)
@click.option(
    "--rrl-ipv4-prefix",
    type=click.IntRange(0, 32),
    default=DEFAULT_IPV4_PREFIX,
    show_default=True,
    metavar="BITS",
    help="IPv4 clients in one network of this prefix length share their rate limits.",
)
@click.option(
    "--rrl-ipv6-prefix",
    type=click.IntRange(0, 128),
    default=DEFAULT_IPV6_PREFIX,
    show_default=True,
    metavar="BITS",
    help="IPv6 clients in one network of this prefix length share their rate limits.",
)
@click.option(
    "--rrl-exempt",
    multiple=True,
    callback=networks,
    metavar="NETWORK",
    help="Never rate-limit responses to this network (e.g. 192.0.2.0/24, 2001:db8::/48, or "
    "one address); repeatable.",
)
@click.option(
    "--cache-size",
    callback=size,
    default=None,
    metavar="SIZE",
    help="Memory for cached responses: bytes, or e.g. 64M, 1G (0: no cache). Default: "
    "32M plus 4 times the served zones' wire size, at most 1G. Config: [serve] cache-size.",
)
@click.option(
    "--sync",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="SYNC.TOML",
    help="Also run the sync sidecar of this config in the same process (as `zonefan sync "
    "run` would): one command for a primary and its providers.",
)
@metrics_option
@click.pass_context
def serve_cmd(
    ctx: click.Context,
    listen: Sequence[Address],
    tcp_idle_timeout: float,
    journal_keep: int | None,
    tcp_message_timeout: float,
    tcp_max_connections: int,
    tcp_max_connections_per_client: int,
    tcp_pipeline_depth: int,
    transfers_per_client: int,
    rrl_ratelimit: int,
    rrl_slip: int,
    rrl_ipv4_prefix: int,
    rrl_ipv6_prefix: int,
    rrl_exempt: tuple[Network, ...],
    cache_size: int | None,
    sync: Path | None,
    metrics: Address | None,
) -> None:
    """Serve every zone in the store; changes committed meanwhile are served at once.

    Zone transfers (AXFR/IXFR over TCP, TSIG) go to the [[secondary]] entries of the
    config file only; see README "Zone transfers"."""
    labelled = config_keys(ctx)
    keys, acl = transfer_settings(ctx, labelled)
    policies = update_policies(ctx)
    listen_on = [(a.host, a.port) for a in (listen or DEFAULT_LISTEN)]
    link = None if sync is None else link_sidecar(sync, labelled, listen_on)
    if link is not None:
        acl, keys = link.acl(acl), link.keyring(keys)
    with open_store(ctx, create=True) as store:
        zones = store.zone_names()
    if not zones:
        click.echo(
            "note: the store has no zones yet; import one with `zonefan zone import`", err=True
        )
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    companions: list[Companion] = []
    registry = None
    if metrics is not None:
        from zonefan.metrics import bind, new_registry, serve_metrics

        registry = new_registry()
        sock = bind(metrics)  # a taken port fails here, before the zones load
        companions.append(functools.partial(serve_metrics, registry, metrics, sock))
    if link is not None:
        link.metrics = registry  # `serve --sync`: the sidecar's metrics on the same endpoint
        companions.append(link.companion)
    config = ServerConfig(
        ctx.obj,
        listen_on,
        tcp_idle_timeout=tcp_idle_timeout,
        dnssec=dnssec_factory(ctx),
        tsig_keys=keys,
        transfer_acl=acl,
        journal_keep=journal_keep,
        update_policies=policies,
        notify_extra=None if link is None else link.notify_targets,
        tcp_max_connections=tcp_max_connections,
        tcp_message_timeout=tcp_message_timeout,
        tcp_max_per_client=tcp_max_connections_per_client,
        tcp_pipeline_depth=tcp_pipeline_depth,
        transfers_per_client=transfers_per_client,
        rrl=RrlSettings(rrl_ratelimit, rrl_slip, rrl_ipv4_prefix, rrl_ipv6_prefix, rrl_exempt),
        cache_size=cache_size,
        metrics=registry,
    )
    if "pool" in config_of(ctx):  # the health checks load only when pools are configured
        from zonefan.pools import pool_runner

        # Its commits and signing count in the server's metrics like an UPDATE's.
        runner = pool_runner(ctx, zones, counted(dnssec_factory(ctx), config.activity))
        config = dataclasses.replace(config, health_reports=runner.intake)  # remote checkers
        if registry is not None:
            from zonefan.pool_metrics import DrillCollector, PoolCollector

            registry.register(PoolCollector(runner.states))
            registry.register(DrillCollector(ctx.obj))
        companions.append(runner.run)
    try:
        serve(config, companions)
    except ListenError as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(f"cannot listen: {e}") from e


# -- zone ----------------------------------------------------------------------------------


@click.group("zone")
def zone_group() -> None:
    """Import, export and inspect zones; history, diffs and rollback."""


@zone_group.command("import")
@click.argument("source", metavar="FILE|ZONE")
@click.option("--origin", default=None, help="Zone name, if the file has no $ORIGIN.")
@click.option(
    "--from-target",
    metavar="NAME",
    default=None,
    help="Read ZONE from this target of the sync config (--config) through its provider's "
    "API, instead of a FILE.",
)
@click.option(
    "--axfr",
    metavar="SERVER",
    default=None,
    help="Transfer ZONE by AXFR from this server (ADDR[:PORT], e.g. the primary the zone "
    "leaves), instead of a FILE.",
)
@click.option(
    "--config",
    "sync_config",
    envvar="ZONEFAN_SYNC_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    default="sync.toml",
    show_default=True,
    metavar="SYNC.TOML",
    help="With --from-target: the sync sidecar's config. Env: ZONEFAN_SYNC_CONFIG.",
)
@click.option(
    "--key",
    "key_name",
    metavar="NAME",
    default=None,
    help="With --axfr: the TSIG key, a [key.NAME] of the config or the key NAME whose "
    "secret --key-secret-env or --key-file gives.",
)
@click.option(
    "--key-secret-env",
    metavar="VAR",
    default=None,
    help="With --key: the environment variable holding the key's base64 secret.",
)
@click.option(
    "--key-file",
    metavar="PATH",
    default=None,
    help="With --key: a file only its owner can read holding the key's base64 secret.",
)
@click.option(
    "--key-algorithm",
    type=click.Choice(sorted(TSIG_ALGORITHMS)),
    default=None,
    help="With --key-secret-env or --key-file: the key's algorithm (default hmac-sha256).",
)
@click.option(
    "--serial-policy",
    type=click.Choice([p.value for p in SerialPolicy]),
    default=None,
    help="How the SOA serial moves on changes (default for new zones: increment).",
)
@click.option(
    "--strip-dnssec", is_flag=True, help="Drop RRSIG/NSEC/DNSKEY/... of an old signed zone."
)
@click.option("--dry-run", is_flag=True, help="Show what would change; store nothing.")
@author_options
@json_option
@click.pass_context
def zone_import(
    ctx: click.Context,
    source: str,
    origin: str | None,
    from_target: str | None,
    axfr: str | None,
    sync_config: Path,
    key_name: str | None,
    key_secret_env: str | None,
    key_file: str | None,
    key_algorithm: str | None,
    serial_policy: str | None,
    strip_dnssec: bool,
    dry_run: bool,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Create a zone from a BIND-syntax FILE, or replace the zone's contents with it.

    With --from-target NAME or --axfr SERVER the argument is the ZONE to take over from
    where it is served now: a provider of the sync config, or a running primary (see README
    "Moving a zone onto zonefan")."""
    policy = SerialPolicy(serial_policy) if serial_policy else None
    if from_target is None and axfr is None:
        if key_name or key_secret_env or key_file or key_algorithm:
            raise click.UsageError("--key and its options go with --axfr")
        _import_file(ctx, source, origin, policy, strip_dnssec, dry_run, author, message, as_json)
        return
    if from_target is not None and axfr is not None:
        raise click.UsageError("give one of --from-target and --axfr")
    if origin is not None:
        raise click.UsageError("--origin is for a FILE; with --from-target or --axfr give the ZONE")
    from zonefan import migrate  # the sync package, loaded only for these two

    zone = zone_name(source)
    with Progress(f"import {zone}") as progress:
        if from_target is not None:
            if key_name or key_secret_env or key_file or key_algorithm:
                raise click.UsageError("--key and its options go with --axfr")
            progress.phase(f"reading target {from_target}")
            first = policy or SerialPolicy.INCREMENT
            keys = config_keys(ctx)
            fetched = migrate.from_target(sync_config, from_target, zone, first, keys)
            why = f"import from target {from_target}"
        else:
            assert axfr is not None
            try:
                server = parse_address(axfr)
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--axfr") from None
            key = migrate.tsig_key(
                key_name, key_algorithm, key_secret_env, key_file, config_keys(ctx)
            )
            progress.phase(f"transferring from {server}")
            fetched = migrate.by_axfr(server, zone, key)
            why = f"import by AXFR from {server}"
        if not as_json:
            for note in fetched.notes:
                click.echo(f"note: {note}", err=True)
        _import_records(
            ctx,
            progress,
            zone,
            migrate.records_of(fetched.data),
            fetched.label,
            policy,
            strip_dnssec or fetched.strip_dnssec,
            dry_run,
            author_of(author, message or why),
            as_json,
        )


def _import_file(
    ctx: click.Context,
    file: str,
    origin: str | None,
    policy: SerialPolicy | None,
    strip_dnssec: bool,
    dry_run: bool,
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    with Progress(f"import {Path(file).name}") as progress:
        progress.phase("reading")
        try:
            parsed = read_zone_file(file, zone_name(origin) if origin else None, progress.count)
        except NameserverError as e:
            raise click.ClickException(str(e)) from e
        where: dict[tuple[bytes, int | None], str] = {}
        for (owner, rdtype, _rdata), loc in parsed.where.items():
            where.setdefault((key_of(owner), rdtype), loc)
            where.setdefault((key_of(owner), None), loc)
        _import_records(
            ctx,
            progress,
            parsed.origin,
            parsed.records,
            file,
            policy,
            strip_dnssec,
            dry_run,
            author_of(author, message or f"import {Path(file).name}"),
            as_json,
            lambda key, rdtype: where.get((key, rdtype)) or where.get((key, None)),
        )


def _import_records(
    ctx: click.Context,
    progress: Progress,
    origin: dns.name.Name,
    records: Sequence[Record],
    label: str,
    policy: SerialPolicy | None,
    strip_dnssec: bool,
    dry_run: bool,
    who: Author,
    as_json: bool,
    locate: Locator = nowhere,
) -> None:
    """The one import path: ``records`` (from a file, a provider or a transfer, named by
    ``label`` in messages) validated against the store's zone and stored as one changeset,
    or with ``dry_run`` only shown."""
    progress.phase(f"checking {len(records):,} records")

    def plan_in(store: Store) -> Plan:
        try:
            return editor_for(ctx, store).plan_import(
                origin, records, who, policy, strip_dnssec, locate
            )
        except SignedZoneDataError as e:
            raise click.ClickException(f"{label} holds {e.summary}; {e.advice}") from e

    if Path(ctx.obj).exists():
        with open_store(ctx, create=False, read_only=dry_run) as store:
            plan = plan_in(store)
    else:
        # No store yet: plan against an empty one, so a refused import or a dry run
        # leaves no store file behind.
        with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp, "plan.db")) as empty:
            try:
                plan = plan_in(empty)
            except NameserverError as e:
                raise click.ClickException(str(e)) from e
    cs = plan.changeset
    if plan.dropped_dnssec and not as_json:
        click.echo(
            f"{'--strip-dnssec: ' if strip_dnssec else ''}dropped {plan.dropped_dnssec} "
            f"DNSSEC records of {label}; the signer makes its own",
            err=True,
        )
    if dry_run:
        _print_changeset(cs, as_json, header="plan (nothing stored)")
        return
    if cs.serial_before is not None and change_size(cs).is_empty:
        _say(
            as_json,
            {"zone": str(cs.zone), "changed": False, "serial": cs.serial_before},
            f"zone {cs.zone}: no change (serial {cs.serial_before})",
        )
        return
    progress.phase("storing")
    with open_store(ctx, create=True) as store:
        editor = editor_for(ctx, store, progress.signing)
        done = editor.create_or_replace(plan, policy or SerialPolicy.INCREMENT)
        if policy is not None and done.serial_before is not None:
            store.set_serial_policy(origin, policy)
        if done.serial_before is None:
            sync_catalog_zone(ctx, editor, f"zone {origin} created", quiet=as_json)
    progress.finish(f"zone {done.zone} serial {done.serial_after}")
    _report(done, as_json)


@zone_group.command("export")
@click.argument("zone")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@json_option
@click.pass_context
def zone_export(ctx: click.Context, zone: str, output: str | None, as_json: bool) -> None:
    """Write ZONE as a canonical zone file (accepted by named-checkzone and kzonecheck), or
    with --json as its serial and records."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        records = store.records(origin)
        serial = store.serial(origin)
    if as_json:
        data = {
            "zone": str(origin),
            "serial": serial,
            "rrs": [_rr_json(r) for r in _ordered(records)],
        }
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = write_zone_file(origin, records)
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@zone_group.command("list")
@json_option
@click.pass_context
def zone_list(ctx: click.Context, as_json: bool) -> None:
    """Every zone in the store, with serial and size."""
    with open_store(ctx, read_only=True) as store:
        infos = [store.zone_info(z) for z in store.zone_names()]
    rows = [
        {
            "zone": str(i.name),
            "serial": i.serial,
            "records": i.record_count,
            "serial_policy": i.serial_policy.value,
            "updated": _iso(i.updated),
        }
        for i in infos
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['zone']:<40} serial {row['serial']:<12} {row['records']:>8} records  "
            f"updated {row['updated']}"
        )


@zone_group.command("show")
@click.argument("zone")
@click.option("--records/--no-records", default=True, help="Also list the records.")
@json_option
@click.pass_context
def zone_show(ctx: click.Context, zone: str, records: bool, as_json: bool) -> None:
    """ZONE's serial, policy, size, last change and (by default) its records."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        info = store.zone_info(origin)
        last = store.changesets(origin)[-1:]
        rrs = store.records(origin) if records else []
    data: dict[str, Any] = {
        "zone": str(info.name),
        "serial": info.serial,
        "serial_policy": info.serial_policy.value,
        "records": info.record_count,
        "created": _iso(info.created),
        "updated": _iso(info.updated),
    }
    if last:
        data["last_change"] = _changeset_summary(last[0])
    if as_json:
        if records:
            data["rrs"] = [_rr_json(r) for r in _ordered(rrs)]
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if key != "last_change":
            click.echo(f"{key:<14} {value}")
    if last:
        s = data["last_change"]
        click.echo(f"{'last change':<14} #{s['id']} {s['time']} by {s['author']}: {s['message']}")
    if records:
        click.echo()
        click.echo(write_zone_file(origin, rrs), nl=False)


@zone_group.command("status")
@click.argument("zone")
@json_option
@click.pass_context
def zone_status(ctx: click.Context, zone: str, as_json: bool) -> None:
    """ZONE's serial, the last NOTIFY sent to each secondary and whether it was acked, and
    the last transfer each secondary made (what an auditor asks: is every copy current?)."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        copies = zone_copies(store, origin)
    serial = copies.serial
    data: dict[str, Any] = {
        "zone": str(origin),
        "serial": serial,
        "notify": [
            {
                "target": n.record.target,
                "serial": n.record.serial,
                "attempts": n.record.attempts,
                "last_sent": _iso(n.record.last_sent) if n.record.last_sent else None,
                "acked": _iso(n.record.acked) if n.record.acked else None,
                "current": n.current,
                "error": n.record.error or None,
            }
            for n in copies.notified
        ],
        "transfers": [
            {
                "client": t.entry.client,
                "time": _iso(t.entry.time),
                "kind": t.entry.kind,
                "serial": t.entry.serial_to,
                "current": t.current,
                "key": t.entry.key,
                "error": t.entry.error,
            }
            for t in copies.transferred
        ],
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"zone {origin} serial {serial}")
    for n in data["notify"]:
        state = f"acked {n['acked']}" if n["acked"] else f"not acked ({n['error'] or 'pending'})"
        mark = "current" if n["current"] else "BEHIND"
        click.echo(f"  notify {n['target']:<22} serial {n['serial']} {state} [{mark}]")
    for t in data["transfers"]:
        mark = "current" if t["current"] else "BEHIND"
        click.echo(
            f"  transfer {t['client']:<20} {t['kind']} serial {t['serial']} at {t['time']} [{mark}]"
        )
    if not data["notify"] and not data["transfers"]:
        click.echo("  no secondary has been notified or has transferred this zone")


@zone_group.command("history")
@click.argument("zone")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest N changes.")
@json_option
@click.pass_context
def zone_history(ctx: click.Context, zone: str, limit: int, as_json: bool) -> None:
    """ZONE's changesets, newest last: serials, who, when, why and size."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        changesets = store.changesets(origin)[-limit:]
    rows = [_changeset_summary(cs) for cs in changesets]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        before = r["serial_before"] if r["serial_before"] is not None else "(new)"
        click.echo(
            f"#{r['id']:<5} {r['time']}  {before} -> {r['serial_after']}  "
            f"{_size_text(r)}  {r['author']}: {r['message']}"
        )


@zone_group.command("diff")
@click.argument("zone")
@click.argument("from_serial", type=int, required=False)
@click.argument("to_serial", type=int, required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False), help="Diff against a zone file.")
@json_option
@click.pass_context
def zone_diff(
    ctx: click.Context,
    zone: str,
    from_serial: int | None,
    to_serial: int | None,
    file: str | None,
    as_json: bool,
) -> None:
    """What changed in ZONE from FROM_SERIAL to TO_SERIAL (default: the current serial;
    no serial: the last change), or what importing --file would change.

    Lines read as the change that turns FROM_SERIAL into TO_SERIAL, as diff(1) does: with
    the newer serial first, the diff is the one that goes back to the older serial."""
    origin = zone_name(zone)
    with open_store(ctx, read_only=True) as store:
        if file:
            parsed = read_zone_file(file, origin)
            editor = editor_for(ctx, store)
            # The data is compared: a signed file's RRSIG/NSEC/... are not (the signer
            # makes its own).
            plan = editor.plan_import(origin, parsed.records, author_of(None, ""), None, True)
            if plan.dropped_dnssec and not as_json:
                click.echo(
                    f"compared without the {plan.dropped_dnssec} DNSSEC records of {file}: "
                    "the signer makes its own (import the file with --strip-dnssec)",
                    err=True,
                )
            cs = plan.changeset
            if cs.serial_before is not None and change_size(cs).is_empty and not as_json:
                click.echo(f"importing {file} would change nothing in zone {cs.zone}")
                return
            _print_changeset(cs, as_json, header=f"importing {file} would change")
            return
        if from_serial is None:
            removed, added = _net_change(store.changesets(origin)[-1:])
        else:
            removed, added = _serial_diff(store, origin, from_serial, to_serial)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "zone": str(origin),
                    "removed": [_rr_json(r) for r in removed],
                    "added": [_rr_json(r) for r in added],
                },
                indent=2,
            )
        )
        return
    for r in removed:
        click.echo(f"- {r.to_text()}")
    for r in added:
        click.echo(f"+ {r.to_text()}")


@zone_group.command("rollback")
@click.argument("zone")
@click.argument("serial", type=int)
@author_options
@json_option
@click.pass_context
def zone_rollback(
    ctx: click.Context, zone: str, serial: int, author: str | None, message: str, as_json: bool
) -> None:
    """Make ZONE's data what it was at SERIAL again, as a new change with a new serial."""
    origin = zone_name(zone)
    with open_store(ctx, create=False) as store:
        cs = editor_for(ctx, store).rollback(origin, serial, author_of(author, message))
    _report(cs, as_json)


@zone_group.command("catalog")
@json_option
@click.pass_context
def zone_catalog(ctx: click.Context, as_json: bool) -> None:
    """Bring the catalog zone (``catalog-zone`` in the config, RFC 9432) in step with the
    store's zones now; creating or deleting a zone does this by itself."""
    with open_store(ctx, create=False) as store:
        catalog = catalog_zone(ctx)
        if catalog is None:
            raise click.ClickException(
                'no catalog zone is configured; set catalog-zone = "catalog.example." '
                "in the config file"
            )
        serial = sync_catalog_zone(
            ctx, editor_for(ctx, store), "zonefan zone catalog", quiet=as_json
        )
    data = {"catalog": str(catalog), "changed": serial is not None, "serial": serial}
    _say(as_json, data, "catalog in step")


@zone_group.command("delete")
@click.argument("zone")
@click.option("--yes", is_flag=True, help="Do not ask.")
@json_option
@click.pass_context
def zone_delete(ctx: click.Context, zone: str, yes: bool, as_json: bool) -> None:
    """Remove ZONE, its records and its history from the store."""
    origin = zone_name(zone)
    if not yes:
        click.confirm(f"delete zone {origin} and its history?", abort=True, err=True)
    with open_store(ctx, create=False) as store:
        store.delete_zone(origin)
        serial = sync_catalog_zone(
            ctx, editor_for(ctx, store), f"zone {origin} deleted", quiet=as_json
        )
    data = {"zone": str(origin), "deleted": True, "catalog_serial": serial}
    _say(as_json, data, f"zone {origin} deleted")


# -- record --------------------------------------------------------------------------------


@click.group("record")
def record_group() -> None:
    """Add, delete and replace records; each command is one validated change."""


def _records(
    origin: dns.name.Name, name: str, ttl: str, rdtype: str, rdatas: Sequence[str]
) -> tuple[dns.name.Name, int, list[Record]]:
    try:
        owner = parse_name(name, origin)
        t = parse_rdtype(rdtype)
        seconds = parse_ttl(ttl)
        return owner, t, [Record(owner, seconds, parse_rdata(t, text, origin)) for text in rdatas]
    except RecordSyntaxError as e:
        raise click.BadParameter(str(e)) from e


@record_group.command("add")
@click.argument("zone")
@click.argument("name")
@click.argument("ttl")
@click.argument("rdtype", metavar="TYPE")
@click.argument("rdata", nargs=-1, required=True)
@author_options
@json_option
@click.pass_context
def record_add(
    ctx: click.Context,
    zone: str,
    name: str,
    ttl: str,
    rdtype: str,
    rdata: Sequence[str],
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Add one RR, e.g. `zonefan record add example.test www 300 A 192.0.2.10`.

    NAME is relative to ZONE (`@` for the apex) unless it ends with a dot."""
    origin = zone_name(zone)
    owner, t, recs = _records(origin, name, ttl, rdtype, [" ".join(rdata)])
    _refuse_pool_rrset(ctx, owner, t)
    with open_store(ctx, create=False) as store:
        cs = editor_for(ctx, store).change_records(origin, [], recs, author_of(author, message))
    _report(cs, as_json)


@record_group.command("delete")
@click.argument("zone")
@click.argument("name")
@click.argument("rdtype", metavar="TYPE")
@click.argument("rdata", nargs=-1)
@author_options
@json_option
@click.pass_context
def record_delete(
    ctx: click.Context,
    zone: str,
    name: str,
    rdtype: str,
    rdata: Sequence[str],
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Delete one RR (with RDATA) or the whole RRset NAME/TYPE (without)."""
    origin = zone_name(zone)
    owner, t, recs = _records(origin, name, "0", rdtype, [" ".join(rdata)] if rdata else [])
    _refuse_pool_rrset(ctx, owner, t)
    with open_store(ctx, create=False) as store:
        editor = editor_for(ctx, store)
        who = author_of(author, message)
        if recs:
            cs = editor.change_records(origin, recs, [], who)
        else:
            cs = editor.set_rrset(origin, owner, t, [], who)
    _report(cs, as_json)


@record_group.command("set")
@click.argument("zone")
@click.argument("name")
@click.argument("ttl")
@click.argument("rdtype", metavar="TYPE")
@click.argument("rdata", nargs=-1)
@click.option("--rdata", "-r", "more", multiple=True, help="A further RR of the set; repeatable.")
@author_options
@json_option
@click.pass_context
def record_set(
    ctx: click.Context,
    zone: str,
    name: str,
    ttl: str,
    rdtype: str,
    rdata: Sequence[str],
    more: Sequence[str],
    author: str | None,
    message: str,
    as_json: bool,
) -> None:
    """Replace the RRset NAME/TYPE with the given RR(s), e.g.
    `zonefan record set example.test www 600 A 192.0.2.10 -r 192.0.2.11`."""
    origin = zone_name(zone)
    texts = ([" ".join(rdata)] if rdata else []) + list(more)
    if not texts:
        raise click.BadParameter("give at least one RDATA (to delete, use `record delete`)")
    owner, t, recs = _records(origin, name, ttl, rdtype, texts)
    _refuse_pool_rrset(ctx, owner, t)
    with open_store(ctx, create=False) as store:
        cs = editor_for(ctx, store).set_rrset(origin, owner, t, recs, author_of(author, message))
    _report(cs, as_json)


def _refuse_pool_rrset(ctx: click.Context, owner: dns.name.Name, rdtype: int) -> None:
    """A pool's RRset is published by its health checks and drains, not by hand."""
    config = config_of(ctx)
    if "pool" in config:
        from zonefan.pools import refuse_pool_rrset

        refuse_pool_rrset(config, owner, rdtype)


# -- output --------------------------------------------------------------------------------


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _rr_json(r: AnyRecord) -> dict[str, Any]:
    return {
        "name": str(r.name),
        "ttl": r.ttl,
        "type": type_text(r.rdtype),
        "rdata": r.rdata.to_text(),
    }


def _ordered(records: Sequence[AnyRecord]) -> list[AnyRecord]:
    return sorted(records, key=lambda r: (canonical_key(r.name), r.rdtype))


def _changeset_summary(cs: Changeset) -> dict[str, Any]:
    size = change_size(cs)
    return {
        "id": cs.id,
        "zone": str(cs.zone),
        "serial_before": cs.serial_before,
        "serial_after": cs.serial_after,
        "author": cs.author,
        "message": cs.message,
        "time": _iso(cs.time),
        "removed": size.removed,
        "added": size.added,
        "dnssec_removed": size.dnssec_removed,
        "dnssec_added": size.dnssec_added,
    }


def _size_text(summary: dict[str, Any]) -> str:
    """The counts of :func:`_changeset_summary` as the history and the commands say them."""
    text = f"-{summary['removed']} +{summary['added']} records"
    if summary["dnssec_removed"] or summary["dnssec_added"]:
        text += f", DNSSEC -{summary['dnssec_removed']} +{summary['dnssec_added']}"
    return text


def _net_change(changesets: Sequence[Changeset]) -> tuple[list[AnyRecord], list[AnyRecord]]:
    """The net effect of consecutive changesets: intermediate states cancel out."""
    removed: dict[object, AnyRecord] = {}
    added: dict[object, AnyRecord] = {}
    for cs in changesets:
        for r in cs.removed:
            if r.identity in added and added[r.identity].ttl == r.ttl:
                del added[r.identity]
            else:
                removed.setdefault(r.identity, r)
        for r in cs.added:
            if r.identity in removed and removed[r.identity].ttl == r.ttl:
                del removed[r.identity]
            else:
                added[r.identity] = r
    return _ordered(list(removed.values())), _ordered(list(added.values()))


def _serial_diff(
    store: Store, origin: dns.name.Name, from_serial: int, to_serial: int | None
) -> tuple[list[AnyRecord], list[AnyRecord]]:
    """(removed, added) going from one serial to the other, in either order: a journal
    runs forward only, so a newer FROM is the forward change from TO, reversed."""
    try:
        return _net_change(store.changesets_between(origin, from_serial, to_serial))
    except JournalError as forward:
        if to_serial is None:
            raise
        try:
            backwards = store.changesets_between(origin, to_serial, from_serial)
        except JournalError:
            raise forward from None
    removed, added = _net_change(backwards)
    return added, removed


def _print_changeset(cs: Changeset, as_json: bool, header: str) -> None:
    if as_json:
        data = _changeset_summary(cs) | {
            "removed": [_rr_json(r) for r in cs.removed],
            "added": [_rr_json(r) for r in cs.added],
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{header}: zone {cs.zone} serial {cs.serial_before} -> {cs.serial_after}")
    for r in _ordered(list(cs.removed)):
        click.echo(f"- {r.to_text()}")
    for r in _ordered(list(cs.added)):
        click.echo(f"+ {r.to_text()}")


def _say(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _report(cs: Changeset, as_json: bool) -> None:
    summary = _changeset_summary(cs)
    if cs.serial_before is None:
        text = f"zone {cs.zone}: created with {summary['added']} records, serial {cs.serial_after}"
    else:
        text = (
            f"zone {cs.zone}: serial {cs.serial_before} -> {cs.serial_after} "
            f"({_size_text(summary)}, change #{cs.id})"
        )
    _say(as_json, summary, text)


zone_group.add_command(zone_sign)
zone_group.add_command(zone_maintain)

__all__ = ["keys_group", "record_group", "serve_cmd", "zone_group"]
