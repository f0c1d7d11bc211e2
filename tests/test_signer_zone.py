"""Tests of signer.rrsig and signer.nsec, and of the tests' whole-zone oracle
(tests/signing_oracle.py) that nameserver/dnssec/signing.py is compared with.

Signed zones are checked by independent verifiers: BIND's ``dnssec-verify`` and
``ldns-verify-zone`` as subprocesses, and dnspython's ``dns.dnssec`` as a second
opinion on every RRSIG.  Tampered zones (one flipped signature byte, one deleted
NSEC) must make dnssec-verify fail, so the verification can fail.
"""

from __future__ import annotations

import base64
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.RRSIG import RRSIG

from signer import keys
from signer.errors import SignerError
from signer.keys import KeyPair
from signer.nsec import NsecError, canonical_key, nsec_chain, type_bitmap
from signer.rrsig import InvalidRRsetError, canonical_rdata, label_count, sign_rrset
from tests.signing_oracle import SignedInputError, ZoneDataError, sign_zone
from tests.tools import require_tool, shared_file

Record = tuple[dns.name.Name, int, dns.rdata.Rdata]

ORIGIN = dns.name.from_text("example.com.")
NOW = int(time.time())
INCEPTION = NOW - 3600
EXPIRATION = NOW + 30 * 86400
_DS_KEY = keys.generate(keys.ECDSAP256SHA256)

ZONE_TEXT = f"""
$ORIGIN Example.COM.
$TTL 3600
@        7200 IN SOA ns1.Example.COM. HostMaster.example.com. 2024010101 7200 3600 1209600 300
@        IN NS    ns1.example.com.
@        IN NS    NS2.Example.com.
@        IN MX    10 Mail.Example.COM.
@        IN TXT   "v=spf1 -all"
@        IN TXT   "part one" "part two" "part three"
ns1      IN A     192.0.2.1
NS2      IN AAAA  2001:db8::2
Mail     IN A     192.0.2.25
Mail     IN A     192.0.2.26
www      IN CNAME Mail
*        IN TXT   "wildcard"
*.Wild   IN A     192.0.2.99
a.b.ent  IN A     192.0.2.10
_sip._tcp IN SRV  0 5 5060 Mail.Example.COM.
Secure   IN NS    ns.Secure
Secure   IN NS    ns.elsewhere.net.
Secure   IN DS    {_DS_KEY.ds(dns.name.from_text("secure.example.com.")).to_text()}
ns.Secure IN A    192.0.2.53
insecure IN NS    ns.insecure
insecure IN NS    ns.elsewhere.net.
ns.insecure IN AAAA 2001:db8::53
"""


def _wire(item: dns.rdata.Rdata | dns.name.Name) -> bytes:
    """Uncompressed wire form, case preserved."""
    wire = item.to_wire()
    assert wire is not None
    return wire


def _records_from_text(text: str, origin: dns.name.Name) -> list[Record]:
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    return [(name, ttl, rdata) for name, ttl, rdata in zone.iterate_rdatas()]


def _rich_zone() -> list[Record]:
    return _records_from_text(ZONE_TEXT, ORIGIN)


def _zone_lines(records: Iterable[Record]) -> list[str]:
    return [
        f"{name.to_text()} {ttl} IN {dns.rdatatype.to_text(rdata.rdtype)} {rdata.to_text()}"
        for name, ttl, rdata in records
    ]


def _write(path: Path, records: Iterable[Record]) -> Path:
    path.write_text("\n".join(_zone_lines(records)) + "\n")
    return path


def _dnssec_verify(
    path: Path, origin: str, key_list: list[KeyPair]
) -> subprocess.CompletedProcess[str]:
    """Run BIND's dnssec-verify: -x when KSKs alone sign DNSKEY, -z for a CSK."""
    tool = require_tool("dnssec-verify")
    args = [tool, "-o", origin]
    args.append("-x" if any(not k.is_ksk for k in key_list) else "-z")
    return subprocess.run(
        [*args, str(path)], check=False, capture_output=True, text=True, timeout=600
    )


