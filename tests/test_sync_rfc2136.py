"""The RFC 2136 UPDATE target against real Knot and BIND primaries."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from sync.errors import SyncConfigError, TargetError, TargetRejectedError, TargetUnavailableError
from sync.model import RRset, ZoneData
from sync.plan import compute_plan
from sync.providers.rfc2136 import Rfc2136Target, rfc2136_from_config
from sync.providers.testkit.contract import read_zone
from sync.settings import Address, TargetContext, TsigKey
from tests.servers import XfrKey, run_cli
from tests.tools import PROJECT_ROOT, example_store, free_port, require_tool
from tests.update_targets import BindUpdatePrimary, KnotUpdatePrimary, _UpdatePrimary

pytestmark = pytest.mark.external

ORIGIN = dns.name.from_text("example.test.")
KEY = XfrKey("upd", base64.b64encode(b"zonefan-rfc2136-test-secret-0001").decode())
MINIMAL = """$ORIGIN example.test.
@ 3600 IN SOA ns1 hostmaster 1 7200 3600 432000 300
@ 3600 IN NS ns1
@ 3600 IN NS ns2
ns1 3600 IN A 192.0.2.2
ns2 7200 IN A 198.51.100.2
"""


def tsig(key: XfrKey) -> TsigKey:
    return TsigKey(dns.name.from_text(key.name), key.algorithm, base64.b64decode(key.secret))


def desired_zone() -> ZoneData:
    return ZoneData.from_text(
        (PROJECT_ROOT / "zones" / "example.test.zone").read_text(encoding="utf-8"), ORIGIN
    )


def with_serial(zone: ZoneData, serial: int) -> ZoneData:
    soa = zone.soa.replace(serial=serial)
    old = zone.get(ORIGIN, dns.rdatatype.SOA)
    assert old is not None
    return ZoneData.build(
        ORIGIN,
        [*(r for r in zone if r.key != old.key), RRset.of(ORIGIN, old.rdtype, old.ttl, [soa])],
    )


@pytest.fixture(params=["knot", "bind"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_UpdatePrimary]:
    zone_file = tmp_path / "minimal.zone"
    zone_file.write_text(MINIMAL, encoding="utf-8")
    kind = str(request.param)
    cls = KnotUpdatePrimary if kind == "knot" else BindUpdatePrimary
    require_tool("knotd" if kind == "knot" else "named")
    with cls(tmp_path / kind, "example.test", zone_file, KEY) as srv:
        yield srv


def target_for(srv: _UpdatePrimary, batch_size: int = 500, key: XfrKey = KEY) -> Rfc2136Target:
    return Rfc2136Target(
        "provider",
        server=Address(srv.host, srv.port),
        key=tsig(key),
        batch_size=batch_size,
        probe_zone=ORIGIN,
    )


async def push(target: Rfc2136Target, desired: ZoneData) -> None:
    current = await read_zone(target, ORIGIN)
    owned = list(current.rrsets) if current is not None else []
    plan = compute_plan(desired, current, target=target.name, owned=owned)
    await target.apply(plan, None)


async def assert_converged(target: Rfc2136Target, srv: _UpdatePrimary, desired: ZoneData) -> None:
    got = await read_zone(target, ORIGIN)
    assert got is not None
    # Neither Knot nor BIND adds anything of its own to an unsigned zone changed by UPDATE.
    assert {k: r.texts() for k, r in got.rrsets.items()} == {
        k: r.texts() for k, r in desired.rrsets.items()
    }
    for key, rrset in desired.rrsets.items():
        assert got.rrsets[key].same_data(rrset), str(rrset)
    assert srv.zone_serial() == desired.serial
    again = compute_plan(desired, got, target=target.name, owned=list(got.rrsets))
    assert again.empty, again.lines()


async def test_push_example_zone(server: _UpdatePrimary) -> None:
    target = target_for(server)
    await target.open()
    desired = desired_zone()
    await push(target, desired)
    await assert_converged(target, server, desired)
    assert await target.nameservers(ORIGIN) == [
        dns.name.from_text("ns1.example.test."),
        dns.name.from_text("ns2.example.test."),
    ]


async def test_batched_push_converges(server: _UpdatePrimary) -> None:
    base = ZoneData.from_text(MINIMAL, ORIGIN)
    hosts = [
        RRset.from_text(f"h{i:03d}", "A", 300, [f"192.0.2.{i % 250 + 1}"], ORIGIN)
        for i in range(200)
    ]
    desired = with_serial(ZoneData.build(ORIGIN, [*base, *hosts]), 1000)
    target = target_for(server, batch_size=5)
    await push(target, desired)  # 41 messages: the server bumps the serial 40 times, then ours
    await assert_converged(target, server, desired)


async def test_batched_push_with_small_serial_step_is_packed(server: _UpdatePrimary) -> None:
    """Our serial one above the target's: batches of 5 would leave the server's own serial
    past ours, so the changes go in one (64 KiB) message instead."""
    base = ZoneData.from_text(MINIMAL, ORIGIN)
    hosts = [RRset.from_text(f"h{i:03d}", "A", 300, ["192.0.2.7"], ORIGIN) for i in range(50)]
    desired = with_serial(ZoneData.build(ORIGIN, [*base, *hosts]), 2)
    target = target_for(server, batch_size=5)
    await push(target, desired)
    await assert_converged(target, server, desired)


async def test_update_and_delete(server: _UpdatePrimary) -> None:
    target = target_for(server, batch_size=3)
    first = desired_zone()
    await push(target, first)
    changed = [
        RRset.from_text("web", "A", 600, ["192.0.2.81", "192.0.2.82"], ORIGIN),
        RRset.from_text("www", "A", 300, ["192.0.2.80"], ORIGIN),  # was a CNAME
        RRset.from_text("@", "NS", 7200, ["ns1", "ns3"], ORIGIN),  # ns2 out, ns3 in, new TTL
        RRset.from_text("ns3", "A", 3600, ["192.0.2.3"], ORIGIN),
    ]
    dropped = {
        (dns.name.from_text("mail2", ORIGIN), dns.rdatatype.A),
        (dns.name.from_text("ns2", ORIGIN), dns.rdatatype.A),
        (dns.name.from_text("ns2", ORIGIN), dns.rdatatype.AAAA),
        (dns.name.from_text("www", ORIGIN), dns.rdatatype.CNAME),
    }
    keys = {r.key for r in changed}
    kept = [r for r in first if r.key not in keys and r.key not in dropped]
    second = with_serial(ZoneData.build(ORIGIN, [*kept, *changed]), first.serial + 100)
    await push(target, second)
    await assert_converged(target, server, second)


async def test_serial_ahead_is_rejected(server: _UpdatePrimary) -> None:
    target = target_for(server)
    await push(target, desired_zone())
    behind = with_serial(desired_zone(), 5)
    current = await read_zone(target, ORIGIN)
    plan = compute_plan(behind, current, target="provider")
    with pytest.raises(TargetRejectedError, match="not below ours 5"):
        await target.apply(plan, None)


async def test_wrong_key(server: _UpdatePrimary) -> None:
    wrong = XfrKey(KEY.name, base64.b64encode(b"a-different-secret-of-32-bytes!!").decode())
    target = target_for(server, key=wrong)
    with pytest.raises(SyncConfigError, match=r"target\.provider\.key"):
        await target.open()
    with pytest.raises(TargetRejectedError, match="TSIG"):
        await read_zone(target, ORIGIN)
    good = await read_zone(target_for(server), ORIGIN)
    plan = compute_plan(desired_zone(), good, target="provider")
    with pytest.raises(TargetRejectedError, match="TSIG"):
        await target.apply(plan, None)


async def test_missing_zone(server: _UpdatePrimary) -> None:
    target = target_for(server)
    other = dns.name.from_text("other.test.")
    assert await read_zone(target, other) is None
    desired = ZoneData.from_text(MINIMAL.replace("example.test.", "other.test."), other)
    plan = compute_plan(desired, None, target="provider")
    with pytest.raises(TargetRejectedError, match="create it there first"):
        await target.apply(plan, None)


async def test_nothing_listening() -> None:
    target = Rfc2136Target(
        "provider", server=Address("127.0.0.1", free_port()), key=tsig(KEY), timeout=2
    )
    with pytest.raises(SyncConfigError, match=r"target\.provider\.server"):
        await target.open()
    with pytest.raises(TargetUnavailableError):
        await read_zone(target, ORIGIN)
    plan = compute_plan(desired_zone(), ZoneData.from_text(MINIMAL, ORIGIN), target="provider")
    with pytest.raises(TargetUnavailableError):
        await target.apply(plan, None)


def signed_zone(tmp_path: Path) -> ZoneData:
    db = example_store(tmp_path / "zonefan.db", signed=True)
    out = tmp_path / "signed.zone"
    run_cli(db, "zone", "export", "example.test", "-o", str(out))
    return ZoneData.from_text(out.read_text(encoding="utf-8"), ORIGIN)


def ldns_signed_zone(tmp_path: Path) -> ZoneData:
    """The example zone without its CNAMEs, signed by ldns-signzone (NSEC)."""
    plain = ZoneData.build(ORIGIN, [r for r in desired_zone() if r.rdtype != dns.rdatatype.CNAME])
    unsigned = tmp_path / "plain.zone"
    unsigned.write_text(plain.to_text(), encoding="utf-8")
    keygen = subprocess.run(
        [require_tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", "example.test"],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    base = keygen.stdout.strip()
    subprocess.run(
        [require_tool("ldns-signzone"), str(unsigned), str(tmp_path / base)],
        capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
    )  # fmt: skip
    signed = Path(f"{unsigned}.signed").read_text(encoding="utf-8")
    return ZoneData.from_text(signed, ORIGIN)


async def test_presigned_push(server: _UpdatePrimary, tmp_path: Path) -> None:
    desired = ldns_signed_zone(tmp_path)
    assert desired.signed
    target = target_for(server, batch_size=20)
    if isinstance(server, BindUpdatePrimary):
        # BIND refuses DNSKEY (SERVFAIL: no private keys), RRSIG and NSEC (REFUSED) by UPDATE.
        with pytest.raises(TargetError):
            await push(target, desired)
        return
    await push(target, desired)
    await assert_converged(target, server, desired)
    # A validating answer: NXDOMAIN with our NSEC records and their signatures.
    response = server.query("nope.example.test.", "A", want_dnssec=True, tcp=True)
    assert response.rcode() == dns.rcode.NXDOMAIN
    kinds = {(r.rdtype, r.covers) for r in response.authority}
    assert (dns.rdatatype.NSEC, dns.rdatatype.NONE) in kinds
    assert (dns.rdatatype.RRSIG, dns.rdatatype.NSEC) in kinds
    served = await read_zone(target, ORIGIN)
    assert served is not None
    axfr = tmp_path / "axfr.zone"
    axfr.write_text(served.to_text(), encoding="utf-8")
    done = subprocess.run(
        [require_tool("ldns-verify-zone"), str(axfr)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_knot_drops_signatures_of_cnames(tmp_path: Path) -> None:
    """Knot 3.2 applies the CNAME-and-other-data rule of UPDATE to RRSIG too: the RRSIGs
    of a CNAME owner (and sometimes its NSEC) are silently dropped: a presigned zone with
    CNAMEs stays bogus there."""
    zone_file = tmp_path / "minimal.zone"
    zone_file.write_text(MINIMAL, encoding="utf-8")
    require_tool("knotd")
    desired = signed_zone(tmp_path)
    with KnotUpdatePrimary(tmp_path / "knot", "example.test", zone_file, KEY) as srv:
        target = target_for(srv)
        await push(target, desired)
        got = await read_zone(target, ORIGIN)
        assert got is not None
        missing = {k for k in desired.rrsets if k not in got.rrsets}
        cnames = {r.name for r in desired if r.rdtype == dns.rdatatype.CNAME}
        sigs = {(n, dns.rdatatype.RRSIG) for n in cnames}
        # Their NSEC goes too when it comes in the same message as the CNAME.
        assert sigs <= missing <= sigs | {(n, dns.rdatatype.NSEC) for n in cnames}
        assert srv.zone_serial() == desired.serial


def test_config() -> None:
    ctx = TargetContext(keys={"upd": tsig(KEY)}, primary=None, env={})
    target = rfc2136_from_config(
        "p",
        {
            "type": "rfc2136",
            "zones": ["example.test"],
            "server": "127.0.0.1:5300",
            "key": "upd",
            "batch-size": 7,
            "timeout": "3s",
            "nameservers": ["ns1.example.net."],
            "dnssec": "none",
        },
        ctx,
    )
    assert target.server == Address("127.0.0.1", 5300)
    assert target.probe_zone == ORIGIN
    assert target.capabilities.batch_size == 7
    assert not target.capabilities.supports(dns.rdatatype.RRSIG)
    assert target.capabilities.supports(dns.rdatatype.DS)
    with pytest.raises(
        SyncConfigError, match=r"target\.p\.bogus: unknown setting\(s\) bogus; allowed: .*server"
    ):
        rfc2136_from_config("p", {"server": "127.0.0.1", "key": "upd", "bogus": 1}, ctx)
    with pytest.raises(SyncConfigError, match=r"target\.p\.key"):
        rfc2136_from_config("p", {"server": "127.0.0.1", "key": "nope"}, ctx)
    with pytest.raises(SyncConfigError, match=r"target\.p\.server"):
        rfc2136_from_config("p", {"key": "upd"}, ctx)


def test_updates_carry_the_keys_own_fudge() -> None:
    """The receiver is told the key's window (RFC 8945 §5.2.3), not dnspython's 300 s."""
    plain = tsig(KEY)
    key = TsigKey(plain.name, plain.algorithm, plain.secret, fudge=30)
    target = Rfc2136Target("provider", server=Address("127.0.0.1", 53), key=key)
    message = target._message(ORIGIN, [])
    signed = dns.message.from_wire(message.to_wire(), keyring=key.dns_key)
    assert signed.tsig is not None
    assert signed.tsig[0].fudge == 30
