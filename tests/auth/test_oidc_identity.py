"""Who an OIDC token names: the owner key is ``sub``, a name is only shown, a name claim as
the key is bound to the first ``sub`` seen; names the database cannot hold are refused."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from execbroker.fakes.oidc import FakeOIDCProvider
from tests.conftest import BrokerClient
from tests.support.users import bearer
from tests.support.wire import example, notebook_request, phase_update, post

REAL_ALICE = "3f1c-real-alice"
OTHER_PERSON = "99aa-different-person"
REAL_OPERATOR = "0b7e-real-operator"
NEW_SIGNUP = "77-new-signup"


def oidc(issuer: FakeOIDCProvider, **overrides: object) -> dict[str, object]:
    return {
        "user": None,
        "auth": "oidc",
        "oidc_issuer": issuer.issuer,
        "oidc_audience": "execbroker",
        **overrides,
    }


def as_person(issuer: FakeOIDCProvider, name: str, subject: str) -> dict[str, str]:
    return bearer(issuer.mint(name, extra_claims={"sub": subject}))


async def test_a_borrowed_name_reads_nothing_and_gains_no_admin_rights(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    """W6: by default the owner key is sub; preferred_username is shown, never trusted."""
    async with broker(**oidc(issuer, admins=[REAL_OPERATOR])) as client:
        alice = as_person(issuer, "alice", REAL_ALICE)
        impostor = as_person(issuer, "alice", OTHER_PERSON)
        created = await post(
            client, "/direct", example("container-with-data-request.yaml"), headers=alice
        )
        assert created.status_code == 303, created.text
        url = urlsplit(created.json()["meta"]["url"]).path
        uuid = created.json()["meta"]["uuid"]

        assert (await client.get(url, headers=impostor)).status_code == 404
        assert uuid not in (await client.get("/sessions", headers=impostor)).text
        cancel = phase_update("CANCELLED")
        assert (await client.post(url, json=cancel, headers=impostor)).status_code == 404
        assert (await client.get(url, headers=alice)).json()["phase"] != "CANCELLED"

        # A new account calling itself the operator, or naming itself by the operator's
        # sub in another claim, is no admin.
        for fake_admin in (
            as_person(issuer, "operator", NEW_SIGNUP),
            bearer(issuer.mint(REAL_OPERATOR, extra_claims={"sub": NEW_SIGNUP})),
        ):
            listed = await client.get("/sessions", params={"last": 1000}, headers=fake_admin)
            assert listed.status_code == 200
            assert uuid not in listed.text
            assert (await client.get(url, headers=fake_admin)).status_code == 404

        # The admin is named by sub, and messages show the display name.
        operator = as_person(issuer, "operator", REAL_OPERATOR)
        assert (await client.get(url, headers=operator)).status_code == 200
        cancelled = await client.post(url, json=cancel, headers=operator)
        assert cancelled.status_code == 200, cancelled.text
        messages = str(cancelled.json()["meta"]["messages"])
        assert "Cancelled by operator" in messages
        assert REAL_OPERATOR not in messages


async def test_a_name_as_the_owner_key_is_bound_to_the_first_sub(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    """W6 with oidc_owner_claim = preferred_username (records owned by names): another sub
    with a bound name is refused with a 401 that says why, admin names included."""
    settings = oidc(issuer, oidc_owner_claim="preferred_username", admins=["operator"])
    async with broker(**settings) as client:
        alice = as_person(issuer, "alice", REAL_ALICE)
        created = await post(client, "/requests", notebook_request(), headers=alice)
        assert created.status_code == 303, created.text
        offered = created.json()
        url = urlsplit(offered["meta"]["url"]).path
        operator = as_person(issuer, "operator", REAL_OPERATOR)
        assert (await client.get(url, headers=operator)).status_code == 200

        for impostor in (
            as_person(issuer, "alice", OTHER_PERSON),
            as_person(issuer, "operator", NEW_SIGNUP),
        ):
            for method, path in (("GET", url), ("GET", "/sessions"), ("GET", "/offersets")):
                answer = await client.request(method, path, headers=impostor)
                assert answer.status_code == 401, answer.text
                assert 'error="invalid_token"' in answer.headers["www-authenticate"]
                message = answer.json()["messages"][0]["message"]
                assert "belongs to another account" in message
                assert "sub" in message
        # The real owners still get in; a new name binds to whoever brings it first.
        assert (await client.get(url, headers=alice)).status_code == 200
        assert (await client.get("/sessions", headers=as_person(issuer, "carol", "c1"))).is_success

    # Bindings are kept in the database, across restarts.
    async with broker(**settings) as client:
        answer = await client.get("/sessions", headers=as_person(issuer, "alice", OTHER_PERSON))
        assert answer.status_code == 401
        assert (await client.get(url, headers=as_person(issuer, "alice", REAL_ALICE))).is_success


@pytest.mark.parametrize(
    ("claim", "name", "reason"),
    [
        ("sub", "u" * 256, "longer than 255 characters"),
        ("sub", "ali\x00ce", "control character (U+0000)"),
        ("sub", "ali\x1b[2Jce", "control character (U+001B)"),
        ("preferred_username", "u" * 256, "longer than 255 characters"),
        ("preferred_username", "ali\x00ce", "control character (U+0000)"),
    ],
)
async def test_names_the_database_cannot_hold_are_401(
    broker: BrokerClient, issuer: FakeOIDCProvider, claim: str, name: str, reason: str
) -> None:
    """W8: on PostgreSQL such names failed every write (and, with NUL, GET /sessions) with a
    500; now they are refused where they enter, whichever claim keys owners."""
    async with broker(**oidc(issuer, oidc_owner_claim=claim)) as client:
        token = issuer.mint(name, extra_claims={"sub": name} if claim == "sub" else {})
        for method, path in (("GET", "/sessions"), ("POST", "/direct"), ("POST", "/requests")):
            document = notebook_request() if method == "POST" else None
            if document is None:
                answer = await client.get(path, headers=bearer(token))
            else:
                answer = await post(client, path, document, headers=bearer(token))
            assert answer.status_code == 401, (path, answer.text)
            message = answer.json()["messages"][0]["message"]
            assert f"{claim} claim" in message
            assert reason in message
        # 255 characters, and names outside ASCII, are fine.
        for fine in ("u" * 255, "名前-😀" * 40):
            token = issuer.mint(fine, extra_claims={"sub": fine} if claim == "sub" else {})
            created = await post(client, "/requests", notebook_request(), headers=bearer(token))
            assert created.status_code == 303, created.text


async def test_an_unusable_display_name_shows_the_key_instead(
    broker: BrokerClient, issuer: FakeOIDCProvider
) -> None:
    """The display claim grants nothing, so a bad one does not refuse the caller; the key
    is shown in its place."""
    async with broker(**oidc(issuer)) as client:
        headers = as_person(issuer, "bad\x00name", REAL_ALICE)
        created = await post(client, "/direct", notebook_request(), headers=headers)
        assert created.status_code == 303, created.text
        url = urlsplit(created.json()["meta"]["url"]).path
        cancelled = await client.post(url, json=phase_update("CANCELLED"), headers=headers)
        assert cancelled.status_code == 200, cancelled.text
        assert f"Cancelled by {REAL_ALICE}" in str(cancelled.json()["meta"]["messages"])


@pytest.mark.parametrize(
    ("name", "logged"),
    [("u" * 256, "longer than 255 characters"), ("ali\x00ce", "control character (U+0000)")],
)
async def test_a_tokens_file_with_an_unstorable_name_fails_closed(
    broker: BrokerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    name: str,
    logged: str,
) -> None:
    """W8 in tokens mode: the file is refused whole, like any broken tokens file."""
    tokens = tmp_path / "odd-tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {"tokens": {"good-token-of-alice-1234": "alice", "odd-token-12345678": name}}
        )
    )
    tokens.chmod(0o600)
    async with broker(user=None, tokens_file=tokens) as client:
        for token in ("good-token-of-alice-1234", "odd-token-12345678"):
            answer = await client.get("/sessions", headers=bearer(token))
            assert answer.status_code == 401, answer.text
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "tokens file" in r.message]
    assert len(errors) == 1
    assert logged in errors[0].getMessage()
    assert name not in errors[0].getMessage()
