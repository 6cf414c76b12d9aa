"""Turn an execution request document into a :class:`~execbroker.model.plan.Plan`, or say
precisely why not.

Two passes. The first is the schema (pydantic): wrong types, unknown kinds or fields. The
second is meaning: what is missing, inconsistent or beyond the platform. Every problem is
collected (not just the first) and reported as a message whose ``path`` value is a JSON
pointer to the field, e.g. ``/compute/cores/min``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from execbroker.config import Settings
from execbroker.exceptions import RequestRefusedError
from execbroker.model import kinds
from execbroker.model.isotime import (
    Interval,
    format_duration,
    format_instant,
    parse_duration,
    parse_interval,
)
from execbroker.model.messages import info, make_message, warn
from execbroker.model.phases import MessageLevel
from execbroker.model.plan import Limit, Plan, PlannedComponent, Range
from execbroker.model.quoting import brief, shorten
from execbroker.model.records import ComponentRole
from execbroker.model.wire import (
    DockerContainer,
    ExecutionRequest,
    IvoaDataResource,
    JupyterNotebook,
    MessageItem,
    MinMax,
    RucioDataResource,
    S3DataResource,
    SimpleDataResource,
    SingularityContainer,
    SkaoDataResource,
    dump,
)
from execbroker.planning.destinations import destination_problems
from execbroker.planning.profile import PlatformProfile

__all__ = ["schema_messages", "validate_request"]

_PROTOCOLS = frozenset({"TCP", "UDP", "HTTP", "HTTPS"})
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")
_MAX_NAME = 255
# The last instant the calendar can hold; a session must fit before it with all its steps.
_LATEST = datetime.max.replace(tzinfo=UTC)


def validate_request(
    document: Any, *, settings: Settings, profile: PlatformProfile, now: datetime
) -> tuple[Plan, ExecutionRequest]:
    """The plan for ``document``; raises :class:`RequestRefusedError` with every problem."""
    if not isinstance(document, dict):
        raise RequestRefusedError(
            [
                _problem(
                    "",
                    "the request must be an object with an executable, not {got}",
                    got=type(document).__name__,
                )
            ]
        )
    try:
        request = ExecutionRequest.model_validate(document)
    except ValidationError as failure:
        raise RequestRefusedError(schema_messages(failure)) from None
    checker = _Checker(settings=settings, profile=profile, now=now)
    plan = checker.check(request)
    if checker.problems or plan is None:
        raise RequestRefusedError(checker.problems)
    return plan, request


# --------------------------------------------------------------------------- schema errors


def _pointer(location: tuple[int | str, ...]) -> str:
    # Discriminated unions put the matched tag (a kind URI) into the location; drop it.
    parts = [
        shorten(str(part))
        for part in location
        if not (isinstance(part, str) and (part.startswith(("https://", "uri:")) or "()" in part))
    ]
    return "/" + "/".join(parts) if parts else ""


def _short_tags(expected: str) -> str:
    tags = [tag.strip().strip("'") for tag in expected.split(",")]
    return ", ".join(kinds.short_kind(tag) for tag in tags if tag)


def schema_messages(failure: ValidationError) -> list[MessageItem]:
    """Pydantic's findings as messages naming the field, in words a user can act on."""
    found: list[MessageItem] = []
    for item in failure.errors(include_url=False):
        path = _pointer(item["loc"])
        context = item.get("ctx") or {}
        match item["type"]:
            case "union_tag_invalid":
                found.append(
                    _problem(
                        path + "/kind",
                        "unknown kind '{kind}'; this broker knows {known}",
                        kind=shorten(str(context.get("tag", ""))),
                        known=_short_tags(str(context.get("expected_tags", ""))),
                    )
                )
            case "union_tag_not_found":
                found.append(_problem(path + "/kind", "the component has no kind"))
            case "extra_forbidden":
                found.append(
                    _problem(path, "unknown field '{field}'", field=shorten(str(item["loc"][-1])))
                )
            case "missing":
                found.append(_problem(path, "required field is missing"))
            case _:
                found.append(
                    _problem(
                        path,
                        "{reason} (got {got})",
                        reason=item["msg"],
                        got=_brief(item.get("input")),
                    )
                )
    return found


def _brief(value: Any) -> str:
    # Never repr() of the whole value: through YAML aliases it can be gigabytes long.
    return brief(value)


def _problem(path: str, template: str, **values: object) -> MessageItem:
    return make_message(MessageLevel.ERROR, "{path}: " + template, {"path": path or "/", **values})


