"""TSIG time window and replay protection, with the clock injected: the key's own fudge
bounds the window whatever the request carries (RFC 8945 §5.2.3), an accepted request's
exact bytes are not accepted again within it, and the memory this takes is bounded per key
and in total. The same defences against a running server: tests/test_attack_tsig.py."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.tsig
import dns.update
import pytest

from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.updatepolicy import UpdatePolicy
from nameserver.store.store import Store
from nameserver.store.versions import ZoneVersions
from nameserver.transfer.tsig import (
    BADTIME,
    NOERROR,
    ReplayGuard,
    TsigKey,
    tsig_error_reply,
    tsig_failure,
    verify,
)
from nameserver.transfer.update_service import UpdateService
from settings import SettingsError, Source, Table, parse_tsig_keys
from tests.tools import example_store

ORIGIN = dns.name.from_text("example.test.")
SECRET = b"replay-test-secret-0123456789abc"
KEY = TsigKey(dns.name.from_text("acme-key."), "hmac-sha256", SECRET)
SHORT = TsigKey(dns.name.from_text("short-key."), "hmac-sha256", SECRET[::-1], fudge=100)
KEYS = {KEY.name: KEY, SHORT.name: SHORT}
CLIENT = ("127.0.0.1", 5353)


def signed_query(key: TsigKey = KEY, fudge: int = 300) -> tuple[bytes, int]:
    """A TSIG-signed SOA query and the second it was signed in (dnspython signs with the
    real clock; verification below is given its own)."""
    q = dns.message.make_query(ORIGIN, "SOA")
    q.use_tsig(key.dns_key, fudge=fudge)
    before = int(time.time())
    wire = q.to_wire()
    signed = dns.message.from_wire(wire, keyring=False).tsig
    assert signed is not None
    assert signed[0].time_signed >= before
    return wire, int(signed[0].time_signed)


# -- the window is the server's --------------------------------------------------------


def test_a_client_chosen_fudge_does_not_widen_the_window() -> None:
    wire, signed = signed_query(fudge=65535)
    late = verify(wire, KEYS, now=signed + 30_000)
    assert late.error == BADTIME
    assert "30000 s before our clock, outside the key's fudge of 300 s" in late.reason
    early = verify(wire, KEYS, now=signed - 30_000)
    assert early.error == BADTIME and "after our clock" in early.reason
    assert verify(wire, KEYS, now=signed + 300).error == NOERROR  # the edge is inside
    assert verify(wire, KEYS, now=signed + 301).error == BADTIME
    assert verify(wire, KEYS, now=signed - 200).error == NOERROR


def test_a_smaller_request_fudge_is_honoured() -> None:
    # RFC 8945 §5.2.3: outside "Time Signed plus/minus the Fudge value" of the request.
    wire, signed = signed_query(fudge=60)
    assert verify(wire, KEYS, now=signed + 60).error == NOERROR
    narrow = verify(wire, KEYS, now=signed + 200)
    assert narrow.error == BADTIME
    assert "outside the request's fudge of 60 s" in narrow.reason


def test_the_keys_own_fudge_is_used() -> None:
    wire, signed = signed_query(SHORT, fudge=300)
    assert verify(wire, KEYS, now=signed + 100).error == NOERROR
    refused = verify(wire, KEYS, now=signed + 200)
    assert refused.error == BADTIME
    assert tsig_failure(refused) == (
        "TSIG BADTIME (key short-key.): signed 200 s before our clock, "
        "outside the key's fudge of 100 s"
    )


def test_badtime_answer_is_signed_with_the_request_time_and_our_time() -> None:
    """RFC 8945 §5.2.3: signed with the key, the client's time signed, our time in Other
    Data; the response's Fudge is the key's."""
    wire, signed = signed_query(SHORT, fudge=65535)
    refused = verify(wire, KEYS, now=signed + 5000)
    header = wire[:2] + b"\x80\x09\x00\x01\x00\x00\x00\x00\x00\x00"  # QR, NOTAUTH
    question = wire[12 : 12 + len(ORIGIN.to_wire() or b"") + 4]
    reply = dns.message.from_wire(tsig_error_reply(header + question, refused), keyring=False)
    assert reply.tsig is not None
    tsig = reply.tsig[0]
    assert tsig.error == BADTIME and tsig.time_signed == signed and tsig.fudge == 100
    ours = int.from_bytes(tsig.other, "big")
    assert abs(ours - time.time()) < 60
    assert tsig.mac  # signed, unlike BADKEY/BADSIG (§5.3.2)


# -- replays -----------------------------------------------------------------------------


def test_the_same_bytes_are_accepted_once() -> None:
    guard = ReplayGuard(started=0)
    wire, signed = signed_query()
    first = verify(wire, KEYS, guard, now=signed)
    assert first.error == NOERROR
    again = verify(wire, KEYS, guard, now=signed + 10)
    assert again.error == BADTIME and again.answer is None
    assert "a replay of a request already accepted" in tsig_failure(again)
    guard.answered(KEY, first.mac, b"the answer")
    assert verify(wire, KEYS, guard, now=signed + 20).answer == b"the answer"
    # Without a guard (a signed ordinary query) the copy is answered.
    assert verify(wire, KEYS, now=signed + 20).error == NOERROR


def test_new_requests_in_any_order_are_accepted() -> None:
    """Not RFC 8945's strict 'no earlier time signed': UDP reorders, and clients sharing a
    key sign concurrently."""
    guard = ReplayGuard(started=0)
    key, macs = KEY, [os.urandom(32) for _ in range(4)]
    now = 1_000_000
    for mac, signed in zip(macs, (now, now, now - 5, now + 3), strict=True):
        assert guard.admit(key, mac, signed, now) is None
    assert len(guard) == 4


def test_entries_expire_with_their_window() -> None:
    guard = ReplayGuard(started=0)
    now = 1_000_000
    for i in range(10):
        assert guard.admit(KEY, os.urandom(32), now - i, now) is None
    assert len(guard) == 10
    # At now + 300, what was signed before `now` would fail the time check: forgotten. The
    # one signed at `now` would still pass it: kept.
    guard.admit(KEY, os.urandom(32), now + 300, now + 300)
    assert len(guard) == 2
    guard.admit(KEY, os.urandom(32), now + 301, now + 301)
    assert len(guard) == 2  # the `now` one went, the new one came


def test_a_full_memory_raises_the_floor_not_the_size() -> None:
    guard = ReplayGuard(per_key=4, total=100, started=0)
    now = 1_000_000
    macs = [os.urandom(32) for _ in range(6)]
    for i, mac in enumerate(macs):
        assert guard.admit(KEY, mac, now - 10 + i, now) is None
    assert len(guard) == 4
    # The two oldest were forgotten: the floor stops them (and anything as old) coming back.
    for mac in macs[:2]:
        seen = guard.admit(KEY, mac, now - 10 + macs.index(mac), now)
        assert seen is not None and "at or before" in seen.reason
    assert guard.admit(KEY, os.urandom(32), now - 9, now) is not None
    assert guard.admit(KEY, os.urandom(32), now - 8, now) is None
    # Another key has its own floor.
    assert guard.admit(SHORT, os.urandom(32), now - 10, now) is None


def test_memory_is_bounded_whatever_is_sent() -> None:
    guard = ReplayGuard(per_key=1000, total=1500, started=0)
    now = 1_000_000
    for i in range(20_000):
        key = KEY if i % 2 else SHORT
        guard.admit(key, os.urandom(32), now - 50 + i // 400, now)
        assert len(guard) <= 1500
    assert len(guard) == 1500
    assert sum(len(m.heap) for m in guard._keys.values()) == 1500


def test_requests_signed_before_the_guard_started_are_refused() -> None:
    """A request captured before a restart is not accepted by the new process."""
    started = 1_000_000.5
    guard = ReplayGuard(started=started)
    assert guard.admit(KEY, os.urandom(32), 999_999, 1_000_001) is not None
    assert guard.admit(KEY, os.urandom(32), 1_000_000, 1_000_001) is None


# -- UPDATE ---------------------------------------------------------------------------------


@pytest.fixture
def updates(tmp_path: Path) -> Iterator[tuple[UpdateService, Path]]:
    db = example_store(tmp_path / "z.db", signed=False)

    def factory(store: Store, versions: ZoneVersions) -> DnssecManager:
        return DnssecManager(store, Path(f"{db}.keys"), versions=versions)

    rules = ["grant acme-key. wildcard *.example.test. TXT"]
    policies = {ORIGIN: UpdatePolicy.parse(ORIGIN, rules)}
    svc = UpdateService(db, {KEY.name: KEY}, policies, factory)
    try:
        yield svc, db
    finally:
        svc.close()


def _update(action: str) -> bytes:
    message = dns.update.UpdateMessage(ORIGIN)
    if action == "add":
        message.add("_acme-challenge.www", 60, "TXT", "token")
    else:
        message.delete("_acme-challenge.www", "TXT", "token")
    message.use_tsig(KEY.dns_key)
    return message.to_wire()


def _txt(db: Path) -> list[str]:
    name = dns.name.from_text("_acme-challenge.www", ORIGIN)
    with Store(db) as store:
        return [r.rdata.to_text() for r in store.records(ORIGIN) if r.name == name]


def test_a_replayed_update_gets_its_answer_and_is_not_applied(
    updates: tuple[UpdateService, Path],
) -> None:
    svc, db = updates
    add = _update("add")
    answer = svc.handle(add, CLIENT)
    assert answer is not None
    assert dns.message.from_wire(answer, keyring=False).rcode() == dns.rcode.NOERROR
    assert _txt(db) == ['"token"']
    assert svc.handle(_update("delete"), CLIENT) is not None
    assert _txt(db) == []
    with Store(db) as store:
        serial = store.serial(ORIGIN)
    # The add's bytes again (a UDP retransmission, or a replay): its first answer, byte for
    # byte, and the zone as the delete left it.
    assert svc.handle(add, CLIENT) == answer
    assert _txt(db) == []
    with Store(db) as store:
        assert store.serial(ORIGIN) == serial


# -- the setting -----------------------------------------------------------------------------


def _keys(fudge: object) -> TsigKey:
    table = Table(
        {"k": {"secret": "cmVwbGF5LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmM=", "fudge": fudge}},
        "key",
        Source(None, {}),
    )
    return parse_tsig_keys(table)["k"]


def test_fudge_setting_uses_the_duration_grammar() -> None:
    assert _keys("300s").fudge == 300
    assert _keys("2m").fudge == 120
    assert _keys(30).fudge == 30
    table = Table(
        {"k": {"secret-env": "X"}}, "key", Source(None, {"X": "c2VjcmV0c2VjcmV0c2VjcmV0"})
    )
    assert parse_tsig_keys(table)["k"].fudge == 300  # RFC 8945 §10's recommendation


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "outside 1s..18h12m15s"),
        ("1d", "outside 1s..18h12m15s"),
        ("1.5s", "not a whole number of seconds"),
        ("soon", "not a duration"),
    ],
)
def test_bad_fudge_names_the_key_path(value: object, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        _keys(value)
    assert "key.k.fudge" in str(err.value) and message in str(err.value)
