"""The service document: OpenAPI, docs and health."""

from __future__ import annotations

import httpx


async def test_openapi_lists_the_v1_paths_and_types(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]
    assert {"/requests", "/direct", "/offersets/{uuid}", "/sessions/{uuid}"} <= set(paths)
    assert paths["/requests"]["post"]["operationId"] == "ExecutionRequest"
    assert paths["/direct"]["post"]["operationId"] == "DirectExecution"
    assert paths["/offersets/{uuid}"]["get"]["operationId"] == "OfferSetSelect"
    assert paths["/sessions/{uuid}"]["get"]["operationId"] == "SessionSelect"
    assert paths["/sessions/{uuid}"]["post"]["operationId"] == "SessionUpdate"
    body = paths["/requests"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/yaml", "application/xml"}
    schemas = document["components"]["schemas"]
    for name in (
        "ExecutionRequest",
        "OfferSetResponse",
        "ExecutionSession",
        "AbstractUpdate",
        "DockerContainer",
        "SimpleComputeResource",
        "SimpleVolumeMount",
    ):
        assert name in schemas, name
    # Every $ref points at a schema that is there.
    text = response.text
    for ref in {part.split('"')[0] for part in text.split('"#/components/schemas/')[1:]}:
        assert ref in schemas, ref


async def test_docs_and_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
