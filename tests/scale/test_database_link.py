"""A replica whose link to PostgreSQL stalls or is cut: the other replica books on, and
nothing acknowledged is lost (FAULT-PROBES R5).

Replica A reaches the database through a TCP proxy that can stall (forward nothing, keep
the connections open) or cut every connection; replica B connects directly. While A's link
is stalled with its accepts in flight (some holding the pool's lock), B's bookings are
answered within the lock timeout, and succeed once the server has ended A's silent
transactions; when the link comes back A serves again, and every accept it acknowledged is
ACCEPTED.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scale.test_two_brokers import _env
from tests.support.live import LiveBroker
from tests.support.waiting import eventually_sync
from tests.support.wire import example, phase_update

pytestmark = pytest.mark.slow  # two broker processes and a proxy between them and the database

LOCK_TIMEOUT = 1.0
IDLE_TIMEOUT = 3.0


class TcpProxy:
    """A loopback TCP proxy to PostgreSQL that can stall or cut its connections."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.loop = asyncio.new_event_loop()
        self.flowing = asyncio.Event()
        self.writers: set[asyncio.StreamWriter] = set()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> TcpProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(5)
        self.do(self.flowing.set)
        return self

    def __exit__(self, *_: Any) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def do(self, action: Any) -> None:
        self.loop.call_soon_threadsafe(action)

    def stall(self) -> None:
        self.do(self.flowing.clear)

    def resume(self) -> None:
        self.do(self.flowing.set)

    def cut(self) -> None:
        def close_all() -> None:
            for writer in list(self.writers):
                writer.transport.abort()
            self.writers.clear()

        self.do(close_all)

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers.update({writer, upstream_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    await self.flowing.wait()
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
def replicas(
    shared_database: str, tmp_path: Path
) -> Iterator[tuple[LiveBroker, LiveBroker, TcpProxy]]:
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        limits = {
            "EXECBROKER_BOOKING_LOCK_TIMEOUT": str(LOCK_TIMEOUT),
            "EXECBROKER_DATABASE_IDLE_IN_TRANSACTION_TIMEOUT": str(IDLE_TIMEOUT),
            "EXECBROKER_DATABASE_TCP_TIMEOUT": "5",
            "EXECBROKER_CAPACITY_CORES": "1000",
        }
        through_proxy = shared_database.replace(":5432/", f":{proxy.port}/")
        first, second = tmp_path / "a", tmp_path / "b"
        first.mkdir()
        second.mkdir()
        tokens = {"EXECBROKER_TOKENS_FILE": str(tmp_path / "tokens.yaml")}
        a = LiveBroker(data_dir=first, env={**_env(through_proxy, **limits), **tokens}).start()
        b = LiveBroker(data_dir=second, env={**_env(shared_database, **limits), **tokens}).start()
        try:
            yield a, b, proxy
        finally:
            a.stop()
            b.stop()


def _offers(client: httpx.Client, count: int) -> list[str]:
    urls = []
    for _ in range(count):
        answer = client.post("/requests", json=example("notebook-request.yaml"))
        assert answer.status_code == 303, answer.text
        urls.append(answer.json()["offers"][0]["meta"]["url"])
    return urls


def test_a_stalled_replica_delays_the_others_bookings_by_the_lock_timeout_at_most(
    replicas: tuple[LiveBroker, LiveBroker, TcpProxy],
) -> None:
    a, b, proxy = replicas
    with a.client(timeout=60) as on_a, b.client(timeout=60) as on_b:
        offers = _offers(on_a, 8)
        proxy.stall()
        with ThreadPoolExecutor(max_workers=8) as pool:
            # A's accepts: locked bookings, each stuck somewhere between its lock and its
            # commit, or before either, while the link is silent.
            pending = [pool.submit(on_a.post, url, json=phase_update("ACCEPTED")) for url in offers]
            time.sleep(0.5)

            waits = []
            answers = []
            for _ in range(4):
                started = time.monotonic()
                answer = on_b.post("/requests", json=example("notebook-request.yaml"))
                waits.append(time.monotonic() - started)
                answers.append(answer.status_code)
            assert max(waits) < LOCK_TIMEOUT + 1.5, f"B's bookings waited {waits}"
            assert set(answers) <= {303, 503}, answers

            # The server ends A's silent transactions: B books again.
            time.sleep(IDLE_TIMEOUT + 0.5)
            later = on_b.post("/requests", json=example("notebook-request.yaml"))
            assert later.status_code == 303, later.text

            proxy.resume()
            acknowledged = [
                url
                for url, future in zip(offers, pending, strict=True)
                if future.result(timeout=60).status_code == 200
            ]
        # A serves again, and what it acknowledged holds.
        eventually_sync(
            lambda: on_a.post("/requests", json=example("notebook-request.yaml")).status_code,
            lambda status: status == 303,
            what="replica A serves again after its link came back",
            within=30,
            interval=0.5,
        )
        for url in acknowledged:
            assert on_b.get(url).json()["phase"] != "OFFERED", f"{url}: acknowledged, lost"


def test_a_cut_link_is_reconnected_and_loses_nothing_acknowledged(
    replicas: tuple[LiveBroker, LiveBroker, TcpProxy],
) -> None:
    a, b, proxy = replicas
    with a.client(timeout=60) as on_a, b.client(timeout=60) as on_b:
        offers = _offers(on_a, 6)
        with ThreadPoolExecutor(max_workers=6) as pool:
            pending = [pool.submit(on_a.post, url, json=phase_update("ACCEPTED")) for url in offers]
            time.sleep(0.05)
            proxy.cut()
            answers = [future.result(timeout=60) for future in pending]
        acknowledged = [
            url for url, answer in zip(offers, answers, strict=True) if answer.status_code == 200
        ]
        for url in acknowledged:
            assert on_b.get(url).json()["phase"] != "OFFERED", f"{url}: acknowledged, lost"
        eventually_sync(
            lambda: on_a.post("/requests", json=example("notebook-request.yaml")).status_code,
            lambda status: status == 303,
            what="replica A serves again after its connections were cut",
            within=20,
            interval=0.2,
        )
