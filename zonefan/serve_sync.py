"""``zonefan serve --sync``: the primary and its sync sidecar in one process, wired to each
other so the operator writes nothing twice.

- The sidecar reads the primary's ``[key.*]`` tables (sync.toml may name them without
  repeating them) and transfers from the primary's first listen address unless
  ``[primary] address`` says otherwise.
- The primary lets the sidecar transfer the zones it syncs with its key, with no
  ``[[secondary]]`` entry, and NOTIFYs it of every new serial: at sync.toml's ``listen``,
  or at a free port on the primary's address when it gives none.

The sidecar still learns everything over DNS (NOTIFY, IXFR/AXFR, TSIG), as it does beside
any other primary; this module only fills in the addresses and keys both sides need.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import dns.name

from nameserver.transfer.acl import Secondary, TransferAcl
from nameserver.transfer.notify import NotifyTarget
from settings import Address, SettingsError, TsigKey
from sync.config import SyncConfig, load_sync_config

if TYPE_CHECKING:  # imported with --metrics only: other commands start faster
    from prometheus_client.registry import CollectorRegistry


@dataclasses.dataclass
class SidecarLink:
    """What the primary needs to know of the sidecar it runs."""

    cfg: SyncConfig
    notify_to: Address | None = None  # the NOTIFY listener, once it is bound
    metrics: CollectorRegistry | None = None  # the server's, when it serves metrics

    def listening(self, address: Address) -> None:
        """The sidecar's NOTIFY listener is bound at ``address``."""
        self.notify_to = _reachable(address)

    def acl(self, acl: TransferAcl) -> TransferAcl:
        """``acl`` plus the sidecar: it may transfer the zones it syncs, with its key."""
        host = ipaddress.ip_network(self.cfg.primary.host)
        key = self.cfg.primary_key
        entry = Secondary(
            host,
            None,
            None if key is None else key.name,
            frozenset(self.cfg.zones),
            f"sync sidecar ({self.cfg.path})",
        )
        return TransferAcl((*acl.secondaries, entry))

    def keyring(self, keys: Mapping[dns.name.Name, TsigKey]) -> dict[dns.name.Name, TsigKey]:
        """The primary's keys plus the sidecar's transfer key (the same one, when shared)."""
        key = self.cfg.primary_key
        return dict(keys) if key is None else {**keys, key.name: key}

    def notify_targets(self, origin: dns.name.Name) -> list[NotifyTarget]:
        """Where the primary NOTIFYs the sidecar of ``origin`` (nowhere before it listens)."""
        if self.notify_to is None or origin not in self.cfg.zones:
            return []
        key = self.cfg.primary_key
        return [
            NotifyTarget(
                self.notify_to.host, self.notify_to.port, None if key is None else key.dns_key
            )
        ]

    def companion(self) -> Coroutine[Any, Any, None]:
        """The sidecar, for the server's event loop."""
        from zonefan.sync_cli import sidecar

        return sidecar(
            self.cfg, handle_signals=False, on_listening=self.listening, registry=self.metrics
        )


def link_sidecar(
    path: Path, keys: Mapping[str, TsigKey], listen: Sequence[tuple[str, int]]
) -> SidecarLink:
    """Read the sidecar's config for a primary listening on ``listen`` with ``keys`` (by
    their ``[key.NAME]`` table names); a ClickException names what does not fit."""
    first = Address(*listen[0])
    try:
        cfg = load_sync_config(path, shared_keys=keys, default_primary=_reachable(first))
    except SettingsError as e:
        raise click.ClickException(str(e)) from None
    if not any(_serves(Address(*where), cfg.primary) for where in listen):
        served = ", ".join(str(Address(*where)) for where in listen)
        raise click.ClickException(
            f"{path}: primary.address: {cfg.primary} is not an address this server listens "
            f"on ({served}); with `serve --sync` the sidecar transfers from this server: "
            "remove primary.address or give one of those"
        )
    if cfg.listen is None:
        # Any free port on the primary's address: only the primary needs to know it.
        cfg = dataclasses.replace(cfg, listen=Address(cfg.primary.host, 0))
    return SidecarLink(cfg)


def _reachable(address: Address) -> Address:
    """``address`` as something to send to: a wildcard means this host's loopback."""
    ip = ipaddress.ip_address(address.host)
    if not ip.is_unspecified:
        return address
    return Address("::1" if ip.version == 6 else "127.0.0.1", address.port)


def _serves(listen: Address, wanted: Address) -> bool:
    """True when a socket bound to ``listen`` receives what is sent to ``wanted``."""
    if listen.port != wanted.port:
        return False
    ip = ipaddress.ip_address(listen.host)
    if ip.is_unspecified:
        return ip.version == ipaddress.ip_address(wanted.host).version
    return listen.host == wanted.host
