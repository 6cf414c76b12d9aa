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
    each field is the setting ``docker_<name>`` described in ``config.py``.
    """

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
        connector_host = settings.docker.connector_host
        if connector_host is None:
            address = settings.docker.publish_address
            connector_host = socket.gethostname() if address in _ANY_ADDRESS else address
        return cls(
            root=settings.docker.root or settings.data_dir / "docker",
            host=settings.docker.host,
            instance=settings.docker.instance,
            pull=settings.docker.pull == "missing",
            pull_registries=tuple(settings.docker.pull_registries),
            network=settings.docker.network,
            publish_address=settings.docker.publish_address,
            port_range=PortRange.parse(settings.docker.port_range),
            connector_host=connector_host,
            stop_seconds=settings.docker.stop_seconds.total_seconds(),
            pids_limit=settings.docker.pids_limit,
            log_lines=settings.docker.log_lines,
            max_data_bytes=settings.docker.max_data_bytes,
            data_timeout=settings.docker.data_timeout.total_seconds(),
            file_roots=tuple(settings.docker.file_roots),
            egress_allow=tuple(settings.egress_allow),
            listing_seconds=min(settings.engine.poll_interval.total_seconds() / 2, 1.0),
        )
