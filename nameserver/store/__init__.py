"""The SQLite store (:class:`nameserver.store.store.Store`, its row codec, schema, commit
path, key rows, journal and logs), the store thread, warm zone versions patched along the
journal, store copies and the store follower that feeds the served zones."""
