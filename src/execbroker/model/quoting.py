"""Values quoted in messages: a bounded prefix of what was received, never an expansion.

A request document can be small on the wire and enormous in memory (YAML aliases name the
same long string thousands of times), so a message must not build ``repr()`` of a value
and then cut it: :func:`brief` writes out only as much of the value as it will show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = ["BRIEF_LIMIT", "brief", "shorten"]

BRIEF_LIMIT: Final = 60
"""How many characters of a value a message shows by default."""

_ELLIPSIS: Final = "..."


def shorten(text: str, limit: int = BRIEF_LIMIT) -> str:
    """``text``, or its first ``limit - 3`` characters and ``...`` when it is longer."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(_ELLIPSIS))] + _ELLIPSIS


def brief(value: object, limit: int = BRIEF_LIMIT) -> str:
    """``repr(value)`` when it fits in ``limit`` characters, else its start and ``...``.

    The pieces of the representation are produced lazily and the walk stops as soon as
    ``limit`` characters are exceeded, so the time and memory it takes do not depend on the
    size of ``value``, however many aliases and long strings it is made of.
    """
    written: list[str] = []
    size = 0
    for piece in _pieces(value, limit + 1):
        written.append(piece)
        size += len(piece)
        if size > limit:
            break
    return shorten("".join(written), limit)


def _pieces(value: object, budget: int) -> Iterator[str]:
    """The representation of ``value`` piece by piece (``budget`` caps a single piece)."""
    if isinstance(value, str):
        # Cutting first keeps a long string from being copied; the cut drops the quote.
        yield repr(value) if len(value) <= budget else repr(value[:budget])
    elif isinstance(value, dict):
        yield "{"
        for position, (key, item) in enumerate(value.items()):
            if position:
                yield ", "
            yield from _pieces(key, budget)
            yield ": "
            yield from _pieces(item, budget)
        yield "}"
    elif isinstance(value, list | tuple):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        yield opening
        for position, item in enumerate(value):
            if position:
                yield ", "
            yield from _pieces(item, budget)
        if isinstance(value, tuple) and len(value) == 1:
            yield ","
        yield closing
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        # Thousands of digits take quadratic time to write out; the sign and size suffice.
        yield f"{'-' if value < 0 else ''}<an integer of {value.bit_length()} bits>"
    else:
        yield repr(value)[: budget + 1]
