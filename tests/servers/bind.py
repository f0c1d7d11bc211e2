"""BIND (``named``) as a secondary of zonefan."""

from __future__ import annotations

from pathlib import Path

from tests.servers.secondary import XfrKey, _Secondary
from tests.tools import free_port, require_tool


def named_control(d: Path, secret: str) -> tuple[int, str]:
    """A local rndc channel for a private named in ``d``: writes ``d/rndc.conf`` and
    returns the control port and the named.conf lines for its key and ``controls``."""
    port = free_port()
    key = f'key "rndc-key" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'
    (d / "rndc.conf").write_text(
        f"""{key}options {{
    default-key "rndc-key";
    default-server 127.0.0.1;
    default-port {port};
}};
""",
        encoding="utf-8",
    )
    controls = (
        f"controls {{\n    inet 127.0.0.1 port {port} allow {{ 127.0.0.1; }} "
        'keys { "rndc-key"; };\n};\n'
    )
    return port, key + controls


def named_conf_head(d: Path, port: int, key: XfrKey, options: str = "") -> tuple[int, str]:
    """named.conf's options (plus ``options``), the TSIG ``key`` and an rndc channel for a
    private named in ``d`` on 127.0.0.1 port ``port``: (control port, text)."""
    control_port, control = named_control(d, key.secret)
    text = f"""options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
    {options}}};
key "{key.name}" {{ algorithm {key.algorithm}; secret "{key.secret}"; }};
{control}"""
    return control_port, text


def rndc_command(d: Path) -> list[str]:
    """rndc for the named whose control channel :func:`named_control` set up in ``d``."""
    return [require_tool("rndc"), "-c", str(d / "rndc.conf")]


class BindSecondary(_Secondary):
    """named (``-g``, foreground) as a secondary, rndc over a local control channel."""

    name = "bind"

    def _prepare(self) -> None:
        d = self.workdir
        k = self.key
        self.control_port, head = named_conf_head(
            d, self.port, k, "allow-transfer { none; };\n    request-ixfr yes;\n"
        )
        zones = "".join(
            f'zone "{zone}" {{ type secondary; file "{d}/{zone}db"; '
            f"primaries {{ 127.0.0.1 port {self.primary_port} key {k.name}; }}; "
            f"allow-notify {{ 127.0.0.1; }}; }};\n"
            for zone in self.zones
        )
        self.conf = d / "named.conf"
        self.conf.write_text(
            head + zones,
            encoding="utf-8",
        )

    def _command(self) -> list[str]:
        return [require_tool("named"), "-g", "-c", str(self.conf)]

    def _control_command(self) -> list[str]:
        return rndc_command(self.workdir)

    def refresh(self, zone: str) -> None:
        self.control("refresh", zone)
