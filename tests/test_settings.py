"""The one settings grammar: every package reads addresses, durations, keys and secrets the
same way, and every error names the file and the key path."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from settings import (
    Address,
    SettingsError,
    Source,
    Table,
    format_duration,
    load_toml,
    parse_address,
    parse_duration,
    parse_network,
    parse_seconds,
    parse_size,
    parse_tsig_keys,
)

SECRET = base64.b64encode(b"settings-test-secret-0123456789ab").decode()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("192.0.2.1", "192.0.2.1", 53),
        ("192.0.2.1:5353", "192.0.2.1", 5353),
        ("192.0.2.1@5353", "192.0.2.1", 5353),
        ("[2001:db8::1]:5353", "2001:db8::1", 5353),
        ("[2001:db8::1]@5353", "2001:db8::1", 5353),
        ("2001:db8::1@5353", "2001:db8::1", 5353),
        ("[2001:DB8::1]", "2001:db8::1", 53),
        ("2001:db8::1", "2001:db8::1", 53),
        ("::", "::", 53),
        (" 127.0.0.1:53 ", "127.0.0.1", 53),
    ],
)
def test_every_address_form(text: str, host: str, port: int) -> None:
    assert parse_address(text) == Address(host, port)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ns1.example.net", "names are not looked up"),
        ("192.0.2.1:0", "from 1 to 65535"),
        ("192.0.2.1:65536", "from 1 to 65535"),
        ("192.0.2.1@dns", "from 1 to 65535"),
        ("[2001:db8::1]x", "in brackets"),
        ("[2001:db8::1", "in brackets"),
        ("300.1.1.1", "not an IP address"),
        ("", "not an address"),
    ],
)
def test_bad_addresses_say_how_to_write_one(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_address(text)
    with pytest.raises(ValueError):
        parse_address(53)


@given(st.ip_addresses(), st.integers(1, 65535))
def test_address_text_round_trips(address: ipaddress._BaseAddress, port: int) -> None:
    parsed = Address(address.compressed, port)
    assert parse_address(str(parsed)) == parsed
    assert parse_address(f"{address.compressed}@{port}") == parsed


def test_networks_with_and_without_port() -> None:
    assert parse_network("192.0.2.0/24") == (ipaddress.ip_network("192.0.2.0/24"), None)
    assert parse_network("2001:db8::/32") == (ipaddress.ip_network("2001:db8::/32"), None)
    assert parse_network("192.0.2.1@5301") == (ipaddress.ip_network("192.0.2.1/32"), 5301)
    assert parse_network("[::1]:5301") == (ipaddress.ip_network("::1/128"), 5301)
    with pytest.raises(ValueError, match="has host bits set"):
        parse_network("192.0.2.1/24")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1.5h", 5400.0),
        ("14d", 14 * 86400.0),
        ("1d12h", 36 * 3600.0),
        ("2w", 14 * 86400.0),
        (" 7D ", 7 * 86400.0),
    ],
)
def test_one_duration_grammar(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [True, -1, "", "1y", "d", "12 h", None, "-5s", 2**31])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_whole_seconds_refuse_fractions_of_a_second() -> None:
    assert parse_seconds("1.5h") == 5400
    with pytest.raises(ValueError, match="whole number of seconds"):
        parse_seconds("1.5s")


@given(st.integers(0, 2**31 - 1))
def test_durations_print_in_the_grammar_they_are_read_in(seconds: int) -> None:
    assert parse_seconds(format_duration(seconds)) == seconds


def _file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "zonefan.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_inline_secret_needs_a_private_file(tmp_path: Path) -> None:
    text = f'[key.xfr]\nsecret = "{SECRET}"\n'
    keys = parse_tsig_keys(load_toml(_file(tmp_path, text)).table("key"))
    assert keys["xfr"].name == dns.name.from_text("xfr.")
    assert keys["xfr"].secret_text == SECRET
    assert SECRET not in repr(keys["xfr"])
    readable = _file(tmp_path, text, 0o644)
    with pytest.raises(SettingsError) as caught:
        parse_tsig_keys(load_toml(readable).table("key"))
    assert str(caught.value).startswith(f"{readable}: key.xfr.secret: an inline secret needs")
    assert f"chmod 600 {readable}" in str(caught.value)


def test_secret_file_and_env(tmp_path: Path) -> None:
    secret = tmp_path / "xfr.key"
    secret.write_text(SECRET + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = _file(tmp_path, '[key.a]\nsecret-file = "xfr.key"\n[key.b]\nsecret-env = "XFR"\n')
    keys = parse_tsig_keys(load_toml(config, {"XFR": SECRET}).table("key"))
    assert keys["a"].secret == keys["b"].secret == base64.b64decode(SECRET)
    with pytest.raises(SettingsError, match=r"key\.b\.secret-env: environment variable 'XFR'"):
        parse_tsig_keys(load_toml(config, {}).table("key"))
    secret.chmod(0o644)
    with pytest.raises(SettingsError, match=r"key.a.secret-file: .*other users can read it"):
        parse_tsig_keys(load_toml(config, {"XFR": SECRET}).table("key"))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"secret": SECRET, "secret-env": "X"}, "key.k.secret-env: give one of secret"),
        ({}, "key.k.secret: missing: set secret-env"),
        ({"secret": "c2hvcnQ="}, "key.k.secret: the secret is 5 bytes; use at least 16"),
        ({"secret": "!!"}, "key.k.secret: the secret is not valid base64"),
        ({"secret": SECRET, "algorithm": "hmac-md5"}, "key.k.algorithm: 'hmac-md5' is not"),
        ({"secret": SECRET, "secrets": 1}, "key.k.secrets: unknown setting; did you mean"),
    ],
)
def test_key_errors_name_the_key_path(table: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_tsig_keys(Table({"k": table}, "key", Source(None, {})))
    assert str(caught.value).startswith(message)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "listen = \n")
    with pytest.raises(SettingsError, match=f"^{path}: not valid TOML"):
        load_toml(path)


def test_array_entries_are_numbered(tmp_path: Path) -> None:
    table = Table({"secondary": [{"address": "a"}, {"adress": "b"}]}, "", Source(None, {}))
    second = table.entries("secondary")[1]
    with pytest.raises(SettingsError, match=r"^secondary#2.adress: unknown setting; did you"):
        second.allow(["address", "key"])


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1048576, 1 << 20),
        ("1048576", 1 << 20),
        ("512k", 512 << 10),
        ("64M", 64 << 20),
        ("64MiB", 64 << 20),
        ("64mb", 64 << 20),
        (" 2 G ", 2 << 30),
        ("1.5G", 3 << 29),
        ("1T", 1 << 40),
    ],
)
def test_one_size_grammar(value: object, size: int) -> None:
    """Binary multiples, as Unbound's and Knot's size settings take them."""
    assert parse_size(value) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "negative"),
        ("-1M", "not a size"),
        ("1.5", "not a whole number of bytes"),
        ("64Q", "not a size"),
        ("M", "not a size"),
        ("", "not a size"),
        (True, "not a size"),
        (1.5, "not a size"),
        (None, "not a size"),
    ],
)
def test_bad_sizes_say_how_to_write_one(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_size(value)
    if message == "not a size":
        assert '"64M"' in str(info.value)
