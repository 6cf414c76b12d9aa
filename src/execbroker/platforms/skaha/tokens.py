"""The broker's Skaha credentials, kept fresh for days without anyone watching.

The Java broker read a bearer token from a file on every call and died in a demo when it
expired (PRIOR-ART.md, defect 11). Here:

- the token file (JSON: ``access_token``, ``refresh_token``, ``expires_at``) is read at
  start-up, and again whenever someone else replaces it (an operator with a new token);
- a background task refreshes the access token at ``refresh_fraction`` of its lifetime with
  the OIDC ``refresh_token`` grant (token endpoint from the issuer's discovery document,
  ``client_secret_basic``); an expired token is refreshed before use; callers that need a
  refresh at the same moment share one;
- a rotated refresh token replaces the old one in memory and in the file at once (written
  to a temporary file, owner-only, fsynced, renamed over the old one): a crash right after a
  rotation does not lose the only valid refresh token;
- ``invalid_grant`` (the refresh token is dead: revoked, expired, already used) makes the
  credentials *unusable*: :attr:`TokenManager.problem` says what the operator must do, it is
  logged once, and callers get :class:`SkahaCredentialsError` (nothing fails for it; steps
  wait) until a new token file appears;
- an identity provider that is down or erring is retried with backoff, keeping the refresh
  token: a 5xx or a timeout says nothing about the token.

No token or secret is ever logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
from pydantic import SecretStr

from execbroker.background import BackgroundTaskManager, Wake
from execbroker.clock import Clock
from execbroker.platforms.skaha.errors import (
    SkahaCredentialsError,
    SkahaUnavailableError,
    TokenFileError,
)

__all__ = [
    "EXPIRY_MARGIN",
    "DeadGrantError",
    "TokenEndpoint",
    "TokenManager",
    "TokenSet",
    "read_token_file",
    "refresh_token_expiry",
    "retry_delay",
    "token_set_from",
    "write_token_file",
]

logger = logging.getLogger(__name__)

# Refresh an access token this close to its expiry before using it, whatever the schedule.
EXPIRY_MARGIN = timedelta(seconds=2)
# OAuth errors that mean the grant itself is unusable: retrying will not help.
_DEAD_GRANT = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "unsupported_grant_type"}
)


@dataclass(frozen=True)
class TokenSet:
    """An access token, the refresh token that renews it, and when the access token ends."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    obtained_at: datetime

    def refresh_due(self, fraction: float) -> datetime | None:
        """When to refresh: ``fraction`` of the way from obtaining it to its expiry."""
        if self.expires_at is None:
            return None
        lifetime = max(self.expires_at - self.obtained_at, timedelta(0))
        return self.obtained_at + lifetime * fraction

    def about_to_expire(self, now: datetime, fraction: float) -> bool:
        """Whether to refresh before using it, whatever the schedule: within a little of its
        expiry, and well after the background refresh (at ``fraction``) was due.
        """
        if self.expires_at is None:
            return False
        lifetime = max(self.expires_at - self.obtained_at, timedelta(0))
        margin = min(EXPIRY_MARGIN, lifetime * (1 - fraction) / 2)
        return now >= self.expires_at - margin


def retry_delay(backoff: tuple[float, float], failures: int) -> float:
    """Seconds before trying a refresh again after ``failures`` failed ones in a row:
    doubling from the first of ``backoff`` up to its longest.
    """
    first, longest = backoff
    return min(longest, first * 2.0**failures)


