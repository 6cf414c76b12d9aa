"""The background manager: one loop (pass, log, back off, carry on), one stop path, and a
watchdog that names a task that died."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx
import pytest
from asgi_lifespan import LifespanManager

from execbroker.background import BackgroundTaskManager, Wake
from execbroker.config import Settings
from execbroker.main import create_app


async def test_a_failing_pass_is_logged_with_the_task_name_and_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    background = BackgroundTaskManager()
    passes = 0
    third = asyncio.Event()

    async def flaky() -> float:
        nonlocal passes
        passes += 1
        if passes == 3:
            third.set()
        if passes == 1:
            raise RuntimeError("boom")
        return 0.0

    with caplog.at_level(logging.ERROR, logger="execbroker.background"):
        background.loop("flaky", flaky, retry=0.01)
        async with asyncio.timeout(5):
            await third.wait()
        await background.stop()

    failed = [r for r in caplog.records if r.getMessage() == "background pass failed; trying again"]
    assert len(failed) == 1
    assert getattr(failed[0], "task", None) == "flaky"
    assert background.dead() == {}, "a failed pass is not a dead task"


async def test_a_wake_ends_the_pause_at_once() -> None:
    background = BackgroundTaskManager()
    wake = Wake()
    passes: list[float] = []
    second = asyncio.Event()

    async def slow_loop() -> float:
        passes.append(asyncio.get_running_loop().time())
        if len(passes) == 2:
            second.set()
        return 3600.0

    background.loop("sleepy", slow_loop, retry=3600.0, wake=wake)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    wake.set()
    async with asyncio.timeout(5):
        await second.wait()
    await background.stop()
    assert len(passes) == 2


async def test_stop_cancels_and_awaits_every_task_and_group() -> None:
    background = BackgroundTaskManager()
    cancelled: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    background.spawn("long", forever("long"))
    group = background.group("work")
    group.spawn("a", forever("a"))
    group.spawn("b", forever("b"))
    await asyncio.sleep(0)

    await background.stop()

    assert sorted(cancelled) == ["a", "b", "long"]
    assert len(group) == 0
    assert background.dead() == {}, "a task stopped by stop() is not dead"


async def test_a_task_that_dies_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    background = BackgroundTaskManager()

    async def crash() -> None:
        raise ValueError("listener lost its mind")

    async def quit_early() -> None:
        return None

    with caplog.at_level(logging.ERROR, logger="execbroker.background"):
        background.spawn("listener", crash())
        background.spawn("sender", quit_early())
        await asyncio.sleep(0.01)

    assert background.dead() == {
        "listener": "ValueError: listener lost its mind",
        "sender": "returned",
    }
    assert any(r.getMessage() == "background task died" for r in caplog.records)
    await background.stop()


async def test_a_task_group_keeps_a_task_until_it_is_forgotten() -> None:
    background = BackgroundTaskManager()
    group = background.group("docker")

    async def done() -> None:
        return None

    task = group.spawn("pull", done())
    await task
    assert group.get("pull") is task, "kept, so that its owner can read how it ended"
    assert group.forget("pull") is task
    assert group.get("pull") is None
    await group.cancel("nothing")  # nothing under that key: nothing to do
    await background.stop()


async def test_healthz_names_a_dead_task(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://broker.test"
        ) as client,
    ):
        assert (await client.get("/healthz")).json()["status"] == "ok"

        async def crash() -> None:
            raise RuntimeError("lost the connection for good")

        app.state.broker.background.spawn("doomed", crash())
        await asyncio.sleep(0.01)
        health = await client.get("/healthz")

    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["dead_tasks"] == {"doomed": "RuntimeError: lost the connection for good"}
