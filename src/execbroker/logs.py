"""Logging set-up, with a filter that keeps credentials out of every log line.

Nothing in execbroker logs a token on purpose; the filter is the second line of defence
against a library or an exception message that quotes a header, a form body or a URL.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactSecrets", "configure_logging", "redact"]

_PATTERNS = [
    # Authorization headers and challenges: Bearer/Basic credentials.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 [redacted]"),
    # OAuth form fields and JSON members, query parameters carrying tokens or secrets.
    (
        re.compile(
            r"(?i)\b(access_token|refresh_token|id_token|client_secret|token|password|secret)"
            r"(\"?\s*[:=]\s*\"?)([^\s\"&,;]{4,})"
        ),
        r"\1\2[redacted]",
    ),
    # JWTs wherever they appear.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (with its arguments filled in) without credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if redact(text) != text:
                # The traceback would quote it: keep the type, drop the message.
                record.exc_text = f"{type(record.exc_info[1]).__name__}: [redacted]"
                record.exc_info = None
        return True


def configure_logging(level: str) -> None:
    """Root logging at ``level`` to stderr, every handler (uvicorn's too) filtering secrets."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    secret_filter = RedactSecrets()
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(secret_filter)
