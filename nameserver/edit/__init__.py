"""Changes to zones: the editor (validated, signed-in-the-same-changeset changes), catalog
zones, RFC 2136 UPDATE decisions and the update policy."""
