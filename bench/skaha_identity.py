"""Per-user Skaha identity under short-lived tokens: three users keep sessions going for
``--minutes`` while every access token lives ``--token-seconds`` (issue 17: a 10-minute run
with 5-second access tokens and three users has no authentication failure).

Two processes, all on loopback:

1. this script with ``--serve``: the fake OIDC provider (access tokens of 5 s, rotating
   refresh tokens, RFC 8693 token exchange for the audience ``skaha``) and the fake Skaha,
   which checks every bearer token with it; plus ``/_bench``, which mints the users' own
   broker tokens (as their clients would refresh them) and reports the fakes' counters;
2. a real broker (``execbroker serve``) in per-user mode (``auth = oidc``): each user's token
   is exchanged at ``/direct`` and their sessions run on Skaha as them;
3. this script: one thread per user repeating create (``POST /direct``, a headless job of
   ``--job-seconds``), follow it to its end, repeat, until the time is up.

    .venv/bin/python bench/skaha_identity.py               # 10 minutes
    .venv/bin/python bench/skaha_identity.py --minutes 0.5

Prints the authentication failures (Skaha requests whose token was refused, token endpoint
calls refused, and /direct answers that were not 303), the sessions completed per user and
on Skaha as whom, and the exchanges and refreshes done. Exits 1 if there was any failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.skaha.conftest import FAST_BROKER
from tests.skaha.documents import headless
from tests.support.live import LiveBroker

ACCOUNT = "ebsvc"  # the broker's own account: it reads Skaha's catalogue only
USERS = ("alice", "bob", "carol")
CLIENT_ID, CLIENT_SECRET = "execbroker", "execbroker-client-secret"
BROKER_AUDIENCE = "execbroker"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "EXPIRED", "REJECTED"})


def serve(token_seconds: float) -> None:
    """The fakes; prints their URL and the broker's token document, then serves."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    from execbroker.fakes.oidc import FakeOIDCProvider  # noqa: PLC0415
    from execbroker.fakes.server import ServerThread  # noqa: PLC0415
    from execbroker.fakes.skaha import (  # noqa: PLC0415
        Endpoint,
        FakeSkaha,
        SkahaTimings,
        create_skaha_app,
    )

    ttl = timedelta(seconds=token_seconds)
    idp = FakeOIDCProvider(audience="skaha", access_token_ttl=ttl, exchange_audiences=["skaha"])
    timings = SkahaTimings(
        queue=timedelta(seconds=0.2),
        pull=timedelta(seconds=0.5),
        terminating=timedelta(seconds=0.3),
        ttl_headless=timedelta(seconds=20),
    )
    fake = FakeSkaha(idp, timings=timings, seed=7)

    async def token(request: Request) -> JSONResponse:
        user = request.path_params["user"]
        return JSONResponse({"token": idp.mint(user, audience=BROKER_AUDIENCE)})

    async def stats(_request: Request) -> JSONResponse:
        open_endpoints = {Endpoint.AVAILABILITY, Endpoint.CAPABILITIES, Endpoint.CONNECT}
        refused = sum(
            1 for r in fake.request_log() if r.user is None and r.endpoint not in open_endpoints
        )
        return JSONResponse(
            {
                "skaha_401": refused,
                "skaha_requests": len(fake.request_log()),
                "token_refusals": idp.token_refusals,
                "exchanges": idp.exchange_grants,
                "refreshes": idp.refresh_grants,
                "creators": Counter(fake.creators().values()),
            }
        )

    bench = Starlette(
        routes=[
            Route("/token/{user}", token, methods=["GET"]),
            Route("/stats", stats, methods=["GET"]),
        ]
    )
    server = ServerThread(create_skaha_app(fake, mounts={"/oidc": idp.app(), "/_bench": bench}))
    idp.issuer = f"{server.url}/oidc"
    fake.issuer_url = idp.issuer
    server.start()
    now = datetime.now(UTC)
    document = {
        "access_token": idp.mint(ACCOUNT, lifetime=ttl, issued_at=now),
        "refresh_token": idp.issue_refresh_token(ACCOUNT, CLIENT_ID),
        "expires_at": (now + ttl).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(json.dumps({"url": server.url, "tokens": document}), flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


class _OIDCBroker(LiveBroker):
    """A live broker whose users sign in with OIDC: no local tokens file to read."""

    def token(self) -> str:
        return ""


class User(threading.Thread):
    """One user: create a headless job, follow it to its end, again until ``deadline``."""

    def __init__(self, name: str, *, broker: str, fakes: str, deadline: float, job: float) -> None:
        super().__init__(name=name, daemon=True)
        self.user = name
        self._broker = broker
        self._fakes = fakes
        self._deadline = deadline
        self._job = job
        self.outcomes: Counter[str] = Counter()
        self.refused: list[str] = []

    def _headers(self, http: httpx.Client) -> dict[str, str]:
        """A fresh broker token: the user's own client renews it as often as it must."""
        token = http.get(f"{self._fakes}/_bench/token/{self.user}").json()["token"]
        return {"Authorization": f"Bearer {token}"}

    def run(self) -> None:
        with httpx.Client(base_url=self._broker, timeout=30) as http:
            while time.monotonic() < self._deadline:
                created = http.post(
                    "/direct",
                    json=headless(self._job, duration="PT1M"),
                    headers=self._headers(http),
                )
                if created.status_code != 303:
                    self.refused.append(f"{created.status_code} {created.text[:200]}")
                    time.sleep(1)
                    continue
                url = created.headers["location"]
                phase = self._follow(http, url)
                self.outcomes[phase] += 1

    def _follow(self, http: httpx.Client, url: str) -> str:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            session = http.get(url, params={"wait": 5}, headers=self._headers(http)).json()
            if session["phase"] in TERMINAL:
                return str(session["phase"])
        return "UNFINISHED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--token-seconds", type=float, default=5.0, help="access token life")
    parser.add_argument("--job-seconds", type=float, default=2.0, help="each headless job")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.token_seconds)
        return

    fakes = subprocess.Popen(  # noqa: S603 - this script
        [sys.executable, __file__, "--serve", "--token-seconds", str(arguments.token_seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert fakes.stdout is not None
        started = json.loads(fakes.stdout.readline())
        url = started["url"]
        with tempfile.TemporaryDirectory(prefix="skaha-identity-") as scratch:
            data = Path(scratch)
            token_file = data / "skaha-tokens.json"
            token_file.write_text(json.dumps(started["tokens"]))
            token_file.chmod(0o600)
            env = _broker_env(url, token_file)
            with _OIDCBroker(data_dir=data, env=env) as broker:
                began = time.monotonic()
                deadline = began + arguments.minutes * 60
                users = [
                    User(
                        name,
                        broker=broker.url,
                        fakes=url,
                        deadline=deadline,
                        job=arguments.job_seconds,
                    )
                    for name in USERS
                ]
                for user in users:
                    user.start()
                for user in users:
                    user.join()
                elapsed = time.monotonic() - began
                health = httpx.get(f"{broker.url}/healthz", timeout=10).json()
            stats = httpx.get(f"{url}/_bench/stats", timeout=10).json()
    finally:
        fakes.terminate()
        fakes.wait(timeout=10)

    refused = sum(len(user.refused) for user in users)
    failures = stats["skaha_401"] + stats["token_refusals"] + refused
    print(
        f"{elapsed / 60:.1f} min, {len(USERS)} users, access tokens of "
        f"{arguments.token_seconds:g} s, headless jobs of {arguments.job_seconds:g} s"
    )
    print(
        f"authentication failures: {failures} (Skaha 401s {stats['skaha_401']}, token "
        f"endpoint refusals {stats['token_refusals']}, /direct refused {refused})"
    )
    for user in users:
        outcomes = ", ".join(f"{phase} {count}" for phase, count in sorted(user.outcomes.items()))
        print(
            f"  {user.user}: {outcomes or 'no session'}; on Skaha as {user.user}: "
            f"{stats['creators'].get(user.user, 0)}"
        )
        for reason in user.refused[:3]:
            print(f"    refused: {reason}")
    print(
        f"token exchanges {stats['exchanges']}, refreshes {stats['refreshes']}, Skaha requests "
        f"{stats['skaha_requests']}; sessions as the broker's account: "
        f"{stats['creators'].get(ACCOUNT, 0)}"
    )
    print(
        f"/healthz: {health.get('status')}, identity {health.get('platform_identity')}, "
        f"users to log in again {health.get('users_to_log_in_again')}"
    )
    unfinished = sum(user.outcomes["UNFINISHED"] + user.outcomes["FAILED"] for user in users)
    raise SystemExit(1 if failures or unfinished else 0)


def _broker_env(url: str, token_file: Path) -> dict[str, str]:
    settings: dict[str, Any] = {
        **FAST_BROKER,
        "platform": "skaha",
        "skaha_url": f"{url}/skaha",
        "skaha_token_file": str(token_file),
        "skaha_oidc_issuer": f"{url}/oidc",
        "skaha_client_id": CLIENT_ID,
        "skaha_client_secret": CLIENT_SECRET,
        "skaha_exchange_audience": "skaha",
        "skaha_credential_key": Fernet.generate_key().decode(),
        "auth": "oidc",
        "oidc_issuer": f"{url}/oidc",
        "oidc_audience": BROKER_AUDIENCE,
        "log_level": "WARNING",
    }
    return {
        f"EXECBROKER_{name.upper()}": json.dumps(value) if isinstance(value, dict) else str(value)
        for name, value in settings.items()
    }


if __name__ == "__main__":
    main()
