"""Tests of NSEC3 (signer.nsec3 and sign_zone(..., denial=Nsec3Params(...))).

Independent sources: the hashes and the example chain of RFC 5155 Appendix A,
``ldns-nsec3-hash`` and BIND's ``nsec3hash`` for hashes, BIND's ``dnssec-signzone -3``
for a whole chain, and BIND's ``dnssec-verify`` and ``ldns-verify-zone`` for signed
zones.  Tampered chains (re-signed, so only the NSEC3 logic is wrong) must make a
verifier fail, so the verification can fail.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.dnssec
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from dns.rdtypes.ANY.NSEC import NSEC
from dns.rdtypes.ANY.NSEC3 import NSEC3
from dns.rdtypes.ANY.NSEC3PARAM import NSEC3PARAM
from dns.rdtypes.ANY.RRSIG import RRSIG

import signer.nsec3
from signer import keys
from signer.errors import SignerError
from signer.keys import KeyPair
from signer.nsec import type_bitmap
from signer.nsec3 import (
    NSEC3PARAM_TTL,
    Nsec3Error,
    Nsec3Params,
    encode_hash,
    hashed_owner_label,
    make_nsec3,
    nsec3_chain,
    nsec3_hash,
    nsec3_names,
    nsec3_owner,
    nsec3param,
)
from signer.rrsig import sign_rrset
from tests.signing_oracle import sign_zone
from tests.tools import PROJECT_ROOT, require_tool, shared_file

Record = tuple[dns.name.Name, int, dns.rdata.Rdata]
NamesTypes = dict[dns.name.Name, set[int]]

EXAMPLE_ZONE = PROJECT_ROOT / "zones" / "example.test.zone"
EXAMPLE = dns.name.from_text("example.test.")
NOW = int(time.time())
INCEPTION = NOW - 3600
EXPIRATION = NOW + 30 * 86400
RFC_PARAMS = Nsec3Params(iterations=12, salt=bytes.fromhex("aabbccdd"), opt_out=True)

# RFC 5155 Appendix A: hashes of the example zone's names (salt aabbccdd, 12 iterations).
RFC5155_HASHES = {
    "example.": "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom",
    "a.example.": "35mthgpgcu1qg68fab165klnsnk3dpvl",
    "ai.example.": "gjeqe526plbf1g8mklp59enfd789njgi",
    "ns1.example.": "2t7b4g4vsa5smi47k61mv5bv1a22bojr",
    "ns2.example.": "q04jkcevqvmu85r014c7dkba38o0ji5r",
    "w.example.": "k8udemvp1j2f7eg6jebps17vp3n8i58h",
    "*.w.example.": "r53bq7cc2uvmubfu5ocmm6pers9tk9en",
    "x.w.example.": "b4um86eghhds6nea196smvmlo4ors995",
    "y.w.example.": "ji6neoaepv8b5o6k4ev33abha8ht9fgc",
    "x.y.w.example.": "2vptu5timamqttgl4luu9kg21e0aor3s",
    "xx.example.": "t644ebqk9bibcna874givr6joj62mlhv",
    "2t7b4g4vsa5smi47k61mv5bv1a22bojr.example.": "kohar7mbb8dc2ce8a9qvl8hon4k53uhi",
}

# RFC 5155 Appendix A: the unsigned example zone (c.example is an insecure delegation,
# left out of the Opt-Out chain) and its NSEC3 RRs as "owner-hash next-hash types".
RFC5155_ZONE = """
$ORIGIN example.
$TTL 3600
@ SOA ns1 bugs.x.w 1 3600 300 3600000 3600
@ NS ns1
@ NS ns2
@ MX 1 xx
2t7b4g4vsa5smi47k61mv5bv1a22bojr A 192.0.2.127
a NS ns1.a
a NS ns2.a
a DS 58470 5 1 3079F1593EBAD6DC121E202A8B766A6A4837206C
ns1.a A 192.0.2.5
ns2.a A 192.0.2.6
ai A 192.0.2.9
ai HINFO "KLH-10" "ITS"
ai AAAA 2001:db8::f00:baa9
c NS ns1.c
c NS ns2.c
ns1.c A 192.0.2.7
ns2.c A 192.0.2.8
ns1 A 192.0.2.1
ns2 A 192.0.2.2
*.w MX 1 ai
x.w MX 1 xx
x.y.w MX 1 xx
xx A 192.0.2.10
xx HINFO "KLH-10" "TOPS-20"
xx AAAA 2001:db8::f00:baaa
"""
RFC5155_CHAIN = [
    "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom 2t7b4g4vsa5smi47k61mv5bv1a22bojr"
    " NS SOA MX RRSIG DNSKEY NSEC3PARAM",
    "2t7b4g4vsa5smi47k61mv5bv1a22bojr 2vptu5timamqttgl4luu9kg21e0aor3s A RRSIG",
    "2vptu5timamqttgl4luu9kg21e0aor3s 35mthgpgcu1qg68fab165klnsnk3dpvl MX RRSIG",
    "35mthgpgcu1qg68fab165klnsnk3dpvl b4um86eghhds6nea196smvmlo4ors995 NS DS RRSIG",
    "b4um86eghhds6nea196smvmlo4ors995 gjeqe526plbf1g8mklp59enfd789njgi MX RRSIG",
    "gjeqe526plbf1g8mklp59enfd789njgi ji6neoaepv8b5o6k4ev33abha8ht9fgc A HINFO AAAA RRSIG",
    "ji6neoaepv8b5o6k4ev33abha8ht9fgc k8udemvp1j2f7eg6jebps17vp3n8i58h",
    "k8udemvp1j2f7eg6jebps17vp3n8i58h kohar7mbb8dc2ce8a9qvl8hon4k53uhi",
    "kohar7mbb8dc2ce8a9qvl8hon4k53uhi q04jkcevqvmu85r014c7dkba38o0ji5r A RRSIG",
    "q04jkcevqvmu85r014c7dkba38o0ji5r r53bq7cc2uvmubfu5ocmm6pers9tk9en A RRSIG",
    "r53bq7cc2uvmubfu5ocmm6pers9tk9en t644ebqk9bibcna874givr6joj62mlhv MX RRSIG",
    "t644ebqk9bibcna874givr6joj62mlhv 0p9mhaveqvm6t7vbl5lop2u3t2rp3tom A HINFO AAAA RRSIG",
]

# Additions to the example zone: an insecure delegation, and one below two ENTs that
# exist only because of it (with glue below the cut).
EXTRA_DELEGATIONS = """
insecure 3600 IN NS ns.elsewhere.example.
x.y.deleg 3600 IN NS ns.x.y.deleg
ns.x.y.deleg 3600 IN A 192.0.2.7
"""


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def _records(text: str, origin: dns.name.Name) -> list[Record]:
    zone = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)
    return list(zone.iterate_rdatas())


def _example_records(extra: str = "") -> list[Record]:
    return _records(EXAMPLE_ZONE.read_text() + extra, EXAMPLE)


def _names_types(records: Iterable[Record], origin: dns.name.Name) -> NamesTypes:
    """Types by owner name, with DNSKEY and NSEC3PARAM at the apex as sign_zone adds."""
    result: NamesTypes = {}
    for owner, _, rdata in records:
        result.setdefault(owner, set()).add(int(rdata.rdtype))
    result[origin] |= {int(dns.rdatatype.DNSKEY), int(dns.rdatatype.NSEC3PARAM)}
    return result


def _chain_text(chain: Iterable[tuple[dns.name.Name, int, NSEC3]]) -> list[str]:
    """ "owner-label next-hash TYPES" for each NSEC3, as RFC5155_CHAIN spells it."""
    lines = []
    for owner, _, rdata in chain:
        types = " ".join(rdata.to_text().split()[5:])
        lines.append(f"{owner.labels[0].decode()} {encode_hash(rdata.next)} {types}".strip())
    return lines


def _write_zone(path: Path, origin: dns.name.Name, records: Iterable[Record]) -> Path:
    """Write ``records`` as a zone file with dnspython."""
    zone = dns.zone.Zone(origin, relativize=False)
    for owner, ttl, rdata in records:
        rdataset = zone.find_rdataset(owner, rdata.rdtype, rdata.covers(), create=True)
        rdataset.add(rdata, ttl)
    zone.to_file(str(path), relativize=False)
    return path


def _dnssec_verify(
    path: Path, origin: str, key_list: list[KeyPair]
) -> subprocess.CompletedProcess[str]:
    """BIND's dnssec-verify: -x when KSKs alone sign DNSKEY, -z for a CSK."""
    tool = require_tool("dnssec-verify")
    mode = "-x" if any(not k.is_ksk for k in key_list) else "-z"
    return subprocess.run(
        [tool, "-o", origin, mode, str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _ldns_verify(path: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("ldns-verify-zone")
    return subprocess.run(
        [tool, str(path)], check=False, capture_output=True, text=True, timeout=600
    )


def _assert_verifies(path: Path, origin: str, key_list: list[KeyPair]) -> None:
    bind = _dnssec_verify(path, origin, key_list)
    assert bind.returncode == 0, bind.stdout + bind.stderr
    ldns = _ldns_verify(path)
    assert ldns.returncode == 0, ldns.stdout + ldns.stderr


def _nsec3s(signed: Iterable[Record]) -> dict[dns.name.Name, NSEC3]:
    return {owner: rdata for owner, _, rdata in signed if isinstance(rdata, NSEC3)}


# --- hashing -------------------------------------------------------------------------


@pytest.mark.parametrize(("owner", "expected"), sorted(RFC5155_HASHES.items()))
def test_hash_matches_rfc5155_appendix_a(owner: str, expected: str) -> None:
    params = Nsec3Params(iterations=12, salt=bytes.fromhex("aabbccdd"))
    wire = name(owner).to_digestable()
    assert hashed_owner_label(wire, params) == expected
    assert len(nsec3_hash(wire, params)) == 20
    origin = name("example.")
    assert nsec3_owner(name(owner.upper()), origin, params) == name(f"{expected}.example.")


TOOL_CASES = [
    ("www.example.", Nsec3Params()),
    ("Mail.Example.COM.", Nsec3Params()),
    ("*.wild.example.test.", Nsec3Params(iterations=1)),
    (".", Nsec3Params(iterations=5, salt=bytes.fromhex("beef"))),
    ("a.b.c.d.example.", Nsec3Params(iterations=100, salt=bytes(range(32)))),
    ("xn--bcher-kva.example.", Nsec3Params(iterations=12, salt=bytes.fromhex("aabbccdd"))),
]


@pytest.mark.external
@pytest.mark.parametrize(("owner", "params"), TOOL_CASES)
def test_hash_matches_ldns_and_bind_tools(owner: str, params: Nsec3Params) -> None:
    ours = hashed_owner_label(name(owner).to_digestable(), params)
    salt = params.salt.hex() or "-"
    bind = subprocess.run(
        [require_tool("nsec3hash"), salt, "1", str(params.iterations), owner],
        check=True,
        capture_output=True,
        text=True,
    )
    assert bind.stdout.split()[0].lower() == ours
    ldns_args = [require_tool("ldns-nsec3-hash"), "-t", str(params.iterations)]
    if params.salt:
        ldns_args += ["-s", params.salt.hex()]
    ldns = subprocess.run([*ldns_args, owner], check=True, capture_output=True, text=True)
    assert ldns.stdout.strip().rstrip(".") == ours


# --- parameters and single records -----------------------------------------------------


def test_params_defaults_follow_rfc9276() -> None:
    params = Nsec3Params()
    assert (params.iterations, params.salt, params.opt_out, params.flags) == (0, b"", False, 0)
    assert Nsec3Params(opt_out=True).flags == 1
    assert Nsec3Params(iterations=100, salt=bytes(255)).iterations == 100


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"iterations": 101}, "RFC 9276"),
        ({"iterations": -1}, "between 0 and 100"),
        ({"iterations": True}, "integer"),
        ({"iterations": "1"}, "integer"),
        ({"salt": bytes(256)}, "empty salt"),
        ({"salt": "aabb"}, "bytes"),
        ({"opt_out": 1}, "True or False"),
    ],
)
def test_params_validation(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(Nsec3Error, match=fragment) as excinfo:
        Nsec3Params(**kwargs)  # type: ignore[arg-type]
    assert isinstance(excinfo.value, SignerError)


def test_iterations_error_recommends_zero() -> None:
    with pytest.raises(Nsec3Error) as excinfo:
        Nsec3Params(iterations=150)
    message = str(excinfo.value)
    assert "use 0" in message
    assert "insecure" in message


def test_nsec3param_never_has_opt_out() -> None:
    rdata = nsec3param(Nsec3Params(iterations=3, salt=b"\xab", opt_out=True))
    assert isinstance(rdata, NSEC3PARAM)
    assert rdata.to_text() == "1 0 3 ab"
    assert nsec3param(Nsec3Params()).to_text() == "1 0 0 -"


def test_make_nsec3() -> None:
    next_hash = nsec3_hash(name("example.").to_digestable(), Nsec3Params())
    rdata = make_nsec3(next_hash, [1, 46, 28], Nsec3Params(opt_out=True))
    assert rdata.to_text() == f"1 1 0 - {encode_hash(next_hash)} A AAAA RRSIG"
    assert make_nsec3(next_hash, [], Nsec3Params()).windows == ()
    with pytest.raises(Nsec3Error):
        make_nsec3(next_hash[:19], [1], Nsec3Params())
    with pytest.raises(Nsec3Error):
        make_nsec3(next_hash, [1, 50], Nsec3Params())


def test_nsec3_owner_refuses_names_outside_the_zone() -> None:
    with pytest.raises(Nsec3Error):
        nsec3_owner(name("www.other."), name("example."), Nsec3Params())


# --- chain shape ---------------------------------------------------------------------


def test_chain_matches_rfc5155_appendix_a() -> None:
    origin = name("example.")
    records = _records(RFC5155_ZONE, origin)
    chain = nsec3_chain(origin, _names_types(records, origin), RFC_PARAMS, 3600)
    assert _chain_text(chain) == RFC5155_CHAIN
    assert {ttl for _, ttl, _ in chain} == {3600}
    assert all(
        r.flags == 1 and r.iterations == 12 and r.salt == b"\xaa\xbb\xcc\xdd" for _, _, r in chain
    )


def _example_chain(opt_out: bool) -> dict[str, NSEC3]:
    records = _example_records(EXTRA_DELEGATIONS)
    params = Nsec3Params(opt_out=opt_out)
    chain = nsec3_chain(EXAMPLE, _names_types(records, EXAMPLE), params, 300)
    owners = [owner for owner, _, _ in chain]
    assert owners == sorted(owners)  # hash order; equal-length labels sort like the hashes
    for (_, _, rdata), (following, _, _) in zip(chain, [*chain[1:], chain[0]], strict=True):
        assert encode_hash(rdata.next) == following.labels[0].decode()  # last wraps
    by_name: dict[str, NSEC3] = {}
    for owner_text in _all_names(records) | ENT_NAMES:
        owner = nsec3_owner(name(owner_text), EXAMPLE, params)
        found = [rdata for o, _, rdata in chain if o == owner]
        if found:
            by_name[owner_text] = found[0]
    assert len(by_name) == len(chain)  # every NSEC3 matches a name of the zone
    return by_name


ENT_NAMES = {
    "deep.example.test.",
    "b.deep.example.test.",
    "wild.example.test.",
    "_tcp.example.test.",
    "_udp.example.test.",
    "_tcp.www.example.test.",
    "deleg.example.test.",
    "y.deleg.example.test.",
}


def _all_names(records: Iterable[Record]) -> set[str]:
    return {owner.to_text().lower() for owner, _, _ in records}


def _types(rdata: NSEC3) -> str:
    return " ".join(rdata.to_text().split()[5:])


def test_chain_without_opt_out() -> None:
    chain = _example_chain(opt_out=False)
    # ENTs, including those above an insecure delegation only, with empty bitmaps.
    for ent in ENT_NAMES:
        assert _types(chain[ent]) == "", ent
    # Delegations: insecure ones have NS only (nothing signed there), secure NS DS RRSIG.
    assert _types(chain["insecure.example.test."]) == "NS"
    assert _types(chain["x.y.deleg.example.test."]) == "NS"
    assert _types(chain["sub.example.test."]) == "NS DS RRSIG"
    # Nothing below a cut.
    assert not any(n.endswith((".sub.example.test.", ".x.y.deleg.example.test.")) for n in chain)
    # The wildcard is an ordinary name; its parent an ENT.
    assert _types(chain["*.wild.example.test."]) == "A TXT RRSIG"
    assert _types(chain["example.test."]) == (
        "A NS SOA MX TXT AAAA LOC NAPTR RRSIG DNSKEY NSEC3PARAM HTTPS CAA"
    )
    assert _types(chain["www.example.test."]) == "CNAME RRSIG"
    assert all(rdata.flags == 0 for rdata in chain.values())


def test_chain_with_opt_out_omits_insecure_delegations() -> None:
    chain = _example_chain(opt_out=True)
    for gone in ("insecure.", "x.y.deleg.", "y.deleg.", "deleg."):
        assert f"{gone}example.test." not in chain
    assert _types(chain["sub.example.test."]) == "NS DS RRSIG"  # secure: kept
    for ent in ENT_NAMES - {"deleg.example.test.", "y.deleg.example.test."}:
        assert _types(chain[ent]) == "", ent
    assert all(rdata.flags == 1 for rdata in chain.values())
    assert len(_example_chain(opt_out=False)) - len(chain) == 4


def test_nsec3_names_reports_ents_and_bitmap_types() -> None:
    records = _example_records(EXTRA_DELEGATIONS)
    entries = nsec3_names(EXAMPLE, _names_types(records, EXAMPLE), Nsec3Params())
    ents = {e.name.to_text().lower() for e in entries if e.is_ent}
    assert ents == ENT_NAMES
    by_name = {e.name.to_text().lower(): e.types for e in entries}
    assert by_name["insecure.example.test."] == {int(dns.rdatatype.NS)}
    assert by_name["a.b.deep.example.test."] == {1, 46}


def test_enclosing_ent_of_secure_and_insecure_delegations_stays_with_opt_out() -> None:
    text = (
        "$ORIGIN t.\n@ 300 SOA ns hm 1 2 3 4 60\n@ 300 NS ns\nns 300 A 192.0.2.1\n"
        "a.mix 300 NS ns.x.\nb.mix 300 NS ns.x.\n"
        f"b.mix 300 DS {keys.generate().ds(name('b.mix.t.')).to_text()}\n"
    )
    origin = name("t.")
    records = _records(text, origin)
    entries = nsec3_names(origin, _names_types(records, origin), Nsec3Params(opt_out=True))
    names = {e.name.to_text() for e in entries}
    assert names == {"t.", "ns.t.", "mix.t.", "b.mix.t."}


def test_names_differing_in_case_are_one_name() -> None:
    origin = name("t.")
    names_types = {origin: {6, 2}, name("A.b.t."): {1}, name("c.B.t."): {1}}
    entries = nsec3_names(origin, names_types, Nsec3Params())
    assert sorted(e.name.to_text().lower() for e in entries) == ["a.b.t.", "b.t.", "c.b.t.", "t."]


def test_hash_collision_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signer.nsec3, "nsec3_hash", lambda wire, params: bytes(20))
    origin = name("t.")
    with pytest.raises(Nsec3Error, match="different salt"):
        nsec3_chain(origin, {origin: {6, 2}, name("a.t."): {1}}, Nsec3Params(), 60)


