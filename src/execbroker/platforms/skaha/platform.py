"""The Skaha platform: a compute resource becomes a Skaha session (SKAHA.md §6).

Only the compute resource lives on Skaha. Its session is named
``<prefix>-<component uuid>``, so the platform finds it again by name after a restart and
never starts it twice; everything else it knows is a cache.

Polling: one ``GET /session`` per ``list_interval`` answers every poll in that interval,
however many sessions run (SKAHA.md §3: keep polling modest). Only this broker's entries
(its name prefix) are kept, picked out of the list in a worker thread, and a list larger
than ``list_max_bytes`` is not read at all (health says why). A session created after the
last list is answered from what the create said; one missing from a newer list is asked for
by id, and declared lost only once it has been missing from three lists spanning
``lost_grace`` (a Skaha glitch must not end a running notebook).

Creates are idempotent by name: after a create whose outcome is unknown, the component
keeps an *outstanding create* marker, and no new create is sent until a list taken
``timeout + create_grace`` after the last one shows no session of that name. Release
deletes every session of the component's name (and the id it was created with), and a
periodic sweep deletes sessions of the prefix that no live component owns, or that
duplicate one (the oldest, or the one the broker tracks, is kept).

The outstanding-create markers live in memory only. Persisting them would need a column in
the broker's database (or a file that replicas would not share); what they protect against
after a restart (a create that lands late, then a second one) is what the sweep removes
within ``sweep_interval``, with any number of replicas.

Status → what the engine sees (SKAHA.md §6.3):

==================================  ==========================================
``Pending``, no ``startTime``       PREPARING, queued (the queue budget applies)
``Pending`` (pulling, starting)     PREPARING (FAILED on image-pull errors once
                                    its planned preparing time has passed)
``Running``, interactive            READY, with the ``connectURL`` as connector
``Running``, headless               RUNNING
``Completed`` / ``Succeeded``       EXITED, code 0
``Failed`` / ``Error``              FAILED: events and the log tail in the message
                                    ("expired" when its Skaha expiry had passed)
``Terminating``                     RELEASING, with the events and the log tail
                                    (the broker's own deletes are not polled: this
                                    is a preemption, an eviction or an administrator,
                                    which the engine fails)
gone, never seen ending             MISSING, "lost" (which the engine fails)
==================================  ==========================================

Skaha or its identity provider being unreachable, or the credentials needing an operator,
is *nobody's failure*: a poll answers "no news" (the component stays where it is and is
asked again later, within its budgets), a prepare raises
:class:`~execbroker.platforms.base.PlatformUnavailableError` (tried again later), a
release keeps RELEASING until Skaha confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from pydantic import SecretStr

from execbroker.background import BackgroundTaskManager
from execbroker.clock import Clock
from execbroker.config import Settings, skaha_per_user
from execbroker.exceptions import StartupError
from execbroker.metrics import PLATFORM_SWEPT
from execbroker.model import kinds
from execbroker.model.isotime import format_duration
from execbroker.model.phases import TERMINAL_COMPONENT_PHASES, ComponentPhase, MessageLevel
from execbroker.model.plan import Plan
from execbroker.model.records import ComponentRole
from execbroker.platforms.base import (
    OwnerPhases,
    Platform,
    PlatformError,
    PlatformHealth,
    PlatformLimits,
    PlatformNote,
    PlatformState,
    PlatformStatus,
    Work,
)
from execbroker.platforms.skaha.client import (
    RetryPolicy,
    SkahaClient,
    SkahaSession,
    SkahaStatus,
    normalise_name,
)
from execbroker.platforms.skaha.credentials import (
    CredentialStore,
    ExchangeSettings,
    Sealer,
    UserCredentials,
    describe,
)
from execbroker.platforms.skaha.discovery import discover_session_api
from execbroker.platforms.skaha.errors import (
    SkahaCreateUnknownError,
    SkahaCredentialsError,
    SkahaError,
    SkahaForbiddenError,
    SkahaNotFoundError,
    SkahaRequestError,
    SkahaServerError,
    SkahaUnavailableError,
)
from execbroker.platforms.skaha.mapping import (
    Catalogue,
    create_request,
    session_type,
    shape_plan,
)
from execbroker.platforms.skaha.tokens import TokenManager
from execbroker.platforms.skaha.usage import AccountUsage

__all__ = ["SkahaOptions", "SkahaPlatform"]

logger = logging.getLogger(__name__)
_CONNECT_PROBE_TIMEOUT = 5.0  # seconds for one GET of a connect URL
_SERVER_ERROR = 500
_BEFORE_AVAILABLE = frozenset({ComponentPhase.WAITING, ComponentPhase.PREPARING})

_ENDED = frozenset({SkahaStatus.COMPLETED, SkahaStatus.SUCCEEDED})
_BROKEN = frozenset({SkahaStatus.FAILED, SkahaStatus.ERROR})
_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_MAX_EVENT_LINES = 8
_MAX_TAIL_CHARS = 2000
_TERMINATING = (
    "the Skaha session is terminating, and the broker did not delete it (preempted, "
    "evicted, its node drained, or deleted by an administrator or the account's owner)"
)
_LOST_LOOKS = 3  # consecutive lists a session must be missing from to be lost
_UNSEEN_RENEWAL = 2  # intervals after which a renewal that never showed is tried again


@dataclass(frozen=True)
class SkahaOptions:
    """The Skaha settings the platform uses (see :class:`~execbroker.config.Settings`)."""

    url: str
    token_file: Path
    issuer: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = field(default=None, repr=False)
    refresh_fraction: float = 0.8
    notebook_image: str = "images.canfar.net/skaha/astroml:latest"
    registry_auth: SecretStr | None = field(default=None, repr=False)
    prefix: str = "execbroker"
    list_interval: float = 5.0
    catalogue_interval: float = 300.0
    timeout: float = 30.0
    retries: int = 4
    retry_budget: float = 20.0
    renew_before: float = 3600.0
    log_tail_lines: int = 20
    renew_interval: float = 300.0
    create_grace: float = 60.0
    lost_grace: float = 60.0
    sweep_interval: float = 60.0
    list_max_bytes: int = 256 * 1024 * 1024
    connect_hosts: tuple[str, ...] = ()  # empty: the host of ``url``
    use_stats: bool = False
    per_user: bool = False  # every owner is a Skaha account (config.skaha_per_user)
    credential_key: SecretStr | None = field(default=None, repr=False)
    exchange_audience: str | None = None
    exchange_scopes: str = "openid profile offline_access"
    refresh_warning: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Settings) -> SkahaOptions:
        if not settings.skaha.url or settings.skaha.token_file is None:
            raise ValueError(
                "platform = skaha needs skaha_url and skaha_token_file "
                "(EXECBROKER_SKAHA_URL, EXECBROKER_SKAHA_TOKEN_FILE)"
            )
        return cls(
            url=settings.skaha.url,
            token_file=settings.skaha.token_file,
            issuer=settings.skaha.oidc_issuer,
            client_id=settings.skaha.client_id,
            client_secret=settings.skaha.client_secret,
            refresh_fraction=settings.skaha.refresh_fraction,
            notebook_image=settings.skaha.notebook_image,
            registry_auth=settings.skaha.registry_auth,
            prefix=settings.skaha.session_prefix,
            list_interval=settings.skaha.list_interval.total_seconds(),
            catalogue_interval=settings.skaha.catalogue_interval.total_seconds(),
            timeout=settings.skaha.timeout.total_seconds(),
            retries=settings.skaha.retries,
            retry_budget=settings.skaha.retry_budget.total_seconds(),
            renew_before=settings.skaha.renew_before.total_seconds(),
            log_tail_lines=settings.skaha.log_tail_lines,
            renew_interval=settings.skaha.renew_interval.total_seconds(),
            create_grace=settings.skaha.create_grace.total_seconds(),
            lost_grace=settings.skaha.lost_grace.total_seconds(),
            sweep_interval=settings.skaha.sweep_interval.total_seconds(),
            list_max_bytes=settings.skaha.list_max_bytes,
            connect_hosts=tuple(settings.skaha.connect_hosts),
            use_stats=settings.skaha.use_stats,
            per_user=skaha_per_user(settings),
            credential_key=settings.skaha.credential_key,
            exchange_audience=settings.skaha.exchange_audience,
            exchange_scopes=settings.skaha.exchange_scopes,
            refresh_warning=settings.skaha.refresh_warning,
        )

    def exchange(self) -> ExchangeSettings:
        """How users' tokens are exchanged and refreshed (per-user mode)."""
        return ExchangeSettings(
            issuer=self.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            audience=self.exchange_audience,
            scopes=self.exchange_scopes,
            refresh_fraction=self.refresh_fraction,
            refresh_warning=self.refresh_warning,
            cleanup_interval=self.sweep_interval,
            # Longer than an accept takes from its admission to its commit.
            admit_grace=timedelta(seconds=2 * max(self.sweep_interval, self.timeout)),
        )

    @property
    def session_hosts(self) -> frozenset[str]:
        """Hosts a connect URL may point to."""
        hosts = self.connect_hosts or (urlsplit(self.url).hostname or "",)
        return frozenset(host.strip().lower() for host in hosts if host.strip())


