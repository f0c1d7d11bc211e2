"""How ``zonefan sync`` runs its commands (the commands themselves are exercised against
real servers in test_sync_e2e.py and test_sync_refusals.py)."""

from __future__ import annotations

import gc

import click
import pytest

from sync.errors import TargetUnavailableError
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
