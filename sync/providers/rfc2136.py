"""RFC 2136 UPDATE target: any DNS server that accepts TSIG-signed UPDATE and AXFR for a zone
it is primary for (Knot, BIND, PowerDNS with dnsupdate, Windows, appliances).

The zone is read by AXFR and changed by UPDATE messages over TCP, each holding at most
``batch-size`` RRsets and fitting in 64 KiB. RFC 2136 cannot create a zone: it must exist at
the server first.

Serial (checked with Knot 3.2 and BIND 9.18): both servers add 1 to the serial after every
UPDATE that does not raise it itself, and silently ignore an SOA whose serial is not greater
than the one they hold (RFC 2136 §3.4.2.2, §3.6; they also ignore any other SOA field change
that comes without a higher serial). So our SOA goes in the last message, and a plan needing
n messages needs at least n serial steps between the target's serial and ours; when that is
not so the changes are packed into as few 64 KiB messages as possible, and if that is still
too many nothing is sent and a :class:`TargetRejectedError` explains it.

DNSSEC (``dnssec = "presigned"``, the default, pushes our DNSKEY/RRSIG/NSEC/CDS... as data):

* Knot without ``dnssec-signing`` takes DNSKEY, RRSIG, NSEC, CDS, CDNSKEY and NSEC3PARAM by
  UPDATE and serves them unchanged; its NXDOMAIN answers carry our NSEC and RRSIG and the
  transferred zone passes ``ldns-verify-zone``. BUT Knot applies UPDATE's CNAME rule to
  RRSIG: the RRSIGs (and, when sent with the CNAME, the NSEC) of a CNAME owner are silently
  dropped, so a presigned zone with CNAMEs is bogus there. Knot 3.2.6 crashed (segfault)
  when an NSEC3 record was added by UPDATE to a zone holding an NSEC3PARAM: NSEC3-signed zones are
  untested and risky there.
* BIND 9.18 refuses presigned data by UPDATE whatever ``allow-update``/``update-policy`` say:
  a DNSKEY fails with SERVFAIL ("found no active private keys, unable to generate any
  signatures"), RRSIG outside the apex, NSEC and NSEC3 are REFUSED ("explicit NSEC updates
  are not allowed in secure zones"), CDS/CDNSKEY not matching a DNSKEY it holds are REFUSED,
  and an NSEC3PARAM is taken as an order to build its own NSEC3 chain. Use
  ``dnssec = "none"`` (unsigned data only) for BIND, or serve signed zones from BIND as a
  secondary of the primary instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.serial
import dns.tsig
import dns.update
import dns.xfr
import dns.zone

from sync.axfr import axfr
from sync.errors import (
    SyncConfigError,
    TargetRejectedError,
    TargetUnavailableError,
)
from sync.model import DNSSEC_TYPES, RRset
from sync.plan import Action, Change, Plan
from sync.providers.base import Capabilities, DnssecMode, Held, RecordTarget
from sync.ratelimit import RateLimiter
from sync.settings import (
    Address,
    TargetContext,
    TsigKey,
    check_fields,
    parse_address,
    parse_count,
    parse_names,
    parse_rate,
    parse_timeout,
)
from sync.xfr import TransferError

MAX_MESSAGE = 65535
TSIG_ROOM = 512  # bytes kept free for the TSIG record added when the message is signed
DEFAULT_BATCH = 500
DEFAULT_TIMEOUT = 10.0
ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
# Without DNSSEC data, every type but DNSSEC's (DS stays: it is delegation data).
UNSIGNED_TYPES = frozenset(t for t in dns.rdatatype.RdataType if t not in DNSSEC_TYPES)
OWN_FIELDS = (
    "server",
    "key",
    "transfer-key",
    "batch-size",
    "rate-limit",
    "timeout",
    "nameservers",
    "dnssec",
)

Render = Callable[[dns.update.UpdateMessage], None]


@dataclass(frozen=True)
class _Op:
    """One RRset's worth of UPDATE operations, rendered into a message by ``render``."""

    describe: str
    render: Render


