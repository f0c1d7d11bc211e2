"""From a query packet to a response packet, with a cache of whole responses.

A response depends on the served zone versions (the cache is dropped whenever one changes)
and on these parts of the query only: the question name without regard to case (RFC 4343;
the echo keeps the asker's case), QTYPE, QCLASS, the opcode, RD and CD bits (copied back),
whether there was an OPT record, its version and DO bit (RFC 6891 §6.1.3, RFC 3225), for an
ANY question whether it came over TCP (RFC 8482: all of it then), and the size limit, but
only when the response does not fit in it. The ID, EDNS payloads that the response fits in,
EDNS options (none is acted on) and the letter case do not make a new entry: such queries
share one normalised entry, whose bytes are patched with the asker's ID and question.

A query's exact bytes after the ID also lead to its response directly (an alias, a single
dict lookup, the path nearly every query under load takes). Each shared entry admits a few
aliases, so resolvers with different EDNS set-ups all get the fast path while a client that
varies its queries (0x20 case randomisation, payload sizes) cannot multiply the entries.
"""

from __future__ import annotations

import logging
import struct

import dns.rcode
import dns.rdatatype

from nameserver.serve.answer import resolve
from nameserver.serve.cache import ExactKey, ResponseCache, Shared
from nameserver.serve.query import BADVERS, Query, parse_query
from nameserver.serve.quick import Prepared, quick_answer
from nameserver.serve.response import MAX_TCP, render, render_fit, udp_limit
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import lower
from nameserver.zone.zones import ZoneRegistry

log = logging.getLogger(__name__)

REFUSED = int(dns.rcode.REFUSED)
FORMERR = int(dns.rcode.FORMERR)
NOTIMP = int(dns.rcode.NOTIMP)
CLASS_IN = 1
ANY = int(dns.rdatatype.ANY)
_TRANSFER_TYPES = {int(dns.rdatatype.AXFR), int(dns.rdatatype.IXFR)}
_FORMERR_QTYPES = {int(dns.rdatatype.OPT), int(dns.rdatatype.TSIG), int(dns.rdatatype.TKEY)}
_NOTIMP_QTYPES = {int(dns.rdatatype.MAILA), int(dns.rdatatype.MAILB)}
_SPECIAL_QTYPES = frozenset(_TRANSFER_TYPES | _FORMERR_QTYPES | _NOTIMP_QTYPES)

MIB = 1 << 20
# The default budget: a floor that holds an answer for each of ~100k names (a cached answer
# takes 200-500 bytes with its keys), plus room in proportion to the served zones' wire
# size for larger zones, capped so that a huge zone does not double the process's memory.
CACHE_FLOOR = 32 * MIB
CACHE_PER_ZONE_BYTE = 4
CACHE_CEILING = 1024 * MIB
# Exact aliases per shared entry (the first asker's bytes included).
ALIASES = 4

# After the lowercased question name: QTYPE, QCLASS, the copied flag bits, the EDNS
# version and DO bit (-1: no OPT), TCP for ANY, and the size limit (0: the response that
# fit in the limit it was made for, so in any limit at least its size).
_KEY = struct.Struct("!HHHhBH")
# How a response is kept (see Responder._answer).
_AGAIN, _QUICK, _FITS, _LIMITED = 0, 1, 2, 3
_COPIED_FLAGS = 0x7910  # opcode, RD, CD: what a response copies from its query


def default_cache_size(zone_bytes: int) -> int:
    """The default byte budget for zones of ``zone_bytes`` in wire form: see CACHE_FLOOR."""
    return min(CACHE_FLOOR + CACHE_PER_ZONE_BYTE * zone_bytes, CACHE_CEILING)


def zone_wire_size(zone: ZoneSnapshot) -> int:
    """The zone's RRs in uncompressed wire form, in bytes (RFC 1035 §4.1.3)."""
    size = 0
    for node in zone.nodes.values():
        for rs in node.rrsets.values():
            size += (len(node.owner) + 10) * len(rs.rdatas) + sum(map(len, rs.rdatas))
    return size


