"""zonefan as a user runs it: the wheel installed in a fresh venv (tests/user_install.py),
commands run from a directory that is not the repository, servers queried with dig.

A clean command prints nothing on stderr: no library warning, no traceback. The Docker
image cannot be built here (no container engine runs in this sandbox), so its CMD and
HEALTHCHECK are read from the Dockerfile and run in the wheel's venv with the image's ENV.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import socket
import subprocess
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.zone
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.servers import ipv6_loopback_available
from tests.test_server_integration import dig
from tests.tools import PROJECT_ROOT, free_port, require_tool
from tests.user_install import (
    InstalledServer,
    UserInstall,
    dockerfile_env,
    image_pip_install,
    instruction,
)

ORIGIN = "user.test."
# An ordinary zone, with a template's SOA values (EXPIRE 14 d, TTLs up to a day).
ZONE = """\
$ORIGIN user.test.
$TTL 3600
@       86400 IN SOA ns1 hostmaster 2026010101 7200 3600 1209600 300
@       86400 IN NS  ns1
@       86400 IN NS  ns2.example.net.
@             IN MX  10 mail
@             IN TXT "v=spf1 mx -all"
ns1           IN A    192.0.2.53
ns1           IN AAAA 2001:db8::53
mail          IN A    192.0.2.25
www           IN A    192.0.2.80
www           IN AAAA 2001:db8::80
"""
WWW_A = "192.0.2.80"


def clean(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must succeed and print nothing on stderr."""
    assert done.returncode == 0, f"$ {shlex.join(done.args)}\n{done.stdout}{done.stderr}"
    assert done.stderr == "", f"$ {shlex.join(done.args)} printed on stderr:\n{done.stderr}"
    return str(done.stdout)


@pytest.fixture
def work(user_install: UserInstall, tmp_path: Path) -> Path:
    """A directory of the test, with the zone file in it."""
    (tmp_path / "user.test.zone").write_text(ZONE, encoding="utf-8")
    return tmp_path


@pytest.fixture
def signed(user_install: UserInstall, work: Path) -> Path:
    """The store (work/zonefan.db) holding the zone, signed with the default policy."""
    clean(user_install.run("zone", "import", "user.test.zone", cwd=work))
    clean(user_install.run("zone", "sign", ORIGIN, cwd=work))
    return work / "zonefan.db"


def serving(install: UserInstall, work: Path, *listen: str, **env: str) -> InstalledServer:
    """``zonefan serve`` with ``listen`` addresses (``{port}`` is filled in)."""

    def args(port: int) -> list[str]:
        return ["serve", *(a for spec in listen for a in ("--listen", spec.format(port=port)))]

    return InstalledServer(install, work, args, env=env)


# -- the installation ------------------------------------------------------------------------------


def test_runs_from_the_wheel_not_the_source_tree(user_install: UserInstall) -> None:
    site = user_install.site_packages
    assert user_install.venv in site.parents
    code = (
        "import json, nameserver, signer, sync, sync.providers, zonefan; "
        "print(json.dumps([m.__file__ for m in (nameserver, signer, sync, sync.providers, "
        "zonefan)]))"
    )
    for file in json.loads(user_install.run_python(code).stdout):
        assert site in Path(file).parents, f"{file} is not from the wheel's venv"
    assert PROJECT_ROOT not in user_install.home.parents
    # Not an editable install: pip records no direct URL pointing at a source tree.
    show = user_install.command([str(user_install.python), "-m", "pip", "show", "-f", "zonefan"])
    assert "__editable__" not in show.stdout and "Editable project location" not in show.stdout


def test_version_is_the_distributions(user_install: UserInstall) -> None:
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert clean(user_install.run("--version")) == f"zonefan {version}\n"


