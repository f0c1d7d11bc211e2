"""NSD: the reference server of the differential tests, and a secondary of zonefan."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.servers.process import (
    START_TIMEOUT,
    _Process,
)
from tests.servers.secondary import _Secondary
from tests.tools import require_tool


def nsd_server_clause(d: Path, port: int, verbosity: int) -> list[str]:
    """nsd.conf's ``server:`` clause for a private NSD in ``d`` on 127.0.0.1@``port``: no
    privilege drop, no chroot, no database file, one server process."""
    return [
        "server:",
        f'    ip-address: "127.0.0.1@{port}"',
        f"    port: {port}",
        '    username: ""',
        '    chroot: ""',
        f'    zonesdir: "{d}"',
        f'    pidfile: "{d}/nsd.pid"',
        f'    xfrdfile: "{d}/xfrd.state"',
        f'    xfrdir: "{d}"',
        f'    zonelistfile: "{d}/zone.list"',
        '    database: ""',
        f'    logfile: "{d}/nsd.log"',
        f"    verbosity: {verbosity}",
        "    server-count: 1",
        "    reuseport: no",
    ]


def _nsd_log(workdir: Path) -> str:
    """What NSD wrote to its own log file in ``workdir`` (its stderr holds little)."""
    nsd_log = workdir / "nsd.log"
    return nsd_log.read_text(encoding="utf-8", errors="replace") if nsd_log.exists() else ""


class NsdServer(_Process):
    """NSD in the foreground (``nsd -d``) serving ``zones`` (origin, file) from a private
    configuration: no privilege drop, no chroot, no remote control, and no response rate
    limiting unless ``rrl_ratelimit`` (responses per second) is given."""

    name = "nsd"

    def __init__(
        self,
        workdir: Path,
        zones: Sequence[tuple[str, Path]],
        start_timeout: float = START_TIMEOUT,
        rrl_ratelimit: int = 0,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.rrl_ratelimit = rrl_ratelimit
        self.nsd = require_tool("nsd")
        self.checkconf = require_tool("nsd-checkconf")
        self.zones = list(zones)
        self.conf = workdir / "nsd.conf"

    def _probe_name(self) -> str:
        return self.zones[0][0] if self.zones else "."

    def _prepare(self) -> None:
        """Write nsd.conf; rate limiting off when this build has it (nsd-checkconf rejects
        ``rrl-ratelimit`` otherwise)."""
        for rrl in (True, False):
            self._write_conf(rrl)
            check = self._checkconf()
            if check.returncode == 0:
                return
            if not (rrl and "rrl" in (check.stdout + check.stderr).lower()):
                break
        raise RuntimeError(
            f"nsd-checkconf rejected {self.conf}:\n{check.stdout}{check.stderr}\n"
            f"{self.conf.read_text(encoding='utf-8')}"
        )

    def _checkconf(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.checkconf, str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def _write_conf(self, rrl: bool) -> None:
        d = self.workdir
        lines = [
            *nsd_server_clause(d, self.port, verbosity=0),
        ]
        if rrl:
            lines.append(f"    rrl-ratelimit: {self.rrl_ratelimit}")
        lines += ["", "remote-control:", "    control-enable: no", ""]
        for origin, path in self.zones:
            lines += ["zone:", f'    name: "{origin}"', f'    zonefile: "{path}"', ""]
        self.conf.write_text("\n".join(lines), encoding="utf-8")

    def _command(self) -> list[str]:
        return [self.nsd, "-d", "-c", str(self.conf)]

    def log_text(self) -> str:
        return super().log_text() + _nsd_log(self.workdir)


class NsdSecondary(_Secondary):
    """NSD (``nsd -d``) as a secondary, nsd-control over a Unix socket."""

    name = "nsd"

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        lines = [
            *nsd_server_clause(d, self.port, verbosity=2),
            "",
            "remote-control:",
            "    control-enable: yes",
            f'    control-interface: "{d}/nsd.ctl"',
            "",
            "key:",
            f'    name: "{k.name}"',
            f"    algorithm: {k.algorithm}",
            f'    secret: "{k.secret}"',
            "",
        ]
        for zone in self.zones:
            lines += [
                "zone:",
                f'    name: "{zone}"',
                f'    zonefile: "{zone}zone"',
                f"    request-xfr: 127.0.0.1@{self.primary_port} {k.name}",
                f"    allow-notify: 127.0.0.1 {k.name}",
                "",
            ]
        self.conf = d / "nsd.conf"
        self.conf.write_text("\n".join(lines), encoding="utf-8")

    def _command(self) -> list[str]:
        return [require_tool("nsd"), "-d", "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return [require_tool("nsd-control"), "-c", str(self.conf)]

    def refresh(self, zone: str) -> None:
        self.control("transfer", zone)  # IXFR when possible (force_transfer would AXFR)

    def log_text(self) -> str:
        return super().log_text() + _nsd_log(self.workdir)
