"""Where the client finds its broker and token."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from execbroker.client import resolve_connection


@pytest.fixture
def local_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    token = "local-token-0123456789abcdef"
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump({"tokens": {token: "local"}}))
    monkeypatch.setenv("EXECBROKER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("EXECBROKER_TOKEN", raising=False)
    monkeypatch.delenv("EXECBROKER_URL", raising=False)
    monkeypatch.delenv("EXECBROKER_TOKENS_FILE", raising=False)
    return token


def test_a_local_broker_token_comes_from_its_tokens_file(local_tokens: str) -> None:
    assert resolve_connection().url == "http://127.0.0.1:8080"
    # Sent only to a port that this user's own process listens on (see test_loopback).
    with socket.socket() as own:
        own.bind(("127.0.0.1", 0))
        own.listen()
        found = resolve_connection(f"http://127.0.0.1:{own.getsockname()[1]}")
    assert found.token == local_tokens
    assert found.token_source.endswith("tokens.yaml")
    assert local_tokens not in repr(found)


def test_environment_and_arguments_win(local_tokens: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECBROKER_URL", "http://localhost:9000/")
    monkeypatch.setenv("EXECBROKER_TOKEN", "from-the-environment-0123")
    found = resolve_connection()
    assert (found.url, found.token, found.token_source) == (
        "http://localhost:9000",
        "from-the-environment-0123",
        "environment",
    )
    given = resolve_connection("http://127.0.0.1:1234", "given-token-0123456789")
    assert (given.url, given.token) == ("http://127.0.0.1:1234", "given-token-0123456789")


def test_the_local_token_never_goes_to_a_remote_broker(local_tokens: str) -> None:
    found = resolve_connection("https://broker.example.org")
    assert found.token is None
    assert found.token_source == "none"