def _ldns_verify(path: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("ldns-verify-zone")
    return subprocess.run(
        [tool, str(path)], check=False, capture_output=True, text=True, timeout=600
    )


def _dnspython_validate_all(origin: dns.name.Name, signed: list[Record]) -> int:
    """Validate every RRSIG with dnspython; return how many were checked."""
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    sigs: list[tuple[dns.name.Name, RRSIG]] = []
    for name, ttl, rdata in signed:
        if isinstance(rdata, RRSIG):
            sigs.append((name, rdata))
            continue
        rrset = rrsets.setdefault(
            (name, int(rdata.rdtype)), dns.rrset.RRset(name, dns.rdataclass.IN, rdata.rdtype)
        )
        rrset.add(rdata, ttl)
    keyset = rrsets[(origin, int(dns.rdatatype.DNSKEY))]
    for name, rrsig in sigs:
        rrset = rrsets[(name, int(rrsig.type_covered))]
        dns.dnssec.validate_rrsig(rrset, rrsig, {origin: keyset}, now=NOW)
    return len(sigs)


KEYSETS = {
    "csk-ecdsap256": lambda: [keys.generate(keys.ECDSAP256SHA256, keys.KSK_FLAGS)],
    "ksk-zsk-ed25519": lambda: [
        keys.generate(keys.ED25519, keys.KSK_FLAGS),
        keys.generate(keys.ED25519, keys.ZSK_FLAGS),
    ],
    "csk-rsasha256": lambda: [keys.generate(keys.RSASHA256, keys.KSK_FLAGS)],
}


@pytest.fixture(scope="module", params=sorted(KEYSETS))
def signed_rich(request: pytest.FixtureRequest) -> tuple[str, list[KeyPair], list[Record]]:
    key_list = KEYSETS[request.param]()
    return request.param, key_list, sign_zone(ORIGIN, _rich_zone(), key_list, INCEPTION, EXPIRATION)


@pytest.mark.external
def test_rich_zone_verifies_with_bind_and_ldns(
    signed_rich: tuple[str, list[KeyPair], list[Record]], tmp_path: Path
) -> None:
    _, key_list, signed = signed_rich
    path = _write(tmp_path / "example.com.signed", signed)
    bind = _dnssec_verify(path, "example.com.", key_list)
    assert bind.returncode == 0, bind.stdout + bind.stderr
    ldns = _ldns_verify(path)
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr


def test_rich_zone_validates_with_dnspython(
    signed_rich: tuple[str, list[KeyPair], list[Record]],
) -> None:
    _, _, signed = signed_rich
    assert _dnspython_validate_all(ORIGIN, signed) > 20


def _signer_tags(signed: list[Record], name: str, covered: int) -> set[int]:
    owner = dns.name.from_text(name)
    return {
        r.key_tag
        for n, _, r in signed
        if isinstance(r, RRSIG) and n == owner and r.type_covered == covered
    }


def test_rich_zone_structure(signed_rich: tuple[str, list[KeyPair], list[Record]]) -> None:
    kind, key_list, signed = signed_rich
    nsecs = {n: r for n, _, r in signed if isinstance(r, NSEC)}
    nsec_names = {n.to_text().lower() for n in nsecs}
    # Glue and empty non-terminals are not in the chain; delegations are.
    assert "ns.secure.example.com." not in nsec_names
    assert "ns.insecure.example.com." not in nsec_names
    assert "ent.example.com." not in nsec_names
    assert "b.ent.example.com." not in nsec_names
    assert {"secure.example.com.", "insecure.example.com.", "a.b.ent.example.com."} <= nsec_names
    texts = {n.to_text().lower(): r.to_text() for n, r in nsecs.items()}
    assert texts["secure.example.com."].endswith(" NS DS RRSIG NSEC")
    assert texts["insecure.example.com."].endswith(" NS RRSIG NSEC")
    assert texts["example.com."].endswith(" NS SOA MX TXT RRSIG NSEC DNSKEY")
    # The chain is circular and in canonical order.
    ordered = sorted(nsecs, key=canonical_key)
    for here, following in zip(ordered, [*ordered[1:], ordered[0]], strict=True):
        assert nsecs[here].next == following
    # NSEC TTL = min(SOA TTL 7200, MINIMUM 300).
    assert {ttl for _, ttl, r in signed if isinstance(r, NSEC)} == {300}
    # Nothing signs delegation NS RRsets or glue.
    for name, _, rdata in signed:
        if isinstance(rdata, RRSIG):
            text = name.to_text().lower()
            assert "ns.secure" not in text
            assert "ns.insecure" not in text
            if text in ("secure.example.com.", "insecure.example.com."):
                assert rdata.type_covered in (dns.rdatatype.DS, dns.rdatatype.NSEC)
    # Key roles.
    tags = {k.key_tag(): k for k in key_list}
    dnskey_tags = _signer_tags(signed, "example.com.", dns.rdatatype.DNSKEY)
    soa_tags = _signer_tags(signed, "example.com.", dns.rdatatype.SOA)
    if kind.startswith("ksk-zsk"):
        assert {tags[t].flags for t in dnskey_tags} == {257}
        assert {tags[t].flags for t in soa_tags} == {256}
    else:
        assert dnskey_tags == soa_tags == set(tags)
    # Wildcard RRSIG labels exclude the '*'.
    wild = [
        r
        for n, _, r in signed
        if isinstance(r, RRSIG) and n.to_text().lower() == "*.wild.example.com."
    ]
    assert wild
    assert all(r.labels == 3 for r in wild if r.type_covered == dns.rdatatype.A)


def _tamper_signature(signed: list[Record]) -> list[Record]:
    out = list(signed)
    for index, (name, ttl, rdata) in enumerate(out):
        if isinstance(rdata, RRSIG) and rdata.type_covered == dns.rdatatype.MX:
            sig = bytearray(rdata.signature)
            sig[len(sig) // 2] ^= 0x01
            out[index] = (name, ttl, rdata.replace(signature=bytes(sig)))
            return out
    raise AssertionError("no MX RRSIG found")


def _delete_nsec(signed: list[Record]) -> list[Record]:
    out = list(signed)
    for index, (name, _, rdata) in enumerate(out):
        if isinstance(rdata, NSEC) and name.to_text().lower() == "mail.example.com.":
            del out[index]
            return out
    raise AssertionError("no NSEC at mail.example.com.")


@pytest.mark.external
@pytest.mark.parametrize("tamper", [_tamper_signature, _delete_nsec])
def test_dnssec_verify_detects_tampering(tamper: object, tmp_path: Path) -> None:
    key_list = KEYSETS["csk-ecdsap256"]()
    signed = sign_zone(ORIGIN, _rich_zone(), key_list, INCEPTION, EXPIRATION)
    good = _write(tmp_path / "good.zone", signed)
    assert _dnssec_verify(good, "example.com.", key_list).returncode == 0
    assert callable(tamper)
    bad = _write(tmp_path / "bad.zone", tamper(signed))
    result = _dnssec_verify(bad, "example.com.", key_list)
    assert result.returncode != 0, result.stdout + result.stderr
    assert _ldns_verify(bad).returncode != 0


def test_sign_rrset_matches_dnspython_byte_for_byte() -> None:
    """Ed25519 is deterministic: identical signed data gives identical signatures."""
    key = keys.generate(keys.ED25519, keys.ZSK_FLAGS)
    cases = [
        (
            "Mail.Example.COM.",
            "MX",
            ["20 B.Example.COM.", "10 a.example.com.", "10 a.example.com."],
        ),
        ("*.Wild.example.com.", "A", ["192.0.2.2", "192.0.2.1"]),
        ("example.com.", "TXT", ['"Part One" "part two"', '"x"']),
        ("_sip._tcp.example.com.", "SRV", ["0 5 5060 Host.Example.COM."]),
        ("example.com.", "NSEC", ["Next.Example.com. A NS RRSIG NSEC"]),
        ("example.com.", "SOA", ["NS1.example.com. Host.Master.example.com. 1 2 3 4 5"]),
    ]
    for owner_text, type_text, rdata_texts in cases:
        owner = dns.name.from_text(owner_text)
        rdtype = dns.rdatatype.from_text(type_text)
        rdatas = [dns.rdata.from_text("IN", rdtype, t) for t in rdata_texts]
        ours = sign_rrset(
            owner, rdtype, 600, [_wire(r) for r in rdatas], ORIGIN, key, INCEPTION, EXPIRATION
        )
        rrset = dns.rrset.from_rdata_list(owner, 600, rdatas)
        theirs = dns.dnssec.sign(
            rrset,
            key.private_key,
            ORIGIN,
            key.dnskey(),
            inception=INCEPTION,
            expiration=EXPIRATION,
            verify=True,
        )
        assert ours == theirs, (owner_text, type_text)
        dns.dnssec.validate_rrsig(
            rrset, ours, {ORIGIN: dns.rrset.from_rdata(ORIGIN, 600, key.dnskey())}, now=NOW
        )


def test_canonical_rdata_lowercases_only_listed_types() -> None:
    mx = dns.rdata.from_text("IN", "MX", "10 Mail.Example.COM.")
    assert canonical_rdata(15, _wire(mx)) == b"\x00\x0a" + _wire(
        dns.name.from_text("mail.example.com.")
    )
    nsec = dns.rdata.from_text("IN", "NSEC", "Next.Example.COM. A")
    assert canonical_rdata(47, _wire(nsec)) == _wire(nsec)  # RFC 6840 section 5.1
    txt = dns.rdata.from_text("IN", "TXT", '"UPPER"')
    assert canonical_rdata(16, _wire(txt)) == _wire(txt)
    with pytest.raises(InvalidRRsetError):
        canonical_rdata(15, b"\x00\x0aXYZ")


def test_label_count() -> None:
    assert label_count(dns.name.from_text("*.a.example.com.")) == 3
    assert label_count(dns.name.from_text("a.example.com.")) == 3
    assert label_count(dns.name.root) == 0
    assert label_count(dns.name.from_text("*.")) == 0


def test_sign_rrset_rejects_bad_input() -> None:
    key = keys.generate()
    a = _wire(dns.rdata.from_text("IN", "A", "192.0.2.1"))
    name = dns.name.from_text("www.example.com.")
    with pytest.raises(InvalidRRsetError):
        sign_rrset(name, 1, 60, [a], ORIGIN, key, EXPIRATION, INCEPTION)
    with pytest.raises(InvalidRRsetError):
        sign_rrset(dns.name.from_text("www.other."), 1, 60, [a], ORIGIN, key, 1, 2)
    with pytest.raises(InvalidRRsetError):
        sign_rrset(name, 1, 60, [], ORIGIN, key, 1, 2)
    with pytest.raises(SignerError):
        sign_rrset(name, 1, -1, [a], ORIGIN, key, 1, 2)


def test_type_bitmap_windows() -> None:
    assert type_bitmap([1, 2, 46, 47]) == ((0, b"\x60\x00\x00\x00\x00\x03"),)
    windows = type_bitmap([1, 65534, 257])
    assert [w for w, _ in windows] == [0, 1, 255]
    assert windows[2][1][-1] == 0x02  # type 65534: window 255, offset 254


def test_nsec_chain_refuses_out_of_zone_and_missing_soa() -> None:
    with pytest.raises(NsecError):
        nsec_chain(ORIGIN, {ORIGIN: {6}, dns.name.from_text("x.other."): {1}})
    with pytest.raises(NsecError):
        nsec_chain(ORIGIN, {ORIGIN: {2}})


def test_sign_zone_refuses_signed_input() -> None:
    key = keys.generate()
    for extra in ("DNSKEY 257 3 13 AAAA", "NSEC example.com. A", "NSEC3PARAM 1 0 0 -"):
        text = ZONE_TEXT + f"extra IN {extra}\n"
        with pytest.raises(SignedInputError):
            sign_zone(ORIGIN, _records_from_text(text, ORIGIN), [key], INCEPTION, EXPIRATION)


def test_sign_zone_refuses_bad_zones() -> None:
    key = keys.generate()
    records = _rich_zone()
    no_soa = [r for r in records if r[2].rdtype != dns.rdatatype.SOA]
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, no_soa, [key], INCEPTION, EXPIRATION)
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, records, [], INCEPTION, EXPIRATION)
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, records, [key, key], INCEPTION, EXPIRATION)
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, records, [key], EXPIRATION, INCEPTION)
    outside = [*records, (dns.name.from_text("x.other."), 60, records[0][2])]
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, outside, [key], INCEPTION, EXPIRATION)
    ds = next(r for r in records if r[2].rdtype == dns.rdatatype.DS)
    stray_ds = [*records, (dns.name.from_text("www.example.com."), 60, ds[2])]
    with pytest.raises(ZoneDataError):
        sign_zone(ORIGIN, stray_ds, [key], INCEPTION, EXPIRATION)


