"""The Python client against a real broker over loopback: sync and async, end to end."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from execbroker.client import (
    AsyncBrokerClient,
    BrokerClient,
    BrokerUnreachableError,
    ConflictError,
    ExecutionRequest,
    NoOffersError,
    NotFoundError,
    SessionPhase,
    UnauthorizedError,
    UnprocessableError,
    WaitTimeoutError,
    best_offer,
    exit_code,
    summarise_offers,
)
from execbroker.client.offers import available_window
from execbroker.model.wire import DockerContainer
from tests.client.broker import RunningBroker, request_file, run_request
from tests.support.live import free_port


@pytest.fixture
def broker(client_broker: RunningBroker) -> BrokerClient:
    return BrokerClient(client_broker.url, client_broker.token)


def test_request_accept_and_wait_until_completed(broker: BrokerClient, tmp_path: Path) -> None:
    offers = broker.request_offers(request_file(tmp_path, "run", MOCK_RUN_SECONDS="0.3"))
    summaries = summarise_offers(offers)
    assert len(summaries) >= 2
    assert all(s.phase is SessionPhase.OFFERED and s.expires is not None for s in summaries)
    assert {s.cores for s in summaries} >= {1}
    best = best_offer(offers)
    # Best is the earliest start, and at that start the most cores.
    earliest = min(s.start for s in summaries if s.start)
    assert best.start == earliest
    assert best.cores == max(s.cores or 0 for s in summaries if s.start == earliest)

    accepted = broker.accept(best)
    assert accepted.phase is SessionPhase.ACCEPTED
    ended = broker.wait(accepted, timeout=30)
    assert ended.phase is SessionPhase.COMPLETED
    assert exit_code(ended) == 0
    # Its siblings were rejected when it was accepted.
    assert offers.meta is not None
    assert offers.meta.uuid is not None
    siblings = broker.offer_set(offers.meta.uuid).offers
    others = {o.phase for o in siblings if o.meta and o.meta.uuid != best.uuid}
    assert others == {SessionPhase.REJECTED}


async def test_async_client_from_a_typed_model(client_broker: RunningBroker) -> None:
    request = ExecutionRequest.model_validate(run_request(MOCK_RUN_SECONDS="0.5"))
    async with AsyncBrokerClient(client_broker.url, client_broker.token) as broker:
        offers = await broker.request_offers(request)
        session = await broker.accept(best_offer(offers))
        running = await broker.wait(session, SessionPhase.RUNNING, timeout=30)
        # RUNNING, or already past it: a wait ends when its phase is reached or passed.
        assert running.phase in {
            SessionPhase.RUNNING,
            SessionPhase.RELEASING,
            SessionPhase.COMPLETED,
        }
        ended = await broker.wait(session, timeout=30)
        assert ended.phase is SessionPhase.COMPLETED


def test_cancel_a_running_session(broker: BrokerClient) -> None:
    session = broker.accept(best_offer(broker.request_offers(run_request(MOCK_RUN_SECONDS="60"))))
    assert broker.wait(session, "RUNNING", timeout=30).phase is SessionPhase.RUNNING
    broker.cancel(session)
    assert broker.wait(session, timeout=30).phase is SessionPhase.CANCELLED


async def test_extend_lengthens_the_available_time(client_broker: RunningBroker) -> None:
    async with AsyncBrokerClient(client_broker.url, client_broker.token) as broker:
        offers = await broker.request_offers(run_request(MOCK_RUN_SECONDS="60"))
        session = await broker.accept(best_offer(offers))
        _, before = available_window(session.schedule)
        extended = await broker.extend(session, 90)
        _, after = available_window(extended.schedule)
        assert before is not None
        assert after == before + timedelta(seconds=90)
        await broker.cancel(session)
        assert (await broker.wait(session, timeout=30)).phase is SessionPhase.CANCELLED


def test_events_follow_the_session_to_its_end(broker: BrokerClient) -> None:
    session = broker.accept(best_offer(broker.request_offers(run_request(MOCK_RUN_SECONDS="0.3"))))
    events = list(broker.events(session))
    phases = [event.phase for event in events]
    assert phases[-1] is SessionPhase.COMPLETED
    assert SessionPhase.RUNNING in phases
    assert all(event.session == session.meta.uuid for event in events)  # type: ignore[union-attr]
    roles = {component.role for component in events[-1].components}
    assert roles >= {"executable", "compute", "storage"}
    assert all(c.phase.value == "COMPLETED" for c in events[-1].components)


async def test_async_events(client_broker: RunningBroker) -> None:
    async with AsyncBrokerClient(client_broker.url, client_broker.token) as broker:
        offers = await broker.request_offers(run_request(MOCK_RUN_SECONDS="0.3"))
        session = await broker.accept(best_offer(offers))
        phases = [event.phase async for event in broker.events(session)]
    assert phases[-1] is SessionPhase.COMPLETED
    assert SessionPhase.RUNNING in phases


def test_listings_filter_by_phase(broker: BrokerClient) -> None:
    failing = broker.accept(
        best_offer(broker.request_offers(run_request(MOCK_RUN_SECONDS="0.2", MOCK_EXIT_CODE="3")))
    )
    assert broker.wait(failing, timeout=30).phase is SessionPhase.FAILED
    failed = broker.sessions(phase="failed")
    assert failing.meta.uuid in {s.meta.uuid for s in failed if s.meta}  # type: ignore[union-attr]
    assert {s.phase for s in failed} == {SessionPhase.FAILED}
    both = broker.sessions(phase=[SessionPhase.FAILED, SessionPhase.COMPLETED], last=500)
    assert {s.phase for s in both} <= {SessionPhase.FAILED, SessionPhase.COMPLETED}
    assert len(broker.offer_sets(last=1)) == 1
    assert exit_code(broker.session(failing)) == 3


def test_typed_errors_carry_the_brokers_messages(
    broker: BrokerClient, client_broker: RunningBroker
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(NotFoundError) as not_found:
        broker.session(missing)
    assert not_found.value.status == 404
    assert not_found.value.error == "not_found"
    assert missing in not_found.value.messages[0].message  # type: ignore[operator]

    offers = broker.request_offers(run_request())
    offer = best_offer(offers)
    broker.reject(offer)
    with pytest.raises(ConflictError) as conflict:
        broker.accept(offer)
    assert conflict.value.status == 409
    assert "REJECTED" in str(conflict.value)
    assert conflict.value.messages[0].template  # the Message Templates model, all filled

    with pytest.raises(UnprocessableError) as malformed:
        broker.update(offer, {"kind": "uri:no-such-update", "path": "/phase", "value": "X"})
    assert malformed.value.status == 422
    assert "uri:no-such-update" in str(malformed.value)

    with (
        BrokerClient(client_broker.url, "not-a-token-anyone-has") as stranger,
        pytest.raises(UnauthorizedError) as unauthorized,
    ):
        stranger.sessions()
    assert unauthorized.value.status == 401

    with pytest.raises(NoOffersError) as refused:
        broker.request_offers({"compute": {"cores": {"min": 1}}})
    assert any("/executable" in (m.message or "") for m in refused.value.messages)


def test_wait_gives_up_after_its_timeout(broker: BrokerClient) -> None:
    offer = best_offer(broker.request_offers(run_request()))
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as timed_out:
        broker.wait(offer, SessionPhase.RUNNING, timeout=0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert timed_out.value.session.phase is SessionPhase.OFFERED
    broker.reject(offer)


def test_an_unreachable_broker() -> None:
    with (
        BrokerClient(f"http://127.0.0.1:{free_port()}", "t" * 20) as nowhere,
        pytest.raises(BrokerUnreachableError) as failure,
    ):
        nowhere.sessions()
    assert "cannot reach the broker" in str(failure.value)


def test_request_file_must_be_a_request(broker: BrokerClient, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold one execution request"):
        broker.request_offers(path)


def test_requests_go_out_as_json_whatever_yaml_holds(broker: BrokerClient, tmp_path: Path) -> None:
    """YAML reads an unquoted date as a date; it is sent as the text it was written as."""
    path = request_file(tmp_path, "dated")
    text = path.read_text().replace("    OUTPUT_DIR:", "    RUN_DATE: 2030-01-02\n    OUTPUT_DIR:")
    path.write_text(text, encoding="utf-8")
    offers = broker.request_offers(path)
    executable = offers.offers[0].executable
    assert executable is not None
    assert isinstance(executable, DockerContainer)
    assert executable.environment is not None
    environment = executable.environment
    assert environment["RUN_DATE"] == "2030-01-02"
    broker.reject(best_offer(offers))


def test_client_sends_its_token_only_to_its_own_broker() -> None:
    """A 303 whose Location names another host is read from our own base URL."""
    seen: list[httpx.Request] = []
    offer_set = {"meta": {"uuid": "11111111-1111-4111-8111-111111111111"}, "result": "YES"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(
                303,
                headers={
                    "Location": "https://elsewhere.example/offersets/11111111-1111-4111-8111-111111111111"
                },
            )
        return httpx.Response(200, json={**offer_set, "unknownField": True, "offers": []})

    http = httpx.Client(
        base_url="http://broker.test",
        transport=httpx.MockTransport(handler),
        headers={"Authorization": "Bearer secret-token-0123456789"},
    )
    with BrokerClient("http://broker.test", http=http) as broker:
        found = broker.request_offers(run_request())
    assert found.result.value == "YES"
    assert [r.url.host for r in seen] == ["broker.test", "broker.test"]
