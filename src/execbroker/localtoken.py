"""The local user's bearer token: where a broker on this machine keeps it, and reading it.

A broker creates its tokens file on first start (:func:`execbroker.auth.tokens.ensure_tokens_file`)
with one token for the local user (``default_owner``). The client library and the command
line find that token here, for a broker on this machine only, without loading the broker's
settings: this module imports nothing of the server, so the client package can use it.

It reads the three settings that say where the file is and whose token to take, as the
broker does: ``EXECBROKER_TOKENS_FILE``, ``EXECBROKER_DATA_DIR`` (the file is then
``<data dir>/tokens.yaml``) and ``EXECBROKER_DEFAULT_OWNER``, from the environment or from the
file named by ``EXECBROKER_CONFIG_FILE`` (the environment wins), with the broker's defaults.
``tests/client/test_local_token.py`` checks that these agree with the broker's settings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["LocalTokenSettings", "find_local_token", "load_config_file", "local_token"]


def load_config_file() -> tuple[Path, object] | None:
    """The YAML/JSON file named by ``EXECBROKER_CONFIG_FILE`` and what it holds (an empty
    file holds an empty mapping); None when no file is named.

    The broker's settings (:mod:`execbroker.config`) read it through here too, so the two
    read it alike; each decides what to make of contents that are not a mapping.
    """
    name = os.environ.get("EXECBROKER_CONFIG_FILE")
    if not name:
        return None
    path = Path(name)
    with path.open(encoding="utf-8") as stream:
        return path, yaml.safe_load(stream) or {}


class _ConfigFileSource(PydanticBaseSettingsSource):
    """The three settings from the YAML/JSON file named by ``EXECBROKER_CONFIG_FILE``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        found = load_config_file()
        if found is None or not isinstance(found[1], dict):
            return {}
        loaded = found[1]
        return {name: loaded[name] for name in self.settings_cls.model_fields if name in loaded}


class LocalTokenSettings(BaseSettings):
    """Where the local broker's tokens file is, and whose token a local client takes."""

    # extra="ignore": every other EXECBROKER_* variable is the broker's or the client's.
    model_config = SettingsConfigDict(env_prefix="EXECBROKER_", extra="ignore")

    data_dir: Path = Path("var")
    tokens_file: Path | None = None
    default_owner: str = "local"

    @property
    def effective_tokens_file(self) -> Path:
        return self.tokens_file or self.data_dir / "tokens.yaml"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls))


def local_token(path: Path, *, user: str) -> str | None:
    """The first token of ``user`` in the tokens file at ``path``; None if the file does not
    read or names no token for them.
    """
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    tokens = loaded.get("tokens") if isinstance(loaded, dict) else None
    if not isinstance(tokens, dict):
        return None
    return next(
        (token for token, name in tokens.items() if isinstance(token, str) and name == user),
        None,
    )


def find_local_token() -> tuple[str, Path] | None:
    """The local user's token from the local broker's tokens file, and the file's path."""
    try:
        settings = LocalTokenSettings()
    except (ValidationError, OSError, ValueError, yaml.YAMLError):
        return None  # the settings do not read here: no local token to offer
    path = settings.effective_tokens_file
    found = local_token(path, user=settings.default_owner)
    return None if found is None else (found, path)
