"""Turning DNSSEC on is one transaction: the zone's "signed" setting, its keys and its
signatures are committed together. Whatever stops `zone sign` part way (an error while
signing, an error inside the commit, the process killed while signing or in the middle
of the commit) leaves the store unsigned and unmarked; a finished one leaves it signed
and marked, which BIND's dnssec-verify and ldns-verify-zone accept."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest
from dns.rdtypes.ANY.RRSIG import RRSIG as RRSIGRdata

from nameserver.dnssec.manager import DnssecManager
from nameserver.dnssec.signing import seconds_left
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.store.versions import brought_forward
from nameserver.zone.records import Record
from nameserver.zone.snapshot import ZoneSnapshot, record_row
from nameserver.zone.validate import SIGNER_TYPES
from nameserver.zone.zonefile import write_zone_file
from signer.policy import Denial
from tests.tools import PROJECT_ROOT, example_store, require_tool

ORIGIN = dns.name.from_text("example.test.")
AUTHOR = Author("test")


def _signer_records(store: Store) -> list[Record]:
    return [r for r in store.records(ORIGIN) if r.rdtype in SIGNER_TYPES]


def _assert_unsigned(db: Path, serial: int) -> None:
    """Unmarked, no signer record, no key row, the serial the import left."""
    with Store(db) as store:
        state = store.dnssec(ORIGIN)
        assert state is None or not state.signed, state
        assert _signer_records(store) == []
        assert store.keys(ORIGIN) == []
        assert store.serial(ORIGIN) == serial


def _assert_signed(db: Path, tmp_path: Path) -> None:
    """Marked signed, with keys, and a zone the independent verifiers accept."""
    with Store(db) as store:
        state = store.dnssec(ORIGIN)
        assert state is not None and state.signed
        assert store.keys(ORIGIN)
        path = tmp_path / "signed.zone"
        path.write_text(write_zone_file(ORIGIN, store.records(ORIGIN)))
    for command in (
        [require_tool("ldns-verify-zone"), str(path)],
        [require_tool("dnssec-verify"), "-z", "-o", str(ORIGIN), str(path)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def _enable(db: Path) -> None:
    with Store(db) as store:
        DnssecManager(store, Path(f"{db}.keys")).enable(ORIGIN, AUTHOR)


@pytest.fixture
def unsigned(tmp_path: Path) -> tuple[Path, int]:
    db = example_store(tmp_path / "z.db", signed=False)
    with Store(db) as store:
        return db, store.serial(ORIGIN)


class Injected(Exception):
    pass


def _fail(*_: object, **__: object) -> None:
    raise Injected


def _fail_while_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nameserver.dnssec.manager.reconcile", _fail)


def _fail_inside_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    # The setting is written last in the commit, after the records and the key rows:
    # an error there must take those back too.
    monkeypatch.setattr(Store, "_put_dnssec", staticmethod(_fail))


@pytest.mark.parametrize("inject", [_fail_while_signing, _fail_inside_the_commit])
def test_an_error_part_way_changes_nothing(
    unsigned: tuple[Path, int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inject: Callable[[pytest.MonkeyPatch], None],
) -> None:
    db, serial = unsigned
    inject(monkeypatch)
    with pytest.raises(Injected):
        _enable(db)
    _assert_unsigned(db, serial)
    monkeypatch.undo()
    _enable(db)
    _assert_signed(db, tmp_path)


# The child signs the zone and kills itself with SIGKILL at one point: no handler, no
# `finally`, no rollback runs, as in a crash or an OOM kill.
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import dns.name
    from nameserver.dnssec.manager import DnssecManager
    from nameserver.edit.editor import Author
    from nameserver.store.store import Store

    db, where = sys.argv[1], sys.argv[2]

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    progress = die if where == "signing" else None
    if where == "commit":
        Store._put_dnssec = staticmethod(die)  # records and key rows written, not committed
    with Store(db) as store:
        manager = DnssecManager(store, Path(db + ".keys"), progress=progress)
        manager.enable(dns.name.from_text("example.test."), Author("test"))
    """
)


@pytest.mark.parametrize("where", ["signing", "commit"])
def test_killed_part_way_leaves_the_zone_unsigned(
    unsigned: tuple[Path, int], tmp_path: Path, where: str
) -> None:
    db, serial = unsigned
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), where],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    _assert_unsigned(db, serial)
    _enable(db)
    _assert_signed(db, tmp_path)


