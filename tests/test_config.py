"""zonefan.toml as an operator writes it: every key is checked (a typo is refused with its
key path, not ignored), and `zonefan config check` lists every problem of both files at
once, after opening every sync target and asking the primary."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, run_cli
from tests.tools import PROJECT_ROOT, example_store, free_port, require_tool, write_private

SECRET = base64.b64encode(b"config-check-secret-0123456789ab").decode()
EXAMPLE = PROJECT_ROOT / "zones" / "example.test.zone"


def _cli(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(tmp_path / "z.db", "--config", str(config), *args, check=False)


SERVE = ("serve", "--listen", "127.0.0.1:1")  # refused before it binds anything


@pytest.mark.parametrize(
    ("text", "command", "message"),
    [
        ("dbb = 'x.db'\n", ("zone", "list"), "dbb: unknown setting; did you mean 'db'?"),
        ("[serve]\ntcp_idle_timeout = 5\n", SERVE,
         "serve.tcp_idle_timeout: unknown setting; did you mean 'tcp-idle-timeout'?"),
        ("[serve]\nlisen = ['127.0.0.1:5353']\n", SERVE,
         "serve.lisen: unknown setting; did you mean 'listen'?"),
        ("[serve]\ntcp-idle-timeout = 'soon'\n", SERVE, "serve.tcp-idle-timeout: 'soon' is not a"),
        ("[zone.imprt]\nserial-policy = 'date'\n", ("zone", "list"),
         "zone.imprt: not a subcommand of `zonefan zone`"),
        ('[zone."example.test."]\nupdate-polcy = []\n', ("zone", "list"),
         'zone."example.test.".update-polcy: unknown setting; did you mean \'update-policy\'?'),
        ("catalog-zone = 5\n", ("zone", "list"), "catalog-zone: 5 is not a domain name"),
        (f'[key.xfr]\nsecret = "{SECRET}"\nalgoritm = "hmac-sha256"\n', SERVE,
         "key.xfr.algoritm: unknown setting; did you mean 'algorithm'?"),
    ],
)  # fmt: skip
def test_a_mistyped_key_is_refused_with_its_key_path(
    tmp_path: Path, text: str, command: tuple[str, ...], message: str
) -> None:
    config = write_private(tmp_path / "zonefan.toml", text)
    done = _cli(tmp_path, config, *command)
    assert done.returncode in (1, 2), done
    assert f"{config}: {message}" in done.stderr
    assert not (tmp_path / "z.db").exists()  # nothing was done


def test_command_tables_take_the_same_grammar_as_the_flags(tmp_path: Path) -> None:
    config = write_private(
        tmp_path / "zonefan.toml",
        "[zone.import]\nserial-policy = 'date'\n[serve]\ntcp-idle-timeout = '1.5m'\n",
    )
    done = _cli(tmp_path, config, "zone", "import", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    listed = json.loads(_cli(tmp_path, config, "zone", "list", "--json").stdout)
    assert [z["serial_policy"] for z in listed] == ["date"]


def test_inline_secret_in_a_readable_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "zonefan.toml"
    config.write_text(
        f'[key.xfr]\nsecret = "{SECRET}"\n[[secondary]]\naddress = "127.0.0.1"\nkey = "xfr"\n',
        encoding="utf-8",
    )
    config.chmod(0o644)
    example_store(tmp_path / "z.db", signed=False)
    done = _cli(tmp_path, config, "serve", "--listen", f"127.0.0.1:{free_port()}")
    assert done.returncode == 2  # refused as the file is loaded, like any bad --config
    assert f"{config}: key.xfr.secret: an inline secret needs a private config file" in done.stderr
    assert f"chmod 600 {config}" in done.stderr


def test_config_check_lists_every_problem_at_once(tmp_path: Path) -> None:
    config = write_private(
        tmp_path / "zonefan.toml",
        f"""
