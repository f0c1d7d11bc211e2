"""signer.policy: defaults, TOML parsing, consistency rules, zone fit, signature timing."""

from __future__ import annotations

import dataclasses

import pytest

from signer.errors import SignerError
from signer.policy import (
    DAY,
    HOUR,
    Denial,
    DsCheck,
    KeyStyle,
    Policy,
    PolicyError,
    check_zone_fit,
    format_duration,
    needs_refresh,
    next_refresh_time,
    parse_duration,
    policy_from_mapping,
    policy_to_mapping,
    signature_window,
)

WHERE = "zonefan.toml [policy.default]"


def test_defaults_are_sound() -> None:
    p = Policy()
    assert p.algorithm == 13 and p.key_style is KeyStyle.CSK
    assert (p.ksk_lifetime, p.csk_lifetime, p.zsk_lifetime) == (0, 0, 90 * DAY)
    assert p.denial is Denial.NSEC and p.nsec3_iterations == 0 and p.nsec3_salt == ""
    assert (p.rrsig_validity, p.rrsig_refresh, p.rrsig_jitter) == (14 * DAY, 7 * DAY, 12 * HOUR)
    assert p.inception_offset == HOUR and p.dnskey_ttl == 3600
    assert p.cds_cdnskey and p.ds_check is DsCheck.AUTO and not p.insecure
    assert p.sign_delay == 7 * DAY
    assert policy_from_mapping({}, WHERE) == p


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (0, 0),
        (45, 45),
        ("45", 45),
        ("45s", 45),
        ("30m", 1800),
        ("12h", 43200),
        ("90d", 90 * DAY),
        ("2w", 14 * DAY),
        ("1d12h", 36 * HOUR),
        (" 7D ", 7 * DAY),
        ("1.5d", 36 * HOUR),  # the one settings grammar takes fractions
    ],
)
def test_parse_duration(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", [True, -1, "", "1y", "d", "1.5s", "12 h", None, 1.5, 2**31])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0, 45, 14 * DAY, 90 * DAY, 36 * HOUR, 3661)] == [
        "0",
        "45s",
        "14d",
        "90d",
        "1d12h",
        "1h1m1s",
    ]


def test_parse_full_table_and_round_trip() -> None:
    table = {
        "algorithm": "ED25519",
        "key-style": "ksk-zsk",
        "ksk-lifetime": "365d",
        "zsk-lifetime": "30d",
        "denial": "nsec3",
        "nsec3-salt": "-",
        "nsec3-opt-out": True,
        "rrsig-validity": "21d",
        "rrsig-refresh": "10d",
        "rrsig-jitter": "1d",
        "inception-offset": "30m",
        "dnskey-ttl": 7200,
        "zone-propagation-delay": "10m",
        "parent-ds-ttl": "2d",
        "parent-propagation-delay": "2h",
        "publish-safety": "2h",
        "retire-safety": "2h",
        "cds-cdnskey": False,
        "ds-check": "manual",
    }
    p = policy_from_mapping(table, WHERE)
    assert p.algorithm == 15 and p.key_style is KeyStyle.KSK_ZSK
    assert p.zsk_lifetime == 30 * DAY and p.rrsig_validity == 21 * DAY
    assert p.denial is Denial.NSEC3 and p.nsec3_salt == "" and p.nsec3_opt_out
    assert p.parent_ds_ttl == 2 * DAY and not p.cds_cdnskey and p.ds_check is DsCheck.MANUAL
    shown = policy_to_mapping(p)
    assert shown["rrsig-validity"] == "21d" and shown["key-style"] == "ksk-zsk"
    assert shown["dnskey-ttl"] == 7200
    assert policy_from_mapping(shown, WHERE) == p


