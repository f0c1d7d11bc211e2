"""Response rate limiting (RRL) of UDP answers, as NSD, Knot DNS and BIND do it.

A UDP query's source address can be forged, so a flood of queries "from" a victim makes an
authoritative server send the victim a flood of answers, larger than the queries. RRL caps
how many *similar* responses go to one client network per second: responses are grouped by
the source prefix (IPv4 /24, IPv6 /56 by default) and by what they say:

* an answer: per query name and type;
* a NODATA: per name (whatever the type asked);
* an NXDOMAIN: per zone (random names do not make new groups);
* a referral: per delegation point;
* an answer or NODATA synthesized from a wildcard or a DNAME: per closest existing name;
* an error (REFUSED, FORMERR, ...): one group per prefix.

Each group is a token bucket of ``ratelimit`` responses per second, with a burst of one
second's worth, kept as a theoretical arrival time (GCRA, one float per bucket). Over the
limit, every ``slip``-th limited response is sent truncated (TC, no records: a real client
retries over TCP, which cannot be forged and is never limited) and the others are dropped.

Memory is bounded whatever the sources and names: groups hash into a table of
``table_size`` buckets allocated at start, which colliding groups share (a shared bucket
only limits sooner; the hash is keyed per process, so no one can aim a collision), and the
memos that keep the hot path cheap are capped (6.5 MiB in all, buckets included). Responses to
allow-listed networks are never limited.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import dns.rdatatype

from nameserver.errors import NameserverError
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import label_starts, lower, parent
from nameserver.zone.zones import ZoneRegistry
from settings import Network

log = logging.getLogger(__name__)

DEFAULT_RATELIMIT = 200  # responses per second per group: NSD's default
DEFAULT_SLIP = 2  # NSD's and BIND's default: half the limited responses go out as TC
DEFAULT_IPV4_PREFIX = 24
DEFAULT_IPV6_PREFIX = 56  # BIND's and Knot's: one site's /56 is one client
# Buckets, 8 bytes each: 512 KiB, small enough to stay in a CPU cache (a table of 2^18
# costs 0.2 us more a response). Groups sharing a bucket add up; at the ~150k responses/s
# this server can send, a bucket gets about 2 a second from strangers, far below any limit.
DEFAULT_TABLE_SIZE = 1 << 16
# Memos of the hot path. The group of a query's bytes: an open-addressing table of (hash,
# group) pairs in one flat array, so a lookup reads one cache line (a dict of int objects
# costs four scattered reads, and on a busy server each is a trip to memory); 4 MiB, and
# started afresh when half full. The prefix of a source address: a dict, 2 MiB when full.
KIND_MEMO_SLOTS = 1 << 18
KIND_MEMO_ENTRIES = KIND_MEMO_SLOTS // 2
SOURCE_MEMO_ENTRIES = 1 << 14
SUMMARY_INTERVAL = 60.0  # seconds between log lines about limited responses

NS = int(dns.rdatatype.NS)
NOERROR = 0
NXDOMAIN = 3
HEADER_LEN = 12
TC = 0x02
AA = 0x04
_TOKEN_MASK = (1 << 62) - 1  # tokens are non-negative: the source memo's -1 is a miss,
_EXEMPT = -2  # and this an allow-listed network


class RrlError(NameserverError):
    """A rate limiting setting that cannot work; the message says which and why."""


class ResponseClass(IntEnum):
    """What a response says, for grouping (NSD calls these RRL types)."""

    ANSWER = 1
    NODATA = 2
    NXDOMAIN = 3
    REFERRAL = 4
    WILDCARD = 5
    ERROR = 6


@dataclass(frozen=True)
class RrlSettings:
    """Response rate limiting of ``zonefan serve``; ``ratelimit`` 0 turns it off."""

    ratelimit: int = DEFAULT_RATELIMIT
    slip: int = DEFAULT_SLIP
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    exempt: tuple[Network, ...] = ()
    table_size: int = DEFAULT_TABLE_SIZE

    def __post_init__(self) -> None:
        if self.ratelimit < 0 or self.slip < 0:
            raise RrlError("the RRL rate and slip are 0 or more (a rate of 0 turns RRL off)")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise RrlError("RRL prefix lengths are 0-32 for IPv4 and 0-128 for IPv6")
        if self.table_size < 1 or self.table_size & (self.table_size - 1):
            raise RrlError(f"the RRL table size {self.table_size} is not a power of two")

    @property
    def enabled(self) -> bool:
        return self.ratelimit > 0


def classify(query: bytes, response: bytes, zones: ZoneRegistry) -> tuple[ResponseClass, bytes]:
    """The class of ``response`` to ``query`` and the name that groups it (a lowercased wire
    name; for an answer, the name and the query type)."""
    if (
        len(response) < HEADER_LEN
        or response[2] & 0x78  # an opcode other than QUERY
        or response[3] & 0x0F not in (NOERROR, NXDOMAIN)
        or response[4:6] != b"\x00\x01"
    ):
        return ResponseClass.ERROR, b""
    question = _question(query)
    if question is None:
        return ResponseClass.ERROR, b""
    qkey, qtype = question
    zone = zones.find(qkey, int.from_bytes(qtype, "big"))
    if zone is None:
        return ResponseClass.ERROR, b""
    if response[3] & 0x0F == NXDOMAIN:
        return ResponseClass.NXDOMAIN, zone.origin
    answers = response[6] | response[7]
    if response[2] & TC:
        return ResponseClass.ANSWER, qkey + qtype  # too large for UDP: grouped as asked
    if not answers and not response[2] & AA:
        if response[8] | response[9]:
            return ResponseClass.REFERRAL, _delegation(zone, qkey)
        return ResponseClass.ERROR, b""  # NOERROR in the header, nothing else (BADVERS)
    if not zone.exists(qkey):
        return ResponseClass.WILDCARD, _closest_existing(zone, qkey)
    if answers:
        return ResponseClass.ANSWER, qkey + qtype
    return ResponseClass.NODATA, qkey


def _question(message: bytes) -> tuple[bytes, bytes] | None:
    """The lowercased name and the type of the one question of ``message``."""
    end = question_end(message)
    if end is None:
        return None
    return lower(message[HEADER_LEN : end - 4]), message[end - 4 : end - 2]


def question_end(message: bytes) -> int | None:
    """The offset after the question section (one uncompressed name, type and class)."""
    i = HEADER_LEN
    size = len(message)
    while i < size:
        length = message[i]
        if length == 0:
            return i + 5 if i + 5 <= size else None
        if length & 0xC0:
            return None  # a pointer: never in a question this server answers
        i += length + 1
    return None


def _delegation(zone: ZoneSnapshot, qkey: bytes) -> bytes:
    """The topmost delegation point at or above ``qkey`` (the zone's apex if none)."""
    depth = len(qkey) - len(zone.origin)
    for start in reversed(label_starts(qkey)):
        if start >= depth:
            continue  # the apex and above
        node = zone.node(qkey[start:])
        if node is not None and NS in node.rrsets:
            return qkey[start:]
    return zone.origin


def _closest_existing(zone: ZoneSnapshot, qkey: bytes) -> bytes:
    """The nearest ancestor of ``qkey`` that exists in ``zone``: the parent of the wildcard
    that answered, or the owner of the DNAME."""
    key = qkey
    while key != zone.origin and len(key) > 1 and not zone.exists(key):
        key = parent(key)
    return key


def truncated(response: bytes) -> bytes:
    """``response`` cut to its header and question with TC set: nothing to amplify, and a
    client that really asked retries over TCP."""
    end = question_end(response) if response[4:6] == b"\x00\x01" else None
    qdcount = b"\x00\x01" if end is not None else b"\x00\x00"
    head = response[:2] + bytes((response[2] | TC, response[3])) + qdcount + bytes(6)
    return head + response[HEADER_LEN:end] if end is not None else head


class RateLimiter:
    """The RRL state of one server: call :meth:`limit` with every UDP response before it
    is sent. ``clock`` gives seconds (monotonic); tests pass their own."""

    def __init__(
        self,
        settings: RrlSettings,
        zones: ZoneRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.enabled:
            raise RrlError("response rate limiting is off (rate 0): use no RateLimiter")
        self.settings = settings
        self.zones = zones
        self.clock = clock
        self._interval = 1.0 / settings.ratelimit
        # A burst of one second's worth: `ratelimit` responses at once, and not one more
        # (half an interval of slack keeps float rounding from costing the last one).
        self._tolerance = 1.0 - self._interval / 2
        self._mask = settings.table_size - 1
        self._arrival = array("d", bytes(8 * settings.table_size))
        self._kinds = array("q", bytes(16 * KIND_MEMO_SLOTS))  # hash, token; hash 0: empty
        self._kinds_mask = 2 * KIND_MEMO_SLOTS - 1
        self._kinds_used = 0
        self._salt = 0  # changed with each zone version: older entries stop matching
        self._sources: dict[str | int, int] = {}
        self._exempt = _exempt_prefixes(settings.exempt)
        self._error_token = _token(ResponseClass.ERROR, b"")
        self.limited = 0  # responses over the limit so far: dropped or truncated
        self.slipped = 0  # of those, sent truncated
        self._summary_at: float | None = None
        self._summary_counts = (0, 0)
        self._last_limited: str | int = ""
        self._classify_failed = False
        zones.on_change(self._new_zone_version)

    def limit(self, addr: Sequence[str | int], query: bytes, response: bytes) -> bytes | None:
        """``response`` if it may go to ``addr``; its truncated form or None (drop) if
        this client network got too many like it."""
        source = self._sources.get(addr[0], -1)
        if source < 0:
            if source == _EXEMPT:
                return response
            source = self._learn_source(addr[0])
            if source == _EXEMPT:
                return response
        # The group of these query bytes, memoized: the response is a function of them
        # and of the zone versions (a new version changes the salt).
        key = (hash(query[2:]) ^ self._salt) | 1  # never 0, the empty slot's
        kinds = self._kinds
        slot = (key + key) & self._kinds_mask
        while True:
            found = kinds[slot]
            if found == key:
                kind = kinds[slot + 1]
                break
            if not found:
                kind = self._classify(query, response, key, slot)
                break
            slot = (slot + 2) & self._kinds_mask
        bucket = (source ^ kind) & self._mask
        now = self.clock()
        arrival = self._arrival[bucket]
        if arrival < now:
            arrival = now
        elif arrival - now > self._tolerance:
            return self._limited(addr[0], response, now)
        self._arrival[bucket] = arrival + self._interval
        return response

    def _classify(self, query: bytes, response: bytes, key: int, slot: int) -> int:
        if response[3] & 0x0F not in (NOERROR, NXDOMAIN):
            return self._error_token  # cheap to tell, and not worth a memo slot
        try:
            kind, name = classify(query, response, self.zones)
        except Exception:  # a bug must not cost the answer: group it with the errors
            if not self._classify_failed:  # once: a client must not fill the log
                log.exception("cannot classify a response for rate limiting")
                self._classify_failed = True
            return self._error_token
        token = _token(kind, name)
        if self._kinds_used >= KIND_MEMO_ENTRIES:
            self._empty_kinds()  # half full: probes would grow long
            return token
        self._kinds[slot] = key
        self._kinds[slot + 1] = token
        self._kinds_used += 1
        return token

    def _limited(self, host: str | int, response: bytes, now: float) -> bytes | None:
        self.limited += 1
        self._last_limited = host
        if self._summary_at is None or now - self._summary_at >= SUMMARY_INTERVAL:
            self._summarize(now)
        if self.settings.slip and self.limited % self.settings.slip == 0:
            self.slipped += 1
            return truncated(response)
        return None

    def _summarize(self, now: float) -> None:
        """At most one log line a minute, however hard a client pushes."""
        limited, slipped = self._summary_counts
        if self._summary_at is not None:
            log.info(
                "response rate limiting: %d UDP responses dropped and %d sent truncated "
                "in the last %.0f s (latest to %s)",
                self.limited - limited - (self.slipped - slipped),
                self.slipped - slipped,
                now - self._summary_at,
                self._network_of(self._last_limited),
            )
        else:
            log.info(
                "response rate limiting: limiting responses to %s",
                self._network_of(self._last_limited),
            )
        self._summary_at = now
        self._summary_counts = (self.limited, self.slipped)

    def _network_of(self, host: str | int) -> str:
        """The client network ``host`` shares its limits with, for the log."""
        text = str(host).partition("%")[0]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return text
        bits = self.settings.ipv4_prefix if address.version == 4 else self.settings.ipv6_prefix
        return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))

    def _new_zone_version(self) -> None:
        """Every memoized group may be stale: a new salt makes them all miss, in O(1) (the
        table is emptied only when half full, stale entries included)."""
        self._salt = random.getrandbits(62)

    def _empty_kinds(self) -> None:
        self._kinds = array("q", bytes(16 * KIND_MEMO_SLOTS))
        self._kinds_used = 0

    def _learn_source(self, host: str | int) -> int:
        if len(self._sources) >= SOURCE_MEMO_ENTRIES:
            self._sources.clear()  # bounded, whatever the number of sources
        token = self._source_token(str(host))
        self._sources[host] = token
        return token

    def _source_token(self, host: str) -> int:
        """The token of ``host``'s prefix, or _EXEMPT."""
        text = host.partition("%")[0]  # an IPv6 scope
        try:
            if ":" in text:
                packed, prefix = socket.inet_pton(socket.AF_INET6, text), self.settings.ipv6_prefix
            else:
                packed, prefix = socket.inet_pton(socket.AF_INET, text), self.settings.ipv4_prefix
        except OSError:
            return hash(b"?" + text.encode()) & _TOKEN_MASK  # not an address: its own group
        bits = 8 * len(packed)
        value = int.from_bytes(packed, "big")
        for width, network, length in self._exempt:
            if width == bits and value >> (bits - length) == network:
                return _EXEMPT
        masked = value >> (bits - prefix)
        return hash(bytes((bits, prefix)) + masked.to_bytes(16, "big")) & _TOKEN_MASK


def _token(kind: ResponseClass, name: bytes) -> int:
    """A group's hash, keyed per process (Python's string hashing is)."""
    return hash(bytes((kind,)) + name) & _TOKEN_MASK


def _exempt_prefixes(networks: Sequence[Network]) -> list[tuple[int, int, int]]:
    """(address bits, network prefix as an integer, prefix length) per network."""
    out: list[tuple[int, int, int]] = []
    for network in networks:
        bits = network.max_prefixlen
        length = network.prefixlen
        out.append((bits, int(network.network_address) >> (bits - length), length))
    return out
