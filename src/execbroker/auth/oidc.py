"""JWT bearer tokens from an OpenID Connect issuer, checked against its published keys.

The keys and how they are kept while the issuer fails: :mod:`execbroker.auth.jwks`.

What a token must be to be accepted:

- signed with an asymmetric algorithm of ``algorithms`` by a key the issuer publishes;
- **type**: the JOSE header's ``typ`` absent, ``JWT`` or ``at+jwt`` (RFC 9068; also as
  ``application/at+jwt``, any case); with ``require_at_jwt`` only ``at+jwt``. Any other type
  (an ID token or logout token of an issuer that types them, ``JOSE``…) and any ``cty``
  (nested tokens) are refused;
- ``iss`` the configured issuer, ``aud`` holding the configured audience, ``sub`` present;
- ``exp`` required; ``exp``, ``nbf`` and ``iat`` JSON numbers (not strings, not booleans,
  finite), checked with ``leeway``; ``exp`` at most ``max_lifetime`` seconds ahead, so a
  token mis-issued for years does not live for years here;
- with ``authorized_parties``: ``azp`` (or, without one, RFC 9068's ``client_id``) one of
  them, so that a token issued to another client (say an ID token whose ``aud`` happens to
  be this broker's) is refused.

Who it names: the **owner key** is ``owner_claim`` (``sub`` by default: immutable and never
reassigned by the issuer). A broker trusts one issuer, so ``sub`` alone is unique; it is not
prefixed with ``iss``, which keeps keys short and lets ``admins`` list plain ``sub`` values.
The **display name** is ``display_claim`` (``preferred_username``), shown in messages only;
the key is shown where the token has no usable one. Where a site keys owners by a name claim
instead, each name is bound to the first ``sub`` seen with it (:mod:`execbroker.auth.bindings`).
Names are checked where they enter (:func:`execbroker.auth.identity.username_problem`).

**Verified once.** A token that passed every check is remembered by its SHA-256 digest (never
the token itself), at most :data:`VERIFIED_CACHE_SIZE` of them, least recently used first out,
so that a client sending the same token on every request costs a digest and a lookup instead
of two parses and a signature check. A remembered token is accepted only while:

- its ``exp`` (with the leeway) has not passed: past it the token is checked again, and
  refused as expired;
- the key that signed it is still the issuer's, as :class:`~execbroker.auth.jwks.IssuerKeys`
  holds it now (asked on every request, as without the cache): a withdrawn key, or keys too
  old to use while the issuer is down, refuse it as they refuse a token seen for the first
  time; keys read again make it checked again once;
- with a name claim as the owner key, the name is still bound to its ``sub``.

Nothing else a check looks at changes with time: a token that was not too young and not
issued too far ahead stays so.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from execbroker.auth.bindings import NameBindings
from execbroker.auth.identity import Identity, username_problem
from execbroker.auth.jwks import IssuerKeys
from execbroker.exceptions import UnauthorizedError

__all__ = ["VERIFIED_CACHE_SIZE", "OIDCVerifier"]

VERIFIED_CACHE_SIZE = 10_000

_MAX_TOKEN_LENGTH = 16_384
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_PLAIN_TYPES = frozenset({"jwt", "application/jwt"})
_TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that passed every check: whom it names, until when, signed by which key."""

    identity: Identity
    subject: str
    until: float  # exp plus the leeway, in seconds since the epoch
    kid: str
    key: jwt.PyJWK


