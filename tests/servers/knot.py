"""Knot DNS (``knotd``) as a secondary of zonefan."""

from __future__ import annotations

from pathlib import Path

from tests.servers.secondary import XfrKey, _Secondary
from tests.tools import require_tool


def knot_conf_head(d: Path, port: int, key: XfrKey) -> str:
    """knot.conf's server, log, database and key sections for a private knotd in ``d`` on
    127.0.0.1@``port``, one worker of each kind, logging to stderr."""
    return f"""server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    background-workers: 1
    tcp-workers: 1
    udp-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: "{d}/storage"

key:
  - id: {key.name}
    algorithm: {key.algorithm}
    secret: {key.secret}
"""


class KnotSecondary(_Secondary):
    """knotd as a secondary, knotc over a Unix socket."""

    name = "knot"

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        (d / "storage").mkdir(exist_ok=True)
        zones = "".join(
            f"  - domain: {zone}\n    master: primary\n    acl: notify-in\n" for zone in self.zones
        )
        self.conf = d / "knot.conf"
        self.conf.write_text(
            knot_conf_head(d, self.port, k)
            + f"""
remote:
  - id: primary
    address: 127.0.0.1@{self.primary_port}
    key: {k.name}

acl:
  - id: notify-in
    address: 127.0.0.1
    key: {k.name}
    action: notify

template:
  - id: default
    storage: "{d}/storage"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes

zone:
{zones}""",
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("knotd"), "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return [require_tool("knotc"), "-c", str(self.conf), "-s", str(self.workdir / "knot.sock")]

    def refresh(self, zone: str) -> None:
        self.control("zone-refresh", zone)
