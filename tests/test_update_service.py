"""UPDATE as the server handles it: TSIG checked, the zone's policy applied, the change
committed through the editor (signed zones re-signed), the answer TSIG-signed; every
refusal leaves the zone as it was."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.updatepolicy import UpdatePolicy
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.transfer.health_reports import RawReport, report_owner
from nameserver.transfer.tsig import TsigKey
from nameserver.transfer.update_service import UpdateService
from tests.tools import PROJECT_ROOT, example_store

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ORIGIN = dns.name.from_text("example.test.")
SECRET = b"0123456789abcdef0123456789abcdef"
ACME = TsigKey(dns.name.from_text("acme-key."), "hmac-sha256", SECRET)
OTHER = TsigKey(dns.name.from_text("other-key."), "hmac-sha256", SECRET[::-1])
CLIENT = ("127.0.0.1", 5353)
RULES = ["grant acme-key. wildcard *.example.test. TXT", "grant other-key. zonesub ANY"]


@pytest.fixture(params=[False, True], ids=["unsigned", "signed"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[UpdateService, Path]]:
    db = example_store(tmp_path / "z.db", signed=request.param)

    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(store, Path(f"{db}.keys"), versions=versions)

    keys = {ACME.name: ACME, OTHER.name: OTHER}
    policies = {ORIGIN: UpdatePolicy.parse(ORIGIN, RULES)}
    svc = UpdateService(db, keys, policies, factory)
    try:
        yield svc, db
    finally:
        svc.close()


def _send(
    svc: UpdateService, update: dns.update.UpdateMessage, key: TsigKey | None = ACME
) -> dns.message.Message:
    if key is not None:
        update.use_tsig(key.dns_key)
    request = update.to_wire()
    wire = svc.handle(request, CLIENT)
    assert wire is not None
    keyring = {key.name: key.dns_key} if key is not None else None
    return dns.message.from_wire(wire, keyring=keyring, request_mac=update.mac)


def _txt(db: Path, owner: str) -> list[str]:
    name = dns.name.from_text(owner, ORIGIN)
    with Store(db) as store:
        return [
            r.rdata.to_text() for r in store.records(ORIGIN) if r.name == name and r.rdtype == 16
        ]


def _serial(db: Path) -> int:
    with Store(db) as store:
        return store.serial(ORIGIN)


def test_acme_challenge_added_then_deleted(service: tuple[UpdateService, Path]) -> None:
    svc, db = service
    add = dns.update.UpdateMessage(ORIGIN)
    add.add("_acme-challenge.www", 60, "TXT", "token-1")
    response = _send(svc, add)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.had_tsig  # verified against our request's MAC above
    assert _txt(db, "_acme-challenge.www") == ['"token-1"']
    delete = dns.update.UpdateMessage(ORIGIN)
    delete.delete("_acme-challenge.www", "TXT", "token-1")
    assert _send(svc, delete).rcode() == dns.rcode.NOERROR
    assert _txt(db, "_acme-challenge.www") == []
    with Store(db) as store:
        authors = [cs.author for cs in store.changesets(ORIGIN)[-2:]]
        signed = store.dnssec(ORIGIN)
        if signed is not None and signed.signed:
            last = store.changesets(ORIGIN)[-1]
            assert any(r.rdtype == dns.rdatatype.RRSIG for r in last.added)
    assert authors == ["update:acme-key.", "update:acme-key."]


@pytest.mark.parametrize(
    ("case", "rcode"),
    [
        ("name outside the policy", dns.rcode.REFUSED),
        ("type outside the policy", dns.rcode.REFUSED),
        ("unsigned", dns.rcode.REFUSED),
        ("prerequisite fails", dns.rcode.NXRRSET),
        ("zone not ours", dns.rcode.NOTAUTH),
        ("CNAME beside data", dns.rcode.NOERROR),  # ignored per RFC 2136 §3.4.2.2
    ],
)
def test_refusals_change_nothing(
    service: tuple[UpdateService, Path], case: str, rcode: dns.rcode.Rcode
) -> None:
    svc, db = service
    before = _serial(db)
    key: TsigKey | None = ACME
    zone = "nowhere.test." if case == "zone not ours" else ORIGIN
    update = dns.update.UpdateMessage(zone)
    if case == "name outside the policy":
        update.add("example.test.", 60, "TXT", "x")
    elif case == "type outside the policy":
        update.add("_acme-challenge.www", 60, "A", "192.0.2.1")
    elif case == "unsigned":
        update.add("_acme-challenge.www", 60, "TXT", "x")
        key = None
    elif case == "prerequisite fails":
        update.present("_acme-challenge.www", "TXT")
        update.add("_acme-challenge.www", 60, "TXT", "x")
    elif case == "CNAME beside data":
        update.add("web", 60, "CNAME", "mail1")  # web owns A/AAAA
        key = OTHER
    else:
        update.add("x", 60, "TXT", "x")
    assert _send(svc, update, key).rcode() == rcode
    assert _serial(db) == before


def test_tsig_failures_are_notauth_and_change_nothing(service: tuple[UpdateService, Path]) -> None:
    svc, db = service
    before = _serial(db)
    unknown = TsigKey(dns.name.from_text("unknown-key."), "hmac-sha256", SECRET)
    update = dns.update.UpdateMessage(ORIGIN)
    update.add("_acme-challenge.www", 60, "TXT", "x")
    update.use_tsig(unknown.dns_key)
    wire = svc.handle(update.to_wire(), CLIENT)
    assert wire is not None
    response = dns.message.from_wire(wire, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADKEY
    # The right key name with a wrong secret: BADSIG.
    forged = TsigKey(ACME.name, "hmac-sha256", SECRET[::-1])
    update = dns.update.UpdateMessage(ORIGIN)
    update.add("_acme-challenge.www", 60, "TXT", "x")
    update.use_tsig(forged.dns_key)
    wire = svc.handle(update.to_wire(), CLIENT)
    assert wire is not None
    response = dns.message.from_wire(wire, keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADSIG
    assert _serial(db) == before


def test_health_reports_go_to_the_hook_and_never_into_the_zone(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db")

    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(store, Path(f"{db}.keys"), versions=versions)

    taken: list[tuple[list[RawReport], dns.name.Name]] = []

    def hook(reports: Sequence[RawReport], key: dns.name.Name) -> int:
        taken.append((list(reports), key))
        return dns.rcode.NOERROR

    # The policy grants acme-key every TXT below the zone: a report is still not a change.
    policies = {ORIGIN: UpdatePolicy.parse(ORIGIN, RULES)}
    owner = report_owner(dns.name.from_text("www.example.test."))
    serial = _serial(db)

    def report() -> dns.update.UpdateMessage:
        update = dns.update.UpdateMessage(ORIGIN)
        update.add(owner, 0, "TXT", '"checker=b" "ok=true"')
        return update

    without = UpdateService(db, {ACME.name: ACME}, policies, factory)
    try:
        assert _send(without, report()).rcode() == dns.rcode.REFUSED  # no hook: none taken
    finally:
        without.close()
    svc = UpdateService(db, {ACME.name: ACME}, policies, factory, health_reports=hook)
    try:
        assert _send(svc, report(), key=None).rcode() == dns.rcode.REFUSED  # unsigned
        assert taken == []
        assert _send(svc, report()).rcode() == dns.rcode.NOERROR
        [(reports, key)] = taken
        assert key == ACME.name
        assert reports == [RawReport(owner.parent(), (b"checker=b", b"ok=true"))]
    finally:
        svc.close()
    assert _serial(db) == serial
    assert _txt(db, owner.to_text()) == []