@pytest.mark.external
def test_sign_root_zone(tmp_path: Path) -> None:
    path = shared_file("root.zone")
    ldns = require_tool("ldns-verify-zone")
    zone = dns.zone.from_file(str(path), origin=dns.name.root, relativize=False)
    drop = {dns.rdatatype.NSEC, dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG}
    records = [(n, t, r) for n, t, r in zone.iterate_rdatas() if r.rdtype not in drop]
    key = keys.generate(keys.ECDSAP256SHA256, keys.KSK_FLAGS)
    signed = sign_zone(dns.name.root, records, [key], INCEPTION, EXPIRATION)
    out = _write(tmp_path / "root.signed", signed)
    result = subprocess.run(
        [ldns, str(out)], check=False, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts: dict[int, int] = defaultdict(int)
    for _, _, r in signed:
        counts[int(r.rdtype)] += 1
    assert counts[int(dns.rdatatype.NSEC)] > 1000


def test_signature_base64_roundtrip(signed_rich: tuple[str, list[KeyPair], list[Record]]) -> None:
    """The zone text form reparses to the same records (what the verifiers read)."""
    _, _, signed = signed_rich
    text = "\n".join(_zone_lines(signed)) + "\n"
    reparsed = _records_from_text(text, ORIGIN)
    assert sorted(r.to_digestable() for _, _, r in reparsed) == sorted(
        r.to_digestable() for _, _, r in signed
    )
    sig = next(r for _, _, r in signed if isinstance(r, RRSIG))
    assert base64.b64encode(sig.signature)
