"""The Skaha platform: a compute resource becomes a Skaha session (SKAHA.md §6).

Only the compute resource lives on Skaha. Its session is named
``<prefix>-<component uuid>``, so the platform finds it again by name after a restart and
never starts it twice; everything else it knows is a cache.

Polling: one ``GET /session`` per ``list_interval`` answers every poll in that interval,
however many sessions run (SKAHA.md §3: keep polling modest). A session created after the
last list is answered from what the create said; one missing from a newer list is asked for
by id once before it is declared lost.

Status → what the engine sees (SKAHA.md §6.3):

==================================  ==========================================
``Pending`` (queued or pulling)     PREPARING (FAILED on image-pull errors once
                                    its planned preparing time has passed)
``Running``, interactive            READY, with the ``connectURL`` as connector
``Running``, headless               RUNNING
``Completed`` / ``Succeeded``       EXITED, code 0
``Failed`` / ``Error``              FAILED: events and the log tail in the message
                                    ("expired" when its Skaha expiry had passed)
``Terminating``                     RELEASING
gone, never seen ending             FAILED, "lost"
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
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from pydantic import SecretStr

from execbroker.clock import Clock
from execbroker.config import Settings
from execbroker.model import kinds
from execbroker.model.phases import ComponentPhase
from execbroker.model.records import ComponentRole
from execbroker.planning.validation import Plan
from execbroker.platforms.base import (
    Platform,
    PlatformError,
    PlatformHealth,
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
from execbroker.platforms.skaha.errors import (
    SkahaError,
    SkahaForbiddenError,
    SkahaNotFoundError,
    SkahaRequestError,
    SkahaServerError,
    SkahaUnavailableError,
)
from execbroker.platforms.skaha.mapping import Catalogue, create_request, shape_plan
from execbroker.platforms.skaha.tokens import TokenManager

__all__ = ["SkahaOptions", "SkahaPlatform"]

logger = logging.getLogger(__name__)

_ENDED = frozenset({SkahaStatus.COMPLETED, SkahaStatus.SUCCEEDED})
_BROKEN = frozenset({SkahaStatus.FAILED, SkahaStatus.ERROR})
_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
_MAX_EVENT_LINES = 8
_MAX_TAIL_CHARS = 2000


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

    @classmethod
    def from_settings(cls, settings: Settings) -> SkahaOptions:
        if not settings.skaha_url or settings.skaha_token_file is None:
            raise ValueError(
                "platform = skaha needs skaha_url and skaha_token_file "
                "(EXECBROKER_SKAHA_URL, EXECBROKER_SKAHA_TOKEN_FILE)"
            )
        return cls(
            url=settings.skaha_url,
            token_file=settings.skaha_token_file,
            issuer=settings.skaha_oidc_issuer,
            client_id=settings.skaha_client_id,
            client_secret=settings.skaha_client_secret,
            refresh_fraction=settings.skaha_refresh_fraction,
            notebook_image=settings.skaha_notebook_image,
            registry_auth=settings.skaha_registry_auth,
            prefix=settings.skaha_session_prefix,
            list_interval=settings.skaha_list_interval,
            catalogue_interval=settings.skaha_catalogue_interval,
            timeout=settings.skaha_timeout,
            retries=settings.skaha_retries,
            retry_budget=settings.skaha_retry_budget,
            renew_before=settings.skaha_renew_before,
            log_tail_lines=settings.skaha_log_tail_lines,
        )


@dataclass(frozen=True)
class _Listing:
    """One ``GET /session``: this broker's sessions by name, and when it was asked."""

    taken: float  # monotonic, just before the call
    by_name: dict[str, SkahaSession]


@dataclass(frozen=True)
class _Created:
    """A session this process created (or adopted), known before a list shows it."""

    id: str
    type: str
    at: float  # monotonic


