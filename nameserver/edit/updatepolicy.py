"""Who may change what through dynamic UPDATE: per-zone rules like BIND's ``update-policy``.

A rule reads ``grant|deny IDENTITY RULETYPE [NAME] [TYPE ...]``:

- ``IDENTITY`` is the TSIG key name (absolute; ``*`` or ``*.suffix.`` match many keys);
- ``RULETYPE`` is one of ``name`` (the owner is exactly NAME), ``subdomain`` (NAME or
  below), ``wildcard`` (NAME is ``*.x``: the owner lies strictly below ``x``), ``zonesub``
  (anywhere in the zone; no NAME field), ``self`` (the owner is the key's name) and
  ``selfsub`` (the key's name or below); ``self``/``selfsub`` take a NAME field that is
  ignored, as in BIND;
- ``NAME`` is relative to the zone origin unless it ends with a dot (``@`` is the apex);
- ``TYPE`` mnemonics; none means every type but SOA and NS (BIND's default), ``ANY``
  means every type. The signer's types (RRSIG, NSEC, NSEC3, NSEC3PARAM, DNSKEY, CDS,
  CDNSKEY) can never be updated, so naming one is an error.

The first rule that matches the key, the owner and the type decides; no match refuses.
Unsigned requests match no rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import dns.exception
import dns.name
import dns.rdatatype

from nameserver.errors import UpdatePolicyError
from nameserver.zone.records import type_text
from nameserver.zone.validate import SIGNER_TYPES

SOA = int(dns.rdatatype.SOA)
NS = int(dns.rdatatype.NS)
ANY = int(dns.rdatatype.ANY)
# BIND: "If no types are explicitly specified, this rule matches all types except RRSIG,
# NS, SOA, NSEC, and NSEC3" (the signer types are refused before the policy is asked).
_NOT_BY_DEFAULT = frozenset({SOA, NS})

# Error factories of the rule being parsed: (field, reason) and (reason) for one field.
_Fail = Callable[[str, str], UpdatePolicyError]
_FailReason = Callable[[str], UpdatePolicyError]


class RuleType(StrEnum):
    """How a rule's NAME field is compared with an updated owner name."""

    NAME = "name"
    SUBDOMAIN = "subdomain"
    WILDCARD = "wildcard"
    ZONESUB = "zonesub"
    SELF = "self"
    SELFSUB = "selfsub"


