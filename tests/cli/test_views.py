"""What status and watch show of a session, rendered without a broker."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from execbroker.cli.views import WatchView, session_status
from tests.client.test_reading import message_document, waiting_session


def test_status_and_watch_show_why_a_waiting_session_is_not_earlier() -> None:
    why = message_document(
        "Waits for its start at 2031-01-01T11:00:00Z: 2 of the 4 cores it needs are free",
        binding="cores",
        start="2031-01-01T11:00:00Z",
    )
    session = waiting_session("2031-01-01T11:00:00Z", why)
    console = Console(record=True, width=120)
    now = datetime(2031, 1, 1, 10, tzinfo=UTC)

    console.print(session_status(session, now))
    console.print(WatchView(session))

    shown = console.export_text()
    assert "waits for its start at 11:00:00Z (in 1h)" in shown
    assert shown.count("why not earlier: 2 of the 4 cores it needs are free") == 2
