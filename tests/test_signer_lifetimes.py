"""signer.policy.fit_to_zone: signature lifetimes derived from a zone's SOA EXPIRE and
largest TTL, the explicit-policy refusal with its paste-ready block, and the advice for
zones too long-lived to derive lifetimes for."""

from __future__ import annotations

import dataclasses
import re
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signer.policy import (
    ADVISED_MAX_EXPIRE,
    ADVISED_MAX_TTL,
    DAY,
    HOUR,
    MAX_DERIVED_COVER,
    Policy,
    PolicyError,
    PolicySource,
    check_zone_fit,
    derived_lifetimes,
    fit_to_zone,
    format_duration,
    policy_from_mapping,
)

WHERE = "zone example.test."
WEEK = 7 * DAY
expires = st.integers(min_value=HOUR, max_value=4 * WEEK)
ttls = st.integers(min_value=0, max_value=DAY)


def _block(message: str) -> dict[str, object]:
    """The TOML block in a refusal, parsed."""
    found = re.search(r"\n\n(\[policy\..*?)(?:\n\n|$)", message, re.S)
    assert found, message
    return tomllib.loads(found.group(1))


@settings(max_examples=300, deadline=None)
@given(expires, ttls)
def test_the_default_signs_any_ordinary_zone(soa_expire: int, max_ttl: int) -> None:
    fit = fit_to_zone(Policy(), soa_expire, max_ttl, WHERE)
    # The safety rule holds, and the policy passes every consistency check again.
    check_zone_fit(fit.policy, soa_expire, max_ttl)
    dataclasses.replace(fit.policy)  # runs _check_policy
    assert fit.largest_ttl == max(max_ttl, Policy().dnskey_ttl)
    if soa_expire + fit.largest_ttl < Policy().rrsig_refresh:
        assert fit.policy == Policy() and not fit.derived, "the defaults are kept"
    else:
        assert fit.derived
        p = fit.policy
        assert p.rrsig_refresh % DAY == 0 and p.rrsig_validity % DAY == 0
        # Each signature is still re-made no more often than with the defaults.
        assert p.rrsig_validity - p.rrsig_refresh - p.rrsig_jitter >= Policy().sign_delay
        # BIND refuses a refresh above 90% of the validity; this stays well under.
        assert p.rrsig_refresh <= 0.9 * p.rrsig_validity
        # Everything but the two lifetimes is the policy's own.
        assert dataclasses.replace(p, rrsig_validity=14 * DAY, rrsig_refresh=7 * DAY) == Policy()


@settings(max_examples=200, deadline=None)
@given(expires, expires, ttls)
def test_a_longer_expire_never_shortens_the_lifetimes(a: int, b: int, max_ttl: int) -> None:
    low, high = sorted((a, b))
    first = fit_to_zone(Policy(), low, max_ttl, WHERE).policy
    second = fit_to_zone(Policy(), high, max_ttl, WHERE).policy
    assert second.rrsig_refresh >= first.rrsig_refresh
    assert second.rrsig_validity >= first.rrsig_validity


@pytest.mark.parametrize(
    ("expire", "validity", "refresh"),
    [
        (5 * DAY, "14d", "7d"),
        (7 * DAY, "17d", "9d"),
        (14 * DAY, "24d", "16d"),
        (28 * DAY, "38d", "30d"),
    ],
)
def test_usual_expires_with_a_day_of_ttl(expire: int, validity: str, refresh: str) -> None:
    fit = fit_to_zone(Policy(), expire, DAY, WHERE)
    assert format_duration(fit.policy.rrsig_validity) == validity
    assert format_duration(fit.policy.rrsig_refresh) == refresh
    expected = f"rrsig-validity {validity}, rrsig-refresh {refresh}"
    how = "derived from" if fit.derived else "which cover"
    assert (
        fit.describe() == f"{expected}, {how} SOA EXPIRE {format_duration(expire)} + largest TTL 1d"
    )


def test_the_policy_dnskey_ttl_counts_before_the_zone_has_a_dnskey() -> None:
    # Data TTLs of an hour, but the policy publishes DNSKEYs for two days.
    policy = Policy(dnskey_ttl=2 * DAY)
    fit = fit_to_zone(policy, 6 * DAY, HOUR, WHERE)
    assert fit.derived and fit.largest_ttl == 2 * DAY
    check_zone_fit(fit.policy, 6 * DAY, 2 * DAY)
    with pytest.raises(PolicyError):
        check_zone_fit(policy, 6 * DAY, HOUR)


def test_a_table_without_lifetimes_keeps_its_other_settings() -> None:
    policy = policy_from_mapping({"key-style": "ksk-zsk", "rrsig-jitter": "1d"}, "x")
    source = PolicySource("split", "/etc/zonefan.toml", sets_lifetimes=False)
    fit = fit_to_zone(policy, 14 * DAY, DAY, WHERE, source)
    assert fit.derived and fit.policy.key_style is policy.key_style
    assert fit.policy.rrsig_jitter == DAY
    assert fit.policy.rrsig_validity == 24 * DAY  # 16d + 1d jitter + 7d


