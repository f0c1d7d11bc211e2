"""The PowerDNS HTTP API's JSON for zones and RRsets: our RRsets as pdns's record
contents, request bodies in size-bounded batches, and zone documents read back."""

from __future__ import annotations

import json
import json.encoder
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.model import TEXT_TYPES, FastName, RRset, ZoneData
from sync.plan import Action, Change

if TYPE_CHECKING:
    pass

log = logging.getLogger("sync.providers.powerdns")

# pdns refuses bodies over webserver-max-bodysize (2 MB by default) with HTTP 400; stay
# well below it so a batch of long TXT or key records still fits.
MAX_BODY_BYTES = 1_500_000
# The API reads and writes key and signature material only as unbroken base64 and hex.
_PDNS_STYLE = dns.rdata.RdataStyle(base64_chunk_size=0, hex_chunk_size=0)
# A quoted SvcParam value without spaces, quotes or escapes: pdns prints it bare.
_SVC_QUOTED = re.compile(r'([a-z0-9-]+)="([^"\\\s]*)"')
# A JSON string literal of any text, ASCII only (the C encoder json.dumps itself uses).
_quote = json.encoder.encode_basestring_ascii


# -- helpers ---------------------------------------------------------------------------------


def zone_id(zone: dns.name.Name) -> str:
    """The zone's id in API URLs, as pdns's ``apiZoneNameToId`` makes it: letters, digits,
    dots and hyphens kept, every other byte as ``=XX``; the root is ``=2E``."""
    text = zone.to_text()
    out = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in ".-") else f"={ord(ch):02X}" for ch in text
    )
    return "=2E" if out == "." else out


def render(rdata: dns.rdata.Rdata) -> str:
    """Record content exactly as pdns writes it: 4.7 re-renders what it parsed and refuses
    content that differs ("Not in expected format"). Absolute names, base64 and hex
    unbroken; LOC with its size and precisions even when they are the defaults; SVCB and
    HTTPS parameter values unquoted."""
    text = rdata.to_text(style=_PDNS_STYLE)
    if rdata.rdtype == dns.rdatatype.LOC and len(text.split()) == 9:
        size = getattr(rdata, "size")  # noqa: B009 - LOC rdata, untyped in dnspython
        hp = getattr(rdata, "horizontal_precision")  # noqa: B009
        vp = getattr(rdata, "vertical_precision")  # noqa: B009
        text += f" {size / 100:.2f}m {hp / 100:.2f}m {vp / 100:.2f}m"
    elif rdata.rdtype in (dns.rdatatype.SVCB, dns.rdatatype.HTTPS):
        text = _SVC_QUOTED.sub(r"\1=\2", text)
    return text


_ADDRESS_TYPES = frozenset({dns.rdatatype.A, dns.rdatatype.AAAA})
_PLAIN_TYPES = _ADDRESS_TYPES | TEXT_TYPES
# pdns answers a POST with the zone it created, every RRset included unless told not to:
# at 10k RRsets, 1.4 MB that it takes 0.13 s to write and we 0.05 s to read, for nothing.
CREATE_ZONE = "zones?rrsets=false"
SOA = dns.rdatatype.SOA


def contents(rrset: RRset) -> list[str]:
    """The records' content as pdns writes it; addresses and TXT without a dnspython
    object (pdns writes both as dnspython does)."""
    if rrset.rdtype in _PLAIN_TYPES:
        return rrset.texts()
    return [render(r) for r in rrset.rdatas]


def _type_text(rdtype: dns.rdatatype.RdataType) -> str:
    return _TYPE_TEXT.get(rdtype) or _TYPE_TEXT.setdefault(rdtype, dns.rdatatype.to_text(rdtype))


_TYPE_TEXT: dict[dns.rdatatype.RdataType, str] = {}


def rrset_json(rrset: RRset) -> str:
    """An RRset for a PATCH that replaces it whole, as compact JSON text. Written directly:
    a dict per RRset through ``json.dumps`` costs more than pdns takes to store it, and
    ``disabled`` (false unless given) is left out."""
    texts = contents(rrset)
    if len(texts) == 1:
        records = '{"content":' + _quote(texts[0]) + "}"
    else:
        records = ",".join(['{"content":' + _quote(text) + "}" for text in texts])
    return (
        f'{{"name":{_quote(rrset.name.to_text())},"type":"{_type_text(rrset.rdtype)}",'
        f'"ttl":{rrset.ttl},"changetype":"REPLACE","records":[{records}]}}'
    )


