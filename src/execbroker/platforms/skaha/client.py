"""A thin async client for Skaha's session API (``/skaha/v1``, SKAHA.md §1).

Every call takes its bearer token from a :class:`TokenSource` at the moment it is sent, so
a token refreshed in the background is used at once. Failures become the typed errors of
:mod:`~execbroker.platforms.skaha.errors`, keeping Skaha's ``text/plain`` message.

Retries: 5xx answers (honouring ``Retry-After``), 429 and connection errors are retried
with exponential backoff, within a count and a total waiting budget; a 401 leads to one
token refresh and one more try. A **create** is never simply sent again when its outcome
is unknown (the answer was lost, or a 5xx came back, after the request left): the client
lists the sessions by name once, and adopts the session if the lost create made it; if it
finds none it raises :class:`SkahaCreateUnknownError` and never POSTs again itself (a create
can reach Skaha long after the client gave up: the platform decides when a new one is
safe). That is why session names must identify what they run (the platform puts the
component UUID in them).

Session lists can be huge (an account shared with other tools): :meth:`SkahaClient.own_sessions`
reads at most ``max_bytes`` and picks this broker's entries out in a worker thread, so the
event loop never parses the foreign ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

import execbroker
from execbroker.platforms.skaha.errors import (
    SkahaBadRequestError,
    SkahaCreateUnknownError,
    SkahaError,
    SkahaForbiddenError,
    SkahaListTooLargeError,
    SkahaNotFoundError,
    SkahaRequestError,
    SkahaServerError,
    SkahaUnavailableError,
)

__all__ = [
    "CreateRequest",
    "ResourceOptions",
    "RetryPolicy",
    "SkahaClient",
    "SkahaContext",
    "SkahaImage",
    "SkahaSession",
    "SkahaStats",
    "SkahaStatus",
    "TokenSource",
    "normalise_name",
    "own_sessions_in",
    "parse_skaha_time",
]

logger = logging.getLogger(__name__)

_MAX_NAME = 63
_IAE = "java.lang.IllegalArgumentException:"
# Not sent at all: safe to send again, even a create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class TokenSource(Protocol):
    """Where the client gets its bearer token (the platform's token manager)."""

    async def access_token(self) -> str:
        """The current access token, refreshed first if it has expired."""
        ...

    async def refresh(self, *, stale: str) -> None:
        """Skaha refused ``stale``: get a new token unless someone already has."""
        ...


class SkahaStatus:
    """Skaha's ``status`` strings (SKAHA.md §1.6), current and historical."""

    PENDING = "Pending"
    RUNNING = "Running"
    TERMINATING = "Terminating"
    COMPLETED = "Completed"
    SUCCEEDED = "Succeeded"  # before CANFAR 2025.1
    FAILED = "Failed"
    ERROR = "Error"  # in the OpenAPI document; never seen emitted
    UNKNOWN = "Unknown"  # pod phase, v0 era


def parse_skaha_time(text: object) -> datetime | None:
    """A Skaha time (``2025-03-05T21:48:12Z``, seconds optional), or None if unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def normalise_name(name: str) -> str:
    """The form Skaha stores a name in: lower-cased, at most 63 characters."""
    return name.lower()[:_MAX_NAME]


def _text(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class SkahaSession:
    """One entry of ``GET /session``, parsed defensively: absent fields are normal."""

    id: str
    name: str
    status: str
    type: str
    image: str | None = None
    user: str | None = None
    start_time: datetime | None = None
    expiry_time: datetime | None = None
    # A capability (it embeds the notebook token): shown to the owner only, never logged.
    connect_url: str | None = field(default=None, repr=False)
    # False: known only from the broker's own create, not yet from any answer of Skaha's.
    listed: bool = True

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SkahaSession:
        return cls(
            id=str(document.get("id", "")),
            name=str(document.get("name", "")),
            status=str(document.get("status", SkahaStatus.UNKNOWN)),
            type=str(document.get("type", "headless")),
            image=_text(document, "image"),
            user=_text(document, "userid"),
            start_time=parse_skaha_time(document.get("startTime")),
            expiry_time=parse_skaha_time(document.get("expiryTime")),
            connect_url=_text(document, "connectURL"),
        )

    @property
    def interactive(self) -> bool:
        return self.type != "headless"


@dataclass(frozen=True)
class ResourceOptions:
    """One resource of ``/context``: the amounts a session may ask for, and the defaults."""

    options: tuple[int, ...]
    default: int | None = None
    default_request: int | None = None
    default_limit: int | None = None

    @classmethod
    def from_json(cls, document: object) -> ResourceOptions:
        if not isinstance(document, Mapping):
            return cls(())
        return cls(
            options=tuple(sorted({v for v in map(_integer, document.get("options") or []) if v})),
            default=_integer(document.get("default")),
            default_request=_integer(document.get("defaultRequest")),
            default_limit=_integer(document.get("defaultLimit")),
        )

    def smallest_between(self, low: int, high: int) -> int | None:
        """The smallest option in ``[low, high]``, if there is one."""
        return next((option for option in self.options if low <= option <= high), None)


def _integer(value: object) -> int | None:
    """An int from Skaha's JSON, where numbers sometimes come as strings (``"5"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class SkahaContext:
    """``GET /context``: what cores, memory (GB, provisioned as GiB) and GPUs one may ask."""

    cores: ResourceOptions
    memory_gb: ResourceOptions
    gpus: tuple[int, ...]
    max_interactive_sessions: int | None

    @classmethod
    def from_json(cls, document: object) -> SkahaContext:
        if not isinstance(document, Mapping):
            raise SkahaServerError("Skaha's /context is not a JSON object")
        gpus = document.get("gpus")
        gpu_options = gpus.get("options") if isinstance(gpus, Mapping) else None
        return cls(
            cores=ResourceOptions.from_json(document.get("cores")),
            memory_gb=ResourceOptions.from_json(document.get("memoryGB")),
            gpus=tuple(v for v in map(_integer, gpu_options or []) if v),
            max_interactive_sessions=_integer(document.get("maxInteractiveSessions")),
        )


@dataclass(frozen=True)
class SkahaStats:
    """``GET /session?view=stats``: the cores and memory (GiB) the cluster has free now,
    i.e. what it can give (``cpuCoresAvailable``, ``ramAvailable``) less what its sessions
    requested (``requestedCPUCores``, ``requestedRAM``), as Skaha's own portal reads them.
    """

    free_cores: int
    free_memory_gib: int

    @classmethod
    def from_json(cls, document: object) -> SkahaStats:
        cores = document.get("cores") if isinstance(document, Mapping) else None
        ram = document.get("ram") if isinstance(document, Mapping) else None
        if not isinstance(cores, Mapping) or not isinstance(ram, Mapping):
            raise SkahaServerError("Skaha's session stats have no 'cores' and 'ram'")
        values = (
            _number(cores.get("cpuCoresAvailable")),
            _number(cores.get("requestedCPUCores")),
            _gibibytes(ram.get("ramAvailable")),
            _gibibytes(ram.get("requestedRAM")),
        )
        if None in values:
            raise SkahaServerError(
                "Skaha's session stats lack cores.cpuCoresAvailable, "
                "cores.requestedCPUCores, ram.ramAvailable or ram.requestedRAM"
            )
        cores_total, cores_requested, ram_total, ram_requested = (v or 0.0 for v in values)
        return cls(
            free_cores=max(int(cores_total - cores_requested), 0),
            free_memory_gib=max(int(ram_total - ram_requested), 0),
        )


def _number(value: object) -> float | None:
    """A number from Skaha's JSON, which sometimes writes it as a string (``"89.5"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value.strip())
    return None


# Kubernetes quantity suffixes, in GiB: Skaha provisions its "GB" as GiB (SKAHA.md §1.4).
_GIB_PER_UNIT = {"": 1.0, "k": 2**-20, "m": 2**-10, "g": 1.0, "t": 2**10, "p": 2**20}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)


def _gibibytes(value: object) -> float | None:
    """GiB from a stats memory figure: ``"5032G"``, ``"512Mi"``, ``"2T"`` or a number."""
    if not isinstance(value, str):
        return _number(value)
    found = _QUANTITY.match(value)
    if found is None:
        return None
    return float(found.group(1)) * _GIB_PER_UNIT[found.group(2).lower()]


@dataclass(frozen=True)
class SkahaImage:
    """An image of Skaha's public image cache (``GET /image``)."""

    id: str
    types: tuple[str, ...]
    digest: str | None = None


@dataclass(frozen=True)
class CreateRequest:
    """The parameters of ``POST /session`` (SKAHA.md §1.4); sent as a form body."""

    name: str
    image: str
    type: str = "headless"
    cores: int | None = None
    ram: int | None = None
    gpus: int | None = None
    cmd: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def form(self) -> dict[str, str | list[str]]:
        form: dict[str, str | list[str]] = {"name": self.name, "image": self.image}
        form["type"] = self.type
        if self.cores is not None:
            form["cores"] = str(self.cores)
        if self.ram is not None:
            form["ram"] = str(self.ram)
        if self.gpus is not None:
            form["gpus"] = str(self.gpus)
        if self.type == "headless":
            if self.cmd:
                form["cmd"] = self.cmd
            if self.args:
                form["args"] = " ".join(self.args)
            if self.env:
                form["env"] = [f"{key}={value}" for key, value in self.env]
        return form


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``retries`` more tries, waiting ``base * 2**n`` (with
    jitter, at most ``cap``, or the server's ``Retry-After``), never more than ``budget``
    seconds in all for one call.
    """

    retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    budget: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.cap))
        backoff = min(self.cap, self.base * 2.0**attempt)
        return float(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not security


class _OutcomeUnknownError(Exception):
    """A non-idempotent request left, and no answer says what it did."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


Sleep = Callable[[float], Awaitable[None]]


class SkahaClient:
    """Skaha's ``/skaha/v1`` over one shared ``httpx.AsyncClient`` (timeouts are that
    client's). ``base_url`` is the service URL, with or without ``/v1``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        http: httpx.AsyncClient,
        tokens: TokenSource,
        retry: RetryPolicy | None = None,
        registry_auth: SecretStr | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else f"{root}/v1"
        self._http = http
        self._tokens = tokens
        self._retry = retry or RetryPolicy()
        self._registry_auth = registry_auth
        self._sleep = sleep

    # -- sessions ---------------------------------------------------------------------------

    async def create(self, request: CreateRequest) -> str:
        """Start a session; its id. A create whose outcome is unknown is retried only
        after listing by name shows that it made nothing (else that session is adopted).
        """
        headers: dict[str, str] = {}
        if self._registry_auth is not None:
            secret = self._registry_auth.get_secret_value().encode()
            headers["x-skaha-registry-auth"] = base64.b64encode(secret).decode("ascii")
        try:
            response = await self._call(
                "POST", "/session", form=request.form(), headers=headers, idempotent=False
            )
        except _OutcomeUnknownError as unknown:
            logger.warning(
                "Skaha create outcome unknown; looking for the session by name",
                extra={"skaha_name": request.name, "reason": unknown.reason},
            )
            delay = min(self._retry.delay(0, unknown.retry_after), self._retry.budget)
            await self._sleep(delay)
            try:
                found = await self.find(request.name)
            except SkahaError:
                found = None
            if found is not None:
                logger.info(
                    "Skaha session found after an unknown create outcome; adopted",
                    extra={"skaha_name": request.name},
                )
                return found.id
            # Not POSTed again here: this one may still reach Skaha (R2's duplicate).
            raise SkahaCreateUnknownError(
                f"Skaha did not confirm creating session {request.name}: {unknown.reason}",
                retry_after=timedelta(seconds=max(delay, 1.0)),
            ) from None
        session_id = response.text.strip()
        if not session_id:
            raise SkahaServerError("Skaha answered a create without a session id")
        return session_id

    async def sessions(
        self, *, session_type: str | None = None, status: str | None = None
    ) -> list[SkahaSession]:
        """``GET /session``: this account's sessions (``type``/``status`` filter them)."""
        query = {"type": session_type, "status": status}
        response = await self._call(
            "GET", "/session", query={k: v for k, v in query.items() if v is not None}
        )
        documents = _json(response)
        if not isinstance(documents, list):
            raise SkahaServerError("Skaha's session list is not a JSON array")
        return [SkahaSession.from_json(d) for d in documents if isinstance(d, Mapping)]

    async def own_sessions(self, prefix: str, *, max_bytes: int) -> list[SkahaSession]:
        """``GET /session``, only the entries whose name starts with ``prefix``: at most
        ``max_bytes`` are read (else :class:`SkahaListTooLargeError`), and the entries are
        picked out in a worker thread.
        """
        response = await self._call("GET", "/session", max_bytes=max_bytes)
        return await asyncio.to_thread(own_sessions_in, response.content, prefix)

    async def find(self, name: str) -> SkahaSession | None:
        """The session named ``name`` (as Skaha stores names), a live one first."""
        wanted = normalise_name(name)
        found = [s for s in await self.sessions() if s.name == wanted]
        found.sort(key=lambda s: s.status == SkahaStatus.TERMINATING)
        return found[0] if found else None

    async def session(self, session_id: str) -> SkahaSession:
        """``GET /session/{id}``; :class:`SkahaNotFoundError` once it has gone."""
        response = await self._call("GET", f"/session/{session_id}")
        document = _json(response)
        if not isinstance(document, Mapping):
            raise SkahaServerError("Skaha's session is not a JSON object")
        return SkahaSession.from_json(document)

    async def delete(self, session_id: str) -> None:
        """``DELETE /session/{id}``; an unknown id is no error (it is gone either way)."""
        # Skaha before 2025-08 answered 404 for what was already deleted.
        with contextlib.suppress(SkahaNotFoundError):
            await self._call("DELETE", f"/session/{session_id}")

    async def renew(self, session_id: str) -> None:
        """``POST /session/{id}?action=renew``: push an interactive session's expiry."""
        await self._call("POST", f"/session/{session_id}", form={"action": "renew"})

    async def events(self, session_id: str) -> str | None:
        """The Kubernetes events table (``view=events``); None while there is no pod."""
        try:
            response = await self._call("GET", f"/session/{session_id}", query={"view": "events"})
        except SkahaNotFoundError:
            return None
        return response.text

    async def logs(self, session_id: str) -> str:
        """The container's log (``view=logs``); empty until the container has started."""
        response = await self._call("GET", f"/session/{session_id}", query={"view": "logs"})
        return response.text

    # -- the platform -------------------------------------------------------------------

    async def context(self) -> SkahaContext:
        return SkahaContext.from_json(_json(await self._call("GET", "/context")))

    async def stats(self) -> SkahaStats:
        """What the cluster has free now (``GET /session?view=stats``; Skaha answers 503
        while its metrics are down; not retried: a reading taken again on the next interval).
        """
        response = await self._call("GET", "/session", query={"view": "stats"}, retry=False)
        return SkahaStats.from_json(_json(response))

    async def interactive_sessions(self) -> list[SkahaSession]:
        """The account's non-headless sessions (``GET /session?view=interactive``; not
        retried: a reading taken again on the next interval).
        """
        query = {"view": "interactive"}
        documents = _json(await self._call("GET", "/session", query=query, retry=False))
        if not isinstance(documents, list):
            raise SkahaServerError("Skaha's session list is not a JSON array")
        return [SkahaSession.from_json(d) for d in documents if isinstance(d, Mapping)]

    async def repositories(self) -> list[str]:
        """Registry hosts images may come from (``GET /repository``)."""
        document = _json(await self._call("GET", "/repository"))
        if not isinstance(document, list):
            raise SkahaServerError("Skaha's /repository is not a JSON array")
        return [str(host) for host in document]

    async def images(self, session_type: str | None = None) -> list[SkahaImage]:
        """The public image cache (``GET /image``)."""
        query = {"type": session_type} if session_type else None
        document = _json(await self._call("GET", "/image", query=query))
        if not isinstance(document, list):
            raise SkahaServerError("Skaha's /image is not a JSON array")
        return [
            SkahaImage(
                id=str(item.get("id", "")),
                types=tuple(str(t) for t in item.get("types") or []),
                digest=_text(item, "digest"),
            )
            for item in document
            if isinstance(item, Mapping) and item.get("id")
        ]

    # -- the pipeline -------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        form: Mapping[str, str | Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        max_bytes: int | None = None,
        retry: bool = True,
    ) -> httpx.Response:
        """One Skaha call, with its retries; a 2xx response, or a typed error. With
        ``max_bytes``, a longer body is not read: :class:`SkahaListTooLargeError`.
        ``retry=False``: the first failure is the answer (a reading taken again on the next
        interval anyway).
        """
        waited = 0.0
        attempt = 0
        refreshed = False
        while True:
            token = await self._tokens.access_token()
            request_headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/plain",
                "User-Agent": f"execbroker/{execbroker.__version__}",
                **(headers or {}),
            }
            try:
                request = self._http.build_request(
                    method, self.base_url + path, params=query, data=form, headers=request_headers
                )
                if max_bytes is None:
                    response = await self._http.send(request)
                else:
                    response = await _read_bounded(self._http, request, max_bytes)
            except httpx.TransportError as failure:
                reason = f"{type(failure).__name__}: {failure}".rstrip(": ")
                if not idempotent and not isinstance(failure, _NOT_SENT):
                    raise _OutcomeUnknownError(f"no answer ({reason})") from None
                error: SkahaError = SkahaUnavailableError(f"Skaha cannot be reached ({reason})")
                retry_after = None
            else:
                if response.status_code == 401:
                    if refreshed:
                        raise SkahaUnavailableError(
                            "Skaha did not accept the broker's token, even a fresh one: "
                            + _message(response),
                            status=401,
                        )
                    refreshed = True
                    await self._tokens.refresh(stale=token)
                    continue
                if response.is_success:
                    return response
                retryable = response.status_code >= 500 or response.status_code == 429
                if not retryable:
                    raise _error(response)
                retry_after = _retry_after(response)
                if not idempotent:
                    raise _OutcomeUnknownError(
                        f"HTTP {response.status_code}: {_message(response)}",
                        retry_after=retry_after,
                    )
                error = _error(response)
            delay = self._retry.delay(attempt, retry_after)
            attempt += 1
            if not retry or attempt > self._retry.retries or waited + delay > self._retry.budget:
                if isinstance(error, SkahaUnavailableError) and error.retry_after is None:
                    error.retry_after = timedelta(seconds=max(delay, 1.0))
                raise error
            logger.debug(
                "Skaha call failed; retrying",
                extra={"method": method, "status": error.status, "delay": round(delay, 2)},
            )
            await self._sleep(delay)
            waited += delay


