"""What one body may make the parsers do (:class:`ParseLimits`), and the checks that every
format shares: the body's size and encoding before parsing, the document's depth, sizes,
keys and scalars after (:class:`DocumentCheck`, iterative, so no document exhausts the
stack, and alias-aware, so a small YAML body cannot name a huge document).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from execbroker.api.formats.negotiation import MediaFormat
from execbroker.exceptions import BodyTooLargeError, MalformedBodyError
from execbroker.model.quoting import brief

__all__ = [
    "DEFAULT_LIMITS",
    "EXPANDED_TEXT_FACTOR",
    "DocumentCheck",
    "ParseLimits",
    "decode",
    "line_column",
    "quoted_key",
    "too_deep",
]

# A ceiling on ParseLimits.max_depth: converters below recurse once per level, and the
# interpreter's recursion limit (1000) must stay well out of reach.
_MAX_DEPTH_CEILING = 256


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on what one body may make :func:`~execbroker.api.formats.parse_body` do.

    ``max_depth`` counts nested objects and lists (in XML, nested elements other than the
    leaves holding text). ``max_list_length`` bounds the items of a list, the keys of an
    object and the children of an XML element. Through YAML aliases a small body can name a
    huge document; besides ``max_yaml_aliases``, the expanded document may not hold more
    values than ``max_bytes`` -- more than any body of the maximum size could spell out --
    nor more than :data:`EXPANDED_TEXT_FACTOR` times ``max_bytes`` characters of keys and
    strings, so that a long string named by many aliases cannot grow into gigabytes when the
    document is stored, rendered or quoted.
    """

    max_bytes: int = 1_048_576
    max_depth: int = 32
    max_string_length: int = 65_536
    max_list_length: int = 10_000
    max_yaml_aliases: int = 100

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_string_length", "max_list_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"ParseLimits.{name} must be at least 1")
        if self.max_yaml_aliases < 0:
            raise ValueError("ParseLimits.max_yaml_aliases must not be negative")
        if self.max_depth > _MAX_DEPTH_CEILING:
            raise ValueError(f"ParseLimits.max_depth must be at most {_MAX_DEPTH_CEILING}")


DEFAULT_LIMITS: Final = ParseLimits()

EXPANDED_TEXT_FACTOR: Final = 4
"""How many times ``max_bytes`` characters a document's aliases may expand its text to."""


_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# What no string may hold: unpaired surrogates, and NUL, which PostgreSQL cannot store and
# C-string APIs cut at.
_FORBIDDEN_CHARACTER: Final = re.compile("[\x00\ud800-\udfff]")
# Python refuses to print integers of more than 4300 digits, so a document holding one
# could not be rendered again; 14_000 bits is about 4200 digits.
_MAX_INT_BITS: Final = 14_000
# Keys are shortened this far when a path is quoted in a message.
_PATH_KEY_LIMIT: Final = 40


