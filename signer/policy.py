"""DNSSEC signing policy: what keys a zone uses, how long signatures last, how keys roll.

:class:`Policy` is sound with no settings at all, like Knot's default policy or BIND's
``dnssec-policy default``: one ECDSA P-256 (algorithm 13) CSK without a lifetime, NSEC,
14-day signatures refreshed when less than 7 days remain, and CDS/CDNSKEY published so
a parent that polls them (RFC 7344, RFC 8078) can follow key changes by itself.
:func:`fit_to_zone` lengthens the two signature lifetimes for a zone whose SOA EXPIRE
plus largest TTL they do not cover, unless the configuration sets them.

:func:`policy_from_mapping` reads a TOML table with kebab-case keys, for example::

    [policy.default]
    algorithm = 13               # or "ECDSAP256SHA256"
    key-style = "ksk-zsk"        # or "csk"
    zsk-lifetime = "90d"         # durations: seconds, or "2w", "90d", "1.5h", "30m", "1d12h"
    rrsig-validity = "14d"
    parent-servers = ["192.0.2.1", "[2001:db8::1]:5300"]   # default: the parent's NS set

Every problem raises :class:`PolicyError` naming where the table came from and the key.

Time is always passed in (``now``, POSIX seconds); nothing here reads the clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.dnssec

from settings.grammar import (
    DNS_PORT,
    Address,
    format_duration,
    parse_address,
    parse_seconds,
)
from signer.errors import SignerError
from signer.keys import DEFAULT_ALGORITHM, SUPPORTED_ALGORITHMS

__all__ = [
    "ADVISED_MAX_EXPIRE",
    "ADVISED_MAX_TTL",
    "MAX_DERIVED_COVER",
    "Denial",
    "DsCheck",
    "KeyStyle",
    "LongTtls",
    "Policy",
    "PolicyError",
    "PolicySource",
    "ZoneFit",
    "check_zone_fit",
    "derived_lifetimes",
    "fit_to_zone",
    "format_duration",
    "format_server",
    "needs_refresh",
    "next_refresh_time",
    "parse_duration",
    "parse_server",
    "policy_from_mapping",
    "policy_to_mapping",
    "signature_window",
]

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
_MAX_TTL = (1 << 31) - 1
_MAX_SALT_BYTES = 255  # RFC 5155 §3.2: one length octet
# Asking the parent's nameservers more often than this only loads them: a DS appears
# after a registry's publication cycle, minutes at best.
_MIN_DS_CHECK_INTERVAL = MINUTE


class PolicyError(SignerError):
    """A policy setting that is missing, malformed or inconsistent with another one.

    ``where`` says which configuration table, ``field`` which key (kebab-case, as
    written in the configuration), ``reason`` what is wrong and what to do.
    """

    def __init__(self, where: str, field: str, reason: str) -> None:
        super().__init__(f"{where} {field}: {reason}")
        self.where = where
        self.field = field
        self.reason = reason


class KeyStyle(enum.Enum):
    """How the key roles are split."""

    CSK = "csk"  # one combined signing key (flags 257) signs everything
    KSK_ZSK = "ksk-zsk"  # a KSK signs the DNSKEY RRset, a ZSK everything else


class Denial(enum.Enum):
    """Authenticated denial of existence."""

    NSEC = "nsec"
    NSEC3 = "nsec3"


class DsCheck(enum.Enum):
    """How zonefan learns that the parent publishes (or dropped) a DS record."""

    AUTO = "auto"  # query the parent's nameservers for the DS RRset (parent-servers)
    MANUAL = "manual"  # the operator confirms with ``zonefan keys ds-seen``


@dataclass(frozen=True)
class Policy:
    """A DNSSEC policy.  All durations and TTLs are in seconds; a lifetime of 0 is unlimited.

    The defaults and why:

    * ``zsk_lifetime`` 90 days: only used with ``key_style`` ``ksk-zsk``.  A ZSK
      pre-publication rollover needs no parent and takes about Ipub + Iret (a day plus
      rrsig_validity - rrsig_refresh), so rolling quarterly keeps the machinery exercised
      without ever having two rollovers back to back.  KSK and CSK lifetimes default to
      unlimited because each of their rollovers depends on the parent (RFC 8624 and
      RFC 6781 §3.1 give no cryptographic reason to roll P-256 keys often).
    * ``rrsig_validity`` 14 days, ``rrsig_refresh`` 7 days: an outage of the hidden
      primary of up to a week is survivable; see :func:`check_zone_fit` for the SOA
      EXPIRE side, and :func:`fit_to_zone` for the longer ones a zone may need.
      ``rrsig_jitter`` 12 hours spreads expirations so re-signing does not happen in
      one burst.  ``inception_offset`` 1 hour covers clock skew.
    * ``publish_safety`` / ``retire_safety`` 1 hour: RFC 7583 §3.3 safety margins added to
      the publication and retire intervals.
    * ``ds_check`` ``auto`` with no ``parent_servers``: the nameservers of the zone that
      holds the DS (the parent zone's NS set, found with the system resolver) are asked
      for the DS RRset, like Knot's KSK submission check; a DS counts as seen (or gone)
      only when every one of them agrees.  ``parent_servers`` pins the servers instead
      (canonical ``"192.0.2.1:53"`` / ``"[2001:db8::1]:53"`` text, see
      :func:`parse_server`), e.g. when the parent's servers are not reachable by name.
      ``ds_check_interval`` 1 hour is how often the maintenance loop asks (Knot's
      ``check-interval`` default): much shorter than a typical DS TTL of a day.
    """

    algorithm: int = DEFAULT_ALGORITHM
    key_style: KeyStyle = KeyStyle.CSK
    ksk_lifetime: int = 0
    zsk_lifetime: int = 90 * DAY
    csk_lifetime: int = 0
    denial: Denial = Denial.NSEC
    nsec3_iterations: int = 0
    nsec3_salt: str = ""  # hex, empty for no salt (RFC 9276 §3.1)
    nsec3_opt_out: bool = False
    rrsig_validity: int = 14 * DAY
    rrsig_refresh: int = 7 * DAY
    rrsig_jitter: int = 12 * HOUR
    inception_offset: int = HOUR
    dnskey_ttl: int = 3600
    zone_propagation_delay: int = 300
    parent_ds_ttl: int = 86400
    parent_propagation_delay: int = 3600
    publish_safety: int = HOUR
    retire_safety: int = HOUR
    cds_cdnskey: bool = True
    ds_check: DsCheck = DsCheck.AUTO
    parent_servers: tuple[str, ...] = ()  # empty: discover the parent zone's NS set
    ds_check_interval: int = HOUR
    # Take the zone back to unsigned: withdraw the DS with the RFC 8078 "delete"
    # CDS/CDNSKEY, then drop the keys once the DS is gone (see signer.timing).
    insecure: bool = False

    def __post_init__(self) -> None:
        # Any spelling of the servers ("::1", a list) is kept in canonical form, so equal
        # policies compare equal; what does not parse is reported by _check_policy.
        with contextlib.suppress(ValueError):
            object.__setattr__(self, "parent_servers", _parse_servers(self.parent_servers))
        _check_policy(self, "policy")

    @property
    def sign_delay(self) -> int:
        """Dsgn (RFC 7583 §2): the longest a signature by a retired key may stay in the
        zone when signatures are replaced as they come up for refresh."""
        return self.rrsig_validity - self.rrsig_refresh

    @property
    def parent_server_addresses(self) -> tuple[tuple[str, int], ...]:
        """``parent_servers`` as (address, port) pairs; empty means "discover them"."""
        return tuple(parse_server(text) for text in self.parent_servers)


# --- durations and nameserver addresses: the one settings grammar ----------------------

parse_duration = parse_seconds  # policy times are whole seconds


def parse_server(value: object) -> tuple[str, int]:
    """(address, port) from any address form of the settings grammar (port 53 by default).
    Only IP addresses: resolving names here would make the policy depend on the network."""
    address = parse_address(value, DNS_PORT)
    return address.host, address.port


def format_server(address: str, port: int) -> str:
    """The canonical text of a server: ``"192.0.2.1:53"``, ``"[2001:db8::1]:53"``."""
    return str(Address(address, port))


def _parse_servers(value: object) -> tuple[str, ...]:
    """Canonical server texts from a TOML list; ValueError with a user message."""
    if not isinstance(value, list | tuple):
        raise ValueError(
            f'{value!r} must be a list of addresses, e.g. ["192.0.2.1", "[2001:db8::1]:5300"]'
        )
    out: list[str] = []
    for item in value:
        text = format_server(*parse_server(item))
        if text in out:
            raise ValueError(f"{item!r} is listed twice (as {text})")
        out.append(text)
    return tuple(out)


# --- checking ---------------------------------------------------------------------


def _algorithm_text(algorithm: int) -> str:
    return f"{algorithm} ({dns.dnssec.algorithm_to_text(algorithm)})"


def _check_ranges(p: Policy, where: str) -> None:
    """Each value on its own: types and ranges."""
    if p.algorithm not in SUPPORTED_ALGORITHMS:
        raise PolicyError(
            where,
            "algorithm",
            f"{p.algorithm!r} is not supported; use one of "
            + ", ".join(_algorithm_text(a) for a in SUPPORTED_ALGORITHMS),
        )
    for name in ("key_style", "denial", "ds_check"):
        expected = {"key_style": KeyStyle, "denial": Denial, "ds_check": DsCheck}[name]
        if not isinstance(getattr(p, name), expected):
            raise PolicyError(where, _kebab(name), f"must be a {expected.__name__}")
    for name in ("nsec3_opt_out", "cds_cdnskey", "insecure"):
        if not isinstance(getattr(p, name), bool):
            raise PolicyError(where, _kebab(name), "must be true or false")
    for name in _DURATION_FIELDS:
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(where, _kebab(name), f"{value!r} must be a number of seconds >= 0")
    for name in _TTL_FIELDS:
        if getattr(p, name) > _MAX_TTL:
            raise PolicyError(where, _kebab(name), f"must be at most {_MAX_TTL} (RFC 2181 §8)")
    if p.rrsig_validity == 0:
        raise PolicyError(where, "rrsig-validity", 'must be longer than 0, e.g. "14d"')
    if p.rrsig_refresh == 0:
        raise PolicyError(where, "rrsig-refresh", 'must be longer than 0, e.g. "7d"')
    if p.ds_check_interval < _MIN_DS_CHECK_INTERVAL:
        raise PolicyError(
            where,
            "ds-check-interval",
            f"must be at least {format_duration(_MIN_DS_CHECK_INTERVAL)}: asking the "
            'parent nameservers more often only loads them; e.g. "1h"',
        )


def _check_parent_servers(p: Policy, where: str) -> None:
    try:
        canonical = _parse_servers(p.parent_servers)
    except ValueError as exc:
        raise PolicyError(where, "parent-servers", str(exc)) from None
    if not isinstance(p.parent_servers, tuple) or canonical != p.parent_servers:
        raise PolicyError(
            where,
            "parent-servers",
            f"must be a tuple of addresses such as {canonical!r}",
        )
    if p.parent_servers and p.ds_check is not DsCheck.AUTO:
        raise PolicyError(
            where,
            "parent-servers",
            'only applies with ds-check = "auto"; remove it or set ds-check = "auto"',
        )


def _check_nsec3(p: Policy, where: str) -> None:
    if isinstance(p.nsec3_iterations, bool) or p.nsec3_iterations != 0:
        raise PolicyError(
            where,
            "nsec3-iterations",
            f"{p.nsec3_iterations!r}: must be 0 (RFC 9276 §3.1: extra iterations only cost "
            "CPU, and resolvers may treat such zones as insecure or bogus)",
        )
    if not isinstance(p.nsec3_salt, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", p.nsec3_salt):
        raise PolicyError(
            where, "nsec3-salt", f'{p.nsec3_salt!r} must be hex digits, or "" for no salt'
        )
    if len(p.nsec3_salt) // 2 > _MAX_SALT_BYTES:
        raise PolicyError(where, "nsec3-salt", f"must be at most {_MAX_SALT_BYTES} bytes")
    if p.denial is Denial.NSEC and (p.nsec3_salt or p.nsec3_opt_out):
        raise PolicyError(
            where,
            "nsec3-salt" if p.nsec3_salt else "nsec3-opt-out",
            'only applies with denial = "nsec3"; remove it or set denial = "nsec3"',
        )


def _check_signature_timing(p: Policy, where: str) -> None:
    """The signature timers must fit inside each other, or the zone re-signs forever."""
    validity = format_duration(p.rrsig_validity)
    refresh = format_duration(p.rrsig_refresh)
    if p.rrsig_refresh >= p.rrsig_validity:
        raise PolicyError(
            where, "rrsig-refresh", f"must be shorter than rrsig-validity ({validity})"
        )
    if p.rrsig_jitter >= p.rrsig_refresh:
        raise PolicyError(
            where,
            "rrsig-jitter",
            f"must be shorter than rrsig-refresh ({refresh}), or signatures could be "
            "due for refresh as soon as they are made",
        )
    if p.rrsig_validity <= p.rrsig_refresh + p.rrsig_jitter:
        # A fresh signature lasts at least validity - jitter; if that is not more than
        # refresh, the signer would re-sign it at once, on every pass.
        raise PolicyError(
            where,
            "rrsig-validity",
            f"must be longer than rrsig-refresh + rrsig-jitter ({refresh} + "
            f"{format_duration(p.rrsig_jitter)}); lengthen it or shorten the other two",
        )
    if p.inception_offset >= p.rrsig_validity - p.rrsig_refresh:
        raise PolicyError(
            where,
            "inception-offset",
            f"must be shorter than rrsig-validity - rrsig-refresh "
            f"({format_duration(p.rrsig_validity - p.rrsig_refresh)}); an hour is plenty "
            "for clock skew",
        )


def _check_lifetimes(p: Policy, where: str) -> None:
    # A rollover keeps the old key at least until its last signatures are out of
    # caches, so a key living shorter than one signature validity would have its
    # successor's rollover start before its own finished.
    for name in ("ksk_lifetime", "zsk_lifetime", "csk_lifetime"):
        value = getattr(p, name)
        if 0 < value < p.rrsig_validity:
            raise PolicyError(
                where,
                _kebab(name),
                f"must be 0 (unlimited) or at least rrsig-validity "
                f"({format_duration(p.rrsig_validity)}): a rollover takes about that long",
            )


def _check_policy(p: Policy, where: str) -> None:
    _check_ranges(p, where)
    _check_parent_servers(p, where)
    _check_nsec3(p, where)
    _check_signature_timing(p, where)
    _check_lifetimes(p, where)


def check_zone_fit(policy: Policy, soa_expire: int, max_ttl: int, where: str = "policy") -> None:
    """Raise PolicyError unless signatures outlast SOA EXPIRE plus the largest TTL.

    A secondary cut off from the hidden primary keeps answering for SOA EXPIRE seconds
    after its last refresh, and resolvers keep what it served for up to the largest TTL
    more: ``max_ttl`` (the zone's data) or the policy's ``dnskey_ttl`` (DNSKEY, CDS and
    CDNSKEY, not yet in a zone about to be signed), whichever is larger.  The worst
    moment to be cut off is just before a re-signing pass: the signatures it holds then
    have ``rrsig_refresh`` left (jitter is taken off the expiration when signing and
    validity - jitter > refresh is enforced, so jitter never lowers what is left at
    refresh time).  That must exceed ``soa_expire`` + the largest TTL.
    """
    largest = _largest_ttl(policy, max_ttl)
    guaranteed = policy.rrsig_refresh
    needed = soa_expire + largest
    if guaranteed > needed:
        return
    validity, refresh = derived_lifetimes(policy, soa_expire, max_ttl)
    raise PolicyError(
        where,
        "rrsig-refresh",
        f"{_shortfall(policy, soa_expire, largest)}.  Set rrsig-refresh to at least "
        f"{format_duration(refresh)} and rrsig-validity to at least {format_duration(validity)}",
    )


def _shortfall(policy: Policy, soa_expire: int, largest: int) -> str:
    """Why ``policy`` does not fit, with the numbers (see :func:`check_zone_fit`)."""
    left = policy.rrsig_refresh
    needed = soa_expire + largest
    return (
        f"signatures may have only {format_duration(left)} ({left} s) left when they are "
        f"refreshed, but a secondary cut off from the primary serves them for SOA EXPIRE "
        f"{format_duration(soa_expire)} ({soa_expire} s) and resolvers cache them for up "
        f"to the largest TTL {format_duration(largest)} ({largest} s) more: {needed} s in all"
    )


def _largest_ttl(policy: Policy, max_ttl: int) -> int:
    # Negative answers are cached for min(SOA TTL, SOA MINIMUM) (RFC 2308 §5; the NSEC
    # and NSEC3 TTL, RFC 9077): never more than the SOA RRset's TTL, a data TTL already
    # in ``max_ttl``.  The DNSKEY RRset (and CDS/CDNSKEY) gets the policy's TTL.
    return max(max_ttl, policy.dnskey_ttl)


# --- signature lifetimes that follow the zone -------------------------------------------
#
# Knot derives its rrsig-refresh default from the zone (knot.conf(5), policy section:
# "rrsig-refresh ... Default: propagation-delay + zone-max-ttl", with rrsig-lifetime 14d
# and rrsig-pre-refresh 1h); BIND's dnssec-policy keeps signatures-validity 14d and
# signatures-refresh 5d and refuses a refresh above 90% of the validity. zonefan
# follows Knot, and adds SOA EXPIRE to what the refresh must cover (check_zone_fit),
# because a hidden primary's secondaries go on serving the zone that long without it:
#
#   rrsig-refresh  = EXPIRE + largest TTL + zone-propagation-delay + 1 hour (the
#                    maintenance run's slack, Knot's pre-refresh), rounded up to a day;
#   rrsig-validity = rrsig-refresh + rrsig-jitter + the policy's refresh spacing
#                    (validity - refresh: 7 days by default, never under a day), rounded
#                    up to a day, so each signature is still re-made only about weekly;
#
# and only when the policy's own values (14d / 7d by default) do not fit: a zone they
# fit keeps them, so signed zones do not churn.  EXPIRE 14d with TTLs up to 1d gives
# 24d / 16d (refresh at 67% of the validity, within BIND's 90%); 28d gives 38d / 30d.

#: RFC 1912 §2.2 suggests an SOA EXPIRE of 2-4 weeks.
ADVISED_MAX_EXPIRE = 4 * WEEK
#: TTLs above a day gain little: unbound caches nothing longer by default (its
#: cache-max-ttl), and RFC 8767 §4 suggests that resolvers cap TTLs at 7 days.
ADVISED_MAX_TTL = DAY
#: Lifetimes are derived for zones up to the advised EXPIRE plus the advised TTL (29
#: days); past it, signatures (and any replay of them) would stay valid for 6 weeks or
#: more, so the zone's EXPIRE or TTLs are what should change.
MAX_DERIVED_COVER = ADVISED_MAX_EXPIRE + ADVISED_MAX_TTL
_REFRESH_SLACK = HOUR


def _round_up(seconds: int, unit: int) -> int:
    return -(-seconds // unit) * unit


def derived_lifetimes(policy: Policy, soa_expire: int, max_ttl: int) -> tuple[int, int]:
    """(rrsig_validity, rrsig_refresh) made to fit a zone with ``soa_expire`` and data
    TTLs up to ``max_ttl`` (the arithmetic in the comment above; no limit applied)."""
    cover = soa_expire + _largest_ttl(policy, max_ttl)
    refresh = _round_up(cover + policy.zone_propagation_delay + _REFRESH_SLACK, DAY)
    spacing = max(policy.rrsig_validity - policy.rrsig_refresh, DAY)
    validity = _round_up(refresh + policy.rrsig_jitter + spacing, DAY)
    return validity, refresh


@dataclass(frozen=True)
class PolicySource:
    """Where a named policy is defined: ``file`` holds its ``[policy.NAME]`` table.

    ``sets_lifetimes``: that table sets rrsig-validity or rrsig-refresh, so they are the
    operator's choice, checked against each zone and never derived.  A policy without
    a source (the built-in default, or one made in code) derives them from the zone.
    """

    name: str
    file: str
    sets_lifetimes: bool


@dataclass(frozen=True)
class ZoneFit:
    """The policy a zone is signed with, its lifetimes fitted to the zone.

    ``derived``: the lifetimes were derived from the zone (the policy's own did not fit);
    ``largest_ttl``: the largest TTL counted (data, or the policy's DNSKEY TTL).
    """

    policy: Policy
    derived: bool
    soa_expire: int
    largest_ttl: int

    def describe(self) -> str:
        """``rrsig-validity 24d, rrsig-refresh 16d, derived from SOA EXPIRE 14d + largest
        TTL 1d``, or what the policy's own values fit."""
        values = (
            f"rrsig-validity {format_duration(self.policy.rrsig_validity)}, "
            f"rrsig-refresh {format_duration(self.policy.rrsig_refresh)}"
        )
        zone = (
            f"SOA EXPIRE {format_duration(self.soa_expire)} + largest TTL "
            f"{format_duration(self.largest_ttl)}"
        )
        if self.derived:
            return f"{values}, derived from {zone}"
        return f"{values}, which cover {zone}"


#: Given a TTL, the zone's RRsets above it: up to a few described as ``"www.example. A
#: has TTL 30d"``, longest first, and how many there are in all.
LongTtls = Callable[[int], tuple[Sequence[str], int]]


def _no_names(_limit: int) -> tuple[Sequence[str], int]:
    return (), 0


def fit_to_zone(
    policy: Policy,
    soa_expire: int,
    max_ttl: int,
    where: str,
    source: PolicySource | None = None,
    long_ttls: LongTtls = _no_names,
) -> ZoneFit:
    """``policy`` with signature lifetimes that fit a zone (see :func:`check_zone_fit`).

    A policy whose lifetimes fit keeps them.  One that does not is refused with a
    ready-to-paste ``[policy.NAME]`` block when ``source`` says its table sets them;
    otherwise its lifetimes are derived (:func:`derived_lifetimes`), unless the zone's
    SOA EXPIRE plus largest TTL exceeds :data:`MAX_DERIVED_COVER`: then the error names
    what to lower (``long_ttls`` lists the RRsets whose TTL is too long).  ``where``
    names the zone in messages.  Raises PolicyError.
    """
    largest = _largest_ttl(policy, max_ttl)
    if policy.rrsig_refresh > soa_expire + largest:
        return ZoneFit(policy, False, soa_expire, largest)
    validity, refresh = derived_lifetimes(policy, soa_expire, max_ttl)
    too_long = soa_expire + largest > MAX_DERIVED_COVER
    advice = _too_long(policy, soa_expire, largest, long_ttls) if too_long else None
    if source is not None and source.sets_lifetimes:
        table = f"{source.file} [policy.{_toml_key(source.name)}]"
        text = (
            f"{format_duration(policy.rrsig_refresh)} does not fit {where}: "
            f"{_shortfall(policy, soa_expire, largest)}.  "
        )
        block = _paste_block(policy, source.name, (validity, refresh))
        if advice is not None:
            text += f"{advice[1]}.  To sign the zone as it is, set both in {source.file}:"
            text += f"\n\n{block}"
        else:
            text += (
                f"Set both in {source.file}:\n\n{block}\n\nor delete both settings there: "
                "zonefan then derives them from each zone's SOA EXPIRE and TTLs"
            )
        raise PolicyError(table, "rrsig-refresh", text)
    if advice is not None:
        raise PolicyError(where, *advice)
    try:
        fitted = dataclasses.replace(policy, rrsig_validity=validity, rrsig_refresh=refresh)
    except PolicyError as e:
        # E.g. a key lifetime shorter than the derived validity.
        table = f"{source.file} [policy.{_toml_key(source.name)}]" if source else "policy"
        raise PolicyError(
            table,
            e.field,
            f"{e.reason} (rrsig-validity {format_duration(validity)} is what {where} "
            f"needs: SOA EXPIRE {format_duration(soa_expire)} + largest TTL "
            f"{format_duration(largest)})",
        ) from None
    return ZoneFit(fitted, True, soa_expire, largest)


def _paste_block(policy: Policy, name: str, suggested: tuple[int, int]) -> str:
    """The ``[policy.NAME]`` lines that make ``policy`` fit (TOML, ready to paste)."""
    validity, refresh = suggested
    # Only the refresh has to change when the operator's validity still leaves a day
    # above the new refresh and the jitter.
    if policy.rrsig_validity > refresh + policy.rrsig_jitter + DAY:
        validity = policy.rrsig_validity
    return (
        f"[policy.{_toml_key(name)}]\n"
        f'rrsig-refresh = "{format_duration(refresh)}"\n'
        f'rrsig-validity = "{format_duration(validity)}"'
    )


def _too_long(
    policy: Policy, soa_expire: int, largest: int, long_ttls: LongTtls
) -> tuple[str, str]:
    """(what to change, what and why) for a zone too long-lived to derive lifetimes for."""
    fields = []
    fixes = []
    if soa_expire > ADVISED_MAX_EXPIRE:
        fields.append("SOA EXPIRE")
        fixes.append(
            f"SOA EXPIRE {format_duration(soa_expire)} is beyond the 2-4 weeks RFC 1912 "
            f"§2.2 suggests: lower it to {format_duration(ADVISED_MAX_EXPIRE)} or less "
            "(14d is usual)"
        )
    limit = MAX_DERIVED_COVER - min(soa_expire, ADVISED_MAX_EXPIRE)
    if largest > limit:
        fields.append("TTL")
        shown, total = long_ttls(limit)
        named = list(shown)
        if policy.dnskey_ttl > limit:
            named.append(f"the policy's dnskey-ttl is {format_duration(policy.dnskey_ttl)}")
            total += 1
        if total > len(named):
            named.append(f"{total - len(named)} more RRset(s) above {format_duration(limit)}")
        which = "; ".join(named) if named else f"TTLs above {format_duration(limit)}"
        fixes.append(
            f"{which}: TTLs above {format_duration(ADVISED_MAX_TTL)} gain little (unbound "
            "caches nothing longer by default, and RFC 8767 §4 suggests that resolvers cap "
            f"TTLs at 7d), so lower {'it' if total == 1 else 'them'} to "
            f"{format_duration(ADVISED_MAX_TTL)} or less (with this EXPIRE, up to "
            f"{format_duration(limit)} would do)"
        )
    validity, _ = derived_lifetimes(policy, soa_expire, largest)
    why = (
        f"Signatures must outlast SOA EXPIRE {format_duration(soa_expire)} plus the largest "
        f"TTL {format_duration(largest)} ({format_duration(soa_expire + largest)} in all); "
        f"zonefan derives their lifetimes only up to EXPIRE "
        f"{format_duration(ADVISED_MAX_EXPIRE)} + TTL {format_duration(ADVISED_MAX_TTL)}, as "
        f"these would stay valid, and replayable after a change, for "
        f"{format_duration(validity)}"
    )
    return " and ".join(fields), ".  ".join([*fixes, why])


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(name: str) -> str:
    """``name`` as a TOML key: bare when it can be, else a quoted string."""
    if _BARE_KEY.fullmatch(name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- signature timing ---------------------------------------------------------------


def _jitter(policy: Policy, seed: bytes) -> int:
    """Deterministic jitter in [0, rrsig_jitter) from ``seed`` (e.g. owner + type)."""
    if policy.rrsig_jitter == 0:
        return 0
    digest = hashlib.sha256(seed).digest()
    return int.from_bytes(digest[:8], "big") % policy.rrsig_jitter


def signature_window(policy: Policy, now: int, jitter_seed: bytes) -> tuple[int, int]:
    """(inception, expiration) for a signature made at ``now``.

    The inception is back-dated by ``inception_offset`` for validators with slow
    clocks; the expiration is ``now + rrsig_validity`` minus a jitter derived from
    ``jitter_seed`` (e.g. the owner name's wire form plus the type), so RRsets expire
    spread out, and the same RRset gets the same window in tests.
    """
    inception = max(now - policy.inception_offset, 0)
    expiration = now + policy.rrsig_validity - _jitter(policy, jitter_seed)
    return inception, expiration


def needs_refresh(policy: Policy, expiration: int, now: int) -> bool:
    """True when a signature expiring at ``expiration`` has less than rrsig_refresh left."""
    return expiration - now < policy.rrsig_refresh


def next_refresh_time(policy: Policy, expirations: Iterable[int]) -> int | None:
    """When the first of ``expirations`` comes up for refresh; None if there are none."""
    earliest = min(expirations, default=None)
    return None if earliest is None else earliest - policy.rrsig_refresh


# --- mapping (TOML) ---------------------------------------------------------------

_DURATION_FIELDS = (
    "ksk_lifetime",
    "zsk_lifetime",
    "csk_lifetime",
    "rrsig_validity",
    "rrsig_refresh",
    "rrsig_jitter",
    "inception_offset",
    "dnskey_ttl",
    "zone_propagation_delay",
    "parent_ds_ttl",
    "parent_propagation_delay",
    "publish_safety",
    "retire_safety",
    "ds_check_interval",
)
_TTL_FIELDS = ("dnskey_ttl", "parent_ds_ttl")
_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "key_style": KeyStyle,
    "denial": Denial,
    "ds_check": DsCheck,
}
_BOOL_FIELDS = ("nsec3_opt_out", "cds_cdnskey", "insecure")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


_FIELDS = {_kebab(f.name): f.name for f in dataclasses.fields(Policy)}


def _parse_algorithm(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an algorithm")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            return int(dns.dnssec.algorithm_from_text(text.upper()))
        except ValueError:
            pass
    raise ValueError(
        f"{value!r} is not an algorithm; use one of "
        + ", ".join(_algorithm_text(a) for a in SUPPORTED_ALGORITHMS)
    )


def _parse_value(name: str, value: object) -> object:
    """Convert one TOML value for field ``name``; ValueError with a user message."""
    if name in _DURATION_FIELDS:
        return parse_duration(value)
    if name == "algorithm":
        return _parse_algorithm(value)
    if name in _ENUM_FIELDS:
        kind = _ENUM_FIELDS[name]
        choices = ", ".join(f'"{m.value}"' for m in kind)
        if not isinstance(value, str):
            raise ValueError(f"{value!r} must be one of {choices}")
        try:
            return kind(value.strip().lower())
        except ValueError:
            raise ValueError(f"{value!r} must be one of {choices}") from None
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} must be true or false")
        return value
    if name == "parent_servers":
        return _parse_servers(value)
    if name == "nsec3_iterations":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} must be a whole number (0)")
        return value
    # nsec3_salt
    if not isinstance(value, str):
        raise ValueError(f'{value!r} must be a hex string, or "" for no salt')
    return "" if value.strip() == "-" else value.strip().lower()


def policy_from_mapping(data: Mapping[str, object], where: str) -> Policy:
    """Build a Policy from a TOML table with kebab-case keys; unset keys keep defaults.

    ``where`` names the table in messages, e.g. ``"zonefan.toml [policy.default]"``.
    Unknown keys, wrong types and inconsistent values raise PolicyError.
    """
    values: dict[str, object] = {}
    for key, value in data.items():
        name = _FIELDS.get(key)
        if name is None:
            known = ", ".join(sorted(_FIELDS))
            hint = f" (did you mean {_kebab(key)}?)" if _kebab(key) in _FIELDS else ""
            raise PolicyError(where, key, f"unknown setting{hint}; known settings: {known}")
        try:
            values[name] = _parse_value(name, value)
        except ValueError as exc:
            raise PolicyError(where, key, str(exc)) from None
    policy = object.__new__(Policy)
    for f in dataclasses.fields(Policy):
        object.__setattr__(policy, f.name, values.get(f.name, f.default))
    _check_policy(policy, where)
    return policy


def policy_to_mapping(policy: Policy) -> dict[str, object]:
    """The effective policy as a TOML-ready table (kebab-case keys, durations as text)."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(Policy):
        value = getattr(policy, f.name)
        if f.name in _DURATION_FIELDS and f.name not in _TTL_FIELDS:
            out[_kebab(f.name)] = format_duration(value)
        elif isinstance(value, enum.Enum):
            out[_kebab(f.name)] = value.value
        elif isinstance(value, tuple):
            out[_kebab(f.name)] = list(value)  # TOML arrays
        else:
            out[_kebab(f.name)] = value
    return out
