"""The fake Skaha over real loopback HTTP, time driven by a manual clock (SKAHA.md §5)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.clock import ManualClock
from execbroker.fakes.server import ServerThread
from execbroker.fakes.skaha import (
    NOT_AUTHORIZED,
    REGISTRY_AUTH_REQUIRED,
    Endpoint,
    FakeSkaha,
    Fault,
    FaultKind,
    SkahaCatalogue,
    StaticTokens,
    create_skaha_app,
)

TERMINAL = "images.canfar.net/skaha/terminal:1.1.2"
NOTEBOOK = "images.canfar.net/skaha/astroml:latest"
IAE = "java.lang.IllegalArgumentException: "


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tokens() -> StaticTokens:
    return StaticTokens({"alice-token": "alice", "bob-token": "bob", "eve-token": "eve"})


@pytest.fixture
def catalogue() -> SkahaCatalogue:
    return SkahaCatalogue()


@pytest.fixture
def fake(clock: ManualClock, tokens: StaticTokens, catalogue: SkahaCatalogue) -> FakeSkaha:
    return FakeSkaha(
        tokens, clock=clock, catalogue=catalogue, allowed_users={"alice", "bob"}, seed=1
    )


class _Current:
    """One server for the module; each test points it at its own fake's app."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the fakes' apps need no startup or shutdown
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.app is not None
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[ServerThread, _Current]]:
    current = _Current()
    with ServerThread(current) as running:
        yield running, current


@pytest.fixture
def server(fake: FakeSkaha, shared: tuple[ServerThread, _Current]) -> ServerThread:
    running, current = shared
    current.app = create_skaha_app(fake)
    return running


def _client(server: ServerThread, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"{server.url}/skaha/v1", headers=headers, timeout=5)


@pytest.fixture
def alice(server: ServerThread) -> Iterator[httpx.Client]:
    with _client(server, "alice-token") as client:
        yield client


@pytest.fixture
def bob(server: ServerThread) -> Iterator[httpx.Client]:
    with _client(server, "bob-token") as client:
        yield client


def create(client: httpx.Client, **params: Any) -> str:
    response = client.post("/session", params={"name": "Job-1", "image": TERMINAL, **params})
    assert response.status_code == 200, response.text
    return response.text.strip()