def test_single_name_zone_points_to_itself() -> None:
    origin = name("t.")
    [(owner, _, rdata)] = nsec3_chain(origin, {origin: {6, 2}}, Nsec3Params(), 60)
    assert owner.labels[0].decode() == encode_hash(rdata.next)


# --- sign_zone -----------------------------------------------------------------------


KEYSETS: dict[str, Callable[[], list[KeyPair]]] = {
    "csk-ecdsap256": lambda: [keys.generate(keys.ECDSAP256SHA256, keys.KSK_FLAGS)],
    "ksk-zsk-ed25519": lambda: [
        keys.generate(keys.ED25519, keys.KSK_FLAGS),
        keys.generate(keys.ED25519, keys.ZSK_FLAGS),
    ],
}


def _sign_example(key_list: list[KeyPair], params: Nsec3Params, extra: str = "") -> list[Record]:
    records = _example_records(extra)
    return sign_zone(EXAMPLE, records, key_list, INCEPTION, EXPIRATION, denial=params)


def _validate_all(origin: dns.name.Name, signed: list[Record]) -> int:
    """Validate every RRSIG with dnspython; return how many were checked."""
    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    sigs: list[tuple[dns.name.Name, RRSIG]] = []
    for owner, ttl, rdata in signed:
        if isinstance(rdata, RRSIG):
            sigs.append((owner, rdata))
            continue
        key = (owner, int(rdata.rdtype))
        rrset = rrsets.setdefault(key, dns.rrset.RRset(owner, dns.rdataclass.IN, rdata.rdtype))
        rrset.add(rdata, ttl)
    keyset: dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset] = {
        origin: rrsets[(origin, int(dns.rdatatype.DNSKEY))]
    }
    for owner, rrsig in sigs:
        dns.dnssec.validate_rrsig(rrsets[(owner, int(rrsig.type_covered))], rrsig, keyset, now=NOW)
    return len(sigs)


