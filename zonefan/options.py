"""Small CLI helpers with no heavy imports, shared by every command module (the sync
commands load without the nameserver package)."""

from __future__ import annotations

from collections.abc import Callable
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


def duration(ctx: click.Context, param: click.Parameter, value: object) -> float | None:
    """An option callback: a duration in the settings grammar (``10``, ``"30s"``,
    ``"1.5h"``) as seconds, the same text on the command line as in the config file."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None


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


def size(ctx: click.Context, param: click.Parameter, value: object) -> int | None:
    """An option callback: a size in bytes in the settings grammar (``1048576``, ``"64M"``,
    ``"1.5G"``), the same text on the command line as in the config file."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as e:
        raise click.BadParameter(str(e), ctx, param) from None
