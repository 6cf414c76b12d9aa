"""Each user's own Skaha credentials (per-user mode): exchanged, stored encrypted, kept fresh.

In per-user mode (``auth = oidc``, :func:`~execbroker.config.skaha_per_user`) every Skaha
session runs as its owner:

- at accept and ``/direct``, :meth:`UserCredentials.admit` exchanges the caller's access
  token for a Skaha token of the same user (RFC 8693 token exchange, with the configured
  audience and scopes, ``offline_access`` among them so that a refresh token comes back).
  A refusal is a :class:`~execbroker.exceptions.PlatformIdentityRefusedError` carrying the
  provider's ``error`` and description, raised before anything is accepted; a user who already
  has a usable stored credential is not exchanged again;
- the tokens are kept per user in the database (:class:`CredentialStore`), the whole record
  sealed with Fernet (:class:`Sealer`, key ``skaha_credential_key``): neither token is readable
  at rest, and none is ever logged;
- a background loop refreshes each user's access token at ``refresh_fraction`` of its
  life (rotation: the new refresh token is stored before the new access token is used),
  and forgets the credentials of users who have no session left that holds;
- ``invalid_grant`` on a user's refresh marks that user *to log in again*: their sessions
  wait (:class:`SkahaCredentialsError`), everyone else's go on, and ``/healthz`` counts them.
  Their next accept exchanges afresh;
- a JWT refresh token whose ``exp`` is within ``refresh_warning`` is warned about in the log
  (once per token) and counted in ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from execbroker.background import BackgroundTaskManager, Wake
from execbroker.clock import Clock
from execbroker.exceptions import PlatformIdentityRefusedError, ServiceUnavailableError
from execbroker.platforms.skaha.errors import SkahaCredentialsError, SkahaUnavailableError
from execbroker.platforms.skaha.tokens import (
    EXPIRY_MARGIN,
    DeadGrantError,
    TokenEndpoint,
    TokenSet,
    refresh_token_expiry,
    retry_delay,
    token_set_from,
)

__all__ = [
    "TOKEN_EXCHANGE",
    "CredentialStore",
    "ExchangeSettings",
    "Sealer",
    "UserCredentials",
    "UserTokens",
]

logger = logging.getLogger(__name__)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - a URN
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN

# How long a stopping broker waits for a token refresh under way to be stored.
_FINISH_WHEN_STOPPING = 10.0
# A refresh answered with one of these means the user's grant is gone: they log in again.
_DEAD_REFRESH = frozenset({"invalid_grant", "unauthorized_client"})
# Any of these refuses an exchange (RFC 8693 §2.2.2 and RFC 6749 §5.2).
_EXCHANGE_REFUSALS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "access_denied",
    }
)


class CredentialStore(Protocol):
    """Where sealed credentials are kept, by account (storage.credentials implements it)."""

    async def load(self) -> dict[str, str]:
        """Every stored account and its sealed credential."""
        ...

    async def save(self, account: str, sealed: str) -> None:
        """Store ``sealed`` for ``account``, replacing what was there."""
        ...

    async def delete(self, account: str) -> None:
        """Forget ``account``'s credential."""
        ...

    async def accounts_in_use(self) -> set[str]:
        """Owners with a session that still holds (accepted, running or releasing)."""
        ...


class Sealer:
    """Seals a user's tokens for the database with Fernet (AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: SecretStr | None) -> None:
        if key is None:
            raise ValueError(
                "per-user Skaha identity (auth = oidc) needs skaha_credential_key "
                "(EXECBROKER_SKAHA_CREDENTIAL_KEY): a Fernet key that encrypts the users' "
                "Skaha refresh tokens at rest; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            )
        try:
            self._fernet = Fernet(key.get_secret_value().strip().encode())
        except (ValueError, TypeError):
            raise ValueError(
                "skaha_credential_key (EXECBROKER_SKAHA_CREDENTIAL_KEY) is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None

    def seal(self, tokens: TokenSet, *, problem: str | None) -> str:
        document = {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "expires_at": tokens.expires_at.timestamp() if tokens.expires_at else None,
            "obtained_at": tokens.obtained_at.timestamp(),
            "problem": problem,
        }
        return self._fernet.encrypt(json.dumps(document).encode()).decode("ascii")

    def open(self, sealed: str) -> tuple[TokenSet, str | None]:
        """The tokens and the problem in ``sealed``; ValueError if it cannot be read."""
        try:
            document = json.loads(self._fernet.decrypt(sealed.encode("ascii")))
            expires = document.get("expires_at")
            tokens = TokenSet(
                access_token=str(document["access_token"]),
                refresh_token=document.get("refresh_token"),
                expires_at=datetime.fromtimestamp(expires, UTC) if expires is not None else None,
                obtained_at=datetime.fromtimestamp(document["obtained_at"], UTC),
            )
        except (InvalidToken, ValueError, KeyError, TypeError, AttributeError):
            raise ValueError("sealed with another key, or damaged") from None
        problem = document.get("problem")
        return tokens, problem if isinstance(problem, str) else None


@dataclass(frozen=True)
class ExchangeSettings:
    """How users' tokens are exchanged and refreshed (from the ``skaha_*`` settings)."""

    issuer: str | None
    client_id: str | None
    client_secret: SecretStr | None = field(default=None, repr=False)
    audience: str | None = None
    scopes: str = "openid profile offline_access"
    refresh_fraction: float = 0.8
    refresh_warning: timedelta = timedelta(days=7)
    backoff: tuple[float, float] = (1.0, 60.0)
    cleanup_interval: float = 60.0
    # An admitted user's credential is kept this long even with no session that holds
    # (the accept that admitted them commits right after).
    admit_grace: timedelta = timedelta(minutes=10)

    @property
    def scope(self) -> str:
        scopes = self.scopes.split()
        return " ".join([*scopes, "offline_access"] if "offline_access" not in scopes else scopes)


