"""YAML bodies: read with ``safe_load`` semantics, except that timestamps and dates stay the
strings written (documents stay JSON-like), with aliases, sizes and repeated keys checked on
the node graph before anything is constructed; written without anchors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import yaml

from execbroker.api.formats.limits import ParseLimits, line_column, quoted_key
from execbroker.exceptions import MalformedBodyError
from execbroker.model.quoting import shorten

try:
    # libyaml is several times faster, and caps nesting depth (at 1000) by itself.
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["parse_yaml", "render_yaml"]

# PyYAML quotes what it met (an alias name, a tag) in its problems; shortened this far.
_PROBLEM_LIMIT: Final = 200

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
    mappings: list[yaml.MappingNode] = []
    while pending:
        node = pending.pop()
        mark = node.start_mark
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
            mappings.append(node)
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
    _check_merges(mappings, limits)


def _is_merge_key(key: yaml.Node) -> bool:
    return isinstance(key, yaml.ScalarNode) and key.tag == _MERGE_TAG


def _merge_parts(node: yaml.MappingNode) -> tuple[int, list[yaml.MappingNode]]:
    """How many keys ``node`` writes itself, and the mappings its ``<<`` keys merge into it."""
    own = 0
    merged: list[yaml.MappingNode] = []
    for key, value in node.value:
        if not _is_merge_key(key):
            own += 1
        elif isinstance(value, yaml.MappingNode):
            merged.append(value)
        elif isinstance(value, yaml.SequenceNode):
            merged += [item for item in value.value if isinstance(item, yaml.MappingNode)]
    return own, merged


def _check_merges(mappings: list[yaml.MappingNode], limits: ParseLimits) -> None:
    """Refuse ``<<`` merges that would copy more than ``max_list_length`` keys in all, or
    nest deeper than ``max_depth``.

    PyYAML flattens a merge by copying the merged mapping's keys into the mapping that
    merges it, level by level: a chain of merges, each level naming the one below, costs the
    merged keys once per level, with one alias in all. Counted here on the node graph, it
    costs nothing.
    """
    sizes: dict[int, int] = {}  # keys a mapping holds once flattened
    depths: dict[int, int] = {}  # merges nested in it (0: it merges nothing)
    copied = 0
    for start in mappings:
        # (mapping, its parts once its merged mappings are counted, or None before)
        pending: list[tuple[yaml.MappingNode, tuple[int, list[yaml.MappingNode]] | None]]
        pending = [(start, None)]
        open_: set[int] = set()  # mappings whose merges are still being counted
        while pending:
            node, parts = pending.pop()
            if id(node) in sizes:
                continue
            mark = node.start_mark
            where = {"line": mark.line + 1, "column": mark.column + 1}
            if parts is None:
                if id(node) in open_:
                    # A mapping that merges itself (&a {<<: *a}, or through one below it).
                    raise MalformedBodyError(
                        "The YAML mapping at line {line}, column {column} merges itself "
                        "(<< refers to itself through an alias)",
                        where,
                    )
                open_.add(id(node))
                parts = _merge_parts(node)
                pending.append((node, parts))
                pending += [(source, None) for source in parts[1] if id(source) not in sizes]
                continue
            open_.discard(id(node))
            own, merged = parts
            brought = sum(sizes[id(source)] for source in merged)
            sizes[id(node)] = own + brought
            depths[id(node)] = 1 + max((depths[id(source)] for source in merged), default=-1)
            copied += brought
            if depths[id(node)] > limits.max_depth:
                raise MalformedBodyError(
                    "The YAML merge keys (<<) at line {line}, column {column} nest more than "
                    "{limit} merges deep (max_depth); write the keys out instead",
                    {**where, "limit": limits.max_depth},
                )
            if copied > limits.max_list_length:
                raise MalformedBodyError(
                    "The YAML merge keys (<<) up to line {line}, column {column} copy more than "
                    "{limit} keys in all (max_list_length); write the keys out instead",
                    {**where, "limit": limits.max_list_length},
                )


_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def _check_unique_keys(node: yaml.MappingNode) -> None:
    """Refuse a mapping that writes a key twice (keys a ``<<`` merge brings may be
    overridden: that is what merging is for).
    """
    keys: set[tuple[str, str]] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or _is_merge_key(key_node):
            continue
        identity = (key_node.tag, key_node.value)
        if identity in keys:
            mark = key_node.start_mark
            raise MalformedBodyError(
                "The body repeats the key {key} in one YAML mapping (again at line {line}, "
                "column {column}); write each key once",
                {
                    "key": quoted_key(key_node.value),
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
        problem = shorten(problem, _PROBLEM_LIMIT)
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            return MalformedBodyError(
                "The body is not valid YAML: {problem} at line {line}, column {column}",
                {"line": mark.line + 1, "column": mark.column + 1, "problem": problem},
            )
        return MalformedBodyError("The body is not valid YAML: {problem}", {"problem": problem})
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = line_column(text, exc.position)
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


def parse_yaml(text: str, limits: ParseLimits) -> Any:
    """The one YAML document in ``text``, as plain JSON types, within ``limits``.

    Timestamps stay the strings written. Alias use, sizes and repeated keys are checked on the
    node graph before anything is constructed, so a billion-laughs document costs nothing.
    """
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


def render_yaml(doc: Any) -> bytes:
    """``doc`` as UTF-8 YAML, block style, keys in their order, without anchors."""
    text = yaml.dump(
        doc,
        Dumper=_NoAliasDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
    )
    return text.encode()
