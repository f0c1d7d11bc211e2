"""Keeping a signed zone right (nameserver/dnssec/signing.py): a full pass signs a zone that
BIND's dnssec-verify and ldns-verify-zone accept; an incremental pass after any data change
leaves the zone exactly as a full pass wants it, with every signature verifying; expiring
signatures and key changes are re-made, nothing else is."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.ANY.RRSIG import RRSIG as RRSIGRdata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nameserver.dnssec.signing import (
    KeySet,
    SigningParams,
    every_name,
    reconcile,
    touched_names,
)
from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record, parse_record, type_text
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.zonefile import write_zone_file
from signer.keys import ZSK_FLAGS, generate
from signer.nsec3 import Nsec3Params
from tests.signing_oracle import sign_zone
from tests.tools import require_tool
from tests.zonedata import BASE, ORIGIN, records

NOW = int(time.time())  # external verifiers check against the real clock
DAY = 86400
CSK = generate()
ZSK = generate(flags=ZSK_FLAGS)
NSEC3 = Nsec3Params()
NSEC3_OPT_OUT = Nsec3Params(opt_out=True)
DENIALS = {"nsec": None, "nsec3": NSEC3, "nsec3-opt-out": NSEC3_OPT_OUT}
RRSIG = int(dns.rdatatype.RRSIG)


def _params(
    nsec3: Nsec3Params | None = None, now: int = NOW, keys: KeySet | None = None
) -> SigningParams:
    keys = keys or KeySet((CSK,), (CSK,), (CSK,), (CSK,))
    return SigningParams(keys, now, 14 * DAY, 7 * DAY, jitter=DAY, nsec3=nsec3)


def _sign_full(zone: ZoneSnapshot, params: SigningParams) -> ZoneSnapshot:
    delta = reconcile(zone, zone, every_name(zone), params, full=True)
    return zone.patched(delta.removed, delta.added)


def _change(
    zone: ZoneSnapshot, removed: list[Record], added: list[Record], params: SigningParams
) -> ZoneSnapshot:
    new = zone.patched(removed, added)
    names = touched_names(zone, new, [*removed, *added], params.nsec3 is not None)
    delta = reconcile(new, zone, names, params)
    return new.patched(delta.removed, delta.added)


def _verify_in_process(zone: ZoneSnapshot, now: int = NOW) -> int:
    """Check every RRSIG with dnspython against the zone's DNSKEYs; returns how many."""
    origin = zone.origin_name
    sets: dict[tuple[dns.name.Name, int], list[Record]] = defaultdict(list)
    sigs: dict[tuple[dns.name.Name, int], list[Record]] = defaultdict(list)
    for r in zone.records():
        if r.rdtype == RRSIG:
            sigs[(r.name, int(r.rdata.covers()))].append(r)
        else:
            sets[(r.name, r.rdtype)].append(r)
    dnskeys = dns.rrset.from_rdata_list(
        origin, 3600, [r.rdata for r in sets[(origin, int(dns.rdatatype.DNSKEY))]]
    )
    checked = 0
    for (name, covered), found in sigs.items():
        rrset = dns.rrset.from_rdata_list(
            name, found[0].ttl, [r.rdata for r in sets[(name, covered)]]
        )
        for sig in found:
            one = dns.rrset.from_rdata_list(name, sig.ttl, [sig.rdata])
            dns.dnssec.validate(rrset, one, {origin: dnskeys}, now=now)
            checked += 1
    return checked


def _write(zone: ZoneSnapshot, path: Path) -> Path:
    path.write_text(write_zone_file(zone.origin_name, zone.records()))
    return path


