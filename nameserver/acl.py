"""Who may transfer which zone: the ``[[secondary]]`` entries of the config file.

Each entry names an address or network (``127.0.0.1``, ``10.0.0.0/8``, ``[::1]``; a port
after ``@`` is accepted and ignored for matching, it is where NOTIFY will go), an optional
TSIG key the request must be signed with, and optional zones (default: every zone). A
transfer is allowed when any entry matches the client address, key and zone; nothing is
allowed when no entry is configured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name

from nameserver.notify import NotifyTarget
from nameserver.tsig import ConfigError, TsigKey

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SECONDARY_FIELDS = ("address", "key", "zones", "notify")


@dataclass(frozen=True)
class Secondary:
    """One ``[[secondary]]`` entry. ``port`` is the port given with the address, if any
    (not used to match transfer requests, whose source port is ephemeral)."""

    network: Network
    port: int | None
    key: dns.name.Name | None
    zones: frozenset[dns.name.Name] | None  # None: every zone
    text: str  # the address as written, for logs
    notify: tuple[str, int] | None = None  # where NOTIFYs go (RFC 1996), signed with key

    def matches(self, address: str, key: dns.name.Name | None, zone: dns.name.Name) -> bool:
        """True when a request from ``address`` signed with ``key`` may transfer ``zone``."""
        try:
            client = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
            client = client.ipv4_mapped
        if client.version != self.network.version or client not in self.network:
            return False
        if self.key is not None and key != self.key:
            return False
        return self.zones is None or zone in self.zones


@dataclass(frozen=True)
class TransferAcl:
    """Every configured secondary."""

    secondaries: tuple[Secondary, ...] = ()

    def allows(self, address: str, key: dns.name.Name | None, zone: dns.name.Name) -> bool:
        """True when some entry allows this transfer."""
        return any(s.matches(address, key, zone) for s in self.secondaries)

    def notify_targets(
        self, zone: dns.name.Name, keys: Mapping[dns.name.Name, TsigKey]
    ) -> list[NotifyTarget]:
        """Where NOTIFYs for ``zone`` go: each entry with ``notify`` that serves it."""
        out = []
        for s in self.secondaries:
            if s.notify is None or (s.zones is not None and zone not in s.zones):
                continue
            key = keys[s.key].dns_key if s.key is not None else None
            out.append(NotifyTarget(s.notify[0], s.notify[1], key))
        return out


def parse_address(text: str) -> tuple[Network, int | None]:
    """``ADDR``, ``ADDR/LEN``, ``ADDR@PORT`` or ``[V6ADDR]@PORT`` to a network and port."""
    host, port = text.strip(), None
    if "@" in host:
        host, _, port_text = host.rpartition("@")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} must be 1-65535")
        port = int(port_text)
    host = host.strip("[]")
    return ipaddress.ip_network(host, strict=True), port


def parse_secondaries(
    entries: Any, keys: Mapping[dns.name.Name, TsigKey], where: str
) -> TransferAcl:
    """``[[secondary]]`` tables to a :class:`TransferAcl`; ConfigError names the file and
    field of the first mistake."""
    if entries is None:
        return TransferAcl()
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: secondary must be an array of tables: [[secondary]]")
    out: list[Secondary] = []
    for i, entry in enumerate(entries):
        field = f"[[secondary]] #{i + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {field} must be a table")
        unknown = sorted(set(entry) - set(SECONDARY_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: {field}: unknown field {unknown[0]!r} "
                f"(use {', '.join(SECONDARY_FIELDS)})"
            )
        address = entry.get("address")
        if not isinstance(address, str):
            raise ConfigError(f'{where}: {field} address is required, e.g. "192.0.2.1"')
        try:
            network, port = parse_address(address)
        except ValueError as e:
            raise ConfigError(
                f"{where}: {field} address {address!r} is not an address or network: {e}"
            ) from e
        key = _key_of(entry.get("key"), keys, where, field)
        zones = _zones_of(entry.get("zones"), where, field)
        notify = _notify_of(entry.get("notify"), where, field)
        out.append(Secondary(network, port, key, zones, address, notify))
    return TransferAcl(tuple(out))


def _key_of(
    value: Any, keys: Mapping[dns.name.Name, TsigKey], where: str, field: str
) -> dns.name.Name | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {field} key must be the name of a [key.NAME] table")
    try:
        name = dns.name.from_text(value)
    except dns.exception.DNSException as e:
        raise ConfigError(f"{where}: {field} key {value!r}: {e}") from e
    if name not in keys:
        raise ConfigError(f"{where}: {field} key {value!r} has no [key.{value}] table")
    return name


def _zones_of(value: Any, where: str, field: str) -> frozenset[dns.name.Name] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(z, str) for z in value):
        raise ConfigError(f'{where}: {field} zones must be a list of names, e.g. ["example."]')
    try:
        return frozenset(dns.name.from_text(z) for z in value)
    except dns.exception.DNSException as e:
        raise ConfigError(f"{where}: {field} zones: {e}") from e


def _notify_of(value: Any, where: str, field: str) -> tuple[str, int] | None:
    """``notify = "ADDR@PORT"`` (port 53 when not given): one address, not a network."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f'{where}: {field} notify must be an address, e.g. "192.0.2.1@53"')
    try:
        network, port = parse_address(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {field} notify {value!r} is not an address: {e}") from e
    if network.num_addresses != 1:
        raise ConfigError(f"{where}: {field} notify {value!r} must be one address, not a network")
    return str(network.network_address), port or 53


def networks(secondaries: Sequence[Secondary]) -> list[str]:
    """The entries' addresses as written (for logs)."""
    return [s.text for s in secondaries]
