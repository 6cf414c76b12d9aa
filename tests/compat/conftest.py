"""Fixtures: a client generated from the v1.0 schema, and a broker process for it to call.

The client is generated once per test run into a temporary folder and imported from there;
it is never written into the repository. Without Java, the generator or the shared schema
the tests are skipped, saying which is missing — except under ``CI=true``, where that is a
failure.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.support.engine import FAST
from tests.support.generated_client import generate_client, missing_prerequisite
from tests.support.live import LiveBroker
from tests.support.users import TOKENS, write_tokens_file

# The package name the reference broker's own Python tests import their client as.
PACKAGE = "calycopis_openapi_client"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated client package, importable for this test run only."""
    missing = missing_prerequisite()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the generated-client test must run under CI=true: {missing}")
        pytest.skip(missing)
    root = generate_client(tmp_path_factory.mktemp("generated-client"), package=PACKAGE)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _fast_environment() -> dict[str, str]:
    """The engine tests' quick mock timings, as the ``EXECBROKER_*`` variables of a process."""
    return {
        f"EXECBROKER_{name.upper()}": json.dumps(value) if isinstance(value, dict) else str(value)
        for name, value in FAST.items()
    }


@pytest.fixture(scope="module")
def live_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBroker]:
    """``execbroker serve`` on a loopback port: the mock platform, alice's bearer token."""
    folder = tmp_path_factory.mktemp("compat-broker")
    env = {
        **_fast_environment(),
        "EXECBROKER_TOKENS_FILE": str(write_tokens_file(folder / "tokens.yaml")),
        "EXECBROKER_DEFAULT_OWNER": "alice",
    }
    with LiveBroker(data_dir=folder, env=env) as live:
        yield live


@pytest.fixture
def api(generated: ModuleType, live_broker: LiveBroker) -> Iterator[Any]:
    """The generated ``DefaultApi`` against the live broker, sending alice's bearer token.

    The v1.0 schema declares no security scheme, so the generated ``Configuration`` has no
    auth setting that would send a token; like the reference's own client fixtures, the token
    goes in as a default header of the ``ApiClient``.
    """
    configuration = generated.Configuration(host=live_broker.url)
    with generated.ApiClient(
        configuration,
        header_name="Authorization",
        header_value=f"Bearer {TOKENS['alice']}",
    ) as client:
        yield generated.DefaultApi(client)