def _external_verify(path: Path, nsec3: bool) -> None:
    ldns = subprocess.run(
        [require_tool("ldns-verify-zone"), str(path)], capture_output=True, text=True, check=False
    )
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr
    bind = subprocess.run(
        [require_tool("dnssec-verify"), "-z", "-o", str(ORIGIN), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bind.returncode == 0, bind.stdout + bind.stderr
    assert ("NSEC3" in path.read_text()) == nsec3


def _zone() -> ZoneSnapshot:
    extra = [
        ("insecure", 3600, "NS", "ns.insecure"),
        ("ns.insecure", 3600, "A", "192.0.2.77"),
        ("x.y.z.ent", 3600, "A", "192.0.2.88"),
    ]
    return ZoneSnapshot.from_records(ORIGIN, records([*BASE, *extra]))


def _record(name: str, rdtype: str, rdata: str, ttl: int = 3600) -> Record:
    return parse_record(name, ttl, rdtype, rdata, ORIGIN)


@pytest.mark.parametrize("denial", sorted(DENIALS))
def test_full_pass_verifies_with_bind_and_ldns(denial: str, tmp_path: Path) -> None:
    signed = _sign_full(_zone(), _params(DENIALS[denial]))
    assert _verify_in_process(signed) > 20
    _external_verify(_write(signed, tmp_path / "z.zone"), DENIALS[denial] is not None)


@pytest.mark.parametrize("denial", sorted(DENIALS))
def test_full_pass_on_a_signed_zone_changes_nothing(denial: str) -> None:
    params = _params(DENIALS[denial])
    signed = _sign_full(_zone(), params)
    again = reconcile(signed, signed, every_name(signed), params, full=True)
    assert again.is_empty


def test_switching_nsec_to_nsec3_and_back(tmp_path: Path) -> None:
    nsec = _sign_full(_zone(), _params())
    nsec3 = _sign_full(nsec, _params(NSEC3))
    types = {r.rdtype for r in nsec3.records()}
    assert int(dns.rdatatype.NSEC3) in types and int(dns.rdatatype.NSEC) not in types
    _external_verify(_write(nsec3, tmp_path / "3.zone"), True)
    back = _sign_full(nsec3, _params())
    types = {r.rdtype for r in back.records()}
    assert int(dns.rdatatype.NSEC) in types and int(dns.rdatatype.NSEC3) not in types
    _external_verify(_write(back, tmp_path / "1.zone"), False)


def test_a_change_re_signs_only_what_it_touches() -> None:
    params = _params()
    signed = _sign_full(_zone(), params)
    new = signed.patched([], [_record("host", "A", "192.0.2.4")])
    names = touched_names(signed, new, [_record("host", "A", "192.0.2.4")], nsec3=False)
    delta = reconcile(new, signed, names, params)
    made = sorted((str(r.name), dns.rdatatype.to_text(r.rdata.covers())) for r in delta.added)
    # host A changed; the apex is always looked at but holds nothing new here.
    assert made == [("host.example.test.", "A")]
    assert [r.rdtype for r in delta.removed] == [RRSIG]


@pytest.mark.parametrize("denial", sorted(DENIALS))
def test_new_name_links_into_the_chain(denial: str, tmp_path: Path) -> None:
    params = _params(DENIALS[denial])
    signed = _sign_full(_zone(), params)
    after = _change(signed, [], [_record("new.deeper.name", "A", "192.0.2.5")], params)
    assert reconcile(after, after, every_name(after), params, full=True).is_empty
    _verify_in_process(after)
    _external_verify(_write(after, tmp_path / "z.zone"), DENIALS[denial] is not None)


# Names the random changes work on: plain names, deeper ones (empty non-terminals come and
# go), wildcards, and a delegation that may appear with or without DS and glue.
_NAMES = ["host", "new", "a.b.new", "c.new", "*.wild", "x.y.z.ent", "b.deep", "zz", "aa.sub2"]
_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "delegate", "undelegate"]), st.sampled_from(_NAMES)
    ),
    min_size=1,
    max_size=4,
)


def _apply_op(
    zone: ZoneSnapshot, op: str, name: str, serial: int
) -> tuple[list[Record], list[Record]]:
    """The data change for one random step, plus a serial bump as every changeset has."""
    soa_old = zone.rrset_records(ORIGIN, int(dns.rdatatype.SOA))
    soa_new = [Record(r.name, r.ttl, r.rdata.replace(serial=serial)) for r in soa_old]
    owner = dns.name.from_text(name, ORIGIN)
    present = zone.rrset_records(owner, int(dns.rdatatype.A))
    ns_present = zone.rrset_records(owner, int(dns.rdatatype.NS))
    removed: list[Record] = list(soa_old)
    added: list[Record] = list(soa_new)
    if op == "add" and not ns_present:
        added.append(_record(name, "A", f"192.0.2.{serial % 250 + 1}"))
    elif op == "remove":
        removed.extend(present)
    elif op == "delegate" and not name.startswith("*") and not ns_present:
        # Data at a new cut other than glue addresses would be refused by validation.
        wire = owner.to_wire()
        assert wire is not None
        node = zone.node(wire.lower())
        if node is None or not node.rrsets:
            added.append(_record(name, "NS", f"ns.{name}"))
            added.append(_record(f"ns.{name}", "A", "192.0.2.200"))
            if serial % 2:
                added.append(_record(name, "DS", "12345 13 2 " + "11" * 32))
    elif op == "undelegate":
        removed.extend(ns_present)
        removed.extend(zone.rrset_records(owner, int(dns.rdatatype.DS)))
        removed.extend(zone.rrset_records(dns.name.from_text(f"ns.{name}", ORIGIN), 1))
    return removed, added