def test_help_of_every_command_is_clean(user_install: UserInstall) -> None:
    """`--help` of the root, every group and every subcommand, each in its own process (a
    library warning shows once per process), and `python -m zonefan.cli --help`."""
    walk = (
        "import json, click\n"
        "from zonefan.cli import main\n"
        "ctx = click.Context(main)\n"
        "def walk(cmd, path):\n"
        "    yield path\n"
        "    if isinstance(cmd, click.Group):\n"
        "        for name in cmd.list_commands(ctx):\n"
        "            yield from walk(cmd.get_command(ctx, name), [*path, name])\n"
        "print(json.dumps(list(walk(main, []))))\n"
    )
    paths: list[list[str]] = json.loads(user_install.run_python(walk).stdout)
    assert {"zone", "record", "keys", "sync", "serve", "healthcheck"} <= {p[0] for p in paths if p}
    assert len(paths) > 30
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda p: user_install.run(*p, "--help"), paths))
    for path, done in zip(paths, results, strict=True):
        out = clean(done)
        assert out.startswith("Usage: zonefan"), f"zonefan {' '.join(path)} --help:\n{out}"
    as_module = user_install.command([str(user_install.python), "-m", "zonefan.cli", "--help"])
    assert "Usage:" in clean(as_module)


# -- real work -------------------------------------------------------------------------------------


def test_zone_and_key_commands(user_install: UserInstall, work: Path) -> None:
    run = user_install.run
    assert "created with 10 records" in clean(run("zone", "import", "user.test.zone", cwd=work))
    listed = json.loads(clean(run("zone", "list", "--json", cwd=work)))
    assert [(z["zone"], z["records"]) for z in listed] == [(ORIGIN, 10)]
    assert clean(run("zone", "list", cwd=work)).startswith(ORIGIN)
    clean(run("zone", "export", ORIGIN, "-o", "exported.zone", cwd=work))
    exported = (work / "exported.zone").read_text(encoding="utf-8")
    assert dns.zone.from_text(exported, ORIGIN) == dns.zone.from_text(ZONE, ORIGIN)
    assert "activate CSK" in clean(run("zone", "sign", ORIGIN, cwd=work))
    keys = clean(run("keys", "list", ORIGIN, cwd=work))
    assert re.search(r"^\s*\d+\s+13\s+CSK\s+active\b", keys, re.M), keys
    ds = clean(run("keys", "ds", ORIGIN, cwd=work))
    record = rf"^;? *{re.escape(ORIGIN)} 86400 IN DS \d+ 13 2 [0-9a-f]{{64}}$"
    assert re.search(record, ds, re.M), ds
    assert (work / "zonefan.db.keys").is_dir()