class Responder:
    """Answers packets from the zones of a :class:`ZoneRegistry`. ``cache_size`` is the
    response cache's budget in bytes (0: no cache); None sizes it to the served zones
    (:func:`default_cache_size`) whenever the set of zones changes."""

    def __init__(self, zones: ZoneRegistry, cache_size: int | None = None) -> None:
        self.zones = zones
        self.cache_size = cache_size
        self.cache = ResponseCache(cache_size if cache_size is not None else CACHE_FLOOR)
        self._wire_sizes: dict[bytes, int] = {}  # by origin, when the zone was first seen
        self._prepared: dict[bytes, Prepared] = {}  # by origin, for the quick answers
        zones.on_change(self.clear_cache)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Forget every cached response (a zone version changed)."""
        self.cache.clear()
        self._prepared = {}
        if self.cache_size is None:
            self._resize()

    def _resize(self) -> None:
        """Size the budget to the served zones when zones came or went (a change inside a
        zone keeps it: measuring a large zone at every change would cost more)."""
        sizes = self._wire_sizes
        origins = self.zones.origins()
        if sizes.keys() == set(origins):
            return
        for origin in origins:
            zone = self.zones.get(origin)
            if origin not in sizes and zone is not None:
                sizes[origin] = zone_wire_size(zone)
        for gone in sizes.keys() - set(origins):
            del sizes[gone]
        total = sum(sizes.values())
        self.cache.budget = default_cache_size(total)
        log.debug(
            "response cache: up to %.1f MiB (%.1f MiB of zone data)",
            self.cache.budget / MIB,
            total / MIB,
        )

    def respond(self, data: bytes, tcp: bool) -> bytes | None:
        """The response to ``data`` (None: send nothing)."""
        cache = self.cache
        exact: ExactKey = (data[2:],) if tcp else data[2:]
        hit = cache.get_exact(exact)
        if hit is not None:
            return data[:2] + hit
        query = parse_query(data)
        if query is None:
            return None
        limit = MAX_TCP if tcp else udp_limit(query)
        error = query.error
        if error is not None and error != BADVERS:
            # Header and question at most, plus our OPT only when theirs was: never larger
            # than the packet that caused it. Not kept: odd input is not worth memory.
            return render(query, None, error, limit)
        edns = query.edns
        qkey = lower(query.qname)
        key = qkey + _KEY.pack(
            query.qtype,
            query.qclass,
            query.flags & _COPIED_FLAGS,
            -1 if edns is None else edns.version << 1 | edns.do,
            tcp and query.qtype == ANY,
            0,
        )
        limited = key[:-2] + limit.to_bytes(2, "big")
        entry = cache.get_shared(key)
        if entry is None or len(entry.response) + 2 > limit:
            entry = cache.get_shared(limited)  # one that did not fit, made for this limit
        if entry is not None and (entry.qname is None or entry.qname == query.qname):
            tail = entry.response
            question = query.question
            end = 10 + len(question)
            if tail[10:end] != question:
                tail = tail[:10] + question + tail[end:]  # the asker's case
            if entry.aliases:
                entry.aliases -= 1
                cache.put_exact(exact, tail)
            return query.id + tail
        response, keep, copies_qname = self._answer(query, qkey, tcp, limit)
        if keep <= _QUICK and not cache.asked_before(key):
            if keep == _QUICK:
                cache.put_exact(exact, response[2:])
            return response
        tail = response[2:]
        # This asker's alias is one of ALIASES, and so is the first asker's for a _QUICK one.
        aliases = ALIASES - 2 if keep == _QUICK else ALIASES - 1
        entry = Shared(tail, query.qname if copies_qname else None, aliases)
        cache.put(exact, limited if keep == _LIMITED else key, entry)
        return response

    def _answer(self, query: Query, qkey: bytes, tcp: bool, limit: int) -> tuple[bytes, int, bool]:
        """The response; how to keep it (below); whether it copies the query name's case
        outside the question.

        _FITS: kept for every limit at least its size; _LIMITED: kept for ``limit`` only.
        Answers the general way are kept at once (there are only so many in a zone).

        _QUICK, a quick answer from the zone: the asker's exact bytes are kept at once (the
        one-lookup path for the next identical query), the normalised entry that serves
        other spellings and EDNS set-ups when the question comes again in another form.
        Half the memory for answers asked in one form only, the common case.

        _AGAIN: refusals and errors (header, question and OPT) and NXDOMAIN from a prepared
        template cost little to make again, and a flood of random names would push the
        other answers out of the cache with them: kept only when asked again, as resolvers
        do with the names that really are missing (RFC 2308 §5), and a random name never
        is."""
        if query.error is not None:  # BADVERS (RFC 6891 §6.1.3)
            return render(query, None, query.error, limit), _AGAIN, False
        if query.qclass != CLASS_IN or query.qtype in _SPECIAL_QTYPES:
            rcode = self._refusal(query)
            return render(query, None, rcode, limit), _AGAIN, False
        zone = self.zones.find(qkey, query.qtype)
        if zone is None:
            return render(query, None, REFUSED, limit), _AGAIN, False
        dnssec = query.edns is not None and query.edns.do
        prep = self._prepared.get(zone.origin)
        if prep is None or prep.zone is not zone:
            prep = self._prepared[zone.origin] = Prepared(zone)
        response = quick_answer(prep, query, qkey, dnssec, limit, self.cache)
        if response is not None:
            # A quick answer is data or an NXDOMAIN from a template.
            return response, _AGAIN if response[3] & 0xF else _QUICK, False
        answer = resolve(zone, query.qname, query.qtype, tcp, dnssec)
        response, complete = render_fit(query, answer, answer.rcode, limit)
        return response, _FITS if complete else _LIMITED, answer.copies_qname

    def _refusal(self, query: Query) -> int:
        if query.qclass != CLASS_IN:
            return REFUSED
        if query.qtype in _TRANSFER_TYPES:
            return REFUSED  # zone transfers are not offered yet
        if query.qtype in _FORMERR_QTYPES:
            return FORMERR
        return NOTIMP
