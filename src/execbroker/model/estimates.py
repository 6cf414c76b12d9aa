"""What a learned estimate is kept under (see :mod:`execbroker.planning.estimates`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from execbroker.model import kinds
from execbroker.model.records import ComponentRole

__all__ = ["LEARNED_ROLES", "EstimateKey", "Observation", "executable_image"]

# The roles whose preparing time is learned; data follows its size instead.
LEARNED_ROLES = frozenset({ComponentRole.EXECUTABLE, ComponentRole.COMPUTE, ComponentRole.STORAGE})

# The longest image reference kept in a key (and in the database).
_MAX_IMAGE = 500


@dataclass(frozen=True, order=True)
class EstimateKey:
    """What a preparing time is learned for: platform, role, kind and image ("" for none).

    For the executable and the compute, ``kind`` and ``image`` are the executable's: a
    compute's start is an image pull and a container start (or a notebook's readiness).
    """

    platform: str
    role: ComponentRole
    kind: str
    image: str = ""


@dataclass(frozen=True)
class Observation:
    """One preparing step that became available: its key, how long it took, and when."""

    key: EstimateKey
    seconds: float
    observed: datetime


def executable_image(kind: str, spec: Mapping[str, Any]) -> str:
    """The image an executable runs, as its key names it: a container's first image location
    ("" for a notebook, whose image is the platform's).
    """
    if kind != kinds.EXECUTABLE_DOCKER:
        return ""
    image = spec.get("image")
    locations = image.get("locations") if isinstance(image, Mapping) else None
    if not isinstance(locations, list) or not locations:
        return ""
    return str(locations[0])[:_MAX_IMAGE]
