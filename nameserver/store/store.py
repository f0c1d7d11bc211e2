"""The embedded SQLite store: zones, their current records and a journal of changesets.

One SQLite file (through sqlite-utils) holds many zones. Every write is a single
``BEGIN IMMEDIATE`` transaction, so the serial check and the change are atomic against other
processes (the server and the CLI share the file), and a writer killed mid-change leaves the
previous version intact. The journal keeps each changeset's removed and added RRs (old and
new SOA included, RFC 1995), enough to serve IXFR, show history and roll back.

The parts, one concept a module: the row codec (``codec``), the file, schema and
transactions (``schema``), zones and the commit path (``commit``), key rows (``keys``),
the journal (``journal``), the NOTIFY and transfer logs (``logs``), health events and
drains (``continuity``), measured drills (``drills``).
"""

from __future__ import annotations

from nameserver.store.commit import ZoneRows
from nameserver.store.continuity import Continuity
from nameserver.store.drills import Drills
from nameserver.store.journal import Journal
from nameserver.store.logs import Logs


class Store(ZoneRows, Journal, Logs, Continuity, Drills):
    """A zonefan store in one SQLite file, shared safely by several processes.

    Methods are serialised by a lock, so one Store may be used from several threads.
    """

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
