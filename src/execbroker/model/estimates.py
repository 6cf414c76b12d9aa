"""What a learned estimate is kept under (see :mod:`execbroker.planning.estimates`)."""

from __future__ import annotations

from dataclasses import dataclass

from execbroker.model.records import ComponentRole

__all__ = ["EstimateKey"]


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
