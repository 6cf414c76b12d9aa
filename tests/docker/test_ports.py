"""Host ports come from the configured range, never privileged ones; no runtime needed."""

from __future__ import annotations

import socket

import pytest

from execbroker.config import DockerSettings
from execbroker.model.ports import PortRange
from execbroker.platforms.docker.ports import PortClaims


def _free_pair() -> int:
    """The lower of two neighbouring free loopback ports."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            low = int(probe.getsockname()[1])
        if low < 65535:
            with socket.socket() as other:
                try:
                    other.bind(("127.0.0.1", low + 1))
                except OSError:
                    continue
            return low
    raise AssertionError("no two neighbouring free ports")


def test_a_range_reads_and_refuses_privileged_or_backwards_ports() -> None:
    assert PortRange.parse("20000-29999") == PortRange(20000, 29999)
    assert PortRange.parse(" 30000 ") == PortRange(30000, 30000)
    assert 20000 in PortRange(20000, 20001)
    assert 20002 not in PortRange(20000, 20001)
    for bad in ("80-9000", "1023-2000", "3000-2000", "20000-70000", "a-b", ""):
        with pytest.raises(ValueError, match=r"port range|1024-65535"):
            PortRange.parse(bad)
    with pytest.raises(ValueError, match="no privileged ports"):
        DockerSettings(port_range="81-81")


def test_claims_pick_free_ports_of_the_range_and_never_the_same_twice() -> None:
    low = _free_pair()
    claims = PortClaims(PortRange(low, low + 1), "127.0.0.1")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", low))  # someone else holds the first port
        squatter.listen()
        assert claims.claim("tcp") == low + 1
        assert claims.claim("tcp") is None, "the other is claimed, the first is taken"
    assert claims.claim("tcp") == low  # free again once the squatter left
    claims.release(low + 1, "tcp")
    assert claims.claim("tcp") == low + 1
    assert claims.claim("udp") in (low, low + 1), "udp ports are counted apart"
