"""The provider test kit: an in-memory target, a fault-injecting HTTP proxy, and the
contract every record target must meet (:mod:`.contract`). It ships with zonefan so that a
provider living in its own distribution runs the same checks as the built-in ones."""
