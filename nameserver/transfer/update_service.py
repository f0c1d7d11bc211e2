"""RFC 2136 dynamic UPDATE as the server receives it: TSIG (RFC 8945), the zone, the
zone's update policy, then the change through the editor, which validates, signs and
journals it like any other change; the server's store follower then serves it and
NOTIFY tells the secondaries.

Updates are decided and committed one at a time in one worker thread (they are writes;
SQLite takes one writer anyway), each against the zone version its prerequisites were
checked on: if another process committed meanwhile, the update is decided again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.update

from nameserver.dnssec.manager import DnssecManager, ManagerFactory
from nameserver.edit.editor import Author
from nameserver.edit.update import UpdateDecision, process_update
from nameserver.edit.updatepolicy import UpdatePolicy
from nameserver.errors import ConflictError, NameserverError, ZoneValidationError
from nameserver.serve.lograte import LogLimiter
from nameserver.store.storethread import StoreThread
from nameserver.store.versions import SnapshotSource, ZoneVersions
from nameserver.transfer.health_reports import HealthReports, NotAReport, is_report, raw_reports
from nameserver.transfer.tsig import (
    NOERROR,
    Keyring,
    ReplayGuard,
    Signer,
    TsigKey,
    Verified,
    tsig_error_reply,
    tsig_failure,
    verify,
)
from signer.errors import SignerError

log = logging.getLogger(__name__)
# Refusals, limited: any client can send UPDATEs. Applied ones are always logged (an audit
# trail), and only an allowed client can cause those.
_refusals = LogLimiter(log)

Client = tuple[str, int]
_ATTEMPTS = 3  # decisions against a zone that keeps moving before SERVFAIL


_UPDATE = int(dns.opcode.UPDATE)


def is_update(data: bytes) -> bool:
    """True for a request (QR clear) with opcode UPDATE."""
    return len(data) >= 12 and not data[2] & 0x80 and (data[2] >> 3) & 0xF == _UPDATE


class UpdateService:
    """Answers UPDATE messages for the zones of one store."""

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        keys: Keyring,
        policies: Mapping[dns.name.Name, UpdatePolicy],
        manager_factory: ManagerFactory,
        shared: SnapshotSource | None = None,
        replay: ReplayGuard | None = None,
        health_reports: HealthReports | None = None,
    ) -> None:
        self._keys = keys
        self._health_reports = health_reports
        self._replay = replay if replay is not None else ReplayGuard()
        self._policies = policies
        self._factory = manager_factory
        self._shared = shared
        self._thread = StoreThread(store_path, "update")
        self._manager: DnssecManager | None = None

    async def respond(self, data: bytes, client: Client) -> bytes | None:
        """The response to the UPDATE ``data`` from ``client`` (None: send nothing)."""
        return await self._thread.run(self.handle, data, client)

    def close(self) -> None:
        """Close the worker's store connection and the thread."""
        self._thread.close()

    # -- worker thread ------------------------------------------------------------------

    def handle(self, data: bytes, client: Client) -> bytes | None:
        """Decide, apply and answer one UPDATE (runs in the worker thread)."""
        try:
            verified = verify(data, self._keys, self._replay)
            # One RR per RRset: the update section is applied in message order (§3.4.2).
            message = dns.message.from_wire(data, keyring=False, one_rr_per_rrset=True)
        except dns.exception.DNSException as e:
            _refusals.info("UPDATE malformed", "UPDATE from %s is malformed: %s", client[0], e)
            return None  # no question to echo safely; the client times out
        if not isinstance(message, dns.update.UpdateMessage):
            return None
        if verified.answer is not None:
            # The same signed bytes again: nsupdate resends them over UDP when an answer is
            # late, and an attacker may have captured them. Either way the UPDATE is not
            # applied twice; the retransmission gets the answer the first copy got (the
            # client learns what happened, as if that answer had arrived), the replay learns
            # nothing it could not have captured. Copies with no answer yet get BADTIME.
            log.debug("UPDATE from %s: a copy of one already answered", client[0])
            return verified.answer
        if verified.error != NOERROR:
            _refusals.info(
                "UPDATE TSIG refused",
                "UPDATE from %s refused: %s",
                client[0],
                tsig_failure(verified),
            )
            return tsig_error_response(message, verified)
        # Health-check reports come every check interval: taken ones are not worth a line.
        report = is_report(message)
        if report:
            rcode, reason = self._report(message, verified.key)
        else:
            rcode, reason = self._apply(message, verified.key, client)
        if rcode == dns.rcode.NOERROR and report:
            log.debug("UPDATE from %s (key %s): %s", client[0], _key_text(verified.key), reason)
        elif rcode == dns.rcode.NOERROR:
            log.info("UPDATE from %s (key %s): %s", client[0], _key_text(verified.key), reason)
        else:
            _refusals.info(
                f"UPDATE {dns.rcode.to_text(dns.rcode.Rcode.make(rcode))}",
                "UPDATE from %s (key %s): %s",
                client[0],
                _key_text(verified.key),
                reason,
            )
        response = _response(message, rcode, verified)
        if verified.key is not None:
            self._replay.answered(verified.key, verified.mac, response)
        return response

    def _open(self) -> DnssecManager:
        if self._manager is None:
            store = self._thread.store
            self._manager = self._factory(store, ZoneVersions(store, self._shared))
        return self._manager

    def _report(self, message: dns.update.UpdateMessage, key: TsigKey | None) -> tuple[int, str]:
        """Health-check reports of a remote checker: handed on, never written to the zone."""
        if self._health_reports is None:
            return dns.rcode.REFUSED, "this server takes no health-check reports"
        if key is None:
            return dns.rcode.REFUSED, "a health-check report must be TSIG-signed"
        zone_rrs = message.sections[0]
        if len(zone_rrs) != 1 or zone_rrs[0].rdtype != dns.rdatatype.SOA:
            return dns.rcode.FORMERR, "the zone section must hold exactly one SOA question"
        try:
            reports = raw_reports(message)
        except NotAReport as e:
            return dns.rcode.FORMERR, str(e)
        origin = zone_rrs[0].name
        outside = next((r.pool for r in reports if not r.pool.is_subdomain(origin)), None)
        if outside is not None:
            return dns.rcode.NOTZONE, f"pool {outside} is not in {origin}"
        rcode = self._health_reports(reports, key.name)
        text = dns.rcode.to_text(dns.rcode.Rcode.make(rcode))
        return rcode, f"{len(reports)} health-check report(s): {text}"

    def _apply(
        self, message: dns.update.UpdateMessage, key: TsigKey | None, client: Client
    ) -> tuple[int, str]:
        manager = self._open()
        zone_rrs = message.sections[0]
        if len(zone_rrs) != 1 or zone_rrs[0].rdtype != dns.rdatatype.SOA:
            return dns.rcode.FORMERR, "the zone section must hold exactly one SOA question"
        origin = zone_rrs[0].name
        if not manager.store.has_zone(origin):
            return dns.rcode.NOTAUTH, f"{origin} is not a zone of this server"
        policy = self._policies.get(origin, UpdatePolicy(origin))
        key_name = key.name if key is not None else None
        versions = manager.versions
        assert versions is not None
        author = Author(f"update:{key_name or 'unsigned'}", f"RFC 2136 UPDATE from {client[0]}")
        for _ in range(_ATTEMPTS):
            snapshot = versions.current(origin)
            decision = process_update(message, key_name, snapshot, policy)
            if decision.rcode != dns.rcode.NOERROR or not decision.changes:
                return int(decision.rcode), _reason(decision)
            try:
                editor = manager.editor()
                editor.change_records(origin, decision.remove, decision.add, author, base=snapshot)
            except ConflictError:
                continue  # the zone moved after the prerequisites were checked: decide again
            except ZoneValidationError as e:
                return dns.rcode.REFUSED, f"the zone would be invalid: {e}"
            except (NameserverError, SignerError) as e:
                log.exception("UPDATE of %s could not be committed", origin)
                return dns.rcode.SERVFAIL, f"not committed: {e}"
            return dns.rcode.NOERROR, _reason(decision)
        return dns.rcode.SERVFAIL, f"{origin} kept changing; try again"


