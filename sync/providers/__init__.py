"""Sync targets: one module per provider, one typed interface (:mod:`sync.providers.base`).

A target type names a factory that builds the target from its ``[target.NAME]`` table. The
built-in types are listed here; a provider in a distribution of its own registers its type
in the ``zonefan.providers`` entry-point group (``mytype = "mypackage.module:factory"``).
Modules are imported only when a target of theirs is configured.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any

from sync.errors import SyncConfigError
from sync.providers.base import Target
from sync.settings import TargetContext

Factory = Callable[[str, Mapping[str, Any], TargetContext], Target]
ENTRY_POINT_GROUP = "zonefan.providers"

# type -> "module:factory"
BUILTIN: dict[str, str] = {
    "powerdns": "sync.providers.powerdns:powerdns_from_config",
    "powerdns-secondary": "sync.providers.powerdns:powerdns_secondary_from_config",
    "rfc2136": "sync.providers.rfc2136:rfc2136_from_config",
    "cloudflare": "sync.providers.cloudflare:cloudflare_from_config",
    "desec": "sync.providers.desec:desec_from_config",
    "hetzner": "sync.providers.hetzner:hetzner_from_config",
    "octodns": "sync.providers.octodns:octodns_from_config",
    "route53": "sync.providers.route53:route53_from_config",
}


def registered() -> dict[str, str]:
    """Every target type: the built-in ones, then those of installed distributions (a
    distribution cannot replace a built-in type)."""
    types: dict[str, str] = {}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        types.setdefault(entry.name, entry.value)
    types.update(BUILTIN)
    return types


def _load(kind: str, reference: str, setting: str) -> Factory:
    module, _, function = reference.partition(":")
    try:
        factory = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise SyncConfigError(
            setting,
            f"target type {kind!r} is registered as {reference!r}, which cannot be loaded "
            f"({exc}); reinstall the distribution that provides it",
        ) from None
    if not callable(factory):
        raise SyncConfigError(setting, f"target type {kind!r}: {reference!r} is not callable")
    return factory  # type: ignore[no-any-return]


def build_target(name: str, section: Mapping[str, Any], ctx: TargetContext) -> Target:
    """The target configured by ``[target.NAME]``; SyncConfigError for an unknown type."""
    kind = section.get("type")
    setting = f"target.{name}.type"
    types = registered()
    if not isinstance(kind, str) or kind not in types:
        known = ", ".join(sorted(types))
        raise SyncConfigError(setting, f"unknown target type {kind!r}; use one of: {known}")
    target = _load(kind, types[kind], setting)(name, section, ctx)
    if not isinstance(target, Target):
        raise SyncConfigError(
            setting, f"target type {kind!r} built a {type(target).__name__}, not a Target"
        )
    return target
