"""The request fields execbroker adds to the v1.0 schema, and their refusal where they mean
nothing.

Both are Skaha's (``docs/skaha.md``): ``x-session-type`` on a docker-container names the
Skaha session type to run it as, ``x-gpus`` on the compute resource asks for GPUs. The
``x-`` prefix marks them as extensions; a platform that cannot honour them refuses the
request at planning time rather than running it without what was asked for.
"""

from __future__ import annotations

from execbroker.model.messages import make_message
from execbroker.model.phases import MessageLevel
from execbroker.model.plan import Plan
from execbroker.model.wire import MessageItem

__all__ = ["GPUS", "SESSION_TYPE", "unsupported_extensions"]

SESSION_TYPE = "x-session-type"
GPUS = "x-gpus"


def unsupported_extensions(plan: Plan, *, platform: str) -> list[MessageItem]:
    """A problem for each extension field ``plan`` uses, on a platform that has none."""
    used = [
        (f"/executable/{SESSION_TYPE}", plan.executable.spec.get(SESSION_TYPE)),
        (f"/compute/{GPUS}", plan.compute.spec.get(GPUS)),
    ]
    return [
        make_message(
            MessageLevel.ERROR,
            "{path}: the {platform} platform cannot honour this extension (Skaha only)",
            {"path": path, "platform": platform},
        )
        for path, value in used
        if value is not None
    ]
