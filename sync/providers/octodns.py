"""Any octoDNS provider as a sync target (``type = "octodns"``), for unsigned zones.

octoDNS (https://github.com/octodns/octodns) has provider plugins for some 40 DNS services.
This bridge runs one of them: the target names the provider's class by its dotted path and
hands it its settings, as an octoDNS config would::

    [target.gandi]
    type = "octodns"
    class = "octodns_gandi.GandiProvider"
    zones = ["example.com."]

    [target.gandi.settings]          # the provider's own keyword arguments
    token-env = "GANDI_TOKEN"        # a credential: KEY-env or KEY-file, handed over as a value
    sandbox = false

``apex-ns`` (optional) says whose the zone's apex NS set is there: ``"ours"`` (pushed, the
default where the provider can write it: ``SUPPORTS_ROOT_NS``) or ``"provider"`` (a cloud's
own delegation set, left as it is and never planned).

Settings are the provider's constructor arguments, spelled as its documentation spells them
(``api_key``) or with dashes (``api-key``). A credential (a name with ``secret``, ``token``,
``password`` or ending in ``key``) is refused inline: it is given as ``NAME-env`` (an
environment variable) or ``NAME-file`` (a private file), read by zonefan and passed to the
provider as the value, and replaced by ``***`` wherever the bridge logs or reports. octoDNS's
own ``env/VARIABLE`` strings are refused with that hint (no octoDNS Manager resolves them).

How the sync maps onto octoDNS's model (octodns.provider.base.BaseProvider, octodns.zone.Zone,
octodns.record.base.Record, octodns.record.rr.Rrset):

- Read: ``populate(zone, target=True, lenient=True)``; each record comes back through
  ``Record.to_rrset()`` (presentation-format rdatas) as our RRset. Records of types zonefan
  cannot express (``ALIAS``, ``PowerDnsProvider/LUA``, ...) stay at the provider, untouched.
- Representation: each RRset we push goes through ``Record.from_rrset()`` and back, so the
  plan compares what octoDNS will hold (TXT character-strings joined, as octoDNS keeps them)
  and a push with nothing to do is empty. An RRset octoDNS cannot carry intact (its
  validation refuses it; TXT or SPF with ``"`` or ``\\``, see :func:`unheld_text`) is listed
  in the plan as not supported, like a type the provider lacks.
- Plan: ``sync plan`` shows the provider's own octoDNS plan (:meth:`OctoDnsTarget.preview`),
  mapped back to RRset changes.
- Apply: the provider's own ``plan(desired)`` then ``apply(plan)``, as ``octodns-sync`` runs
  them, in a worker thread. The desired zone is ours; a processor adds to it every record
  the provider holds that zonefan neither manages nor deletes, against the provider's own
  fresh read inside ``plan()``, so a record someone wrote there after our read is left
  alone too. An octoDNS plan that would delete a record our plan does not delete is
  refused before anything is applied.
- Capabilities come from the class: ``SUPPORTS`` (the types it holds, those dnspython and
  octoDNS both know), ``SUPPORTS_ROOT_NS`` (whose apex NS it is). octoDNS has no SOA: the
  provider makes its own. No octoDNS provider can carry our signatures, so a signed zone is
  refused for these targets (DNSSEC mode none).
- octoDNS is not documented as thread-safe and keeps process-wide registries: provider
  calls (construction, populate, plan, apply) run one at a time in the process, in worker
  threads. Converting RRsets to its records and back (normalize) runs in the engine's
  event loop without waiting for them: it touches no provider, warns of nothing and logs
  only through octoDNS's own loggers. Those and every logger made during a provider call
  never reach the user's terminal, nor do its warnings: they are re-logged at debug level
  under ``zonefan.sync.octodns.library`` with the credentials redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import logging
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype

from settings.secrets import private_mode_problem
from sync.errors import (
    SyncConfigError,
    TargetError,
    TargetRateLimitedError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import TEXT_TYPES, RRset, RRsetKey, ZoneData, sort_key
from sync.plan import Action, Change, Plan
from sync.providers.base import Held, RecordTarget
from sync.providers.capabilities import Capabilities, DnssecMode, Normalized, Owner, Quoting
from sync.settings import TargetContext, check_fields

try:  # the optional extra: pip install 'zonefan[octodns]'
    from octodns.processor.base import BaseProcessor
    from octodns.provider.base import BaseProvider
    from octodns.record import Create, Delete, Record, Update
    from octodns.record.rr import Rrset
    from octodns.zone import Zone

    MISSING: str | None = None
except ImportError as exc:  # pragma: no cover - the tests install octoDNS
    MISSING = str(exc)
    BaseProcessor = object

log = logging.getLogger("zonefan.sync.octodns")
library_log = logging.getLogger("zonefan.sync.octodns.library")

REDACTED = "***"
MIN_SECRET = 4  # shorter strings are not redacted (they would blank out ordinary words)
# Provider settings that hold a credential: refused inline (octoDNS names: api_key, token,
# client_secret, application_secret, consumer_key, password, ...).
SECRET_NAME = re.compile(r"(?i)(secret|token|password|passwd|credential|(^|_)key$)")
# octoDNS's loggers (named after its classes, not its modules) and the HTTP libraries its
# provider plugins use; a provider's own logger and any logger created during an octoDNS
# call are added as they appear.
LIBRARY_LOGGERS = (
    "Record",
    "Zone",
    "Plan",
    "Manager",
    "DsValue",
    "GeoCodes",
    "_DynamicPool",
    "urllib3",
    "requests",
    "botocore",
    "boto3",
    "s3transfer",
)
# botocore's error codes for "slow down" (Route 53 API reference, "Common Errors" and
# ChangeResourceRecordSets "PriorRequestNotComplete").
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
    }
)
_FIELDS = frozenset({"class", "settings", "apex-ns"})
OUR_PACKAGES = frozenset({"zonefan", "sync", "nameserver", "signer", "settings"})
_WARM_UP = dns.name.from_text("invalid.")  # a zone name no provider is asked about
HELD_CACHE = 200_000  # RRsets whose octoDNS form a target remembers (then starts again)


# -- keeping octoDNS off the terminal ------------------------------------------------------


class _Relay(logging.Handler):
    """Takes a library's log record off the terminal: re-logged at debug level under
    ``zonefan.sync.octodns.library``, with every known credential replaced by ``***``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string is not our failure
            message = f"{record.msg!r} {record.args!r}"
        library_log.debug("%s %s: %s", record.name, record.levelname, self.redact(message))


