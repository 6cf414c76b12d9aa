"""A client generated from the v1.0 schema, used as the reference broker's users use theirs.

openapi-generator's ``python`` client (generated at test time: ``conftest.py``) calls a real
``execbroker serve`` process over loopback HTTP with a bearer token. Everything goes through
the client's own API class and models: requests are built from its models, and answers are
read back as its models, so a field the client cannot deserialize fails here as it would for
a user. It follows the broker's ``303 See Other`` itself and polls ``GET /sessions/{uuid}``
as the reference's client wrapper does.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.slow

V1 = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
OFFERSET_KIND = f"{V1}offerset/execution-offerset.yaml"
COST_KIND = f"{V1}costs/simple-minmax-float-cost.yaml"
METRIC_KIND = f"{V1}metrics/simple-minmax-float-metric.yaml"
PERFORMANCE = "urn:ivoa:calycopis:metric:compute-performance"
IO_THROUGHPUT = "urn:ivoa:calycopis:metric:io-throughput"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def _request(
    generated: ModuleType,
    name: str,
    *,
    run_seconds: float | None = None,
    metric_minimum: float | None = None,
) -> Any:
    """A docker container with 1-2 cores and a scratch storage, for 10 minutes from now."""
    m = generated.models
    environment = {"MOCK_RUN_SECONDS": str(run_seconds)} if run_seconds is not None else None
    metrics = None
    if metric_minimum is not None:
        metrics = [
            m.SimpleMinMaxFloatMetric(
                kind=METRIC_KIND,
                type=PERFORMANCE,
                description="Minimum required compute performance",
                min=metric_minimum,
            )
        ]
    return m.ExecutionRequest(
        executable=m.DockerContainer(
            kind=f"{V1}executable/docker-container.yaml",
            meta=m.ComponentMetadata(name=name),
            image=m.DockerImageSpec(
                locations=["images.canfar.net/example/hello:1.0"],
                digest="sha256:" + "1" * 64,
            ),
            environment=environment,
        ),
        compute=m.SimpleComputeResource(
            kind=f"{V1}compute/simple-compute-resource.yaml",
            meta=m.ComponentMetadata(name=f"{name}-compute"),
            cores=m.SimpleComputeCores(min=1, max=2),
            memory=m.SimpleComputeMemory(min=1, max=2),
            volumes=[
                m.SimpleVolumeMount(
                    kind=f"{V1}volume/simple-volume-mount.yaml",
                    meta=m.ComponentMetadata(name=f"{name}-mount"),
                    path="/scratch",
                    mode="READWRITE",
                    resource=f"{name}-scratch",
                )
            ],
        ),
        storage=[
            m.SimpleStorageResource(
                kind=f"{V1}storage/simple-storage-resource.yaml",
                meta=m.ComponentMetadata(name=f"{name}-scratch"),
                size=m.SimpleStorageSize(min=1, max=2),
            )
        ],
        schedule=m.RequestedScheduleBlock(requested=m.RequestedScheduleItem(duration="PT10M")),
        metrics=metrics,
    )


def _update(generated: ModuleType, value: str) -> Any:
    return generated.models.EnumValueUpdate(
        kind="uri:enum-value-update", path="/phase", value=value
    )


def _until(api: Any, uuid: Any, phases: set[str], *, seconds: float = 20) -> Any:
    """Poll the session, as the reference's client wrapper does, until one of ``phases``."""
    return eventually_sync(
        lambda: api.session_select(uuid),
        lambda session: session.phase in phases,
        what=f"session {uuid} in one of {sorted(phases)}",
        within=seconds,
        interval=0.1,
    )


def _offers(api: Any, generated: ModuleType, name: str, **options: Any) -> Any:
    offerset = api.execution_request(_request(generated, name, **options))
    assert isinstance(offerset, generated.models.OfferSetResponse)
    return offerset


def _by_type(items: list[Any] | None) -> dict[str, Any]:
    return {item.type: item for item in items or []}


def test_an_accepted_offer_runs_to_completed(api: Any, generated: ModuleType) -> None:
    offerset = _offers(api, generated, "accepted")
    assert offerset.result == "YES"
    assert offerset.kind == OFFERSET_KIND
    assert len(offerset.offers) > 1
    for offer in offerset.offers:
        assert isinstance(offer, generated.models.ScheduledExecutionSession)
        assert offer.phase == "OFFERED"
        assert offer.expires is not None

    chosen, *others = offerset.offers
    answer = api.session_update(chosen.meta.uuid, _update(generated, "ACCEPTED"))
    assert answer.phase == "ACCEPTED"
    reread = api.offer_set_select(offerset.meta.uuid)
    assert [o.phase for o in reread.offers[1:]] == ["REJECTED"] * len(others)

    ended = _until(api, chosen.meta.uuid, TERMINAL)
    assert ended.phase == "COMPLETED"
    assert ended.executable.phase == "COMPLETED"
    assert ended.compute.phase == "COMPLETED"
    assert all(storage.phase == "COMPLETED" for storage in ended.storage)


def test_a_direct_run_starts_at_once_and_completes(api: Any, generated: ModuleType) -> None:
    session = api.direct_execution(_request(generated, "direct"))
    assert isinstance(session, generated.models.ScheduledExecutionSession)
    # The client follows the 303 and reads the session: ACCEPTED, unless the engine was quicker.
    assert session.phase in {"ACCEPTED", "WAITING", "PREPARING"}
    assert session.meta.url.endswith(f"/sessions/{session.meta.uuid}")

    ended = _until(api, session.meta.uuid, TERMINAL)
    assert ended.phase == "COMPLETED"


