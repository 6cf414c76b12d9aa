"""Pydantic models of every type in the Calycopis-openapi v1.0 schema.

Component unions are discriminated on ``kind``; both the v1.0 URIs and the older
``…/EB/schema/v1.0/types/…-1.0`` form are read, and only the v1.0 form is written.
Unknown fields are refused, so that a typo (``core:`` for ``cores:``) is reported rather
than silently ignored. Instants, durations and intervals stay ISO-8601 strings here; the
planner parses them, so that it can name a bad one in its answer.

Serialise with :func:`dump`, which omits nulls as the contract asks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from execbroker.model import kinds
from execbroker.model.phases import (
    ComponentPhase,
    ConnectorStatus,
    MessageLevel,
    OfferResult,
    SessionPhase,
)

__all__ = [
    "AbstractCostItem",
    "AbstractMetricItem",
    "ComponentMetadata",
    "ComputeResource",
    "CostItem",
    "DataResource",
    "DockerContainer",
    "EnumValueOption",
    "EnumValueUpdate",
    "ErrorResponse",
    "Executable",
    "ExecutionRequest",
    "ExecutionSession",
    "IntegerDeltaOption",
    "IntegerDeltaUpdate",
    "IntegerValueOption",
    "IntegerValueUpdate",
    "IvoaDataResource",
    "JupyterNotebook",
    "LifecycleSchedule",
    "MessageItem",
    "MetricItem",
    "MinMax",
    "OfferSetResponse",
    "Option",
    "RucioDataResource",
    "S3DataResource",
    "SessionConnector",
    "SimpleComputeResource",
    "SimpleDataResource",
    "SimpleStorageResource",
    "SimpleVolumeMount",
    "SingularityContainer",
    "SkaoDataResource",
    "StorageResource",
    "StringValueOption",
    "StringValueUpdate",
    "Update",
    "VolumeMount",
    "dump",
]

# int64 bounds, as the schema's ``format: int64`` promises clients.
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
# A number of bytes. The schema gives DataLink's content_length int32, but files of more
# than 2 GiB are common, so sizes are read as int64 (DataLink's own type for it is long).
ByteSize = Annotated[int, Field(ge=0, le=2**63 - 1)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _document_kind(schema: dict[str, Any], cls: type) -> None:
    """Name the one ``kind`` a model takes in its JSON schema. The unions of these models are
    ``oneOf`` (their discriminator is a function, so the schema has no mapping), and without
    this a notebook would match JupyterNotebook and SingularityContainer alike.
    """
    kind = getattr(cls, "KIND", None)
    if kind is not None and "kind" in schema.get("properties", {}):
        schema["properties"]["kind"]["enum"] = kinds.accepted_forms(kind)


class _Kinded(WireModel):
    """A model whose ``kind`` is one URI (``KIND``), read in the v1.0 or the older form."""

    model_config = ConfigDict(json_schema_extra=_document_kind)

    KIND: ClassVar[str | None] = None
    kind: str

    @field_validator("kind", mode="before")
    @classmethod
    def _normalise_kind(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        normalised = kinds.normalize_kind(value)
        if cls.KIND is not None and normalised != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND}")
        return normalised


def dump(model: BaseModel) -> dict[str, Any]:
    """The wire document for ``model``: JSON types, nulls omitted."""
    return model.model_dump(mode="json", exclude_none=True, by_alias=True)


# --------------------------------------------------------------------------- messages


class MessageItem(WireModel):
    """A message in the Message Templates model: ``message`` is ``template`` with ``values``."""

    kind: str | None = None
    time: datetime | None = None
    level: MessageLevel | None = None
    template: str | None = None
    values: dict[str, str] | None = None
    message: str | None = None


# --------------------------------------------------------------------------- options


class _OptionBase(WireModel):
    path: str


class StringValueOption(_OptionBase):
    """An update a client may make to a string field: its ``path`` and the ``pattern`` it must
    match.
    """

    kind: Literal["uri:string-value-option"] = "uri:string-value-option"
    pattern: str | None = None


class EnumValueOption(_OptionBase):
    """An update a client may make: set the field at ``path`` to one of ``values``."""

    kind: Literal["uri:enum-value-option"] = "uri:enum-value-option"
    values: list[str]


class IntegerValueOption(_OptionBase):
    """An update a client may make: set the integer at ``path`` between ``min`` and ``max``."""

    kind: Literal["uri:integer-value-option"] = "uri:integer-value-option"
    min: Int64 | None = None
    max: Int64 | None = None
    units: str | None = None


class IntegerDeltaOption(_OptionBase):
    """An update a client may make: change the integer at ``path`` by a delta between ``min`` and
    ``max``.
    """

    kind: Literal["uri:integer-delta-option"] = "uri:integer-delta-option"
    min: Int64 | None = None
    max: Int64 | None = None
    units: str | None = None


Option = Annotated[
    StringValueOption | EnumValueOption | IntegerValueOption | IntegerDeltaOption,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- updates


class _UpdateBase(WireModel):
    path: str


class StringValueUpdate(_UpdateBase):
    """A client's update: set the string at ``path`` to ``value``."""

    kind: Literal["uri:string-value-update"] = "uri:string-value-update"
    value: str


