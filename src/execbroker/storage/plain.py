"""Many rows inserted at once, on SQLite straight to the driver.

``connection.execute(table.insert(), rows)`` costs, per row and column, a call of the column
type's bind processing inside SQLAlchemy's execution context: for an offer set (a set row,
four sessions, sixteen components, a dozen messages) that was half the booking's time in
the SQLite writer thread, which every booking waits for (``bench/README.md``). On SQLite,
:func:`insert_rows` converts each value itself, once, the way the column's type stores it
(an instant as naive UTC text, a JSON document as its text), and hands the driver plain
tuples with a statement written once per table and column set. The statement still runs
through the connection (:meth:`~sqlalchemy.engine.Connection.exec_driver_sql`), so errors
reach the same listeners. Other databases use SQLAlchemy's insert as before.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from execbroker.storage.tables import UTCDateTime

__all__ = ["insert_rows"]

Convert = Callable[[Any], Any]


def insert_rows(connection: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys, column names of ``table``) into ``table``."""
    if not rows:
        return
    if connection.dialect.name != "sqlite":
        connection.execute(table.insert(), list(rows))
        return
    insert = _insert_for(table, tuple(rows[0]))
    names = insert.names
    converters = insert.converters
    values = [
        tuple(convert(row[name]) for name, convert in zip(names, converters, strict=True))
        for row in rows
    ]
    connection.exec_driver_sql(insert.sql, values if len(values) > 1 else values[0])


@dataclass(frozen=True)
class _Insert:
    sql: str
    names: tuple[str, ...]
    converters: tuple[Convert, ...]


@functools.cache
def _insert_for(table: sa.Table, names: tuple[str, ...]) -> _Insert:
    columns = [table.c[name] for name in names]  # KeyError: not a column of the table
    quoted = ", ".join(f'"{name}"' for name in names)
    marks = ", ".join("?" for _ in names)
    return _Insert(
        # Names of the table and its columns only (table.c[name] above); values are bound.
        sql=f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})',  # noqa: S608
        names=names,
        converters=tuple(_converter(column.type) for column in columns),
    )


def _converter(kind: sa.types.TypeEngine[Any]) -> Convert:
    """How a value of this column type is stored on SQLite, as SQLAlchemy stores it."""
    if isinstance(kind, UTCDateTime):
        return _instant
    if isinstance(kind, sa.JSON):
        # JSON() keeps None as the document null, not SQL NULL (none_as_null=False).
        return json.dumps
    return _same


def _same(value: Any) -> Any:
    return value


@functools.lru_cache(maxsize=4096)
def _instant(value: datetime | None) -> str | None:
    """An aware instant as SQLite keeps it: naive UTC text, microseconds always written
    (``YYYY-MM-DD HH:MM:SS.ffffff``, SQLAlchemy's SQLite format), so that text order is
    time order.

    Remembered: the rows of one booking repeat a handful of instants (its moment, the
    offers' windows), and a lookup costs a twentieth of a conversion. Equal instants in
    different zones are one key, and convert to the same text; a naive one never equals an
    aware one, and raises every time (exceptions are not cached).
    """
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored; use aware UTC")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")