@pytest.mark.parametrize("opt_out", [False, True])
def test_sign_zone_nsec3_structure(opt_out: bool) -> None:
    key_list = KEYSETS["ksk-zsk-ed25519"]()
    ksk, zsk = key_list
    signed = _sign_example(key_list, Nsec3Params(opt_out=opt_out), EXTRA_DELEGATIONS)
    assert not any(isinstance(r, NSEC) for _, _, r in signed)
    params_rrs = [(o, t, r) for o, t, r in signed if isinstance(r, NSEC3PARAM)]
    assert [(o, t, r.to_text()) for o, t, r in params_rrs] == [(EXAMPLE, NSEC3PARAM_TTL, "1 0 0 -")]
    nsec3s = [(o, t, r) for o, t, r in signed if isinstance(r, NSEC3)]
    assert {t for _, t, _ in nsec3s} == {300}  # min(SOA TTL 3600, MINIMUM 300)
    assert all(o.parent() == EXAMPLE for o, _, _ in nsec3s)
    sigs = {(o, int(r.type_covered), r.key_tag) for o, _, r in signed if isinstance(r, RRSIG)}
    for owner, _, _ in nsec3s:  # every NSEC3 signed by the ZSK only
        assert (owner, 50, zsk.key_tag()) in sigs
        assert (owner, 50, ksk.key_tag()) not in sigs
    assert (EXAMPLE, 51, zsk.key_tag()) in sigs
    count = _validate_all(EXAMPLE, signed)
    assert count == len(sigs)
    assert len(nsec3s) == (27 if opt_out else 31)  # as dnssec-signzone -3 [-A] makes


