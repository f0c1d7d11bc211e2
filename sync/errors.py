"""The exception hierarchy of the ``sync`` package: everything raised derives from
:class:`SyncError`, so a caller can catch one root."""

from __future__ import annotations

from typing import ClassVar, Literal

from settings import SettingsError

RefusalKind = Literal["capability", "rejected", "safety"]


class SyncError(Exception):
    """Root of every error raised by the sync package."""


class SyncConfigError(SyncError, SettingsError):
    """The sync configuration is wrong; the message names the setting and what to do. A
    :class:`settings.SettingsError` too: one clause catches every configuration error."""

    def __init__(self, setting: str, message: str, source: str | None = None) -> None:
        SettingsError.__init__(self, setting, message, source)
        self.setting = setting


class SourceError(SyncError):
    """The zone could not be fetched from the primary (transfer refused, TSIG, timeout).
    ``reason`` is the cause alone, worded after "primary ADDR" ("did not answer: ...")."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        self.reason = reason if reason is not None else message
        super().__init__(message)


class RefusedError(SyncError):
    """A push that retrying cannot make succeed: the same zone to the same target with the
    same config is refused again. It is a state of that (target, zone), not a failure to
    retry: it is tried again only when something that could change the verdict changes (a
    new serial, a restart, `sync apply`; ``--force`` for a ``safety`` refusal)."""

    kind: ClassVar[RefusalKind]


class PlanRefusedError(RefusedError):
    """A plan broke a safety rule; nothing was applied. ``--force`` overrides it."""

    kind = "safety"


class CapabilityError(RefusedError):
    """A target cannot carry what the zone needs (e.g. the signatures of a signed zone)."""

    kind = "capability"

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


class TargetRejectedError(TargetError, RefusedError):
    """The target refused the request itself (HTTP 4xx other than 429, UPDATE rcode):
    retrying the same request will not help until the data or the config changes."""

    kind = "rejected"

    def __init__(self, target: str, message: str) -> None:
        super().__init__(target, message, transient=False)
