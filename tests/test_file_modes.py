"""File modes: what zonefan creates is not readable by every local user whatever the umask,
and a file holding a secret that others can read or write is refused, by every command,
before anything is changed.

The store and its -wal/-shm (and the sync sidecar's state file) are created 0640, or
narrower when the umask says so; the key directory 0700 with 0600 files. A config file with
an inline secret (``[key.NAME] secret``, a target's ``api-key``) and a ``secret-file`` must
be 0600 (or narrower): the error names the file, the mode found and `chmod 600 PATH`.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nameserver.store.store import Store
from settings import SettingsError, load_toml
from settings.files import DATA_FILE_MODE, create_data_file
from settings.secrets import private_mode_problem
from sync.config import load_sync_config
from sync.errors import SyncConfigError
from sync.state import SyncState
from tests.servers import _clean_env
from tests.tools import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"
SECRET = base64.b64encode(b"zonefan-file-mode-test-secret-0123").decode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def cli(
    cwd: Path, *args: str, mask: int = 0o022, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``zonefan ARGS`` run as a user runs it: in ``cwd`` (so ./zonefan.toml is read), with
    the umask ``mask``."""
    return subprocess.run(
        [sys.executable, "-m", "zonefan.cli", *args],
        cwd=cwd,
        env={**_clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        umask=mask,
        check=False,
    )


# -- files zonefan creates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "expected"),
    [(0o000, 0o640), (0o002, 0o640), (0o022, 0o640), (0o027, 0o640), (0o077, 0o600)],
)
def test_the_store_and_its_wal_and_shm_are_0640_or_what_a_stricter_umask_leaves(
    tmp_path: Path, mask: int, expected: int
) -> None:
    db = tmp_path / "z.db"
    with umask(mask), Store(db) as store:
        assert store.zone_names() == []
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files] == ["z.db", "z.db-shm", "z.db-wal"]  # open: WAL mode
        assert {f.name: mode_of(f) for f in files} == dict.fromkeys(
            ("z.db", "z.db-shm", "z.db-wal"), expected
        )


def test_the_sync_state_file_is_created_as_the_store(tmp_path: Path) -> None:
    with umask(0o000):
        state = SyncState(tmp_path / "sync.db")
    try:
        modes = {f.name: mode_of(f) for f in tmp_path.iterdir()}
    finally:
        state.close()
    assert modes == dict.fromkeys(("sync.db", "sync.db-shm", "sync.db-wal"), DATA_FILE_MODE)


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "z.db"
    path.write_bytes(b"")
    path.chmod(0o600)
    assert not create_data_file(path)
    assert mode_of(path) == 0o600
    assert create_data_file(tmp_path / "new.db")
    with pytest.raises(FileNotFoundError):
        create_data_file(tmp_path / "missing" / "z.db")


def test_zone_import_and_sign_under_umask_022_leave_nothing_for_other_users(
    tmp_path: Path,
) -> None:
    """As a user runs it: `zonefan zone import`, then `zone sign` (private keys) and
    `serve`-free reads, all with the common umask 022."""
    done = cli(tmp_path, "--db", "z.db", "zone", "import", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert mode_of(tmp_path / "z.db") == 0o640
    done = cli(tmp_path, "--db", "z.db", "zone", "sign", "example.test")
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "z.db.keys"
    assert mode_of(keys) == 0o700
    assert [mode_of(f) for f in keys.iterdir()] == [0o600]
    for name in ("z.db", "z.db-wal", "z.db-shm"):  # present or not once the CLI exited
        path = tmp_path / name
        assert not path.exists() or mode_of(path) == 0o640, name


# -- files that hold secrets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (0o644, "read"),
        (0o640, "read"),
        (0o620, "write"),
        (0o666, "read and write"),
        (0o604, "read"),
        (0o610, "execute"),
    ],
)
def test_the_one_check_names_the_file_the_mode_and_the_fix(
    tmp_path: Path, mode: int, what: str
) -> None:
    path = tmp_path / "f"
    path.write_text("x", encoding="utf-8")
    path.chmod(mode)
    assert private_mode_problem(path) == (
        f"{path} has mode {stat.filemode(path.stat().st_mode)}, so other users can {what} it; "
        f"`chmod 600 {path}`"
    )
    path.chmod(0o600)
    assert private_mode_problem(path) is None
    path.chmod(0o400)
    assert private_mode_problem(path) is None


