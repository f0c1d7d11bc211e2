"""The exception hierarchy of the ``sync`` package: everything raised derives from
:class:`SyncError`, so a caller can catch one root."""

from __future__ import annotations

from settings import SettingsError


class SyncError(Exception):
    """Root of every error raised by the sync package."""


class SyncConfigError(SyncError, SettingsError):
    """The sync configuration is wrong; the message names the setting and what to do. A
    :class:`settings.SettingsError` too: one clause catches every configuration error."""

    def __init__(self, setting: str, message: str, source: str | None = None) -> None:
        SettingsError.__init__(self, setting, message, source)
        self.setting = setting


class SourceError(SyncError):
    """The zone could not be fetched from the primary (transfer refused, TSIG, timeout)."""


class PlanRefusedError(SyncError):
    """A plan broke a safety rule; nothing was applied. ``--force`` overrides it."""


class CapabilityError(SyncError):
    """A target cannot carry what the zone needs (e.g. the signatures of a signed zone)."""

    def __init__(self, target: str, zone: str, reason: str) -> None:
        self.target = target
        self.zone = zone
        super().__init__(f"target {target} refused for zone {zone}: {reason}")


class TargetError(SyncError):
    """A target failed to read or apply. ``transient`` errors are retried with backoff;
    ``retry_after`` (seconds) is the provider's own hint, honoured when given."""

    def __init__(
        self,
        target: str,
        message: str,
        *,
        transient: bool = True,
        retry_after: float | None = None,
    ) -> None:
        self.target = target
        self.transient = transient
        self.retry_after = retry_after
        super().__init__(f"target {target}: {message}")


class TargetUnavailableError(TargetError):
    """The target could not be reached (connection refused, timeout, 5xx)."""


class TargetRateLimitedError(TargetError):
    """The target asked us to slow down (HTTP 429, DNS REFUSED under load)."""


class TargetRejectedError(TargetError):
    """The target refused the request itself (HTTP 4xx other than 429, UPDATE rcode):
    retrying the same request will not help until the data or the config changes."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(target, message, transient=False)
