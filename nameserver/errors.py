"""The exception hierarchy of the ``nameserver`` package: everything raised derives from
:class:`NameserverError`, so a caller can catch one root."""

from __future__ import annotations

from dataclasses import dataclass


class NameserverError(Exception):
    """Root of every error raised by the nameserver package."""


@dataclass(frozen=True)
class Problem:
    """One reason a zone or a change was refused.

    ``where`` is the origin of the offending record when it is known (``file:line`` for zone
    files, a field name for API input); ``owner`` is the owner name the problem is about.
    """

    message: str
    owner: str | None = None
    where: str | None = None

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        about = f"{self.owner}: " if self.owner else ""
        return f"{prefix}{about}{self.message}"


class ZoneValidationError(NameserverError):
    """A zone, or a change to it, breaks a rule; nothing was stored."""

    def __init__(self, zone: str, problems: list[Problem]) -> None:
        self.zone = zone
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"zone {zone} refused ({len(problems)} problem(s)):\n{lines}")


class SignedZoneDataError(ZoneValidationError):
    """Records to import hold the DNSSEC records of a signed zone (RRSIG, NSEC, DNSKEY...),
    which the signer makes itself: one problem, however many such records there are.

    ``counts``: type name -> number of records, most first; ``summary`` and ``advice`` let
    a caller that knows where the records came from (a file) say it in its own words."""

    def __init__(self, zone: str, counts: dict[str, int]) -> None:
        self.counts = counts
        self.summary = (
            f"{sum(counts.values())} DNSSEC records ({', '.join(counts)}) of a signed zone"
        )
        self.advice = (
            "zonefan signs zones itself: import with --strip-dnssec (and `zonefan zone sign "
            f"{zone}` if it should stay signed)"
        )
        super().__init__(zone, [Problem(f"the records hold {self.summary}; {self.advice}")])


class ZoneFileError(NameserverError):
    """A zone file cannot be read; names the file and line."""

    def __init__(self, filename: str, line: int | None, reason: str) -> None:
        self.filename = filename
        self.line = line
        self.reason = reason
        where = f"{filename}:{line}" if line is not None else filename
        super().__init__(f"{where}: {reason}")


class RecordSyntaxError(NameserverError):
    """A record given on the command line or through the API cannot be parsed."""


class UnknownZoneError(NameserverError):
    """The named zone is not in the store."""

    def __init__(self, zone: str) -> None:
        self.zone = zone
        super().__init__(f"zone {zone} is not in the store (see `zonefan zone list`)")


class ZoneExistsError(NameserverError):
    """A zone with this name is already in the store."""


class ConflictError(NameserverError):
    """The zone changed underneath a change (its serial moved); retry the change."""


class StoreError(NameserverError):
    """The SQLite store cannot be opened or is not a zonefan store."""


class StoreMissingError(StoreError):
    """No store at the path, and the caller asked not to create one."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(reason)


class SerialError(NameserverError):
    """A serial policy is unknown or cannot produce a next serial."""


class JournalError(NameserverError):
    """The journal does not reach the asked version (it was compacted or never existed)."""


class DnssecError(NameserverError):
    """A DNSSEC operation that cannot be done as asked (the message says why)."""


class UpdatePolicyError(NameserverError):
    """An update-policy rule cannot be parsed; names the zone, the rule and the field."""

    def __init__(self, zone: str, rule: str, field: str, reason: str) -> None:
        self.zone = zone
        self.rule = rule
        self.field = field
        self.reason = reason
        super().__init__(f"zone {zone} update-policy rule {rule!r}: {field}: {reason}")


class UpdateRejected(NameserverError):
    """A dynamic UPDATE (RFC 2136) is answered with an error rcode; nothing changes.

    ``rcode`` is the DNS rcode value the server answers with."""

    def __init__(self, rcode: int, reason: str) -> None:
        self.rcode = rcode
        self.reason = reason
        super().__init__(reason)
