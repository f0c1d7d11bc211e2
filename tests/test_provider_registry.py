"""Target types: built in, or registered by another distribution's entry point; unknown
keys refused by name; strict targets refuse what they cannot hold."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.config import parse_sync_config
from sync.errors import SyncConfigError
from sync.providers import build_target, registered
from sync.providers.testkit.memory import MemoryTarget
from sync.settings import TargetContext, check_fields

CTX = TargetContext({}, None, {})
PLUGIN = """
from sync.providers.base import Capabilities, DnssecMode
from sync.providers.testkit.memory import MemoryTarget

def build(name, section, ctx):
    caps = Capabilities(DnssecMode.NONE, batch_size=section.get("n", 1))
    return MemoryTarget(name, capabilities=caps)

def not_a_target(name, section, ctx):
    return object()
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution installed on sys.path that registers the types ``memory-plugin``,
    ``broken`` (a module that is not there), ``bogus`` (builds no Target) and
    ``rfc2136`` (a built-in name: ignored)."""
    (tmp_path / "zonefan_test_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "zonefan_test_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zonefan-test-plugin\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[zonefan.providers]\n"
        "memory-plugin = zonefan_test_plugin:build\n"
        "broken = zonefan_test_missing:build\n"
        "bogus = zonefan_test_plugin:not_a_target\n"
        "rfc2136 = zonefan_test_plugin:build\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("zonefan_test_plugin", None)


def test_a_distribution_registers_a_target_type(plugin: Path) -> None:
    types = registered()
    assert types["memory-plugin"] == "zonefan_test_plugin:build"
    assert types["rfc2136"] == "sync.providers.rfc2136:rfc2136_from_config"  # not replaced
    target = build_target("m", {"type": "memory-plugin", "n": 7}, CTX)
    assert isinstance(target, MemoryTarget) and target.capabilities.batch_size == 7


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("broken", r"registered as 'zonefan_test_missing:build', which cannot be loaded"),
        ("bogus", r"built a object, not a Target"),
        ("nope", r"unknown target type 'nope'; use one of: .*memory-plugin.*powerdns"),
    ],
)
def test_bad_target_types_are_refused_by_name(plugin: Path, kind: str, message: str) -> None:
    with pytest.raises(SyncConfigError, match=message) as caught:
        build_target("m", {"type": kind}, CTX)
    assert caught.value.setting == "target.m.type"


def test_unknown_keys_are_refused_with_the_key_named() -> None:
    section: dict[str, Any] = {"type": "x", "strict": True, "token-env": "T", "endpoint": "u"}
    check_fields(section, "target.t", ["endpoint"], secrets=["token"])
    with pytest.raises(SyncConfigError, match=r"unknown setting.*tokne-env") as caught:
        check_fields({**section, "tokne-env": "T"}, "target.t", ["endpoint"], secrets=["token"])
    assert caught.value.setting == "target.t.tokne-env"
    assert "token-file" in str(caught.value) and "endpoint" in str(caught.value)


def config(tmp_path: Path, target: str) -> str:
    return f"""
state = "{tmp_path / "s.db"}"
[primary]
address = "127.0.0.1:53"
zones = ["example.test"]
[target.t]
type = "rfc2136"
server = "127.0.0.1:53"
key = "k"
{target}
[key.k]
algorithm = "hmac-sha256"
secret-env = "K"
"""


def test_strict_is_read_from_the_target_table(tmp_path: Path) -> None:
    env = {"K": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}
    path = tmp_path / "sync.toml"

    def parse(extra: str) -> bool:
        raw = tomllib.loads(config(tmp_path, extra))
        return parse_sync_config(raw, path, env).targets["t"].strict

    assert parse("strict = true") and not parse("")
    with pytest.raises(SyncConfigError, match="true or false") as caught:
        parse('strict = "yes"')
    assert caught.value.setting == "target.t.strict"