@settings(max_examples=200, deadline=None)
@given(
    expires,
    ttls,
    st.integers(min_value=2, max_value=6).map(lambda d: d * DAY),
    st.sampled_from(["default", "slow", "my.policy", 'odd "name"']),
)
def test_an_explicit_conflict_is_refused_with_a_block_that_fits(
    soa_expire: int, max_ttl: int, refresh: int, name: str
) -> None:
    policy = Policy(rrsig_refresh=refresh, rrsig_validity=refresh + 2 * DAY)
    source = PolicySource(name, "/etc/zonefan/zonefan.toml", sets_lifetimes=True)
    try:
        fit = fit_to_zone(policy, soa_expire, max_ttl, WHERE, source)
    except PolicyError as e:
        text = str(e)
        assert "/etc/zonefan/zonefan.toml" in text and WHERE in text
        assert "below 0" not in text
        block = _block(text)
        table = block["policy"]
        assert isinstance(table, dict) and list(table) == [name]
        pasted = policy_from_mapping(table[name], "pasted")
        # The pasted values are accepted for this zone.
        check_zone_fit(pasted, soa_expire, max_ttl)
        fitted = fit_to_zone(pasted, soa_expire, max_ttl, WHERE, source)
        assert not fitted.derived
    else:
        assert fit.policy == policy and not fit.derived
        check_zone_fit(policy, soa_expire, max_ttl)


def test_an_explicit_longer_validity_is_kept_in_the_block() -> None:
    policy = Policy(rrsig_refresh=7 * DAY, rrsig_validity=40 * DAY)
    source = PolicySource("long", "zonefan.toml", sets_lifetimes=True)
    with pytest.raises(PolicyError) as info:
        fit_to_zone(policy, 14 * DAY, DAY, WHERE, source)
    assert _block(str(info.value)) == {
        "policy": {"long": {"rrsig-refresh": "16d", "rrsig-validity": "40d"}}
    }
    assert "or delete both settings there" in str(info.value)


def _names(limit: int) -> tuple[list[str], int]:
    longest = [
        ("www.example.test. A", 30 * DAY),
        ("old.example.test. TXT", 20 * DAY),
        ("a.example.test. A", 16 * DAY),
        ("b.example.test. A", 16 * DAY),
        ("c.example.test. A", 2 * DAY),
    ]
    over = [f"{n} has TTL {format_duration(t)}" for n, t in longest if t > limit]
    return over[:3], len(over)


def test_a_huge_ttl_gets_advice_about_that_ttl() -> None:
    with pytest.raises(PolicyError) as info:
        fit_to_zone(Policy(), 14 * DAY, 30 * DAY, WHERE, long_ttls=_names)
    e = info.value
    assert e.where == WHERE and e.field == "TTL"
    text = str(e)
    # Only the RRsets that must change are named: those above EXPIRE 4w + 1d - 14d = 15d.
    assert "www.example.test. A has TTL 30d; old.example.test. TXT has TTL 20d; " in text
    assert "a.example.test. A has TTL 16d; 1 more RRset(s) above 15d" in text
    assert "c.example.test" not in text
    assert "lower them to 1d or less" in text and "up to 15d would do" in text
    assert "RFC 8767" in text and "EXPIRE" in text and "below" not in text


def test_an_absurd_expire_gets_advice_about_the_expire() -> None:
    with pytest.raises(PolicyError) as info:
        fit_to_zone(Policy(), 365 * DAY, HOUR, WHERE, long_ttls=_names)
    assert info.value.field == "SOA EXPIRE"
    text = str(info.value)
    assert "SOA EXPIRE 365d" in text and "RFC 1912 §2.2" in text and "28d or less" in text
    assert "has TTL" not in text, "the TTLs are fine"


def test_the_limit_is_the_advised_expire_plus_the_advised_ttl() -> None:
    assert MAX_DERIVED_COVER == ADVISED_MAX_EXPIRE + ADVISED_MAX_TTL == 29 * DAY
    fit_to_zone(Policy(), ADVISED_MAX_EXPIRE, ADVISED_MAX_TTL, WHERE)
    fit_to_zone(Policy(), 14 * DAY, 15 * DAY, WHERE)  # long TTL, short EXPIRE: still fits
    with pytest.raises(PolicyError):
        fit_to_zone(Policy(), 14 * DAY, 15 * DAY + 1, WHERE)


def test_derived_lifetimes_follow_the_documented_arithmetic() -> None:
    p = Policy()
    # 14d + 1d + 5 min propagation + 1 h slack, up to whole days; + 12 h jitter + 7 d.
    assert derived_lifetimes(p, 14 * DAY, DAY) == (24 * DAY, 16 * DAY)
    assert derived_lifetimes(p, 14 * DAY - 2 * HOUR, DAY) == (23 * DAY, 15 * DAY)
