"""DNSSEC answers (RFC 4035 §3.1, RFC 5155 §7.2) through the in-process responder, on the
presigned copies of the differential zone in tests/data/dnssec (ldns-signzone with NSEC,
NSEC3, NSEC3 Opt-Out; dnssec-signzone with NSEC3 Opt-Out, which leaves insecure delegations
without NSEC3). Every RRSIG returned is verified against the zone's DNSKEY with dnspython,
and every proof is checked for what it must prove (covering and matching records)."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterable

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import pytest

from nameserver.serve.responder import Responder
from nameserver.zone.records import parse_record
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.zones import ZoneRegistry
from tests import dnssec_zones
from tests.dnssec_zones import NSEC, NSEC3, NSEC3_OPTOUT, NSEC3_OPTOUT_BIND, Variant

T = dns.rdatatype
ORIGIN = dns.name.from_text(dnssec_zones.ORIGIN)
NOW = 1_800_000_000  # 2027-01-15, inside the fixtures' 2026-2046 validity
SALT = bytes.fromhex(dnssec_zones.NSEC3_SALT)
CUTS = [dns.name.from_text(c, ORIGIN) for c in ("sub", "sec2", "sib", "ext", "insec.ent3")]


@functools.cache
def snapshot(variant: Variant) -> ZoneSnapshot:
    return dnssec_zones.signed_snapshot(dnssec_zones.fixture(variant))


@functools.cache
def responder(variant: Variant | None) -> Responder:
    """A responder for a signed variant, or (None) for the same zone unsigned."""
    registry = ZoneRegistry()
    if variant is None:
        import dns.zone

        zone = dns.zone.from_text(dnssec_zones.unsigned_text(), ORIGIN, relativize=False)
        records = [
            parse_record(name.to_text(), ttl, T.to_text(rd.rdtype), rd.to_text(), ORIGIN)
            for name, ttl, rd in zone.iterate_rdatas()
        ]
        registry.install(ZoneSnapshot.from_records(ORIGIN, records))
    else:
        registry.install(snapshot(variant))
    return Responder(registry)


def ask(
    variant: Variant | None,
    rel: str,
    rdtype: str,
    do: bool = True,
    tcp: bool = False,
    payload: int = 4096,
) -> dns.message.Message:
    name = dnssec_zones.ORIGIN if rel == "@" else f"{rel}.{dnssec_zones.ORIGIN}"
    q = dns.message.make_query(name, rdtype, want_dnssec=do, payload=payload)
    wire = responder(variant).respond(q.to_wire(), tcp=tcp)
    assert wire is not None
    return dns.message.from_wire(wire)


def types(section: Iterable[dns.rrset.RRset]) -> list[str]:
    """``owner TYPE`` per RRset, RRSIGs as ``owner RRSIG(COVERED)``, owners relative."""
    out = []
    for rs in section:
        owner = rs.name.relativize(ORIGIN).to_text()
        kind = T.to_text(rs.rdtype)
        if rs.rdtype == T.RRSIG:
            kind += f"({T.to_text(rs.covers)})"
        out.append(f"{owner} {kind}")
    return out


def dnskeys(variant: Variant) -> dict[dns.name.Name, dns.node.Node | dns.rdataset.Rdataset]:
    m = ask(variant, "@", "DNSKEY")
    return {ORIGIN: m.find_rrset(m.answer, ORIGIN, dns.rdataclass.IN, T.DNSKEY)}


def validated(variant: Variant, m: dns.message.Message) -> int:
    """Verify every RRSIG of every section against the zone's DNSKEY; check that each
    RRset of answer and authority is signed, except the CNAME synthesized from a DNAME and
    the NS RRset of a referral. Returns how many RRsets were verified."""
    keys = dnskeys(variant)
    verified = 0
    for section in (m.answer, m.authority, m.additional):
        sigs = {(rs.name, rs.covers): rs for rs in section if rs.rdtype == T.RRSIG}
        for rs in section:
            if rs.rdtype == T.RRSIG:
                continue
            sig = sigs.get((rs.name, rs.rdtype))
            if sig is None:
                assert _unsigned_allowed(m, section, rs), f"{rs.name} {T.to_text(rs.rdtype)}"
                continue
            dns.dnssec.validate(rs, sig, keys, now=NOW)
            verified += 1
    return verified


def _unsigned_allowed(m: dns.message.Message, section: object, rs: dns.rrset.RRset) -> bool:
    if section is m.additional:
        return any(rs.name.is_subdomain(cut) for cut in CUTS)  # glue
    if rs.rdtype == T.CNAME:
        return any(x.rdtype == T.DNAME for x in m.answer)
    return rs.rdtype == T.NS and not m.flags & dns.flags.AA


def nsec_covers(rs: dns.rrset.RRset, name: dns.name.Name) -> bool:
    """True when the NSEC RRset ``rs`` proves ``name`` absent (owner < name < next)."""
    nxt: dns.name.Name = rs[0].next
    if nxt == ORIGIN:  # the last NSEC wraps to the apex
        return bool(rs.name < name)
    return bool(rs.name < name < nxt)


def nsec3_label(rel: str) -> bytes:
    name = ORIGIN if rel == "@" else dns.name.from_text(rel, ORIGIN)
    # dnspython's hash, not ours: the test must not agree with zonefan by construction.
    label = dns.dnssec.nsec3_hash(name, SALT, dnssec_zones.NSEC3_ITERATIONS, 1)
    return label.lower().encode()


def nsec3_role(m: dns.message.Message, rel: str) -> str:
    """``match`` / ``cover`` / ``opt-out cover`` when some NSEC3 in authority matches or
    covers the hash of ``rel``; ``none`` otherwise."""
    target = nsec3_label(rel)
    for rs in m.authority:
        if rs.rdtype != T.NSEC3:
            continue
        low = rs.name.labels[0].lower()
        high = base64.b32hexencode(rs[0].next).lower()
        if low == target:
            return "match"
        inside = low < target < high if low < high else (target > low or target < high)
        if inside:
            return "opt-out cover" if rs[0].flags & 1 else "cover"
    return "none"


# -- without DO --------------------------------------------------------------------------

PLAIN_QUESTIONS = [
    ("www", "A"),
    ("nope", "A"),
    ("x.w", "TXT"),
    ("x.w", "MX"),
    ("ent", "A"),
    ("sub", "A"),
    ("ext", "A"),
    ("sub", "DS"),
    ("alias2", "A"),
    ("a.dn", "A"),
    ("@", "MX"),
    ("@", "NS"),
    ("www", "ANY"),
    ("big", "TXT"),
]


@pytest.mark.parametrize("variant", dnssec_zones.VARIANTS, ids=lambda v: v.name)
@pytest.mark.parametrize(("rel", "rdtype"), PLAIN_QUESTIONS)
def test_without_do_a_signed_zone_answers_exactly_like_the_unsigned_one(
    variant: Variant, rel: str, rdtype: str
) -> None:
    for tcp in (False, True):
        signed = ask(variant, rel, rdtype, do=False, tcp=tcp)
        plain = ask(None, rel, rdtype, do=False, tcp=tcp)
        assert (signed.rcode(), signed.flags) == (plain.rcode(), plain.flags)
        for section in ("answer", "authority", "additional"):
            assert rrs(getattr(signed, section)) == rrs(getattr(plain, section)), section


def rrs(section: Iterable[dns.rrset.RRset]) -> list[str]:
    """Each RR as text, sorted (signer and zone file order RRs differently)."""
    return sorted(f"{rs.name} {rs.ttl} {T.to_text(rs.rdtype)} {rd}" for rs in section for rd in rs)


def test_with_do_an_unsigned_zone_answers_as_before() -> None:
    for rel, rdtype in PLAIN_QUESTIONS:
        with_do, without = ask(None, rel, rdtype), ask(None, rel, rdtype, do=False)
        assert with_do.answer == without.answer and with_do.authority == without.authority
        assert with_do.ednsflags & dns.flags.DO


def test_explicit_dnssec_types_are_data_without_do() -> None:
    m = ask(NSEC, "www", "RRSIG", do=False)
    assert sorted(types(m.answer)) == ["www RRSIG(A)", "www RRSIG(AAAA)", "www RRSIG(NSEC)"]
    assert types(ask(NSEC, "www", "NSEC", do=False).answer) == ["www NSEC"]
    assert types(ask(NSEC3, "@", "NSEC3PARAM", do=False).answer) == ["@ NSEC3PARAM"]


def test_any_skips_signer_records_and_gives_each_rrset_once() -> None:
    assert types(ask(NSEC, "www", "ANY", do=False).answer) == ["www A"]  # minimal, over UDP
    full = types(ask(NSEC, "www", "ANY", do=False, tcp=True).answer)
    assert sorted(full) == ["www A", "www AAAA"]
    signed = types(ask(NSEC, "www", "ANY", tcp=True).answer)
    assert sorted(signed) == sorted(
        ["www A", "www RRSIG(A)", "www AAAA", "www RRSIG(AAAA)", "www NSEC", "www RRSIG(NSEC)"]
    )
    assert types(ask(NSEC, "www", "ANY").answer) == ["www A", "www RRSIG(A)"]


# -- positive answers --------------------------------------------------------------------


@pytest.mark.parametrize("variant", dnssec_zones.VARIANTS, ids=lambda v: v.name)
def test_positive_answers_carry_valid_rrsigs(variant: Variant) -> None:
    m = ask(variant, "www", "A")
    assert types(m.answer) == ["www A", "www RRSIG(A)"] and m.authority == []
    assert validated(variant, m) == 1
    apex = ask(variant, "@", "DNSKEY")
    assert types(apex.answer) == ["@ DNSKEY", "@ RRSIG(DNSKEY)"]
    assert validated(variant, apex) == 1


def test_additional_addresses_are_signed_but_glue_is_not() -> None:
    m = ask(NSEC, "@", "MX")
    assert types(m.additional) == ["mail A", "mail RRSIG(A)", "mail AAAA", "mail RRSIG(AAAA)"]
    assert validated(NSEC, m) == 3
    referral = ask(NSEC, "host.sub", "A")
    assert types(referral.additional) == ["ns1.sub A", "ns1.sub AAAA"]


def test_cname_chain_each_step_signed() -> None:
    m = ask(NSEC, "alias2", "A")
    assert types(m.answer) == [
        "alias2 CNAME",
        "alias2 RRSIG(CNAME)",
        "ALIAS1 CNAME",  # the case of alias2's target
        "ALIAS1 RRSIG(CNAME)",
        "www A",
        "www RRSIG(A)",
    ]
    assert validated(NSEC, m) == 3


def test_dname_is_signed_and_the_synthesized_cname_is_not() -> None:
    m = ask(NSEC, "www.dnin", "A")
    assert types(m.answer) == [
        "dnin DNAME",
        "dnin RRSIG(DNAME)",
        "www.dnin CNAME",
        "www.inner A",
        "www.inner RRSIG(A)",
    ]
    assert validated(NSEC, m) == 2


# -- NSEC denial -------------------------------------------------------------------------


def _nsecs(m: dns.message.Message) -> list[dns.rrset.RRset]:
    return [rs for rs in m.authority if rs.rdtype == T.NSEC]


def test_nsec_nxdomain_denies_the_name_and_the_wildcard() -> None:
    m = ask(NSEC, "a.b.nope", "AAAA")
    assert m.rcode() == dns.rcode.NXDOMAIN
    qname = dns.name.from_text("a.b.nope", ORIGIN)
    wildcard = dns.name.from_text("*", ORIGIN)  # the closest encloser is the apex
    nsecs = _nsecs(m)
    assert any(nsec_covers(rs, qname) for rs in nsecs)
    assert any(nsec_covers(rs, wildcard) for rs in nsecs)
    assert validated(NSEC, m) == 1 + len(nsecs)
    soa = [rs for rs in m.authority if rs.rdtype in (T.SOA, T.RRSIG) and rs.name == ORIGIN]
    assert {rs.ttl for rs in soa} == {300}  # RFC 2308: min(SOA TTL, MINIMUM), sigs alike


def test_nsec_nodata_gives_the_names_nsec_and_an_ent_its_predecessor() -> None:
    m = ask(NSEC, "www", "MX")
    assert types(_nsecs(m)) == ["www NSEC"]
    assert T.MX not in {rd for rd in _nsecs(m)[0][0].windows[0][1]}  # bitmap, not MX
    ent = ask(NSEC, "b.ent", "TXT")
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer
    (cover,) = _nsecs(ent)
    assert nsec_covers(cover, dns.name.from_text("b.ent", ORIGIN))
    assert cover[0].next.is_subdomain(dns.name.from_text("b.ent", ORIGIN))
    assert validated(NSEC, m) == 2 and validated(NSEC, ent) == 2


def test_nsec_wildcard_expansion_keeps_the_labels_and_denies_the_name() -> None:
    m = ask(NSEC, "a.b.w", "A")
    assert types(m.answer) == ["a.b.w A", "a.b.w RRSIG(A)"]
    assert m.answer[1][0].labels == 3  # *.w.diff.test.: the original Labels field
    (nsec,) = _nsecs(m)
    assert nsec_covers(nsec, dns.name.from_text("a.b.w", ORIGIN))
    assert validated(NSEC, m) == 2


def test_nsec_wildcard_nodata() -> None:
    m = ask(NSEC, "x.w", "MX")
    assert not m.answer and m.rcode() == dns.rcode.NOERROR
    owners = {rs.name.relativize(ORIGIN).to_text() for rs in _nsecs(m)}
    assert "*.w" in owners  # the wildcard has no MX
    assert any(nsec_covers(rs, dns.name.from_text("x.w", ORIGIN)) for rs in _nsecs(m))
    assert validated(NSEC, m) == 3


def test_nsec_referrals() -> None:
    secure = ask(NSEC, "host.sub", "A")
    assert not secure.flags & dns.flags.AA
    assert types(secure.authority) == ["sub NS", "sub DS", "sub RRSIG(DS)"]
    insecure = ask(NSEC, "x.ext", "A")
    assert types(insecure.authority) == ["ext NS", "ext NSEC", "ext RRSIG(NSEC)"]
    assert T.DS not in _nsecs(insecure)[0][0].windows[0][1]
    assert validated(NSEC, secure) == 1 and validated(NSEC, insecure) == 1
    ds = ask(NSEC, "sub", "DS")
    assert types(ds.answer) == ["sub DS", "sub RRSIG(DS)"] and ds.flags & dns.flags.AA
    no_ds = ask(NSEC, "ext", "DS")
    assert types(no_ds.authority) == ["@ SOA", "@ RRSIG(SOA)", "ext NSEC", "ext RRSIG(NSEC)"]


# -- NSEC3 denial ------------------------------------------------------------------------

NSEC3_VARIANTS = [NSEC3, NSEC3_OPTOUT, NSEC3_OPTOUT_BIND]


@pytest.mark.parametrize("variant", NSEC3_VARIANTS, ids=lambda v: v.name)
def test_nsec3_nxdomain_is_a_closest_encloser_proof(variant: Variant) -> None:
    m = ask(variant, "x.b.ent", "TXT")
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert nsec3_role(m, "b.ent") == "match"  # the closest encloser
    assert nsec3_role(m, "x.b.ent").endswith("cover")  # the next closer name
    assert nsec3_role(m, "*.b.ent").endswith("cover")  # no wildcard there
    assert validated(variant, m) == 4


@pytest.mark.parametrize("variant", NSEC3_VARIANTS, ids=lambda v: v.name)
def test_nsec3_nodata_ent_and_wildcards(variant: Variant) -> None:
    nodata = ask(variant, "www", "MX")
    assert nsec3_role(nodata, "www") == "match"
    ent = ask(variant, "ent", "A")  # NSEC3 chains include empty non-terminals
    assert nsec3_role(ent, "ent") == "match" and not ent.answer
    expanded = ask(variant, "a.b.w", "TXT")
    assert expanded.answer[1][0].labels == 3
    assert nsec3_role(expanded, "b.w").endswith("cover")  # §7.2.6: the next closer name
    wild_nodata = ask(variant, "x.w", "MX")  # §7.2.5
    assert nsec3_role(wild_nodata, "w") == "match"
    assert nsec3_role(wild_nodata, "x.w").endswith("cover")
    assert nsec3_role(wild_nodata, "*.w") == "match"
    for m in (nodata, ent, expanded, wild_nodata):
        assert validated(variant, m) >= 2


@pytest.mark.parametrize("variant", NSEC3_VARIANTS, ids=lambda v: v.name)
def test_nsec3_referrals_and_ds(variant: Variant) -> None:
    secure = ask(variant, "host.sub", "A")
    assert types(secure.authority) == ["sub NS", "sub DS", "sub RRSIG(DS)"]
    insecure = ask(variant, "x.ext", "A")
    no_ds = ask(variant, "ext", "DS")
    for m in (insecure, no_ds):
        if variant is NSEC3_OPTOUT_BIND:
            # §7.2.7 / §7.2.4: no NSEC3 at the delegation; the apex is the closest provable
            # encloser and an Opt-Out NSEC3 covers the next closer name, ext itself.
            assert nsec3_role(m, "ext") == "opt-out cover"
            assert nsec3_role(m, "@") == "match"
        else:
            assert nsec3_role(m, "ext") == "match"
        assert validated(variant, m) >= 1


def test_nsec3_opt_out_ent_without_nsec3_uses_the_provable_encloser() -> None:
    m = ask(NSEC3_OPTOUT_BIND, "x.ent3", "A")
    assert m.rcode() == dns.rcode.NXDOMAIN
    assert nsec3_role(m, "@") == "match"
    assert nsec3_role(m, "ent3") == "opt-out cover"
    assert nsec3_role(m, "*").endswith("cover")


def test_nsec3_owner_names_are_answered_as_absent() -> None:
    # RFC 5155 §7.2.8: "as if the NSEC3 RR did not exist", with or without DO.
    owner = next(
        k for k, n in snapshot(NSEC3).nodes.items() if set(n.rrsets) & {T.NSEC3} and len(k) > 20
    )
    name = dns.name.from_wire(owner, 0)[0].relativize(ORIGIN).to_text()
    assert ask(NSEC3, name, "NSEC3").rcode() == dns.rcode.NXDOMAIN
    plain = ask(NSEC3, name, "NSEC3", do=False)
    assert plain.rcode() == dns.rcode.NXDOMAIN
    assert plain.answer == []


# -- size ----------------------------------------------------------------------------------


def test_truncation_keeps_rrsigs_with_their_rrsets() -> None:
    m = ask(NSEC, "big", "TXT", payload=1232)
    assert m.flags & dns.flags.TC and m.answer == []
    full = ask(NSEC, "big", "TXT", tcp=True)
    assert types(full.answer) == ["big TXT", "big RRSIG(TXT)"] and validated(NSEC, full) == 1
    mid = ask(NSEC, "mid", "TXT", payload=512)
    assert not mid.answer or types(mid.answer) == ["mid TXT", "mid RRSIG(TXT)"]
