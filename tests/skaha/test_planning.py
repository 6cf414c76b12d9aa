"""Planning on Skaha: what Skaha cannot run is answered NO, naming the field and why."""

from __future__ import annotations

from typing import Any

from execbroker.fakes.skaha import SkahaCatalogue
from tests.skaha.conftest import MakeWorld
from tests.skaha.documents import headless
from tests.support.wire import example, post


def _problems(offer_set: dict[str, Any]) -> dict[str, str]:
    """The offer set's error messages by the field they name."""
    return {
        m["values"]["path"]: m["message"]
        for m in offer_set["meta"].get("messages", [])
        if m["level"] == "ERROR"
    }


async def test_what_skaha_cannot_run_is_refused_at_planning_time(
    broker: Any, make_world: MakeWorld
) -> None:
    world = make_world(
        catalogue=SkahaCatalogue(core_options=(1, 2, 4, 8), memory_options=(2, 4, 8, 16))
    )
    async with broker(**world.settings()) as client:
        unfit = headless(1, {"OPTIONS": "--level=3", "QUOTED": 'say "hi"'}, cores=3)
        unfit["executable"]["command"] = ["--input", "my file.fits"]
        unfit["executable"]["entrypoint"] = "python -u"
        unfit["compute"]["memory"] = {"min": 5, "max": 7}
        refused = (await post(client, "/requests", unfit)).json()

        foreign = headless(1)
        foreign["executable"]["image"]["locations"] = ["docker.io/library/ubuntu:24.04"]
        elsewhere = (await post(client, "/requests", foreign)).json()

        private = headless(1)
        private["executable"]["image"]["locations"] = ["images.canfar.net/me/private:1"]
        uncached = (await post(client, "/requests", private)).json()

        fitting = headless(1)
        fitting["compute"]["cores"] = {"min": 3, "max": 6}
        fitting["compute"]["memory"] = {"min": 3, "max": 20}
        accepted = (await post(client, "/requests", fitting)).json()

        direct = await post(client, "/direct", unfit)

    assert refused["result"] == "NO"
    problems = _problems(refused)
    assert "cannot contain one: 'my file.fits'" in problems["/executable/command/1"]
    assert "'=': OPTIONS" in problems["/executable/environment/OPTIONS"]
    assert "'\"'" in problems["/executable/environment/QUOTED"]
    assert "has a space" in problems["/executable/entrypoint"]
    assert "no amount of cores between 3 and 3; it offers 1, 2, 4, 8" in problems["/compute/cores"]
    assert "GiB of memory between 5 and 7" in problems["/compute/memory"]

    assert elsewhere["result"] == "NO"
    assert (
        "only pull images from images.canfar.net"
        in _problems(elsewhere)["/executable/image/locations"]
    )
    assert uncached["result"] == "NO"
    assert "public image cache" in _problems(uncached)["/executable/image/locations"]

    assert accepted["result"] == "YES", accepted
    compute = accepted["offers"][0]["compute"]
    assert compute["cores"] == {"min": 4, "max": 4}, "the smallest option in 3-6"
    assert compute["memory"] == {"min": 4, "max": 4}, "the smallest option in 3-20"

    assert direct.status_code == 400, "a direct run is refused the same way"
    assert "my file.fits" in direct.text


async def test_storage_and_data_are_accepted_with_notes_saying_what_skaha_does(
    broker: Any, world: Any
) -> None:
    document = example("container-with-data-request.yaml")
    image = document["executable"]["image"]["locations"][0]
    world.fake.add_image(image)
    async with broker(**world.settings()) as client:
        offers = (await post(client, "/requests", document)).json()

    assert offers["result"] == "YES", offers
    notes = " | ".join(m["message"] for m in offers["meta"]["messages"])
    assert "Skaha has no staging: data resource 'catalogue'" in notes
    assert "/arc" in notes
