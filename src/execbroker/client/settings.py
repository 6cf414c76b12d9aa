"""Where the client finds its broker and its token.

In order: the arguments given; ``EXECBROKER_URL`` and ``EXECBROKER_TOKEN``; and, for a broker
on this machine (a loopback URL), the local tokens file the broker wrote on its first start
(``<data dir>/tokens.yaml``, found as the broker finds it, so that ``EXECBROKER_DATA_DIR``
and ``EXECBROKER_TOKENS_FILE`` are honoured: :mod:`execbroker.localtoken`). The local file is never
read for a remote URL: its token means nothing there and must not travel. Nor does it go to a
loopback port that another OS user's process holds (:mod:`execbroker.client.loopback`):
the connection then carries no token and says why (``withheld``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from execbroker.client.loopback import untrusted_listener
from execbroker.localtoken import find_local_token

__all__ = ["DEFAULT_URL", "ClientSettings", "Connection", "resolve_connection"]

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientSettings(BaseSettings):
    """What the Python client and the command line read from the environment."""

    # extra="ignore": the broker's own EXECBROKER_* variables share the prefix.
    model_config = SettingsConfigDict(env_prefix="EXECBROKER_", extra="ignore")

    url: str = Field(
        default=DEFAULT_URL,
        description="Client and CLI: the broker's base URL.",
    )
    token: SecretStr | None = Field(
        default=None,
        description=(
            "Client and CLI: the bearer token. Default: for a broker on this machine, the "
            "local user's token from the broker's tokens file."
        ),
    )


@dataclass(frozen=True)
class Connection:
    """A broker's base URL and the token to call it with; ``token_source`` says where the
    token came from (``argument``, ``environment``, the tokens file's path, or ``none``);
    ``withheld`` why the local token was not attached, when it was not.
    """

    url: str
    token: str | None
    token_source: str
    withheld: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"Connection(url={self.url!r}, token_source={self.token_source!r})"


def resolve_connection(url: str | None = None, token: str | None = None) -> Connection:
    """The broker URL and token: from the arguments, the environment, or the local file."""
    settings = ClientSettings()
    base = (url or settings.url).rstrip("/")
    if token:
        return Connection(base, token, "argument")
    if settings.token is not None and settings.token.get_secret_value():
        return Connection(base, settings.token.get_secret_value(), "environment")
    if is_local(base):
        found = find_local_token()
        if found is not None:
            parsed = httpx.URL(base)
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            withheld = untrusted_listener(parsed.host, port)
            if withheld is not None:
                return Connection(base, None, "none", withheld=withheld)
            return Connection(base, found[0], str(found[1]))
    return Connection(base, None, "none")


def is_local(url: str) -> bool:
    """True for a URL on this machine: ``localhost`` or a literal loopback address (not
    ``*.localhost``, which a resolver may send elsewhere).
    """
    host = httpx.URL(url).host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
