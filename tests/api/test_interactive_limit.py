"""An account's limit on interactive sessions is booked like a resource (issue 17, item 2).

Skaha lets one account have only ``maxInteractiveSessions`` notebooks at once; the mock
platform has the same limit when ``mock_max_interactive_sessions`` is set, so the calendar's
handling of it is tested here on both databases. The (N+1)-th notebook over a span gets a
later start, when the earlier ones end, or NO naming the limit: never an accepted session
that the platform would refuse. Containers (headless) do not count; in per-user mode
(``mock_accounts_per_owner``, as Skaha with OIDC callers) each owner is an account.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tests.support.users import auth
from tests.support.wire import example, phase_update, post

SLOT = "2030-01-01T10:00:00Z"
HOUR = "PT1H"
LIMIT_TWO = {"mock_max_interactive_sessions": 2}


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.split("/", maxsplit=1)[0].replace("Z", "+00:00"))


def _notebook(window: str = "PT3H") -> dict[str, Any]:
    """A one-core notebook for an hour, starting at 10:00 or up to ``window`` later."""
    document: dict[str, Any] = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": 1, "max": 1}
    document["compute"]["memory"] = {"min": 1, "max": 1}
    document["schedule"] = {"requested": {"duration": HOUR, "start": f"{SLOT}/{window}"}}
    return document


def _container() -> dict[str, Any]:
    document = _notebook("PT0S")
    document["executable"] = example("direct-request.json")["executable"]
    return document


async def _book(
    client: httpx.AsyncClient, document: dict[str, Any], user: str = "alice"
) -> dict[str, Any]:
    """Ask for offers and accept the first: the accepted session."""
    offer_set = (await post(client, "/requests", document, headers=auth(user))).json()
    assert offer_set["result"] == "YES", offer_set["meta"].get("messages")
    url = offer_set["offers"][0]["meta"]["url"]
    accepted = await post(client, url, phase_update("ACCEPTED"), headers=auth(user))
    assert accepted.status_code == 200, accepted.text
    session: dict[str, Any] = accepted.json()
    return session


def _start(session: dict[str, Any]) -> datetime:
    return _when(session["schedule"]["available"]["start"])


def _errors(offer_set: dict[str, Any]) -> list[str]:
    return [m["message"] for m in offer_set["meta"]["messages"] if m["level"] == "ERROR"]


async def test_the_notebook_past_the_limit_starts_when_an_earlier_one_ends(broker: Any) -> None:
    async with broker(**LIMIT_TWO) as client:
        first = await _book(client, _notebook())
        second = await _book(client, _notebook())
        third = await _book(client, _notebook())

    assert _start(first) == _start(second) == _when(SLOT), "two fit at once"
    first_released = _when(first["schedule"]["releasing"]["start"])
    assert _start(third) >= first_released, "the third waits until one of them has ended"


async def test_no_names_the_limit_when_no_start_in_the_window_is_free_of_it(
    broker: Any,
) -> None:
    async with broker(**LIMIT_TWO) as client:
        await _book(client, _notebook())
        await _book(client, _notebook())
        refused = (await post(client, "/requests", _notebook("PT30M"))).json()

    assert refused["result"] == "NO"
    assert _errors(refused) == [
        "/executable: the mock platform allows at most 2 interactive sessions per account at "
        "once; 2 are booked over every window of PT1H starting between "
        "2030-01-01T10:00:00Z and 2030-01-01T10:30:00Z"
    ]


async def test_unaccepted_offers_hold_the_limit_until_they_are_rejected(broker: Any) -> None:
    async with broker(mock_max_interactive_sessions=1) as client:
        held = (await post(client, "/requests", _notebook("PT0S"))).json()
        assert held["result"] == "YES"
        assert (await post(client, "/requests", _notebook("PT0S"))).json()["result"] == "NO"
        for offer in held["offers"]:
            await post(client, offer["meta"]["url"], phase_update("REJECTED"))
        again = (await post(client, "/requests", _notebook("PT0S"))).json()

    assert again["result"] == "YES", _errors(again)


async def test_containers_are_not_counted(broker: Any) -> None:
    async with broker(mock_max_interactive_sessions=1) as client:
        notebook = await _book(client, _notebook("PT0S"))
        container = await _book(client, _container())
        another = await _book(client, _container())

    assert _start(notebook) == _start(container) == _start(another) == _when(SLOT)


async def test_one_shared_account_counts_every_owner(broker: Any) -> None:
    async with broker(**LIMIT_TWO) as client:
        await _book(client, _notebook(), "alice")
        await _book(client, _notebook(), "alice")
        bobs = (await post(client, "/requests", _notebook("PT0S"), headers=auth("bob"))).json()

    assert bobs["result"] == "NO", "alice's two notebooks use the account bob shares"
    assert "at most 2 interactive sessions per account" in _errors(bobs)[0]


async def test_in_per_user_mode_each_owner_has_the_limit_of_their_own(broker: Any) -> None:
    async with broker(**LIMIT_TWO, mock_accounts_per_owner=True) as client:
        alices = [await _book(client, _notebook(), "alice") for _ in range(3)]
        bobs = [await _book(client, _notebook(), "bob") for _ in range(2)]

    assert [_start(s) for s in bobs] == [_when(SLOT)] * 2, "alice's do not block bob's"
    assert _start(alices[2]) > _when(SLOT), "alice's third waits for one of her own"


async def test_an_interactive_session_is_extended_only_as_far_as_the_limit_allows(
    broker: Any,
) -> None:
    async with broker(mock_max_interactive_sessions=1) as client:
        early = await _book(client, _notebook("PT0S"))
        later = await _book(client, _notebook("PT5H"))
        free_run = await _book(client, _container())
        extend = {
            "kind": "uri:integer-delta-update",
            "path": "/schedule/available/duration",
            "units": "hours",
        }
        blocked = await post(client, early["meta"]["url"], {**extend, "delta": 1})
        container = await post(client, free_run["meta"]["url"], {**extend, "delta": 1})

    assert _start(later) >= _when(early["schedule"]["releasing"]["start"])
    assert blocked.status_code == 409, "the next notebook holds the account's only session"
    assert "can be extended by at most" in blocked.json()["messages"][0]["message"]
    assert container.status_code == 200, container.text
