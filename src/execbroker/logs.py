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
]

# JWTs: ``eyJ`` at a word boundary, at least 5 more characters, then two more dot-separated
# segments (the second at least 5 characters long) of base64url characters. The regular
# expression that says so, ``\beyJ[...]{5,}\.[...]{5,}\.[...]*``, rescans a run of such
# characters from every ``eyJ`` in it, which is quadratic in a long token-like URL; instead,
# the runs are found once and the dots between them checked.
_JWT_RUN = re.compile(r"[A-Za-z0-9_-]+")
_JWT_HEAD = re.compile(r"\beyJ")
_JWT_REDACTED = "[redacted-jwt]"


def _redact_jwts(text: str) -> str:
    if "eyJ" not in text:
        return text
    out: list[str] = []
    kept = 0  # text[:kept] is already in out
    for run in _JWT_RUN.finditer(text):
        start, end = run.span()
        if start < kept:
            continue  # the second or third segment of a token just redacted
        # The first eyJ of a run leaves the most characters after it; if it has too few
        # (or there is none), no later one in the run can do better.
        head = _JWT_HEAD.search(text, start, end)
        if head is None or end - head.end() < 5 or text[end : end + 1] != ".":
            continue
        second = _JWT_RUN.match(text, end + 1)
        if second is None or second.end() - second.start() < 5:
            continue
        if text[second.end() : second.end() + 1] != ".":
            continue
        third = _JWT_RUN.match(text, second.end() + 1)
        out += [text[kept : head.start()], _JWT_REDACTED]
        kept = third.end() if third is not None else second.end() + 1
    if not out:
        return text
    out.append(text[kept:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` without credentials; linear in its length, whatever it holds."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _redact_jwts(text)


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
