"""The README's first command, `scripts/demo.sh`, as a new user runs it: in a fresh clone,
making its own venv, importing and signing the example zone and serving it; `dig` then gets
a signed, authoritative answer. (The second command, `scripts/test.sh`, is what CI runs on a
clean clone.)"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.tools import PROJECT_ROOT, free_port, in_ci, require_tool
from tests.wait import wait_until

pytestmark = pytest.mark.external

START_TIMEOUT = 600.0  # seconds: a venv and a pip install of the dependencies


def _clone(tmp_path: Path) -> Path:
    """A fresh clone of this checkout's committed state (what a user gets)."""
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT_ROOT), str(clone)],
        check=True,
        timeout=120,
    )
    return clone


def _user_env() -> dict[str, str]:
    """A login shell's environment: no venv active, no ZONEFAN_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONEFAN_", "VIRTUAL_ENV"))}
    venv_bin = str(Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.pop("PYTHONPATH", None)
    return env


def test_demo_from_a_fresh_clone_serves_the_signed_example_zone(tmp_path: Path) -> None:
    dig = require_tool("dig")
    if not (PROJECT_ROOT / ".git").exists():
        reason = "not a git checkout: nothing to clone"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    clone = _clone(tmp_path)
    port = free_port()
    env = {**_user_env(), "ZONEFAN_DEMO_LISTEN": f"127.0.0.1:{port}"}
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            ["scripts/demo.sh"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the script and the server it execs
        )
    answer = ""

    def up() -> bool:
        """Served (or the script ended: the assertions below say why)."""
        nonlocal answer
        if demo.poll() is not None:
            return True
        if "serving on" not in log.read_text(errors="replace"):
            return False
        answer = subprocess.run(
            [dig, "@127.0.0.1", "-p", str(port), "+dnssec", "+norecurse",
             "www.example.test", "A"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout  # fmt: skip
        return "status: NOERROR" in answer

    try:
        wait_until(up, START_TIMEOUT, interval=0.5)
        text = log.read_text(errors="replace")
        assert demo.poll() is None, f"demo.sh exited {demo.returncode}:\n{text[-3000:]}"
        assert "status: NOERROR" in answer, text[-3000:]
        assert " aa" in answer.split("flags:")[1].split(";", maxsplit=1)[0], answer
        assert "RRSIG" in answer, answer
        assert "zone example.test.: created" in text
        # pip's own notes about this machine's index settings may precede it; nothing of
        # zonefan's or its libraries' (the install is not editable: no setuptools notice).
        for word in ("DeprecationWarning", "BuildBackendWarning", "Traceback"):
            assert word not in text, text[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