def _child_path(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    text = str(key)
    if _IDENTIFIER.fullmatch(text) and len(text) <= _PATH_KEY_LIMIT:
        return f"{path}.{text}"
    if len(text) > _PATH_KEY_LIMIT:
        text = text[:_PATH_KEY_LIMIT] + "..."
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


def quoted_key(key: str) -> str:
    """``key`` as a message quotes it: JSON-quoted, and shortened like keys in paths."""
    if len(key) > _PATH_KEY_LIMIT:
        key = key[:_PATH_KEY_LIMIT] + "..."
    return json.dumps(key, ensure_ascii=False)


def too_deep(limits: ParseLimits, path: str, where: str = "") -> MalformedBodyError:
    """The error for a body nested deeper than ``limits.max_depth``, at ``path`` (or ``where``)."""
    return MalformedBodyError(
        "The body nests objects and lists more than {limit} levels deep{where}; "
        "the limit is {limit} (max_depth)",
        {"limit": limits.max_depth, "where": where or f" at {path}"},
        path=path or None,
    )


def _check_scalar(value: object, path: str, limits: ParseLimits) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        if len(value) > limits.max_string_length:
            raise MalformedBodyError(
                "The string at {path} is {length} characters long; the limit is {limit} "
                "(max_string_length)",
                {"length": len(value), "limit": limits.max_string_length, "path": path},
                path=path,
            )
        if "\x00" in value:
            raise MalformedBodyError(
                "The string at {path} holds a NUL character (\\u0000), which is not allowed",
                {"path": path},
                path=path,
            )
        if _SURROGATE.search(value):
            raise MalformedBodyError(
                "The string at {path} holds an unpaired UTF-16 surrogate escape, which is "
                "not a character",
                {"path": path},
                path=path,
            )
        return
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise MalformedBodyError(
                "The integer at {path} is too large", {"path": path}, path=path
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedBodyError(
                "The number at {path} is {value}; only finite numbers are allowed",
                {"value": value, "path": path},
                path=path,
            )
        return
    raise MalformedBodyError(
        "The value at {path} is of type {type}; documents hold only objects, lists, strings, "
        "numbers, booleans and null",
        {"type": type(value).__name__, "path": path},
        path=path,
    )


def _check_key(key: object, path: str, limits: ParseLimits) -> None:
    if not isinstance(key, str):
        raise MalformedBodyError(
            "The object at {path} has a key that is not a string: {key} ({type}); quote it",
            {"type": type(key).__name__, "key": brief(key), "path": path},
            path=path,
        )
    if len(key) > limits.max_string_length:
        raise MalformedBodyError(
            "A key of the object at {path} is {length} characters long; the limit is {limit} "
            "(max_string_length)",
            {"length": len(key), "limit": limits.max_string_length, "path": path},
            path=path,
        )
    if "\x00" in key:
        raise MalformedBodyError(
            "A key of the object at {path} holds a NUL character (\\u0000), which is not allowed",
            {"path": path},
            path=path,
        )
    _check_scalar(key, path, limits)


@dataclass
class _Frame:
    value: dict[Any, Any] | list[Any]
    path: str
    depth: int
    children: Iterator[tuple[object, Any]]
    start: int
    text_start: int
    height: int = 1


class DocumentCheck:
    """Refuses documents that break ``limits`` or are not JSON-like.

    The walk is iterative so that no document can exhaust the stack, and it treats the
    document as a graph: YAML aliases make containers shared (and even recursive), so each
    container is measured once and its height and expanded size are reused.
    """

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        # id -> (height, expanded values, expanded characters)
        self._measured: dict[int, tuple[int, int, int]] = {}
        self._on_path: set[int] = set()
        self._stack: list[_Frame] = []
        self._expanded = 0
        self._text = 0
        self._max_text = limits.max_bytes * EXPANDED_TEXT_FACTOR

    def run(self, doc: Any) -> None:
        self._enter(doc, "", 1)
        stack = self._stack
        max_string = self._limits.max_string_length
        max_values = self._limits.max_bytes
        while stack:
            frame = stack[-1]
            for key, value in frame.children:
                # Most values are short plain scalars; checking them inline, without
                # building their path, keeps a megabyte body to a fraction of a second.
                kind = type(value)
                if (
                    (
                        kind is str
                        and len(value) <= max_string
                        and not _FORBIDDEN_CHARACTER.search(value)
                    )
                    or kind is bool
                    or value is None
                    or (kind is int and value.bit_length() <= _MAX_INT_BITS)
                    or (kind is float and math.isfinite(value))
                ):
                    self._expanded += 1
                    if kind is str:
                        self._text += len(value)
                    if self._expanded > max_values or self._text > self._max_text:
                        self._count(0, frame.path)
                    continue
                height = self._enter(value, _child_path(frame.path or "$", key), frame.depth + 1)
                if height < 0:
                    break
                frame.height = max(frame.height, height + 1)
            else:
                stack.pop()
                self._on_path.discard(id(frame.value))
                self._measured[id(frame.value)] = (
                    frame.height,
                    self._expanded - frame.start,
                    self._text - frame.text_start,
                )
                if stack:
                    stack[-1].height = max(stack[-1].height, frame.height + 1)

    def _count(self, values: int, path: str, text: int = 0) -> None:
        self._expanded += values
        self._text += text
        if self._expanded > self._limits.max_bytes:
            raise MalformedBodyError(
                "The body's YAML aliases expand it to more than {limit} values; the limit is "
                "{limit} (max_bytes)",
                {"limit": self._limits.max_bytes},
                path=path or None,
            )
        if self._text > self._max_text:
            raise MalformedBodyError(
                "The body's YAML aliases expand its keys and strings to more than {limit} "
                "characters; the limit is {limit} ({factor} times max_bytes)",
                {"limit": self._max_text, "factor": EXPANDED_TEXT_FACTOR},
                path=path or None,
            )

    def _enter(self, value: Any, path: str, depth: int) -> int:
        """Visit ``value`` at ``depth``; its height, or -1 when a frame was pushed for it."""
        limits = self._limits
        if not isinstance(value, dict | list):
            _check_scalar(value, path or "$", limits)
            self._count(1, path, len(value) if isinstance(value, str) else 0)
            return 0
        key = id(value)
        if key in self._on_path:
            raise MalformedBodyError(
                "The body refers to itself at {path} through a YAML alias",
                {"path": path or "$"},
                path=path or None,
            )
        if key in self._measured:
            height, size, text = self._measured[key]
            if depth - 1 + height > limits.max_depth:
                raise too_deep(limits, path or "$")
            self._count(size, path, text)
            return height
        if depth > limits.max_depth:
            raise too_deep(limits, path or "$")
        if len(value) > limits.max_list_length:
            is_list = isinstance(value, list)
            raise MalformedBodyError(
                "The {what} at {path} has {length} {unit}; the limit is {limit} (max_list_length)",
                {
                    "what": "list" if is_list else "object",
                    "length": len(value),
                    "unit": "items" if is_list else "keys",
                    "limit": limits.max_list_length,
                    "path": path or "$",
                },
                path=path or None,
            )
        children: Iterator[tuple[object, Any]]
        text = 0
        if isinstance(value, dict):
            for k in value:
                _check_key(k, path or "$", limits)
                text += len(k)
            children = iter(value.items())
        else:
            children = enumerate(value)
        self._on_path.add(key)
        self._count(1, path, text)
        self._stack.append(
            _Frame(value, path, depth, children, self._expanded - 1, self._text - text)
        )
        return -1


def line_column(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of ``offset`` in ``text``, for messages about a body."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def decode(raw: bytes, fmt: MediaFormat, limits: ParseLimits) -> str:
    """The text of a request body: at most ``limits.max_bytes``, valid UTF-8, not empty.

    A byte order mark is dropped. ``BodyTooLargeError`` or ``MalformedBodyError`` says what is
    wrong and where.
    """
    if len(raw) > limits.max_bytes:
        raise BodyTooLargeError(
            "The body is {size} bytes long; the limit is {limit} bytes",
            {"size": len(raw), "limit": limits.max_bytes},
        )
    try:
        # A byte order mark is harmless, and some editors write one.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(
            "The body is not valid UTF-8: {reason} at byte {offset}",
            {"reason": exc.reason, "offset": exc.start},
        ) from None
    if not text.strip():
        raise MalformedBodyError(
            "The body is empty; send a {format} document", {"format": fmt.name}
        )
    return text
