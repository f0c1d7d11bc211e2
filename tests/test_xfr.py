"""Zone transfers out of a running ``zonefan serve``: AXFR and IXFR with TSIG, checked with
dig, kdig and dnspython; access control and TSIG errors; a signed zone that verifies after
transfer; a large zone in many signed messages while queries keep being answered."""

from __future__ import annotations

import base64
import socket
import sqlite3
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.zone
import pytest

from nameserver.store.logs import NotifyRecord, TransferLogEntry
from nameserver.store.schema import SCHEMA_VERSION
from nameserver.store.store import Store
from nameserver.transfer.acl import TransferAcl, parse_secondaries
from nameserver.transfer.tsig import parse_keys, tsig_offset
from nameserver.transfer.xfr import TransferService
from nameserver.zone.records import AnyRecord
from nameserver.zone.zones import ZoneRegistry
from settings import SettingsError, Source, Table
from tests.servers import ZonefanServer, run_cli
from tests.tools import PROJECT_ROOT, example_store, require_tool
from tests.wait import wait_until

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
ORIGIN = dns.name.from_text(ZONE)
KEY = "xfr-key"
SECRET = base64.b64encode(b"zonefan-xfr-test-secret-0123456789").decode()
OTHER = "other-key"  # known to the server but allowed nowhere
OTHER_SECRET = base64.b64encode(b"zonefan-other-test-secret-987654").decode()
KEYRING = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", SECRET)})
BIG_NAMES = 20_000

RrTuple = tuple[dns.name.Name, int, int, str]


def write_config(path: Path, address: str = "127.0.0.1", extra: str = "") -> Path:
    path.write_text(
        f"""
[key.{KEY}]
secret = "{SECRET}"
[key.{OTHER}]
algorithm = "hmac-sha512"
secret = "{OTHER_SECRET}"

[[secondary]]
address = "{address}"
key = "{KEY}"
{extra}""",
        encoding="utf-8",
    )
    path.chmod(0o600)  # it holds a secret: zonefan wants it private
    return path


def _import(db: Path, zone_file: Path) -> None:
    run_cli(db, "zone", "import", str(zone_file))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZonefanServer]:
    work = tmp_path_factory.mktemp("xfr")
    db = work / "z.db"
    _import(db, EXAMPLE)
    config = write_config(work / "zonefan.toml")
    with ZonefanServer(work, db=db, probe_name=ZONE, config=config) as s:
        yield s


def store_rrs(db: Path, zone: str = ZONE) -> set[RrTuple]:
    with Store(db) as store:
        return {_tuple(r.name, r.ttl, r.rdata) for r in store.records(dns.name.from_text(zone))}


def _tuple(name: dns.name.Name, ttl: int, rdata: object) -> RrTuple:
    rd = rdata
    assert isinstance(rd, dns.rdata.Rdata)
    return (name, int(rd.rdtype), ttl, rd.to_text())


def transferred(
    server: ZonefanServer,
    rdtype: str = "AXFR",
    serial: int = 0,
    keyring: dict[dns.name.Name, dns.tsig.Key] = KEYRING,
    zone: str = ZONE,
) -> list[dns.message.Message]:
    """Every message of a transfer, TSIG verified by dnspython (message by message)."""
    return list(
        dns.query.xfr(
            server.host,
            zone,
            rdtype=dns.rdatatype.from_text(rdtype),
            serial=serial,
            port=server.port,
            keyring=keyring,
            keyname=KEY,
            keyalgorithm=dns.tsig.HMAC_SHA256,
            timeout=30,
            lifetime=120,
            relativize=False,
        )
    )


def answer_rrs(messages: list[dns.message.Message]) -> list[RrTuple]:
    return [
        _tuple(rrset.name, rrset.ttl, rd) for m in messages for rrset in m.answer for rd in rrset
    ]


def serial_of(db: Path, zone: str = ZONE) -> int:
    with Store(db) as store:
        return store.serial(dns.name.from_text(zone))


def logged(
    db: Path, match: Callable[[TransferLogEntry], bool], zone: str = ZONE
) -> TransferLogEntry:
    """The newest transfer log entry that ``match``es; the server writes it just after the
    last message, so wait for it a little."""
    deadline = time.monotonic() + 5
    while True:
        with Store(db) as store:
            found = [e for e in store.transfers(dns.name.from_text(zone), limit=20) if match(e)]
        if found or time.monotonic() > deadline:
            assert found, "no matching transfer logged"
            return found[0]
        time.sleep(0.02)