[key.xfr]
secret = "{SECRET}"
[[secondary]]
address = "192.0.2.300"
[policy.fast]
rrsig-validity = "1d"
rrsig-refresh = "2d"
[serve]
tcp-idle = 5
""",
    )
    sync = write_private(
        tmp_path / "sync.toml",
        """
[primary]
address = "127.0.0.1:1"
key = "xfr"
zones = ["example.test"]
[target.a]
type = "powerdns"
[target.b]
type = "rfc2136"
server = "127.0.0.1:2"
key = "nokey"
""",
    )
    done = _cli(tmp_path, config, "config", "check", "--sync", str(sync))
    assert done.returncode == 1, done
    problems = done.stderr
    assert "5 problem(s):" in problems or "problem(s):" in problems
    for expected in (
        f"{config}: serve.tcp-idle: unknown setting; did you mean 'tcp-idle-timeout'?",
        f"{config}: secondary#1.address: '192.0.2.300' is not an address or network",
        "[policy.fast] rrsig-refresh: must be shorter than rrsig-validity",
        f"{sync}: target.a.url",
        f"{sync}: target.b.key: unknown TSIG key 'nokey'",
        f"{sync}: primary: example.test.:",
    ):
        assert expected in problems, (expected, problems)
    assert "key xfr: hmac-sha256, fudge 5m" in done.stdout  # what was found is shown too


@pytest.mark.external
def test_config_check_opens_the_targets_and_asks_the_primary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tool("pdns_server")
    db = example_store(tmp_path / "z.db", signed=False)
    config = write_private(
        tmp_path / "zonefan.toml",
        f'[key.xfr]\nsecret = "{SECRET}"\n[[secondary]]\naddress = "127.0.0.1"\nkey = "xfr"\n',
    )
    with (
        ZonefanServer(
            tmp_path / "primary", db=db, probe_name="example.test.", config=config
        ) as primary,
        PdnsServer(tmp_path / "pdns") as pdns,
    ):
        monkeypatch.setenv("PDNS_TEST_KEY", pdns.api_key)
        sync = tmp_path / "sync.toml"
        text = f"""
[primary]
address = "127.0.0.1:{primary.port}"
key = "xfr"
zones = ["example.test"]
[target.pdns]
type = "powerdns"
url = "{pdns.api_url}"
api-key-env = "PDNS_TEST_KEY"
dns = "127.0.0.1:{pdns.dns_port}"
"""
        sync.write_text(text, encoding="utf-8")
        good = run_cli(
            db, "--config", str(config), "config", "check", "--sync", str(sync), "--json"
        )
        found = json.loads(good.stdout)
        assert found["problems"] == []
        lines = found["found"][str(sync)]
        assert any(
            line.startswith(
                f"primary 127.0.0.1:{primary.port} with key xfr.: example.test. serial "
            )
            for line in lines
        ), lines
        assert "target pdns (PowerDnsTarget): opened; every zone" in lines
        monkeypatch.setenv("PDNS_TEST_KEY", "wrong")
        bad = run_cli(
            db, "--config", str(config), "config", "check", "--sync", str(sync), check=False
        )
        assert bad.returncode == 1
        assert (
            f"{sync}: target.pdns.api-key-env: the PowerDNS API at {pdns.api_url} rejected"
            in bad.stderr
        )


def test_config_check_flags_a_store_every_local_user_can_read(tmp_path: Path) -> None:
    """A store made before zonefan created it 0640 keeps its mode: config check says so."""
    config = write_private(tmp_path / "zonefan.toml", "")
    db = tmp_path / "z.db"
    run_cli(db, "zone", "import", str(EXAMPLE), cwd=tmp_path)
    assert db.stat().st_mode & 0o007 == 0  # 0640, or narrower under a strict umask
    assert _cli(tmp_path, config, "config", "check").returncode == 0
    db.chmod(0o644)
    done = _cli(tmp_path, config, "config", "check")
    assert done.returncode == 1, done
    assert f"store {db} has mode -rw-r--r--" in done.stderr
    assert f"`chmod 640 {db}*`" in done.stderr