def test_sign_zone_nsec_is_still_the_default() -> None:
    signed = sign_zone(
        EXAMPLE, _example_records(), KEYSETS["csk-ecdsap256"](), INCEPTION, EXPIRATION
    )
    assert any(isinstance(r, NSEC) for _, _, r in signed)
    assert not any(isinstance(r, (NSEC3, NSEC3PARAM)) for _, _, r in signed)


def test_sign_zone_refuses_bad_denial() -> None:
    with pytest.raises(SignerError):
        sign_zone(
            EXAMPLE,
            _example_records(),
            KEYSETS["csk-ecdsap256"](),
            INCEPTION,
            EXPIRATION,
            denial="nsec3",  # type: ignore[arg-type]
        )


# --- independent verifiers -----------------------------------------------------------


@pytest.mark.external
@pytest.mark.parametrize("opt_out", [False, True], ids=["nsec3", "nsec3-optout"])
@pytest.mark.parametrize("keyset", sorted(KEYSETS))
def test_example_zone_verifies(keyset: str, opt_out: bool, tmp_path: Path) -> None:
    key_list = KEYSETS[keyset]()
    signed = _sign_example(key_list, Nsec3Params(opt_out=opt_out), EXTRA_DELEGATIONS)
    path = _write_zone(tmp_path / "example.test.signed", EXAMPLE, signed)
    _assert_verifies(path, "example.test.", key_list)


