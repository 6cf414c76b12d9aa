"""Every exception type execbroker raises on purpose.

Client errors carry a stable snake_case ``error`` code, an HTTP status and one or more
human-readable problems; one global handler in :mod:`execbroker.api.errors` serves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from execbroker.model.wire import MessageItem

__all__ = [
    "BodyTooLargeError",
    "ClientError",
    "ConflictError",
    "EgressRefusedError",
    "ExecBrokerError",
    "ForbiddenError",
    "MalformedBodyError",
    "NotAcceptableError",
    "NotFoundError",
    "PlatformIdentityRefusedError",
    "QuotaExceededError",
    "RateLimitedError",
    "RequestRefusedError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "StartupError",
    "TooManyWaitersError",
    "UnauthorizedError",
    "UnprocessableError",
    "UnsupportedMediaTypeError",
]


class ExecBrokerError(Exception):
    """Base class of execbroker's own errors."""


class ClientError(ExecBrokerError):
    """A request the broker refuses, answered with ``status`` and a body naming the problem.

    ``template`` and ``values`` follow the Message Templates model: the rendered text is
    ``template`` with ``values`` filled in; ``path`` names the offending field where there is
    one, and ``details`` carries any further messages.
    """

    status: int = 400
    error: str = "bad_request"

    def __init__(
        self,
        template: str,
        values: Mapping[str, object] | None = None,
        *,
        path: str | None = None,
        details: list[MessageItem] | None = None,
    ) -> None:
        self.template = template
        self.values = {k: str(v) for k, v in (values or {}).items()}
        self.path = path
        # Further messages, e.g. one per invalid field; the first message is always ours.
        self.details = details or []
        super().__init__(_render(template, self.values))

    @property
    def message(self) -> str:
        return str(self)

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body (e.g. ``WWW-Authenticate``)."""
        return {}


def _render(template: str, values: Mapping[str, str]) -> str:
    text = template
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


class MalformedBodyError(ClientError):
    """The body cannot be parsed in the format its Content-Type names."""

    status = 400
    error = "malformed_body"


class BodyTooLargeError(ClientError):
    """The request body is longer than the broker reads (``max_body_bytes``)."""

    status = 413
    error = "body_too_large"


class UnsupportedMediaTypeError(ClientError):
    """The request body is in a format the broker does not read (not JSON, YAML or XML)."""

    status = 415
    error = "unsupported_media_type"


class NotAcceptableError(ClientError):
    """The client accepts no format the broker writes (its ``Accept`` header allows none of JSON,
    YAML and XML).
    """

    status = 406
    error = "not_acceptable"


class UnauthorizedError(ClientError):
    """No credentials, or credentials that do not identify anyone (RFC 6750)."""

    status = 401
    error = "unauthorized"

    def __init__(
        self,
        template: str,
        values: Mapping[str, object] | None = None,
        *,
        invalid_token: bool = False,
    ) -> None:
        super().__init__(template, values)
        self.invalid_token = invalid_token

    @property
    def headers(self) -> dict[str, str]:
        challenge = 'Bearer realm="execbroker"'
        if self.invalid_token:
            # RFC 6750 §3: error_description is a quoted-string of printable ASCII, no quotes.
            description = self.message.replace('"', "'").replace("\\", "/")
            description = "".join(c for c in description if " " <= c <= "~")
            challenge += f', error="invalid_token", error_description="{description}"'
        return {"WWW-Authenticate": challenge}


class QuotaExceededError(ClientError):
    """The caller already holds as much as one user may (live offers, active sessions)."""

    status = 429
    error = "quota_exceeded"


class TooManyWaitersError(ClientError):
    """The caller already holds as many long-polls and event streams as one user may."""

    status = 429
    error = "too_many_waiters"
    retry_after = 5

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimitedError(ClientError):
    """Too many anonymous requests from one address; try again after ``retry_after``."""

    status = 429
    error = "rate_limited"

    def __init__(
        self, template: str, values: Mapping[str, object] | None = None, *, retry_after: int
    ) -> None:
        super().__init__(template, values)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RequestTimeoutError(ClientError):
    """The client did not send its whole request body in time."""

    status = 408
    error = "request_timeout"


class ServiceUnavailableError(ClientError):
    """Something the broker needs to answer (e.g. the identity provider) cannot be reached
    now; the client should try again after ``retry_after`` seconds.
    """

    status = 503
    error = "service_unavailable"
    retry_after = 5

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PlatformIdentityRefusedError(ClientError):
    """The platform cannot act as the caller: e.g. the identity provider refused to exchange
    their token for one of the platform's (per-user Skaha). The message carries its reason.
    """

    status = 403
    error = "platform_identity_refused"


class ForbiddenError(ClientError):
    """The caller is known but may not do this: e.g. read what only administrators may."""

    status = 403
    error = "forbidden"


class NotFoundError(ClientError):
    """No such offer set, session or component, or one the caller does not own (the two look
    alike).
    """

    status = 404
    error = "not_found"


class ConflictError(ClientError):
    """The update is well formed but does not apply in the target's current phase."""

    status = 409
    error = "conflict"


class UnprocessableError(ClientError):
    """The update or request is parseable but not meaningful (unknown path, kind, value)."""

    status = 422
    error = "unprocessable"


class RequestRefusedError(ExecBrokerError):
    """The broker cannot serve an execution request; ``messages`` say why, field by field.

    ``POST /requests`` answers it as an offer set with ``result: NO``; ``POST /direct`` as a
    400 whose body carries the same messages.
    """

    def __init__(self, messages: list[MessageItem]) -> None:
        self.messages = messages
        super().__init__("; ".join(m.message or "" for m in messages))


class EgressRefusedError(ExecBrokerError):
    """The egress policy refuses a destination the broker was to fetch from
    (:mod:`execbroker.egress`); the message names the host and why.
    """


class StartupError(ExecBrokerError):
    """The broker cannot start: the message names the setting or path and what is wrong,
    in one line an operator can act on (``execbroker serve`` prints just that).
    """
