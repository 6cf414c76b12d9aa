"""A real broker process on a loopback port, started the way operators start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from execbroker.localtoken import local_token


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LiveBroker:
    """``execbroker serve`` in a subprocess; ``url`` once it answers ``/healthz``."""

    def __init__(self, *, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"broker-{self.port}.log"
        self.headers: dict[str, str] = {}

    def _spawn(self) -> subprocess.Popen[bytes]:
        environment = {**os.environ, "EXECBROKER_DATA_DIR": str(self.data_dir), **self.env}
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "execbroker", "serve", "--port", str(self.port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, timeout: float = 30, *, ready: tuple[int, ...] = (200,)) -> LiveBroker:
        """Spawn, and wait until ``/healthz`` answers one of ``ready`` (503: a degraded
        broker, which serves but says its database cannot take writes)."""
        self.process = self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                # A restart on the port of a process just killed can find it not yet free.
                if "address already in use" in self.log.read_text().lower():
                    time.sleep(0.5)
                    self.process = self._spawn()
                    continue
                raise RuntimeError(f"broker exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code in ready:
                    self.headers = {"Authorization": f"Bearer {self.token()}"}
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"broker did not become ready:\n{self.log.read_text()}")

    def token(self) -> str:
        """The local user's token, from the tokens file the broker created (or was given)."""
        path = Path(self.env.get("EXECBROKER_TOKENS_FILE", self.data_dir / "tokens.yaml"))
        user = self.env.get("EXECBROKER_DEFAULT_OWNER", "local")
        token = local_token(path, user=user)
        if token is None:
            raise RuntimeError(f"no token for {user} in {path}")
        return token

    def client(self, **options: Any) -> httpx.Client:
        """An HTTP client as the local user; 30 s timeout, longer than any ``?wait=``."""
        options.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=self.headers, **options)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, as when a machine or the OOM killer takes it."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LiveBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
