"""One slow platform call holds up nobody else (FAULT-PROBES R2).

The engine used to advance a batch of sessions together and commit when the slowest
returned: a 45 s Skaha create kept another user's run going 113 s past its offered end,
and the messages of the slow pass were stamped with when it began. Now a pass commits the
steps that finished within its deadline and lets the slow one commit on its own.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.engine import FAST, container, until_ended
from tests.support.wire import post

STALL = 6.0  # seconds the platform takes to create the slow session's compute


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _message(document: dict[str, Any], text: str) -> dict[str, Any]:
    return next(m for m in document["meta"]["messages"] if text in m["message"])


async def test_a_stalled_create_does_not_hold_up_another_users_run(broker: Any) -> None:
    async with broker(**{**FAST, "budget_slack": 10}, engine_step_deadline=0.3) as client:
        began = datetime.now(UTC)
        slow = await post(client, "/direct", container({"MOCK_STALL": f"compute:{STALL}"}))
        quick = await post(
            client, "/direct", container({"MOCK_RUN_SECONDS": "600"}, duration="PT2S")
        )
        assert slow.status_code == quick.status_code == 303
        clock = time.monotonic()
        ended = await until_ended(client, quick.headers["location"], seconds=30)
        took = time.monotonic() - clock

        # The quick run ended on time, while the other's create was still stuck.
        assert ended["phase"] == "COMPLETED"
        planned = _when(ended["schedule"]["available"]["start"].split("/")[0]) + timedelta(
            seconds=2
        )
        ending = _message(ended, "The offered time ended")
        lateness = (_when(ending["time"]) - planned).total_seconds()
        assert lateness < 1.5, f"the run ended {lateness:.1f} s after its offered end"
        stuck = (await client.get(slow.headers["location"])).json()
        assert stuck["compute"]["phase"] in ("WAITING", "PREPARING"), stuck["compute"]["phase"]
        assert took < STALL + 2, f"followed for {took:.1f} s"

        # The slow step committed on its own once the platform answered, stamped then.
        url = slow.headers["location"]
        session = (await client.get(url)).json()
        while session["phase"] in ("ACCEPTED", "WAITING", "PREPARING"):
            await asyncio.sleep(0.1)
            session = (await client.get(url)).json()
        assert session["phase"] in ("AVAILABLE", "RUNNING", "RELEASING", "COMPLETED")
        preparing = _message(session["compute"], "Preparing")
        assert (_when(preparing["time"]) - began).total_seconds() >= STALL - 0.5
