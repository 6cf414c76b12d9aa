"""Who listens on a loopback port: the check made before the local token is sent there.

The tokens file's token is the local user's key to their own broker. Any local user can
listen on a loopback port the broker is not holding (it stopped, or listens elsewhere), so
before the client sends that token to a loopback URL it finds the listening socket in the
kernel's tables (``/proc/net/tcp`` and ``/proc/net/tcp6``, which name each socket's owner
uid) and sends the token only when every socket that could take the connection is its own
user's.

The check is made once, when the connection is resolved. A listener the check trusted holds
its port while it listens; another user could take the port only if the broker stops in the
moments between the check and the connection.

Where the tables do not exist (not Linux) the owner cannot be told, and the token is sent as
before: :func:`listener_owners` answers ``None``.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LoopbackListeners", "listener_owners", "untrusted_listener"]

_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_LISTEN = "0A"  # the TCP_LISTEN state, as the tables write it

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LoopbackListeners:
    """The owner uids of the sockets listening on ``port`` that a connection to ``host``
    could reach (bound to that address or to any address).
    """

    host: str
    port: int
    owners: frozenset[int]


def _address(hexadecimal: str) -> Address:
    """An address as the tables write it: 32-bit words in the host's byte order."""
    raw = bytes.fromhex(hexadecimal)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def _targets(host: str) -> set[Address]:
    """The addresses a connection to ``host`` may go to."""
    if host == "localhost":
        return {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    return {ipaddress.ip_address(host)}


def _reaches(bound: Address, targets: set[Address]) -> bool:
    """Whether a socket bound to ``bound`` takes connections to one of ``targets``."""
    if isinstance(bound, ipaddress.IPv6Address) and bound.ipv4_mapped is not None:
        bound = bound.ipv4_mapped
    if bound in targets:
        return True
    if bound.is_unspecified:
        # 0.0.0.0 takes IPv4; :: takes IPv6 and, unless the socket is IPv6-only (which
        # the tables do not say), IPv4 as well.
        return bound.version == 6 or any(t.version == 4 for t in targets)
    return False


def listener_owners(host: str, port: int) -> LoopbackListeners | None:
    """The owners of the listening sockets that a connection to ``host:port`` could reach;
    None where the kernel's socket tables cannot be read.
    """
    targets = _targets(host)
    owners: set[int] = set()
    readable = False
    for table in _TABLES:
        try:
            lines = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN:  # the uid is the eighth field
                continue
            address, _, bound_port = fields[1].partition(":")
            if int(bound_port, 16) != port:
                continue
            if _reaches(_address(address), targets):
                owners.add(int(fields[7]))
    if not readable:
        return None
    return LoopbackListeners(host=host, port=port, owners=frozenset(owners))


def untrusted_listener(host: str, port: int) -> str | None:
    """Why the local token must not go to ``host:port``, or None when it may: what listens
    there is this user's own process (or the owner cannot be told on this system).
    """
    found = listener_owners(host, port)
    if found is None:
        return None
    me = os.geteuid()
    others = sorted(found.owners - {me})
    if others:
        owners = ", ".join(str(uid) for uid in others)
        return (
            f"the local token was not sent: port {port} on {host} is held by a process of "
            f"uid {owners}, not by your own broker (uid {me})"
        )
    if not found.owners:
        return (
            f"the local token was not sent: nothing listens on port {port} on {host} "
            "(start the broker first: make run)"
        )
    return None
