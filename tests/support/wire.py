"""Building request bodies and reading answers, in each of the three formats."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml

from execbroker.api.formats import parse_body, render_body
from execbroker.api.formats.negotiation import MEDIA_TYPES, MediaFormat

DATA = Path(__file__).parent.parent / "data"
FORMATS = list(MediaFormat)


@cache
def _example(name: str) -> Any:
    text = (DATA / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def example(name: str) -> Any:
    """One of the shared example documents, parsed (a fresh copy to change at will)."""
    return copy.deepcopy(_example(name))


def encode(
    document: Any, fmt: MediaFormat, root: str = "offers-request"
) -> tuple[bytes, dict[str, str]]:
    return render_body(document, fmt, root=root), {"Content-Type": MEDIA_TYPES[fmt]}


def decode(response: httpx.Response) -> Any:
    media_type = response.headers.get("content-type", "").split(";")[0]
    fmt = next(f for f, t in MEDIA_TYPES.items() if t == media_type)
    return parse_body(response.content, fmt)


async def post(
    client: httpx.AsyncClient,
    url: str,
    document: Any,
    fmt: MediaFormat = MediaFormat.JSON,
    *,
    accept: MediaFormat | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body, content_type = encode(document, fmt)
    headers = {**content_type, **(headers or {})}
    if accept is not None:
        headers["Accept"] = MEDIA_TYPES[accept]
    return await client.post(url, content=body, headers=headers)


async def request_offers(client: httpx.AsyncClient, document: Any) -> dict[str, Any]:
    response = await post(client, "/requests", document)
    assert response.status_code == 303, response.text
    result: dict[str, Any] = response.json()
    return result


def notebook_request(**schedule: str) -> dict[str, Any]:
    """A notebook request; a start interval from now unless one is given."""
    document: dict[str, Any] = example("notebook-request.yaml")
    document["schedule"] = {"requested": {"duration": "PT1H", **schedule}}
    return document


def phase_update(value: str, path: str = "/phase") -> dict[str, str]:
    return {"kind": "uri:enum-value-update", "path": path, "value": value}
