"""The broker's settings: one typed object of per-subsystem sections.

They are read from ``EXECBROKER_*`` variables or a file. Each section (``settings.planning``,
``settings.skaha``, ...) is a model of its own that the subsystem takes whole; every field keeps
its flat setting name (``skaha_timeout``, ``offer_ttl``) as its alias, which is the name of its
environment variable (``EXECBROKER_SKAHA_TIMEOUT``) and its key in the config file. Every field
is described; ``execbroker config`` (and docs/configuration.md) list them by section.

A YAML or JSON file named by ``EXECBROKER_CONFIG_FILE`` may set any setting by its flat name;
the environment wins over the file. Durations are ``timedelta``; they read as seconds (a
number) or ISO-8601 (``PT2H``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from execbroker.localtoken import load_config_file
from execbroker.model.ports import PortRange

__all__ = [
    "ENV_PREFIX",
    "AuthSettings",
    "CostSettings",
    "DatabaseSettings",
    "DockerSettings",
    "EngineSettings",
    "MockSettings",
    "PlanningSettings",
    "PlatformName",
    "ServerSettings",
    "Settings",
    "SkahaSettings",
    "load_settings",
    "setting_fields",
    "skaha_per_user",
]

PlatformName = Literal["mock", "skaha", "docker"]

ENV_PREFIX = "EXECBROKER_"


def _seconds_text(value: Any) -> Any:
    """A duration written as plain seconds in text (an environment variable) reads as them."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Seconds = Annotated[timedelta, BeforeValidator(_seconds_text)]
"""A duration: seconds (a number, also in text) or ISO-8601 (``PT2H``)."""