@dataclass(frozen=True)
class _Listing:
    """One ``GET /session``: this broker's sessions by name, and when it was asked.

    ``named`` holds every session of a name (names are not unique on Skaha), ``by_name``
    the one that stands for it: a live one before a terminating one, the oldest first.
    """

    taken: float  # monotonic, just before the call
    by_name: dict[str, SkahaSession]
    named: dict[str, list[SkahaSession]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Missing:
    """A session missing from the lists: since which list, and from how many."""

    first: float  # monotonic: when the first list without it was taken
    last: float
    looks: int


@dataclass(frozen=True)
class _Renewal:
    """The broker's last renewal of a session: when, and the expiry it saw then (None:
    the renewal failed, so the expiry cannot tell whether it worked).
    """

    at: float  # monotonic
    expiry: datetime | None


@dataclass(frozen=True)
class _Created:
    """A session this process created (or adopted), known before a list shows it."""

    id: str
    type: str
    at: float  # monotonic


@dataclass
class _Account:
    """One Skaha account: its client (its token) and its own shared list.

    Single-account mode has one (key ``""``, the token file's); per-user mode one per
    owner with live sessions, each listed once per interval with its own token.
    """

    key: str
    client: SkahaClient
    listing: _Listing | None = None
    list_failure: tuple[float, SkahaError] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SkahaPlatform(Platform):
    """Runs a session's compute as a session on CANFAR's Skaha, named after its component.

    A restarted broker finds its sessions again by name; one list call per interval answers
    every poll; creates are idempotent by name; and a periodic sweep deletes sessions of this
    broker that no live component owns (the module docstring says why each is so).
    """

    name = "skaha"

    def __init__(
        self,
        options: SkahaOptions,
        *,
        clock: Clock,
        background: BackgroundTaskManager,
        transport: httpx.AsyncBaseTransport | None = None,
        credential_store: CredentialStore | None = None,
    ) -> None:
        if options.per_user and credential_store is None:
            raise ValueError("per-user Skaha identity needs a credential store")
        self._sealer = _sealer(options) if options.per_user else None
        self._store = credential_store
        self._users: UserCredentials | None = None
        self._accounts: dict[str, _Account] = {}
        self._orphans: dict[UUID, str] = {}  # found by objects(): its account
        self._options = options
        self._background = background
        self._clock = clock
        self._transport = transport
        self._interval = timedelta(seconds=options.list_interval)
        self._http: httpx.AsyncClient | None = None
        self._tokens: TokenManager | None = None
        self._client: SkahaClient | None = None
        self._catalogue: Catalogue | None = None
        self._catalogue_problem: str | None = "Skaha has not been asked yet"
        self._skaha_problem: str | None = None
        self._shared_account: _Account | None = None
        self._api = options.url
        self._refresh_warned: datetime | None = None
        self._created: dict[UUID, _Created] = {}
        # Components whose last create has an unknown outcome: when it was sent (monotonic).
        self._creating: dict[UUID, float] = {}
        self._missing: dict[UUID, _Missing] = {}
        self._renewed: dict[str, _Renewal] = {}
        self._lifetime_warning: str | None = None
        self._connect_refused: set[str] = set()
        # Sessions whose connect URL has answered (not 5xx): published from then on.
        self._connect_answered: set[str] = set()
        # Sessions whose connect URL did not answer at first: since when (monotonic).
        self._connect_waiting: dict[str, float] = {}
        self._events_read: dict[str, float] = {}
        self._sweeping = False
        self._usage = AccountUsage(
            clock=clock,
            prefix=options.prefix,
            per_user=options.per_user,
            use_stats=options.use_stats,
            horizon=timedelta(seconds=options.catalogue_interval),
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def client(self) -> SkahaClient:
        if self._client is None:
            raise RuntimeError("the Skaha platform is not started")
        return self._client

    @property
    def tokens(self) -> TokenManager:
        if self._tokens is None:
            raise RuntimeError("the Skaha platform is not started")
        return self._tokens

    async def start(self) -> None:
        options = self._options
        # httpx logs every request URL at INFO; Skaha session ids in those URLs are the
        # notebooks' access tokens, so its per-request lines stay out of the broker's log.
        httpx_logger = logging.getLogger("httpx")
        if httpx_logger.getEffectiveLevel() < logging.WARNING:
            httpx_logger.setLevel(logging.WARNING)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(options.timeout),
            transport=self._transport,
            follow_redirects=False,
        )
        self._tokens = TokenManager(
            token_file=options.token_file,
            http=self._http,
            clock=self._clock,
            background=self._background,
            issuer=options.issuer,
            client_id=options.client_id,
            client_secret=options.client_secret,
            refresh_fraction=options.refresh_fraction,
            file_check=min(5.0, options.list_interval),
        )
        try:
            await self._tokens.start()
        except SkahaError:
            await self._http.aclose()
            raise
        try:
            api = await discover_session_api(self._http, options.url)
        except StartupError as unsupported:
            logger.error(  # noqa: TRY400 - one line for the operator, not a trace
                "the Skaha site is not supported", extra={"reason": str(unsupported)}
            )
            await self._http.aclose()
            raise
        self._api = api  # every account's client calls it
        self._client = SkahaClient(
            api,
            http=self._http,
            tokens=self._tokens,
            retry=RetryPolicy(retries=options.retries, budget=options.retry_budget),
            registry_auth=options.registry_auth,
        )
        self._shared_account = _Account("", self._client)
        if options.per_user:
            await self._start_users(self._http)
        self._log_identity()
        self._check_refresh_expiry()
        try:
            async with asyncio.timeout(options.timeout):
                await self._read_catalogue()
        except (SkahaError, TimeoutError) as failure:
            self._catalogue_problem = _reason(failure)
            logger.warning(
                "Skaha's resource options not read at start; retrying in the background",
                extra={"reason": self._catalogue_problem},
            )
        else:
            # What the account uses already, before the first offer (not if Skaha is down:
            # the catalogue loop reads it with the catalogue).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(options.timeout):
                    await self._usage.refresh(self.client)
        self._background.loop(
            "skaha-catalogue",
            self._refresh_catalogue,
            retry=options.catalogue_interval,
            first_pause=self._catalogue_pause(),
        )
        logger.info(
            "Skaha platform started",
            extra={"skaha_url": self.client.base_url, "prefix": options.prefix},
        )

    async def _start_users(self, http: httpx.AsyncClient) -> None:
        """Per-user mode: read the users' stored credentials and keep them fresh."""
        if self._store is None or self._sealer is None:
            raise RuntimeError("per-user Skaha identity needs a credential store and a key")
        self._users = UserCredentials(
            self._options.exchange(),
            store=self._store,
            sealer=self._sealer,
            http=http,
            clock=self._clock,
            background=self._background,
            on_forget=self._forget_account,
        )
        await self._users.start()

    def _log_identity(self) -> None:
        if self._options.per_user:
            logger.info(
                "Skaha identity: per-user; each session runs as its owner, with their "
                "exchanged token (skaha_token_file's account reads only Skaha's catalogue)"
            )
        else:
            logger.warning(
                "Skaha identity: single-account; every session runs as the account of "
                "skaha_token_file: users share its /arc home and projects and can read and "
                "overwrite each other's files (sign users in with auth = oidc for per-user)"
            )

    @property
    def users(self) -> UserCredentials | None:
        """The users' credentials in per-user mode, else None."""
        return self._users

    async def admit(self, owner: str, token: str | None) -> None:
        """Per-user mode: make sure ``owner`` has a Skaha credential before anything of
        theirs is accepted, exchanging ``token`` (their own access token) if needed.
        Single-account mode admits everyone (the token file's account runs everything).
        """
        if self._users is not None:
            await self._users.admit(owner, token)

    @property
    def _shared(self) -> _Account:
        if self._shared_account is None:
            raise RuntimeError("the Skaha platform is not started")
        return self._shared_account

    def _account(self, work: Work) -> _Account:
        """The account that runs ``work``'s session: its owner's, or the shared one."""
        return self._account_of(work.session.owner)

    def _account_of(self, owner: str) -> _Account:
        users = self._users
        if users is None:
            return self._shared
        account = self._accounts.get(owner)
        if account is None:
            client = SkahaClient(
                self._api,
                http=self._require_http(),
                tokens=users.source(owner),
                retry=RetryPolicy(retries=self._options.retries, budget=self._options.retry_budget),
                registry_auth=self._options.registry_auth,
            )
            account = self._accounts[owner] = _Account(owner, client)
        return account

    def _live_accounts(self) -> list[_Account]:
        """The accounts whose sessions the broker follows: the users' with a usable
        credential (per-user), or the shared one.
        """
        users = self._users
        if users is None:
            return [self._shared]
        return [self._account_of(key) for key in sorted(users.accounts()) if users.usable(key)]

    def _forget_account(self, key: str) -> None:
        self._accounts.pop(key, None)

    def _require_http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the Skaha platform is not started")
        return self._http

    def _check_refresh_expiry(self) -> str | None:
        """Single-account mode: a warning (logged once per token) when the token file's
        refresh token ends within ``refresh_warning``; None otherwise.
        """
        tokens = self._tokens
        end = tokens.refresh_expires_at if tokens is not None else None
        if end is None or end - self._clock.now() > self._options.refresh_warning:
            return None
        days = max((end - self._clock.now()).total_seconds(), 0.0) / 86400
        warning = (
            f"the Skaha refresh token of skaha_token_file ends at "
            f"{end.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {days:.1f} days): write new tokens "
            "to the file before then, or Skaha stops"
        )
        if self._refresh_warned != end:
            self._refresh_warned = end
            logger.warning(
                "the Skaha refresh token ends soon; write new tokens to skaha_token_file",
                extra={"expires_at": end.isoformat()},
            )
        return warning

    def _identity_details(self) -> dict[str, Any]:
        if self._users is not None:
            return describe(self._users)
        return {
            "platform_identity": "single-account",
            "platform_identity_note": (
                "every Skaha session runs as the account of skaha_token_file: users share "
                "its /arc home and projects and can read each other's files"
            ),
        }

    async def stop(self) -> None:
        """Close the HTTP client (the background manager has stopped the loops)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def health(self) -> PlatformHealth:
        """Whether Skaha can be used now, and if not, what the operator should know; and
        which identity sessions run with (``platform_identity`` and its counts).
        """
        health = self._availability()
        notes = [n for n in (health.message, self._users_note()) if n]
        if health.available:
            notes.append(self._check_refresh_expiry() or "")
        return PlatformHealth(
            available=health.available,
            message="; ".join(n for n in notes if n) or None,
            details=self._identity_details(),
        )

    def _users_note(self) -> str | None:
        users = self._users
        if users is None:
            return None
        parts = []
        if again := users.to_log_in_again():
            parts.append(
                f"{again} user(s) must sign in again: the identity provider refused their "
                "Skaha refresh token, so their sessions wait"
            )
        if ending := users.expiring():
            parts.append(f"{ending} user(s)' Skaha refresh tokens end within the warning time")
        return "; ".join(parts) or None

    def _availability(self) -> PlatformHealth:
        tokens = self._tokens
        if tokens is not None and tokens.problem is not None:
            return PlatformHealth(available=False, message=tokens.problem)
        if tokens is not None and tokens.expired and tokens.outage is not None:
            return PlatformHealth(
                available=False,
                message=(
                    f"Skaha cannot be used for now: the access token has expired and "
                    f"{tokens.outage}; retrying with backoff, the refresh token is kept"
                ),
            )
        if self._skaha_problem is not None:
            return PlatformHealth(available=False, message=self._skaha_problem)
        if self._catalogue is None:
            return PlatformHealth(
                available=False,
                message=f"Skaha's resource options are not known yet: {self._catalogue_problem}",
            )
        # Usable, but the operator should know (sessions are renewed every renew_interval).
        return PlatformHealth(available=True, message=self._lifetime_warning)

    # -- the catalogue (/context, /repository, /image) ------------------------------------

    async def _read_catalogue(self) -> None:
        client = self.client
        context = await client.context()
        registries = await client.repositories()
        images = await client.images()
        self._catalogue = Catalogue(
            context=context,
            registries=tuple(registries),
            images=frozenset(image.id for image in images),
            image_types={image.id: frozenset(image.types) for image in images},
            read_at=self._clock.now(),
        )
        if self._catalogue_problem is not None:
            logger.info("Skaha's resource options read")
        self._catalogue_problem = None

    def _catalogue_pause(self) -> float:
        """Seconds until the next read of the catalogue: sooner while it cannot be read."""
        pause = self._options.catalogue_interval
        if self._catalogue_problem is not None:
            pause = min(pause, max(self._options.list_interval, 1.0))
        return pause

    async def _refresh_catalogue(self) -> float:
        """One pass of the catalogue loop; seconds until the next."""
        try:
            await self._read_catalogue()
        except SkahaError as failure:
            if self._catalogue_problem is None:
                logger.warning(
                    "cannot read Skaha's resource options; keeping the last ones",
                    extra={"reason": failure.message},
                )
            self._catalogue_problem = failure.message
        await self._usage.refresh(self.client)
        self._check_refresh_expiry()
        return self._catalogue_pause()

    def limits(self) -> PlatformLimits:
        """The account's interactive-session limit (``maxInteractiveSessions``), and what
        the account and the cluster already use (:class:`AccountUsage`).
        """
        return self._usage.limits(self._catalogue)

    def interactive(self, plan: Plan) -> bool:
        """Every Skaha session type but ``headless`` counts toward the limit."""
        return session_type(plan) != "headless"

    def shape(self, plan: Plan) -> Plan:
        return shape_plan(
            plan,
            self._catalogue,
            notebook_image=self._options.notebook_image,
            registry_auth=self._options.registry_auth is not None,
            unknown_reason=self._catalogue_problem,
        )

    # -- names and the shared list --------------------------------------------------------

    def session_name(self, uuid: UUID) -> str:
        return normalise_name(f"{self._options.prefix}-{uuid}")

    def _owner_of(self, name: str) -> UUID | None:
        prefix = f"{self._options.prefix}-"
        if not name.startswith(prefix):
            return None
        try:
            return UUID(name[len(prefix) :])
        except ValueError:
            return None

    async def _sessions(self, account: _Account, *, newer_than: float | None = None) -> _Listing:
        """The sessions of this broker in ``account``: one list call per interval and
        account, shared by every caller (``newer_than``: a list taken after that monotonic
        instant).
        """
        interval = self._options.list_interval

        def recent(listing: _Listing) -> bool:
            if time.monotonic() - listing.taken >= interval:
                return False
            return newer_than is None or listing.taken > newer_than

        listing = account.listing
        if listing is not None and recent(listing):
            return listing
        async with account.lock:
            listing = account.listing
            now = time.monotonic()
            if listing is not None and recent(listing):
                return listing
            if account.list_failure is not None and now - account.list_failure[0] < interval:
                # Failed moments ago: do not ask again before the interval is over.
                failed_at, failure = account.list_failure
                raise SkahaUnavailableError(
                    failure.message, retry_after=timedelta(seconds=interval - (now - failed_at))
                )
            taken = time.monotonic()
            try:
                sessions = await account.client.own_sessions(
                    f"{self._options.prefix}-", max_bytes=self._options.list_max_bytes
                )
            except SkahaError as failure:
                account.list_failure = (time.monotonic(), failure)
                self._skaha_failed(account, failure)
                raise
            named: dict[str, list[SkahaSession]] = {}
            for session in sessions:
                if self._owner_of(session.name) is not None:
                    named.setdefault(session.name, []).append(session)
            # Names are not unique on Skaha: a live session stands for its name before a
            # terminating one, the oldest first (the one the sweep keeps).
            by_name = {name: _oldest(found) for name, found in named.items()}
            account.listing = _Listing(taken=taken, by_name=by_name, named=named)
            account.list_failure = None
            self._skaha_answered()
            return account.listing

    async def _lookup(self, work: Work) -> SkahaSession | None:
        """The component's session: from the shared list, or what a create said, or (for
        one missing from a newer list) from Skaha by id.
        """
        name = self.session_name(work.uuid)
        account = self._account(work)
        listing = await self._sessions(account)
        created = self._created.get(work.uuid)
        named = listing.named.get(name, [])
        tracked = next((s for s in named if created is not None and s.id == created.id), None)
        found = tracked or listing.by_name.get(name)
        if found is not None:
            return found
        if created is None:
            return None
        if created.at >= listing.taken:
            return SkahaSession(
                id=created.id,
                name=name,
                status=SkahaStatus.PENDING,
                type=created.type,
                listed=False,
            )
        try:
            return await account.client.session(created.id)
        except SkahaNotFoundError:
            return None

    def _skaha_failed(self, account: _Account, failure: SkahaError) -> None:
        if account is not self._shared_account and isinstance(
            failure, SkahaCredentialsError | SkahaForbiddenError
        ):
            return  # one user's credential: their sessions wait, health counts them
        if isinstance(failure, SkahaForbiddenError):
            problem = f"Skaha refuses the broker's account: {failure.message}"
        elif isinstance(failure, SkahaUnavailableError | SkahaServerError):
            problem = f"Skaha cannot be used now: {failure.message}"
        else:
            return
        if self._skaha_problem is None:
            logger.warning("Skaha cannot be used for now", extra={"reason": problem})
        self._skaha_problem = problem

    def _skaha_answered(self) -> None:
        if self._skaha_problem is not None:
            logger.info("Skaha answering again")
        self._skaha_problem = None

    # -- the interface ------------------------------------------------------------------

    async def prepare(self, work: Work) -> PlatformStatus:
        if work.role is not ComponentRole.COMPUTE:
            return _ready_at_once(work)
        try:
            return await self._start_session(work)
        except SkahaUnavailableError as failure:
            if self._clock.now() >= work.component.schedule.release_start:
                raise PlatformError(
                    f"Skaha could not be used before the offered time ended: {failure.message}"
                ) from None
            raise

    async def _start_session(self, work: Work) -> PlatformStatus:
        """Adopt the component's session if it exists (a restart), else create it."""
        name = self.session_name(work.uuid)
        try:
            existing = await self._lookup(work)
        except SkahaRequestError as failure:
            # The account cannot list: not this component's fault.
            raise SkahaUnavailableError(
                f"Skaha cannot list the sessions: {failure.message}"
            ) from None
        if existing is not None and existing.status != SkahaStatus.TERMINATING:
            logger.info(
                "Skaha session adopted", extra={"component": str(work.uuid), "skaha_name": name}
            )
            self._creating.pop(work.uuid, None)
            self._created[work.uuid] = _Created(existing.id, existing.type, time.monotonic())
            return await self._status(work, existing)
        self._wait_for_outstanding_create(work, name)
        request = create_request(
            work, name=name, catalogue=self._catalogue, notebook_image=self._options.notebook_image
        )
        # Marked before it leaves: a create cut off by the engine's call deadline (a
        # cancellation) has an unknown outcome too.
        self._creating[work.uuid] = time.monotonic()
        try:
            session_id = await self._account(work).client.create(request)
        except SkahaCreateUnknownError:
            raise
        except SkahaError:
            self._creating.pop(work.uuid, None)  # a definite answer: nothing was made
            raise
        self._creating.pop(work.uuid, None)
        self._created[work.uuid] = _Created(session_id, request.type, time.monotonic())
        logger.info(
            "Skaha session created",
            extra={"component": str(work.uuid), "skaha_name": name, "type": request.type},
        )
        return PlatformStatus(
            PlatformState.PREPARING, f"Skaha session {name} created", next_check=self._interval
        )

    def _wait_for_outstanding_create(self, work: Work, name: str) -> None:
        """Refuse to create again while an earlier create of unknown outcome may still
        land: until a list taken ``timeout + create_grace`` after it shows nothing.
        """
        uuid = work.uuid
        sent = self._creating.get(uuid)
        if sent is None:
            return
        quiet = self._options.timeout + self._options.create_grace
        listing = self._account(work).listing
        taken = listing.taken if listing is not None else sent
        wait = sent + quiet - taken
        if wait > 0:
            raise SkahaUnavailableError(
                f"an earlier create of Skaha session {name} has an unknown outcome; no new "
                f"create until a list {quiet:g} s after it shows no such session",
                retry_after=timedelta(seconds=max(wait, self._options.list_interval)),
            )
        logger.info(
            "no Skaha session after an unknown create outcome; creating again",
            extra={"component": str(uuid), "skaha_name": name},
        )
        del self._creating[uuid]

    async def poll(self, work: Work) -> PlatformStatus:
        if work.role is not ComponentRole.COMPUTE:
            return _ready_at_once(work)
        try:
            session = await self._lookup(work)
            if session is None:
                return self._missing_now(work)
            self._missing.pop(work.uuid, None)
            return await self._status(work, session)
        except SkahaError as failure:
            return self._no_news(work, failure)

    def _missing_now(self, work: Work) -> PlatformStatus:
        """The session is in no list and Skaha says 404 by id: lost only once that has
        held for ``_LOST_LOOKS`` lists spanning ``lost_grace`` (R4: a glitch is not a loss).
        """
        listing = self._account(work).listing
        taken = listing.taken if listing is not None else time.monotonic()
        seen = self._missing.get(work.uuid) or _Missing(first=taken, last=-1.0, looks=0)
        if taken != seen.last:
            seen = _Missing(first=seen.first, last=taken, looks=seen.looks + 1)
        self._missing[work.uuid] = seen
        if seen.looks >= _LOST_LOOKS and taken - seen.first >= self._options.lost_grace:
            del self._missing[work.uuid]
            return self._lost(work)
        if seen.looks == 1:
            logger.warning(
                "Skaha session missing; declared lost if it stays missing",
                extra={"component": str(work.uuid), "grace": self._options.lost_grace},
            )
        status = self._no_news(work, None)
        return PlatformStatus(
            status.state,
            f"the Skaha session is missing from Skaha's list ({seen.looks} in a row); it is "
            f"declared lost if it is still missing after {self._options.lost_grace:g} s",
            next_check=self._interval,
        )

    async def release(self, work: Work) -> PlatformStatus:
        """Delete every Skaha session of the component's name, and the one it was created
        with even if no list shows it (a glitch, or a session declared lost): released once
        Skaha has none of them left.
        """
        if work.role is not ComponentRole.COMPUTE:
            return PlatformStatus(PlatformState.RELEASED, "nothing to release on Skaha")
        name = self.session_name(work.uuid)
        account = self._account(work)
        try:
            session = await self._lookup(work)
            targets = self._to_delete(account, work.uuid, session)
            if not targets:
                self._forget(account, work.uuid, session)
                return PlatformStatus(PlatformState.RELEASED, "the Skaha session has gone")
            exit_code = 0 if session is not None and session.status in _ENDED else None
            remaining = 0
            for target in targets:
                await account.client.delete(target)
                try:
                    after = await account.client.session(target)
                except SkahaNotFoundError:
                    continue
                if after.status != SkahaStatus.TERMINATING:
                    remaining += 1
        except SkahaRequestError as failure:
            if isinstance(failure, SkahaServerError):
                return self._no_news(work, failure)
            return PlatformStatus(
                PlatformState.FAILED, f"Skaha refused to delete the session: {failure.message}"
            )
        except SkahaError as failure:
            return self._no_news(work, failure)
        if not remaining:
            self._forget(account, work.uuid, session)
            logger.info(
                "Skaha session deleted",
                extra={"component": str(work.uuid), "skaha_name": name, "count": len(targets)},
            )
            return PlatformStatus(
                PlatformState.RELEASED, "the Skaha session was deleted", exit_code=exit_code
            )
        # Skaha swallows delete errors: still there means try again.
        return PlatformStatus(
            PlatformState.RELEASING, "the Skaha session is being deleted", next_check=self._interval
        )

    def _to_delete(self, account: _Account, uuid: UUID, session: SkahaSession | None) -> list[str]:
        """The ids of the component's sessions that are not being deleted already."""
        listing = account.listing
        named = listing.named.get(self.session_name(uuid), []) if listing is not None else []
        ids = [s.id for s in named if s.status != SkahaStatus.TERMINATING]
        if session is not None and session.status != SkahaStatus.TERMINATING:
            ids.append(session.id)
        created = self._created.get(uuid)
        if created is not None and all(s.id != created.id for s in named):
            ids.append(created.id)  # made after the list, or missing from it
        return list(dict.fromkeys(i for i in ids if i))

    async def objects(self) -> set[UUID]:
        """Components with a live session in any followed account (per-user: each user
        with a stored credential; an account that cannot be listed keeps its orphans
        until the next start).
        """
        found: set[UUID] = set()
        for account in self._live_accounts():
            try:
                listing = await self._sessions(account)
            except SkahaError as failure:
                logger.warning(
                    "cannot list Skaha sessions to reconcile; orphans stay until the next start",
                    extra={"reason": failure.message, "account": account.key},
                )
                continue
            for name, session in listing.by_name.items():
                owner = self._owner_of(name)
                if session.status != SkahaStatus.TERMINATING and owner is not None:
                    found.add(owner)
                    self._orphans[owner] = account.key
        return found

    async def release_orphan(self, uuid: UUID) -> None:
        name = self.session_name(uuid)
        key = self._orphans.pop(uuid, "")
        account = self._account_of(key) if self._users is not None else self._shared
        try:
            listing = await self._sessions(account)
            for session in listing.named.get(name, []):
                if session.status != SkahaStatus.TERMINATING:
                    await account.client.delete(session.id)
                    PLATFORM_SWEPT.labels(self.name, "orphan").inc()
            self._forget(account, uuid, listing.by_name.get(name))
        except SkahaError as failure:
            logger.warning(
                "cannot delete an orphaned Skaha session",
                extra={"component": str(uuid), "skaha_name": name, "reason": failure.message},
            )

    # -- the sweep ------------------------------------------------------------------------

    def sweep_periodically(self, phases: OwnerPhases) -> None:
        """Sweep every ``sweep_interval`` from now on (until the background manager stops)."""
        if self._sweeping:
            return
        self._sweeping = True
        interval = self._options.sweep_interval

        async def sweep_pass() -> float:
            try:
                await self.sweep(phases)
            except SkahaError as failure:
                logger.warning(
                    "cannot sweep Skaha sessions; trying at the next sweep",
                    extra={"reason": failure.message},
                )
            return interval

        self._background.loop("skaha-sweep", sweep_pass, retry=interval, first_pause=interval)

    async def sweep(self, phases: OwnerPhases) -> int:
        """Delete sessions of this broker's prefix that no live component owns (its
        component is unknown or has ended), and the duplicates of live ones, keeping the
        one the broker tracks, else the oldest; how many it deleted. Per-user mode sweeps
        every followed user's account; one that cannot be listed is swept next time.
        """
        if self._users is None:
            return await self._sweep_account(self._shared, phases)
        deleted = 0
        for account in self._live_accounts():
            try:
                deleted += await self._sweep_account(account, phases)
            except SkahaError as failure:
                logger.warning(
                    "cannot sweep a user's Skaha sessions; trying at the next sweep",
                    extra={"reason": failure.message, "account": account.key},
                )
        return deleted

    async def _sweep_account(self, account: _Account, phases: OwnerPhases) -> int:
        listing = await self._sessions(account)
        found: dict[UUID, list[SkahaSession]] = {}
        for name, sessions in listing.named.items():
            owner = self._owner_of(name)
            alive = [s for s in sessions if s.status != SkahaStatus.TERMINATING]
            if owner is not None and alive:
                found[owner] = alive
        if not found:
            return 0
        asked = time.monotonic()
        known = await phases(set(found))
        # Looked at again after the phases were read: a session released meanwhile (its
        # component ended) is terminating or gone by then, not an orphan.
        now = await self._sessions(account, newer_than=asked)
        deleted = 0
        for owner, listed in found.items():
            sessions = [
                s
                for s in now.named.get(self.session_name(owner), [])
                if s.status != SkahaStatus.TERMINATING and any(s.id == o.id for o in listed)
            ]
            if not sessions:
                continue
            phase = known.get(owner)
            if phase is None or phase in TERMINAL_COMPONENT_PHASES:
                doomed, reason = sessions, "orphan"
            elif len(sessions) > 1:
                created = self._created.get(owner)
                keep = next((s for s in sessions if created and s.id == created.id), None)
                keep = keep or _oldest(sessions)
                doomed, reason = [s for s in sessions if s.id != keep.id], "duplicate"
            else:
                continue
            for session in doomed:
                await account.client.delete(session.id)
                PLATFORM_SWEPT.labels(self.name, reason).inc()
                deleted += 1
                logger.warning(
                    "Skaha session swept",
                    extra={"component": str(owner), "skaha_name": session.name, "reason": reason},
                )
        return deleted

    # -- statuses -----------------------------------------------------------------------

    async def _status(self, work: Work, session: SkahaSession) -> PlatformStatus:
        status = session.status
        if status == SkahaStatus.PENDING:
            return await self._pending(work, session)
        if status == SkahaStatus.RUNNING:
            if not session.interactive:
                return PlatformStatus(PlatformState.RUNNING, next_check=self._interval)
            await self._renew_if_due(work, session)
            connectors, refused = self._connectors(work, session)
            unready = await self._connect_unready(work, session, connectors)
            if unready is not None:
                return PlatformStatus(PlatformState.PREPARING, unready, next_check=self._interval)
            return PlatformStatus(
                PlatformState.READY,
                next_check=self._interval,
                connectors=connectors,
                notes=(*refused, *self._connect_waited(session)),
            )
        if status in _ENDED:
            return PlatformStatus(PlatformState.EXITED, "the Skaha session completed", exit_code=0)
        if status in _BROKEN:
            return PlatformStatus(PlatformState.FAILED, await self._failure(work, session))
        if status == SkahaStatus.TERMINATING:
            # Polled, so not deleted by the broker (it commits a release before asking).
            return PlatformStatus(
                PlatformState.RELEASING,
                await self._failure(work, session, _TERMINATING),
                next_check=self._interval,
            )
        logger.warning(
            "unknown Skaha session status; asking again later",
            extra={"component": str(work.uuid), "status": status[:40]},
        )
        return self._no_news(work, None)

    async def _pending(self, work: Work, session: SkahaSession) -> PlatformStatus:
        if not session.listed:
            # Created since the last list: nothing says yet whether Kueue holds it.
            return PlatformStatus(PlatformState.PREPARING, next_check=self._interval)
        if session.start_time is None:
            # Kueue holds it (or nothing has scheduled it yet): queued, with the queue budget.
            return PlatformStatus(
                PlatformState.PREPARING,
                "Skaha holds the session in its queue (Pending, no start time yet)",
                next_check=self._interval,
                queued=True,
            )
        started = work.component.started_at
        planned = work.component.schedule.prepare_duration
        now = self._clock.now()
        last = self._events_read.get(session.id)
        if (
            started is not None
            and now >= started + planned
            and (last is None or time.monotonic() - last >= self._options.list_interval)
        ):
            # Slower than planned: look at the events once per interval for a failed pull.
            self._events_read[session.id] = time.monotonic()
            events = await self._account(work).client.events(session.id)
            if events and any(reason in events for reason in _PULL_FAILURES):
                return PlatformStatus(
                    PlatformState.FAILED,
                    f"the image cannot be pulled; Skaha events:\n{_last_lines(events)}",
                )
        return PlatformStatus(
            PlatformState.PREPARING,
            "starting: Skaha is pulling the image and starting the container",
            next_check=self._interval,
        )

    async def _failure(self, work: Work, session: SkahaSession, headline: str | None = None) -> str:
        """Why a session failed (or is ending: ``headline``), from its expiry, its events
        and the tail of its log.
        """
        now = self._clock.now()
        expired = session.expiry_time is not None and now >= session.expiry_time
        if headline is None:
            headline = (
                "the Skaha session expired (it reached its Skaha expiry time)"
                if expired
                else "the Skaha session failed"
            )
        parts = [headline]
        client = self._account(work).client
        with contextlib.suppress(SkahaError):
            events = await client.events(session.id)
            if events and events.strip() and events.strip() != "<none>":
                parts.append(f"Skaha events:\n{_last_lines(events)}")
        lines = self._options.log_tail_lines
        if lines > 0:
            with contextlib.suppress(SkahaError):
                log = await client.logs(session.id)
                if log.strip():
                    tail = "\n".join(log.rstrip().splitlines()[-lines:])[-_MAX_TAIL_CHARS:]
                    parts.append(f"log tail:\n{tail}")
        return "\n".join(parts)

    def _lost(self, work: Work) -> PlatformStatus:
        # The created id is kept: the release that follows still deletes it (and the name).
        logger.warning(
            "Skaha session lost",
            extra={"component": str(work.uuid), "skaha_name": self.session_name(work.uuid)},
        )
        return PlatformStatus(
            PlatformState.MISSING,
            "lost: the Skaha session is gone without the broker seeing it end (deleted "
            "outside the broker, or cleaned up by Skaha after it ended unseen)",
        )

    def _no_news(self, work: Work, failure: SkahaError | None) -> PlatformStatus:
        """Skaha cannot tell now: keep the component where it is, ask again later."""
        retry = failure.retry_after if isinstance(failure, SkahaUnavailableError) else None
        message = f"Skaha cannot be asked now: {failure.message}" if failure else None
        check = max(retry or self._interval, self._interval)
        match work.component.phase:
            case ComponentPhase.AVAILABLE:
                state = PlatformState.READY
            case ComponentPhase.RUNNING:
                state = PlatformState.RUNNING
            case ComponentPhase.RELEASING:
                state = PlatformState.RELEASING
            case _:
                state = PlatformState.PREPARING
        return PlatformStatus(state, message, next_check=check)

    def _forget(self, account: _Account, uuid: UUID, session: SkahaSession | None) -> None:
        self._created.pop(uuid, None)
        self._missing.pop(uuid, None)
        if session is not None:
            self._connect_refused.discard(session.id)
            self._connect_answered.discard(session.id)
            self._connect_waiting.pop(session.id, None)
            self._renewed.pop(session.id, None)
            self._events_read.pop(session.id, None)
        listing = account.listing
        if listing is not None:
            listing.by_name.pop(self.session_name(uuid), None)
            listing.named.pop(self.session_name(uuid), None)

    async def _renew_if_due(self, work: Work, session: SkahaSession) -> None:
        """Push an interactive session's Skaha expiry while the offered time lasts: when
        the expiry is within ``renew_before``, it moved since the last renewal (else the
        renewal has not shown yet: tried again only after 2 intervals) and ``renew_interval``
        has passed.
        """
        expiry = session.expiry_time
        if expiry is None:
            return
        last = self._renewed.get(session.id)
        if last is None:
            self._check_lifetime(session, expiry)
        now = self._clock.now()
        offered_end = work.component.schedule.release_start
        if offered_end <= expiry or expiry - now > timedelta(seconds=self._options.renew_before):
            return
        if last is not None:
            since = time.monotonic() - last.at
            if since < self._options.renew_interval:
                return
            if expiry == last.expiry and since < _UNSEEN_RENEWAL * self._options.renew_interval:
                return  # the last renewal has not shown yet (Skaha prints whole seconds)
        try:
            await self._account(work).client.renew(session.id)
        except SkahaError as failure:
            self._renewed[session.id] = _Renewal(at=time.monotonic(), expiry=None)
            logger.warning(
                "cannot renew a Skaha session",
                extra={"component": str(work.uuid), "reason": failure.message},
            )
            return
        self._renewed[session.id] = _Renewal(at=time.monotonic(), expiry=expiry)
        logger.info("Skaha session renewed", extra={"component": str(work.uuid)})

    def _check_lifetime(self, session: SkahaSession, expiry: datetime) -> None:
        """Warn once (log and /healthz) when Skaha grants interactive sessions no more than
        the renew window: every look would find them due for renewal.
        """
        if self._lifetime_warning is not None or session.start_time is None:
            return
        lifetime = (expiry - session.start_time).total_seconds()
        window = self._options.renew_before
        if lifetime <= 0 or lifetime > window:
            return
        self._lifetime_warning = (
            f"Skaha grants interactive sessions {lifetime:.0f} s, no more than "
            f"skaha_renew_before ({window:g} s): they are renewed at most every "
            f"skaha_renew_interval ({self._options.renew_interval:g} s); set "
            "skaha_renew_before below the lifetime"
        )
        if self._options.renew_interval >= lifetime:
            self._lifetime_warning += (
                ", and skaha_renew_interval below it, or sessions expire before renewal"
            )
        logger.warning(
            "Skaha session lifetime within the renew window",
            extra={"lifetime": lifetime, "renew_before": window},
        )

    async def _connect_unready(
        self, work: Work, session: SkahaSession, connectors: list[dict[str, Any]]
    ) -> str | None:
        """Why the session's connector is not published yet, or None once its URL has
        answered (SKAHA.md §6.4: Skaha before CANFAR 2026.2 answers 503 for about 30 s
        after Running). Asked until the first answer that is not 5xx, and only while the
        component is not yet available (after a restart, a published one stays so).
        """
        if (
            not connectors
            or session.id in self._connect_answered
            or work.component.phase not in _BEFORE_AVAILABLE
        ):
            return None
        problem = await self._probe_connect(str(connectors[0]["location"]))
        if problem is not None:
            if session.id not in self._connect_waiting:
                self._connect_waiting[session.id] = time.monotonic()
                logger.info(
                    "Skaha session running, its connect URL not answering yet",
                    extra={"component": str(work.uuid), "answer": problem},
                )
            return f"starting: the session's web interface does not answer yet ({problem})"
        self._connect_answered.add(session.id)
        return None

    def _connect_waited(self, session: SkahaSession) -> tuple[PlatformNote, ...]:
        """A note, once, that the connector waited for its URL to answer."""
        since = self._connect_waiting.pop(session.id, None)
        if since is None:
            return ()
        waited = timedelta(seconds=round(time.monotonic() - since, 1))
        return (
            PlatformNote(
                "Skaha's web interface for the session answered {waited} after it was "
                "running; its connector is published from now on",
                {"waited": format_duration(waited)},
            ),
        )

    async def _probe_connect(self, url: str) -> str | None:
        """One GET of a connect URL, without following redirects (into the user's data)
        nor reading the body, and without the broker's token; why it is not ready, or
        None. The URL holds the session's secret: it is never logged (httpx's own
        request lines are silenced at start).
        """
        if self._http is None:
            raise RuntimeError("the Skaha platform is not started")
        timeout = min(self._options.timeout, _CONNECT_PROBE_TIMEOUT)
        try:
            async with self._http.stream(
                "GET", url, timeout=timeout, follow_redirects=False
            ) as response:
                status = response.status_code
        except httpx.HTTPError as failure:
            return f"no answer: {type(failure).__name__}"
        return f"HTTP {status}" if status >= _SERVER_ERROR else None

    def _connectors(
        self, work: Work, session: SkahaSession
    ) -> tuple[list[dict[str, Any]], tuple[PlatformNote, ...]]:
        """The session's ``connectURL`` (only once it is Running, SKAHA.md §6.4), if it is
        safe to hand to the user: ``https`` (``http`` only on loopback) on a Skaha host.
        Otherwise none, and a note saying why (without the URL: it holds a token).
        """
        url = session.connect_url
        if not url:
            return [], ()
        problem = _unsafe_url(url, self._options.session_hosts)
        if problem is None:
            return _connector(work, session, url), ()
        if session.id not in self._connect_refused:
            self._connect_refused.add(session.id)
            logger.warning(
                "Skaha connect URL left out", extra={"component": str(work.uuid), "why": problem}
            )
        note = PlatformNote(
            "The platform's connect URL was left out: {problem}",
            {"problem": problem},
            level=MessageLevel.WARN,
        )
        return [], (note,)