def get(client: httpx.Client, session_id: str) -> dict[str, Any]:
    response = client.get(f"/session/{session_id}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def not_found(client: httpx.Client, session_id: str) -> bool:
    response = client.get(f"/session/{session_id}")
    return response.status_code == 404 and response.text == f"session {session_id} not found"


# ---- create, list, get, delete ---------------------------------------------------------------


def test_create_answers_a_plain_text_id_with_a_newline(alice: httpx.Client) -> None:
    response = alice.post("/session", params={"name": "Job-1", "image": TERMINAL})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert re.fullmatch(r"[a-z0-9]{8}\n", response.text)
    assert response.headers["x-vo-authenticated"] == "alice"


def test_create_reads_a_form_body_with_repeated_env(
    alice: httpx.Client, clock: ManualClock
) -> None:
    form = {
        "name": "Job-1",
        "image": TERMINAL,
        "cmd": "python",
        "args": "run.py --fast",
        "env": ["A=1", "B=2", "DROPPED=x=y"],
    }
    response = alice.post("/session", data=form)
    assert response.status_code == 200, response.text
    session_id = response.text.strip()
    clock.advance(2)

    logs = alice.get(f"/session/{session_id}", params={"view": "logs"})
    assert logs.headers["content-type"].startswith("text/plain")
    assert "command: python run.py --fast\n" in logs.text
    assert "env: A=1\nenv: B=2\n" in logs.text
    assert "DROPPED" not in logs.text


def test_a_launch_is_pasted_together_and_parsed_as_skaha_does(
    alice: httpx.Client, clock: ManualClock
) -> None:
    """Skaha's YAML by concatenation: a quote breaks the Job (500, nothing launched), a
    backslash is eaten, an empty value and a trailing empty argument are dropped."""
    broken = alice.post("/session", data={"name": "J", "image": TERMINAL, "args": 'say "hi"'})
    assert broken.status_code == 500
    assert alice.get("/session").json() == []

    form = {"name": "J", "image": TERMINAL, "cmd": "a\\b", "args": "x ", "env": ["E=", "F=1"]}
    response = alice.post("/session", data=form)
    assert response.status_code == 200, response.text
    clock.advance(2)
    logs = alice.get(f"/session/{response.text.strip()}", params={"view": "logs"}).text
    assert "command: ab x\n" in logs
    assert "env: F=1\n" in logs
    assert "env: E" not in logs


def test_list_get_and_delete_a_session(alice: httpx.Client, clock: ManualClock) -> None:
    session_id = create(alice, name="My-Job", type="HEADLESS")

    listed = alice.get("/session")
    assert listed.headers["content-type"].startswith("application/json")
    assert [s["id"] for s in listed.json()] == [session_id]
    document = get(alice, session_id)
    assert document["name"] == "my-job"
    assert document["type"] == "headless"
    assert document["userid"] == "alice"
    assert document["isFixedResources"] is False
    assert "requestedRAM" not in document  # null fields are omitted
    assert "startTime" not in document

    clock.advance(2)  # running
    deleted = alice.delete(f"/session/{session_id}")
    assert (deleted.status_code, deleted.text) == (200, "")
    assert get(alice, session_id)["status"] == "Terminating"
    clock.advance(1)
    assert not_found(alice, session_id)
    assert alice.get("/session").json() == []
    assert alice.delete(f"/session/{session_id}").status_code == 200  # unknown ids too


def test_fixed_resources_are_reported(alice: httpx.Client) -> None:
    session_id = create(alice, cores="2", ram="8", gpus="1")

    document = get(alice, session_id)
    assert document["isFixedResources"] is True
    assert (document["requestedRAM"], document["requestedCPUCores"]) == ("8G", "2")
    assert document["requestedGPUCores"] == "1"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"image": None}, "Missing parameter 'image'"),
        (
            {"image": "docker.io/library/ubuntu:24.04"},
            "session image 'docker.io/library/ubuntu:24.04' must come from one of "
            "[images.canfar.net]",
        ),
        ({"type": "desktop-app"}, "Invalid session type: desktop-app"),
        ({"cores": "3000"}, "Invalid value for 'cores': 3000"),
        ({"ram": "lots"}, "Invalid value for 'ram': lots"),
        ({"name": "my job"}, "name can only contain alpha-numeric chars and '-'"),
        ({"gpus": "0"}, "Invalid value for 'gpus': 0"),
        ({"image": "images.canfar.net/private/secret:1"}, REGISTRY_AUTH_REQUIRED),
    ],
)
def test_create_rejects_like_skaha(
    alice: httpx.Client, params: dict[str, str | None], message: str
) -> None:
    query = {"name": "Job-1", "image": TERMINAL, **params}
    response = alice.post("/session", params={k: v for k, v in query.items() if v is not None})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == f"{message}{IAE}{message}\n"
    assert alice.get("/session").json() == []


