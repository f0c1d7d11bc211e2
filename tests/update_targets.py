"""Real DNS servers acting as an RFC 2136 UPDATE provider for the sync tests: knotd and
named serving one zone as primary from a zone file, accepting TSIG-signed UPDATE and AXFR.

Like the servers of :mod:`tests.servers` they run on 127.0.0.1 with an ephemeral port and
private files, and are stopped by their PID.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tests.servers import (
    START_TIMEOUT,
    XfrKey,
    _Controlled,
    knot_conf_head,
    named_conf_head,
    rndc_command,
)
from tests.tools import require_tool


class _UpdatePrimary(_Controlled):
    """A primary for ``zone`` loaded from a copy of ``zone_file``, allowing UPDATE and AXFR
    signed with ``key`` from 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        zone: str,
        zone_file: Path,
        key: XfrKey,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        super().__init__(workdir, start_timeout)
        self.zone = zone.rstrip(".") + "."
        self.zone_path = workdir / f"{self.zone}zone"
        # A copy: the server may write to it (BIND's journal sits beside it).
        shutil.copyfile(zone_file, self.zone_path)
        self.key = key

    def _probe_name(self) -> str:
        return self.zone

    def _wait_ready(self) -> bool:
        """Ready once the zone itself is served (BIND answers SERVFAIL before it loads)."""
        if not super()._wait_ready():
            return False
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.zone_serial() is not None:
                return True
            time.sleep(0.05)
        return False

    def zone_serial(self) -> int | None:
        """The SOA serial served for the zone now (None: no authoritative answer)."""
        return self.serial(self.zone)


class KnotUpdatePrimary(_UpdatePrimary):
    """knotd as a primary without DNSSEC signing (``dnssec-signing: off``, its default), so
    DNSSEC records arriving by UPDATE are plain data to it."""

    name = "knot"

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        (d / "storage").mkdir(exist_ok=True)
        self.conf = d / "knot.conf"
        self.conf.write_text(
            knot_conf_head(d, self.port, k)
            + f"""
acl:
  - id: provider
    address: 127.0.0.1
    key: {k.name}
    action: [transfer, update]

template:
  - id: default
    storage: "{d}/storage"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes
    dnssec-signing: off
    semantic-checks: off

zone:
  - domain: {self.zone}
    file: "{self.zone_path}"
    acl: provider
""",
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("knotd"), "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return [require_tool("knotc"), "-c", str(self.conf), "-s", str(self.workdir / "knot.sock")]


class BindUpdatePrimary(_UpdatePrimary):
    """named (``-g``) as a primary with ``dnssec-policy none``. ``policy`` picks how UPDATE
    is allowed: ``allow-update`` (the key may change anything) or ``update-policy``
    (``grant KEY zonesub ANY``)."""

    name = "bind"

    def __init__(
        self,
        workdir: Path,
        zone: str,
        zone_file: Path,
        key: XfrKey,
        start_timeout: float = START_TIMEOUT,
        policy: str = "allow-update",
    ) -> None:
        super().__init__(workdir, zone, zone_file, key, start_timeout)
        self.policy = policy

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        self.control_port, head = named_conf_head(d, self.port, k)
        if self.policy == "update-policy":
            update = f"update-policy {{ grant {k.name} zonesub ANY; }};"
        else:
            update = f"allow-update {{ key {k.name}; }};"
        self.conf = d / "named.conf"
        self.conf.write_text(
            head
            + f"""zone "{self.zone}" {{
    type primary;
    file "{self.zone_path}";
    dnssec-policy none;
    {update}
    allow-transfer {{ key {k.name}; }};
}};
""",
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("named"), "-g", "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return rndc_command(self.workdir)
