"""Who a bearer token belongs to: the fake asks a ``TokenAuthority`` on every request.

Real Skaha calls the issuer's ``userinfo`` endpoint per request (SKAHA.md §2.2), so an expired
token, a revoked one and an unreachable IdP all look the same: no user, hence 401. The fake
OIDC provider implements this protocol; ``StaticTokens`` is the simple stand-in.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from typing import Protocol

__all__ = ["StaticTokens", "TokenAuthority"]


class TokenAuthority(Protocol):
    """Resolves a bearer token to a username."""

    def user_for(self, token: str) -> str | None:
        """The token's user, or None when it is unknown, expired or cannot be checked."""
        ...


class StaticTokens:
    """A fixed table of token → user, with revocation and an "IdP down" switch."""

    def __init__(self, tokens: Mapping[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, str] = dict(tokens or {})
        self._down = False

    def user_for(self, token: str) -> str | None:
        with self._lock:
            return None if self._down else self._tokens.get(token)

    def add(self, token: str, user: str) -> None:
        """Accept ``token`` for ``user`` from now on."""
        with self._lock:
            self._tokens[token] = user

    def issue(self, user: str) -> str:
        """A new random token for ``user``."""
        token = secrets.token_urlsafe(24)
        self.add(token, user)
        return token

    def revoke(self, token: str) -> None:
        """Reject ``token`` from now on (also how an expiry is simulated)."""
        with self._lock:
            self._tokens.pop(token, None)

    def set_down(self, *, down: bool) -> None:
        """While down, every token is rejected, as when Skaha cannot reach the IdP."""
        with self._lock:
            self._down = down
