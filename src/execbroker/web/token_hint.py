"""Whether the dashboard may prefill the local user's token for the browser asking.

``make run`` writes the tokens file readable by its owner only (``0600``), so the one who
may be handed its token is someone who could read that file anyway: a process of the same
operating-system user as the broker. A browser on the same machine is such a process, and
over loopback TCP the kernel tells who owns the other end of a connection (``/proc/net/tcp``
names the owner of every socket). So the hint is served only when all of these hold:

- the broker checks tokens from its file (``auth = tokens``) and is not configured to sit
  behind a proxy (no ``public_url``, no ``trusted_proxies``), and the request carries no
  forwarding header (a proxy on the same machine would otherwise make everyone "local");
- the client's address is loopback, and so is the ``Host`` it asked for — a name that
  resolves to 127.0.0.1 (DNS rebinding) does not count;
- a browser that says where the request comes from (``Sec-Fetch-Site``) says same-origin;
- the client socket belongs to the broker's own user, as the kernel says (Linux only;
  elsewhere there is no hint and the user pastes ``execbroker token``).

Anything else gets no hint, with a reason that names which condition failed (none of them
is a secret), and the page asks for the token instead.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from starlette.requests import Request

from execbroker.config import Settings

__all__ = ["PROC_TABLES", "hint_refusal", "same_user", "socket_owner"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The kernel's tables of TCP sockets, with the uid that owns each.
PROC_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"
_FORWARDING_HEADERS = (
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-real-ip",
    "via",
)


def _plain(address: IPAddress) -> IPAddress:
    """``::ffff:127.0.0.1`` is 127.0.0.1 (a dual-stack listener reports v4 peers so)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return _plain(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_loopback_host(host_header: str) -> bool:
    """``localhost``, ``127.0.0.1:8080``, ``[::1]:8080`` — literal loopback only."""
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    address = _parse_ip(host)
    return address is not None and address.is_loopback


def _proc_endpoint(text: str) -> tuple[IPAddress, int]:
    """``0100007F:1F90`` → (127.0.0.1, 8080); the kernel prints 32-bit words in host order."""
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return _plain(ipaddress.ip_address(raw)), int(port, 16)


def socket_owner(
    client: tuple[str, int], server_port: int, *, tables: Sequence[Path] = PROC_TABLES
) -> int | None:
    """The uid owning the client end of a loopback connection to ``server_port``, if the
    kernel's tables show it (None when they cannot be read or do not list it)."""
    address = _parse_ip(client[0])
    if address is None:
        return None
    wanted = (address, client[1])
    for table in tables:
        try:
            lines = table.read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _ESTABLISHED:
                continue
            try:
                local = _proc_endpoint(fields[1])
                remote_address, remote_port = _proc_endpoint(fields[2])
                uid = int(fields[7])
            except ValueError:
                continue
            if local == wanted and remote_port == server_port and remote_address.is_loopback:
                return uid
    return None


def hint_refusal(request: Request, settings: Settings) -> str | None:
    """Why this request may not have the local token (None: it may). Cheap checks only;
    the socket owner is checked by the caller, off the event loop."""
    if settings.auth != "tokens":
        return "the broker does not use a local tokens file"
    if settings.public_url or settings.trusted_proxies:
        return "the broker is configured to serve through a proxy"
    if any(name in request.headers for name in _FORWARDING_HEADERS):
        return "the request came through a proxy"
    client = request.client
    address = _parse_ip(client.host) if client else None
    if address is None or not address.is_loopback:
        return "the browser is not on the broker's machine"
    if not _is_loopback_host(request.headers.get("host", "")):
        return "the page was not loaded from a loopback address"
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return "the request did not come from the dashboard's own pages"
    return None


def same_user(request: Request) -> bool:
    """True when the kernel says the client socket is the broker's own user's."""
    client, server = request.client, request.scope.get("server")
    if client is None or not server or server[1] is None:
        return False
    return socket_owner((client.host, client.port), int(server[1])) == os.geteuid()