def test_serve_answers_signed_and_keys_ds_matches_what_it_serves(
    user_install: UserInstall, signed: Path
) -> None:
    work = signed.parent
    with serving(user_install, work, "127.0.0.1:{port}") as server:
        d = dig("127.0.0.1", server.port, f"www.{ORIGIN}", "A", "+dnssec")
        assert d.status == "NOERROR" and "aa" in d.flags, d.text
        answer = [line.split() for line in d.sections["ANSWER"]]
        assert [rr[4] for rr in answer if rr[3] == "A"] == [WWW_A]
        assert any(rr[3] == "RRSIG" for rr in answer), d.text
        dnskeys = dig("127.0.0.1", server.port, ORIGIN, "DNSKEY")
        assert dnskeys.status == "NOERROR", dnskeys.text
        served = "\n".join(dnskeys.sections["ANSWER"]) + "\n"
    # The DS the operator would hand to the registrar is the served KSK's (BIND's tool).
    dsfromkey = require_tool("dnssec-dsfromkey")
    made = subprocess.run(
        [dsfromkey, "-2", "-f", "-", ORIGIN],
        input=served,
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    )
    # A new key's DS is listed as coming (safe once its DNSKEY is cached everywhere).
    listed = json.loads(clean(user_install.run("keys", "ds", ORIGIN, "--json", cwd=work)))
    ours = "\n".join(entry["record"] for entry in listed["publish"] + listed["coming"])
    assert _ds_rdata(ours) == _ds_rdata(made.stdout), (ours, made.stdout)
    log = server.log_text()
    assert "Warning" not in log and "Traceback" not in log, log
    # The built-in policy signed it, and BIND's verifier agrees with every signature.
    exported = work / "exported.zone"
    clean(user_install.run("zone", "export", ORIGIN, "-o", str(exported), cwd=work))
    verify = subprocess.run(
        [require_tool("dnssec-verify"), "-z", "-o", ORIGIN, str(exported)],  # -z: a CSK
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _ds_rdata(text: str) -> set[tuple[str, ...]]:
    """(tag, algorithm, digest type, digest) of each DS line, the digest lowercased."""
    out: set[tuple[str, ...]] = set()
    for line in text.splitlines():
        words = line.split()
        if "DS" in words:
            tag, alg, dtype, *digest = words[words.index("DS") + 1 :]
            out.add((tag, alg, dtype, "".join(digest).lower()))
    return out


def test_sync_commands(user_install: UserInstall, signed: Path) -> None:
    work = signed.parent
    (work / "xfr.key").write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==\n")
    (work / "xfr.key").chmod(0o600)
    with serving(user_install, work, "127.0.0.1:{port}") as server:
        (work / "sync.toml").write_text(
            f'state = "sync.db"\n'
            f'[primary]\naddress = "127.0.0.1:{server.port}"\nzones = ["{ORIGIN}"]\n'
            f'[key.xfr]\nsecret-file = "xfr.key"\n'
            f'[target.knot]\ntype = "rfc2136"\nserver = "127.0.0.1:{free_port()}"\n'
            f'key = "xfr"\n',
            encoding="utf-8",
        )
        status = clean(user_install.run("sync", "status", "--config", "sync.toml", cwd=work))
    assert status.strip(), "sync status printed nothing"
    assert "Usage:" in clean(user_install.run("sync", "plan", "--help", cwd=work))


# -- listening -------------------------------------------------------------------------------------


def test_dual_stack_listen_on_one_port(user_install: UserInstall, signed: Path) -> None:
    """127.0.0.1 and the IPv6 wildcard on the same port: the IPv6 socket must not claim
    the IPv4 port too (IPV6_V6ONLY), or the second bind fails."""
    if not ipv6_loopback_available():
        pytest.skip("this host cannot bind ::1 (no IPv6 on the loopback)")
    with serving(user_install, signed.parent, "127.0.0.1:{port}", "[::]:{port}") as server:
        for host in ("127.0.0.1", "::1"):
            d = dig(host, server.port, f"www.{ORIGIN}", "A")
            assert d.status == "NOERROR" and WWW_A in "\n".join(d.sections["ANSWER"]), d.text
        log = server.log_text()
    assert f"listening on 127.0.0.1:{server.port}" in log
    assert f"listening on [::]:{server.port}" in log


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
def test_a_taken_port_is_named_with_the_reason_and_what_to_do(
    user_install: UserInstall, signed: Path, family: socket.AddressFamily, kind: socket.SocketKind
) -> None:
    if family == socket.AF_INET6 and not ipv6_loopback_available():
        pytest.skip("this host cannot bind ::1 (no IPv6 on the loopback)")
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, kind) as other:  # another server holds the port
        other.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            other.listen()
        port = int(other.getsockname()[1])
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        done = user_install.run("serve", "--listen", address, cwd=signed.parent)
    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
    # The UDP port may be free when the TCP one is taken (and the other way round).
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"Error: cannot listen on {address} ({proto}): {os.strerror(errno.EADDRINUSE)}; "
        "another server is using this port, pick another with --listen\n"
    )


