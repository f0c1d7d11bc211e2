"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest

from tests.user_install import UserInstall, install_wheel


@pytest.fixture(scope="session")
def user_install(tmp_path_factory: pytest.TempPathFactory) -> UserInstall:
    """zonefan from its wheel in a fresh venv outside the repository (tests/user_install.py);
    built once per session, on first use."""
    return install_wheel(tmp_path_factory.mktemp("user-install"))
