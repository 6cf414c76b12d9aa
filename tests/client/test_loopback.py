"""The local token goes only to the local user's own broker (SECURITY-PROBES-2 W9).

Another local user can listen on the loopback port the broker normally holds (it is stopped,
or listens elsewhere). The client must not hand such a listener the tokens file's token,
and must say why. The command line's side is in ``tests/cli/test_local_token.py``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from execbroker.client import BrokerClient, UnauthorizedError, resolve_connection
from tests.support.squatter import NOBODY, listener, loopback_url

LOCAL_TOKEN = "local-token-W9-0123456789abcdef"


@pytest.fixture(autouse=True)
def local_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tokens file with the local user's token, found as the client finds it."""
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump({"tokens": {LOCAL_TOKEN: "local"}}))
    monkeypatch.setenv("EXECBROKER_DATA_DIR", str(tmp_path))
    for name in ("EXECBROKER_TOKEN", "EXECBROKER_URL", "EXECBROKER_TOKENS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "0.0.0.0"])  # noqa: S104
def test_no_local_token_goes_to_a_port_another_user_holds(address: str) -> None:
    with listener(address, uid=NOBODY) as squatter:
        with BrokerClient(loopback_url(address, squatter.port)) as client:
            assert client.connection.token is None
            said = client.connection.withheld or ""
            with pytest.raises(UnauthorizedError):
                client.sessions()
        # The squatter was asked (it got the request) but got no token.
        assert squatter.stop() == ["-"]
    assert f"port {squatter.port}" in said
    assert f"uid {NOBODY}, not by your own broker (uid {os.geteuid()})" in said


def test_the_local_token_goes_to_a_listener_of_the_same_user() -> None:
    with listener("127.0.0.1", uid=None) as own:
        with BrokerClient(f"http://127.0.0.1:{own.port}") as client:
            assert client.connection.withheld is None
            with pytest.raises(UnauthorizedError):
                client.sessions()
        assert own.stop() == [f"Bearer {LOCAL_TOKEN}"]


def test_no_local_token_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    found = resolve_connection(f"http://127.0.0.1:{port}")
    assert found.token is None
    assert f"nothing listens on port {port}" in (found.withheld or "")


def test_a_dot_localhost_name_is_not_taken_for_this_machine() -> None:
    # A resolver may send *.localhost to DNS: the local token must not follow it there.
    with listener("127.0.0.1", uid=None) as own:
        found = resolve_connection(f"http://broker.localhost:{own.port}")
        own.stop()
    assert found.token is None
    assert found.token_source == "none"
