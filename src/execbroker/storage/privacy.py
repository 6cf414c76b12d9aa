"""The data directory is the broker's OS user's alone.

It holds every user's requests (environment values included), the connector locations the
API shows only to a session's owner, and the local tokens. On a shared machine any other
local user could read them from files that the usual umask (022) leaves world-readable, so
``execbroker serve`` sets :data:`PRIVATE_UMASK` before it creates anything: the data
directory, the SQLite database (its ``-wal`` and ``-shm`` files take the database's mode),
the mock platform's ledger and the docker platform's folders are made ``0700``/``0600``.

What existed before is left as the operator made it, but :func:`warn_if_shared` says at
start, in one log line, which of the data directory and the database other users can reach.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from sqlalchemy.engine.url import make_url

from execbroker.config import Settings

__all__ = ["PRIVATE_UMASK", "shared_paths", "warn_if_shared"]

logger = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # nothing the broker creates is open to its group or to others
_SHARED_BITS = 0o077


def _database_files(settings: Settings) -> list[Path]:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return []
    database = Path(url.database)
    return [database, *(database.with_name(database.name + end) for end in ("-wal", "-shm"))]


def shared_paths(settings: Settings) -> list[tuple[Path, int]]:
    """The data directory and database files that other users can reach, with their modes."""
    found = []
    for path in (settings.data_dir, *_database_files(settings)):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue  # not there (yet): nothing to reach
        if mode & _SHARED_BITS:
            found.append((path, mode))
    return found


def warn_if_shared(settings: Settings) -> None:
    """One warning naming each path other local users can reach, and its mode."""
    found = shared_paths(settings)
    if found:
        logger.warning(
            "other local users can reach the broker's data: %s; chmod 700 the directory "
            "and 600 the database files",
            ", ".join(f"{path} (mode {mode:04o})" for path, mode in found),
        )
