"""The client finds the local broker's tokens file where the broker puts it, without its settings.

:mod:`execbroker.localtoken` reads three of the broker's settings on its own (the client
library imports nothing of the server); these tests hold it to the broker's answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from execbroker.config import Settings
from execbroker.localtoken import LocalTokenSettings, find_local_token, local_token

_VARIABLES = (
    "EXECBROKER_DATA_DIR",
    "EXECBROKER_TOKENS_FILE",
    "EXECBROKER_DEFAULT_OWNER",
    "EXECBROKER_CONFIG_FILE",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


def agree() -> tuple[Path, str]:
    ours, broker = LocalTokenSettings(), Settings()
    assert ours.effective_tokens_file == broker.effective_tokens_file
    assert ours.default_owner == broker.auth.default_owner
    return ours.effective_tokens_file, ours.default_owner


def test_the_defaults_are_the_brokers() -> None:
    assert agree() == (Path("var") / "tokens.yaml", "local")


def test_the_environment_moves_the_file_and_names_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXECBROKER_DATA_DIR", str(tmp_path))
    assert agree() == (tmp_path / "tokens.yaml", "local")
    monkeypatch.setenv("EXECBROKER_TOKENS_FILE", str(tmp_path / "elsewhere.yaml"))
    monkeypatch.setenv("EXECBROKER_DEFAULT_OWNER", "dana")
    assert agree() == (tmp_path / "elsewhere.yaml", "dana")


def test_the_config_file_counts_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "d"), "default_owner": "erin"}))
    monkeypatch.setenv("EXECBROKER_CONFIG_FILE", str(config))
    assert agree() == (tmp_path / "d" / "tokens.yaml", "erin")
    monkeypatch.setenv("EXECBROKER_DEFAULT_OWNER", "fay")
    assert agree() == (tmp_path / "d" / "tokens.yaml", "fay")


def test_the_local_users_first_token_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.yaml"
    tokens = {"someone-elses-token-0123": "other", "the-local-token-0123456": "local"}
    path.write_text(yaml.safe_dump({"tokens": tokens}))
    monkeypatch.setenv("EXECBROKER_DATA_DIR", str(tmp_path))
    assert find_local_token() == ("the-local-token-0123456", path)
    assert local_token(path, user="other") == "someone-elses-token-0123"
    assert local_token(path, user="nobody") is None


@pytest.mark.parametrize("text", ["", "tokens: [a, b]\n", "just text\n", "tokens: {\n"])
def test_a_file_that_does_not_read_gives_no_token(tmp_path: Path, text: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    assert local_token(path, user="local") is None
    assert local_token(tmp_path / "missing.yaml", user="local") is None
