"""The embedded SQLite store: zones, their current records and a journal of changesets.

One SQLite file (through sqlite-utils) holds many zones. Every write is a single
``BEGIN IMMEDIATE`` transaction, so the serial check and the change are atomic against other
processes (the server and the CLI share the file), and a writer killed mid-change leaves the
previous version intact. The journal keeps each changeset's removed and added RRs (old and
new SOA included, RFC 1995), enough to serve IXFR, show history and roll back.

Schema (``PRAGMA application_id`` marks the file as ours, ``PRAGMA user_version`` is the
schema version):

* ``zones``: id, name (lowercase absolute text, unique), display (original case), serial,
  serial_policy, created, updated.
* ``records``: zone_id, owner (original case), owner_key (lowercase), rtype, ttl, rdata
  (uncompressed wire, original case), rdata_key (``to_digestable()``); a UNIQUE index on
  (zone_id, owner_key, rtype, rdata_key) is the RR identity of RFC 2181 §5 (TTL excluded).
* ``changesets``: id (AUTOINCREMENT: ids are never reused), zone_id, serial_before (NULL when
  the changeset created the zone), serial_after, author, message, time.
* ``changeset_records``: changeset_id, op ('remove' | 'add'), position, owner, rtype, ttl,
  rdata; the primary key (changeset_id, op, position) keeps the changeset's order.
* ``transfers`` (schema 3): the transfer log, one row per zone transfer served: time,
  zone, client, key, kind, serial_from, serial_to, messages, rrs, bytes, duration, error.
"""

from __future__ import annotations

import gc
import os
import pwd
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any

import dns.dnssectypes
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.nsbase
import sqlite_utils

from nameserver.errors import (
    ConflictError,
    JournalError,
    StoreError,
    StoreMissingError,
    UnknownZoneError,
    ZoneExistsError,
)
from nameserver.zone.changeset import Changeset
from nameserver.zone.records import Record, canonical_key
from nameserver.zone.serial import SerialPolicy
from settings.files import create_data_file

# 2: DNSSEC tables (dnssec_zones, dnssec_keys); 3: transfer log; 4: NOTIFY status
SCHEMA_VERSION = 4
APPLICATION_ID = 0x7A6F6E66  # "zonf": marks the SQLite file as a zonefan store
BUSY_TIMEOUT_S = 10.0
_CHUNK = 2000  # rows converted and inserted per step while streaming a changeset

_IN = dns.rdataclass.IN
_ADD = "add"
_REMOVE = "remove"

# Types whose rdata holds no domain name that canonical form would lowercase: for them the
# identity key is the wire form itself, which saves a second encoding per record.
_NAMELESS_TYPES = frozenset(
    int(t)
    for t in (
        dns.rdatatype.A,
        dns.rdatatype.AAAA,
        dns.rdatatype.DS,
        dns.rdatatype.TXT,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.TLSA,
        dns.rdatatype.SSHFP,
        dns.rdatatype.CAA,
    )
)

# One row of ``records``: owner, owner_key, rtype, ttl, rdata, rdata_key.
_Row = tuple[str, str, int, int, bytes, bytes]
_Key = tuple[str, int, bytes]


#: Key metadata kept per key besides its identity: the RFC 7583 timestamps (POSIX
#: seconds) and the rollover bookkeeping of signer.timing.KeyTiming; NULL when not set.
KEY_FIELDS: dict[str, type] = {
    "created": int,
    "publish": int,
    "ready": int,
    "active": int,
    "retire": int,
    "remove": int,
    "ds_submitted": int,
    "ds_seen": int,
    "ds_withdrawn": int,
    "ds_gone": int,
    "successor": str,
    "roll_requested": int,
    "next_algorithm": int,
    "compromised": int,
}
KEY_TIMES = tuple(KEY_FIELDS)


@dataclass(frozen=True)
class StoredKey:
    """A zone's DNSSEC key as the store keeps it: its public DNSKEY and metadata; the
    private half stays in the key directory (``file``), never in the database."""

    id: str
    role: str
    algorithm: int
    key_tag: int
    dnskey: bytes  # DNSKEY rdata, wire form
    file: str
    times: Mapping[str, int | str | None]  # KEY_FIELDS


@dataclass(frozen=True)
class ZoneDnssec:
    """How a zone is signed: its policy's name, a denial override and whether signing is
    on."""

    policy: str
    denial: str | None
    signed: bool


@dataclass(frozen=True)
class ZoneInfo:
    """Metadata of one stored zone."""

    name: dns.name.Name
    serial: int
    serial_policy: SerialPolicy
    record_count: int
    created: float
    updated: float


# --- decoding -----------------------------------------------------------------------------
#
# Loading a zone must be fast (200k records well under 2 s), and dnspython's constructors
# re-validate every field, which costs tens of microseconds per record. The store only ever
# reads back wire data that dnspython itself produced, so the bulk types are rebuilt by
# setting their slots directly, the way dnspython's own unpickling does. Each fast decoder is
# checked against ``dns.rdata.from_wire`` at import and dropped if it disagrees (for example
# after a dnspython upgrade that changes the slots); everything else uses ``from_wire``.

_set = object.__setattr__
RdataDecoder = Callable[[bytes], dns.rdata.Rdata]


def _from_wire(rdtype: int, wire: bytes) -> dns.rdata.Rdata:
    """dnspython's full, validating decoder."""
    return dns.rdata.from_wire(_IN, dns.rdatatype.RdataType(rdtype), wire, 0, len(wire))


def _wire(rdata: dns.rdata.Rdata) -> bytes:
    """Uncompressed wire form of ``rdata``, names in their original case."""
    wire = rdata.to_wire()
    if wire is None:  # only when writing to a file, which we never do
        raise StoreError(f"cannot encode {rdata}")
    return wire


def _rdata_class(rdtype: dns.rdatatype.RdataType) -> type[dns.rdata.Rdata]:
    cls: type[dns.rdata.Rdata] = dns.rdata.get_rdata_class(_IN, rdtype)  # type: ignore[no-untyped-call]
    return cls


# The decoders below are closures with everything bound locally and no helper calls: at
# 200k records each saved call is worth ~0.1 s.


def _make_decode_a() -> RdataDecoder:
    rdtype = dns.rdatatype.A
    cls = _rdata_class(rdtype)
    new, ntoa = cls.__new__, socket.inet_ntoa

    def decode(wire: bytes) -> dns.rdata.Rdata:
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "address", ntoa(wire))
        return rd

    return decode


_EMBEDDED_V4_PREFIX = bytes(10)


