"""Where the broker may connect to on a user's behalf: the egress policy.

Anything the broker fetches from a URL a user wrote (today: the docker platform's data
staging) goes through :class:`EgressTransport`, which

- resolves the host name once, off the event loop, and checks **every** address it resolves
  to; one denied address refuses the whole name (a name that resolves to a public and a
  loopback address is not a way in);
- connects to the address it checked, keeping the name for the ``Host`` header and for TLS
  (SNI and certificate checks), so that a second DNS answer (rebinding) cannot move the
  connection elsewhere;
- is used by a client that does not follow redirects: :func:`fetch` follows them itself,
  at most :data:`MAX_REDIRECTS`, and every hop passes through the same checks.

Denied by default: loopback, link-local, private (RFC 1918), shared (CGNAT, 100.64.0.0/10),
unique-local (fc00::/7), multicast, unspecified, reserved and otherwise not globally
routable addresses; the IPv4 address inside an IPv6 one (mapped ``::ffff:a.b.c.d``,
compatible ``::a.b.c.d``, 6to4, Teredo, NAT64 ``64:ff9b::/96``) counts as that address; and
every address of the broker's own machine, whatever it listens on (an address is the
machine's own when a socket can be bound to it). The names ``localhost`` and
``*.localhost`` are loopback without asking DNS.

An allow-list (``egress_allow``) opens what a site or a test needs: CIDR blocks or single
addresses (``10.1.0.0/16``, ``127.0.0.1``), and host names with an optional port
(``data.internal.example``, ``localhost:8491``). An allowed entry wins over every default
denial, the machine's own addresses included.

:func:`literal_refusal` is the check that needs no DNS, for planning time: a URL whose host
is an address in a denied range, in any spelling the resolver accepts (``2130706433``,
``0x7f.1``, ``127.1``, ``[::ffff:127.0.0.1]``), or ``localhost``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import unicodedata
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from execbroker.exceptions import EgressRefusedError

__all__ = [
    "MAX_REDIRECTS",
    "EgressPolicy",
    "EgressTransport",
    "address_class",
    "egress_client",
    "fetch",
    "host_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
_SCHEMES = ("http", "https")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are IPv4
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible addresses
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, where it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in _NAT64 or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> str | None:
    """Why ``address`` is denied by default (``"a loopback address"``, ``"a private
    address"``…), or None for an ordinary public address. Pure: whether it is the machine's
    own is checked apart.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded(address)
        if inner is not None:
            found = address_class(inner)
            if found is not None:
                return f"{found} ({inner} inside it)"
    checks: tuple[tuple[bool, str], ...] = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address in _SHARED, "a shared (carrier-grade NAT) address"),
        (address in _UNIQUE_LOCAL, "a unique-local address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        (not address.is_global, "an address that is not globally routable"),
    )
    return next((reason for found, reason in checks if found), None)


