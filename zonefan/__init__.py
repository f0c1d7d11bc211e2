"""The zonefan command line: the composition root that ties nameserver, signer and sync."""
