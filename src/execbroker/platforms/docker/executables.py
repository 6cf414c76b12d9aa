"""Docker-container executables: the image must be on the machine, pulled when allowed,
and have the requested digest. Nothing to release: images are a cache sessions share.

The compute resource asks :meth:`Executables.local_image` again when it creates its
container, so that it runs the very image checked here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from execbroker.config import DockerSettings
from execbroker.platforms.base import PlatformNote, PlatformState, PlatformStatus, Work
from execbroker.platforms.docker.images import digest_matches, image_digests, registry_of
from execbroker.platforms.docker.runtime import ContainerRuntime
from execbroker.platforms.docker.tasks import ComponentTasks

__all__ = ["Executables"]

_PULL_CHECK = timedelta(seconds=1)


class Executables:
    """Checks and pulls the images of docker-container executables."""

    def __init__(
        self, settings: DockerSettings, runtime: ContainerRuntime, tasks: ComponentTasks
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._tasks = tasks

    async def status(self, work: Work) -> PlatformStatus:
        """Present (and with the requested digest): READY; else pull it where allowed.

        Preparing and polling are the same question: is the image here yet?
        """
        if self._tasks.busy(work.uuid):
            return PlatformStatus(PlatformState.PREPARING, next_check=_PULL_CHECK)
        pulled, failure = self._tasks.finished(work.uuid)
        if failure is not None:
            return PlatformStatus(PlatformState.FAILED, str(failure))
        image = work.component.spec.get("image") or {}
        locations = [str(item).strip() for item in image.get("locations") or []]
        locations = [item for item in locations if item]
        digest = image.get("digest")
        found = await self.local_image(locations, digest)
        if isinstance(found, PlatformStatus):
            return found
        if found is not None:
            location, attributes = found
            return PlatformStatus(
                PlatformState.READY,
                notes=(
                    PlatformNote(
                        "Image {image} is on the platform as {id}",
                        {"image": location, "id": str(attributes.get("Id", "?"))},
                    ),
                ),
            )
        if pulled:
            return PlatformStatus(
                PlatformState.FAILED, f"pulled {', '.join(locations)} yet found no such image"
            )
        pullable = [item for item in locations if self._may_pull(item)]
        if not pullable:
            reason = (
                "pulling images is disabled"
                if self._settings.pull == "never"
                else "pulling is allowed only from " + ", ".join(self._settings.pull_registries)
            )
            return PlatformStatus(
                PlatformState.FAILED,
                f"image {', '.join(locations) or '(none)'} is not on this machine and {reason}",
            )
        self._tasks.spawn(work.uuid, self._runtime.pull(pullable[0]))
        return PlatformStatus(PlatformState.PREPARING, next_check=_PULL_CHECK)

    def _may_pull(self, location: str) -> bool:
        if self._settings.pull == "never":
            return False
        allowed = self._settings.pull_registries
        return not allowed or registry_of(location) in {r.lower() for r in allowed}

    async def local_image(
        self, locations: list[str], digest: str | None
    ) -> tuple[str, dict[str, Any]] | PlatformStatus | None:
        """The first location present here that has ``digest`` (when given); a FAILED status
        when images are present but none has it; None when none is present.
        """
        mismatch: tuple[str, dict[str, Any]] | None = None
        for location in locations:
            attributes = await self._runtime.image(location)
            if attributes is None:
                continue
            if digest is None or digest_matches(attributes, digest):
                return location, attributes
            mismatch = mismatch or (location, attributes)
        if mismatch is not None:
            location, attributes = mismatch
            return PlatformStatus(
                PlatformState.FAILED,
                f"image {location} has digest {', '.join(image_digests(attributes))}, "
                f"not the requested {digest}",
            )
        return None
