"""The broker on the Skaha platform, end to end: the broker in-process (its real lifespan),
the fake Skaha and the fake OIDC provider over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx

from execbroker.fakes.skaha import Endpoint, Fault, FaultKind
from tests.skaha.conftest import (
    ACCOUNT,
    FAST_TIMINGS,
    TERMINAL,
    MakeWorld,
    SkahaWorld,
    live_refresh_token,
)
from tests.skaha.documents import headless, notebook
from tests.support.engine import TERMINAL as ENDED
from tests.support.engine import texts, until_ended
from tests.support.waiting import eventually
from tests.support.wire import phase_update, post


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
        session = (await client.get(url, params={"wait": 2})).json()
    assert session["phase"] in phases, f"{session['phase']}: {texts(session['compute'])}"
    return session


def skaha_id(session: dict[str, Any], world: SkahaWorld) -> str:
    """The Skaha session id of a broker session, found by its compute's name on Skaha."""
    name = f"execbroker-{session['compute']['meta']['uuid']}"
    return next(sid for sid, launched in world.fake.launched() if launched == name)


def duplicates(world: SkahaWorld) -> list[str]:
    counts = Counter(name for _, name in world.fake.launched())
    return [name for name, count in counts.items() if count > 1]


async def test_a_notebook_offer_becomes_a_skaha_notebook_until_its_time_is_up(
    broker: Any, make_world: MakeWorld
) -> None:
    # Skaha would expire the notebook after 2 s; the offer lasts 4 s: the broker renews it.
    world = make_world(timings=replace(FAST_TIMINGS, session_expiry=timedelta(seconds=2)))
    orphan = f"execbroker-{uuid.uuid4()}"
    world.fake.create_session(ACCOUNT, name=orphan, image=TERMINAL)
    world.fake.create_session(ACCOUNT, name="someone-else-1", image=TERMINAL)
    async with broker(**world.settings(skaha_renew_before=1.5)) as client:
        offers = (await post(client, "/requests", notebook("PT4S"))).json()
        assert offers["result"] == "YES", offers
        offer = offers["offers"][0]
        assert offer["compute"]["cores"] == {"min": 2, "max": 2}, "the smallest option in 2-4"
        await post(client, offer["meta"]["url"], phase_update("ACCEPTED"))
        url = offer["meta"]["url"]

        available = await until_phase(client, url, {"AVAILABLE"})
        connector = available["connectors"][0]
        assert connector["status"] == "AVAILABLE"
        assert skaha_id(available, world) in connector["location"]
        async with httpx.AsyncClient() as browser:
            page = await browser.get(connector["location"])
        assert page.status_code == 200, "the notebook answers"
        session = await until_ended(client, url, seconds=20)

    assert session["phase"] == "COMPLETED", texts(session)
    assert session["connectors"][0]["status"] == "FINISHED"
    assert world.fake.request_count(Endpoint.MODIFY_SESSION) >= 1, "renewed while offered"
    names = {name for sid, name in world.fake.launched() if sid in world.sessions()}
    assert names == {"someone-else-1"}, "the orphan and the notebook deleted, others kept"
    assert not duplicates(world)


async def test_headless_exit_0_completes_and_exit_1_fails_with_the_log_tail(
    broker: Any, world: SkahaWorld
) -> None:
    async with broker(**world.settings()) as client:
        good = await start(client, headless(1))
        bad = await start(client, headless(1, {"FAKE_EXIT_CODE": "1", "STAGE": "final"}))
        good_session = await until_ended(client, good)
        bad_session = await until_ended(client, bad)

    assert good_session["phase"] == "COMPLETED", texts(good_session["compute"])
    assert bad_session["phase"] == "FAILED"
    failure = texts(bad_session["compute"])
    assert "log tail" in failure
    assert "exited with code 1" in failure, "the container's last words"
    assert "env: STAGE=final" in failure
    assert "Started container" in failure, "the events too"
    assert world.sessions() == [], "both deleted"


