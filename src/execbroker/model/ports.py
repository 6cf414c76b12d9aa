"""A range of host ports, as an operator configures it (``EXECBROKER_DOCKER_PORT_RANGE``).

A value type: the settings parse it, and the docker platform picks ports from it
(:mod:`execbroker.platforms.docker.ports`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PortRange"]

_LOWEST = 1024  # below: privileged ports, never published


@dataclass(frozen=True)
class PortRange:
    """The host ports, ``low`` to ``high`` inclusive, that containers' ports may be published on."""

    low: int
    high: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """``"20000-29999"`` (or one port ``"20000"``); raises ValueError saying why not."""
        low_text, _, high_text = text.strip().partition("-")
        if not low_text.strip().isdigit() or (high_text and not high_text.strip().isdigit()):
            raise ValueError(f"{text!r} is not a port range such as 20000-29999")
        low = int(low_text)
        high = int(high_text) if high_text else low
        if not _LOWEST <= low <= high <= 65535:
            raise ValueError(
                f"{text!r}: the range must lie within {_LOWEST}-65535 (no privileged ports), "
                "low end first"
            )
        return cls(low, high)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        return f"{self.low}-{self.high}"
