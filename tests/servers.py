"""Real DNS servers started from pytest: ``zonefan serve``, NSD and a validating unbound.

Each runs as a subprocess on 127.0.0.1 (and optionally ::1) with an ephemeral port and its
own files in a temporary directory, is ready once it answers a query, and is stopped by its
PID: SIGTERM, then SIGKILL after a grace period. Nothing is shared with a system daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from tests.tools import PROJECT_ROOT, free_port, require_tool

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
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)

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
        nsd_log = self.workdir / "nsd.log"
        text = super().log_text()
        if nsd_log.exists():
            text += nsd_log.read_text(encoding="utf-8", errors="replace")
        return text


class UnboundServer(_Process):
    """unbound in the foreground as a validating resolver for one zone: ``anchors`` are its
    trust anchors (DS or DNSKEY records in zone-file form; none: the zone is insecure to
    it) and a stub zone sends its queries for ``zone`` to 127.0.0.1 port ``stub_port``.

    ``validation_time`` (POSIX seconds) makes it check RRSIG inception and expiration
    against that moment instead of its clock, with no clock-skew allowance, so a zone
    signed on a fake clock is judged at the fake time.  ``harden_algo_downgrade`` makes it
    require a signature of every algorithm the DS RRset lists (RFC 6840 §5.11 lets
    validators be laxer; unbound's default is).  ``aggressive_nsec`` off makes it ask the
    server for each new name rather than deny it from cached NSEC records.
    ``cache_min_ttl`` keeps every record (and validated key) cached at least that long.
    """

    name = "unbound"

    def __init__(
        self,
        workdir: Path,
        anchors: str | Sequence[str],
        stub_port: int,
        zone: str,
        *,
        validation_time: int | None = None,
        harden_algo_downgrade: bool = False,
        aggressive_nsec: bool = True,
        cache_min_ttl: int = 0,
        also_stub: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.anchors = [anchors] if isinstance(anchors, str) else list(anchors)
        # More zones sent to the same server (a child zone it also serves: a delegation's
        # glue cannot name a port).
        self.also_stub = list(also_stub)
        self.stub_port = stub_port
        self.zone = zone
        self.validation_time = validation_time
        self.harden_algo_downgrade = harden_algo_downgrade
        self.aggressive_nsec = aggressive_nsec
        self.cache_min_ttl = cache_min_ttl
        self.conf = workdir / "unbound.conf"

    def _probe_name(self) -> str:
        return self.zone

    def _prepare(self) -> None:
        options = [
            f"harden-algo-downgrade: {_yes_no(self.harden_algo_downgrade)}",
            f"aggressive-nsec: {_yes_no(self.aggressive_nsec)}",
            f"cache-min-ttl: {self.cache_min_ttl}",
        ]
        if self.validation_time is not None:
            when = datetime.fromtimestamp(self.validation_time, UTC).strftime("%Y%m%d%H%M%S")
            options += [
                f"val-override-date: {when}",
                "val-sig-skew-min: 0",
                "val-sig-skew-max: 0",
            ]
        options += [f'trust-anchor: "{anchor}"' for anchor in self.anchors]
        server_options = "".join(f"  {line}\n" for line in options)
        stubs = "".join(
            f'stub-zone:\n  name: "{zone}"\n  stub-addr: 127.0.0.1@{self.stub_port}\n'
            for zone in [self.zone, *self.also_stub]
        )
        self.conf.write_text(
            f"""server:
  interface: 127.0.0.1
  port: {self.port}
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{self.workdir}"
  pidfile: "{self.workdir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  do-ip6: no
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "validator iterator"
  local-zone: "test." nodefault
  qname-minimisation: no
{server_options}{stubs}remote-control:
  control-enable: no
""",
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("unbound"), "-d", "-c", str(self.conf)]


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


# -- secondaries of zonefan serve ------------------------------------------------------------


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
        nsd_log = self.workdir / "nsd.log"
        text = super().log_text()
        if nsd_log.exists():
            text += nsd_log.read_text(encoding="utf-8", errors="replace")
        return text


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


def named_control(d: Path, secret: str) -> tuple[int, str]:
    """A local rndc channel for a private named in ``d``: writes ``d/rndc.conf`` and
    returns the control port and the named.conf lines for its key and ``controls``."""
    port = free_port()
    key = f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    (d / "rndc.conf").write_text(
        f"""{key}options {{
    default-key "rndc-key";
    default-server 127.0.0.1;
    default-port {port};
}};
""",
        encoding="utf-8",
    )
    controls = (
        f"controls {{\n    inet 127.0.0.1 port {port} allow {{ 127.0.0.1; }} "
        'keys { "rndc-key"; };\n};\n'
    )
    return port, key + controls


def named_conf_head(d: Path, port: int, key: XfrKey, options: str = "") -> tuple[int, str]:
    """named.conf's options (plus ``options``), the TSIG ``key`` and an rndc channel for a
    private named in ``d`` on 127.0.0.1 port ``port``: (control port, text)."""
    control_port, control = named_control(d, key.secret)
    text = f"""options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
    {options}}};
key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};
{control}"""
    return control_port, text


def rndc_command(d: Path) -> list[str]:
    """rndc for the named whose control channel :func:`named_control` set up in ``d``."""
    return [require_tool("rndc"), "-c", str(d / "rndc.conf")]


class BindSecondary(_Secondary):
    """named (``-g``, foreground) as a secondary, rndc over a local control channel."""

    name = "bind"

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        self.control_port, head = named_conf_head(
            d, self.port, k, "allow-transfer { none; };\n    request-ixfr yes;\n"
        )
        zones = "".join(
            f'zone "{zone}" {{ type secondary; file "{d}/{zone}db"; '
            f"primaries {{ 127.0.0.1 port {self.primary_port} key {k.name}; }}; "
            f"allow-notify {{ 127.0.0.1; }}; }};\n"
            for zone in self.zones
        )
        self.conf = d / "named.conf"
        self.conf.write_text(
            head + zones,
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("named"), "-g", "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return rndc_command(self.workdir)

    def refresh(self, zone: str) -> None:
        self.control("refresh", zone)
