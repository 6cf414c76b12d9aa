"""Planning-time egress check: URLs in a request that name a denied address are refused.

Every platform: whatever later fetches a location (the broker's own staging, or a platform
that passes it on), a request naming ``http://127.0.0.1/…``, ``http://2130706433/``,
``http://[::ffff:10.0.0.1]/`` or ``http://localhost/`` is refused at once, with a message
naming the field. Names are not resolved here (no DNS at planning time); they are resolved
and checked when fetched (:mod:`execbroker.egress`).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import urlsplit

from execbroker.config import Settings
from execbroker.egress import EgressPolicy
from execbroker.model.messages import error
from execbroker.model.wire import (
    ExecutionRequest,
    JupyterNotebook,
    MessageItem,
    S3DataResource,
    SimpleDataResource,
    SingularityContainer,
)

__all__ = ["destination_problems"]


@lru_cache(maxsize=8)
def _policy(allow: tuple[str, ...]) -> EgressPolicy:
    return EgressPolicy(allow)


def _locations(request: ExecutionRequest) -> Iterator[tuple[str, str]]:
    """(JSON pointer, URL) of every location in the request that something may fetch."""
    executable = request.executable
    if isinstance(executable, JupyterNotebook | SingularityContainer) and executable.location:
        yield "/executable/location", executable.location
    for index, resource in enumerate(request.data or []):
        if isinstance(resource, SimpleDataResource) and resource.location:
            yield f"/data/{index}/location", resource.location
        elif isinstance(resource, S3DataResource) and resource.endpoint:
            yield f"/data/{index}/endpoint", resource.endpoint


def destination_problems(request: ExecutionRequest, *, settings: Settings) -> list[MessageItem]:
    """One error per location whose host is a denied address or a loopback name."""
    policy = _policy(tuple(settings.egress_allow))
    problems = []
    for path, location in _locations(request):
        if urlsplit(location.strip()).scheme.lower() == "file":
            continue  # not fetched over a network; file roots govern it (docker_file_roots)
        reason = policy.literal_refusal(location)
        if reason is not None:
            problems.append(
                error(
                    "{path}: {reason}, which the broker does not fetch from (an operator "
                    "can allow it with egress_allow)",
                    path=path,
                    reason=reason,
                )
            )
    return problems
