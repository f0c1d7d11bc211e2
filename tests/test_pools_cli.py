"""Pools in the CLI on a store: the config accepted and checked, a pool's RRset owned by
the pool, and maintenance drains (``zonefan drain``/``undrain``) as changesets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import pytest

from health import Check, HealthConfig, Member, Pool
from nameserver.store.continuity import Drain, HealthEvent
from nameserver.store.schema import SCHEMA_VERSION
from nameserver.store.store import Store
from tests.servers import run_cli
from tests.tools import example_store, free_port
from zonefan.pools import PlacedPool, drained_addresses, place_pools, pool_records, publish

ZONE = "example.test."
POOL = "pool.example.test."
OTHER = "app.example.test."


def config(tmp_path: Path, pools: str | None = None) -> Path:
    path = tmp_path / "zonefan.toml"
    path.write_text(
        pools
        if pools is not None
        else f"""[pool."{POOL}"]
type = "A"
ttl = 30
members = [{{ address = "192.0.2.10", region = "fra" }},
           {{ address = "192.0.2.20", region = "ams" }}]
check = {{ kind = "tcp", port = 8080 }}

[pool."{OTHER}"]
type = "A"
ttl = 60
members = [{{ address = "192.0.2.30", region = "fra" }},
           {{ address = "192.0.2.40", region = "hel" }}]
check = {{ kind = "tcp", port = 8080 }}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return example_store(tmp_path / "zonefan.db", signed=False)


def cli(db: Path, conf: Path, *args: str, check: bool = True) -> Any:
    return run_cli(db, "--config", str(conf), *args, check=check)


def test_serve_refuses_a_pool_outside_the_stores_zones(tmp_path: Path, store: Path) -> None:
    conf = config(
        tmp_path,
        """[pool."www.elsewhere.test."]
type = "A"
ttl = 30
members = [{ address = "192.0.2.10", region = "fra" }]
check = { kind = "tcp", port = 8080 }
""",
    )
    done = cli(store, conf, "serve", "--listen", f"127.0.0.1:{free_port()}", check=False)
    assert done.returncode == 1
    assert 'pool."www.elsewhere.test.": no zone of the store contains' in done.stderr
    assert "zonefan zone import" in done.stderr


def test_config_check_reads_the_pools(tmp_path: Path, store: Path) -> None:
    conf = config(tmp_path)
    done = cli(store, conf, "config", "check")
    assert f"pool {POOL}: 2 member(s) in ams, fra" in done.stdout
    bad = config(tmp_path, f'[pool."{POOL}"]\ntype = "MX"\n')
    done = cli(store, bad, "config", "check", check=False)
    assert done.returncode == 1 and f'pool."{POOL}".type' in done.stderr


def test_a_pools_rrset_is_not_edited_by_hand(tmp_path: Path, store: Path) -> None:
    conf = config(tmp_path)
    for args in (
        ("record", "add", ZONE, "pool", "30", "A", "192.0.2.99"),
        ("record", "set", ZONE, "pool", "30", "A", "192.0.2.99"),
        ("record", "delete", ZONE, "pool", "A"),
    ):
        done = cli(store, conf, *args, check=False)
        assert done.returncode == 1, args
        assert f'{POOL} A belongs to pool."{POOL}"' in done.stderr
    # Another type at the pool's name is the zone's own.
    cli(store, conf, "record", "add", ZONE, "pool", "30", "TXT", "hello")


def test_a_schema_4_store_gains_the_health_and_drain_tables(tmp_path: Path, store: Path) -> None:
    conn = sqlite3.connect(store)
    conn.execute("DROP TABLE health_events")
    conn.execute("DROP TABLE drains")
    conn.execute("DROP TABLE drill_endpoints")  # schema 6, made when this store was created
    conn.execute("DROP TABLE drills")
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with Store(store) as s:
        drain = s.add_drain("fra", None, 1.0, "ops", "maintenance")
        assert s.drains() == [drain]
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def _json(done: Any) -> Any:
    return json.loads(done.stdout)


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def published(db: Path, name: str) -> set[str]:
    with Store(db, read_only=True) as s:
        records = [
            r
            for r in s.records(_name(ZONE))
            if r.name == _name(name) and r.rdtype == dns.rdatatype.A
        ]
    return {r.rdata.to_text() for r in records}


