"""Skaha's real limits in the calendar (issue 17, item 2), against the fake over HTTP.

Skaha refuses a create past ``maxInteractiveSessions`` non-headless sessions of one account
(Pending or Running). The broker books them: the (N+1)-th interactive session is never
accepted to fail at create. With ``skaha_use_stats`` it reads the cluster's free cores and
memory and never offers more than they show now.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from execbroker.fakes.skaha import SkahaCatalogue
from execbroker.platforms.skaha.client import SkahaStats
from execbroker.platforms.skaha.errors import SkahaServerError
from tests.skaha.conftest import ACCOUNT, TERMINAL, MakeWorld
from tests.skaha.documents import headless, notebook, web_app
from tests.support.engine import texts, until_ended
from tests.support.wire import post


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.split("/", maxsplit=1)[0].replace("Z", "+00:00"))


def _within(document: dict[str, Any], seconds: int) -> dict[str, Any]:
    """``document`` to start within ``seconds`` from now."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["schedule"]["requested"]["start"] = f"{now}/PT{seconds}S"
    return document


async def _direct(client: httpx.AsyncClient, document: dict[str, Any]) -> dict[str, Any]:
    created = await post(client, "/direct", document)
    assert created.status_code == 303, created.text
    session: dict[str, Any] = (await client.get(created.headers["location"])).json()
    return session


def _errors(offer_set: dict[str, Any]) -> list[str]:
    return [m["message"] for m in offer_set["meta"]["messages"] if m["level"] == "ERROR"]


