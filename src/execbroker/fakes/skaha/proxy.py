"""A fault-injecting HTTP proxy to put in front of the fake Skaha (or any Skaha).

The faults the fault pass of issue 22 used against the broker (FAULT-PROBES.md), served
from a real loopback port so that the broker's real client meets them:

- ``delay``: hold matching requests before forwarding them; one whose client has gone
  meanwhile is dropped (Skaha never sees it);
- ``slow_upstream``: forward matching requests that much later *even if the client has
  gone* (a Skaha slow to process a create: the session appears after the client gave up);
- ``vanish``: while it lasts, lists leave out sessions named with ``prefix`` and
  ``GET /session/{id}`` answers 404 (a Skaha glitch);
- ``pad_list``: lists carry that many foreign sessions more (an account shared with other
  tools);
- ``connect_url``: the ``connectURL`` of ``prefix`` sessions becomes this text (``{id}``
  is the session id), e.g. ``javascript:...`` or another host.

``SkahaFaults`` holds the knobs (thread-safe: tests set them from their own thread; another
process sets them with ``POST /_faults`` and a JSON object)::

    faults = SkahaFaults()
    with ServerThread(create_fault_proxy(f"{skaha.url}", faults)) as proxy:
        faults.set(pad_list=100_000)
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

__all__ = ["FaultSettings", "SkahaFaults", "create_fault_proxy", "foreign_sessions"]

_LIST = re.compile(r"/skaha/v1/session/?$")
_ONE = re.compile(r"/skaha/v1/session/([^/]+)$")
_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


@dataclass(frozen=True)
class FaultSettings:
    """One state of the knobs; ``delay`` and ``slow_upstream`` map a regular expression
    on ``"METHOD /path"`` to seconds.
    """

    delay: dict[str, float] = field(default_factory=dict)
    slow_upstream: dict[str, float] = field(default_factory=dict)
    vanish_until: float = 0.0  # monotonic
    pad_list: int = 0
    connect_url: str | None = None


class SkahaFaults:
    """The proxy's knobs, and what it saw."""

    def __init__(self, *, prefix: str = "execbroker-") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self.forwarded_late = 0  # slow_upstream requests forwarded after their client left
        self.dropped = 0  # delayed requests dropped because their client had gone

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def set(self, **changes: Any) -> None:
        """Change knobs by name; ``vanish=seconds`` makes prefix sessions vanish for that
        long from now (``float("inf")``: until cleared).
        """
        vanish = changes.pop("vanish", None)
        with self._lock:
            settings = replace(self._settings, **changes)
            if vanish is not None:
                settings = replace(settings, vanish_until=time.monotonic() + float(vanish))
            self._settings = settings

    def clear(self) -> None:
        with self._lock:
            self._settings = FaultSettings()

    @property
    def vanishing(self) -> bool:
        return time.monotonic() < self.settings.vanish_until


def _matching(rules: dict[str, float], key: str) -> float:
    return max(
        (seconds for pattern, seconds in rules.items() if re.search(pattern, key)), default=0
    )


_PADDING: dict[int, bytes] = {}


def foreign_sessions(count: int) -> bytes:
    """``count`` Skaha session objects of another tool, pretty-printed like Gson, comma
    separated, without the enclosing brackets (made once per count).
    """
    found = _PADDING.get(count)
    if found is None:
        entries = [
            {
                "id": f"f{index:07d}",
                "userid": "ebsvc",
                "runAsUID": "10000",
                "runAsGID": "10000",
                "supplementalGroups": [10000],
                "image": "images.canfar.net/skaha/terminal:1.1.2",
                "type": "headless",
                "status": "Running",
                "name": f"other-tool-{index}",
                "startTime": "2026-12-01T10:00:00Z",
                "expiryTime": "2026-12-15T10:00:00Z",
                "connectURL": "",
                "requestedRAM": "4G",
                "requestedCPUCores": "1",
                "requestedGPUCores": "0",
                "ramInUse": "1G",
                "cpuCoresInUse": "0.5",
                "isFixedResources": True,
            }
            for index in range(count)
        ]
        found = json.dumps(entries, indent=2).encode()[1:-1].strip()
        _PADDING[count] = found
    return found


class _Proxy:
    def __init__(self, upstream: str, faults: SkahaFaults) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults
        self._client: httpx.AsyncClient | None = None
        self._late: set[asyncio.Task[httpx.Response]] = set()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=120)
        return self._client

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        key = f"{request.method} {path}"
        settings = self.faults.settings
        hold = _matching(settings.delay, key)
        if hold:
            await asyncio.sleep(hold)
            if await request.is_disconnected():
                self.faults.dropped += 1
                return Response(status_code=499)
        later = _matching(settings.slow_upstream, key)
        send = self._send(request, body)
        if later:
            task = asyncio.ensure_future(self._after(later, request, send))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            upstream = await asyncio.shield(task)
        else:
            upstream = await send
        return self._rewrite(request, upstream)

    async def _after(self, seconds: float, request: Request, send: Any) -> httpx.Response:
        await asyncio.sleep(seconds)
        if await request.is_disconnected():
            self.faults.forwarded_late += 1
        response: httpx.Response = await send
        return response

    async def _send(self, request: Request, body: bytes) -> httpx.Response:
        url = self.upstream + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        headers = [(key, value) for key, value in request.headers.items() if key not in _HOP_BY_HOP]
        return await self.client.request(request.method, url, content=body, headers=headers)

    def _rewrite(self, request: Request, upstream: httpx.Response) -> Response:
        faults = self.faults
        settings = faults.settings
        content = upstream.content
        media = upstream.headers.get("content-type")
        path = request.url.path
        plain_get = request.method == "GET" and "view" not in request.query_params
        one = _ONE.match(path)
        if plain_get and one and faults.vanishing:
            return Response(f"session {one.group(1)} not found", 404, media_type="text/plain")
        if not (plain_get and upstream.is_success and (_LIST.match(path) or one)):
            return Response(content, upstream.status_code, media_type=media)
        document = json.loads(content)
        entries = document if isinstance(document, list) else [document]
        if settings.connect_url is not None:
            for entry in entries:
                if str(entry.get("name", "")).startswith(faults.prefix) and entry.get("connectURL"):
                    entry["connectURL"] = settings.connect_url.replace("{id}", entry["id"])
        if isinstance(document, list):
            if faults.vanishing:
                document = [
                    e for e in document if not str(e.get("name", "")).startswith(faults.prefix)
                ]
            content = json.dumps(document, indent=2).encode()
            if settings.pad_list:
                inner = content.strip()[1:-1].strip()
                padding = foreign_sessions(settings.pad_list)
                content = b"[\n" + (inner + b",\n" if inner else b"") + padding + b"\n]"
        else:
            content = json.dumps(document, indent=2).encode()
        return Response(content, upstream.status_code, media_type=media)


def create_fault_proxy(upstream: str, faults: SkahaFaults) -> ASGIApp:
    """An ASGI app forwarding every request to ``upstream`` (scheme, host and port) through
    ``faults``.
    """
    proxy = _Proxy(upstream, faults)

    async def knobs(request: Request) -> Response:
        """``POST /_faults`` with a JSON object: ``SkahaFaults.set`` from another process."""
        faults.set(**(await request.json()))
        return Response(status_code=204)

    methods = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/_faults", knobs, methods=["POST"]),
            Route("/{path:path}", proxy.handle, methods=methods),
        ]
    )
