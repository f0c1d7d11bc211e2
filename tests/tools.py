"""Helpers for tests that use independent tools (dig, nsd, named-checkzone, ...).

With CI=true a missing tool fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nameserver.dnssec.maintenance import MaintenanceScheduler
from nameserver.dnssec.manager import DnssecManager
from nameserver.edit.editor import Author
from nameserver.store.store import Store
from nameserver.zone.serial import SerialPolicy
from nameserver.zone.zonefile import read_zone_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_TESTDATA = PROJECT_ROOT.parent / "shared" / "testdata"


def in_ci() -> bool:
    """True when running under CI, where every tool must be present."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of an external tool, or skip (fail under CI) with a clear reason."""
    for candidate in (name, f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    reason = f"{name} is not installed (the README's test command installs it)"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def write_private(path: Path, text: str) -> Path:
    """Write a config file only its owner can read: zonefan refuses an inline secret in a
    file others can read."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def shared_file(name: str) -> Path:
    """A file of ../shared/testdata, or skip when the checkout has no shared/ beside it."""
    path = SHARED_TESTDATA / name
    if not path.exists():
        pytest.skip(f"{path} is absent (a clone without ../shared)")
    return path


def free_port(family: int = socket.AF_INET, host: str = "127.0.0.1") -> int:
    """An ephemeral port free for both UDP and TCP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = int(t.getsockname()[1])
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found for UDP and TCP")


@contextlib.asynccontextmanager
async def scheduler_running(scheduler: MaintenanceScheduler) -> AsyncIterator[None]:
    """``scheduler.run()`` as a task for the block; stopped and closed after it."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield
    finally:
        scheduler.stop()
        await task
        scheduler.close()


async def wait_for_runs(scheduler: MaintenanceScheduler, runs: int, timeout: float = 20.0) -> None:
    """Wait (bounded) until ``scheduler`` has finished ``runs`` maintenance runs."""
    deadline = time.monotonic() + timeout
    while scheduler.runs < runs:
        if time.monotonic() > deadline:
            raise AssertionError(f"maintenance run {runs} did not happen within {timeout} s")
        await asyncio.sleep(0.01)


def example_store(db: Path, signed: bool = True, clock: Callable[[], float] = time.time) -> Path:
    """A store at ``db`` holding zones/example.test.zone, signed with the default policy
    when ``signed`` (keys in ``<db>.keys``, where `zonefan serve` looks)."""
    with Store(db) as store:
        manager = DnssecManager(store, Path(f"{db}.keys"), clock=clock)
        editor = manager.editor()
        parsed = read_zone_file(PROJECT_ROOT / "zones" / "example.test.zone")
        plan = editor.plan_import(parsed.origin, parsed.records, Author("test"))
        editor.create_or_replace(plan, SerialPolicy.INCREMENT)
        if signed:
            manager.enable(parsed.origin, Author("test"))
    return db
