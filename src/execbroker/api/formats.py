"""Request and response bodies as JSON, YAML or XML, and which of the three to use.

Everything here is a pure function of bytes and plain JSON-like documents (``dict`` with
string keys, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``), so the HTTP layer
only has to pick the format (:func:`format_for_content_type`, :func:`format_for_accept`)
and call :func:`parse_body` or :func:`render_body`.

Bodies are untrusted: :func:`parse_body` raises only :class:`MalformedBodyError` (400) or
:class:`BodyTooLargeError` (413), and bounds the work a body can cause with
:class:`ParseLimits`. YAML is read with ``safe_load`` semantics except that timestamps and
dates stay the strings that were written, so every format yields JSON-like documents.

XML mapping
-----------
JSON and YAML carry documents as they are. XML carries them by these rules, and
:func:`parse_body` inverts :func:`render_body` for every document that fits them (see
*Documents that do not fit* below).

Rendering (document -> XML), for a value under key ``K`` (the root element is named by
``render_body(..., root=...)``, ``"document"`` by default):

* A **dict** becomes element ``<K>`` with one child element per key, in order. A ``kind``
  key whose value is a string becomes the attribute ``kind="..."`` instead of a child.
* A dict is written as a **map of entries** -- ``<K><entry key="NAME">VALUE</entry>...</K>``
  -- when ``K`` is one of :data:`MAP_KEYS` (``environment``, ``values``), when ``K`` is a
  list key of :data:`ITEM_NAMES` (so that it cannot be mistaken for a list), when any key
  is not a plain XML name (``[A-Za-z_][A-Za-z0-9._-]*`` not starting with ``xml``; e.g.
  ``"weird key"``, ``"1x"``), or when its only key is ``item`` (which would read as a list).
  Each entry's value follows these same rules, with ``entry`` as its element name.
* A **list** under ``K`` becomes ``<K>`` with one child per item, named
  ``ITEM_NAMES.get(K, "item")``: ``offers`` holds ``<offer>`` elements, ``command`` holds
  ``<arg>`` elements, a top-level list is ``<document>`` holding ``<item>`` elements.
* A **scalar** becomes the element's text: strings as they are, booleans as ``true`` /
  ``false``, numbers via ``str()``. A string with leading or trailing whitespace, and an
  empty string under a list or map key, also gets ``xml:space="preserve"`` so that it comes
  back exactly.
* ``None`` under a dict key is omitted entirely; ``None`` as a list item is an empty
  element, so that the other items keep their positions.
* An empty list or dict is an empty element ``<K/>``.
* Characters XML 1.0 cannot carry (most C0 controls, lone surrogates, U+FFFE/U+FFFF) are
  written as U+FFFD; carriage returns are written as ``&#13;`` so that they survive.

Parsing (XML -> document), element by element:

* Namespaces are ignored: ``{uri}tag`` is read as ``tag``. Namespaced attributes (such as
  ``xsi:schemaLocation``) are ignored; ``kind``, ``key`` on an ``<entry>`` of a map, and
  ``xml:space`` are the only other attributes allowed -- any other is refused rather than
  silently dropped.
* ``kind="..."`` always means a dict, with ``"kind"`` as its first key.
* An element whose children are all ``<entry key="...">`` is a dict of those entries.
* Otherwise an element with children is a list when its tag is a key of
  :data:`ITEM_NAMES` (whatever its children are called) or when all its children are
  ``<item>``; else it is a dict of its children, where a child tag that repeats collects
  its values into a list.
* An element without children is its text, stripped of surrounding XML whitespace unless
  it has ``xml:space="preserve"``; so ``<storage>scratch</storage>`` is the string
  ``"scratch"`` even though ``storage`` is also a list key. When that text is empty, the
  element is ``[]`` if its tag is a key of :data:`ITEM_NAMES`, ``{}`` if its tag is in
  :data:`MAP_KEYS` (and not a list key), else ``""``.
* Text mixed with child elements is refused, as are DTDs, entity declarations and
  external references.
* Every scalar comes back as a string (``"2"``, ``"true"``); the models convert them.

Documents that do not fit, and so do not come back exactly from XML: scalars other than
strings (they come back as strings), ``None`` (omitted, or ``""`` in a list), empty dicts
(``""``, or ``[]`` under ``values``) and empty lists under keys that are not list keys
(``""``), and strings with characters XML cannot carry.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import yaml
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from execbroker.exceptions import (
    BodyTooLargeError,
    MalformedBodyError,
    NotAcceptableError,
    UnsupportedMediaTypeError,
)
from execbroker.model.quoting import brief, shorten

try:
    # libyaml is several times faster, and caps nesting depth (at 1000) by itself.
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = [
    "EXPANDED_TEXT_FACTOR",
    "ITEM_NAMES",
    "MAP_KEYS",
    "MAX_ACCEPT_RANGES",
    "MEDIA_TYPES",
    "MediaFormat",
    "ParseLimits",
    "format_for_accept",
    "format_for_content_type",
    "parse_body",
    "render_body",
]


class MediaFormat(enum.StrEnum):
    JSON = "json"
    YAML = "yaml"
    XML = "xml"


MEDIA_TYPES: Final[dict[MediaFormat, str]] = {
    MediaFormat.JSON: "application/json",
    MediaFormat.YAML: "application/yaml",
    MediaFormat.XML: "application/xml",
}

ITEM_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "offers": "offer",
        "messages": "message",
        "options": "option",
        "costs": "cost",
        "metrics": "metric",
        "volumes": "volume",
        "storage": "resource",
        "data": "resource",
        "connectors": "connector",
        "locations": "location",
        "command": "arg",
        "ports": "port",
        "addresses": "address",
        "replicas": "replica",
        "values": "value",
    }
)
"""List keys and the element name of their items in XML; other lists hold ``<item>``."""

MAP_KEYS: Final[frozenset[str]] = frozenset({"environment", "values"})
"""Keys whose dict values are free-form string maps, written as ``<entry key="...">``."""

# A ceiling on ParseLimits.max_depth: converters below recurse once per level, and the
# interpreter's recursion limit (1000) must stay well out of reach.
_MAX_DEPTH_CEILING = 256


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on what one body may make :func:`parse_body` do.

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


_DEFAULT_LIMITS: Final = ParseLimits()

EXPANDED_TEXT_FACTOR: Final = 4
"""How many times ``max_bytes`` characters a document's aliases may expand its text to."""


