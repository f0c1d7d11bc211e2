"""BIND zone files (RFC 1035 §5) in and out, with the file and line of every RR read.

Reading is dnspython's :class:`dns.zonefile.Reader` driven with three adaptations:

* a transaction that records each ``add(name, ttl, rdata)`` as it happens, before dnspython
  would merge it into an rdataset (which would make a second CNAME or SOA replace the first);
* a tokenizer that knows where each RR starts, resolves ``$INCLUDE`` paths against the
  including file and refuses include loops, and tokenizes plain words with a regular
  expression (dnspython's reads one character at a time, over twice as slow on a large zone);
* a zone origin of the root for the reader, so owners outside the zone are kept for the
  validator to report instead of being dropped silently.

These lean on internals of dnspython's reader and tokenizer (the reader's ``tok`` and
``current_origin``, the tokenizer's ``_get_char``); tests/test_zonefile.py compares our
tokenizer with dnspython's and covers includes, so an incompatible release fails loudly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.transaction
import dns.ttl
import dns.zonefile

from nameserver.errors import NameserverError, ZoneFileError
from nameserver.progress import Progress
from nameserver.zone.records import MAX_TTL, Record, canonical_key, is_ttl_form, ttl_out_of_range

MAX_INCLUDE_DEPTH = 20

Identity = tuple[dns.name.Name, int, dns.rdata.Rdata]

_NO_ORIGIN = "no origin: give --origin or start the file with $ORIGIN"
_PROGRESS_EVERY = 4096  # records between progress reports


@dataclass(frozen=True)
class ParsedZone:
    """The records of a zone file, deduplicated and in file order, and where each came from."""

    origin: dns.name.Name
    records: tuple[Record, ...]
    where: Mapping[Identity, str]  # Record.identity -> "path:line" of the RR's first line

    def where_of(self, record: Record) -> str | None:
        """``path:line`` of the (first) line that gave ``record``, if it came from the file."""
        return self.where.get(record.identity)


# --- reading ------------------------------------------------------------------------------


def read_zone_file(
    path: str | os.PathLike[str],
    origin: dns.name.Name | None = None,
    progress: Progress | None = None,
) -> ParsedZone:
    """Read a zone file; ``origin`` overrides the file's ``$ORIGIN`` and SOA owner.
    ``progress`` is told the number of records read now and then.

    Raises :class:`ZoneFileError` naming the file and line of any problem.
    """
    filename = os.fspath(path)
    try:
        text = _load(filename)
    except FileNotFoundError:
        raise ZoneFileError(filename, None, "file not found") from None
    except OSError as e:
        raise ZoneFileError(filename, None, f"cannot read: {e.strerror or e}") from None
    return read_zone_text(text, origin, filename, progress)


def read_zone_text(
    text: str,
    origin: dns.name.Name | None = None,
    filename: str = "<text>",
    progress: Progress | None = None,
) -> ParsedZone:
    """Read zone file text; ``filename`` is used in locations and to resolve ``$INCLUDE``.

    The origin is ``origin`` if given, else the first ``$ORIGIN``, else the owner of the SOA
    when it is written absolute. Raises :class:`ZoneFileError` for any problem.
    """
    text = _normalized(text)
    zone_origin = origin if origin is not None else _find_origin(text, filename)
    if zone_origin is None:
        raise ZoneFileError(filename, None, _NO_ORIGIN)
    if not zone_origin.is_absolute():
        raise ZoneFileError(filename, None, f"origin {zone_origin} is not absolute")
    collector = _Collector(progress)
    reader = _Reader(_SourceTokenizer(text, filename), collector, zone_origin)
    try:
        reader.read()
    except dns.exception.SyntaxError as e:
        raise _located(reader.tok, _strip_location(str(e), reader.tok)) from None
    except (dns.exception.DNSException, OSError, ValueError) as e:
        raise _located(reader.tok, str(e)) from None
    return _parsed(zone_origin, collector.added)


def _load(path: str) -> str:
    """A file's text, decoded as UTF-8 and normalized; OSError propagates."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        reason = f"not UTF-8 text (byte 0x{data[e.start]:02x})"
        raise ZoneFileError(path, line, reason) from None
    return _normalized(text)


