"""The client's conversations with a broker, written once for the sync and async clients.

Each operation is a generator that yields what it needs done — a :class:`Call` (one HTTP
exchange) or a :class:`Pause` — and is sent back the :class:`httpx.Response` of each call;
its return value is the operation's result. :class:`~execbroker.client.BrokerClient` runs
operations with a blocking :class:`httpx.Client`, and
:class:`~execbroker.client.AsyncBrokerClient` with an :class:`httpx.AsyncClient`, so every
decision (which URL, how to read the answer, when a wait is over, which error to raise) is
made here, in one place, without I/O.

Only the v1.0 contract is relied upon for the core operations: ``POST /requests`` (303 with
``Location``, with or without the offer set in the body), ``GET /offersets/{uuid}``,
``GET /sessions/{uuid}`` and ``POST /sessions/{uuid}``. Documents are read tolerantly:
fields this client does not know are dropped rather than refused. Listings, the long-poll
(``?wait=``) and the event stream are execbroker's additions; :func:`poll_change` notices a
broker that does not hold a long-poll and paces its calls instead of spinning.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import yaml
from pydantic import BaseModel, ValidationError

from execbroker.client.errors import (
    BrokerStatusError,
    NoOffersError,
    UnexpectedResponseError,
    WaitTimeoutError,
    error_for_status,
)
from execbroker.client.offers import OfferSummary
from execbroker.model.isotime import format_duration, format_instant, parse_instant
from execbroker.model.phases import (
    TERMINAL_SESSION_PHASES,
    ComponentPhase,
    OfferResult,
    SessionPhase,
)
from execbroker.model.wire import (
    EnumValueUpdate,
    ExecutionSession,
    IntegerDeltaUpdate,
    MessageItem,
    OfferSetResponse,
    dump,
)

__all__ = [
    "LONGEST_POLL",
    "Call",
    "ComponentPhaseEvent",
    "EventDecoder",
    "Operation",
    "Pause",
    "PhaseEvent",
    "RequestSource",
    "SessionRef",
    "Step",
    "check",
    "encode_request",
    "events_call",
    "execute",
    "get_offer_set",
    "get_session",
    "has_reached",
    "list_offer_sets",
    "list_sessions",
    "load_request_file",
    "phase_event",
    "poll_change",
    "request_offers",
    "session_uuid",
    "update_session",
    "wait",
]

T = TypeVar("T")

#: Longest ``?wait=`` asked for in one call; the broker caps it further (``max_wait``).
LONGEST_POLL = 60.0
# A long-poll that comes back unchanged in under half its time (at most this) was not held.
_HELD_AT_LEAST = 1.0
# How often to ask a broker that does not hold long-polls.
_PACE = 1.0
# Extra read time allowed beyond a long-poll's own wait.
_READ_MARGIN = 15.0

_JSON = "application/json"
_ORDER = (
    SessionPhase.INITIAL,
    SessionPhase.OFFERED,
    SessionPhase.ACCEPTED,
    SessionPhase.WAITING,
    SessionPhase.PREPARING,
    SessionPhase.AVAILABLE,
    SessionPhase.RUNNING,
    SessionPhase.RELEASING,
)


@dataclass(frozen=True)
class Call:
    """One HTTP exchange. ``path`` is relative to the broker's base URL. ``read_timeout``
    replaces the client's read timeout (a long-poll needs longer).
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    read_timeout: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": _JSON} if self.body is not None else {}


@dataclass(frozen=True)
class Pause:
    """Wait this many seconds before the next call."""

    seconds: float


Step = Call | Pause
Operation = Generator[Step, httpx.Response | None, T]

RequestSource = Mapping[str, Any] | BaseModel | str | os.PathLike[str]
"""An execution request: a mapping, a typed model (``ExecutionRequest``), or the path of a
YAML or JSON file. A ``str`` is always a path."""

SessionRef = UUID | str | ExecutionSession | OfferSummary
"""A session or offer: its UUID (or UUID string), its document, or an offer summary."""


# --------------------------------------------------------------------------- requests


def load_request_file(path: Path) -> dict[str, Any]:
    """An execution request read from a YAML or JSON file (``-`` is not handled here)."""
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as failure:
        raise ValueError(f"{path} is not valid {_format_name(path)}: {failure}") from failure
    if not isinstance(document, dict):
        raise ValueError(f"{path} must hold one execution request (a mapping)")  # noqa: TRY004
    return document