async def _read_bounded(
    http: httpx.AsyncClient, request: httpx.Request, max_bytes: int
) -> httpx.Response:
    """Send ``request`` and read at most ``max_bytes`` of its body."""
    response = await http.send(request, stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(max_bytes)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    finally:
        await response.aclose()
    # Decoded already: the copy must not say it is compressed.
    headers = [
        (key, value)
        for key, value in response.headers.multi_items()
        if key.lower() not in {"content-encoding", "content-length", "transfer-encoding"}
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=b"".join(chunks), request=request
    )


def _too_large(max_bytes: int) -> SkahaListTooLargeError:
    return SkahaListTooLargeError(
        f"Skaha's session list is larger than {max_bytes} bytes (skaha_list_max_bytes); "
        "it was not read: raise the limit, or delete old sessions of the broker's account"
    )


_SMALL_LIST = 1 << 20  # parsed whole (strictly); larger lists are searched for our names
_WINDOW = 1 << 20  # bytes searched per step, so that the thread lets go of the GIL often
_NAME_KEY = re.compile(rb'"name"\s*:\s*$')


def own_sessions_in(body: bytes, prefix: str) -> list[SkahaSession]:
    """The entries of a ``GET /session`` body whose name starts with ``prefix``.

    Runs in a worker thread. A small body is parsed whole. A large one (100,000 sessions of
    other tools in the same account) is searched for ``"name": "<prefix>`` in windows, and
    only the flat objects around the hits are parsed: the foreign entries are never turned
    into Python objects, and no single step holds the GIL for long.
    """
    text = body  # not stripped: that would copy a large body
    if not (text[:64].lstrip().startswith(b"[") and text[-64:].rstrip().endswith(b"]")):
        raise SkahaServerError("Skaha's session list is not a JSON array")
    if len(text) <= _SMALL_LIST:
        try:
            documents = json.loads(text)
        except ValueError:
            raise SkahaServerError("Skaha answered with something that is not JSON") from None
        if not isinstance(documents, list):
            raise SkahaServerError("Skaha's session list is not a JSON array")
        return [
            SkahaSession.from_json(d)
            for d in documents
            if isinstance(d, Mapping) and str(d.get("name", "")).startswith(prefix)
        ]
    needle = b'"' + prefix.encode()
    found: list[SkahaSession] = []
    position = 0
    while position < len(text):
        end = min(len(text), position + _WINDOW)
        hit = text.find(needle, position, end + len(needle))
        if hit < 0:
            position = end
            time.sleep(0)  # let the event loop's thread have the GIL
            continue
        position = hit + len(needle)
        entry = _entry_around(text, hit)
        if entry is not None and entry.name.startswith(prefix):
            found.append(entry)
    return found


def _entry_around(text: bytes, hit: int) -> SkahaSession | None:
    """The top-level flat object whose ``name`` value starts at ``hit``, if it is one."""
    if not _NAME_KEY.search(text, max(0, hit - 64), hit):
        return None
    start = text.rfind(b"{", 0, hit)
    before = start - 1
    while before >= 0 and text[before] in b" \t\r\n":
        before -= 1
    if start < 0 or before < 0 or text[before] not in b"[,":
        return None
    end = hit
    for _ in range(32):  # a "}" inside a string value: try the next one
        end = text.find(b"}", end + 1)
        if end < 0:
            return None
        try:
            document = json.loads(text[start : end + 1])
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("id"):
            return SkahaSession.from_json(document)
        return None
    return None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SkahaServerError("Skaha answered with something that is not JSON") from None


def _message(response: httpx.Response) -> str:
    """Skaha's own message from a ``text/plain`` error body.

    cadc-rest appends ``java.lang.IllegalArgumentException: <message>`` (and ``cause:``
    lines) right after a 400's message, without a separator: keep the first copy only.
    """
    text = response.text.strip()
    if _IAE in text:
        head, _, tail = text.partition(_IAE)
        text = head.strip() or tail.strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from Skaha; fall back to our own backoff


def _error(response: httpx.Response) -> SkahaError:
    status = response.status_code
    message = _message(response)
    match status:
        case 400:
            return SkahaBadRequestError(message, status=status)
        case 403:
            return SkahaForbiddenError(message, status=status)
        case 404:
            return SkahaNotFoundError(message, status=status)
        case 503 | 429:
            after = _retry_after(response)
            return SkahaUnavailableError(
                f"Skaha is temporarily unavailable ({message})",
                status=status,
                retry_after=None if after is None else timedelta(seconds=after),
            )
        case _ if status >= 500:
            return SkahaServerError(message, status=status)
        case _:
            return SkahaRequestError(f"HTTP {status}: {message}", status=status)
