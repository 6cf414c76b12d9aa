"""Answering execution requests: offer sets (``POST /requests``) and direct runs (``/direct``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Self
from uuid import UUID, uuid4

from execbroker.auth.identity import Caller
from execbroker.clock import Clock
from execbroker.config import Settings
from execbroker.exceptions import NotFoundError, RequestRefusedError
from execbroker.lifecycle.changes import SessionChanges
from execbroker.metrics import OFFER_SETS, OFFERS
from execbroker.model import kinds
from execbroker.model.capacity import Amounts, Hold
from execbroker.model.isotime import format_duration, format_instant
from execbroker.model.messages import error, info
from execbroker.model.phases import OfferResult, SessionPhase
from execbroker.model.plan import Plan
from execbroker.model.records import OfferSetRecord, SessionRecord
from execbroker.model.wire import dump
from execbroker.planning.calendar import Usage
from execbroker.planning.limits import apply_limits
from execbroker.planning.offers import OfferSearch, SessionTimes, build_session, generate_offers
from execbroker.planning.profile import PlatformProfile
from execbroker.planning.validation import validate_request
from execbroker.platforms.base import Platform
from execbroker.services import admission
from execbroker.services.expiry import ExpiryTimer
from execbroker.services.sessions import SessionService
from execbroker.storage.booking import Booking
from execbroker.storage.database import Database
from execbroker.storage.retention import stored_records
from execbroker.storage.store import BrokerStore

__all__ = ["OfferLimits", "OfferService"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OfferLimits:
    """What the offer service reads of the settings itself: how many offers, for how
    long, and the per-user quotas (None: no quota).
    """

    offer_lifetime: timedelta
    max_offers: int
    max_preparation: timedelta
    live_offers: int | None = None
    stored_records: int | None = None
    active_sessions: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        """The limits ``settings`` set."""
        return cls(
            offer_lifetime=settings.planning.offer_ttl,
            max_offers=settings.planning.max_offers,
            max_preparation=settings.planning.max_preparation,
            live_offers=settings.planning.quota_live_offers,
            stored_records=settings.planning.quota_stored_records,
            active_sessions=settings.planning.quota_active_sessions,
        )


class OfferService:
    """Plans offer sets and direct runs, and books them in the pool's calendar.

    Built by :class:`~execbroker.factory.Factory`. ``planning`` is what request validation
    reads (the defaults and bounds of a request); ``platform`` shapes each plan to what it
    can run; ``sessions`` works out a direct run's extension limit while it is booked;
    ``changes`` wakes the engine for a direct run; ``expiry`` is told when new offers
    expire; ``database`` counts a user's stored records for their quota.
    """

    def __init__(
        self,
        *,
        store: BrokerStore,
        database: Database,
        planning: Settings,
        limits: OfferLimits,
        profile: PlatformProfile,
        clock: Clock,
        platform: Platform,
        changes: SessionChanges,
        expiry: ExpiryTimer,
        sessions: SessionService,
    ) -> None:
        self._store = store
        self._database = database
        self._planning = planning
        self._limits = limits
        self._profile = profile
        self._clock = clock
        self._platform = platform
        self._changes = changes
        self._expiry = expiry
        self._sessions = sessions
        self._stored: dict[str, _Stored] = {}

    async def request_offers(self, document: Any, *, caller: Caller) -> OfferSetRecord:
        """Plan ``document`` and store the offer set: ``YES`` with offers, or ``NO`` with why.

        Offers are planned and stored under the pool's booking lock, so that they hold
        against every request planned after them.
        """
        now = self._clock.now()
        owner = caller.name
        await self._check_stored_quota(owner)
        offer_set_uuid = uuid4()
        try:
            plan, request = validate_request(
                document, settings=self._planning, profile=self._profile, now=now
            )
            plan = self._platform.shape(plan)
        except RequestRefusedError as refusal:
            refused = OfferSetRecord(
                uuid=offer_set_uuid,
                owner=owner,
                result=OfferResult.NO,
                created=now,
                modified=now,
                messages=refusal.messages,
            )
            await self._store.offers.insert(refused, request=None)
            self._stored_one(owner)
            OFFER_SETS.labels(OfferResult.NO.value).inc()
            OFFERS.labels("refused").inc()
            logger.info("offer set refused", extra={"offer_set": str(offer_set_uuid)})
            return refused

        moves_earlier = self._moves_earlier(plan, direct=False)

        def book(booking: Booking) -> OfferSetRecord:
            moment = booking.now()
            expires = moment + self._limits.offer_lifetime
            room = admission.offers_allowed(
                booking,
                owner,
                now=moment,
                limit=self._limits.live_offers,
                most=self._limits.max_offers,
            )
            search = self._search(booking, plan, owner=owner, now=moment, max_offers=room)
            sessions = [
                build_session(
                    plan,
                    offer,
                    profile=self._profile,
                    owner=owner,
                    now=moment,
                    phase=SessionPhase.OFFERED,
                    expires=expires,
                    offer_set_uuid=offer_set_uuid,
                    position=position,
                    moves_earlier=moves_earlier,
                    notes=[
                        info(
                            "Offered: start {start}, {duration}, {cores} core(s), "
                            "{memory} GiB memory; expires {expires}",
                            time=moment,
                            start=format_instant(offer.start),
                            duration=format_duration(plan.duration),
                            cores=offer.cores,
                            memory=offer.memory_gib,
                            expires=format_instant(expires),
                        )
                    ],
                )
                for position, offer in enumerate(search.offers)
            ]
            made = OfferSetRecord(
                uuid=offer_set_uuid,
                owner=owner,
                result=OfferResult.YES if sessions else OfferResult.NO,
                created=moment,
                modified=moment,
                messages=[*plan.notes, *search.problems],
                offers=sessions,
            )
            booking.insert_offer_set(made, request=dump(request))
            return made

        offer_set = await self._store.calendar.book(book)
        self._stored_one(owner)
        OFFER_SETS.labels(offer_set.result.value).inc()
        if offer_set.offers:
            OFFERS.labels("made").inc(len(offer_set.offers))
        else:
            OFFERS.labels("refused").inc()
        logger.info(
            "offer set created",
            extra={
                "offer_set": str(offer_set.uuid),
                "result": offer_set.result.value,
                "offers": len(offer_set.offers),
            },
        )
        expires = offer_set.offers[0].expires if offer_set.offers else None
        if expires is not None:
            self._expiry.notice(expires)
        return offer_set

    async def _check_stored_quota(self, owner: str) -> None:
        """The stored-records quota (:func:`admission.check_stored_records`), checked
        before planning, not under the pool's lock: concurrent requests may pass it
        together, by at most their number.

        The count is read from the database at most every :data:`_STORED_FRESH` seconds
        per user, plus what this process has stored for them since (other brokers' records
        are counted when it is read again); a count at the limit is read again before the
        request is refused, so records the retention job deleted free the quota at once.
        """
        limit = self._limits.stored_records
        if limit is None:
            return
        found = self._stored.get(owner)
        moment = time.monotonic()
        if found is None or moment - found.read_at > _STORED_FRESH or found.count >= limit:
            if len(self._stored) >= _STORED_KEPT:
                self._stored.clear()
            found = self._stored[owner] = _Stored(
                await stored_records(self._database, owner), moment
            )
        admission.check_stored_records(owner, stored=found.count, limit=limit)

    def _stored_one(self, owner: str) -> None:
        """``owner`` has one more record stored (an offer set or a direct session)."""
        found = self._stored.get(owner)
        if found is not None:
            found.count += 1

    def _search(
        self, booking: Booking, plan: Plan, *, owner: str, now: datetime, max_offers: int
    ) -> OfferSearch:
        """Offers against what is held over the window the plan could book, within the
        platform's limits (an interactive session counts against ``owner``'s account), then
        filtered by the request's cost and metric limits.
        """
        times = SessionTimes.of(plan, self._profile)
        if times.lead + times.tail > self._limits.max_preparation:
            return OfferSearch(
                [],
                [
                    error(
                        "{path}: preparing and releasing would take {needed}, longer than "
                        "the {limit} this broker plans for",
                        path="/data",
                        needed=format_duration(times.lead + times.tail),
                        limit=format_duration(self._limits.max_preparation),
                    )
                ],
            )
        limits = self._platform.limits()
        bounds = admission.bounds_for(
            self._profile.capacity, limits, interactive=self._platform.interactive(plan)
        )
        account = admission.account_of(owner, limits)
        start = plan.window.start - times.lead
        end = plan.window.end + plan.duration + times.tail
        # Fast path: if even the sum of every overlapping hold leaves room for the largest
        # this request may use, the exact calendar cannot say otherwise — skip building it.
        total = admission.total_if_it_fits(
            booking,
            start,
            end,
            now=now,
            largest=Amounts(plan.cores.max, plan.memory.max, plan.storage_max, bounds.interactive),
            capacity=bounds.capacity,
            account=account,
        )
        if total is not None:
            usage = Usage([Hold("everything", start, end, total)])
        else:
            usage = Usage(booking.holds(start, end, now=now, account=account))
        search = generate_offers(
            plan,
            profile=self._profile,
            usage=usage,
            now=now,
            max_offers=max_offers,
            bounds=bounds,
            later=lambda begin, end: Usage(booking.holds(begin, end, now=now, account=account)),
        )
        return apply_limits(search, plan, self._profile)

    async def execute_directly(self, document: Any, *, caller: Caller) -> SessionRecord:
        """A session that starts as soon as it can, already ACCEPTED; refused with reasons."""
        now = self._clock.now()
        owner = caller.name
        await self._check_stored_quota(owner)
        try:
            plan, _ = validate_request(
                document, settings=self._planning, profile=self._profile, now=now
            )
            plan = self._platform.shape(plan)
        except RequestRefusedError:
            OFFERS.labels("refused").inc()
            raise
        # Before anything is booked: a platform that runs it as the caller gets their
        # credential now, or refuses with its reason.
        await self._platform.admit(owner, caller.token)

        def book(booking: Booking) -> SessionRecord:
            moment = booking.now()
            admission.check_active_sessions(booking, owner, limit=self._limits.active_sessions)
            search = self._search(booking, plan, owner=owner, now=moment, max_offers=1)
            if not search.offers:
                OFFERS.labels("refused").inc()
                raise RequestRefusedError(search.problems)
            offer = search.offers[0]
            created = build_session(
                plan,
                offer,
                profile=self._profile,
                owner=owner,
                now=moment,
                next_due=moment,
                phase=SessionPhase.ACCEPTED,
                expires=None,
                offer_set_uuid=None,
                position=0,
                moves_earlier=self._moves_earlier(plan, direct=True),
                accepted_at=moment,
                notes=[
                    *plan.notes,
                    info(
                        "Accepted for direct execution: start {start}, {duration}",
                        time=moment,
                        start=format_instant(offer.start),
                        duration=format_duration(plan.duration),
                    ),
                ],
            )
            booking.insert_session(created)
            # The answer shows how far it may be extended: work it out while booking.
            self._sessions.work_out_extension_in(booking, created, now=moment)
            return created

        session = await self._store.calendar.book(book)
        self._stored_one(owner)
        OFFERS.labels("direct").inc()
        self._changes.changed(session.uuid)
        logger.info("direct session created", extra={"session": str(session.uuid)})
        return session

    def _moves_earlier(self, plan: Plan, *, direct: bool) -> bool:
        """Whether a session of ``plan`` may start earlier once accepted, when capacity
        frees up: as the request's ``x-start-early`` says; else a direct run ("as soon as
        possible") and a container may, a notebook or another interactive session may not
        (someone may plan to be at the keyboard at its start).
        """
        if plan.start_early is not None:
            return plan.start_early
        if direct:
            return True
        notebook = plan.executable.kind == kinds.EXECUTABLE_JUPYTER
        return not (notebook or self._platform.interactive(plan))

    async def list_offer_sets(
        self, *, caller: Caller, after: datetime | None, last: int | None
    ) -> list[OfferSetRecord]:
        return await self._store.offers.listing(owner=caller.scope, after=after, last=last)

    async def get_offer_set(self, uuid: UUID, *, caller: Caller) -> OfferSetRecord:
        found = await self._store.offers.get(uuid, owner=caller.scope)
        if found is None:
            raise NotFoundError("No offer set {uuid}", {"uuid": uuid})
        return found


# How long a user's count of stored records is used before it is read again, and how many
# users' counts are kept.
_STORED_FRESH = 5.0
_STORED_KEPT = 10_000


@dataclass
class _Stored:
    """A user's stored records: as read at ``read_at`` (monotonic), plus those stored since."""

    count: int
    read_at: float