class EnumValueUpdate(_UpdateBase):
    """A client's update: set the field at ``path`` to ``value``, one of the option's values."""

    kind: Literal["uri:enum-value-update"] = "uri:enum-value-update"
    value: str


class IntegerValueUpdate(_UpdateBase):
    """A client's update: set the integer at ``path`` to ``value``."""

    kind: Literal["uri:integer-value-update"] = "uri:integer-value-update"
    value: Int64
    units: str | None = None


class IntegerDeltaUpdate(_UpdateBase):
    """A client's update: change the integer at ``path`` by ``delta`` (e.g. extend a session)."""

    kind: Literal["uri:integer-delta-update"] = "uri:integer-delta-update"
    delta: Int64
    units: str | None = None


Update = Annotated[
    StringValueUpdate | EnumValueUpdate | IntegerValueUpdate | IntegerDeltaUpdate,
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- costs, metrics


class AbstractCostItem(_Kinded):
    """A cost of any type, with no amount: what a client may ask to know."""

    KIND: ClassVar[str | None] = kinds.COST_ABSTRACT
    kind: str
    type: str | None = None
    description: str | None = None


class SimpleMinMaxFloatCost(_Kinded):
    """A cost of ``type`` between ``min`` and ``max``: a limit in a request, an estimate in an
    offer.
    """

    KIND: ClassVar[str | None] = kinds.COST_SIMPLE_MINMAX
    kind: str
    type: str | None = None
    description: str | None = None
    min: float | None = None
    max: float | None = None


class AbstractMetricItem(_Kinded):
    """A metric of any type, with no amount."""

    KIND: ClassVar[str | None] = kinds.METRIC_ABSTRACT
    kind: str
    type: str | None = None
    description: str | None = None


class SimpleMinMaxFloatMetric(_Kinded):
    """A metric of ``type`` between ``min`` and ``max``: a minimum asked for, or what an offer
    gives.
    """

    KIND: ClassVar[str | None] = kinds.METRIC_SIMPLE_MINMAX
    kind: str
    type: str | None = None
    description: str | None = None
    min: float | None = None
    max: float | None = None


CostItem = Annotated[
    Annotated[AbstractCostItem, Tag(kinds.COST_ABSTRACT)]
    | Annotated[SimpleMinMaxFloatCost, Tag(kinds.COST_SIMPLE_MINMAX)],
    Discriminator(kinds.kind_of),
]
MetricItem = Annotated[
    Annotated[AbstractMetricItem, Tag(kinds.METRIC_ABSTRACT)]
    | Annotated[SimpleMinMaxFloatMetric, Tag(kinds.METRIC_SIMPLE_MINMAX)],
    Discriminator(kinds.kind_of),
]


# --------------------------------------------------------------------------- components


class ComponentMetadata(WireModel):
    """What every component and offer set carries: identity, URL, times, messages and the updates
    allowed now.
    """

    uuid: UUID | None = None
    name: str | None = None
    url: str | None = None
    description: str | None = None
    created: datetime | None = None
    modified: datetime | None = None
    messages: list[MessageItem] | None = None
    options: list[Option] | None = None


class _Timed(WireModel):
    start: str | None = None
    duration: str | None = None


class LifecycleSchedule(WireModel):
    """``preparing`` and ``releasing`` start at an instant; ``available`` at an interval."""

    preparing: _Timed | None = None
    available: _Timed | None = None
    releasing: _Timed | None = None


class _Component(_Kinded):
    meta: ComponentMetadata | None = None
    costs: list[CostItem] | None = None
    metrics: list[MetricItem] | None = None


class _LifecycleComponent(_Component):
    phase: ComponentPhase | None = None
    schedule: LifecycleSchedule | None = None


class MinMax(WireModel):
    """A ``min``/``max`` pair of whole units (cores, or GiB of memory or storage)."""

    min: Int64 | None = None
    max: Int64 | None = None


# Executables ---------------------------------------------------------------


class DockerPlatformSpec(WireModel):
    architecture: str | None = None
    os: str | None = None


class DockerImageSpec(WireModel):
    locations: list[str] | None = None
    digest: str | None = None
    platform: DockerPlatformSpec | None = None


class DockerInternalPort(WireModel):
    port: int | None = Field(default=None, ge=0, le=65535)


class DockerExternalPort(WireModel):
    port: int | None = Field(default=None, ge=0, le=65535)
    addresses: list[str] | None = None


class DockerNetworkPort(WireModel):
    access: bool | None = None
    internal: DockerInternalPort | None = None
    external: DockerExternalPort | None = None
    protocol: str | None = None
    path: str | None = None


class DockerNetworkSpec(WireModel):
    ports: list[DockerNetworkPort] | None = None


class DockerContainer(_LifecycleComponent):
    """An executable that is a container image, with its command, entrypoint, environment and
    network.
    """

    KIND: ClassVar[str | None] = kinds.EXECUTABLE_DOCKER
    kind: str
    image: DockerImageSpec | None = None
    privileged: bool | None = None
    command: list[str] | None = None
    entrypoint: str | None = None
    environment: dict[str, str] | None = None
    network: DockerNetworkSpec | None = None
    session_type: str | None = Field(
        default=None,
        alias="x-session-type",
        description=(
            "execbroker extension (not in v1.0), Skaha only: the Skaha session type to run "
            "the container as (headless, contributed, notebook, carta, firefly, desktop). "
            "Without it, a container with network ports runs as contributed, else headless."
        ),
    )


class JupyterNotebook(_LifecycleComponent):
    """An executable that is a Jupyter notebook, at ``location``."""

    KIND: ClassVar[str | None] = kinds.EXECUTABLE_JUPYTER
    kind: str
    location: str | None = None


class SingularityContainer(_LifecycleComponent):
    """An executable that is a Singularity (Apptainer) image, at ``location``."""

    KIND: ClassVar[str | None] = kinds.EXECUTABLE_SINGULARITY
    kind: str
    location: str | None = None


Executable = Annotated[
    Annotated[DockerContainer, Tag(kinds.EXECUTABLE_DOCKER)]
    | Annotated[JupyterNotebook, Tag(kinds.EXECUTABLE_JUPYTER)]
    | Annotated[SingularityContainer, Tag(kinds.EXECUTABLE_SINGULARITY)],
    Discriminator(kinds.kind_of),
]

# Volumes, compute ----------------------------------------------------------


class SimpleVolumeMount(_LifecycleComponent):
    """A mount of a data or storage resource into the executable's filesystem.

    The schema gives volume mounts no lifecycle; we write ``phase`` and ``schedule`` for
    them too (they follow their compute), so that every component shows where it is.
    """

    KIND: ClassVar[str | None] = kinds.VOLUME_SIMPLE
    kind: str = kinds.VOLUME_SIMPLE
    path: str | None = None
    mode: Literal["READONLY", "READWRITE"] | None = None
    resource: str | None = None


# Compute, storage and volume mounts have one kind each, so a request may leave it out.
VolumeMount = Annotated[
    Annotated[SimpleVolumeMount, Tag(kinds.VOLUME_SIMPLE)],
    Discriminator(kinds.kind_or(kinds.VOLUME_SIMPLE)),
]


class SimpleComputeResource(_LifecycleComponent):
    """The compute that runs the executable: cores, memory, and the volumes it mounts."""

    KIND: ClassVar[str | None] = kinds.COMPUTE_SIMPLE
    kind: str = kinds.COMPUTE_SIMPLE
    volumes: list[VolumeMount] | None = None
    cores: MinMax | None = None
    memory: MinMax | None = None
    gpus: Int64 | None = Field(
        default=None,
        ge=1,
        alias="x-gpus",
        description=(
            "execbroker extension (not in v1.0), Skaha only: the number of GPUs, one of the "
            "platform's GPU options."
        ),
    )


ComputeResource = Annotated[
    Annotated[SimpleComputeResource, Tag(kinds.COMPUTE_SIMPLE)],
    Discriminator(kinds.kind_or(kinds.COMPUTE_SIMPLE)),
]

# Storage -------------------------------------------------------------------


class SimpleStorageResource(_LifecycleComponent):
    """Storage for a session's data: its size, and the data resources it holds."""

    KIND: ClassVar[str | None] = kinds.STORAGE_SIMPLE
    kind: str = kinds.STORAGE_SIMPLE
    data: list[str] | None = None
    size: MinMax | None = None


StorageResource = Annotated[
    Annotated[SimpleStorageResource, Tag(kinds.STORAGE_SIMPLE)],
    Discriminator(kinds.kind_or(kinds.STORAGE_SIMPLE)),
]

# Data ----------------------------------------------------------------------


class _DataBase(_LifecycleComponent):
    storage: str | None = None


class SimpleDataResource(_DataBase):
    """A data resource read from a URL (``location``)."""

    KIND: ClassVar[str | None] = kinds.DATA_SIMPLE
    kind: str
    location: str | None = None


class S3DataResource(_DataBase):
    """A data resource that is an object in an S3 bucket."""

    KIND: ClassVar[str | None] = kinds.DATA_S3
    kind: str
    endpoint: str | None = None
    template: str | None = None
    bucket: str | None = None
    object: str | None = None


class IvoaObsCoreItem(WireModel):
    obs_id: str | None = None
    obs_collection: str | None = None
    obs_publisher_did: str | None = None
    obs_creator_did: str | None = None
    dataproduct_type: str | None = None
    calib_level: Int32 | None = None
    access_url: str | None = None
    access_format: str | None = None


class IvoaDataLinkItem(WireModel):
    ID: str | None = None
    access_url: str | None = None
    service_def: str | None = None
    error_message: str | None = None
    description: str | None = None
    semantics: str | None = None
    content_type: str | None = None
    content_length: ByteSize | None = None
    content_qualifier: str | None = None
    local_semantics: str | None = None
    link_auth: str | None = None
    link_authorized: str | None = None


class IvoaDataResourceBlock(WireModel):
    ivoid: str | None = None
    obscore: IvoaObsCoreItem | None = None
    datalink: IvoaDataLinkItem | None = None


class IvoaDataResource(_DataBase):
    """A data resource described by IVOA metadata (an ObsCore record or a DataLink)."""

    KIND: ClassVar[str | None] = kinds.DATA_IVOA
    kind: str
    ivoa: IvoaDataResourceBlock | None = None


class RucioDataResourceBlock(WireModel):
    endpoint: str | None = None
    scope: str | None = None
    object: str | None = None
    type: Literal["FILE", "CONTAINER", "DATASET"] | None = None


class RucioDataResource(_DataBase):
    """A data resource that is a Rucio file, container or dataset."""

    KIND: ClassVar[str | None] = kinds.DATA_RUCIO
    kind: str
    rucio: RucioDataResourceBlock | None = None


class SkaoChecksumItem(WireModel):
    type: str | None = None
    value: str | None = None


class SkaoReplicaItem(WireModel):
    rsename: str | None = None
    dataurl: str | None = None


class SkaoDataResourceBlock(WireModel):
    namespace: str | None = None
    objectname: str | None = None
    objecttype: Literal["FILE", "CONTAINER", "DATASET"] | None = None
    datasize: ByteSize | None = None
    checksum: SkaoChecksumItem | None = None
    replicas: list[SkaoReplicaItem] | None = None


class SkaoDataResource(_DataBase):
    """A data resource of the SKA Observatory's data lake: its IVOA description and its replicas."""

    KIND: ClassVar[str | None] = kinds.DATA_SKAO
    kind: str
    ivoa: IvoaDataResourceBlock | None = None
    skao: SkaoDataResourceBlock | None = None


DataResource = Annotated[
    Annotated[SimpleDataResource, Tag(kinds.DATA_SIMPLE)]
    | Annotated[S3DataResource, Tag(kinds.DATA_S3)]
    | Annotated[IvoaDataResource, Tag(kinds.DATA_IVOA)]
    | Annotated[RucioDataResource, Tag(kinds.DATA_RUCIO)]
    | Annotated[SkaoDataResource, Tag(kinds.DATA_SKAO)],
    Discriminator(kinds.kind_of),
]


# --------------------------------------------------------------------------- requests


class RequestedScheduleItem(WireModel):
    duration: str | None = None
    start: str | None = None
    start_early: bool | None = Field(
        default=None,
        alias="x-start-early",
        description=(
            "execbroker extension (not in v1.0): whether the session may start earlier than "
            "its accepted start when capacity frees up (never before the start interval's "
            "beginning, keeping its duration and resources). Default: true for direct runs "
            "and non-interactive offers, false for notebooks and other interactive sessions "
            "(someone may plan to be at the keyboard)."
        ),
    )


class RequestedScheduleBlock(WireModel):
    requested: RequestedScheduleItem | None = None


class ExecutionRequest(WireModel):
    """A request for offers (``POST /requests``) or a direct execution (``POST /direct``)."""

    model_config = ConfigDict(title="ExecutionRequest")

    executable: Executable | None = None
    compute: ComputeResource | None = None
    storage: list[StorageResource] | None = None
    data: list[DataResource] | None = None
    schedule: RequestedScheduleBlock | None = None
    costs: list[CostItem] | None = None
    metrics: list[MetricItem] | None = None


# --------------------------------------------------------------------------- sessions


class SessionConnector(WireModel):
    """A way into a running session: a protocol and a location (e.g. a notebook's URL), and whether
    it is ready.
    """

    kind: str | None = None
    status: ConnectorStatus | None = None
    protocol: str | None = None
    location: str | None = None


class ExecutionSession(_Component):
    """An offer or a running session: a ``ScheduledExecutionSession`` on the wire."""

    kind: Literal[
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/scheduled-execution-session.yaml"
    ] = kinds.SESSION_SCHEDULED  # type: ignore[assignment]
    phase: SessionPhase
    expires: datetime | None = None
    schedule: LifecycleSchedule | None = None
    executable: Executable | None = None
    compute: ComputeResource | None = None
    storage: list[StorageResource] | None = None
    data: list[DataResource] | None = None
    connectors: list[SessionConnector] = Field(default_factory=list)


class OfferSetResponse(WireModel):
    """The answer to an execution request: ``YES`` with offers to accept or reject, or ``NO`` with
    messages saying why.
    """

    # Written as the reference broker writes it (kinds.OFFERSET_EXECUTION); older
    # documents without one are still read.
    kind: str | None = None
    meta: ComponentMetadata | None = None
    costs: list[CostItem] | None = None
    metrics: list[MetricItem] | None = None
    result: OfferResult
    description: str | None = None
    offers: list[ExecutionSession] = Field(default_factory=list)


class ErrorResponse(WireModel):
    """The body of every 4xx answer: a stable code and messages saying what went wrong.

    A refused direct request (``POST /direct``, 400) is also the session the schema answers
    it with (its "FailedExecutionResponse"): ``kind``, ``phase`` FAILED and the messages in
    ``meta``.
    """

    error: str
    status: int
    messages: list[MessageItem]
    kind: str | None = None
    meta: ComponentMetadata | None = None
    phase: SessionPhase | None = None