@dataclass
class _User:
    """One user's credential in memory, with its refresh state."""

    tokens: TokenSet
    problem: str | None = None  # the user must log in again
    outage: str | None = None  # the IdP fails: refreshing is retried
    failures: int = 0
    next_attempt: datetime | None = None
    admitted_at: datetime | None = None
    warned: datetime | None = None  # the refresh-token expiry already warned about
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UserTokens:
    """One account's token source for :class:`~execbroker.platforms.skaha.client.SkahaClient`."""

    def __init__(self, owner: UserCredentials, account: str) -> None:
        self._owner = owner
        self._account = account

    async def access_token(self) -> str:
        return await self._owner.access_token(self._account)

    async def refresh(self, *, stale: str) -> None:
        await self._owner.refresh(self._account, stale=stale)


class UserCredentials:
    """The users' Skaha credentials: exchange at admission, refresh, store, forget."""

    def __init__(
        self,
        settings: ExchangeSettings,
        *,
        store: CredentialStore,
        sealer: Sealer,
        http: httpx.AsyncClient,
        clock: Clock,
        background: BackgroundTaskManager,
        on_forget: Callable[[str], Awaitable[None] | None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._background = background
        self._on_forget = on_forget
        self._exchange_endpoint = TokenEndpoint(
            http=http,
            issuer=settings.issuer,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refusals=_EXCHANGE_REFUSALS,
        )
        self._refresh_endpoint = TokenEndpoint(
            http=http,
            issuer=settings.issuer,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            refusals=_DEAD_REFRESH,
        )
        self._warning = settings.refresh_warning
        self._users: dict[str, _User] = {}
        self._wake = Wake()
        self._last_cleanup: datetime | None = None
        self.exchanges = 0
        self.refreshes = 0
        self.failures = 0  # refused or failed exchanges and refreshes

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the stored credentials (one that cannot be opened is logged and dropped:
        its user logs in again) and keep them fresh in the background.
        """
        stored = await self._store.load()
        unreadable = 0
        for account, sealed in stored.items():
            try:
                tokens, problem = self._sealer.open(sealed)
            except ValueError:
                unreadable += 1
                await self._store.delete(account)
                continue
            self._users[account] = _User(tokens=tokens, problem=problem)
        if unreadable:
            logger.error(
                "stored Skaha credentials cannot be decrypted with skaha_credential_key "
                "(was the key changed?); those users are asked to sign in again",
                extra={"count": unreadable},
            )
        logger.info("users' Skaha credentials read", extra={"count": len(self._users)})
        self._background.loop(
            "skaha-user-tokens", self._pass, retry=self._settings.backoff[0], wake=self._wake
        )

    def accounts(self) -> set[str]:
        """Accounts with a stored credential (usable or not)."""
        return set(self._users)

    def usable(self, account: str) -> bool:
        user = self._users.get(account)
        return user is not None and user.problem is None

    def to_log_in_again(self) -> int:
        """How many users' credentials were refused: they must sign in and accept again."""
        return sum(1 for user in self._users.values() if user.problem is not None)

    def expiring(self) -> int:
        """How many usable refresh tokens end within ``refresh_warning``."""
        horizon = self._clock.now() + self._settings.refresh_warning
        return sum(
            1
            for user in self._users.values()
            if user.problem is None
            and (end := refresh_token_expiry(user.tokens.refresh_token)) is not None
            and end <= horizon
        )

    def source(self, account: str) -> UserTokens:
        return UserTokens(self, account)

    # -- admission --------------------------------------------------------------------------

    async def admit(self, account: str, subject_token: str | None) -> None:
        """Make sure ``account`` has a usable Skaha credential, exchanging ``subject_token``
        (the user's own access token) when it has none.
        """
        now = self._clock.now()
        user = self._users.get(account)
        if user is not None and user.problem is None and self._fresh_enough(user.tokens, now):
            ending = refresh_token_expiry(user.tokens.refresh_token)
            if subject_token is None or ending is None or ending - now > self._warning:
                user.admitted_at = now
                return
            # Its refresh token ends soon and the user is here: exchange for a new one.
        if subject_token is None:
            raise PlatformIdentityRefusedError(
                "Skaha runs each session as its owner, and no Skaha credential of {user} is "
                "stored: the owner must accept with their own token",
                {"user": account},
            )
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "scope": self._settings.scope,
        }
        if self._settings.audience:
            form["audience"] = self._settings.audience
        try:
            answer = await self._exchange_endpoint.post(form)
            tokens = token_set_from(answer, now=self._clock.now(), previous=None)
        except DeadGrantError as refused:
            self.failures += 1
            logger.warning(
                "the identity provider refused a Skaha token exchange",
                extra={"account": account, "error": refused.error},
            )
            raise PlatformIdentityRefusedError(
                "The identity provider refused to exchange your token for a Skaha token "
                "({error}: {description}); nothing was accepted",
                {"error": refused.error, "description": refused.description},
            ) from None
        except (SkahaUnavailableError, ValueError) as failure:
            self.failures += 1
            reason = failure.message if isinstance(failure, SkahaUnavailableError) else str(failure)
            raise ServiceUnavailableError(
                "Your token cannot be exchanged for a Skaha token now ({reason}); nothing "
                "was accepted, try again later",
                {"reason": reason},
            ) from None
        if tokens.refresh_token is None:
            logger.warning(
                "a Skaha token exchange brought no refresh token (is offline_access allowed "
                "for the client?); the user's sessions stop when the access token ends",
                extra={"account": account},
            )
        fresh = _User(tokens=tokens, admitted_at=self._clock.now())
        await self._store.save(account, self._sealer.seal(tokens, problem=None))
        if user is not None:
            fresh.lock = user.lock
        self._users[account] = fresh
        self.exchanges += 1
        self._wake.set()
        logger.info("Skaha token exchanged for a user", extra={"account": account})

    def _fresh_enough(self, tokens: TokenSet, now: datetime) -> bool:
        """Usable without asking the user: refreshable, or not about to expire."""
        if tokens.refresh_token is not None and self._settings.issuer:
            return True
        return tokens.expires_at is None or now < tokens.expires_at - EXPIRY_MARGIN

    # -- what the Skaha client uses ----------------------------------------------------------

    async def access_token(self, account: str) -> str:
        """``account``'s current access token, refreshed first when about to expire."""
        user = self._user(account)
        tokens = user.tokens
        if tokens.about_to_expire(self._clock.now(), self._settings.refresh_fraction):
            await self.refresh(account, stale=tokens.access_token)
            user = self._user(account)
        return user.tokens.access_token

    def _user(self, account: str) -> _User:
        user = self._users.get(account)
        if user is None:
            raise SkahaCredentialsError(
                f"no Skaha credential of {account} is stored: they must sign in and accept "
                "a session again"
            )
        if user.problem is not None:
            raise SkahaCredentialsError(user.problem)
        return user

    async def refresh(self, account: str, *, stale: str | None = None) -> None:
        """Refresh ``account``'s access token, unless ``stale`` is no longer the current
        one; concurrent callers for one account share one refresh.
        """
        user = self._user(account)
        async with user.lock:
            user = self._user(account)
            if stale is not None and user.tokens.access_token != stale:
                return
            now = self._clock.now()
            if user.next_attempt is not None and now < user.next_attempt:
                raise SkahaUnavailableError(
                    user.outage or "the identity provider is not answering",
                    retry_after=user.next_attempt - now,
                )
            # Not abandoned half-way when the broker stops: once the IdP has rotated the
            # refresh token, only the stored new one works, and a broker stopped between
            # the IdP's answer and the save would restart holding a dead grant.
            work = asyncio.ensure_future(self._refresh_now(account, user))
            try:
                await asyncio.shield(work)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception, TimeoutError):
                    async with asyncio.timeout(_FINISH_WHEN_STOPPING):
                        await asyncio.shield(work)
                raise

    async def _refresh_now(self, account: str, user: _User) -> None:
        refresh_token = user.tokens.refresh_token
        if refresh_token is None:
            await self._give_up(account, user, "no refresh token was given for it (offline_access)")
            raise SkahaCredentialsError(user.problem or "no refresh token")
        try:
            answer = await self._refresh_endpoint.post(
                {"grant_type": "refresh_token", "refresh_token": refresh_token}
            )
            fresh = token_set_from(answer, now=self._clock.now(), previous=refresh_token)
        except DeadGrantError as dead:
            self.failures += 1
            await self._give_up(account, user, f"{dead.error}: {dead.description}")
            raise SkahaCredentialsError(user.problem or dead.error) from None
        except (SkahaUnavailableError, ValueError) as failure:
            self.failures += 1
            reason = failure.message if isinstance(failure, SkahaUnavailableError) else str(failure)
            self._failed(account, user, reason)
            raise SkahaUnavailableError(reason) from None
        # Stored before use: once the IdP has rotated, the database must not keep the old one.
        await self._store.save(account, self._sealer.seal(fresh, problem=None))
        user.tokens = fresh
        user.outage = None
        user.failures = 0
        user.next_attempt = None
        self.refreshes += 1
        self._wake.set()

    def _failed(self, account: str, user: _User, reason: str) -> None:
        delay = retry_delay(self._settings.backoff, user.failures)
        user.failures += 1
        user.next_attempt = self._clock.now() + timedelta(seconds=delay)
        if user.outage is None:
            logger.warning(
                "cannot refresh a user's Skaha token; retrying with backoff",
                extra={"account": account, "reason": reason},
            )
        user.outage = reason

    async def _give_up(self, account: str, user: _User, reason: str) -> None:
        """The user's grant is dead: their sessions wait until they sign in again."""
        user.problem = (
            f"the identity provider refused the Skaha refresh token of {account} ({reason}): "
            "their sessions on Skaha wait until they sign in and accept a session again"
        )
        logger.error(
            "a user's Skaha credential was refused; they must sign in again",
            extra={"account": account, "reason": reason},
        )
        with contextlib.suppress(Exception):  # the mark survives a restart if it can be kept
            await self._store.save(account, self._sealer.seal(user.tokens, problem=user.problem))

    # -- the background loop ------------------------------------------------------------------

    async def _pass(self) -> float:
        """Refresh every user whose token is due, warn of ending refresh tokens, forget
        unused credentials; seconds until there is something to do again.
        """
        now = self._clock.now()
        wait = self._settings.cleanup_interval
        for account, user in list(self._users.items()):
            if user.problem is not None:
                continue
            self._warn_if_ending(account, user, now)
            due = user.next_attempt or user.tokens.refresh_due(self._settings.refresh_fraction)
            if due is None or user.tokens.refresh_token is None:
                continue
            if now >= due:
                with contextlib.suppress(SkahaUnavailableError):  # logged where it happened
                    await self.refresh(account, stale=user.tokens.access_token)
                due = user.next_attempt or user.tokens.refresh_due(self._settings.refresh_fraction)
            if due is not None:
                wait = min(wait, (due - self._clock.now()).total_seconds())
        if self._cleanup_due(now):
            await self._forget_unused(now)
        return max(wait, 0.05)

    def _cleanup_due(self, now: datetime) -> bool:
        last = self._last_cleanup
        interval = timedelta(seconds=self._settings.cleanup_interval)
        if last is not None and now - last < interval:
            return False
        self._last_cleanup = now
        return True

    async def _forget_unused(self, now: datetime) -> None:
        """Delete the credentials of users with no session that holds (none accepted,
        running or releasing), except those admitted moments ago.
        """
        in_use = await self._store.accounts_in_use()
        grace = self._settings.admit_grace
        for account, user in list(self._users.items()):
            if account in in_use:
                continue
            if user.admitted_at is not None and now - user.admitted_at < grace:
                continue
            await self._store.delete(account)
            self._users.pop(account, None)
            logger.info(
                "a user's Skaha credential forgotten: no session needs it",
                extra={"account": account},
            )
            if self._on_forget is not None:
                result = self._on_forget(account)
                if result is not None:
                    await result

    def _warn_if_ending(self, account: str, user: _User, now: datetime) -> None:
        end = refresh_token_expiry(user.tokens.refresh_token)
        if end is None or end - now > self._settings.refresh_warning or user.warned == end:
            return
        user.warned = end
        logger.warning(
            "a user's Skaha refresh token ends soon; they must sign in again before then",
            extra={"account": account, "expires_at": end.isoformat()},
        )


def describe(credentials: UserCredentials) -> dict[str, Any]:
    """What ``/healthz`` says about the users' credentials."""
    return {
        "platform_identity": "per-user",
        "users_with_credentials": len(credentials.accounts()),
        "users_to_log_in_again": credentials.to_log_in_again(),
        "refresh_tokens_expiring": credentials.expiring(),
    }
