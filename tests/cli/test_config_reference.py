"""docs/configuration.md is what the settings models say, and `execbroker config` shows them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from execbroker.cli import app
from execbroker.config import setting_fields
from execbroker.config_reference import render_markdown

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_the_committed_reference_matches_the_generator() -> None:
    assert DOC.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is out of date: run "
        ".venv/bin/execbroker config --markdown > docs/configuration.md"
    )


def test_every_setting_is_documented_with_its_variable_and_default() -> None:
    text = render_markdown()
    for _, name, _, _ in setting_fields():
        assert f"| `{name}` | `EXECBROKER_{name.upper()}` |" in text
    assert (
        "| `default_duration` | `EXECBROKER_DEFAULT_DURATION` "
        "| duration (seconds or ISO-8601) | `PT1H` |" in text
    )
    assert "`EXECBROKER_URL`" in text
    assert "`EXECBROKER_TOKEN`" in text


def test_config_shows_the_values_in_force_without_secrets(tmp_path: Path) -> None:
    shown = CliRunner().invoke(
        app,
        ["config"],
        env={
            "EXECBROKER_OFFER_TTL": "123",
            "EXECBROKER_SKAHA_CLIENT_SECRET": "very-secret-value",
            "EXECBROKER_DATABASE_URL": "postgresql+psycopg://user:hunter2@db/broker",
            "COLUMNS": "200",
        },
    )
    assert shown.exit_code == 0, shown.output
    assert "123" in shown.stdout
    assert "very-secret-value" not in shown.stdout
    assert "hunter2" not in shown.stdout
    markdown = CliRunner().invoke(app, ["config", "--markdown"])
    assert markdown.stdout == render_markdown()
