"""TSIG (RFC 8945): keys from the config file, verifying requests and signing responses.

Keys are the settings grammar's ``[key.NAME]`` tables (``[key.xfr-key]`` is the key
``xfr-key.``; see :mod:`settings.secrets`). Verification and the MAC arithmetic are
dnspython's (``dns.tsig``); this module adds the config parsing, the RFC 8945 §5.2 error
mapping, signing of messages we render ourselves (every message of a transfer, §5.3.1:
each MAC covers the previous one) and two defences the RFC leaves to the server:

* The time window is ours, not the client's: a request is accepted only when its time
  signed is within the key's ``fudge`` (default 300 s, §10) of our clock *and* within the
  Fudge it carries (§5.2.3). A client-chosen Fudge of 65535 would otherwise make a captured
  request valid for 18 hours either side.
* Replays: :class:`ReplayGuard` remembers, per key, the MACs of accepted requests until
  their window has passed, so the same signed bytes are not executed twice (see there).
"""

from __future__ import annotations

import heapq
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from nameserver.serve.query import skip_name
from settings import Table, TsigKey, parse_tsig_keys

__all__ = [
    "BADKEY",
    "BADSIG",
    "BADTIME",
    "FUDGE",
    "NOERROR",
    "Keyring",
    "ReplayGuard",
    "Signer",
    "TsigKey",  # the settings grammar's key type, named here for the nameserver modules
    "Verified",
    "append_tsig",
    "keyring",
    "parse_keys",
    "strip_tsig",
    "tsig_error_reply",
    "tsig_offset",
    "unsigned_error",
    "verify",
]

FUDGE = 300  # seconds; RFC 8945 §10 recommends 300 (a key's own is TsigKey.fudge)
BADSIG = int(dns.rcode.BADSIG)
BADKEY = int(dns.rcode.BADKEY)
BADTIME = int(dns.rcode.BADTIME)
NOERROR = 0

Keyring = Mapping[dns.name.Name, TsigKey]


def parse_keys(table: Table | None) -> dict[dns.name.Name, TsigKey]:
    """The ``[key.NAME]`` tables of the config, by the keys' DNS names (the settings
    grammar: ``secret``, ``secret-file`` or ``secret-env``)."""
    return keyring(parse_tsig_keys(table))


def keyring(keys: Mapping[str, TsigKey]) -> dict[dns.name.Name, TsigKey]:
    """Keys read by their table names, by their DNS names (what requests carry)."""
    return {key.name: key for key in keys.values()}


@dataclass
class Verified:
    """A request after TSIG verification. ``message`` is parsed (without verification when
    ``error`` is set); ``key`` is the key that signed it (None: unsigned or unknown key);
    ``error`` is the TSIG error to answer with (RFC 8945 §5.2), NOERROR when fine;
    ``reason`` says why, for the log. ``answer``: the request is a replay of one already
    answered, and this was the answer (see :class:`ReplayGuard`)."""

    message: dns.message.Message
    key: TsigKey | None
    error: int
    mac: bytes = b""
    time_signed: int = 0
    reason: str = ""
    answer: bytes | None = None