def _normalized(text: str) -> str:
    """Text without a byte-order mark and with LF line ends."""
    # Older dnspython releases keep a CR as part of the last word of a line; ours too.
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _parsed(origin: dns.name.Name, added: list[tuple[Record, str]]) -> ParsedZone:
    """Drop repeated RRs, keeping the first one and its location."""
    where: dict[Identity, str] = {}
    records: list[Record] = []
    for record, location in added:
        size = len(where)
        where.setdefault(record.identity, location)  # hashing rdata is costly: once per RR
        if len(where) > size:
            records.append(record)
    return ParsedZone(origin, tuple(records), MappingProxyType(where))


# --- origin -------------------------------------------------------------------------------

_ORIGIN_LINE = re.compile(r"^\$ORIGIN[ \t]+([^ \t\n;]+)", re.MULTILINE | re.IGNORECASE)


def _find_origin(text: str, filename: str) -> dns.name.Name | None:
    """The first absolute ``$ORIGIN`` of the text, else the SOA's owner if written absolute."""
    match = _ORIGIN_LINE.search(text)
    if match:
        try:
            name = dns.name.from_text(match.group(1), origin=None)
        except dns.exception.DNSException:
            name = None  # the reader reports the bad name with its line
        if name is not None and name.is_absolute():
            return name
    return _soa_owner(text, filename)


def _soa_owner(text: str, filename: str) -> dns.name.Name | None:
    """The owner of the first SOA line if it is absolute, scanning without following includes."""
    tok = _SourceTokenizer(text, filename, follow_includes=False)
    owner = ""
    try:
        while not (first := tok.get(want_leading=True)).is_eof():
            words: list[str] = []
            while not first.is_eol() and not (token := tok.get()).is_eol_or_eof():
                words.append(token.value)
            if first.is_identifier() and first.value.startswith("$"):
                continue  # a directive
            if first.is_identifier():
                owner = first.value
            rdtype, _ = _type_and_rdata(words)
            if rdtype is not None and rdtype.upper() == "SOA":
                name = dns.name.from_text(owner, origin=None) if owner else None
                return name if name is not None and name.is_absolute() else None
    except dns.exception.DNSException:
        pass  # the reader reports it with its line
    return None


# --- dnspython adapters -------------------------------------------------------------------


class _CloseWithoutOpen(dns.exception.SyntaxError, NameserverError):
    """')' without a matching '(' (a dnspython SyntaxError: it is raised inside its reader)"""


# One plain word (no escape, quote or parenthesis) or a newline, after optional blanks.
_PLAIN = re.compile(r'([ \t]*)(?:([^ \t\n\r;()"\\]+)(?=[ \t\n;()"]|\Z)|(\n))')


