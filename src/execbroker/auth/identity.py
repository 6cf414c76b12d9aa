"""The caller of a request, and the interface every way of identifying one implements.

A caller has two names. The **owner key** (:attr:`Identity.key`) owns records and is what
``admins`` lists: with OIDC the token's ``sub`` by default (immutable at the issuer, never
reassigned), with the tokens file the username the file maps the token to. The **display
name** (:attr:`Identity.display`) is only shown, in messages such as "Cancelled by …": with
OIDC the ``preferred_username``, which an issuer may let users choose, change or recycle, and
which therefore never grants anything.

Names enter from outside (token claims, the tokens file) and are checked where they enter by
:func:`username_problem`: a name the database cannot hold (more than 255 characters, a NUL)
would otherwise fail a write with a 500, and control characters in a name reach terminals.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["MAX_USERNAME_LENGTH", "Authenticator", "Caller", "Identity", "username_problem"]

MAX_USERNAME_LENGTH = 255
"""What the ``owner`` columns hold (``storage.tables.NAME_LENGTH``)."""


def username_problem(name: str) -> str | None:
    """What makes ``name`` unfit as a username, or None: empty, longer than 255 characters,
    or holding a control character (C0 with NUL, DEL, C1) or a lone surrogate.
    """
    if not name:
        return "is empty"
    if len(name) > MAX_USERNAME_LENGTH:
        return f"is longer than {MAX_USERNAME_LENGTH} characters"
    for character in name:
        category = unicodedata.category(character)
        if category == "Cc":
            return f"holds a control character (U+{ord(character):04X})"
        if category == "Cs":
            return "holds a lone surrogate (not UTF-8)"
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a token authenticates: the owner key, and a name to show for them."""

    key: str
    display: str


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user. Administrators see and act on every user's records.

    ``name`` is the owner key; ``display`` the name shown in messages (the key if unset).
    """

    name: str
    admin: bool = False
    display: str | None = None
    # The bearer token this request came with, for a platform that acts as the caller
    # (per-user Skaha exchanges it); never shown or logged.
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def scope(self) -> str | None:
        """The owner whose records this caller may reach; None for all of them (admins)."""
        return None if self.admin else self.name

    @property
    def label(self) -> str:
        """How messages name this caller ("Cancelled by …")."""
        return self.display or self.name


class Authenticator(Protocol):
    """Turns a bearer token into an identity, or raises :class:`UnauthorizedError`."""

    async def identify(self, token: str) -> Identity: ...

    async def username(self, token: str) -> str:
        """The owner key of the token's user (``identify(token).key``)."""
        ...

    async def aclose(self) -> None: ...
