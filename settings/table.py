"""Tables of a TOML settings file, read with every key checked and every error located.

A :class:`Table` knows its key path (``target.pdns``) and its :class:`Source` (the file, its
directory for relative paths, whether only its owner can read it, the environment), so an
error says ``/etc/zonefan/sync.toml: target.pdns.dns: ...`` without each parser passing
those along.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from settings.errors import SettingsError
from settings.secrets import CREDENTIALS, INLINE_SECRET_PROBLEM, private_mode_problem

T = TypeVar("T")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MISSING: Any = object()


@dataclass(frozen=True)
class Source:
    """Where settings come from: a file (None for built-in or test data) and the
    environment that ``*-env`` settings read."""

    path: Path | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def name(self) -> str | None:
        return None if self.path is None else str(self.path)

    def resolve(self, text: str) -> Path:
        """A path written in the file: relative paths are relative to the file."""
        path = Path(text).expanduser()
        if path.is_absolute() or self.path is None:
            return path
        return self.path.parent / path

    def private_problem(self) -> str | None:
        """Why the file may not hold a secret (others can read it), or None."""
        if self.path is None:
            return None
        try:
            return private_mode_problem(self.path)
        except OSError as exc:
            return f"cannot check the mode of {self.path}: {exc.strerror}"


def load_toml(path: Path, env: Mapping[str, str] | None = None) -> Table:
    """The file as a :class:`Table`; SettingsError when it cannot be read or parsed."""
    source = Source(path, dict(os.environ) if env is None else env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError("", f"cannot read the file: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError as exc:
        raise SettingsError("", f"not UTF-8 text: {exc}", str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("", f"not valid TOML: {exc}", str(path)) from None
    table = Table(data, "", source)
    secret = table.inline_secret()
    if secret is not None:
        # Checked here, not only where the secret is used: every command reads the whole
        # file, and a secret others can read is exposed whichever command runs.
        problem = source.private_problem()
        if problem is not None:
            raise SettingsError(secret, f"{INLINE_SECRET_PROBLEM}: {problem}", source.name)
    return table


class Table:
    """One TOML table: typed reads that name the key path on error."""

    def __init__(self, data: Mapping[str, Any], path: str, source: Source | None = None) -> None:
        self.data = data
        self.path = path
        self.source = source or Source()

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def where(self, key: str) -> str:
        """The key path of ``key`` in this table, as TOML writes it (``zone."a.test."``)."""
        if not key:
            return self.path
        if not _BARE_KEY.fullmatch(key):
            key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{self.path}.{key}" if self.path else key

    def inline_secret(self) -> str | None:
        """The key path of the first secret written inline in this table or those in it
        (:data:`settings.secrets.CREDENTIALS`), or None."""
        for key, value in self.data.items():
            if isinstance(value, dict):
                found = Table(value, self.where(key), self.source).inline_secret()
                if found is not None:
                    return found
            elif key in CREDENTIALS and isinstance(value, str):
                return self.where(key)
        return None

    def error(self, key: str, reason: str) -> SettingsError:
        return SettingsError(self.where(key), reason, self.source.name)

    def allow(self, keys: Iterable[str]) -> None:
        """Refuse any key not in ``keys``, naming it (and the known key it resembles)."""
        known = sorted(keys)
        for key in self.data:
            if key in known:
                continue
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.error(key, f"unknown setting{hint} (known here: {', '.join(known)})")

    def get(self, key: str, parse: Callable[[Any], T], default: T = _MISSING) -> T:
        """``parse`` of the value at ``key``; ``default`` when absent (required when no
        default is given). ``parse`` raises ValueError with the reason."""
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, "required, but not set")
            return default
        try:
            return parse(self.data[key])
        except SettingsError:
            raise
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def optional(self, key: str, parse: Callable[[Any], T]) -> T | None:
        """``parse`` of the value at ``key``, None when absent."""
        if key not in self.data:
            return None
        return self.get(key, parse)

    def table(self, key: str, required: bool = False) -> Table | None:
        """The sub-table at ``key`` (None when absent and not ``required``)."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(key, f"required: add a [{self.where(key)}] table")
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table: [{self.where(key)}]")
        return Table(value, self.where(key), self.source)

    def tables(self) -> list[tuple[str, Table]]:
        """Every value of this table as a named sub-table (``[key.NAME]``)."""
        out = []
        for name, value in self.data.items():
            if not isinstance(value, dict):
                raise self.error(name, f"must be a table: [{self.where(name)}]")
            out.append((name, Table(value, self.where(name), self.source)))
        return out

    def entries(self, key: str) -> list[Table]:
        """The array of tables at ``key`` (``[[secondary]]``); entry n is ``key#n``."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"must be an array of tables: [[{self.where(key)}]]")
        return [Table(v, f"{self.where(key)}#{i}", self.source) for i, v in enumerate(value, 1)]


def collect(checks: Iterable[Callable[[], object]]) -> list[SettingsError]:
    """Run every check; the SettingsErrors they raise, in order (for a command that lists
    every problem rather than the first)."""
    problems: list[SettingsError] = []
    for check in checks:
        try:
            check()
        except SettingsError as exc:
            problems.append(exc)
    return problems
