"""The container runtime's Docker Engine API (Docker or Podman), through aiodocker.

A storage-like class: it knows the calls, not the sessions. What the runtime refuses
becomes a :class:`PlatformError` whose message is fit to show the user; a runtime that
does not answer becomes a :class:`PlatformUnavailableError`, which the engine retries
without blaming the component. "No such object" is ``None``, not an error.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

import aiodocker
import aiohttp

from execbroker.model.printable import printable_output
from execbroker.platforms.base import PlatformError, PlatformUnavailableError

__all__ = ["ContainerRuntime"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_RETRY = timedelta(seconds=5)
_NOT_FOUND = 404
_NOT_MODIFIED = 304
_CONFLICT = 409
_LINE = 500  # characters kept of one output line


class ContainerRuntime:
    """One connection to the runtime; ``url`` None finds it as Docker clients do."""

    def __init__(self, url: str | None = None, *, timeout: float = 60) -> None:
        self._url = url
        self._timeout = timeout
        self._docker: aiodocker.Docker | None = None
        # Why the last call found no runtime; None once it answers again.
        self.unreachable: str | None = None

    @property
    def docker(self) -> aiodocker.Docker:
        """The client, created on first use (creating it makes no request)."""
        if self._docker is None:
            try:
                self._docker = aiodocker.Docker(
                    url=self._url,
                    timeout=aiohttp.ClientTimeout(total=self._timeout, connect=5),
                )
            except (AssertionError, ValueError) as failure:
                # aiodocker asserts when neither DOCKER_HOST nor a socket is there.
                raise PlatformUnavailableError(
                    "no container runtime found: set DOCKER_HOST or EXECBROKER_DOCKER_HOST",
                    retry_after=_RETRY,
                ) from failure
        return self._docker

    @property
    def address(self) -> str:
        """Where the runtime is, for logs and errors."""
        if self._url:
            return self._url
        return os.environ.get("DOCKER_HOST") or "the default Docker socket"

    async def close(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except aiodocker.DockerError:
            self.unreachable = None  # it answered, if only to refuse
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as failure:
            self.unreachable = (
                f"the container runtime at {self.address} does not answer "
                f"({type(failure).__name__})"
            )
            raise PlatformUnavailableError(self.unreachable, retry_after=_RETRY) from failure
        self.unreachable = None
        return result

    @staticmethod
    def _refused(action: str, failure: aiodocker.DockerError) -> PlatformError:
        message = str(failure.message or "").strip() or f"status {failure.status}"
        return PlatformError(f"the container runtime could not {action}: {message}")

    # -- images -----------------------------------------------------------------------

    async def image(self, reference: str) -> dict[str, Any] | None:
        try:
            return await self._call(self.docker.images.inspect(reference))
        except aiodocker.DockerError as failure:
            if failure.status == _NOT_FOUND:
                return None
            raise self._refused(f"inspect image {reference}", failure) from None

    async def pull(self, reference: str) -> None:
        try:
            await self._call(self.docker.images.pull(reference))
        except aiodocker.DockerError as failure:
            raise self._refused(f"pull {reference}", failure) from None

    # -- containers -------------------------------------------------------------------

    async def container(self, name: str) -> dict[str, Any] | None:
        """The container's inspect document, or None."""
        try:
            return await self._call(self.docker.containers.container(name).show())
        except aiodocker.DockerError as failure:
            if failure.status == _NOT_FOUND:
                return None
            raise self._refused(f"inspect container {name}", failure) from None

    async def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Every container (running or not) carrying all of ``labels``: the list entries."""
        filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
        try:
            found = await self._call(self.docker.containers.list(all=True, filters=filters))
        except aiodocker.DockerError as failure:
            raise self._refused("list containers", failure) from None
        return [dict(item._container) for item in found]

    async def create(self, name: str, config: dict[str, Any]) -> str | None:
        """Create the container; its id, or None when the name is taken (Docker answers
        409, Podman 500 "already in use") so that the caller adopts the one there.
        """
        try:
            created = await self._call(self.docker.containers.create(config, name=name))
        except aiodocker.DockerError as failure:
            if failure.status == _CONFLICT or "already in use" in str(failure.message):
                return None
            raise self._refused("create the container", failure) from None
        return str(created.id)

    async def start(self, ident: str) -> None:
        try:
            await self._call(self.docker.containers.container(ident).start())
        except aiodocker.DockerError as failure:
            if failure.status != _NOT_MODIFIED:  # already started
                raise self._refused("start the container", failure) from None

    async def stop(self, ident: str, *, seconds: float) -> None:
        """SIGTERM, then SIGKILL after ``seconds``; a stopped or missing one is no error."""
        wait = max(0, round(seconds))
        try:
            await self._call(
                self.docker.containers.container(ident).stop(t=wait, timeout=float(wait + 30))
            )
        except aiodocker.DockerError as failure:
            if failure.status not in (_NOT_MODIFIED, _NOT_FOUND):
                raise self._refused("stop the container", failure) from None

    async def remove(self, ident: str) -> None:
        """Remove it, running or not, with its anonymous volumes; a missing one is no error."""
        try:
            await self._call(
                self.docker.containers.container(ident).delete(
                    force=True, v=True, timeout=float(self._timeout)
                )
            )
        except aiodocker.DockerError as failure:
            if failure.status != _NOT_FOUND:
                raise self._refused("remove the container", failure) from None

    async def output(self, ident: str, *, lines: int) -> list[str]:
        """The last ``lines`` lines the container wrote (stdout and stderr)."""
        if lines <= 0:
            return []
        try:
            # The runtime may split one line into several log entries (Podman does): ask
            # for more entries than lines, join them, then cut.
            chunks = await self._call(
                self.docker.containers.container(ident).log(
                    stdout=True, stderr=True, tail=lines * 4, timeout=float(self._timeout)
                )
            )
        except aiodocker.DockerError as failure:
            logger.warning(
                "could not read a container's output",
                extra={"container": ident, "error": str(failure.message)},
            )
            return []
        # A message, not a log store: long lines are cut. A program's bytes: a NUL or an
        # ESC is kept escaped (\x00, \x1b), never as is (aiodocker has already dropped
        # what is not UTF-8).
        kept = [printable_output(line) for line in "".join(chunks).splitlines()[-lines:]]
        return [line if len(line) <= _LINE else line[: _LINE - 1] + "…" for line in kept]
