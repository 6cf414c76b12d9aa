"""Bounds on what one client may cost the broker before it has proved who it is.

:class:`AnonymousRateLimit` gives each client address a token bucket for requests that carry
no credentials (``/healthz``, ``/metrics``, ``/openapi.json``, ``/docs``, and every request
answered 401): beyond its rate, such a request is answered 429 with ``Retry-After`` before
any work is done; a 401 to a request that did carry credentials spends from the same bucket,
and once it is empty the 401 itself becomes a 429. Requests with valid credentials are never
limited here (per-user quotas bound them).

:class:`BodyDeadline` bounds how long a client may take to send a request's body once its
headers are in: past ``seconds``, reading the body raises :class:`RequestTimeoutError`
(answered 408, and the connection closed). The headers themselves are bounded by the server
(:mod:`execbroker.serving`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from execbroker.exceptions import RequestTimeoutError
from execbroker.metrics import RATE_LIMITED
from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.wire import dump

__all__ = ["AnonymousRateLimit", "BodyDeadline", "TokenBuckets"]

# Buckets of addresses not seen for this long are full again; forgetting them loses nothing.
_MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """One bucket of ``burst`` tokens per key, refilled at ``rate`` tokens a second."""

    def __init__(self, *, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_ADDRESSES:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        refill = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.at >= refill]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_ADDRESSES:  # all busy: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].at)[
                : _MAX_ADDRESSES // 2
            ]:
                del self._buckets[key]

    def take(self, key: str, now: float) -> float:
        """0 if ``key`` may go ahead (one token spent), else seconds until it may."""
        bucket = self._bucket(key, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate

    def spend(self, key: str, now: float) -> bool:
        """Spend one token after the fact; False when there was none to spend."""
        bucket = self._bucket(key, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False


def _client_address(
    scope: Scope, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> str:
    """The client's address; behind a trusted proxy, the last one it names that is not
    itself a trusted proxy (X-Forwarded-For).
    """
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not trusted or not _within(peer, trusted):
        return peer
    forwarded: list[str] = [
        part.strip()
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for part in value.decode("latin-1").split(",")
    ]
    for hop in reversed(forwarded):
        if not _within(hop, trusted):
            return hop[:64]
    return peer


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _has_credentials(scope: Scope) -> bool:
    return any(name == b"authorization" for name, _ in scope.get("headers", ()))


def _rate_limited(retry_after: float) -> tuple[dict[str, object], list[tuple[bytes, bytes]]]:
    seconds = max(1, math.ceil(retry_after))
    message = make_message(
        MessageLevel.ERROR,
        "Too many requests without credentials from your address; try again in {seconds} s",
        {"seconds": str(seconds)},
    )
    body = {"error": "rate_limited", "status": 429, "messages": [dump(message)]}
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", str(seconds).encode()),
        (b"cache-control", b"no-store"),
    ]
    return body, headers


class AnonymousRateLimit:
    """Pure ASGI middleware: a token bucket per client address for anonymous requests."""

    def __init__(
        self, app: ASGIApp, *, rate: float, burst: int, trusted_proxies: list[str] | None = None
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate=rate, burst=burst)
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies or []]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        address = _client_address(scope, self._trusted)
        now = asyncio.get_running_loop().time()
        if not _has_credentials(scope):
            wait = self.buckets.take(address, now)
            if wait:
                await self._refuse(send, wait)
                return
            await self.app(scope, receive, send)
            return
        refused = False

        async def counting_401s(message: Message) -> None:
            nonlocal refused
            if refused:
                return  # the 401's body: replaced by the 429 already sent
            if message["type"] == "http.response.start" and message["status"] == 401:
                moment = asyncio.get_running_loop().time()
                if not self.buckets.spend(address, moment):
                    refused = True
                    await self._refuse(send, self.buckets.take(address, moment) or 1.0)
                    return
            await send(message)

        await self.app(scope, receive, counting_401s)

    @staticmethod
    async def _refuse(send: Send, retry_after: float) -> None:
        RATE_LIMITED.inc()
        body, headers = _rate_limited(retry_after)
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _expects_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class BodyDeadline:
    """Pure ASGI middleware: the whole body must arrive within ``seconds`` of the headers."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _expects_body(scope):
            # No body to wait for: only the client going away is left to hear, with no
            # deadline on that, and nothing unread can keep the connection waiting.
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False
        timed_out = False

        async def bounded_receive() -> Message:
            nonlocal complete, timed_out
            if complete:
                # Only the client going away is left to hear: no deadline on that.
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise RequestTimeoutError(
                    "The request body did not arrive within {seconds} s",
                    {"seconds": f"{self.seconds:g}"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def closing_send(message: Message) -> None:
            # Answered before the body was read whole (a 401, a 408): close the connection
            # rather than wait for the rest of a body nobody will read.
            if message["type"] == "http.response.start" and (timed_out or not complete):
                MutableHeaders(scope=message)["connection"] = "close"
            await send(message)

        await self.app(scope, bounded_receive, closing_send)
