"""Asking the parent's nameservers which DS records they serve for a zone (``ds-check =
auto``), like Knot DNS's KSK submission check.

Each nameserver of the parent is asked for ``ORIGIN DS`` directly (RD=0, UDP, TCP when the
answer is truncated, with a timeout) and must answer authoritatively.  The DS records it
serves are matched to our keys by recomputing each key's DS from its DNSKEY (digest types
1, 2 and 4), so a DS counts only when it points at exactly that key.  A key's DS is
*present* when every server serves it and *absent* when none does; a server that cannot
be asked (timeout, REFUSED, SERVFAIL, an answer without AA, ...) makes every key
*unknown*: a rollover must never move on partial information.

The servers are the policy's ``parent-servers``, or the NS set of the zone that holds the
DS (``dns.resolver.zone_for_name(origin.parent())``) and their addresses, found with the
system resolver.  One exception to "every server": a discovered address this host has no
route to (typically IPv6 on a host without it) is skipped when another address of the
same nameserver answered.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from dns.dnssectypes import DSDigest
from dns.rdtypes.ANY.DS import DS

from nameserver.errors import NameserverError
from settings.grammar import DNS_PORT
from signer.policy import format_server

__all__ = [
    "DEFAULT_TIMEOUT",
    "DsCheckError",
    "DsCheckResult",
    "KeyPresence",
    "ParentKey",
    "ParentServer",
    "Presence",
    "ServerAnswer",
    "ask_server",
    "check_parent_ds",
    "discover_parent_servers",
]

DEFAULT_TIMEOUT = 3.0  # seconds per server and transport
_EDNS_PAYLOAD = 1232  # DNS flag day 2020: no IP fragmentation
_MAX_PARALLEL = 8
_MATCHED_DIGESTS = (1, 2, 4)  # SHA-1 still sits at some parents; matching it is harmless
_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT}


class DsCheckError(NameserverError):
    """The parent's nameservers cannot be found, or one of them cannot be asked or gave
    an answer that cannot be trusted (the message names the server and what to do)."""


@dataclasses.dataclass(frozen=True)
class ParentServer:
    """One address of a parent nameserver; ``name`` is the NS name it was found under
    (None for a server from ``parent-servers``)."""

    address: str
    port: int = DNS_PORT
    name: dns.name.Name | None = None

    def __str__(self) -> str:
        where = format_server(self.address, self.port)
        return f"{self.name} ({where})" if self.name is not None else where


@dataclasses.dataclass(frozen=True)
class ParentKey:
    """One of our SEP keys to look for: its id, tag, algorithm and DNSKEY rdata."""

    key_id: str
    key_tag: int
    algorithm: int
    dnskey: dns.rdata.Rdata

    def matches(self, origin: dns.name.Name, ds: dns.rdata.Rdata) -> bool:
        """True when ``ds`` (a DS rdata at ``origin``) is this key's DS."""
        if not isinstance(ds, DS) or (ds.key_tag, ds.algorithm) != (self.key_tag, self.algorithm):
            return False
        if ds.digest_type not in _MATCHED_DIGESTS:
            return False
        # validating=True: a SHA-1 DS may be compared, only not made (dnspython policy).
        ours = dns.dnssec.make_ds(origin, self.dnskey, DSDigest(ds.digest_type), validating=True)
        return bool(ours == ds)


class Presence(enum.Enum):
    """What the parent's nameservers, together, serve for one key."""

    PRESENT = "present"  # every server serves its DS
    ABSENT = "absent"  # no server serves it
    PARTIAL = "partial"  # some do, some do not (the parent is still propagating)
    UNKNOWN = "unknown"  # a server could not be asked: nothing can be concluded


@dataclasses.dataclass(frozen=True)
class ServerAnswer:
    """What one server said: the DS records it serves (rdata text) and which of our
    keys they match, or the error that kept it from answering."""

    server: ParentServer
    ds: tuple[str, ...] = ()
    keys: frozenset[str] = frozenset()
    unmatched: tuple[str, ...] = ()  # DS records that match none of our keys
    error: DsCheckError | None = None
    no_route: bool = False  # this host has no route to the address (e.g. no IPv6)
    tcp: bool = False  # the answer came over TCP (UDP was truncated)

    @property
    def ok(self) -> bool:
        """True when the server answered authoritatively."""
        return self.error is None