def test_private_image_launches_with_registry_auth(alice: httpx.Client) -> None:
    secret = base64.b64encode(b"alice:harbor-secret").decode()
    response = alice.post(
        "/session",
        params={"name": "private", "image": "images.canfar.net/private/secret:1"},
        headers={"x-skaha-registry-auth": secret},
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("catalogue", [SkahaCatalogue(max_interactive_sessions=1)])
def test_interactive_sessions_are_limited_per_user(alice: httpx.Client, bob: httpx.Client) -> None:
    create(alice, type="notebook", image=NOTEBOOK)
    create(alice)  # headless sessions do not count

    refused = alice.post("/session", params={"name": "nb2", "image": NOTEBOOK, "type": "notebook"})
    message = "User alice has reached the maximum of 1 active sessions."
    assert (refused.status_code, refused.text) == (400, f"{message}{IAE}{message}\n")
    create(bob, type="notebook", image=NOTEBOOK)


def test_other_users_sessions_are_invisible(
    alice: httpx.Client, bob: httpx.Client, clock: ManualClock
) -> None:
    session_id = create(alice)
    clock.advance(2)

    assert not_found(bob, session_id)
    assert bob.get("/session").json() == []
    events = bob.get(f"/session/{session_id}", params={"view": "events"})
    assert (events.status_code, events.text) == (404, f"session {session_id} not found.")
    assert bob.delete(f"/session/{session_id}").status_code == 200
    assert get(alice, session_id)["status"] == "Running"
    everyone = bob.get("/session", params={"view": "all"}).json()
    assert everyone == [
        {
            "userid": "alice",
            "type": "headless",
            "status": "Running",
            "startTime": everyone[0]["startTime"],
        }
    ]


def test_unsupported_method(alice: httpx.Client) -> None:
    response = alice.put("/session")
    assert (response.status_code, response.text) == (400, "unsupported: HTTP PUT")


# ---- authentication --------------------------------------------------------------------------


def test_missing_and_invalid_tokens_get_401_with_a_bearer_challenge(
    server: ServerThread, tokens: StaticTokens
) -> None:
    for token in (None, "no-such-token"):
        with _client(server, token) as client:
            response = client.get("/session")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/plain")
        challenges = response.headers.get_list("www-authenticate")
        assert any(
            c.startswith('Bearer error="invalid_token", error_description="') for c in challenges
        )
        assert "x-vo-authenticated" not in response.headers

    with _client(server, None) as client:
        malformed = client.get("/session", headers={"Authorization": "Basic YWxpY2U6eA=="})
    assert 'error="invalid_request"' in malformed.headers["www-authenticate"]

    tokens.set_down(down=True)  # the IdP is unreachable: valid tokens fail too
    with _client(server, "alice-token") as client:
        assert client.get("/session").status_code == 401
    tokens.set_down(down=False)
    tokens.revoke("alice-token")
    with _client(server, "alice-token") as client:
        assert client.get("/session").status_code == 401


def test_users_outside_the_group_get_403(server: ServerThread) -> None:
    with _client(server, "eve-token") as eve:
        response = eve.get("/context")
    assert (response.status_code, response.text) == (403, NOT_AUTHORIZED)


# ---- state machines --------------------------------------------------------------------------


def test_headless_session_goes_pending_running_completed_then_vanishes(
    alice: httpx.Client, clock: ManualClock
) -> None:
    session_id = create(alice, cmd="sleep", args="10")
    events = f"/session/{session_id}"

    queued = get(alice, session_id)
    assert queued["status"] == "Pending"
    assert "startTime" not in queued
    assert alice.get(events, params={"view": "events"}).status_code == 404
    assert alice.get(events, params={"view": "logs"}).text == ""

    clock.advance(0.5)  # admitted, pulling the image
    pulling = get(alice, session_id)
    assert pulling["status"] == "Pending"
    assert pulling["startTime"] == "2026-08-06T12:00:00Z"
    assert pulling["expiryTime"] == "2026-08-20T12:00:00Z"
    table = alice.get(events, params={"view": "events"}).text
    assert table.startswith("TYPE")
    assert "Scheduled" in table
    assert "Pulling" in table

    clock.advance(1)
    running = get(alice, session_id)
    assert running["status"] == "Running"
    assert running["connectURL"] == ""
    assert "command: sleep 10" in alice.get(events, params={"view": "logs"}).text

    clock.advance(10)
    assert get(alice, session_id)["status"] == "Completed"
    assert "exited with code 0" in alice.get(events, params={"view": "logs"}).text
    clock.advance(30)  # ttl_headless
    assert not_found(alice, session_id)


def test_exit_code_and_run_length_come_from_env(alice: httpx.Client, clock: ManualClock) -> None:
    session_id = create(alice, env=["FAKE_RUN_SECONDS=2", "FAKE_EXIT_CODE=3"])

    clock.advance(3)
    assert get(alice, session_id)["status"] == "Running"
    clock.advance(1)
    assert get(alice, session_id)["status"] == "Failed"


def test_notebook_runs_until_expiry_and_connect_url_works_while_running(
    alice: httpx.Client, clock: ManualClock, server: ServerThread
) -> None:
    session_id = create(alice, type="notebook", image=NOTEBOOK, cmd="ignored")

    assert get(alice, session_id)["connectURL"] == ""
    clock.advance(2)
    running = get(alice, session_id)
    url = f"{server.url}/session/notebook/{session_id}/lab/tree/arc/home/alice?token={session_id}"
    assert running["status"] == "Running"
    assert running["connectURL"] == url
    assert httpx.get(url).status_code == 200

    clock.advance(598.5)  # session_expiry (600 s) after startTime (created + 0.5 s)
    expired = get(alice, session_id)
    assert expired["status"] == "Failed"
    assert expired["connectURL"] == ""
    assert httpx.get(url).status_code == 404


def test_renew_extends_an_interactive_session(alice: httpx.Client, clock: ManualClock) -> None:
    session_id = create(alice, type="notebook", image=NOTEBOOK)
    clock.advance(300.5)
    assert get(alice, session_id)["expiryTime"] == "2026-08-06T12:10:00Z"

    renewed = alice.post(f"/session/{session_id}", params={"action": "renew"})
    assert (renewed.status_code, renewed.text) == (200, "")
    assert get(alice, session_id)["expiryTime"] == "2026-08-06T12:15:00Z"

    no_action = alice.post(f"/session/{session_id}")
    assert (no_action.status_code, no_action.text) == (400, "Cannot modify an existing session")
    other = alice.post(f"/session/{session_id}", params={"action": "extend"})
    assert (other.status_code, other.text) == (400, "unrecognized action")
    message = "No active job for user alice with session nosuchid"
    unknown = alice.post("/session/nosuchid", params={"action": "renew"})
    assert (unknown.status_code, unknown.text) == (400, f"{message}{IAE}{message}\n")


def test_list_filters_by_type_and_status(alice: httpx.Client, clock: ManualClock) -> None:
    headless = create(alice)
    notebook = create(alice, type="notebook", image=NOTEBOOK)
    clock.advance(2)
    alice.delete(f"/session/{headless}")

    def ids(**params: str) -> list[str]:
        return [s["id"] for s in alice.get("/session", params=params).json()]

    assert ids(type="notebook") == [notebook]
    assert ids(status="terminating") == [headless]
    assert ids(type="headless", status="Running") == []
    assert ids(view="interactive") == [notebook]


# ---- faults and quirks -----------------------------------------------------------------------


def test_injected_500_and_503_then_recovery(alice: httpx.Client, fake: FakeSkaha) -> None:
    fake.inject(Fault(FaultKind.ERROR, Endpoint.LIST_SESSIONS, message="java.io.IOException: x"))
    fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.LIST_SESSIONS, retry_after=7))

    first = alice.get("/session")
    assert (first.status_code, first.text) == (500, "unexpected exception: java.io.IOException: x")
    second = alice.get("/session")
    assert second.status_code == 503
    assert second.text == "temporarily unavailable: /skaha/v1/session"
    assert second.headers["retry-after"] == "7"
    assert alice.get("/session").status_code == 200
    assert alice.get("/context").status_code == 200


