"""Files zonefan creates to hold zone data: the store and the sync sidecar's state.

Such a file is created mode 0640 (its owner reads and writes it, its group may read it: a
backup or monitoring account), narrowed by a stricter umask (077 gives 0600) but never
widened by a permissive one: under the common umask 022 SQLite alone would make it 0644,
every zone's data readable by every local user. SQLite creates the -wal and -shm files
beside a database with the database file's mode (and owner), so they follow it. Private
keys are stricter still: a 0700 directory of 0600 files (signer.keys).
"""

from __future__ import annotations

import os

DATA_FILE_MODE = 0o640


def create_data_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty with :data:`DATA_FILE_MODE` less what the umask removes, unless
    something is there already (an existing file keeps its mode). True when it was created;
    OSError when it cannot be (a missing or unwritable directory)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DATA_FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True
