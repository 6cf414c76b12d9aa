"""What an engine pass teaches the learned estimates: how long each step that became
available took to prepare (see :mod:`execbroker.planning.estimates`).
"""

from __future__ import annotations

from datetime import datetime

from execbroker.model.advance import Advance
from execbroker.model.estimates import LEARNED_ROLES, EstimateKey, Observation, executable_image
from execbroker.model.phases import ComponentPhase
from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord

__all__ = ["observations"]

_UP = frozenset({ComponentPhase.AVAILABLE, ComponentPhase.RUNNING})


def _key(platform: str, component: ComponentRecord, session: SessionRecord) -> EstimateKey:
    """The key a component's preparing time is learned under: the executable's kind and
    image for the executable and the compute, the component's own kind otherwise.
    """
    executable = session.component(ComponentRole.EXECUTABLE)
    if component.role in (ComponentRole.EXECUTABLE, ComponentRole.COMPUTE) and executable:
        image = executable_image(executable.kind, executable.spec)
        return EstimateKey(platform, component.role, executable.kind, image)
    return EstimateKey(platform, component.role, component.kind)


def observations(
    session: SessionRecord, advance: Advance, *, platform: str, now: datetime
) -> list[Observation]:
    """The steps of ``session`` that ``advance`` brought up (available or running), with how
    long each took from its preparing start to ``now``.
    """
    before = {c.uuid: c for c in session.components}
    found = []
    for change in advance.components:
        record = before.get(change.uuid)
        if (
            record is None
            or record.role not in LEARNED_ROLES
            or record.phase in _UP
            or change.phase not in _UP
            or change.started_at is None
        ):
            continue
        seconds = max(0.0, (now - change.started_at).total_seconds())
        found.append(Observation(_key(platform, record, session), seconds, now))
    return found