def _make_decode_aaaa() -> RdataDecoder:
    rdtype = dns.rdatatype.AAAA
    cls = _rdata_class(rdtype)
    new, ntop, af = cls.__new__, socket.inet_ntop, socket.AF_INET6

    def decode(wire: bytes) -> dns.rdata.Rdata:
        if wire.startswith(_EMBEDDED_V4_PREFIX):
            # Embedded-IPv4 forms: dnspython and inet_ntop format these differently.
            return _from_wire(rdtype, wire)
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "address", ntop(af, wire))
        return rd

    return decode


def _make_decode_ds() -> RdataDecoder:
    rdtype = dns.rdatatype.DS
    cls = _rdata_class(rdtype)
    new = cls.__new__
    algorithms: dict[int, dns.dnssectypes.Algorithm] = {}
    digests: dict[int, dns.dnssectypes.DSDigest] = {}

    def decode(wire: bytes) -> dns.rdata.Rdata:
        alg = algorithms.get(wire[2])
        if alg is None:
            alg = algorithms[wire[2]] = dns.dnssectypes.Algorithm.make(wire[2])
        dig = digests.get(wire[3])
        if dig is None:
            dig = digests[wire[3]] = dns.dnssectypes.DSDigest.make(wire[3])
        rd = new(cls)
        _set(rd, "rdclass", _IN)
        _set(rd, "rdtype", rdtype)
        _set(rd, "rdcomment", None)
        _set(rd, "key_tag", (wire[0] << 8) | wire[1])
        _set(rd, "algorithm", alg)
        _set(rd, "digest_type", dig)
        _set(rd, "digest", wire[4:])
        return rd

    return decode


_FAST_SAMPLES: dict[int, tuple[str, ...]] = {
    int(dns.rdatatype.A): ("192.0.2.1", "0.0.0.0", "255.255.255.255"),
    int(dns.rdatatype.AAAA): (
        "2001:db8::1",
        "2001:db8:0:1:0:0:0:1",
        "1:0:0:1:0:0:0:1",
        "fe80::",
        "::1",
        "::ffff:192.0.2.1",
        "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff",
    ),
    int(dns.rdatatype.DS): (
        "60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118",
        "2371 13 2 C988EC423E3880EB8DD8A46FE06CA230EE23F35B578F64D5ADB1C8D3B8F7E0C5",
    ),
}


def _agrees(decode: RdataDecoder, rdtype: int, samples: Iterable[str]) -> bool:
    """True when ``decode`` rebuilds exactly what ``dns.rdata.from_wire`` does."""
    try:
        for text in samples:
            wire = _wire(dns.rdata.from_text(_IN, dns.rdatatype.RdataType(rdtype), text))
            slow = _from_wire(rdtype, wire)
            fast = decode(wire)
            same = (
                type(fast) is type(slow)
                and fast.__getstate__() == slow.__getstate__()  # type: ignore[no-untyped-call]
                and fast == slow
                and fast.to_text() == slow.to_text()
            )
            if not same:
                return False
    except Exception:  # any failure just means "use the slow, safe path"
        return False
    return True


def _fast_decoders() -> dict[int, RdataDecoder]:
    makers = {
        int(dns.rdatatype.A): _make_decode_a,
        int(dns.rdatatype.AAAA): _make_decode_aaaa,
        int(dns.rdatatype.DS): _make_decode_ds,
    }
    out: dict[int, RdataDecoder] = {}
    for rdtype, make in makers.items():
        decode = make()
        if _agrees(decode, rdtype, _FAST_SAMPLES[rdtype]):
            out[rdtype] = decode
    return out


_FAST_DECODERS = _fast_decoders()


def _name_fast(text: str) -> dns.name.Name:
    """Rebuild an absolute name from the text the store wrote (``Name.to_text()``)."""
    if "\\" in text or not text.endswith(".") or text == ".":
        return dns.name.from_text(text)
    # Without escapes every dot is a label separator; the labels were validated on write.
    name: dns.name.Name = dns.name.Name.__new__(dns.name.Name)
    _set(name, "labels", tuple(text.encode("ascii").split(b".")))
    return name


def _owner_wire(text: str) -> bytes:
    """Wire form of a stored owner name (absolute presentation text)."""
    if "\\" in text:
        return dns.name.from_text(text).to_wire() or b"\x00"
    if text == ".":
        return b"\x00"
    return b"".join(bytes((len(label),)) + label for label in text.encode("ascii").split(b"."))


def _names_agree() -> bool:
    try:
        for text in ("example.com.", "Mixed.Case.Example.", "*.wild.example.", "x."):
            fast, slow = _name_fast(text), dns.name.from_text(text)
            if fast.labels != slow.labels or hash(fast) != hash(slow) or fast != slow:
                return False
    except Exception:  # fall back to the public parser on any surprise
        return False
    return True


_NAME_FROM_TEXT: Callable[[str], dns.name.Name] = (
    _name_fast if _names_agree() else dns.name.from_text
)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while building many objects: it would otherwise run every 700
    allocations and rescan the growing list (~25% of the load time); the records built hold
    no reference cycles, so nothing is left for it to collect."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _Decoder:
    """Turns stored rows back into :class:`Record` objects, sharing equal names and rdata."""

    def __init__(self) -> None:
        self._names: dict[str, dns.name.Name] = {}
        self._rdatas: dict[tuple[int, bytes], dns.rdata.Rdata] = {}

    def record(self, owner: str, rtype: int, ttl: int, wire: bytes) -> Record:
        """One record from its stored columns."""
        name = self._names.get(owner)
        if name is None:
            name = self._names[owner] = _NAME_FROM_TEXT(owner)
        fast = _FAST_DECODERS.get(rtype)
        if fast is not None:
            return Record(name, ttl, fast(wire))
        # Rdata objects are immutable, so repeated values (NS targets, MX...) are shared.
        key = (rtype, wire)
        rdata = self._rdatas.get(key)
        if rdata is None:
            rdata = self._rdatas[key] = _from_wire(rtype, wire)
        return Record(name, ttl, rdata)

    def records(self, rows: Iterable[tuple[str, int, int, bytes]]) -> list[Record]:
        """Records from (owner, rtype, ttl, rdata) rows: the hot loop of loading a zone."""
        with _gc_paused():
            return self._records(rows)

    def _records(self, rows: Iterable[tuple[str, int, int, bytes]]) -> list[Record]:
        names, rdatas, fast_decoders = self._names, self._rdatas, _FAST_DECODERS
        out: list[Record] = []
        append = out.append
        for owner, rtype, ttl, wire in rows:
            name = names.get(owner)
            if name is None:
                name = names[owner] = _NAME_FROM_TEXT(owner)
            fast = fast_decoders.get(rtype)
            if fast is not None:
                append(Record(name, ttl, fast(wire)))
                continue
            rdata = rdatas.get((rtype, wire))
            if rdata is None:
                rdata = rdatas[rtype, wire] = _from_wire(rtype, wire)
            append(Record(name, ttl, rdata))
        return out