async def test_the_notebook_past_the_limit_waits_and_is_never_accepted_to_fail(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(catalogue=SkahaCatalogue(max_interactive_sessions=2))
    async with broker(**world.settings()) as client:
        first = await _direct(client, notebook("PT10S"))
        second = await _direct(client, notebook("PT10S"))
        job = await _direct(client, headless(1))  # headless: not counted
        third = await _direct(client, notebook("PT4S"))
        refused = (await post(client, "/requests", _within(notebook("PT4S"), 5))).json()
        ended = [
            await until_ended(client, s["meta"]["url"], seconds=40)
            for s in (first, second, job, third)
        ]

    starts = [_when(s["schedule"]["available"]["start"]) for s in (first, second, job, third)]
    assert starts[2] <= starts[0] + timedelta(seconds=2), "the headless job did not wait"
    assert starts[3] >= _when(first["schedule"]["releasing"]["start"]), "the third waited"
    assert refused["result"] == "NO"
    assert (
        "Skaha allows at most 2 interactive sessions per account at once; 2 are booked"
        in (_errors(refused)[0])
    )
    assert [s["phase"] for s in ended] == ["COMPLETED"] * 4, [texts(s["compute"]) for s in ended]
    assert len(world.fake.launched()) == 4, "every accepted session ran; none was refused"


async def test_sessions_the_account_has_outside_the_broker_count_toward_the_limit(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(catalogue=SkahaCatalogue(max_interactive_sessions=2))
    # A person's own portal notebook, and a headless job, in the broker's account.
    world.fake.create_session(ACCOUNT, name="my-notebook", image=TERMINAL, session_type="notebook")
    world.fake.create_session(ACCOUNT, name="my-job", image=TERMINAL)
    async with broker(**world.settings()) as client:
        one = (await post(client, "/requests", _within(notebook("PT4S"), 5))).json()
        two = (await post(client, "/requests", _within(notebook("PT4S"), 5))).json()

    assert one["result"] == "YES", _errors(one)
    assert two["result"] == "NO"
    assert _errors(two)[0].endswith("(1 of them started outside this broker)"), _errors(two)


async def test_a_contributed_web_app_is_interactive_too(broker: Any, make_world: MakeWorld) -> None:
    world = make_world(catalogue=SkahaCatalogue(max_interactive_sessions=1))
    async with broker(**world.settings()) as client:
        app = await _direct(client, web_app())
        job = await _direct(client, headless(1))
        refused = (await post(client, "/requests", _within(notebook("PT4S"), 5))).json()
        await client.post(
            app["meta"]["url"],
            json={"kind": "uri:enum-value-update", "path": "/phase", "value": "CANCELLED"},
        )
        ended = [await until_ended(client, s["meta"]["url"], seconds=30) for s in (app, job)]

    assert refused["result"] == "NO", "the account's one interactive session is the web app"
    assert "Skaha allows at most 1 interactive sessions per account" in _errors(refused)[0]
    assert [s["phase"] for s in ended] == ["CANCELLED", "COMPLETED"]


async def test_with_stats_no_offer_starting_now_is_larger_than_what_is_free(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(catalogue=SkahaCatalogue(cluster_cores=3, cluster_memory_gib=64))
    four_cores = headless(1, cores=4)
    stats = {"skaha_use_stats": True, "skaha_catalogue_interval": 120}
    async with broker(**world.settings(**stats)) as client:
        asked_at = datetime.now(UTC)
        soon = (await post(client, "/requests", _within(headless(1, cores=4), 30))).json()
        later = (await post(client, "/requests", _within(four_cores, 600))).json()
        small = (await post(client, "/requests", _within(headless(1, cores=2), 30))).json()
    async with broker(**world.settings()) as client:
        unread = (await post(client, "/requests", _within(headless(1, cores=4), 30))).json()

    assert soon["result"] == "NO"
    assert "with 4 cores free" in _errors(soon)[0]
    assert "at most 3 free" in _errors(soon)[0]
    assert later["result"] == "YES"
    first = min(_when(o["schedule"]["available"]["start"]) for o in later["offers"])
    assert first >= asked_at + timedelta(seconds=120), "only after the reading stops standing"
    assert small["result"] == "YES", "what is free now is offered now"
    assert unread["result"] == "YES", "without skaha_use_stats the stats are not read"


async def test_stats_that_cannot_be_read_cap_nothing_and_say_why_once(
    broker: Any, make_world: MakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world(catalogue=SkahaCatalogue(cluster_cores=3))
    world.fake.set_quirks(metrics_missing=True)  # Skaha answers 503 to view=stats
    stats = {"skaha_use_stats": True, "skaha_catalogue_interval": 120}
    with caplog.at_level(logging.WARNING, logger="execbroker.platforms.skaha.usage"):
        async with broker(**world.settings(**stats)) as client:
            offered = (await post(client, "/requests", _within(headless(1, cores=4), 30))).json()

    assert offered["result"] == "YES", "the configured capacity still holds; no reading, no cap"
    warnings = [r for r in caplog.records if r.getMessage().startswith("cannot read what")]
    assert len(warnings) == 1
    assert warnings[0].__dict__["reading"] == "stats"


@pytest.mark.parametrize(
    ("document", "free"),
    [
        (
            {
                "cores": {"requestedCPUCores": 10.5, "cpuCoresAvailable": 89.5},
                "ram": {"requestedRAM": "5032G", "ramAvailable": "6000G"},
            },
            (79, 968),
        ),
        (
            {
                "cores": {"requestedCPUCores": "4", "cpuCoresAvailable": "16"},
                "ram": {"requestedRAM": "512Mi", "ramAvailable": "2Ti"},
            },
            (12, 2047),
        ),
        (
            {
                "cores": {"requestedCPUCores": 20, "cpuCoresAvailable": 16},
                "ram": {"requestedRAM": 8, "ramAvailable": 4},
            },
            (0, 0),
        ),
    ],
)
def test_the_stats_free_amounts_are_what_skaha_can_give_less_what_is_requested(
    document: dict[str, Any], free: tuple[int, int]
) -> None:
    stats = SkahaStats.from_json(document)
    assert (stats.free_cores, stats.free_memory_gib) == free


def test_stats_without_the_figures_are_a_clear_error() -> None:
    with pytest.raises(SkahaServerError, match=r"lack cores\.cpuCoresAvailable"):
        SkahaStats.from_json({"cores": {"maxCores": {"cores": 16}}, "ram": {}})