def _reason(decision: UpdateDecision) -> str:
    ignored = f" (ignored: {'; '.join(decision.ignored)})" if decision.ignored else ""
    return f"{dns.rcode.to_text(decision.rcode)}: {decision.reason}{ignored}"


def _key_text(key: TsigKey | None) -> str:
    return key.name.to_text() if key is not None else "none"


def _header_and_zone(message: dns.update.UpdateMessage, rcode: int) -> bytes:
    """The response: the request's ID and zone section, QR, opcode UPDATE, ``rcode``
    (RFC 2136 §3.8: the other sections are empty)."""
    response = dns.update.UpdateMessage(message.origin, id=message.id)
    response.flags = dns.flags.QR
    response.set_opcode(dns.opcode.UPDATE)
    response.set_rcode(dns.rcode.Rcode.make(rcode))
    return response.to_wire()


def _response(message: dns.update.UpdateMessage, rcode: int, verified: Verified) -> bytes:
    wire = _header_and_zone(message, rcode)
    if verified.key is None:
        return wire
    return Signer(verified.key, verified.mac, message.id).sign(wire)


def tsig_error_response(message: dns.update.UpdateMessage, verified: Verified) -> bytes:
    """NOTAUTH with the TSIG error (RFC 8945 §5.2)."""
    return tsig_error_reply(_header_and_zone(message, dns.rcode.NOTAUTH), verified)