def test_the_answer_to_a_cancel_says_cancelled(api: Any, generated: ModuleType) -> None:
    session = api.direct_execution(_request(generated, "cancelled", run_seconds=300))
    _until(api, session.meta.uuid, {"RUNNING"})

    answer = api.session_update(session.meta.uuid, _update(generated, "CANCELLED"))
    assert answer.phase == "CANCELLED"
    assert api.session_select(session.meta.uuid).phase == "CANCELLED"

    # The components are still released, each to its own end, while the session says CANCELLED.
    read = eventually_sync(
        lambda: api.session_select(session.meta.uuid),
        lambda read: read.compute.phase in TERMINAL,
        what="the compute released",
        within=20,
        interval=0.1,
    )
    assert read.phase == "CANCELLED"
    assert read.compute.phase in TERMINAL
    assert read.compute.phase != "FAILED"


def test_a_rejected_offer_says_rejected_and_cannot_be_accepted(
    api: Any, generated: ModuleType
) -> None:
    offerset = _offers(api, generated, "rejected")
    rejected, other, *_ = offerset.offers

    answer = api.session_update(rejected.meta.uuid, _update(generated, "REJECTED"))
    assert answer.phase == "REJECTED"
    assert api.session_select(other.meta.uuid).phase == "OFFERED"

    with pytest.raises(generated.ApiException) as refused:
        api.session_update(rejected.meta.uuid, _update(generated, "ACCEPTED"))
    assert refused.value.status == 409
    assert "REJECTED" in refused.value.body
    assert api.session_select(rejected.meta.uuid).phase == "REJECTED"


def _check_costs_and_metrics(session: Any, generated: ModuleType) -> None:
    m = generated.models
    components = [session.executable, session.compute, *session.storage]
    for level in (session, session.compute):
        assert all(isinstance(c, m.SimpleMinMaxFloatCost) for c in level.costs)
        assert all(isinstance(x, m.SimpleMinMaxFloatMetric) for x in level.metrics)
        assert {c.kind for c in level.costs} == {COST_KIND}
        assert {x.kind for x in level.metrics} == {METRIC_KIND}
        assert "urn:ivoa:calycopis:cost:monetary" in _by_type(level.costs)
        assert {PERFORMANCE, IO_THROUGHPUT} <= set(_by_type(level.metrics))

    # The session's costs are the sum over its components.
    for kind, cost in _by_type(session.costs).items():
        parts = [_by_type(c.costs)[kind] for c in components if kind in _by_type(c.costs)]
        assert cost.min == pytest.approx(sum(p.min for p in parts), rel=1e-3)
        assert cost.max == pytest.approx(sum(p.max for p in parts), rel=1e-3)

    # With one compute, the session's metrics are the compute's.
    session_metrics, compute_metrics = _by_type(session.metrics), _by_type(session.compute.metrics)
    for kind in (PERFORMANCE, IO_THROUGHPUT):
        assert (session_metrics[kind].min, session_metrics[kind].max) == (
            compute_metrics[kind].min,
            compute_metrics[kind].max,
        )
    # The mock platform publishes on the reference's benchmark scale.
    performance = session_metrics[PERFORMANCE]
    assert (performance.min, performance.max) == (150.0, 200.0)


def test_costs_and_metrics_on_the_offer_and_its_compute(api: Any, generated: ModuleType) -> None:
    offerset = _offers(api, generated, "priced")
    for offer in offerset.offers:
        _check_costs_and_metrics(offer, generated)

    chosen = offerset.offers[0]
    api.session_update(chosen.meta.uuid, _update(generated, "ACCEPTED"))
    _check_costs_and_metrics(api.session_select(chosen.meta.uuid), generated)
    _until(api, chosen.meta.uuid, TERMINAL)


def test_a_metric_minimum_on_the_benchmark_scale(api: Any, generated: ModuleType) -> None:
    met = _offers(api, generated, "fast-enough", metric_minimum=50.0)
    assert met.result == "YES"
    assert met.offers
    for offer in met.offers:
        assert _by_type(offer.compute.metrics)[PERFORMANCE].min >= 50

    unmet = _offers(api, generated, "too-fast", metric_minimum=100_000.0)
    assert unmet.result == "NO"
    assert not unmet.offers
    texts = [message.message for message in unmet.meta.messages]
    assert any(
        "/metrics/0/min" in text and PERFORMANCE in text and "below the minimum" in text
        for text in texts
    ), texts


def test_a_refused_direct_request_is_read_as_a_failed_session(
    api: Any, generated: ModuleType
) -> None:
    # No executable: the broker cannot serve it. The schema answers 400 with a session.
    with pytest.raises(generated.ApiException) as failure:
        api.direct_execution(generated.models.ExecutionRequest())
    assert failure.value.status == 400
    # The generated client's own AbstractExecutionSession cannot deserialize anything (its
    # discriminator recurses: a generator problem, docs/compatibility.md), so it leaves
    # .data empty; the body is the session its kind names, as the schema says.
    session = generated.models.ScheduledExecutionSession.from_json(failure.value.body)
    assert session.phase == "FAILED"
    assert "/executable" in session.meta.messages[0].message
