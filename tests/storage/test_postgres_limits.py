"""A replica whose database link stalls cannot hold up everyone's bookings (FAULT-PROBES R5).

A broker that holds the pool's booking lock and then goes silent used to block every
booking on every replica until its link came back: no lock, statement, idle-in-transaction
or TCP timeout was set. Now a booking waits at most ``booking_lock_timeout`` for the lock
(then 503 with Retry-After), and the server ends the silent broker's idle transaction after
``database_idle_in_transaction_timeout``, which frees the lock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from execbroker.storage.booking import pool_lock_key
from execbroker.storage.database import Database, PostgresLimits
from tests.support.wire import example, post

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

POOL_LOCK = pool_lock_key("mock")


async def test_the_brokers_connections_carry_their_time_limits(database_url: str) -> None:
    limits = PostgresLimits(statement_timeout=7, idle_in_transaction_timeout=3, tcp_timeout=12)
    database = Database(database_url, postgres=limits)
    try:
        async with database.read() as connection:
            shown = {
                name: (await connection.execute(sa.text(f"SHOW {name}"))).scalar()
                for name in ("statement_timeout", "idle_in_transaction_session_timeout")
            }
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            parameters = raw.info.get_parameters()
    finally:
        await database.dispose()
    assert shown == {"statement_timeout": "7s", "idle_in_transaction_session_timeout": "3s"}
    assert parameters["keepalives"] == "1"
    assert parameters["tcp_user_timeout"] == "12000"


async def test_a_stalled_replica_delays_others_bookings_by_the_lock_timeout_at_most(
    broker: Any, database_url: str
) -> None:
    stalled = Database(database_url, postgres=PostgresLimits(idle_in_transaction_timeout=2))
    try:
        async with broker(booking_lock_timeout=0.5) as client:
            connection = await stalled.engine.connect()
            await connection.begin()
            await connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": POOL_LOCK})
            # The replica holding the lock goes silent: it sends nothing more.

            started = time.monotonic()
            refused = await post(client, "/requests", example("notebook-request.yaml"))
            waited = time.monotonic() - started
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"]
            assert "booking calendar is busy" in refused.json()["messages"][0]["message"]
            assert waited < 2, f"a booking waited {waited:.1f} s behind a stalled replica"

            # The server ends the silent transaction, and with it the lock.
            await asyncio.sleep(2.5)
            booked = await post(client, "/requests", example("notebook-request.yaml"))
            assert booked.status_code == 303, booked.text
            assert booked.json()["result"] == "YES"
            with pytest.raises(sa.exc.DBAPIError) as ended:
                await connection.execute(sa.text("SELECT 1"))
            assert isinstance(ended.value.orig, psycopg.Error)
            await connection.invalidate()
    finally:
        await stalled.dispose()