@dataclasses.dataclass(frozen=True)
class KeyPresence:
    """One key's DS at the parent: the verdict and which servers serve it or not."""

    key: ParentKey
    presence: Presence
    served_by: tuple[str, ...]
    missing_at: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class DsCheckResult:
    """One check of the parent: every server's answer, and per key the verdict.

    ``parent`` is the zone found to hold the DS (None when the servers were given);
    ``problems`` are discovery failures (an NS name without addresses, ...) and, with
    the failed servers, keep every verdict at UNKNOWN.
    """

    origin: dns.name.Name
    parent: dns.name.Name | None
    answers: tuple[ServerAnswer, ...]
    keys: tuple[KeyPresence, ...]
    problems: tuple[DsCheckError, ...] = ()

    @property
    def errors(self) -> tuple[DsCheckError, ...]:
        """Every failure that keeps the check from concluding."""
        blocking = tuple(a.error for a in self.answers if a.error is not None and _blocks(a, self))
        return self.problems + blocking

    @property
    def complete(self) -> bool:
        """True when every server that counts answered, so the verdicts are known."""
        return not self.errors and any(a.ok for a in self.answers)

    def presence(self, key_id: str) -> Presence:
        """The verdict for ``key_id`` (UNKNOWN for a key that was not looked for)."""
        for item in self.keys:
            if item.key.key_id == key_id:
                return item.presence
        return Presence.UNKNOWN


def _blocks(answer: ServerAnswer, result: DsCheckResult) -> bool:
    """A failed answer counts, unless it is an unroutable address of a nameserver whose
    other address answered: the same server, reached another way."""
    if answer.ok:
        return False
    if not answer.no_route or answer.server.name is None:
        return True
    return not any(a.ok and a.server.name == answer.server.name for a in result.answers)


# --- finding the servers ------------------------------------------------------------------


def discover_parent_servers(
    origin: dns.name.Name,
    resolver: dns.resolver.Resolver | None = None,
    port: int = DNS_PORT,
) -> tuple[dns.name.Name, tuple[ParentServer, ...], tuple[DsCheckError, ...]]:
    """The zone that holds ``origin``'s DS, the addresses of its nameservers, and the
    nameservers that have no address (problems: they cannot be asked).

    ``resolver`` defaults to the system resolver (/etc/resolv.conf); ``port`` is the
    port to ask the servers on (53; tests use another).  Raises DsCheckError when the
    parent zone or its NS set cannot be found.
    """
    if origin == dns.name.root:
        raise DsCheckError("the root zone has no parent to hold a DS; use ds-check = manual")
    hint = "set parent-servers in the zone's DNSSEC policy, or check the system resolver"
    try:
        # The system resolver: /etc/resolv.conf (a missing file is a DNSException too).
        resolver = resolver if resolver is not None else dns.resolver.Resolver()
        parent = dns.resolver.zone_for_name(origin.parent(), resolver=resolver)
        ns_answer = resolver.resolve(parent, dns.rdatatype.NS)
    except dns.exception.DNSException as e:
        raise DsCheckError(
            f"cannot find the nameservers of the zone above {origin} with the system "
            f"resolver ({e}); {hint}"
        ) from e
    assert ns_answer.rrset is not None
    names = sorted({rd.target for rd in ns_answer.rrset})
    servers: list[ParentServer] = []
    problems: list[DsCheckError] = []
    for name in names:
        found, failures = _addresses(resolver, name)
        servers.extend(ParentServer(address, port, name) for address in found)
        if not found:
            why = "; ".join(failures) or "it has no A or AAAA record"
            problems.append(
                DsCheckError(f"nameserver {name} of {parent} has no usable address ({why})")
            )
    return parent, tuple(servers), tuple(problems)


def _addresses(resolver: dns.resolver.Resolver, name: dns.name.Name) -> tuple[list[str], list[str]]:
    found: list[str] = []
    failures: list[str] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(name, rdtype)
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.DNSException as e:
            failures.append(f"{dns.rdatatype.to_text(rdtype)}: {e}")
            continue
        assert answer.rrset is not None
        found.extend(sorted(rd.address for rd in answer.rrset))
    return found, failures


# --- asking one server --------------------------------------------------------------------


def ask_server(
    origin: dns.name.Name,
    server: ParentServer,
    keys: Sequence[ParentKey],
    timeout: float = DEFAULT_TIMEOUT,
) -> ServerAnswer:
    """Ask ``server`` for ``origin``'s DS RRset and match it to ``keys``; never raises
    for the server's failures: they come back in :attr:`ServerAnswer.error`."""
    # flags=0: RD off, the server answers from its own zones, never from recursion.
    query = dns.message.make_query(
        origin, dns.rdatatype.DS, use_edns=0, payload=_EDNS_PAYLOAD, flags=0
    )
    try:
        response, tcp = dns.query.udp_with_fallback(
            query, server.address, timeout=timeout, port=server.port
        )
    except dns.exception.Timeout:
        return _failed(server, f"no answer within {timeout:g} s")
    except OSError as e:
        no_route = e.errno in _NO_ROUTE
        reason = f"cannot be reached ({e.strerror or e})"
        return dataclasses.replace(_failed(server, reason), no_route=no_route)
    except dns.exception.DNSException as e:
        return _failed(server, f"sent an answer that cannot be read ({e})")
    try:
        records = _ds_records(origin, server, response)
    except DsCheckError as e:
        return ServerAnswer(server, error=e, tcp=tcp)
    matched: set[str] = set()
    unmatched: list[str] = []
    for ds in records:
        owners = {k.key_id for k in keys if k.matches(origin, ds)}
        matched |= owners
        if not owners:
            unmatched.append(ds.to_text())
    return ServerAnswer(
        server,
        ds=tuple(ds.to_text() for ds in records),
        keys=frozenset(matched),
        unmatched=tuple(unmatched),
        tcp=tcp,
    )


