"""A fake OpenID Connect provider, served over real HTTP (fakes SKA IAM / INDIGO IAM).

It fakes what the broker and Skaha need from an identity provider: the discovery document,
the JWKS with RS256 keys that can be rotated, the token endpoint (``refresh_token`` and
``client_credentials`` grants with ``client_secret_basic`` or ``client_secret_post``),
``userinfo`` (how Skaha validates a token, SKAHA.md §2.2) and RFC 7009 revocation. Knobs make
it fail the way a real one does: down (503 with ``Retry-After``), hanging (discovery and the
JWKS answer nothing until the knob is cleared), the next N token calls answering 500, refresh
tokens revoked under the client's feet.

Serve it on its own::

    provider = FakeOIDCProvider()
    server = ServerThread(provider.app())
    provider.issuer = server.url  # the URL is known once the socket is bound
    with server: ...

or mount it inside another app (the fake Skaha does)::

    outer.mount("/oidc", provider.app())
    server = ServerThread(outer)
    provider.issuer = server.url + "/oidc"

Every URL in the discovery document is built from ``issuer``, never from the request, so the
mount prefix only has to be right in ``issuer``. ``issuer`` must be set before the first token
is minted or discovery is served.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["DEFAULT_CLIENTS", "DEFAULT_SCOPE", "FakeOIDCProvider"]

ALGORITHM = "RS256"
DEFAULT_SCOPE = "openid profile email offline_access"
DEFAULT_CLIENTS: Mapping[str, str] = {"execbroker": "execbroker-client-secret"}
"""The client registered when none are given: client id → client secret."""

# Stable ``sub`` values: IAM subjects are UUIDs, distinct from the username.
_SUBJECT_NAMESPACE = uuid.UUID("6f1c1d43-35a4-4a52-9d0c-2f3b1f0e7a10")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class _SigningKey:
    """One RS256 key pair and the ``kid`` it is published under."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, label: str) -> _SigningKey:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=f"{label}-{secrets.token_hex(4)}", private_key=private_key)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }


@dataclass
class _RefreshGrant:
    """What the provider remembers about one refresh token it issued."""

    username: str
    client_id: str
    scope: str
    expires_at: datetime
    revoked: bool = False
    rotated: bool = False
    audience: str | None = None  # of the access tokens it renews (None: the default)


