"""Who may transfer which zone: the ``[[secondary]]`` entries of the config file.

Each entry names an address or network (``127.0.0.1``, ``10.0.0.0/8``, ``[::1]``; a port,
``192.0.2.1:5301`` or ``192.0.2.1@5301``, is accepted and ignored for matching), an optional
TSIG key the request must be signed with, and optional zones (default: every zone). A
transfer is allowed when any entry matches the client address, key and zone; nothing is
allowed when no entry is configured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dns.name

from nameserver.transfer.notify import NotifyTarget
from settings import (
    Address,
    Network,
    Table,
    TsigKey,
    parse_address,
    parse_name,
    parse_names,
    parse_network,
)

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


def parse_secondaries(entries: list[Table], keys: Mapping[dns.name.Name, TsigKey]) -> TransferAcl:
    """The ``[[secondary]]`` tables (see the module docstring) as a :class:`TransferAcl`;
    SettingsError names the file and the key path (``secondary#2.key``)."""
    out: list[Secondary] = []
    for entry in entries:
        entry.allow(SECONDARY_FIELDS)
        address = entry.get("address", _text)
        network, port = entry.get("address", parse_network)
        key = entry.optional("key", parse_name)
        if key is not None and key not in keys:
            raise entry.error("key", f"no [key.{entry.data['key']}] table defines this key")
        zones = entry.optional("zones", parse_names)
        notify = entry.optional("notify", _notify_address)
        out.append(
            Secondary(
                network,
                port,
                key,
                None if zones is None else frozenset(zones),
                address,
                None if notify is None else (notify.host, notify.port),
            )
        )
    return TransferAcl(tuple(out))


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f'{value!r} is not an address or network; write e.g. "192.0.2.1"')
    return value


def _notify_address(value: object) -> Address:
    """Where NOTIFY goes: one address (not a network), port 53 unless given."""
    return parse_address(value)


def networks(secondaries: Sequence[Secondary]) -> list[str]:
    """The entries' addresses as written (for logs)."""
    return [s.text for s in secondaries]