def raw_tcp(server: ZonefanServer, wire: bytes) -> list[bytes]:
    """Send one query over TCP; every response message until the server is quiet."""
    out: list[bytes] = []
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(struct.pack("!H", len(wire)) + wire)
        s.settimeout(1.0)
        buf = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            pass
    while len(buf) >= 2:
        n = int.from_bytes(buf[:2], "big")
        out.append(buf[2 : 2 + n])
        buf = buf[2 + n :]
    return out


def axfr_query(
    keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
    keyname: str = KEY,
    algorithm: dns.name.Name = dns.tsig.HMAC_SHA256,
) -> bytes:
    q = dns.message.make_query(ZONE, "AXFR")
    if keyring is not None:
        q.use_tsig(keyring, keyname, algorithm=algorithm)
    return q.to_wire()


def unverified(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire, keyring=False)


# -- AXFR -------------------------------------------------------------------------------------


def test_axfr_equals_the_store(server: ZonefanServer) -> None:
    messages = transferred(server)
    rrs = answer_rrs(messages)
    soa = rrs[0]
    assert soa[1] == dns.rdatatype.SOA and rrs[-1] == soa
    assert set(rrs) == store_rrs(server.db)
    assert len(rrs) == len(store_rrs(server.db)) + 1  # SOA twice, nothing else repeated
    assert all(m.had_tsig for m in messages)
    assert all(m.flags & dns.flags.AA for m in messages)


def _dig_rrs(output: str) -> list[RrTuple]:
    lines = [
        line
        for line in output.splitlines()
        if line.strip() and not line.startswith(";") and "\tTSIG\t" not in line
    ]
    rrs: list[RrTuple] = []
    for line in lines:
        rrset = dns.rrset.from_text(*_split(line))
        rrs.extend(_tuple(rrset.name, rrset.ttl, rd) for rd in rrset)
    return rrs


def _split(line: str) -> tuple[str, int, str, str, str]:
    name, ttl, rdclass, rdtype, rdata = line.split(None, 4)
    return name, int(ttl), rdclass, rdtype, rdata


