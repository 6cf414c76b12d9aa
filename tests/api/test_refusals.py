"""Requests the broker cannot serve: ``result: NO`` or a 4xx naming the problem, never 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.wire import example, notebook_request, post

V1 = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"


Change = Callable[[dict[str, Any]], None]


def _with(change: Change) -> dict[str, Any]:
    document: dict[str, Any] = example("container-with-data-request.yaml")
    change(document)
    return document


def _set(path: str, value: Any) -> Change:
    def change(document: dict[str, Any]) -> None:
        *parents, last = path.strip("/").split("/")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        key: Any = int(last) if isinstance(target, list) else last
        if value is _DELETE:
            del target[key]
        else:
            target[key] = value

    return change


_DELETE = object()


def _ivoa(**datalink: Any) -> dict[str, Any]:
    return {
        "kind": f"{V1}data/ivoa-data-resource.yaml",
        "meta": {"name": "catalogue"},
        "ivoa": {"ivoid": "ivo://example.org/x", "datalink": datalink},
    }


REFUSED = [
    # (case, change, expected path, words in the message)
    ("missing executable", _set("/executable", _DELETE), "/executable", "no executable"),
    (
        "unknown kind",
        _set("/executable/kind", "urn:no-such-kind"),
        "/executable/kind",
        "unknown kind 'urn:no-such-kind'",
    ),
    (
        "unknown data kind",
        _set("/data/0/kind", f"{V1}data/ftp.yaml"),
        "/data/0/kind",
        "unknown kind",
    ),
    (
        "bad duration",
        _set("/schedule/requested/duration", "two hours"),
        "/schedule/requested/duration",
        "not an ISO-8601 duration",
    ),
    (
        "negative duration",
        _set("/schedule/requested/duration", "-PT1H"),
        "/schedule/requested/duration",
        "must be positive",
    ),
    (
        "too long",
        _set("/schedule/requested/duration", "P60D"),
        "/schedule/requested/duration",
        "longest run",
    ),
    (
        "bad interval",
        _set("/schedule/requested/start", "tomorrow"),
        "/schedule/requested/start",
        "not an ISO-8601 interval",
    ),
    (
        "bad instant",
        _set("/schedule/requested/start", "2030-13-45T99:00:00Z/PT1H"),
        "/schedule/requested/start",
        "not an ISO-8601 date-time",
    ),
    (
        "past interval",
        _set("/schedule/requested/start", "2001-01-01T00:00:00Z/PT1H"),
        "/schedule/requested/start",
        "in the past",
    ),
    (
        "min above max",
        _set("/compute/cores", {"min": 4, "max": 2}),
        "/compute/cores",
        "minimum 4 is larger than the maximum 2",
    ),
    ("negative cores", _set("/compute/cores", {"min": -1}), "/compute/cores/min", "at least 1"),
    (
        "negative memory",
        _set("/compute/memory", {"min": 0, "max": 2}),
        "/compute/memory/min",
        "at least 1",
    ),
    (
        "too many cores",
        _set("/compute/cores", {"min": 80}),
        "/compute/cores/min",
        "minimum 80 cores exceeds the platform's 64",
    ),
    ("wrong type", _set("/compute/cores", {"min": "lots"}), "/compute/cores/min", "valid integer"),
    ("unknown field", _set("/compute/core", {"min": 1}), "/compute/core", "unknown field"),
    (
        "no image",
        _set("/executable/image", {}),
        "/executable/image/locations",
        "at least one image location",
    ),
    ("privileged", _set("/executable/privileged", True), "/executable/privileged", "not supported"),
    (
        "bad digest",
        _set("/executable/image/digest", "md5:abc"),
        "/executable/image/digest",
        "not an image digest",
    ),
    (
        "unresolved mount",
        _set("/compute/volumes/0/resource", "nowhere"),
        "/compute/volumes/0/resource",
        "'nowhere' is neither a data nor a storage",
    ),
    (
        "relative mount",
        _set("/compute/volumes/0/path", "input/../../etc"),
        "/compute/volumes/0/path",
        "absolute path",
    ),
    (
        "unknown storage",
        _set("/data/0/storage", "elsewhere"),
        "/data/0/storage",
        "no storage resource named 'elsewhere'",
    ),
    (
        "singularity on mock",
        _set(
            "/executable",
            {
                "kind": f"{V1}executable/singularity-container.yaml",
                "location": "https://example.org/tool.sif",
            },
        ),
        "/executable/kind",
        "the mock platform cannot run singularity-container executables",
    ),
    (
        "notebook without url",
        _set(
            "/executable",
            {"kind": f"{V1}executable/jupyter-notebook.yaml", "location": "photometry.ipynb"},
        ),
        "/executable/location",
        "http(s) URL",
    ),
    (
        "bad port protocol",
        _set("/executable/network", {"ports": [{"internal": {"port": 80}, "protocol": "SCTP"}]}),
        "/executable/network/ports/0/protocol",
        "'SCTP' is not one of TCP, UDP, HTTP, HTTPS",
    ),
    (
        "data without location",
        _set("/data/0/location", _DELETE),
        "/data/0/location",
        "needs a location URL",
    ),
    (
        "s3 without template",
        _set(
            "/data/0",
            {
                "kind": f"{V1}data/S3-data-resource.yaml",
                "meta": {"name": "catalogue"},
                "endpoint": "https://s3.example.org",
                "bucket": "b",
            },
        ),
        "/data/0/template",
        "needs its template",
    ),
    (
        "ivoa without ivoid",
        _set(
            "/data/0",
            {
                "kind": f"{V1}data/ivoa-data-resource.yaml",
                "meta": {"name": "catalogue"},
                "ivoa": {"obscore": {"obs_id": "x"}},
            },
        ),
        "/data/0/ivoa/ivoid",
        "needs an ivoid",
    ),
    (
        "huge number",
        _set("/storage/0/size", {"min": 10**30}),
        "/storage/0/size/min",
        "less than or equal",
    ),
    # Numbers, dates and durations at and past the edges: a message each, never a 500.
    (
        "content length past int64",
        _set("/data/0", _ivoa(content_length=10**40)),
        "/data/0/ivoa/datalink/content_length",
        "less than or equal to 9223372036854775807",
    ),
    (
        "negative content length",
        _set("/data/0", _ivoa(content_length=-(10**12))),
        "/data/0/ivoa/datalink/content_length",
        "greater than or equal to 0",
    ),
    (
        "negative data size",
        _set(
            "/data/0",
            {
                "kind": f"{V1}data/skao-data-resource.yaml",
                "meta": {"name": "catalogue"},
                "skao": {"namespace": "n", "objectname": "o", "datasize": -(2**63)},
            },
        ),
        "/data/0/skao/datasize",
        "greater than or equal to 0",
    ),
    (
        "start in the last second of year 9999",
        _set("/schedule/requested/start", "9999-12-31T23:59:59Z/PT1H"),
        "/schedule/requested/start",
        "outside the years 1 to 9999",
    ),
    (
        "start west of UTC at the end of year 9999",
        _set("/schedule/requested/start", "9999-12-31T23:59:59-01:00/PT1H"),
        "/schedule/requested/start",
        "outside the years 1 to 9999",
    ),
    (
        "start east of UTC at the start of year 1",
        _set("/schedule/requested/start", "0001-01-01T00:00:00+01:00/PT1H"),
        "/schedule/requested/start",
        "outside the years 1 to 9999",
    ),
    (
        "huge leading duration",
        _set("/schedule/requested/start", "P1000000D/2030-01-01T00:00:00Z"),
        "/schedule/requested/start",
        "outside the years 1 to 9999",
    ),
    (
        "start window too close to year 9999 for the run",
        _set("/schedule/requested/start", "9999-12-30T00:00:00Z/P1D"),
        "/schedule/requested/start",
        "plans starts no later than",
    ),
    (
        "start window in year 9999 without an offset",
        _set("/schedule/requested/start", "9999-12-31T00:00:00Z/9999-12-31T23:59:59Z"),
        "/schedule/requested/start",
        "plans starts no later than",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [pytest.param(change, path, words, id=case) for case, change, path, words in REFUSED],
)
async def test_unservable_requests_get_no_with_the_field_named(
    client: httpx.AsyncClient, change: Change, path: str, words: str
) -> None:
    response = await post(client, "/requests", _with(change))

    assert response.status_code == 303
    body = response.json()
    assert body["result"] == "NO"
    assert body["offers"] == []
    problems = [m for m in body["meta"]["messages"] if m["level"] == "ERROR"]
    assert any(m["values"]["path"] == path for m in problems), problems
    assert any(words in m["message"] for m in problems), problems
    for message in problems:
        assert message["template"]
        assert message["message"]
        assert message["values"]
        assert message["time"]
    # The NO answer is kept, like any offer set.
    again = await client.get(response.headers["location"])
    assert again.json()["result"] == "NO"


BAD_BODIES = [
    ("invalid json", b'{"executable": {', "application/json", 400, "not valid JSON"),
    ("invalid yaml", b"executable: [unclosed", "application/yaml", 400, "YAML"),
    ("invalid xml", b"<offers-request><executable>", "application/xml", 400, "XML"),
    (
        "xml entity bomb",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<x>&b;</x>",
        "application/xml",
        400,
        "",
    ),
    (
        "wrong content type",
        b"executable=x",
        "application/x-www-form-urlencoded",
        415,
        "application/x-www-form-urlencoded",
    ),
    ("plain text", b"run my notebook", "text/plain", 415, "text/plain"),
    ("empty body", b"", "application/json", 400, "empty"),
    ("not an object", b"[1, 2, 3]", "application/json", 303, ""),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, ""),
    ("a megabyte of junk", b"\x00\xff" * 500_000, "application/json", 400, ""),
    ("over the size limit", b" " * 1_100_000, "application/json", 413, "limit"),
    (
        "NUL in a name",
        b'{"executable": {"kind": "x", "meta": {"name": "a\\u0000b"}}}',
        "application/json",
        400,
        "The string at $.executable.meta.name holds a NUL character",
    ),
    (
        "NUL in a YAML command",
        b'executable: {kind: x, command: ["a", "b\\0"]}',
        "application/yaml",
        400,
        "The string at $.executable.command[1] holds a NUL character",
    ),
    (
        "NUL in a key",
        b'{"executable": {"kind": "x", "environment": {"A\\u0000": "1"}}}',
        "application/json",
        400,
        "A key of the object at $.executable.environment holds a NUL character",
    ),
    (
        "duplicate JSON key",
        b'{"executable": {"kind": "x"}, "executable": {"kind": "bogus"}}',
        "application/json",
        400,
        'repeats the key "executable"',
    ),
    (
        "duplicate YAML key",
        b"executable:\n  kind: x\n  kind: y\n",
        "application/yaml",
        400,
        'repeats the key "kind" in one YAML mapping (again at line 3, column 3)',
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [pytest.param(b, c, s, w, id=case) for case, b, c, s, w in BAD_BODIES],
)
async def test_bad_bodies_are_refused_with_a_message(
    client: httpx.AsyncClient, body: bytes, content_type: str, status: int, words: str
) -> None:
    for path in ("/requests", "/direct"):
        response = await client.post(path, content=body, headers={"Content-Type": content_type})
        expected = 400 if (path == "/direct" and status == 303) else status
        assert response.status_code == expected, (path, response.text[:300])
        document = response.json()
        messages = (
            document["meta"]["messages"]
            if status == 303 and path == "/requests"
            else (document["messages"])
        )
        assert messages, document
        assert words in " ".join(m["message"] for m in messages)


async def test_bodies_refused_while_parsing_store_nothing(client: httpx.AsyncClient) -> None:
    before = (await client.get("/offersets")).json()["offersets"]
    for body, _, status, _ in (b[1:] for b in BAD_BODIES):
        if status != 303:
            await client.post("/requests", content=body)
    assert (await client.get("/offersets")).json()["offersets"] == before


@pytest.mark.parametrize("listing", ["/sessions", "/offersets"])
@pytest.mark.parametrize(
    "after", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "99999-01-01T00:00:00Z"]
)
async def test_listing_after_an_instant_out_of_range_is_422(
    client: httpx.AsyncClient, listing: str, after: str
) -> None:
    response = await client.get(listing, params={"after": after})
    assert response.status_code == 422, response.text
    message = response.json()["messages"][0]["message"]
    assert message.startswith("/query/after:"), message


async def test_unacceptable_accept_is_406_before_anything_is_created(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/requests", json=notebook_request(), headers={"Accept": "text/html"}
    )
    assert response.status_code == 406
    assert "text/html" in response.json()["messages"][0]["message"]


async def test_unknown_paths_and_methods_answer_with_messages(client: httpx.AsyncClient) -> None:
    missing = await client.get("/no/such/thing")
    assert missing.status_code == 404
    assert "/no/such/thing" in missing.json()["messages"][0]["message"]
    wrong = await client.delete("/requests")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
