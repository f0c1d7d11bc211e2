"""Zone contents: records, changesets, serials, wire names, the ordered owner index,
immutable snapshots, validation, zone files and the registry of served zones. The lowest layer:
it imports no other part of the package but the exception root."""