def change_json(change: Change) -> str:
    """One plan change as a PATCH rrset (JSON text): REPLACE with every record, or DELETE."""
    if change.action == Action.DELETE:
        assert change.old is not None
        name = _quote(change.old.name.to_text())
        return f'{{"name":{name},"type":"{_type_text(change.old.rdtype)}","changetype":"DELETE"}}'
    assert change.new is not None
    return rrset_json(change.new)


def batches(items: Sequence[str], size: int, max_bytes: int) -> Iterator[list[str]]:
    """JSON ``items`` in order, at most ``size`` per batch and ``max_bytes`` of them each
    (an item larger than that on its own still goes, alone)."""
    batch: list[str] = []
    used = 0
    for item in items:
        length = len(item) + 1
        if batch and (len(batch) >= size or used + length > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += length
    if batch:
        yield batch


def rrsets_body(items: Sequence[str]) -> bytes:
    """A PATCH body of JSON ``items`` (ASCII: the quoting escapes everything else)."""
    return ('{"rrsets":[' + ",".join(items) + "]}").encode("ascii")


def zone_body(
    zone: dns.name.Name, items: Sequence[str], *, api_rectify: bool | None = None
) -> bytes:
    """The POST body creating ``zone`` with the RRsets ``items`` (JSON text): Native, with
    ``soa_edit_api`` and ``soa_edit`` off so that our SOA serial is served unchanged, and
    ``api_rectify`` when given (pdns's default otherwise)."""
    settings: dict[str, Any] = {
        "name": zone.to_text(),
        "kind": "Native",
        "soa_edit_api": "",
        "soa_edit": "",
        "nameservers": [],
    }
    if api_rectify is not None:
        settings["api_rectify"] = api_rectify
    head = json.dumps(settings, separators=(",", ":"))
    return (head[:-1] + ',"rrsets":[' + ",".join(items) + "]}").encode("ascii")


def disabled(item: str) -> str:
    """A REPLACE ``item`` (JSON text) with its records disabled."""
    rrset = json.loads(item)
    for record in rrset.get("records", []):
        record["disabled"] = True
    return json.dumps(rrset, separators=(",", ":"))


def zone_from_json(
    origin: dns.name.Name, body: Mapping[str, Any], target: str
) -> tuple[ZoneData, list[str]]:
    """The API's zone document as ZoneData, and the problems met (records that do not
    parse). An RRset whose records all fail to parse is kept without rdatas, so the plan
    replaces it when it is ours and reports it as foreign otherwise."""
    sets: list[RRset] = []
    problems: list[str] = []
    for item in body.get("rrsets", []):
        try:
            owner = FastName.parse(str(item["name"]))
            rdtype = dns.rdatatype.from_text(str(item["type"]))
            ttl = int(item["ttl"])
        except (KeyError, TypeError, ValueError, dns.exception.DNSException) as exc:
            problems.append(f"unreadable rrset {item!r}: {exc}")
            continue
        enabled = [
            str(r.get("content", "")) for r in item.get("records", []) if not r.get("disabled")
        ]
        if rdtype in _ADDRESS_TYPES and enabled:
            try:  # the bulk of most zones: no dnspython object per address
                sets.append(RRset.parse(owner, rdtype, ttl, enabled))
                continue
            except ValueError:
                pass  # one of them is bad: find which, below
        rdatas: list[dns.rdata.Rdata] = []
        for record in item.get("records", []):
            if record.get("disabled"):
                continue  # not served: for the plan it is not there
            content = str(record.get("content", ""))
            try:
                rdatas.append(dns.rdata.from_text(dns.rdataclass.IN, rdtype, content, None))
            except (dns.exception.DNSException, ValueError) as exc:
                problems.append(f"{owner} {item['type']} {content!r}: {exc}")
        if rdatas or enabled:  # all disabled: not served, so not there
            sets.append(RRset.of(owner, rdtype, ttl, rdatas))
    for problem in problems:
        log.warning("target %s: zone %s: %s", target, origin, problem)
    return ZoneData.build(origin, sets), problems
