"""Each package has one exception root: every exception class the package defines derives
from it, so a caller can catch the package's errors in one clause."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

ROOTS = {
    "health": ("health.errors", "HealthError"),
    "nameserver": ("nameserver.errors", "NameserverError"),
    "settings": ("settings.errors", "SettingsError"),
    "signer": ("signer.errors", "SignerError"),
    "sync": ("sync.errors", "SyncError"),
}


def defined_exceptions(package: str) -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ == info.name and issubclass(value, BaseException):
                found.append(value)
    return found


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_every_exception_derives_from_the_package_root(package: str) -> None:
    module, name = ROOTS[package]
    root = getattr(importlib.import_module(module), name)
    classes = defined_exceptions(package)
    assert root in classes, classes  # the walk found the package's modules
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, root)]
    assert not strays, f"not under {name}: {strays}"
