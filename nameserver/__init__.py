"""zonefan's authoritative side: the zone store, zone snapshots, zone files and the DNS server."""