@pytest.mark.parametrize("denial", sorted(DENIALS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_OPS, min_size=1, max_size=3))
def test_incremental_equals_full(denial: str, steps: list[list[tuple[str, str]]]) -> None:
    params = _params(DENIALS[denial])
    zone = _sign_full(_zone(), params)
    serial = 2026010102
    for batch in steps:
        removed: list[Record] = []
        added: list[Record] = []
        for op, name in batch:
            serial += 1
            r, a = _apply_op(zone.patched(removed, added), op, name, serial)
            removed.extend(x for x in r if x not in added)
            added = [x for x in added if x not in r] + a
        zone = _change(zone, removed, added, params)
        leftover = reconcile(zone, zone, every_name(zone), params, full=True)
        assert leftover.is_empty, (batch, leftover)
    _verify_in_process(zone)


def test_expiring_signatures_are_refreshed_and_only_those() -> None:
    params = _params()
    signed = _sign_full(_zone(), params)
    total = sum(1 for r in signed.records() if r.rdtype == RRSIG)
    # Not yet due: validity 14 d minus jitter (at most 1 d), refresh 7 d.
    assert reconcile(signed, signed, every_name(signed), _params(now=NOW + 5 * DAY), True).is_empty
    later = _params(now=NOW + 7 * DAY)
    delta = reconcile(signed, signed, every_name(signed), later, full=True)
    assert 0 < len(delta.added) <= total
    assert all(r.rdtype == RRSIG for r in (*delta.added, *delta.removed))
    refreshed = signed.patched(delta.removed, delta.added)
    _verify_in_process(refreshed, now=NOW + 7 * DAY)
    # A week later still, everything made at NOW is due.
    all_due = reconcile(signed, signed, every_name(signed), _params(now=NOW + 13 * DAY), True)
    assert len(all_due.added) == total


def test_a_new_zone_signing_key_re_signs_the_data() -> None:
    signed = _sign_full(_zone(), _params())
    split = KeySet((CSK, ZSK), (CSK,), (ZSK,), (CSK,))
    params = _params(keys=split)
    delta = reconcile(signed, signed, every_name(signed), params, full=True)
    after = signed.patched(delta.removed, delta.added)
    tags: dict[str, set[int]] = defaultdict(set)
    for r in after.records():
        if isinstance(r.rdata, RRSIGRdata):
            tags[dns.rdatatype.to_text(r.rdata.type_covered)].add(r.rdata.key_tag)
    assert tags["DNSKEY"] == {CSK.key_tag()}
    assert tags["A"] == {ZSK.key_tag()} and tags["NSEC"] == {ZSK.key_tag()}
    assert tags["CDS"] == {CSK.key_tag(), ZSK.key_tag()}
    _verify_in_process(after)


def test_cds_delete_form() -> None:
    keys = KeySet((CSK,), (CSK,), (CSK,), (), cds_delete=True)
    signed = _sign_full(_zone(), _params(keys=keys))
    cds = signed.rrset_records(ORIGIN, int(dns.rdatatype.CDS))
    cdnskey = signed.rrset_records(ORIGIN, int(dns.rdatatype.CDNSKEY))
    assert [r.rdata.to_text() for r in cds] == ["0 0 0 00"]
    assert [r.rdata.to_text() for r in cdnskey] == ["0 3 0 AA=="]


