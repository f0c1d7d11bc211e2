"""``zonefan health report``: a remote checker's result sent to the primary by a
TSIG-signed UPDATE (see README "Health checks (pools)")."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import click
import dns.exception
import dns.name
import dns.rcode

from health import CheckerReport, ReportError
from settings import Address
from zonefan.common import config_keys
from zonefan.health_remote import remote_rounds, send_reports
from zonefan.options import address as address_option
from zonefan.options import config_of, json_option
from zonefan.pools import health_config


@click.group("health")
def health_group() -> None:
    """Remote checkers: send health-check results to the primary."""


@health_group.command("report")
@click.option(
    "--server",
    required=True,
    callback=address_option,
    metavar="ADDR:PORT",
    help="The primary (`zonefan serve`) to report to.",
)
@click.option(
    "--key", "key_label", required=True, metavar="NAME", help="The [key.NAME] to sign with."
)
@click.option("--checker", required=True, metavar="ID", help="This checker's id.")
@click.option("--pool", required=True, metavar="NAME", help="The pool's name.")
@click.option("--address", required=True, metavar="IP", help="The member reported on.")
@click.option("--ok/--fail", required=True, help="Whether the member passed the check.")
@click.option("--detail", default="", metavar="TEXT", help="What the check saw.")
@click.option(
    "--zone", default=None, metavar="ZONE", help="The pool's zone (default: the pool's parent)."
)
@json_option
@click.pass_context
def report_cmd(
    ctx: click.Context,
    server: Address,
    key_label: str,
    checker: str,
    pool: str,
    address: str,
    ok: bool,
    detail: str,
    zone: str | None,
    as_json: bool,
) -> None:
    """Send one check result; exits non-zero unless the primary took it (NOERROR)."""
    keys = config_keys(ctx)
    if key_label not in keys:
        raise click.BadParameter(f"no [key.{key_label}] table in the config", param_hint="--key")
    try:
        report = CheckerReport.from_mapping(
            {
                "checker": checker,
                "pool": pool,
                "address": address,
                "ok": ok,
                "at": time.time(),
                "detail": detail,
            }
        )
        origin = None if zone is None else dns.name.from_text(zone)
    except (ReportError, dns.exception.DNSException) as e:
        raise click.UsageError(str(e)) from None
    try:
        rcode = send_reports([report], keys[key_label], (server.host, server.port), origin)
    except (OSError, dns.exception.DNSException) as e:
        raise click.ClickException(f"no answer from {server.host}:{server.port}: {e}") from e
    text = dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
    if rcode != dns.rcode.NOERROR:
        raise click.ClickException(f"{server.host}:{server.port} answered {text}")
    if as_json:
        click.echo(json.dumps({"pool": pool, "address": report.address, "ok": ok, "rcode": text}))
    else:
        click.echo(f"{report.address} in {report.pool}: {'ok' if ok else 'fail'} reported ({text})")


@health_group.command("check")
@click.option(
    "--report-to",
    "server",
    required=True,
    callback=address_option,
    metavar="ADDR:PORT",
    help="The primary (`zonefan serve`) to report to.",
)
@click.option(
    "--key", "key_label", required=True, metavar="NAME", help="The [key.NAME] to sign with."
)
@click.option(
    "--rounds", type=click.IntRange(min=1), default=None, metavar="N", help="Stop after N rounds."
)
@json_option
@click.pass_context
def check_cmd(
    ctx: click.Context, server: Address, key_label: str, rounds: int | None, as_json: bool
) -> None:
    """Run as a remote checker: probe the members of the config's pools every interval and
    report each pool's results as [health] checker, until stopped (or N rounds)."""
    keys = config_keys(ctx)
    if key_label not in keys:
        raise click.BadParameter(f"no [key.{key_label}] table in the config", param_hint="--key")
    health = health_config(config_of(ctx))
    if not health.pools:
        raise click.ClickException('the config has no [pool."NAME"] tables to check')
    key = keys[key_label]

    def send(reports: Sequence[CheckerReport]) -> int:
        return send_reports(reports, key, (server.host, server.port))

    rcodes = asyncio.run(remote_rounds(health, send, rounds))
    texts = [dns.rcode.to_text(dns.rcode.Rcode.make(r)) for r in rcodes]
    if as_json:
        click.echo(json.dumps({"checker": health.checker, "rcodes": texts}))
    else:
        click.echo(f"{len(texts)} report message(s) as {health.checker}: {', '.join(texts)}")
