"""Domain names as uncompressed wire bytes, the fast form the zone model and query path use.

A *key* is a name's wire form with ASCII letters lowered: equal keys mean equal names
(RFC 4343), and slicing at a label boundary gives an ancestor's key.
"""

from __future__ import annotations

import dns.name

ROOT = b"\x00"
WILDCARD_LABEL = b"\x01*"

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def lower(wire: bytes) -> bytes:
    """Lower ASCII letters only (RFC 4343); other octets are kept."""
    return wire.translate(_LOWER)


def key_of(name: dns.name.Name) -> bytes:
    """The lookup key of an absolute name."""
    return lower(name.to_wire() or ROOT)


def label_starts(wire: bytes) -> list[int]:
    """Offsets of each label in an uncompressed wire name, the root label included."""
    starts = []
    i = 0
    while True:
        starts.append(i)
        length = wire[i]
        if length == 0:
            return starts
        i += length + 1


def parent(key: bytes) -> bytes:
    """The key of the parent name; the root's parent is the root."""
    return key[key[0] + 1 :] if key[0] else key


def is_below_or_at(key: bytes, ancestor: bytes) -> bool:
    """True when ``key`` equals ``ancestor`` or lies below it, on label boundaries."""
    if not key.endswith(ancestor):
        return False
    cut = len(key) - len(ancestor)
    at = 0
    while at < cut:
        at += key[at] + 1
    return at == cut


def ancestors(key: bytes, stop: bytes) -> list[bytes]:
    """Keys strictly above ``key`` up to and including ``stop`` (which must be an ancestor)."""
    out = []
    while key not in (stop, ROOT):
        key = key[key[0] + 1 :]
        out.append(key)
    return out


def to_text(wire: bytes) -> str:
    """Presentation form, for messages."""
    return str(dns.name.from_wire(wire, 0)[0])


def canonical_key(key: bytes) -> tuple[bytes, ...]:
    """Sort key of a lowercased wire name in RFC 4034 §6.1 canonical order: its labels from
    the root down (tuple comparison of byte strings is the canonical label comparison)."""
    labels = []
    i = 0
    while key[i]:
        end = i + 1 + key[i]
        labels.append(key[i + 1 : end])
        i = end
    labels.reverse()
    return tuple(labels)


def from_canonical(ckey: tuple[bytes, ...]) -> bytes:
    """The wire key of a :func:`canonical_key`."""
    return b"".join(bytes((len(label),)) + label for label in reversed(ckey)) + ROOT
