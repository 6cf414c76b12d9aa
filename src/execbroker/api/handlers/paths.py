"""Path parameters shared by the handlers."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Path

from execbroker.exceptions import NotFoundError

__all__ = ["UuidPath", "parse_uuid"]

UuidPath = Annotated[
    str, Path(description="The UUID of the resource.", json_schema_extra={"format": "uuid"})
]


def parse_uuid(text: str, what: str) -> UUID:
    """A malformed UUID names nothing that exists: 404, like any other unknown one."""
    try:
        return UUID(text)
    except ValueError:
        raise NotFoundError("No {what} {uuid}", {"what": what, "uuid": text[:64]}) from None
