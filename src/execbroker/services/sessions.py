"""Reading sessions and components, applying a client's updates, and expiring offers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NoReturn, Self, TypeVar
from uuid import UUID

from pydantic import TypeAdapter, ValidationError

from execbroker.auth.identity import Caller
from execbroker.clock import Clock
from execbroker.config import Settings
from execbroker.exceptions import ConflictError, NotFoundError, UnprocessableError
from execbroker.lifecycle.changes import SessionChanges, WaiterSlot
from execbroker.lifecycle.freed import Cause
from execbroker.metrics import OFFERS
from execbroker.model.capacity import Amounts
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.messages import info
from execbroker.model.phases import (
    ACTIVE_SESSION_PHASES,
    EXTEND_PATH,
    TERMINAL_SESSION_PHASES,
    SessionPhase,
    derive_session_phase,
    phase_options,
    still_releasing,
)
from execbroker.model.records import ComponentRecord, ComponentRole, SessionRecord
from execbroker.model.wire import EnumValueUpdate, IntegerDeltaUpdate, MessageItem, Update
from execbroker.planning.calendar import Usage
from execbroker.planning.offers import component_costs, summed_costs
from execbroker.planning.profile import PlatformProfile
from execbroker.planning.validation import schema_messages
from execbroker.platforms.base import Platform
from execbroker.services import admission
from execbroker.services.expiry import ExpiryTimer
from execbroker.storage.booking import Booking
from execbroker.storage.offers import OfferExpiredError
from execbroker.storage.store import BrokerStore

__all__ = ["Listing", "SessionLimits", "SessionService"]

logger = logging.getLogger(__name__)

_UPDATE = TypeAdapter[Any](Update)
_UPDATE_KINDS = (
    "uri:enum-value-update",
    "uri:string-value-update",
    "uri:integer-value-update",
    "uri:integer-delta-update",
)


# How long an active session's extension room is reused while no booking commits here (other
# brokers' bookings are seen once it has passed), and how many sessions' rooms are kept.
_ROOM_FRESH = 2.0
_ROOMS_KEPT = 10_000
# Rendered answers kept for clients that read the same session or listing again: at most
# this many of each kind, and this many bytes (a listing of 1,000 sessions is about 400 KiB).
_ANSWERS_KEPT = 2_000
_ANSWER_BYTES_KEPT = 32 * 1024 * 1024
_SECONDS_PER_UNIT = {
    None: 1,
    "s": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
}


@dataclass(frozen=True, kw_only=True)
class Listing:
    """Which of a caller's sessions a listing shows: newest first, in these phases (none:
    all), created after ``after``, at most ``last`` (None: the most a listing holds).
    """

    phases: tuple[SessionPhase, ...] = ()
    after: datetime | None = None
    last: int | None = None


@dataclass(frozen=True, kw_only=True)
class SessionLimits:
    """What the session service reads of the settings: the longest a session may run
    (extensions included) and the per-user quota of active sessions (None: no quota).
    """

    max_duration: timedelta
    active_sessions: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The limits ``settings`` set."""
        return cls(
            max_duration=settings.planning.max_duration,
            active_sessions=settings.planning.quota_active_sessions,
        )


