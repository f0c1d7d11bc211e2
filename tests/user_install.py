"""zonefan installed the way a user installs it, for tests that run it that way.

The wheel is built from exactly what the Dockerfile copies into the image (so a file the
image lacks is missed here too), installed non-editable with the pinned dependencies
(constraints.txt, as the image does) into a fresh venv outside the repository, and run from
a directory that is not the repository, without PYTHONPATH: the source tree cannot be
imported by accident. ``tests/conftest.py`` makes it the session fixture ``user_install``.

Building needs the build backend and the dependencies from a package index or pip's cache:
without them the tests skip with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import _Process
from tests.tools import PROJECT_ROOT, in_ci

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
BUILD_TIMEOUT = 600.0  # seconds for building the wheel and installing it with its deps
RUN_TIMEOUT = 120.0


# -- the Dockerfile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case) and its text after it."""

    keyword: str
    text: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form CMD/ENTRYPOINT (HEALTHCHECK: after its ``CMD``)."""
        text = self.text
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD ") :] if " CMD " in text else text
        args = json.loads(text)
        assert isinstance(args, list) and all(isinstance(a, str) for a in args), self.text
        return args


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, with continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = " ".join((pending + line).split())
        pending = ""
        keyword, _, text = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), text))
    return instructions


def instruction(keyword: str) -> Instruction:
    """The last instruction with ``keyword`` (the one in effect)."""
    found = [i for i in dockerfile() if i.keyword == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def dockerfile_env() -> dict[str, str]:
    """Every ENV variable the Dockerfile sets (``ENV K=V K2=V2`` or ``ENV K V``)."""
    env: dict[str, str] = {}
    for ins in dockerfile():
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.text)
        if "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def build_context(into: Path) -> Path:
    """Copy what the Dockerfile's COPY instructions take from the repository into ``into``
    (a build context with nothing else in it, no build/ left by earlier builds)."""
    for ins in dockerfile():
        if ins.keyword != "COPY":
            continue
        *sources, dest = shlex.split(ins.text)
        assert not any(s.startswith("--") for s in sources), f"unsupported: COPY {ins.text}"
        target = into / dest
        for source in sources:
            path = PROJECT_ROOT / source
            if path.is_dir():
                to = target if len(sources) == 1 and not dest.endswith("/") else target / source
                shutil.copytree(path, to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                to = target / path.name if dest.endswith("/") or len(sources) > 1 else target
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, to)
    return into


def image_pip_install() -> list[str]:
    """The arguments of the image's ``pip install`` (from its RUN instruction)."""
    for ins in dockerfile():
        if ins.keyword != "RUN":
            continue
        for step in ins.text.split("&&"):
            words = shlex.split(step)
            if words[:2] == ["pip", "install"]:
                return words[2:]
    raise AssertionError("the Dockerfile runs no `pip install`")


# -- the installation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserInstall:
    """zonefan in a fresh venv, installed from its wheel."""

    venv: Path
    wheel: Path
    context: Path  # the build context the wheel was made from (its constraints.txt)
    home: Path  # a directory outside the repository to run commands in

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def zonefan(self) -> Path:
        return self.bin / "zonefan"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def site_packages(self) -> Path:
        done = self.run_python("import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(done.stdout.strip())

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A user's environment: the venv's bin first on PATH, nothing that points Python at
        the repository, no ZONEFAN_* settings of the caller; then ``extra``."""
        drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
        env = {
            k: v for k, v in os.environ.items() if k not in drop and not k.startswith("ZONEFAN_")
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = RUN_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """``zonefan ARGS...`` (the console script) in ``cwd`` (default: ``home``)."""
        return self.command([str(self.zonefan), *args], cwd=cwd, env=env, timeout=timeout)

    def run_python(self, code: str) -> subprocess.CompletedProcess[str]:
        """The venv's ``python -c CODE`` in ``home``; raises when it fails."""
        done = self.command([str(self.python), "-c", code])
        assert done.returncode == 0, done.stderr
        return done

    def command(
        self,
        argv: Sequence[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = RUN_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            cwd=cwd or self.home,
            env=env if env is not None else self.env(),
            timeout=timeout,
            check=False,
        )


def _cannot_build(what: str, done: subprocess.CompletedProcess[str]) -> None:
    reason = f"{what} failed (no package index or cache?):\n{done.stderr[-2000:]}"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def install_wheel(work: Path) -> UserInstall:
    """Build the wheel from the Dockerfile's build context, make a fresh venv and install
    the wheel (not editable) with the image's constraints. ``work`` must lie outside the
    repository."""
    assert PROJECT_ROOT not in work.resolve().parents, "the venv must not be in the repository"
    context = build_context(work / "context")
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", str(context), "--no-deps", "-q", "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    wheels = sorted(dist.glob("zonefan-*.whl"))
    if built.returncode != 0 or len(wheels) != 1:
        _cannot_build("pip wheel", built)
    venv = work / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=BUILD_TIMEOUT)
    # The image's pip options, with the wheel in place of its source directory (and pip's
    # cache allowed: the image leaves it out only to stay small).
    options = [a for a in image_pip_install() if a not in (".", "--no-cache-dir")]
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *options, str(wheels[0])],
        capture_output=True,
        text=True,
        cwd=context,  # where the image runs it: relative paths (the constraints) resolve
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if installed.returncode != 0:
        _cannot_build("pip install of the wheel", installed)
    home = work / "home"
    home.mkdir()
    return UserInstall(venv=venv, wheel=wheels[0], context=context, home=home)


class InstalledServer(_Process):
    """``zonefan ARGS...`` from the wheel's venv, started on a free port (``args`` makes the
    arguments for it) until it answers on 127.0.0.1, stopped by PID."""

    name = "zonefan"

    def __init__(
        self,
        install: UserInstall,
        workdir: Path,
        args: Callable[[int], list[str]],
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.install = install
        self.args = args
        self.extra_env = env or {}

    def _command(self) -> list[str]:
        return [str(self.install.zonefan), *self.args(self.port)]

    def _env(self) -> dict[str, str]:
        return self.install.env(self.extra_env)
