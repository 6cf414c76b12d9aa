"""Host ports for published container ports: only from the configured range.

A user never chooses an arbitrary host port: a port the request names must lie in the
range (``docker_port_range``, never below 1024), and one it leaves open is picked here, free
on the publish address, from a random place in the range. Ports picked but not yet bound by
their container are held in :class:`PortClaims`, so that two containers being created at
once do not pick the same one.
"""

from __future__ import annotations

import random
import socket

from execbroker.model.ports import PortRange

__all__ = ["PortClaims"]


def _is_free(address: str, port: int, transport: str) -> bool:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, kind) as probe:
            probe.bind((address, port))
    except OSError:
        return False
    return True


class PortClaims:
    """Ports picked for containers not yet started, so that no two get the same one."""

    def __init__(self, ports: PortRange, address: str) -> None:
        self._ports = ports
        self._address = address or "0.0.0.0"  # noqa: S104 - probed, as the runtime binds it
        self._claimed: set[tuple[int, str]] = set()

    def claim(self, transport: str) -> int | None:
        """A free port of the range, held until :meth:`release`; None when none is free."""
        size = self._ports.high - self._ports.low + 1
        start = random.randrange(size)  # noqa: S311 - spreading, not secrecy
        for offset in range(size):
            port = self._ports.low + (start + offset) % size
            if (port, transport) in self._claimed:
                continue
            if _is_free(self._address, port, transport):
                self._claimed.add((port, transport))
                return port
        return None

    def release(self, port: int, transport: str) -> None:
        self._claimed.discard((port, transport))
