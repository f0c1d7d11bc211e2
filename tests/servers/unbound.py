"""A validating unbound resolver in front of a test server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tests.servers.process import (
    START_TIMEOUT,
    _Process,
)
from tests.tools import require_tool


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
