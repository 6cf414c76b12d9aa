"""The fake OIDC provider, over real loopback HTTP: what a verifier and a refresher see."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.fakes.oidc import FakeOIDCProvider
from execbroker.fakes.server import ServerThread

CLIENT_ID = "execbroker"
CLIENT_SECRET = "broker-secret"
OTHER_CLIENT = ("other", "other-secret")


class Clock:
    """A clock the test moves by hand; starts at (whole-second) real time."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(clock: Clock) -> FakeOIDCProvider:
    return FakeOIDCProvider(
        clients={CLIENT_ID: CLIENT_SECRET, OTHER_CLIENT[0]: OTHER_CLIENT[1]}, clock=clock
    )


class Switchboard:
    """An ASGI app that forwards to whichever app a test plugs in.

    One loopback server serves the whole module (starting and stopping uvicorn costs about
    0.2 s), while each test still gets a fresh provider.
    """

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None, "no app plugged in"
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Switchboard, str]]:
    switchboard = Switchboard()
    with ServerThread(switchboard) as server:
        yield switchboard, server.url


def serve(served: tuple[Switchboard, str], app: ASGIApp) -> str:
    """Plug ``app`` into the module's server; returns the server's URL."""
    switchboard, url = served
    switchboard.app = app
    return url


@pytest.fixture
def http(provider: FakeOIDCProvider, served: tuple[Switchboard, str]) -> Iterator[httpx.Client]:
    """An HTTP client whose base URL is the provider, served on loopback."""
    provider.issuer = serve(served, provider.app())
    with httpx.Client(base_url=provider.issuer, timeout=5) as client:
        yield client


