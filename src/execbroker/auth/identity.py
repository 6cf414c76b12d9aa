"""The caller of a request, and the interface every way of identifying one implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Authenticator", "Caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated user. Administrators see and act on every user's records."""

    name: str
    admin: bool = False

    @property
    def scope(self) -> str | None:
        """The owner whose records this caller may reach; None for all of them (admins)."""
        return None if self.admin else self.name


class Authenticator(Protocol):
    """Turns a bearer token into a username, or raises :class:`UnauthorizedError`."""

    async def username(self, token: str) -> str: ...

    async def aclose(self) -> None: ...
