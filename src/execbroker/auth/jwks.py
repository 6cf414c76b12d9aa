"""An OIDC issuer's signing keys, kept usable while the issuer fails.

The issuer's discovery document names its JWKS; the keys are cached by ``kid``. The cache
is built to stay cheap for the broker and for the issuer when the issuer is slow or down:

- **One fetch at a time.** A fetch runs as one task that every request needing it shares;
  a request waits for it at most ``wait`` seconds, then is answered (503) while the fetch
  goes on up to its own ``timeout``. No request ever queues behind another's timeout.
- **Every attempt counts.** Fetches are at least ``refresh`` seconds apart, failed ones
  included, and after consecutive failures the gap grows (1, 2, 4 … up to 60 s). A stream
  of tokens with made-up key ids therefore costs the issuer one fetch per gap, healthy or not.
- **Fresh, stale, expired.** Keys younger than ``max_age`` are used as they are. Older ones
  are still used, at once, while a refresh runs behind (stale-if-error): for ``stale_grace``
  seconds more if the issuer cannot be reached, so an outage of the issuer is not an outage
  of the broker. Past that, requests are answered 503 naming the reason. A key the issuer
  withdrew stops working at the first successful refresh after ``max_age``.

Transport: the issuer and the JWKS it names must be ``https://`` except on loopback
(``localhost``, 127.0.0.0/8, ``::1``): anyone on the path of a plain-http JWKS could publish
a key and mint tokens for any user.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import jwt

from execbroker.exceptions import ServiceUnavailableError, UnauthorizedError

__all__ = ["IssuerKeys", "insecure_url_problem"]

logger = logging.getLogger(__name__)

_LONGEST_BACKOFF = 60.0


def insecure_url_problem(url: str) -> str | None:
    """Why ``url`` may not carry an issuer's keys, or None: it must be https, or plain http
    to a loopback host.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "is not a URL"
    if not host:
        return "names no host"
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return f"must be https:// (not {parts.scheme or 'a relative URL'})"
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return "must be https:// unless the host is loopback (localhost, 127.0.0.1, ::1)"


class _UnusableIssuerError(Exception):
    """The issuer answered, but not with what the broker can use; the text says what."""


