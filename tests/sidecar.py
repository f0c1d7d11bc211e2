"""``zonefan sync run`` as a subprocess, stopped by PID (SIGTERM, or SIGKILL to play a
crash), and the polling helper the end-to-end tests and the sync benchmark share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.servers import STOP_TIMEOUT, _clean_env

SECRET_ENV = "ZF_TEST_SYNC_SECRET"
API_KEY_ENV = "ZF_TEST_PDNS_KEY"


class Sidecar:
    """``python -m zonefan.cli sync run --config CONFIG`` with ``env`` added; its log in
    ``workdir/sidecar-N.log``; stopped by PID (SIGTERM, or :meth:`kill` for SIGKILL)."""

    def __init__(
        self, workdir: Path, config: Path, env: dict[str, str], extra_args: Sequence[str] = ()
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.env = env
        self.extra_args = list(extra_args)  # further `sync run` options
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path = workdir / "sidecar-0.log"

    def start(self) -> Sidecar:
        self.starts += 1
        self.log_path = self.workdir / f"sidecar-{self.starts}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "zonefan.cli",
                    "-v",
                    "sync",
                    "run",
                    "--config",
                    str(self.config),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**_clean_env(), **self.env},
                cwd=self.workdir,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return "".join(
            p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(self.workdir.glob("sidecar-*.log"))
        )

    def __enter__(self) -> Sidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