class _OAuthError(Exception):
    """An RFC 6749 §5.2 error response, raised inside the endpoints."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        headers = dict(_NO_STORE)
        if self.error == "invalid_client":
            headers["WWW-Authenticate"] = 'Basic realm="fake-oidc"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


class FakeOIDCProvider:
    """All the state of one fake identity provider; ``app()`` serves it over HTTP.

    Thread-safe: the server runs in its own thread while tests call methods and flip knobs
    from theirs. Time comes from ``clock`` (aware UTC), for token lifetimes and for
    ``user_for``; PyJWT's own checks in a verifier still use real time.

    Knobs (plain attributes, set them at any time):

    * ``idp_down`` — every endpoint answers 503 with ``Retry-After: retry_after_seconds`` and
      ``user_for`` returns ``None`` for every token, as Skaha does when IAM is unreachable.
    * ``token_endpoint_failures`` — the next N calls to the token endpoint answer 500.
    * ``hanging`` — discovery and the JWKS answer nothing (the connection stays open) while
      it is set; clear it to let them answer, as a stalled IdP recovering does.
    * ``token_answer_delay`` — seconds the token endpoint holds a granted answer back: the
      grant (and a rotation) has happened, its answer is on its way, as over a slow network.

    Counters (read them in assertions): ``token_requests`` (every POST to the token
    endpoint, failed ones included), ``refresh_grants`` (successful refresh grants),
    ``exchange_grants`` (successful token exchanges), ``token_refusals`` (OAuth errors
    answered), ``client_credentials_grants``, ``discovery_requests``, ``jwks_requests``,
    ``userinfo_requests``.
    """

    def __init__(
        self,
        *,
        issuer: str | None = None,
        audience: str = "execbroker",
        access_token_ttl: timedelta = timedelta(minutes=5),
        refresh_token_ttl: timedelta = timedelta(days=30),
        rotate_refresh_tokens: bool = True,
        clients: Mapping[str, str] | None = None,
        username_claim: str = "preferred_username",
        clock: Callable[[], datetime] = _utc_now,
        exchange_audiences: Sequence[str] = (),
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clients: dict[str, str] = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.username_claim = username_claim
        self.clock = clock
        # RFC 8693 token exchange: the audiences it mints for (tokens for them are valid
        # too), and the users it refuses (access_denied).
        self.exchange_audiences: set[str] = set(exchange_audiences)
        self.exchange_denied: set[str] = set()

        self.idp_down = False
        self.hanging = False
        self.retry_after_seconds = 30
        self.token_endpoint_failures = 0
        self.token_answer_delay = 0.0

        self.token_requests = 0
        self.refresh_grants = 0
        self.client_credentials_grants = 0
        self.exchange_grants = 0
        self.token_refusals = 0  # token endpoint calls answered with an OAuth error
        # Every token it handed out (access and refresh), to check none leaks into a log.
        self.issued_tokens: list[str] = []
        self.discovery_requests = 0
        self.jwks_requests = 0
        self.userinfo_requests = 0

        self._lock = threading.Lock()
        self._key_serial = 1
        self._current_key = _SigningKey.generate("rsa1")
        self._published: list[_SigningKey] = [self._current_key]
        self._unpublished: _SigningKey | None = None
        self._refresh: dict[str, _RefreshGrant] = {}
        self._revoked_jtis: set[str] = set()

    # -- keys -----------------------------------------------------------------------------

    @property
    def current_kid(self) -> str:
        """The ``kid`` new tokens are signed with."""
        with self._lock:
            return self._current_key.kid

    def rotate_keys(self, *, keep_old: bool = True) -> str:
        """Sign from now on with a fresh key; publish the old ones too unless ``keep_old``.

        Returns the new ``kid``. With ``keep_old=False`` tokens signed earlier no longer verify.
        """
        with self._lock:
            self._key_serial += 1
            key = _SigningKey.generate(f"rsa{self._key_serial}")
            self._published = [*self._published, key] if keep_old else [key]
            self._current_key = key
            return key.kid

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK set, as served at ``/jwks``."""
        with self._lock:
            return {"keys": [key.public_jwk() for key in self._published]}

    def _unpublished_key(self) -> _SigningKey:
        with self._lock:
            if self._unpublished is None:
                self._unpublished = _SigningKey.generate("unpublished")
            return self._unpublished

    # -- tokens ---------------------------------------------------------------------------

    def subject_for(self, username: str) -> str:
        """The ``sub`` of ``username``: a stable UUID, like IAM's, not the username itself."""
        return str(uuid.uuid5(_SUBJECT_NAMESPACE, username))

    def mint(
        self,
        username: str,
        *,
        audience: str | Sequence[str] | None = None,
        lifetime: timedelta | None = None,
        not_before: datetime | None = None,
        issued_at: datetime | None = None,
        issuer: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        unpublished_key: bool = False,
        kid: str | None = None,
        extra_headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A signed JWT access token for ``username``; every default is a valid token.

        Override a field to make a bad one: ``lifetime=timedelta(0)`` or an old ``issued_at``
        (expired), ``not_before`` in the future, another ``audience`` or ``issuer``,
        ``unpublished_key=True`` (signed by a key not in the JWKS, under its own ``kid``
        unless ``kid`` names another, e.g. a published one, to forge a signature).
        ``extra_claims`` are merged last and win (``{"sub": …}`` for another person with the
        same name); ``extra_headers`` join the JOSE header (``{"typ": "at+jwt"}``).
        """
        issued = issued_at if issued_at is not None else self.clock()
        lifetime = lifetime if lifetime is not None else self.access_token_ttl
        key = self._unpublished_key() if unpublished_key else self._signing_key()
        claims: dict[str, Any] = {
            "iss": issuer if issuer is not None else self._require_issuer(),
            "sub": self.subject_for(username),
            "aud": self._audience_claim(audience),
            "iat": int(issued.timestamp()),
            "nbf": int((not_before if not_before is not None else issued).timestamp()),
            "exp": int((issued + lifetime).timestamp()),
            "jti": str(uuid.uuid4()),
            "preferred_username": username,
            self.username_claim: username,
        }
        claims.update(extra_claims or {})
        headers = {"kid": kid if kid is not None else key.kid, **(extra_headers or {})}
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)
        self.issued_tokens.append(token)
        return token

    def _audience_claim(self, audience: str | Sequence[str] | None) -> str | list[str]:
        if audience is None:
            return self.audience
        return audience if isinstance(audience, str) else [*audience]

    def _signing_key(self) -> _SigningKey:
        with self._lock:
            return self._current_key

    def _require_issuer(self) -> str:
        issuer = self.issuer
        if issuer is None:
            raise RuntimeError("FakeOIDCProvider.issuer is not set; set it to the served URL")
        return issuer

    def issue_refresh_token(
        self, username: str, client_id: str, *, scope: str = DEFAULT_SCOPE
    ) -> str:
        """A new opaque refresh token for ``username``, redeemable by ``client_id``."""
        if client_id not in self.clients:
            raise ValueError(f"unknown client {client_id!r}")
        grant = _RefreshGrant(
            username=username,
            client_id=client_id,
            scope=scope,
            expires_at=self.clock() + self.refresh_token_ttl,
        )
        token = self._refresh_jwt(grant)
        with self._lock:
            self._refresh[token] = grant
        return token

    def _refresh_jwt(self, grant: _RefreshGrant) -> str:
        """A refresh token as SKA IAM makes them: an unsigned JWT (``alg: none``) with its
        ``exp``; the provider still looks it up, so it cannot be forged by editing it.
        """
        claims = {
            "iss": self.issuer or "",
            "sub": self.subject_for(grant.username),
            "exp": int(grant.expires_at.timestamp()),
            "iat": int(self.clock().timestamp()),
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(claims, "", algorithm="none")
        self.issued_tokens.append(token)
        return token

    def refresh_tokens(self, username: str) -> list[str]:
        """The refresh tokens of ``username`` that still work (not revoked, not rotated)."""
        now = self.clock()
        with self._lock:
            return [
                token
                for token, grant in self._refresh.items()
                if grant.username == username
                and not grant.revoked
                and not grant.rotated
                and now < grant.expires_at
            ]

    def revoke_refresh_tokens(self, username: str | None = None) -> int:
        """Revoke the refresh tokens of ``username`` (everyone's if ``None``); returns how many.

        The next refresh grant with any of them gets ``invalid_grant``.
        """
        revoked = 0
        with self._lock:
            for grant in self._refresh.values():
                if (username is None or grant.username == username) and not grant.revoked:
                    grant.revoked = True
                    revoked += 1
        return revoked

    def user_for(self, token: str) -> str | None:
        """The username of a currently valid access token from this provider, else ``None``.

        Valid means: signed by a published key (found by ``kid``), the right ``iss`` and
        ``aud``, ``nbf <= now < exp`` by ``clock``, not revoked. Always ``None`` while
        ``idp_down``. This is what ``/userinfo`` answers from.
        """
        if self.idp_down:
            return None
        claims = self._verified_claims(token)
        if claims is None:
            return None
        username = claims.get(self.username_claim, claims.get("preferred_username"))
        return username if isinstance(username, str) else None

    def _verified_claims(self, token: str, *, any_audience: bool = False) -> dict[str, Any] | None:
        issuer = self.issuer
        if issuer is None:
            return None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        with self._lock:
            key = next((key for key in self._published if key.kid == kid), None)
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[ALGORITHM],
                audience=[self.audience, *self.exchange_audiences],
                issuer=issuer,
                # Time is checked below against the injected clock, not the real one.
                options={
                    "verify_aud": not any_audience,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "require": ["exp", "iat", "jti"],
                },
            )
        except jwt.PyJWTError:
            return None
        now = self.clock().timestamp()
        if not claims.get("nbf", claims["iat"]) <= now < claims["exp"]:
            return None
        with self._lock:
            if claims["jti"] in self._revoked_jtis:
                return None
        return claims

    # -- HTTP -----------------------------------------------------------------------------

    def discovery_document(self) -> dict[str, Any]:
        """The OpenID Provider metadata, every URL derived from ``issuer``."""
        issuer = self._require_issuer()
        base = issuer.rstrip("/")
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "revocation_endpoint": f"{base}/revoke",
            "jwks_uri": f"{base}/jwks",
            "grant_types_supported": [
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": DEFAULT_SCOPE.split(),
            "claims_supported": sorted({"sub", "iss", "preferred_username", self.username_claim}),
        }

    def app(self) -> Starlette:
        """An ASGI app serving this provider; mountable under any prefix."""
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery, methods=["GET"]),
                Route("/jwks", self._jwks, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/userinfo", self._userinfo, methods=["GET", "POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
                Route("/authorize", self._authorize, methods=["GET"]),
            ]
        )

    async def _stall(self) -> None:
        """While ``hanging``: answer nothing, as an IdP whose backend stalled."""
        while self.hanging:  # noqa: ASYNC110 - set from the test thread, not this loop
            await asyncio.sleep(0.05)

    def _unavailable(self) -> Response | None:
        if not self.idp_down:
            return None
        return PlainTextResponse(
            "Service Unavailable",
            status_code=503,
            headers={"Retry-After": str(self.retry_after_seconds)},
        )

    async def _discovery(self, _request: Request) -> Response:
        """Fakes ``/.well-known/openid-configuration``."""
        with self._lock:
            self.discovery_requests += 1
        await self._stall()
        return self._unavailable() or JSONResponse(self.discovery_document())

    async def _jwks(self, _request: Request) -> Response:
        """Fakes the ``jwks_uri``: the published public keys."""
        with self._lock:
            self.jwks_requests += 1
        await self._stall()
        return self._unavailable() or JSONResponse(self.jwks())

    async def _authorize(self, _request: Request) -> Response:
        """The interactive login is not faked; discovery lists it because OIDC requires it."""
        body = {
            "error": "unsupported_response_type",
            "error_description": "the fake provider has no interactive login",
        }
        return self._unavailable() or JSONResponse(body, status_code=400)

    async def _token(self, request: Request) -> Response:
        """Fakes the token endpoint: ``refresh_token`` and ``client_credentials`` grants."""
        with self._lock:
            self.token_requests += 1
            fail = self.token_endpoint_failures > 0
            if fail:
                self.token_endpoint_failures -= 1
        unavailable = self._unavailable()
        if unavailable is not None:
            return unavailable
        if fail:
            body = {"error": "server_error", "error_description": "injected failure"}
            return JSONResponse(body, status_code=500, headers=_NO_STORE)
        form = await request.form()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        try:
            body = self._grant(self._authenticate_client(request, fields), fields)
        except _OAuthError as error:
            with self._lock:
                self.token_refusals += 1
            return error.response()
        if self.token_answer_delay > 0:
            await asyncio.sleep(self.token_answer_delay)
        return JSONResponse(body, headers=_NO_STORE)

    def _grant(self, client_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
        match fields.get("grant_type"):
            case "refresh_token":
                return self._refresh_grant(client_id, fields)
            case "client_credentials":
                return self._client_credentials_grant(client_id, fields)
            case "urn:ietf:params:oauth:grant-type:token-exchange":
                return self._exchange_grant(client_id, fields)
            case None:
                raise _OAuthError(400, "invalid_request", "grant_type is missing")
            case other:
                raise _OAuthError(
                    400, "unsupported_grant_type", f"grant type {other!r} is not supported"
                )

    @staticmethod
    def _required_field(fields: Mapping[str, str], name: str) -> str:
        value = fields.get(name)
        if not value:
            raise _OAuthError(400, "invalid_request", f"{name} is missing")
        return value

    def _authenticate_client(self, request: Request, fields: Mapping[str, str]) -> str:
        """Client authentication by HTTP Basic or form fields, exactly one of them."""
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            if "client_secret" in fields:
                raise _OAuthError(
                    400, "invalid_request", "more than one client authentication method"
                )
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as error:
                raise _OAuthError(401, "invalid_client", "malformed Basic credentials") from error
            raw_id, colon, raw_secret = decoded.partition(":")
            if not colon:
                raise _OAuthError(401, "invalid_client", "malformed Basic credentials")
            # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        elif "client_id" in fields and "client_secret" in fields:
            client_id, secret = fields["client_id"], fields["client_secret"]
        else:
            raise _OAuthError(401, "invalid_client", "client authentication is required")
        expected = self.clients.get(client_id)
        if expected is None or not secrets.compare_digest(expected, secret):
            raise _OAuthError(401, "invalid_client", "bad client credentials")
        return client_id

    def _refresh_grant(self, client_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
        """Redeem a refresh token; with rotation the old one dies and a new one is returned."""
        presented = self._required_field(fields, "refresh_token")
        now = self.clock()
        with self._lock:
            grant = self._refresh.get(presented)
            if grant is None:
                raise _OAuthError(400, "invalid_grant", "unknown refresh token")
            problem = self._refresh_problem(grant, client_id, now)
            if problem is not None:
                raise _OAuthError(400, "invalid_grant", problem)
            scope = self._narrowed_scope(grant.scope, fields.get("scope"))
            if self.rotate_refresh_tokens:
                grant.rotated = True
                renewed = _RefreshGrant(
                    username=grant.username,
                    client_id=client_id,
                    scope=grant.scope,
                    expires_at=now + self.refresh_token_ttl,
                    audience=grant.audience,
                )
                refresh_token = self._refresh_jwt(renewed)
                self._refresh[refresh_token] = renewed
            else:
                refresh_token = presented
            self.refresh_grants += 1
            username = grant.username
            audience = grant.audience
        access_token = self.mint(
            username,
            audience=audience,
            issued_at=now,
            extra_claims={"scope": scope, "client_id": client_id},
        )
        return self._token_body(access_token, scope, refresh_token=refresh_token)

    @staticmethod
    def _refresh_problem(grant: _RefreshGrant, client_id: str, now: datetime) -> str | None:
        if grant.revoked:
            return "refresh token has been revoked"
        if grant.rotated:
            return "refresh token has already been used and was replaced"
        if now >= grant.expires_at:
            return "refresh token has expired"
        if grant.client_id != client_id:
            return "refresh token was issued to another client"
        return None

    @staticmethod
    def _narrowed_scope(granted: str, requested: str | None) -> str:
        if requested is None:
            return granted
        if not set(requested.split()) <= set(granted.split()):
            raise _OAuthError(400, "invalid_scope", "requested scope exceeds the granted scope")
        return requested

    def _exchange_grant(self, client_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
        """RFC 8693: a valid access token of a user (``subject_token``) becomes a token of
        the same user for an ``audience`` this provider exchanges for, with a refresh token
        when ``offline_access`` is asked for. Refusals: an invalid or expired subject token
        (``invalid_grant``), an audience not configured (``invalid_target``), a scope beyond
        the default ones (``invalid_scope``), a user in ``exchange_denied``
        (``access_denied``).
        """
        subject = self._required_field(fields, "subject_token")
        kind = self._required_field(fields, "subject_token_type")
        if kind != _ACCESS_TOKEN_TYPE:
            raise _OAuthError(
                400, "invalid_request", f"subject_token_type {kind!r} is not supported"
            )
        claims = self._verified_claims(subject, any_audience=True)  # any of its own
        if claims is None:
            raise _OAuthError(400, "invalid_grant", "the subject token is invalid or expired")
        username = claims.get(self.username_claim, claims.get("preferred_username"))
        if not isinstance(username, str):
            raise _OAuthError(400, "invalid_grant", "the subject token names no user")
        audience = fields.get("audience")
        if audience is None or audience not in self.exchange_audiences:
            raise _OAuthError(
                400, "invalid_target", f"audience {audience!r} is not allowed for token exchange"
            )
        scope = fields.get("scope", "openid")
        if not set(scope.split()) <= set(DEFAULT_SCOPE.split()):
            raise _OAuthError(400, "invalid_scope", "requested scope exceeds the allowed scope")
        if username in self.exchange_denied:
            raise _OAuthError(
                400, "access_denied", f"user {username} may not get tokens for {audience}"
            )
        now = self.clock()
        refresh_token = None
        with self._lock:
            self.exchange_grants += 1
            if "offline_access" in scope.split():
                grant = _RefreshGrant(
                    username=username,
                    client_id=client_id,
                    scope=scope,
                    expires_at=now + self.refresh_token_ttl,
                    audience=audience,
                )
                refresh_token = self._refresh_jwt(grant)
                self._refresh[refresh_token] = grant
        access_token = self.mint(
            username,
            audience=audience,
            issued_at=now,
            extra_claims={"scope": scope, "client_id": client_id},
        )
        body = self._token_body(access_token, scope, refresh_token=refresh_token)
        body["issued_token_type"] = _ACCESS_TOKEN_TYPE
        return body

    def _client_credentials_grant(
        self, client_id: str, fields: Mapping[str, str]
    ) -> dict[str, Any]:
        """A token for the client itself: its username is the client id; no refresh token."""
        scope = fields.get("scope", "openid")
        with self._lock:
            self.client_credentials_grants += 1
        access_token = self.mint(client_id, extra_claims={"scope": scope, "client_id": client_id})
        return self._token_body(access_token, scope, refresh_token=None)

    def _token_body(
        self, access_token: str, scope: str, *, refresh_token: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl.total_seconds()),
            "scope": scope,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body

    async def _userinfo(self, request: Request) -> Response:
        """Fakes ``userinfo``: who the bearer token belongs to, or 401 ``invalid_token``."""
        with self._lock:
            self.userinfo_requests += 1
        unavailable = self._unavailable()
        if unavailable is not None:
            return unavailable
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return PlainTextResponse(
                "bearer token required",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="fake-oidc"'},
            )
        username = self.user_for(token.strip())
        if username is None:
            challenge = 'Bearer error="invalid_token", error_description="token is not valid"'
            return PlainTextResponse(
                "invalid token", status_code=401, headers={"WWW-Authenticate": challenge}
            )
        claims = {
            "sub": self.subject_for(username),
            "preferred_username": username,
            self.username_claim: username,
        }
        return JSONResponse(claims, headers=_NO_STORE)

    async def _revoke(self, request: Request) -> Response:
        """Fakes RFC 7009 revocation of a refresh token or an access token.

        As the RFC says, an unknown or foreign token still gets 200.
        """
        unavailable = self._unavailable()
        if unavailable is not None:
            return unavailable
        form = await request.form()
        fields = {name: value for name, value in form.items() if isinstance(value, str)}
        try:
            client_id = self._authenticate_client(request, fields)
            token = self._required_field(fields, "token")
        except _OAuthError as error:
            return error.response()
        with self._lock:
            grant = self._refresh.get(token)
            if grant is not None and grant.client_id == client_id:
                grant.revoked = True
        if grant is None:
            claims = self._verified_claims(token)
            if claims is not None:
                with self._lock:
                    self._revoked_jtis.add(claims["jti"])
        return Response(status_code=200)
