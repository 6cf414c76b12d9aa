"""Bearer tokens listed in a local YAML file: the embedded default.

The file maps each token to a username::

    tokens:
      3q2-Lr…: alice
      Zk8_0p…: bob

On first start the broker creates it, readable by its owner only, with one random token for
the local user (``default_owner``), so that ``make run`` works at once and the project's tools
find the token without copy-paste (:mod:`execbroker.localtoken`). The file is read again when
it changes, so operators add and revoke tokens without a restart. Tokens are kept only as
SHA-256 digests in memory.

What a request costs: one ``stat`` of the file (its modification time, size and inode: an
edit in place or a new file moved over it is seen by the next request), one SHA-256 of the
token and one lookup of the digest. The file is read again only when the ``stat`` differs.

Revocation fails closed: a file that cannot be read whole (it does not parse, is empty, is
not a mapping, holds a token too short or a username the broker cannot store: longer than
255 characters, a control character) means that no token is valid until it is fixed,
with one ERROR log line naming the file and what is wrong. Keeping the tokens read last
would keep valid the very token an operator was removing when the edit went wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

import yaml

from execbroker.auth.identity import Identity, username_problem
from execbroker.exceptions import UnauthorizedError

__all__ = ["TokenFile", "ensure_tokens_file"]

logger = logging.getLogger(__name__)

_HEADER = (
    "# execbroker bearer tokens: each token maps to the username it authenticates.\n"
    "# Keep this file private. Add or remove tokens at any time; the broker rereads it.\n"
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def ensure_tokens_file(path: Path, *, user: str) -> bool:
    """Create ``path`` with one fresh token for ``user`` unless it exists; True if created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    text = _HEADER + yaml.safe_dump({"tokens": {token: user}}, default_flow_style=False)
    # O_EXCL: two brokers starting at once must not overwrite each other's token.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    return True


def _read(path: Path) -> dict[str, str]:
    """Each token → its username, as the file says; ValueError naming what is wrong."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    tokens = loaded.get("tokens") if isinstance(loaded, dict) else None
    if not isinstance(tokens, dict):
        raise ValueError("it must hold a mapping 'tokens' from each token to its username")  # noqa: TRY004
    result: dict[str, str] = {}
    for token, user in tokens.items():
        if not isinstance(token, str) or not isinstance(user, str) or not token or not user:
            raise ValueError("every entry of 'tokens' must map a token to a username")
        problem = username_problem(user)
        if problem is not None:
            # Not quoted: the name may be megabytes long or move the log reader's terminal.
            raise ValueError(f"the username of a token {problem}")
        if len(token) < 16:
            raise ValueError(f"a token of {user!r} is shorter than 16 characters")
        result[token] = user
    return result


def _describe(problem: Exception) -> str:
    """What is wrong with the file, without quoting its lines (they hold tokens)."""
    if isinstance(problem, yaml.MarkedYAMLError):
        mark = problem.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"not valid YAML ({problem.problem or problem.context}{where})"
    if isinstance(problem, yaml.YAMLError | UnicodeDecodeError):
        return f"not valid YAML ({type(problem).__name__})"
    if isinstance(problem, OSError):
        return problem.strerror or type(problem).__name__
    return str(problem)


class TokenFile:
    """Authenticates bearer tokens against the file, rereading it whenever it changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = os.fspath(path)
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[bytes, str] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            status = os.stat(self._file)
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
        if stamp == self._stamp:
            return
        try:
            tokens = _read(self._path)
        except (OSError, ValueError, UnicodeDecodeError, yaml.YAMLError) as problem:
            # Fail closed: no token is valid until the file is fixed; say so once per edit.
            self._users, self._stamp = {}, stamp
            logger.error(  # noqa: TRY400 - the problem is the file's, no traceback helps
                "tokens file %s cannot be read whole, so no token is valid until it is fixed: %s",
                self._path,
                _describe(problem),
            )
            return
        if status.st_mode & 0o077:
            logger.warning("tokens file %s is readable by others; chmod 600 it", self._path)
        self._users = {_digest(token): user for token, user in tokens.items()}
        self._stamp = stamp
        logger.info("tokens file read: %d token(s)", len(self._users))

    async def identify(self, token: str) -> Identity:
        """The file's username is both the owner key and the name shown."""
        self._reload()
        user = self._users.get(_digest(token))
        if user is None:
            raise UnauthorizedError("The bearer token is not valid", invalid_token=True)
        return Identity(key=user, display=user)

    async def username(self, token: str) -> str:
        return (await self.identify(token)).key

    async def aclose(self) -> None:
        return None