def verify(
    data: bytes, keys: Keyring, guard: ReplayGuard | None = None, now: int | None = None
) -> Verified:
    """Parse ``data`` and check its TSIG, if any: key, MAC, then time (RFC 8945 §5.2), the
    time against both the request's Fudge and the key's own window; with a ``guard``, a
    request already accepted is refused (BADTIME, with the answer it got when there is
    one). ``now`` is our clock (injected by tests). Raises dns.exception.DNSException when
    the message cannot be parsed at all (the caller answers FORMERR or nothing)."""
    plain = dns.message.from_wire(data, keyring=False, ignore_trailing=False)
    if not plain.had_tsig:
        return Verified(plain, None, NOERROR)
    assert plain.tsig is not None
    rdata = plain.tsig[0]
    key = keys.get(plain.tsig.name)
    if key is None or key.algorithm_name != rdata.algorithm:
        return Verified(plain, None, BADKEY)  # §5.2.1: unknown key or algorithm
    start = tsig_offset(data)
    if start is None:  # dnspython found a TSIG last; our walk must agree
        raise dns.exception.FormError("cannot locate the TSIG record")  # type: ignore[no-untyped-call]
    clock = int(time.time()) if now is None else now
    mac, signed = rdata.mac, rdata.time_signed
    skew = clock - signed
    try:
        dns.tsig.validate(  # type: ignore[no-untyped-call]
            data, key.dns_key, plain.tsig.name, rdata, clock, b"", start
        )
    except dns.tsig.BadTime:
        reason = f"{_skew_text(skew)}, outside the request's fudge of {rdata.fudge} s"
        return Verified(plain, key, BADTIME, mac, signed, reason)
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        return Verified(plain, key, BADSIG)  # §5.2.2
    if abs(skew) > key.fudge:
        # The MAC is good but the window is the client's choice: bound it by ours.
        reason = f"{_skew_text(skew)}, outside the key's fudge of {key.fudge} s"
        return Verified(plain, key, BADTIME, mac, signed, reason)
    if guard is not None:
        seen = guard.admit(key, mac, signed, clock)
        if seen is not None:
            return Verified(plain, key, BADTIME, mac, signed, seen.reason, seen.answer)
    return Verified(plain, key, NOERROR, mac, signed)


def _skew_text(skew: int) -> str:
    return f"signed {abs(skew)} s {'before' if skew >= 0 else 'after'} our clock"


@dataclass(frozen=True)
class Seen:
    """Why :meth:`ReplayGuard.admit` refused a request, and the answer it got before."""

    reason: str
    answer: bytes | None = None


@dataclass
class _KeyMemory:
    """One key's accepted requests: (time signed, MAC) in a heap (oldest first), each MAC's
    answer (None until answered), and the floor: requests signed at or before it are
    refused, because the memory of some of them was given up."""

    floor: int
    heap: list[tuple[int, bytes]] = field(default_factory=list)
    answers: dict[bytes, bytes | None] = field(default_factory=dict)


# Accepted requests remembered per key and in all. An entry lives until its time signed +
# the key's fudge (at most 2 x fudge after it arrived) and takes ~330 bytes with a 120-byte
# UPDATE answer (measured: MAC, answer, heap and dict slots), so memory stays under ~3 MB
# per key and ~11 MB in all, whatever is sent. 8192 per 300 s window is 27 accepted
# requests a second per key, sustained, before the floor starts to shorten the window.
REPLAY_PER_KEY = 8192
REPLAY_TOTAL = 32768


