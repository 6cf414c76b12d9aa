"""The external base URL that every absolute URL the broker emits starts with.

``meta.url`` in documents, ``Location`` on 303s and the 307s that add or drop a trailing
slash all start with :func:`base_url`. It is, in order:

1. the configured ``public_url``, when there is one;
2. the scheme and address the connection came in on (the ASGI scope's ``server``: the
   address the server listens on), never the request's ``Host`` header, which any client
   can set to anything (``Host: evil.example/x?y=`` would otherwise be echoed) -- except
   that on a loopback address, a ``Host`` of another loopback name for the same port
   (``localhost:8080`` for ``127.0.0.1:8080``) is kept as the client wrote it: clients drop
   the token on a redirect to another host, and the contract's default server is
   ``http://localhost:8080``;
3. with ``X-Forwarded-Proto``, ``-Host`` and ``-Prefix`` on top, but only from the
   configured trusted proxies.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from fastapi.routing import iter_route_contexts
from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Match, Route, Router, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from execbroker.config import Settings

__all__ = ["RoutePatterns", "SlashRedirects", "UnroutedPaths", "base_url"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=64)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(request: Request, settings: Settings) -> bool:
    if not settings.server.trusted_proxies or request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.server.trusted_proxies)))


def _first(value: str) -> str:
    # A chain of proxies sends "a, b"; the first is the one the client talked to.
    return value.split(",", maxsplit=1)[0].strip()


# What a trusted proxy may pass on, and nothing else (a proxy that copies the client's own
# X-Forwarded-Host must not let "evil.example/x?y=" or "user@host" through either).
# Character classes only, so that matching is linear in the header's length.
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](?::[0-9]{1,5})?")
_PREFIX = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")


def _listen_authority(scope: Scope, scheme: str) -> str:
    """``host[:port]`` of the address this connection was accepted on."""
    server = scope.get("server")
    if not server:
        # A Unix socket has no address a client could use: a proxy in front of one
        # should be trusted or a public_url set; until then, name this machine.
        return "localhost"
    host, port = str(server[0]), server[1]
    if ":" in host:
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == int(port):
        return host
    return f"{host}:{int(port)}"


# The names a client on this machine may call a loopback address by, kept as written.
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


@lru_cache(maxsize=64)
def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _as_named_on_loopback(request: Request, listened: str) -> str:
    """``listened``, or the ``Host`` the client wrote when both name this machine's loopback
    at the same port (nothing else of the header is ever used).
    """
    server = request.scope.get("server")
    if not server:
        return listened
    if not _is_loopback(str(server[0])):
        return listened
    address = f"[{server[0]}]" if ":" in str(server[0]) else str(server[0])
    port = listened[len(address) :]  # ":8080", or "" for the scheme's default port
    named = request.headers.get("host", "").strip().lower()
    for name in _LOOPBACK_NAMES:
        if named == name + port:
            return named
    return listened


def base_url(request: Request, settings: Settings) -> str:
    """``scheme://host[:port][/prefix]`` with no trailing slash."""
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    scheme = request.url.scheme if request.url.scheme in _DEFAULT_PORTS else "http"
    host = _as_named_on_loopback(request, _listen_authority(request.scope, scheme))
    prefix = request.scope.get("root_path", "")
    if _trusted(request, settings):
        forwarded_proto = request.headers.get("x-forwarded-proto")
        forwarded_host = request.headers.get("x-forwarded-host")
        forwarded_prefix = request.headers.get("x-forwarded-prefix")
        if forwarded_proto and _first(forwarded_proto) in _DEFAULT_PORTS:
            scheme = _first(forwarded_proto)
        if forwarded_host and _HOST.fullmatch(_first(forwarded_host)):
            host = _first(forwarded_host)
        elif forwarded_proto:
            host = _listen_authority(request.scope, scheme)
        if forwarded_prefix and _PREFIX.fullmatch(_first(forwarded_prefix)):
            prefix = "/" + _first(forwarded_prefix).strip("/")
    return f"{scheme}://{host}{prefix}".rstrip("/")


def _route_path(scope: Scope) -> str:
    """The path below ``root_path``, as the router matches it."""
    path: str = scope.get("path", "")
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class RoutePatterns:
    """Whether any route of ``router`` serves a path, by any method: its routes' path patterns
    joined into one, compiled when first asked (every route is in place by then).
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self._pattern: re.Pattern[str] | None = None
        self._plain: bool | None = None

    def serves(self, route_path: str) -> bool | None:
        """True or False; None when some route is not a plain path route (a mount matches
        more than a pattern says), so that only the router itself can tell.
        """
        if self._plain is None:
            contexts = list(iter_route_contexts(self.router.routes))
            self._plain = all(
                isinstance(context.original_route, Route) and context.path is not None
                for context in contexts
            )
            # Each route's own pattern (anchored), its named groups made plain so that two
            # routes may name the same parameter.
            self._pattern = re.compile(
                "|".join(
                    "(?:" + _NAMED_GROUP.sub("(?:", compile_path(str(c.path))[0].pattern) + ")"
                    for c in contexts
                )
            )
        if not self._plain or self._pattern is None:
            return None
        return self._pattern.match(route_path) is not None


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


class SlashRedirects:
    """The router's fallback: a path that matches once a trailing slash is added or dropped
    is redirected (307) to that path under :func:`base_url`; anything else is not found.

    Starlette's own ``redirect_slashes`` builds the ``Location`` from the ``Host`` header,
    so the app turns it off and installs this as the router's ``default`` instead.
    """

    def __init__(self, router: Router, settings: Settings, *, otherwise: ASGIApp) -> None:
        self.router = router
        self.settings = settings
        self.otherwise = otherwise
        self.patterns = RoutePatterns(router)

    def _routed(self, scope: Scope, root: str, route_path: str) -> bool:
        """Whether some route serves ``route_path`` (below ``root``), by any method."""
        served = self.patterns.serves(route_path)
        if served is not None:
            return served
        probe = {**scope, "path": root + route_path}
        return any(route.matches(probe)[0] is not Match.NONE for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root = scope.get("root_path", "")
        route_path = path[len(root) :] if root and path.startswith(root) else path
        if scope["type"] == "http" and route_path not in ("", "/"):
            toggled = route_path.rstrip("/") if route_path.endswith("/") else route_path + "/"
            if self._routed(scope, root, toggled):
                target = URL(base_url(Request(scope), self.settings) + toggled)
                query = scope.get("query_string", b"").decode("latin-1")
                response = RedirectResponse(str(target.replace(query=query) if query else target))
                await response(scope, receive, send)
                return
        await self.otherwise(scope, receive, send)


class UnroutedPaths:
    """Pure ASGI middleware, the innermost: a request for a path that no route serves goes
    straight to ``fallback`` (:class:`SlashRedirects`: a 307 to the other spelling, or the
    404), which is where the router would send it after asking every route in turn, through
    the framework's exception handling. One match of the joined patterns instead: a client
    or scanner probing unknown paths costs less than half as much.
    """

    def __init__(self, app: ASGIApp, *, fallback: SlashRedirects) -> None:
        self.app = app
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.fallback.patterns.serves(_route_path(scope)) is False:
            await self.fallback(scope, receive, send)
            return
        await self.app(scope, receive, send)