def test_injected_401_and_delay(server: ServerThread, alice: httpx.Client, fake: FakeSkaha) -> None:
    fake.inject(Fault(FaultKind.UNAUTHORIZED, Endpoint.CONTEXT, user="alice"))
    assert alice.get("/context").status_code == 401

    fake.inject(Fault(FaultKind.DELAY, Endpoint.CONTEXT, delay=0.5))
    with _client(server, "alice-token") as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.get("/context", timeout=0.1)


def test_connection_reset_is_a_transport_error(alice: httpx.Client, fake: FakeSkaha) -> None:
    fake.inject(Fault(FaultKind.RESET, Endpoint.CREATE_SESSION))

    with pytest.raises(httpx.TransportError):
        alice.post("/session", params={"name": "Job-1", "image": TERMINAL})
    assert alice.get("/session").json() == []
    create(alice)


def test_broken_image_stays_pending_with_pull_errors(
    alice: httpx.Client, fake: FakeSkaha, clock: ManualClock
) -> None:
    fake.break_image(TERMINAL)
    session_id = create(alice)

    clock.advance(3600)
    document = get(alice, session_id)
    assert document["status"] == "Pending"
    assert "startTime" in document
    events = alice.get(f"/session/{session_id}", params={"view": "events"}).text
    assert "ErrImagePull" in events
    assert "ImagePullBackOff" in events
    assert alice.get(f"/session/{session_id}", params={"view": "logs"}).text == ""


def test_kueue_starvation_keeps_sessions_queued(
    alice: httpx.Client, fake: FakeSkaha, clock: ManualClock
) -> None:
    fake.hold_queue(["headless"])
    session_id = create(alice)
    clock.advance(1800)

    assert "startTime" not in get(alice, session_id)
    assert alice.get(f"/session/{session_id}", params={"view": "events"}).status_code == 404
    fake.release_queue()
    clock.advance(1)
    assert get(alice, session_id)["status"] == "Running"