_RELAY = _Relay()
# One octoDNS call at a time in the process (see the module's docstring); re-entrant so a
# normalize that wraps a whole zone may convert RRset by RRset inside it.
_CALLS = threading.RLock()
_ADOPTED: set[str] = set()


def _ours(name: str) -> bool:
    """A logger of zonefan's own (a module imported meanwhile by another thread)."""
    return name.split(".", maxsplit=1)[0] in OUR_PACKAGES


def _adopt(name: str) -> None:
    """Route logger ``name`` (and its children) into the relay instead of the terminal."""
    if name in _ADOPTED or _ours(name):
        return
    logger = logging.getLogger(name)
    logger.propagate = False
    if _RELAY not in logger.handlers:
        logger.addHandler(_RELAY)
    _ADOPTED.add(name)


def _adopting(base: type[logging.Logger]) -> type[logging.Logger]:
    """A logger class that routes each logger made with it into the relay at once: a
    provider names its logger after its instance (``Route53Provider[NAME]``) and logs
    through it in its constructor, before anyone could adopt it by name."""

    class Adopted(base):  # type: ignore[misc,valid-type]
        def __init__(self, name: str, level: int = logging.NOTSET) -> None:
            super().__init__(name, level)
            if not _ours(name):
                self.propagate = False
                self.addHandler(_RELAY)
                _ADOPTED.add(name)

    return Adopted


@contextlib.contextmanager
def contained() -> Iterator[None]:
    """Run octoDNS code: alone in the process, its warnings and its loggers (those known and
    those made meanwhile) relayed at debug level, never shown to the user."""
    with _CALLS:
        for name in LIBRARY_LOGGERS:
            _adopt(name)
        manager = logging.Logger.manager
        made_with = manager.loggerClass
        manager.loggerClass = _adopting(made_with or logging.getLoggerClass())
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        finally:
            manager.loggerClass = made_with
            for warning in caught:
                library_log.debug(
                    "warning %s: %s",
                    warning.category.__name__,
                    _RELAY.redact(str(warning.message)),
                )


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OctoDnsSettings:
    """A target's class path and the keyword arguments its provider is built with."""

    name: str
    class_path: str
    kwargs: Mapping[str, Any] = field(repr=False)
    apex_ns: Owner | None = None  # None: ours when the provider supports a root NS
    keys: Mapping[str, str] = field(default_factory=dict)  # argument -> setting, for errors
    secrets: tuple[str, ...] = field(default=(), repr=False)


