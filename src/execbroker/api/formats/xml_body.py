"""XML bodies, by one mapping between JSON-like documents and elements.

JSON and YAML carry documents as they are. XML carries them by these rules, and
:func:`parse_xml` inverts :func:`render_xml` for every document that fits them (see
*Documents that do not fit* below).

Rendering (document -> XML), for a value under key ``K`` (the root element is named by
``render_xml(..., root=...)``, ``"document"`` by default):

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

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from execbroker.api.formats.limits import ParseLimits, too_deep
from execbroker.exceptions import MalformedBodyError

__all__ = ["ITEM_NAMES", "MAP_KEYS", "parse_xml", "render_xml"]

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
            raise too_deep(self._limits, "", f" (at line {line}, column {column})")
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


def parse_xml(text: str, limits: ParseLimits) -> Any:
    """The document in the XML ``text``, as the JSON parser would give it, within ``limits``.

    DTDs, entities and external references are refused; element nesting and sizes are checked as
    the tree is built.
    """
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


def render_xml(doc: Any, *, root: str = "document") -> bytes:
    """``doc`` as UTF-8 XML under the element ``root``, which must be a plain XML name."""
    if not _is_xml_name(root):
        raise ValueError(f"{root!r} is not a plain XML element name")
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _emit(out, root, doc, 0)
    return "".join(out).encode()