# --- encoding -----------------------------------------------------------------------------


def _zone_key(zone: dns.name.Name) -> str:
    return zone.to_text().lower()


def _name_wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    if wire is None:  # only when writing to a file, which we never do
        raise StoreError(f"cannot encode {name}")
    return wire


def _fast_encoding_agrees() -> bool:
    """True when _Encoder's direct encodings equal dnspython's to_wire()/to_digestable()."""
    samples = [
        ("A", "192.0.2.1"),
        ("AAAA", "2001:DB8::1"),
        ("AAAA", "::ffff:192.0.2.1"),
        ("NS", "NS1.Example.COM."),
        ("CNAME", "Www.Example."),
        ("PTR", "Host.Example."),
        ("DNAME", "Other.Example."),
        ("NS", "\\.A\\.\\200.example."),
    ]
    try:
        encoder = _Encoder(fast=True)
        for rtype, text in samples:
            rdata = dns.rdata.from_text(_IN, rtype, text)
            if encoder.rdata(rdata) != (_wire(rdata), rdata.to_digestable()):
                return False
    except Exception:  # any surprise: use dnspython's encoders
        return False
    return True


class _Encoder:
    """Turns records into ``records`` rows, converting each distinct owner name once."""

    def __init__(self, fast: bool | None = None) -> None:
        self._fast = _FAST_ENCODING if fast is None else fast
        self._owners: dict[tuple[bytes, ...], tuple[str, str]] = {}
        self._targets: dict[tuple[bytes, ...], tuple[bytes, bytes]] = {}

    def row(self, record: Record) -> _Row:
        """Original-case owner text and rdata wire, plus the identity keys."""
        name, ttl, rdata = record
        owner = self._owners.get(name.labels)  # labels, not name: the cache is case-exact
        if owner is None:
            owner = self._owners[name.labels] = self._owner(record)
        if rdata.rdclass != _IN:
            raise StoreError(f"cannot store {record.to_text()}: only class IN is stored")
        try:
            wire, key = self.rdata(rdata)
        except dns.exception.DNSException as e:
            raise StoreError(
                f"cannot store {record.to_text()}: {e}; names in rdata must be absolute"
            ) from e
        return owner[0], owner[1], int(rdata.rdtype), ttl, wire, key

    def rdata(self, rdata: dns.rdata.Rdata) -> tuple[bytes, bytes]:
        """(uncompressed original-case wire, canonical identity key) of ``rdata``.

        Addresses and single-name types (NS, CNAME, PTR, DNAME...) are the bulk of big zones;
        they are encoded directly, names once per distinct target (checked at import).
        """
        if self._fast:
            if isinstance(rdata, dns.rdtypes.IN.A.A):
                wire = socket.inet_aton(rdata.address)
                return wire, wire
            if isinstance(rdata, dns.rdtypes.IN.AAAA.AAAA):
                wire = socket.inet_pton(socket.AF_INET6, rdata.address)
                return wire, wire
            if isinstance(rdata, dns.rdtypes.nsbase.NSBase) and rdata.target.is_absolute():
                target = rdata.target
                encoded = self._targets.get(target.labels)
                if encoded is None:
                    encoded = (_name_wire(target), _name_wire(target.canonicalize()))
                    self._targets[target.labels] = encoded
                return encoded
        wire = _wire(rdata)
        return wire, wire if int(rdata.rdtype) in _NAMELESS_TYPES else rdata.to_digestable()

    @staticmethod
    def _owner(record: Record) -> tuple[str, str]:
        if not record.name.is_absolute():
            raise StoreError(f"cannot store {record.to_text()}: the owner must be absolute")
        text = record.name.to_text()
        # to_text() escapes every non-ASCII byte, so str.lower() folds only A-Z, exactly as
        # DNS name comparison does (RFC 4343).
        return text, text.lower()

    def key(self, record: Record) -> _Key:
        """The RR identity: lowercase owner, type, canonical rdata (TTL excluded)."""
        _owner, owner_key, rtype, _ttl, _wire, key = self.row(record)
        return owner_key, rtype, key


_FAST_ENCODING = _fast_encoding_agrees()