def _failed(server: ParentServer, reason: str) -> ServerAnswer:
    if server.name is None:
        advice = "check its address in parent-servers (DNSSEC policy) and that it is up"
    else:
        advice = "the parent's nameserver is down or unreachable from here; the check is retried"
    return ServerAnswer(server, error=DsCheckError(f"{server}: {reason}; {advice}"))


def _ds_records(
    origin: dns.name.Name, server: ParentServer, response: dns.message.Message
) -> list[dns.rdata.Rdata]:
    """The DS rdatas of an authoritative answer; DsCheckError for any other answer."""
    rcode = response.rcode()
    if rcode == dns.rcode.REFUSED:
        raise DsCheckError(
            f"{server}: refused the query: it does not serve the zone above {origin}; "
            "ask the parent's nameservers (fix parent-servers, or leave it empty to use "
            "the parent zone's NS set)"
        )
    if rcode == dns.rcode.NXDOMAIN:
        raise DsCheckError(
            f"{server}: says {origin} does not exist (NXDOMAIN): the parent has no "
            "delegation for it yet; register the zone's nameservers at the parent first"
        )
    if rcode != dns.rcode.NOERROR:
        raise DsCheckError(
            f"{server}: answered {dns.rcode.to_text(rcode)}; it cannot serve the zone "
            f"above {origin} now: try again later"
        )
    if not response.flags & dns.flags.AA:
        raise DsCheckError(
            f"{server}: answered without the AA flag, so it is not authoritative for the "
            f"zone above {origin} (a lame server); ask the parent's own nameservers"
        )
    rrset = response.get_rrset(response.answer, origin, dns.rdataclass.IN, dns.rdatatype.DS)
    if rrset is not None:
        return sorted(rrset, key=lambda rd: rd.to_text())
    for soa in response.authority:
        if soa.rdtype == dns.rdatatype.SOA and soa.name == origin:
            # RFC 4035 §3.1.4.1: DS is answered from the parent side; this is the child.
            raise DsCheckError(
                f"{server}: answered from the zone {origin} itself, not from its parent: "
                "it serves the child zone; ask the parent's nameservers"
            )
    return []


# --- the whole check ------------------------------------------------------------------------


def check_parent_ds(
    origin: dns.name.Name,
    keys: Sequence[ParentKey],
    servers: Sequence[ParentServer] | None = None,
    *,
    resolver: dns.resolver.Resolver | None = None,
    port: int = DNS_PORT,
    timeout: float = DEFAULT_TIMEOUT,
    ask: Callable[[dns.name.Name, ParentServer, Sequence[ParentKey], float], ServerAnswer] = (
        ask_server
    ),
) -> DsCheckResult:
    """Ask every parent nameserver (``servers``, or those of the parent zone found with
    ``resolver``, asked on ``port``) for ``origin``'s DS and say, per key, whether the
    parent serves it.  ``ask`` asks one server (:func:`ask_server`; tests replace it).

    Raises DsCheckError when there is no server to ask; a server's own failure is in
    the result (:attr:`DsCheckResult.errors`) and makes the verdicts UNKNOWN.
    """
    parent: dns.name.Name | None = None
    problems: tuple[DsCheckError, ...] = ()
    if servers is None:
        parent, found, problems = discover_parent_servers(origin, resolver, port)
        servers = found
    if not servers and not problems:
        raise DsCheckError(
            f"no parent nameserver to ask for the DS of {origin}; set parent-servers in "
            "the zone's DNSSEC policy"
        )
    with ThreadPoolExecutor(max_workers=max(1, min(_MAX_PARALLEL, len(servers)))) as pool:
        answers = tuple(pool.map(lambda s: ask(origin, s, keys, timeout), servers))
    result = DsCheckResult(origin, parent, answers, (), problems)
    return dataclasses.replace(result, keys=tuple(_verdict(k, result) for k in keys))


def _verdict(key: ParentKey, result: DsCheckResult) -> KeyPresence:
    counted = [a for a in result.answers if a.ok]
    served = tuple(str(a.server) for a in counted if key.key_id in a.keys)
    missing = tuple(str(a.server) for a in counted if key.key_id not in a.keys)
    if not result.complete:
        presence = Presence.UNKNOWN
    elif not missing:
        presence = Presence.PRESENT
    elif not served:
        presence = Presence.ABSENT
    else:
        presence = Presence.PARTIAL
    return KeyPresence(key, presence, served, missing)
