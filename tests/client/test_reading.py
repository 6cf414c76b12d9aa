"""Reading the broker's advice from documents: why a session waits, what would fit."""

from __future__ import annotations

from typing import Any

from execbroker.client.reading import waits_for, would_fit
from execbroker.model.wire import ExecutionSession, MessageItem


def message_document(text: str, **values: str) -> dict[str, Any]:
    return {"level": "INFO", "template": text, "values": values, "message": text}


def waiting_session(start: str, *messages: dict[str, Any]) -> ExecutionSession:
    return ExecutionSession.model_validate(
        {
            "phase": "WAITING",
            "schedule": {"available": {"start": f"{start}/PT0S", "duration": "PT1H"}},
            "meta": {"messages": list(messages)},
        }
    )


def test_the_reason_to_wait_holds_only_while_it_speaks_of_the_session_start() -> None:
    why = message_document(
        "Waits for its start at 11:00", binding="cores", start="2031-01-01T11:00:00Z"
    )
    moved = message_document("Moved earlier from 11:00 to 10:30", to="2031-01-01T10:30:00Z")

    found = waits_for(waiting_session("2031-01-01T11:00:00Z", why))
    assert found is not None
    assert found.message == "Waits for its start at 11:00"
    assert waits_for(waiting_session("2031-01-01T10:30:00Z", why, moved)) is None, "moved since"
    assert waits_for(waiting_session("2031-01-01T11:00:00Z")) is None


def test_what_would_fit_is_the_messages_that_name_a_change() -> None:
    messages = [
        MessageItem.model_validate(message_document("/compute/cores/min: no window", path="/x")),
        MessageItem.model_validate(
            message_document("fits with 4 cores", change="cores", cores="4")
        ),
    ]
    assert [m.message for m in would_fit(messages)] == ["fits with 4 cores"]
    assert would_fit(None) == []
