"""The users of the test broker: their bearer tokens, and the tokens file that lists them."""

from __future__ import annotations

from pathlib import Path

import yaml

# alice is the default caller of the ``client`` fixture; root is an administrator.
TOKENS = {
    "alice": "alice-token-6f1c9e0b2a7d",
    "bob": "bob-token-93d4e8a1c5f2b7",
    "root": "root-token-0c7a5e2f9b41d3",
}
ADMINS = ["root"]


def auth(user: str) -> dict[str, str]:
    """The Authorization header of ``user``."""
    return bearer(TOKENS[user])


def bearer(token: str) -> dict[str, str]:
    """The Authorization header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


def write_tokens_file(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"tokens": {t: u for u, t in TOKENS.items()}}))
    path.chmod(0o600)
    return path
