"""What the docker platform derives from the broker's settings: the values it computes."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from execbroker.config import Settings
from execbroker.model.ports import PortRange

__all__ = ["DockerSetup"]

_DEFAULT_PORTS = PortRange(20000, 29999)
_ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 - compared against, not bound to


@dataclass(frozen=True)
class DockerSetup:
    """The values :class:`~execbroker.platforms.docker.platform.DockerPlatform` computes from
    settings rather than reads from its :class:`~execbroker.config.DockerSettings` section.
    """

    # docker_root, or data_dir/docker.
    root: Path
    # docker_port_range, parsed.
    port_range: PortRange = _DEFAULT_PORTS
    # docker_connector_host, or the publish address (this machine's name for any address).
    connector_host: str = "127.0.0.1"
    # egress_allow (a broker-wide setting).
    egress_allow: tuple[str, ...] = ()
    # How stale the one container listing that every poll shares may be (from engine timing).
    listing_seconds: float = 1.0

    @classmethod
    def resolve(cls, settings: Settings) -> DockerSetup:
        docker = settings.docker
        connector_host = docker.connector_host
        if connector_host is None:
            address = docker.publish_address
            connector_host = socket.gethostname() if address in _ANY_ADDRESS else address
        return cls(
            root=docker.root or settings.data_dir / "docker",
            port_range=PortRange.parse(docker.port_range),
            connector_host=connector_host,
            egress_allow=tuple(settings.egress_allow),
            listing_seconds=min(settings.engine.poll_interval.total_seconds() / 2, 1.0),
        )
