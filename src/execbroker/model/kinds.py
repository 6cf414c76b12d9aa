"""Component ``kind`` URIs: the v1.0 form we write, and the older form we also read.

v1.0:   ``https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/<group>/<name>.yaml``
older:  ``https://www.purl.org/ivoa.net/EB/schema/v1.0/types/<group>/<name>-1.0``
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "COMPUTE_SIMPLE",
    "COST_ABSTRACT",
    "COST_SIMPLE_MINMAX",
    "DATA_IVOA",
    "DATA_KINDS",
    "DATA_RUCIO",
    "DATA_S3",
    "DATA_SIMPLE",
    "DATA_SKAO",
    "EXECUTABLE_DOCKER",
    "EXECUTABLE_JUPYTER",
    "EXECUTABLE_KINDS",
    "EXECUTABLE_SINGULARITY",
    "METRIC_ABSTRACT",
    "METRIC_SIMPLE_MINMAX",
    "OFFERSET_EXECUTION",
    "SESSION_SCHEDULED",
    "SESSION_SIMPLE",
    "STORAGE_SIMPLE",
    "VOLUME_SIMPLE",
    "accepted_forms",
    "kind_of",
    "kind_or",
    "kind_uri",
    "normalize_kind",
    "short_kind",
]

KIND_PREFIX: Final = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
LEGACY_PREFIX: Final = "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/"
LEGACY_SUFFIX: Final = "-1.0"


def kind_uri(group: str, name: str) -> str:
    """The v1.0 ``kind`` URI of the type ``name`` in ``group`` (``executable``, ``data``…)."""
    return f"{KIND_PREFIX}{group}/{name}.yaml"


EXECUTABLE_DOCKER: Final = kind_uri("executable", "docker-container")
EXECUTABLE_JUPYTER: Final = kind_uri("executable", "jupyter-notebook")
EXECUTABLE_SINGULARITY: Final = kind_uri("executable", "singularity-container")
COMPUTE_SIMPLE: Final = kind_uri("compute", "simple-compute-resource")
STORAGE_SIMPLE: Final = kind_uri("storage", "simple-storage-resource")
VOLUME_SIMPLE: Final = kind_uri("volume", "simple-volume-mount")
DATA_SIMPLE: Final = kind_uri("data", "simple-data-resource")
DATA_S3: Final = kind_uri("data", "S3-data-resource")
DATA_IVOA: Final = kind_uri("data", "ivoa-data-resource")
DATA_RUCIO: Final = kind_uri("data", "rucio-data-resource")
DATA_SKAO: Final = kind_uri("data", "skao-data-resource")
COST_ABSTRACT: Final = kind_uri("costs", "abstract-cost-item")
COST_SIMPLE_MINMAX: Final = kind_uri("costs", "simple-minmax-float-cost")
METRIC_ABSTRACT: Final = kind_uri("metrics", "abstract-metric-item")
METRIC_SIMPLE_MINMAX: Final = kind_uri("metrics", "simple-minmax-float-metric")
SESSION_SIMPLE: Final = kind_uri("session", "simple-execution-session")
SESSION_SCHEDULED: Final = kind_uri("session", "scheduled-execution-session")
OFFERSET_EXECUTION: Final = kind_uri("offerset", "execution-offerset")

EXECUTABLE_KINDS: Final = (EXECUTABLE_DOCKER, EXECUTABLE_JUPYTER, EXECUTABLE_SINGULARITY)
DATA_KINDS: Final = (DATA_SIMPLE, DATA_S3, DATA_IVOA, DATA_RUCIO, DATA_SKAO)

_KNOWN: Final = frozenset(
    {
        *EXECUTABLE_KINDS,
        COMPUTE_SIMPLE,
        STORAGE_SIMPLE,
        VOLUME_SIMPLE,
        *DATA_KINDS,
        COST_ABSTRACT,
        COST_SIMPLE_MINMAX,
        METRIC_ABSTRACT,
        METRIC_SIMPLE_MINMAX,
        SESSION_SIMPLE,
        SESSION_SCHEDULED,
        OFFERSET_EXECUTION,
    }
)
# Lower-cased lookup, because older clients were not consistent about "S3" vs "s3".
_BY_LOWER: Final = {kind.lower(): kind for kind in _KNOWN}


def accepted_forms(kind: str) -> list[str]:
    """The spellings of the v1.0 URI ``kind`` a document may carry: v1.0 and the older one."""
    group_name = kind.removeprefix(KIND_PREFIX).removesuffix(".yaml")
    return [kind, f"{LEGACY_PREFIX}{group_name}{LEGACY_SUFFIX}"]


def normalize_kind(value: str) -> str:
    """The v1.0 URI for ``value`` when it names a known kind in either form; else ``value``."""
    text = value.strip()
    if text.startswith(LEGACY_PREFIX) and text.endswith(LEGACY_SUFFIX):
        group_name = text[len(LEGACY_PREFIX) : -len(LEGACY_SUFFIX)]
        text = f"{KIND_PREFIX}{group_name}.yaml"
    return _BY_LOWER.get(text.lower(), text)


def kind_of(value: Any) -> str | None:
    """The normalised kind of a raw document or model, used as a union discriminator."""
    raw = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return normalize_kind(raw) if isinstance(raw, str) else None


def kind_or(default: str) -> Callable[[Any], str]:
    """A discriminator that takes ``default`` when the document names no kind at all."""

    def discriminate(value: Any) -> str:
        return kind_of(value) or default

    discriminate.__name__ = "kind_of"
    return discriminate


def short_kind(kind: str) -> str:
    """``…/kinds/executable/docker-container.yaml`` → ``docker-container``, for messages."""
    if kind.startswith(KIND_PREFIX) and kind.endswith(".yaml"):
        return kind.rsplit("/", 1)[-1].removesuffix(".yaml")
    return kind
