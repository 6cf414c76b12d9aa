"""A fake CANFAR Skaha session API, served over real HTTP (SKAHA.md §5).

``FakeSkaha`` holds the sessions and the knobs; ``create_skaha_app`` serves it::

    fake = FakeSkaha(StaticTokens({"tok": "alice"}), clock=ManualClock())
    with ServerThread(create_skaha_app(fake)) as server:
        ...  # the broker's Skaha client talks to f"{server.url}/skaha/v1"

``ManualClock`` is :class:`execbroker.clock.ManualClock`.
"""

from execbroker.fakes.skaha.app import create_skaha_app
from execbroker.fakes.skaha.auth import StaticTokens, TokenAuthority
from execbroker.fakes.skaha.config import (
    Endpoint,
    FakeImage,
    Fault,
    FaultKind,
    SkahaCatalogue,
    SkahaQuirks,
    SkahaTimings,
)
from execbroker.fakes.skaha.errors import SkahaError
from execbroker.fakes.skaha.proxy import SkahaFaults, create_fault_proxy
from execbroker.fakes.skaha.state import (
    NOT_AUTHORIZED,
    REGISTRY_AUTH_REQUIRED,
    FakeSkaha,
    RecordedRequest,
)

__all__ = [
    "NOT_AUTHORIZED",
    "REGISTRY_AUTH_REQUIRED",
    "Endpoint",
    "FakeImage",
    "FakeSkaha",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "SkahaCatalogue",
    "SkahaError",
    "SkahaFaults",
    "SkahaQuirks",
    "SkahaTimings",
    "StaticTokens",
    "TokenAuthority",
    "create_fault_proxy",
    "create_skaha_app",
]
