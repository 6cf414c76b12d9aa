"""GET /metrics: what an operator's Prometheus sees change as sessions come and go."""

from __future__ import annotations

import re

import httpx

from tests.conftest import BrokerClient
from tests.support.engine import FAST, container, run_to_end
from tests.support.wire import notebook_request, phase_update, post, request_offers


def _value(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _scrape(client: httpx.AsyncClient) -> str:
    answer = await client.get("/metrics", headers={"Authorization": ""})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


async def test_metrics_follow_offers_sessions_and_platform_calls(broker: BrokerClient) -> None:
    async with broker(**FAST) as client:
        before = await _scrape(client)
        offered = await request_offers(client, notebook_request())
        made = len(offered["offers"])
        await post(client, offered["offers"][0]["meta"]["url"], phase_update("ACCEPTED"))
        second = await request_offers(client, notebook_request())
        await post(client, second["offers"][0]["meta"]["url"], phase_update("REJECTED"))
        ended = await run_to_end(client, container())
        assert ended["phase"] == "COMPLETED"
        after = await _scrape(client)

    def grew(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert grew("execbroker_offers_total", outcome="made") == made + len(second["offers"])
    assert grew("execbroker_offers_total", outcome="accepted") == 1
    assert grew("execbroker_offers_total", outcome="rejected") == 1
    assert grew("execbroker_offers_total", outcome="direct") == 1
    assert grew("execbroker_offer_sets_total", result="YES") == 2
    # Sessions by phase come from the database: this broker's own records.
    assert _value(after, "execbroker_sessions", phase="COMPLETED") == 1
    assert _value(after, "execbroker_sessions", phase="REJECTED") >= 1
    assert _value(after, "execbroker_sessions", phase="OFFERED") >= 1
    # The engine's steps and the platform calls were counted and timed.
    assert grew("execbroker_step_lateness_seconds_count") >= 4
    assert grew("execbroker_step_duration_seconds_count") >= 4
    prepared = grew("execbroker_platform_calls_total", platform="mock", endpoint="prepare compute")
    assert prepared >= 1
    released = grew("execbroker_platform_calls_total", platform="mock", endpoint="release data")
    assert released >= 1