class OIDCVerifier:
    """Checks an OIDC issuer's JWT access tokens and says whose they are.

    The rules a token must meet are in this module's docstring; the issuer's keys come from
    :class:`~execbroker.auth.jwks.IssuerKeys`, which keeps serving the last keys read while the
    issuer is down, for a grace period.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        owner_claim: str = "sub",
        display_claim: str = "preferred_username",
        algorithms: list[str] | None = None,
        leeway: float = 30,
        max_lifetime: float = 86_400,
        require_at_jwt: bool = False,
        authorized_parties: Sequence[str] = (),
        bindings: NameBindings | None = None,
        jwks_refresh: float = 30,
        jwks_max_age: float = 600,
        jwks_stale_grace: float = 86_400,
        jwks_timeout: float = 5,
        jwks_wait: float = 1.5,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if owner_claim != "sub" and bindings is None:
            raise ValueError("a name claim as the owner key needs the name bindings")
        self._issuer = issuer.rstrip("/")
        self._audience = audience
        self._owner_claim = owner_claim
        self._display_claim = display_claim
        self._algorithms = algorithms or ["RS256", "ES256"]
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._types = _ACCESS_TOKEN_TYPES if require_at_jwt else _ACCESS_TOKEN_TYPES | _PLAIN_TYPES
        self._authorized_parties = frozenset(authorized_parties)
        self._bindings = bindings if owner_claim != "sub" else None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(jwks_timeout))
        self._owns_http = http is None
        self._verified: OrderedDict[bytes, _Verified] = OrderedDict()
        self._keys = IssuerKeys(
            issuer=issuer,
            http=self._http,
            refresh=jwks_refresh,
            max_age=jwks_max_age,
            stale_grace=jwks_stale_grace,
            timeout=jwks_timeout,
            wait=jwks_wait,
        )

    async def username(self, token: str) -> str:
        return (await self.identify(token)).key

    async def identify(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        verified = self._verified.get(digest)
        if verified is not None:
            # The key as it is now: withdrawn, or unusable while the issuer is down, raises.
            if time.time() < verified.until and await self._keys.key(verified.kid) is verified.key:
                if self._bindings is not None:
                    await self._bindings.check(verified.identity.key, verified.subject)
                self._verified.move_to_end(digest)
                return verified.identity
            del self._verified[digest]  # expired, or signed by keys read since: check again
        identity, remembered = await self._verify(token)
        self._verified[digest] = remembered
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return identity

    async def _verify(self, token: str) -> tuple[Identity, _Verified]:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise UnauthorizedError("The bearer token is too long to be a JWT", invalid_token=True)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise UnauthorizedError("The bearer token is not a JWT", invalid_token=True) from None
        algorithm = self._check_header(header)
        # Before PyJWT reads them: it converts with int(), so "1e12" or 10**400 would pass.
        self._check_times(unverified)
        key = await self._keys.key(header["kid"])
        claims = self._verified_claims(token, key, algorithm)
        self._check_party(claims)
        key_name = self._name(claims, self._owner_claim)
        if self._bindings is not None:
            await self._bindings.check(key_name, self._name(claims, "sub"))
        display = claims.get(self._display_claim)
        if not isinstance(display, str) or username_problem(display) is not None:
            display = key_name
        identity = Identity(key=key_name, display=display)
        # "exp" is required, and a number (checked above), by now.
        until = float(claims["exp"]) + self._leeway
        return identity, _Verified(identity, str(claims["sub"]), until, header["kid"], key)

    def _check_header(self, header: dict[str, Any]) -> str:
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise UnauthorizedError(
                "Tokens signed with {alg} are not accepted",
                {"alg": algorithm},
                invalid_token=True,
            )
        kind = header.get("typ")
        if kind is not None and (not isinstance(kind, str) or kind.lower() not in self._types):
            raise UnauthorizedError(
                "The bearer token's type (typ {typ}) is not that of an access token; "
                "this broker accepts {accepted}",
                {"typ": kind, "accepted": " or ".join(sorted(self._types))},
                invalid_token=True,
            )
        if "cty" in header:
            raise UnauthorizedError(
                "Nested tokens (a cty header) are not accepted", invalid_token=True
            )
        if not isinstance(header.get("kid"), str):
            raise UnauthorizedError("The bearer token names no key (kid)", invalid_token=True)
        return str(algorithm)

    def _check_times(self, claims: dict[str, Any]) -> None:
        for name in _TIME_CLAIMS:
            value = claims.get(name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                raise UnauthorizedError(
                    "The bearer token's {claim} is not a number of seconds",
                    {"claim": name},
                    invalid_token=True,
                )
        expires = claims.get("exp")
        # Compared, not subtracted: an int like 10**400 overflows a float subtraction.
        if expires is not None and expires > time.time() + self._max_lifetime + self._leeway:
            raise UnauthorizedError(
                "The bearer token expires further ahead than this broker accepts "
                "(oidc_max_token_lifetime: {limit} s)",
                {"limit": round(self._max_lifetime)},
                invalid_token=True,
            )

    def _verified_claims(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
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
        return claims

    def _check_party(self, claims: dict[str, Any]) -> None:
        if not self._authorized_parties:
            return
        party = claims.get("azp", claims.get("client_id"))
        if not isinstance(party, str) or party not in self._authorized_parties:
            raise UnauthorizedError(
                "The bearer token was issued to a client this broker does not accept (azp)",
                invalid_token=True,
            )

    @staticmethod
    def _name(claims: dict[str, Any], claim: str) -> str:
        value = claims.get(claim)
        if not isinstance(value, str) or not value:
            raise UnauthorizedError(
                "The bearer token has no {claim} claim naming the user",
                {"claim": claim},
                invalid_token=True,
            )
        problem = username_problem(value)
        if problem is not None:
            raise UnauthorizedError(
                "The bearer token's {claim} claim {problem}",
                {"claim": claim, "problem": problem},
                invalid_token=True,
            )
        return value

    async def aclose(self) -> None:
        await self._keys.aclose()
        if self._owns_http:
            await self._http.aclose()
