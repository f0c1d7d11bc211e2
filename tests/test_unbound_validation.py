"""A real unbound, with our DS as its trust anchor and a stub zone pointing at `zonefan
serve`, validates the signed example zone: positive answers, CNAME chains, NXDOMAIN,
NODATA and wildcard expansions come back secure (AD), for NSEC and NSEC3; a delegation
without DS under NSEC3 opt-out is proven insecure (answered, no AD). Signatures that have
expired or were tampered with make it SERVFAIL, so the check can fail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.NSEC3PARAM import NSEC3PARAM
from dns.rdtypes.ANY.RRSIG import RRSIG

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from signer.policy import Denial, Policy
from tests.servers import UnboundServer, ZonefanServer, query_message, trust_anchor
from tests.tools import PROJECT_ROOT, require_tool

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
DAY = 86400


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


@pytest.fixture(scope="module", params=[Denial.NSEC, Denial.NSEC3], ids=["nsec", "nsec3"])
def resolver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UnboundServer]:
    """One signed zone, server and resolver per denial method, shared by the queries."""
    tmp_path = tmp_path_factory.mktemp(f"unbound-{request.param.value}")
    db = _signed_store(tmp_path, request.param)
    yield from _resolver_for(db, tmp_path)


def _resolver_for(db: Path, tmp_path: Path) -> Iterator[UnboundServer]:
    require_tool("unbound")
    anchor = trust_anchor(db, ZONE, cwd=tmp_path)
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(ZonefanServer(tmp_path, db, probe_name=ZONE))
        yield stack.enter_context(UnboundServer(tmp_path, anchor, primary.port, ZONE))


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


# -- insecure delegations (NSEC3 opt-out) and tampered signatures -----------------------------

CHILD = "unsigned.example.test."
_DELEGATION = """
unsigned.example.test. 3600 IN NS ns.unsigned.example.test.
ns.unsigned.example.test. 3600 IN A 127.0.0.1
"""
_CHILD_ZONE = f"""$ORIGIN {CHILD}
$TTL 300
@ SOA ns hostmaster 1 7200 3600 432000 300
@ NS ns
ns A 127.0.0.1
www A 192.0.2.77
"""


def _opt_out_store(tmp_path: Path) -> Path:
    """The example zone plus an unsigned child (no DS), signed with NSEC3 opt-out; the
    child zone itself is served unsigned by the same server."""
    db = tmp_path / "z.db"
    parent_file = tmp_path / "example.test.zone"
    parent_file.write_text(EXAMPLE.read_text() + _DELEGATION)
    child_file = tmp_path / "unsigned.zone"
    child_file.write_text(_CHILD_ZONE)
    # The CLI (``keys ds``) and the server read the policy from ./zonefan.toml.
    (tmp_path / "zonefan.toml").write_text(
        '[policy.opt-out]\ndenial = "nsec3"\nnsec3-opt-out = true\n'
    )
    opt_out = Policy(denial=Denial.NSEC3, nsec3_opt_out=True)
    with Store(db) as store:
        # Keys outside <db>.keys: the server cannot re-sign, it serves what the test made.
        manager = DnssecManager(store, tmp_path / "keys", {"opt-out": opt_out})
        editor = manager.editor()
        for path in (parent_file, child_file):
            parsed = read_zone_file(path)
            plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
            editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(dns.name.from_text(ZONE), Author("test"), "opt-out")
    return db


def _tamper(db: Path, owner: str, covered: int) -> int:
    """Flip one bit in the signatures over ``owner``/``covered``, straight in the store
    (bypassing the editor, as disk corruption or a broken signer would); returns how many."""
    origin = dns.name.from_text(ZONE)
    name = dns.name.from_text(owner)
    with Store(db) as store:
        sigs = [
            (r, r.rdata)
            for r in store.records(origin)
            if isinstance(r.rdata, RRSIG) and r.name == name and r.rdata.type_covered == covered
        ]
        bad = [
            Record(r.name, r.ttl, rd.replace(signature=_flipped(rd.signature))) for r, rd in sigs
        ]
        serial = store.serial(origin)
        store.commit(
            Changeset(
                origin, serial, serial, tuple(r for r, _ in sigs), tuple(bad), "test", "tamper", 0.0
            )
        )
    return len(sigs)


def _flipped(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x01]) + signature[1:]


def _nsec3_covering(db: Path, name: str) -> str:
    """The owner of the NSEC3 whose interval covers (or matches) the hash of ``name``."""
    origin = dns.name.from_text(ZONE)
    with Store(db) as store:
        records = store.records(origin)
    param = next(r.rdata for r in records if isinstance(r.rdata, NSEC3PARAM))
    digest = dns.dnssec.nsec3_hash(name, param.salt, param.iterations, param.algorithm).lower()
    owners = sorted(
        r.name.labels[0].decode().lower() for r in records if r.rdtype == dns.rdatatype.NSEC3
    )
    covering = max((o for o in owners if o <= digest), default=owners[-1])
    return f"{covering}.{ZONE}"


@contextlib.contextmanager
def _resolver_with_child(db: Path, tmp_path: Path) -> Iterator[UnboundServer]:
    require_tool("unbound")
    anchor = trust_anchor(db, ZONE, cwd=tmp_path)
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(ZonefanServer(tmp_path, db, probe_name=ZONE))
        yield stack.enter_context(
            UnboundServer(tmp_path, anchor, primary.port, ZONE, also_stub=[CHILD])
        )


def test_opt_out_delegation_is_proven_insecure(tmp_path: Path) -> None:
    db = _opt_out_store(tmp_path)
    with _resolver_with_child(db, tmp_path) as unbound:
        child = _ask(unbound, f"www.{CHILD}", "A")
        # Insecure, not bogus: answered, without AD (RFC 5155 §6, §8.6).
        assert child.rcode() == dns.rcode.NOERROR, f"{child}\n{unbound.log_text()}"
        assert [rd.to_text() for rs in child.answer for rd in rs] == ["192.0.2.77"]
        assert not child.flags & dns.flags.AD
        parent = _ask(unbound, "web.example.test.", "A")
        assert parent.flags & dns.flags.AD, f"{parent}\n{unbound.log_text()}"


def test_a_tampered_opt_out_proof_makes_the_delegation_bogus(tmp_path: Path) -> None:
    db = _opt_out_store(tmp_path)
    assert _tamper(db, _nsec3_covering(db, CHILD), dns.rdatatype.NSEC3) == 1
    with _resolver_with_child(db, tmp_path) as unbound:
        child = _ask(unbound, f"www.{CHILD}", "A")
        assert child.rcode() == dns.rcode.SERVFAIL, child


def test_a_tampered_signature_makes_unbound_fail(tmp_path: Path) -> None:
    db = _signed_store(tmp_path, Denial.NSEC)
    assert _tamper(db, "web.example.test.", dns.rdatatype.A) == 1
    for unbound in _resolver_for(db, tmp_path):
        assert _ask(unbound, "web.example.test.", "A").rcode() == dns.rcode.SERVFAIL
        # Only that RRset is bogus: the rest of the zone still validates.
        other = _ask(unbound, "mail1.example.test.", "A")
        assert other.flags & dns.flags.AD, other
