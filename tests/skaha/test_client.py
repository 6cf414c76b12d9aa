"""The Skaha client against the fake Skaha over loopback HTTP (SKAHA.md §1, §5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from execbroker.fakes.skaha import Endpoint, Fault, FaultKind
from execbroker.platforms.skaha import (
    CreateRequest,
    RetryPolicy,
    SkahaBadRequestError,
    SkahaClient,
    SkahaCreateUnknownError,
    SkahaNotFoundError,
    SkahaServerError,
    SkahaUnavailableError,
)
from execbroker.platforms.skaha.client import SkahaSession, own_sessions_in
from tests.skaha.conftest import ACCOUNT, TERMINAL, SkahaWorld


class Tokens:
    """A token source that mints a new token from the fake IdP on each refresh."""

    def __init__(self, world: SkahaWorld) -> None:
        self.world = world
        self.token = str(world.read_tokens()["access_token"])
        self.refreshes = 0

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, *, stale: str) -> None:
        self.refreshes += 1
        self.token = self.world.idp.mint(ACCOUNT)


class Sleeps:
    """Records the waits between retries instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def _client(
    world: SkahaWorld, http: httpx.AsyncClient, sleeps: Sleeps, tokens: Tokens | None = None
) -> SkahaClient:
    return SkahaClient(
        world.skaha_url,
        http=http,
        tokens=tokens or Tokens(world),
        retry=RetryPolicy(retries=3, base=0.1, budget=10),
        sleep=sleeps,
    )


def _headless(name: str = "eb-test-1", **changes: object) -> CreateRequest:
    values: dict[str, object] = {
        "name": name,
        "image": TERMINAL,
        "cores": 1,
        "ram": 2,
        "cmd": "sleep",
        "args": ("30",),
        "env": (("A", "1"), ("B", "two")),
    }
    values.update(changes)
    return CreateRequest(**values)  # type: ignore[arg-type]


async def test_the_whole_surface_with_typed_results(
    world: SkahaWorld, http: httpx.AsyncClient
) -> None:
    client = _client(world, http, Sleeps())
    assert client.base_url.endswith("/skaha/v1")

    session_id = await client.create(_headless("Eb-Test-1"))
    assert len(session_id) == 8, "the text/plain id, its newline stripped"
    assert session_id.isalnum()

    listed = await client.sessions()
    assert [(s.id, s.name, s.type) for s in listed] == [(session_id, "eb-test-1", "headless")]
    assert listed[0].status == "Pending"
    assert (await client.sessions(session_type="notebook")) == []
    assert await client.find("EB-TEST-1") is not None, "found by name as Skaha stores it"

    one = await client.session(session_id)
    assert one.id == session_id
    assert one.image == TERMINAL
    assert one.user == ACCOUNT

    context = await client.context()
    assert 2 in context.cores.options
    assert context.memory_gb.smallest_between(3, 8) == 4
    assert context.max_interactive_sessions == 5
    assert await client.repositories() == ["images.canfar.net"]
    assert TERMINAL in {image.id for image in await client.images()}

    assert isinstance(await client.logs(session_id), str)
    await client.delete(session_id)
    with pytest.raises(SkahaNotFoundError, match=f"session {session_id} not found"):
        await client.session(session_id)
    await client.delete(session_id)  # already gone: no error


async def test_skaha_error_texts_become_typed_errors(
    world: SkahaWorld, http: httpx.AsyncClient
) -> None:
    client = _client(world, http, Sleeps())
    with pytest.raises(SkahaBadRequestError) as refused:
        await client.create(_headless(image="docker.io/library/ubuntu:24.04"))
    assert refused.value.status == 400
    # Skaha's message once, without cadc-rest's appended exception text.
    assert refused.value.message == (
        "session image 'docker.io/library/ubuntu:24.04' must come from one of [images.canfar.net]"
    )
    with pytest.raises(SkahaBadRequestError, match="Invalid value for 'cores': 3000"):
        await client.create(_headless(cores=3000))
    with pytest.raises(SkahaNotFoundError, match="session nosuchid not found"):
        await client.session("nosuchid")
    assert await client.events("nosuchid") is None, "no pod (yet): 404 means no events"


async def test_503_with_retry_after_and_resets_are_retried(
    world: SkahaWorld, http: httpx.AsyncClient
) -> None:
    sleeps = Sleeps()
    client = _client(world, http, sleeps)
    world.fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.LIST_SESSIONS, retry_after=2))
    world.fake.inject(Fault(FaultKind.RESET, Endpoint.LIST_SESSIONS))
    world.fake.inject(Fault(FaultKind.ERROR, Endpoint.LIST_SESSIONS))

    assert await client.sessions() == []
    assert world.fake.request_count(Endpoint.LIST_SESSIONS) == 4
    assert sleeps.delays[0] == 2, "Retry-After is honoured"
    assert len(sleeps.delays) == 3


