"""The local container platform: Docker or Podman on the broker's machine."""

from execbroker.platforms.docker.options import DockerOptions
from execbroker.platforms.docker.platform import DockerPlatform

__all__ = ["DockerOptions", "DockerPlatform"]
