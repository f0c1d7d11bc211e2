"""Writing a response packet: header, question echo, sections with name compression,
EDNS0 OPT, and truncation by whole RRsets."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import dns.rdatatype

from nameserver.serve.answer import Answer, Entry
from nameserver.serve.query import Query
from nameserver.zone.wirename import lower

# Types whose rdata names may be compressed (RFC 3597 §4): how many fixed octets come before
# the name, and whether a second name follows (SOA).
_COMPRESSIBLE = {
    int(dns.rdatatype.NS): 0,
    int(dns.rdatatype.CNAME): 0,
    int(dns.rdatatype.PTR): 0,
    int(dns.rdatatype.MX): 2,
    int(dns.rdatatype.SOA): 0,
}
SOA = int(dns.rdatatype.SOA)
OPT = int(dns.rdatatype.OPT)
RRSIG = int(dns.rdatatype.RRSIG)
CLASS_IN = 1
HEADER_LEN = 12
OPT_RR_LEN = 11
MAX_TCP = 65535


class _Writer:
    """A growing packet with a compression table of lowercased name suffixes."""

    __slots__ = ("buf", "table")

    def __init__(self, head: bytes) -> None:
        self.buf = bytearray(head)
        self.table: dict[bytes, int] = {}

    def name(self, wire: bytes) -> None:
        """Append ``wire`` compressed against names already written (RFC 1035 §4.1.4)."""
        key = lower(wire)
        i = 0
        while wire[i]:
            pointer = self.table.get(key[i:])
            if pointer is not None:
                self.buf += wire[:i]
                self.buf += struct.pack("!H", 0xC000 | pointer)
                self._remember(key, i)
                return
            i += wire[i] + 1
        self.buf += wire
        self._remember(key, i)

    def _remember(self, key: bytes, upto: int) -> None:
        """Record suffixes that start before ``upto`` (the part written in full)."""
        base = len(self.buf) - self._written_len(key, upto)
        i = 0
        while i < upto:
            offset = base + i
            if offset < 0x4000:
                self.table.setdefault(key[i:], offset)
            i += key[i] + 1

    def _written_len(self, key: bytes, upto: int) -> int:
        return upto + (2 if key[upto] else 1)

    def remember_question(self, qname: bytes) -> None:
        """The question name sits at offset 12; later owners point into it."""
        key = lower(qname)
        i = 0
        while key[i]:
            self.table.setdefault(key[i:], HEADER_LEN + i)
            i += key[i] + 1

    def rdata(self, rdtype: int, wire: bytes) -> None:
        """Append rdata with its length, compressing names where RFC 3597 allows it."""
        fixed = _COMPRESSIBLE.get(rdtype)
        length_at = len(self.buf)
        self.buf += b"\x00\x00"
        if fixed is None:
            self.buf += wire
        elif rdtype == SOA:
            mname_end = _name_end(wire, 0)
            rname_end = _name_end(wire, mname_end)
            self.name(wire[:mname_end])
            self.name(wire[mname_end:rname_end])
            self.buf += wire[rname_end:]
        else:
            self.buf += wire[:fixed]
            self.name(wire[fixed:])
        struct.pack_into("!H", self.buf, length_at, len(self.buf) - length_at - 2)


def _name_end(wire: bytes, offset: int) -> int:
    while wire[offset]:
        offset += wire[offset] + 1
    return offset + 1


def _write_rrset(w: _Writer, entry: Entry) -> int:
    owner, rs = entry
    head = struct.pack("!HHI", rs.rdtype, CLASS_IN, rs.ttl)
    for rdata in rs.rdatas:
        w.name(owner)
        w.buf += head
        w.rdata(rs.rdtype, rdata)
    return len(rs.rdatas)


def render(query: Query, answer: Answer | None, rcode: int, max_size: int) -> bytes:
    """The response to ``query``. ``answer`` is None for error responses (header, question
    and OPT only). Whole RRsets that do not fit in ``max_size`` are left out: in answer or
    authority, or required glue, that sets TC (and an RRset whose RRSIGs do not fit goes
    too); other additional data is just dropped (an address may stay without its RRSIGs,
    RFC 4035 §3.1.1)."""
    return render_fit(query, answer, rcode, max_size)[0]


def render_fit(
    query: Query, answer: Answer | None, rcode: int, max_size: int
) -> tuple[bytes, bool]:
    """:func:`render`, and whether everything fit: when it did, the same bytes answer the
    query under any size limit at least as large as the response."""
    flags = 0x8000 | (query.flags & 0x7910)  # QR; copy opcode, RD and CD
    aa = answer.aa if answer is not None else False
    if aa:
        flags |= 0x0400
    ext_rcode = rcode >> 4
    flags |= rcode & 0xF
    has_question = bool(query.question)
    w = _Writer(b"\x00" * HEADER_LEN)
    if has_question:
        w.buf += query.question
        w.remember_question(query.qname)
    reserve = OPT_RR_LEN if query.edns is not None else 0
    limit = max_size - reserve
    counts = [0, 0, 0]
    truncated = False
    complete = True
    if answer is not None:
        sections = (answer.answer, answer.authority, answer.additional)
        for index, section in enumerate(sections):
            # Where the previous entry began: an RRset is dropped with its RRSIGs.
            last_mark, last_table = 0, w.table
            for position, entry in enumerate(section):
                mark = len(w.buf)
                table = dict(w.table)
                n = _write_rrset(w, entry)
                if len(w.buf) <= limit:
                    counts[index] += n
                    last_mark, last_table = mark, table
                    continue
                complete = False
                if index < 2 or position < answer.glue_required:
                    truncated = True
                    if index < 2 and position and _covers(entry, section[position - 1]):
                        # RFC 4035 §3.1.1: an RRset goes with its RRSIGs or not at all.
                        mark, table = last_mark, last_table
                        counts[index] -= len(section[position - 1][1].rdatas)
                del w.buf[mark:]
                w.table = table
                break
            if truncated:
                break
    if truncated:
        flags |= 0x0200
    additional = counts[2]
    if query.edns is not None:
        w.buf += opt_rr(ext_rcode, query.edns.do)
        additional += 1
    struct.pack_into(
        "!2sHHHHH", w.buf, 0, query.id, flags, int(has_question), counts[0], counts[1], additional
    )
    return bytes(w.buf), complete


def section_after(qname: bytes, entries: Sequence[Entry]) -> tuple[int, bytes]:
    """``entries`` written as they would follow a question for ``qname`` (of any type and
    class): their RR count and bytes, names compressed against the question and each other.
    Equal for every question name of the same length whose suffixes that any of these names
    share are the same (what :mod:`nameserver.serve.quick` keys its templates by)."""
    w = _Writer(b"\x00" * HEADER_LEN)
    w.buf += qname + b"\x00\x00\x00\x00"
    w.remember_question(qname)
    start = len(w.buf)
    count = 0
    for entry in entries:
        count += _write_rrset(w, entry)
    return count, bytes(w.buf[start:])


def _covers(sigs: Entry, covered: Entry) -> bool:
    """True when ``sigs`` is the RRSIG set of the RRset ``covered`` (written just before)."""
    owner, rs = sigs
    return (
        rs.rdtype == RRSIG
        and rs.rdtype != covered[1].rdtype
        and int.from_bytes(rs.rdatas[0][:2], "big") == covered[1].rdtype
        and lower(owner) == lower(covered[0])
    )


def opt_rr(ext_rcode: int, do: bool) -> bytes:
    """Our OPT: advertised UDP size, extended rcode, version 0, the DO bit echoed (RFC 3225)."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return b"\x00" + struct.pack("!HHIH", OPT, ADVERTISED_UDP_SIZE, ttl, 0)


# RFC 6891 §6.2.5 and DNS Flag Day 2020: 1232 avoids IP fragmentation on common paths.
ADVERTISED_UDP_SIZE = 1232


def udp_limit(query: Query, server_max: int = ADVERTISED_UDP_SIZE) -> int:
    """How large a UDP response to ``query`` may be (RFC 6891 §6.2.3 and §6.2.5)."""
    if query.edns is None:
        return 512
    return max(512, min(query.edns.payload, server_max))
