"""OpenAPI fragments for bodies we parse or write ourselves (JSON, YAML or XML)."""

from __future__ import annotations

from typing import Any

from execbroker.api.formats.negotiation import MEDIA_TYPES

__all__ = [
    "CALLER_ERRORS",
    "body_of",
    "content_of",
    "document_parameter_errors",
    "error_responses",
    "schema_ref",
]

# What any operation that needs a caller may answer before it does anything else: no or a
# bad bearer token (401), or an identity provider that cannot be reached now (503).
CALLER_ERRORS = (401, 503)


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def content_of(schema: str | dict[str, Any]) -> dict[str, Any]:
    """The same schema (a component's name, or a schema) in each format we read and write."""
    ref = {"schema": schema_ref(schema) if isinstance(schema, str) else schema}
    return dict.fromkeys(MEDIA_TYPES.values(), ref)


def body_of(schema: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": content_of(schema)}}


_DESCRIPTIONS = {
    400: "The body cannot be parsed, or (direct execution) the request cannot be served.",
    401: "No bearer token, or one that identifies nobody (expired, revoked, badly signed).",
    404: "No such resource, or it belongs to someone else.",
    406: "None of the formats in Accept is one we write (JSON, YAML, XML).",
    409: "The update does not apply in the session's current phase.",
    413: "The body is larger than the configured limit.",
    415: "The Content-Type is not JSON, YAML or XML.",
    422: "The update is malformed: unknown kind, path or value.",
    429: "The caller already holds as many live offers or active sessions as one user may.",
    503: "The identity provider cannot be reached to check the token; try again later.",
}
_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": "The bearer challenge (RFC 6750).",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    },
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Error answers: an ``ErrorResponse`` body in the negotiated format, and any headers."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response = {"description": _DESCRIPTIONS[status], "content": content_of("ErrorResponse")}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        responses[status] = response
    return responses


_FASTAPI_422 = schema_ref("HTTPValidationError")


def document_parameter_errors(document: dict[str, Any]) -> None:
    """Replace FastAPI's own 422 (``HTTPValidationError``, JSON only) with what we answer.

    FastAPI documents a 422 on every operation with parameters; the broker's global handler
    (:mod:`execbroker.api.errors`) answers a malformed parameter with an ``ErrorResponse`` in
    the negotiated format instead, so the document says that.
    """
    ours = {
        "description": "A query or path parameter is malformed (wrong type, out of range, "
        "unknown value).",
        "content": content_of("ErrorResponse"),
    }
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            response = operation.get("responses", {}).get("422", {})
            if response.get("content", {}).get("application/json", {}).get("schema") == (
                _FASTAPI_422
            ):
                operation["responses"]["422"] = ours
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
