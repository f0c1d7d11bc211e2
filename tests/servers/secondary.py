"""What the secondaries of ``zonefan serve`` share (NSD, Knot, BIND): the TSIG key, the
control tool, the primary's transfer settings, waiting for a serial."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers.process import (
    START_TIMEOUT,
    _Process,
)


@dataclass(frozen=True)
class XfrKey:
    """A TSIG key shared by the primary and a secondary."""

    name: str  # without the trailing dot
    secret: str  # base64
    algorithm: str = "hmac-sha256"


class _Controlled(_Process):
    """A server with a control tool (knotc, rndc, nsd-control) whose served serials the
    tests read."""

    def control(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the control tool with ``args``; raise with its output on failure."""
        done = subprocess.run(
            [*self._control_command(), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.name} control {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
            )
        return done

    def _control_command(self) -> list[str]:
        raise NotImplementedError


def transfer_config(
    key: XfrKey, notify_port: int | None = None, zones: Sequence[str] | None = None
) -> str:
    """The TOML a ``zonefan serve`` primary needs to let 127.0.0.1 transfer with ``key``
    (only ``zones``, when given) and to NOTIFY ``notify_port`` there."""
    lines = [
        f"[key.{key.name}]",
        f'algorithm = "{key.algorithm}"',
        f'secret = "{key.secret}"',
        "",
        "[[secondary]]",
        'address = "127.0.0.1"',
        f'key = "{key.name}"',
    ]
    if notify_port is not None:
        lines.append(f'notify = "127.0.0.1@{notify_port}"')
    if zones is not None:
        lines.append("zones = [" + ", ".join(f'"{z}"' for z in zones) + "]")
    return "\n".join(lines) + "\n"


class _Secondary(_Controlled):
    """A secondary that transfers ``zones`` from 127.0.0.1 port ``primary_port`` with
    ``key``; subclasses write its configuration and know how to force a refresh."""

    def __init__(
        self,
        workdir: Path,
        zones: Sequence[str],
        primary_port: int,
        key: XfrKey,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.zones = [z.rstrip(".") + "." for z in zones]
        self.primary_port = primary_port
        self.key = key
        self.control_port = 0

    def _probe_name(self) -> str:
        return self.zones[0]

    def refresh(self, zone: str) -> None:
        """Make the secondary check the primary's serial now and transfer if it changed."""
        raise NotImplementedError

    def wait_serial(self, zone: str, serial: int, timeout: float = 10.0) -> None:
        """Wait until ``zone`` is served at ``serial``; raise with the log otherwise."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.serial(zone)
            if seen == serial:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name} serves {zone} at serial {seen}, not {serial}, after {timeout} s; "
            f"its log:\n{self.log_text()[-4000:]}"
        )