def _jwt_expiry(token: str) -> datetime | None:
    """The ``exp`` of a JWT access token, read without verifying it (only to schedule)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None


def refresh_token_expiry(token: str | None) -> datetime | None:
    """When a refresh token ends, if it is a JWT that says (SKA IAM's are, unsigned):
    read without verifying, only to warn ahead. None for an opaque one.
    """
    return _jwt_expiry(token) if token else None


def token_set_from(answer: Mapping[str, Any], *, now: datetime, previous: str | None) -> TokenSet:
    """The tokens in a token endpoint's answer, obtained ``now``; the refresh token is the
    rotated one if the answer has one, else ``previous``. ValueError without an access token.
    """
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise ValueError("the identity provider's token answer has no access_token")
    rotated = answer.get("refresh_token")
    expires_in = answer.get("expires_in")
    # The earlier of what the answer says and what the token says (a JWT's exp is in
    # whole seconds from its issue time, so it can come up to a second sooner).
    candidates = [_jwt_expiry(access)]
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        candidates.append(now + timedelta(seconds=float(expires_in)))
    return TokenSet(
        access_token=access,
        refresh_token=rotated if isinstance(rotated, str) and rotated else previous,
        expires_at=min((c for c in candidates if c is not None), default=None),
        obtained_at=now,
    )


def _parse_expiry(value: object) -> datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise ValueError("expires_at must be an ISO-8601 time or Unix seconds")


def read_token_file(path: Path, *, now: datetime) -> tuple[TokenSet, dict[str, Any]]:
    """The tokens in ``path`` and the whole document (other keys are kept on rewrite)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenFileError(f"the Skaha token file {path} does not exist") from None
    except (OSError, ValueError) as failure:
        raise TokenFileError(
            f"the Skaha token file {path} is not readable JSON ({type(failure).__name__})"
        ) from None
    if not isinstance(document, dict):
        raise TokenFileError(f"the Skaha token file {path} must hold a JSON object")
    access = document.get("access_token")
    refresh = document.get("refresh_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenFileError(f"the Skaha token file {path} has no access_token")
    if refresh is not None and not isinstance(refresh, str):
        raise TokenFileError(f"the refresh_token in {path} must be a string")
    try:
        expires = _parse_expiry(document.get("expires_at"))
    except ValueError as failure:
        raise TokenFileError(f"{path}: {failure}") from None
    stated = [expires, _jwt_expiry(access.strip())]
    tokens = TokenSet(
        access_token=access.strip(),
        refresh_token=refresh.strip() if refresh and refresh.strip() else None,
        expires_at=min((moment for moment in stated if moment is not None), default=None),
        obtained_at=now,
    )
    return tokens, document


def write_token_file(path: Path, document: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with ``document``, readable by its owner only."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


class DeadGrantError(Exception):
    """The identity provider refused a grant for good (``error`` and its description, as
    the provider said them): retrying will not help.
    """

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


class TokenEndpoint:
    """The issuer's token endpoint (found from its discovery document), with the client's
    authentication (``client_secret_basic``, or ``client_id`` alone for a public client).

    :meth:`post` answers the token document, raises :class:`DeadGrantError` for a refusal
    that retrying will not change and :class:`SkahaUnavailableError` for anything that
    may pass (unreachable, a 5xx). Shared by the broker's and the users' credentials.
    """

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        issuer: str | None,
        client_id: str | None,
        client_secret: SecretStr | None,
        refusals: frozenset[str] = _DEAD_GRANT,
    ) -> None:
        self._http = http
        self._issuer = issuer.rstrip("/") if issuer else None
        self._client_id = client_id
        self._client_secret = client_secret
        self._refusals = refusals
        self._url: str | None = None

    @property
    def issuer(self) -> str | None:
        return self._issuer

    def forget(self) -> None:
        """Discover the endpoint again before the next call."""
        self._url = None

    async def post(self, form: Mapping[str, str]) -> dict[str, Any]:
        """The endpoint's answer to the grant in ``form``."""
        endpoint = await self._endpoint()
        fields = dict(form)
        headers = {"Accept": "application/json"}
        if self._client_secret is not None and self._client_id:
            # RFC 6749 §2.3.1: both parts form-urlencoded, then base64.
            pair = f"{quote_plus(self._client_id)}:"
            pair += quote_plus(self._client_secret.get_secret_value())
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif self._client_id:
            fields["client_id"] = self._client_id
        try:
            response = await self._http.post(endpoint, data=fields, headers=headers)
        except httpx.TransportError as failure:
            raise SkahaUnavailableError(
                f"the identity provider cannot be reached ({type(failure).__name__})"
            ) from None
        body = _json_object(response)
        if response.is_success:
            return body
        error = str(body.get("error", ""))
        if 400 <= response.status_code < 500 and error in self._refusals:
            description = str(body.get("error_description", "")).strip() or "no reason given"
            raise DeadGrantError(error, description[:300])
        raise SkahaUnavailableError(
            f"the identity provider answered HTTP {response.status_code}"
            + (f" ({error[:60]})" if error else ""),
            status=response.status_code,
        )

    async def _endpoint(self) -> str:
        if self._url is not None:
            return self._url
        if self._issuer is None:
            raise SkahaUnavailableError("no OIDC issuer is set (skaha_oidc_issuer)")
        url = f"{self._issuer}/.well-known/openid-configuration"
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.TransportError as failure:
            raise SkahaUnavailableError(
                f"the identity provider cannot be reached ({type(failure).__name__})"
            ) from None
        if not response.is_success:
            raise SkahaUnavailableError(
                f"the identity provider's discovery document answered HTTP {response.status_code}",
                status=response.status_code,
            )
        endpoint = _json_object(response).get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise SkahaUnavailableError("the discovery document names no token_endpoint")
        self._url = endpoint
        return endpoint


class TokenManager:
    """Hands out the current access token; refreshes it ahead of time and on demand.

    ``token_file`` is the credential store; ``issuer`` (with ``client_id`` and optionally
    ``client_secret``) makes refreshing possible. ``backoff`` is the first and the longest
    wait after a failed refresh; ``file_check`` how often the file is looked at for an
    operator's replacement.
    """

    def __init__(
        self,
        *,
        token_file: Path,
        http: httpx.AsyncClient,
        clock: Clock,
        background: BackgroundTaskManager,
        issuer: str | None = None,
        client_id: str | None = None,
        client_secret: SecretStr | None = None,
        refresh_fraction: float = 0.8,
        backoff: tuple[float, float] = (1.0, 60.0),
        file_check: float = 5.0,
    ) -> None:
        self._path = token_file
        self._http = http
        self._clock = clock
        self._issuer = issuer.rstrip("/") if issuer else None
        self._client_id = client_id
        self._client_secret = client_secret
        self._fraction = refresh_fraction
        self._backoff = backoff
        self._file_check = file_check
        self._tokens: TokenSet | None = None
        self._document: dict[str, Any] = {}
        self._signature: tuple[int, int, int] | None = None
        self._endpoint = TokenEndpoint(
            http=http, issuer=self._issuer, client_id=client_id, client_secret=client_secret
        )
        self._lock = asyncio.Lock()
        self._background = background
        self._wake = Wake()
        self._problem: str | None = None  # the credentials are dead: what to do
        self._outage: str | None = None  # the IdP fails: refreshing is retried
        self._failures = 0
        self._next_attempt: datetime | None = None
        self.refreshes = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the token file (a missing or malformed one is a configuration error) and
        start refreshing in the background.
        """
        self._load()
        if self._tokens is not None and self._tokens.refresh_token and not self._can_refresh:
            logger.warning(
                "Skaha tokens cannot be refreshed: set skaha_oidc_issuer and skaha_client_id"
            )
        self._background.loop("skaha-tokens", self._pass, retry=self._backoff[0], wake=self._wake)

    @property
    def problem(self) -> str | None:
        """Why the credentials cannot be used at all (an operator must act), or None."""
        return self._problem

    @property
    def outage(self) -> str | None:
        """Why refreshing fails for now (it is retried), or None."""
        return self._outage

    @property
    def expired(self) -> bool:
        tokens = self._tokens
        return (
            tokens is not None
            and tokens.expires_at is not None
            and self._clock.now() >= tokens.expires_at
        )

    @property
    def refresh_expires_at(self) -> datetime | None:
        """When the refresh token ends, if it is a JWT that says so (SKA IAM's are)."""
        tokens = self._tokens
        return refresh_token_expiry(tokens.refresh_token) if tokens is not None else None

    @property
    def _can_refresh(self) -> bool:
        return bool(self._issuer and self._client_id)

    # -- what callers use ---------------------------------------------------------------

    async def access_token(self) -> str:
        """The current access token; refreshed first when it is about to expire."""
        if self._problem is not None:
            self._reload_if_replaced()
            if self._problem is not None:
                raise SkahaCredentialsError(self._problem)
        tokens = self._current()
        if tokens.about_to_expire(self._clock.now(), self._fraction):
            await self.refresh(stale=tokens.access_token)
            tokens = self._current()
        return tokens.access_token

    async def refresh(self, *, stale: str | None = None) -> None:
        """Get a new access token, unless ``stale`` is no longer the current one (someone
        else refreshed meanwhile). Concurrent callers wait for one refresh.
        """
        async with self._lock:
            if stale is not None and self._current().access_token != stale:
                return
            if self._problem is not None:
                raise SkahaCredentialsError(self._problem)
            now = self._clock.now()
            if self._next_attempt is not None and now < self._next_attempt:
                raise SkahaUnavailableError(
                    self._outage or "the identity provider is not answering",
                    retry_after=self._next_attempt - now,
                )
            await self._refresh_now()

    def _current(self) -> TokenSet:
        if self._tokens is None:
            raise SkahaCredentialsError("the Skaha token file has not been read")
        return self._tokens

    # -- refreshing ---------------------------------------------------------------------

    async def _refresh_now(self) -> None:
        tokens = self._current()
        if tokens.refresh_token is None or not self._can_refresh:
            # Skaha also refuses good tokens while it cannot reach the IdP: not dead yet.
            why = (
                "the token file holds no refresh_token"
                if tokens.refresh_token is None
                else "skaha_oidc_issuer or skaha_client_id is not set"
            )
            self._failed(
                f"the access token was refused or has expired and cannot be refreshed "
                f"({why}); write a new one to {self._path}"
            )
            raise SkahaUnavailableError(self._outage or why)
        try:
            answer = await self._grant(tokens.refresh_token)
        except DeadGrantError as dead:
            self._give_up(
                f"the identity provider {self._issuer} refused the Skaha refresh token "
                f"({dead.error}: {dead.description})"
            )
            raise SkahaCredentialsError(self._problem or dead.error) from None
        except SkahaUnavailableError as failure:
            self._failed(failure.message)
            raise
        try:
            fresh = token_set_from(answer, now=self._clock.now(), previous=tokens.refresh_token)
        except ValueError as failure:
            self._failed(str(failure))
            raise SkahaUnavailableError(self._outage or str(failure)) from None
        # Persist before use: once the IdP has rotated, the file must not keep the dead one.
        await self._persist(fresh)
        self._tokens = fresh
        self.refreshes += 1
        if self._outage is not None:
            logger.info("identity provider answering again; Skaha token refreshed")
        self._outage = None
        self._failures = 0
        self._next_attempt = None
        self._wake.set()
        logger.debug(
            "Skaha access token refreshed",
            extra={"expires_at": fresh.expires_at.isoformat() if fresh.expires_at else None},
        )

    async def _grant(self, refresh_token: str) -> dict[str, Any]:
        """The token endpoint's answer to a refresh_token grant."""
        return await self._endpoint.post(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    def _failed(self, reason: str) -> None:
        """A refresh failed for a reason that may pass: back off, keep the refresh token."""
        delay = retry_delay(self._backoff, self._failures)
        self._failures += 1
        self._next_attempt = self._clock.now() + timedelta(seconds=delay)
        if self._outage is None:
            logger.warning(
                "cannot refresh the Skaha token; retrying with backoff, refresh token kept",
                extra={"reason": reason},
            )
        self._outage = reason

    def _give_up(self, reason: str) -> None:
        """The credentials are dead: say once, clearly, what the operator must do."""
        message = (
            f"Skaha is unavailable: {reason}. Sessions on Skaha are neither started nor "
            f"followed until an operator writes new tokens to {self._path} (see "
            f"docs/skaha.md, e.g. from the OIDC device flow); the broker reads the file "
            f"again without a restart."
        )
        if self._problem != message:
            logger.error(message)
        self._problem = message
        self._wake.set()

    # -- the file -------------------------------------------------------------------------

    def _load(self) -> None:
        tokens, document = read_token_file(self._path, now=self._clock.now())
        mode = self._path.stat().st_mode & 0o777
        if mode & 0o077:
            logger.warning(
                "the Skaha token file is readable by others; chmod 600 it",
                extra={"path": str(self._path), "mode": oct(mode)},
            )
        self._tokens = tokens
        self._document = document
        self._signature = _signature(self._path)

    def _reload_if_replaced(self) -> bool:
        """Read the file again if someone other than us has replaced it since."""
        signature = _signature(self._path)
        if signature is None or signature == self._signature:
            return False
        try:
            self._load()
        except TokenFileError as failure:
            self._signature = signature  # do not retry until it changes again
            logger.error("new Skaha token file not read: %s", failure.message)  # noqa: TRY400
            return False
        logger.info("Skaha token file replaced; using the new tokens")
        self._endpoint.forget()  # the issuer may have moved too: discover again
        self._problem = None
        self._outage = None
        self._failures = 0
        self._next_attempt = None
        self._wake.set()
        return True

    async def _persist(self, tokens: TokenSet) -> None:
        document = dict(self._document)
        document["access_token"] = tokens.access_token
        if tokens.refresh_token is not None:
            document["refresh_token"] = tokens.refresh_token
        if tokens.expires_at is not None:
            document["expires_at"] = tokens.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            await asyncio.to_thread(write_token_file, self._path, document)
        except OSError as failure:
            # The new tokens still work in memory; a restart would find the old ones.
            logger.error(  # noqa: TRY400 - the reason is all there is to say
                "cannot write the Skaha token file; a restart would lose the rotated token",
                extra={"path": str(self._path), "reason": type(failure).__name__},
            )
            return
        self._document = document
        self._signature = _signature(self._path)

    # -- the background task ---------------------------------------------------------------

    async def _pass(self) -> float:
        """One pass of the background loop: :meth:`_step`, at least 10 ms apart."""
        return max(await self._step(), 0.01)

    async def _step(self) -> float:
        """Refresh if it is time; seconds until there is something to do again."""
        self._reload_if_replaced()
        if self._problem is not None:
            return self._file_check
        tokens = self._current()
        now = self._clock.now()
        due = tokens.refresh_due(self._fraction)
        if self._next_attempt is not None:
            due = self._next_attempt
        if due is None or tokens.refresh_token is None or not self._can_refresh:
            return self._file_check
        if now >= due:
            with contextlib.suppress(SkahaUnavailableError):  # logged where it happened
                await self.refresh(stale=tokens.access_token)
            return 0.0 if self._next_attempt is None else self._until(self._next_attempt)
        return min(self._file_check, self._until(due))

    def _until(self, moment: datetime) -> float:
        return max((moment - self._clock.now()).total_seconds(), 0.0)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
