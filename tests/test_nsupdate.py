"""RFC 2136 UPDATE through a running `zonefan serve`, sent by BIND's `nsupdate -y`: the
ACME pattern (add, then delete, a TXT), and the failure cases, each leaving the zone as
it was. The served answer changes at once, re-signed in a signed zone."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from nameserver.store.store import Store
from tests.servers import ZonefanServer, query_message
from tests.tools import PROJECT_ROOT, example_store, require_tool, write_private
from tests.wait import wait_until

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
SECRET = base64.b64encode(b"acme-secret-0123456789abcdef!!").decode()
CONFIG = f"""[key.acme-key]
algorithm = "hmac-sha256"
secret = "{SECRET}"

[zone."example.test."]
update-policy = ["grant acme-key. wildcard *.example.test. TXT"]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ZonefanServer]:
    db = example_store(tmp_path / "z.db")
    config = tmp_path / "zonefan.toml"
    write_private(config, CONFIG)
    with ZonefanServer(tmp_path, db, probe_name=ZONE, config=config) as running:
        yield running


def nsupdate(server: ZonefanServer, commands: str, key: str = f"acme-key:{SECRET}") -> str:
    """Run ``nsupdate -y`` with ``commands``; returns its output (it fails loudly on a
    refusal, which the caller checks)."""
    script = f"server 127.0.0.1 {server.port}\nzone {ZONE}\n{commands}\nsend\n"
    done = subprocess.run(
        [require_tool("nsupdate"), "-y", f"hmac-sha256:{key}"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout + done.stderr


def _ask(server: ZonefanServer, name: str, rdtype: str) -> dns.message.Message:
    return query_message(
        server.host, server.port, dns.message.make_query(name, rdtype, want_dnssec=True)
    )


def _serial(server: ZonefanServer) -> int:
    return int(_ask(server, ZONE, "SOA").answer[0][0].serial)


def _has(server: ZonefanServer, name: str, rdtype: str) -> bool:
    wanted = dns.rdatatype.from_text(rdtype)
    return any(rs.rdtype == wanted for rs in _ask(server, name, rdtype).answer)


def _served_soon(server: ZonefanServer, name: str, rdtype: str, present: bool) -> None:
    wait_until(
        lambda: _has(server, name, rdtype) == present,
        interval=0.02,
        what=f"{name} {rdtype} served with present={present}",
    )


def test_acme_add_then_delete_with_nsupdate(server: ZonefanServer) -> None:
    name = "_acme-challenge.www.example.test."
    out = nsupdate(server, f'update add {name} 60 TXT "token-1"')
    assert "REFUSED" not in out and "NOTAUTH" not in out, out
    _served_soon(server, name, "TXT", True)
    answer = _ask(server, name, "TXT")
    assert answer.flags & dns.flags.AA
    assert any(rs.rdtype == dns.rdatatype.RRSIG for rs in answer.answer), "re-signed"
    out = nsupdate(server, f'update delete {name} TXT "token-1"')
    assert "REFUSED" not in out, out
    _served_soon(server, name, "TXT", False)
    history = server.cli("zone", "history", ZONE).stdout
    assert "update:acme-key." in history


@pytest.mark.parametrize(
    ("commands", "key", "expected"),
    [
        ("update add www.example.test. 60 A 192.0.2.9", None, "REFUSED"),  # type not granted
        ('update add example.test. 60 TXT "x"', None, "REFUSED"),  # name not granted
        (
            "prereq yxrrset _acme-challenge.www.example.test. TXT\n"
            'update add _acme-challenge.www.example.test. 60 TXT "x"',
            None,
            "NXRRSET",
        ),
        ('update add _acme-challenge.www.example.test. 60 TXT "x"', "other-key", "NOTAUTH"),
        ('update add _acme-challenge.www.example.test. 60 TXT "x"', "acme-key-bad", "NOTAUTH"),
    ],
)
def test_refused_updates_change_nothing(
    server: ZonefanServer, commands: str, key: str | None, expected: str
) -> None:
    before = _serial(server)
    if key == "other-key":
        key_arg = f"other-key:{SECRET}"
    elif key == "acme-key-bad":
        key_arg = f"acme-key:{base64.b64encode(b'not-the-secret-0123456789abcdef').decode()}"
    else:
        key_arg = f"acme-key:{SECRET}"
    out = nsupdate(server, commands, key_arg)
    assert expected in out, out
    # A granted UPDATE after it, once served, is the one change since: UPDATEs commit one
    # at a time, in order, so a change the refused one made would be in the journal first.
    barrier = "_acme-challenge.barrier.example.test."
    out = nsupdate(server, f'update add {barrier} 60 TXT "after"')
    assert "REFUSED" not in out and "NOTAUTH" not in out, out
    _served_soon(server, barrier, "TXT", True)
    with Store(server.db) as store:
        since = store.changesets_between(dns.name.from_text(ZONE), before)
    assert len(since) == 1, [(c.author, c.message) for c in since]
    (only,) = since
    assert {r.name.to_text() for r in only.added if r.rdtype == dns.rdatatype.TXT} == {barrier}
    assert only.author == "update:acme-key."


def test_tsig_failures_are_logged_by_their_tsig_names(server: ZonefanServer) -> None:
    # The TSIG error 16 is BADSIG; as an extended RCODE the same number reads BADVERS.
    wrong = base64.b64encode(b"not-the-secret-0123456789abcdef").decode()
    change = 'update add _acme-challenge.www.example.test. 60 TXT "x"'
    assert "NOTAUTH" in nsupdate(server, change, f"acme-key:{wrong}")
    assert "NOTAUTH" in nsupdate(server, change, f"stranger-key:{SECRET}")
    log = server.log_text()
    assert "UPDATE from 127.0.0.1 refused: TSIG BADSIG (key acme-key.)" in log, log
    assert "UPDATE from 127.0.0.1 refused: TSIG BADKEY (key stranger-key.)" in log, log
    assert "BADVERS" not in log