def host_address(host: str) -> IPAddress | None:
    """The address a URL's host names without DNS: an IPv6 or IPv4 literal in any spelling
    the C resolver accepts (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``), or None
    for a name.
    """
    text = host.strip().strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text):
        return None  # a name: inet_aton would also take "1.2.3.4 junk"; names never match
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _hosts(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a URL may be read as (the standard library's and httpx's), and
    each host as IDNA reads it (NFKC: ``①②⑦.0.0.1`` is 127.0.0.1).
    """
    text = url.strip()
    found: list[tuple[str, int]] = []
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    if parts.hostname:
        found.append((parts.hostname, port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)))
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is not None and parsed.host:
        found.append((parsed.host, parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 0)))
    folded = [(unicodedata.normalize("NFKC", host), port) for host, port in found]
    return found + [pair for pair in folded if pair not in found]


def _shown(host: str) -> str:
    """A host for a message: never more than 80 characters of what a user wrote."""
    return host if len(host) <= 80 else host[:77] + "..."


def _is_localhost(host: str) -> bool:
    name = host.strip().rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def _is_own(address: IPAddress) -> bool:
    """True when ``address`` belongs to this machine: a socket can be bound to it."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class _Name:
    host: str
    port: int | None


def _parse_entry(entry: str) -> IPNetwork | _Name:
    text = entry.strip()
    if not text:
        raise ValueError("an empty egress_allow entry")
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        pass
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        if not number.isdigit() or not 0 < int(number) < 65536:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
        port = int(number)
    if not host or "/" in host or " " in host:
        raise ValueError(f"{entry!r} is neither a CIDR block nor host[:port]")
    return _Name(host.rstrip(".").lower(), port)


class EgressPolicy:
    """The default denials and the allow-list; immutable once built."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        entries = [_parse_entry(entry) for entry in allow]
        self._networks = tuple(e for e in entries if not isinstance(e, _Name))
        self._names = tuple(e for e in entries if isinstance(e, _Name))

    def _allowed(self, host: str, port: int, address: IPAddress | None) -> bool:
        name = host.strip("[]").rstrip(".").lower()
        for entry in self._names:
            if entry.host == name and entry.port in (None, port):
                return True
            if address is not None and entry.port in (None, port):
                literal = host_address(entry.host)
                if literal is not None and literal == address:
                    return True
        if address is None:
            return False
        plain = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped
        return any(plain in network for network in self._networks)

    def refusal(self, host: str, port: int, address: IPAddress) -> str | None:
        """Why connecting to ``address`` for ``host``:``port`` is denied, or None."""
        if self._allowed(host, port, address):
            return None
        found = address_class(address)
        if found is None and _is_own(address):
            found = "this machine's own address"
        return None if found is None else f"{address} is {found}"

    def literal_refusal(self, url: str) -> str | None:
        """Why ``url`` is refused without asking DNS (None: not refused *yet*; its name is
        checked again, resolved, when it is fetched). For planning time. The host is taken
        as both the standard library and httpx read it, in case they disagree.
        """
        for host, port in _hosts(url):
            if _is_localhost(host):
                if not self._allowed(host, port, None):
                    return f"{_shown(host)} is a loopback name"
                continue
            address = host_address(host)
            if address is None or self._allowed(host, port, address):
                continue
            found = address_class(address)
            if found is not None:
                return f"{_shown(host)} is {found}"
        return None

    async def resolve(self, host: str, port: int, *, seconds: float | None) -> IPAddress:
        """The one address to connect to for ``host``; raises :class:`EgressRefusedError`
        when the name does not resolve (within ``seconds``) or any address it resolves to
        is denied.
        """
        literal = host_address(host)
        if literal is not None:
            addresses = [literal]
        elif _is_localhost(host):
            addresses = [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
        else:
            addresses = await _lookup(host, port, seconds=seconds)
        for address in addresses:
            reason = self.refusal(host, port, address)
            if reason is not None:
                raise EgressRefusedError(f"{_shown(host)} is not allowed: {reason}")
        return addresses[0]


async def _lookup(host: str, port: int, *, seconds: float | None) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise EgressRefusedError(f"{_shown(host)} did not resolve in time") from None
    except (OSError, UnicodeError):
        raise EgressRefusedError(f"{_shown(host)} does not resolve") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise EgressRefusedError(f"{_shown(host)} does not resolve")
    return addresses


class EgressTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only where the policy allows, to the address it
    checked. Give it to a client with ``follow_redirects=False`` and use :func:`fetch`.
    """

    def __init__(self, policy: EgressPolicy, *, verify: ssl.SSLContext | bool = True) -> None:
        self._policy = policy
        # No kept-alive connections: a pooled connection is keyed by address, and one made
        # (and TLS-checked) for one name must not carry a request for another.
        self._inner = httpx.AsyncHTTPTransport(
            verify=verify, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _SCHEMES:
            raise EgressRefusedError(f"{url.scheme}:// locations are not fetched")
        host = url.host
        port = url.port or _DEFAULT_PORTS[url.scheme]
        timeouts = request.extensions.get("timeout") or {}
        address = await self._policy.resolve(host, port, seconds=timeouts.get("connect"))
        extensions = dict(request.extensions)
        if url.scheme == "https":
            extensions["sni_hostname"] = host
        # The Host header was set from the name when the request was built; keep it.
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(address)),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()


def egress_client(
    policy: EgressPolicy,
    *,
    seconds: float,
    headers: dict[str, str] | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """A client for fetching what users name: through the policy, no automatic redirects
    (use :func:`fetch`), ``seconds`` to connect or for the next bytes; ``verify`` as httpx
    takes it (the certificate is checked against the name, not the address).
    """
    return httpx.AsyncClient(
        transport=EgressTransport(policy, verify=verify),
        follow_redirects=False,
        timeout=httpx.Timeout(seconds),
        headers=headers,
    )


@asynccontextmanager
async def fetch(
    client: httpx.AsyncClient, url: str, *, max_redirects: int = MAX_REDIRECTS
) -> AsyncIterator[httpx.Response]:
    """``GET url`` as a stream, following at most ``max_redirects`` redirects one at a time:
    each hop is checked again (scheme here, destination in :class:`EgressTransport`).
    """
    request = client.build_request("GET", url)
    for _ in range(max_redirects + 1):
        if request.url.scheme not in _SCHEMES:
            raise EgressRefusedError(
                f"a redirect to a {request.url.scheme}:// location is not followed"
            )
        response = await client.send(request, stream=True, follow_redirects=False)
        if not response.has_redirect_location or response.next_request is None:
            try:
                yield response
            finally:
                await response.aclose()
            return
        await response.aclose()
        request = response.next_request
    raise EgressRefusedError(f"more than {max_redirects} redirects")