# --------------------------------------------------------------------------------------
# Negotiation
# --------------------------------------------------------------------------------------

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
)
_BY_TYPE: Final[dict[str, MediaFormat]] = dict(_OFFERED)
_ACCEPTED_TYPES_TEXT: Final = (
    "application/json (or text/json, or any type ending in +json), "
    "application/yaml (or text/yaml, application/x-yaml, text/x-yaml), "
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


# --------------------------------------------------------------------------------------
# Parsing: shared checks
# --------------------------------------------------------------------------------------

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


def _quoted_key(key: str) -> str:
    """``key`` as a message quotes it: JSON-quoted, and shortened like keys in paths."""
    if len(key) > _PATH_KEY_LIMIT:
        key = key[:_PATH_KEY_LIMIT] + "..."
    return json.dumps(key, ensure_ascii=False)


def _too_deep(limits: ParseLimits, path: str, where: str = "") -> MalformedBodyError:
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


class _DocumentCheck:
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
                raise _too_deep(limits, path or "$")
            self._count(size, path, text)
            return height
        if depth > limits.max_depth:
            raise _too_deep(limits, path or "$")
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


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, column


def _decode(raw: bytes, fmt: MediaFormat, limits: ParseLimits) -> str:
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


def parse_body(raw: bytes, fmt: MediaFormat, limits: ParseLimits = _DEFAULT_LIMITS) -> Any:
    """The JSON-like document in ``raw``, read as ``fmt``.

    Raises :class:`BodyTooLargeError` for a body over ``limits.max_bytes`` and
    :class:`MalformedBodyError`, naming the problem and where possible its line and
    column, for anything else wrong; never any other exception. The top level may be any
    value; callers check that it is an object.
    """
    text = _decode(raw, fmt, limits)
    try:
        if fmt is MediaFormat.JSON:
            doc = _parse_json(text, limits)
        elif fmt is MediaFormat.YAML:
            doc = _parse_yaml(text, limits)
        else:
            doc = _parse_xml(text, limits)
    except RecursionError:
        # Limits keep parsers far from the recursion limit; this is the last line of defence.
        raise _too_deep(limits, "$", " somewhere") from None
    _DocumentCheck(limits).run(doc)
    return doc


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------

# A string runs to its closing quote or, when it has none, to the end of the body: with the
# closing quote optional a match cannot fail once started, so each pass is linear (a
# required quote made every '"' of an unterminated string rescan to the end). An
# unterminated string is refused by the decoder anyway, and nothing after it is parsed.
_JSON_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_JSON_TOKEN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_NOT_BRACKET: Final = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP: Final = {"[": 1, "{": 1, "]": -1, "}": -1}
_OPENERS: Final = frozenset("[{")
_CLOSERS: Final = frozenset("]}")


def _json_depth_error(text: str, limits: ParseLimits) -> MalformedBodyError | None:
    """An error when brackets outside strings nest deeper than allowed, else ``None``.

    This runs before ``json.loads`` because the decoder recurses once per level. The
    first pass runs at C speed; only a body that fails it is walked token by token, and
    only up to the point where it goes too deep, to say where that is.
    """
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    steps = map(_BRACKET_STEP.__getitem__, brackets)
    if max(itertools.accumulate(steps), default=0) <= limits.max_depth:
        return None
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char in _OPENERS:
            depth += 1
            if depth > limits.max_depth:
                line, column = _line_column(text, token.start())
                return _too_deep(limits, "", f" (at line {line}, column {column})")
        elif char in _CLOSERS:
            depth -= 1
    return None


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the body; a key written twice is refused, not silently overwritten."""
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MalformedBodyError(
                    "The body repeats the key {key} in one JSON object; write each key once",
                    {"key": _quoted_key(key)},
                )
            seen.add(key)
    return found


def _parse_json(text: str, limits: ParseLimits) -> Any:
    error = _json_depth_error(text, limits)
    if error is not None:
        raise error
    try:
        return json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise MalformedBodyError(
            "The body is not valid JSON: {problem} at line {line}, column {column}",
            {"line": exc.lineno, "column": exc.colno, "problem": exc.msg},
        ) from None
    except ValueError:
        # The only other ValueError: integers longer than Python will convert.
        raise MalformedBodyError(
            "The body is not valid JSON: a number has too many digits"
        ) from None


# --------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------

_TIMESTAMP_TAG: Final = "tag:yaml.org,2002:timestamp"


class _YamlLoader(_BaseLoader):
    """``safe_load`` that leaves timestamps and dates as the strings written.

    Documents must stay JSON-like, and a datetime would not survive being written back.
    """


# PyYAML looks resolvers up per class, so this copy leaves yaml.SafeLoader untouched.
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def _timestamp_as_text(loader: _YamlLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "a timestamp must be a scalar", node.start_mark
        )
    return loader.construct_scalar(node)


# An explicit !!timestamp tag still reaches the constructor; keep its text too.
_YamlLoader.add_constructor(_TIMESTAMP_TAG, _timestamp_as_text)


# libyaml's emitter (``CSafeDumper``) writes large documents many times faster than the
# pure-Python one; the representers, ours included, are the same for both.
if TYPE_CHECKING:
    _SafeDumper = yaml.SafeDumper
else:
    _SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _NoAliasDumper(_SafeDumper):
    """``safe_dump`` without anchors: documents shared by reference are written out in full.

    JSON and XML have no anchors, and ``&id001`` in a response would only puzzle readers.
    """

    def ignore_aliases(self, data: Any) -> bool:
        return True


_YAML_ONLY_BREAKS: Final = frozenset("\x85\u2028\u2029")


def _represent_str(dumper: _NoAliasDumper, value: str) -> yaml.ScalarNode:
    # PyYAML drops NEL (and mangles other YAML 1.1 line breaks) in the plain and
    # single-quoted styles it would otherwise pick; double quotes escape them.
    style = '"' if not _YAML_ONLY_BREAKS.isdisjoint(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_NoAliasDumper.add_representer(str, _represent_str)


def _check_nodes(root: yaml.Node, limits: ParseLimits) -> None:
    """Refuse alias overuse and oversized nodes before anything is constructed.

    The composer resolves ``*name`` to the anchored node itself, so every edge that reaches
    a node seen before is one alias use. Sizes are checked here too, where marks still say
    where the offending node is and before construction spends time on it.
    """
    seen = {id(root)}
    pending = [root]
    aliases = 0
    while pending:
        node = pending.pop()
        mark = node.start_mark
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > limits.max_string_length:
                raise MalformedBodyError(
                    "The YAML scalar at line {line}, column {column} is {length} characters "
                    "long; the limit is {limit} (max_string_length)",
                    {
                        "line": mark.line + 1,
                        "column": mark.column + 1,
                        "length": len(node.value),
                        "limit": limits.max_string_length,
                    },
                )
            continue
        if len(node.value) > limits.max_list_length:
            is_list = isinstance(node, yaml.SequenceNode)
            raise MalformedBodyError(
                "The YAML {what} at line {line}, column {column} has {length} {unit}; the limit "
                "is {limit} (max_list_length)",
                {
                    "what": "sequence" if is_list else "mapping",
                    "line": mark.line + 1,
                    "column": mark.column + 1,
                    "length": len(node.value),
                    "unit": "items" if is_list else "keys",
                    "limit": limits.max_list_length,
                },
            )
        children: list[yaml.Node]
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [part for pair in node.value for part in pair]
        for child in children:
            if id(child) in seen:
                aliases += 1
                if aliases > limits.max_yaml_aliases:
                    raise MalformedBodyError(
                        "The body uses more than {limit} YAML aliases; the limit is {limit} "
                        "(max_yaml_aliases)",
                        {"limit": limits.max_yaml_aliases},
                    )
            else:
                seen.add(id(child))
                pending.append(child)


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def _check_unique_keys(node: yaml.MappingNode) -> None:
    """Refuse a mapping that writes a key twice (keys a ``<<`` merge brings may be
    overridden: that is what merging is for)."""
    keys: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        identity = (key_node.tag, key_node.value)
        if identity in keys:
            mark = key_node.start_mark
            raise MalformedBodyError(
                "The body repeats the key {key} in one YAML mapping (again at line {line}, "
                "column {column}); write each key once",
                {
                    "key": _quoted_key(key_node.value),
                    "line": mark.line + 1,
                    "column": mark.column + 1,
                },
            )
        keys.add(identity)


def _yaml_error(exc: yaml.YAMLError, text: str) -> MalformedBodyError:
    if isinstance(exc, yaml.MarkedYAMLError):
        if exc.context == "expected a single document in the stream" and exc.problem_mark:
            return MalformedBodyError(
                "The body holds more than one YAML document (the second starts at line "
                "{line}); send exactly one",
                {"line": exc.problem_mark.line + 1},
            )
        problem = exc.problem or exc.context or "unknown problem"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        # PyYAML quotes what it met (an alias name, a tag), which can be long.
        problem = shorten(problem, _QUOTE_LIMIT)
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return MalformedBodyError(
                "The body is not valid YAML: {problem} at line {line}, column {column}",
                {"line": mark.line + 1, "column": mark.column + 1, "problem": problem},
            )
        return MalformedBodyError("The body is not valid YAML: {problem}", {"problem": problem})
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_column(text, exc.position)
        return MalformedBodyError(
            "The body is not valid YAML: character {char} is not allowed ({reason}) at line "
            "{line}, column {column}",
            {
                "char": f"U+{exc.character:04X}" if isinstance(exc.character, int) else "?",
                "reason": exc.reason,
                "line": line,
                "column": column,
            },
        )
    return MalformedBodyError("The body is not valid YAML: {problem}", {"problem": str(exc)})


def _parse_yaml(text: str, limits: ParseLimits) -> Any:
    loader = _YamlLoader(text)
    try:
        # libyaml caps nesting itself (at 1000 levels), so composing recurses safely; the
        # node graph is then checked before construction can be asked to do anything big.
        node = loader.get_single_node()
        if node is None:
            raise MalformedBodyError("The body holds no YAML document, only comments")
        _check_nodes(node, limits)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text) from None
    except (ValueError, TypeError, LookupError, ArithmeticError) as exc:
        # SafeConstructor lets a few plain errors escape on explicitly tagged nonsense
        # (!!int abc, !!bool maybe) and on integers longer than Python will convert.
        raise MalformedBodyError(
            "The body is not valid YAML: a value cannot be read ({problem})",
            {"problem": f"{type(exc).__name__}: {exc}"},
        ) from None
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------
# XML
# --------------------------------------------------------------------------------------

_XML_NAME: Final = re.compile(r"(?!(?i:xml))[A-Za-z_][A-Za-z0-9._-]*")
_XML_SPACE: Final = "{http://www.w3.org/XML/1998/namespace}space"
_XML_WHITESPACE: Final = " \t\r\n"
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


class _LimitedTreeBuilder(TreeBuilder):
    """A tree builder that stops at the first element breaking ``limits``.

    Conversion recurses once per element level, so depth must be refused while parsing;
    it also records where each element starts, for messages.
    """

    def __init__(self, limits: ParseLimits) -> None:
        super().__init__()
        self._limits = limits
        self._children = [0]
        self.positions: dict[Element, tuple[int, int]] = {}
        self.expat: Any = None

    def location(self) -> tuple[int, int]:
        return self.expat.CurrentLineNumber, self.expat.CurrentColumnNumber + 1

    def start(self, tag: Any, attrs: dict[str, str]) -> Element:
        line, column = self.location()
        # Scalars are elements too, so a document max_depth deep has one more level.
        if len(self._children) > self._limits.max_depth + 1:
            raise _too_deep(self._limits, "", f" (at line {line}, column {column})")
        self._children[-1] += 1
        if self._children[-1] > self._limits.max_list_length:
            raise MalformedBodyError(
                "An XML element has more than {limit} children (at line {line}, column "
                "{column}); the limit is {limit} (max_list_length)",
                {"limit": self._limits.max_list_length, "line": line, "column": column},
            )
        self._children.append(0)
        element = super().start(tag, attrs)
        self.positions[element] = (line, column)
        return element

    def end(self, tag: Any) -> Element:
        self._children.pop()
        return super().end(tag)


class _XmlReader:
    def __init__(self, positions: dict[Element, tuple[int, int]]) -> None:
        self._positions = positions

    def _error(self, element: Element, template: str, values: dict[str, object]) -> Exception:
        line, column = self._positions.get(element, (0, 0))
        return MalformedBodyError(
            "The body does not follow the XML mapping: "
            + template
            + " (at line {line}, column {column})",
            {"tag": _local(element.tag), "line": line, "column": column, **values},
        )

    def convert(self, element: Element, *, in_map: bool = False) -> Any:
        tag = _local(element.tag)
        kind: str | None = None
        preserve = False
        for name, value in element.attrib.items():
            if name == "kind":
                kind = value
            elif name == _XML_SPACE:
                preserve = value == "preserve"
            elif (name == "key" and in_map) or name.startswith("{"):
                continue
            else:
                raise self._error(
                    element,
                    "attribute '{name}' of <{tag}> carries no data; only 'kind' (and 'key' on "
                    "the <entry> elements of a map) may",
                    {"name": name},
                )
        children = list(element)
        if not children:
            return self._leaf(element, tag, kind, preserve=preserve)

        if (element.text or "").strip(_XML_WHITESPACE) or any(
            (child.tail or "").strip(_XML_WHITESPACE) for child in children
        ):
            raise self._error(element, "<{tag}> mixes text with child elements", {})

        if all(_local(c.tag) == "entry" and "key" in c.attrib for c in children):
            doc: dict[str, Any] = {} if kind is None else {"kind": kind}
            for child in children:
                key = child.attrib["key"]
                if key in doc:
                    raise self._error(child, "<{tag}> repeats the key '{key}'", {"key": key})
                doc[key] = self.convert(child, in_map=True)
            return doc

        if kind is None and (tag in ITEM_NAMES or all(_local(c.tag) == "item" for c in children)):
            return [self.convert(child) for child in children]

        doc = {} if kind is None else {"kind": kind}
        repeated: set[str] = set()
        for child in children:
            name = _local(child.tag)
            if name == "kind" and kind is not None:
                raise self._error(child, "<{tag}> repeats the 'kind' attribute as an element", {})
            value = self.convert(child)
            if name in repeated:
                doc[name].append(value)
            elif name in doc:
                # A hand-written repeated element is a list, the natural XML reading.
                doc[name] = [doc[name], value]
                repeated.add(name)
            else:
                doc[name] = value
        return doc

    def _leaf(self, element: Element, tag: str, kind: str | None, *, preserve: bool) -> Any:
        text = element.text or ""
        if kind is not None:
            if text.strip(_XML_WHITESPACE):
                raise self._error(element, "<{tag}> has a 'kind' attribute and text", {})
            return {"kind": kind}
        if preserve:
            return text
        text = text.strip(_XML_WHITESPACE)
        if text:
            return text
        if tag in ITEM_NAMES:
            return []
        if tag in MAP_KEYS:
            return {}
        return ""


def _parse_xml(text: str, limits: ParseLimits) -> Any:
    builder = _LimitedTreeBuilder(limits)
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    builder.expat = parser.parser
    try:
        # A str is parsed as UTF-8 whatever the XML declaration says, like the other formats.
        parser.feed(text)
        root = parser.close()
    except ParseError as exc:
        line, column = exc.position
        problem = re.sub(r": line \d+, column \d+$", "", str(exc))
        raise MalformedBodyError(
            "The body is not valid XML: {problem} at line {line}, column {column}",
            {"line": line, "column": column + 1, "problem": problem},
        ) from None
    except DefusedXmlException:
        line, column = builder.location()
        raise MalformedBodyError(
            "The body is refused: XML document type declarations (DTDs), entities and external "
            "references are not allowed (at line {line}, column {column})",
            {"line": line, "column": column},
        ) from None
    return _XmlReader(builder.positions).convert(root)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _xml_text(value: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", value).translate(_TEXT_ESCAPES)


def _xml_attribute(value: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", value).translate(_ATTRIBUTE_ESCAPES)


def _is_xml_name(key: object) -> bool:
    return isinstance(key, str) and _XML_NAME.fullmatch(key) is not None


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _emit(out: list[str], tag: str, value: Any, level: int, attributes: str = "") -> None:
    pad = "  " * level
    if isinstance(value, dict):
        items = [(k, v) for k, v in value.items() if v is not None]
        kind = value.get("kind")
        as_entries = (
            tag in MAP_KEYS
            or tag in ITEM_NAMES
            or not all(_is_xml_name(k) for k, _ in items)
            or (not isinstance(kind, str) and bool(items) and all(k == "item" for k, _ in items))
        )
        if as_entries:
            children = [("entry", v, f' key="{_xml_attribute(str(k))}"') for k, v in items]
        else:
            if isinstance(kind, str):
                attributes += f' kind="{_xml_attribute(kind)}"'
                items = [(k, v) for k, v in items if k != "kind"]
            children = [(k, v, "") for k, v in items]
        if not children:
            out.append(f"{pad}<{tag}{attributes}/>\n")
            return
        out.append(f"{pad}<{tag}{attributes}>\n")
        for name, child, child_attributes in children:
            _emit(out, name, child, level + 1, child_attributes)
        out.append(f"{pad}</{tag}>\n")
    elif isinstance(value, list):
        if not value:
            out.append(f"{pad}<{tag}{attributes}/>\n")
            return
        item = ITEM_NAMES.get(tag, "item")
        out.append(f"{pad}<{tag}{attributes}>\n")
        for child in value:
            _emit(out, item, child, level + 1)
        out.append(f"{pad}</{tag}>\n")
    elif value is None:
        out.append(f"{pad}<{tag}{attributes}/>\n")
    else:
        text = _scalar_text(value)
        if text != text.strip(_XML_WHITESPACE) or (
            not text and (tag in ITEM_NAMES or tag in MAP_KEYS)
        ):
            attributes += ' xml:space="preserve"'
        out.append(f"{pad}<{tag}{attributes}>{_xml_text(text)}</{tag}>\n")


def render_body(doc: Any, fmt: MediaFormat, *, root: str = "document") -> bytes:
    """``doc``, a JSON-like document, as UTF-8 bytes in ``fmt``.

    ``root`` names the XML root element and must be a plain XML name; the other formats
    ignore it.
    """
    if fmt is MediaFormat.JSON:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    if fmt is MediaFormat.YAML:
        text = yaml.dump(
            doc,
            Dumper=_NoAliasDumper,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
        return text.encode()
    if not _is_xml_name(root):
        raise ValueError(f"{root!r} is not a plain XML element name")
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _emit(out, root, doc, 0)
    return "".join(out).encode()
