"""Image references: which registry one names, and whether an image has a given digest."""

from __future__ import annotations

from typing import Any

__all__ = ["digest_matches", "image_digests", "registry_of"]

_DEFAULT_REGISTRY = "docker.io"


def registry_of(reference: str) -> str:
    """The registry an image reference pulls from, as Docker reads it: the first path
    segment when it looks like a host (has a dot or a port, or is localhost), else
    Docker Hub.
    """
    first, _, rest = reference.strip().partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return _DEFAULT_REGISTRY


def image_digests(image: dict[str, Any]) -> list[str]:
    """Every digest the image is known by: its id (the config digest), and the manifest
    digests of the repositories it came from.
    """
    found = [str(image.get("Id") or "")]
    found += [str(item).rpartition("@")[2] for item in image.get("RepoDigests") or []]
    if image.get("Digest"):  # Podman's own field
        found.append(str(image["Digest"]))
    return [digest.lower() for digest in found if digest]


def digest_matches(image: dict[str, Any], digest: str) -> bool:
    """Whether ``image`` (the runtime's inspection of it) has the content digest ``digest``."""
    return digest.strip().lower() in image_digests(image)
