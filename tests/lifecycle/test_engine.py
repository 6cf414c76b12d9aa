"""The lifecycle rules of DESIGN §3, each seen from the API on the mock platform."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from execbroker.platforms.base import PlatformStatus, Work
from execbroker.platforms.mock import MockPlatform
from tests.support.engine import (
    FAST,
    ROLES,
    components,
    container,
    ledger_counts,
    run_to_end,
    texts,
    until_ended,
    until_phase_reached,
)
from tests.support.wire import example, phase_update, post


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.split("/", maxsplit=1)[0].replace("Z", "+00:00"))


async def test_a_run_that_exits_0_completes_and_releases_everything(
    broker: Any, tmp_path: Path
) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container())

    parts = components(session)
    # On a failure, say what every component went through.
    assert session["phase"] == "COMPLETED", {n: texts(p) for n, p in parts.items()}
    assert {p["phase"] for p in parts.values()} == {"COMPLETED"}
    assert "exited with code 0" in texts(session["compute"])
    prepared, released = ledger_counts(tmp_path)
    platform_parts = {p["meta"]["uuid"] for p in parts.values() if "volume" not in p["kind"]}
    assert set(prepared) == platform_parts, "every component was prepared on the platform"
    assert set(released) == platform_parts, "and every one was released"
    assert max(prepared.values()) == 1
    assert max(released.values()) == 1


async def test_dependency_order_storage_then_data_then_compute(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container())

    def began(part: dict[str, Any]) -> datetime:
        note = next(m for m in part["meta"]["messages"] if m["message"].startswith("Preparing"))
        return _when(note["time"])

    def ready(part: dict[str, Any]) -> datetime:
        note = next(m for m in part["meta"]["messages"] if m["message"].endswith("is available"))
        return _when(note["time"])

    parts = components(session)
    storage, data, executable, compute = (
        parts["scratch"],
        parts["catalogue"],
        parts["md5-checker"],
        parts["batch-compute"],
    )
    assert ready(storage) <= began(data), "data stages into storage that is ready"
    assert ready(data) <= began(compute)
    assert ready(executable) <= began(compute)

    # Released in reverse: compute first, storage last.
    def released(part: dict[str, Any]) -> datetime:
        note = next(m for m in part["meta"]["messages"] if m["message"].endswith("released"))
        return _when(note["time"])

    assert released(compute) <= released(data) <= released(storage)


async def test_components_start_at_their_planned_prepare_start(broker: Any) -> None:
    start = (datetime.now(UTC) + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with broker(**FAST) as client:
        created = await post(client, "/direct", container(start=f"{start}/PT10S"))
        early = created.json()
        assert {p["phase"] for p in components(early).values()} == {"WAITING"}
        session = await until_ended(client, created.headers["location"])

    for part in components(session).values():
        if "volume" in part["kind"]:
            continue
        planned = _when(part["schedule"]["preparing"]["start"])
        note = next(m for m in part["meta"]["messages"] if m["message"].startswith("Preparing"))
        assert _when(note["time"]) >= planned, part["meta"]["name"]
        assert _when(note["time"]) - planned < timedelta(seconds=1), "and on time"


async def test_a_non_zero_exit_fails_the_session(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_EXIT_CODE": "3"}))
        killed = await run_to_end(client, container({"MOCK_EXIT_CODE": "137"}))

    assert session["phase"] == "FAILED"
    assert session["compute"]["phase"] == "FAILED"
    assert "exited with code 3" in texts(session["compute"])
    others = [p for n, p in components(session).items() if n != "batch-compute"]
    assert {p["phase"] for p in others} == {"COMPLETED"}, "the rest released normally"
    assert "killed: out of memory" in texts(killed["compute"])


async def test_a_data_failure_releases_the_rest_and_compute_never_starts(
    broker: Any, tmp_path: Path
) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_FAIL_AT": "data:PREPARING"}))

    parts = components(session)
    assert session["phase"] == "FAILED"
    assert parts["catalogue"]["phase"] == "FAILED"
    assert "injected failure" in texts(parts["catalogue"])
    assert parts["batch-compute"]["phase"] == "CANCELLED"
    assert parts["scratch"]["phase"] == "COMPLETED"
    prepared, released = ledger_counts(tmp_path)
    assert parts["batch-compute"]["meta"]["uuid"] not in prepared
    assert set(prepared) == set(released), "nothing is left on the platform"


@pytest.mark.parametrize(
    ("script", "ending"),
    [
        ({"MOCK_FAIL_AT": "data:PREPARING"}, "FAILED"),
        ({"MOCK_EXIT_CODE": "1"}, "FAILED"),
        ({}, "COMPLETED"),
    ],
)
async def test_a_crash_after_asking_for_a_release_keeps_why(
    broker: Any, monkeypatch: pytest.MonkeyPatch, script: dict[str, str], ending: str
) -> None:
    """A release only tells the platform to let go; why (a failure) must already be in the
    database, or after a crash it reads back as a normal ending. Here the broker dies just
    after it first asks for each release: the platform has the release, the engine's pass
    is never committed."""
    crashed: set[UUID] = set()
    release = MockPlatform.release

    async def release_then_die(platform: MockPlatform, work: Work) -> PlatformStatus:
        status = await release(platform, work)
        if work.uuid not in crashed:
            crashed.add(work.uuid)
            raise RuntimeError("the broker died here")
        return status

    monkeypatch.setattr(MockPlatform, "release", release_then_die)
    async with broker(**{**FAST, "engine_retry": 0.05}) as client:
        session = await run_to_end(client, container(script))

    assert crashed, "the broker died after release calls"
    assert session["phase"] == ending, texts(session)


async def test_a_compute_the_platform_ends_by_itself_fails_the_session(
    broker: Any, tmp_path: Path
) -> None:
    """Issue 17 item 4 on the mock: the platform terminates the running compute (as a
    preemption would), reporting it releasing, then released, with no exit code. The
    session ends FAILED, saying so, not COMPLETED; the rest is released normally."""
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_FAIL_AT": "compute:TERMINATED"}))

    parts = components(session)
    assert session["phase"] == "FAILED", texts(session)
    assert session["compute"]["phase"] == "FAILED"
    assert "ended by the platform" in texts(session["compute"])
    assert "preempted" in texts(session["compute"]), "the platform's reason"
    assert "ended by the platform" in texts(session)
    others = [p for n, p in parts.items() if n != "batch-compute"]
    assert {p["phase"] for p in others} == {"COMPLETED"}, "the rest released normally"
    prepared, released = ledger_counts(tmp_path)
    assert set(prepared) == set(released), "nothing is left on the platform"


async def test_data_waits_for_its_storage_within_its_budget_then_is_cancelled(
    broker: Any,
) -> None:
    # The storage takes 3 s against a plan of 0.3 s and a slack of 2 s: the data waits for
    # it through its budget (the grace holds at the dependent's check too, RULES-DEFECTS D4),
    # and when the budget runs out the storage is cancelled, and the session with it.
    slow_storage = {**FAST, "mock_prepare_seconds": {**FAST["mock_prepare_seconds"], "storage": 3}}
    async with broker(**slow_storage) as client:
        session = await run_to_end(client, container())

    parts = components(session)
    assert session["phase"] == "CANCELLED"
    assert "still preparing after its budget" in texts(parts["scratch"])
    assert parts["catalogue"]["phase"] == "CANCELLED"
    assert "cannot start" not in texts(parts["catalogue"])
    assert parts["batch-compute"]["phase"] == "CANCELLED"


async def test_compute_waits_for_the_executable_within_its_budget_then_is_cancelled(
    broker: Any,
) -> None:
    slow_image = {
        **FAST,
        "mock_prepare_seconds": {**FAST["mock_prepare_seconds"], "executable": 3},
    }
    async with broker(**slow_image) as client:
        session = await run_to_end(client, container(data=False))

    assert session["phase"] == "CANCELLED"
    assert "still preparing after its budget" in texts(session["executable"])
    assert session["compute"]["phase"] == "CANCELLED"
    assert "cannot start" not in texts(session["compute"])


async def test_preparing_past_its_budget_is_cancelled(broker: Any, tmp_path: Path) -> None:
    # Only the compute is slow, so nothing it waits for fails first.
    tight = {
        **FAST,
        "budget_slack": 0.3,
        "mock_prepare_seconds": {**FAST["mock_prepare_seconds"], "compute": 30},
    }
    async with broker(**tight) as client:
        session = await run_to_end(client, container())

    assert session["phase"] == "CANCELLED"
    assert session["compute"]["phase"] == "CANCELLED"
    assert "did not become ready in time" in texts(session)
    budget_notes = [
        p for p in components(session).values() if "still preparing after its budget" in texts(p)
    ]
    assert budget_notes
    prepared, released = ledger_counts(tmp_path)
    assert set(prepared) == set(released)


async def test_a_failure_while_releasing_fails_the_session(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_FAIL_AT": "storage:RELEASING"}))

    assert session["phase"] == "FAILED"
    assert components(session)["scratch"]["phase"] == "FAILED"
    assert "Releasing scratch failed" in texts(components(session)["scratch"])


async def test_a_failure_while_running(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_FAIL_AT": "compute:RUNNING"}))
    assert session["phase"] == "FAILED"
    assert session["compute"]["phase"] == "FAILED"


async def test_the_run_ends_when_its_time_is_up(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container({"MOCK_RUN_SECONDS": "60"}, duration="PT1S"))

    assert session["phase"] == "COMPLETED"
    assert "The offered time ended" in texts(session)


async def test_cancel_mid_run_releases_everything(broker: Any, tmp_path: Path) -> None:
    async with broker(**FAST) as client:
        created = await post(client, "/direct", container({"MOCK_RUN_SECONDS": "60"}))
        url = created.headers["location"]
        await until_phase_reached(client, url, "RUNNING")
        await post(client, url, phase_update("CANCELLED"))
        session = await until_ended(client, url)

    assert session["phase"] == "CANCELLED"
    assert session["compute"]["phase"] == "CANCELLED"
    prepared, released = ledger_counts(tmp_path)
    assert set(prepared) == set(released), "nothing is left running"


async def test_a_notebook_gets_a_connector_and_a_warning_before_its_end(broker: Any) -> None:
    notebook = example("notebook-request.yaml")
    notebook["schedule"] = {"requested": {"duration": "PT2S"}}
    async with broker(**FAST) as client:
        created = await post(client, "/direct", notebook)
        url = created.headers["location"]
        running = (await client.get(url)).json()
        while running["phase"] not in ("RUNNING", "COMPLETED"):
            running = (await client.get(url, params={"wait": 5})).json()
        assert running["connectors"][0]["status"] == "AVAILABLE"
        assert running["connectors"][0]["location"].startswith("https://")
        session = await until_ended(client, url)

    assert session["phase"] == "COMPLETED"
    warning = next(m for m in session["meta"]["messages"] if m["level"] == "WARN")
    assert "will be released at" in warning["message"]
    assert session["connectors"][0]["status"] == "FINISHED"
    assert session["connectors"][0]["releases"] == warning["values"]["end"]


async def test_offers_accepted_run_like_direct_ones(broker: Any) -> None:
    document = container()
    async with broker(**FAST) as client:
        offers = (await post(client, "/requests", document)).json()["offers"]
        await post(client, offers[0]["meta"]["url"], phase_update("ACCEPTED"))
        session = await until_ended(client, offers[0]["meta"]["url"])
    assert session["phase"] == "COMPLETED"


async def test_a_direct_run_polled_like_the_upstream_client(broker: Any) -> None:
    """The Java broker's Python wrapper: POST /sessions, then GET every 2 s until terminal."""
    async with broker(**FAST) as client:
        created = await post(client, "/sessions", container(data=False))
        url = created.headers["location"]
        phase = created.json()["phase"]
        polls = 0
        while phase not in ("COMPLETED", "FAILED", "CANCELLED"):
            await asyncio.sleep(2)
            phase = (await client.get(url)).json()["phase"]
            polls += 1
            assert polls < 10
    assert phase == "COMPLETED"


