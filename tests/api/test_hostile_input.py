"""Hostile shapes of input, sent to ``execbroker serve`` on loopback, as large as it accepts.

Each must be answered within a few seconds while another client's ``/healthz`` stays fast:
a stall here stalls every client (the event loop is shared), so it is a liveness bug, not a
performance target. Before these defences, a 32 KB ``Accept`` header took 16 s, a 48 KB body
of escaped quotes 7 s (1 MiB about an hour), and 60 KB of YAML aliases took 600 MB.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from execbroker.config import AuthSettings, ServerSettings, Settings
from execbroker.fakes.server import ServerThread
from execbroker.main import create_app
from tests.support.live import LiveBroker
from tests.support.users import ADMINS, auth, write_tokens_file

# What an answer may take, and what another client's /healthz may take meanwhile, on a
# loaded two-core machine. The quadratic versions took 16 s and more.
ANSWER_WITHIN = 5.0
HEALTHZ_WITHIN = 1.0
MAX_HEADER_BYTES = 32_768  # the default
MAX_BODY_BYTES = 1_048_576  # the default
K = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBroker]:
    with LiveBroker(data_dir=tmp_path_factory.mktemp("hostile")) as broker:
        yield broker


def answered_while_healthz_stays_fast(
    live: LiveBroker, send: Callable[[httpx.Client], httpx.Response]
) -> httpx.Response:
    """``send``'s answer; fails if it took too long or stalled another client's healthz."""
    result: dict[str, Any] = {}

    def hostile() -> None:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            started = time.monotonic()
            result["response"] = send(client)
            result["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=hostile)
    slowest = 0.0
    with httpx.Client(base_url=live.url, timeout=30) as other:
        other.get("/healthz")  # connected before the hostile request starts
        worker.start()
        while worker.is_alive():
            started = time.monotonic()
            assert other.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.02)
    worker.join()
    assert result["seconds"] < ANSWER_WITHIN, f"answered after {result['seconds']:.2f} s"
    assert slowest < HEALTHZ_WITHIN, f"another client's /healthz took {slowest:.2f} s"
    response: httpx.Response = result["response"]
    return response


def _messages(response: httpx.Response) -> str:
    return " ".join(m["message"] for m in response.json()["messages"])


# --- headers ----------------------------------------------------------------------------


def _hostile_accept(size: int) -> str:
    return '"' + '\\"' * (size // 2)


@pytest.mark.parametrize("path", ["/no-such-path", "/sessions"])
def test_an_accept_header_of_escaped_quotes_at_the_header_limit(
    live: LiveBroker, path: str
) -> None:
    accept = _hostile_accept(MAX_HEADER_BYTES - 2_000)
    response = answered_while_healthz_stays_fast(
        live, lambda client: client.get(path, headers={**live.headers, "Accept": accept})
    )
    # An Accept nothing matches: 406 on a route, and a 404 that is still explained in JSON.
    assert response.status_code == (404 if path == "/no-such-path" else 406)
    assert len(response.content) < 2_000  # the header is quoted only in part


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Accept": _hostile_accept(MAX_HEADER_BYTES * 2)}, "the limit is 32768 bytes"),
        # Cut off while it arrives, by the server (32 KiB and room for a long request line).
        ({"X-Junk": "x" * 8_000_000}, "The request line and headers exceed 163840 bytes"),
        ({f"X-Line-{i}": "1" for i in range(150)}, "header lines; the limit is 100"),
    ],
    ids=["accept", "8 MB", "150 lines"],
)
def test_headers_over_the_limits_are_431_before_anything_runs(
    live: LiveBroker, headers: dict[str, str], words: str
) -> None:
    response = answered_while_healthz_stays_fast(
        live, lambda client: client.post("/requests", headers=headers, content=b"{}")
    )
    assert response.status_code == 431
    assert response.json()["error"] == "headers_too_large"
    assert words in _messages(response)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_headers_that_never_end_are_cut_off_at_the_limit(live: LiveBroker) -> None:
    # Without a bound, the server holds whatever arrives until the header deadline (and
    # httptools would hold megabytes). Sent in steps the server keeps up with, so that it
    # closes with nothing unread and its answer arrives intact.
    step = b"a" * 16_384
    sent = 0
    answer = b""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        while sent < 4 * 1024 * 1024 and not select.select([raw], [], [], 0.01)[0]:
            with contextlib.suppress(OSError):  # closed under us: the answer is there
                raw.sendall(step)
                sent += len(step)
        with contextlib.suppress(OSError):
            while chunk := raw.recv(65_536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"headers_too_large" in answer
    # The limit is the header limit with room for a long request line and a read's worth.
    assert sent < MAX_HEADER_BYTES + 512 * 1024, sent
    assert time.monotonic() - started < ANSWER_WITHIN


def test_a_long_token_like_url_is_answered_and_logged_at_once(live: LiveBroker) -> None:
    # httptools refuses URLs of 64 KB and more; the redaction of the access-log line used to
    # take 1.1 s for this one.
    url = "/healthz?x=" + "eyJ-" * 15_000
    response = answered_while_healthz_stays_fast(live, lambda client: client.get(url))
    assert response.status_code == 200


# --- bodies -----------------------------------------------------------------------------


def test_clients_that_hang_up_mid_body_are_not_logged_as_broker_failures(
    live: LiveBroker,
) -> None:
    token = live.headers["Authorization"].encode()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", live.port)) as hanging_up:
            hanging_up.sendall(
                b"POST /requests HTTP/1.1\r\nHost: x\r\nAuthorization: " + token + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
    deadline = time.monotonic() + 15
    log = ""
    while time.monotonic() < deadline:
        log = live.log.read_text()
        if log.count("the client went away before sending its whole request") == 20:
            break
        time.sleep(0.1)
    assert log.count("the client went away before sending its whole request") == 20
    assert "unhandled error" not in log
    assert "Traceback" not in log
    assert httpx.get(f"{live.url}/healthz").status_code == 200


@pytest.mark.parametrize("shape", [b'\\"', b'"\\"', b'{"a": ["\\"'])
@pytest.mark.parametrize("path", ["/requests", "/direct"])
def test_a_body_of_escaped_quotes_up_to_the_body_limit(
    live: LiveBroker, shape: bytes, path: str
) -> None:
    body = shape * ((MAX_BODY_BYTES - 100) // len(shape))
    response = answered_while_healthz_stays_fast(
        live,
        lambda client: client.post(
            path, content=body, headers={**live.headers, "Content-Type": "application/json"}
        ),
    )
    assert response.status_code == 400
    assert "The body is not valid JSON" in _messages(response)


def _aliases_to_a_long_string(length: int, levels: int) -> bytes:
    text = f"s: &s {'x' * length}\na0: &a0 [" + ", ".join(["*s"] * 10) + "]\n"
    for level in range(1, levels):
        text += f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]\n"
    text += (
        f"executable:\n  kind: {K}/executable/docker-container.yaml\n"
        f"  image:\n    locations: [*a{levels - 1}]\n"
    )
    return text.encode()


def _post_yaml(live: LiveBroker, body: bytes) -> Callable[[httpx.Client], httpx.Response]:
    headers = {**live.headers, "Content-Type": "application/yaml"}
    return lambda client: client.post(
        "/requests", content=body, headers=headers, follow_redirects=True
    )


@pytest.mark.parametrize("levels", [4, 5])
def test_yaml_aliases_expanding_a_long_string_are_refused(live: LiveBroker, levels: int) -> None:
    # 4 levels: 10^4 copies of 60 000 characters (600 MB); 5 levels exhausted 4 GB.
    body = _aliases_to_a_long_string(60_000, levels)
    response = answered_while_healthz_stays_fast(live, _post_yaml(live, body))
    assert response.status_code == 400
    assert "expand its keys and strings to more than 4194304 characters" in _messages(response)


def test_a_chain_of_yaml_merges_does_not_stall_the_broker(live: LiveBroker) -> None:
    # Five chains 900 merges deep over one 10,000-key mapping: 153 KB, five aliases. PyYAML
    # copies the keys once per level: this stalled every request for 6 s.
    base = "m0: &m0 {" + ", ".join(f"k{index}: 0" for index in range(10_000)) + "}\n"
    chains = "".join(f"c{i}: " + "{<<: " * 900 + "*m0" + ", z: 0}" * 900 + "\n" for i in range(5))
    response = answered_while_healthz_stays_fast(live, _post_yaml(live, (base + chains).encode()))
    assert response.status_code == 400
    assert "The YAML merge keys (<<)" in _messages(response)


def test_a_wrongly_typed_aliased_value_is_quoted_only_in_part(live: LiveBroker) -> None:
    # Within the expansion limit (100 copies of 15 000 characters): the request is refused
    # by meaning, and the message quotes the start of the value, not 1.5 MB of it.
    body = _aliases_to_a_long_string(15_000, 2)
    response = answered_while_healthz_stays_fast(live, _post_yaml(live, body))
    offer_set = response.json()
    assert offer_set["result"] == "NO"
    problem = next(
        m for m in offer_set["meta"]["messages"] if "image/locations" in m["values"]["path"]
    )
    assert "got [['xxxxxxxx" in problem["message"] or "got [[['xxxx" in problem["message"]
    assert len(problem["message"]) < 300


# --- 500 --------------------------------------------------------------------------------


def test_a_500_keeps_the_security_headers_and_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        auth=AuthSettings(tokens_file=write_tokens_file(tmp_path / "tokens.yaml"), admins=ADMINS),
    )
    app = create_app(settings)
    secret = "password=hunter2hunter2"

    async def broken(**_: Any) -> None:
        raise RuntimeError(f"the database went away ({secret})")

    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        monkeypatch.setattr(app.state.broker.sessions, "list_sessions", broken)
        failed = client.get("/sessions", headers=auth("alice"))
        again = client.get("/healthz")

    assert failed.status_code == 500
    assert failed.json()["error"] == "internal_error"
    assert "RuntimeError" in _messages(failed)
    assert secret not in failed.text  # no traceback, no exception text for the client
    for name in ("x-content-type-options", "x-frame-options", "content-security-policy"):
        assert name in failed.headers, name
    assert failed.headers.get("connection") != "close"
    assert again.status_code == 200
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 1


def test_header_limits_come_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        auth=AuthSettings(tokens_file=write_tokens_file(tmp_path / "tokens.yaml")),
        server=ServerSettings(max_header_bytes=4096, max_header_count=20),
    )
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        assert client.get("/healthz", headers={"X-A": "a" * 3000}).status_code == 200
        too_big = client.get("/healthz", headers={"X-A": "a" * 5000})
        too_many = client.get("/healthz", headers={f"X-{i}": "1" for i in range(25)})
    assert too_big.status_code == 431
    assert "the limit is 4096 bytes" in json.dumps(too_big.json())
    assert too_many.status_code == 431
    assert "the limit is 20" in json.dumps(too_many.json())
