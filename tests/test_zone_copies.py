"""Whether every copy of a zone is current, as the primary's own logs say: each secondary's
newest transfer however many came after it from others, acknowledged NOTIFYs of the current
serial only."""

from __future__ import annotations

from pathlib import Path

import dns.name

from nameserver.store.copies import zone_copies
from nameserver.store.logs import NotifyRecord, TransferLogEntry
from nameserver.store.store import Store
from tests.tools import example_store

ZONE = dns.name.from_text("example.test.")


def transfer(client: str, serial: int, at: float, error: str | None = None) -> TransferLogEntry:
    return TransferLogEntry(at, ZONE, client, None, "AXFR", None, serial, 1, 10, 500, 0.01, error)


def test_each_copy_is_judged_against_the_zones_serial(tmp_path: Path) -> None:
    db = example_store(tmp_path / "z.db", signed=False)
    with Store(db) as store:
        serial = store.serial(ZONE)
        store.log_transfer(transfer("192.0.2.1", serial, 1.0))
        # 1,500 later transfers by another client: the first client's newest is still found.
        for i in range(1500):
            store.log_transfer(transfer("192.0.2.2", serial - 1 if i < 1499 else serial, 2.0 + i))
        store.log_transfer(transfer("192.0.2.3", serial, 5000.0, error="client went away"))
        store.record_notify(NotifyRecord(ZONE, "192.0.2.1@53", serial, 1, 1.0, 1.0, 1.5, ""))
        store.record_notify(
            NotifyRecord(ZONE, "192.0.2.4@53", serial, 3, 1.0, 9.0, None, "timeout")
        )
        store.record_notify(NotifyRecord(ZONE, "192.0.2.5@53", serial - 1, 1, 1.0, 1.0, 1.2, ""))
        copies = zone_copies(store, ZONE)
    assert copies.serial == serial
    assert {(t.entry.client, t.current) for t in copies.transferred} == {
        ("192.0.2.1", True),
        ("192.0.2.2", True),
        ("192.0.2.3", False),  # cut short
    }
    assert {(n.record.target, n.current) for n in copies.notified} == {
        ("192.0.2.1@53", True),
        ("192.0.2.4@53", False),  # never acknowledged
        ("192.0.2.5@53", False),  # acknowledged an older serial
    }
    assert not copies.all_current
