"""Knot as a catalog consumer (RFC 9432): configured with our catalog zone only, it
provisions a zone imported later with the CLI by itself (catalog change, NOTIFY, IXFR
of the catalog, then a transfer of the new member), and drops it when it is deleted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rcode
import pytest

from nameserver.edit.catalog import member_id
from nameserver.store.store import Store
from tests.servers import KnotSecondary, XfrKey, ZonefanServer, make_query, run_cli, transfer_config
from tests.tools import PROJECT_ROOT, free_port, require_tool, write_private
from tests.wait import wait_until

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
CATALOG = "catalog.zonefan.test."
KEY = XfrKey("cat-key", "Y2F0YWxvZy1jb25zdW1lci10ZXN0LXNlY3JldCEhIQ==")
DEADLINE = 10.0


class KnotCatalogConsumer(KnotSecondary):
    """knotd holding only the catalog zone, whose members it provisions from the same
    primary (``catalog-role: interpret``)."""

    def _prepare(self) -> None:
        super()._prepare()
        text = self.conf.read_text(encoding="utf-8")
        head, _, _zones = text.partition("zone:\n")
        d = self.workdir
        member_template = (
            "  - id: member\n"
            f'    storage: "{d}/storage"\n'
            "    master: primary\n"
            "    acl: notify-in\n"
            "    zonefile-sync: -1\n"
            "    zonefile-load: none\n"
            "    journal-content: changes\n"
        )
        head = head.replace("\nzone:", "")
        head = head.rstrip() + "\n" + member_template + "\n"
        catalog = (
            "zone:\n"
            f"  - domain: {CATALOG}\n"
            "    master: primary\n"
            "    acl: notify-in\n"
            "    catalog-role: interpret\n"
            "    catalog-template: member\n"
        )
        self.conf.write_text(head + catalog, encoding="utf-8")


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[ZonefanServer, KnotCatalogConsumer, Path]]:
    for tool in ("knotd", "knotc"):
        require_tool(tool)
    db = tmp_path / "z.db"
    knot_port = free_port()
    config = tmp_path / "zonefan.toml"
    write_private(
        config, f'catalog-zone = "{CATALOG}"\n\n' + transfer_config(KEY, notify_port=knot_port)
    )
    first = tmp_path / "first.test.zone"
    first.write_text(EXAMPLE.read_text().replace("example.test.", "first.test."))
    run_cli(db, "--config", str(config), "zone", "import", str(first), cwd=tmp_path)
    with ZonefanServer(tmp_path, db, probe_name=CATALOG, config=config) as primary:
        knot = KnotCatalogConsumer(tmp_path / "knot", [CATALOG], primary.port, KEY)
        knot.fixed_port = knot_port
        with knot:
            yield primary, knot, config


def _served(server: KnotSecondary, zone: str) -> bool:
    response = server.ask(make_query(zone, "SOA", flags=0))
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def test_knot_provisions_and_drops_zones_from_our_catalog(
    consumer: tuple[ZonefanServer, KnotCatalogConsumer, Path],
) -> None:
    primary, knot, config = consumer
    wait_until(
        lambda: _served(knot, "first.test."),
        DEADLINE,
        what="first.test. provisioned from the catalog",
    )
    second = primary.workdir / "second.test.zone"
    second.write_text(EXAMPLE.read_text().replace("example.test.", "second.test."))
    primary.cli("--config", str(config), "zone", "import", str(second))
    with Store(primary.db) as store:
        members = [
            r.name.labels[0].decode()
            for r in store.records(dns.name.from_text(CATALOG))
            if r.rdtype == 12
        ]
    assert member_id(dns.name.from_text("second.test.")) in members
    wait_until(
        lambda: _served(knot, "second.test."), DEADLINE, what="second.test. provisioned by itself"
    )
    answer = knot.ask(make_query("www.second.test.", "A", flags=0))
    assert answer.rcode() == dns.rcode.NOERROR
    primary.cli("--config", str(config), "zone", "delete", "second.test.", "--yes")
    wait_until(
        lambda: not _served(knot, "second.test."),
        DEADLINE,
        what="second.test. dropped with the catalog",
    )
