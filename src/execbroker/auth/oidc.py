"""JWT bearer tokens from an OpenID Connect issuer, checked against its published keys.

The issuer's discovery document names its JWKS; keys are cached by ``kid``. A token signed
with a key not in the cache makes the verifier fetch the JWKS again (key rotation), at most
once every ``jwks_refresh`` seconds, so that a stream of tokens with made-up key ids cannot
turn the broker into a load generator against the issuer; and at least every
``jwks_max_age`` seconds, so that a key the issuer withdrew stops working. Only asymmetric
algorithms are accepted; ``iss``, ``aud`` and ``exp`` are required, ``nbf`` honoured, with a
small leeway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt

from execbroker.exceptions import ServiceUnavailableError, UnauthorizedError

__all__ = ["OIDCVerifier"]

logger = logging.getLogger(__name__)

_MAX_TOKEN_LENGTH = 16_384


class OIDCVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        username_claim: str = "preferred_username",
        algorithms: list[str] | None = None,
        leeway: float = 30,
        jwks_refresh: float = 30,
        jwks_max_age: float = 600,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._audience = audience
        self._claim = username_claim
        self._algorithms = algorithms or ["RS256", "ES256"]
        self._leeway = leeway
        self._jwks_refresh = jwks_refresh
        self._jwks_max_age = jwks_max_age
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self._owns_http = http is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def username(self, token: str) -> str:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise UnauthorizedError("The bearer token is too long to be a JWT", invalid_token=True)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("The bearer token is not a JWT", invalid_token=True) from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise UnauthorizedError(
                "Tokens signed with {alg} are not accepted",
                {"alg": algorithm},
                invalid_token=True,
            )
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("The bearer token has expired", invalid_token=True) from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError(
                "The bearer token is not valid yet", invalid_token=True
            ) from None
        except jwt.InvalidAudienceError:
            raise UnauthorizedError(
                "The bearer token is not meant for this broker (audience)", invalid_token=True
            ) from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError(
                "The bearer token comes from another issuer", invalid_token=True
            ) from None
        except jwt.PyJWTError as problem:
            raise UnauthorizedError(
                "The bearer token is not valid: {reason}", {"reason": problem}, invalid_token=True
            ) from None
        user = claims.get(self._claim)
        if not isinstance(user, str) or not user:
            raise UnauthorizedError(
                "The bearer token has no {claim} claim naming the user",
                {"claim": self._claim},
                invalid_token=True,
            )
        return user

    async def _key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str):
            raise UnauthorizedError("The bearer token names no key (kid)", invalid_token=True)
        found = self._keys.get(kid) if self._fresh() else None
        if found is not None:
            return found
        async with self._lock:
            found = self._keys.get(kid) if self._fresh() else None
            if found is None and self._may_refetch():
                await self._fetch()
                found = self._keys.get(kid)
        if found is None:
            raise UnauthorizedError(
                "The bearer token is signed with a key the issuer does not publish",
                invalid_token=True,
            )
        return found

    def _fresh(self) -> bool:
        """Keys are read again now and then, so that one the issuer withdrew stops working."""
        return self._fetched_at is not None and (
            time.monotonic() - self._fetched_at < self._jwks_max_age
        )

    def _may_refetch(self) -> bool:
        return self._fetched_at is None or (
            time.monotonic() - self._fetched_at >= self._jwks_refresh
        )

    async def _fetch(self) -> None:
        """Read discovery (once) and the JWKS; 503 while the issuer cannot be reached."""
        try:
            if self._jwks_uri is None:
                answer = await self._http.get(f"{self._issuer}/.well-known/openid-configuration")
                answer.raise_for_status()
                discovery = answer.json()
                if str(discovery.get("issuer", "")).rstrip("/") != self._issuer:
                    logger.error(
                        "OIDC discovery names issuer %r, not the configured %r",
                        discovery.get("issuer"),
                        self._issuer,
                    )
                    raise ServiceUnavailableError("The identity provider is misconfigured")
                self._jwks_uri = str(discovery["jwks_uri"])
            answer = await self._http.get(self._jwks_uri)
            answer.raise_for_status()
            keys = jwt.PyJWKSet.from_dict(answer.json())
        except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWKSetError) as problem:
            logger.warning("cannot read the OIDC issuer's keys: %s", type(problem).__name__)
            raise ServiceUnavailableError(
                "The identity provider cannot be reached to check the token; try again"
            ) from None
        self._keys = {key.key_id: key for key in keys.keys if key.key_id}
        self._fetched_at = time.monotonic()
        logger.info("OIDC keys read: %d", len(self._keys))

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()