class ReplayGuard:
    """Refuses a signed request whose exact MAC was already accepted within its time
    window (RFC 8945 §5.2.3 asks servers to remember the latest time signed per key and
    answer BADTIME to an earlier one; a strict per-key order would refuse the reordered
    UDP datagrams and the concurrent clients that share a key, so this remembers each
    accepted MAC instead, for as long as a copy of it could still pass the time check).

    Memory is bounded per key and in total: when full, the oldest entry (by time signed) is
    dropped and its key's floor raised to its time signed; anything signed at or before a
    floor is refused, so a forgotten request cannot come back. The floor starts just below
    the time the guard is made, so a request captured before a restart is not accepted
    after it (what RFC 8446 §8 asks of a freshly started TLS server's replay memory); the
    cost: a client whose clock is behind ours by more than the server has been up gets
    BADTIME, with our time, until its clock passes the start. Thread-safe.
    """

    def __init__(
        self,
        per_key: int = REPLAY_PER_KEY,
        total: int = REPLAY_TOTAL,
        started: float | None = None,
    ) -> None:
        self.per_key = per_key
        self.total = total
        self._start_floor = int(time.time() if started is None else started) - 1
        self._keys: dict[dns.name.Name, _KeyMemory] = {}
        self._count = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def admit(self, key: TsigKey, mac: bytes, time_signed: int, now: int) -> Seen | None:
        """None, remembering the request, when ``mac`` was not accepted before and is signed
        after the key's floor; otherwise why not (and the answer it got, if any). The caller
        has checked that ``time_signed`` is within ``key.fudge`` of ``now``."""
        with self._lock:
            memory = self._keys.get(key.name)
            if memory is None:
                memory = self._keys[key.name] = _KeyMemory(self._start_floor)
            self._expire(memory, now - key.fudge)
            if mac in memory.answers:
                return Seen("a replay of a request already accepted", memory.answers[mac])
            if time_signed <= memory.floor:
                return Seen(
                    f"signed at or before {memory.floor}, the oldest time this server can "
                    "still tell a replay from a new request (sign it again)"
                )
            while len(memory.heap) >= self.per_key:
                self._drop_oldest(memory)
            while self._count >= self.total:
                self._drop_oldest(self._oldest())
            heapq.heappush(memory.heap, (time_signed, mac))
            memory.answers[mac] = None
            self._count += 1
            return None

    def answered(self, key: TsigKey, mac: bytes, answer: bytes) -> None:
        """Keep ``answer`` for the accepted request ``mac``: a copy of it gets it again."""
        with self._lock:
            memory = self._keys.get(key.name)
            if memory is not None and mac in memory.answers:
                memory.answers[mac] = answer

    def _expire(self, memory: _KeyMemory, cutoff: int) -> None:
        # Signed before the cutoff: a copy now fails the time check anyway.
        while memory.heap and memory.heap[0][0] < cutoff:
            _, mac = heapq.heappop(memory.heap)
            del memory.answers[mac]
            self._count -= 1

    def _drop_oldest(self, memory: _KeyMemory) -> None:
        signed, mac = heapq.heappop(memory.heap)
        del memory.answers[mac]
        self._count -= 1
        memory.floor = max(memory.floor, signed)

    def _oldest(self) -> _KeyMemory:
        # Few keys (the config's): a scan of their oldest entries is cheap.
        return min((m for m in self._keys.values() if m.heap), key=lambda m: m.heap[0][0])


class Signer:
    """Signs a sequence of response messages to one request (RFC 8945 §5.3 and §5.3.1)."""

    def __init__(self, key: TsigKey, request_mac: bytes, request_id: int) -> None:
        self.key = key
        self._dns_key = key.dns_key
        self._request_mac = request_mac
        self._original_id = request_id
        self._ctx: Any = None
        self._first = True

    def sign(
        self, wire: bytes, error: int = NOERROR, other: bytes = b"", when: int | None = None
    ) -> bytes:
        """``wire`` with a TSIG RR appended and ARCOUNT raised by one."""
        now = int(time.time()) if when is None else when
        rdata = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
            dns.rdataclass.ANY,
            dns.rdatatype.TSIG,
            self.key.algorithm_name,
            now,
            self.key.fudge,
            b"",
            self._original_id,
            error,
            other,
        )
        tsig, ctx = dns.tsig.sign(  # type: ignore[no-untyped-call]
            wire,
            self._dns_key,
            rdata,
            now,
            self._request_mac if self._first else None,
            self._ctx,
            True,
        )
        self._ctx = ctx
        self._first = False
        return append_tsig(wire, self.key.name, tsig)


def append_tsig(wire: bytes, keyname: dns.name.Name, tsig: dns.rdtypes.ANY.TSIG.TSIG) -> bytes:
    """``wire`` with the TSIG RR added at the end of the additional section."""
    rdata = tsig.to_wire()
    assert rdata is not None
    owner = keyname.to_wire()
    assert owner is not None
    rr = owner + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata
    arcount = int.from_bytes(wire[10:12], "big") + 1
    return wire[:10] + arcount.to_bytes(2, "big") + wire[12:] + rr


