"""OpenAPI fragments for bodies we parse ourselves (JSON, YAML or XML)."""

from __future__ import annotations

from typing import Any

from execbroker.api.formats import MEDIA_TYPES

__all__ = ["body_of", "content_of", "error_responses"]


def content_of(schema: str) -> dict[str, Any]:
    ref = {"schema": {"$ref": f"#/components/schemas/{schema}"}}
    return dict.fromkeys(MEDIA_TYPES.values(), ref)


def body_of(schema: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": content_of(schema)}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The body cannot be parsed, or (direct execution) the request cannot be served.",
        404: "No such resource, or it belongs to someone else.",
        406: "None of the formats in Accept is one we write (JSON, YAML, XML).",
        409: "The update does not apply in the session's current phase.",
        413: "The body is larger than the configured limit.",
        415: "The Content-Type is not JSON, YAML or XML.",
        422: "The update is malformed: unknown kind, path or value.",
    }
    return {
        status: {"description": descriptions[status], "content": content_of("ErrorResponse")}
        for status in statuses
    }
