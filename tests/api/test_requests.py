"""POST /requests and /direct (and their older aliases): offers and sessions as users see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from execbroker.api.formats.negotiation import MEDIA_TYPES, MediaFormat
from execbroker.model import kinds
from execbroker.model.wire import (
    ComponentMetadata,
    EnumValueOption,
    ExecutionSession,
    OfferSetResponse,
)
from tests.support.wire import FORMATS, decode, example, notebook_request, post

V1 = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _phase_choices(meta: ComponentMetadata | None) -> list[str]:
    """The phases a client may ask for next, from the first option of ``meta``."""
    assert meta is not None
    assert meta.options
    option = meta.options[0]
    assert isinstance(option, EnumValueOption)
    return option.values


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["notebook-request.yaml", "container-with-data-request.yaml"])
async def test_examples_get_offers_in_every_format(
    client: httpx.AsyncClient, name: str, fmt: MediaFormat
) -> None:
    document = example(name)
    response = await post(client, "/requests", document, fmt, accept=fmt)

    assert response.status_code == 303
    assert response.headers["content-type"].startswith(MEDIA_TYPES[fmt])
    body = decode(response)
    offer_set = OfferSetResponse.model_validate(body)
    assert offer_set.meta is not None
    assert response.headers["location"] == offer_set.meta.url
    assert offer_set.result == "YES", body
    assert 1 <= len(offer_set.offers) <= 4
    for offer in offer_set.offers:
        assert offer.phase == "OFFERED"
        assert offer.expires is not None
        assert offer.executable is not None
        assert offer.executable.kind == document["executable"]["kind"]
        assert _phase_choices(offer.meta) == ["ACCEPTED", "REJECTED"]
        assert offer.connectors == []


async def test_offers_honour_the_requested_window_amounts_and_duration(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, "/requests", example("notebook-request.yaml"))
    body = response.json()

    window_start = datetime(2030, 1, 1, 10, tzinfo=UTC)
    window_end = window_start + timedelta(hours=3)
    starts = []
    for offer in body["offers"]:
        start = _when(offer["schedule"]["available"]["start"].split("/")[0])
        starts.append(start)
        assert window_start <= start <= window_end
        assert offer["schedule"]["available"]["duration"] == "PT2H"
        compute = offer["compute"]
        assert 2 <= compute["cores"]["min"] == compute["cores"]["max"] <= 4
        assert 4 <= compute["memory"]["min"] == compute["memory"]["max"] <= 8
        # Everything is ready before the start, and released after the end.
        for component in (offer["executable"], compute):
            schedule = component["schedule"]
            assert _when(schedule["preparing"]["start"]) < start
            assert component["phase"] == "INITIALIZING"
    assert starts[0] == window_start, "the earliest offer starts when the window opens"
    assert len(set(starts)) > 1, "alternatives include later starts"
    assert {o["compute"]["cores"]["min"] for o in body["offers"]} == {2, 4}


async def test_offers_expire_after_the_configured_time(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    body = (await post(client, "/requests", notebook_request())).json()
    expires = _when(body["offers"][0]["expires"])
    assert timedelta(seconds=299) <= expires - before <= timedelta(seconds=302)


async def test_container_request_wires_data_storage_and_mounts(client: httpx.AsyncClient) -> None:
    body = (await post(client, "/requests", example("container-with-data-request.yaml"))).json()
    offer = body["offers"][0]

    storage = {s["meta"]["name"]: s for s in offer["storage"]}
    data = {d["meta"]["name"]: d for d in offer["data"]}
    assert set(storage) == {"scratch"}
    assert data["catalogue"]["storage"] == storage["scratch"]["meta"]["uuid"]
    assert storage["scratch"]["data"] == [data["catalogue"]["meta"]["uuid"]]
    assert 10 <= storage["scratch"]["size"]["min"] <= 20
    mounts = {v["path"]: v for v in offer["compute"]["volumes"]}
    assert mounts["/input"]["resource"] == data["catalogue"]["meta"]["uuid"]
    assert mounts["/input"]["mode"] == "READONLY"
    assert mounts["/scratch"]["resource"] == storage["scratch"]["meta"]["uuid"]
    assert mounts["/scratch"]["mode"] == "READWRITE"
    # Data is staged into storage that exists, before the compute starts.
    assert _when(storage["scratch"]["schedule"]["available"]["start"].split("/")[0]) <= _when(
        data["catalogue"]["schedule"]["preparing"]["start"]
    )
    assert _when(data["catalogue"]["schedule"]["available"]["start"].split("/")[0]) <= _when(
        offer["compute"]["schedule"]["preparing"]["start"]
    )


async def test_storage_and_the_executable_prepare_from_the_accept(
    client: httpx.AsyncClient,
) -> None:
    """DESIGN §3 rule 1 (the seed rule): storage and the executable start preparing as soon
    as the session holds anything (at accept, for the earliest offer), not just in time, so
    that an image pull is done well before the compute starts."""
    body = (await post(client, "/requests", example("container-with-data-request.yaml"))).json()
    for offer in body["offers"]:
        session_start = _when(offer["schedule"]["preparing"]["start"])
        (storage,) = offer["storage"]
        assert _when(storage["schedule"]["preparing"]["start"]) == session_start
        executable = offer["executable"]["schedule"]
        assert _when(executable["preparing"]["start"]) == session_start
        ready = _when(executable["available"]["start"].split("/")[0])
        compute_start = _when(offer["compute"]["schedule"]["preparing"]["start"])
        assert ready < compute_start


async def test_defaults_fill_in_compute_storage_and_mounts(client: httpx.AsyncClient) -> None:
    document = {
        "executable": example("direct-request.json")["executable"],
        "data": [
            {
                "kind": f"{V1}data/simple-data-resource.yaml",
                "meta": {"name": "input"},
                "location": "https://example.org/input.fits",
            }
        ],
    }
    body = (await post(client, "/requests", document)).json()
    assert body["result"] == "YES"
    offer = body["offers"][0]
    assert offer["compute"]["kind"] == kinds.COMPUTE_SIMPLE
    assert offer["compute"]["cores"] == {"min": 1, "max": 1}
    assert [s["meta"]["name"] for s in offer["storage"]] == ["input-storage"]
    assert offer["compute"]["volumes"][0]["path"] == "/volumes/input"
    assert offer["schedule"]["available"]["duration"] == "PT1H"
    texts = " ".join(m["message"] for m in body["meta"]["messages"])
    assert "names no compute resource" in texts
    assert "mounted read-only at /volumes/input" in texts


async def test_older_kind_uris_are_read_and_v1_uris_written(client: httpx.AsyncClient) -> None:
    document = example("container-with-data-request.yaml")
    legacy = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/"
    document["executable"]["kind"] = f"{legacy}executable/docker-container-1.0"
    document["compute"]["kind"] = f"{legacy}compute/simple-compute-resource-1.0"
    document["data"][0]["kind"] = f"{legacy}data/simple-data-resource-1.0"

    response = await post(client, "/offersets", document)  # the older path, too

    assert response.status_code == 303
    offer = response.json()["offers"][0]
    assert offer["executable"]["kind"] == kinds.EXECUTABLE_DOCKER
    assert offer["compute"]["kind"] == kinds.COMPUTE_SIMPLE
    assert offer["data"][0]["kind"] == kinds.DATA_SIMPLE
    assert legacy not in response.text


async def test_capped_maximum_is_offered_with_a_warning(client: httpx.AsyncClient) -> None:
    document = notebook_request()
    document["compute"]["cores"] = {"min": 2, "max": 1000}
    body = (await post(client, "/requests", document)).json()
    assert body["result"] == "YES"
    assert max(o["compute"]["cores"]["max"] for o in body["offers"]) == 64
    warnings = [m for m in body["meta"]["messages"] if m["level"] == "WARN"]
    assert warnings[0]["values"]["path"] == "/compute/cores/max"
    assert "capped to the platform's 64" in warnings[0]["message"]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_direct_execution_starts_accepted(
    client: httpx.AsyncClient, fmt: MediaFormat
) -> None:
    response = await post(client, "/direct", example("direct-request.json"), fmt, accept=fmt)

    assert response.status_code == 303
    session = ExecutionSession.model_validate(decode(response))
    assert session.meta is not None
    assert response.headers["location"] == session.meta.url
    assert session.phase == "ACCEPTED"
    assert session.expires is None
    assert _phase_choices(session.meta) == ["CANCELLED"]
    assert session.executable is not None
    assert session.executable.phase == "WAITING"
    assert session.schedule is not None
    assert session.schedule.available is not None
    assert session.schedule.available.start is not None
    start = _when(session.schedule.available.start.split("/")[0])
    assert start - datetime.now(UTC) < timedelta(minutes=5)


async def test_direct_execution_older_path(client: httpx.AsyncClient) -> None:
    response = await post(client, "/sessions", example("direct-request.json"))
    assert response.status_code == 303
    assert response.json()["phase"] == "ACCEPTED"
    assert "/sessions/" in response.headers["location"]


async def test_direct_request_that_cannot_be_served_is_400_with_reasons(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, "/direct", {"compute": {"cores": {"min": 2}}})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "request_refused"
    assert body["messages"][0]["values"]["path"] == "/executable"
    # Also the session the schema answers it with, as clients generated from it read it.
    assert body["kind"].endswith("/kinds/session/scheduled-execution-session.yaml")
    assert body["phase"] == "FAILED"
    assert body["meta"]["messages"] == body["messages"]


def _all_urls(document: Any) -> list[str]:
    found: list[str] = []
    if isinstance(document, dict):
        meta = document.get("meta")
        if isinstance(meta, dict) and "url" in meta:
            found.append(meta["url"])
        for value in document.values():
            found.extend(_all_urls(value))
    elif isinstance(document, list):
        for item in document:
            found.extend(_all_urls(item))
    return found


async def test_every_meta_url_resolves(client: httpx.AsyncClient) -> None:
    offers = (await post(client, "/requests", example("container-with-data-request.yaml"))).json()
    direct = (await post(client, "/direct", example("direct-request.json"))).json()
    urls = _all_urls(offers) + _all_urls(direct)
    collections = {url.split("/")[-2] for url in urls}
    assert collections == {
        "offersets",
        "sessions",
        "executables",
        "compute",
        "storage",
        "data",
        "volumes",
    }
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, url
        assert response.json()["meta"]["url"] == url
        assert response.json()["meta"]["uuid"] == url.rsplit("/", 1)[-1]
        if url.split("/")[-2] not in ("offersets", "sessions"):
            assert response.json()["phase"]
            assert response.json()["schedule"]["preparing"]["start"]


async def test_urls_follow_trusted_proxy_headers_only(broker: Any) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "broker.example.org"}
    async with broker(trusted_proxies=["127.0.0.1"]) as trusting:
        body = (await trusting.post("/requests", json=notebook_request(), headers=forwarded)).json()
        assert body["meta"]["url"].startswith("https://broker.example.org/offersets/")
    async with broker() as wary:
        body = (await wary.post("/requests", json=notebook_request(), headers=forwarded)).json()
        assert body["meta"]["url"].startswith("http://broker.test/offersets/")


async def test_every_executable_and_data_kind_round_trips(client: httpx.AsyncClient) -> None:
    data: list[dict[str, Any]] = [
        {
            "kind": f"{V1}data/S3-data-resource.yaml",
            "meta": {"name": "s3"},
            "endpoint": "https://s3.example.org",
            "template": "https://{bucket}.s3.example.org/{object}",
            "bucket": "survey",
            "object": "tile-1.fits",
        },
        {
            "kind": f"{V1}data/ivoa-data-resource.yaml",
            "meta": {"name": "ivoa"},
            "ivoa": {
                "ivoid": "ivo://example.org/data?1",
                "obscore": {"obs_id": "1", "calib_level": 2, "access_url": "https://x/1"},
            },
        },
        {
            "kind": f"{V1}data/rucio-data-resource.yaml",
            "meta": {"name": "rucio"},
            "rucio": {
                "endpoint": "https://rucio.example.org",
                "scope": "testing",
                "object": "file-1",
                "type": "FILE",
            },
        },
        {
            "kind": f"{V1}data/skao-data-resource.yaml",
            "meta": {"name": "skao"},
            "skao": {
                "namespace": "testing",
                "objectname": "pi24.ms",
                "objecttype": "FILE",
                "datasize": 1024,
                "checksum": {"type": "adler32", "value": "0a1b"},
                "replicas": [{"rsename": "SPSRC", "dataurl": "davs://x/pi24.ms"}],
            },
        },
    ]
    document = {
        "executable": {
            "kind": f"{V1}executable/jupyter-notebook.yaml",
            "location": "https://example.org/notebooks/tool.ipynb",
        },
        "data": data,
        "costs": [
            {
                "kind": f"{V1}costs/simple-minmax-float-cost.yaml",
                "max": 10.5,
                "type": "urn:ivoa:calycopis:cost:monetary",
            }
        ],
        "metrics": [
            {
                "kind": f"{V1}metrics/simple-minmax-float-metric.yaml",
                "min": 1.0,
                "type": "urn:ivoa:calycopis:metric:compute-performance",
            }
        ],
    }
    body = (await post(client, "/requests", document)).json()
    assert body["result"] == "YES", body["meta"]["messages"]
    offer = body["offers"][0]
    assert offer["executable"]["location"] == "https://example.org/notebooks/tool.ipynb"
    by_name = {d["meta"]["name"]: d for d in offer["data"]}
    for sent in data:
        got = by_name[sent["meta"]["name"]]
        for key, value in sent.items():
            if key != "meta":
                assert got[key] == value, key
    assert len(offer["storage"]) == 4
    assert sorted(v["path"] for v in offer["compute"]["volumes"]) == [
        "/volumes/ivoa",
        "/volumes/rucio",
        "/volumes/s3",
        "/volumes/skao",
    ]


async def test_an_update_in_xml(client: httpx.AsyncClient) -> None:
    offers = (await post(client, "/requests", notebook_request())).json()["offers"]
    xml = (
        b'<?xml version="1.0"?><update kind="uri:enum-value-update">'
        b"<path>/phase</path><value>ACCEPTED</value></update>"
    )
    response = await client.post(
        offers[0]["meta"]["url"],
        content=xml,
        headers={"Content-Type": "application/xml", "Accept": "application/xml"},
    )
    assert response.status_code == 200
    assert b"<phase>ACCEPTED</phase>" in response.content
    assert decode(response)["phase"] == "ACCEPTED"