@pytest.mark.parametrize("denial", ["nsec", "nsec3"])
def test_chain_equals_the_whole_zone_signers(denial: str) -> None:
    """Two implementations, one answer: the chain kept here equals the oracle's
    (tests/signing_oracle.py)."""
    zone = _zone()
    nsec3 = DENIALS[denial]
    no_cds = KeySet((CSK,), (CSK,), (CSK,))  # sign_zone makes no CDS/CDNSKEY
    ours = _sign_full(zone, _params(nsec3, keys=no_cds))
    theirs = sign_zone(
        ORIGIN,
        [(r.name, r.ttl, r.rdata) for r in zone.records()],
        [CSK],
        NOW - 3600,
        NOW + 14 * DAY,
        denial=nsec3,
    )
    chain_types = {int(dns.rdatatype.NSEC), int(dns.rdatatype.NSEC3)}
    mine = {r.to_text() for r in ours.records() if r.rdtype in chain_types}
    other = {Record(n, t, rd).to_text() for n, t, rd in theirs if int(rd.rdtype) in chain_types}
    assert mine == other and len(mine) > 10


WIRE_ORIGIN = dns.name.from_text("Wire.Example.")
WIRE_ZONE = [
    ("@", 3600, "SOA", "ns.Wire.Example. Host.Wire.Example. 1 7200 3600 1209600 300"),
    ("@", 3600, "NS", "ns.Wire.Example."),
    ("ns", 3600, "A", "192.0.2.1"),
    ("Mixed.Case", 300, "A", "192.0.2.2"),
    ("we\\.ird", 300, "TXT", '"a dot in the label"'),
    ("sp\\032ace.Sub", 300, "AAAA", "2001:db8::1"),
    ("\\200bin", 300, "A", "192.0.2.3"),
    ("*.Wild", 300, "A", "192.0.2.4"),
    ("Deleg", 3600, "NS", "ns.Deleg.Wire.Example."),
    ("ns.Deleg", 3600, "A", "192.0.2.5"),
    ("Deleg", 3600, "DS", "60485 13 2 " + "AB" * 32),
]


def _store_tables(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Every row of the zone's records and of the journal, in the order written."""
    with sqlite3.connect(db) as conn:
        records = conn.execute(
            "SELECT owner, owner_key, rtype, ttl, rdata, rdata_key FROM records ORDER BY id"
        ).fetchall()
        journal = conn.execute(
            "SELECT changeset_id, op, position, owner, rtype, ttl, rdata FROM changeset_records "
            "ORDER BY changeset_id, op, position"
        ).fetchall()
    return records, journal


def test_the_signers_wire_records_store_what_their_decoded_records_do(tmp_path: Path) -> None:
    """The pass hands the store its RRs in wire form (WireRecord); committed, they must
    leave the rows and the journal a decoded Record of each would: owner text (escapes,
    case), identity keys, rdata, in the same order. Three passes: NSEC with a CSK, NSEC3
    with split keys (the NSEC chain, DNSKEY, CDS and CDNSKEY removed), NSEC again."""
    records = [parse_record(n, t, ty, rd, WIRE_ORIGIN) for n, t, ty, rd in WIRE_ZONE]
    stores = [Store(tmp_path / "wire.db"), Store(tmp_path / "decoded.db")]
    created = Changeset(WIRE_ORIGIN, None, 1, (), tuple(records), "t", "import", 1.0)
    for store in stores:
        store.create_zone(created, SerialPolicy.INCREMENT)
    zone = ZoneSnapshot.from_records(WIRE_ORIGIN, records)
    split = KeySet((CSK, ZSK), (CSK,), (ZSK,), (CSK, ZSK))
    passes = [_params(), _params(NSEC3, keys=split), _params()]
    types: set[int] = set()
    for serial, params in enumerate(passes, start=1):
        delta = reconcile(zone, zone, every_name(zone), params, full=True)
        wire = Changeset(
            WIRE_ORIGIN, serial, serial + 1, (*delta.removed,), (*delta.added,), "t", "", 2.0
        )
        decoded = replace(
            wire,
            removed=tuple(r.record() for r in delta.removed),
            added=tuple(r.record() for r in delta.added),
        )
        stores[0].commit(wire)
        stores[1].commit(decoded)
        types.update(r.rdtype for r in (*delta.removed, *delta.added))
        zone = zone.patched(delta.removed, delta.added)
    for store in stores:
        store.close()
    ours, theirs = _store_tables(tmp_path / "wire.db"), _store_tables(tmp_path / "decoded.db")
    assert ours == theirs
    signer_types = {"RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DNSKEY", "CDS", "CDNSKEY"}
    assert {type_text(t) for t in types} == signer_types
    owners = {row[0] for row in ours[0]}
    assert {
        "we\\.ird.Wire.Example.",
        "sp\\032ace.Sub.Wire.Example.",
        "\\200bin.Wire.Example.",
    } <= owners
    _verify_in_process(zone)