def unsigned_error(
    wire: bytes, keyname: dns.name.Name, algorithm: dns.name.Name, error: int, original_id: int
) -> bytes:
    """``wire`` with an unsigned TSIG RR carrying ``error`` (RFC 8945 §5.3.2: BADKEY and
    BADSIG answers have an empty MAC)."""
    rdata = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        algorithm,
        int(time.time()),
        FUDGE,
        b"",
        original_id,
        error,
        b"",
    )
    return append_tsig(wire, keyname, rdata)


def tsig_error_reply(wire: bytes, verified: Verified) -> bytes:
    """``wire`` (a NOTAUTH response) with the TSIG RR RFC 8945 §5.2 asks for the failure in
    ``verified``: BADKEY and BADSIG unsigned (§5.3.2), BADTIME signed with the key, the
    request's time signed and our time in Other Data (§5.2.3)."""
    tsig_rrset = verified.message.tsig
    assert tsig_rrset is not None
    tsig = tsig_rrset[0]
    if verified.error == BADTIME and verified.key is not None:
        signer = Signer(verified.key, verified.mac, tsig.original_id)
        now = int(time.time()).to_bytes(6, "big")
        return signer.sign(wire, BADTIME, now, when=verified.time_signed)
    return unsigned_error(wire, tsig_rrset.name, tsig.algorithm, verified.error, tsig.original_id)


def tsig_offset(data: bytes) -> int | None:
    """Where the TSIG RR of ``data`` starts (the last RR of the additional section, RFC
    8945 §5.1), or None when it has none or the packet is malformed. Cheap: names are
    skipped, not decoded; only called on the cache-miss path when ARCOUNT > 0."""
    if len(data) < 12 or _TSIG_TYPE_CLASS not in data:  # C-speed test first: nearly all
        return None
    counts = struct.unpack_from("!HHHH", data, 4)
    if counts[3] == 0:
        return None
    offset = 12
    for _ in range(counts[0]):
        end = skip_name(data, offset)
        if end is None:
            return None
        offset = end + 4
    total = counts[1] + counts[2] + counts[3]
    for i in range(total):
        start = offset
        end = skip_name(data, offset)
        if end is None or end + 10 > len(data):
            return None
        rdtype = int.from_bytes(data[end : end + 2], "big")
        offset = end + 10 + int.from_bytes(data[end + 8 : end + 10], "big")
        if offset > len(data):
            return None
        if rdtype == _TSIG:
            return start if i == total - 1 else None
    return None


_TSIG = int(dns.rdatatype.TSIG)
_TSIG_TYPE_CLASS = b"\x00\xfa\x00\xff"  # TYPE TSIG, CLASS ANY: in every TSIG RR


def strip_tsig(data: bytes, offset: int) -> bytes:
    """``data`` without its TSIG RR (which starts at ``offset``), ARCOUNT lowered."""
    arcount = int.from_bytes(data[10:12], "big") - 1
    return data[:10] + arcount.to_bytes(2, "big") + data[12:offset]


# The TSIG RR's Error field (RFC 8945 §5.3). Not dns.rcode.to_text: 16 there is BADVERS,
# the extended RCODE of RFC 6891, while in a TSIG RR it means BADSIG.
_TSIG_ERRORS = {0: "NOERROR", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC"}


def tsig_error_text(error: int) -> str:
    """The name of a TSIG error (BADSIG, BADKEY, BADTIME, BADTRUNC) for logs and messages."""
    return _TSIG_ERRORS.get(error, f"TSIG error {error}")


def tsig_failure(verified: Verified) -> str:
    """Why a request's TSIG failed, for the log: the error, the key it named and, when
    known, the reason."""
    tsig = verified.message.tsig
    key = tsig.name.to_text() if tsig is not None else "none"
    reason = f": {verified.reason}" if verified.reason else ""
    return f"TSIG {tsig_error_text(verified.error)} (key {key}){reason}"
