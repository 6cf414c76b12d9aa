"""From the broker's components to Skaha's session parameters, and back (SKAHA.md §6).

- docker-container → a ``headless`` session: ``entrypoint`` → ``cmd`` (one executable),
  ``command`` → ``args`` (Skaha splits them on spaces), ``environment`` → repeated
  ``env=KEY=VALUE``. Skaha pastes them into its Job YAML unescaped, so what it would
  corrupt or drop is refused at planning time (:mod:`.launch`).
- jupyter-notebook → a ``notebook`` session of the configured notebook image.
- cores and memory → the smallest ``/context`` option within the request's range (fixed
  resources: request = limit), else refused; the plan's range is narrowed to it.
- images must come from a registry of ``/repository``; without registry credentials they
  must also be in Skaha's public image cache (``/image``), as Skaha itself demands.
- storage and data: Skaha has no storage or staging API. Every session sees the account's
  shared ``/arc`` space (home and projects), so storage is ready at once and data is not
  staged: the plan says so in its notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from execbroker.exceptions import RequestRefusedError
from execbroker.model import kinds
from execbroker.model.messages import warn
from execbroker.model.plan import Plan, PlannedComponent, Range
from execbroker.model.records import ComponentRecord, ComponentRole
from execbroker.model.wire import MessageItem
from execbroker.platforms import extensions
from execbroker.platforms.base import Work
from execbroker.platforms.skaha.client import CreateRequest, ResourceOptions, SkahaContext
from execbroker.platforms.skaha.errors import SkahaRequestError
from execbroker.platforms.skaha.launch import field_problem as _problem
from execbroker.platforms.skaha.launch import headless_launch, launch_problems

__all__ = [
    "Catalogue",
    "choose_image",
    "create_request",
    "executable_session_type",
    "image_host",
    "session_type",
    "shape_plan",
]


@dataclass(frozen=True)
class Catalogue:
    """What Skaha offers, as last read from ``/context``, ``/repository`` and ``/image``."""

    context: SkahaContext
    registries: tuple[str, ...]
    images: frozenset[str]
    read_at: datetime
    image_types: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The session types ``/image`` lists for each image of the public cache."""


def image_host(reference: str) -> str:
    """The registry host of an image reference (what Skaha checks against /repository)."""
    text = reference.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0].lower() if "/" in text else ""


def _clean(reference: str) -> str:
    text = reference.strip()
    return text.split("://", 1)[1] if "://" in text else text


def choose_image(locations: list[str], registries: tuple[str, ...]) -> str | None:
    """The first image location on a registry Skaha may pull from."""
    allowed = {host.lower() for host in registries}
    return next(
        (_clean(loc) for loc in locations if loc.strip() and image_host(loc) in allowed), None
    )


def session_type(plan: Plan) -> str:
    """The Skaha session type ``plan`` runs as: the one place that decides it.

    Every type but ``headless`` is interactive, and counts toward the account's
    ``maxInteractiveSessions``.
    """
    return executable_session_type(plan.executable.kind, plan.executable.spec)


def executable_session_type(kind: str, spec: Mapping[str, Any]) -> str:
    """The Skaha session type of an executable of ``kind`` with wire fields ``spec``.

    A jupyter-notebook is a ``notebook``; a docker-container is what its ``x-session-type``
    extension names, else ``contributed`` when it asks for network ports, else ``headless``.
    Only the request decides, never Skaha's catalogue, so that the type booked at planning
    is the type created, after a restart too.
    """
    if kind == kinds.EXECUTABLE_JUPYTER:
        return "notebook"
    chosen = spec.get(extensions.SESSION_TYPE)
    if isinstance(chosen, str) and chosen.strip():
        return chosen.strip().lower()
    return "contributed" if _ports(spec) else "headless"