class SessionService:
    """Reads sessions and components, applies a client's updates, and waits for changes.

    Built by :class:`~execbroker.factory.Factory`: ``changes`` wakes the waiters and the
    engine when it changes a session; ``expiry`` expires offers found too late to accept;
    ``platform`` says what else than the pool limits an extension (an account's
    interactive sessions).
    """

    def __init__(
        self,
        *,
        store: BrokerStore,
        clock: Clock,
        profile: PlatformProfile,
        changes: SessionChanges,
        expiry: ExpiryTimer,
        limits: SessionLimits,
        platform: Platform,
    ) -> None:
        self._limits = limits
        self._platform = platform
        self._store = store
        self._clock = clock
        self._profile = profile
        self._changes = changes
        self._feed = changes.feed
        self._expiry = expiry
        self._rooms: dict[UUID, _Room] = {}
        self._documents = _Kept[tuple[UUID, Hashable]]()
        self._listings = _Kept[tuple[str | None, Listing, Hashable]]()

    async def get_session(self, uuid: UUID, *, caller: Caller) -> SessionRecord:
        """The session, if ``caller`` may see it; while it is active, with how far the
        calendar lets it be extended.
        """
        return await self._get(uuid, owner=caller.scope)

    async def session_document(
        self,
        uuid: UUID,
        *,
        caller: Caller,
        variant: Hashable,
        render: Callable[[SessionRecord], Awaitable[bytes]],
    ) -> bytes:
        """The session as ``render`` writes it, if ``caller`` may see it: rendered again only
        when it changed. ``variant`` names everything else the rendering depends on (the base
        URL, who reads, the format).

        What was rendered last for ``(uuid, variant)`` is answered again while the session's
        revision and phase are those it was rendered from (one glance at the row, by key) and,
        while the session is active, while the extension room it showed is still the one
        :meth:`work_out_extension` would use. A client polling its session costs a glance,
        not a read of the session, its components and messages and the calendar.
        """
        cached = await self.cached_document(uuid, caller=caller, variant=variant)
        if cached is not None:
            return cached
        record = await self._get(uuid, owner=caller.scope)
        body = await render(record)
        room = self._rooms.get(uuid) if record.phase in ACTIVE_SESSION_PHASES else None
        if room is not None and room.limit != record.extension_limit:
            room = None  # worked out again meanwhile: not known to be the one rendered
        self._documents.keep(
            (uuid, variant), _Document((record.revision, record.phase), room, body)
        )
        return body

    async def cached_document(
        self, uuid: UUID, *, caller: Caller, variant: Hashable
    ) -> bytes | None:
        """What :meth:`session_document` rendered last for ``(uuid, variant)``, if it is still
        current and ``caller`` may see the session; None otherwise (nothing is rendered).
        """
        cached = self._documents.get((uuid, variant))
        if cached is None:
            return None
        stamp = await self._store.sessions.stamp(uuid, owner=caller.scope)
        if stamp is None or cached.stamp != stamp or not self._room_holds(uuid, cached):
            return None
        return cached.body

    def _room_holds(self, uuid: UUID, document: _Document) -> bool:
        """Whether the extension room ``document`` shows is still current (a session that
        is not active shows none).
        """
        if document.stamp[1] not in ACTIVE_SESSION_PHASES:
            return True
        room = document.room
        return (
            room is not None
            and self._rooms.get(uuid) is room
            and room.generation == self._calendar_generation()
            and time.monotonic() - room.at < _ROOM_FRESH
        )

    async def _get(self, uuid: UUID, *, owner: str | None) -> SessionRecord:
        found = await self._store.sessions.get(uuid, owner=owner)
        if found is None:
            raise NotFoundError("No session {uuid}", {"uuid": uuid})
        await self.work_out_extension(found)
        return found

    async def work_out_extension(self, session: SessionRecord) -> None:
        """Set how far the calendar lets an active session be extended now (unless it was
        worked out already, in the transaction that booked it).

        The answer is advice (an extension is decided again under the booking lock), so it
        is kept per session until a booking in this process commits or it frees capacity,
        the session's own booking changes, or :data:`_ROOM_FRESH` passes (bookings by other
        brokers): a client polling its session does not read the calendar on every ``GET``.
        """
        if session.phase not in ACTIVE_SESSION_PHASES or session.extension_limit is not None:
            return
        key = (session.schedule.release_end, _booked(session), session.interactive)
        seen = self._rooms.get(session.uuid)
        moment = time.monotonic()
        if (
            seen is not None
            and seen.key == key
            and seen.generation == self._calendar_generation()
            and moment - seen.at < _ROOM_FRESH
        ):
            session.extension_limit = seen.limit
            return
        generation = self._calendar_generation()
        await self._work_out_extension(session)
        if len(self._rooms) >= _ROOMS_KEPT:
            self._rooms.clear()
        if session.extension_limit is not None:
            self._rooms[session.uuid] = _Room(key, generation, moment, session.extension_limit)

    def _calendar_generation(self) -> tuple[int, int]:
        """Changes here since a room was worked out: bookings committed, and capacity freed
        outside a booking (a reject, a cancel, an end, an expiry, a move).
        """
        return self._store.calendar.generation, self._changes.freed_total

    async def _work_out_extension(self, session: SessionRecord) -> None:
        start, end = self._extension_window(session)
        now = self._clock.now()
        account = self._account(session)
        calendar = self._store.calendar
        total = await calendar.hold_total(
            start, end, now=now, exclude=session.uuid, account=account
        )
        if self._nothing_in_the_way(session, total):
            return
        holds = await calendar.holds(start, end, now=now, exclude=session.uuid, account=account)
        session.extension_limit = self._extension_limit(session, Usage(holds))

    def work_out_extension_in(
        self, booking: Booking, session: SessionRecord, *, now: datetime
    ) -> None:
        """:meth:`work_out_extension` inside a booking transaction (a session just booked)."""
        start, end = self._extension_window(session)
        account = self._account(session)
        total = booking.hold_total(start, end, now=now, exclude=session.uuid, account=account)
        if self._nothing_in_the_way(session, total):
            return
        holds = booking.holds(
            start, end, now=now, exclude=session.uuid, advisory=True, account=account
        )
        session.extension_limit = self._extension_limit(session, Usage(holds))

    def _extension_window(self, session: SessionRecord) -> tuple[datetime, datetime]:
        start = session.schedule.release_end
        return start, start + self._room(session)

    def _account(self, session: SessionRecord) -> str | None:
        """The platform account whose interactive sessions the session counts among."""
        return admission.account_of(session.owner, self._platform.limits())

    def _capacity(self, session: SessionRecord) -> Amounts:
        """The pool the session is extended within: its account's interactive-session
        limit too, if it is one of them.
        """
        limits = self._platform.limits()
        bounds = admission.bounds_for(
            self._profile.capacity, limits, interactive=session.interactive > 0
        )
        return bounds.capacity

    def _nothing_in_the_way(self, session: SessionRecord, total: Amounts) -> bool:
        """If even every overlapping hold leaves room, the whole room is the limit (set)."""
        if not admission.fits(total, _booked(session), self._capacity(session)):
            return False
        session.extension_limit = self._room(session)
        return True

    def _room(self, session: SessionRecord) -> timedelta:
        """How much longer the session may run before it reaches the longest run offered."""
        return max(timedelta(0), self._limits.max_duration - session.schedule.available_duration)

    def _extension_limit(self, session: SessionRecord, usage: Usage) -> timedelta:
        start = session.schedule.release_end
        room = self._room(session)
        blocked = usage.first_exceeding(
            start, start + room, extra=_booked(session), limit=self._capacity(session)
        )
        limit = room if blocked is None else min(room, blocked - start)
        return timedelta(seconds=int(limit.total_seconds()))

    async def _extend(
        self, session: SessionRecord, update: IntegerDeltaUpdate, *, caller: Caller
    ) -> None:
        unit = (update.units or "").strip().lower() or None
        if unit not in _SECONDS_PER_UNIT:
            raise UnprocessableError(
                "'{units}' is not a unit of time this broker reads (seconds, minutes, hours)",
                {"units": update.units},
                path="/units",
            )
        asked = update.delta * _SECONDS_PER_UNIT[unit]
        # No run may grow past max_duration, so a longer delta is refused below whatever it
        # is, as is any delta not positive; clamping keeps ±2^63 hours in timedelta's range.
        longest = int(self._limits.max_duration.total_seconds()) + 1
        delta = timedelta(seconds=min(max(asked, -1), longest))
        if delta <= timedelta(0):
            raise UnprocessableError(
                "only extensions are supported: the delta must be positive, not {delta}",
                {"delta": update.delta},
                path="/delta",
            )
        if session.phase not in ACTIVE_SESSION_PHASES:
            raise ConflictError(
                "The session is {phase}; only an accepted session that has not ended can be "
                "extended",
                {"phase": session.phase.value},
                path=EXTEND_PATH,
            )

        def book(booking: Booking) -> None:
            now = booking.now()
            current = booking.get_session(session.uuid, owner=session.owner)
            if current is None or current.phase not in ACTIVE_SESSION_PHASES:
                raise ConflictError(
                    "The session ended while it was being extended", path=EXTEND_PATH
                )
            # Judged under the lock, by the clock the engine ends runs by: a run whose time
            # is up is being ended (or its ending is decided), and stays ended.
            run_end = current.schedule.available_start + current.schedule.available_duration
            if current.ending is not None or now >= run_end:
                raise ConflictError(
                    "The run's offered time ended at {end}; it can no longer be extended",
                    {"end": format_instant(run_end)},
                    path=EXTEND_PATH,
                )
            holds = booking.holds(
                current.schedule.release_end,
                current.schedule.release_end + self._room(current),
                now=now,
                exclude=current.uuid,
                account=self._account(current),
            )
            limit = self._extension_limit(current, Usage(holds))
            if delta > limit:
                raise ConflictError(
                    "The run can be extended by at most {limit} seconds ({duration}) now; "
                    "{asked} seconds were asked for",
                    {
                        "limit": int(limit.total_seconds()),
                        "duration": format_duration(limit),
                        "asked": asked,
                    },
                    path=EXTEND_PATH,
                )
            duration = current.schedule.available_duration + delta
            specs = self._costed_specs(current, duration)
            extended = booking.extend(
                current,
                delta=delta,
                costs=summed_costs([spec["costs"] for spec in specs.values()]),
                specs=specs,
                now=now,
                note=info(
                    "Run extended by {delta} to {duration}",
                    time=now,
                    delta=format_duration(delta),
                    duration=format_duration(duration),
                ),
            )
            if not extended:
                raise ConflictError(
                    "The session changed while it was being extended; try again",
                    path=EXTEND_PATH,
                )

        # It reads the session and the exact calendar: locked from the start.
        await self._store.calendar.book(book, optimistic=False)
        self._changes.changed(session.uuid)

    def _costed_specs(
        self, session: SessionRecord, duration: timedelta
    ) -> dict[UUID, dict[str, Any]]:
        """The compute's and the storage resources' specs with their costs over
        ``duration``: what the session costs is their sum.
        """
        storage = session.components_of(ComponentRole.STORAGE)
        compute_costs, storage_costs = component_costs(
            self._profile,
            cores=session.cores,
            memory_gib=session.memory_gib,
            storage_gib={s.name: int((s.spec.get("size") or {}).get("min", 0)) for s in storage},
            duration=duration,
        )
        specs = {s.uuid: {**s.spec, "costs": storage_costs[s.name]} for s in storage}
        for compute in session.components_of(ComponentRole.COMPUTE):
            specs[compute.uuid] = {**compute.spec, "costs": compute_costs}
        return specs

    async def wait_for_change(
        self,
        uuid: UUID,
        *,
        caller: Caller,
        seconds: float,
        phase: SessionPhase | None,
        still_allowed: Callable[[], Awaitable[object]] | None = None,
        check_every: float = 5.0,
    ) -> SessionRecord:
        """UWS-style blocking read: return once the phase differs from ``phase`` (default:
        the phase now), or ``seconds`` have passed; at once when the session has ended.
        Also once its start moved (earlier, into freed capacity): the waiter hears of its
        new schedule at once.

        The wait counts as one of the caller's waiters (429 beyond the most a user may hold)
        and shares its reads with everyone waiting on the same session. ``still_allowed``
        is awaited every ``check_every`` seconds while waiting and raises (e.g. 401) when
        the caller's credentials stopped being valid (a token revoked or expired).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        next_check = loop.time() + check_every
        # Admitted before anything is read: a flood beyond the cap costs no database read.
        with self._feed.admit(caller.name):
            session = await self.get_session(uuid, caller=caller)
            waiting_on = phase or session.phase
            if session.phase is not waiting_on or session.phase in TERMINAL_SESSION_PHASES:
                return session
            start = session.schedule.available_start
            async with self._feed.watch(uuid, lambda: self._get(uuid, owner=None)) as watch:
                snapshot = await watch.read()
                while True:
                    session = _visible(snapshot.record, caller)
                    if (
                        session.phase is not waiting_on
                        or session.phase in TERMINAL_SESSION_PHASES
                        or session.schedule.available_start != start
                    ):
                        break
                    now = loop.time()
                    if now >= deadline:
                        break
                    if still_allowed is not None and now >= next_check:
                        await still_allowed()
                        next_check = now + check_every
                    until = deadline if still_allowed is None else min(deadline, next_check)
                    await watch.wait(snapshot, until - now)
                    snapshot = await watch.read()
        return session

    def waiting(self, user: str) -> int:
        """How many long-polls and event streams of ``user`` this broker holds open now."""
        return self._feed.waiters_of(user)

    async def follow_session(
        self,
        uuid: UUID,
        *,
        caller: Caller,
        still_allowed: Callable[[], Awaitable[object]] | None = None,
        check_every: float = 5.0,
        keepalive: float = 15.0,
    ) -> tuple[WaiterSlot, AsyncIterator[SessionRecord | None]]:
        """The session now and at each change of its or its components' phases (and of its
        start, when it moves earlier), until it ends; None every ``keepalive`` seconds
        without a change. 404 and 429 (the caller holds as many waiters as one user may)
        are raised here, before anything is read from the iterator; the slot counts until
        the iterator is closed or released.
        ``still_allowed`` is awaited every ``check_every`` seconds and ends the iteration
        by raising (e.g. 401) once the caller's credentials are no longer valid.
        """
        slot = self._feed.admit(caller.name)  # before any read: a flood costs no database read
        try:
            first = await self.get_session(uuid, caller=caller)
        except BaseException:
            slot.release()
            raise
        follow = self._follow(
            first,
            caller=caller,
            slot=slot,
            still_allowed=still_allowed,
            check_every=check_every,
            keepalive=keepalive,
        )
        return slot, follow

    async def _follow(
        self,
        first: SessionRecord,
        *,
        caller: Caller,
        slot: WaiterSlot,
        still_allowed: Callable[[], Awaitable[object]] | None,
        check_every: float,
        keepalive: float,
    ) -> AsyncIterator[SessionRecord | None]:
        loop = asyncio.get_running_loop()
        with slot:
            yield first
            if first.phase in TERMINAL_SESSION_PHASES:
                return
            last = _phases(first)
            async with self._feed.watch(
                first.uuid, lambda: self._get(first.uuid, owner=None)
            ) as watch:
                snapshot = await watch.read()
                quiet_until = loop.time() + keepalive
                next_check = loop.time() + check_every
                while True:
                    record = _visible(snapshot.record, caller)
                    now = loop.time()
                    if _phases(record) != last:
                        last = _phases(record)
                        quiet_until = now + keepalive
                        yield record
                    if record.phase in TERMINAL_SESSION_PHASES:
                        return
                    if now >= quiet_until:
                        quiet_until = now + keepalive
                        yield None
                    if still_allowed is not None and now >= next_check:
                        await still_allowed()
                        next_check = now + check_every
                    until = quiet_until if still_allowed is None else min(quiet_until, next_check)
                    await watch.wait(snapshot, until - loop.time())
                    snapshot = await watch.read()

    async def list_sessions(
        self,
        *,
        caller: Caller,
        phases: list[SessionPhase],
        after: datetime | None,
        last: int | None,
    ) -> list[SessionRecord]:
        return await self._store.sessions.listing(
            owner=caller.scope, phases=phases, after=after, last=last
        )

    async def listing_document(
        self,
        listing: Listing,
        *,
        caller: Caller,
        variant: Hashable,
        render: Callable[[list[SessionRecord]], Awaitable[bytes]],
    ) -> bytes:
        """The caller's sessions that ``listing`` selects, as ``render`` writes them:
        rendered again only when the listing changed (a session came, went or changed).
        ``variant`` names everything else the rendering depends on.
        """
        cached = await self.cached_listing(listing, caller=caller, variant=variant)
        if cached is not None:
            return cached
        found = await self.list_sessions(
            caller=caller, phases=list(listing.phases), after=listing.after, last=listing.last
        )
        body = await render(found)
        stamp = tuple((str(s.uuid), s.revision) for s in found)
        self._listings.keep((caller.scope, listing, variant), _Document(stamp, None, body))
        return body

    async def cached_listing(
        self, listing: Listing, *, caller: Caller, variant: Hashable
    ) -> bytes | None:
        """What :meth:`listing_document` rendered last for the same listing and variant, if
        every session in it is still the one rendered and no other has joined it; None
        otherwise. One read of the sessions' uuids and revisions along the listing's index.
        """
        cached = self._listings.get((caller.scope, listing, variant))
        if cached is None:
            return None
        stamp = await self._store.sessions.listing_stamp(
            owner=caller.scope, phases=listing.phases, after=listing.after, last=listing.last
        )
        return cached.body if stamp == cached.stamp else None

    async def get_component(
        self, role: ComponentRole, uuid: UUID, *, caller: Caller
    ) -> tuple[ComponentRecord, list[ComponentRecord]]:
        """The component, and (for compute) its volume mounts."""
        found = await self._store.sessions.find_component(uuid, owner=caller.scope)
        if found is None or found.role is not role:
            raise NotFoundError("No {role} component {uuid}", {"role": role.value, "uuid": uuid})
        if role is not ComponentRole.COMPUTE:
            return found, []
        session = await self._get(found.session_uuid, owner=found.owner)
        return found, session.components_of(ComponentRole.VOLUME)

    async def apply_update(self, uuid: UUID, document: Any, *, caller: Caller) -> SessionRecord:
        """Apply one update to a session; 409 when its phase forbids it, 422 when malformed."""
        update = _parse_update(document)
        path = "/" + update.path.strip().lstrip("/")
        if path == EXTEND_PATH:
            if not isinstance(update, IntegerDeltaUpdate):
                raise UnprocessableError(
                    "{target} takes a uri:integer-delta-update, not {kind}",
                    {"target": EXTEND_PATH, "kind": update.kind},
                    path="/kind",
                )
            await self._extend(await self.get_session(uuid, caller=caller), update, caller=caller)
            logger.info("session extended", extra={"session": str(uuid)})
            return await self.get_session(uuid, caller=caller)
        if path != "/phase":
            raise UnprocessableError(
                "'{target}' cannot be updated; the updatable paths are /phase and {extend}",
                {"target": update.path, "extend": EXTEND_PATH},
                path="/path",
            )
        if not isinstance(update, EnumValueUpdate):
            raise UnprocessableError(
                "/phase takes a uri:enum-value-update, not {kind}",
                {"kind": update.kind},
                path="/kind",
            )
        try:
            target = SessionPhase(update.value.strip().upper())
        except ValueError:
            raise UnprocessableError(
                "'{value}' is not a session phase",
                {"value": update.value},
                path="/value",
            ) from None
        session = await self.get_session(uuid, caller=caller)
        if (
            target is session.phase
            or (target is SessionPhase.ACCEPTED and session.phase in ACTIVE_SESSION_PHASES)
            or (target is SessionPhase.CANCELLED and session.ending is SessionPhase.CANCELLED)
        ):
            return session  # already done: a retried update is not an error
        if target not in (SessionPhase.ACCEPTED, SessionPhase.REJECTED, SessionPhase.CANCELLED):
            raise UnprocessableError(
                "a client cannot set /phase to {value}; it can set ACCEPTED, REJECTED or "
                "CANCELLED, when the session's phase allows",
                {"value": target.value},
                path="/value",
            )
        if target not in phase_options(session.phase):
            raise _wrong_phase(session, target)
        now = self._clock.now()
        match target:
            case SessionPhase.ACCEPTED:
                token = caller.token if caller.name == session.owner else None
                await self._accept(session, now=now, by=caller.label, token=token)
                OFFERS.labels("accepted").inc()
            case SessionPhase.REJECTED:
                await self._reject(
                    session,
                    now=now,
                    note=info("Offer rejected by {user}", time=now, user=caller.label),
                )
                OFFERS.labels("rejected").inc()
            case SessionPhase.CANCELLED:
                await self._cancel(session, now=now, by=caller.label)
        self._changes.changed(uuid)
        logger.info("session updated", extra={"session": str(uuid), "phase": target.value})
        return await self.get_session(uuid, caller=caller)

    async def _accept(
        self, session: SessionRecord, *, now: datetime, by: str, token: str | None
    ) -> None:
        """Accept ``session`` for ``by``; ``token`` is the owner's own bearer token when
        they are the caller (the platform may exchange it for one of its own first).
        """
        if session.expires is not None and session.expires <= now:
            await self._expired(session.expires)
        # Before the booking commits: a refusal leaves the offer as it was.
        await self._platform.admit(session.owner, token)

        def accept(booking: Booking) -> list[UUID] | None:
            at = booking.now()
            admission.check_active_sessions(
                booking, session.owner, limit=self._limits.active_sessions
            )
            return booking.mark_accepted(
                session.uuid,
                owner=session.owner,
                now=at,
                note=info("Offer accepted by {user}", time=at, user=by),
                sibling_note=info(
                    "Rejected because offer {accepted} of the same set was accepted",
                    time=at,
                    accepted=session.uuid,
                ),
            )

        # Under the pool's lock from the start: the expiry is judged at an instant read
        # under it (Booking.now), not one read before waiting for it, since meanwhile a
        # booking may have found the offer expired and planned with its capacity.
        try:
            won = await self._store.calendar.book(accept, optimistic=False)
        except OfferExpiredError as expired:
            # It expired while the accept waited for the pool's lock: its capacity may
            # already be another booking's.
            await self._expired(expired.expires)
        if won is None:
            current = await self._get(session.uuid, owner=session.owner)
            if current.phase is SessionPhase.ACCEPTED:
                return
            raise _wrong_phase(current, SessionPhase.ACCEPTED)
        for sibling in won:  # their waiters hear that they were rejected, at once
            self._changes.changed(sibling)
        self._changes.freed(Cause.REJECTED, len(won))

    async def _expired(self, expires: datetime) -> NoReturn:
        await self._expiry.expire_due_offers()
        raise ConflictError(
            "The offer expired at {expires} and can no longer be accepted",
            {"expires": format_instant(expires)},
            path="/phase",
        )

    async def _cancel(self, session: SessionRecord, *, now: datetime, by: str) -> None:
        """Record the user's decision: the session is CANCELLED from now on, and the engine
        releases its components (the calendar holds its booking until it has).
        """
        components = [(c.role, c.phase) for c in session.components]
        moved = await self._store.sessions.mark_ending(
            session.uuid,
            owner=session.owner,
            from_phases=ACTIVE_SESSION_PHASES,
            ending=SessionPhase.CANCELLED,
            phase=derive_session_phase(
                seen=session.seen, ending=SessionPhase.CANCELLED, components=components
            ),
            releasing=still_releasing(SessionPhase.CANCELLED, [p for _, p in components]),
            now=now,
            note=info("Cancelled by {user}; releasing", time=now, user=by),
        )
        if not moved:
            current = await self._get(session.uuid, owner=session.owner)
            if current.ending is None:
                raise _wrong_phase(current, SessionPhase.CANCELLED)
            return
        if not still_releasing(SessionPhase.CANCELLED, [p for _, p in components]):
            # Nothing to release (it had not begun): its booking is free at once.
            self._changes.freed(Cause.CANCELLED)

    async def _reject(self, session: SessionRecord, *, now: datetime, note: MessageItem) -> None:
        moved = await self._store.offers.mark_rejected(
            session.uuid, owner=session.owner, now=now, note=note
        )
        if not moved:
            current = await self._get(session.uuid, owner=session.owner)
            if current.phase is not SessionPhase.REJECTED:
                raise _wrong_phase(current, SessionPhase.REJECTED)
            return
        self._changes.freed(Cause.REJECTED)

    async def phase_counts(self) -> dict[str, int]:
        """Every user's sessions and offers, counted by phase (for metrics)."""
        return await self._store.sessions.count_by_phase()