def discover(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def verify(http: httpx.Client, token: str, *, audience: str = "execbroker") -> dict[str, Any]:
    """Verify ``token`` the way a relying party does: discovery, JWKS by kid, PyJWT."""
    document = discover(http)
    keys = http.get(document["jwks_uri"]).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [key for key in keys if key["kid"] == kid]
    if not matching:
        raise LookupError(f"kid {kid} is not published")
    claims: dict[str, Any] = jwt.decode(
        token,
        jwt.PyJWK(matching[0]),
        algorithms=document["id_token_signing_alg_values_supported"],
        audience=audience,
        issuer=document["issuer"],
    )
    return claims


def refresh(
    http: httpx.Client,
    refresh_token: str,
    *,
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET),
    post_auth: bool = False,
) -> httpx.Response:
    """A ``refresh_token`` grant with ``client_secret_basic`` or ``client_secret_post``."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    token_endpoint = discover(http)["token_endpoint"]
    if post_auth:
        form |= {"client_id": client[0], "client_secret": client[1]}
        return http.post(token_endpoint, data=form)
    return http.post(token_endpoint, data=form, auth=client)


# -- discovery and keys ---------------------------------------------------------------------


def test_discovery_and_jwks_are_served_and_consistent(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    document = discover(http)

    assert document["issuer"] == provider.issuer == str(http.base_url).rstrip("/")
    for endpoint in ("jwks_uri", "token_endpoint", "userinfo_endpoint", "revocation_endpoint"):
        assert document[endpoint].startswith(provider.issuer + "/")
    assert "refresh_token" in document["grant_types_supported"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    jwks = http.get(document["jwks_uri"]).json()
    assert jwks == provider.jwks()
    assert [key["kid"] for key in jwks["keys"]] == [provider.current_kid]
    assert {"kty", "n", "e", "alg", "use"} <= set(jwks["keys"][0])
    assert "d" not in jwks["keys"][0]
    assert (provider.discovery_requests, provider.jwks_requests) == (1, 1)


def test_minted_token_verifies_against_served_jwks(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    token = provider.mint("alice")

    claims = verify(http, token)

    assert claims["preferred_username"] == "alice"
    assert claims["sub"] == provider.subject_for("alice") != "alice"
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == "execbroker"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] == claims["iat"]
    assert claims["jti"]
    assert provider.user_for(token) == "alice"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"issued_at_ago": timedelta(minutes=10)}, jwt.ExpiredSignatureError),
        ({"audience": "someone-else"}, jwt.InvalidAudienceError),
        ({"issuer": "https://evil.example.org"}, jwt.InvalidIssuerError),
        ({"not_before_in": timedelta(minutes=2)}, jwt.ImmatureSignatureError),
        ({"unpublished_key": True}, LookupError),
        ({"unpublished_key": True, "forge_kid": True}, jwt.InvalidSignatureError),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "future-nbf", "unknown-kid", "forged"],
)
def test_bad_tokens_fail_verification(
    provider: FakeOIDCProvider,
    http: httpx.Client,
    clock: Clock,
    overrides: dict[str, Any],
    error: type[Exception],
) -> None:
    arguments: dict[str, Any] = {}
    if "issued_at_ago" in overrides:
        arguments["issued_at"] = clock() - overrides["issued_at_ago"]
    if "not_before_in" in overrides:
        arguments["not_before"] = clock() + overrides["not_before_in"]
    if overrides.get("forge_kid"):
        arguments["kid"] = provider.current_kid
    for name in ("audience", "issuer", "unpublished_key"):
        if name in overrides:
            arguments[name] = overrides[name]
    token = provider.mint("mallory", **arguments)

    with pytest.raises(error):
        verify(http, token)
    assert provider.user_for(token) is None


def test_key_rotation_publishes_the_new_kid_and_can_drop_the_old(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    first_kid = provider.current_kid
    old_token = provider.mint("alice")

    second_kid = provider.rotate_keys()
    new_token = provider.mint("alice")

    assert second_kid != first_kid
    assert jwt.get_unverified_header(new_token)["kid"] == second_kid
    kids = [key["kid"] for key in http.get("/jwks").json()["keys"]]
    assert kids == [first_kid, second_kid]
    assert verify(http, old_token)["preferred_username"] == "alice"
    assert verify(http, new_token)["preferred_username"] == "alice"

    third_kid = provider.rotate_keys(keep_old=False)

    assert [key["kid"] for key in http.get("/jwks").json()["keys"]] == [third_kid]
    with pytest.raises(LookupError):
        verify(http, old_token)
    assert provider.user_for(old_token) is None
    assert provider.user_for(new_token) is None
    assert provider.user_for(provider.mint("alice")) == "alice"


def test_user_for_honours_expiry_and_not_before_by_the_injected_clock(
    provider: FakeOIDCProvider, clock: Clock
) -> None:
    provider.issuer = "http://127.0.0.1:1"
    token = provider.mint("alice", lifetime=timedelta(seconds=30))
    early = provider.mint("bob", not_before=clock() + timedelta(seconds=10))

    assert provider.user_for(token) == "alice"
    assert provider.user_for(early) is None
    clock.advance(timedelta(seconds=10))
    assert provider.user_for(early) == "bob"
    clock.advance(timedelta(seconds=19))
    assert provider.user_for(token) == "alice"
    clock.advance(timedelta(seconds=1))
    assert provider.user_for(token) is None


def test_username_claim_is_configurable(clock: Clock) -> None:
    provider = FakeOIDCProvider(issuer="http://127.0.0.1:1", username_claim="email", clock=clock)

    token = provider.mint("alice@example.org")

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["email"] == claims["preferred_username"] == "alice@example.org"
    assert provider.user_for(token) == "alice@example.org"


# -- refresh grant --------------------------------------------------------------------------


def test_refresh_with_basic_auth_rotates_and_the_old_token_dies(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    first = provider.issue_refresh_token("alice", CLIENT_ID)

    response = refresh(http, first)

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "openid profile email offline_access"
    assert body["refresh_token"] != first
    assert provider.user_for(body["access_token"]) == "alice"
    assert verify(http, body["access_token"])["client_id"] == CLIENT_ID

    reused = refresh(http, first)

    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert "already been used" in reused.json()["error_description"]
    assert refresh(http, body["refresh_token"]).status_code == 200
    assert (provider.token_requests, provider.refresh_grants) == (3, 2)


def test_refresh_with_post_auth_and_no_rotation_keeps_the_token(
    clock: Clock, served: tuple[Switchboard, str]
) -> None:
    provider = FakeOIDCProvider(
        clients={CLIENT_ID: CLIENT_SECRET}, rotate_refresh_tokens=False, clock=clock
    )
    provider.issuer = serve(served, provider.app())
    with httpx.Client(base_url=provider.issuer, timeout=5) as http:
        token = provider.issue_refresh_token("alice", CLIENT_ID)

        first = refresh(http, token, post_auth=True)
        second = refresh(http, token, post_auth=True)

    assert first.status_code == second.status_code == 200
    assert first.json()["refresh_token"] == second.json()["refresh_token"] == token
    assert first.json()["access_token"] != second.json()["access_token"]
    assert provider.refresh_grants == 2


def test_revoked_refresh_tokens_get_invalid_grant(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    alice = provider.issue_refresh_token("alice", CLIENT_ID)
    bob = provider.issue_refresh_token("bob", CLIENT_ID)

    assert provider.revoke_refresh_tokens("alice") == 1

    response = refresh(http, alice)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token has been revoked",
    }
    revoked = http.post("/revoke", data={"token": bob}, auth=(CLIENT_ID, CLIENT_SECRET))
    assert revoked.status_code == 200
    assert refresh(http, bob).json()["error"] == "invalid_grant"


def test_expired_unknown_and_foreign_refresh_tokens_get_invalid_grant(
    provider: FakeOIDCProvider, http: httpx.Client, clock: Clock
) -> None:
    expiring = provider.issue_refresh_token("alice", CLIENT_ID)
    clock.advance(timedelta(days=30))
    foreign = provider.issue_refresh_token("alice", OTHER_CLIENT[0])

    descriptions = {
        name: refresh(http, token).json()
        for name, token in [("expired", expiring), ("unknown", "nope"), ("foreign", foreign)]
    }

    assert {body["error"] for body in descriptions.values()} == {"invalid_grant"}
    assert descriptions["expired"]["error_description"] == "refresh token has expired"
    assert descriptions["unknown"]["error_description"] == "unknown refresh token"
    assert "another client" in descriptions["foreign"]["error_description"]
    assert refresh(http, foreign, client=OTHER_CLIENT).status_code == 200


@pytest.mark.parametrize("post_auth", [False, True], ids=["basic", "post"])
def test_wrong_client_secret_is_invalid_client(
    provider: FakeOIDCProvider, http: httpx.Client, post_auth: bool
) -> None:
    token = provider.issue_refresh_token("alice", CLIENT_ID)

    response = refresh(http, token, client=(CLIENT_ID, "wrong"), post_auth=post_auth)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert refresh(http, token).status_code == 200, "a failed attempt must not burn the token"


def test_token_endpoint_rejects_missing_or_double_client_auth_and_unknown_grants(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    token = provider.issue_refresh_token("alice", CLIENT_ID)
    form = {"grant_type": "refresh_token", "refresh_token": token}

    anonymous = http.post("/token", data=form)
    double = http.post(
        "/token",
        data=form | {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    as_json = http.post("/token", json=form, auth=(CLIENT_ID, CLIENT_SECRET))
    password = http.post(
        "/token",
        data={"grant_type": "password", "username": "a", "password": "b"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    assert (double.status_code, double.json()["error"]) == (400, "invalid_request")
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert (password.status_code, password.json()["error"]) == (400, "unsupported_grant_type")


def test_client_credentials_grant_is_a_token_for_the_client(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    response = http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )

    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body
    assert provider.user_for(body["access_token"]) == CLIENT_ID
    assert provider.client_credentials_grants == 1


# -- failures -------------------------------------------------------------------------------


def test_idp_down_answers_503_with_retry_after_everywhere(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    refresh_token = provider.issue_refresh_token("alice", CLIENT_ID)
    access_token = provider.mint("alice")
    provider.idp_down = True

    responses = [
        http.get("/.well-known/openid-configuration"),
        http.get("/jwks"),
        http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(CLIENT_ID, CLIENT_SECRET),
        ),
        http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}),
    ]

    assert [response.status_code for response in responses] == [503] * 4
    assert all(response.headers["retry-after"] == "30" for response in responses)
    assert provider.user_for(access_token) is None
    provider.idp_down = False
    assert provider.user_for(access_token) == "alice"
    assert refresh(http, refresh_token).status_code == 200, "the outage must not burn the token"


def test_hanging_holds_discovery_and_jwks_until_cleared(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    provider.hanging = True
    with pytest.raises(httpx.ReadTimeout):
        http.get("/jwks", timeout=0.5)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/.well-known/openid-configuration", timeout=0.5)
    assert provider.jwks_requests == provider.discovery_requests == 1
    provider.hanging = False
    assert http.get("/jwks").status_code == 200


def test_mint_takes_extra_header_fields_and_another_sub(provider: FakeOIDCProvider) -> None:
    provider.issuer = "http://127.0.0.1:1"
    token = provider.mint("alice", extra_headers={"typ": "at+jwt"}, extra_claims={"sub": "s-2"})
    header = jwt.get_unverified_header(token)
    assert (header["typ"], header["kid"]) == ("at+jwt", provider.current_kid)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["preferred_username"]) == ("s-2", "alice")


def test_injected_token_endpoint_failures_answer_500_then_recover(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    token = provider.issue_refresh_token("alice", CLIENT_ID)
    provider.token_endpoint_failures = 2

    statuses = [refresh(http, token).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert (provider.token_requests, provider.refresh_grants) == (3, 1)
    assert provider.token_endpoint_failures == 0


# -- userinfo, revocation, mounting ---------------------------------------------------------


def test_userinfo_answers_for_valid_tokens_and_401_for_others(
    provider: FakeOIDCProvider, http: httpx.Client, clock: Clock
) -> None:
    token = provider.mint("alice")
    userinfo = discover(http)["userinfo_endpoint"]

    good = http.get(userinfo, headers={"Authorization": f"Bearer {token}"})
    clock.advance(timedelta(minutes=5))
    expired = http.get(userinfo, headers={"Authorization": f"Bearer {token}"})
    anonymous = http.get(userinfo)

    assert good.status_code == 200
    assert good.json() == {
        "sub": provider.subject_for("alice"),
        "preferred_username": "alice",
    }
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    assert anonymous.status_code == 401
    assert provider.userinfo_requests == 3


def test_revoking_an_access_token_makes_userinfo_reject_it(
    provider: FakeOIDCProvider, http: httpx.Client
) -> None:
    token = provider.mint("alice")
    other = provider.mint("alice")

    response = http.post("/revoke", data={"token": token}, auth=(CLIENT_ID, CLIENT_SECRET))
    unknown = http.post("/revoke", data={"token": "junk"}, auth=(CLIENT_ID, CLIENT_SECRET))
    anonymous = http.post("/revoke", data={"token": other})

    assert (response.status_code, unknown.status_code) == (200, 200)
    assert anonymous.status_code == 401
    assert provider.user_for(token) is None
    assert provider.user_for(other) == "alice"


def test_mounted_under_a_prefix_the_endpoints_follow_the_issuer(
    provider: FakeOIDCProvider, served: tuple[Switchboard, str]
) -> None:
    async def sessions(_request: object) -> PlainTextResponse:
        return PlainTextResponse("[]")

    outer = Starlette(
        routes=[Route("/skaha/v1/session", sessions), Mount("/oidc", app=provider.app())]
    )
    url = serve(served, outer)
    provider.issuer = url + "/oidc"
    with httpx.Client(timeout=5) as http:
        document = http.get(f"{provider.issuer}/.well-known/openid-configuration").json()
        token = provider.issue_refresh_token("alice", CLIENT_ID)
        response = http.post(
            document["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": token},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        keys = http.get(document["jwks_uri"]).json()["keys"]
        assert http.get(f"{url}/skaha/v1/session").text == "[]"

    assert document["issuer"] == provider.issuer
    assert document["token_endpoint"] == f"{url}/oidc/token"
    assert response.status_code == 200
    claims = jwt.decode(
        response.json()["access_token"],
        jwt.PyJWK(keys[0]),
        algorithms=["RS256"],
        audience="execbroker",
        issuer=provider.issuer,
    )
    assert claims["preferred_username"] == "alice"
