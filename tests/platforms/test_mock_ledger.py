"""Brokers sharing the mock platform see each other's objects through its ledger.

Several brokers on one database drive one mock platform: each appends its actions to a
shared ledger file and reads the others' back. A broker that skipped another's line would
not know an object exists, and would prepare it a second time after a takeover (the
two-broker test counts that end to end). These tests put the other broker's line where
skipping it is easiest: just before this broker's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO
from uuid import UUID, uuid4

from execbroker.clock import SystemClock
from execbroker.config import MockSettings
from execbroker.platforms.mock import MockPlatform, read_ledger


def _prepared(component: UUID) -> dict[str, Any]:
    """A prepare line as another broker's mock platform writes it."""
    return {
        "action": "prepare",
        "time": "2030-01-01T10:00:00+00:00",
        "component": str(component),
        "session": str(uuid4()),
        "role": "storage",
        "prepare": 0,
        "run": None,
        "release": 60,  # still releasing for a minute: listed by objects() meanwhile
        "exit_code": 0,
        "fail_at": None,
    }


def _append(ledger: Path, entry: dict[str, Any]) -> None:
    with ledger.open("ab") as stream:
        stream.write((json.dumps(entry) + "\n").encode())


class _OtherBrokerFirst:
    """This broker's ledger file, where another broker appends a line just before each of
    this broker's own (between its catch-up and its write)."""

    def __init__(self, inner: BinaryIO, ledger: Path, lines: list[dict[str, Any]]) -> None:
        self._inner = inner
        self._ledger = ledger
        self._lines = lines

    def write(self, data: bytes) -> int:
        if self._lines:
            _append(self._ledger, self._lines.pop(0))
        return self._inner.write(data)

    def flush(self) -> None:
        self._inner.flush()

    def tell(self) -> int:
        return self._inner.tell()

    def close(self) -> None:
        self._inner.close()


async def _platform(ledger: Path) -> MockPlatform:
    platform = MockPlatform(ledger=ledger, clock=SystemClock(), timings=MockSettings())
    await platform.start()
    return platform


async def test_a_line_appended_between_catch_up_and_write_is_not_skipped(tmp_path: Path) -> None:
    ledger = tmp_path / "mock-ledger.jsonl"
    first, second, third = uuid4(), uuid4(), uuid4()
    _append(ledger, _prepared(first))
    platform = await _platform(ledger)
    assert await platform.objects() == {first}

    # Releasing `first` writes a line; another broker's prepare of `second` lands just
    # before it, after this broker last read the file.
    platform._ledger = _OtherBrokerFirst(  # type: ignore[assignment]
        platform._ledger,  # type: ignore[arg-type]
        ledger,
        [_prepared(second)],
    )
    await platform.release_orphan(first)
    assert second in await platform.objects()

    # And a line appended after this broker's own is read as well.
    _append(ledger, _prepared(third))
    assert {second, third} <= await platform.objects()
    await platform.stop()

    actions = [(entry["action"], entry["component"]) for entry in read_ledger(ledger)]
    assert actions == [
        ("prepare", str(first)),
        ("prepare", str(second)),
        ("release", str(first)),
        ("prepare", str(third)),
    ]


async def test_two_platforms_on_one_ledger_see_each_others_objects(tmp_path: Path) -> None:
    ledger = tmp_path / "mock-ledger.jsonl"
    one, other = await _platform(ledger), await _platform(ledger)
    first, second = uuid4(), uuid4()
    _append(ledger, _prepared(first))
    _append(ledger, _prepared(second))
    assert await one.objects() == {first, second}
    await one.release_orphan(first)  # one's own line, read back by the other
    await other.release_orphan(second)
    await other.release_orphan(first)  # already released by one: not ledgered again
    releases = [e["component"] for e in read_ledger(ledger) if e["action"] == "release"]
    assert releases == [str(first), str(second)]
    await one.stop()
    await other.stop()
