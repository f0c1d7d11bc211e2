"""TSIG (RFC 8945): keys from the config file, verifying requests and signing responses.

Keys are the settings grammar's ``[key.NAME]`` tables (``[key.xfr-key]`` is the key
``xfr-key.``; see :mod:`settings.secrets`). Verification and the MAC arithmetic are
dnspython's (``dns.tsig``); this module adds the config parsing, the RFC 8945 §5.2 error
mapping and signing of messages we render ourselves (every message of a transfer,
§5.3.1: each MAC covers the previous one).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from nameserver.query import skip_name
from settings import Table, TsigKey, parse_tsig_keys

__all__ = [
    "BADKEY",
    "BADSIG",
    "BADTIME",
    "FUDGE",
    "NOERROR",
    "Keyring",
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

FUDGE = 300  # seconds; RFC 8945 §10 recommends 300
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
    ``error`` is the TSIG error to answer with (RFC 8945 §5.2), NOERROR when fine."""

    message: dns.message.Message
    key: TsigKey | None
    error: int
    mac: bytes = b""
    time_signed: int = 0


def verify(data: bytes, keys: Keyring) -> Verified:
    """Parse ``data`` and check its TSIG, if any. Raises dns.exception.DNSException when the
    message cannot be parsed at all (the caller answers FORMERR or nothing)."""
    plain = dns.message.from_wire(data, keyring=False, ignore_trailing=False)
    if not plain.had_tsig:
        return Verified(plain, None, NOERROR)
    assert plain.tsig is not None
    rdata = plain.tsig[0]
    key = keys.get(plain.tsig.name)
    if key is None or key.algorithm_name != rdata.algorithm:
        return Verified(plain, None, BADKEY)  # §5.2.1: unknown key or algorithm
    try:
        dns.message.from_wire(data, keyring=key.dns_key, ignore_trailing=False)
    except dns.tsig.BadTime:
        return Verified(plain, key, BADTIME, rdata.mac, rdata.time_signed)
    except (dns.tsig.BadSignature, dns.tsig.BadKey, dns.tsig.BadAlgorithm):
        return Verified(plain, key, BADSIG)  # §5.2.2
    return Verified(plain, key, NOERROR, rdata.mac, rdata.time_signed)


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
            FUDGE,
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
    """Why a request's TSIG failed, for the log: the error and the key it named."""
    tsig = verified.message.tsig
    key = tsig.name.to_text() if tsig is not None else "none"
    return f"TSIG {tsig_error_text(verified.error)} (key {key})"
