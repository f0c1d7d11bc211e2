"""A real PowerDNS Authoritative server (``pdns_server``) for the sync tests.

It runs in the foreground with the gsqlite3 backend, its database built from the schema
file the pdns-backend-sqlite3 package ships, the HTTP API on its own ephemeral port, and
``secondary=yes`` so it can transfer zones from ``zonefan serve``. Configuration as measured
in ../shared/notes/powerdns-4.7.md.
"""

from __future__ import annotations

import glob
import json
import secrets
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import START_TIMEOUT, _Process
from tests.tools import free_port, in_ci, require_tool

SCHEMA_GLOBS = (
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql*",
)


def sqlite_schema() -> Path:
    """The gsqlite3 schema file of the installed package, or skip (fail under CI)."""
    candidates: list[str] = []
    try:
        listing = subprocess.run(
            ["dpkg", "-L", "pdns-backend-sqlite3"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        candidates += [p for p in listing.splitlines() if p.endswith("/schema.sqlite3.sql")]
    except OSError:
        pass  # no dpkg: fall back to the known locations
    for pattern in SCHEMA_GLOBS:
        candidates += sorted(glob.glob(pattern))
    for candidate in candidates:
        if candidate.endswith(".sql") and Path(candidate).is_file():
            return Path(candidate)
    reason = "the pdns-backend-sqlite3 schema file is not installed"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


class PdnsServer(_Process):
    """``pdns_server --config-dir=DIR`` serving DNS on ``dns_port`` and its HTTP API at
    ``api_url`` (key ``api_key``); ready once the API answers."""

    name = "pdns"

    def __init__(self, workdir: Path, start_timeout: float = START_TIMEOUT) -> None:
        super().__init__(workdir, start_timeout)
        self.binary = require_tool("pdns_server")
        self.schema = sqlite_schema()
        self.api_key = secrets.token_hex(16)
        self.api_port = 0
        self.db_path = workdir / "pdns.db"

    @property
    def dns_port(self) -> int:
        """The port pdns answers DNS on (UDP and TCP)."""
        return self.port

    @property
    def api_url(self) -> str:
        """The webserver's base URL (the API lives under /api/v1)."""
        return f"http://127.0.0.1:{self.api_port}"

    def _prepare(self) -> None:
        self.api_port = free_port()
        if not self.db_path.exists():  # a restart keeps the zones
            with sqlite3.connect(self.db_path) as db:
                db.executescript(self.schema.read_text(encoding="utf-8"))
        d = self.workdir
        (d / "pdns.conf").write_text(
            "\n".join(
                [
                    "launch=gsqlite3",
                    f"gsqlite3-database={self.db_path}",
                    "gsqlite3-dnssec=yes",
                    "local-address=127.0.0.1",
                    f"local-port={self.port}",
                    "api=yes",
                    f"api-key={self.api_key}",
                    "webserver=yes",
                    "webserver-address=127.0.0.1",
                    f"webserver-port={self.api_port}",
                    "webserver-allow-from=127.0.0.1",
                    "secondary=yes",
                    "allow-notify-from=127.0.0.1",
                    f"socket-dir={d}",
                    "guardian=no",
                    "daemon=no",
                    "disable-syslog=yes",
                    "loglevel=6",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [self.binary, f"--config-dir={self.workdir}"]

    def _wait_ready(self) -> bool:
        """Ready once the API answers with our key (it comes up after the DNS listener)."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _ = self.api("GET", "", timeout=0.5)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                return True
            time.sleep(0.05)
        return False

    def api(
        self, method: str, path: str, body: Any = None, timeout: float = 10.0
    ) -> tuple[int, Any]:
        """A request to ``/api/v1/servers/localhost/PATH``: (status, decoded JSON or None)."""
        url = f"{self.api_url}/api/v1/servers/localhost"
        if path:
            url += "/" + path.lstrip("/")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("X-API-Key", self.api_key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")
