"""Skaha's own default timings (issue 17, item 3): minutes, not the mock platform's seconds,
unless the operator set the estimates; mock and docker keep theirs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from execbroker.config import Settings
from execbroker.model import kinds
from execbroker.model.records import ComponentRole
from execbroker.planning.profile import profile_from_settings

S = timedelta(seconds=1)


def _settings(**flat: Any) -> Settings:
    """Settings by their flat names, as an operator writes them."""
    return Settings(**flat)


def _compute_times(settings: Settings) -> tuple[timedelta, timedelta]:
    """The planned preparing time of a container's compute and of a notebook's."""
    profile = profile_from_settings(settings)
    container = profile.preparing(ComponentRole.COMPUTE, kind=kinds.EXECUTABLE_DOCKER)
    notebook = profile.preparing(ComponentRole.COMPUTE, kind=kinds.EXECUTABLE_JUPYTER)
    return container.duration, notebook.duration


def test_skaha_plans_an_image_pull_and_a_notebook_readiness_in_minutes() -> None:
    settings = Settings(platform="skaha")
    slack = settings.planning.slack
    assert _compute_times(settings) == (120 * S + slack, 180 * S + slack)
    assert settings.effective_budget_slack == 600 * S
    assert settings.skaha.queue_budget == 30 * 60 * S


def test_skaha_defaults_can_be_set() -> None:
    settings = _settings(
        platform="skaha",
        skaha_compute_estimate=60,
        skaha_notebook_estimate=400,
        skaha_budget_slack=30,
        planning_slack=0,
    )
    assert _compute_times(settings) == (60 * S, 400 * S)
    assert settings.effective_budget_slack == 30 * S


def test_the_operators_estimates_win_on_skaha() -> None:
    settings = _settings(
        platform="skaha",
        prepare_estimates={"compute": 7, "executable": 1, "storage": 1, "data": 1},
        budget_slack=9,
        planning_slack=0,
    )
    assert _compute_times(settings) == (7 * S, 7 * S)
    assert settings.effective_budget_slack == 9 * S


def test_mock_and_docker_keep_their_seconds() -> None:
    for platform in ("mock", "docker"):
        settings = _settings(platform=platform, planning_slack=0)
        assert _compute_times(settings) == (5 * S, 5 * S), platform
        assert settings.effective_budget_slack == 60 * S, platform