def _chunks(items: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consume ``items`` lazily, ``size`` at a time (the caller may stream a huge change)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


@dataclass(frozen=True)
class NotifyRecord:
    """The latest NOTIFY sent to one secondary (``target``: ADDR@PORT) for one zone."""

    zone: dns.name.Name
    target: str
    serial: int
    attempts: int
    first_sent: float | None
    last_sent: float | None
    acked: float | None
    error: str


@dataclass(frozen=True)
class TransferLogEntry:
    """One zone transfer served. ``kind``: "AXFR", "IXFR", "IXFR-AXFR" (an IXFR answered
    with the full zone: the journal did not reach the client's serial) or "IXFR-UPTODATE"
    (the client had the current serial: one SOA). ``error`` is set when the transfer was cut
    short (the client went away)."""

    time: float
    zone: dns.name.Name
    client: str  # address of the client
    key: str | None  # TSIG key name, None when unsigned
    kind: str
    serial_from: int | None  # the client's serial (IXFR), None for AXFR
    serial_to: int
    messages: int
    rrs: int
    bytes: int
    duration: float  # seconds
    error: str | None = None
    id: int | None = None


# --- the store ----------------------------------------------------------------------------


def _unreached(zone: dns.name.Name, serial: int) -> str:
    # Said to whoever asked (a diff, a rollback, a transfer): each caller adds what it does.
    return (
        f"journal does not reach serial {serial} of zone {zone}: it was compacted or the "
        f"zone never had that serial (`zonefan zone history {zone}` lists the serials kept)"
    )


def _require_store_file(path: str) -> None:
    """StoreMissingError unless a file is at ``path`` (for openings that must not create)."""
    if os.path.isdir(path):
        raise StoreError(f"{path} is a directory; give the path of the store file in it")
    if not os.path.exists(path):
        raise StoreMissingError(path, f"no store at {os.path.abspath(path)}")


def _create_store_file(path: str) -> None:
    """Create the store file before SQLite does, so it is 0640 whatever the umask allows
    (settings.files); its -wal and -shm take its mode. When it cannot be created, SQLite
    fails to open it just after, and that error says why (see _cause)."""
    with suppress(OSError):
        create_data_file(path)


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _access(path: str, mode: int) -> bool:
    # The effective ids are what the kernel checks when SQLite opens the files.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _cause(path: str, write: bool) -> str:
    """Why SQLite cannot open (or, ``write``, change) the store at ``path``, read from the
    file system as "; ..." to append to SQLite's bare message, or "" when nothing shows.

    SQLite keeps a -wal and a -shm file beside a WAL store (and a -journal while creating
    one), so even a reader needs them writable or their directory writable."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        return f"; directory {directory} does not exist: create it, or give another path"
    if os.path.exists(full):
        if not _access(full, os.R_OK):
            return f"; {full} is not readable by {_user()}: fix its owner or mode"
        if write and not _access(full, os.W_OK):
            return f"; {full} is not writable by {_user()}: fix its owner or mode"
    if _access(directory, os.W_OK | os.X_OK):
        return ""
    if not os.path.exists(full):
        what = f"{full} (and its -wal and -shm files)"
    elif all(_access(f"{full}{s}", os.R_OK | os.W_OK) for s in ("-wal", "-shm")):
        return ""
    else:
        what = f"{full}-wal and {full}-shm beside the store"
    return (
        f"; SQLite must create {what}, and directory {directory} is not writable by "
        f"{_user()}: make it writable, or keep the store in a directory that is"
    )


class Store:
    """A zonefan store in one SQLite file, shared safely by several processes.

    Methods are serialised by a lock, so one Store may be used from several threads.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, read_only: bool = False
    ) -> None:
        """Open the store at ``path``.

        ``create``: make the file and schema when there is no store yet (importing a zone,
        serving an empty volume); without it a missing store is StoreMissingError naming
        the path, so a mistyped path never leaves an empty store behind. ``read_only``
        (implies no ``create``): for commands that only look; the connection refuses
        every write once the schema is current (an older schema is still migrated).

        Raises StoreError when the file is not a zonefan store, has a newer schema, or
        cannot be opened (naming the cause: a missing directory, a file or directory this
        user cannot write).
        """
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._read_only = read_only
        create = create and not read_only
        if not create:
            _require_store_file(self.path)
        else:
            _create_store_file(self.path)
        # mode=rw opens an existing file only: nothing is created if it vanished meanwhile.
        uri = f"{Path(os.path.abspath(self.path)).as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE/COMMIT)
                check_same_thread=False,  # guarded by self._lock instead
            )
        except sqlite3.Error as e:
            raise StoreError(
                f"cannot open store {self.path}: {e}{_cause(self.path, write=create)}"
            ) from e
        self._conn = conn
        try:
            self._db = sqlite_utils.Database(conn, execute_plugins=False)
            self._open_schema(create)
        except sqlite3.OperationalError as e:
            conn.close()
            raise StoreError(
                f"cannot open store {self.path}: {e}{_cause(self.path, write=not read_only)}"
            ) from e
        except sqlite3.DatabaseError as e:  # e.g. "file is not a database"
            conn.close()
            raise StoreError(
                f"{self.path} is not a zonefan store ({e}); give the path of a zonefan "
                "store, or a new file to create one"
            ) from e
        except BaseException:
            conn.close()
            raise

    # -- connection, transactions and schema --

    def _open_schema(self, create: bool) -> None:
        if self._pragma("user_version") == 0 and not self._db.table_names():
            if not create:
                raise StoreMissingError(
                    self.path, f"no store at {os.path.abspath(self.path)} (the file is empty)"
                )
            self._db.enable_wal()  # persistent; must be set outside a transaction
            with self._write():
                if not self._db.table_names():  # another process may have won the race
                    self._create_schema()
        self._check_schema()
        if self._read_only:
            self._conn.execute("PRAGMA query_only=ON")
        else:
            self._db.enable_wal()
        # FULL, not NORMAL: with NORMAL a power loss can drop the last commits, and a hidden
        # primary that already sent that serial to its secondaries would then reuse the
        # serial for different data. One fsync per change is cheap.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])

    def _check_schema(self) -> None:
        if self._pragma("application_id") != APPLICATION_ID:
            raise StoreError(
                f"{self.path} is an SQLite database of another application, not a zonefan "
                "store; give the path of a zonefan store, or a new file to create one"
            )
        version = self._pragma("user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}, newer than this zonefan "
                f"understands ({SCHEMA_VERSION}); upgrade zonefan to use it"
            )
        if version in (1, 2, 3):
            with self._write():
                # Re-read inside the write lock: another process may have migrated first.
                if self._pragma("user_version") == 1:
                    self._create_dnssec_schema()
                if self._pragma("user_version") in (1, 2):
                    self._create_transfer_schema()
                if self._pragma("user_version") in (1, 2, 3):
                    self._create_notify_schema()
                    self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            version = SCHEMA_VERSION
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has store schema version {version}, which this zonefan cannot "
                "migrate; restore it from a backup or re-import the zones into a new store"
            )

    def _create_schema(self) -> None:
        db = self._db
        db.table("zones").create(
            {
                "id": int,
                "name": str,
                "display": str,
                "serial": int,
                "serial_policy": str,
                "created": float,
                "updated": float,
            },
            pk="id",
            not_null=["name", "display", "serial", "serial_policy", "created", "updated"],
            strict=True,
        )
        db.table("zones").create_index(["name"], index_name="zones_name", unique=True)
        db.table("records").create(
            {
                "id": int,
                "zone_id": int,
                "owner": str,
                "owner_key": str,
                "rtype": int,
                "ttl": int,
                "rdata": bytes,
                "rdata_key": bytes,
            },
            pk="id",
            not_null=["zone_id", "owner", "owner_key", "rtype", "ttl", "rdata", "rdata_key"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        # Loading a zone reads its records in insertion order; this index gives that order
        # without a sort (the identity index would need a temporary B-tree).
        db.table("records").create_index(["zone_id"], index_name="records_zone")
        db.table("records").create_index(
            ["zone_id", "owner_key", "rtype", "rdata_key"],
            index_name="records_identity",
            unique=True,
        )
        # sqlite-utils has no AUTOINCREMENT; it keeps ids unique even after compaction or
        # deletion of the newest changesets, so an id in a log always means one change.
        db.execute(
            """CREATE TABLE changesets (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                zone_id INTEGER NOT NULL REFERENCES zones(id),
                serial_before INTEGER,
                serial_after INTEGER NOT NULL,
                author TEXT NOT NULL,
                message TEXT NOT NULL,
                time REAL NOT NULL
            ) STRICT"""
        )
        db.table("changesets").create_index(["zone_id", "id"], index_name="changesets_zone")
        db.table("changeset_records").create(
            {
                "changeset_id": int,
                "op": str,
                "position": int,
                "owner": str,
                "rtype": int,
                "ttl": int,
                "rdata": bytes,
            },
            pk=("changeset_id", "op", "position"),
            not_null=["owner", "rtype", "ttl", "rdata"],
            foreign_keys=[("changeset_id", "changesets", "id")],
            strict=True,
        )
        self._create_dnssec_schema()
        self._create_transfer_schema()
        self._create_notify_schema()
        self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _create_dnssec_schema(self) -> None:
        db = self._db
        db.table("dnssec_zones").create(
            {"zone_id": int, "policy": str, "denial": str, "signed": int},
            pk="zone_id",
            not_null=["policy", "signed"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        columns: dict[str, type] = {
            "id": str,
            "zone_id": int,
            "role": str,
            "algorithm": int,
            "key_tag": int,
            "dnskey": bytes,
            "file": str,
        }
        columns.update(KEY_FIELDS)
        db.table("dnssec_keys").create(
            columns,
            pk="id",
            not_null=["zone_id", "role", "algorithm", "key_tag", "dnskey", "file"],
            foreign_keys=[("zone_id", "zones", "id")],
            strict=True,
        )
        db.table("dnssec_keys").create_index(["zone_id"], index_name="dnssec_keys_zone")

    def _create_transfer_schema(self) -> None:
        # No foreign key to zones: the log outlives a deleted zone (it is a log).
        self._db.execute(
            """CREATE TABLE transfers (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                time REAL NOT NULL,
                zone TEXT NOT NULL,
                client TEXT NOT NULL,
                key TEXT,
                kind TEXT NOT NULL,
                serial_from INTEGER,
                serial_to INTEGER NOT NULL,
                messages INTEGER NOT NULL,
                rrs INTEGER NOT NULL,
                bytes INTEGER NOT NULL,
                duration REAL NOT NULL,
                error TEXT
            ) STRICT"""
        )
        self._db.execute("CREATE INDEX transfers_zone ON transfers (zone, id)")

    def _create_notify_schema(self) -> None:
        # The latest NOTIFY per (zone, secondary): what `zonefan zone status` shows.
        self._db.execute(
            """CREATE TABLE notify_status (
                zone TEXT NOT NULL,
                target TEXT NOT NULL,
                serial INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                first_sent REAL,
                last_sent REAL,
                acked REAL,
                error TEXT NOT NULL,
                PRIMARY KEY (zone, target)
            ) STRICT"""
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock before any read."""
        with self._lock:
            conn = self._conn
            if self._read_only:
                raise StoreError(f"store {self.path} was opened read-only; nothing was changed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                if "locked" in str(e) or "busy" in str(e):
                    hint = f"; another writer held it for over {BUSY_TIMEOUT_S:g} s: retry"
                else:
                    hint = _cause(self.path, write=True) or (
                        "; check that the file and its directory are writable"
                    )
                raise StoreError(f"cannot change store {self.path}: {e}{hint}") from e
            try:
                yield conn
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    cause = _cause(self.path, write=True)
                    raise StoreError(f"store {self.path}: {e}{cause}; nothing was changed") from e
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                hint = _cause(self.path, write=True) or "; retry"
                raise StoreError(f"cannot commit to store {self.path}: {e}{hint}") from e

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: all queries inside see one consistent snapshot (WAL)."""
        with self._lock:
            conn = self._conn
            if conn.in_transaction:  # nested inside another read or write
                yield conn
                return
            try:
                conn.execute("BEGIN")
                yield conn
            except sqlite3.Error as e:
                raise StoreError(f"cannot read store {self.path}: {e}") from e
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _zone_row(self, conn: sqlite3.Connection, zone: dns.name.Name) -> tuple[Any, ...]:
        row = conn.execute(
            "SELECT id, display, serial, serial_policy, created, updated FROM zones WHERE name = ?",
            (_zone_key(zone),),
        ).fetchone()
        if row is None:
            raise UnknownZoneError(zone.to_text())
        return tuple(row)

    def _zone_id(self, conn: sqlite3.Connection, zone: dns.name.Name) -> int:
        return int(self._zone_row(conn, zone)[0])

    # -- lifecycle --

    def close(self) -> None:
        """Close the connection; the Store cannot be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- zones --

    def zone_names(self) -> list[dns.name.Name]:
        """All zones, in DNSSEC canonical order."""
        with self._read() as conn:
            rows = conn.execute("SELECT display FROM zones").fetchall()
        return sorted((dns.name.from_text(r[0]) for r in rows), key=canonical_key)

    def has_zone(self, zone: dns.name.Name) -> bool:
        """True when ``zone`` is in the store."""
        with self._read() as conn:
            row = conn.execute("SELECT 1 FROM zones WHERE name = ?", (_zone_key(zone),))
            return row.fetchone() is not None

    def zone_info(self, zone: dns.name.Name) -> ZoneInfo:
        """Metadata of ``zone``; UnknownZoneError when it is not stored."""
        with self._read() as conn:
            zone_id, display, serial, policy, created, updated = self._zone_row(conn, zone)
            (count,) = conn.execute(
                "SELECT count(*) FROM records WHERE zone_id = ?", (zone_id,)
            ).fetchone()
        return ZoneInfo(
            dns.name.from_text(display),
            int(serial),
            SerialPolicy(policy),
            int(count),
            float(created),
            float(updated),
        )

    def serial(self, zone: dns.name.Name) -> int:
        """The zone's current serial (one indexed read; UnknownZoneError when absent)."""
        with self._read() as conn:
            return int(self._zone_row(conn, zone)[2])

    def serial_policy(self, zone: dns.name.Name) -> SerialPolicy:
        """How the zone's serial moves (cheaper than :meth:`zone_info`, which counts RRs)."""
        with self._read() as conn:
            return SerialPolicy(self._zone_row(conn, zone)[3])

    def zone_serials(self) -> dict[dns.name.Name, int]:
        """Every zone's current serial, read in one query."""
        with self._read() as conn:
            rows = conn.execute("SELECT display, serial FROM zones").fetchall()
        return {dns.name.from_text(display): int(serial) for display, serial in rows}

    def create_zone(self, changeset: Changeset, serial_policy: SerialPolicy) -> Changeset:
        """Store a new zone from its creating changeset (serial_before None, nothing removed).

        Returns the changeset with its journal id; ZoneExistsError if the zone is stored.
        """
        zone = changeset.zone
        if not zone.is_absolute():
            raise StoreError(f"zone name {zone} must be absolute (end with a dot)")
        if changeset.serial_before is not None or changeset.removed:
            raise ConflictError(
                f"a changeset that creates zone {zone} must have serial_before None and "
                "remove nothing; use commit() to change an existing zone"
            )
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM zones WHERE name = ?", (_zone_key(zone),)).fetchone():
                raise ZoneExistsError(
                    f"zone {zone} already exists; change it with a commit, or delete it first"
                )
            cur = conn.execute(
                "INSERT INTO zones (name, display, serial, serial_policy, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    _zone_key(zone),
                    zone.to_text(),
                    changeset.serial_after,
                    serial_policy.value,
                    changeset.time,
                    changeset.time,
                ),
            )
            zone_id = int(cur.lastrowid or 0)
            changeset_id = self._insert_changeset(conn, zone_id, changeset)
            self._apply(conn, zone, zone_id, changeset_id, changeset)
        return replace(changeset, id=changeset_id)

    def commit(
        self,
        changeset: Changeset,
        keys: Sequence[StoredKey] = (),
        dnssec: ZoneDnssec | None = None,
    ) -> Changeset:
        """Apply one changeset atomically and journal it; returns it with its id.

        ``keys`` (added or updated) and ``dnssec`` are written in the same transaction, so
        a key's state and the zone that shows it never disagree. ConflictError when the
        zone's serial is not ``serial_before`` (the zone changed meanwhile), when a removed
        RR is not in the zone or an added RR already is.
        """
        zone = changeset.zone
        if changeset.serial_before is None:
            raise ConflictError(
                f"changeset for {zone} has no serial_before; use create_zone() to create a zone"
            )
        with self._write() as conn:
            zone_id, _display, serial, *_ = self._zone_row(conn, zone)
            if serial != changeset.serial_before:
                raise ConflictError(
                    f"zone {zone} is at serial {serial} but the change was made against serial "
                    f"{changeset.serial_before}; reload the zone and redo the change"
                )
            conn.execute(
                "UPDATE zones SET serial = ?, updated = ? WHERE id = ?",
                (changeset.serial_after, changeset.time, zone_id),
            )
            changeset_id = self._insert_changeset(conn, zone_id, changeset)
            self._apply(conn, zone, zone_id, changeset_id, changeset)
            self._put_keys(conn, zone_id, keys)
            if dnssec is not None:
                self._put_dnssec(conn, zone_id, dnssec)
        return replace(changeset, id=changeset_id)

    # -- DNSSEC keys and settings --

    def dnssec(self, zone: dns.name.Name) -> ZoneDnssec | None:
        """How ``zone`` is signed, or None when DNSSEC was never set up for it."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            row = conn.execute(
                "SELECT policy, denial, signed FROM dnssec_zones WHERE zone_id = ?", (zone_id,)
            ).fetchone()
        if row is None:
            return None
        return ZoneDnssec(str(row[0]), row[1], bool(row[2]))

    def set_dnssec(self, zone: dns.name.Name, dnssec: ZoneDnssec) -> None:
        """Record how ``zone`` is signed (no change to its records)."""
        with self._write() as conn:
            self._put_dnssec(conn, self._zone_id(conn, zone), dnssec)

    def keys(self, zone: dns.name.Name) -> list[StoredKey]:
        """The zone's DNSSEC keys, oldest first."""
        columns = ("id", "role", "algorithm", "key_tag", "dnskey", "file", *KEY_TIMES)
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            rows = conn.execute(
                f"SELECT {', '.join(columns)} FROM dnssec_keys WHERE zone_id = ? "
                "ORDER BY created, id",
                (zone_id,),
            ).fetchall()
        return [
            StoredKey(
                str(r[0]),
                str(r[1]),
                int(r[2]),
                int(r[3]),
                bytes(r[4]),
                str(r[5]),
                dict(zip(KEY_TIMES, r[6:], strict=True)),
            )
            for r in rows
        ]

    def put_keys(self, zone: dns.name.Name, keys: Sequence[StoredKey]) -> None:
        """Add or update keys of ``zone`` in one transaction (no change to its records)."""
        with self._write() as conn:
            self._put_keys(conn, self._zone_id(conn, zone), keys)

    def _put_keys(self, conn: sqlite3.Connection, zone_id: int, keys: Sequence[StoredKey]) -> None:
        columns = ("id", "zone_id", "role", "algorithm", "key_tag", "dnskey", "file", *KEY_TIMES)
        sql = (
            f"INSERT OR REPLACE INTO dnssec_keys ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})"
        )
        for key in keys:
            unknown = set(key.times) - set(KEY_TIMES)
            if unknown:
                raise StoreError(f"key {key.id}: unknown timestamps {sorted(unknown)}")
            times = [key.times.get(name) for name in KEY_TIMES]
            conn.execute(
                sql,
                (
                    key.id,
                    zone_id,
                    key.role,
                    key.algorithm,
                    key.key_tag,
                    key.dnskey,
                    key.file,
                    *times,
                ),
            )

    @staticmethod
    def _put_dnssec(conn: sqlite3.Connection, zone_id: int, dnssec: ZoneDnssec) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO dnssec_zones (zone_id, policy, denial, signed) "
            "VALUES (?, ?, ?, ?)",
            (zone_id, dnssec.policy, dnssec.denial, int(dnssec.signed)),
        )

    def set_serial_policy(self, zone: dns.name.Name, policy: SerialPolicy) -> None:
        """Change how the zone's serial moves on the next changes."""
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            conn.execute(
                "UPDATE zones SET serial_policy = ?, updated = ? WHERE id = ?",
                (policy.value, time.time(), zone_id),
            )

    def delete_zone(self, zone: dns.name.Name) -> None:
        """Remove the zone, its records and its whole journal."""
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            conn.execute(
                "DELETE FROM changeset_records WHERE changeset_id IN "
                "(SELECT id FROM changesets WHERE zone_id = ?)",
                (zone_id,),
            )
            conn.execute("DELETE FROM changesets WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM records WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM dnssec_keys WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM dnssec_zones WHERE zone_id = ?", (zone_id,))
            conn.execute("DELETE FROM zones WHERE id = ?", (zone_id,))

    # -- writing a changeset --

    def _insert_changeset(
        self, conn: sqlite3.Connection, zone_id: int, changeset: Changeset
    ) -> int:
        cur = conn.execute(
            "INSERT INTO changesets (zone_id, serial_before, serial_after, author, message, time)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                zone_id,
                changeset.serial_before,
                changeset.serial_after,
                changeset.author,
                changeset.message,
                changeset.time,
            ),
        )
        return int(cur.lastrowid or 0)

    def _apply(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        changeset_id: int,
        changeset: Changeset,
    ) -> None:
        """Remove then add (IXFR order, so a TTL change is remove + add of one RR).

        Both sequences are consumed lazily, chunk by chunk, inside the open transaction.
        """
        row = _Encoder().row
        position = 0
        for chunk in _chunks(changeset.removed, _CHUNK):
            rows = [row(r) for r in chunk]
            self._remove_rows(conn, zone, zone_id, chunk, rows)
            self._journal(changeset_id, _REMOVE, position, rows)
            position += len(rows)
        position = 0
        for chunk in _chunks(changeset.added, _CHUNK):
            rows = [row(r) for r in chunk]
            self._add_rows(conn, zone, zone_id, chunk, rows)
            self._journal(changeset_id, _ADD, position, rows)
            position += len(rows)

    def _remove_rows(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[Record],
        rows: Sequence[_Row],
    ) -> None:
        # Row by row, because each removal must hit exactly one RR (sqlite-utils'
        # delete_where does not report how many rows it deleted).
        for record, (_owner, owner_key, rtype, _ttl, _wire, key) in zip(records, rows, strict=True):
            cur = conn.execute(
                "DELETE FROM records WHERE zone_id = ? AND owner_key = ? AND rtype = ? "
                "AND rdata_key = ?",
                (zone_id, owner_key, rtype, key),
            )
            if cur.rowcount != 1:
                raise ConflictError(
                    f"cannot remove {record.to_text()} from zone {zone}: it is not in the "
                    "zone; reload the zone and redo the change"
                )

    def _add_rows(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[Record],
        rows: Sequence[_Row],
    ) -> None:
        try:
            # A savepoint around the whole chunk: on a duplicate the chunk must be back to its
            # state before the insert. executemany, not insert_all: bulk loads are 2x faster.
            with self._db.atomic():
                conn.executemany(
                    "INSERT INTO records (zone_id, owner, owner_key, rtype, ttl, rdata, rdata_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ((zone_id, *row) for row in rows),
                )
        except sqlite3.IntegrityError:
            raise self._duplicate_error(conn, zone, zone_id, records, rows) from None

    def _duplicate_error(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        records: Sequence[Record],
        rows: Sequence[_Row],
    ) -> ConflictError:
        """Name the RR that broke the identity index (the chunk's inserts were undone)."""
        seen: set[_Key] = set()
        culprit = records[0]
        for record, (_owner, owner_key, rtype, _ttl, _wire, key) in zip(records, rows, strict=True):
            present = conn.execute(
                "SELECT 1 FROM records WHERE zone_id = ? AND owner_key = ? AND rtype = ? "
                "AND rdata_key = ?",
                (zone_id, owner_key, rtype, key),
            ).fetchone()
            if present or (owner_key, rtype, key) in seen:
                culprit = record
                break
            seen.add((owner_key, rtype, key))
        return ConflictError(
            f"cannot add {culprit.to_text()} to zone {zone}: the same RR (owner, type and "
            "data) is already in the zone; drop it from the change or remove it first"
        )

    def _journal(self, changeset_id: int, op: str, start: int, rows: Sequence[_Row]) -> None:
        self._db.conn.executemany(
            "INSERT INTO changeset_records (changeset_id, op, position, owner, rtype, ttl, rdata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (changeset_id, op, start + i, owner, rtype, ttl, wire)
                for i, (owner, _okey, rtype, ttl, wire, _key) in enumerate(rows)
            ),
        )

    # -- reading records --

    def records(self, zone: dns.name.Name) -> list[Record]:
        """The zone's current records, in the order they were added."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            return self._load_records(conn, zone_id)

    def rows(self, zone: dns.name.Name) -> list[tuple[bytes, int, int, bytes]]:
        """The zone's current RRs as wire rows (owner, type, TTL, rdata), for building a
        snapshot without decoding rdata: the fast way to load a zone for serving."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            rows = conn.execute(
                "SELECT owner, rtype, ttl, rdata FROM records WHERE zone_id = ? ORDER BY id",
                (zone_id,),
            ).fetchall()
        owners: dict[str, bytes] = {}
        out = []
        for owner, rtype, ttl, rdata in rows:
            wire = owners.get(owner)
            if wire is None:
                wire = owners[owner] = _owner_wire(owner)
            out.append((wire, rtype, ttl, rdata))
        return out

    def _load_records(self, conn: sqlite3.Connection, zone_id: int) -> list[Record]:
        rows = conn.execute(
            "SELECT owner, rtype, ttl, rdata FROM records WHERE zone_id = ? ORDER BY id",
            (zone_id,),
        ).fetchall()
        return _Decoder().records(rows)

    def _load_keyed_records(self, conn: sqlite3.Connection, zone_id: int) -> dict[_Key, Record]:
        rows = conn.execute(
            "SELECT owner, rtype, ttl, rdata, owner_key, rdata_key FROM records "
            "WHERE zone_id = ? ORDER BY id",
            (zone_id,),
        ).fetchall()
        record = _Decoder().record
        return {
            (okey, rtype, rkey): record(owner, rtype, ttl, wire)
            for owner, rtype, ttl, wire, okey, rkey in rows
        }

    def records_at(self, zone: dns.name.Name, serial: int) -> list[Record]:
        """The zone as it was at ``serial``, by undoing the journal from the current records.

        JournalError when the journal does not reach that serial.
        """
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            chain = self.changesets_between(zone, serial)
            current = self._load_keyed_records(conn, zone_id)
        key_of = _Encoder().key
        for cs in reversed(chain):
            for record in cs.added:
                if current.pop(key_of(record), None) is None:
                    raise JournalError(
                        f"journal of zone {zone} is inconsistent: changeset {cs.id} added "
                        f"{record.to_text()}, which is not in the zone; it cannot be undone"
                    )
            for record in cs.removed:
                current[key_of(record)] = record
        return list(current.values())

    # -- the journal --

    def changesets(
        self, zone: dns.name.Name, after_id: int = 0, limit: int | None = None
    ) -> list[Changeset]:
        """The zone's changesets with id > ``after_id``, oldest first, at most ``limit``."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            return self._load_changesets(conn, zone, zone_id, after_id, limit=limit)

    def changeset(self, zone: dns.name.Name, changeset_id: int) -> Changeset:
        """One changeset of the zone; JournalError when it is not in the journal."""
        with self._read() as conn:
            zone_id = self._zone_id(conn, zone)
            found = self._load_changesets(
                conn, zone, zone_id, changeset_id - 1, upto_id=changeset_id
            )
        if not found:
            raise JournalError(
                f"changeset {changeset_id} of zone {zone} is not in the journal (it was "
                "compacted or never existed); list the history to see the ids kept"
            )
        return found[0]

    def changesets_between(
        self, zone: dns.name.Name, from_serial: int, to_serial: int | None = None
    ) -> list[Changeset]:
        """The chain of changesets leading from ``from_serial`` to ``to_serial`` (default:
        the current serial), oldest first; empty when the two are equal.

        JournalError("journal does not reach serial N") when the chain is broken/compacted.
        """
        with self._read() as conn:
            zone_id, _display, current, *_ = self._zone_row(conn, zone)
            target = current if to_serial is None else to_serial
            if from_serial == target:
                return []
            headers = conn.execute(
                "SELECT id, serial_before, serial_after FROM changesets WHERE zone_id = ? "
                "ORDER BY id",
                (zone_id,),
            ).fetchall()
            first, last = self._chain(headers, from_serial, target, zone)
            return self._load_changesets(conn, zone, zone_id, first - 1, upto_id=last)

    @staticmethod
    def _chain(
        headers: Sequence[tuple[int, int | None, int]],
        from_serial: int,
        to_serial: int,
        zone: dns.name.Name,
    ) -> tuple[int, int]:
        """(first id, last id) of the contiguous run of changesets from one serial to another.

        Commits check serial_before, so the journal is linear: walk back from the newest
        changeset that ends at ``to_serial`` while each link holds.
        """
        end = next((i for i in range(len(headers) - 1, -1, -1) if headers[i][2] == to_serial), -1)
        if end < 0:
            raise JournalError(_unreached(zone, to_serial))
        want: int | None = to_serial
        i = end
        while i >= 0 and headers[i][2] == want:
            want = headers[i][1]
            if want == from_serial:
                return headers[i][0], headers[end][0]
            i -= 1
        raise JournalError(_unreached(zone, from_serial))

    def _load_changesets(
        self,
        conn: sqlite3.Connection,
        zone: dns.name.Name,
        zone_id: int,
        after_id: int,
        *,
        upto_id: int | None = None,
        limit: int | None = None,
    ) -> list[Changeset]:
        """Changesets of the zone with after_id < id <= upto_id, with their records."""
        upper = upto_id if upto_id is not None else 2**63 - 1
        heads = conn.execute(
            "SELECT id, serial_before, serial_after, author, message, time FROM changesets "
            "WHERE zone_id = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?",
            (zone_id, after_id, upper, -1 if limit is None else limit),
        ).fetchall()
        if not heads:
            return []
        parts: dict[int, dict[str, list[Record]]] = {h[0]: {_REMOVE: [], _ADD: []} for h in heads}
        decoder = _Decoder()
        for cid, part in parts.items():
            rows = conn.execute(
                "SELECT op, owner, rtype, ttl, rdata FROM changeset_records "
                "WHERE changeset_id = ? ORDER BY op, position",
                (cid,),
            )
            for op, owner, rtype, ttl, wire in rows:
                part[op].append(decoder.record(owner, rtype, ttl, wire))
        name = self._display_name(conn, zone_id, zone)
        return [
            Changeset(
                zone=name,
                serial_before=before,
                serial_after=after,
                removed=tuple(parts[cid][_REMOVE]),
                added=tuple(parts[cid][_ADD]),
                author=author,
                message=message,
                time=when,
                id=cid,
            )
            for cid, before, after, author, message, when in heads
        ]

    @staticmethod
    def _display_name(
        conn: sqlite3.Connection, zone_id: int, fallback: dns.name.Name
    ) -> dns.name.Name:
        row = conn.execute("SELECT display FROM zones WHERE id = ?", (zone_id,)).fetchone()
        return dns.name.from_text(row[0]) if row else fallback

    def compact_journal(self, zone: dns.name.Name, keep: int) -> int:
        """Delete all but the newest ``keep`` changesets of the zone; returns how many went.

        IXFR and records_at() cannot reach serials older than the changesets kept.
        """
        if keep < 0:
            raise JournalError(f"keep must be 0 or more changesets, not {keep}")
        with self._write() as conn:
            zone_id = self._zone_id(conn, zone)
            # The newest changeset to go; it and every older one of the zone are deleted.
            row = conn.execute(
                "SELECT id FROM changesets WHERE zone_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (zone_id, keep),
            ).fetchone()
            if row is None:
                return 0
            doomed = "SELECT id FROM changesets WHERE zone_id = ? AND id <= ?"
            conn.execute(
                f"DELETE FROM changeset_records WHERE changeset_id IN ({doomed})",
                (zone_id, row[0]),
            )
            cur = conn.execute(
                "DELETE FROM changesets WHERE zone_id = ? AND id <= ?", (zone_id, row[0])
            )
            return int(cur.rowcount)

    # -- NOTIFY status --

    def record_notify(self, state: NotifyRecord) -> None:
        """Store the latest NOTIFY state of one zone and secondary (replacing the last)."""
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO notify_status (zone, target, serial, attempts, "
                "first_sent, last_sent, acked, error) VALUES (?,?,?,?,?,?,?,?)",
                (
                    _zone_key(state.zone),
                    state.target,
                    state.serial,
                    state.attempts,
                    state.first_sent,
                    state.last_sent,
                    state.acked,
                    state.error,
                ),
            )

    def notify_status(self, zone: dns.name.Name) -> list[NotifyRecord]:
        """The latest NOTIFY state per secondary of ``zone``."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT target, serial, attempts, first_sent, last_sent, acked, error "
                "FROM notify_status WHERE zone = ? ORDER BY target",
                (_zone_key(zone),),
            ).fetchall()
        return [NotifyRecord(zone, *row) for row in rows]

    # -- the transfer log --

    def log_transfer(self, entry: TransferLogEntry) -> int:
        """Record one transfer served; returns its id."""
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO transfers (time, zone, client, key, kind, serial_from, serial_to, "
                "messages, rrs, bytes, duration, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.time,
                    _zone_key(entry.zone),
                    entry.client,
                    entry.key,
                    entry.kind,
                    entry.serial_from,
                    entry.serial_to,
                    entry.messages,
                    entry.rrs,
                    entry.bytes,
                    entry.duration,
                    entry.error,
                ),
            )
            return int(cur.lastrowid or 0)

    def transfers(
        self, zone: dns.name.Name | None = None, limit: int | None = None
    ) -> list[TransferLogEntry]:
        """Logged transfers, newest first (of one zone when given), at most ``limit``."""
        where, args = ("WHERE zone = ?", [_zone_key(zone)]) if zone is not None else ("", [])
        return self._transfer_rows(
            f"{where} ORDER BY id DESC LIMIT ?", (*args, -1 if limit is None else limit)
        )

    def last_transfers(self, zone: dns.name.Name) -> list[TransferLogEntry]:
        """The newest logged transfer of ``zone`` by each client, however old, by client."""
        return self._transfer_rows(
            "WHERE id IN (SELECT MAX(id) FROM transfers WHERE zone = ? GROUP BY client) "
            "ORDER BY client",
            (_zone_key(zone),),
        )

    def _transfer_rows(self, tail: str, args: tuple[object, ...]) -> list[TransferLogEntry]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT id, time, zone, client, key, kind, serial_from, serial_to, messages, "
                f"rrs, bytes, duration, error FROM transfers {tail}",
                args,
            ).fetchall()
        return [
            TransferLogEntry(
                time=t,
                zone=dns.name.from_text(z),
                client=c,
                key=k,
                kind=kind,
                serial_from=sf,
                serial_to=st,
                messages=m,
                rrs=rrs,
                bytes=b,
                duration=d,
                error=e,
                id=i,
            )
            for i, t, z, c, k, kind, sf, st, m, rrs, b, d, e in rows
        ]

    def data_version(self) -> int:
        """SQLite's PRAGMA data_version: changes whenever another connection commits."""
        with self._lock:
            try:
                return self._pragma("data_version")
            except sqlite3.Error as e:
                raise StoreError(f"cannot read store {self.path}: {e}") from e