@pytest.mark.parametrize(
    ("table", "field", "words"),
    [
        ({"rrsig-valid": "14d"}, "rrsig-valid", "unknown setting"),
        ({"rrsig_validity": "14d"}, "rrsig_validity", "did you mean rrsig-validity"),
        ({"algorithm": 5}, "algorithm", "not supported"),
        ({"algorithm": "RSAMD5X"}, "algorithm", "not an algorithm"),
        ({"algorithm": True}, "algorithm", "not an algorithm"),
        ({"key-style": "single"}, "key-style", '"csk", "ksk-zsk"'),
        ({"key-style": 1}, "key-style", "must be one of"),
        ({"denial": "nsec5"}, "denial", '"nsec", "nsec3"'),
        ({"ds-check": "sometimes"}, "ds-check", '"auto", "manual"'),
        ({"cds-cdnskey": "yes"}, "cds-cdnskey", "true or false"),
        ({"rrsig-validity": "14x"}, "rrsig-validity", "not a duration"),
        ({"rrsig-validity": 0}, "rrsig-validity", "longer than 0"),
        ({"rrsig-refresh": 0}, "rrsig-refresh", "longer than 0"),
        ({"rrsig-refresh": "15d"}, "rrsig-refresh", "shorter than rrsig-validity (14d)"),
        ({"rrsig-jitter": "8d"}, "rrsig-jitter", "shorter than rrsig-refresh (7d)"),
        (
            {"rrsig-refresh": "10d", "rrsig-jitter": "5d"},
            "rrsig-validity",
            "rrsig-refresh + rrsig-jitter",
        ),
        ({"inception-offset": "7d"}, "inception-offset", "shorter than"),
        ({"zsk-lifetime": "1d"}, "zsk-lifetime", "at least rrsig-validity"),
        ({"dnskey-ttl": 2**31}, "dnskey-ttl", "68 years"),
        ({"denial": "nsec3", "nsec3-iterations": 10}, "nsec3-iterations", "RFC 9276"),
        ({"denial": "nsec3", "nsec3-iterations": "0"}, "nsec3-iterations", "whole number"),
        ({"denial": "nsec3", "nsec3-salt": "xyz"}, "nsec3-salt", "hex"),
        ({"denial": "nsec3", "nsec3-salt": "ab" * 256}, "nsec3-salt", "255 bytes"),
        ({"nsec3-opt-out": True}, "nsec3-opt-out", 'denial = "nsec3"'),
    ],
)
def test_errors_name_where_and_field(table: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(table, WHERE)
    assert str(info.value).startswith(f"{WHERE} {field}: ")
    assert words in str(info.value)
    assert info.value.field == field and info.value.where == WHERE
    assert isinstance(info.value, SignerError)


def test_example_message() -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping({"rrsig-refresh": "14d"}, WHERE)
    assert str(info.value) == (
        "zonefan.toml [policy.default] rrsig-refresh: must be shorter than rrsig-validity (14d)"
    )


def test_direct_construction_is_checked() -> None:
    with pytest.raises(PolicyError, match=r"^policy rrsig-jitter: "):
        Policy(rrsig_jitter=8 * DAY)
    with pytest.raises(PolicyError, match=r"^policy key-style: "):
        Policy(key_style="csk")  # type: ignore[arg-type]
    assert dataclasses.replace(Policy(), insecure=True).insecure


def test_check_zone_fit_accepts_short_expire() -> None:
    check_zone_fit(Policy(), soa_expire=5 * DAY, max_ttl=DAY)  # 7d > 6d


def test_check_zone_fit_explains_the_numbers() -> None:
    with pytest.raises(PolicyError) as info:
        check_zone_fit(Policy(), soa_expire=14 * DAY, max_ttl=3600, where="zone example.test.")
    text = str(info.value)
    assert text.startswith("zone example.test. rrsig-refresh: ")
    assert "7d (604800 s)" in text and "14d (1209600 s)" in text and "1h (3600 s)" in text
    assert "1213200 s in all" in text
    # The suggestion fits: refresh 14d1h + margins in whole days, validity refresh +
    # jitter + the old gap (signer.policy.derived_lifetimes).
    assert "rrsig-refresh to at least 15d" in text
    assert "rrsig-validity to at least 23d" in text
    fixed = dataclasses.replace(Policy(), rrsig_refresh=15 * DAY, rrsig_validity=23 * DAY)
    check_zone_fit(fixed, soa_expire=14 * DAY, max_ttl=3600)


def test_check_zone_fit_boundary() -> None:
    p = Policy()
    with pytest.raises(PolicyError):
        check_zone_fit(p, soa_expire=6 * DAY, max_ttl=DAY)  # equal is not enough
    check_zone_fit(p, soa_expire=6 * DAY, max_ttl=DAY - 1)


def test_signature_window_is_deterministic_and_jittered() -> None:
    p = Policy()
    now = 1_700_000_000
    inc, exp = signature_window(p, now, b"www.example.test./A")
    assert inc == now - HOUR
    assert now + p.rrsig_validity - p.rrsig_jitter < exp <= now + p.rrsig_validity
    assert signature_window(p, now, b"www.example.test./A") == (inc, exp)
    spread = {signature_window(p, now, f"n{i}".encode())[1] for i in range(50)}
    assert len(spread) > 40
    assert not needs_refresh(p, exp, now)
    no_jitter = dataclasses.replace(p, rrsig_jitter=0)
    assert signature_window(no_jitter, now, b"x") == (now - HOUR, now + 14 * DAY)
    assert signature_window(p, 10, b"x")[0] == 0


def test_refresh_helpers() -> None:
    p = Policy()
    assert needs_refresh(p, 1000 + 7 * DAY - 1, 1000)
    assert not needs_refresh(p, 1000 + 7 * DAY, 1000)
    assert next_refresh_time(p, [50 * DAY, 20 * DAY, 30 * DAY]) == 13 * DAY
    assert next_refresh_time(p, []) is None
