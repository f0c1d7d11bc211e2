"""Fixtures shared by several test modules: the installed wheel, and the real servers
(pdns_server, moto) that more than one module talks to. Each server is stopped after
its last user, in a ``finally`` of its context manager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.moto import moto_server
from tests.pdns import PdnsServer
from tests.user_install import UserInstall, install_wheel


@pytest.fixture(scope="session")
def user_install(tmp_path_factory: pytest.TempPathFactory) -> UserInstall:
    """zonefan from its wheel in a fresh venv outside the repository (tests/user_install.py);
    built once per session, on first use."""
    return install_wheel(tmp_path_factory.mktemp("user-install"))


@pytest.fixture
def pdns(tmp_path: Path) -> Iterator[PdnsServer]:
    """A pdns_server of the test's own (tests/pdns.py)."""
    with PdnsServer(tmp_path / "pdns") as server:
        yield server


@pytest.fixture(scope="module")
def module_pdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PdnsServer]:
    """One pdns_server for all the tests of a module, for tests that each use zones of
    their own (a module overrides ``pdns`` with it)."""
    with PdnsServer(tmp_path_factory.mktemp("pdns")) as server:
        yield server


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's standalone server (tests/moto.py), one per module; its base URL."""
    with moto_server() as url:
        yield url