def _secret_value(setting: str, which: str, value: Any, ctx: TargetContext) -> str:
    """A credential from ``NAME-env`` (an environment variable) or ``NAME-file`` (a file only
    its owner can read), as sync/settings reads every credential."""
    if not isinstance(value, str) or not value.strip():
        raise SyncConfigError(setting, f"expected a non-empty string, got {value!r}")
    if which == "env":
        text = ctx.env.get(value.strip(), "").strip()
        if not text:
            raise SyncConfigError(setting, f"environment variable {value.strip()!r} is not set")
        return text
    path = ctx.source.resolve(value.strip())
    try:
        problem = private_mode_problem(path)
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SyncConfigError(setting, f"cannot read {str(path)!r}: {exc.strerror}") from None
    if problem is not None:
        raise SyncConfigError(setting, problem)
    if not text:
        raise SyncConfigError(setting, f"{path} is empty")
    return text


def parse_settings(name: str, section: Mapping[str, Any], ctx: TargetContext) -> OctoDnsSettings:
    """``[target.NAME]`` of type octodns: ``class`` and the ``settings`` sub-table."""
    where = f"target.{name}"
    check_fields(section, where, _FIELDS)
    class_path = section.get("class")
    if not isinstance(class_path, str) or not re.fullmatch(r"[\w.]+\.\w+", class_path.strip()):
        raise SyncConfigError(
            f"{where}.class",
            f"expected the provider's class as a dotted path (module.Class, e.g. "
            f'"octodns_powerdns.PowerDnsProvider"), got {class_path!r}',
        )
    table = section.get("settings", {})
    if not isinstance(table, Mapping):
        raise SyncConfigError(
            f"{where}.settings",
            f"expected a table of the provider's settings ([{where}.settings]), got {table!r}",
        )
    apex_ns = section.get("apex-ns")
    if apex_ns is not None and apex_ns not in ("ours", "provider"):
        raise SyncConfigError(
            f"{where}.apex-ns",
            f'expected "ours" (the zone\'s apex NS is pushed) or "provider" (the provider\'s '
            f"own NS set is left as it is), got {apex_ns!r}",
        )
    kwargs: dict[str, Any] = {}
    keys: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in table.items():
        setting = f"{where}.settings.{key}"
        base, which = key, None
        for suffix in ("env", "file"):
            if key.endswith(f"-{suffix}"):
                base, which = key[: -len(suffix) - 1], suffix
        argument = base.replace("-", "_")
        if not argument.isidentifier() or argument == "id":
            raise SyncConfigError(
                setting,
                "not a provider setting: settings are the provider's keyword arguments "
                "(the target's name is its id)",
            )
        if argument in keys:
            raise SyncConfigError(setting, f"{argument} is given twice (as {keys[argument]})")
        keys[argument] = key
        if which is not None:
            kwargs[argument] = _secret_value(setting, which, value, ctx)
            secrets.append(kwargs[argument])
            continue
        if isinstance(value, str) and SECRET_NAME.search(argument):
            raise SyncConfigError(
                setting,
                f"a credential is never written inline: set {key}-env = "
                f'"VARIABLE" or {key}-file = "/path/to/a/private/file"',
            )
        if isinstance(value, str) and value.startswith("env/"):
            raise SyncConfigError(
                setting,
                f"octoDNS's env/ strings are not read here: set {key}-env = "
                f'"{value[4:].split("/")[0]}" instead',
            )
        kwargs[argument] = value
    return OctoDnsSettings(
        name,
        class_path.strip(),
        kwargs,
        None if apex_ns is None else Owner(apex_ns),
        keys,
        tuple(s for s in secrets if len(s) >= MIN_SECRET),
    )


