"""Small CLI helpers with no heavy imports, shared by every command module (the sync
commands load without the nameserver package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import dns.exception
import dns.name

F = TypeVar("F", bound=Callable[..., Any])

SETTINGS = "zonefan.settings"  # ctx.meta key of the loaded TOML settings


def json_option(f: F) -> F:
    """``--json``: machine-readable output for scripts."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(f)


def zone_name(text: str) -> dns.name.Name:
    """A zone name from the command line (relative names are taken as absolute)."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as e:
        raise click.BadParameter(f"{text!r} is not a domain name: {e}") from e
