"""A real unbound, with our DS as its trust anchor and a stub zone pointing at `zonefan
serve`, validates the signed example zone: positive answers, CNAME chains, NXDOMAIN,
NODATA and wildcard expansions come back secure (AD), for NSEC and NSEC3. Signatures that
have expired make it SERVFAIL, so the check can fail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest

from nameserver.dnssec import DnssecManager
from nameserver.editor import Author
from nameserver.serial import SerialPolicy
from nameserver.store import Store
from nameserver.zonefile import read_zone_file
from signer.policy import Denial
from tests.servers import ZonefanServer, _Process, query_message, run_cli
from tests.tools import PROJECT_ROOT, require_tool

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
DAY = 86400


class UnboundServer(_Process):
    """unbound in the foreground, validating with ``anchor``, with a stub zone for ZONE."""

    name = "unbound"

    def __init__(self, workdir: Path, anchor: str, stub_port: int) -> None:
        super().__init__(workdir)
        self.anchor = anchor
        self.stub_port = stub_port
        self.conf = workdir / "unbound.conf"

    def _probe_name(self) -> str:
        return ZONE

    def _prepare(self) -> None:
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
  trust-anchor: "{self.anchor}"
stub-zone:
  name: "{ZONE}"
  stub-addr: 127.0.0.1@{self.stub_port}
remote-control:
  control-enable: no
"""
        )

    def _command(self) -> list[str]:
        return [require_tool("unbound"), "-d", "-c", str(self.conf)]


def _signed_store(tmp_path: Path, denial: Denial, clock_offset: int = 0) -> Path:
    """The example zone signed in-process, with the clock moved by ``clock_offset``."""
    db = tmp_path / "z.db"
    store = Store(db)
    try:
        manager = DnssecManager(store, tmp_path / "keys", clock=lambda: time.time() + clock_offset)
        editor = manager.editor()
        parsed = read_zone_file(EXAMPLE)
        plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(parsed.origin, Author("test"), denial=denial)
    finally:
        store.close()
    return db


@pytest.fixture(params=[Denial.NSEC, Denial.NSEC3], ids=["nsec", "nsec3"])
def resolver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UnboundServer]:
    db = _signed_store(tmp_path, request.param)
    yield from _resolver_for(db, tmp_path)


def _resolver_for(db: Path, tmp_path: Path) -> Iterator[UnboundServer]:
    require_tool("unbound")
    anchor = run_cli(db, "keys", "ds", ZONE, cwd=tmp_path).stdout.strip().splitlines()[0]
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(ZonefanServer(tmp_path, db, probe_name=ZONE).start())
        yield stack.enter_context(UnboundServer(tmp_path, anchor, primary.port).start())


def _ask(unbound: UnboundServer, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return query_message(unbound.host, unbound.port, query)


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode"),
    [
        ("web.example.test.", "A", "NOERROR"),  # positive
        ("www.example.test.", "AAAA", "NOERROR"),  # CNAME chain
        ("nothing-here.example.test.", "A", "NXDOMAIN"),
        ("web.example.test.", "TXT", "NOERROR"),  # NODATA
        ("anything.wild.example.test.", "A", "NOERROR"),  # wildcard expansion
        ("anything.wild.example.test.", "MX", "NOERROR"),  # wildcard NODATA
        ("example.test.", "DNSKEY", "NOERROR"),
    ],
)
def test_answers_are_secure(resolver: UnboundServer, name: str, rdtype: str, rcode: str) -> None:
    response = _ask(resolver, name, rdtype)
    assert dns.rcode.to_text(response.rcode()) == rcode, response
    assert response.flags & dns.flags.AD, f"not validated:\n{response}\n{resolver.log_text()}"


def test_expired_signatures_make_unbound_fail(tmp_path: Path) -> None:
    # Signed "30 days ago": the 14-day signatures have expired.
    db = _signed_store(tmp_path, Denial.NSEC, clock_offset=-30 * DAY)
    for unbound in _resolver_for(db, tmp_path):
        response = _ask(unbound, "web.example.test.", "A")
        assert response.rcode() == dns.rcode.SERVFAIL, response
