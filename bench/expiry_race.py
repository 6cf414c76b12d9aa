"""Accepts racing their offers' expiry under a write burst never overbook (FAULT-PROBES R1).

Each trial books every core of a 4-core pool for alice in its own one-hour slot, waits
until the offer's expiry ± up to 100 ms, then at once: carol fires a burst of requests for
slots far away (a write queue), bob asks for the same 4 cores in the same slot, and alice
accepts; bob accepts whatever he got. Afterwards the sessions that hold capacity in each
slot are summed: more than 4 cores is an overbooking. On PostgreSQL alice talks to one
replica, bob and carol to the other.

    .venv/bin/python bench/expiry_race.py --trials 50
    .venv/bin/python bench/expiry_race.py --trials 50 --postgres postgresql://postgres@127.0.0.1:5432/test

Prints, for each configuration, how the trials went (alice accepted, bob booked, both) and
the number overbooked, which must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveBroker
from tests.support.users import TOKENS, write_tokens_file
from tests.support.wire import example

POOL = 4
TTL = 2.0
WAVE = 5  # trials at once (each in its own slot)
HOLDING = {"ACCEPTED", "WAITING", "PREPARING", "AVAILABLE", "RUNNING", "RELEASING"}
ACCEPT = {"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}


def _request(start: str, cores: int, duration: str = "PT5M") -> dict[str, Any]:
    document: dict[str, Any] = example("notebook-request.yaml")
    document["compute"]["cores"] = {"min": cores, "max": cores}
    document["compute"]["memory"] = {"min": 1, "max": 1}
    document["schedule"] = {"requested": {"duration": duration, "start": f"{start}/PT1M"}}
    return document


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _trial(
    index: int, alice: httpx.AsyncClient, others: httpx.AsyncClient, rng: random.Random
) -> str:
    slot = "2027-01-01T00:00:00Z"
    slot = (datetime(2027, 1, 1, tzinfo=UTC) + timedelta(hours=index)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    mine = (await alice.post("/requests", json=_request(slot, POOL))).json()
    if mine["result"] != "YES":
        return "alice got no offer"
    offer = mine["offers"][0]
    wait = (_when(offer["expires"]) - datetime.now(UTC)).total_seconds()
    # Alice accepts at the expiry ± 100 ms; the burst and bob come just before her.
    await asyncio.sleep(max(0.0, wait + rng.uniform(-0.1, 0.1) - 0.04))
    bob = {"Authorization": f"Bearer {TOKENS['bob']}"}
    carol = {"Authorization": f"Bearer {TOKENS['carol']}"}
    far = (datetime(2028, 1, 1, tzinfo=UTC) + timedelta(hours=index)).strftime("%Y-%m-%dT%H:%M:%SZ")
    burst = [
        others.post("/requests", json=_request(far, 1, "PT1M"), headers=carol) for _ in range(30)
    ]

    async def bobs_turn() -> bool:
        await asyncio.sleep(0.02)
        theirs = (await others.post("/requests", json=_request(slot, POOL), headers=bob)).json()
        if theirs["result"] != "YES":
            return False
        url = theirs["offers"][0]["meta"]["url"]
        return (await others.post(url, json=ACCEPT, headers=bob)).status_code == 200

    async def alices_turn() -> bool:
        await asyncio.sleep(0.04)
        return (await alice.post(offer["meta"]["url"], json=ACCEPT)).status_code == 200

    *_, bob_won, alice_won = await asyncio.gather(*burst, bobs_turn(), alices_turn())
    return {
        (True, True): "both accepted",
        (True, False): "alice accepted",
        (False, True): "bob booked",
        (False, False): "neither",
    }[(alice_won, bob_won)]


async def _overbooked(clients: list[httpx.AsyncClient]) -> int:
    held: Counter[str] = Counter()
    for client in clients:
        listed = (await client.get("/sessions", params={"last": 1000})).json()["sessions"]
        for entry in listed:
            if entry["phase"] in HOLDING:
                session = (await client.get(entry["meta"]["url"])).json()
                start = session["schedule"]["available"]["start"].split("/")[0]
                held[start] += session["compute"]["cores"]["min"]
    return sum(1 for cores in held.values() if cores > POOL)


async def _run(urls: tuple[str, str], trials: int, seed: int) -> tuple[Counter[str], int]:
    rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
    # Below the server's idle timeout: a reused connection is never one it is closing.
    limits = httpx.Limits(max_connections=100, keepalive_expiry=1.0)
    alice_headers = {"Authorization": f"Bearer {TOKENS['alice']}"}
    outcomes: Counter[str] = Counter()
    async with (
        httpx.AsyncClient(base_url=urls[0], headers=alice_headers, limits=limits) as alice,
        httpx.AsyncClient(base_url=urls[1], limits=limits, timeout=30) as others,
    ):
        for first in range(0, trials, WAVE):
            found = await asyncio.gather(
                *(_trial(i, alice, others, rng) for i in range(first, min(trials, first + WAVE)))
            )
            outcomes.update(found)
        bob = httpx.AsyncClient(
            base_url=urls[1], headers={"Authorization": f"Bearer {TOKENS['bob']}"}
        )
        async with bob:
            overbooked = await _overbooked([alice, bob])
    return outcomes, overbooked


def _env(tokens: Path, database_url: str | None) -> dict[str, str]:
    env = {
        "EXECBROKER_TOKENS_FILE": str(tokens),
        "EXECBROKER_DEFAULT_OWNER": "alice",
        "EXECBROKER_CAPACITY_CORES": str(POOL),
        "EXECBROKER_OFFER_TTL": str(TTL),
        "EXECBROKER_MAX_OFFERS": "1",
        "EXECBROKER_MOCK_RUN_SECONDS": "3600",
        "EXECBROKER_QUOTA_LIVE_OFFERS": "100000",
        "EXECBROKER_QUOTA_ACTIVE_SESSIONS": "100000",
        "EXECBROKER_QUOTA_STORED_RECORDS": "100000",
        "EXECBROKER_ANONYMOUS_RATE": "1000",
        "EXECBROKER_LOG_LEVEL": "WARNING",
    }
    if database_url:
        env["EXECBROKER_DATABASE_URL"] = database_url
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--postgres", help="an admin URL: two replicas on a fresh database")
    parser.add_argument("--seed", type=int, default=20261204)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        root = Path(scratch)
        tokens_file = root / "tokens.yaml"
        TOKENS.setdefault("carol", "carol-token-" + secrets.token_hex(8))
        write_tokens_file(tokens_file)
        if options.postgres:
            name = f"execbroker_race_{secrets.token_hex(4)}"
            with psycopg.connect(options.postgres, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')

            def drop() -> None:
                with psycopg.connect(options.postgres, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

            stack.callback(drop)
            base = options.postgres.rsplit("/", 1)[0]
            url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
            env = _env(tokens_file, url)
            dirs = [root / "a", root / "b"]
            for directory in dirs:
                directory.mkdir()
            first = stack.enter_context(LiveBroker(data_dir=dirs[0], env=env))
            second = stack.enter_context(LiveBroker(data_dir=dirs[1], env=env))
            label, urls = "PostgreSQL, two replicas", (first.url, second.url)
        else:
            only = stack.enter_context(LiveBroker(data_dir=root, env=_env(tokens_file, None)))
            label, urls = "SQLite, one broker", (only.url, only.url)
        outcomes, overbooked = asyncio.run(_run(urls, options.trials, options.seed))
    print(f"{label}: {options.trials} trials at expiry ± 100 ms under a 30-request burst")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:>16}: {count}")
    print(f"  slots overbooked: {overbooked} (must be 0)")
    if overbooked:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
