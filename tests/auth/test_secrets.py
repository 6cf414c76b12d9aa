"""Credentials never reach the logs: a broker run at DEBUG through a whole session."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from execbroker.logs import RedactSecrets, redact
from tests.support.engine import ROLES
from tests.support.live import LiveBroker
from tests.support.wire import example


@pytest.mark.slow  # a broker process through a whole session, logging at DEBUG
def test_no_token_appears_in_a_debug_log_of_a_whole_session(tmp_path: Path) -> None:
    env = {
        "EXECBROKER_LOG_LEVEL": "DEBUG",
        "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.1)),
        "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(dict.fromkeys(ROLES, 0.05)),
        "EXECBROKER_MOCK_RUN_SECONDS": "0.2",
        "EXECBROKER_POLL_INTERVAL": "0.1",
    }
    wrong = "wrong-token-3b9f1e27c4d5a6"
    with LiveBroker(data_dir=tmp_path, env=env) as live, live.client(timeout=30) as client:
        token = live.token()
        assert client.get("/sessions", headers={"Authorization": f"Bearer {wrong}"}).is_error
        assert client.get(f"/sessions?token={wrong}").status_code == 200
        created = client.post("/direct", json=example("container-with-data-request.yaml"))
        assert created.status_code == 303, created.text
        deadline = time.monotonic() + 30
        phase = ""
        while time.monotonic() < deadline and phase not in ("COMPLETED", "FAILED"):
            phase = client.get(f"{created.headers['location']}?wait=5").json()["phase"]
        assert phase == "COMPLETED"
    log = live.log.read_text()
    assert "broker ready" in log  # the log is really there, at DEBUG
    assert "GET /sessions" in log  # and it has the access lines
    assert str(tmp_path / "tokens.yaml") in log  # it says where the token is ...
    assert token not in log  # ... but never what it is
    assert wrong not in log


def test_the_filter_redacts_credentials_in_messages_and_arguments() -> None:
    samples = {
        "Authorization: Bearer abcdefghijklmnop": "abcdefghijklmnop",
        "grant_type=refresh_token&refresh_token=r3fr3sh-t0k3n-value&client_secret=s3cr3t-v4lue": (
            "r3fr3sh-t0k3n-value"
        ),
        '{"access_token": "opaque-access-value", "expires_in": 3600}': "opaque-access-value",
        "https://host/session/x?token=secret-in-the-url": "secret-in-the-url",
        "header eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl end": "eyJzdWIiOiJhbGljZSJ9",
    }
    for text, secret in samples.items():
        assert secret not in redact(text)
        assert "[redacted" in redact(text)
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "calling with %s", ("Bearer abcdefghijklmnop",), None
    )
    RedactSecrets().filter(record)
    assert "abcdefghijklmnop" not in record.getMessage()
    assert redact("session 1234 is RUNNING") == "session 1234 is RUNNING"