@pytest.mark.external
def test_rfc5155_example_zone_verifies(tmp_path: Path) -> None:
    origin = name("example.")
    key_list = KEYSETS["csk-ecdsap256"]()
    records = _records(RFC5155_ZONE, origin)
    signed = sign_zone(origin, records, key_list, INCEPTION, EXPIRATION, denial=RFC_PARAMS)
    assert _chain_text((o, t, r) for o, t, r in signed if isinstance(r, NSEC3)) == RFC5155_CHAIN
    _assert_verifies(_write_zone(tmp_path / "example.signed", origin, signed), "example.", key_list)


@pytest.mark.external
@pytest.mark.parametrize("opt_out", [False, True], ids=["nsec3", "nsec3-optout"])
@pytest.mark.parametrize("keyset", sorted(KEYSETS))
def test_root_zone_verifies(keyset: str, opt_out: bool, tmp_path: Path) -> None:
    path = shared_file("root.zone")
    zone = dns.zone.from_file(str(path), origin=dns.name.root, relativize=False)
    drop = {dns.rdatatype.NSEC, dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG}
    records = [(n, t, r) for n, t, r in zone.iterate_rdatas() if r.rdtype not in drop]
    key_list = KEYSETS[keyset]()
    params = Nsec3Params(opt_out=opt_out)
    signed = sign_zone(dns.name.root, records, key_list, INCEPTION, EXPIRATION, denial=params)
    nsec3s = _nsec3s(signed)
    delegations = {n for n, _, r in records if r.rdtype == dns.rdatatype.NS and n != dns.name.root}
    secure = {n for n, _, r in records if r.rdtype == dns.rdatatype.DS}
    expected = len(secure if opt_out else delegations) + 1  # the apex; the root has no ENTs
    assert len(nsec3s) == expected
    _assert_verifies(_write_zone(tmp_path / "root.signed", dns.name.root, signed), ".", key_list)


