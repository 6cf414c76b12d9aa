"""The failures the fake raises, each rendered the way cadc-rest renders its Java counterpart.

Skaha is a cadc-rest servlet: the exception class decides the status code and the body is
``text/plain`` (SKAHA.md §1.2). The class names here follow the Java ones, ending in ``Error``.
"""

from __future__ import annotations

__all__ = [
    "AccessControlError",
    "IllegalArgumentError",
    "NotAuthenticatedError",
    "ResourceNotFoundError",
    "SkahaError",
    "TransientError",
    "UnexpectedError",
    "UnsupportedOperationError",
]


class SkahaError(Exception):
    """A failure the fake answers with ``status`` and a ``text/plain`` ``body()``."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> str:
        """The response body, byte for byte what Skaha sends."""
        return self.message

    def headers(self) -> dict[str, str]:
        """Extra response headers."""
        return {}


class IllegalArgumentError(SkahaError):
    """400 with cadc-rest's quirk: the message, then the exception's ``toString``, unseparated."""

    status = 400

    def body(self) -> str:
        return f"{self.message}java.lang.IllegalArgumentException: {self.message}\n"


class UnsupportedOperationError(SkahaError):
    """400 with the message only."""

    status = 400


class NotAuthenticatedError(SkahaError):
    """401 with the challenges cadc-rest sends when authentication fails (SKAHA.md §2.2)."""

    status = 401

    def __init__(
        self, message: str, *, error: str = "invalid_token", challenges: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.error = error
        self.challenges = challenges

    def challenge_values(self) -> list[str]:
        """Every ``WWW-Authenticate`` value, the RFC 6750 ``Bearer`` one included."""
        description = self.message.replace('"', "'")
        bearer = f'Bearer error="{self.error}", error_description="{description}"'
        return [*self.challenges, bearer, "ivoa_x509"]


class AccessControlError(SkahaError):
    """403, e.g. ``Not authorized to use the skaha system``."""

    status = 403


class ResourceNotFoundError(SkahaError):
    """404, e.g. ``session abcd1234 not found``."""

    status = 404


class TransientError(SkahaError):
    """503 ``temporarily unavailable: <path>`` with ``Retry-After``."""

    status = 503

    def __init__(self, path: str, *, retry_after: int = 5) -> None:
        super().__init__(f"temporarily unavailable: {path}")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UnexpectedError(SkahaError):
    """500 ``unexpected exception: <java exception toString>``."""

    status = 500

    def __init__(self, java_exception: str = "java.lang.NullPointerException") -> None:
        super().__init__(f"unexpected exception: {java_exception}")