# --------------------------------------------------------------------------- meaning


class _Checker:
    def __init__(self, *, settings: Settings, profile: PlatformProfile, now: datetime) -> None:
        self.settings = settings
        self.profile = profile
        self.now = now
        self.problems: list[MessageItem] = []
        self.notes: list[MessageItem] = []

    def problem(self, path: str, template: str, **values: object) -> None:
        self.problems.append(_problem(path, template, **values))

    def check(self, request: ExecutionRequest) -> Plan | None:
        executable = self.check_executable(request)
        compute, cores, memory = self.check_compute(request)
        storage = self.check_storage(request)
        data = self.check_data(request, storage)
        volumes = self.check_volumes(request, storage, data)
        duration, window = self.check_schedule(request)
        self.check_names(storage, data)
        self.problems.extend(destination_problems(request, settings=self.settings))
        cost_limits, metric_minimums = self.check_limits(request)
        if executable is None or duration is None or window is None:
            return None
        return Plan(
            cost_limits=cost_limits,
            metric_minimums=metric_minimums,
            executable=executable,
            compute=compute,
            cores=cores,
            memory=memory,
            storage=storage,
            data=data,
            volumes=volumes,
            duration=duration,
            window=window,
            notes=self.notes,
            start_early=request.schedule.requested.start_early
            if request.schedule and request.schedule.requested
            else None,
        )

    # -- executable -----------------------------------------------------------------

    def check_executable(self, request: ExecutionRequest) -> PlannedComponent | None:
        executable = request.executable
        if executable is None:
            self.problem(
                "/executable",
                "the request has no executable; give one of kind {known}",
                known=", ".join(kinds.short_kind(k) for k in kinds.EXECUTABLE_KINDS),
            )
            return None
        match executable:
            case DockerContainer():
                self.check_docker(executable)
            case JupyterNotebook() | SingularityContainer():
                if not _is_url(executable.location, schemes=("http", "https")):
                    self.problem(
                        "/executable/location",
                        "a {kind} needs the http(s) URL to fetch it from, not {got}",
                        kind=kinds.short_kind(executable.kind),
                        got=_brief(executable.location),
                    )
        if executable.kind not in self.profile.executable_kinds:
            self.problem(
                "/executable/kind",
                "the {platform} platform cannot run {kind} executables; it runs {supported}",
                platform=self.profile.name,
                kind=kinds.short_kind(executable.kind),
                supported=", ".join(
                    sorted(kinds.short_kind(k) for k in self.profile.executable_kinds)
                ),
            )
        return _planned(ComponentRole.EXECUTABLE, executable, default_name="executable")

    def check_docker(self, container: DockerContainer) -> None:
        locations = container.image.locations if container.image else None
        if not locations or not any(loc.strip() for loc in locations):
            self.problem(
                "/executable/image/locations",
                "a docker-container needs at least one image location, "
                "e.g. images.canfar.net/skaha/astroml:latest",
            )
        digest = container.image.digest if container.image else None
        if digest is not None and not _DIGEST.match(digest):
            self.problem(
                "/executable/image/digest",
                "'{digest}' is not an image digest such as sha256:<64 hex digits>",
                digest=digest,
            )
        if container.privileged:
            self.problem("/executable/privileged", "privileged containers are not supported")
        ports = container.network.ports if container.network else None
        for index, port in enumerate(ports or []):
            if port.protocol is not None and port.protocol.upper() not in _PROTOCOLS:
                self.problem(
                    f"/executable/network/ports/{index}/protocol",
                    "'{protocol}' is not one of TCP, UDP, HTTP, HTTPS",
                    protocol=port.protocol,
                )
        for name in container.environment or {}:
            if not name or "=" in name or "\0" in name:
                self.problem(
                    "/executable/environment",
                    "'{name}' is not a valid environment variable name",
                    name=name,
                )

    # -- compute --------------------------------------------------------------------

    def check_compute(self, request: ExecutionRequest) -> tuple[PlannedComponent, Range, Range]:
        compute = request.compute
        if compute is None:
            self.notes.append(
                info(
                    "The request names no compute resource; offering {cores} core(s) and "
                    "{memory} GiB of memory",
                    cores=self.settings.planning.default_cores,
                    memory=self.settings.planning.default_memory_gib,
                )
            )
            planned = PlannedComponent(
                role=ComponentRole.COMPUTE,
                name="compute",
                kind=kinds.COMPUTE_SIMPLE,
                spec={"kind": kinds.COMPUTE_SIMPLE},
            )
            return (
                planned,
                Range(self.settings.planning.default_cores, self.settings.planning.default_cores),
                Range(
                    self.settings.planning.default_memory_gib,
                    self.settings.planning.default_memory_gib,
                ),
            )
        cores = self.check_amount(
            "/compute/cores",
            compute.cores,
            default=self.settings.planning.default_cores,
            capacity=self.profile.cores,
            unit="cores",
        )
        memory = self.check_amount(
            "/compute/memory",
            compute.memory,
            default=self.settings.planning.default_memory_gib,
            capacity=self.profile.memory_gib,
            unit="GiB of memory",
        )
        planned = _planned(ComponentRole.COMPUTE, compute, default_name="compute")
        planned.spec.pop("volumes", None)
        return planned, cores, memory

    def check_amount(
        self,
        path: str,
        asked: MinMax | None,
        *,
        default: int,
        capacity: int,
        unit: str,
    ) -> Range:
        low = asked.min if asked else None
        high = asked.max if asked else None
        for name, value in (("min", low), ("max", high)):
            if value is not None and value < 1:
                self.problem(f"{path}/{name}", "must be at least 1, not {value}", value=value)
        if low is not None and high is not None and low > high:
            self.problem(
                path, "the minimum {low} is larger than the maximum {high}", low=low, high=high
            )
        if low is None:
            low = min(default, high) if high is not None and high >= 1 else default
        if high is None:
            high = max(low, 1)
        if low > capacity:
            self.problem(
                f"{path}/min",
                "minimum {low} {unit} exceeds the platform's {capacity}",
                low=low,
                unit=unit,
                capacity=capacity,
            )
            # The advice every calendar NO carries (planning/advice.py): here, that no later
            # start or shorter run helps, only asking for at most what the platform has.
            self.problems.append(
                info(
                    "{path}: no later start or shorter run fits {low} {unit}: the platform has "
                    "{most} in all",
                    path=f"{path}/min",
                    change="none",
                    low=low,
                    unit=unit,
                    most=capacity,
                )
            )
        if high > capacity:
            self.notes.append(
                warn(
                    "{path}: maximum {high} {unit} capped to the platform's {capacity}",
                    path=f"{path}/max",
                    high=high,
                    unit=unit,
                    capacity=capacity,
                )
            )
            high = capacity
        low = max(low, 1)
        return Range(low, max(high, low))

    # -- storage and data -------------------------------------------------------------

    def check_storage(self, request: ExecutionRequest) -> list[PlannedComponent]:
        planned: list[PlannedComponent] = []
        for index, storage in enumerate(request.storage or []):
            component = _planned(
                ComponentRole.STORAGE, storage, default_name=f"storage-{index + 1}"
            )
            component.size = self.check_amount(
                f"/storage/{index}/size",
                storage.size,
                default=self.settings.planning.default_storage_gib,
                capacity=self.profile.storage_gib,
                unit="GiB of storage",
            )
            component.spec.pop("data", None)
            planned.append(component)
        return planned

    def check_data(
        self, request: ExecutionRequest, storage: list[PlannedComponent]
    ) -> list[PlannedComponent]:
        planned: list[PlannedComponent] = []
        for index, resource in enumerate(request.data or []):
            path = f"/data/{index}"
            self.check_data_source(path, resource)
            component = _planned(ComponentRole.DATA, resource, default_name=f"data-{index + 1}")
            component.spec.pop("storage", None)
            component.size_bytes = _declared_size(resource)
            if resource.storage:
                target = _resolve(resource.storage, storage)
                if target is None:
                    self.problem(
                        f"{path}/storage",
                        "no storage resource named '{name}' in this request",
                        name=resource.storage,
                    )
                else:
                    component.storage = target.name
            else:
                implicit = PlannedComponent(
                    role=ComponentRole.STORAGE,
                    name=f"{component.name}-storage",
                    kind=kinds.STORAGE_SIMPLE,
                    spec={"kind": kinds.STORAGE_SIMPLE},
                    size=Range(
                        self.settings.planning.default_storage_gib,
                        self.settings.planning.default_storage_gib,
                    ),
                )
                storage.append(implicit)
                component.storage = implicit.name
                self.notes.append(
                    info(
                        "Data resource '{data}' names no storage; added storage '{storage}' "
                        "of {size} GiB for it",
                        data=component.name,
                        storage=implicit.name,
                        size=self.settings.planning.default_storage_gib,
                    )
                )
            planned.append(component)
        return planned

    def check_data_source(self, path: str, resource: Any) -> None:
        match resource:
            case SimpleDataResource():
                if not _is_url(resource.location):
                    self.problem(
                        f"{path}/location",
                        "a simple data resource needs a location URL, not {got}",
                        got=_brief(resource.location),
                    )
            case S3DataResource():
                for name in ("endpoint", "bucket", "template"):
                    if not (getattr(resource, name) or "").strip():
                        self.problem(
                            f"{path}/{name}", "an S3 data resource needs its {name}", name=name
                        )
            case IvoaDataResource():
                if resource.ivoa is None or not (resource.ivoa.ivoid or "").strip():
                    self.problem(f"{path}/ivoa/ivoid", "an IVOA data resource needs an ivoid")
            case RucioDataResource():
                rucio = resource.rucio
                if rucio is None or not rucio.scope or not rucio.object:
                    self.problem(
                        f"{path}/rucio", "a Rucio data resource needs a scope and an object"
                    )
            case SkaoDataResource():
                skao = resource.skao
                if skao is None or not skao.namespace or not skao.objectname:
                    self.problem(
                        f"{path}/skao", "a SKAO data resource needs a namespace and an objectname"
                    )

    def check_names(self, storage: list[PlannedComponent], data: list[PlannedComponent]) -> None:
        seen: set[str] = set()
        for component in [*storage, *data]:
            if component.name in seen:
                self.problem(
                    f"/{component.role.value}",
                    "the name '{name}' is used by more than one storage or data resource; "
                    "volumes refer to them by name, so names must be unique",
                    name=component.name,
                )
            seen.add(component.name)
        total = sum(s.size.min for s in storage if s.size)
        if total > self.profile.storage_gib:
            self.problem(
                "/storage",
                "the storage minimums add up to {total} GiB, more than the platform's {capacity}",
                total=total,
                capacity=self.profile.storage_gib,
            )

    # -- volumes ----------------------------------------------------------------------

    def check_volumes(
        self,
        request: ExecutionRequest,
        storage: list[PlannedComponent],
        data: list[PlannedComponent],
    ) -> list[PlannedComponent]:
        mounts: list[PlannedComponent] = []
        paths: set[str] = set()
        mounted: set[str] = set()
        volumes = request.compute.volumes if request.compute else None
        for index, volume in enumerate(volumes or []):
            path = f"/compute/volumes/{index}"
            component = _planned(ComponentRole.VOLUME, volume, default_name=f"volume-{index + 1}")
            if not (volume.resource or "").strip():
                self.problem(f"{path}/resource", "a volume mount must name the resource to mount")
                continue
            target = _resolve(volume.resource or "", [*data, *storage])
            if target is None:
                self.problem(
                    f"{path}/resource",
                    "'{name}' is neither a data nor a storage resource of this request",
                    name=volume.resource,
                )
                continue
            mount_path = volume.path or f"/volumes/{target.name}"
            if not _is_mount_path(mount_path):
                self.problem(
                    f"{path}/path",
                    "'{mount}' is not an absolute path without '..'",
                    mount=mount_path,
                )
            elif mount_path in paths:
                self.problem(
                    f"{path}/path", "two volumes are mounted at '{mount}'", mount=mount_path
                )
            paths.add(mount_path)
            mounted.add(target.name)
            component.resource = target.name
            component.spec.update(path=mount_path, mode=volume.mode or "READONLY")
            mounts.append(component)
        for resource in data:
            if resource.name in mounted:
                continue
            mount_path = f"/volumes/{resource.name}"
            if mount_path in paths:
                continue
            paths.add(mount_path)
            mounts.append(
                PlannedComponent(
                    role=ComponentRole.VOLUME,
                    name=f"{resource.name}-mount",
                    kind=kinds.VOLUME_SIMPLE,
                    spec={"kind": kinds.VOLUME_SIMPLE, "path": mount_path, "mode": "READONLY"},
                    resource=resource.name,
                )
            )
            self.notes.append(
                info(
                    "Data resource '{data}' is mounted read-only at {mount}",
                    data=resource.name,
                    mount=mount_path,
                )
            )
        return mounts

    # -- limits -----------------------------------------------------------------------

    def check_limits(self, request: ExecutionRequest) -> tuple[list[Limit], list[Limit]]:
        costs: list[Limit] = []
        for index, item in enumerate(request.costs or []):
            maximum = getattr(item, "max", None)
            if maximum is None:
                continue
            if not item.type:
                self.problem(f"/costs/{index}/type", "a cost limit must name its type")
            elif maximum < 0:
                self.problem(f"/costs/{index}/max", "a cost limit cannot be negative")
            else:
                costs.append(Limit(f"/costs/{index}/max", item.type, float(maximum)))
        metrics: list[Limit] = []
        for index, metric in enumerate(request.metrics or []):
            minimum = getattr(metric, "min", None)
            if minimum is None:
                continue
            if not metric.type:
                self.problem(f"/metrics/{index}/type", "a metric minimum must name its type")
            else:
                metrics.append(Limit(f"/metrics/{index}/min", metric.type, float(minimum)))
        return costs, metrics

    # -- schedule ---------------------------------------------------------------------

    def check_schedule(self, request: ExecutionRequest) -> tuple[timedelta | None, Interval | None]:
        requested = request.schedule.requested if request.schedule else None
        duration: timedelta | None = self.settings.planning.default_duration
        if requested and requested.duration is not None:
            try:
                duration = parse_duration(requested.duration, anchor=self.now)
            except ValueError as failure:
                self.problem("/schedule/requested/duration", "{reason}", reason=failure)
                duration = None
            else:
                if duration <= timedelta(0):
                    self.problem(
                        "/schedule/requested/duration",
                        "the duration must be positive, not {duration}",
                        duration=requested.duration,
                    )
                    duration = None
                elif duration > self.settings.planning.max_duration:
                    self.problem(
                        "/schedule/requested/duration",
                        "{duration} is longer than the longest run this broker offers, {max}",
                        duration=requested.duration,
                        max=format_duration(self.settings.planning.max_duration),
                    )
                    duration = None
        window: Interval | None = Interval(
            self.now, self.now + self.settings.planning.default_start_window
        )
        if requested and requested.start is not None:
            try:
                window = parse_interval(requested.start)
            except ValueError as failure:
                self.problem("/schedule/requested/start", "{reason}", reason=failure)
                window = None
            else:
                # The longest run, prepared and released, must fit before the calendar ends.
                latest = (
                    _LATEST
                    - self.settings.planning.max_duration
                    - self.settings.planning.max_preparation
                )
                if window.end < self.now:
                    self.problem(
                        "/schedule/requested/start",
                        "the start interval ended at {end}, in the past",
                        end=format_instant(window.end),
                    )
                    window = None
                elif window.end > latest:
                    self.problem(
                        "/schedule/requested/start",
                        "the start interval ends at {end}; this broker plans starts no later "
                        "than {latest}",
                        end=format_instant(window.end),
                        latest=format_instant(latest),
                    )
                    window = None
                elif window.start < self.now:
                    window = Interval(self.now, window.end)
        return duration, window