class IssuerKeys:
    """The signing keys of one issuer; ``key(kid)`` or a 401/503 naming the reason."""

    def __init__(
        self,
        *,
        issuer: str,
        http: httpx.AsyncClient,
        refresh: float = 30,
        max_age: float = 600,
        stale_grace: float = 86_400,
        timeout: float = 5,
        wait: float = 1.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._http = http
        self._refresh = refresh
        self._max_age = max_age
        self._stale_grace = stale_grace
        self._timeout = timeout
        self._wait = wait
        self._now = monotonic
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None  # last success
        self._attempted_at: float | None = None  # last attempt, failed or not
        self._failures = 0  # consecutive
        self._problem: str | None = None  # of the last failed attempt
        self._task: asyncio.Task[None] | None = None

    async def key(self, kid: str) -> jwt.PyJWK:
        now = self._now()
        age = self._age(now)
        found = self._keys.get(kid)
        if found is not None and age < self._max_age:
            return found
        if found is not None and age < self._max_age + self._stale_grace:
            self._start_fetch(now)  # behind the answer: the caller does not wait for it
            return found
        task = self._start_fetch(now)
        if task is not None:
            # shield: a waiter that gives up (or whose client leaves) does not end the fetch
            # the others share.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self._wait)
        now = self._now()
        if self._age(now) < self._max_age + self._stale_grace:
            found = self._keys.get(kid)
            if found is not None:
                return found
        raise self._refusal(now)

    def _age(self, now: float) -> float:
        return math.inf if self._fetched_at is None else now - self._fetched_at

    def _next_attempt(self) -> float:
        if self._attempted_at is None:
            return -math.inf
        gap = self._refresh
        if self._failures:
            gap = max(gap, min(2.0 ** (self._failures - 1), _LONGEST_BACKOFF))
        return self._attempted_at + gap

    def _start_fetch(self, now: float) -> asyncio.Task[None] | None:
        """The fetch in flight, or a new one if the gap since the last attempt allows."""
        if self._task is not None and not self._task.done():
            return self._task
        if now < self._next_attempt():
            return None
        self._attempted_at = now
        self._task = asyncio.create_task(self._fetch(), name="oidc-jwks-fetch")
        return self._task

    def _refusal(self, now: float) -> UnauthorizedError | ServiceUnavailableError:
        fetching = self._task is not None and not self._task.done()
        usable = self._age(now) < self._max_age + self._stale_grace
        if usable and not fetching and not self._failures:
            return UnauthorizedError(
                "The bearer token is signed with a key the issuer does not publish",
                invalid_token=True,
            )
        problem = self._problem or "it has not answered yet"
        if fetching and self._problem:
            problem += "; it is being asked again"
        if usable:
            error = ServiceUnavailableError(
                "The identity provider cannot be reached to read a new signing key "
                "({problem}); try again",
                {"problem": problem},
            )
        elif self._fetched_at is None:
            error = ServiceUnavailableError(
                "The identity provider cannot be reached to read its signing keys "
                "({problem}); try again",
                {"problem": problem},
            )
        else:
            error = ServiceUnavailableError(
                "The identity provider's signing keys were last read {age} s ago, longer "
                "than oidc_jwks_max_age + oidc_jwks_stale_grace allow, and it cannot be "
                "reached now ({problem}); try again",
                {"age": round(self._age(now)), "problem": problem},
            )
        error.retry_after = max(1, math.ceil(self._next_attempt() - now))
        return error

    async def _fetch(self) -> None:
        """One attempt; records its outcome and never raises (it runs as a shared task)."""
        try:
            async with asyncio.timeout(self._timeout):
                keys = await self._read()
        except TimeoutError:
            problem = f"no answer within {self._timeout:g} s"
        except (jwt.PyJWKSetError, jwt.PyJWKError):
            problem = "its JWKS holds no usable key"
        except _UnusableIssuerError as failure:
            problem = str(failure)
            logger.error("the OIDC issuer cannot be used: %s", problem)  # noqa: TRY400
        except Exception as failure:
            # Waiters share this task: anything raised here would be a 500 for each of them.
            problem = _describe(failure)
        else:
            self._keys = keys
            self._fetched_at = self._now()
            self._failures, self._problem = 0, None
            logger.info("OIDC keys read: %d", len(keys))
            return
        self._failures += 1
        self._problem = problem
        age = self._age(self._now())
        logger.warning(
            "cannot read the OIDC issuer's keys (attempt %d in a row failed: %s); %s",
            self._failures,
            problem,
            "the keys read last are still used"
            if age < self._max_age + self._stale_grace
            else "no keys are usable",
        )

    async def _read(self) -> dict[str, jwt.PyJWK]:
        if self._jwks_uri is None:
            answer = await self._http.get(f"{self._issuer}/.well-known/openid-configuration")
            answer.raise_for_status()
            discovery = answer.json()
            if not isinstance(discovery, dict):
                raise _UnusableIssuerError("its discovery document is not a JSON object")
            if str(discovery.get("issuer", "")).rstrip("/") != self._issuer:
                raise _UnusableIssuerError("its discovery document names another issuer")
            uri = str(discovery["jwks_uri"])
            problem = insecure_url_problem(uri)
            if problem is not None:
                raise _UnusableIssuerError(f"the jwks_uri of its discovery document {problem}")
            self._jwks_uri = uri
        answer = await self._http.get(self._jwks_uri)
        answer.raise_for_status()
        found = jwt.PyJWKSet.from_dict(answer.json())
        return {key.key_id: key for key in found.keys if key.key_id}

    async def aclose(self) -> None:
        """End a fetch still in flight (from the app's lifespan)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _describe(failure: Exception) -> str:
    if isinstance(failure, httpx.HTTPStatusError):
        return f"HTTP {failure.response.status_code}"
    if isinstance(failure, httpx.HTTPError):
        return type(failure).__name__
    return f"not a discovery document or JWKS ({type(failure).__name__})"
