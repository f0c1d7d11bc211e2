"""The [pool."NAME"] and [health] tables: defaults, every value checked, the key path in
every error."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from health import Damping, HealthConfigError, parse_health
from settings import SettingsError, Source, Table
from tests.tools import PROJECT_ROOT

GOOD = """
[health]
checker = "hel"
remote-checkers = ["fra-probe", "ams-probe"]

[pool."www.example.test."]
type = "A"
ttl = 30
members = [{ address = "192.0.2.10", region = "fra" }, { address = "192.0.2.20", region = "ams" }]
check = { kind = "http", path = "/healthz", port = 8080, expect = 200, interval = "5s", \
timeout = "2s", rise = 2, fall = 3 }
quorum = 2

[pool."v6.example.test."]
type = "AAAA"
ttl = "1m"
members = [{ address = "2001:DB8::0:1", region = "fra" }]
check = { kind = "dns", qname = "example.test.", qtype = "soa", expect-answer = true }
damping = { half-life = "10m", max-suppress = "40m" }
"""

POOL = 'pool."www.example.test."'


def table(text: str) -> Table:
    return Table(tomllib.loads(text), "", Source(None, {}))


def test_a_good_config_is_read_with_its_defaults() -> None:
    config = parse_health(table(GOOD))
    assert config.checker == "hel"
    assert config.checkers == {"hel", "fra-probe", "ams-probe"}
    assert (config.max_probes, config.pool_probes, config.stale_intervals) == (64, 8, 3)
    www, v6 = config.pools
    assert www.name == dns.name.from_text("www.example.test.")
    assert (www.rdtype, www.ttl, www.quorum) == (dns.rdatatype.A, 30, 2)
    assert [(m.address, m.region) for m in www.members] == [
        ("192.0.2.10", "fra"),
        ("192.0.2.20", "ams"),
    ]
    check = www.check
    assert (check.kind, check.port, check.path) == ("http", 8080, "/healthz")
    assert check.expect == {200}
    assert (check.interval, check.timeout, check.rise, check.fall) == (5.0, 2.0, 2, 3)
    assert www.damping == Damping()
    assert v6.members[0].address == "2001:db8::1"
    assert (v6.ttl, v6.quorum) == (60, None)
    assert (v6.check.port, v6.check.qtype, v6.check.expect_rcode) == (
        53,
        dns.rdatatype.SOA,
        dns.rcode.NOERROR,
    )
    assert v6.check.expect_answer
    assert (v6.damping.half_life, v6.damping.max_suppress, v6.damping.ceiling) == (
        600.0,
        2400.0,
        750.0 * 16,
    )


def test_no_pools_no_health_table() -> None:
    config = parse_health(table(""))
    assert (config.pools, config.checker, config.remote_checkers) == ((), "local", frozenset())


def www(body: str) -> str:
    return f'[pool."www.example.test."]\n{body}\n'


BASE = (
    'type = "A"\nttl = 30\nmembers = [{ address = "192.0.2.10", region = "fra" }]\n'
    'check = { kind = "tcp", port = 80 }\n'
)


def replace(key: str, line: str | None) -> str:
    """BASE with the line of ``key`` replaced by ``line`` (dropped for None)."""
    lines = [ln for ln in BASE.splitlines() if not ln.startswith(f"{key} =")]
    return www("\n".join([*lines, *([line] if line else [])]))


BAD = [
    # (config, key path, words of the reason)
    (replace("type", 'type = "MX"'), f"{POOL}.type", "not a pool type"),
    (replace("type", 'type = "CNAME"'), f"{POOL}.members#1.target", "required in a CNAME"),
    (
        replace("members", 'members = [{ address = "192.0.2.10", region = "fra", target = "a." }]'),
        f"{POOL}.members#1.target",
        "only CNAME pools have targets",
    ),
    (
        www(
            'type = "CNAME"\nttl = 30\ncheck = { kind = "tcp", port = 80 }\nmembers = ['
            '{ address = "192.0.2.10", region = "fra", target = "a.cdn.test." }, '
            '{ address = "192.0.2.11", region = "ams", target = "A.cdn.test." }]'
        ),
        f"{POOL}.members#2.target",
        "A.cdn.test. is a member's target already",
    ),
    (replace("type", None), f"{POOL}.type", "required"),
    (replace("ttl", "ttl = 86400"), f"{POOL}.ttl", "longer than 3600"),
    (replace("ttl", 'ttl = "1.5s"'), f"{POOL}.ttl", "whole number of seconds"),
    (replace("members", "members = []"), f"{POOL}.members", "at least one member"),
    (replace("members", None), f"{POOL}.members", "required"),
    (
        replace("members", 'members = [{ address = "2001:db8::1", region = "fra" }]'),
        f"{POOL}.members#1.address",
        "not an IPv4 address",
    ),
    (
        replace("members", 'members = [{ address = "192.0.2.1:80", region = "fra" }]'),
        f"{POOL}.members#1.address",
        "not an IP address",
    ),
    (
        replace(
            "members",
            'members = [{ address = "192.0.2.1", region = "a" }, '
            '{ address = "192.0.2.01", region = "b" }]',
        ),
        f"{POOL}.members#2.address",
        "not an IP address",
    ),
    (
        replace(
            "members",
            'members = [{ address = "192.0.2.1", region = "a" }, '
            '{ address = "192.0.2.1", region = "b" }]',
        ),
        f"{POOL}.members#2.address",
        "a member already",
    ),
    (
        replace("members", 'members = [{ address = "192.0.2.1", region = "a b" }]'),
        f"{POOL}.members#1.region",
        "not a name of letters",
    ),
    (
        replace("members", 'members = [{ address = "192.0.2.1" }]'),
        f"{POOL}.members#1.region",
        "required",
    ),
    (
        replace("members", 'members = [{ address = "192.0.2.1", region = "a", weight = 2 }]'),
        f"{POOL}.members#1.weight",
        "unknown setting",
    ),
    (replace("check", None), f"{POOL}.check", "required"),
    (replace("check", 'check = { kind = "icmp" }'), f"{POOL}.check.kind", "not a check kind"),
    (replace("check", 'check = { kind = "tcp" }'), f"{POOL}.check.port", "required"),
    (
        replace("check", 'check = { kind = "tcp", port = 80, path = "/" }'),
        f"{POOL}.check.path",
        "unknown setting",
    ),
    (
        replace("check", 'check = { kind = "http", interval = "5s", timeout = "5s" }'),
        f"{POOL}.check.timeout",
        "shorter than the interval",
    ),
    (
        replace("check", 'check = { kind = "http", interval = "0.5s" }'),
        f"{POOL}.check.interval",
        "shorter than 1s",
    ),
    (
        replace("check", 'check = { kind = "http", interval = "soon" }'),
        f"{POOL}.check.interval",
        "not a duration",
    ),
    (replace("check", 'check = { kind = "http", fall = 0 }'), f"{POOL}.check.fall", "1 to 100"),
    (replace("check", 'check = { kind = "http", rise = true }'), f"{POOL}.check.rise", "whole"),
    (replace("check", 'check = { kind = "http", port = 70000 }'), f"{POOL}.check.port", "range"),
    (replace("check", 'check = { kind = "http", path = "healthz" }'), f"{POOL}.check.path", "/"),
    (replace("check", 'check = { kind = "http", expect = 700 }'), f"{POOL}.check.expect", "range"),
    (
        replace("check", 'check = { kind = "https", verify = false, ca-file = "x.pem" }'),
        f"{POOL}.check.ca-file",
        "not a readable file",
    ),
    (
        replace("check", 'check = { kind = "https", verify = false, server-name = "a.test" }'),
        f"{POOL}.check.server-name",
        "checks no certificate",
    ),
    (replace("check", 'check = { kind = "dns" }'), f"{POOL}.check.qname", "required"),
    (
        replace("check", 'check = { kind = "dns", qname = "a.test.", qtype = "BOGUS" }'),
        f"{POOL}.check.qtype",
        "not a record type",
    ),
    (
        replace("check", 'check = { kind = "dns", qname = "a.test.", expect-rcode = "MAYBE" }'),
        f"{POOL}.check.expect-rcode",
        "not an rcode",
    ),
    (replace("quorum", "quorum = 2"), f"{POOL}.quorum", "more than the 1 configured checker"),
    (replace("quorum", "quorum = 0"), f"{POOL}.quorum", "1 or more"),
    (replace("damping", "damping = { reuse = 3000 }"), f"{POOL}.damping.reuse", "below suppress"),
    (
        replace("damping", 'damping = { max-suppress = "1m" }'),
        f"{POOL}.damping.max-suppress",
        "too short",
    ),
    (replace("damping", "damping = { speed = 1 }"), f"{POOL}.damping.speed", "unknown setting"),
    (replace("weight", "weight = 1"), f"{POOL}.weight", "unknown setting"),
    ('[pool."a..test."]\n' + BASE, 'pool."a..test."', "not a domain name"),
    ("[pool]\nx = 1\n", "pool.x", "must be a table"),
    (www(BASE) + '[pool."www.example.test"]\n' + BASE, 'pool."www.example.test"', "same pool"),
    ('[health]\nchecker = "a b"\n', "health.checker", "not a name"),
    ("[health]\nmax-probes = 0\n", "health.max-probes", "range"),
    ('[health]\nremote-checkers = ["a", "a"]\n', "health.remote-checkers#2.id", "listed twice"),
    ('[health]\nremote-checkers = ["local"]\n', "health.remote-checkers", "own id"),
    ("[health]\nchecks = 1\n", "health.checks", "unknown setting"),
]


@pytest.mark.parametrize(("text", "path", "words"), BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_a_bad_setting_is_refused_naming_its_key_path(text: str, path: str, words: str) -> None:
    with pytest.raises(HealthConfigError) as caught:
        parse_health(table(text))
    assert caught.value.path == path, str(caught.value)
    assert words in caught.value.reason
    assert isinstance(caught.value, SettingsError)


def test_the_ca_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-", encoding="utf-8")
    text = replace("check", 'check = { kind = "https", ca-file = "ca.pem", host = "w.test" }')
    data = Table(tomllib.loads(text), "", Source(tmp_path / "zonefan.toml", {}))
    check = parse_health(data).pools[0].check
    assert (check.ca_file, check.port, check.host) == (tmp_path / "ca.pem", 443, "w.test")


def test_penalty_zero_turns_damping_off() -> None:
    pool = parse_health(table(replace("damping", "damping = { penalty = 0 }"))).pools[0]
    assert not pool.damping.enabled


def test_the_error_names_the_file() -> None:
    data = Table(tomllib.loads(replace("ttl", "ttl = -1")), "", Source(Path("z.toml"), {}))
    with pytest.raises(HealthConfigError, match=r"^z\.toml: pool\.\"www\.example\.test\.\"\.ttl"):
        parse_health(data)


def test_the_readme_example_is_read_as_written() -> None:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.DOTALL) if "[pool." in b]
    config = parse_health(table(block))
    assert config.checkers == {"hel", "fra-probe", "ams-probe"}
    [pool] = config.pools
    assert [m.region for m in pool.members] == ["fra", "ams"]
    assert (pool.check.kind, pool.check.fall, pool.quorum) == ("http", 3, None)


def test_a_cname_pool_publishes_targets_and_probes_either_family() -> None:
    config = parse_health(
        table(
            www(
                'type = "CNAME"\nttl = 60\ncheck = { kind = "tcp", port = 443 }\nmembers = ['
                '{ address = "192.0.2.10", region = "fra", target = "fra.cdn.example.net." }, '
                '{ address = "2001:db8::20", region = "ams", target = "ams.cdn.example.net" }]'
            )
        )
    )
    [pool] = config.pools
    assert pool.rdtype == dns.rdatatype.CNAME
    assert [(m.address, m.value) for m in pool.members] == [
        ("192.0.2.10", "fra.cdn.example.net."),
        ("2001:db8::20", "ams.cdn.example.net."),
    ]