def _format_name(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "YAML"


def encode_request(source: RequestSource) -> bytes:
    """The JSON body for an execution request given as a mapping, a model or a file path."""
    if isinstance(source, BaseModel):
        document: Any = dump(source)
    elif isinstance(source, Mapping):
        document = dict(source)
    elif isinstance(source, str | os.PathLike):
        document = load_request_file(Path(source))
    else:
        raise TypeError(
            f"an execution request is a mapping, a model or a file path, not {type(source)}"
        )
    return json.dumps(document, default=_json_value).encode("utf-8")


def _json_value(value: Any) -> Any:
    """What YAML may hold that JSON cannot: times (as the contract writes them), UUIDs."""
    if isinstance(value, datetime):
        return format_instant(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be sent in a request")


def session_uuid(ref: SessionRef) -> UUID:
    """The UUID of a session or offer, however it was given."""
    match ref:
        case UUID():
            return ref
        case str():
            try:
                return UUID(ref.strip())
            except ValueError:
                raise ValueError(f"{ref!r} is not a UUID") from None
        case OfferSummary():
            return ref.uuid
        case ExecutionSession():
            if ref.meta is None or ref.meta.uuid is None:
                raise ValueError("this session document has no meta.uuid")
            return ref.meta.uuid
    raise TypeError(f"a session is a UUID, a UUID string or a session, not {type(ref)}")


# --------------------------------------------------------------------------- answers


def check(response: httpx.Response) -> None:
    """Raise the error an error status stands for, with the broker's messages."""
    if response.status_code < 400:
        return
    raise _status_error(response)


def _status_error(response: httpx.Response) -> BrokerStatusError:
    code = f"http_{response.status_code}"
    messages: list[MessageItem] = []
    try:
        body = _decode(response)
    except UnexpectedResponseError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            code = body["error"]
        for item in body.get("messages") or []:
            try:
                messages.append(_read(MessageItem, item))
            except UnexpectedResponseError:
                continue
    if not messages and response.text and body is None:
        messages.append(MessageItem(level=None, message=response.text.strip()[:500]))
    return error_for_status(
        response.status_code,
        error=code,
        messages=messages,
        method=response.request.method,
        url=str(response.request.url),
    )


def _decode(response: httpx.Response) -> Any:
    media_type = response.headers.get("content-type", _JSON).split(";")[0].strip().lower()
    try:
        if media_type.endswith("json"):
            return response.json()
        if media_type.endswith("yaml"):
            return yaml.safe_load(response.text)
    except (ValueError, yaml.YAMLError) as failure:
        raise UnexpectedResponseError(
            f"the broker's answer is not valid {media_type}: {failure}",
            status=response.status_code,
        ) from failure
    raise UnexpectedResponseError(
        f"the broker answered {media_type or 'nothing'}, not JSON", status=response.status_code
    )


def _document(response: httpx.Response) -> dict[str, Any]:
    check(response)
    body = _decode(response)
    if not isinstance(body, dict):
        raise UnexpectedResponseError(
            "the broker's answer is not a document", status=response.status_code
        )
    return body


# Validation errors that a tolerant reader resolves by leaving the offending part out: a
# field this client does not know, or an option/cost/component of a kind it does not know.
_DROPPABLE = {"extra_forbidden", "union_tag_invalid", "union_tag_not_found"}

M = TypeVar("M", bound=BaseModel)


def _read(model: type[M], document: Any, *, attempts: int = 20) -> M:
    """``document`` as ``model``, leaving out what this client does not know."""
    current = document
    for _ in range(attempts):
        try:
            return model.model_validate(current)
        except ValidationError as failure:
            problems = failure.errors()
            droppable = [p["loc"] for p in problems if _can_drop(p)]
            if not droppable:
                first = problems[0]
                where = "/" + "/".join(str(part) for part in first["loc"])
                raise UnexpectedResponseError(
                    f"the broker's answer is not a v1.0 {model.__name__}: {where}: {first['msg']}"
                ) from failure
            current = _without(current, droppable)
    raise UnexpectedResponseError(f"the broker's answer is not a v1.0 {model.__name__}")


def _can_drop(problem: Any) -> bool:
    if problem["type"] in _DROPPABLE:
        return True
    # A session kind this client does not know (another broker's spelling): use the default.
    location = problem["loc"]
    return problem["type"] == "literal_error" and bool(location) and location[-1] == "kind"


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _without(document: Any, locations: Iterable[tuple[int | str, ...]]) -> Any:
    """A copy of ``document`` without the parts at ``locations`` (pydantic error locations,
    whose union tags are not keys of the document and are skipped).
    """
    copy = json.loads(json.dumps(document, default=str))
    removals: list[tuple[Any, int | str]] = []
    for location in locations:
        parent: Any = None
        key: int | str | None = None
        node = copy
        for part in location:
            # A union tag or model name in the location is not a step into the document.
            if _has(node, part):
                parent, key, node = node, part, node[part]
        if parent is not None and key is not None:
            removals.append((parent, key))
    # Remove list items from the back, so that earlier indices stay right.
    for parent, key in sorted(
        removals, key=lambda item: item[1] if isinstance(item[1], int) else -1, reverse=True
    ):
        if isinstance(parent, dict):
            parent.pop(key, None)
        elif isinstance(key, int) and key < len(parent):
            del parent[key]
    return copy


# --------------------------------------------------------------------------- operations


def _exchange(call: Call) -> Operation[httpx.Response]:
    received = yield call
    if received is None:
        raise RuntimeError("the client sent no response for a call")
    return received


def request_offers(source: RequestSource) -> Operation[OfferSetResponse]:
    """``POST /requests``: the offer set; :class:`NoOffersError` when the result is NO."""
    response = yield from _exchange(Call("POST", "/requests", body=encode_request(source)))
    offer_set = yield from _offer_set_answer(response)
    if offer_set.result is OfferResult.NO:
        raise NoOffersError(offer_set)
    return offer_set


def _offer_set_answer(response: httpx.Response) -> Operation[OfferSetResponse]:
    """The offer set of a 303 (from its body, or from ``Location`` when it has none) or 200."""
    check(response)
    if response.status_code == 303 and not response.content:
        location = response.headers.get("location")
        if not location:
            raise UnexpectedResponseError("303 without a Location", status=303)
        uuid = _uuid_at_end(location)
        return (yield from get_offer_set(uuid))
    return _read(OfferSetResponse, _document(response))


def _uuid_at_end(location: str) -> UUID:
    """The UUID a ``Location`` names, read from its last segment. The client calls its own
    base URL with it rather than following the link, so that its token goes nowhere else.
    """
    last = httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1]
    try:
        return UUID(last)
    except ValueError:
        raise UnexpectedResponseError(f"Location {location} names no UUID") from None


def execute(source: RequestSource) -> Operation[ExecutionSession]:
    """``POST /direct``: run at once, without offers; the new session."""
    response = yield from _exchange(Call("POST", "/direct", body=encode_request(source)))
    check(response)
    if response.status_code == 303 and not response.content:
        uuid = _uuid_at_end(response.headers.get("location", ""))
        return (yield from get_session(uuid))
    return _read(ExecutionSession, _document(response))


def get_offer_set(uuid: UUID) -> Operation[OfferSetResponse]:
    """``GET /offersets/{uuid}``: an offer set with its offers as they are now."""
    response = yield from _exchange(Call("GET", f"/offersets/{uuid}"))
    return _read(OfferSetResponse, _document(response))


def list_offer_sets(
    *, after: datetime | None = None, last: int | None = None
) -> Operation[list[OfferSetResponse]]:
    """``GET /offersets`` (execbroker): the caller's offer sets, newest first, without
    their offers (read one with :func:`get_offer_set`).
    """
    params = _listing_params(after=after, last=last)
    response = yield from _exchange(Call("GET", "/offersets", params=params))
    entries = _document(response).get("offersets") or []
    return [_read(OfferSetResponse, entry) for entry in entries]


def get_session(uuid: UUID) -> Operation[ExecutionSession]:
    """``GET /sessions/{uuid}``: a session (an offer, once accepted a running session) as it is
    now.
    """
    response = yield from _exchange(Call("GET", f"/sessions/{uuid}"))
    return _read(ExecutionSession, _document(response))


def list_sessions(
    *,
    phases: Iterable[SessionPhase | str] = (),
    after: datetime | None = None,
    last: int | None = None,
) -> Operation[list[ExecutionSession]]:
    """``GET /sessions`` (execbroker): the caller's sessions, newest first, as summaries
    (kind, meta, phase, schedule); read one with :func:`get_session` for the rest.
    """
    params = [("phase", SessionPhase(p).value) for p in phases]
    params += _listing_params(after=after, last=last)
    response = yield from _exchange(Call("GET", "/sessions", params=tuple(params)))
    entries = _document(response).get("sessions") or []
    return [_read(ExecutionSession, entry) for entry in entries]


def _listing_params(*, after: datetime | None, last: int | None) -> tuple[tuple[str, str], ...]:
    params: list[tuple[str, str]] = []
    if after is not None:
        params.append(("after", format_instant(after) if after.tzinfo else after.isoformat()))
    if last is not None:
        params.append(("last", str(last)))
    return tuple(params)


def update_session(
    uuid: UUID, update: EnumValueUpdate | IntegerDeltaUpdate | BaseModel | Mapping[str, Any]
) -> Operation[ExecutionSession]:
    """``POST /sessions/{uuid}`` with one update; the session as it is afterwards."""
    document = dump(update) if isinstance(update, BaseModel) else dict(update)
    body = json.dumps(document).encode("utf-8")
    response = yield from _exchange(Call("POST", f"/sessions/{uuid}", body=body))
    return _read(ExecutionSession, _document(response))


def poll_change(uuid: UUID, phase: SessionPhase, seconds: float) -> Operation[ExecutionSession]:
    """One long-poll: the session once its phase is no longer ``phase``, or after
    ``seconds``. A broker that answers at once, unchanged, does not hold long-polls (they are
    not in the v1.0 contract): then the next call is paced instead of sent at once.
    """
    seconds = max(0.001, min(seconds, LONGEST_POLL))
    started = time.monotonic()
    params = (("wait", f"{seconds:.3f}".rstrip("0").rstrip(".")), ("phase", phase.value))
    response = yield from _exchange(
        Call("GET", f"/sessions/{uuid}", params=params, read_timeout=seconds + _READ_MARGIN)
    )
    session = _read(ExecutionSession, _document(response))
    held = time.monotonic() - started
    unchanged = session.phase is phase and phase not in TERMINAL_SESSION_PHASES
    if unchanged and held < min(seconds, _HELD_AT_LEAST) / 2:
        yield Pause(min(_PACE, seconds))
    return session


def has_reached(current: SessionPhase, wanted: SessionPhase | None) -> bool:
    """Whether a wait for ``wanted`` (None: the end) is over at ``current``: the session is
    in ``wanted``, has gone past it in the lifecycle, or has ended.
    """
    if current in TERMINAL_SESSION_PHASES or current is wanted:
        return True
    if wanted is None or wanted in TERMINAL_SESSION_PHASES:
        return False
    return current in _ORDER and wanted in _ORDER and _ORDER.index(current) > _ORDER.index(wanted)


def wait(
    uuid: UUID, phase: SessionPhase | None = None, *, timeout: float | None = None
) -> Operation[ExecutionSession]:
    """The session once it is in ``phase`` (or past it, or ended); with no ``phase``, once
    it has ended. Uses the broker's long-poll; :class:`WaitTimeoutError` after ``timeout``.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    session = yield from get_session(uuid)
    while not has_reached(session.phase, phase):
        left = LONGEST_POLL if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeoutError(session, timeout or 0)
        session = yield from poll_change(uuid, session.phase, left)
    return session


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ComponentPhaseEvent:
    """A component's phase in a :class:`PhaseEvent`."""

    uuid: UUID
    name: str | None
    role: str | None
    phase: ComponentPhase


@dataclass(frozen=True)
class PhaseEvent:
    """One ``phase`` event of ``GET /sessions/{uuid}/events``: the session's phase and its
    components' phases at ``modified``.
    """

    session: UUID
    phase: SessionPhase
    modified: datetime | None
    components: tuple[ComponentPhaseEvent, ...]

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL_SESSION_PHASES


def events_call(uuid: UUID) -> Call:
    """The streaming call of the event feed (the driver streams it; keep-alives come every
    15 s, so a read timeout well above that).
    """
    return Call("GET", f"/sessions/{uuid}/events", read_timeout=4 * _READ_MARGIN)


class EventDecoder:
    """Server-Sent Events, one line at a time: :meth:`feed` returns ``(event, data)`` when a
    blank line ends an event, and None otherwise. Comments (keep-alives) are ignored.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = ""
                return None
            found = (self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return found
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def phase_event(data: str) -> PhaseEvent:
    """A ``phase`` event's data as a :class:`PhaseEvent`."""
    try:
        document = json.loads(data)
        modified = document.get("modified")
        return PhaseEvent(
            session=UUID(document["session"]),
            phase=SessionPhase(document["phase"]),
            modified=parse_instant(modified) if isinstance(modified, str) else None,
            components=tuple(
                ComponentPhaseEvent(
                    uuid=UUID(item["uuid"]),
                    name=item.get("name"),
                    role=item.get("role"),
                    phase=ComponentPhase(item["phase"]),
                )
                for item in document.get("components") or []
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as failure:
        raise UnexpectedResponseError(f"an event the client cannot read: {failure}") from failure
