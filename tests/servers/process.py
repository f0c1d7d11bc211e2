"""What every test server shares: a subprocess on 127.0.0.1 (and optionally ::1) with an
ephemeral port and its own files in a temporary directory, ready once it answers a query,
stopped by its PID (SIGTERM, then SIGKILL after a grace period); and the queries tests send."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from tests.tools import PROJECT_ROOT, free_port

START_TIMEOUT = 10.0  # seconds until a started server must answer
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
QUERY_TIMEOUT = 2.0
CLI_TIMEOUT = 300.0  # a root zone import is the slowest CLI call the tests make
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def ipv6_loopback_available() -> bool:
    """True when ::1 can be bound here (containers often have IPv6 disabled)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def query_message(
    host: str, port: int, message: dns.message.Message, tcp: bool = False
) -> dns.message.Message:
    """Send ``message`` to ``host``:``port`` and return the response (truncated or not)."""
    if tcp:
        return dns.query.tcp(message, host, port=port, timeout=QUERY_TIMEOUT)
    return dns.query.udp(message, host, port=port, timeout=QUERY_TIMEOUT, ignore_trailing=False)


def make_query(name: str, rdtype: str | int, **kwargs: Any) -> dns.message.Message:
    """``dns.message.make_query``; ``rdtype`` as text or a type code."""
    return dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), **kwargs)


class _Process:
    """A server subprocess with its log file, started until it answers and stopped by PID."""

    name = "server"

    def __init__(self, workdir: Path, start_timeout: float = START_TIMEOUT) -> None:
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = 0
        # A port chosen before start, for peers configured first (a primary's NOTIFY list).
        self.fixed_port: int | None = None
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- for subclasses --------------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Write configuration for ``self.port`` before starting."""

    def _probe_name(self) -> str:
        return "."

    def _env(self) -> dict[str, str]:
        """The process's environment."""
        return _clean_env()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start on a free port and wait until it answers; retry if the port was taken.
        A server already running is left as it is, so ``with server.start() as s:`` (whose
        ``__enter__`` starts too) runs one process, not two with one of them orphaned."""
        if self.running():
            return self
        failure = ""
        for _ in range(PORT_ATTEMPTS):
            self._launch()
            if self._wait_ready():
                return self
            failure = self.log_text()
            self.stop()
            if "in use" not in failure.lower():
                break
        raise RuntimeError(
            f"{self.name} did not answer on 127.0.0.1 port {self.port} within "
            f"{self.start_timeout:.0f} s; its output:\n{failure}"
        )

    def _launch(self) -> None:
        """Pick a free port (or the one fixed beforehand), write the configuration and start
        the process (no waiting)."""
        self.port = self.fixed_port or free_port()
        self._prepare()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
            )

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        probe = make_query(self._probe_name(), "SOA", flags=0)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                response = dns.query.udp(probe, self.host, port=self.port, timeout=0.2)
            except (dns.exception.DNSException, OSError):
                time.sleep(0.05)
                continue
            if response.id == probe.id:
                return True
        return False

    def stop(self) -> None:
        """SIGTERM the server's PID, then SIGKILL it if it has not exited in time."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc)

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- queries ---------------------------------------------------------------------------

    def query(
        self, name: str, rdtype: str | int, tcp: bool = False, **make_query_kwargs: Any
    ) -> dns.message.Message:
        """Ask over UDP (default) or TCP; ``make_query_kwargs`` go to ``make_query``."""
        return self.ask(make_query(name, rdtype, **make_query_kwargs), tcp=tcp)

    def ask(self, message: dns.message.Message, tcp: bool = False) -> dns.message.Message:
        """Send a prepared message over UDP or TCP."""
        return query_message(self.host, self.port, message, tcp=tcp)

    def serial(self, zone: str) -> int | None:
        """The serial served for ``zone`` now (None: no authoritative answer yet)."""
        try:
            response = self.query(zone, "SOA", flags=0)
        except (dns.exception.DNSException, OSError):
            return None
        if response.rcode() != 0 or not response.flags & dns.flags.AA:
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``proc`` by its PID, then SIGKILL it if it has not exited in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def start_all(*servers: _Process) -> None:
    """Start ``servers`` with their start-ups overlapping; each answers on return.  One
    that does not come up is retried alone by its ``start()``, which raises with its log;
    on any failure every one of them is stopped."""
    try:
        for server in servers:
            server._launch()
        for server in servers:
            if not server._wait_ready():
                server.stop()
                server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise


def _clean_env() -> dict[str, str]:
    """The environment without ZONEFAN_* settings, with the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZONEFAN_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{PROJECT_ROOT}{os.pathsep}{path}" if path else str(PROJECT_ROOT)
    return env