def load_class(settings: OctoDnsSettings) -> type[Any]:
    """The provider class ``class`` names; SyncConfigError naming the key when it cannot be
    imported or is not an octoDNS provider."""
    setting = f"target.{settings.name}.class"
    module_name, _, class_name = settings.class_path.rpartition(".")
    try:
        with contained():
            module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.split(".")[0].replace("_", "-")
        raise SyncConfigError(
            setting,
            f"cannot import {module_name!r} ({exc}): install the provider's octoDNS plugin "
            f"(pip install {package}) in zonefan's environment",
        ) from None
    except Exception as exc:  # a plugin that fails on import
        raise SyncConfigError(
            setting, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, BaseProvider) and v is not BaseProvider
        )
        hint = f"; it has {', '.join(found)}" if found else ""
        raise SyncConfigError(setting, f"{module_name!r} has no {class_name!r}{hint}")
    if not (isinstance(cls, type) and issubclass(cls, BaseProvider)):
        raise SyncConfigError(
            setting,
            f"{settings.class_path} is not an octoDNS provider (a subclass of "
            "octodns.provider.base.BaseProvider): a source cannot be a target",
        )
    return cls


def _arguments(cls: type[Any]) -> list[str]:
    """The keyword arguments the provider's constructors take (its class and its bases)."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            plain = p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            if plain and p.name not in ("self", "id") and p.name not in names:
                names.append(p.name)
    return names


def build_provider(settings: OctoDnsSettings, cls: type[Any]) -> Any:
    """``cls(name, **settings)``; SyncConfigError naming the setting it refuses."""
    where = f"target.{settings.name}.settings"
    _RELAY.secrets.update(settings.secrets)  # before the provider logs what it was given
    try:
        with contained():
            return cls(settings.name, **settings.kwargs)
    except TypeError as exc:
        text = _redact(str(exc), settings.secrets)
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
        if unexpected:
            argument = unexpected.group(1)
            raise SyncConfigError(
                f"{where}.{settings.keys.get(argument, argument)}",
                f"{settings.class_path} takes no setting {argument!r}; it takes: "
                + ", ".join(_arguments(cls)),
            ) from None
        missing = re.findall(r"'(\w+)'", text) if "required" in text else []
        if missing:
            secret = [m for m in missing if SECRET_NAME.search(m)]
            how = f" (a credential as {secret[0]}-env or {secret[0]}-file)" if secret else ""
            raise SyncConfigError(
                where, f"{settings.class_path} needs {', '.join(missing)}{how}"
            ) from None
        raise SyncConfigError(where, f"{settings.class_path}: {text}") from None
    except Exception as exc:
        raise SyncConfigError(
            where,
            f"{settings.class_path} refused its settings: {type(exc).__name__}: "
            + _redact(str(exc), settings.secrets),
        ) from None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


# -- the model: our RRsets as octoDNS records and back --------------------------------------


def capabilities_of(provider: Any, apex_ns: Owner | None = None) -> Capabilities:
    """What the provider declares: the types in its ``SUPPORTS`` that octoDNS registers and
    dnspython parses, and who writes the apex NS (``SUPPORTS_ROOT_NS``; ``apex_ns`` when
    the target's ``apex-ns`` says)."""
    with contained():
        supports = set(getattr(provider, "SUPPORTS", ()))
        registered = set(Record.registered_types())
        root_ns = bool(getattr(provider, "SUPPORTS_ROOT_NS", False))
    types: set[dns.rdatatype.RdataType] = set()
    for name in sorted(supports & registered):
        try:
            kind = dns.rdatatype.from_text(name)
        except dns.rdatatype.UnknownRdatatype:
            continue  # octoDNS's own (ALIAS, URLFWD): nothing of ours is one
        if kind != dns.rdatatype.SOA:
            types.add(kind)
    return Capabilities(
        dnssec=DnssecMode.NONE,
        record_types=frozenset(types),
        apex_soa=Owner.PROVIDER,  # octoDNS has no SOA type: the provider keeps its own
        apex_ns=Owner.PROVIDER if not root_ns else apex_ns or Owner.OURS,
        txt=Quoting.JOINED,  # octoDNS keeps one string per TXT value, split again on write
        atomic=False,
    )


def unheld_text(rrset: RRset) -> str | None:
    """Why octoDNS cannot carry this TXT or SPF RRset faithfully, or None. octoDNS 1.22's
    core keeps a ``"`` or ``\\`` of a character-string as it is in its internal value
    (``from_rdata_text``), while plugins write that value back inside quotes themselves
    (octodns-powerdns 1.2 sends it unescaped: PowerDNS refuses the record; the legacy
    ``chunked_values`` others use escape ``"`` but read ``\\`` as an escape): such an
    RRset would be refused or changed on its way to the provider."""
    if rrset.rdtype not in TEXT_TYPES:
        return None
    for rdata in rrset.rdatas:
        for string in rdata.strings:  # type: ignore[attr-defined]
            if b'"' in string or b"\\" in string:
                return 'a character-string with " or \\ does not pass through octoDNS intact'
    return None


def to_record(zone: Any, rrset: RRset) -> Any:
    """``rrset`` as an octoDNS record of ``zone`` (octodns.record.base.Record.from_rrset);
    ValueError with octoDNS's reason when octoDNS cannot hold it."""
    kind = dns.rdatatype.to_text(rrset.rdtype)
    try:
        return Record.from_rrset(zone, Rrset(rrset.name.to_text(), kind, rrset.ttl, rrset.texts()))
    except Exception as exc:  # ValidationError, RecordException, a value's parse error
        raise ValueError(f"octoDNS cannot hold {rrset.name} {kind}: {exc}") from None


def from_record(record: Any, origin: dns.name.Name) -> RRset:
    """An octoDNS record as our RRset (octodns.record.base.Record.to_rrset); ValueError when
    its type or data is not one zonefan can express."""
    try:
        held = record.to_rrset()
        kind = dns.rdatatype.from_text(held._type)
        owner = dns.name.from_text(held.name)
        return RRset.parse(owner, kind, int(held.ttl), held.rdatas, origin)
    except (dns.exception.DNSException, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{record.fqdn} {record._type}: {exc}") from None


def zone_data(
    zone: Any, origin: dns.name.Name, known: Mapping[int, RRset] | None = None
) -> tuple[ZoneData, tuple[str, ...]]:
    """The records of an octoDNS zone as ours (``known``: our RRset of records we made, by
    their identity), and those zonefan cannot express (left to the provider, never
    planned)."""
    rrsets: list[RRset] = []
    skipped: list[str] = []
    for record in zone.records:
        mine = None if known is None else known.get(id(record))
        if mine is not None:
            rrsets.append(mine)
            continue
        try:
            rrsets.append(from_record(record, origin))
        except ValueError as exc:
            skipped.append(str(exc))
    return ZoneData.build(origin, rrsets), tuple(sorted(skipped))


def _key(record: Any) -> tuple[str, str]:
    return (str(record.name).lower(), str(record._type))


class _LeaveOthersAlone(BaseProcessor):  # type: ignore[misc]
    """An octoDNS processor (octodns.processor.base.BaseProcessor): after the provider's
    own read inside ``plan()``, every record it holds that zonefan neither wants there nor
    deletes is added to the desired zone as it is, so octoDNS's plan leaves it alone."""

    def __init__(self, deleting: set[tuple[str, str]]) -> None:
        super().__init__("zonefan-leave-others-alone")
        self.deleting = deleting
        self.kept: list[str] = []

    def process_source_and_target_zones(
        self, desired: Any, existing: Any, target: Any, lenient: bool = False
    ) -> tuple[Any, Any]:
        wanted = {_key(r) for r in desired.records}
        for record in existing.records:
            key = _key(record)
            if key in self.deleting or key in wanted:
                continue
            desired.add_record(record.copy(zone=desired), lenient=True)
            self.kept.append(f"{record.fqdn} {record._type}")
        return desired, existing


# -- errors ----------------------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _http_status(exc: BaseException) -> tuple[int | None, str, str | None, str]:
    """(HTTP status, error code, Retry-After, the service's message) of a requests or
    botocore error, found by their documented attributes, not by importing them."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):  # botocore ClientError: the parsed error response
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        headers = meta.get("HTTPHeaders") or {}
        return (
            int(status) if isinstance(status, int) else None,
            str(error.get("Code", "")),
            headers.get("retry-after"),
            str(error.get("Message", "")),
        )
    status = getattr(response, "status_code", None)
    if isinstance(status, int):  # requests' HTTPError
        headers = getattr(response, "headers", None) or {}
        body = str(getattr(response, "text", "") or "").strip()
        return status, "", headers.get("Retry-After"), body[:300]
    return None, "", None, ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def target_error(
    name: str, what: str, exc: BaseException, secrets: Sequence[str], settings_key: str
) -> TargetError:
    """An exception from octoDNS or its provider as the sync's typed error, with the
    provider's message and no credential."""
    for link in _chain(exc):
        status, code, retry, message = _http_status(link)
        detail = f"{what}: " + _redact(
            f"{type(link).__name__}: {status or ''} {code} {message or link}".replace("  ", " "),
            secrets,
        )
        if status == 429 or code in THROTTLED:
            return TargetRateLimitedError(name, detail, retry_after=_retry_after(retry))
        if status in (401, 403):
            return TargetRejectedError(name, f"{detail} (check the credentials in {settings_key})")
        if status is not None and status >= 500:
            return TargetUnavailableError(name, detail)
        if status is not None and status >= 400:
            return TargetRejectedError(name, detail)
    names = {k.__name__ for link in _chain(exc) for k in type(link).__mro__}
    detail = f"{what}: " + _redact(f"{type(exc).__name__}: {exc}", secrets)
    if names & {"ConnectionError", "Timeout", "EndpointConnectionError", "TimeoutError"}:
        return TargetUnavailableError(name, detail)
    if names & {"SupportsException", "ValidationError", "RecordException", "ZoneException"}:
        return TargetRejectedError(name, detail)
    if isinstance(exc, OSError):
        return TargetUnavailableError(name, detail)
    return TargetError(name, detail)


# -- the target ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OctoDnsState:
    """The octoDNS zone a read or an apply left (octodns.zone.Zone), and the records it
    holds that zonefan cannot express. An apply decides on neither: octoDNS's plan reads
    the zone again inside the same call."""

    zone: Any
    skipped: tuple[str, ...] = ()


class OctoDnsTarget(RecordTarget[OctoDnsState]):
    """An octoDNS provider class and its settings, driven from the engine's event loop
    through a worker thread.

    Each read and each apply builds its own provider instance, as each ``octodns-sync``
    run does: octoDNS providers cache what they read for the rest of their life
    (octodns-route53 keeps every zone's RRsets from its first populate and never drops
    them after an apply), which a long-running sidecar would otherwise serve as the
    provider's state forever."""

    def __init__(self, settings: OctoDnsSettings, cls: type[Any], provider: Any) -> None:
        super().__init__(settings.name, capabilities_of(provider, settings.apex_ns))
        self.settings = settings
        self.cls = cls
        with contained():  # octoDNS configures its validators on first use, with a warning
            to_record(Zone("invalid.", []), RRset.from_text("@", "A", 1, ["192.0.2.1"], _WARM_UP))
        self._settings_key = f"target.{settings.name}.settings"
        self._model: Any = None  # the octoDNS zone a normalize converts into
        self._unheld: list[tuple[RRsetKey, str]] = []  # what that normalize cannot hand over
        self._held: dict[RRset, RRset | str] = {}  # normalize_rrset's results
        self._records: dict[tuple[str, RRset], Any] = {}  # octoDNS's record of each, by zone

    def provider(self) -> Any:
        """A new provider instance (see the class's docstring)."""
        return build_provider(self.settings, self.cls)

    def _error(self, what: str, exc: BaseException) -> TargetError:
        return target_error(self.name, what, exc, self.settings.secrets, self._settings_key)

    # -- representation --------------------------------------------------------------------

    def normalize(self, data: ZoneData) -> Normalized:
        """``data`` as octoDNS holds it; an RRset octoDNS cannot hold faithfully is listed
        with the unsupported ones (skipped, or the plan refused when the target is
        strict) rather than failing the zone."""
        # In the event loop, not waiting for a provider call in a worker thread (see the
        # module's docstring): octoDNS's record conversions log through its own loggers.
        for name in LIBRARY_LOGGERS:
            _adopt(name)
        self._model, self._unheld = Zone(data.origin.to_text(), []), []
        try:
            result = super().normalize(data)
        finally:
            self._model, unheld, self._unheld = None, self._unheld, []
        if not unheld:
            return result
        for key, reason in unheld:
            log.debug("%s: %s %s skipped: %s", self.name, key[0], key[1], reason)
        skipped = {key for key, _ in unheld}
        kept = {k: r for k, r in result.data.rrsets.items() if k not in skipped}
        return dataclasses.replace(
            result,
            data=ZoneData(result.data.origin, kept),
            unsupported=tuple(sorted({*result.unsupported, *skipped}, key=sort_key)),
        )

    def normalize_rrset(self, rrset: RRset) -> RRset:
        """``rrset`` as octoDNS holds it: through its record model and back (remembered:
        the round trip costs ~0.2 ms an RRset, and most of a zone is the same each push)."""
        held = self._held.get(rrset)
        if held is None:
            held = self._hold(rrset)
            if len(self._held) >= HELD_CACHE:
                self._held.clear()
                self._records.clear()
            self._held[rrset] = held
        if isinstance(held, str):
            self._unheld.append((rrset.key, held))
            return rrset
        return held

    def _hold(self, rrset: RRset) -> RRset | str:
        """The RRset octoDNS holds for ``rrset``, or why it cannot hold it."""
        problem = unheld_text(rrset)
        if problem is not None:
            return problem
        model = self._model if self._model is not None else Zone(rrset.name.to_text(), [])
        try:
            record = to_record(model, rrset)
            held = from_record(record, rrset.name)
        except ValueError as exc:
            return str(exc)
        held = rrset if held.same_data(rrset) else held
        if self._model is not None:
            # octoDNS treats records as immutable (BaseProvider._process_desired_zone: "must
            # not modify records directly"): an apply adds this one to its desired zone of
            # the same name as it is. By zone: a delegation's NS is "sub" in the parent and
            # the apex of the child.
            self._records[(self._model.name, held)] = record
        return held

    # -- the engine's calls -------------------------------------------------------------------

    async def open(self) -> None:
        """List the provider's zones when it can (``list_zones``): the credentials and the
        endpoint are checked at start, not at the first push."""
        if not callable(getattr(self.cls, "list_zones", None)):
            return
        try:
            await asyncio.to_thread(lambda: self._call(self.provider().list_zones))
        except Exception as exc:
            error = self._error("listing zones", exc)
            if isinstance(error, TargetRejectedError):
                raise SyncConfigError(self._settings_key, str(error)) from None
            raise error from None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with contained():
            return fn(*args, **kwargs)

    async def read(self, zone: dns.name.Name) -> Held[OctoDnsState] | None:
        return await asyncio.to_thread(self._read, zone)

    def _read(self, zone: dns.name.Name) -> Held[OctoDnsState] | None:
        started = time.monotonic()
        with contained():
            existing = Zone(zone.to_text(), [])
            try:
                exists = self.provider().populate(existing, target=True, lenient=True)
            except Exception as exc:
                raise self._error(f"reading {zone}", exc) from None
            records = len(existing.records)
            if exists is False or (exists is None and not records):
                log.debug("%s: %s is absent (%.3f s)", self.name, zone, time.monotonic() - started)
                return None
            data, skipped = zone_data(existing, zone)
        for item in skipped:
            log.debug("%s: %s holds %s, which zonefan leaves alone", self.name, zone, item)
        log.debug(
            "%s: read %s, %d records (%.3f s)", self.name, zone, records, time.monotonic() - started
        )
        return Held(data, OctoDnsState(existing, skipped))

    async def apply(self, plan: Plan, state: OctoDnsState | None) -> Held[OctoDnsState] | None:
        return await asyncio.to_thread(self._apply, plan)

    async def preview(self, plan: Plan) -> Plan:
        """``plan`` as the provider's own octoDNS plan has it (nothing applied): its changes,
        mapped back to RRsets, in place of ours, so ``sync plan`` shows what the provider
        will do. Changes octoDNS adds (what changed there after our read) or leaves out
        show up here."""
        return await asyncio.to_thread(self._preview, plan)

    def _planned(self, plan: Plan) -> tuple[Any, Any, _LeaveOthersAlone, dict[int, RRset]]:
        """The provider instance and its octoDNS plan (None: nothing to do) for ``plan``,
        our desired zone with the records of others kept, and our RRset of each record we
        put in it (by the record's identity); refused when octoDNS would delete a record
        our plan does not. Called inside :func:`contained`."""
        assert plan.desired is not None, "the engine plans with the desired zone"
        origin = plan.zone
        desired = Zone(origin.to_text(), [])
        ours: dict[int, RRset] = {}
        for rrset in plan.desired:
            record = self._records.get((desired.name, rrset))
            try:
                if record is None:
                    record = to_record(desired, rrset)
                desired.add_record(record)
            except ValueError as exc:
                raise TargetRejectedError(self.name, str(exc)) from None
            ours[id(record)] = rrset
        hostname = desired.hostname_from_fqdn
        deleting = {
            (hostname(c.name.to_text()).lower(), dns.rdatatype.to_text(c.rdtype))
            for c in plan.changes
            if c.action == Action.DELETE
        }
        keep = _LeaveOthersAlone(deleting)
        try:
            provider = self.provider()
            octo_plan = provider.plan(desired, processors=[keep])
        except Exception as exc:
            raise self._error(f"planning {origin}", exc) from None
        changes = [] if octo_plan is None else octo_plan.changes
        foreign = [
            f"{c.record.fqdn} {c.record._type}"
            for c in changes
            if isinstance(c, Delete) and _key(c.record) not in deleting
        ]
        if foreign:
            raise TargetRejectedError(
                self.name,
                f"octoDNS's plan for {origin} deletes {', '.join(sorted(foreign)[:5])}, "
                "which zonefan does not manage there: refused, nothing applied",
            )
        return provider, octo_plan, keep, ours

    def _preview(self, plan: Plan) -> Plan:
        origin = plan.zone
        with contained():
            _, octo_plan, _, _ = self._planned(plan)
            changes: list[Change] = []
            action = {Create: Action.CREATE, Update: Action.UPDATE, Delete: Action.DELETE}
            for change in [] if octo_plan is None else octo_plan.changes:
                try:
                    old = None if change.existing is None else from_record(change.existing, origin)
                    new = None if change.new is None else from_record(change.new, origin)
                except ValueError as exc:
                    log.debug("%s: octoDNS plans %s, which zonefan cannot show", self.name, exc)
                    continue
                changes.append(Change(action[type(change)], old, new))
        changes.sort(key=lambda c: (int(c.action), sort_key(c.key)))
        return dataclasses.replace(plan, changes=tuple(changes))

    def _apply(self, plan: Plan) -> Held[OctoDnsState] | None:
        origin = plan.zone
        started = time.monotonic()
        with contained():
            provider, octo_plan, keep, ours = self._planned(plan)
            if octo_plan is None:
                log.debug("%s: octoDNS plans nothing for %s", self.name, origin)
                return None
            changed = {
                (c.name.to_text().lower(), dns.rdatatype.to_text(c.rdtype)) for c in plan.changes
            }
            for change in octo_plan.changes:
                if (change.record.fqdn.lower(), change.record._type) not in changed:
                    log.debug("%s: octoDNS's plan for %s adds: %s", self.name, origin, change)
            try:
                provider.apply(octo_plan)
            except Exception as exc:
                raise self._error(f"applying to {origin}", exc) from None
            after = octo_plan.desired
            counts = {
                kind.__name__: sum(isinstance(c, kind) for c in octo_plan.changes)
                for kind in (Create, Update, Delete)
            }
            # What the provider holds now: our RRsets where octoDNS kept our very records (the
            # usual case; no 10k conversions back), the others converted.
            data, skipped = zone_data(after, origin, ours)
        log.debug(
            "%s: applied to %s: %s, %d left alone (%.3f s)",
            self.name,
            origin,
            ", ".join(f"{n} {k.lower()}" for k, n in counts.items()),
            len(keep.kept),
            time.monotonic() - started,
        )
        return Held(data, OctoDnsState(after, skipped))

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The apex NS the provider shows (a cloud's own delegation set, where it has one)."""
        held = await self.read(zone)
        ns = None if held is None else held.data.apex_ns()
        if ns is None:
            return []
        return sorted(r.target for r in ns.rdatas)  # type: ignore[attr-defined]


def octodns_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> OctoDnsTarget:
    """The ``octodns`` target of ``[target.NAME]``."""
    if MISSING is not None:  # pragma: no cover - the tests install octoDNS
        raise SyncConfigError(
            f"target.{name}.type",
            f"the octodns target needs octoDNS ({MISSING}): pip install 'zonefan[octodns]' "
            "and the provider's plugin (e.g. octodns-powerdns)",
        )
    settings = parse_settings(name, section, ctx)
    cls = load_class(settings)
    target = OctoDnsTarget(settings, cls, build_provider(settings, cls))
    if settings.apex_ns is Owner.OURS and target.capabilities.apex_ns is Owner.PROVIDER:
        raise SyncConfigError(
            f"target.{name}.apex-ns",
            f"{settings.class_path} cannot write a zone's apex NS (its SUPPORTS_ROOT_NS is "
            'false): leave apex-ns out, or set it to "provider"',
        )
    return target


__all__ = [
    "OctoDnsSettings",
    "OctoDnsState",
    "OctoDnsTarget",
    "capabilities_of",
    "contained",
    "octodns_from_config",
    "parse_settings",
    "target_error",
]
