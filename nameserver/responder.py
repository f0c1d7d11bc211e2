"""From a query packet to a response packet, with a cache of whole responses.

Responses depend only on the query's bytes after the ID (flags, question in its case, EDNS)
and on the served zone versions, so they are cached by those bytes and the cache is dropped
whenever a zone version changes; a hit only patches the ID.
"""

from __future__ import annotations

import dns.rcode
import dns.rdatatype

from nameserver.answer import resolve
from nameserver.query import BADVERS, Query, parse_query
from nameserver.response import MAX_TCP, render, udp_limit
from nameserver.wirename import lower
from nameserver.zones import ZoneRegistry

REFUSED = int(dns.rcode.REFUSED)
FORMERR = int(dns.rcode.FORMERR)
NOTIMP = int(dns.rcode.NOTIMP)
CLASS_IN = 1
_TRANSFER_TYPES = {int(dns.rdatatype.AXFR), int(dns.rdatatype.IXFR)}
_FORMERR_QTYPES = {int(dns.rdatatype.OPT), int(dns.rdatatype.TSIG), int(dns.rdatatype.TKEY)}
_NOTIMP_QTYPES = {int(dns.rdatatype.MAILA), int(dns.rdatatype.MAILB)}

DEFAULT_CACHE_ENTRIES = 500_000


class Responder:
    """Answers packets from the zones of a :class:`ZoneRegistry`."""

    def __init__(self, zones: ZoneRegistry, cache_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self.zones = zones
        self.cache_entries = cache_entries
        self.udp_cache: dict[bytes, bytes] = {}
        self.tcp_cache: dict[bytes, bytes] = {}
        zones.on_change(self.clear_cache)

    def clear_cache(self) -> None:
        """Forget every cached response (a zone version changed)."""
        self.udp_cache = {}
        self.tcp_cache = {}

    def respond(self, data: bytes, tcp: bool) -> bytes | None:
        """The response to ``data`` (None: send nothing)."""
        cache = self.tcp_cache if tcp else self.udp_cache
        hit = cache.get(data[2:])
        if hit is not None:
            return data[:2] + hit
        query = parse_query(data)
        if query is None:
            return None
        response, cacheable = self._answer(query, tcp)
        if cacheable:
            if len(cache) >= self.cache_entries:
                cache.clear()  # bounded memory under random-name floods
            cache[data[2:]] = response[2:]
        return response

    def _answer(self, query: Query, tcp: bool) -> tuple[bytes, bool]:
        """The response, and whether it may be cached (errors on odd input are not)."""
        limit = MAX_TCP if tcp else udp_limit(query)
        if query.error is not None:
            # Header and question at most, plus our OPT only when theirs was: never larger
            # than the packet that caused it.
            return render(query, None, query.error, limit), query.error == BADVERS
        rcode = self._refusal(query)
        if rcode is not None:
            return render(query, None, rcode, limit), True
        zone = self.zones.find(lower(query.qname), query.qtype)
        if zone is None:
            return render(query, None, REFUSED, limit), True
        dnssec = query.edns is not None and query.edns.do
        answer = resolve(zone, query.qname, query.qtype, tcp, dnssec)
        return render(query, answer, answer.rcode, limit), True

    def _refusal(self, query: Query) -> int | None:
        if query.qclass != CLASS_IN:
            return REFUSED
        if query.qtype in _TRANSFER_TYPES:
            return REFUSED  # zone transfers are not offered yet
        if query.qtype in _FORMERR_QTYPES:
            return FORMERR
        if query.qtype in _NOTIMP_QTYPES:
            return NOTIMP
        return None