async def test_sessions_are_listed_newest_first_by_phase(broker: Any) -> None:
    async with broker(**FAST) as client:
        done = await run_to_end(client, container(data=False))
        waiting = (await post(client, "/requests", example("notebook-request.yaml"))).json()
        await post(client, waiting["offers"][0]["meta"]["url"], phase_update("ACCEPTED"))
        everything = (await client.get("/sessions")).json()["sessions"]
        completed = (await client.get("/sessions", params={"phase": "COMPLETED"})).json()
        either = (
            await client.get("/sessions", params=[("phase", "COMPLETED"), ("phase", "REJECTED")])
        ).json()
        last = (await client.get("/sessions", params={"last": 1})).json()["sessions"]
        sets = (await client.get("/offersets")).json()["offersets"]

    created = [_when(s["meta"]["created"]) for s in everything]
    assert created == sorted(created, reverse=True)
    assert [s["meta"]["uuid"] for s in completed["sessions"]] == [done["meta"]["uuid"]]
    assert {s["phase"] for s in either["sessions"]} == {"COMPLETED", "REJECTED"}
    assert len(last) == 1
    assert last[0]["meta"]["created"] == everything[0]["meta"]["created"]
    assert sets[0]["meta"]["uuid"] == waiting["meta"]["uuid"]


async def test_events_stream_every_phase_change(broker: Any) -> None:
    async with broker(**FAST) as client:
        created = await post(client, "/direct", container(data=False))
        url = created.headers["location"]
        phases: list[str] = []
        async with client.stream("GET", f"{url}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    phases.append(json.loads(line[6:])["phase"])
    assert phases[-1] == "COMPLETED", "the stream ends with the final phase"
    assert "RUNNING" in phases or "RELEASING" in phases
    assert len(phases) >= 3


async def test_wait_returns_at_once_for_an_ended_session(broker: Any) -> None:
    async with broker(**FAST) as client:
        session = await run_to_end(client, container(data=False))
        started = asyncio.get_running_loop().time()
        again = await client.get(session["meta"]["url"], params={"wait": 30})
        assert asyncio.get_running_loop().time() - started < 1
        assert again.json()["phase"] == "COMPLETED"


def test_roles_cover_the_mock_settings() -> None:
    assert set(ROLES) == set(FAST["mock_prepare_seconds"])
