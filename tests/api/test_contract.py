"""What we write validates against the shared v1.0 schema files themselves.

A client generated from those files checks types and patterns (ISO-8601 instants,
durations, intervals); this test applies the same schemas to our answers, so that such a
client works unchanged.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.wire import example, notebook_request, phase_update, post

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "schema" / "v1.0"


@cache
def _registry() -> Registry:
    resources = [
        (
            path.as_uri(),
            Resource.from_contents(
                yaml.safe_load(path.read_text(encoding="utf-8")), default_specification=DRAFT202012
            ),
        )
        for path in SCHEMA_DIR.rglob("*.yaml")
    ]
    return Registry().with_resources(resources)


def _validator(schema: str) -> Draft202012Validator:
    if not SCHEMA_DIR.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the shared schema is missing at {SCHEMA_DIR}")
        pytest.skip(f"the shared schema is not at {SCHEMA_DIR}")
    ref = (SCHEMA_DIR / "components.yaml").as_uri() + f"#/components/schemas/{schema}"
    return Draft202012Validator({"$ref": ref}, registry=_registry())


def _check(schema: str, document: Any) -> None:
    problems = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in _validator(schema).iter_errors(document)
    ]
    assert problems == []


def _kinded_parts(document: Any) -> list[tuple[str, dict[str, Any]]]:
    """Components by the schema each one's kind names (allOf does not dispatch on kind)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for offer in document.get("offers", [document]):
        found.append(("executable", offer["executable"]))
        found.append(("compute", offer["compute"]))
        found.extend(("volume", v) for v in offer["compute"].get("volumes", []))
        found.extend(("storage", s) for s in offer.get("storage", []))
        found.extend(("data", d) for d in offer.get("data", []))
    return found


def _kind_schema(kind: str) -> tuple[str, str]:
    group, name = kind.split("/kinds/")[1].removesuffix(".yaml").split("/")
    title = {
        "docker-container": "DockerContainer",
        "jupyter-notebook": "JupyterNotebook",
        "singularity-container": "SingularityContainer",
        "simple-compute-resource": "SimpleComputeResource",
        "simple-volume-mount": "SimpleVolumeMount",
        "simple-storage-resource": "SimpleStorageResource",
        "simple-data-resource": "SimpleDataResource",
    }[name]
    return f"kinds/{group}/{name}.yaml", title


def _check_kind(document: dict[str, Any]) -> None:
    path, title = _kind_schema(document["kind"])
    ref = (SCHEMA_DIR / path).as_uri() + f"#/components/schemas/{title}"
    validator = Draft202012Validator({"$ref": ref}, registry=_registry())
    problems = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(document)
    ]
    assert problems == [], document["kind"]


async def test_offer_sets_and_sessions_match_the_schema(client: httpx.AsyncClient) -> None:
    offers = (await post(client, "/requests", example("container-with-data-request.yaml"))).json()
    notebook = (await post(client, "/requests", example("notebook-request.yaml"))).json()
    refused = (await post(client, "/requests", {"compute": {}})).json()
    direct = (await post(client, "/direct", example("direct-request.json"))).json()
    accepted = (
        await post(client, notebook["offers"][0]["meta"]["url"], phase_update("ACCEPTED"))
    ).json()

    for offer_set in (offers, notebook, refused):
        _check("OfferSetResponse", offer_set)
    for session in (direct, accepted, *offers["offers"]):
        _check("SimpleExecutionSession", session)
        _check("ScheduledExecutionSession", session)
    for document in (offers, notebook, direct):
        for _, part in _kinded_parts(document):
            _check_kind(part)


def test_the_schema_check_catches_what_a_generated_client_would() -> None:
    good = {"phase": "OFFERED", "kind": "x", "schedule": {"preparing": {"duration": "PT1M"}}}
    _check("ScheduledExecutionSession", good)
    for bad in (
        {**good, "phase": "SLEEPING"},
        {**good, "schedule": {"preparing": {"duration": "2 minutes"}}},
        {**good, "schedule": {"preparing": {"start": "2030-01-01 10:00"}}},
        {**good, "schedule": {"available": {"start": "2030-01-01T10:00:00Z"}}},
    ):
        with pytest.raises(AssertionError):
            _check("ScheduledExecutionSession", bad)


async def test_example_requests_match_the_schema() -> None:
    for name in (
        "notebook-request.yaml",
        "container-with-data-request.yaml",
        "direct-request.json",
    ):
        _check("ExecutionRequest", example(name))
    _check("EnumValueUpdate", phase_update("ACCEPTED"))
    _check("ExecutionRequest", notebook_request())
