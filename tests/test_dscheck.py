"""The automatic DS check (``ds-check = auto``) against real NSD instances playing the parent
zone ``test.``: a DS is recorded as seen only when every parent server serves it, as gone
only when none does, and never when a server fails.  The rollover timeline runs on a fake
clock; the parent's answers come from NSD over 127.0.0.1.  Also the ``parent-servers``
and ``ds-check-interval`` policy settings, and ``zonefan keys ds-check``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest
from dns.dnssectypes import DSDigest

from nameserver.dnssec.dscheck import (
    DsCheckError,
    ParentKey,
    ParentServer,
    Presence,
    ServerAnswer,
    check_parent_ds,
    discover_parent_servers,
)
from nameserver.dnssec.maintenance import MaintenanceScheduler
from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.errors import NameserverError
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file
from signer.errors import SignerError
from signer.policy import (
    DAY,
    HOUR,
    DsCheck,
    Policy,
    PolicyError,
    policy_from_mapping,
    policy_to_mapping,
)
from signer.timing import DsExpect, DsWatch, KeyTiming, Role, start_rollover
from tests.clock import FakeClock
from tests.servers import NsdServer, run_cli
from tests.tools import (
    PROJECT_ROOT,
    free_port,
    require_tool,
    scheduler_running,
    wait_for_runs,
)

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
ORIGIN = dns.name.from_text("example.test.")
AUTHOR = Author("test")
WHERE = "zonefan.toml [policy.default]"
TIMEOUT = 0.5  # a server that does not answer within this is taken as down

# parent(*ds_texts) starts an NSD for the parent zone test. with those DS records.
ParentFactory = Callable[..., ParentServer]


# --- the policy settings -----------------------------------------------------------------


def test_parent_servers_parse_to_canonical_addresses() -> None:
    p = policy_from_mapping(
        {
            "parent-servers": ["192.0.2.1", "127.0.0.1@5300", "[::1]@53", "2001:DB8::1@54"],
            "ds-check-interval": "30m",
        },
        WHERE,
    )
    assert p.parent_servers == ("192.0.2.1:53", "127.0.0.1:5300", "[::1]:53", "[2001:db8::1]:54")
    assert p.parent_server_addresses == (
        ("192.0.2.1", 53),
        ("127.0.0.1", 5300),
        ("::1", 53),
        ("2001:db8::1", 54),
    )
    assert p.ds_check_interval == 30 * 60
    assert Policy().parent_servers == () and Policy().ds_check_interval == HOUR
    # Written back as TOML, read again: the same policy.
    shown = policy_to_mapping(p)
    assert shown["parent-servers"] == list(p.parent_servers)
    assert shown["ds-check-interval"] == "30m"
    assert policy_from_mapping(shown, WHERE) == p
    # Built in Python, any spelling is kept canonical.
    assert Policy(parent_servers=("::1",)).parent_servers == ("[::1]:53",)


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"parent-servers": ["ns1.example.net"]}, "not an IP address"),
        ({"parent-servers": ["192.0.2.1:53:1"]}, "not an IP address"),
        ({"parent-servers": ["192.0.2.1@0"]}, "from 1 to 65535"),
        ({"parent-servers": ["192.0.2.1@65536"]}, "from 1 to 65535"),
        ({"parent-servers": ["192.0.2.1@dns"]}, "from 1 to 65535"),
        ({"parent-servers": ["[2001:db8::1]@"]}, "from 1 to 65535"),
        ({"parent-servers": "192.0.2.1"}, "must be a list"),
        ({"parent-servers": [53]}, "not an address"),
        ({"parent-servers": ["192.0.2.1", "192.0.2.1@53"]}, "listed twice"),
        ({"parent-servers": ["192.0.2.1"], "ds-check": "manual"}, 'ds-check = "auto"'),
    ],
)
def test_bad_parent_servers_name_the_field(table: dict[str, object], words: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(table, WHERE)
    assert str(info.value).startswith(f"{WHERE} parent-servers: ")
    assert words in str(info.value) and info.value.field == "parent-servers"
    assert isinstance(info.value, SignerError)


@pytest.mark.parametrize("value", ["30s", 0, "soon"])
def test_bad_ds_check_interval_names_the_field(value: object) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping({"ds-check-interval": value}, WHERE)
    assert info.value.field == "ds-check-interval"


def test_direct_construction_checks_parent_servers() -> None:
    with pytest.raises(PolicyError, match=r"^policy parent-servers: 'ns1' is not an IP"):
        Policy(parent_servers=("ns1",))


# --- a signed zone on a fake clock --------------------------------------------------------


@dataclass
class Zone:
    store: Store
    manager: DnssecManager
    clock: FakeClock

    def keys(self) -> dict[str, KeyTiming]:
        return {k.key_id: k for k in self.manager.timings(ORIGIN)}

    def ds(self, key_id: str, digest: int = 2) -> str:
        """The DS record text of one of our keys."""
        wire = next(k.dnskey for k in self.store.keys(ORIGIN) if k.id == key_id)
        dnskey = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
        return dns.dnssec.make_ds(ORIGIN, dnskey, DSDigest(digest)).to_text()

    def run_until_watch(self, wanted: Callable[[tuple[DsWatch, ...]], bool]) -> tuple[DsWatch, ...]:
        """Run maintenance at each next event until the plan awaits what ``wanted`` says."""
        for _ in range(30):
            result = self.manager.maintain(ORIGIN, AUTHOR)
            if wanted(result.plan.ds_watch):
                return result.plan.ds_watch
            assert result.plan.next_event is not None, result.plan
            self.clock.now = max(self.clock.now, result.plan.next_event)
        raise AssertionError("the plan never awaited the DS change")


@contextlib.contextmanager
def _signed_zone(db: Path, start: int) -> Iterator[Zone]:
    """The example zone signed at ``start`` (fake clock), keys where the CLI looks."""
    clock = FakeClock(start)
    store = Store(db)
    try:
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
        editor = manager.editor()
        parsed = read_zone_file(EXAMPLE)
        plan = editor.plan_import(parsed.origin, parsed.records, AUTHOR)
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        manager.enable(ORIGIN, AUTHOR)
        yield Zone(store, manager, clock)
    finally:
        store.close()


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Zone]:
    with _signed_zone(tmp_path / "z.db", int(time.time())) as signed:
        yield signed


def _only_key(zone: Zone) -> str:
    (key_id,) = zone.keys()
    return key_id


def _first_key_submitted(zone: Zone) -> str:
    """The first CSK with its DS submitted: the plan waits for it at the parent."""
    first = _only_key(zone)
    watch = zone.run_until_watch(bool)
    assert watch == (DsWatch(first, zone.keys()[first].key_tag, 13, DsExpect.PRESENT),)
    return first


def _rolled(zone: Zone, parent: ParentFactory) -> tuple[str, str]:
    """A CSK rollover up to its SUBMIT_DS: the new key's DS awaited, the old one's going."""
    old = _first_key_submitted(zone)
    report = zone.manager.check_parent_ds(ORIGIN, servers=[parent(zone.ds(old))], timeout=TIMEOUT)
    assert report.recorded == ((old, "seen"),)
    zone.manager.save_timings(
        ORIGIN, start_rollover(zone.manager.timings(ORIGIN), Role.CSK, Policy(), int(zone.clock()))
    )
    watch = zone.run_until_watch(lambda w: any(x.key_id != old for x in w))
    (new,) = set(zone.keys()) - {old}
    assert {(w.key_id, w.expect) for w in watch} == {
        (new, DsExpect.PRESENT),
        (old, DsExpect.ABSENT),
    }
    return old, new


# --- NSD as the parent ----------------------------------------------------------------------

_PARENT = """$ORIGIN test.
$TTL 3600
@        SOA  ns1.test. hostmaster.test. 1 7200 3600 1209600 300
@        NS   ns1.test.
@        NS   ns2.test.
ns1      A    127.0.0.1
ns2      A    127.0.0.1
example  NS   ns1.example.test.
ns1.example A 192.0.2.2
"""


@pytest.fixture
def nsd_servers() -> Iterator[list[NsdServer]]:
    running: list[NsdServer] = []
    try:
        yield running
    finally:
        for server in running:
            server.stop()


def _start_nsd(
    workdir: Path, running: list[NsdServer], zones: Sequence[tuple[str, str]]
) -> NsdServer:
    require_tool("nsd")
    files = []
    for origin, text in zones:
        path = workdir / f"{origin.rstrip('.') or 'root'}.zone"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append((origin, path))
    server = NsdServer(workdir, files)
    running.append(server)
    return server.start()


@pytest.fixture
def parent(tmp_path: Path, nsd_servers: list[NsdServer]) -> ParentFactory:
    """``parent(*ds_texts)``: a new NSD serving ``test.`` with those DS records for
    example.test., as a ParentServer (configured, no NS name)."""
    count = iter(range(1000))

    def start(*ds: str, extra: str = "") -> ParentServer:
        text = _PARENT + "".join(f"example  DS {d}\n" for d in ds) + extra
        server = _start_nsd(tmp_path / f"parent{next(count)}", nsd_servers, [("test.", text)])
        return ParentServer("127.0.0.1", server.port)

    return start


def _dead_server() -> ParentServer:
    """An address where nobody answers (a free UDP and TCP port on 127.0.0.1)."""
    return ParentServer("127.0.0.1", free_port())


# --- the check through the manager ------------------------------------------------------------


def test_ds_at_the_parent_marks_the_submitted_key_seen(zone: Zone, parent: ParentFactory) -> None:
    key = _first_key_submitted(zone)
    zone.clock.now += HOUR
    report = zone.manager.check_parent_ds(ORIGIN, servers=[parent(zone.ds(key))], timeout=TIMEOUT)
    assert report.result is not None and report.result.complete
    assert report.result.presence(key) is Presence.PRESENT
    assert report.recorded == ((key, "seen"),)
    assert zone.keys()[key].ds_seen == zone.clock.now
    assert zone.manager.maintain(ORIGIN, AUTHOR).plan.ds_watch == ()
    # Asked again: nothing is awaited any more, nothing new is recorded.
    again = zone.manager.check_parent_ds(ORIGIN, servers=[parent(zone.ds(key))], timeout=TIMEOUT)
    assert again.recorded == () and again.watch == ()


def test_no_ds_at_the_parent_records_nothing(zone: Zone, parent: ParentFactory) -> None:
    key = _first_key_submitted(zone)
    report = zone.manager.check_parent_ds(ORIGIN, servers=[parent()], timeout=TIMEOUT)
    assert report.result is not None and report.result.complete
    assert report.result.presence(key) is Presence.ABSENT
    assert report.recorded == () and zone.keys()[key].ds_seen is None


def test_a_ds_of_another_key_or_a_wrong_digest_does_not_count(
    zone: Zone, parent: ParentFactory
) -> None:
    key = _first_key_submitted(zone)
    tag = zone.keys()[key].key_tag
    wrong_digest = f"{tag} 13 2 {'00' * 32}"
    other_key = "31589 13 2 3490A6806D47F17A34C29E2CE80E8A999FFBE4BE7F6CD5A1F4AE1C4563D5D2EB"
    report = zone.manager.check_parent_ds(
        ORIGIN, servers=[parent(wrong_digest, other_key)], timeout=TIMEOUT
    )
    assert report.result is not None
    assert report.result.presence(key) is Presence.ABSENT and report.recorded == ()
    (answer,) = report.result.answers
    assert len(answer.ds) == 2 and len(answer.unmatched) == 2


@pytest.mark.parametrize("digest", [2, 4])
def test_either_digest_type_matches(zone: Zone, parent: ParentFactory, digest: int) -> None:
    key = _first_key_submitted(zone)
    server = parent(zone.ds(key, digest))
    report = zone.manager.check_parent_ds(ORIGIN, servers=[server], timeout=TIMEOUT)
    assert report.recorded == ((key, "seen"),)


def test_rollover_new_ds_seen_at_every_server_and_old_ds_gone(
    zone: Zone, parent: ParentFactory
) -> None:
    old, new = _rolled(zone, parent)
    both = [parent(zone.ds(old), zone.ds(new)), parent(zone.ds(new), zone.ds(old, 4))]
    # Both DS at both servers: the new one is seen, the old one is not gone yet.
    report = zone.manager.check_parent_ds(ORIGIN, servers=both, timeout=TIMEOUT)
    assert report.recorded == ((new, "seen"),)
    assert zone.keys()[old].ds_gone is None
    # The old DS leaves every server: recorded gone.
    zone.clock.now += HOUR
    only_new = [parent(zone.ds(new)), parent(zone.ds(new, 4))]
    report = zone.manager.check_parent_ds(ORIGIN, servers=only_new, timeout=TIMEOUT)
    assert report.recorded == ((old, "gone"),)
    assert zone.keys()[old].ds_gone == zone.clock.now
    # With the new DS seen the rollover finishes: the old key leaves the zone.
    for _ in range(10):
        result = zone.manager.maintain(ORIGIN, AUTHOR)
        if zone.keys()[old].remove is not None:
            break
        assert result.plan.next_event is not None
        zone.clock.now = result.plan.next_event
    assert zone.keys()[old].remove is not None


def test_the_new_ds_still_missing_is_not_seen(zone: Zone, parent: ParentFactory) -> None:
    old, new = _rolled(zone, parent)
    report = zone.manager.check_parent_ds(ORIGIN, servers=[parent(zone.ds(old))], timeout=TIMEOUT)
    assert report.result is not None
    assert report.result.presence(new) is Presence.ABSENT
    assert report.result.presence(old) is Presence.PRESENT
    assert report.recorded == ()
    keys = zone.keys()
    assert keys[new].ds_seen is None and keys[old].ds_gone is None


def test_one_of_two_servers_missing_the_ds_is_not_seen(zone: Zone, parent: ParentFactory) -> None:
    old, new = _rolled(zone, parent)
    servers = [parent(zone.ds(old), zone.ds(new)), parent(zone.ds(old))]
    report = zone.manager.check_parent_ds(ORIGIN, servers=servers, timeout=TIMEOUT)
    assert report.result is not None and report.result.complete
    (item,) = [k for k in report.result.keys if k.key.key_id == new]
    assert item.presence is Presence.PARTIAL
    assert item.served_by == (str(servers[0]),) and item.missing_at == (str(servers[1]),)
    assert report.recorded == () and zone.keys()[new].ds_seen is None


def test_old_ds_left_one_server_only_is_not_gone(zone: Zone, parent: ParentFactory) -> None:
    old, new = _rolled(zone, parent)
    servers = [parent(zone.ds(new)), parent(zone.ds(new), zone.ds(old))]
    report = zone.manager.check_parent_ds(ORIGIN, servers=servers, timeout=TIMEOUT)
    assert report.recorded == ((new, "seen"),)
    assert zone.keys()[old].ds_gone is None


def test_a_server_timing_out_records_nothing(zone: Zone, parent: ParentFactory) -> None:
    _old, new = _rolled(zone, parent)
    dead = _dead_server()
    servers = [parent(zone.ds(new)), dead]
    before = zone.keys()
    started = time.monotonic()
    report = zone.manager.check_parent_ds(ORIGIN, servers=servers, timeout=TIMEOUT)
    assert time.monotonic() - started < 10 * TIMEOUT  # asked in parallel, with a timeout
    result = report.result
    assert result is not None and not result.complete
    (error,) = result.errors
    assert isinstance(error, DsCheckError) and isinstance(error, NameserverError)
    assert str(dead) in str(error) and "no answer within 0.5 s" in str(error)
    assert "parent-servers" in str(error)
    # Every verdict is unknown, and the old DS is not taken as gone either.
    assert {k.presence for k in result.keys} == {Presence.UNKNOWN}
    assert report.recorded == () and zone.keys() == before


def test_refused_lame_and_child_answers_are_errors(
    tmp_path: Path, zone: Zone, nsd_servers: list[NsdServer]
) -> None:
    key = _first_key_submitted(zone)
    apex = "$TTL 3600\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 127.0.0.1\n"
    # A server for another zone refuses; one for the root refers (no AA); the child's
    # own server answers from the child's apex.
    refusing = _start_nsd(tmp_path / "other", nsd_servers, [("other.", "$ORIGIN other.\n" + apex)])
    root = (
        "$ORIGIN root.\n" + apex.replace("@", ".") + "test. NS ns1.test.\nns1.test. A 127.0.0.1\n"
    )
    referring = _start_nsd(tmp_path / "root", nsd_servers, [(".", root)])
    child = _start_nsd(tmp_path / "child", nsd_servers, [("example.test.", EXAMPLE.read_text())])
    expected = {
        refusing.port: "refused the query",
        referring.port: "without the AA flag",
        child.port: "answered from the zone example.test. itself",
    }
    servers = [ParentServer("127.0.0.1", port) for port in expected]
    report = zone.manager.check_parent_ds(ORIGIN, servers=servers, timeout=TIMEOUT)
    assert report.result is not None
    errors = {a.server.port: str(a.error) for a in report.result.answers}
    for port, words in expected.items():
        assert words in errors[port], errors[port]
    assert report.result.presence(key) is Presence.UNKNOWN and report.recorded == ()


def test_servers_come_from_the_policy(zone: Zone, parent: ParentFactory) -> None:
    key = _first_key_submitted(zone)
    server = parent(zone.ds(key))
    zone.manager.policies["default"] = Policy(parent_servers=(f"127.0.0.1@{server.port}",))
    report = zone.manager.check_parent_ds(ORIGIN, timeout=TIMEOUT)
    assert report.result is not None
    assert [a.server for a in report.result.answers] == [server]
    assert report.recorded == ((key, "seen"),)


def test_manual_mode_asks_nobody(zone: Zone) -> None:
    key = _first_key_submitted(zone)
    zone.manager.policies["default"] = Policy(ds_check=DsCheck.MANUAL)
    report = zone.manager.check_parent_ds(ORIGIN, servers=[_dead_server()], timeout=TIMEOUT)
    assert report.mode is DsCheck.MANUAL and report.result is None
    assert "ds-seen" in report.skipped and report.recorded == ()
    assert zone.keys()[key].ds_seen is None


def test_a_truncated_answer_is_asked_again_over_tcp(zone: Zone, parent: ParentFactory) -> None:
    key = _first_key_submitted(zone)
    # 60 SHA-384 DS records (about 4 kB) do not fit the 1232-byte UDP answer.
    others = [f"{10000 + i} 13 4 {i:096x}" for i in range(60)]
    report = zone.manager.check_parent_ds(
        ORIGIN, servers=[parent(zone.ds(key), *others)], timeout=TIMEOUT
    )
    assert report.result is not None
    (answer,) = report.result.answers
    assert answer.tcp and len(answer.ds) == 61
    assert report.recorded == ((key, "seen"),)


# --- discovery: the parent zone's NS set ---------------------------------------------------


def test_discovery_finds_the_parent_zone_and_its_nameservers(
    zone: Zone, parent: ParentFactory
) -> None:
    key = _first_key_submitted(zone)
    server = parent(zone.ds(key))
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    found_in, servers, problems = discover_parent_servers(ORIGIN, resolver, port=server.port)
    assert found_in == dns.name.from_text("test.") and problems == ()
    assert [(str(s.name), s.address) for s in servers] == [
        ("ns1.test.", "127.0.0.1"),
        ("ns2.test.", "127.0.0.1"),
    ]
    stored = next(k for k in zone.store.keys(ORIGIN) if k.id == key)
    wire = stored.dnskey
    dnskey = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.DNSKEY, wire, 0, len(wire))
    ours = ParentKey(key, stored.key_tag, 13, dnskey)
    result = check_parent_ds(ORIGIN, [ours], resolver=resolver, port=server.port, timeout=1)
    assert result.parent == dns.name.from_text("test.") and result.complete
    assert result.presence(key) is Presence.PRESENT


def test_discovery_failure_is_a_clear_error(zone: Zone) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = free_port()  # nobody answers
    resolver.lifetime = 1.0
    with pytest.raises(DsCheckError, match="set parent-servers"):
        zone.manager.check_parent_ds(ORIGIN, resolver=resolver, timeout=TIMEOUT)


def _fake_key() -> ParentKey:
    dnskey = dns.rdata.from_text("IN", "DNSKEY", "257 3 13 " + "A" * 88)
    return ParentKey("k", 1, 13, dnskey)


def test_an_unroutable_address_of_a_nameserver_that_answered_is_skipped() -> None:
    # IPv6 on a host without it: the same nameserver answered over IPv4.
    ns1 = dns.name.from_text("ns1.test.")
    v4, v6 = ParentServer("192.0.2.1", 53, ns1), ParentServer("2001:db8::1", 53, ns1)
    key = _fake_key()

    def ask(origin: dns.name.Name, server: ParentServer, *_: object) -> ServerAnswer:
        if server is v6:
            return ServerAnswer(server, error=DsCheckError("no route"), no_route=True)
        return ServerAnswer(server, ds=("1 13 2 00",), keys=frozenset({"k"}))

    result = check_parent_ds(ORIGIN, [key], [v4, v6], ask=ask)
    assert result.complete and result.presence("k") is Presence.PRESENT
    # Alone, or for a configured server, an unroutable address blocks the verdict.
    alone = check_parent_ds(ORIGIN, [key], [v6], ask=ask)
    assert not alone.complete and alone.presence("k") is Presence.UNKNOWN


# --- zonefan keys ds-check ----------------------------------------------------------------------


def test_cli_ds_check_records_and_reports(tmp_path: Path, parent: ParentFactory) -> None:
    db = tmp_path / "cli.db"
    # Signed two days ago (fake clock): at the real time of the CLI the DS is awaited.
    with _signed_zone(db, int(time.time()) - 2 * DAY) as zone:
        key = zone.keys()[_first_key_submitted(zone)]
        ds = zone.ds(key.key_id)
    status = run_cli(db, "keys", "status", "example.test").stdout
    assert f"waiting for the DS of tag {key.key_tag} to appear at the parent" in status
    assert "`zonefan serve` asks the parent zone's nameservers every 1h" in status
    assert "`zonefan keys ds-check example.test.` asks now" in status

    server = parent(ds)
    config = tmp_path / "zonefan.toml"
    config.write_text(f'[policy.default]\nparent-servers = ["127.0.0.1@{server.port}"]\n')
    out = run_cli(db, "--config", str(config), "keys", "ds-check", "example.test").stdout
    assert f"127.0.0.1:{server.port}: DS {ds}" in out
    assert f"key {key.key_tag} ({key.key_id}): DS present at every server" in out
    assert "awaited to appear: recorded seen" in out
    status = run_cli(db, "keys", "status", "example.test", "--json").stdout
    assert json.loads(status)["ds_watch"] == []

    # A server that does not answer: exit 1, the report says which, nothing recorded.
    dead = _dead_server()
    config.write_text(f'[policy.default]\nparent-servers = ["127.0.0.1@{server.port}", "{dead}"]\n')
    failed = run_cli(
        db, "--config", str(config), "keys", "ds-check", "example.test", "--json",
        "--timeout", "0.5", check=False,
    )  # fmt: skip
    assert failed.returncode == 1 and "incomplete" in failed.stderr
    data = json.loads(failed.stdout)
    assert not data["complete"] and data["recorded"] == []
    assert any(str(dead) in e for e in data["errors"])
    assert [k["presence"] for k in data["keys"]] == ["unknown"]

    config.write_text('[policy.default]\nds-check = "manual"\n')
    manual = run_cli(db, "--config", str(config), "keys", "ds-check", "example.test").stdout
    assert "nothing asked: ds-check is manual" in manual


def test_cli_manual_mode_says_what_to_confirm(tmp_path: Path, parent: ParentFactory) -> None:
    db = tmp_path / "z.db"
    with _signed_zone(db, int(time.time()) - 5 * DAY) as zone:
        old, new = _rolled(zone, parent)
        tags = {k: zone.keys()[k].key_tag for k in (old, new)}
    config = tmp_path / "zonefan.toml"
    config.write_text('[policy.default]\nds-check = "manual"\n')
    conf = ("--config", str(config))
    status = run_cli(db, *conf, "keys", "status", "example.test").stdout
    assert f"DS of tag {tags[new]} to appear at the parent; ds-check is manual" in status
    assert f"`zonefan keys ds-seen example.test. {tags[new]}`" in status
    assert f"DS of tag {tags[old]} to leave the parent; ds-check is manual" in status
    assert f"`zonefan keys ds-gone example.test. {tags[old]}`" in status
    # A DS still wanted cannot be confirmed gone (a mistyped tag changes nothing).
    wrong = run_cli(db, *conf, "keys", "ds-gone", "example.test", str(tags[new]), check=False)
    assert wrong.returncode != 0 and "has not been withdrawn" in wrong.stderr
    run_cli(db, *conf, "keys", "ds-gone", "example.test", str(tags[old]))
    run_cli(db, *conf, "keys", "ds-seen", "example.test", str(tags[new]))
    data = json.loads(run_cli(db, *conf, "keys", "status", "example.test", "--json").stdout)
    assert data["ds_watch"] == [] and data["ds_check"]["mode"] == "manual"
    assert {k["tag"]: k["ds"] for k in data["keys"]} == {tags[old]: "gone", tags[new]: "seen"}


# --- the check inside `zonefan serve`'s maintenance loop ------------------------------------


def test_serve_maintenance_asks_the_parent_and_records_the_ds(
    zone: Zone, parent: ParentFactory
) -> None:
    key = _only_key(zone)
    server = parent(zone.ds(key))
    policy = Policy(parent_servers=(f"{server.address}@{server.port}",))
    db = Path(zone.store.path)

    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(
            store, Path(f"{db}.keys"), {"default": policy}, clock=zone.clock, versions=versions
        )

    async def scenario() -> None:
        scheduler = MaintenanceScheduler(db, factory, clock=zone.clock)
        async with scheduler_running(scheduler):
            for runs in range(1, 60):  # bounded: key events, then the hourly DS check
                await wait_for_runs(scheduler, runs)
                if zone.keys()[key].ds_seen is not None:
                    return
                zone.clock.now = int(scheduler.due_times()[ORIGIN])
                scheduler.wake()
            raise AssertionError("the DS at the parent was never recorded")

    asyncio.run(scenario())
    seen = zone.keys()[key]
    assert seen.ds_submitted is not None and seen.ds_seen is not None
    # Asked no sooner than the check interval after the DS was submitted.
    assert seen.ds_seen >= seen.ds_submitted + policy.ds_check_interval
    assert zone.manager.maintain(ORIGIN, AUTHOR).plan.ds_watch == ()
