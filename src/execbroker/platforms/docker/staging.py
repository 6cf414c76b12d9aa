"""Staging a simple data resource: fetch its ``http(s)://`` or ``file://`` location into a
directory of its storage, streamed, size-capped, with the SHA-256 of what was written.

Downloads go through :func:`execbroker.egress.fetch` on a client whose transport applies the
egress policy: the name is resolved once and every address checked, the connection goes to
the checked address, and each redirect (at most five) is checked again.

The file is written as ``.<name>.part`` and renamed when complete, so a half-written file
never looks staged. Locations are shown without credentials, query or fragment.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

import httpx

from execbroker.egress import fetch
from execbroker.exceptions import EgressRefusedError
from execbroker.platforms.base import PlatformError

__all__ = ["Staged", "file_location_allowed", "public_location", "stage", "staged_name"]

_CHUNK = 1 << 20  # bytes written to disk at a time
_SCHEMES = ("http", "https", "file")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class Staged:
    """A data file staged into its storage: its name there, its size and its SHA-256."""

    name: str  # the file's name in the data directory
    size: int
    sha256: str


def public_location(location: str) -> str:
    """The location fit for messages and logs: no user, password, query or fragment."""
    parts = urlsplit(location.strip())
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def staged_name(location: str) -> str:
    """The staged file's name: the last segment of the location's path, made safe."""
    segment = unquote(urlsplit(location.strip()).path.rstrip("/").rsplit("/", 1)[-1])
    name = _UNSAFE.sub("_", segment).strip("._")
    return name or "data"


def file_location_allowed(location: str, roots: list[Path]) -> Path | None:
    """The local file a ``file://`` location names, if it lies under one of ``roots``."""
    parts = urlsplit(location.strip())
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = Path(url2pathname(parts.path))
    try:
        resolved = path.resolve(strict=False)
    except (OSError, RuntimeError):
        return None
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    return None


async def stage(
    location: str,
    directory: Path,
    *,
    http: httpx.AsyncClient,
    cap: int,
    file_roots: list[Path],
) -> Staged:
    """Fetch ``location`` into ``directory``; raises :class:`PlatformError` saying why not."""
    scheme = urlsplit(location.strip()).scheme.lower()
    if scheme not in _SCHEMES:
        raise PlatformError(f"cannot stage {public_location(location)}: use http, https or file")
    name = staged_name(location)
    await asyncio.to_thread(directory.mkdir, mode=0o700, parents=True, exist_ok=True)
    partial = directory / f".{name}.part"
    try:
        if scheme == "file":
            size, digest = await _copy_file(location, partial, cap=cap, roots=file_roots)
        else:
            size, digest = await _download(location, partial, http=http, cap=cap)
        await asyncio.to_thread(partial.replace, directory / name)
    finally:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
    return Staged(name=name, size=size, sha256=digest)


async def _download(
    location: str, target: Path, *, http: httpx.AsyncClient, cap: int
) -> tuple[int, str]:
    shown = public_location(location)
    digest = hashlib.sha256()
    size = 0
    try:
        async with fetch(http, location.strip()) as response:
            if response.status_code >= 400:
                raise PlatformError(
                    f"downloading {shown} failed: HTTP {response.status_code} "
                    f"{response.reason_phrase}".rstrip()
                )
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > cap:
                raise PlatformError(
                    f"{shown} is {int(declared)} bytes, more than the {cap} bytes allowed"
                )
            stream = await asyncio.to_thread(_create, target)
            try:
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise PlatformError(f"{shown} is larger than the {cap} bytes allowed")
                    digest.update(chunk)
                    buffer += chunk
                    if len(buffer) >= _CHUNK:
                        await asyncio.to_thread(stream.write, bytes(buffer))
                        buffer.clear()
                await asyncio.to_thread(_finish, stream, bytes(buffer))
            finally:
                await asyncio.to_thread(stream.close)
    except EgressRefusedError as refused:
        raise PlatformError(f"downloading {shown} refused: {refused}") from None
    except httpx.TimeoutException:
        raise PlatformError(f"downloading {shown} timed out") from None
    except httpx.HTTPError as failure:
        raise PlatformError(f"downloading {shown} failed: {type(failure).__name__}") from None
    return size, digest.hexdigest()


def _create(target: Path) -> BinaryIO:
    """``target`` opened for writing, private to the broker's user (the containers run as
    that user: see :func:`.compute.container_user`).
    """
    return os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")


def _finish(stream: BinaryIO, rest: bytes) -> None:
    stream.write(rest)
    stream.flush()


async def _copy_file(
    location: str, target: Path, *, cap: int, roots: list[Path]
) -> tuple[int, str]:
    shown = public_location(location)
    source = file_location_allowed(location, roots)
    if source is None:
        raise PlatformError(f"{shown} is not under a directory this broker may copy from")
    return await asyncio.to_thread(_copy, source, target, cap, shown)


def _copy(source: Path, target: Path, cap: int, shown: str) -> tuple[int, str]:
    if not source.is_file():
        raise PlatformError(f"{shown} is not a file")
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as reading, _create(target) as writing:
        while chunk := reading.read(_CHUNK):
            size += len(chunk)
            if size > cap:
                raise PlatformError(f"{shown} is larger than the {cap} bytes allowed")
            digest.update(chunk)
            writing.write(chunk)
    return size, digest.hexdigest()
