"""The ``[pool."NAME"]`` and ``[health]`` tables, read with the settings grammar.

::

    [health]
    checker = "hel"                          # this checker's id in reports (default "local")
    remote-checkers = ["fra-probe", { id = "ams-probe", key = "ams" }]   # ids whose reports
                                             # are taken; `key`: the [key.NAME] its TSIG-signed
                                             # UPDATE reports must be signed with
    max-probes = 64                          # probes in flight, all pools together
    pool-probes = 8                          # probes in flight per pool
    stale-intervals = 3                      # a report older than this many intervals is ignored

    [pool."cdn.example.test."]                 # active/passive: one CNAME, the first
    type = "CNAME"                             # member up (in this order) is published
    ttl = 60
    members = [{ target = "fra.cdn.example.net.", address = "192.0.2.10", region = "fra" },
               { target = "ams.cdn.example.net.", address = "192.0.2.20", region = "ams" }]
    check = { kind = "https", path = "/healthz", host = "cdn.example.test" }

    [pool."www.example.test."]
    type = "A"
    ttl = 30
    members = [{ address = "192.0.2.10", region = "fra" },
               { address = "192.0.2.20", region = "ams" }]
    check = { kind = "http", path = "/healthz", port = 8080, expect = 200, interval = "5s",
              timeout = "2s", rise = 2, fall = 3 }
    quorum = 2                               # default: a majority of the checkers reporting
    damping = { half-life = "5m", suppress = 2000, reuse = 750, max-suppress = "20m",
                penalty = 1000 }                     # RFC 2439 flap damping; penalty = 0: off

Every key is checked; an error names its key path
(``pool."www.example.test.".check.interval``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype

from health.errors import HealthConfigError
from settings import (
    SettingsError,
    Table,
    format_duration,
    parse_duration,
    parse_name,
    parse_seconds,
)

Kind = Literal["tcp", "http", "https", "dns"]
KINDS: tuple[Kind, ...] = ("tcp", "http", "https", "dns")
DEFAULT_PORTS: dict[Kind, int] = {"http": 80, "https": 443, "dns": 53}

# A pool's TTL is how long resolvers keep answering with a member after it is withdrawn:
# beyond an hour a health check can no longer fail over in any useful time.
MAX_POOL_TTL = 3600
# Checking more often than each second adds load on the backends, not safety.
MIN_INTERVAL = 1.0
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_HEADER_VALUE = re.compile(r"[\x21-\x7e]+")

POOL_KEYS = ("type", "ttl", "members", "check", "quorum", "damping")
MEMBER_KEYS = ("address", "region", "target")
HEALTH_KEYS = ("checker", "remote-checkers", "max-probes", "pool-probes", "stale-intervals")
DAMPING_KEYS = ("penalty", "half-life", "suppress", "reuse", "max-suppress")
_COMMON_CHECK_KEYS = ("kind", "port", "interval", "timeout", "rise", "fall")
_HTTP_KEYS = ("path", "expect", "body", "host")
CHECK_KEYS: dict[Kind, tuple[str, ...]] = {
    "tcp": _COMMON_CHECK_KEYS,
    "http": (*_COMMON_CHECK_KEYS, *_HTTP_KEYS),
    "https": (*_COMMON_CHECK_KEYS, *_HTTP_KEYS, "verify", "ca-file", "server-name"),
    "dns": (*_COMMON_CHECK_KEYS, "qname", "qtype", "expect-rcode", "expect-answer"),
}


@dataclass(frozen=True)
class Check:
    """How each member of a pool is probed, and how many results in a row change its
    state (``fall`` failures withdraw it, ``rise`` successes bring it back)."""

    kind: Kind
    port: int
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    # http, https
    path: str = "/"
    expect: frozenset[int] = frozenset({200})
    body: str | None = None
    host: str | None = None
    # https
    verify: bool = True
    ca_file: Path | None = None
    server_name: str | None = None
    # dns
    qname: dns.name.Name | None = None
    qtype: dns.rdatatype.RdataType = dns.rdatatype.A
    expect_rcode: dns.rcode.Rcode = dns.rcode.NOERROR
    expect_answer: bool = False


@dataclass(frozen=True)
class Member:
    """One member of a pool: the address its checks probe (its identity in reports,
    drains and events), the region it is in (the unit of a maintenance drain), and for a
    CNAME pool the name published while it is the one chosen."""

    address: str  # compressed text, as ipaddress writes it
    region: str
    target: dns.name.Name | None = None  # CNAME pools only

    @property
    def value(self) -> str:
        """The RDATA text the pool publishes for this member."""
        return self.address if self.target is None else self.target.to_text()


@dataclass(frozen=True)
class Damping:
    """Flap damping after RFC 2439 (BGP route flap damping): each withdrawal adds
    ``penalty`` to a figure of merit that halves every ``half_life``; at ``suppress`` the
    member is held out until the figure falls below ``reuse``. The figure is capped so
    that a member that stops flapping is back after at most ``max_suppress``.
    ``penalty = 0`` turns damping off."""

    penalty: float = 1000.0
    half_life: float = 300.0
    suppress: float = 2000.0
    reuse: float = 750.0
    max_suppress: float = 1200.0

    @property
    def enabled(self) -> bool:
        return self.penalty > 0

    @property
    def ceiling(self) -> float:
        """The highest figure of merit: the one that decays to ``reuse`` in
        ``max_suppress`` (RFC 2439 §4.2)."""
        return float(self.reuse * 2 ** (self.max_suppress / self.half_life))


@dataclass(frozen=True)
class Pool:
    """A health-checked record set: the name, its type and TTL, the members and the
    check."""

    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ttl: int
    members: tuple[Member, ...]
    check: Check
    quorum: int | None = None  # None: a majority of the checkers reporting
    damping: Damping = field(default_factory=Damping)

    @property
    def label(self) -> str:
        return self.name.to_text()


@dataclass(frozen=True)
class HealthConfig:
    """Every pool, and the checkers whose results count."""

    pools: tuple[Pool, ...] = ()
    checker: str = "local"
    remote_checkers: frozenset[str] = frozenset()
    # The [key.NAME] each remote checker signs its UPDATE reports with (by checker id);
    # a checker without one can report by no transport that needs a key.
    checker_keys: Mapping[str, str] = field(default_factory=dict)
    max_probes: int = 64
    pool_probes: int = 8
    stale_intervals: int = 3

    @property
    def checkers(self) -> frozenset[str]:
        return self.remote_checkers | {self.checker}


# --- value parsers (ValueError with the reason; Table adds the key path) -----------------


def _count(low: int, high: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not a whole number")
        if value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise ValueError(f"{value} is out of range: write a number {span}")
        return value

    return parse


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{value!r} is not a number of 0 or more")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def _label(value: Any) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a name of letters, digits, '-' and '_' (at most 63, e.g. \"fra\")"
        )
    return value


def _remote_checkers(health: Table, keys: Table | None) -> dict[str, str | None]:
    """``remote-checkers``: ids, or ``{ id, key }`` tables naming a ``[key.NAME]``."""
    value = health.data.get("remote-checkers", [])
    if not isinstance(value, list):
        raise health.error(
            "remote-checkers", f'{value!r} is not a list of checker ids, e.g. ["fra-probe"]'
        )
    out: dict[str, str | None] = {}
    where = health.where("remote-checkers")
    for i, item in enumerate(value, 1):
        entry = Table(
            item if isinstance(item, dict) else {"id": item}, f"{where}#{i}", health.source
        )
        entry.allow(("id", "key"))
        checker = entry.get("id", _label)
        key = entry.get("key", _key_label, None)
        if key is not None and (keys is None or key not in keys):
            raise entry.error("key", f"no [key.{key}] table in the config")
        if checker in out:
            raise entry.error("id", f"{checker!r} is listed twice")
        out[checker] = key
    return out


def _key_label(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not the NAME of a [key.NAME] table")
    return value


def _kind(value: Any) -> Kind:
    if value not in KINDS:
        raise ValueError(f"{value!r} is not a check kind; write one of {', '.join(KINDS)}")
    return cast(Kind, value)


def _path(value: Any) -> str:
    if not (isinstance(value, str) and value.startswith("/") and _HEADER_VALUE.fullmatch(value)):
        raise ValueError(f'{value!r} is not a URL path: it starts with "/" and has no spaces')
    return value


def _host(value: Any) -> str:
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise ValueError(f'{value!r} is not a host name, e.g. "www.example.test"')
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a non-empty text")
    return value


def _statuses(value: Any) -> frozenset[int]:
    items = value if isinstance(value, list) and value else [value]
    return frozenset(_count(100, 599)(v) for v in items)


def _qtype(value: Any) -> dns.rdatatype.RdataType:
    try:
        return dns.rdatatype.RdataType.make(_text(value).upper())
    except (dns.exception.DNSException, ValueError):
        raise ValueError(f'{value!r} is not a record type, e.g. "A" or "SOA"') from None


def _rcode(value: Any) -> dns.rcode.Rcode:
    try:
        return dns.rcode.from_text(_text(value).upper())
    except (dns.exception.DNSException, ValueError):
        raise ValueError(f'{value!r} is not an rcode, e.g. "NOERROR" or "NXDOMAIN"') from None


def _pool_type(value: Any) -> dns.rdatatype.RdataType:
    if value not in ("A", "AAAA", "CNAME"):
        raise ValueError(f'{value!r} is not a pool type; write "A", "AAAA" or "CNAME"')
    return dns.rdatatype.from_text(value)


# --- tables -----------------------------------------------------------------------------------


def parse_health(config: Table) -> HealthConfig:
    """The ``[health]`` table and every ``[pool."NAME"]`` of a settings file; a
    :class:`HealthConfigError` names the first key that is wrong."""
    try:
        return _parse_health(config)
    except SettingsError as exc:
        raise HealthConfigError.of(exc) from None


def _parse_health(config: Table) -> HealthConfig:
    health = config.table("health") or Table({}, "health", config.source)
    health.allow(HEALTH_KEYS)
    checker = health.get("checker", _label, "local")
    remote = _remote_checkers(health, config.table("key"))
    if checker in remote:
        raise health.error("remote-checkers", f"{checker!r} is this checker's own id")
    settings = HealthConfig(
        checker=checker,
        remote_checkers=frozenset(remote),
        checker_keys={c: k for c, k in remote.items() if k is not None},
        max_probes=health.get("max-probes", _count(1, 4096), 64),
        pool_probes=health.get("pool-probes", _count(1, 4096), 8),
        stale_intervals=health.get("stale-intervals", _count(1, 1000), 3),
    )
    pools = config.table("pool")
    if pools is None:
        return settings
    parsed: list[Pool] = []
    for name, table in pools.tables():
        pool = parse_pool(name, table, len(settings.checkers))
        twin = next((p for p in parsed if p.name == pool.name), None)
        if twin is not None:
            same = f'names the same pool as pool."{twin.label}"'
            raise SettingsError(table.path, same, table.source.name)
        parsed.append(pool)
    return HealthConfig(
        pools=tuple(parsed),
        checker=settings.checker,
        remote_checkers=settings.remote_checkers,
        checker_keys=settings.checker_keys,
        max_probes=settings.max_probes,
        pool_probes=settings.pool_probes,
        stale_intervals=settings.stale_intervals,
    )


def parse_pool(key: str, table: Table, checkers: int = 1) -> Pool:
    """One ``[pool."NAME"]`` table; ``checkers`` is how many checkers are configured (a
    quorum above that could never be reached)."""
    table.allow(POOL_KEYS)
    try:
        name = parse_name(key)
    except ValueError as exc:
        raise SettingsError(table.path, str(exc), table.source.name) from None
    rdtype = table.get("type", _pool_type)
    ttl = table.get("ttl", parse_seconds)
    if ttl > MAX_POOL_TTL:
        raise table.error(
            "ttl",
            f"{ttl} is longer than {MAX_POOL_TTL}: resolvers would keep a withdrawn member "
            "that long, so the health check could not fail over in time",
        )
    members = _members(table, rdtype)
    check = parse_check(table.table("check", required=True) or table)
    quorum = table.optional("quorum", _count(1))
    if quorum is not None and quorum > checkers:
        raise table.error(
            "quorum",
            f"{quorum} is more than the {checkers} configured checker(s) "
            "([health] checker and remote-checkers): no member could ever be withdrawn",
        )
    damping_table = table.table("damping")
    damping = Damping() if damping_table is None else parse_damping(damping_table)
    return Pool(name, rdtype, ttl, members, check, quorum, damping)


def _members(table: Table, rdtype: dns.rdatatype.RdataType) -> tuple[Member, ...]:
    if "members" not in table:
        raise table.error("members", "required: the addresses of the pool")
    entries = table.entries("members")
    if not entries:
        raise table.error("members", "empty: a pool needs at least one member")
    # A CNAME pool's members are probed at either family; its records are the targets.
    version = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}.get(rdtype)
    kind = dns.rdatatype.to_text(rdtype)
    members: list[Member] = []
    for entry in entries:
        entry.allow(MEMBER_KEYS)

        def address(value: Any) -> str:
            try:
                ip = ipaddress.ip_address(value if isinstance(value, str) else "")
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address (without a port)") from None
            if version is not None and ip.version != version:
                raise ValueError(f"{value!r} is not an IPv{version} address (a {kind} pool)")
            return ip.compressed

        target = None
        if rdtype == dns.rdatatype.CNAME:
            if "target" not in entry:
                raise entry.error("target", "required in a CNAME pool: the name it publishes")
            target = entry.get("target", parse_name)
        elif "target" in entry:
            raise entry.error(
                "target", f"only CNAME pools have targets; a {kind} pool publishes the address"
            )
        member = Member(entry.get("address", address), entry.get("region", _label), target)
        if any(m.address == member.address for m in members):
            raise entry.error("address", f"{member.address} is a member already")
        if target is not None and any(m.target == target for m in members):
            raise entry.error("target", f"{target} is a member's target already")
        members.append(member)
    return tuple(members)


def parse_check(table: Table) -> Check:
    """The ``check`` table of a pool."""
    kind = table.get("kind", _kind)
    table.allow(CHECK_KEYS[kind])
    interval = table.get("interval", parse_duration, 5.0)
    if interval < MIN_INTERVAL:
        raise table.error("interval", f"{format_duration(interval)} is shorter than 1s")
    timeout = table.get("timeout", parse_duration, min(2.0, interval / 2))
    if not 0 < timeout < interval:
        raise table.error(
            "timeout",
            f"{format_duration(timeout)} must be more than 0 and shorter than the interval "
            f"({format_duration(interval)}): a probe ends before the next one starts",
        )
    port = table.get("port", _count(1, 65535), DEFAULT_PORTS.get(kind, 0))
    if port == 0:
        raise table.error("port", "required for a tcp check")
    common: dict[str, Any] = {
        "kind": kind,
        "port": port,
        "interval": interval,
        "timeout": timeout,
        "rise": table.get("rise", _count(1, 100), 2),
        "fall": table.get("fall", _count(1, 100), 3),
    }
    if kind in ("http", "https"):
        common.update(
            path=table.get("path", _path, "/"),
            expect=table.get("expect", _statuses, frozenset({200})),
            body=table.optional("body", _text),
            host=table.optional("host", _host),
        )
    if kind == "https":
        verify = table.get("verify", _flag, True)
        ca_file = table.optional("ca-file", lambda v: _ca_file(table, v))
        server_name = table.optional("server-name", _host)
        if not verify and (ca_file or server_name):
            key = "ca-file" if ca_file else "server-name"
            raise table.error(key, "verify = false checks no certificate: drop one of them")
        common.update(verify=verify, ca_file=ca_file, server_name=server_name)
    if kind == "dns":
        common.update(
            qname=table.get("qname", parse_name),
            qtype=table.get("qtype", _qtype, dns.rdatatype.A),
            expect_rcode=table.get("expect-rcode", _rcode, dns.rcode.NOERROR),
            expect_answer=table.get("expect-answer", _flag, False),
        )
    return Check(**common)


def _ca_file(table: Table, value: Any) -> Path:
    path = table.source.resolve(_text(value))
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a readable file of CA certificates (PEM)")
    return path


def parse_damping(table: Table) -> Damping:
    """The ``damping`` table of a pool; ``penalty = 0`` turns damping off."""
    table.allow(DAMPING_KEYS)
    default = Damping()
    damping = Damping(
        penalty=table.get("penalty", _number, default.penalty),
        half_life=table.get("half-life", parse_duration, default.half_life),
        suppress=table.get("suppress", _number, default.suppress),
        reuse=table.get("reuse", _number, default.reuse),
        max_suppress=table.get("max-suppress", parse_duration, default.max_suppress),
    )
    if not damping.enabled:
        return damping
    if damping.half_life <= 0:
        raise table.error("half-life", "must be more than 0")
    if not 0 < damping.reuse < damping.suppress:
        raise table.error("reuse", f"must be more than 0 and below suppress ({damping.suppress:g})")
    if damping.max_suppress > 64 * damping.half_life:
        raise table.error("max-suppress", "must be at most 64 half-lives")
    if damping.ceiling < damping.suppress:
        raise table.error(
            "max-suppress",
            f"{format_duration(damping.max_suppress)} is too short: the penalty is capped at "
            f"{damping.ceiling:g}, below suppress ({damping.suppress:g}), so nothing would "
            "ever be held out",
        )
    return damping
