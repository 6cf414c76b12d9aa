"""Hypothesis strategies for values at and past the edges of what the broker reads.

Each one aims where a 500 was found before (issue 14): integers past int64 and negative
sizes, instants in years 1 and 9999 with every offset, durations too long for a calendar,
strings holding NUL, and documents that write a key twice.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "DURATIONS",
    "EXTREME_INTEGERS",
    "EXTREME_NUMBERS",
    "INSTANTS",
    "INTERVALS",
    "NUL_TEXT",
    "with_duplicate_key",
]

_INTEGER_EDGES = [
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    10**22,
    10**30,
    -(10**30),
    10**300,
    10**4000,
    -1,
    0,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**64,
]
EXTREME_INTEGERS = st.one_of(st.sampled_from(_INTEGER_EDGES), st.integers())
"""Mostly integers at the edges of int32, int64, float and Python's printing, sometimes any."""

EXTREME_NUMBERS = st.one_of(
    EXTREME_INTEGERS, st.sampled_from([1e308, -1e308, 5e-324, -0.0, 1e22, -1e22])
)

_MOMENTS = st.sampled_from(
    [
        "9999-12-31T23:59:59",
        "0001-01-01T00:00:00",
        "9999-12-30T00:00:00",
        "0001-01-02T23:00:00",
        "2030-01-01T00:00:00",
    ]
)
_OFFSETS = st.sampled_from(["-14:00", "+14:00", "Z", "", "-01:00", "+01:00", "+00:00"])

INSTANTS = st.tuples(_MOMENTS, _OFFSETS).map("".join)
"""Date-times at the first and last days of years 1 and 9999 (and an ordinary one), with
offsets as far as -14:00 and +14:00."""

DURATIONS = st.sampled_from(
    [
        "PT1H",
        "P1000000D",
        "P1D",
        "P7D",
        "P99999999D",
        "PT999999999999H",
        "P9999Y",
        "P1Y",
        "-P1D",
        "P0D",
        "PT0.000001S",
        "P1DT",
        "PT1e5S",
    ]
)

INTERVALS = st.one_of(
    st.tuples(INSTANTS, DURATIONS).map("/".join),
    st.tuples(DURATIONS, INSTANTS).map("/".join),
    st.tuples(INSTANTS, INSTANTS).map("/".join),
)

NUL_TEXT = st.tuples(st.text(max_size=5), st.text(max_size=5)).map(
    lambda parts: parts[0] + "\x00" + parts[1]
)
"""Text with a NUL somewhere in it."""


def with_duplicate_key(document: dict[str, Any], key: str) -> bytes:
    """``document`` as JSON, with its ``key`` written a second time (value ``null`` first).

    ``key`` must be a key of ``document``; the copy comes first, so that the last one --
    which a lax parser keeps -- is the real value.
    """
    body = json.dumps(document)
    member = json.dumps(key) + ": null, "
    return ("{" + member + body[1:]).encode()