def test_dig_and_kdig_axfr_with_tsig(server: ZonefanServer) -> None:
    dig = require_tool("dig")
    kdig = require_tool("kdig")
    key = f"hmac-sha256:{KEY}:{SECRET}"
    expected = store_rrs(server.db)
    for cmd in (
        [dig, f"@{server.host}", "-p", str(server.port), ZONE, "AXFR", "-y", key],
        [kdig, f"@{server.host}", "-p", str(server.port), ZONE, "AXFR", "-y", key],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
        assert "failed" not in done.stdout.lower(), done.stdout
        rrs = _dig_rrs(done.stdout)
        assert set(rrs) == expected, cmd[0]
        assert rrs[0][1] == dns.rdatatype.SOA and rrs[-1][1] == dns.rdatatype.SOA


def test_inbound_xfr_builds_the_same_zone(server: ZonefanServer) -> None:
    zone = dns.zone.Zone(ORIGIN, relativize=False)
    query = dns.message.make_query(ZONE, "AXFR")
    query.use_tsig(KEYRING, KEY)
    dns.query.inbound_xfr(server.host, zone, query, port=server.port, timeout=10)
    got = {
        (
            name.derelativize(ORIGIN),
            int(rdataset.rdtype),
            rdataset.ttl,
            rd.to_text(origin=ORIGIN, relativize=False),
        )
        for name, rdataset in zone.iterate_rdatasets()
        for rd in rdataset
    }
    expected = store_rrs(server.db)
    assert got == expected


# -- IXFR -------------------------------------------------------------------------------------


def test_ixfr_after_a_change_is_exactly_the_changeset(server: ZonefanServer) -> None:
    before = serial_of(server.db)
    run_cli(server.db, "record", "add", ZONE, "ixfr-new", "300", "A", "192.0.2.77")
    run_cli(server.db, "record", "delete", ZONE, "ixfr-new", "A")
    run_cli(server.db, "record", "add", ZONE, "ixfr-new", "300", "A", "192.0.2.78")
    after = serial_of(server.db)
    _wait_served(server, after)
    with Store(server.db) as store:
        chain = store.changesets_between(ORIGIN, before, after)
    assert len(chain) == 3
    messages = transferred(server, "IXFR", before)
    rrs = answer_rrs(messages)

    def soa_first(records: tuple[AnyRecord, ...]) -> list[RrTuple]:
        soa = [_tuple(r.name, r.ttl, r.rdata) for r in records if r.rdtype == dns.rdatatype.SOA]
        rest = [_tuple(r.name, r.ttl, r.rdata) for r in records if r.rdtype != dns.rdatatype.SOA]
        return soa + rest

    expected = [rrs[0]]
    for cs in chain:
        expected += soa_first(cs.removed) + soa_first(cs.added)
    expected.append(rrs[0])
    assert rrs == expected
    assert rrs[0][3].split()[2] == str(after)
    assert all(m.had_tsig for m in messages)
    log = logged(server.db, lambda e: e.serial_to == after and e.serial_from == before)
    assert (log.kind, log.serial_from, log.serial_to, log.key) == ("IXFR", before, after, f"{KEY}.")
    assert log.rrs == len(rrs) and log.messages == len(messages)

    # dig ixfr=SERIAL shows the same sequence
    done = subprocess.run(
        [
            require_tool("dig"),
            f"@{server.host}",
            "-p",
            str(server.port),
            ZONE,
            f"IXFR={before}",
            "-y",
            f"hmac-sha256:{KEY}:{SECRET}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert _dig_rrs(done.stdout) == rrs


def _wait_served(server: ZonefanServer, serial: int) -> None:
    wait_until(lambda: server.serial(ZONE) == serial, interval=0.02, what=f"serial {serial} served")


def test_ixfr_up_to_date_is_one_soa(server: ZonefanServer) -> None:
    current = serial_of(server.db)
    rrs = answer_rrs(transferred(server, "IXFR", current))
    assert len(rrs) == 1 and rrs[0][1] == dns.rdatatype.SOA
    # a client that is newer (dnspython's client refuses that answer; read it raw)
    q = dns.message.make_query(ZONE, "IXFR")
    q.authority.append(dns.rrset.from_text(ZONE, 0, "IN", "SOA", f". . {current + 5} 0 0 0 0"))
    q.use_tsig(KEYRING, KEY)
    [wire] = raw_tcp(server, q.to_wire())
    response = unverified(wire)
    assert len(response.answer) == 1 and response.answer[0][0].serial == current
    assert logged(server.db, lambda e: e.serial_from == current).kind == "IXFR-UPTODATE"


def test_ixfr_beyond_the_journal_is_the_full_zone(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, EXAMPLE)
    old = serial_of(db)
    run_cli(db, "record", "add", ZONE, "c1", "300", "A", "192.0.2.1")
    run_cli(db, "record", "add", ZONE, "c2", "300", "A", "192.0.2.2")
    with Store(db) as store:
        assert store.compact_journal(ORIGIN, 1) >= 1
    config = write_config(tmp_path / "zonefan.toml")
    with ZonefanServer(tmp_path, db=db, probe_name=ZONE, config=config) as server:
        rrs = answer_rrs(transferred(server, "IXFR", old))
        assert rrs[0][1] == dns.rdatatype.SOA and rrs[1][1] != dns.rdatatype.SOA
        assert set(rrs) == store_rrs(db)
        entry = logged(db, lambda e: e.serial_from == old)
        assert (entry.kind, entry.serial_from) == ("IXFR-AXFR", old)
        assert (
            f"IXFR of {ZONE} from serial {old}: the journal does not reach that serial "
            "(compacted, or never ours); sending the full zone"
        ) in server.log_text()
        # the serial the journal still reaches is answered incrementally
        middle = serial_of(db) - 1
        rrs = answer_rrs(transferred(server, "IXFR", middle))
        assert [r[3] for r in rrs if r[1] != dns.rdatatype.SOA] == ["192.0.2.2"]


def test_serve_compacts_the_journal_with_journal_keep(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, EXAMPLE)
    config = write_config(tmp_path / "zonefan.toml")
    with ZonefanServer(
        tmp_path, db=db, probe_name=ZONE, config=config, extra_args=["--journal-keep", "2"]
    ):
        for i in range(4):
            run_cli(db, "record", "add", ZONE, f"k{i}", "300", "A", f"192.0.2.{i + 1}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with Store(db) as store:
                if len(store.changesets(ORIGIN)) == 2:
                    break
            time.sleep(0.05)
        with Store(db) as store:
            assert len(store.changesets(ORIGIN)) == 2


# -- refusals and TSIG errors ------------------------------------------------------------------


def _assert_no_records(messages: list[bytes]) -> dns.message.Message:
    assert len(messages) == 1
    response = unverified(messages[0])
    assert not response.answer and not response.authority
    return response


def test_unsigned_request_is_refused(server: ZonefanServer) -> None:
    response = _assert_no_records(raw_tcp(server, axfr_query()))
    assert response.rcode() == dns.rcode.REFUSED


def test_unknown_key_is_badkey(server: ZonefanServer) -> None:
    ring = dns.tsigkeyring.from_text({"nobody": ("hmac-sha256", SECRET)})
    response = _assert_no_records(raw_tcp(server, axfr_query(ring, "nobody")))
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADKEY
    assert response.tsig[0].mac == b""


def test_wrong_secret_is_badsig(server: ZonefanServer) -> None:
    ring = dns.tsigkeyring.from_text({KEY: ("hmac-sha256", OTHER_SECRET)})
    response = _assert_no_records(raw_tcp(server, axfr_query(ring)))
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADSIG


def test_dig_with_a_wrong_secret_is_logged_as_badsig(server: ZonefanServer) -> None:
    # The TSIG error 16 is BADSIG; as an extended RCODE the same number reads BADVERS.
    wrong = base64.b64encode(b"not-the-other-key-secret-0123456").decode()
    key = f"hmac-sha512:{OTHER}:{wrong}"
    done = subprocess.run(
        [require_tool("dig"), f"@{server.host}", "-p", str(server.port), ZONE, "AXFR", "-y", key],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Transfer failed" in done.stdout, done.stdout
    log = server.log_text()
    assert f"AXFR {ZONE} refused: TSIG BADSIG (key {OTHER}.)" in log, log
    assert "BADVERS" not in log


def test_time_outside_the_fudge_is_badtime(server: ZonefanServer) -> None:
    with mock.patch("time.time", return_value=time.time() - 3600):
        wire = axfr_query(KEYRING)
    response = _assert_no_records(raw_tcp(server, wire))
    assert response.rcode() == dns.rcode.NOTAUTH
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADTIME
    assert len(response.tsig[0].other) == 6  # our time, RFC 8945 §5.2.3


def test_key_not_allowed_is_refused(server: ZonefanServer) -> None:
    ring = dns.tsigkeyring.from_text({OTHER: ("hmac-sha512", OTHER_SECRET)})
    wire = axfr_query(ring, OTHER, dns.tsig.HMAC_SHA512)
    response = _assert_no_records(raw_tcp(server, wire))
    assert response.rcode() == dns.rcode.REFUSED


def test_zone_not_served_is_refused(server: ZonefanServer) -> None:
    q = dns.message.make_query("other.test.", "AXFR")
    q.use_tsig(KEYRING, KEY)
    response = _assert_no_records(raw_tcp(server, q.to_wire()))
    assert response.rcode() == dns.rcode.REFUSED


def test_disallowed_address_is_refused(tmp_path: Path, server: ZonefanServer) -> None:
    config = write_config(tmp_path / "zonefan.toml", address="192.0.2.0/24")
    with ZonefanServer(tmp_path, db=server.db, probe_name=ZONE, config=config) as other:
        response = _assert_no_records(raw_tcp(other, axfr_query(KEYRING)))
        assert response.rcode() == dns.rcode.REFUSED


def test_no_config_no_transfers(tmp_path: Path, server: ZonefanServer) -> None:
    with ZonefanServer(tmp_path, db=server.db, probe_name=ZONE) as plain:
        response = _assert_no_records(raw_tcp(plain, axfr_query()))
        assert response.rcode() == dns.rcode.REFUSED


def test_axfr_over_udp_is_refused(server: ZonefanServer) -> None:
    q = dns.message.make_query(ZONE, "AXFR")
    q.use_tsig(KEYRING, KEY)
    response = dns.query.udp(q, server.host, port=server.port, timeout=2)
    assert response.rcode() == dns.rcode.REFUSED and not response.answer
    assert response.had_tsig  # verified by dnspython


def test_ixfr_over_udp_is_our_soa(server: ZonefanServer) -> None:
    q = dns.message.make_query(ZONE, "IXFR")
    soa = dns.rrset.from_text(ZONE, 0, "IN", "SOA", ". . 1 0 0 0 0")
    q.authority.append(soa)
    q.use_tsig(KEYRING, KEY)
    response = dns.query.udp(q, server.host, port=server.port, timeout=2)
    assert response.rcode() == dns.rcode.NOERROR
    assert len(response.answer) == 1 and response.answer[0].rdtype == dns.rdatatype.SOA
    assert response.answer[0][0].serial == serial_of(server.db)


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_signed_queries_get_signed_answers(server: ZonefanServer, tcp: bool) -> None:
    """A secondary's SOA check is TSIG-signed; the answer must be signed too (BIND
    insists), and a bad signature gets NOTAUTH/BADSIG."""
    q = dns.message.make_query(ZONE, "SOA", use_edns=0)
    q.use_tsig(KEYRING, KEY)
    response = server.ask(q, tcp=tcp)  # dnspython verifies the response's TSIG
    assert response.had_tsig and response.answer
    assert response.answer[0][0].serial == serial_of(server.db)
    bad = dns.message.make_query(ZONE, "SOA")
    bad.use_tsig(dns.tsigkeyring.from_text({KEY: ("hmac-sha256", OTHER_SECRET)}), KEY)
    if tcp:
        [wire] = raw_tcp(server, bad.to_wire())
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(bad.to_wire(), (server.host, server.port))
            wire = s.recv(65535)
    response = unverified(wire)
    assert response.rcode() == dns.rcode.NOTAUTH and not response.answer
    assert response.tsig is not None and response.tsig[0].error == dns.rcode.BADSIG


def test_queries_after_a_transfer_on_one_connection(server: ZonefanServer) -> None:
    """Pipelined: an AXFR then an A query on one connection, answered in order."""
    q1 = dns.message.make_query(ZONE, "AXFR")
    q1.use_tsig(KEYRING, KEY)
    q2 = dns.message.make_query("www." + ZONE, "A")
    wire = b"".join(struct.pack("!H", len(w)) + w for w in (q1.to_wire(), q2.to_wire()))
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(wire)
        s.settimeout(1.0)
        buf = b""
        try:
            while chunk := s.recv(65536):
                buf += chunk
        except TimeoutError:
            pass
    ids = []
    while len(buf) >= 2:
        n = int.from_bytes(buf[:2], "big")
        ids.append(int.from_bytes(buf[2:4], "big"))
        buf = buf[2 + n :]
    assert ids[0] == q1.id and ids[-1] == q2.id


# -- a signed zone ------------------------------------------------------------------------------


def test_signed_zone_transfers_and_verifies(tmp_path: Path) -> None:
    verify = require_tool("ldns-verify-zone")
    db = example_store(tmp_path / "z.db")
    config = write_config(tmp_path / "zonefan.toml")
    with ZonefanServer(tmp_path, db=db, probe_name=ZONE, config=config) as server:
        rrs = answer_rrs(transferred(server))
        assert set(rrs) == store_rrs(db)
        assert any(r[1] == dns.rdatatype.RRSIG for r in rrs)
        done = subprocess.run(
            [
                require_tool("dig"),
                f"@{server.host}",
                "-p",
                str(server.port),
                ZONE,
                "AXFR",
                "-y",
                f"hmac-sha256:{KEY}:{SECRET}",
                "+nocomments",
                "+nostats",
                "+nocmd",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln and "\tTSIG\t" not in ln]
        zone_file = tmp_path / "axfr.zone"
        zone_file.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")  # one SOA
        check = subprocess.run(
            [verify, str(zone_file)], capture_output=True, text=True, timeout=60, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        # a change to the signed zone comes by IXFR with its new signatures
        before = serial_of(db)
        run_cli(db, "record", "add", ZONE, "signed-new", "300", "A", "192.0.2.55")
        after = serial_of(db)
        _wait_served(server, after)
        ixfr = answer_rrs(transferred(server, "IXFR", before))
        added = {(r[0].to_text(), r[1]) for r in ixfr}
        assert ("signed-new.example.test.", dns.rdatatype.RRSIG) in added
        assert ("signed-new.example.test.", dns.rdatatype.NSEC) in added


# -- a large zone ------------------------------------------------------------------------------


def _big_zone(path: Path) -> Path:
    lines = [
        "$ORIGIN big.test.",
        "$TTL 3600",
        "@ IN SOA ns1 hostmaster 1 7200 3600 432000 300",
        "@ IN NS ns1",
        "ns1 IN A 192.0.2.1",
    ]
    lines += [f"h{i} IN A 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(BIG_NAMES)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_large_zone_in_many_signed_messages_while_answering(tmp_path: Path) -> None:
    db = tmp_path / "z.db"
    _import(db, _big_zone(tmp_path / "big.zone"))
    config = write_config(tmp_path / "zonefan.toml")
    with ZonefanServer(tmp_path, db=db, probe_name="big.test.", config=config) as server:
        latencies: list[float] = []
        failures: list[str] = []
        stop = threading.Event()

        def ask() -> None:
            i = 0
            while not stop.is_set():
                q = dns.message.make_query(f"h{i % BIG_NAMES}.big.test.", "A")
                started = time.perf_counter()
                try:
                    r = dns.query.udp(q, server.host, port=server.port, timeout=1)
                    assert r.answer, r
                except (dns.exception.DNSException, AssertionError, OSError) as e:
                    failures.append(repr(e))
                latencies.append(time.perf_counter() - started)
                i += 7919

        asker = threading.Thread(target=ask)
        asker.start()
        try:
            started = time.perf_counter()
            messages = transferred(server, zone="big.test.")
            took = time.perf_counter() - started
        finally:
            stop.set()
            asker.join()
        rrs = answer_rrs(messages)
        assert len(rrs) == BIG_NAMES + 4
        assert len(messages) > 10
        assert all(m.had_tsig for m in messages)
        assert not failures, failures[:5]
        assert len(latencies) > 10
        print(
            f"AXFR of {BIG_NAMES} names: {took * 1000:.0f} ms, {len(messages)} messages; "
            f"{len(latencies)} queries meanwhile, max latency {max(latencies) * 1000:.1f} ms"
        )


# -- in-process: config, ACL, store migration ------------------------------------------------


def _config(data: dict[str, object], path: Path | None = None) -> Table:
    """``data`` as if read from ``path`` (a private file, so inline secrets are fine)."""
    if path is not None:
        path.touch(mode=0o600)
    return Table(data, "", Source(path, {}))


def test_config_errors_name_the_file_and_key_path(tmp_path: Path) -> None:
    where = tmp_path / "zonefan.toml"
    cases: list[tuple[object, object, str]] = [
        ({"k": {"secret": "!!"}}, None, r"^/.*/zonefan.toml: key.k.secret: the secret is not"),
        ({"k": {"secret": SECRET, "algorithm": "md5"}}, None, r"key.k.algorithm: 'md5' is not"),
        ({"k": {"secret": SECRET, "colour": 1}}, None, r"key.k.colour: unknown setting"),
        ({}, [{"key": "k"}], r"secondary#1.address: required"),
        ({}, [{"address": "300.1.1.1"}], r"secondary#1.address: '300.1.1.1' is not an address"),
        ({}, [{"address": "127.0.0.1", "key": "nope"}], r"secondary#1.key: no \[key.nope\]"),
        ({}, [{"address": "127.0.0.1", "zones": "a."}], r"secondary#1.zones: 'a.' must be a list"),
        ({}, [{"address": "127.0.0.1", "notfy": "x"}], r"notfy: unknown setting; did you mean"),
        ({}, [{}, {"address": "192.0.2.0/33"}], r"secondary#1.address: required"),
        ({}, [{"address": "::1", "notify": "::/64"}], r"secondary#1.notify: '::/64' is not an"),
    ]
    for keys_table, secondaries, message in cases:
        config = _config({"key": keys_table, "secondary": secondaries or []}, where)
        with pytest.raises(SettingsError, match=message):
            keys = parse_keys(config.table("key"))
            parse_secondaries(config.entries("secondary"), keys)


def test_acl_matches_address_network_key_and_zone() -> None:
    config = _config(
        {
            "key": {KEY: {"secret": SECRET}},
            "secondary": [
                {"address": "192.0.2.0/24", "key": KEY, "zones": [ZONE]},
                {"address": "[2001:db8::53]:5301"},
                {"address": "2001:db8::54@5302", "notify": "2001:db8::54@5302"},
            ],
        }
    )
    keys = parse_keys(config.table("key"))
    acl = parse_secondaries(config.entries("secondary"), keys)
    key = dns.name.from_text(KEY)
    assert acl.allows("192.0.2.9", key, ORIGIN)
    assert acl.allows("::ffff:192.0.2.9", key, ORIGIN)  # v4-mapped
    assert not acl.allows("192.0.2.9", None, ORIGIN)  # the entry needs the key
    assert not acl.allows("192.0.2.9", key, dns.name.from_text("other.test."))
    assert not acl.allows("198.51.100.1", key, ORIGIN)
    assert acl.allows("2001:db8::53", None, ORIGIN)  # no key required, any zone
    assert acl.secondaries[1].port == 5301
    assert acl.secondaries[2].notify == ("2001:db8::54", 5302)
    assert not TransferAcl().allows("127.0.0.1", key, ORIGIN)


def test_schema_2_store_is_migrated_with_a_transfer_log(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE transfers")
    conn.execute("DROP TABLE notify_status")  # schema 4
    conn.execute("DROP TABLE health_events")  # schema 5
    conn.execute("DROP TABLE drains")
    conn.execute("DROP TABLE drill_endpoints")  # schema 6
    conn.execute("DROP TABLE drills")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store(path) as store:
        entry = TransferLogEntry(
            time=1.0,
            zone=ORIGIN,
            client="127.0.0.1",
            key=None,
            kind="AXFR",
            serial_from=None,
            serial_to=5,
            messages=1,
            rrs=3,
            bytes=100,
            duration=0.01,
        )
        store.log_transfer(entry)
        [logged] = store.transfers(ORIGIN)
    assert logged.kind == "AXFR" and logged.serial_to == 5 and logged.id is not None
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_schema_3_store_gains_the_notify_status(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE notify_status")
    conn.execute("DROP TABLE health_events")  # schema 5
    conn.execute("DROP TABLE drains")
    conn.execute("DROP TABLE drill_endpoints")  # schema 6
    conn.execute("DROP TABLE drills")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    record = NotifyRecord(ORIGIN, "127.0.0.1@53", 5, 1, 1.0, 1.0, 2.0, "")
    with Store(path) as store:
        store.record_notify(record)
        assert store.notify_status(ORIGIN) == [record]


def test_serve_refuses_a_bad_transfer_config(tmp_path: Path) -> None:
    config = tmp_path / "zonefan.toml"
    config.write_text('[[secondary]]\naddress = "127.0.0.1"\nkey = "missing"\n', encoding="utf-8")
    done = run_cli(
        tmp_path / "z.db", "--config", str(config), "serve", "-l", "127.0.0.1:1", check=False
    )
    assert done.returncode != 0
    assert f"{config}: secondary#1.key: no [key.missing] table defines this key" in done.stderr


def test_signed_udp_answer_too_large_with_its_tsig_is_truncated(tmp_path: Path) -> None:
    keys = parse_keys(_config({"key": {KEY: {"secret": SECRET}}}).table("key"))
    service = TransferService(ZoneRegistry(), str(tmp_path / "z.db"), keys)
    try:
        q = dns.message.make_query(ZONE, "TXT")  # no EDNS: 512 bytes at most
        q.use_tsig(KEYRING, KEY)
        wire = q.to_wire()
        offset = tsig_offset(wire)
        assert offset is not None

        def answer(stripped: bytes) -> bytes:
            assert tsig_offset(stripped) is None
            reply = dns.message.make_response(dns.message.from_wire(stripped))
            reply.answer.append(dns.rrset.from_text(ZONE, 300, "IN", "TXT", '"' + "x" * 200 + '"'))
            reply.answer.append(dns.rrset.from_text(ZONE, 300, "IN", "TXT", '"' + "y" * 200 + '"'))
            return reply.to_wire()

        response = service.signed_response(wire, offset, answer, tcp=False)
        assert response is not None and len(response) <= 512
        parsed = dns.message.from_wire(response, keyring=KEYRING, request_mac=q.mac)
        assert parsed.flags & dns.flags.TC and not parsed.answer and parsed.had_tsig
        response = service.signed_response(wire, offset, answer, tcp=True)
        assert response is not None
        parsed = dns.message.from_wire(response, keyring=KEYRING, request_mac=q.mac)
        assert len(parsed.answer) == 1 and len(parsed.answer[0]) == 2
    finally:
        service.close()
