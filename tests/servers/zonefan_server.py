"""``zonefan serve`` as a test server, and the ``zonefan`` CLI as a subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.servers.process import (
    CLI_TIMEOUT,
    START_TIMEOUT,
    _clean_env,
    _Process,
)
from tests.tools import free_port


class ZonefanServer(_Process):
    """``zonefan --db DB serve`` on 127.0.0.1 (plus ::1 when ``ipv6``)."""

    name = "zonefan"

    def __init__(
        self,
        workdir: Path,
        db: Path | None = None,
        extra_args: Sequence[str] = (),
        ipv6: bool = False,
        probe_name: str = ".",
        start_timeout: float = START_TIMEOUT,
        config: Path | None = None,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.db = db if db is not None else workdir / "zonefan.db"
        self.config = config  # a TOML settings file (keys, secondaries), when given
        self.extra_args = list(extra_args)
        self.ipv6 = ipv6
        self.port6 = 0
        self._probe = probe_name

    def _probe_name(self) -> str:
        return self._probe

    def _prepare(self) -> None:
        if self.ipv6:
            self.port6 = free_port(socket.AF_INET6, "::1")

    def _command(self) -> list[str]:
        listen = ["--listen", f"{self.host}:{self.port}"]
        if self.ipv6:
            listen += ["--listen", f"[::1]:{self.port6}"]
        return [
            sys.executable,
            "-m",
            "zonefan.cli",
            "--db",
            str(self.db),
            *(["--config", str(self.config)] if self.config is not None else []),
            "serve",
            *listen,
            *self.extra_args,
        ]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``zonefan --db DB ARGS...`` against this server's store. It runs in the
        server's work directory (so no ./zonefan.toml is picked up): give absolute paths."""
        return run_cli(self.db, *args, check=check, cwd=self.workdir)


def run_cli(
    db: Path, *args: str, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``zonefan --db DB ARGS...`` as a subprocess; on failure (with ``check``) raise with
    its output so the reason shows in the test report."""
    done = subprocess.run(
        [sys.executable, "-m", "zonefan.cli", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        cwd=cwd if cwd is not None else db.parent,
        env=_clean_env(),
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(
            f"zonefan {' '.join(args)} exited {done.returncode}:\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def trust_anchor(db: Path, zone: str, cwd: Path | None = None) -> str:
    """The DS of ``zone``'s KSK or CSK as a trust anchor for a test's own resolver.

    Right after `zone sign` the DS is not safe at a parent yet (`keys ds` lists it as
    coming until the DNSKEY and signatures are in every cache), but a resolver started
    now has nothing cached from before, so it may trust the key at once."""
    data = json.loads(run_cli(db, "keys", "ds", zone, "--json", cwd=cwd).stdout)
    records: list[str] = [e["record"] for e in (*data["publish"], *data["coming"])]
    assert len(records) == 1, f"{zone} has {len(records)} DS records: {records}"
    return records[0]
