"""Sync targets: one module per provider, one typed interface (:mod:`sync.providers.base`).

``FACTORIES`` maps a config ``type`` to the function that builds the target from its
``[target.NAME]`` table; the modules are imported only when a target of theirs is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from sync.errors import SyncConfigError
from sync.providers.base import Target
from sync.settings import TargetContext

Factory = Callable[[str, Mapping[str, Any], TargetContext], Target]

# type -> (module, factory function)
FACTORIES: dict[str, tuple[str, str]] = {
    "powerdns": ("sync.providers.powerdns", "powerdns_from_config"),
    "powerdns-secondary": ("sync.providers.powerdns", "powerdns_secondary_from_config"),
    "rfc2136": ("sync.providers.rfc2136", "rfc2136_from_config"),
}


def build_target(name: str, section: Mapping[str, Any], ctx: TargetContext) -> Target:
    """The target configured by ``[target.NAME]``; SyncConfigError for an unknown type."""
    kind = section.get("type")
    if kind not in FACTORIES:
        known = ", ".join(sorted(FACTORIES))
        raise SyncConfigError(
            f"target.{name}.type", f"unknown target type {kind!r}; use one of: {known}"
        )
    module, function = FACTORIES[kind]
    factory: Factory = getattr(importlib.import_module(module), function)
    return factory(name, section, ctx)