def test_not_killed_the_child_signs(unsigned: tuple[Path, int], tmp_path: Path) -> None:
    """The child script above signs when nothing kills it (so the kills are what stop
    it)."""
    db, _ = unsigned
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), "nowhere"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    _assert_signed(db, tmp_path)


def test_resign_keeps_the_zone_signed_when_it_fails(
    unsigned: tuple[Path, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-sign of a signed zone (here with a switch to NSEC3) that fails leaves the
    zone signed as it was, NSEC and all."""
    db, _ = unsigned
    _enable(db)
    with Store(db) as store:
        before = (store.dnssec(ORIGIN), store.serial(ORIGIN), store.records(ORIGIN))
    monkeypatch.setattr(Store, "_put_dnssec", staticmethod(_fail))
    with Store(db) as store, pytest.raises(Injected):
        DnssecManager(store, Path(f"{db}.keys")).enable(ORIGIN, AUTHOR, denial=Denial.NSEC3)
    with Store(db) as store:
        assert (store.dnssec(ORIGIN), store.serial(ORIGIN), store.records(ORIGIN)) == before
    _assert_signed(db, tmp_path)


def _rrsigs(store: Store) -> list[Record]:
    return [r for r in store.records(ORIGIN) if isinstance(r.rdata, RRSIGRdata)]


def _earliest_refresh(db: Path, refresh: int, now: int) -> int:
    """From the store itself: the earliest RRSIG expiration, less the refresh margin."""
    with Store(db) as store:
        expirations = [int(r.rdata.expiration) for r in _rrsigs(store)]  # type: ignore[attr-defined]
    assert expirations
    left = min(seconds_left(bytes(8) + e.to_bytes(4, "big"), now) for e in expirations)
    return now + left - refresh


def test_next_due_is_the_stored_zones_earliest_refresh(unsigned: tuple[Path, int]) -> None:
    """`next_due` is worked out from the zone before the pass and the pass's changeset
    (not from a patched copy): it must equal what the committed zone says, after the
    first signing and after a maintenance run that re-made some signatures and kept
    others (jittered expirations, the clock moved into the refresh window of some)."""
    db, _ = unsigned
    now = [float(time.time())]
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=lambda: now[0])
        first = manager.enable(ORIGIN, AUTHOR)
        lifetimes = manager.lifetimes(ORIGIN)
    assert lifetimes is not None
    refresh = lifetimes[1]
    due = _earliest_refresh(db, refresh, int(now[0]))
    assert first.next_due == min(due, first.plan.next_event or due)
    now[0] = due + 1  # into the refresh window of the earliest signatures only
    with Store(db) as store:
        before = {r.rdata.to_text() for r in _rrsigs(store)}
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=lambda: now[0])
        again = manager.maintain(ORIGIN, AUTHOR)
        after = {r.rdata.to_text() for r in _rrsigs(store)}
    assert again.serial is not None
    assert before & after and after - before, "some signatures kept, some re-made"
    due = _earliest_refresh(db, refresh, int(now[0]))
    assert again.next_due == min(due, again.plan.next_event or due)


def test_the_journal_of_zone_sign_leads_from_the_unsigned_zone_to_the_signed(
    unsigned: tuple[Path, int],
) -> None:
    """IXFR serves the journal: the unsigned zone patched with the changeset of `zone
    sign` must be the signed zone (what AXFR serves), and undoing it must give back the
    unsigned zone."""
    db, serial = unsigned
    with Store(db) as store:
        before = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
        data = sorted(r.to_text() for r in store.records(ORIGIN))
    _enable(db)
    with Store(db) as store:
        [change] = store.changesets_between(ORIGIN, serial)
        assert any(r.rdtype == dns.rdatatype.RRSIG for r in change.added)
        journal = brought_forward(store, ORIGIN, before)
        whole = ZoneSnapshot.from_rows(ORIGIN, store.rows(ORIGIN))
        assert journal.serial == whole.serial == store.serial(ORIGIN) != serial
        assert sorted(map(record_row, journal.records())) == sorted(store.rows(ORIGIN))
        assert sorted(map(record_row, whole.records())) == sorted(store.rows(ORIGIN))
        assert sorted(r.to_text() for r in store.records_at(ORIGIN, serial)) == data
