"""The broker's settings: one typed object, read from ``EXECBROKER_*`` variables or a file.

Every field is described; ``execbroker config`` (and docs/configuration.md) list them.
A YAML or JSON file named by ``EXECBROKER_CONFIG_FILE`` may set any field by its name; the
environment wins over the file.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["PlatformName", "Settings", "load_settings"]

PlatformName = Literal["mock", "skaha", "docker"]


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Settings from the YAML/JSON file named by ``EXECBROKER_CONFIG_FILE``, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("EXECBROKER_CONFIG_FILE")
        if not path:
            return {}
        with Path(path).open(encoding="utf-8") as stream:
            loaded = yaml.safe_load(stream) or {}
        if not isinstance(loaded, dict):
            raise TypeError(f"The config file {path} must hold a mapping of setting names")
        return loaded


class Settings(BaseSettings):
    """Everything an operator can set. Durations are seconds unless named otherwise."""

    model_config = SettingsConfigDict(env_prefix="EXECBROKER_", extra="forbid")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for the embedded database and local state; created if missing.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy async URL, e.g. sqlite+aiosqlite:///var/execbroker.db or "
            "postgresql+psycopg://user@host/db. Default: SQLite in data_dir."
        ),
    )
    platform: PlatformName = Field(default="mock", description="The platform sessions run on.")
    offer_ttl: float = Field(
        default=300, gt=0, description="Seconds an offer lives before it becomes EXPIRED."
    )
    max_offers: int = Field(
        default=4, ge=1, le=16, description="How many alternative offers one request gets at most."
    )
    default_duration: timedelta = Field(
        default=timedelta(hours=1), description="Run duration when a request names none."
    )
    max_duration: timedelta = Field(
        default=timedelta(days=7), description="The longest run duration the broker offers."
    )
    default_start_window: timedelta = Field(
        default=timedelta(hours=24),
        description="Start interval searched when a request names none: from now to now + this.",
    )
    default_cores: int = Field(default=1, ge=1, description="Cores when a request names none.")
    default_memory_gib: int = Field(
        default=2, ge=1, description="Memory (GiB) when a request names none."
    )
    default_storage_gib: int = Field(
        default=1, ge=1, description="Size (GiB) of a storage resource that names none."
    )
    capacity_cores: int = Field(default=64, ge=1, description="Cores in the platform's pool.")
    capacity_memory_gib: int = Field(
        default=256, ge=1, description="Memory (GiB) in the platform's pool."
    )
    capacity_storage_gib: int = Field(
        default=2048, ge=1, description="Storage (GiB) in the platform's pool."
    )
    prepare_estimates: dict[str, float] = Field(
        default_factory=lambda: {
            "executable": 5.0,
            "compute": 5.0,
            "storage": 2.0,
            "data": 5.0,
        },
        description=(
            "Seconds each kind of component is planned to take to prepare, by role "
            "(executable, compute, storage, data). The defaults suit the mock platform."
        ),
    )
    release_estimates: dict[str, float] = Field(
        default_factory=lambda: {"executable": 1.0, "compute": 2.0, "storage": 2.0, "data": 2.0},
        description="Seconds each role is planned to take to release.",
    )
    staging_mib_per_second: float = Field(
        default=100,
        gt=0,
        description=(
            "Planned data staging speed; a data resource that declares its size is planned "
            "to take its estimate plus size / this speed."
        ),
    )
    max_preparation: timedelta = Field(
        default=timedelta(days=1),
        description=(
            "The longest time a session may be planned to take preparing and releasing "
            "together; a request that would take longer (e.g. staging a huge data set) is "
            "answered NO. Bounds the calendar's window queries."
        ),
    )
    planning_slack: float = Field(
        default=2,
        ge=0,
        description="Seconds added to every planned preparing step, so that all is ready on time.",
    )
    cost_currency: str = Field(default="EUR", description="Currency of monetary costs.")
    cost_per_core_hour: float = Field(default=0.05, ge=0, description="Money per core-hour.")
    cost_per_memory_gib_hour: float = Field(
        default=0.005, ge=0, description="Money per GiB-hour of memory."
    )
    cost_per_storage_gib_hour: float = Field(
        default=0.0002, ge=0, description="Money per GiB-hour of storage."
    )
    energy_kwh_per_core_hour: float = Field(
        default=0.01, ge=0, description="Energy (kWh) per core-hour."
    )
    energy_kwh_per_memory_gib_hour: float = Field(
        default=0.0004, ge=0, description="Energy (kWh) per GiB-hour of memory."
    )
    carbon_g_per_kwh: float = Field(
        default=200, ge=0, description="Carbon intensity (g CO2e per kWh) of the platform."
    )
    compute_performance: float = Field(
        default=1.0,
        gt=0,
        description="Relative speed of one core, published as the compute-performance metric.",
    )
    mock_prepare_seconds: dict[str, float] = Field(
        default_factory=lambda: {"executable": 2.0, "storage": 1.0, "data": 3.0, "compute": 3.0},
        description="Mock platform: seconds each role takes to prepare (zero allowed).",
    )
    mock_run_seconds: float | None = Field(
        default=10.0,
        ge=0,
        description=(
            "Mock platform: seconds a container runs before exiting 0; null: until its time "
            "is up. Notebooks always run until their time is up."
        ),
    )
    mock_release_seconds: dict[str, float] = Field(
        default_factory=lambda: {"executable": 0.0, "storage": 1.0, "data": 1.0, "compute": 1.0},
        description="Mock platform: seconds each role takes to release (zero allowed).",
    )
    # --- Skaha platform (platform = skaha) -------------------------------------------------
    # --- end of Skaha platform ---
    # --- Docker platform (platform = docker) -----------------------------------------------
    # --- end of Docker platform ---
    budget_slack: float = Field(
        default=60,
        ge=0,
        description=(
            "Seconds a component may go on preparing beyond its planned preparing duration "
            "before it is cancelled."
        ),
    )
    poll_interval: float = Field(
        default=5,
        gt=0,
        description="Seconds between platform polls when the platform gives no better hint.",
    )
    end_warning: float = Field(
        default=300,
        ge=0,
        description="Seconds before an interactive session ends that its user is warned.",
    )
    engine_batch_size: int = Field(
        default=200, ge=1, description="Sessions the engine advances in one transaction."
    )
    max_wait: float = Field(
        default=60, gt=0, description="Longest ?wait= a GET may block, in seconds."
    )
    expiry_interval: float = Field(
        default=1.0,
        gt=0,
        description="Longest pause (seconds) of the timer that marks unaccepted offers EXPIRED.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks (CIDR) whose X-Forwarded-Proto/-Host/-Prefix headers are "
            "believed when building component URLs. Empty: never believed."
        ),
    )
    public_url: str | None = Field(
        default=None,
        description="Fixed external base URL for component URLs; overrides the request's own.",
    )
    default_owner: str = Field(
        default="local",
        description=(
            "The local user: the one user of the tokens file the broker creates on first start."
        ),
    )
    auth: Literal["tokens", "oidc"] = Field(
        default="tokens",
        description=(
            "How callers are identified: 'tokens' (bearer tokens listed in tokens_file) or "
            "'oidc' (JWT bearer tokens from oidc_issuer)."
        ),
    )
    tokens_file: Path | None = Field(
        default=None,
        description=(
            "YAML file mapping bearer tokens to usernames (auth = tokens). Default: "
            "data_dir/tokens.yaml, created with one random token for default_owner if missing."
        ),
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="OIDC issuer URL (auth = oidc); its discovery document names the JWKS.",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="Required 'aud' of OIDC tokens (auth = oidc).",
    )
    oidc_username_claim: str = Field(
        default="preferred_username",
        description="The token claim that names the user (auth = oidc).",
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
        description="Signature algorithms accepted on OIDC tokens (asymmetric only).",
    )
    oidc_leeway: float = Field(
        default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat, in seconds."
    )
    oidc_jwks_refresh: float = Field(
        default=30,
        ge=0,
        description=(
            "Least time between two fetches of the JWKS when a token names an unknown key "
            "(key rotation), in seconds."
        ),
    )
    admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Usernames that may see and act on every user's offer sets and sessions "
            "(comma-separated or a JSON list)."
        ),
    )
    quota_live_offers: int | None = Field(
        default=200,
        ge=1,
        description="Most unexpired offers one user may hold at once (null: no limit).",
    )
    quota_active_sessions: int | None = Field(
        default=100,
        ge=1,
        description="Most accepted, not yet ended sessions one user may have (null: no limit).",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted, in bytes."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging threshold."
    )

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

    @field_validator("admins", mode="before")
    @classmethod
    def _admins_parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return yaml.safe_load(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.startswith(("RS", "ES", "PS", "EdDSA")):
                raise ValueError(f"{name} is not an asymmetric JWT algorithm")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.auth == "oidc" and not (self.oidc_issuer and self.oidc_audience):
            raise ValueError("auth = oidc needs oidc_issuer and oidc_audience")
        return self

    @property
    def effective_tokens_file(self) -> Path:
        return self.tokens_file or self.data_dir / "tokens.yaml"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _durations_consistent(self) -> Settings:
        if self.default_duration > self.max_duration:
            raise ValueError("default_duration must not exceed max_duration")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'execbroker.db'}"

    @property
    def offer_lifetime(self) -> timedelta:
        return timedelta(seconds=self.offer_ttl)


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with ``overrides`` on top."""
    return Settings(**overrides)