@dataclass(frozen=True)
class _Room:
    """An active session's extension room as last worked out, and what it was worked out on."""

    key: tuple[datetime, Amounts, int]
    generation: tuple[int, int]
    at: float
    limit: timedelta


@dataclass(frozen=True, slots=True)
class _Document:
    """An answer as rendered for one variant, and what it was rendered from: a session's
    revision and phase (and the extension room it shows), or a listing's uuids and revisions.
    """

    stamp: tuple[Any, ...]
    room: _Room | None
    body: bytes


_K = TypeVar("_K", bound=Hashable)


class _Kept(Generic[_K]):
    """Rendered answers by key, forgotten all at once past :data:`_ANSWERS_KEPT` of them or
    :data:`_ANSWER_BYTES_KEPT` bytes (a client reading again renders its answer again).
    """

    def __init__(self) -> None:
        self._answers: dict[_K, _Document] = {}
        self._bytes = 0

    def get(self, key: _K) -> _Document | None:
        return self._answers.get(key)

    def keep(self, key: _K, answer: _Document) -> None:
        size = len(answer.body)
        if len(self._answers) >= _ANSWERS_KEPT or self._bytes + size > _ANSWER_BYTES_KEPT:
            self._answers.clear()
            self._bytes = 0
        if size > _ANSWER_BYTES_KEPT // 16:
            return  # one huge answer would push out hundreds of small ones
        previous = self._answers.get(key)
        if previous is not None:
            self._bytes -= len(previous.body)
        self._answers[key] = answer
        self._bytes += size


