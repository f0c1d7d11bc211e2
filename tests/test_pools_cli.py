"""Pools in the CLI on a store: the config accepted and checked, a pool's RRset owned by
the pool, and maintenance drains (``zonefan drain``/``undrain``) as changesets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import dns.name
import pytest

from nameserver.store.schema import SCHEMA_VERSION
from nameserver.store.store import Store
from tests.servers import run_cli
from tests.tools import example_store, free_port

ZONE = "example.test."
POOL = "pool.example.test."
OTHER = "www.example.test."


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
    conn.execute("PRAGMA user_version = 4")
    conn.commit()
    conn.close()
    with Store(store) as s:
        drain = s.add_drain("fra", None, 1.0, "ops", "maintenance")
        assert s.drains() == [drain]
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()


def _json(done: Any) -> Any:
    return json.loads(done.stdout)


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)
