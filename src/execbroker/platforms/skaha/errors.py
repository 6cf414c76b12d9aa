r"""What can go wrong talking to Skaha or its identity provider, as typed errors.

Two families, told apart by what the engine should do:

- :class:`SkahaRequestError` and its subclasses are Skaha's own answers to *this* request
  (400, 403, 404, a 500 that retries did not cure). They are :class:`PlatformError`\ s: the
  component they concern fails, with Skaha's message.
- :class:`SkahaUnavailableError` (Skaha or the IdP unreachable, 503 after the retries, a
  401 that a refreshed token did not cure) and :class:`SkahaCredentialsError` (the refresh
  token is dead: an operator must act) are :class:`PlatformUnavailableError`\ s: nothing is
  failed for them, the step is tried again later.

Every error keeps Skaha's text (``message``) and the HTTP status where there was one. No
error ever carries a token.
"""

from __future__ import annotations

from datetime import timedelta

from execbroker.platforms.base import PlatformError, PlatformUnavailableError

__all__ = [
    "SkahaBadRequestError",
    "SkahaCreateUnknownError",
    "SkahaCredentialsError",
    "SkahaError",
    "SkahaForbiddenError",
    "SkahaListTooLargeError",
    "SkahaNotFoundError",
    "SkahaRequestError",
    "SkahaServerError",
    "SkahaUnavailableError",
    "TokenFileError",
]


class SkahaError(Exception):
    """Base of every Skaha platform error; ``message`` is fit to show a user."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SkahaRequestError(SkahaError, PlatformError):
    """Skaha answered this request with an error that retrying will not change."""


class SkahaBadRequestError(SkahaRequestError):
    """400: a parameter Skaha refuses (its message says which), or a quota reached."""


class SkahaForbiddenError(SkahaRequestError):
    """403: the broker's account may not use this Skaha (e.g. not in the platform group)."""


class SkahaNotFoundError(SkahaRequestError):
    """404: no such session (for this account), or no pod yet for ``view=events``."""


class SkahaServerError(SkahaRequestError):
    """500 (or another 5xx) still there after the retries: ``unexpected exception: ...``."""


class SkahaUnavailableError(SkahaError, PlatformUnavailableError):
    """Skaha or the identity provider cannot be used now; try again after ``retry_after``."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: timedelta | None = None
    ) -> None:
        SkahaError.__init__(self, message, status=status)
        self.retry_after = retry_after


class SkahaCreateUnknownError(SkahaUnavailableError):
    """A create left and no answer says what it did, and a look by name found nothing yet:
    the session may still appear (a slow Skaha), so it must not simply be sent again.
    """


class SkahaListTooLargeError(SkahaServerError):
    """Skaha's session list is larger than the broker reads (``skaha_list_max_bytes``)."""


class SkahaCredentialsError(SkahaUnavailableError):
    """The broker holds no usable credentials (refresh token refused): an operator must
    provide new ones. ``message`` is the operator message.
    """


class TokenFileError(SkahaError):
    """The token file is missing or malformed (raised at start-up: a configuration error)."""