def _config(tmp_path: Path, text: str, mode: int, name: str = "zonefan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f'[key.xfr]\nsecret = "{SECRET}"\n', "key.xfr.secret"),
        (f'db = "z.db"\n[key."a.b"]\nsecret = "{SECRET}"\n', 'key."a.b".secret'),
        ('[target.pdns]\ntype = "powerdns"\napi-key = "inline"\n', "target.pdns.api-key"),
    ],
)
def test_a_file_with_an_inline_secret_is_refused_when_loaded(
    tmp_path: Path, text: str, where: str
) -> None:
    config = _config(tmp_path, text, 0o644)
    with pytest.raises(SettingsError) as caught:
        load_toml(config)
    assert str(caught.value) == (
        f"{config}: {where}: an inline secret needs a private config file: {config} has mode "
        f"-rw-r--r--, so other users can read it; `chmod 600 {config}`"
    )
    config.chmod(0o600)
    assert load_toml(config).inline_secret() == where


def test_a_readable_file_without_inline_secrets_is_fine(tmp_path: Path) -> None:
    config = _config(tmp_path, '[key.xfr]\nsecret-env = "XFR"\n[serve]\nlisten = ["::1"]\n', 0o644)
    assert load_toml(config).inline_secret() is None


@pytest.mark.parametrize(
    "command",
    [
        ("zone", "import", str(EXAMPLE)),
        ("zone", "list"),
        ("serve", "--listen", "127.0.0.1:0"),
        ("config", "check"),
    ],
)
def test_every_command_refuses_a_config_with_an_exposed_secret_and_changes_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = _config(tmp_path, f'db = "z.db"\n[key.xfr]\nsecret = "{SECRET}"\n', 0o666)
    done = cli(tmp_path, *command)
    assert done.returncode == 2, done
    assert (
        "zonefan.toml: key.xfr.secret: an inline secret needs a private config file: "
        "zonefan.toml has mode -rw-rw-rw-, so other users can read and write it; "
        "`chmod 600 zonefan.toml`"
    ) in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zonefan.toml"]  # no store made
    assert mode_of(config) == 0o666  # and the file left as it was


def _sync_config(tmp_path: Path, key_mode: int) -> Path:
    key = tmp_path / "xfr.key"
    key.write_text(SECRET + "\n", encoding="utf-8")
    key.chmod(key_mode)
    return _config(
        tmp_path,
        'state = "sync.db"\n[primary]\naddress = "127.0.0.1:1"\nkey = "xfr"\n'
        'zones = ["example.test"]\n[key.xfr]\nsecret-file = "xfr.key"\n'
        '[target.t]\ntype = "rfc2136"\nserver = "127.0.0.1:2"\nkey = "xfr"\n',
        0o644,  # no inline secret: others may read it
        "sync.toml",
    )


def test_the_sidecars_secret_file_gets_the_servers_check(tmp_path: Path) -> None:
    sync = _sync_config(tmp_path, 0o644)
    key = tmp_path / "xfr.key"
    with pytest.raises(SyncConfigError) as caught:
        load_sync_config(sync, env={})
    assert str(caught.value) == (
        f"{sync}: key.xfr.secret-file: {key} has mode -rw-r--r--, so other users can read it; "
        f"`chmod 600 {key}`"
    )
    key.chmod(0o600)
    assert load_sync_config(sync, env={}).primary_key is not None


def test_sync_commands_refuse_an_exposed_secret_file_and_make_no_state(tmp_path: Path) -> None:
    sync = _sync_config(tmp_path, 0o660)
    done = cli(tmp_path, "--db", "z.db", "sync", "plan", "--config", str(sync))
    assert done.returncode == 1, done
    key = tmp_path / "xfr.key"
    assert (
        f"key.xfr.secret-file: {key} has mode -rw-rw----, so other users can read and write "
        f"it; `chmod 600 {key}`"
    ) in done.stderr
    assert not (tmp_path / "sync.db").exists()