def _declared_size(resource: Any) -> int | None:
    """Bytes a data resource says it holds, where its kind can say so."""
    if isinstance(resource, SkaoDataResource) and resource.skao and resource.skao.datasize:
        return resource.skao.datasize
    block = getattr(resource, "ivoa", None)
    if block is not None and block.datalink and block.datalink.content_length:
        return int(block.datalink.content_length)
    return None


def _is_url(value: str | None, *, schemes: tuple[str, ...] | None = None) -> bool:
    if not value or not value.strip():
        return False
    parsed = urlsplit(value.strip())
    if not parsed.scheme or not (parsed.netloc or parsed.path):
        return False
    return schemes is None or parsed.scheme.lower() in schemes


def _planned(role: ComponentRole, component: Any, *, default_name: str) -> PlannedComponent:
    document = dump(component)
    meta = document.pop("meta", {}) or {}
    document.pop("phase", None)
    document.pop("schedule", None)
    name = str(meta.get("name") or default_name)[:_MAX_NAME]
    return PlannedComponent(
        role=role,
        name=name,
        kind=document["kind"],
        spec=document,
        description=meta.get("description"),
        client_uuid=str(meta["uuid"]) if meta.get("uuid") else None,
    )


def _resolve(reference: str, candidates: list[PlannedComponent]) -> PlannedComponent | None:
    wanted = reference.strip()
    for candidate in candidates:
        if wanted in (candidate.name, candidate.client_uuid):
            return candidate
    return None


def _is_mount_path(path: str) -> bool:
    return path.startswith("/") and ".." not in path.split("/") and "\0" not in path
