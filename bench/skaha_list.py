"""Other users' API latency while Skaha's session list holds 100,000 foreign sessions
(FAULT-PROBES R6; issue 22: the p90 with such a list must stay within 2x the p90 without).

Three processes, all on loopback:

1. this script with ``--serve``: the fake Skaha and, in front of it, the fault proxy
   (``execbroker.fakes.skaha.proxy``), whose ``pad_list`` adds foreign sessions to every
   ``GET /session``;
2. a real broker (``execbroker serve``) on the Skaha platform through the proxy, with one
   notebook running, so that it lists Skaha every ``--list-interval`` seconds;
3. this script, measuring ``GET /sessions?last=5`` (``--samples`` calls, 0.1 s apart), first
   with the plain list, then with ``--pad`` foreign sessions.

    .venv/bin/python bench/skaha_list.py
    .venv/bin/python bench/skaha_list.py --pad 100000 --samples 60 --list-interval 1

Prints p50/p90/max for both phases, the list's size, and the ratio of the p90s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.live import LiveBroker
from tests.support.wire import example

ACCOUNT = "ebsvc"


def serve(token: str) -> None:
    """The fake Skaha and the proxy; prints the proxy's URL, then serves until killed."""
    from execbroker.fakes.server import ServerThread  # noqa: PLC0415
    from execbroker.fakes.skaha import (  # noqa: PLC0415
        FakeSkaha,
        SkahaFaults,
        SkahaTimings,
        StaticTokens,
        create_fault_proxy,
        create_skaha_app,
    )

    tokens = StaticTokens()
    tokens.add(token, ACCOUNT)
    fake = FakeSkaha(tokens, timings=SkahaTimings(session_expiry=timedelta(hours=2)))
    skaha = ServerThread(create_skaha_app(fake)).start()
    proxy = ServerThread(create_fault_proxy(skaha.url, SkahaFaults())).start()
    print(proxy.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        proxy.stop()
        skaha.stop()


def _quantiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p90": statistics.quantiles(ordered, n=10)[-1] * 1000,
        "max": ordered[-1] * 1000,
    }


def _sample(client: httpx.Client, samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        answer = client.get("/sessions", params={"last": 5})
        times.append(time.perf_counter() - began)
        answer.raise_for_status()
        time.sleep(0.1)
    return _quantiles(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pad", type=int, default=100_000, help="foreign sessions to add")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--list-interval", type=float, default=1.0)
    parser.add_argument("--serve", metavar="TOKEN", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.serve)
        return

    token = "bench-" + datetime.now(UTC).strftime("%H%M%S%f")
    fakes = subprocess.Popen(  # noqa: S603 - this script, with a token it made
        [sys.executable, __file__, "--serve", token], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fakes.stdout is not None
        proxy = fakes.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="skaha-list-") as scratch:
            data = Path(scratch)
            token_file = data / "skaha-tokens.json"
            token_file.write_text(
                json.dumps(
                    {
                        "access_token": token,
                        "refresh_token": "unused",
                        "expires_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
                    }
                )
            )
            token_file.chmod(0o600)
            env = {
                "EXECBROKER_PLATFORM": "skaha",
                "EXECBROKER_SKAHA_URL": f"{proxy}/skaha/v1",
                "EXECBROKER_SKAHA_TOKEN_FILE": str(token_file),
                "EXECBROKER_SKAHA_LIST_INTERVAL": str(arguments.list_interval),
                "EXECBROKER_LOG_LEVEL": "WARNING",
            }
            with LiveBroker(data_dir=data, env=env) as broker, broker.client() as client:
                document: dict[str, Any] = example("notebook-request.yaml")
                document["schedule"] = {"requested": {"duration": "PT30M"}}
                created = client.post("/direct", json=document)
                if created.status_code != 303:
                    raise SystemExit(f"POST /direct: {created.status_code} {created.text}")
                url = created.headers["location"]
                deadline = time.monotonic() + 60
                while client.get(url).json()["phase"] != "AVAILABLE":
                    if time.monotonic() > deadline:
                        raise SystemExit("the notebook did not become AVAILABLE")
                    time.sleep(0.2)
                plain = _sample(client, arguments.samples)
                httpx.post(f"{proxy}/_faults", json={"pad_list": arguments.pad}).raise_for_status()
                size = len(
                    httpx.get(
                        f"{proxy}/skaha/v1/session",
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=60,
                    ).content
                )
                time.sleep(2 * arguments.list_interval)  # the broker has listed it
                padded = _sample(client, arguments.samples)
                phase = client.get(url).json()["phase"]
    finally:
        fakes.terminate()
        fakes.wait(timeout=10)

    print(f"list interval {arguments.list_interval:g} s, {arguments.samples} samples per phase")
    print("GET /sessions?last=5 without foreign sessions: " + _fmt(plain))
    print(
        f"GET /sessions?last=5 with {arguments.pad:,} ({size / 1e6:.1f} MB list): " + _fmt(padded)
    )
    print(f"p90 ratio: {padded['p90'] / plain['p90']:.2f}x (target <= 2x); notebook {phase}")


def _fmt(numbers: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f} ms" for name, value in numbers.items())


if __name__ == "__main__":
    main()