class _SourceTokenizer(dns.tokenizer.Tokenizer):
    """A tokenizer over the text of one zone file.

    Besides tokens it tracks ``rr_line`` (first line of the current RR or directive),
    ``token_line`` (line of the last token), ``at_line_start`` (the last token ended the RR)
    and the tokens of the current RR for error messages, and it resolves the file name of
    an ``$INCLUDE``.
    """

    def __init__(
        self,
        text: str,
        filename: str,
        chain: tuple[str, ...] = (),
        follow_includes: bool = True,
    ) -> None:
        super().__init__("", filename)
        self._text = text
        self._pos = 0
        # Real paths of this file and of the files that include it, outermost first.
        self.chain = (*chain, os.path.realpath(filename))
        self.follow_includes = follow_includes
        self.rr_line = 1
        self.token_line = 1
        self.rr_tokens: list[dns.tokenizer.Token] = []
        self.pending_include: _SourceTokenizer | None = None
        self.at_line_start = True
        self._include_next = False
        self._ungotten_line = 1

    def _get_char(self) -> str:
        # Same contract as the base class, reading from the string instead of a file.
        if self.ungotten_char is not None:
            c = self.ungotten_char
            self.ungotten_char = None
            return c
        if self._pos >= len(self._text):
            self.eof = True
            return ""
        c = self._text[self._pos]
        self._pos += 1
        if c == "\n":
            self.line_number += 1
        return c

    def unget(self, token: dns.tokenizer.Token) -> None:
        super().unget(token)
        self._ungotten_line = self.token_line

    def get(self, want_leading: bool = False, want_comment: bool = False) -> dns.tokenizer.Token:
        ungotten = self.ungotten_token
        if self.at_line_start and ungotten is None:
            self.rr_line = self.line_number
            self.rr_tokens = []
        token = self._plain_token(want_leading)
        if token is None:
            token = self._base_get(want_leading, want_comment)
        if token is ungotten:
            self.token_line = self._ungotten_line
        else:
            # A word ended by a newline has already counted it (the newline is ungotten).
            counted = token.is_eol() or self.ungotten_char == "\n"
            self.token_line = self.line_number - 1 if counted else self.line_number
            self.rr_tokens.append(token)
            if self._include_next:
                token = self._include(token)
            self._include_next = (
                self.follow_includes
                and self.at_line_start
                and token.is_identifier()
                and token.value.upper() == "$INCLUDE"
            )
        self.at_line_start = token.is_eol_or_eof()
        return token

    def _base_get(self, want_leading: bool, want_comment: bool) -> dns.tokenizer.Token:
        try:
            return super().get(want_leading, want_comment)
        except dns.exception.SyntaxError as e:
            # The base class raises a bare SyntaxError for a ")" without "(".
            if self.multiline == 0 and self._text[self._pos - 1 : self._pos] == ")":
                raise _CloseWithoutOpen from e
            raise

    def _plain_token(self, want_leading: bool) -> dns.tokenizer.Token | None:
        """The next token if it is a plain word or newline, else None (the base class reads it)."""
        if self.ungotten_token is not None or self.ungotten_char is not None:
            return None
        m = _PLAIN.match(self._text, self._pos)
        if m is None or (m.group(3) and self.multiline):
            return None  # in parentheses a newline is whitespace: leave it to the base class
        if m.group(1) and want_leading:
            self._pos = m.end(1)
            return dns.tokenizer.Token(dns.tokenizer.WHITESPACE, " ")
        self._pos = m.end()
        if m.group(3):
            self.line_number += 1
            return dns.tokenizer.Token(dns.tokenizer.EOL, "\n")
        return dns.tokenizer.Token(dns.tokenizer.IDENTIFIER, m.group(2))

    def _include(self, token: dns.tokenizer.Token) -> dns.tokenizer.Token:
        """Resolve and read the file named after ``$INCLUDE``; the reader gets its path."""
        if not (token.is_identifier() or token.is_quoted_string()):
            raise ZoneFileError(self.filename, self.rr_line, "$INCLUDE needs a file name")
        path = os.path.join(os.path.dirname(self.filename), token.value)
        if os.path.realpath(path) in self.chain:
            reason = f"$INCLUDE file '{token.value}' is already being read (an include loop)"
            raise ZoneFileError(self.filename, self.rr_line, reason)
        if len(self.chain) > MAX_INCLUDE_DEPTH:
            reason = f"$INCLUDE nested deeper than {MAX_INCLUDE_DEPTH} files"
            raise ZoneFileError(self.filename, self.rr_line, reason)
        try:
            text = _load(path)
        except FileNotFoundError:
            reason = f"$INCLUDE file '{token.value}' not found"
            raise ZoneFileError(self.filename, self.rr_line, reason) from None
        except OSError as e:
            reason = f"$INCLUDE file '{token.value}' cannot be read: {e.strerror or e}"
            raise ZoneFileError(self.filename, self.rr_line, reason) from None
        self.pending_include = _SourceTokenizer(text, path, self.chain)
        return dns.tokenizer.Token(dns.tokenizer.IDENTIFIER, path)


class _Reader(dns.zonefile.Reader):
    """dnspython's reader, reading ``$INCLUDE`` files through :class:`_SourceTokenizer`."""

    def __init__(self, tok: _SourceTokenizer, txn: _Collector, origin: dns.name.Name) -> None:
        self._source = tok
        super().__init__(tok, dns.rdataclass.IN, txn, allow_include=True)
        # The transaction says the zone is the root (see _Collector); names are relative to
        # the real origin.
        self.current_origin = origin
        self.last_name = origin
        txn.reader = self

    @property
    def tok(self) -> _SourceTokenizer:
        return self._source

    @tok.setter
    def tok(self, tok: dns.tokenizer.Tokenizer) -> None:
        if isinstance(tok, _SourceTokenizer):
            self._source = tok
            return
        # dnspython opened an $INCLUDE file and made a plain tokenizer for it: use the one
        # prepared when the file name was read (it is already read, so close dnspython's).
        pending = self._source.pending_include
        assert pending is not None, "dnspython opened a file that was not $INCLUDEd"
        self._source.pending_include = None
        if self.current_file is not None:
            self.current_file.close()
        self._source = pending


