"""Values quoted in messages: the start of what was received, never its expansion."""

from __future__ import annotations

import time
from typing import Any

import pytest

from execbroker.model.quoting import brief, shorten


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -2.5, "plain", "it's", {"a": [1, "b"]}, [], {}, (1,), (1, 2), [[[]]]],
)
def test_short_values_are_quoted_as_repr_writes_them(value: Any) -> None:
    assert brief(value) == repr(value)


def test_long_values_are_cut_to_the_limit_with_an_ellipsis() -> None:
    value = {"locations": ["x" * 1000] * 3}
    assert brief(value) == repr(value)[:57] + "..."
    assert brief("y" * 1000, 20) == repr("y" * 1000)[:17] + "..."
    assert shorten("z" * 100, 10) == "zzzzzzz..."
    assert shorten("short", 10) == "short"


def test_an_alias_expansion_is_never_written_out() -> None:
    # What YAML aliases build from a 60 KB body: 10^5 references to one 60 000-character
    # string, 6 GB as repr() would write it.
    level: Any = "x" * 60_000
    for _ in range(5):
        level = [level] * 10
    started = time.perf_counter()
    quoted = brief(level)
    assert time.perf_counter() - started < 0.01
    assert quoted == "[[[[['" + "x" * 51 + "..."


def test_huge_integers_are_described_not_written() -> None:
    assert brief(10**4000) == "<an integer of 13288 bits>"
    assert brief(-(10**4000)) == "-<an integer of 13288 bits>"
    assert brief(2**63) == repr(2**63)


def test_a_value_that_contains_itself_is_quoted_in_part() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert brief(loop) == "[" * 57 + "..."
