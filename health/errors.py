"""The exception root of the health package: everything it raises derives from
:class:`HealthError`."""

from __future__ import annotations

from settings import SettingsError


class HealthError(Exception):
    """Root of every error raised by the ``health`` package."""


class HealthConfigError(HealthError, SettingsError):
    """A ``[pool.NAME]`` or ``[health]`` setting that is missing, malformed or
    inconsistent; a :class:`settings.SettingsError` too, so one clause catches every
    configuration error."""

    @classmethod
    def of(cls, exc: SettingsError) -> HealthConfigError:
        """A settings error as the health package's own (same file, key path, reason)."""
        if isinstance(exc, HealthConfigError):
            return exc
        return cls(exc.path, exc.reason, exc.source)


class ReportError(HealthError):
    """A check result from a remote checker that cannot be taken: malformed, from an
    unknown checker, about an unknown pool or member, or timed outside the window."""