class _Section(BaseModel):
    """One subsystem's settings; its fields are set by their flat names (aliases) or names."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    title: ClassVar[str]


class DatabaseSettings(_Section):
    """Where records are kept, and how long."""

    title: ClassVar[str] = "Database and retention"

    url: str | None = Field(
        alias="database_url",
        default=None,
        description=(
            "SQLAlchemy async URL, e.g. sqlite+aiosqlite:///var/execbroker.db or "
            "postgresql+psycopg://user@host/db. Default: SQLite in data_dir."
        ),
    )
    statement_timeout: Seconds = Field(
        alias="database_statement_timeout",
        default=timedelta(seconds=30),
        ge=timedelta(),
        description=(
            "PostgreSQL: seconds any one statement may run (statement_timeout; 0: no limit). "
            "Migrations run without it."
        ),
    )
    idle_in_transaction_timeout: Seconds = Field(
        alias="database_idle_in_transaction_timeout",
        default=timedelta(seconds=60),
        ge=timedelta(),
        description=(
            "PostgreSQL: seconds a transaction may sit idle before the server ends it "
            "(idle_in_transaction_session_timeout; 0: no limit). A broker whose link to the "
            "database stalls mid-transaction then frees what it held, the pool's booking lock "
            "among it."
        ),
    )
    tcp_timeout: Seconds = Field(
        alias="database_tcp_timeout",
        default=timedelta(seconds=30),
        ge=timedelta(seconds=1),
        description=(
            "PostgreSQL: seconds of silence after which a broker's connection is probed with "
            "TCP keepalives and given up (tcp_user_timeout, keepalives)."
        ),
    )
    session_options: bool = Field(
        alias="database_session_options",
        default=True,
        description=(
            "PostgreSQL: send statement_timeout and idle_in_transaction_session_timeout as "
            "connection options. Behind a pooler that refuses start-up options (PgBouncer), "
            "set false and set them as the role's defaults (docs/operations.md)."
        ),
    )
    booking_lock_timeout: Seconds = Field(
        default=timedelta(seconds=5),
        gt=timedelta(),
        description=(
            "PostgreSQL: seconds a booking waits for the pool's lock before it is answered 503 "
            "with Retry-After (lock_timeout): a stalled replica holding the lock delays "
            "others' bookings by at most this."
        ),
    )
    healthz_min_free_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description=(
            "SQLite: /healthz says degraded when the file system holding the database has "
            "less free space than this, in bytes (0: not checked)."
        ),
    )
    retention: timedelta | None = Field(
        default=timedelta(days=30),
        description=(
            "How long ended sessions and offer sets are kept after their last change before "
            "the retention job deletes them, with their messages and components (null: "
            "forever)."
        ),
    )
    retention_interval: Seconds = Field(
        default=timedelta(seconds=3600),
        gt=timedelta(),
        description="Seconds between two passes of the retention job.",
    )


class PlanningSettings(_Section):
    """What the planner offers: defaults, limits, the pool, estimates, quotas."""

    title: ClassVar[str] = "Planning and quotas"

    offer_ttl: Seconds = Field(
        default=timedelta(seconds=300),
        gt=timedelta(),
        description="Seconds an offer lives before it becomes EXPIRED.",
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
    backfill: bool = Field(
        default=True,
        description=(
            "Move accepted sessions that have not begun to an earlier start when capacity "
            "frees up (a run ends early, a session is cancelled, an offer is rejected or "
            "expires): direct runs and containers within their start interval, notebooks "
            "only when the request asks (x-start-early). First come, first served; no "
            "session is ever delayed. false: every session keeps its accepted start."
        ),
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
    prepare_estimates: dict[str, Seconds] = Field(
        default_factory=lambda: {
            "executable": timedelta(seconds=5.0),
            "compute": timedelta(seconds=5.0),
            "storage": timedelta(seconds=2.0),
            "data": timedelta(seconds=5.0),
        },
        description=(
            "Seconds each kind of component is planned to take to prepare, by role "
            "(executable, compute, storage, data). The defaults suit the mock platform."
        ),
    )
    release_estimates: dict[str, Seconds] = Field(
        default_factory=lambda: {
            "executable": timedelta(seconds=1.0),
            "compute": timedelta(seconds=2.0),
            "storage": timedelta(seconds=2.0),
            "data": timedelta(seconds=2.0),
        },
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
    slack: Seconds = Field(
        alias="planning_slack",
        default=timedelta(seconds=2),
        ge=timedelta(),
        description="Seconds added to every planned preparing step, so that all is ready on time.",
    )
    estimate_percentile: int = Field(
        default=90,
        ge=1,
        le=100,
        description=(
            "Learned estimates: a preparing step (a compute's start, an executable's or a "
            "storage's preparation) is planned with this percentile of how long it really "
            "took recently on this platform, for the same kind and image."
        ),
    )
    estimate_window: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description=(
            "Learned estimates: how many recent observations per platform, kind and image "
            "are kept in the database and planned with."
        ),
    )
    estimate_min_observations: int = Field(
        default=5,
        ge=1,
        description=(
            "Learned estimates: below this many observations of a step, it is planned with "
            "prepare_estimates (or Skaha's defaults) instead."
        ),
    )
    compute_performance: dict[str, float] = Field(
        default_factory=lambda: {"standard": 150.0, "fast": 200.0},
        description=(
            "Benchmark score of one core, by core type, on the reference broker's scale (its "
            "mock platform publishes 150-200). Offers publish the compute-performance metric as "
            "the lowest and highest score; a request's minimum is met only by the lowest, the "
            "one every core is sure to reach. A single number means one core type."
        ),
    )
    io_throughput: dict[str, float] = Field(
        default_factory=lambda: {"standard": 100.0, "fast": 400.0},
        description=(
            "Storage throughput in MB/s, by storage type, published as the io-throughput metric "
            "(lowest and highest); a request's minimum is met only by the lowest. A single "
            "number means one storage type."
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
    quota_stored_records: int | None = Field(
        default=2000,
        ge=1,
        description=(
            "Most offer sets (result NO included) and direct sessions one user may have "
            "stored at once; the retention job deletes ended ones (null: no limit)."
        ),
    )

    @field_validator("compute_performance", "io_throughput", mode="before")
    @classmethod
    def _one_type(cls, value: Any) -> Any:
        """A single figure is one type's; older settings gave compute_performance so."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"default": float(value)}
        return value

    @field_validator("compute_performance", "io_throughput")
    @classmethod
    def _positive_figures(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("name at least one type and its figure")
        for name, figure in value.items():
            if not figure > 0:
                raise ValueError(f"the figure of {name!r} must be more than 0, not {figure}")
        return value

    @model_validator(mode="after")
    def _durations_consistent(self) -> PlanningSettings:
        if self.default_duration > self.max_duration:
            raise ValueError("default_duration must not exceed max_duration")
        return self


class CostSettings(_Section):
    """What a session costs: money, energy and carbon."""

    title: ClassVar[str] = "Costs"

    currency: str = Field(
        alias="cost_currency", default="EUR", description="Currency of monetary costs."
    )
    per_core_hour: float = Field(
        alias="cost_per_core_hour", default=0.05, ge=0, description="Money per core-hour."
    )
    per_memory_gib_hour: float = Field(
        alias="cost_per_memory_gib_hour",
        default=0.005,
        ge=0,
        description="Money per GiB-hour of memory.",
    )
    per_storage_gib_hour: float = Field(
        alias="cost_per_storage_gib_hour",
        default=0.0002,
        ge=0,
        description="Money per GiB-hour of storage.",
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


class EngineSettings(_Section):
    """How the lifecycle engine and the offer-expiry timer pace themselves."""

    title: ClassVar[str] = "Engine"

    budget_slack: Seconds = Field(
        default=timedelta(seconds=60),
        ge=timedelta(),
        description=(
            "Seconds a component may go on preparing beyond its planned preparing duration "
            "before it is cancelled."
        ),
    )
    poll_interval: Seconds = Field(
        default=timedelta(seconds=5),
        gt=timedelta(),
        description="Seconds between platform polls when the platform gives no better hint.",
    )
    end_warning: Seconds = Field(
        default=timedelta(seconds=300),
        ge=timedelta(),
        description="Seconds before an interactive session ends that its user is warned.",
    )
    batch_size: int = Field(
        alias="engine_batch_size",
        default=200,
        ge=1,
        description="Sessions the engine advances in one transaction.",
    )
    batch_window: Seconds = Field(
        alias="engine_batch_window",
        default=timedelta(seconds=0.02),
        ge=timedelta(),
        le=timedelta(seconds=1),
        description=(
            "Seconds the engine waits after a pass that found less than a full batch, so "
            "that steps falling due meanwhile are advanced together: fewer, larger "
            "transactions under load, at the cost of up to this much lateness. 0: step "
            "again at once."
        ),
    )
    retry: Seconds = Field(
        alias="engine_retry",
        default=timedelta(seconds=5),
        gt=timedelta(),
        description=(
            "Seconds before a session whose step failed unexpectedly (an error in the broker, "
            "logged with its traceback) is tried again; nothing of the failed step is kept."
        ),
    )
    step_deadline: Seconds = Field(
        alias="engine_step_deadline",
        default=timedelta(seconds=2),
        gt=timedelta(),
        description=(
            "Seconds an engine pass waits for its sessions' steps before it commits those that "
            "finished; a slower step (a slow platform call) goes on and commits on its own, "
            "so it never holds up the others."
        ),
    )
    call_deadline: Seconds = Field(
        alias="engine_call_deadline",
        default=timedelta(seconds=30),
        gt=timedelta(),
        description=(
            "Seconds one platform call may take before it is given up and tried again; at most "
            "half of engine_lease is used, so that a step never outlives its claim."
        ),
    )
    lease: Seconds = Field(
        alias="engine_lease",
        default=timedelta(seconds=60),
        gt=timedelta(),
        description=(
            "Seconds a broker process holds the sessions it claimed; if it dies, another "
            "process takes them over after this long (PostgreSQL)."
        ),
    )
    expiry_interval: Seconds = Field(
        default=timedelta(seconds=1.0),
        gt=timedelta(),
        description="Longest pause (seconds) of the timer that marks unaccepted offers EXPIRED.",
    )

    @property
    def effective_call_deadline(self) -> timedelta:
        """The platform call deadline in force: within half the engine's lease."""
        return min(self.call_deadline, self.lease / 2)


class ServerSettings(_Section):
    """The HTTP server: URLs, proxies, limits, deadlines, long-polls."""

    title: ClassVar[str] = "HTTP server"

    public_url: str | None = Field(
        default=None,
        description=(
            "The broker's external base URL (http(s)://host[:port][/prefix]): every absolute "
            "URL it emits (meta.url, Location, redirects) starts with it. Unset: the address "
            "the connection came in on (never the Host header), with the trusted proxies' "
            "X-Forwarded-* on top."
        ),
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description=(
            "Addresses or networks (CIDR) whose X-Forwarded-Proto/-Host/-Prefix headers are "
            "believed when building component URLs. Empty: never believed."
        ),
    )
    header_timeout: Seconds = Field(
        default=timedelta(seconds=10),
        gt=timedelta(),
        description=(
            "Seconds a client may take to send a request's headers, from connecting or from "
            "its first byte; then the connection is closed (`execbroker serve`)."
        ),
    )
    idle_timeout: Seconds = Field(
        default=timedelta(seconds=5),
        ge=timedelta(seconds=1),
        description=(
            "Seconds an idle keep-alive connection is held open between requests "
            "(`execbroker serve`)."
        ),
    )
    body_timeout: Seconds = Field(
        default=timedelta(seconds=30),
        gt=timedelta(),
        description=(
            "Seconds a client may take to send a request's whole body once its headers are in; "
            "then it is answered 408."
        ),
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body accepted, in bytes."
    )
    max_header_bytes: int = Field(
        default=32_768,
        ge=4096,
        description=(
            "Most bytes a request's header lines may hold in all (names and values); a request "
            "with more is answered 431 before anything else is done with it."
        ),
    )
    max_header_count: int = Field(
        default=100,
        ge=16,
        description="Most header lines a request may have; one with more is answered 431.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "Worker processes `execbroker serve` runs, sharing the port (`--workers`). More "
            "than 1 needs PostgreSQL: on SQLite one process writes the database file, and "
            "the broker's write lock holds within one process. Each worker runs the lifecycle "
            "engine and timers, as brokers sharing a PostgreSQL database do."
        ),
    )
    anonymous_rate: float = Field(
        default=20,
        gt=0,
        description=(
            "Requests per second one client address may make without credentials (/healthz, "
            "/metrics, /openapi.json, /docs, and answers 401), on average; more are answered "
            "429 with Retry-After."
        ),
    )
    anonymous_burst: int = Field(
        default=100,
        ge=1,
        description="How many anonymous requests one address may make at once (its bucket).",
    )
    metrics_token_required: bool = Field(
        default=False,
        description=(
            "Whether GET /metrics needs a valid bearer token (any user's) instead of being "
            "open like /healthz."
        ),
    )
    max_wait: Seconds = Field(
        default=timedelta(seconds=60),
        gt=timedelta(),
        description="Longest ?wait= a GET may block, in seconds.",
    )
    change_recheck_shared: Seconds = Field(
        default=timedelta(seconds=10),
        gt=timedelta(),
        description=(
            "On PostgreSQL, how often a long-poll or event stream re-reads its session "
            "besides the LISTEN/NOTIFY wake-ups (a safety net), in seconds."
        ),
    )
    change_recheck_local: Seconds = Field(
        default=timedelta(seconds=5),
        gt=timedelta(),
        description=(
            "On SQLite (one process: every change is published in it), how often a session "
            "that long-polls or event streams wait on is read again anyway, in seconds; one "
            "read shared by all its waiters (a safety net)."
        ),
    )
    credential_recheck: Seconds = Field(
        default=timedelta(seconds=5),
        gt=timedelta(),
        description=(
            "How often a long-poll or event stream checks its bearer token again, in seconds: "
            "a revoked or expired token ends it."
        ),
    )
    max_waiters_per_user: int | None = Field(
        default=32,
        ge=1,
        description=(
            "Most long-polls (GET ?wait=) and event streams one user may hold open at once; "
            "one more is answered 429 (null: no limit)."
        ),
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an absolute http(s) URL")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{value!r} must not carry credentials, a query or a fragment")
        return value


class AuthSettings(_Section):
    """How callers are identified, and who is an administrator."""

    title: ClassVar[str] = "Authentication"

    mode: Literal["tokens", "oidc"] = Field(
        alias="auth",
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
    default_owner: str = Field(
        default="local",
        description=(
            "The local user: the one user of the tokens file the broker creates on first start."
        ),
    )
    issuer: str | None = Field(
        alias="oidc_issuer",
        default=None,
        description="OIDC issuer URL (auth = oidc); its discovery document names the JWKS.",
    )
    audience: str | None = Field(
        alias="oidc_audience",
        default=None,
        description="Required 'aud' of OIDC tokens (auth = oidc).",
    )
    owner_claim: str = Field(
        alias="oidc_owner_claim",
        default="sub",
        description=(
            "The token claim whose value owns records and is listed in admins (auth = oidc). "
            "Default sub: immutable, never reassigned by the issuer. A name claim (e.g. "
            "preferred_username, to keep records owned by names) binds each name to the "
            "first sub seen with it and refuses any other sub (docs/security.md)."
        ),
    )
    username_claim: str = Field(
        alias="oidc_username_claim",
        default="preferred_username",
        description=(
            "The token claim shown as the user's name in messages (auth = oidc); it grants "
            "nothing. Without it, the owner key is shown."
        ),
    )
    algorithms: list[str] = Field(
        alias="oidc_algorithms",
        default_factory=lambda: ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
        description="Signature algorithms accepted on OIDC tokens (asymmetric only).",
    )
    leeway: Seconds = Field(
        alias="oidc_leeway",
        default=timedelta(seconds=30),
        ge=timedelta(),
        le=timedelta(seconds=300),
        description="Clock skew allowed on exp/nbf/iat, in seconds.",
    )
    jwks_refresh: Seconds = Field(
        alias="oidc_jwks_refresh",
        default=timedelta(seconds=30),
        ge=timedelta(),
        description=(
            "Least time between two fetches of the JWKS, failed ones included, when a token "
            "names an unknown key (key rotation), in seconds; after failures the gap grows "
            "up to 60 s."
        ),
    )
    jwks_max_age: Seconds = Field(
        alias="oidc_jwks_max_age",
        default=timedelta(seconds=600),
        gt=timedelta(),
        description=(
            "Seconds after which the JWKS is read again (so a withdrawn key stops working); "
            "the cached keys answer meanwhile."
        ),
    )
    jwks_stale_grace: Seconds = Field(
        alias="oidc_jwks_stale_grace",
        default=timedelta(seconds=86_400),
        ge=timedelta(),
        description=(
            "Seconds past oidc_jwks_max_age that the cached keys stay in use while the issuer "
            "cannot be reached; after that, requests are answered 503."
        ),
    )
    jwks_timeout: Seconds = Field(
        alias="oidc_jwks_timeout",
        default=timedelta(seconds=5),
        gt=timedelta(),
        description="Seconds one fetch of discovery and the JWKS may take.",
    )
    jwks_wait: Seconds = Field(
        alias="oidc_jwks_wait",
        default=timedelta(seconds=1.5),
        gt=timedelta(),
        description=(
            "Most seconds a request waits for a JWKS fetch in progress (all requests share "
            "one fetch); after that it is answered 503 while the fetch goes on."
        ),
    )
    max_token_lifetime: Seconds = Field(
        alias="oidc_max_token_lifetime",
        default=timedelta(seconds=86_400),
        gt=timedelta(),
        description="Tokens whose exp is further ahead than this many seconds are refused.",
    )
    require_at_jwt: bool = Field(
        alias="oidc_require_at_jwt",
        default=False,
        description=(
            "Accept only tokens typed at+jwt (RFC 9068). Otherwise a typ of JWT or none is "
            "accepted too; any other typ is always refused."
        ),
    )
    authorized_parties: Annotated[list[str], NoDecode] = Field(
        alias="oidc_authorized_parties",
        default_factory=list,
        description=(
            "Client ids whose tokens are accepted, by azp (or client_id); empty: not checked "
            "(comma-separated or a JSON list)."
        ),
    )
    admins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Owner keys that may see and act on every user's offer sets and sessions: "
            "usernames of the tokens file, or with OIDC values of oidc_owner_claim (sub by "
            "default) (comma-separated or a JSON list)."
        ),
    )

    @field_validator("admins", "authorized_parties", mode="before")
    @classmethod
    def _admins_parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return yaml.safe_load(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.startswith(("RS", "ES", "PS", "EdDSA")):
                raise ValueError(f"{name} is not an asymmetric JWT algorithm")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        if self.mode == "oidc" and not (self.issuer and self.audience):
            raise ValueError("auth = oidc needs oidc_issuer and oidc_audience")
        return self


class MockSettings(_Section):
    """The mock platform (platform = mock)."""

    title: ClassVar[str] = "Mock platform (`platform = mock`)"

    prepare: dict[str, Seconds] = Field(
        alias="mock_prepare_seconds",
        default_factory=lambda: {
            "executable": timedelta(seconds=2.0),
            "storage": timedelta(seconds=1.0),
            "data": timedelta(seconds=3.0),
            "compute": timedelta(seconds=3.0),
        },
        description="Mock platform: seconds each role takes to prepare (zero allowed).",
    )
    run: Seconds | None = Field(
        alias="mock_run_seconds",
        default=timedelta(seconds=10.0),
        ge=timedelta(),
        description=(
            "Mock platform: seconds a container runs before exiting 0; null: until its time "
            "is up. Notebooks always run until their time is up."
        ),
    )
    release: dict[str, Seconds] = Field(
        alias="mock_release_seconds",
        default_factory=lambda: {
            "executable": timedelta(seconds=0.0),
            "storage": timedelta(seconds=1.0),
            "data": timedelta(seconds=1.0),
            "compute": timedelta(seconds=1.0),
        },
        description="Mock platform: seconds each role takes to release (zero allowed).",
    )
    max_interactive_sessions: int | None = Field(
        alias="mock_max_interactive_sessions",
        default=None,
        ge=0,
        description=(
            "Mock platform: at most this many notebooks per account at once, booked as "
            "Skaha's maxInteractiveSessions is (null: no limit). Accounts are owners when "
            "mock_accounts_per_owner is set, else one account for everyone."
        ),
    )
    accounts_per_owner: bool = Field(
        alias="mock_accounts_per_owner",
        default=False,
        description=(
            "Mock platform: every owner is an account of their own for "
            "mock_max_interactive_sessions, as on Skaha in per-user mode."
        ),
    )


class SkahaSettings(_Section):
    """The Skaha platform (platform = skaha)."""

    title: ClassVar[str] = "Skaha platform (`platform = skaha`)"

    url: str | None = Field(
        alias="skaha_url",
        default=None,
        description=(
            "Skaha service URL, e.g. https://ws-uv.canfar.net/skaha (platform = skaha). The "
            "session API is the accessURL of standardID "
            "http://www.opencadc.org/std/platform#session-1 in <url>/capabilities, else "
            "<url>/v1 when the site has no capabilities document; a URL ending in /v1 is "
            "used as the API as is. A site without a v1 session API stops the start-up."
        ),
    )
    token_file: Path | None = Field(
        alias="skaha_token_file",
        default=None,
        description=(
            "JSON file with the broker's Skaha credentials: access_token, refresh_token, "
            "expires_at (ISO-8601 or Unix seconds). Rewritten atomically, owner-only (0600), "
            "when the identity provider rotates the refresh token; re-read when an operator "
            "replaces it."
        ),
    )
    oidc_issuer: str | None = Field(
        alias="skaha_oidc_issuer",
        default=None,
        description=(
            "OIDC issuer of the Skaha tokens (e.g. https://ska-iam.stfc.ac.uk/); its discovery "
            "document names the token endpoint used to refresh. Unset: never refreshed."
        ),
    )
    client_id: str | None = Field(
        alias="skaha_client_id",
        default=None,
        description="OIDC client id for the refresh_token grant.",
    )
    client_secret: SecretStr | None = Field(
        alias="skaha_client_secret",
        default=None,
        description="OIDC client secret (client_secret_basic); never logged. Unset: public client.",
    )
    refresh_fraction: float = Field(
        alias="skaha_refresh_fraction",
        default=0.8,
        gt=0,
        lt=1,
        description="Refresh the access token when this fraction of its lifetime has passed.",
    )
    notebook_image: str = Field(
        alias="skaha_notebook_image",
        default="images.canfar.net/skaha/astroml:latest",
        description="Image of the Skaha notebook sessions that jupyter-notebook executables get.",
    )
    registry_auth: SecretStr | None = Field(
        alias="skaha_registry_auth",
        default=None,
        description=(
            "'username:secret' for images outside Skaha's public image cache "
            "(sent as x-skaha-registry-auth); never logged. Unset: such images are refused."
        ),
    )
    session_prefix: str = Field(
        alias="skaha_session_prefix",
        default="execbroker",
        pattern=r"^[a-z0-9][a-z0-9-]{0,19}$",
        description=(
            "Skaha session names are '<prefix>-<component uuid>'. Sessions with this prefix "
            "that no live component owns are deleted at start-up and by the periodic sweep "
            "(skaha_sweep_interval): give every broker that "
            "shares a Skaha account its own prefix."
        ),
    )
    list_interval: Seconds = Field(
        alias="skaha_list_interval",
        default=timedelta(seconds=5),
        gt=timedelta(),
        description=(
            "Seconds between two session list calls; polls in between answer from the last "
            "list (one list call per interval, however many sessions run)."
        ),
    )
    catalogue_interval: Seconds = Field(
        alias="skaha_catalogue_interval",
        default=timedelta(seconds=300),
        gt=timedelta(),
        description="Seconds between two readings of /context, /repository and /image.",
    )
    timeout: Seconds = Field(
        alias="skaha_timeout",
        default=timedelta(seconds=30),
        gt=timedelta(),
        description="Seconds one HTTP call to Skaha or the IdP may take.",
    )
    retries: int = Field(
        alias="skaha_retries",
        default=4,
        ge=0,
        description="Retries of a Skaha call after a 5xx, a 503 or a connection error.",
    )
    retry_budget: Seconds = Field(
        alias="skaha_retry_budget",
        default=timedelta(seconds=20),
        ge=timedelta(),
        description=(
            "Most seconds one Skaha call spends waiting between retries (Retry-After is "
            "honoured up to this); after that the step is tried again later."
        ),
    )
    renew_before: Seconds = Field(
        alias="skaha_renew_before",
        default=timedelta(seconds=3600),
        ge=timedelta(),
        description=(
            "Renew an interactive Skaha session when less than this many seconds remain "
            "before its Skaha expiry and the offered time goes on beyond it."
        ),
    )
    log_tail_lines: int = Field(
        alias="skaha_log_tail_lines",
        default=20,
        ge=0,
        description="Lines of a failed session's log copied into its messages.",
    )
    renew_interval: Seconds = Field(
        alias="skaha_renew_interval",
        default=timedelta(seconds=300),
        gt=timedelta(),
        description=(
            "Fewest seconds between two renewals of one Skaha session; a session is renewed "
            "again only once its expiry has moved since the last renewal. Keep it well below "
            "the lifetime Skaha grants interactive sessions."
        ),
    )
    create_grace: Seconds = Field(
        alias="skaha_create_grace",
        default=timedelta(seconds=60),
        ge=timedelta(),
        description=(
            "After a create whose outcome is unknown (no answer, a 5xx, cut off), no new "
            "create is sent for that component until a session list taken skaha_timeout + "
            "this many seconds after the last create shows no session of its name."
        ),
    )
    lost_grace: Seconds = Field(
        alias="skaha_lost_grace",
        default=timedelta(seconds=60),
        ge=timedelta(),
        description=(
            "A Skaha session missing from the list (and 404 by id) is declared lost only "
            "after it has been missing from 3 consecutive lists spanning this many seconds."
        ),
    )
    sweep_interval: Seconds = Field(
        alias="skaha_sweep_interval",
        default=timedelta(seconds=60),
        gt=timedelta(),
        description=(
            "Seconds between two sweeps that delete Skaha sessions with this broker's prefix "
            "that no live component owns, or that duplicate one (the oldest is kept)."
        ),
    )
    list_max_bytes: int = Field(
        alias="skaha_list_max_bytes",
        default=256 * 1024 * 1024,
        gt=0,
        description=(
            "Largest session list (bytes) the broker reads from Skaha. A larger one is not "
            "read: the sessions get no news and /healthz says degraded, with the reason."
        ),
    )
    credential_key: SecretStr | None = Field(
        alias="skaha_credential_key",
        default=None,
        description=(
            "Per-user mode (auth = oidc): the Fernet key (32 url-safe base64 bytes, e.g. from "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key()"
            ".decode())'`) that encrypts the users' Skaha refresh tokens in the database. "
            "Required in per-user mode; never logged."
        ),
    )
    exchange_audience: str | None = Field(
        alias="skaha_exchange_audience",
        default=None,
        description=(
            "Per-user mode: the audience asked for when a user's access token is exchanged "
            "for a Skaha token (RFC 8693 token exchange), e.g. the Skaha client's id. Unset: "
            "no audience is sent."
        ),
    )
    exchange_scopes: str = Field(
        alias="skaha_exchange_scopes",
        default="openid profile offline_access",
        description=(
            "Per-user mode: space-separated scopes asked for in the token exchange; "
            "offline_access is added if missing (it brings the refresh token back)."
        ),
    )
    refresh_warning: Seconds = Field(
        alias="skaha_refresh_warning",
        default=timedelta(days=7),
        ge=timedelta(),
        description=(
            "Warn in /healthz and the log this many seconds before a Skaha refresh token's "
            "exp (JWT refresh tokens, e.g. SKA IAM's 30 days): the broker's token file in "
            "single-account mode, each user's stored one in per-user mode."
        ),
    )
    compute_estimate: Seconds = Field(
        alias="skaha_compute_estimate",
        default=timedelta(seconds=120),
        gt=timedelta(),
        description=(
            "Seconds a headless Skaha session is planned to take from its admission to "
            "running (image pull, container start), when prepare_estimates is not set. The "
            "learned estimates replace it once there is enough history."
        ),
    )
    notebook_estimate: Seconds = Field(
        alias="skaha_notebook_estimate",
        default=timedelta(seconds=180),
        gt=timedelta(),
        description=(
            "Seconds a Skaha notebook is planned to take to start and pass its readiness "
            "probe (which Skaha gives up to 300 s), when prepare_estimates is not set."
        ),
    )
    budget_slack: Seconds = Field(
        alias="skaha_budget_slack",
        default=timedelta(seconds=600),
        ge=timedelta(),
        description=(
            "On Skaha, when budget_slack is not set: seconds a session may go on starting "
            "beyond its planned time (a slow image pull, a notebook's readiness probe) before "
            "it is cancelled."
        ),
    )
    queue_budget: Seconds = Field(
        alias="skaha_queue_budget",
        default=timedelta(minutes=30),
        gt=timedelta(),
        description=(
            "Seconds a Skaha session may wait in Skaha's queue (Pending without a start time: "
            "Kueue has not admitted it) before it is cancelled. Its preparing budget starts "
            "when it is admitted."
        ),
    )
    use_stats: bool = Field(
        alias="skaha_use_stats",
        default=False,
        description=(
            "Read the cluster's free cores and memory from GET /session?view=stats every "
            "skaha_catalogue_interval, and never offer a session whose booking begins before "
            "the next reading more than that reading shows free; later starts are planned "
            "against the configured capacity. A failed reading is used until the next is due, "
            "then none is."
        ),
    )
    connect_hosts: list[str] = Field(
        alias="skaha_connect_hosts",
        default_factory=list,
        description=(
            "Hosts a Skaha connectURL may point to (JSON list; empty: the host of "
            "skaha_url). Only https URLs on them are published (http only on loopback); "
            "others are left out with a message on the component."
        ),
    )


class DockerSettings(_Section):
    """The Docker platform (platform = docker)."""

    title: ClassVar[str] = "Docker platform (`platform = docker`)"

    host: str | None = Field(
        alias="docker_host",
        default=None,
        description=(
            "Docker Engine API of the container runtime (Docker or Podman), e.g. "
            "unix:///run/podman/podman.sock. Default: found as Docker clients do (DOCKER_HOST, "
            "then the Docker context, then /var/run/docker.sock). It must run on this machine: "
            "storage directories are bind-mounted by their path."
        ),
    )
    instance: str | None = Field(
        alias="docker_instance",
        default=None,
        description=(
            "Value of the label that marks this broker's containers, so that brokers sharing "
            "one runtime leave each other's alone. Default: a random id kept in docker_root."
        ),
    )
    root: Path | None = Field(
        alias="docker_root",
        default=None,
        description=(
            "Directory for storage resources (one directory each, bind-mounted into "
            "containers) and the platform's own records. Default: data_dir/docker."
        ),
    )
    pull: Literal["never", "missing"] = Field(
        alias="docker_pull",
        default="missing",
        description=(
            "Whether an image that is not on this machine is pulled ('missing') or the "
            "executable fails at once ('never')."
        ),
    )
    pull_registries: list[str] = Field(
        alias="docker_pull_registries",
        default_factory=list,
        description=(
            "Registries (host[:port], e.g. docker.io or images.canfar.net) images may be "
            "pulled from; empty: any registry."
        ),
    )
    network: str = Field(
        alias="docker_network",
        default="bridge",
        description=(
            "Network mode of a container that publishes ports (e.g. bridge, or slirp4netns "
            "on Podman); a container without ports has no network at all."
        ),
    )
    publish_address: str = Field(
        alias="docker_publish_address",
        default="127.0.0.1",
        description="Host address that requested ports are published on.",
    )
    port_range: str = Field(
        alias="docker_port_range",
        default="20000-29999",
        description=(
            "Host ports that requested ports are published on (low-high, within 1024-65535: "
            "never a privileged port). A request naming a host port outside it is refused; "
            "one naming none gets a free port of the range."
        ),
    )
    connector_host: str | None = Field(
        alias="docker_connector_host",
        default=None,
        description=(
            "Host name written in port connectors (http://host:port/path). Default: "
            "docker_publish_address, or this machine's name when that is 0.0.0.0."
        ),
    )
    stop_seconds: Seconds = Field(
        alias="docker_stop_seconds",
        default=timedelta(seconds=5),
        ge=timedelta(),
        description="Seconds a stopped container gets between SIGTERM and SIGKILL.",
    )
    pids_limit: int | None = Field(
        alias="docker_pids_limit",
        default=1024,
        ge=16,
        description="Most processes one container may run (null: no limit).",
    )
    log_lines: int = Field(
        alias="docker_log_lines",
        default=20,
        ge=0,
        le=1000,
        description="Lines of a finished container's output kept in the compute's messages.",
    )
    max_data_bytes: int = Field(
        alias="docker_max_data_bytes",
        default=10 * 2**30,
        ge=1,
        description=(
            "Largest data resource staged, in bytes; a download is also capped by the size "
            "offered for its storage."
        ),
    )
    data_timeout: Seconds = Field(
        alias="docker_data_timeout",
        default=timedelta(seconds=30),
        gt=timedelta(),
        description="Seconds a data download may wait to connect or for the next bytes.",
    )
    file_roots: list[Path] = Field(
        alias="docker_file_roots",
        default_factory=list,
        description=(
            "Directories that file:// data resources may be copied from; empty: file:// "
            "locations are refused (they would expose the broker's own files)."
        ),
    )

    @field_validator("port_range")
    @classmethod
    def _port_range_parse(cls, value: str) -> str:
        return str(PortRange.parse(value))


_SECTIONS: dict[str, type[_Section]] = {
    "database": DatabaseSettings,
    "planning": PlanningSettings,
    "cost": CostSettings,
    "engine": EngineSettings,
    "server": ServerSettings,
    "auth": AuthSettings,
    "mock": MockSettings,
    "skaha": SkahaSettings,
    "docker": DockerSettings,
}


def setting_fields() -> Iterator[tuple[str | None, str, str, FieldInfo]]:
    """Every setting: its section (None: top level), its flat name (the file's key and, upper
    case after ``EXECBROKER_``, its variable), its attribute in the section, and its field.
    """
    for name, field in Settings.model_fields.items():
        if name not in _SECTIONS:
            yield None, name, name, field
    for section, model in _SECTIONS.items():
        for name, field in model.model_fields.items():
            yield section, field.alias or name, name, field


def _route() -> dict[str, str | None]:
    """Flat setting name -> its section (None: top level)."""
    return {flat: section for section, flat, _, _ in setting_fields()}


class _EnvSource(PydanticBaseSettingsSource):
    """``EXECBROKER_<SETTING>`` for every setting, by its flat name, sections included."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        environ = {key.upper(): value for key, value in os.environ.items()}
        found: dict[str, Any] = {}
        for _, flat, _, field in setting_fields():
            value = environ.get(f"{ENV_PREFIX}{flat}".upper())
            if value is None:
                continue
            if self.field_is_complex(field) and not any(m is NoDecode for m in field.metadata):
                try:
                    found[flat] = json.loads(value)
                except ValueError as failure:
                    raise SettingsError(
                        f'error parsing value for field "{flat}" from source "EnvSettingsSource"'
                    ) from failure
            else:
                found[flat] = value
        return found


class _ConfigFileSource(PydanticBaseSettingsSource):
    """Settings from the YAML/JSON file named by ``EXECBROKER_CONFIG_FILE``, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ below returns the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        found = load_config_file()
        if found is None:
            return {}
        path, loaded = found
        if not isinstance(loaded, dict):
            raise TypeError(f"The config file {path} must hold a mapping of setting names")
        return loaded


class Settings(BaseSettings):
    """Everything an operator can set: a few general settings, then one section per subsystem.

    Sources, the first winning: the constructor's arguments (sections, or settings by flat
    name), ``EXECBROKER_*`` variables, the config file.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for the embedded database and local state; created if missing.",
    )
    platform: PlatformName = Field(default="mock", description="The platform sessions run on.")
    egress_allow: list[str] = Field(
        default_factory=list,
        description=(
            "Destinations the broker may fetch from on a user's behalf although the egress "
            "policy denies them by default (loopback, link-local, private, shared, "
            "unique-local, multicast, reserved, and this machine's own addresses): CIDR "
            "blocks or addresses (10.1.0.0/16, 127.0.0.1) and host names with an optional "
            "port (data.internal.example, localhost:8491). JSON list."
        ),
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Logging threshold."
    )
    access_log: bool = Field(
        default=False,
        description=(
            "Whether `execbroker serve` logs one line per request (uvicorn's access log) at "
            "INFO. At log_level DEBUG the lines are written anyway. Off by default: "
            "formatting and writing a line cost a tenth of what a short answer does."
        ),
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    planning: PlanningSettings = Field(default_factory=PlanningSettings)
    cost: CostSettings = Field(default_factory=CostSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    mock: MockSettings = Field(default_factory=MockSettings)
    skaha: SkahaSettings = Field(default_factory=SkahaSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _EnvSource(settings_cls), _ConfigFileSource(settings_cls))

    @model_validator(mode="before")
    @classmethod
    def _into_sections(cls, data: Any) -> Any:
        """Put each setting given by its flat name into its section.

        A section given whole (a model or a mapping) wins over flat names of its settings.
        """
        if not isinstance(data, dict):
            return data
        route = _route()
        folded: dict[str, Any] = {}
        given: dict[str, dict[str, Any]] = {}
        for key, value in data.items():
            if key in _SECTIONS and (isinstance(value, BaseModel | dict)):
                given[key] = (
                    value.model_dump(exclude_unset=True, by_alias=True)
                    if isinstance(value, BaseModel)
                    else value
                )
                continue
            section = route.get(key, "")
            if section is None or section == "":
                folded[key] = value  # a general setting, or an unknown name pydantic refuses
            else:
                folded.setdefault(section, {})[key] = value
        for section, values in given.items():
            folded[section] = {**folded.get(section, {}), **values}
        return folded

    @field_validator("egress_allow")
    @classmethod
    def _egress_parse(cls, value: list[str]) -> list[str]:
        from execbroker.egress import EgressPolicy  # noqa: PLC0415 - httpx only when used

        EgressPolicy(value)  # raises ValueError naming the entry that does not read
        return value

    @property
    def effective_budget_slack(self) -> timedelta:
        """The engine's budget slack: as set, or on Skaha (unset) ``skaha_budget_slack``."""
        if self.platform == "skaha" and "budget_slack" not in self.engine.model_fields_set:
            return self.skaha.budget_slack
        return self.engine.budget_slack

    @property
    def effective_database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'execbroker.db'}"

    @property
    def effective_tokens_file(self) -> Path:
        return self.auth.tokens_file or self.data_dir / "tokens.yaml"


def skaha_per_user(settings: Settings) -> bool:
    """Whether each Skaha session runs as its owner (per-user mode) rather than as the
    broker's one account (single-account mode).

    Per-user mode is on exactly when the platform is Skaha and users sign in with OIDC
    (``auth = oidc``): their access tokens can then be exchanged for Skaha tokens. With
    ``auth = tokens`` the broker knows no IdP identity for its users, so every session shares
    the account of ``skaha_token_file``. The Skaha *account* of a session is its owner key in
    per-user mode, one shared account otherwise.
    """
    return settings.platform == "skaha" and settings.auth.mode == "oidc"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and config file, with ``overrides`` on top."""
    return Settings(**overrides)
