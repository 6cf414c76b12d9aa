"""Path and query parameters shared by the handlers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import Path
from pydantic import AfterValidator

from execbroker.exceptions import NotFoundError

__all__ = ["UtcInstant", "UuidPath", "parse_uuid"]

UuidPath = Annotated[
    str, Path(description="The UUID of the resource.", json_schema_extra={"format": "uuid"})
]


def parse_uuid(text: str, what: str) -> UUID:
    """A malformed UUID names nothing that exists: 404, like any other unknown one."""
    try:
        return UUID(text)
    except ValueError:
        raise NotFoundError("No {what} {uuid}", {"what": what, "uuid": text[:64]}) from None


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-14:00 is a valid date-time whose UTC instant is not.
        raise ValueError("the instant lies outside the years 1 to 9999 in UTC") from None


UtcInstant = Annotated[datetime, AfterValidator(_in_utc)]
"""A date-time in a query, as an aware UTC datetime (one without an offset is UTC); 422 when
its UTC instant falls outside the years 1 to 9999."""
