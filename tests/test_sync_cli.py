"""How ``zonefan sync`` runs its commands (the commands themselves are exercised against
real servers in test_sync_e2e.py and test_sync_refusals.py)."""

from __future__ import annotations

import gc
import subprocess
import sys

import click
import pytest

from sync.errors import TargetUnavailableError
from tests.tools import PROJECT_ROOT
from zonefan.sync_cli import _run


async def _collector_enabled() -> bool:
    return gc.isenabled()


async def _failing() -> None:
    raise TargetUnavailableError("pdns", "no answer")


def test_bounded_commands_run_without_the_cyclic_collector_and_restore_it() -> None:
    assert gc.isenabled()
    assert _run(_collector_enabled()) is False
    assert gc.isenabled()
    with pytest.raises(click.ClickException, match="no answer"):
        _run(_failing())
    assert gc.isenabled()


def test_the_sidecar_keeps_the_cyclic_collector() -> None:
    """It runs for months: cycles (exceptions with their tracebacks, closed tasks) must be
    collected."""
    assert _run(_collector_enabled(), bounded=False) is True
    assert gc.isenabled()


def test_sync_commands_load_neither_the_nameserver_nor_what_a_push_does_not_use() -> None:
    """`zonefan sync apply` starts in a fresh process each time: what it imports is part of
    every push (aiohttp is loaded with the first request, by a target that makes one)."""
    probe = (
        "import sys, zonefan.cli, zonefan.sync_cli, sync.providers.powerdns; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'nameserver' "
        "or m in ('aiohttp', 'dns.zone', 'dns.asyncquery', 'dns.query'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT
    )
    assert done.stdout.split() == []
