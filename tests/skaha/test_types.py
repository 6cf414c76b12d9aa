"""Skaha session types beyond headless and notebook, and GPUs: a container with ports runs
as ``contributed``, ``x-session-type`` asks for carta, firefly or desktop, ``x-gpus`` for
GPUs; what Skaha cannot give is refused at planning time, naming the field."""

from __future__ import annotations

from typing import Any

import httpx

from execbroker.fakes.skaha import SkahaCatalogue
from tests.skaha.conftest import ACCOUNT, MakeWorld, SkahaWorld
from tests.skaha.documents import headless, web_app
from tests.skaha.test_lifecycle import skaha_id, start, until_phase
from tests.skaha.test_limits import _errors, _within
from tests.skaha.test_planning import _problems
from tests.support.wire import post

CARTA = "images.canfar.net/skaha/carta:4.1"
FIREFLY = "images.canfar.net/skaha/firefly:2025.1"


def typed(image: str, kind: str) -> dict[str, Any]:
    """A container run as the Skaha session type ``kind`` (the x-session-type extension)."""
    document = web_app(image, extra={"x-session-type": kind})
    del document["executable"]["network"]
    return document


def skaha_session(world: SkahaWorld, session: dict[str, Any]) -> dict[str, Any]:
    sid = skaha_id(session, world)
    return world.fake.get_session(ACCOUNT, sid, base=world.server.url)


async def test_a_container_with_port_5000_runs_as_contributed_with_its_connector(
    broker: Any, world: SkahaWorld
) -> None:
    async with broker(**world.settings()) as client:
        offers = (await post(client, "/requests", web_app())).json()
        other_port = (await post(client, "/requests", web_app(port=8080))).json()
        with_command = (
            await post(client, "/requests", web_app(extra={"command": ["--debug"]}))
        ).json()
        url = await start(client, web_app())
        available = await until_phase(client, url, {"AVAILABLE"})
        on_skaha = skaha_session(world, available)
        connector = available["connectors"][0]
        async with httpx.AsyncClient() as browser:
            page = await browser.get(connector["location"])

    assert offers["result"] == "YES", offers
    assert not any("ports" in m["message"] for m in offers["meta"].get("messages", []))
    assert on_skaha["type"] == "contributed"
    assert connector["status"] == "AVAILABLE"
    assert f"/session/contrib/{on_skaha['id']}/" in connector["location"]
    assert page.status_code == 200, "the web interface answers"

    assert other_port["result"] == "NO"
    assert (
        "port 5000 only, not 8080"
        in _problems(other_port)["/executable/network/ports/0/internal/port"]
    )
    assert with_command["result"] == "NO"
    assert "leave out command" in _problems(with_command)["/executable/command"]


async def test_carta_firefly_and_desktop_are_asked_for_with_x_session_type(
    broker: Any, world: SkahaWorld
) -> None:
    async with broker(**world.settings()) as client:
        url = await start(client, typed(CARTA, "carta"))
        available = await until_phase(client, url, {"AVAILABLE"})
        on_skaha = skaha_session(world, available)
        firefly = (await post(client, "/requests", typed(FIREFLY, "firefly"))).json()
        wrong_image = (await post(client, "/requests", typed(FIREFLY, "carta"))).json()
        unknown = (await post(client, "/requests", typed(CARTA, "spreadsheet"))).json()
        headless_ports = (
            await post(client, "/requests", web_app(extra={"x-session-type": "headless"}))
        ).json()

    assert on_skaha["type"] == "carta"
    assert on_skaha["image"] == CARTA
    assert f"/session/carta/{on_skaha['id']}/" in available["connectors"][0]["location"]
    assert firefly["result"] == "YES", firefly
    assert firefly["offers"][0]["executable"]["x-session-type"] == "firefly"

    assert wrong_image["result"] == "NO"
    assert (
        f"lists '{FIREFLY}' for firefly sessions, not carta"
        in _problems(wrong_image)["/executable/image/locations"]
    )
    assert "not 'spreadsheet'" in _problems(unknown)["/executable/x-session-type"]
    assert "publish no network ports" in _problems(headless_ports)["/executable/network/ports"]


async def test_gpus_are_sent_when_the_site_offers_them_and_refused_when_it_has_none(
    broker: Any, make_world: MakeWorld
) -> None:
    with_gpus = make_world(catalogue=SkahaCatalogue(gpu_options=(1, 2)))

    def wanting(gpus: int) -> dict[str, Any]:
        document = headless(1)
        document["compute"]["x-gpus"] = gpus
        return document

    async with broker(**with_gpus.settings()) as client:
        url = await start(client, wanting(2))
        running = await until_phase(client, url, {"RUNNING", "COMPLETED"})
        three = (await post(client, "/requests", wanting(3))).json()
    without = make_world(catalogue=SkahaCatalogue(gpu_options=()))  # its own token file
    async with broker(**without.settings()) as client:
        none = (await post(client, "/requests", wanting(1))).json()
    async with broker() as client:
        elsewhere = (await post(client, "/requests", wanting(1))).json()

    assert skaha_session(with_gpus, running)["requestedGPUCores"] == "2"
    assert running["compute"]["x-gpus"] == 2, "the session shows the GPUs it has"
    assert "Skaha offers 1, 2 GPUs, not 3" in _problems(three)["/compute/x-gpus"]
    assert "this Skaha site offers no GPUs" in _problems(none)["/compute/x-gpus"]
    assert "mock platform cannot honour" in _problems(elsewhere)["/compute/x-gpus"]


async def test_contributed_and_carta_sessions_count_toward_the_interactive_limit(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(catalogue=SkahaCatalogue(max_interactive_sessions=1))
    async with broker(**world.settings()) as client:
        await start(client, web_app())
        carta = (await post(client, "/requests", _within(typed(CARTA, "carta"), 5))).json()
        job = (await post(client, "/requests", _within(headless(1), 5))).json()

    assert carta["result"] == "NO"
    assert "Skaha allows at most 1 interactive sessions per account at once" in _errors(carta)[0]
    assert job["result"] == "YES", "a headless job is not counted"
