"""No input gives a 500: values at and past every edge, over real HTTP, on both databases.

Hypothesis puts extreme values (tests/support/boundaries.py) where requests, updates and
listings carry numbers, instants, durations and strings, and sends them to a broker served
by uvicorn on a loopback port. Every answer must be a 2xx, 3xx or a 4xx that says why. These
strategies find each 500 that issue 14 reported (content_length 1e22, start intervals near
year 1 or 9999, extension deltas of 2^63, ?after=9999-12-31T23:59:59-14:00, NUL on
PostgreSQL) within their first few dozen examples.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from execbroker.api.formats import render_body
from execbroker.api.formats.negotiation import MediaFormat
from execbroker.config import Settings
from execbroker.fakes.server import ServerThread
from execbroker.main import create_app
from tests.support.boundaries import (
    DURATIONS,
    EXTREME_INTEGERS,
    EXTREME_NUMBERS,
    INSTANTS,
    INTERVALS,
    NUL_TEXT,
    with_duplicate_key,
)
from tests.support.users import auth
from tests.support.wire import example

V1 = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
# Examples per place in a request, and for updates and listings: each is one HTTP request,
# a few seconds in all per database.
EXAMPLES = 12
BOUNDARY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # a 500 is reported as found, unshrunk
    suppress_health_check=list(HealthCheck),
)


def _template() -> dict[str, Any]:
    document: dict[str, Any] = example("container-with-data-request.yaml")
    document["data"] += [
        {
            "kind": f"{V1}data/ivoa-data-resource.yaml",
            "meta": {"name": "ivoa"},
            "ivoa": {
                "ivoid": "ivo://example.org/x",
                "obscore": {"calib_level": 2},
                "datalink": {"content_length": 1000},
            },
        },
        {
            "kind": f"{V1}data/skao-data-resource.yaml",
            "meta": {"name": "skao"},
            "skao": {"namespace": "n", "objectname": "o", "datasize": 1000},
        },
    ]
    return document


# Where requests carry numbers, times and strings, and what to put there.
PLACES: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("/compute/cores/min", EXTREME_NUMBERS),
    ("/compute/cores/max", EXTREME_NUMBERS),
    ("/compute/memory/max", EXTREME_NUMBERS),
    ("/storage/0/size/min", EXTREME_NUMBERS),
    ("/data/1/ivoa/datalink/content_length", EXTREME_NUMBERS),
    ("/data/1/ivoa/obscore/calib_level", EXTREME_INTEGERS),
    ("/data/2/skao/datasize", EXTREME_NUMBERS),
    ("/schedule/requested/duration", DURATIONS),
    ("/schedule/requested/start", INTERVALS),
    ("/executable/meta/name", NUL_TEXT),
    ("/executable/environment/OUTPUT_DIR", NUL_TEXT),
    ("/executable/command/0", NUL_TEXT),
    ("/executable/image/locations/0", NUL_TEXT),
    ("/data/1/kind", NUL_TEXT),
]


def _changed(changes: list[tuple[str, Any]]) -> dict[str, Any]:
    document = copy.deepcopy(_template())
    for path, value in changes:
        *parents, last = path.strip("/").split("/")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[int(last) if isinstance(target, list) else last] = value
    return document


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Iterator[httpx.Client]:
    """A broker under uvicorn on loopback (on each database), and a client as alice."""
    app = create_app(
        make_settings(
            quota_live_offers=None,
            quota_active_sessions=None,
            max_wait=0.1,
            mock_prepare_seconds=dict.fromkeys(("executable", "storage", "data", "compute"), 0),
        )
    )
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, headers=auth("alice"), timeout=30) as client,
    ):
        yield client


SIZES = ("/data/1/ivoa/datalink/content_length", "/data/2/skao/datasize")


def _refused(served: httpx.Client, response: httpx.Response) -> bool:
    """A 4xx, or an offer set with result NO (a direct session is a 303 to a session)."""
    if response.status_code >= 400:
        return True
    location = response.headers["location"]
    return "/offersets/" in location and served.get(location).json()["result"] == "NO"


def _understood(response: httpx.Response, what: object) -> None:
    """Not a 5xx; a 4xx says why in at least one message."""
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.json()["messages"][0]["message"], (what, response.text[:500])


def test_the_template_request_is_served(served: httpx.Client) -> None:
    # So that the boundary values below reach planning, not just the schema.
    response = served.post("/requests", json=_template())
    assert response.status_code == 303
    assert served.get(response.headers["location"]).json()["result"] == "YES"


def _send_request(served: httpx.Client, place: str, values: st.SearchStrategy[Any]) -> None:
    @seed(20261204)
    @BOUNDARY
    @given(
        value=values,
        path=st.sampled_from(["/requests", "/direct"]),
        fmt=st.sampled_from([MediaFormat.JSON, MediaFormat.YAML]),
    )
    def send(value: Any, path: str, fmt: MediaFormat) -> None:
        document = _changed([(place, value)])
        if fmt is MediaFormat.JSON:
            # json.dumps writes integers of any size, as a hostile client would.
            body, media = json.dumps(document).encode(), "application/json"
        else:
            body, media = render_body(document, fmt), "application/yaml"
        response = served.post(path, content=body, headers={"Content-Type": media})
        _understood(response, (place, value, path, fmt))
        if place in SIZES and isinstance(value, int | float) and value < 0:
            assert _refused(served, response), (place, value, path)

    send()


def test_boundary_values_in_requests_never_give_a_500(served: httpx.Client) -> None:
    for place, values in PLACES:
        _send_request(served, place, values)


@pytest.mark.parametrize("key", ["executable", "compute", "schedule"])
def test_a_key_written_twice_is_refused_naming_it(served: httpx.Client, key: str) -> None:
    before = served.get("/offersets").json()["offersets"]
    body = with_duplicate_key(_template(), key)
    response = served.post("/requests", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert f'repeats the key "{key}"' in response.json()["messages"][0]["message"]
    assert served.get("/offersets").json()["offersets"] == before  # nothing stored


def test_boundary_values_in_updates_and_listings_never_give_a_500(served: httpx.Client) -> None:
    created = served.post("/direct", json=example("direct-request.json"))
    assert created.status_code == 303, created.text
    session = created.headers["location"]
    update_kinds = ["uri:integer-delta-update", "uri:integer-value-update"]
    numbers = st.fixed_dictionaries(
        {
            "kind": st.sampled_from(update_kinds),
            "path": st.sampled_from(["/schedule/available/duration", "/phase", "/x"]),
            "delta": EXTREME_INTEGERS,
            "value": EXTREME_INTEGERS,
            "units": st.sampled_from([None, "seconds", "minutes", "hours", "days", "\x00"]),
        }
    ).map(lambda u: {k: v for k, v in u.items() if v is not None})
    texts = st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["uri:string-value-update", "uri:enum-value-update"]),
            "path": st.sampled_from(["/phase", "/schedule/available/duration"]) | NUL_TEXT,
            "value": NUL_TEXT | st.sampled_from(["CANCELLED", "ACCEPTED"]),
        }
    )
    listings = st.tuples(
        st.sampled_from(["/sessions", "/offersets", session]),
        st.fixed_dictionaries(
            {},
            optional={
                "after": INSTANTS,
                "last": EXTREME_INTEGERS.map(str),
                "wait": EXTREME_NUMBERS.map(str),
            },
        ),
    )

    @seed(20261204)
    @settings(BOUNDARY, max_examples=EXAMPLES * 8)
    @given(action=st.one_of(numbers, texts, listings))
    def send(action: Any) -> None:
        if isinstance(action, tuple):
            url, params = action
            response = served.get(url, params=params)
        else:
            body = json.dumps(action).encode()
            response = served.post(
                session, content=body, headers={"Content-Type": "application/json"}
            )
        _understood(response, action)

    send()
