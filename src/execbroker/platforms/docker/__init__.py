"""The local container platform: Docker or Podman on the broker's machine."""

from execbroker.platforms.docker.options import DockerSetup
from execbroker.platforms.docker.platform import DockerPlatform

__all__ = ["DockerPlatform", "DockerSetup"]
