"""Request and response bodies as JSON, YAML or XML, and which of the three to use.

Everything here is a pure function of bytes and plain JSON-like documents (``dict`` with
string keys, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``), so the HTTP layer
only has to pick the format (:func:`~execbroker.api.formats.negotiation.format_for_content_type`,
:func:`~execbroker.api.formats.negotiation.format_for_accept`)
and call :func:`parse_body` or :func:`render_body`.

Bodies are untrusted: :func:`parse_body` raises only :class:`MalformedBodyError` (400) or
:class:`BodyTooLargeError` (413), and bounds the work a body can cause with
:class:`ParseLimits`. YAML is read with ``safe_load`` semantics except that timestamps and
dates stay the strings that were written, so every format yields JSON-like documents.

One module per concern: :mod:`~execbroker.api.formats.negotiation` (which format),
:mod:`~execbroker.api.formats.limits` (what a body may cost, and the checks all formats
share), and one per format: :mod:`~execbroker.api.formats.json_body`,
:mod:`~execbroker.api.formats.yaml_body` and :mod:`~execbroker.api.formats.xml_body` (which
also states the XML mapping). This module picks the format's parser or writer.
"""

from __future__ import annotations

from typing import Any

from execbroker.api.formats.json_body import parse_json, render_json
from execbroker.api.formats.limits import (
    DEFAULT_LIMITS,
    DocumentCheck,
    ParseLimits,
    decode,
    too_deep,
)
from execbroker.api.formats.negotiation import MediaFormat
from execbroker.api.formats.xml_body import parse_xml, render_xml
from execbroker.api.formats.yaml_body import parse_yaml, render_yaml

__all__ = ["parse_body", "render_body"]


def parse_body(raw: bytes, fmt: MediaFormat, limits: ParseLimits = DEFAULT_LIMITS) -> Any:
    """The JSON-like document in ``raw``, read as ``fmt``.

    Raises :class:`BodyTooLargeError` for a body over ``limits.max_bytes`` and
    :class:`MalformedBodyError`, naming the problem and where possible its line and
    column, for anything else wrong; never any other exception. The top level may be any
    value; callers check that it is an object.
    """
    text = decode(raw, fmt, limits)
    try:
        if fmt is MediaFormat.JSON:
            doc = parse_json(text, limits)
        elif fmt is MediaFormat.YAML:
            doc = parse_yaml(text, limits)
        else:
            doc = parse_xml(text, limits)
    except RecursionError:
        # Limits keep parsers far from the recursion limit; this is the last line of defence.
        raise too_deep(limits, "$", " somewhere") from None
    DocumentCheck(limits).run(doc)
    return doc


def render_body(doc: Any, fmt: MediaFormat, *, root: str = "document") -> bytes:
    """``doc``, a JSON-like document, as UTF-8 bytes in ``fmt``.

    ``root`` names the XML root element and must be a plain XML name; the other formats
    ignore it.
    """
    if fmt is MediaFormat.JSON:
        return render_json(doc)
    if fmt is MediaFormat.YAML:
        return render_yaml(doc)
    return render_xml(doc, root=root)
