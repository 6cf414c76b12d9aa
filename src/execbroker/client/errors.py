"""What the client raises: one hierarchy under :class:`BrokerError`.

A refusal by the broker (any 4xx) is a :class:`RefusedError` — with a subclass per status a
caller may want to catch on its own — carrying the HTTP ``status``, the broker's stable
``error`` code and its ``messages`` (Message Templates: ``template``, ``values`` and the
rendered ``message``). A 5xx is a :class:`BrokerServerError`. Not reaching the broker at all
is a :class:`BrokerUnreachableError`; an answer that is not a v1.0 document is an
:class:`UnexpectedResponseError`.

::

    BrokerError
    ├── BrokerUnreachableError          connection refused, DNS, timeout, dropped stream
    ├── UnexpectedResponseError         the answer is not what the v1.0 contract promises
    ├── NoOffersError                   the offer set's result is NO (messages say why)
    ├── WaitTimeoutError                wait() ran out of time (the last session read)
    └── BrokerStatusError               any error status: status, error, messages
        ├── RefusedError                4xx
        │   ├── BadRequestError         400 (also a direct run the broker cannot serve)
        │   ├── UnauthorizedError       401 (no token, or a token that names nobody)
        │   ├── ForbiddenError          403
        │   ├── NotFoundError           404 (also someone else's session)
        │   ├── ConflictError           409 (wrong phase for this update)
        │   ├── UnprocessableError      422 (malformed update or parameter)
        │   └── TooManyRequestsError    429 (quota)
        └── BrokerServerError           5xx
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from execbroker.model.wire import MessageItem

if TYPE_CHECKING:
    from execbroker.model.wire import ExecutionSession, OfferSetResponse

__all__ = [
    "BadRequestError",
    "BrokerError",
    "BrokerServerError",
    "BrokerStatusError",
    "BrokerUnreachableError",
    "ConflictError",
    "ForbiddenError",
    "NoOffersError",
    "NotFoundError",
    "RefusedError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "WaitTimeoutError",
    "error_for_status",
]


class BrokerError(Exception):
    """Base class of everything the client raises on purpose.

    ``messages`` are the broker's own words where it gave any (else empty).
    """

    def __init__(self, summary: str, messages: Sequence[MessageItem] = ()) -> None:
        self.summary = summary
        self.messages: tuple[MessageItem, ...] = tuple(messages)
        super().__init__(self._describe())

    def _describe(self) -> str:
        texts = [m.message or m.template or "" for m in self.messages]
        texts = [text for text in texts if text and text != self.summary]
        return f"{self.summary}: {'; '.join(texts)}" if texts else self.summary


class BrokerUnreachableError(BrokerError):
    """The broker could not be reached, or the connection failed before an answer came."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the broker at {url}: {reason}")


class UnexpectedResponseError(BrokerError):
    """The broker answered something this client cannot read as a v1.0 document."""

    def __init__(self, summary: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(summary)


class NoOffersError(BrokerError):
    """The broker answered a request with ``result: NO``; its messages say why."""

    def __init__(self, offer_set: OfferSetResponse) -> None:
        self.offer_set = offer_set
        messages = offer_set.meta.messages if offer_set.meta and offer_set.meta.messages else []
        super().__init__("the broker made no offers for this request", messages)


class WaitTimeoutError(BrokerError):
    """``wait`` gave up; ``session`` is the session as last read."""

    def __init__(self, session: ExecutionSession, seconds: float) -> None:
        self.session = session
        uuid = session.meta.uuid if session.meta else "?"
        super().__init__(f"session {uuid} still {session.phase.value} after {seconds:g} s")


class BrokerStatusError(BrokerError):
    """An error status: ``status``, the broker's ``error`` code and ``messages``."""

    def __init__(
        self,
        *,
        status: int,
        error: str,
        messages: Sequence[MessageItem] = (),
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.error = error
        self.method = method
        self.url = url
        super().__init__(f"{status} {error}", messages)


class RefusedError(BrokerStatusError):
    """The broker refused the call (4xx)."""


class BadRequestError(RefusedError):
    """400: a body the broker cannot parse, or a direct run it cannot serve."""


class UnauthorizedError(RefusedError):
    """401: no bearer token, or one that identifies nobody."""


class ForbiddenError(RefusedError):
    """403."""


class NotFoundError(RefusedError):
    """404: no such offer set or session (or it belongs to someone else)."""


class ConflictError(RefusedError):
    """409: the update does not apply in the session's phase (or beyond a limit)."""


class UnprocessableError(RefusedError):
    """422: a malformed update or query parameter."""


class TooManyRequestsError(RefusedError):
    """429: a quota (live offers, active sessions) is used up."""


class BrokerServerError(BrokerStatusError):
    """5xx: the broker failed (or is not ready: 503)."""


_BY_STATUS: dict[int, type[BrokerStatusError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: TooManyRequestsError,
}


def error_for_status(
    status: int,
    *,
    error: str,
    messages: Sequence[MessageItem] = (),
    method: str = "",
    url: str = "",
) -> BrokerStatusError:
    """The exception for an error ``status``: the most specific class that fits."""
    kind = _BY_STATUS.get(status) or (RefusedError if status < 500 else BrokerServerError)
    return kind(status=status, error=error, messages=messages, method=method, url=url)