async def test_a_long_run_with_rotating_short_lived_tokens_has_no_auth_failure(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(access_ttl=timedelta(seconds=2))
    async with broker(**world.settings()) as client:
        url = await start(client, notebook("PT5S"))
        session = await until_ended(client, url, seconds=25)

    assert session["phase"] == "COMPLETED", texts(session["compute"])
    assert world.idp.refresh_grants >= 3
    assert world.unauthenticated() == 0, "never a refused token"
    # The file holds the newest refresh token: the provider takes it (old ones are dead).
    assert await live_refresh_token(world)


async def test_a_dead_refresh_token_degrades_health_and_fails_nothing(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(access_ttl=timedelta(seconds=2))
    async with broker(**world.settings()) as client:
        healthy = (await client.get("/healthz")).json()
        assert healthy["status"] == "ok"
        assert healthy["platform_status"] == "available"
        url = await start(client, notebook("PT5S"))
        await until_phase(client, url, {"AVAILABLE"})

        world.idp.revoke_refresh_tokens()
        health = (
            await eventually(
                lambda: client.get("/healthz"),
                lambda answer: answer.json()["status"] != "ok",
                what="health degraded",
                within=6,
                interval=0.2,
            )
        ).json()
        assert health["status"] == "degraded"
        assert health["platform_status"] == "unavailable"
        assert "invalid_grant" in health["platform_message"]
        assert str(world.token_file) in health["platform_message"]
        await asyncio.sleep(1)  # the scenario: its time runs on while the token is dead
        still = (await client.get(url)).json()
        assert still["phase"] == "AVAILABLE", "nothing failed while within its time"

        world.write_tokens()  # the operator's new tokens
        session = await until_ended(client, url, seconds=20)
        assert (await client.get("/healthz")).json()["status"] == "ok"

    assert session["phase"] == "COMPLETED", texts(session["compute"])
    assert world.sessions() == []


async def test_an_idp_outage_mid_run_does_not_touch_the_session(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(access_ttl=timedelta(seconds=2))
    async with broker(**world.settings()) as client:
        url = await start(client, headless(4))
        await until_phase(client, url, {"RUNNING"})
        world.idp.idp_down = True
        await asyncio.sleep(3)  # the scenario: an outage of 3 s
        world.idp.idp_down = False
        session = await until_ended(client, url, seconds=25)

    assert session["phase"] == "COMPLETED", texts(session["compute"])
    assert world.sessions() == []
    assert not duplicates(world)


async def test_503s_and_connection_resets_are_retried_without_duplicates(
    broker: Any, world: SkahaWorld
) -> None:
    fake = world.fake
    fake.inject(Fault(FaultKind.RESET, Endpoint.CREATE_SESSION, after=True))
    fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.CREATE_SESSION, after=True, retry_after=1))
    fake.inject(Fault(FaultKind.RESET, Endpoint.CREATE_SESSION))
    fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.LIST_SESSIONS, retry_after=1))
    fake.inject(Fault(FaultKind.RESET, Endpoint.LIST_SESSIONS))
    fake.inject(Fault(FaultKind.UNAVAILABLE, Endpoint.DELETE_SESSION, retry_after=1))
    async with broker(**world.settings()) as client:
        urls = [await start(client, headless(1)) for _ in range(3)]
        sessions = [await until_ended(client, url, seconds=20) for url in urls]

    assert [s["phase"] for s in sessions] == ["COMPLETED"] * 3, [
        texts(s["compute"]) for s in sessions
    ]
    assert len(fake.launched()) == 3, "one Skaha session per compute, whatever was lost"
    assert not duplicates(world)
    assert world.sessions() == []


