"""The token hint: served to the broker's own user on its own machine, to no one else."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from execbroker.web.token_hint import PROC_TABLES, socket_owner
from tests.support.live import LiveBroker

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"


def _row(local: str, remote: str, uid: int, state: str = "01") -> str:
    return f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  {uid} 0 1\n"


def test_the_owner_of_the_client_end_is_read_from_the_kernel_table(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(
        HEADER
        # The broker's end (127.0.0.1:8080 → :40000), owned by the broker, comes first…
        + _row("0100007F:1F90", "0100007F:9C40", 1000)
        # …and a listener on another port with the same numbers, not established.
        + _row("0100007F:9C40", "00000000:0000", 7, state="0A")
        # The browser's end (127.0.0.1:40000 → :8080).
        + _row("0100007F:9C40", "0100007F:1F90", 1001)
    )
    assert socket_owner(("127.0.0.1", 40000), 8080, tables=[table]) == 1001
    assert socket_owner(("127.0.0.1", 40001), 8080, tables=[table]) is None
    assert socket_owner(("127.0.0.1", 40000), 9090, tables=[table]) is None
    assert socket_owner(("not an address", 40000), 8080, tables=[table]) is None
    assert socket_owner(("127.0.0.1", 40000), 8080, tables=[tmp_path / "missing"]) is None


def test_ipv6_and_v4_mapped_clients_are_found(tmp_path: Path) -> None:
    table = tmp_path / "tcp6"
    loopback = "00000000000000000000000001000000"  # ::1, one 32-bit word at a time
    mapped = "0000000000000000FFFF00000100007F"  # ::ffff:127.0.0.1
    table.write_text(
        HEADER
        + _row(f"{loopback}:9C40", f"{loopback}:1F90", 1002)
        + _row(f"{mapped}:9C41", f"{mapped}:1F90", 1003)
    )
    assert socket_owner(("::1", 40000), 8080, tables=[table]) == 1002
    assert socket_owner(("127.0.0.1", 40001), 8080, tables=[table]) == 1003
    assert socket_owner(("::ffff:127.0.0.1", 40001), 8080, tables=[table]) == 1003


linux_only = pytest.mark.skipif(
    not PROC_TABLES[0].exists(), reason="socket owners are read from /proc/net/tcp (Linux)"
)


@linux_only
def test_a_process_of_the_brokers_user_gets_the_local_token(tmp_path: Path) -> None:
    with LiveBroker(data_dir=tmp_path) as broker:
        answer = httpx.get(f"{broker.url}/ui/token-hint")
        rebound = httpx.get(
            f"{broker.url}/ui/token-hint", headers={"Host": f"rebound.example:{broker.port}"}
        )
        assert answer.status_code == 200
        assert answer.json() == {"token": broker.token(), "user": "local"}
        assert answer.headers["cache-control"] == "no-store"
        # The token works, and it is not written to the log.
        assert httpx.get(f"{broker.url}/sessions", headers=broker.headers).status_code == 200
        assert rebound.status_code == 404
        assert broker.token() not in broker.log.read_text()


@linux_only
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("curl"),
    reason="needs root, setpriv and curl to ask as another user",
)
def test_another_local_user_gets_no_token(tmp_path: Path) -> None:
    with LiveBroker(data_dir=tmp_path) as broker:
        asked = subprocess.run(
            [  # noqa: S607 - found on PATH above
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                f"{broker.url}/ui/token-hint",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        body, status = asked.stdout.rsplit("\n", 1)
        assert status == "404"
        assert broker.token() not in body
        assert "does not run as the broker's user" in body
