"""Values: addresses, networks, durations, sizes and domain names.

Each parser takes the value as TOML or the command line gives it and returns a typed value,
or raises ValueError with a message meant for the user (what is wrong and how to write it);
:class:`settings.table.Table` adds the key path and the file.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name

DNS_PORT = 53
ADDRESS_EXAMPLES = '"192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53" or "192.0.2.1@5353"'
# Longer than this cannot be a DNS time: RRSIG times and TTLs are 32-bit serial numbers
# (RFC 4034 §3.1.5, RFC 2181 §8).
MAX_SECONDS = (1 << 31) - 1

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, order=True)
class Address:
    """An IP address (compressed text) and a port."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


def _split_port(text: str) -> tuple[str, str | None]:
    """(host, port text or None) from every written form: ``ADDR@PORT``, ``[V6]:PORT``,
    ``[V6]``, ``V4:PORT``, and a bare address (an IPv6 address without brackets has no
    port: ``::1:53`` is itself an address)."""
    host, sep, port = text.rpartition("@")
    if sep:
        return host.removeprefix("[").removesuffix("]") if host.startswith("[") else host, port
    if text.startswith("["):
        inside, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError("an IPv6 address in brackets is written [2001:db8::1]:53")
        return inside, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def _port(text: str, value: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    return int(text)


def parse_address(value: Any, default_port: int = DNS_PORT) -> Address:
    """An :class:`Address` from ``ADDR``, ``ADDR:PORT``, ``[V6]:PORT``, ``ADDR@PORT`` or
    ``[V6]@PORT``; ``default_port`` when none is written. Only IP addresses: a name would
    make the setting depend on the resolver at start."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not an address; write e.g. {ADDRESS_EXAMPLES}")
    text = value.strip()
    host, port_text = _split_port(text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address with an optional port (names are not looked up "
            f"here); write e.g. {ADDRESS_EXAMPLES}"
        ) from None
    port = default_port if port_text is None else _port(port_text, value)
    return Address(address.compressed, port)


def parse_network(value: Any) -> tuple[Network, int | None]:
    """A network (``192.0.2.0/24``, ``2001:db8::/32``) or one address (a /32 or /128),
    with the port if one is written (``ADDR@PORT``, ``[V6]:PORT``)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{value!r} is not an address or network; write e.g. "192.0.2.0/24"')
    text = value.strip()
    if "/" in text and "@" not in text and not text.startswith("["):
        host, port_text = text, None
    else:
        host, port_text = _split_port(text)
    try:
        network = ipaddress.ip_network(host, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an address or network: {exc}") from None
    return network, None if port_text is None else _port(port_text, value)


# --- durations --------------------------------------------------------------------------

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SHOWN_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # "90d" reads better than "12w6d"
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_RE = re.compile(rf"(?:{_NUMBER}[wdhms])+")
_PART_RE = re.compile(rf"({_NUMBER})([wdhms])")
_DURATION_HELP = (
    'write seconds or a number with a unit w, d, h, m or s, e.g. "14d", "1d12h", "1.5h"'
)


def parse_duration(value: Any) -> float:
    """Seconds from a TOML number, or from text: ``"90"``, ``"30s"``, ``"1.5h"``, ``"14d"``,
    ``"1d12h"``, ``"2w"``. Never negative, never longer than about 68 years."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif _DURATION_RE.fullmatch(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(text))
        else:
            raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    else:
        raise ValueError(f"{value!r} is not a duration; {_DURATION_HELP}")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is negative; durations are 0 or more")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is longer than {MAX_SECONDS} seconds (about 68 years)")
    return seconds


def parse_seconds(value: Any) -> int:
    """Like :func:`parse_duration`, for settings kept in whole seconds (TTLs, signature
    lifetimes): ``"1.5h"`` is fine, ``"1.5s"`` is not."""
    seconds = parse_duration(value)
    if seconds != int(seconds):
        raise ValueError(f"{value!r} is not a whole number of seconds")
    return int(seconds)


def format_duration(seconds: float) -> str:
    """Text in the same grammar: 1209600 -> ``"14d"``, 129600 -> ``"1d12h"``, 0.5 ->
    ``"0.5s"``."""
    if seconds == 0:
        return "0"
    whole = int(seconds)
    parts = []
    rest = whole
    for unit, size in _SHOWN_UNITS.items():
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    fraction = seconds - whole
    if fraction:
        parts = [p for p in parts if not p.endswith("s")]
        parts.append(f"{whole % 60 + fraction:g}s")
    return "".join(parts)


# --- sizes --------------------------------------------------------------------------------

# Binary multiples, as Unbound's and Knot's size settings read them ("4m" is 4 MiB).
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(rf"({_NUMBER})\s*([kmgt]?)(?:i?b)?")
_SIZE_HELP = 'write bytes or a number with a unit k, M, G (powers of 1024), e.g. "64M", "1.5G"'


def parse_size(value: Any) -> int:
    """Bytes from a TOML integer or from text: ``"1048576"``, ``"512k"``, ``"64M"``,
    ``"64MiB"``, ``"1.5G"``. Units are powers of 1024; never negative."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a size; {_SIZE_HELP}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(f"{value!r} is not a size; {_SIZE_HELP}")
        number, unit = float(match.group(1)), match.group(2)
        if not unit and not number.is_integer():
            raise ValueError(f"{value!r} is not a whole number of bytes")
        size = int(number * _SIZE_UNITS[unit])
    if size < 0:
        raise ValueError(f"{value!r} is negative; sizes are 0 or more")
    return size


# --- names --------------------------------------------------------------------------------


def parse_name(value: Any) -> dns.name.Name:
    """An absolute domain name (a relative one is taken as absolute, as DNS configs do)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{value!r} is not a domain name; write e.g. "example.com."')
    try:
        return dns.name.from_text(value.strip())
    except dns.exception.DNSException as exc:
        raise ValueError(f"{value!r} is not a domain name: {exc}") from None


def parse_names(value: Any) -> list[dns.name.Name]:
    """A list of domain names; each must be given once."""
    if not isinstance(value, list):
        raise ValueError(f'{value!r} must be a list of names, e.g. ["example.com."]')
    names: list[dns.name.Name] = []
    for item in value:
        name = parse_name(item)
        if name in names:
            raise ValueError(f"{item!r} is listed twice")
        names.append(name)
    return names