def _dnssec_signzone_chain(tmp_path: Path, unsigned: str, opt_out: bool) -> set[str]:
    """The NSEC3 RRs dnssec-signzone -3 makes for ``unsigned`` (text: owner rdata)."""
    keygen = require_tool("dnssec-keygen")
    signzone = require_tool("dnssec-signzone")
    work = tmp_path / ("optout" if opt_out else "plain")
    work.mkdir()
    made = subprocess.run(
        [keygen, "-q", "-K", str(work), "-a", "13", "-f", "KSK", "example.test"],
        check=True,
        capture_output=True,
        text=True,
    )
    unsigned_path = work / "example.test.zone"
    unsigned_path.write_text(unsigned + f"$INCLUDE {work / made.stdout.strip()}.key\n")
    signed_path = work / "example.test.signed"
    args = [signzone, "-z", "-3", "-", *(["-A"] if opt_out else []), "-K", str(work)]
    subprocess.run(
        [*args, "-o", "example.test", "-f", str(signed_path), str(unsigned_path)],
        cwd=work,  # dnssec-signzone writes a dsset- file into its working directory
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    zone = dns.zone.from_file(str(signed_path), origin=EXAMPLE, relativize=False)
    return {
        f"{o.to_text().lower()} {r.to_text().lower()}"
        for o, _, r in zone.iterate_rdatas()
        if isinstance(r, NSEC3)
    }


@pytest.mark.external
@pytest.mark.parametrize("opt_out", [False, True], ids=["nsec3", "nsec3-optout"])
def test_chain_equals_dnssec_signzone(opt_out: bool, tmp_path: Path) -> None:
    unsigned = EXAMPLE_ZONE.read_text() + EXTRA_DELEGATIONS
    theirs = _dnssec_signzone_chain(tmp_path, unsigned, opt_out)
    records = _records(unsigned, EXAMPLE)
    chain = nsec3_chain(EXAMPLE, _names_types(records, EXAMPLE), Nsec3Params(opt_out=opt_out), 300)
    ours = {f"{o.to_text().lower()} {r.to_text().lower()}" for o, _, r in chain}
    assert ours == theirs


# --- tampering must be detected ------------------------------------------------------


Tamper = Callable[[NSEC3], dns.rdata.Rdata]


def _flip_next(rdata: NSEC3) -> dns.rdata.Rdata:
    next_hash = bytearray(rdata.next)
    next_hash[-1] ^= 0x01
    return rdata.replace(next=bytes(next_hash))


def _drop_aaaa(rdata: NSEC3) -> dns.rdata.Rdata:
    return rdata.replace(windows=type_bitmap([1, 46]))  # mail1 owns A and AAAA


def _replace_nsec3(
    signed: list[Record], owner: dns.name.Name, new: dns.rdata.Rdata, key: KeyPair | None
) -> list[Record]:
    """``signed`` with the NSEC3 at ``owner`` replaced; re-signed with ``key`` if given."""
    out: list[Record] = []
    for rr_owner, ttl, rdata in signed:
        replacement: dns.rdata.Rdata = rdata
        if rr_owner == owner and isinstance(rdata, NSEC3):
            replacement = new
        elif rr_owner == owner and isinstance(rdata, RRSIG) and key is not None:
            assert rdata.type_covered == dns.rdatatype.NSEC3
            wire = new.to_wire()
            assert wire is not None
            replacement = sign_rrset(owner, 50, ttl, [wire], EXAMPLE, key, INCEPTION, EXPIRATION)
        out.append((rr_owner, ttl, replacement))
    return out


@pytest.mark.external
@pytest.mark.parametrize(
    ("tamper", "resign", "detectors"),
    [
        (_flip_next, True, ("bind", "ldns")),
        (_drop_aaaa, True, ("bind",)),  # ldns-verify-zone does not compare bitmaps
        (_drop_aaaa, False, ("bind", "ldns")),
    ],
    ids=["next-hash-resigned", "bitmap-resigned", "bitmap-unsigned"],
)
def test_verifiers_detect_tampered_nsec3(
    tamper: Tamper, resign: bool, detectors: tuple[str, ...], tmp_path: Path
) -> None:
    key_list = KEYSETS["csk-ecdsap256"]()
    signed = _sign_example(key_list, Nsec3Params())
    owner = nsec3_owner(name("mail1.example.test."), EXAMPLE, Nsec3Params())
    bad = _replace_nsec3(
        signed, owner, tamper(_nsec3s(signed)[owner]), key_list[0] if resign else None
    )
    path = _write_zone(tmp_path / "bad.zone", EXAMPLE, bad)
    results = {"bind": _dnssec_verify(path, "example.test.", key_list), "ldns": _ldns_verify(path)}
    for tool in detectors:
        assert results[tool].returncode != 0, (tool, results[tool].stdout)


@pytest.mark.external
def test_verifiers_detect_missing_ent(tmp_path: Path) -> None:
    """Drop the NSEC3 of the ENT b.deep and re-link the chain around it, re-signed."""
    key_list = KEYSETS["csk-ecdsap256"]()
    params = Nsec3Params()
    signed = _sign_example(key_list, params)
    nsec3s = _nsec3s(signed)
    ent_owner = nsec3_owner(name("b.deep.example.test."), EXAMPLE, params)
    ent_hash = nsec3_hash(name("b.deep.example.test.").to_digestable(), params)
    [before] = [o for o, r in nsec3s.items() if r.next == ent_hash]
    relinked = nsec3s[before].replace(next=nsec3s[ent_owner].next)
    bad = [r for r in _replace_nsec3(signed, before, relinked, key_list[0]) if r[0] != ent_owner]
    path = _write_zone(tmp_path / "bad.zone", EXAMPLE, bad)
    result = _dnssec_verify(path, "example.test.", key_list)
    assert result.returncode != 0, result.stdout + result.stderr


@pytest.mark.external
def test_verifiers_detect_opted_out_delegation_without_flag(tmp_path: Path) -> None:
    """An insecure delegation missing from a chain without the Opt-Out flag is an error:
    the control case for the Opt-Out tests (opt-out chain re-signed with flags 0)."""
    key_list = KEYSETS["csk-ecdsap256"]()
    signed = _sign_example(key_list, Nsec3Params(opt_out=True), EXTRA_DELEGATIONS)
    bad = signed
    for owner, rdata in _nsec3s(signed).items():
        bad = _replace_nsec3(bad, owner, rdata.replace(flags=0), key_list[0])
    path = _write_zone(tmp_path / "bad.zone", EXAMPLE, bad)
    result = _dnssec_verify(path, "example.test.", key_list)
    assert result.returncode != 0, result.stdout + result.stderr
