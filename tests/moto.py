"""moto's standalone server (``moto[server]``) for the tests of the AWS targets: an
implementation of the Route 53 API that nobody here wrote.

:func:`moto_server` starts moto's server as a subprocess on 127.0.0.1 with an
ephemeral port (one correction, see ``MOTO_MAIN``), waits until it answers, yields its
base URL and stops it by its PID (SIGTERM, then SIGKILL) in ``finally``. Every server
is a fresh, empty account. Missing moto skips the test, and fails it under CI.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.servers.process import stop_process
from tests.tools import free_port, in_ci

START_TIMEOUT = 30.0  # moto imports every service's backend on its first start
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before moto binds it
# moto 5.2's ListHealthChecks answers without IsTruncated and MaxItems, which the Route 53
# API reference ("ListHealthChecks", Response Elements) marks required and octodns-route53
# reads on every apply: the server runs with them added, and nothing else of moto changed.
MOTO_MAIN = """
import sys
from moto.route53.responses import Route53

listed = Route53.list_health_checks

def list_health_checks(self):
    result = listed(self)
    result.result.setdefault("IsTruncated", False)
    result.result.setdefault("MaxItems", "100")
    return result

Route53.list_health_checks = list_health_checks
from moto.server import main
main(sys.argv[1:])
"""


def require_moto() -> None:
    """Skip (fail under CI) when ``moto[server]`` is not installed."""
    missing = [m for m in ("moto", "flask", "werkzeug") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed: pip install -e '.[test]' brings moto[server]"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


def _environment(extra: Mapping[str, str]) -> dict[str, str]:
    """moto's environment: no proxy (the server is on 127.0.0.1), no credentials of the
    person running the tests, the region Route 53 signs for, and ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy")
    }
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    env["NO_PROXY"] = "127.0.0.1"
    env.update(extra)
    return env


def _ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Poll moto's own health endpoint until it answers; False if it exits first."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    return False


@contextlib.contextmanager
def moto_server(
    start_timeout: float = START_TIMEOUT, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A fresh moto server; yields its base URL (``http://127.0.0.1:PORT``). ``env`` adds
    moto's own settings (environment variables such as ``MOTO_ALLOW_NONEXISTENT_REGION``).
    Its IAM access control (``INITIAL_NO_AUTH_ACTION_COUNT``) is no check of Route 53
    signatures: moto 5.2 refuses botocore's own with SignatureDoesNotMatch."""
    require_moto()
    with tempfile.TemporaryDirectory(prefix="moto-") as workdir:
        log_path = Path(workdir) / "moto.log"
        output = ""
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", MOTO_MAIN, "-H", "127.0.0.1", "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                    env=_environment(env or {}),
                )
            try:
                if _ready(url, proc, time.monotonic() + start_timeout):
                    yield url
                    return
                output = log_path.read_text(encoding="utf-8", errors="replace")
            finally:
                stop_process(proc)
            if "in use" not in output.lower():
                break
        raise RuntimeError(
            f"moto did not answer on {url} within {start_timeout:.0f} s; its output:\n{output}"
        )
