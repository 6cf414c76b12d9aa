"""Which format a request body is in, and which to answer in (``Content-Type``, ``Accept``)."""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from execbroker.exceptions import NotAcceptableError, UnsupportedMediaTypeError

__all__ = [
    "MAX_ACCEPT_RANGES",
    "MEDIA_TYPES",
    "MediaFormat",
    "format_for_accept",
    "format_for_content_type",
]


class MediaFormat(enum.StrEnum):
    """The formats a body is read and an answer written in: JSON, YAML and XML."""

    JSON = "json"
    YAML = "yaml"
    XML = "xml"


MEDIA_TYPES: Final[dict[MediaFormat, str]] = {
    MediaFormat.JSON: "application/json",
    MediaFormat.YAML: "application/yaml",
    MediaFormat.XML: "application/xml",
}


# Every concrete media type we answer to. The order breaks ties between formats that a
# wildcard matches equally: */* and application/* give JSON, text/* gives YAML.
_OFFERED: Final[tuple[tuple[str, MediaFormat], ...]] = (
    ("application/json", MediaFormat.JSON),
    ("application/yaml", MediaFormat.YAML),
    ("application/xml", MediaFormat.XML),
    ("text/yaml", MediaFormat.YAML),
    ("text/xml", MediaFormat.XML),
    ("text/json", MediaFormat.JSON),
    ("application/x-yaml", MediaFormat.YAML),
    ("text/x-yaml", MediaFormat.YAML),
    # The reference broker's YAML converter reads these as well.
    ("application/yml", MediaFormat.YAML),
    ("text/yml", MediaFormat.YAML),
)
_BY_TYPE: Final[dict[str, MediaFormat]] = dict(_OFFERED)
_ACCEPTED_TYPES_TEXT: Final = (
    "application/json (or text/json, or any type ending in +json), "
    "application/yaml (or text/yaml, application/x-yaml, text/x-yaml, application/yml, "
    "text/yml, or any type ending in +yaml), "
    "application/xml (or text/xml, or any type ending in +xml)"
)
_OFFERED_TEXT: Final = "application/json, application/yaml or application/xml"

_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# One piece of an Accept header: a quoted string (to its closing quote, or to the end of the
# header when it has none), a run of other characters, or a separator. Once a piece has
# started it cannot fail, so the header is read in one linear pass whatever it holds.
_ACCEPT_PIECE: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^",;]+|[,;]')
# Ranges after this many are ignored: no client needs more to say what it wants.
MAX_ACCEPT_RANGES: Final = 100
_QVALUE: Final = re.compile(r"\d+(?:\.\d+)?|\.\d+")
# Long headers are quoted in error messages only this far.
_QUOTE_LIMIT: Final = 200


def _quoted(value: str) -> str:
    if len(value) > _QUOTE_LIMIT:
        value = value[:_QUOTE_LIMIT] + "..."
    return f"'{value}'"


def _split_media_type(value: str) -> tuple[str, str] | None:
    """``(type, subtype)`` in lower case, or ``None`` when ``value`` is not ``type/subtype``."""
    main, slash, sub = value.strip().lower().partition("/")
    if not slash or not _TOKEN.fullmatch(main) or not _TOKEN.fullmatch(sub):
        return None
    return main, sub


def _format_of(main: str, sub: str) -> MediaFormat | None:
    """The format a concrete media type names, if it is one of ours."""
    if main == "*" or sub == "*":
        return None
    known = _BY_TYPE.get(f"{main}/{sub}")
    if known is not None:
        return known
    # Structured syntax suffixes (RFC 6839): application/problem+json is JSON.
    if sub.endswith("+json") and len(sub) > len("+json"):
        return MediaFormat.JSON
    if sub.endswith("+xml") and len(sub) > len("+xml"):
        return MediaFormat.XML
    if sub.endswith("+yaml") and len(sub) > len("+yaml"):
        return MediaFormat.YAML
    return None


def format_for_content_type(content_type: str | None) -> MediaFormat:
    """The format a request's ``Content-Type`` names; JSON when it names none.

    Parameters such as ``charset`` are ignored (bodies must be UTF-8 whatever they say).
    Raises :class:`UnsupportedMediaTypeError` for any other type.
    """
    essence = (content_type or "").partition(";")[0].strip()
    if not essence:
        return MediaFormat.JSON
    parts = _split_media_type(essence)
    fmt = _format_of(*parts) if parts is not None else None
    if fmt is None:
        raise UnsupportedMediaTypeError(
            "Content-Type {received} is not supported; send {accepted}",
            {"accepted": _ACCEPTED_TYPES_TEXT, "received": _quoted(essence)},
        )
    return fmt