@dataclass(frozen=True)
class UpdateRule:
    """One parsed rule. ``types`` None: BIND's default (all but SOA/NS); ``every_type``:
    ``ANY`` was listed."""

    grant: bool
    identity: dns.name.Name
    kind: RuleType
    name: dns.name.Name | None
    types: frozenset[int] | None
    every_type: bool
    text: str

    def matches_key(self, key_name: dns.name.Name) -> bool:
        """True when ``key_name`` is this rule's identity (or matches its wildcard)."""
        return _matches_pattern(key_name, self.identity)

    def matches(
        self, key_name: dns.name.Name, owner: dns.name.Name, rdtype: int, origin: dns.name.Name
    ) -> bool:
        """True when the rule applies to ``key_name`` changing ``rdtype`` at ``owner``;
        ``rdtype`` ANY asks whether the rule covers every type (a delete of a whole name
        with nothing at it)."""
        return (
            self.matches_key(key_name)
            and self._matches_owner(key_name, owner, origin)
            and self._matches_type(rdtype)
        )

    def _matches_owner(
        self, key_name: dns.name.Name, owner: dns.name.Name, origin: dns.name.Name
    ) -> bool:
        match self.kind:
            case RuleType.NAME:
                return bool(owner == self.name)
            case RuleType.SUBDOMAIN:
                assert self.name is not None
                return owner.is_subdomain(self.name)
            case RuleType.WILDCARD:
                assert self.name is not None
                return _matches_pattern(owner, self.name)
            case RuleType.ZONESUB:
                return owner.is_subdomain(origin)
            case RuleType.SELF:
                return bool(owner == key_name)
            case RuleType.SELFSUB:
                return owner.is_subdomain(key_name)

    def _matches_type(self, rdtype: int) -> bool:
        if self.every_type:
            return True
        if self.types is None:
            return rdtype != ANY and rdtype not in _NOT_BY_DEFAULT
        return rdtype in self.types


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one updated RR, with the reason for the log."""

    allowed: bool
    reason: str


@dataclass(frozen=True)
class UpdatePolicy:
    """The ordered rules of one zone; the first matching rule decides."""

    origin: dns.name.Name
    rules: tuple[UpdateRule, ...] = ()

    @classmethod
    def parse(cls, origin: dns.name.Name, rules: Iterable[str]) -> UpdatePolicy:
        """Parse rule strings (see the module docstring), raising UpdatePolicyError."""
        return cls(origin, tuple(parse_rule(text, origin) for text in rules))

    def knows(self, key_name: dns.name.Name | None) -> bool:
        """True when some rule names ``key_name`` (a key no rule names can change nothing,
        so the caller can refuse it before looking at the zone)."""
        return key_name is not None and any(r.matches_key(key_name) for r in self.rules)

    def check(self, key_name: dns.name.Name | None, owner: dns.name.Name, rdtype: int) -> Verdict:
        """May ``key_name`` (None: unsigned) change ``rdtype`` at ``owner``?"""
        what = f"{type_text(rdtype)} at {owner}"
        if key_name is None:
            return Verdict(False, f"unsigned update of {what}: a TSIG key is required")
        for i, rule in enumerate(self.rules, 1):
            if rule.matches(key_name, owner, rdtype, self.origin):
                verb = "granted" if rule.grant else "denied"
                return Verdict(
                    rule.grant, f"key {key_name} {verb} {what} by rule {i} {rule.text!r}"
                )
        return Verdict(False, f"no update-policy rule grants key {key_name} {what}")


def parse_rule(text: str, origin: dns.name.Name) -> UpdateRule:
    """Parse one rule string; errors name the rule and the field."""
    zone = str(origin)

    def fail(field: str, reason: str) -> UpdatePolicyError:
        return UpdatePolicyError(zone, text, field, reason)

    words = text.split()
    if len(words) < 3:
        raise fail("rule", "expected `grant|deny IDENTITY RULETYPE [NAME] [TYPE ...]`")
    action, identity_text, kind_text, *rest = words
    if action not in ("grant", "deny"):
        raise fail("action", f"{action!r} is not grant or deny")
    identity = _parse_name(identity_text, dns.name.root, lambda r: fail("identity", r))
    try:
        kind = RuleType(kind_text)
    except ValueError:
        valid = ", ".join(k.value for k in RuleType)
        raise fail("ruletype", f"{kind_text!r} is not one of: {valid}") from None
    name: dns.name.Name | None = None
    if kind is not RuleType.ZONESUB:
        if not rest:
            raise fail("name", f"ruletype {kind.value} needs a NAME field")
        name_text, *rest = rest
        if kind not in (RuleType.SELF, RuleType.SELFSUB):  # the field is ignored there
            name = _parse_name(name_text, origin, lambda r: fail("name", r))
            _check_name(kind, name, origin, fail)
    types, every = _parse_types(rest, fail)
    return UpdateRule(action == "grant", identity, kind, name, types, every, text)


def _check_name(
    kind: RuleType,
    name: dns.name.Name,
    origin: dns.name.Name,
    fail: _Fail,
) -> None:
    if not name.is_subdomain(origin):
        raise fail("name", f"{name} is outside the zone {origin}")
    if kind is RuleType.WILDCARD and not name.is_wild():
        raise fail("name", f"ruletype wildcard needs a name starting with '*.', not {name}")


def _parse_types(words: Sequence[str], fail: _Fail) -> tuple[frozenset[int] | None, bool]:
    if not words:
        return None, False
    types: set[int] = set()
    for word in words:
        try:
            rdtype = int(dns.rdatatype.from_text(word))
        except dns.exception.DNSException:
            raise fail("types", f"{word!r} is not a known RR type") from None
        if rdtype in SIGNER_TYPES:
            raise fail("types", f"{word} records are managed by the signer and cannot be updated")
        if rdtype != ANY and dns.rdatatype.is_metatype(dns.rdatatype.RdataType.make(rdtype)):
            raise fail("types", f"{word} is a meta-type")
        types.add(rdtype)
    return frozenset(types), ANY in types


def _parse_name(text: str, origin: dns.name.Name, fail: _FailReason) -> dns.name.Name:
    try:
        if text == "@":
            return origin
        return dns.name.from_text(text, origin=origin)
    except dns.exception.DNSException as e:
        raise fail(f"{text!r} is not a domain name: {e}") from e


def _matches_pattern(name: dns.name.Name, pattern: dns.name.Name) -> bool:
    """``pattern`` is a name, or ``*.suffix`` matching every name strictly below suffix
    (BIND's dns_name_matcheswildcard); ``*`` alone matches every name."""
    if pattern.is_wild():
        suffix = pattern.parent()
        return bool(name != suffix) and name.is_subdomain(suffix)
    return bool(name == pattern)


def _zone_name(text: str) -> dns.name.Name:
    def fail(reason: str) -> UpdatePolicyError:
        return UpdatePolicyError(text, "", "zone", reason)

    return _parse_name(text, dns.name.root, fail)


def policies_from_config(config: Mapping[str, object]) -> dict[dns.name.Name, UpdatePolicy]:
    """Update policies from a parsed config (TOML): ``[zone."example.test.".update-policy]``
    style, i.e. ``{"zone": {"example.test.": {"update-policy": ["grant ...", ...]}}}``.
    Zones without an ``update-policy`` key get none (every UPDATE to them is refused)."""
    zones = config.get("zone", {})
    if not isinstance(zones, Mapping):
        raise UpdatePolicyError("*", "", "zone", "the [zone] table must map zone names to tables")
    policies: dict[dns.name.Name, UpdatePolicy] = {}
    for zone_text, table in zones.items():
        origin = _zone_name(str(zone_text))
        if not isinstance(table, Mapping) or "update-policy" not in table:
            continue
        rules = table["update-policy"]
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise UpdatePolicyError(
                str(origin), "", "update-policy", "must be a list of rule strings"
            )
        policies[origin] = UpdatePolicy.parse(origin, rules)
    return policies
