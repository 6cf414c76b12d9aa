"""A real HTTP server on a loopback port in a process of another OS user (``nobody``), which
records the ``Authorization`` header of every request it gets: a local user squatting on
the port a client takes for its own broker's (SECURITY-PROBES-2 W9)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["NOBODY", "Listener", "listener", "loopback_url"]

NOBODY = 65534
# The system's interpreter: the tests' own may sit under a folder only root can enter.
SYSTEM_PYTHON = "/usr/bin/python3"

# A stand-in for a broker: answers every request 401, and prints the Authorization it got.
_LISTENER = """
import http.server, json, socket, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self):
        print("AUTHORIZATION", self.headers.get("Authorization") or "-", flush=True)
        body = json.dumps({"error": "unauthorized", "status": 401, "messages": []}).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = answer

class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET

server = Server((sys.argv[1], 0), Handler)
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"""


@dataclass
class Listener:
    port: int
    process: subprocess.Popen[str]
    authorizations: list[str] = field(default_factory=list)

    def stop(self) -> list[str]:
        """Stop it; the Authorization header of each request it got (``-``: none)."""
        if self.process.poll() is None:
            self.process.terminate()
        rest, _ = self.process.communicate(timeout=10)
        self.authorizations += [
            line.split(" ", 1)[1] for line in rest.splitlines() if line.startswith("AUTHORIZATION")
        ]
        return self.authorizations


@contextmanager
def listener(address: str, *, uid: int | None) -> Iterator[Listener]:
    """A recording HTTP server on ``address`` run as ``uid`` (None: as this process)."""
    if uid is not None and os.geteuid() != 0:
        pytest.skip("listening as another OS user needs root")
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} is needed to run a listener as another user")
    process = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", _LISTENER, address],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        # Dropped before the socket is made: a socket's owner is the uid that made it.
        user=uid,
        group=uid,
        extra_groups=None if uid is None else [],
    )
    assert process.stdout is not None
    first = process.stdout.readline().split()
    assert first[:1] == ["PORT"], first
    started = Listener(port=int(first[1]), process=process)
    try:
        yield started
    finally:
        if process.poll() is None:
            started.stop()


def loopback_url(address: str, port: int) -> str:
    """The URL a user would give for a listener on ``address`` (``localhost`` for 0.0.0.0)."""
    host = "localhost" if address == "0.0.0.0" else address  # noqa: S104
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