def _phases(session: SessionRecord) -> dict[str, str]:
    """What an event stream reports: the session's phase and its components', and its
    planned start (which moves earlier when capacity frees up).
    """
    return {
        "session": session.phase.value,
        "start": session.schedule.available_start.isoformat(),
    } | {str(c.uuid): c.phase.value for c in session.components}


def _visible(session: SessionRecord, caller: Caller) -> SessionRecord:
    """``session`` (read for every waiter) if ``caller`` may see it, else the usual 404."""
    if caller.scope is not None and session.owner != caller.scope:
        raise NotFoundError("No session {uuid}", {"uuid": session.uuid})
    return session


def _parse_update(document: Any) -> Any:
    if not isinstance(document, dict):
        raise UnprocessableError(
            "an update must be an object with kind, path and value, not {got}",
            {"got": type(document).__name__},
        )
    kind = document.get("kind")
    if kind not in _UPDATE_KINDS:
        raise UnprocessableError(
            "unknown update kind '{kind}'; this broker knows {known}",
            {"kind": kind, "known": ", ".join(_UPDATE_KINDS)},
            path="/kind",
        )
    try:
        return _UPDATE.validate_python(document)
    except ValidationError as failure:
        details = schema_messages(failure)
        raise UnprocessableError(
            "the update is not valid: {reason}",
            {"reason": "; ".join(m.message or "" for m in details)},
            details=details,
        ) from None


def _wrong_phase(session: SessionRecord, target: SessionPhase) -> ConflictError:
    allowed = phase_options(session.phase)
    return ConflictError(
        "The session is {phase}; /phase cannot be set to {value} now ({allowed})",
        {
            "phase": session.phase.value,
            "value": target.value,
            "allowed": "options now: " + ", ".join(p.value for p in allowed)
            if allowed
            else "it has ended; nothing can be changed",
        },
        path="/phase",
    )


def _booked(session: SessionRecord) -> Amounts:
    """What the session books of the pool."""
    return Amounts(session.cores, session.memory_gib, session.storage_gib, session.interactive)
