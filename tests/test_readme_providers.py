"""The README's provider examples as written: each `[target.*]` block of "The providers"
loads through the sidecar's config loader and builds its target (nothing is opened: no
request leaves the machine), and the octoDNS example says what to install when its plugin
is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sync.config import load_sync_config
from sync.errors import SyncConfigError
from sync.providers.cloudflare import CloudflareTarget
from sync.providers.desec import DesecTarget
from sync.providers.hetzner import HetznerTarget
from sync.providers.route53 import Route53Target
from tests.tools import PROJECT_ROOT

PRIMARY = """
state = "{state}"
[primary]
address = "127.0.0.1:5353"
zones = ["example.test"]
"""


def readme_blocks(marker: str) -> list[str]:
    """The README's ```toml blocks holding ``marker``."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL)
    found = [b for b in blocks if marker in b]
    assert found, f"no ```toml block with {marker!r} in the README"
    return found


def config_from(block: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """``block`` as a sync.toml beside a minimal [primary]; every `*-env` it names set, and
    every `*-file` it names created (at the same name under ``tmp_path``)."""
    env = {
        name: f"readme-credential-{name.lower()}" for name in re.findall(r'-env = "(\w+)"', block)
    }
    for path in re.findall(r'-file = "([^"]+)"', block):
        local = tmp_path / Path(path).name
        local.write_text("readme-credential-from-a-file\n", encoding="utf-8")
        local.chmod(0o600)
        block = block.replace(f'"{path}"', f'"{local}"')
    config = tmp_path / "sync.toml"
    config.write_text(PRIMARY.format(state=tmp_path / "sync.db") + block, encoding="utf-8")
    config.chmod(0o600)
    return config, env


def test_the_native_provider_examples_load_as_written(tmp_path: Path) -> None:
    (block,) = readme_blocks('type = "route53"')
    config, env = config_from(block, tmp_path)
    env |= {"AWS_ACCESS_KEY_ID": "AKIAREADMEEXAMPLE000", "AWS_SECRET_ACCESS_KEY": "readme-secret"}
    loaded = load_sync_config(config, env)
    kinds = {name: type(spec.target) for name, spec in loaded.targets.items()}
    assert kinds == {
        "aws": Route53Target,
        "cf": CloudflareTarget,
        "hetzner": HetznerTarget,
        "desec": DesecTarget,
    }
    assert not (tmp_path / "sync.db").exists()  # loading writes nothing


def test_the_octodns_example_names_what_to_install(tmp_path: Path) -> None:
    (block,) = readme_blocks('type = "octodns"')
    config, env = config_from(block, tmp_path)
    with pytest.raises(SyncConfigError) as caught:
        load_sync_config(config, env)
    assert caught.value.setting == "target.gandi.class"
    assert "octodns_gandi" in str(caught.value) and "pip install" in str(caught.value)
