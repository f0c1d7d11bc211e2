"""DNSSEC for the store's zones: keeping signed zones right (``signing``), policy,
keys and their timings, the parent-DS check, and the manager that ties them into the change
transaction and the maintenance worker."""
