"""PowerDNS Authoritative as a sync target, through its HTTP API.

Two modes share one HTTP client:

* :class:`PowerDnsTarget` writes unsigned zones as records: a Native zone with
  ``soa_edit_api`` and ``soa_edit`` off (so our SOA serial is served unchanged), published
  whole (one POST, or staged hidden when larger than one request), then PATCHes of whole
  RRsets, each atomic at pdns.
* :class:`PowerDnsSecondaryTarget` provisions a zone as a Slave of our primary (optionally
  with a TSIG key) and lets pdns transfer it. Signed zones go this way: presigned data written
  through 4.7's API is served with wrongly synthesised NSEC proofs (rows inserted through
  the API keep an empty ``ordername``), and the API cannot set PRESIGNED at all.
"""

from sync.providers.powerdns.api import PowerDnsApi
from sync.providers.powerdns.codec import (
    CREATE_ZONE,
    batches,
    change_json,
    contents,
    render,
    rrset_json,
    rrsets_body,
    zone_body,
    zone_from_json,
    zone_id,
)
from sync.providers.powerdns.config import DEFAULT_BATCH_SIZE, PowerDnsSettings, parse_settings
from sync.providers.powerdns.targets import (
    PdnsZoneState,
    PowerDnsSecondaryTarget,
    PowerDnsTarget,
    powerdns_from_config,
    powerdns_secondary_from_config,
)

__all__ = [
    "CREATE_ZONE",
    "DEFAULT_BATCH_SIZE",
    "PdnsZoneState",
    "PowerDnsApi",
    "PowerDnsSecondaryTarget",
    "PowerDnsSettings",
    "PowerDnsTarget",
    "batches",
    "change_json",
    "contents",
    "parse_settings",
    "powerdns_from_config",
    "powerdns_secondary_from_config",
    "render",
    "rrset_json",
    "rrsets_body",
    "zone_body",
    "zone_from_json",
    "zone_id",
]
