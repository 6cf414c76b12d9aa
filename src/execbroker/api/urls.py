"""The external base URL that component ``meta.url`` values start with.

``X-Forwarded-Proto``, ``-Host`` and ``-Prefix`` are believed only from the configured
trusted proxies; anyone else could otherwise make us advertise their host.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from starlette.requests import Request

from execbroker.config import Settings

__all__ = ["base_url"]


@lru_cache(maxsize=64)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(request: Request, settings: Settings) -> bool:
    if not settings.trusted_proxies or request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.trusted_proxies)))


def _first(value: str) -> str:
    # A chain of proxies sends "a, b"; the first is the one the client talked to.
    return value.split(",", maxsplit=1)[0].strip()


def base_url(request: Request, settings: Settings) -> str:
    """``scheme://host[:port][/prefix]`` with no trailing slash."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    prefix = request.scope.get("root_path", "")
    if _trusted(request, settings):
        forwarded_proto = request.headers.get("x-forwarded-proto")
        forwarded_host = request.headers.get("x-forwarded-host")
        forwarded_prefix = request.headers.get("x-forwarded-prefix")
        if forwarded_proto and _first(forwarded_proto) in ("http", "https"):
            scheme = _first(forwarded_proto)
        if forwarded_host:
            host = _first(forwarded_host)
        if forwarded_prefix:
            prefix = "/" + _first(forwarded_prefix).strip("/")
    return f"{scheme}://{host}{prefix}".rstrip("/")
