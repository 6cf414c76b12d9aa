"""Optimistic bookings on PostgreSQL: planned without the pool's lock, settled under it.

Each test runs a broker in this process and a second, real broker process on the same
database, and has the second one book at the worst moment: after this broker's booking has
planned (and written its rows, uncommitted), just before it takes the lock to settle. The
settle must notice, and the booking must be decided again under the lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from execbroker.storage.booking import Booking
from tests.support.live import LiveBroker
from tests.support.users import auth, write_tokens_file
from tests.support.wire import example, post

# A broker process under load, on PostgreSQL only.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

POOL = {"capacity_cores": 8, "capacity_memory_gib": 32, "capacity_storage_gib": 100}


def _request(cores: int) -> dict[str, Any]:
    document: dict[str, Any] = example("direct-request.json")
    document["compute"] = {"cores": {"min": cores, "max": cores}, "memory": {"min": 2, "max": 2}}
    start = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["schedule"] = {"requested": {"start": f"{start}/PT10M", "duration": "PT30M"}}
    return document


@contextmanager
def _second_broker(tmp_path: Path, database_url: str, **env: str) -> Iterator[LiveBroker]:
    """A second broker process on this test's database, with the same pool and users."""
    tokens = write_tokens_file(tmp_path / "shared-tokens.yaml")
    environment = {
        "EXECBROKER_DATABASE_URL": database_url,
        "EXECBROKER_TOKENS_FILE": str(tokens),
        "EXECBROKER_DEFAULT_OWNER": "alice",
        "EXECBROKER_LOG_LEVEL": "WARNING",
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "1",
        **{f"EXECBROKER_{key.upper()}": str(value) for key, value in POOL.items()},
        **env,
    }
    data_dir = tmp_path / "other"
    data_dir.mkdir()
    with LiveBroker(data_dir=data_dir, env=environment) as started:
        yield started


@pytest.fixture
def other_broker(tmp_path: Path, database_url: str) -> Iterator[LiveBroker]:
    """A second broker process on this test's database, with the same pool and users."""
    with _second_broker(tmp_path, database_url) as started:
        yield started


def _interleave(
    monkeypatch: pytest.MonkeyPatch, other: Callable[[], httpx.Response]
) -> list[httpx.Response]:
    """Have ``other`` run once, committed, after this process's first booking planned and
    before it settles."""
    real_settlement = Booking.settlement
    answers: list[httpx.Response] = []

    def settlement(self: Booking) -> Any:
        if not answers:
            answers.append(other())
        return real_settlement(self)

    monkeypatch.setattr(Booking, "settlement", settlement)
    return answers


def _relocked(metrics: str) -> float:
    found = re.search(r'^execbroker_bookings_total\{path="relocked"\} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_capacity_booked_by_another_broker_meanwhile_is_not_booked_again(
    broker: Any, other_broker: LiveBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with other_broker.client() as other:
        theirs = _interleave(monkeypatch, lambda: other.post("/requests", json=_request(6)))
        async with broker(**POOL) as client:
            before = _relocked((await client.get("/metrics")).text)
            answer = await post(client, "/requests", _request(6))
            after = _relocked((await client.get("/metrics")).text)
            listed = (await client.get("/offersets")).json()["offersets"]

    # Both planned against an empty pool; only the one settled first may keep its offers.
    assert theirs[0].json()["result"] == "YES"
    # The first attempt left nothing behind: one offer set each.
    assert len(listed) == 2
    mine = answer.json()
    assert mine["result"] == "NO"
    # The reason, then what would fit (planning/advice.py).
    assert "at most 2 free" in mine["meta"]["messages"][0]["message"]
    assert after == before + 1


async def test_the_active_sessions_quota_counts_sessions_started_meanwhile(
    broker: Any, other_broker: LiveBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with other_broker.client() as other:
        theirs = _interleave(monkeypatch, lambda: other.post("/direct", json=_request(1)))
        async with broker(quota_active_sessions=1, **POOL) as client:
            answer = await post(client, "/direct", _request(1))
            listed = (await client.get("/sessions")).json()

    assert theirs[0].status_code == 303
    assert answer.status_code == 429
    assert "1 active sessions" in answer.json()["messages"][0]["message"]
    assert len(listed) == 1, "only the session the other broker started exists"


async def test_an_uncontested_booking_is_settled_without_replanning(
    broker: Any, other_broker: LiveBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with other_broker.client() as other:
        theirs = _interleave(monkeypatch, lambda: other.post("/requests", json=_request(2)))
        async with broker(**POOL) as client:
            before = _relocked((await client.get("/metrics")).text)
            answer = await post(client, "/requests", _request(2), headers=auth("bob"))
            after = _relocked((await client.get("/metrics")).text)

    # 2 + 2 of 8 cores: the other broker's booking leaves room, so the plan stands.
    assert theirs[0].json()["result"] == "YES"
    assert answer.json()["result"] == "YES"
    assert after == before


def _notebook() -> dict[str, Any]:
    """A one-core notebook for an hour in a fixed slot: nothing but the account limit
    stands in its way.
    """
    document: dict[str, Any] = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": 1, "max": 1}
    document["compute"]["memory"] = {"min": 1, "max": 1}
    document["schedule"] = {"requested": {"start": "2031-01-01T10:00:00Z/PT0S", "duration": "PT1H"}}
    return document


@pytest.mark.parametrize("per_owner", [False, True], ids=["one-account", "per-owner"])
async def test_an_interactive_session_booked_by_another_broker_meanwhile_counts(
    broker: Any,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    per_owner: bool,
) -> None:
    limit = {"mock_max_interactive_sessions": 1, "mock_accounts_per_owner": per_owner}
    env = {f"EXECBROKER_{key.upper()}": str(value).lower() for key, value in limit.items()}
    with (
        _second_broker(tmp_path, database_url, **env) as other_broker,
        other_broker.client() as other,
    ):
        theirs = _interleave(monkeypatch, lambda: other.post("/requests", json=_notebook()))
        async with broker(**POOL, **limit) as client:
            before = _relocked((await client.get("/metrics")).text)
            answer = await post(client, "/requests", _notebook(), headers=auth("bob"))
            after = _relocked((await client.get("/metrics")).text)

    # alice's notebook, booked by the other broker while bob's was being planned.
    assert theirs[0].json()["result"] == "YES"
    mine = answer.json()
    if per_owner:
        assert mine["result"] == "YES", "alice's notebook does not count against bob's account"
        assert after == before, "and so the plan stands"
    else:
        assert mine["result"] == "NO", "the account's only interactive session is alice's now"
        assert (
            "allows at most 1 interactive sessions per account"
            in (mine["meta"]["messages"][0]["message"])
        )
        assert after == before + 1