class _Manager(dns.transaction.TransactionManager):
    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        # The root, so that the reader keeps every owner: it silently drops owners outside
        # its zone origin, and the validator reports those with better words.
        return dns.name.root, False, dns.name.root

    def get_class(self) -> dns.rdataclass.RdataClass:
        return dns.rdataclass.IN


class _Collector(dns.transaction.Transaction):
    """Records every RR the reader adds, with its location, and stores nothing else."""

    def __init__(self, progress: Progress | None = None) -> None:
        super().__init__(_Manager(), replacement=True)
        self.added: list[tuple[Record, str]] = []
        self.reader: _Reader | None = None
        self.progress = progress

    def add(self, *args: Any) -> None:
        name, ttl, rdata = args  # the reader always adds one (name, ttl, rdata)
        assert self.reader is not None
        tok = self.reader.tok
        if not 0 <= ttl <= MAX_TTL:
            raise ZoneFileError(tok.filename, tok.rr_line, ttl_out_of_range(ttl))
        self.added.append((Record(name, int(ttl), rdata), f"{tok.filename}:{tok.rr_line}"))
        if self.progress is not None and len(self.added) % _PROGRESS_EVERY == 0:
            self.progress(len(self.added), None)

    def check_put_rdataset(self, check: Any) -> None:
        """Ignore dnspython's CNAME-and-other-data check: the validator reports it better."""

    def _set_origin(self, origin: dns.name.Name | None) -> None:
        pass  # names reach add() absolute; there is nothing to relativize


# --- error messages -----------------------------------------------------------------------


def _located(tok: _SourceTokenizer, detail: str) -> ZoneFileError:
    """A ZoneFileError at the last token read, with dnspython's terse detail explained."""
    line = tok.token_line  # before _explain reads the rest of the RR
    return ZoneFileError(tok.filename, line, _explain(detail, tok))


def _strip_location(message: str, tok: _SourceTokenizer) -> str:
    """dnspython's reader prefixes ``file:line: ``; the location is reported separately."""
    prefix = "{}:{}: ".format(*tok.where())
    return message.removeprefix(prefix)


_CAUGHT = re.compile(r"^caught exception <class '[\w.]+'>: ")
_UNKNOWN_TYPE = re.compile(r"unknown rdatatype '(.*)'")
_EXPECTED_EOL = re.compile(r'expected EOL or EOF, got \d+ "(.*)"')
_NOT_ALLOWED = re.compile(r"zone file directive '(.*)' is not allowed")


def _explain(detail: str, tok: _SourceTokenizer) -> str:
    """Say what is wrong in terms of the RR or directive being read. Only the offending
    token is quoted, and at most :data:`_QUOTED` characters of it: a file that is not a zone
    file ($INCLUDE of a README or a key file) must not land in the message."""
    detail = _CAUGHT.sub("", detail).rstrip(".") or "syntax error"
    if (m := _UNKNOWN_TYPE.fullmatch(detail)) is not None:
        word = m.group(1)
        if is_ttl_form(word):  # dnspython takes a TTL out of range for a type
            return ttl_out_of_range(word)
        return f"unknown RR type {_quote(word)}"
    if (m := _NOT_ALLOWED.fullmatch(detail)) is not None:
        return f"unknown directive {_quote(m.group(1), marks='')}"
    if detail == "Missing default TTL value":
        return "the record has no TTL and no $TTL is in force"
    tokens = [t for t in tok.rr_tokens if not t.is_eol_or_eof()]
    if tokens and tokens[0].is_identifier() and tokens[0].value.startswith("$"):
        directive = tokens[0].value.upper()
        words = [t.value for t in tokens[1:] if not t.is_whitespace()]
        if directive == "$TTL" and words and is_ttl_form(words[0]):
            return f"$TTL: {ttl_out_of_range(words[0])}"
        return f"{_quote(directive, marks='')}: {detail}"
    return _explain_rr(detail, tokens, ended=tok.at_line_start)