def test_healthcheck_fails_on_silence_and_on_garbage(user_install: UserInstall) -> None:
    """Only a well-formed DNS reply to its query passes: a UDP port that swallows the query
    or answers with something else fails, and so does a port nobody listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        done = user_install.run("healthcheck", "--timeout", "0.3", address)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"Error: {address} is not answering DNS: no reply within 0.3 s\n"
        assert silent.recv(512), "the query was sent"
        # A reply that echoes the query's ID but is not DNS.
        proc = subprocess.Popen(
            [str(user_install.zonefan), "healthcheck", "--timeout", "5", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=user_install.home,
            env=user_install.env(),
        )
        silent.settimeout(10)
        query, client = silent.recvfrom(512)
        silent.sendto(query[:2] + b"\x80", client)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err.startswith(f"Error: {address} sent a reply that is not well-formed DNS: "), err
    nobody = f"127.0.0.1:{free_port()}"
    done = user_install.run("healthcheck", nobody)
    assert done.returncode == 1 and done.stderr == (
        f"Error: {nobody} is not answering DNS: nothing listens on that UDP port\n"
    )


# -- the Docker image's command --------------------------------------------------------------------


def _in_root(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def test_the_images_command_serves_what_the_operator_imports(
    user_install: UserInstall, work: Path
) -> None:
    """The Dockerfile's CMD, with its ENV and in its WORKDIR, on an empty volume: it
    creates the store, says it has no zones, answers (HEALTHCHECK passes); a zone imported
    meanwhile (as `docker exec` would) is served on IPv4 and IPv6; once it is stopped, the
    HEALTHCHECK fails. The only change: the port, a free one in place of the exposed one.
    The container's absolute paths (ENV values, VOLUME, WORKDIR) are taken below a
    directory standing for its root."""
    image_root = work / "root"
    exposed = {int(p.split("/")[0]) for p in instruction("EXPOSE").text.split()}
    assert len(exposed) == 1, "one port exposed, for UDP and TCP"
    image_port = exposed.pop()
    env = {
        k: str(_in_root(image_root, v)) if v.startswith("/") else v
        for k, v in dockerfile_env().items()
    }
    for volume in json.loads(v) if (v := instruction("VOLUME").text).startswith("[") else [v]:
        _in_root(image_root, volume).mkdir(parents=True)
    cwd = _in_root(image_root, instruction("WORKDIR").text)
    cwd.mkdir(parents=True, exist_ok=True)
    cmd, health = instruction("CMD").exec_form(), instruction("HEALTHCHECK").exec_form()
    assert cmd[0] == health[0] == "zonefan"

    def on(port: int, argv: list[str]) -> list[str]:
        return [a.replace(f":{image_port}", f":{port}") for a in argv[1:]]

    if any("[::]" in a for a in cmd) and not ipv6_loopback_available():
        pytest.skip("this host cannot bind ::1 (no IPv6 on the loopback)")
    server = InstalledServer(user_install, cwd, lambda port: on(port, cmd), env=env)
    with server:
        db = Path(env["ZONEFAN_DB"])
        assert db.exists(), "serve did not create the store in the volume"
        assert "no zones yet" in server.log_text()
        healthy = user_install.run(*on(server.port, health), cwd=cwd, env=user_install.env(env))
        assert "answers DNS" in clean(healthy)
        imported = user_install.run(
            "zone", "import", str(work / "user.test.zone"), cwd=cwd, env=user_install.env(env)
        )
        clean(imported)
        deadline = time.monotonic() + 10
        while server.serial(ORIGIN) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        for host in ("127.0.0.1", "::1"):
            d = dig(host, server.port, f"www.{ORIGIN}", "A")
            assert d.status == "NOERROR" and "aa" in d.flags, d.text
        port = server.port
    assert not server.running()
    down = user_install.run(*on(port, health), cwd=cwd, env=user_install.env(env))
    assert down.returncode == 1 and "is not answering DNS" in down.stderr, down.stderr
    log = server.log_text()
    assert "Warning" not in log and "Traceback" not in log, log


# -- the pinned dependencies -----------------------------------------------------------------------


def _constraints(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_versions_pyproject_allows() -> None:
    """Every runtime dependency of pyproject is pinned in constraints.txt within its range,
    and the image installs with that file."""
    pins = _constraints(PROJECT_ROOT / "constraints.txt")
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    for text in dependencies:
        req = Requirement(text)
        env = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned}, outside pyproject's {text!r}"
        )
    options = image_pip_install()
    flag = next(i for i, a in enumerate(options) if a in ("-c", "--constraint"))
    assert options[flag + 1] == "constraints.txt", options


def test_the_venv_holds_exactly_the_pinned_versions(user_install: UserInstall) -> None:
    """Installed as the image installs: every distribution besides zonefan and the
    installer is pinned, at its pinned version (nothing in the image floats)."""
    pins = _constraints(user_install.context / "constraints.txt")
    code = (
        "import json\nfrom importlib import metadata\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in metadata.distributions()}))"
    )
    installed: dict[str, str] = {
        canonicalize_name(name): version
        for name, version in json.loads(user_install.run_python(code).stdout).items()
    }
    for name in ("zonefan", "pip", "setuptools", "wheel"):
        installed.pop(name, None)
    rerun = "; run scripts/pin-constraints.py after testing the new dependencies"
    assert installed == {name: pins.get(name) for name in installed}, "not pinned" + rerun
    assert set(installed) == set(pins), "constraints.txt pins something not needed" + rerun
