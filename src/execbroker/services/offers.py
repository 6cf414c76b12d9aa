"""Answering execution requests: offer sets (``POST /requests``) and direct runs (``/direct``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from execbroker.auth.identity import Caller
from execbroker.clock import Clock
from execbroker.config import Settings
from execbroker.exceptions import NotFoundError, RequestRefusedError
from execbroker.metrics import OFFER_SETS, OFFERS
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
from execbroker.services import admission
from execbroker.storage.booking import Booking
from execbroker.storage.store import BrokerStore

__all__ = ["OfferService"]

logger = logging.getLogger(__name__)


class OfferService:
    def __init__(
        self,
        *,
        store: BrokerStore,
        settings: Settings,
        profile: PlatformProfile,
        clock: Clock,
        on_offers_made: Callable[[datetime], None] | None = None,
        on_session_started: Callable[[UUID], None] | None = None,
        shape: Callable[[Plan], Plan] | None = None,
        extension: Callable[[Booking, SessionRecord, datetime], None] | None = None,
        stored_records: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self._stored_records = stored_records
        self._extension = extension
        self._shape = shape or (lambda plan: plan)
        self._on_session_started = on_session_started or (lambda _uuid: None)
        self._store = store
        self._settings = settings
        self._profile = profile
        self._clock = clock
        self._on_offers_made = on_offers_made

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
                document, settings=self._settings, profile=self._profile, now=now
            )
            plan = self._shape(plan)
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
            OFFER_SETS.labels(OfferResult.NO.value).inc()
            OFFERS.labels("refused").inc()
            logger.info("offer set refused", extra={"offer_set": str(offer_set_uuid)})
            return refused

        def book(booking: Booking) -> OfferSetRecord:
            moment = booking.now()
            expires = moment + self._settings.offer_lifetime
            room = admission.offers_allowed(
                booking,
                owner,
                now=moment,
                limit=self._settings.quota_live_offers,
                most=self._settings.max_offers,
            )
            search = self._search(booking, plan, now=moment, max_offers=room)
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
        if expires is not None and self._on_offers_made:
            self._on_offers_made(expires)
        return offer_set

    async def _check_stored_quota(self, owner: str) -> None:
        """The stored-records quota (:func:`admission.check_stored_records`), checked
        before planning, not under the pool's lock: concurrent requests may pass it
        together, by at most their number."""
        limit = self._settings.quota_stored_records
        if limit is None or self._stored_records is None:
            return
        admission.check_stored_records(owner, stored=await self._stored_records(owner), limit=limit)

    def _search(
        self, booking: Booking, plan: Plan, *, now: datetime, max_offers: int
    ) -> OfferSearch:
        """Offers against what is held over the window the plan could book, then filtered by
        the request's cost and metric limits."""
        times = SessionTimes.of(plan, self._profile)
        if times.lead + times.tail > self._settings.max_preparation:
            return OfferSearch(
                [],
                [
                    error(
                        "{path}: preparing and releasing would take {needed}, longer than "
                        "the {limit} this broker plans for",
                        path="/data",
                        needed=format_duration(times.lead + times.tail),
                        limit=format_duration(self._settings.max_preparation),
                    )
                ],
            )
        start = plan.window.start - times.lead
        end = plan.window.end + plan.duration + times.tail
        # Fast path: if even the sum of every overlapping hold leaves room for the largest
        # this request may use, the exact calendar cannot say otherwise — skip building it.
        total = admission.total_if_it_fits(
            booking,
            start,
            end,
            now=now,
            largest=Amounts(plan.cores.max, plan.memory.max, plan.storage_max),
            capacity=self._profile.capacity,
        )
        if total is not None:
            usage = Usage([Hold("everything", start, end, total)])
        else:
            usage = Usage(booking.holds(start, end, now=now))
        search = generate_offers(
            plan, profile=self._profile, usage=usage, now=now, max_offers=max_offers
        )
        return apply_limits(search, plan, self._profile)

    async def execute_directly(self, document: Any, *, caller: Caller) -> SessionRecord:
        """A session that starts as soon as it can, already ACCEPTED; refused with reasons."""
        now = self._clock.now()
        owner = caller.name
        await self._check_stored_quota(owner)
        try:
            plan, _ = validate_request(
                document, settings=self._settings, profile=self._profile, now=now
            )
            plan = self._shape(plan)
        except RequestRefusedError:
            OFFERS.labels("refused").inc()
            raise

        def book(booking: Booking) -> SessionRecord:
            moment = booking.now()
            admission.check_active_sessions(
                booking, owner, limit=self._settings.quota_active_sessions
            )
            search = self._search(booking, plan, now=moment, max_offers=1)
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
            if self._extension is not None:
                # The answer shows how far it may be extended: work it out while booking.
                self._extension(booking, created, moment)
            return created

        session = await self._store.calendar.book(book)
        OFFERS.labels("direct").inc()
        self._on_session_started(session.uuid)
        logger.info("direct session created", extra={"session": str(session.uuid)})
        return session

    async def list_offer_sets(
        self, *, caller: Caller, after: datetime | None, last: int | None
    ) -> list[OfferSetRecord]:
        return await self._store.offers.listing(owner=caller.scope, after=after, last=last)

    async def get_offer_set(self, uuid: UUID, *, caller: Caller) -> OfferSetRecord:
        found = await self._store.offers.get(uuid, owner=caller.scope)
        if found is None:
            raise NotFoundError("No offer set {uuid}", {"uuid": uuid})
        return found