@dataclass(frozen=True)
class _MediaRange:
    main: str
    sub: str
    q: float
    position: int


def _accept_items(accept: str) -> Iterator[list[str]]:
    """The comma-separated items of ``accept``, each as its semicolon-separated parts.

    Commas and semicolons inside quoted parameter values separate nothing.
    """
    parts: list[str] = []
    current: list[str] = []
    for piece in _ACCEPT_PIECE.finditer(accept):
        text = piece.group()
        if text in (",", ";"):
            parts.append("".join(current))
            current = []
            if text == ",":
                yield parts
                parts = []
        else:
            current.append(text)
    parts.append("".join(current))
    yield parts


def _parse_accept(accept: str) -> list[_MediaRange]:
    ranges: list[_MediaRange] = []
    items = itertools.islice(_accept_items(accept), MAX_ACCEPT_RANGES)
    for position, pieces in enumerate(items):
        if not pieces[0].strip():
            continue
        media = pieces[0].strip()
        # Some old clients send a bare "*" for "*/*".
        parts = ("*", "*") if media == "*" else _split_media_type(media)
        if parts is None or (parts[0] == "*" and parts[1] != "*"):
            continue
        q = 1.0
        valid = True
        for piece in pieces[1:]:
            name, _, value = piece.partition("=")
            if name.strip().lower() != "q":
                continue
            value = value.strip()
            if not _QVALUE.fullmatch(value):
                # We cannot know how much the client wants this one; skip it.
                valid = False
                break
            q = min(float(value), 1.0)
            # Anything after q is an accept-extension, not a media type parameter.
            break
        if valid:
            ranges.append(_MediaRange(parts[0], parts[1], q, position))
    return ranges


def format_for_accept(accept: str | None) -> MediaFormat:
    """The format to answer in, negotiated from a request's ``Accept`` header.

    No header, an empty one or ``*/*`` means JSON. For each format, the most specific range
    that matches it (a concrete type, then ``type/*``, then ``*/*``) sets its quality;
    ``q=0`` rules it out. The best quality wins; ties go to the more specific range, then to
    the range the client listed first, then to JSON over YAML over XML (but ``text/*``
    prefers YAML, the natural text type). Ranges after the first :data:`MAX_ACCEPT_RANGES`
    are ignored, and reading the header takes time linear in its length. Raises
    :class:`NotAcceptableError` when no format is acceptable.
    """
    if accept is None or not accept.strip(" \t,"):
        return MediaFormat.JSON
    # For each format: (specificity, q, position of the deciding range, server rank).
    best: dict[MediaFormat, tuple[int, float, int, int]] = {}

    def consider(fmt: MediaFormat, specificity: int, rng: _MediaRange, rank: int) -> None:
        current = best.get(fmt)
        candidate = (specificity, rng.q, rng.position, rank)
        # The most specific range decides; among equally specific ones the most generous.
        if current is None or (specificity, rng.q) > (current[0], current[1]):
            best[fmt] = candidate

    for rng in _parse_accept(accept):
        if rng.sub != "*":
            fmt = _format_of(rng.main, rng.sub)
            if fmt is not None:
                consider(fmt, 3, rng, 0)
            continue
        specificity = 1 if rng.main == "*" else 2
        seen: set[MediaFormat] = set()
        for rank, (media_type, fmt) in enumerate(_OFFERED):
            if fmt in seen or (specificity == 2 and not media_type.startswith(rng.main + "/")):
                continue
            seen.add(fmt)
            consider(fmt, specificity, rng, rank)

    acceptable = [(choice, fmt) for fmt, choice in best.items() if choice[1] > 0]
    if not acceptable:
        raise NotAcceptableError(
            "None of the media types in Accept {asked} can be produced; this service offers "
            "{offered}",
            {"offered": _OFFERED_TEXT, "asked": _quoted(accept.strip())},
        )
    _, chosen = min(acceptable, key=lambda pair: (-pair[0][1], -pair[0][0], *pair[0][2:]))
    return chosen