def history(db: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = _json(run_cli(db, "zone", "history", ZONE, "--json"))
    return entries


def test_drain_and_undrain_are_changesets_by_the_user(tmp_path: Path, store: Path) -> None:
    conf = config(tmp_path)
    drained = _json(
        cli(store, conf, "drain", "fra", "-m", "kernel upgrade", "--author", "ops", "--json")
    )
    assert drained["drain"]["members"] == [
        {"pool": POOL, "address": "192.0.2.10"},
        {"pool": OTHER, "address": "192.0.2.30"},
    ]
    # The pools were not in the zone yet: each is published without its fra member.
    assert published(store, POOL) == {"192.0.2.20"}
    assert published(store, OTHER) == {"192.0.2.40"}
    last = history(store)[-2:]
    assert [(e["author"], e["message"]) for e in last] == [("ops", "kernel upgrade")] * 2
    assert [c["pool"] for c in drained["changes"]] == [POOL, OTHER]

    status = _json(cli(store, conf, "drain", "status", "--json"))["drains"]
    assert [(d["region"], d["zone"], d["by"], d["reason"]) for d in status] == [
        ("fra", None, "ops", "kernel upgrade")
    ]
    text = cli(store, conf, "drain", "status").stdout
    assert "fra in every zone: since " in text and "by ops: kernel upgrade" in text
    again = cli(store, conf, "drain", "fra", "-m", "twice", check=False)
    assert again.returncode == 1 and "drained already in every zone" in again.stderr

    undrained = _json(cli(store, conf, "undrain", "fra", "--author", "ops", "--json"))
    assert [c["published"] for c in undrained["changes"]] == [
        ["192.0.2.10", "192.0.2.20"],
        ["192.0.2.30", "192.0.2.40"],
    ]
    assert history(store)[-1]["message"] == "undrain fra"
    assert _json(cli(store, conf, "drain", "status", "--json"))["drains"] == []
    with Store(store, read_only=True) as s:
        [ended] = s.drains(active_only=False)
    assert ended.undrained is not None and ended.undrained_by == "ops"


def test_a_drain_that_would_empty_a_pool_is_refused_unless_forced(
    tmp_path: Path, store: Path
) -> None:
    conf = config(tmp_path)
    cli(store, conf, "drain", "ams", "-m", "ams first")
    before = history(store)
    refused = cli(store, conf, "drain", "fra", "-m", "fra too", check=False)
    assert refused.returncode == 1
    assert f"would leave pool(s) {POOL} with no member" in refused.stderr
    assert history(store) == before
    assert [
        d["region"] for d in _json(cli(store, conf, "drain", "status", "--json"))["drains"]
    ] == ["ams"]
    # Only one zone's pools: the same refusal.
    refused = cli(store, conf, "drain", "fra", "--zone", ZONE, "-m", "fra", check=False)
    assert refused.returncode == 1 and POOL in refused.stderr

    cli(store, conf, "drain", "fra", "-m", "everything down for the move", "--force")
    assert published(store, POOL) == set()  # the RRset is gone: NODATA, never a dead member
    assert published(store, OTHER) == {"192.0.2.40"}
    cli(store, conf, "undrain", "ams", "-m", "ams is back")
    assert published(store, POOL) == {"192.0.2.20"}


def test_an_unknown_region_is_named_with_the_known_ones(tmp_path: Path, store: Path) -> None:
    conf = config(tmp_path)
    before = history(store)
    for args in (("drain", "par", "-m", "x"), ("undrain", "par")):
        done = cli(store, conf, *args, check=False)
        assert done.returncode == 1
        assert "region 'par'" in done.stderr and "known regions: ams, fra, hel" in done.stderr
    done = cli(store, conf, "undrain", "fra", check=False)
    assert done.returncode == 1 and "region fra is not drained (drained regions: none)" in (
        done.stderr
    )
    done = cli(store, conf, "drain", "fra", check=False)
    assert done.returncode == 2 and "give the reason with -m" in done.stderr
    assert history(store) == before


def test_undrain_keeps_out_a_member_the_checks_withdrew(tmp_path: Path, store: Path) -> None:
    conf = config(tmp_path)
    cli(store, conf, "drain", "ams", "-m", "maintenance")
    with Store(store) as s:
        s.record_health(
            [HealthEvent(1.0, _name(POOL), "withdrawn", "dead", "192.0.2.20", "ams", ("local",))]
        )
    cli(store, conf, "undrain", "ams")
    assert published(store, POOL) == {"192.0.2.10"}
    assert published(store, OTHER) == {"192.0.2.30", "192.0.2.40"}


def _pool(name: str, *members: tuple[str, str]) -> Pool:
    check = Check("tcp", 8080)
    return Pool(_name(name), dns.rdatatype.A, 30, tuple(Member(a, r) for a, r in members), check)


def test_a_pool_belongs_to_the_longest_zone_it_is_in() -> None:
    pool = _pool("www.sub.example.test.", ("192.0.2.1", "fra"))
    zones = [_name("example.test."), _name("sub.example.test."), _name("test.")]
    [placed] = place_pools(HealthConfig(pools=(pool,)), zones)
    assert placed.zone == _name("sub.example.test.")


def test_publish_keeps_the_configured_order_and_never_answers_with_nothing() -> None:
    pool = _pool(POOL, ("192.0.2.1", "fra"), ("192.0.2.2", "ams"), ("192.0.2.3", "hel"))
    everyone = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert publish(pool, {"192.0.2.3", "192.0.2.1"}, set()) == ["192.0.2.1", "192.0.2.3"]
    assert publish(pool, {"192.0.2.1"}, {"192.0.2.1"}) == ["192.0.2.2", "192.0.2.3"]
    assert publish(pool, set(), {"192.0.2.2"}) == ["192.0.2.1", "192.0.2.3"]
    assert publish(pool, everyone, set(everyone)) == []  # only a forced drain of all
    placed = PlacedPool(pool, _name(ZONE))
    drains = [
        Drain(1, "fra", None, 1.0, "ops", "x"),
        Drain(2, "ams", _name("other.test."), 1.0, "ops", "x"),
        Drain(3, "hel", None, 1.0, "ops", "x", undrained=2.0),
    ]
    assert drained_addresses(placed, drains) == {"192.0.2.1"}


def test_a_cname_pool_publishes_the_first_chosen_members_target_alone() -> None:
    members = (
        Member("192.0.2.1", "fra", _name("fra.cdn.example.net.")),
        Member("192.0.2.2", "ams", _name("ams.cdn.example.net.")),
    )
    pool = Pool(_name(POOL), dns.rdatatype.CNAME, 60, members, Check("tcp", 443))
    [only] = pool_records(pool, publish(pool, {"192.0.2.1", "192.0.2.2"}, set()))
    assert (only.rdtype, only.rdata.to_text(), only.ttl) == (
        dns.rdatatype.CNAME,
        "fra.cdn.example.net.",
        60,
    )
    [failover] = pool_records(pool, publish(pool, {"192.0.2.2"}, set()))
    assert failover.rdata.to_text() == "ams.cdn.example.net."
    [drained] = pool_records(pool, publish(pool, {"192.0.2.1", "192.0.2.2"}, {"192.0.2.1"}))
    assert drained.rdata.to_text() == "ams.cdn.example.net."
    # An A pool publishes every chosen address.
    a_pool = _pool(POOL, ("192.0.2.1", "fra"), ("192.0.2.2", "ams"))
    assert [r.rdata.to_text() for r in pool_records(a_pool, ["192.0.2.1", "192.0.2.2"])] == [
        "192.0.2.1",
        "192.0.2.2",
    ]
