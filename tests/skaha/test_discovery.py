"""Finding Skaha's session API from the site's VOSI capabilities: the accessURL it names is
used, a site without capabilities is assumed to serve ``/v1``, and a site without a v1
session API stops the start-up with one line saying so."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from execbroker.exceptions import StartupError
from execbroker.fakes.server import ServerThread
from execbroker.fakes.skaha import Endpoint
from tests.skaha.conftest import SkahaWorld
from tests.skaha.documents import headless
from tests.skaha.test_lifecycle import start
from tests.support.engine import until_ended

SESSION_1 = "http://www.opencadc.org/std/platform#session-1"


def capabilities(*offered: tuple[str, str]) -> str:
    """A VOSI capabilities document offering each (standardID, accessURL)."""
    entries = "".join(
        f'<capability standardID="{standard}"><interface xsi:type="vs:ParamHTTP" role="std">'
        f'<accessURL use="base">{url}</accessURL></interface></capability>'
        for standard, url in offered
    )
    return (
        '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
        'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
        f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{entries}</vosi:capabilities>'
    )


class Site:
    """A site's registry front: serves ``/capabilities`` (``document``) and counts reads."""

    def __init__(self) -> None:
        self.document = ""
        self.reads = 0
        self.server = ServerThread(Starlette(routes=[Route("/capabilities", self._serve)]))

    async def _serve(self, _request: Request) -> Response:
        self.reads += 1
        return Response(self.document, media_type="text/xml")


@pytest.fixture
def site() -> Iterator[Site]:
    front = Site()
    front.server.start()
    yield front
    front.server.stop()


async def test_the_session_api_named_by_the_capabilities_is_used(
    broker: Any, world: SkahaWorld, site: Site
) -> None:
    # The site's root is elsewhere than the API: only the capabilities lead to it.
    site.document = capabilities(
        ("ivo://ivoa.net/std/VOSI#capabilities", f"{site.server.url}/capabilities"),
        (SESSION_1, f"{world.skaha_url}/v1"),
    )
    async with broker(**world.settings(skaha_url=site.server.url)) as client:
        url = await start(client, headless(0.5))
        ended = await until_ended(client, url, seconds=20)

    assert ended["phase"] == "COMPLETED", ended
    assert site.reads == 1
    assert world.fake.request_count(Endpoint.CREATE_SESSION) == 1


async def test_a_site_without_capabilities_is_assumed_to_serve_v1(
    broker: Any, world: SkahaWorld
) -> None:
    world.fake.set_quirks(no_capabilities=True)
    async with broker(**world.settings()) as client:
        url = await start(client, headless(0.5))
        ended = await until_ended(client, url, seconds=20)

    assert ended["phase"] == "COMPLETED", ended
    assert world.fake.request_count(Endpoint.CAPABILITIES) == 1, "asked, got 404, used /v1"


async def test_a_site_without_a_v1_session_api_stops_the_start_with_one_line(
    broker: Any, world: SkahaWorld, site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    world.fake.set_quirks(v0_only=True)
    with pytest.raises(StartupError) as legacy:
        async with broker(**world.settings()):
            pass
    site.document = capabilities((SESSION_1, f"{site.server.url}/skaha/v0"))
    with pytest.raises(StartupError) as old:
        async with broker(**world.settings(skaha_url=site.server.url)):
            pass

    assert str(legacy.value) == (
        f"skaha_url (EXECBROKER_SKAHA_URL): {world.skaha_url}/capabilities lists no Skaha "
        f"session API (standardID {SESSION_1}) (only the legacy v0 session API); this broker "
        "needs a Skaha site with the v1 API"
    )
    assert f"only at {site.server.url}/skaha/v0; this broker speaks its v1 API" in str(old.value)
    lines = [r for r in caplog.records if r.getMessage() == "the Skaha site is not supported"]
    assert len(lines) == 2, "one error line per failed start"
    assert world.fake.request_count(Endpoint.CREATE_SESSION) == 0
