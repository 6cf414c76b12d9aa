"""From the broker's components to Skaha's session parameters, and back (SKAHA.md §6).

- docker-container → a ``headless`` session: ``entrypoint`` → ``cmd`` (one executable),
  ``command`` → ``args`` (Skaha splits them on spaces, so no argument may hold one),
  ``environment`` → repeated ``env=KEY=VALUE`` (Skaha silently drops a value with ``=``
  and breaks on one with ``"``). What Skaha cannot carry is refused at planning time.
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
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from execbroker.exceptions import RequestRefusedError
from execbroker.model import kinds
from execbroker.model.messages import make_message, warn
from execbroker.model.phases import MessageLevel
from execbroker.model.plan import Plan, PlannedComponent, Range
from execbroker.model.records import ComponentRole
from execbroker.model.wire import MessageItem
from execbroker.platforms.base import Work
from execbroker.platforms.skaha.client import CreateRequest, ResourceOptions, SkahaContext
from execbroker.platforms.skaha.errors import SkahaRequestError

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
    """The Skaha session type of an executable of ``kind`` with wire fields ``spec``."""
    del spec  # the later types (contributed, carta, ...) read it
    return "notebook" if kind == kinds.EXECUTABLE_JUPYTER else "headless"


def _problem(path: str, template: str, **values: object) -> MessageItem:
    return make_message(MessageLevel.ERROR, "{path}: " + template, {"path": path, **values})


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
    entrypoint = spec.get("entrypoint")
    if isinstance(entrypoint, str) and " " in entrypoint.strip():
        problems.append(
            _problem(
                "/executable/entrypoint",
                "Skaha runs one executable as the entrypoint, without arguments: "
                "'{entrypoint}' has a space; put its arguments in command",
                entrypoint=entrypoint,
            )
        )
    for index, argument in enumerate(spec.get("command") or []):
        if " " in str(argument):
            problems.append(
                _problem(
                    f"/executable/command/{index}",
                    "Skaha separates arguments with spaces, so an argument cannot contain "
                    "one: '{argument}'",
                    argument=argument,
                )
            )
    for name, value in (spec.get("environment") or {}).items():
        if "=" in str(value):
            problems.append(
                _problem(
                    f"/executable/environment/{name}",
                    "Skaha drops environment values that contain '=': {name}",
                    name=name,
                )
            )
        if '"' in str(value):
            problems.append(
                _problem(
                    f"/executable/environment/{name}",
                    "Skaha cannot pass a '\"' in an environment value: {name}",
                    name=name,
                )
            )
    network = spec.get("network") or {}
    if network.get("ports"):
        notes.append(
            warn("Skaha headless sessions publish no network ports; the ports are ignored")
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
    if kind == "notebook":
        return CreateRequest(name=name, image=notebook_image, type=kind, cores=cores, ram=ram)
    locations = [str(loc) for loc in (spec.get("image") or {}).get("locations") or []]
    registries = catalogue.registries if catalogue else ()
    image = choose_image(locations, registries) or next(
        (_clean(loc) for loc in locations if loc.strip()), None
    )
    if image is None:
        raise SkahaRequestError("the executable names no image for Skaha to run")
    environment = spec.get("environment") or {}
    entrypoint = spec.get("entrypoint")
    return CreateRequest(
        name=name,
        image=image,
        type=kind,
        cores=cores,
        ram=ram,
        cmd=entrypoint.strip() if isinstance(entrypoint, str) and entrypoint.strip() else None,
        args=tuple(str(argument) for argument in spec.get("command") or []),
        env=tuple(sorted((str(k), str(v)) for k, v in environment.items())),
    )


def _snap(amount: int, options: ResourceOptions | None) -> int:
    """The smallest option at least ``amount`` (planning chose an option already; this
    covers a /context that changed since).
    """
    if options is None or not options.options:
        return amount
    return next((o for o in options.options if o >= amount), options.options[-1])
