"""The docker platform's settings, gathered from the broker's settings."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from execbroker.config import Settings
from execbroker.platforms.docker.ports import PortRange

__all__ = ["DockerOptions"]

_DEFAULT_PORTS = PortRange(20000, 29999)
_ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, not bound to


@dataclass(frozen=True)
class DockerOptions:
    """What :class:`~execbroker.platforms.docker.platform.DockerPlatform` needs to know;
    each field is the setting ``docker_<name>`` described in ``config.py``."""

    root: Path
    host: str | None = None
    instance: str | None = None
    pull: bool = True
    pull_registries: tuple[str, ...] = ()
    network: str = "bridge"
    publish_address: str = "127.0.0.1"
    port_range: PortRange = _DEFAULT_PORTS
    connector_host: str = "127.0.0.1"
    stop_seconds: float = 5
    pids_limit: int | None = 1024
    log_lines: int = 20
    max_data_bytes: int = 10 * 2**30
    data_timeout: float = 30
    file_roots: tuple[Path, ...] = ()
    egress_allow: tuple[str, ...] = ()
    # How stale the one container listing that every poll shares may be.
    listing_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DockerOptions:
        connector_host = settings.docker_connector_host
        if connector_host is None:
            address = settings.docker_publish_address
            connector_host = socket.gethostname() if address in _ANY_ADDRESS else address
        return cls(
            root=settings.docker_root or settings.data_dir / "docker",
            host=settings.docker_host,
            instance=settings.docker_instance,
            pull=settings.docker_pull == "missing",
            pull_registries=tuple(settings.docker_pull_registries),
            network=settings.docker_network,
            publish_address=settings.docker_publish_address,
            port_range=PortRange.parse(settings.docker_port_range),
            connector_host=connector_host,
            stop_seconds=settings.docker_stop_seconds,
            pids_limit=settings.docker_pids_limit,
            log_lines=settings.docker_log_lines,
            max_data_bytes=settings.docker_max_data_bytes,
            data_timeout=settings.docker_data_timeout,
            file_roots=tuple(settings.docker_file_roots),
            egress_allow=tuple(settings.egress_allow),
            listing_seconds=min(settings.poll_interval / 2, 1.0),
        )