def _sealer(options: SkahaOptions) -> Sealer:
    """The users' credential sealer; a missing or bad key is one start-up line."""
    try:
        return Sealer(options.credential_key)
    except ValueError as failure:
        raise StartupError(str(failure)) from None


def _oldest(sessions: list[SkahaSession]) -> SkahaSession:
    """The session that stands for its name: live before terminating, then the earliest
    started (not started yet counts as newest), then the first listed.
    """

    def rank(item: tuple[int, SkahaSession]) -> tuple[bool, bool, float, int]:
        index, session = item
        started = session.start_time
        return (
            session.status == SkahaStatus.TERMINATING,
            started is None,
            started.timestamp() if started is not None else 0.0,
            index,
        )

    return min(enumerate(sessions), key=rank)[1]


def _unsafe_url(url: str, hosts: frozenset[str]) -> str | None:
    """Why ``url`` must not be published as a connector, or None if it may."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return "it is not a URL"
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        return f"its scheme '{scheme[:20]}' is neither https nor http"
    if parts.username is not None or parts.password is not None:
        return "it carries credentials before its host"
    if host not in hosts:
        return f"its host '{host[:100]}' is not a Skaha host ({', '.join(sorted(hosts))})"
    if scheme == "http" and not _loopback(host):
        return "it is http (unencrypted) on a host other than loopback"
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ready_at_once(work: Work) -> PlatformStatus:
    """Skaha has no storage or staging API: storage is the account's /arc space, and data
    is read by the executable itself (see docs/skaha.md).
    """
    match work.role:
        case ComponentRole.STORAGE:
            message = "storage on Skaha is the account's shared /arc space"
        case ComponentRole.DATA:
            message = "Skaha stages no data: the executable reads it from its location"
        case _:
            message = "Skaha pulls the image when the session starts"
    return PlatformStatus(PlatformState.READY, message)


def _connector(work: Work, session: SkahaSession, url: str) -> list[dict[str, Any]]:
    executable = work.session.component(ComponentRole.EXECUTABLE)
    kind = (
        "urn:execbroker:connector:jupyter-notebook"
        if executable is not None and executable.kind == kinds.EXECUTABLE_JUPYTER
        else f"urn:execbroker:connector:skaha-{session.type}"
    )
    protocol = "HTTPS" if url.lower().startswith("https://") else "HTTP"
    return [{"kind": kind, "protocol": protocol, "location": url}]


def _last_lines(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_MAX_EVENT_LINES:])


def _reason(failure: BaseException) -> str:
    if isinstance(failure, SkahaError):
        return failure.message
    return "Skaha did not answer in time"