class Rfc2136Target(RecordTarget[None]):
    """A zone at a DNS server reached by AXFR (read) and TSIG-signed UPDATE (apply)."""

    def __init__(
        self,
        name: str,
        *,
        server: Address,
        key: TsigKey,
        transfer_key: TsigKey | None = None,
        batch_size: int = DEFAULT_BATCH,
        rate_limit: float = 0.0,
        timeout: float = DEFAULT_TIMEOUT,
        nameservers: Sequence[dns.name.Name] = (),
        dnssec: DnssecMode = DnssecMode.PRESIGNED,
        probe_zone: dns.name.Name | None = None,
    ) -> None:
        super().__init__(
            name,
            Capabilities(
                dnssec=dnssec,
                record_types=None if dnssec == DnssecMode.PRESIGNED else UNSIGNED_TYPES,
                batch_size=batch_size,
                rate_limit=rate_limit,
            ),
        )
        self.server = server
        self.key = key
        self.transfer_key = transfer_key if transfer_key is not None else key
        self.timeout = timeout
        self.configured_nameservers = list(nameservers)
        # Knot checks TSIG only on queries for zones it serves: probe one of ours.
        self.probe_zone = probe_zone if probe_zone is not None else dns.name.root
        self._limiter = RateLimiter(rate_limit)

    # -- Target ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Send a TSIG-signed SOA query for the probe zone (the first of the target's
        ``zones``) with each key: no answer means a wrong ``server``, a TSIG error a wrong
        ``key`` or ``transfer-key``. Without a probe zone a wrong key shows only in BIND
        (Knot ignores TSIG on queries for zones it does not serve)."""
        keys = [("key", self.key)]
        if self.transfer_key != self.key:
            keys.append(("transfer-key", self.transfer_key))
        for field_name, key in keys:
            query = dns.message.make_query(self.probe_zone, dns.rdatatype.SOA, flags=0)
            query.use_tsig(key.dns_key, fudge=key.fudge)
            try:
                await dns.asyncquery.tcp(
                    query, self.server.host, port=self.server.port, timeout=self.timeout
                )
            except dns.tsig.PeerError as exc:
                raise SyncConfigError(
                    f"target.{self.name}.{field_name}",
                    f"the server {self.server} rejected TSIG key {key.name} ({exc}); check the "
                    "key name, algorithm and secret against the server's configuration",
                ) from None
            except (dns.exception.Timeout, OSError, EOFError) as exc:
                raise SyncConfigError(
                    f"target.{self.name}.server",
                    f"{self.server} is unreachable over TCP ({_reason(exc)})",
                ) from None
            except dns.exception.DNSException:
                pass  # an unsigned error answer: the server is there, TSIG is judged later

    def dns_address(self) -> Address | None:
        return self.server

    async def nameservers(self, zone: dns.name.Name) -> list[dns.name.Name]:
        """The configured ``nameservers``, else the apex NS the server holds."""
        if self.configured_nameservers:
            return list(self.configured_nameservers)
        query = dns.message.make_query(zone, dns.rdatatype.NS, flags=0)
        response = await self._query(query, "NS query")
        found = response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.NS)
        return sorted(_ns_target(r) for r in found) if found is not None else []

    async def read(self, zone: dns.name.Name) -> Held[None] | None:
        """AXFR the zone; None when the server refuses both the transfer and an SOA query
        for it (it does not serve the zone at all). DNS needs no handles: no state."""
        k = self.transfer_key
        try:
            data = await asyncio.to_thread(
                axfr, self.server, zone, k, self.timeout, self.timeout * 6
            )
            return Held(data, None)
        except TransferError as exc:
            refused = exc.rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED)
            if refused and not await self._serves(zone):
                return None
            hint = ": allow AXFR for that key at the server" if refused else ""
            raise TargetRejectedError(
                self.name, f"AXFR of {zone} from {self.server} with TSIG key {k.name}: {exc}{hint}"
            ) from None
        except (TimeoutError, OSError) as exc:
            raise TargetUnavailableError(
                self.name, f"AXFR of {zone} from {self.server} failed: {_reason(exc)}"
            ) from None

    async def apply(self, plan: Plan, state: None) -> Held[None] | None:
        """Send the plan as UPDATE messages, our SOA last; raise on the first failure."""
        if plan.create_zone:
            raise TargetRejectedError(
                self.name,
                f"zone {plan.zone} does not exist at the server {self.server}; create it "
                "there first (RFC 2136 UPDATE cannot create zones)",
            )
        ops, soa = _operations(plan)
        if not ops and soa is None:
            return None
        batches = self._batches(plan, ops, self.capabilities.batch_size)
        steps = _serial_steps(plan, self.name)
        if soa is not None and steps is not None and len(batches) > steps:
            # Each message but the last bumps the server's serial by one: pack them tighter.
            batches = self._batches(plan, ops, len(ops))
            if len(batches) > steps:
                old = _old_serial(plan)
                raise TargetRejectedError(
                    self.name,
                    f"{plan.zone} needs {len(batches)} UPDATE messages but our serial "
                    f"{plan.serial} is only {steps} above the target's {old}; the server "
                    "raises its serial after each message and would then ignore ours. Raise "
                    "the zone's serial further and sync again",
                )
        for index, batch in enumerate(batches, 1):
            await self._send(plan.zone, batch, index, len(batches))
        if soa is not None:
            served = await self._served_serial(plan.zone)
            if served != plan.serial:
                raise TargetRejectedError(
                    self.name,
                    f"the server {self.server} serves {plan.zone} at serial {served} after the "
                    f"update, not ours {plan.serial}: it ignored our SOA",
                )
        return None if plan.desired is None else Held(plan.desired, None)

    # -- messages --------------------------------------------------------------------------

    def _message(self, zone: dns.name.Name, ops: Sequence[_Op]) -> dns.update.UpdateMessage:
        message = dns.update.UpdateMessage(zone)
        # The key's fudge: the window the receiver is told to allow (RFC 8945 §5.2.3).
        message.use_tsig(self.key.dns_key, fudge=self.key.fudge)
        for op in ops:
            op.render(message)
        return message

    def _batches(self, plan: Plan, ops: Sequence[_Op], size: int) -> list[list[_Op]]:
        """``ops`` in order, at most ``size`` per message, each message under 64 KiB."""
        out: list[list[_Op]] = []
        for start in range(0, len(ops), max(size, 1)):
            out.extend(self._fit(plan.zone, list(ops[start : start + size])))
        return out

    def _fit(self, zone: dns.name.Name, ops: list[_Op]) -> list[list[_Op]]:
        try:
            if len(self._message(zone, ops).to_wire()) <= MAX_MESSAGE - TSIG_ROOM:
                return [ops]
        except dns.exception.TooBig:
            pass
        if len(ops) == 1:
            raise TargetRejectedError(
                self.name, f"{ops[0].describe} does not fit in one 64 KiB UPDATE message"
            )
        half = len(ops) // 2
        return self._fit(zone, ops[:half]) + self._fit(zone, ops[half:])

    async def _send(self, zone: dns.name.Name, ops: Sequence[_Op], index: int, total: int) -> None:
        what = f"UPDATE message {index} of {total} for {zone}"
        response = await self._query(self._message(zone, ops), what)
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        detail = f"{what} ({len(ops)} RRsets, first {ops[0].describe}): {text}"
        if rcode == dns.rcode.SERVFAIL:
            raise TargetUnavailableError(self.name, f"{self.server} failed {detail}")
        raise TargetRejectedError(self.name, f"{self.server} rejected {detail}")

    async def _query(self, message: dns.message.Message, what: str) -> dns.message.Message:
        """One TCP exchange, paced by ``rate-limit``; transport failures are
        :class:`TargetUnavailableError`, TSIG failures :class:`TargetRejectedError`."""
        await self._limiter.acquire()
        try:
            return await dns.asyncquery.tcp(
                message, self.server.host, port=self.server.port, timeout=self.timeout
            )
        except dns.tsig.PeerError as exc:
            raise TargetRejectedError(
                self.name, f"{self.server} rejected TSIG key {self.key.name} for {what}: {exc}"
            ) from None
        except (dns.exception.Timeout, TimeoutError, OSError, EOFError) as exc:
            raise TargetUnavailableError(
                self.name, f"{what} to {self.server} failed: {_reason(exc)}"
            ) from None
        except dns.exception.DNSException as exc:
            # Typically an unsigned error answer (NOTAUTH for a zone the server lacks).
            raise TargetRejectedError(
                self.name, f"{self.server} gave an unusable answer to {what}: {exc}"
            ) from None

    async def _serves(self, zone: dns.name.Name) -> bool:
        """True when the server answers an SOA query for ``zone`` authoritatively."""
        query = dns.message.make_query(zone, dns.rdatatype.SOA, flags=0)
        try:
            response = await self._query(query, "SOA query")
        except TargetRejectedError:
            return False
        return bool(response.flags & dns.flags.AA) and bool(
            response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        )

    async def _served_serial(self, zone: dns.name.Name) -> int | None:
        query = dns.message.make_query(zone, dns.rdatatype.SOA, flags=0)
        response = await self._query(query, "SOA query")
        found = response.get_rrset(response.answer, zone, dns.rdataclass.IN, dns.rdatatype.SOA)
        if found is None:
            return None
        soa = found[0]
        assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
        return int(soa.serial)


# -- rendering a plan ----------------------------------------------------------------------


def _operations(plan: Plan) -> tuple[list[_Op], _Op | None]:
    """The plan's changes as UPDATE operations in a server-safe order, the SOA last:

    1. deletions (except addresses of name servers: BIND refuses an update leaving an
       in-zone NS without an address);
    2. new and replaced non-DNSSEC data, CNAMEs first (a server ignores a CNAME added to a
       name holding other data), then addresses (so NS targets have them before the NS);
    3. the apex NS (new names added before old ones go: deleting all of them is ignored);
    4. deferred deletions of name server addresses;
    5. DNSSEC data (an owner's signatures and NSEC after the data they cover);
    6. our SOA, alone at the end, so that the serial is ours once everything is in.
    """
    ns_hosts = _ns_hosts(plan)
    deletes: list[_Op] = []
    deferred: list[_Op] = []
    data: list[tuple[int, _Op]] = []
    dnssec: list[_Op] = []
    apex_ns: list[_Op] = []
    soa: _Op | None = None
    for change in plan.changes:
        name, rdtype = change.key
        if rdtype == dns.rdatatype.SOA:
            if change.new is not None and name == plan.zone:
                soa = _Op(change.describe(plan.zone), _add_rrset(change.new))
            continue  # never delete the apex SOA
        if name == plan.zone and rdtype == dns.rdatatype.NS:
            apex_ns.append(_Op(change.describe(plan.zone), _replace_apex_ns(change)))
            continue
        op = _Op(change.describe(plan.zone), _render(change))
        if change.action == Action.DELETE:
            (deferred if rdtype in ADDRESS_TYPES and name in ns_hosts else deletes).append(op)
        elif rdtype in DNSSEC_TYPES:
            dnssec.append(op)
        else:
            rank = 0 if rdtype == dns.rdatatype.CNAME else 1 if rdtype in ADDRESS_TYPES else 2
            data.append((rank, op))
    data.sort(key=lambda item: item[0])  # stable: plan order within a rank
    ops = [*deletes, *(op for _, op in data), *apex_ns, *deferred, *dnssec]
    if soa is not None:
        ops.append(soa)
    return ops, soa


def _ns_hosts(plan: Plan) -> set[dns.name.Name]:
    """Every name an NS record names, before or after the plan."""
    hosts: set[dns.name.Name] = set()
    for change in plan.changes:
        for rrset in (change.old, change.new):
            if rrset is not None and rrset.rdtype == dns.rdatatype.NS:
                hosts.update(_ns_target(r) for r in rrset.rdatas)
    if plan.desired is not None:
        for rrset in plan.desired:
            if rrset.rdtype == dns.rdatatype.NS:
                hosts.update(_ns_target(r) for r in rrset.rdatas)
    return hosts


def _ns_target(rdata: dns.rdata.Rdata) -> dns.name.Name:
    target = getattr(rdata, "target", None)
    assert isinstance(target, dns.name.Name)
    return target


def _render(change: Change) -> Render:
    def render(message: dns.update.UpdateMessage) -> None:
        if change.action != Action.CREATE:
            message.delete(change.name, change.rdtype)  # the whole RRset (RRSIG: every one)
        if change.new is not None:
            _add_rrset(change.new)(message)

    return render


def _add_rrset(rrset: RRset) -> Render:
    def render(message: dns.update.UpdateMessage) -> None:
        # dnspython keeps one RRset per covered type: add RRSIGs group by group.
        groups: dict[int, list[dns.rdata.Rdata]] = {}
        for rdata in rrset.rdatas:
            groups.setdefault(int(rdata.covers()), []).append(rdata)
        for rdatas in groups.values():
            message.add(rrset.name, rrset.ttl, *rdatas)

    return render


def _replace_apex_ns(change: Change) -> Render:
    """Servers ignore deleting every apex NS (RFC 2136 §3.4.2.4): add the new ones, re-add
    kept ones whose TTL changed, then delete the old ones one by one."""
    old = change.old.rdatas if change.old is not None else ()
    new = change.new.rdatas if change.new is not None else ()
    old_wire = {r.to_digestable(): r for r in old}
    new_wire = {r.to_digestable(): r for r in new}
    ttl_changed = (
        change.old is not None and change.new is not None and change.old.ttl != change.new.ttl
    )

    def render(message: dns.update.UpdateMessage) -> None:
        assert change.new is not None or change.old is not None
        added = [r for w, r in new_wire.items() if w not in old_wire]
        kept = [r for w, r in new_wire.items() if w in old_wire]
        gone = [r for w, r in old_wire.items() if w not in new_wire]
        if added and change.new is not None:
            message.add(change.name, change.new.ttl, *added)
        if ttl_changed and change.new is not None:
            # Knot ignores re-adding an existing record with a new TTL; delete it first.
            for rdata in kept:
                message.delete(change.name, rdata)
                message.add(change.name, change.new.ttl, rdata)
        for rdata in gone:
            message.delete(change.name, rdata)

    return render


def _old_serial(plan: Plan) -> int | None:
    for change in plan.changes:
        if change.rdtype == dns.rdatatype.SOA and change.old is not None:
            soa = change.old.rdatas[0]
            assert isinstance(soa, dns.rdtypes.ANY.SOA.SOA)
            return int(soa.serial)
    return None


def _serial_steps(plan: Plan, target: str) -> int | None:
    """How far (RFC 1982) our serial is above the target's; None when unknown. Raises when
    the target's serial is not below ours: the server would ignore our SOA."""
    old = _old_serial(plan)
    if old is None:
        return None
    if not dns.serial.Serial(plan.serial) > dns.serial.Serial(old):
        raise TargetRejectedError(
            target,
            f"the zone's serial at the target {old} is not below ours {plan.serial}: the server "
            "would ignore our SOA. Raise the zone's serial above the target's and sync again",
        )
    return (plan.serial - old) % 2**32


# -- configuration -------------------------------------------------------------------------


def rfc2136_from_config(name: str, section: Mapping[str, Any], ctx: TargetContext) -> Rfc2136Target:
    """Build a target from its ``[target.NAME]`` table (``type = "rfc2136"``)."""
    setting = f"target.{name}"
    check_fields(section, setting, OWN_FIELDS)
    if "server" not in section:
        raise SyncConfigError(f"{setting}.server", "required: the server's address (IP:PORT)")
    server = parse_address(section["server"], f"{setting}.server")
    key = ctx.key(section, setting, "key")
    if key is None:
        raise SyncConfigError(f"{setting}.key", "required: the TSIG key name of a [key.NAME]")
    transfer_key = ctx.key(section, setting, "transfer-key")
    batch_size = parse_count(section, setting, "batch-size", DEFAULT_BATCH)
    rate_limit = parse_rate(section, setting)
    timeout = parse_timeout(section, setting, DEFAULT_TIMEOUT)
    nameservers = parse_names(section.get("nameservers", []), f"{setting}.nameservers")
    mode_text = section.get("dnssec", "presigned")
    modes = {"presigned": DnssecMode.PRESIGNED, "none": DnssecMode.NONE}
    if mode_text not in modes:
        raise SyncConfigError(f"{setting}.dnssec", f'use "presigned" or "none", not {mode_text!r}')
    zones = section.get("zones")
    probe = None
    if isinstance(zones, list) and zones and isinstance(zones[0], str):
        with contextlib.suppress(dns.exception.DNSException):  # the engine checks `zones`
            probe = dns.name.from_text(zones[0])
    return Rfc2136Target(
        name,
        server=server,
        key=key,
        transfer_key=transfer_key,
        batch_size=batch_size,
        rate_limit=rate_limit,
        timeout=timeout,
        nameservers=nameservers,
        dnssec=modes[mode_text],
        probe_zone=probe,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    return str(exc) or type(exc).__name__
