"""A ``[target.NAME]`` table of type ``powerdns`` or ``powerdns-secondary``, checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import (
    SyncConfigError,
)
from sync.settings import (
    Address,
    TargetContext,
    TsigKey,
    check_fields,
    parse_address,
    parse_count,
    parse_names,
    parse_rate,
    parse_timeout,
    parse_url,
    require_secret,
)

if TYPE_CHECKING:
    pass

DEFAULT_BATCH_SIZE = 100_000  # RRsets per request; MAX_BODY_BYTES binds first
DEFAULT_TIMEOUT = 10.0
_COMMON_FIELDS = frozenset(
    {
        "url",
        "server-id",
        "timeout",
        "rate-limit",
        "nameservers",
        "primary",
        "tsig-key",
        "dns",
    }
)
RECORD_FIELDS = _COMMON_FIELDS | {"batch-size", "signed-zones"}
SECONDARY_FIELDS = _COMMON_FIELDS
SIGNED_ZONE_MODES = ("secondary", "refuse")


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerDnsSettings:
    """One ``[target.NAME]`` table of type powerdns, parsed."""

    name: str
    url: str
    api_key: str
    server_id: str = "localhost"
    batch_size: int = DEFAULT_BATCH_SIZE
    rate_limit: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    nameservers: tuple[dns.name.Name, ...] | None = None
    signed_zones: str = "secondary"
    primary: Address | None = None
    tsig_key: TsigKey | None = None
    dns: Address | None = None
    api_key_field: str = "api-key-env"  # where the key came from, for error messages

    @property
    def setting(self) -> str:
        return f"target.{self.name}"


def parse_settings(
    name: str, section: Mapping[str, Any], ctx: TargetContext, allowed: frozenset[str]
) -> PowerDnsSettings:
    """Validate a target table; every error names ``target.NAME.field``."""
    setting = f"target.{name}"
    check_fields(section, setting, allowed, secrets=("api-key",))
    url = parse_url(section.get("url"), f"{setting}.url", "http://127.0.0.1:8081")
    api_key = require_secret(section, setting, "api-key", ctx)
    server_id = section.get("server-id", "localhost")
    if not isinstance(server_id, str) or not server_id or "/" in server_id:
        raise SyncConfigError(f"{setting}.server-id", f"expected a server id, got {server_id!r}")
    batch_size = parse_count(section, setting, "batch-size", DEFAULT_BATCH_SIZE)
    rate_limit = parse_rate(section, setting)
    timeout = parse_timeout(section, setting, DEFAULT_TIMEOUT)
    signed_zones = section.get("signed-zones", "secondary")
    if signed_zones not in SIGNED_ZONE_MODES:
        raise SyncConfigError(
            f"{setting}.signed-zones",
            f"expected one of {', '.join(SIGNED_ZONE_MODES)}, got {signed_zones!r}",
        )
    primary = (
        parse_address(section["primary"], f"{setting}.primary")
        if "primary" in section
        else ctx.primary
    )
    dns_address = parse_address(section["dns"], f"{setting}.dns") if "dns" in section else None
    return PowerDnsSettings(
        name=name,
        url=url,
        api_key=api_key,
        server_id=server_id,
        batch_size=batch_size,
        rate_limit=rate_limit,
        timeout=timeout,
        nameservers=_parse_nameservers(section.get("nameservers"), f"{setting}.nameservers"),
        signed_zones=str(signed_zones),
        primary=primary,
        tsig_key=ctx.key(section, setting, "tsig-key"),
        dns=dns_address,
        api_key_field="api-key-file" if "api-key-file" in section else "api-key-env",
    )


def _parse_nameservers(value: Any, setting: str) -> tuple[dns.name.Name, ...] | None:
    return None if value is None else tuple(parse_names(value, setting))


def require_secondary_settings(settings: PowerDnsSettings, why: str) -> tuple[Address, Address]:
    """``primary`` and ``dns``, which a zone served by pdns as a secondary needs; ``why``
    ends the message."""
    if settings.primary is None:
        raise SyncConfigError(
            f"{settings.setting}.primary",
            f'required: the address pdns transfers the zone from, primary = "ADDR:PORT" '
            f"(default: the [primary] address){why}",
        )
    if settings.dns is None:
        raise SyncConfigError(
            f"{settings.setting}.dns",
            f'required: where pdns answers DNS, dns = "ADDR:PORT" (the sidecar checks there '
            f"which serial pdns serves){why}",
        )
    return settings.primary, settings.dns


SIGNED_AS_SECONDARY = (
    '. signed-zones = "secondary" (the default) serves any signed zone from pdns as a '
    'secondary of the primary; set signed-zones = "refuse" to send pdns no signed zone'
)
