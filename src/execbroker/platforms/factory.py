"""The platform named in settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from execbroker.background import BackgroundTaskManager
from execbroker.clock import Clock
from execbroker.config import Settings
from execbroker.platforms.base import Platform
from execbroker.platforms.mock import MockPlatform

if TYPE_CHECKING:
    from execbroker.platforms.skaha.credentials import CredentialStore

__all__ = ["build_platform"]


def build_platform(
    settings: Settings,
    clock: Clock,
    background: BackgroundTaskManager,
    *,
    credential_store: CredentialStore | None = None,
) -> Platform:
    """The platform ``settings`` name; its long-lived tasks run under ``background``;
    ``credential_store`` keeps the users' Skaha credentials in per-user mode.
    """
    match settings.platform:
        case "mock":
            return MockPlatform(
                ledger=settings.data_dir / "mock-ledger.jsonl",
                clock=clock,
                timings=settings.mock,
            )
        case "skaha":
            from execbroker.platforms.skaha import (  # noqa: PLC0415 - only when chosen
                SkahaOptions,
                SkahaPlatform,
            )

            return SkahaPlatform(
                SkahaOptions.from_settings(settings),
                clock=clock,
                background=background,
                credential_store=credential_store,
            )
        case "docker":
            # Imported here: the Docker client library is only loaded when it is used.
            from execbroker.platforms.docker import DockerPlatform, DockerSetup  # noqa: PLC0415

            return DockerPlatform(
                settings.docker, DockerSetup.resolve(settings), tasks=background.group("docker")
            )
        case _:
            raise ValueError(f"platform {settings.platform!r} is not available yet")