async def test_twenty_sessions_cost_one_list_call_per_interval(
    broker: Any, world: SkahaWorld
) -> None:
    interval = 0.3
    async with broker(**world.settings(skaha_list_interval=interval)) as client:
        world.fake.reset_requests()
        began = time.monotonic()
        urls = [await start(client, headless(2)) for _ in range(20)]
        sessions = [await until_ended(client, url, seconds=25) for url in urls]
        elapsed = time.monotonic() - began

    assert {s["phase"] for s in sessions} == {"COMPLETED"}
    lists = world.fake.request_count(Endpoint.LIST_SESSIONS)
    assert lists <= elapsed / interval + 2, f"{lists} list calls in {elapsed:.1f} s"
    # No per-session GETs to poll: only one after each DELETE, to confirm it.
    gets = world.fake.request_count(Endpoint.GET_SESSION)
    assert gets <= world.fake.request_count(Endpoint.DELETE_SESSION) == 20


async def test_stuck_broken_and_vanished_sessions(broker: Any, world: SkahaWorld) -> None:
    world.fake.hold_queue(["notebook"])  # Kueue starvation: Pending, no startTime
    async with broker(**world.settings(skaha_queue_budget=3)) as client:
        stuck = await start(client, notebook("PT1M"))
        broken = await start(client, headless(1, {"FAKE_IMAGE_PULL": "fail"}))
        vanishing = await start(client, headless(30))
        running = await until_phase(client, vanishing, {"RUNNING"})
        world.fake.forget(skaha_id(running, world))

        stuck_session = await until_ended(client, stuck, seconds=20)
        broken_session = await until_ended(client, broken, seconds=20)
        vanished_session = await until_ended(client, vanishing, seconds=20)

    assert stuck_session["phase"] == "CANCELLED", texts(stuck_session["compute"])
    assert "did not become ready in time" in texts(stuck_session)
    assert "queue budget" in texts(stuck_session["compute"])
    assert broken_session["phase"] == "FAILED"
    assert "ErrImagePull" in texts(broken_session["compute"]), "the events say why"
    assert vanished_session["phase"] == "FAILED"
    assert "lost" in texts(vanished_session["compute"])
    assert world.sessions() == [], "the stuck and the broken one deleted"


async def test_a_preempted_job_ends_failed_with_skahas_events_and_log_tail(
    broker: Any, make_world: MakeWorld
) -> None:
    """Issue 17 item 4: Kubernetes preempts a running headless job (Terminating for a few
    seconds, then gone). The broker did not ask for that end: the session ends FAILED,
    saying so with Skaha's events and the log tail, not COMPLETED. A job left alone next to
    it still completes."""
    world = make_world(timings=replace(FAST_TIMINGS, terminating=timedelta(seconds=3)))
    async with broker(**world.settings()) as client:
        preempted = await start(client, headless(30))
        left_alone = await start(client, headless(2))
        running = await until_phase(client, preempted, {"RUNNING"})
        world.fake.preempt(skaha_id(running, world))
        session = await until_ended(client, preempted, seconds=20)
        normal = await until_ended(client, left_alone, seconds=20)

    assert session["phase"] == "FAILED", texts(session)
    failure = texts(session["compute"])
    assert "ended by the platform" in failure
    assert "the broker did not delete it" in failure
    assert "Preempted" in failure, "Skaha's events say why"
    assert "log tail" in failure
    assert "ended by the platform" in texts(session), "the session says why it failed"
    assert normal["phase"] == "COMPLETED", texts(normal["compute"])
    assert world.sessions() == []


async def test_a_job_deleted_behind_the_brokers_back_ends_failed(
    broker: Any, world: SkahaWorld
) -> None:
    """An administrator deletes a running job: Skaha shows it Terminating only briefly
    (or never: straight to 404). Either way the session ends FAILED, never COMPLETED."""
    async with broker(**world.settings()) as client:
        url = await start(client, headless(30))
        running = await until_phase(client, url, {"RUNNING"})
        sid = skaha_id(running, world)
        world.fake.delete_session(ACCOUNT, sid)
        session = await until_ended(client, url, seconds=20)

    assert session["phase"] == "FAILED", texts(session)
    assert "ended by the platform" in texts(session["compute"])
    assert world.fake.session_status(sid) is None
