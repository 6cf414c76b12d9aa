"""Operators configure the broker by environment variables or a file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from execbroker.config import load_settings


def test_environment_and_file_with_the_environment_winning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text("offer_ttl: 60\nmax_offers: 2\ndata_dir: /srv/broker\n", encoding="utf-8")
    monkeypatch.setenv("EXECBROKER_CONFIG_FILE", str(config))
    monkeypatch.setenv("EXECBROKER_OFFER_TTL", "30")

    settings = load_settings()

    assert settings.planning.offer_ttl == timedelta(seconds=30)
    assert settings.planning.max_offers == 2
    assert settings.effective_database_url == "sqlite+aiosqlite:////srv/broker/execbroker.db"


def test_defaults_are_the_embedded_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXECBROKER_CONFIG_FILE", "EXECBROKER_OFFER_TTL", "EXECBROKER_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.platform == "mock"
    assert settings.planning.offer_ttl == timedelta(seconds=300)
    assert settings.effective_database_url == "sqlite+aiosqlite:///var/execbroker.db"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXECBROKER_OFFER_TTL", "-5"),
        ("EXECBROKER_PLATFORM", "cloud"),
        ("EXECBROKER_TRUSTED_PROXIES", '["not-an-address"]'),
    ],
)
def test_bad_settings_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as failure:
        load_settings()
    assert name.removeprefix("EXECBROKER_").lower() in str(failure.value)


def test_unknown_keys_in_the_config_file_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text("ofer_ttl: 60\n", encoding="utf-8")
    monkeypatch.setenv("EXECBROKER_CONFIG_FILE", str(config))
    with pytest.raises(ValidationError, match="ofer_ttl"):
        load_settings()