def _ports(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    network = spec.get("network") or {}
    return [port for port in network.get("ports") or [] if isinstance(port, Mapping)]


# --------------------------------------------------------------------------- planning


def shape_plan(
    plan: Plan,
    catalogue: Catalogue | None,
    *,
    notebook_image: str,
    registry_auth: bool,
    unknown_reason: str | None = None,
) -> Plan:
    """``plan`` fitted to Skaha, or :class:`RequestRefusedError` with every problem."""
    if catalogue is None:
        raise RequestRefusedError(
            [
                _problem(
                    "/compute",
                    "the Skaha platform's resource options are not known yet ({reason}); "
                    "try again shortly",
                    reason=unknown_reason or "Skaha has not answered yet",
                )
            ]
        )
    problems: list[MessageItem] = []
    notes: list[MessageItem] = list(plan.notes)
    _check_executable(
        plan.executable,
        catalogue,
        problems,
        notes,
        notebook_image=notebook_image,
        registry_auth=registry_auth,
    )
    _check_session_type(plan.executable, catalogue, problems, notes)
    _check_gpus(plan.compute, catalogue, problems)
    cores = _fit("/compute/cores", "cores", plan.cores, catalogue.context.cores, problems)
    memory = _fit(
        "/compute/memory", "GiB of memory", plan.memory, catalogue.context.memory_gb, problems
    )
    for data in plan.data:
        notes.append(
            warn(
                "Skaha has no staging: data resource '{data}' is not copied into the session; "
                "read it from its location or from /arc",
                data=data.name,
            )
        )
    if plan.storage:
        notes.append(
            warn(
                "On Skaha, storage is the account's shared /arc space (home and projects), "
                "mounted in every session; volume mount paths are not applied"
            )
        )
    if problems:
        raise RequestRefusedError(problems)
    return replace(plan, cores=cores or plan.cores, memory=memory or plan.memory, notes=notes)


def _fit(
    path: str, unit: str, wanted: Range, options: ResourceOptions, problems: list[MessageItem]
) -> Range | None:
    chosen = options.smallest_between(wanted.min, wanted.max)
    if chosen is None:
        problems.append(
            _problem(
                path,
                "Skaha offers no amount of {unit} between {min} and {max}; it offers {options}",
                unit=unit,
                min=wanted.min,
                max=wanted.max,
                options=", ".join(map(str, options.options)) or "none",
            )
        )
        return None
    return Range(chosen, chosen)


def _check_executable(
    executable: PlannedComponent,
    catalogue: Catalogue,
    problems: list[MessageItem],
    notes: list[MessageItem],
    *,
    notebook_image: str,
    registry_auth: bool,
) -> None:
    spec = executable.spec
    allowed = ", ".join(catalogue.registries) or "none"
    if executable.kind == kinds.EXECUTABLE_JUPYTER:
        if choose_image([notebook_image], catalogue.registries) is None:
            problems.append(
                _problem(
                    "/executable",
                    "the broker's notebook image '{image}' is not from a registry Skaha "
                    "may pull from ({allowed}); ask the operator to fix skaha_notebook_image",
                    image=notebook_image,
                    allowed=allowed,
                )
            )
        if spec.get("location"):
            notes.append(
                warn(
                    "Skaha cannot load a notebook into the session: open '{location}' "
                    "yourself once the notebook server is available",
                    location=spec["location"],
                )
            )
        return
    if executable.kind != kinds.EXECUTABLE_DOCKER:
        return  # validation has refused it already (Skaha runs no other kinds)
    locations = [str(loc) for loc in (spec.get("image") or {}).get("locations") or []]
    image = choose_image(locations, catalogue.registries)
    if image is None and locations:
        problems.append(
            _problem(
                "/executable/image/locations",
                "Skaha may only pull images from {allowed}, not {images}",
                allowed=allowed,
                images=", ".join(f"'{loc}'" for loc in locations),
            )
        )
    elif image is not None and image not in catalogue.images and not registry_auth:
        problems.append(
            _problem(
                "/executable/image/locations",
                "'{image}' is not in Skaha's public image cache (private, or pushed in the "
                "last 30 minutes) and this broker has no registry credentials for it",
                image=image,
            )
        )
    # What Skaha's launch YAML would corrupt or drop (issue 17 item 5).
    problems.extend(launch_problems(spec, image=image))


# The types a docker-container may run as (desktop-app is only attached to a desktop).
CONTAINER_TYPES = ("headless", "contributed", "notebook", "carta", "firefly", "desktop")
# The types whose image /image must list with that type, when it lists the image at all.
_LISTED_TYPES = frozenset({"carta", "firefly", "desktop"})
CONTRIBUTED_PORT = 5000
"""The one port Skaha's proxy forwards to a contributed session (``/session/contrib/<id>/``)."""


def _check_session_type(
    executable: PlannedComponent,
    catalogue: Catalogue,
    problems: list[MessageItem],
    notes: list[MessageItem],
) -> None:
    """What the docker-container's session type needs (SKAHA.md §1.4, §1.11, §6.1)."""
    if executable.kind != kinds.EXECUTABLE_DOCKER:
        return
    spec = executable.spec
    kind = executable_session_type(executable.kind, spec)
    path = f"/executable/{extensions.SESSION_TYPE}"
    if kind not in CONTAINER_TYPES:
        problems.append(
            _problem(
                path,
                "Skaha runs a docker-container as one of {types}, not '{kind}'",
                types=", ".join(CONTAINER_TYPES),
                kind=kind,
            )
        )
        return
    if kind == "headless":
        if _ports(spec):
            problems.append(
                _problem(
                    "/executable/network/ports",
                    "Skaha headless sessions publish no network ports; leave out "
                    "{field} (a container with ports runs as contributed) or the ports",
                    field=extensions.SESSION_TYPE,
                )
            )
        return
    for name in ("entrypoint", "command", "environment"):
        if spec.get(name):
            problems.append(
                _problem(
                    f"/executable/{name}",
                    "Skaha starts a {kind} session with its image's own entrypoint, "
                    "without a command or environment; leave out {name}",
                    kind=kind,
                    name=name,
                )
            )
    if kind == "contributed":
        _check_contributed_ports(spec, problems)
    elif _ports(spec):
        notes.append(
            warn(
                "A Skaha {kind} session is reached through Skaha's own proxy; the network "
                "ports asked for are not applied",
                kind=kind,
            )
        )
    _check_listed_type(spec, kind, catalogue, problems)


def _check_contributed_ports(spec: Mapping[str, Any], problems: list[MessageItem]) -> None:
    """A contributed session's web UI is served on port 5000 over HTTP, nothing else."""
    for index, port in enumerate(_ports(spec)):
        number = (port.get("internal") or {}).get("port")
        if number is not None and number != CONTRIBUTED_PORT:
            problems.append(
                _problem(
                    f"/executable/network/ports/{index}/internal/port",
                    "Skaha publishes a contributed session's web interface from port {only} "
                    "only, not {port}: serve HTTP on port {only} in the image",
                    only=CONTRIBUTED_PORT,
                    port=number,
                )
            )
        protocol = str(port.get("protocol") or "HTTP").upper()
        if protocol not in {"HTTP", "HTTPS", "TCP"}:
            problems.append(
                _problem(
                    f"/executable/network/ports/{index}/protocol",
                    "Skaha proxies HTTP to a contributed session, not {protocol}",
                    protocol=protocol,
                )
            )


def _check_listed_type(
    spec: Mapping[str, Any], kind: str, catalogue: Catalogue, problems: list[MessageItem]
) -> None:
    """A carta, firefly or desktop image must be one ``/image`` lists for that type."""
    if kind not in _LISTED_TYPES:
        return
    locations = [str(loc) for loc in (spec.get("image") or {}).get("locations") or []]
    image = choose_image(locations, catalogue.registries)
    listed = catalogue.image_types.get(image or "")
    if image is None or listed is None or kind in listed:
        return  # not pullable or not cached: _check_executable says so; else it fits
    problems.append(
        _problem(
            "/executable/image/locations",
            "Skaha lists '{image}' for {types} sessions, not {kind}; choose an image "
            "GET /image lists with type {kind}",
            image=image,
            types=", ".join(sorted(listed)) or "no",
            kind=kind,
        )
    )


def _check_gpus(
    compute: PlannedComponent, catalogue: Catalogue, problems: list[MessageItem]
) -> None:
    """GPUs (``x-gpus``) only as ``/context`` offers them."""
    wanted = compute.spec.get(extensions.GPUS)
    if wanted is None:
        return
    options = catalogue.context.gpus
    path = f"/compute/{extensions.GPUS}"
    if not options:
        problems.append(_problem(path, "this Skaha site offers no GPUs"))
    elif wanted not in options:
        problems.append(
            _problem(
                path,
                "Skaha offers {options} GPUs, not {wanted}",
                options=", ".join(map(str, options)),
                wanted=wanted,
            )
        )


# --------------------------------------------------------------------------- running


def create_request(
    work: Work, *, name: str, catalogue: Catalogue | None, notebook_image: str
) -> CreateRequest:
    """The ``POST /session`` parameters for the compute resource in ``work``."""
    session = work.session
    executable = session.component(ComponentRole.EXECUTABLE)
    cores = _snap(session.cores, catalogue.context.cores if catalogue else None)
    ram = _snap(session.memory_gib, catalogue.context.memory_gb if catalogue else None)
    if executable is None:
        raise SkahaRequestError("the session has no executable to run on Skaha")
    spec: dict[str, Any] = executable.spec
    kind = executable_session_type(executable.kind, spec)
    gpus = _gpus(session.component(ComponentRole.COMPUTE))
    if executable.kind == kinds.EXECUTABLE_JUPYTER:
        return CreateRequest(
            name=name, image=notebook_image, type=kind, cores=cores, ram=ram, gpus=gpus
        )
    locations = [str(loc) for loc in (spec.get("image") or {}).get("locations") or []]
    registries = catalogue.registries if catalogue else ()
    image = choose_image(locations, registries) or next(
        (_clean(loc) for loc in locations if loc.strip()), None
    )
    if image is None:
        raise SkahaRequestError("the executable names no image for Skaha to run")
    launch = headless_launch(spec)
    return CreateRequest(
        name=name,
        image=image,
        type=kind,
        cores=cores,
        ram=ram,
        gpus=gpus,
        cmd=launch.cmd,
        args=launch.args,
        env=launch.env,
    )


def _gpus(compute: ComponentRecord | None) -> int | None:
    wanted = compute.spec.get(extensions.GPUS) if compute is not None else None
    return int(wanted) if wanted is not None else None


def _snap(amount: int, options: ResourceOptions | None) -> int:
    """The smallest option at least ``amount`` (planning chose an option already; this
    covers a /context that changed since).
    """
    if options is None or not options.options:
        return amount
    return next((o for o in options.options if o >= amount), options.options[-1])