class SkahaPlatform(Platform):
    name = "skaha"

    def __init__(
        self,
        options: SkahaOptions,
        *,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._options = options
        self._clock = clock
        self._transport = transport
        self._interval = timedelta(seconds=options.list_interval)
        self._http: httpx.AsyncClient | None = None
        self._tokens: TokenManager | None = None
        self._client: SkahaClient | None = None
        self._catalogue: Catalogue | None = None
        self._catalogue_problem: str | None = "Skaha has not been asked yet"
        self._skaha_problem: str | None = None
        self._listing: _Listing | None = None
        self._list_failure: tuple[float, SkahaError] | None = None
        self._list_lock = asyncio.Lock()
        self._created: dict[UUID, _Created] = {}
        self._renewed: dict[str, float] = {}
        self._events_read: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

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
        self._client = SkahaClient(
            options.url,
            http=self._http,
            tokens=self._tokens,
            retry=RetryPolicy(retries=options.retries, budget=options.retry_budget),
            registry_auth=options.registry_auth,
        )
        try:
            async with asyncio.timeout(options.timeout):
                await self._read_catalogue()
        except (SkahaError, TimeoutError) as failure:
            self._catalogue_problem = _reason(failure)
            logger.warning(
                "Skaha's resource options not read at start; retrying in the background",
                extra={"reason": self._catalogue_problem},
            )
        self._task = asyncio.create_task(self._keep_catalogue(), name="execbroker-skaha-catalogue")
        logger.info(
            "Skaha platform started",
            extra={"skaha_url": self.client.base_url, "prefix": options.prefix},
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._tokens is not None:
            await self._tokens.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def health(self) -> PlatformHealth:
        """Whether Skaha can be used now, and if not, what the operator should know."""
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
        return PlatformHealth(available=True)

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
            read_at=self._clock.now(),
        )
        if self._catalogue_problem is not None:
            logger.info("Skaha's resource options read")
        self._catalogue_problem = None

    async def _keep_catalogue(self) -> None:
        while True:
            pause = self._options.catalogue_interval
            if self._catalogue_problem is not None:
                pause = min(pause, max(self._options.list_interval, 1.0))
            await asyncio.sleep(pause)
            try:
                await self._read_catalogue()
            except SkahaError as failure:
                if self._catalogue_problem is None:
                    logger.warning(
                        "cannot read Skaha's resource options; keeping the last ones",
                        extra={"reason": failure.message},
                    )
                self._catalogue_problem = failure.message
            except Exception:
                logger.exception("reading Skaha's resource options failed")

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

    async def _sessions(self) -> _Listing:
        """This broker's sessions: one list call per interval, shared by every caller."""
        interval = self._options.list_interval
        listing = self._listing
        if listing is not None and time.monotonic() - listing.taken < interval:
            return listing
        async with self._list_lock:
            listing = self._listing
            now = time.monotonic()
            if listing is not None and now - listing.taken < interval:
                return listing
            if self._list_failure is not None and now - self._list_failure[0] < interval:
                # Failed moments ago: do not ask again before the interval is over.
                failed_at, failure = self._list_failure
                raise SkahaUnavailableError(
                    failure.message, retry_after=timedelta(seconds=interval - (now - failed_at))
                )
            taken = time.monotonic()
            try:
                sessions = await self.client.sessions()
            except SkahaError as failure:
                self._list_failure = (time.monotonic(), failure)
                self._skaha_failed(failure)
                raise
            by_name: dict[str, SkahaSession] = {}
            for session in sessions:
                if self._owner_of(session.name) is None:
                    continue
                known = by_name.get(session.name)
                # Names are not unique on Skaha: a live session wins over a terminating one.
                if known is None or known.status == SkahaStatus.TERMINATING:
                    by_name[session.name] = session
            self._listing = _Listing(taken=taken, by_name=by_name)
            self._list_failure = None
            self._skaha_answered()
            return self._listing

    async def _lookup(self, work: Work) -> SkahaSession | None:
        """The component's session: from the shared list, or what a create said, or (for
        one missing from a newer list) from Skaha by id."""
        name = self.session_name(work.uuid)
        listing = await self._sessions()
        found = listing.by_name.get(name)
        if found is not None:
            return found
        created = self._created.get(work.uuid)
        if created is None:
            return None
        if created.at >= listing.taken:
            return SkahaSession(
                id=created.id, name=name, status=SkahaStatus.PENDING, type=created.type
            )
        try:
            return await self.client.session(created.id)
        except SkahaNotFoundError:
            return None

    def _skaha_failed(self, failure: SkahaError) -> None:
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
            self._created[work.uuid] = _Created(existing.id, existing.type, time.monotonic())
            return await self._status(work, existing)
        request = create_request(
            work, name=name, catalogue=self._catalogue, notebook_image=self._options.notebook_image
        )
        session_id = await self.client.create(request)
        self._created[work.uuid] = _Created(session_id, request.type, time.monotonic())
        logger.info(
            "Skaha session created",
            extra={"component": str(work.uuid), "skaha_name": name, "type": request.type},
        )
        return PlatformStatus(
            PlatformState.PREPARING, f"Skaha session {name} created", next_check=self._interval
        )

    async def poll(self, work: Work) -> PlatformStatus:
        if work.role is not ComponentRole.COMPUTE:
            return _ready_at_once(work)
        try:
            session = await self._lookup(work)
            if session is None:
                return self._lost(work)
            return await self._status(work, session)
        except SkahaError as failure:
            return self._no_news(work, failure)

    async def release(self, work: Work) -> PlatformStatus:
        if work.role is not ComponentRole.COMPUTE:
            return PlatformStatus(PlatformState.RELEASED, "nothing to release on Skaha")
        try:
            session = await self._lookup(work)
            if session is None or session.status == SkahaStatus.TERMINATING:
                self._forget(work.uuid, session)
                return PlatformStatus(PlatformState.RELEASED, "the Skaha session has gone")
            exit_code = 0 if session.status in _ENDED else None
            await self.client.delete(session.id)
            try:
                after = await self.client.session(session.id)
            except SkahaNotFoundError:
                after = None
        except SkahaRequestError as failure:
            if isinstance(failure, SkahaServerError):
                return self._no_news(work, failure)
            return PlatformStatus(
                PlatformState.FAILED, f"Skaha refused to delete the session: {failure.message}"
            )
        except SkahaError as failure:
            return self._no_news(work, failure)
        if after is None or after.status == SkahaStatus.TERMINATING:
            self._forget(work.uuid, session)
            logger.info(
                "Skaha session deleted",
                extra={"component": str(work.uuid), "skaha_name": session.name},
            )
            return PlatformStatus(
                PlatformState.RELEASED, "the Skaha session was deleted", exit_code=exit_code
            )
        # Skaha swallows delete errors: still there means try again.
        return PlatformStatus(
            PlatformState.RELEASING, "the Skaha session is being deleted", next_check=self._interval
        )

    async def objects(self) -> set[UUID]:
        try:
            listing = await self._sessions()
        except SkahaError as failure:
            logger.warning(
                "cannot list Skaha sessions to reconcile; orphans stay until the next start",
                extra={"reason": failure.message},
            )
            return set()
        return {
            owner
            for name, session in listing.by_name.items()
            if session.status != SkahaStatus.TERMINATING
            and (owner := self._owner_of(name)) is not None
        }

    async def release_orphan(self, uuid: UUID) -> None:
        name = self.session_name(uuid)
        try:
            listing = await self._sessions()
            session = listing.by_name.get(name)
            if session is not None:
                await self.client.delete(session.id)
                self._forget(uuid, session)
        except SkahaError as failure:
            logger.warning(
                "cannot delete an orphaned Skaha session",
                extra={"component": str(uuid), "skaha_name": name, "reason": failure.message},
            )

    # -- statuses -----------------------------------------------------------------------

    async def _status(self, work: Work, session: SkahaSession) -> PlatformStatus:
        status = session.status
        if status == SkahaStatus.PENDING:
            return await self._pending(work, session)
        if status == SkahaStatus.RUNNING:
            if not session.interactive:
                return PlatformStatus(PlatformState.RUNNING, next_check=self._interval)
            await self._renew_if_due(work, session)
            return PlatformStatus(
                PlatformState.READY,
                next_check=self._interval,
                connectors=_connectors(work, session),
            )
        if status in _ENDED:
            return PlatformStatus(PlatformState.EXITED, "the Skaha session completed", exit_code=0)
        if status in _BROKEN:
            return PlatformStatus(PlatformState.FAILED, await self._failure(session))
        if status == SkahaStatus.TERMINATING:
            return PlatformStatus(
                PlatformState.RELEASING,
                "the Skaha session is terminating",
                next_check=self._interval,
            )
        logger.warning(
            "unknown Skaha session status; asking again later",
            extra={"component": str(work.uuid), "status": status[:40]},
        )
        return self._no_news(work, None)

    async def _pending(self, work: Work, session: SkahaSession) -> PlatformStatus:
        if session.start_time is None:
            return PlatformStatus(
                PlatformState.PREPARING,
                "queued: waiting for Skaha to schedule the session",
                next_check=self._interval,
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
            events = await self.client.events(session.id)
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

    async def _failure(self, session: SkahaSession) -> str:
        """Why a session failed, from its expiry, its events and the tail of its log."""
        now = self._clock.now()
        expired = session.expiry_time is not None and now >= session.expiry_time
        parts = [
            "the Skaha session expired (it reached its Skaha expiry time)"
            if expired
            else "the Skaha session failed"
        ]
        client = self.client
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
        self._created.pop(work.uuid, None)
        logger.warning(
            "Skaha session lost",
            extra={"component": str(work.uuid), "skaha_name": self.session_name(work.uuid)},
        )
        return PlatformStatus(
            PlatformState.FAILED,
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

    def _forget(self, uuid: UUID, session: SkahaSession | None) -> None:
        self._created.pop(uuid, None)
        if session is not None:
            self._renewed.pop(session.id, None)
            self._events_read.pop(session.id, None)
        listing = self._listing
        if listing is not None:
            listing.by_name.pop(self.session_name(uuid), None)

    async def _renew_if_due(self, work: Work, session: SkahaSession) -> None:
        """Push an interactive session's Skaha expiry while the offered time lasts."""
        expiry = session.expiry_time
        if expiry is None:
            return
        now = self._clock.now()
        offered_end = work.component.schedule.release_start
        if offered_end <= expiry or expiry - now > timedelta(seconds=self._options.renew_before):
            return
        last = self._renewed.get(session.id)
        if last is not None and time.monotonic() - last < self._options.list_interval:
            return  # the list has not caught up with the last renewal yet
        self._renewed[session.id] = time.monotonic()
        try:
            await self.client.renew(session.id)
        except SkahaError as failure:
            logger.warning(
                "cannot renew a Skaha session",
                extra={"component": str(work.uuid), "reason": failure.message},
            )
            return
        logger.info("Skaha session renewed", extra={"component": str(work.uuid)})


def _ready_at_once(work: Work) -> PlatformStatus:
    """Skaha has no storage or staging API: storage is the account's /arc space, and data
    is read by the executable itself (see docs/skaha.md)."""
    match work.role:
        case ComponentRole.STORAGE:
            message = "storage on Skaha is the account's shared /arc space"
        case ComponentRole.DATA:
            message = "Skaha stages no data: the executable reads it from its location"
        case _:
            message = "Skaha pulls the image when the session starts"
    return PlatformStatus(PlatformState.READY, message)


def _connectors(work: Work, session: SkahaSession) -> list[dict[str, Any]]:
    """The session's ``connectURL``, only once it is Running (SKAHA.md §6.4)."""
    url = session.connect_url
    if not url:
        return []
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