def _explain_rr(detail: str, tokens: list[dns.tokenizer.Token], ended: bool) -> str:
    """Name the part of the RR that is wrong: owner, class or rdata of a type. ``ended``:
    the parser read the whole RR (else it stopped inside it)."""
    words = [_source_text(t) for t in tokens if not t.is_whitespace()]
    fields = words if tokens and tokens[0].is_whitespace() else words[1:]
    if detail == "RR class is not zone's class":
        rdclass = next((w for w in fields if _is_class(w)), "?")
        return f"class {rdclass} is not supported: zonefan serves class IN only"
    rdtype, rdata = _type_and_rdata(fields)
    if rdtype is None:
        if not fields and words:  # only the owner was read
            return f"owner name {_quote(words[0])}: {detail}"
        return detail
    rdtype = _quote(rdtype.upper(), marks="")
    if (m := _EXPECTED_EOL.fullmatch(detail)) is not None:
        return f"unexpected {_quote(m.group(1))} after the end of the {rdtype} rdata"
    if ended and detail.startswith("expecting"):  # dnspython's "expecting an integer", ...
        detail += " but the record ended"
    # The parser stops at the token it cannot use: the last one read.
    if not rdata:
        what = f"{rdtype} rdata is malformed"
    elif len(rdata) == 1:
        what = f"{rdtype} rdata {_quote(rdata[0])} is malformed"
    else:
        what = f"{rdtype} rdata is malformed at {_quote(rdata[-1])}"
    return what if detail == "Text input is malformed" else f"{what}: {detail}"


_QUOTED = 40  # characters of a token shown in a message


def _quote(text: str, marks: str = "'") -> str:
    """``text`` for a message, cut short when long (a line of prose or base64 is one token)."""
    shown = text if len(text) <= _QUOTED else f"{text[: _QUOTED - 3]}..."
    return f"{marks}{shown}{marks}"


def _type_and_rdata(fields: list[str]) -> tuple[str | None, list[str]]:
    """Split the fields after an owner into the type word and the rdata words."""
    for i, word in enumerate(fields):
        if not (_is_ttl(word) or _is_class(word)):
            return word, fields[i + 1 :]
    return None, []


def _is_ttl(word: str) -> bool:
    try:
        dns.ttl.from_text(word)
    except dns.exception.DNSException:
        return False
    return True


def _is_class(word: str) -> bool:
    try:
        dns.rdataclass.from_text(word)
    except (dns.exception.DNSException, ValueError):
        return False
    return True


def _source_text(token: dns.tokenizer.Token) -> str:
    return f'"{token.value}"' if token.is_quoted_string() else token.value


# --- writing ------------------------------------------------------------------------------


def write_zone_file(origin: dns.name.Name, records: Iterable[Record]) -> str:
    """A canonical zone file for ``records`` (repeats dropped): ``$ORIGIN``, the SOA first,
    then owners in DNSSEC canonical order and types by code, each line with an explicit TTL
    and class IN. Names are relative to the origin where possible; it re-reads to the same
    records and is accepted by named-checkzone and kzonecheck."""
    unique: dict[tuple[dns.name.Name, int, bytes], Record] = {}
    for r in records:
        # The canonical wire form identifies the rdata (as Rdata.__eq__ does) and orders it;
        # computing it once matters on large zones.
        unique.setdefault((r.name, r.rdtype, r.rdata.to_digestable()), r)
    keys = sorted(unique, key=lambda key: _write_order(origin, *key))
    lines = [
        f"; zone {origin.to_text()} written by zonefan: {len(keys)} records",
        f"$ORIGIN {origin.to_text()}",
    ]
    lines += [_zone_line(origin, unique[key]) for key in keys]
    return "\n".join(lines) + "\n"


def _write_order(
    origin: dns.name.Name, name: dns.name.Name, rdtype: int, digest: bytes
) -> tuple[bool, tuple[bytes, ...], bool, int, bytes]:
    # Names outside the zone (the validator refuses them) go last, so the apex comes first.
    return (
        not name.is_subdomain(origin),
        canonical_key(name),
        rdtype != dns.rdatatype.SOA,
        rdtype,
        digest,
    )


def _zone_line(origin: dns.name.Name, r: Record) -> str:
    # Below the root, names are written relative to the origin; at the root, relative and
    # absolute mean the same, and absolute is what root zone files look like.
    relative_to = None if origin == dns.name.root else origin
    if r.name == origin:
        owner = "@"
    elif relative_to is not None:
        owner = r.name.relativize(relative_to).to_text()
    else:
        owner = r.name.to_text()
    rdtype = dns.rdatatype.to_text(r.rdata.rdtype)
    rdata = r.rdata.to_text(origin=relative_to, relativize=relative_to is not None)
    return f"{owner}\t{r.ttl}\tIN\t{rdtype}\t{rdata}"