def test_crash_and_garbage_collection(
    alice: httpx.Client, fake: FakeSkaha, clock: ManualClock
) -> None:
    crashing = create(alice, cmd="sleep", args="600")
    collected = create(alice, cmd="sleep", args="1")
    clock.advance(2)
    fake.crash(crashing)
    assert get(alice, crashing)["status"] == "Failed"

    clock.advance(1)
    assert set(fake.garbage_collect()) == {crashing, collected}
    assert not_found(alice, crashing)
    assert not_found(alice, collected)


def test_quirks(alice: httpx.Client, fake: FakeSkaha, clock: ManualClock) -> None:
    session_id = create(alice)
    clock.advance(2)
    assert get(alice, session_id)["ramInUse"] == "0.25G"

    fake.set_quirks(
        metrics_missing=True,
        start_time_without_seconds=True,
        max_interactive_sessions_as_string=True,
        legacy_delete_404=True,
    )
    document = get(alice, session_id)
    assert "ramInUse" not in document
    assert "cpuCoresInUse" not in document
    assert document["startTime"] == "2026-08-06T12:00Z"
    assert alice.get("/context").json()["maxInteractiveSessions"] == "5"
    assert alice.get("/session", params={"view": "stats"}).status_code == 503
    missing = alice.delete("/session/nosuchid")
    assert (missing.status_code, missing.text) == (404, "nosuchid")


def test_requests_are_counted_per_endpoint_and_user(
    alice: httpx.Client, bob: httpx.Client, fake: FakeSkaha
) -> None:
    alice.get("/session")
    alice.get("/session")
    bob.get("/session")
    alice.get("/image")

    assert fake.request_count(Endpoint.LIST_SESSIONS, "alice") == 2
    assert fake.request_count(Endpoint.LIST_SESSIONS) == 3
    assert fake.request_counts()[(Endpoint.IMAGES, "alice")] == 1


def test_admin_api_injects_faults(server: ServerThread, alice: httpx.Client) -> None:
    injected = httpx.post(
        f"{server.url}/fake/faults", json={"kind": "unavailable", "endpoint": "repository"}
    )
    assert injected.status_code == 204
    assert alice.get("/repository").status_code == 503
    assert alice.get("/repository").json() == ["images.canfar.net"]
    counts = httpx.get(f"{server.url}/fake/requests").json()
    assert {"endpoint": "repository", "user": "alice", "count": 2} in counts


# ---- catalogue, availability, mounts, CLI ----------------------------------------------------


def test_image_context_and_availability(alice: httpx.Client, server: ServerThread) -> None:
    images = alice.get("/image", params={"type": "notebook"}).json()
    assert [image["id"] for image in images] == [NOTEBOOK]
    assert images[0]["digest"].startswith("sha256:")
    assert alice.get("/image", params={"type": "bogus"}).status_code == 400
    context = alice.get("/context").json()
    assert context["cores"]["options"] == list(range(1, 17))
    assert context["maxInteractiveSessions"] == 5

    availability = httpx.get(f"{server.url}/skaha/availability")
    assert availability.headers["content-type"].startswith("text/xml")
    assert "<vosi:available>true</vosi:available>" in availability.text


def test_other_apps_can_be_mounted_beside_skaha(fake: FakeSkaha) -> None:
    async def hello(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("provider")

    provider = Starlette(routes=[Route("/hello", hello)])
    with ServerThread(create_skaha_app(fake, mounts={"/oidc": provider})) as server:
        assert httpx.get(f"{server.url}/oidc/hello").text == "provider"
        assert httpx.get(f"{server.url}/skaha/availability").status_code == 200


def test_cli_serves_the_fake() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "execbroker", "fake-skaha", "--port", "0", "--token", "t0k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/skaha/v1", base)
        response = httpx.get(f"{base}/context", headers={"Authorization": "Bearer t0k"}, timeout=5)
        assert response.status_code == 200
        assert response.headers["x-vo-authenticated"] == "alice"
    finally:
        process.terminate()
        process.wait(timeout=10)
