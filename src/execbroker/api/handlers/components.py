"""``GET /executables/{uuid}``, ``/compute/``, ``/storage/``, ``/data/``, ``/volumes/``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from execbroker.api.dependencies import BrokerDep, CallerDep, RendererDep
from execbroker.api.handlers.openapi_bodies import (
    CALLER_ERRORS,
    content_of,
    error_responses,
    schema_ref,
)
from execbroker.api.handlers.paths import UuidPath, parse_uuid
from execbroker.api.responses import OutputFormat, respond
from execbroker.model.records import ComponentRole

__all__ = ["router"]

router = APIRouter(tags=["components"])


def _handler(
    role: ComponentRole,
) -> Callable[[str, OutputFormat, BrokerDep, CallerDep, RendererDep], Awaitable[Response]]:
    async def get_component(
        uuid: UuidPath, fmt: OutputFormat, broker: BrokerDep, caller: CallerDep, render: RendererDep
    ) -> Response:
        record, volumes = await broker.sessions.get_component(
            role, parse_uuid(uuid, role.value), caller=caller
        )
        body = render.component(record, volumes=volumes if role is ComponentRole.COMPUTE else None)
        return respond(body, fmt, root=role.value)

    return get_component


# The schemas a component of each role is written in (``kind`` tells which one).
_SCHEMAS = {
    ComponentRole.EXECUTABLE: ["DockerContainer", "JupyterNotebook", "SingularityContainer"],
    ComponentRole.COMPUTE: ["SimpleComputeResource"],
    ComponentRole.STORAGE: ["SimpleStorageResource"],
    ComponentRole.DATA: [
        "SimpleDataResource",
        "S3DataResource",
        "IvoaDataResource",
        "RucioDataResource",
        "SkaoDataResource",
    ],
    ComponentRole.VOLUME: ["SimpleVolumeMount"],
}


def _component_schema(role: ComponentRole) -> dict[str, Any]:
    names = _SCHEMAS[role]
    return schema_ref(names[0]) if len(names) == 1 else {"oneOf": [schema_ref(n) for n in names]}


for _role in ComponentRole:
    router.add_api_route(
        f"/{_role.collection}/{{uuid}}",
        _handler(_role),
        methods=["GET"],
        operation_id=f"{_role.value.capitalize()}Select",
        summary=f"One {_role.value} component of a session",
        response_class=Response,
        responses={
            200: {
                "description": f"The {_role.value} component.",
                "content": content_of(_component_schema(_role)),
            },
            **error_responses(*CALLER_ERRORS, 404, 406),
        },
    )