async def test_a_lasting_failure_keeps_skahas_message(
    world: SkahaWorld, http: httpx.AsyncClient
) -> None:
    client = _client(world, http, Sleeps())
    world.fake.inject(
        Fault(FaultKind.ERROR, Endpoint.CONTEXT, times=None, message="java.io.IOException: x")
    )
    with pytest.raises(SkahaServerError, match=r"unexpected exception: java.io.IOException: x"):
        await client.context()
    world.fake.clear_faults()
    world.fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.CONTEXT, times=None, retry_after=1))
    with pytest.raises(SkahaUnavailableError) as unavailable:
        await client.context()
    assert unavailable.value.retry_after == timedelta(seconds=1)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.RESET, Endpoint.CREATE_SESSION, after=True),
        Fault(FaultKind.UNAVAILABLE, Endpoint.CREATE_SESSION, after=True, retry_after=1),
        Fault(FaultKind.ERROR, Endpoint.CREATE_SESSION, after=True),
        Fault(FaultKind.RESET, Endpoint.CREATE_SESSION),
        Fault(FaultKind.UNAVAILABLE, Endpoint.CREATE_SESSION, retry_after=1),
    ],
    ids=["reset-after", "503-after", "500-after", "reset-before", "503-before"],
)
async def test_a_create_with_an_unknown_outcome_is_never_duplicated(
    world: SkahaWorld, http: httpx.AsyncClient, fault: Fault
) -> None:
    client = _client(world, http, Sleeps())
    world.fake.inject(fault)

    try:
        made = [await client.create(_headless("eb-unknown-1"))]
    except SkahaCreateUnknownError:
        made = []  # it made nothing: the platform decides when a new create is safe

    assert world.sessions() == made, "at most one session, the one returned"
    assert bool(made) is fault.after, "adopted when it was made, unknown when it was not"
    assert world.fake.request_count(Endpoint.CREATE_SESSION) == 1, "never POSTed twice"
    assert world.fake.request_count(Endpoint.LIST_SESSIONS) >= 1, "looked by name first"


async def test_a_401_refreshes_once_and_retries_once(
    world: SkahaWorld, http: httpx.AsyncClient
) -> None:
    tokens = Tokens(world)
    client = _client(world, http, Sleeps(), tokens)
    world.fake.inject(Fault(FaultKind.UNAUTHORIZED, Endpoint.CONTEXT))
    await client.context()
    assert tokens.refreshes == 1

    world.fake.inject(Fault(FaultKind.UNAUTHORIZED, Endpoint.CONTEXT, times=None))
    with pytest.raises(SkahaUnavailableError, match="did not accept the broker's token"):
        await client.context()
    assert tokens.refreshes == 2, "one refresh per call, not a loop"


def test_a_large_list_yields_the_same_own_entries_as_a_full_parse() -> None:
    """Above 1 MiB the list is searched for the prefix instead of parsed whole: the same
    entries come out, a ``}`` inside a value included, and nothing nested is taken."""
    mine: list[dict[str, Any]] = [
        {
            "id": f"m{n}",
            "name": f"execbroker-{n}",
            "status": "Running",
            "type": "notebook",
            "connectURL": f"https://h/session/notebook/m{n}/lab?x={{}}" if n % 2 else "",
        }
        for n in range(50)
    ]
    foreign: list[dict[str, Any]] = [
        {
            "id": f"f{n}",
            "name": f"other-{n}",
            "status": "Running",
            "type": "headless",
            "image": '"name": "execbroker-fake',
            "extra": [{"name": "execbroker-nested"}],
        }
        for n in range(20_000)
    ]
    documents = [entry for pair in zip(foreign, mine * 400, strict=False) for entry in pair]
    body = json.dumps(documents, indent=2).encode()
    assert len(body) > 1 << 20

    found = own_sessions_in(body, "execbroker-")

    expected = [
        SkahaSession.from_json(d) for d in documents if str(d["name"]).startswith("execbroker-")
    ]
    assert found == expected
    assert len(found) == 20_000
    with pytest.raises(SkahaServerError, match="not a JSON array"):
        own_sessions_in(b'{"a": 1}' + b" " * (2 << 20), "execbroker-")
