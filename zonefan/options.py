"""Small CLI helpers with no heavy imports, shared by every command module (the sync
commands load without the nameserver package)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import click
import dns.exception
import dns.name

from settings import (
    Address,
    Network,
    Source,
    Table,
    parse_address,
    parse_duration,
    parse_network,
    parse_size,
)

F = TypeVar("F", bound=Callable[..., Any])

CONFIG = "zonefan.config"  # ctx.meta key of the settings file, a settings.Table


def config_of(ctx: click.Context) -> Table:
    """The settings file of this run (an empty table when there is none)."""
    table = ctx.find_root().meta.get(CONFIG)
    return table if isinstance(table, Table) else Table({}, "", Source(None))


def json_option(f: F) -> F:
    """``--json``: machine-readable output for scripts."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def zone_name(text: str) -> dns.name.Name:
    """A zone name from the command line (relative names are taken as absolute)."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise click.BadParameter(f"{text!r} is not a domain name: {e}") from e


V = TypeVar("V")


def _scalar(parse: Callable[[Any], V]) -> Callable[[click.Context, click.Parameter, Any], V | None]:
    """An option callback reading one value with a settings-grammar parser, so the command
    line takes the same text as the config file."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> V | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx, param) from None

    return callback


# A duration as seconds (``10``, ``"30s"``, ``"1.5h"``); a size in bytes (``"64M"``).
duration = _scalar(parse_duration)
size = _scalar(parse_size)
# One address in the settings grammar (``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``, ``ADDR@PORT``).
address = _scalar(parse_address)


def _metrics_address(text: str) -> Address:
    """``ADDR:PORT`` of a metrics endpoint; the port must be written (no usual one)."""
    address = parse_address(text, default_port=-1)
    if address.port < 0:
        raise ValueError(f"{text!r}: give the port too, e.g. 127.0.0.1:9153")
    return address


def metrics_option(f: F) -> F:
    """``--metrics ADDR:PORT``: serve Prometheus metrics at http://ADDR:PORT/metrics."""
    return click.option(
        "--metrics",
        callback=_scalar(_metrics_address),
        default=None,
        metavar="ADDR:PORT",
        help="Serve Prometheus metrics at http://ADDR:PORT/metrics (default: off); see "
        'README "Metrics".',
    )(f)


def addresses(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...] | None
) -> tuple[Address, ...]:
    """An option callback for a repeatable address in the settings grammar (``ADDR``,
    ``ADDR:PORT``, ``[V6]:PORT``, ``ADDR@PORT``)."""
    try:
        return tuple(parse_address(text) for text in value or ())
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


def networks(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...] | None
) -> tuple[Network, ...]:
    """An option callback for a repeatable network in the settings grammar
    (``192.0.2.0/24``, ``2001:db8::/48``, or one address); a port has no meaning here."""
    out = []
    for text in value or ():
        try:
            network, port = parse_network(text)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx, param) from None
        if port is not None:
            raise click.BadParameter(f"{text!r}: a network has no port here", ctx, param)
        out.append(network)
    return tuple(out)


DATE_FORMAT = "ISO 8601: 2026-12-01, 2026-12-01T08:00, 2026-12-01T08:00:00+01:00 (UTC if no zone)"


def parse_when(text: str, option: str) -> float:
    """An ISO 8601 date (its midnight) or date and time, as POSIX seconds; UTC unless the
    text names a zone. A BadParameter naming ``option`` and the format otherwise."""
    try:
        if len(text) == 10:  # a date alone: datetime would take it too, as midnight
            day = date.fromisoformat(text)
            when = datetime(day.year, day.month, day.day, tzinfo=UTC)
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date or time; use {DATE_FORMAT}", param_hint=option
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
