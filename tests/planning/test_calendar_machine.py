"""A state machine over the capacity calendar, driving the real services on SQLite.

Random requests, direct runs, accepts, rejects, cancels, extensions and clock ticks (with
a controllable clock; on each tick the expiry timer and the lifecycle engine, on the mock
platform, do what they would do); after every step the ``sessions`` table is read back and
checked:

* at every instant, for every resource, what the live bookings hold is within the pool
  (offers of one set hold the pointwise max of their amounts, everything else adds up),
  computed here from the rows, independently of ``planning/calendar.py``; the account's
  interactive sessions (notebooks, on a mock platform with ``mock_max_interactive_sessions``)
  are one of those resources;
* every session still books what it was offered, in a phase it may be in;
* a session that moved earlier (issue 19: runs end early at random fractions of their
  booking, sessions are cancelled, offers rejected or expire) starts no later than it was
  promised, no earlier than its request allows (its start interval, and not before the
  moment it moved plus its preparing lead), never later than it did at the step before
  (nobody is delayed, whoever arrived later), and keeps its duration and amounts; only
  sessions that may move do;
* after the engine has caught up with a tick, no session that may move could start
  earlier in the calendar as it is: freed capacity is used at once.

Each request's answer is checked against what was asked: the number of offers, their
starts, durations and amounts, and ``NO`` only with messages naming the field. Each
extension is checked against the room the rows leave.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import hypothesis
import sqlalchemy as sa
from hypothesis import HealthCheck, event
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from execbroker.auth.identity import Caller
from execbroker.clock import ManualClock
from execbroker.config import DatabaseSettings, MockSettings, PlanningSettings, Settings
from execbroker.exceptions import ConflictError, RequestRefusedError
from execbroker.factory import Factory, ProcessContext
from execbroker.model import kinds
from execbroker.model.isotime import format_instant
from execbroker.model.phases import (
    ACTIVE_SESSION_PHASES,
    MessageLevel,
    OfferResult,
    SessionPhase,
)
from execbroker.model.records import SessionRecord
from execbroker.model.wire import MessageItem
from execbroker.storage.database import Database
from execbroker.storage.tables import sessions as sessions_table
from tests.support.wire import example

T = TypeVar("T")
E = TypeVar("E", bound=Exception)

OWNER = Caller("alice")
START = datetime(2030, 1, 1, tzinfo=UTC)
POOL = (8, 16, 50, 2)  # cores, memory GiB, storage GiB, notebooks of the account at once
OFFER_TTL = timedelta(seconds=120)
MAX_OFFERS = 4
MAX_DURATION = timedelta(hours=12)
DEFAULT_CORES = 1
DEFAULT_MEMORY_GIB = 2
DEFAULT_STORAGE_GIB = 1
# Long preparing and releasing times, in whole multiples of five minutes, so that the
# time before and after each run (lead 25 or 40 min, tail 15 or 25 min) matters as much as
# the runs themselves, and bookings often touch exactly.
PREPARE = {
    "executable": timedelta(minutes=10),
    "compute": timedelta(minutes=15),
    "storage": timedelta(minutes=5),
    "data": timedelta(minutes=20),
}
RELEASE = {
    "executable": timedelta(minutes=5),
    "compute": timedelta(minutes=10),
    "storage": timedelta(minutes=5),
    "data": timedelta(minutes=10),
}
# Preparing takes at most 40 minutes with these estimates; a start interval that ends
# later than this after now always leaves time to prepare.
AMPLE_LEAD = timedelta(hours=1)

HOLDING = frozenset(
    {
        SessionPhase.ACCEPTED,
        SessionPhase.WAITING,
        SessionPhase.PREPARING,
        SessionPhase.AVAILABLE,
        SessionPhase.RUNNING,
        SessionPhase.RELEASING,
    }
)
_C = sessions_table.c
ROWS = sa.select(
    _C.uuid,
    _C.offer_set_uuid,
    _C.phase,
    _C.expires,
    _C.book_start,
    _C.book_end,
    _C.cores,
    _C.memory_gib,
    _C.storage_gib,
    _C.interactive,
    _C.prepare_start,
    _C.available_start,
    _C.available_seconds,
    _C.release_seconds,
    _C.releasing,
    _C.moves_earlier,
    _C.earliest_start,
    _C.promised_start,
)
ENDED = frozenset({SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED})
ENGINE_PASSES = 20  # at most, per tick: each pass takes every due session one step on
ACCEPT = {"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}
REJECT = {"kind": "uri:enum-value-update", "path": "/phase", "value": "REJECTED"}
CANCEL = {"kind": "uri:enum-value-update", "path": "/phase", "value": "CANCELLED"}

Amounts = tuple[int, int, int, int]


# ---------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Span:
    """An amount as a request writes it: either end may be left out."""

    min: int | None
    max: int | None

    def document(self) -> dict[str, int] | None:
        written = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
        return written or None

    @property
    def ordered(self) -> bool:
        return self.min is None or self.max is None or self.min <= self.max

    def bounds(self, *, default: int, capacity: int) -> tuple[int, int]:
        """What the broker may offer, as the contract reads the request: [min, capped max]."""
        low = self.min
        if low is None:
            low = min(default, self.max) if self.max is not None else default
        high = self.max if self.max is not None else low
        return low, max(low, min(high, capacity))


@dataclass(frozen=True)
class Shape:
    """A request, with times relative to the clock at the moment it is sent."""

    executable: str  # docker, notebook, scratch (docker with storage), scratch+data
    cores: Span
    memory: Span
    storage: Span | None
    duration_minutes: int
    start_offset_minutes: int
    window_minutes: int
    # How long a container runs, as a fraction of its duration (None: the mock's default,
    # ten seconds); whether the request says it may start early (None: not said).
    run_fraction: float | None = None
    start_early: bool | None = None

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        start = now + timedelta(minutes=self.start_offset_minutes)
        return start, start + timedelta(minutes=self.window_minutes)

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    def document(self, now: datetime) -> dict[str, Any]:
        document: dict[str, Any]
        if self.executable == "notebook":
            document = example("notebook-request.yaml")
        elif self.executable == "docker":
            document = example("direct-request.json")
            document["compute"] = {"kind": kinds.COMPUTE_SIMPLE, "meta": {"name": "compute"}}
        else:
            document = example("container-with-data-request.yaml")
            if self.executable == "scratch":
                del document["data"]
                volumes = document["compute"]["volumes"]
                document["compute"]["volumes"] = [v for v in volumes if v["path"] != "/input"]
        compute = document["compute"]
        for name, span in (("cores", self.cores), ("memory", self.memory)):
            written = span.document()
            if written is None:
                compute.pop(name, None)
            else:
                compute[name] = written
        if self.storage is not None:
            written = self.storage.document()
            if written is None:
                document["storage"][0].pop("size", None)
            else:
                document["storage"][0]["size"] = written
        start, _ = self.window(now)
        document["schedule"] = {
            "requested": {
                "duration": f"PT{self.duration_minutes}M",
                "start": f"{format_instant(start)}/PT{self.window_minutes}M",
            }
        }
        if self.start_early is not None:
            document["schedule"]["requested"]["x-start-early"] = self.start_early
        if self.run_fraction is not None and document["executable"]["kind"].endswith(
            "docker-container.yaml"
        ):
            seconds = round(self.duration_minutes * 60 * self.run_fraction)
            document["executable"]["environment"] = {"MOCK_RUN_SECONDS": str(seconds)}
        return document

    def expect(self, now: datetime) -> Expected:
        start, end = self.window(now)
        cores = self.cores.bounds(default=DEFAULT_CORES, capacity=POOL[0])
        memory = self.memory.bounds(default=DEFAULT_MEMORY_GIB, capacity=POOL[1])
        storage = (
            self.storage.bounds(default=DEFAULT_STORAGE_GIB, capacity=POOL[2])
            if self.storage is not None
            else (0, 0)
        )
        valid = (
            self.cores.ordered
            and cores[0] <= POOL[0]
            and self.memory.ordered
            and memory[0] <= POOL[1]
            and (self.storage is None or (self.storage.ordered and storage[0] <= POOL[2]))
            and end >= now
        )
        return Expected(
            interactive=int(self.executable == "notebook"),
            valid=valid,
            start=max(start, now),
            end=end,
            duration=self.duration,
            cores=cores,
            memory=memory,
            storage=storage,
            ample=end >= now + AMPLE_LEAD,
        )


@dataclass(frozen=True)
class Expected:
    interactive: int  # the account's interactive sessions it books: 1 for a notebook
    valid: bool  # the request passes validation: mins fit the pool, min <= max, not past
    start: datetime  # the start interval, clamped to now
    end: datetime
    duration: timedelta
    cores: tuple[int, int]
    memory: tuple[int, int]
    storage: tuple[int, int]
    ample: bool  # the interval leaves time to prepare

    @property
    def minimum(self) -> Amounts:
        return (self.cores[0], self.memory[0], self.storage[0], self.interactive)


def spans(*, likely: int, possible: int, top: int) -> st.SearchStrategy[Span]:
    """Mostly small, sometimes beyond the pool, sometimes min > max, sometimes unset."""

    @st.composite
    def build(draw: st.DrawFn) -> Span:
        minimum = draw(st.none() | st.integers(1, likely) | st.integers(1, possible))
        base = minimum or 1
        maximum = draw(
            st.none()
            | st.integers(base, top)
            | st.integers(base, min(base + 2, top))
            | st.integers(1, top)
        )
        return Span(minimum, maximum)

    return build()


def minutes(low: int, high: int) -> st.SearchStrategy[int]:
    """Minutes, often whole multiples of five (so that bookings line up exactly)."""
    return st.integers(low, high) | st.integers(-(-low // 5), high // 5).map(lambda n: 5 * n)


CORES = spans(likely=4, possible=10, top=12)
MEMORY = spans(likely=8, possible=20, top=24)
STORAGE = spans(likely=20, possible=60, top=64)


@st.composite
def shapes(draw: st.DrawFn) -> Shape:
    executable = draw(st.sampled_from(["docker", "notebook", "scratch", "scratch+data"]))
    return Shape(
        executable=executable,
        cores=draw(CORES),
        memory=draw(MEMORY),
        storage=draw(STORAGE) if "scratch" in executable else None,
        duration_minutes=draw(minutes(10, 360)),
        start_offset_minutes=draw(minutes(-30, 720)),
        window_minutes=draw(minutes(0, 360)),
        run_fraction=draw(st.none() | st.sampled_from([0.01, 0.1, 0.5, 0.9, 1.5])),
        start_early=draw(st.sampled_from([None, None, True, False])),
    )


# ---------------------------------------------------------------------- the calendar, again


@dataclass(frozen=True)
class Row:
    """One row of the ``sessions`` table, as the checks need it."""

    uuid: str
    offer_set: str | None
    phase: SessionPhase
    expires: datetime | None
    book_start: datetime
    book_end: datetime
    amounts: Amounts
    prepare_start: datetime
    available_start: datetime
    available_seconds: float
    release_seconds: float
    releasing: bool  # cancelled, its components not yet released: it still holds
    moves_earlier: bool
    earliest_start: datetime | None
    promised_start: datetime | None

    def holds_at(self, now: datetime) -> bool:
        if self.phase in HOLDING or self.releasing:
            return True
        return (
            self.phase is SessionPhase.OFFERED and self.expires is not None and self.expires > now
        )

    @property
    def group(self) -> str:
        if self.phase is SessionPhase.OFFERED and self.offer_set:
            return self.offer_set
        return self.uuid


def held_at(rows: Iterable[Row], moment: datetime) -> Amounts:
    """What ``rows`` (all live) hold at ``moment``: the max within a group, summed over groups."""
    peaks: dict[str, Amounts] = {}
    for row in rows:
        if row.book_start <= moment < row.book_end:
            before = peaks.get(row.group, (0, 0, 0, 0))
            peaks[row.group] = (
                max(before[0], row.amounts[0]),
                max(before[1], row.amounts[1]),
                max(before[2], row.amounts[2]),
                max(before[3], row.amounts[3]),
            )
    return (
        sum(p[0] for p in peaks.values()),
        sum(p[1] for p in peaks.values()),
        sum(p[2] for p in peaks.values()),
        sum(p[3] for p in peaks.values()),
    )


def ceil_second(moment: datetime) -> datetime:
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def within_pool(amounts: Amounts) -> bool:
    return all(a <= p for a, p in zip(amounts, POOL, strict=True))


def plus(a: Amounts, b: Amounts) -> Amounts:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def errors_with_paths(messages: Iterable[MessageItem]) -> list[MessageItem]:
    return [m for m in messages if m.level is MessageLevel.ERROR and (m.values or {}).get("path")]


@dataclass
class Promise:
    """What a session was offered (or given), to compare the stored row with."""

    offer_set: str | None
    expires: datetime | None
    book_start: datetime
    book_end: datetime
    available_start: datetime
    available_seconds: float
    amounts: Amounts
    earliest: datetime  # the earliest start the request allows
    extended: int = 0  # seconds added by extensions


@dataclass
class Model:
    """What each session must look like.

    Until it is accepted, a session's phase is known exactly (OFFERED, REJECTED, EXPIRED).
    Once accepted, the lifecycle engine moves it on; the model knows only that it stays
    accepted-or-ended, ends at most once, and leaves the active phases once cancelled.
    """

    phases: dict[str, SessionPhase] = field(default_factory=dict)
    promises: dict[str, Promise] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    ended: dict[str, SessionPhase] = field(default_factory=dict)

    def due(self, now: datetime) -> set[str]:
        return {
            uuid
            for uuid, phase in self.phases.items()
            if phase is SessionPhase.OFFERED
            and (expires := self.promises[uuid].expires) is not None
            and expires <= now
        }

    def sweep(self, now: datetime) -> set[str]:
        due = self.due(now)
        for uuid in due:
            self.phases[uuid] = SessionPhase.EXPIRED
        return due

    def accept(self, uuid: str) -> None:
        self.phases[uuid] = SessionPhase.ACCEPTED
        self.accepted.add(uuid)
        offer_set = self.promises[uuid].offer_set
        for sibling in self.members.get(offer_set or "", []):
            if self.phases[sibling] is SessionPhase.OFFERED:
                self.phases[sibling] = SessionPhase.REJECTED


# ---------------------------------------------------------------------- the machine

_TEMPLATE: list[Path] = []


def migrated_database(directory: Path) -> str:
    """A database URL in ``directory``, on a copy of a database migrated once per process
    (the migrations take longer than a whole run of the machine)."""
    if not _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="execbroker-calendar-template-"))
        database = Database(f"sqlite+aiosqlite:///{template / 'broker.db'}")

        async def migrate() -> None:
            await database.migrate()
            await database.dispose()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(migrate())
        finally:
            loop.close()
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        _TEMPLATE.append(template)
    for file in _TEMPLATE[0].iterdir():
        shutil.copy(file, directory / file.name)
    return f"sqlite+aiosqlite:///{directory / 'broker.db'}"


class CalendarMachine(RuleBasedStateMachine):
    offers = Bundle("offers")
    accepted = Bundle("accepted")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="execbroker-calendar-"))
        self.clock = ManualClock(START)
        self.settings = Settings(
            data_dir=self.directory,
            database=DatabaseSettings(url=migrated_database(self.directory)),
            planning=PlanningSettings(
                capacity_cores=POOL[0],
                capacity_memory_gib=POOL[1],
                capacity_storage_gib=POOL[2],
                offer_ttl=OFFER_TTL,
                max_offers=MAX_OFFERS,
                default_start_window=timedelta(hours=12),
                max_duration=MAX_DURATION,
                default_cores=DEFAULT_CORES,
                default_memory_gib=DEFAULT_MEMORY_GIB,
                default_storage_gib=DEFAULT_STORAGE_GIB,
                prepare_estimates=PREPARE,
                release_estimates=RELEASE,
                slack=timedelta(),
            ),
            mock=MockSettings(max_interactive_sessions=POOL[3]),
        )
        # The broker as the lifespan builds it, without its background loops: the rules
        # below drive the engine and the expiry by hand.
        self.context = self.run(ProcessContext.from_settings(self.settings, self.clock))
        self.run(self.context.start(loops=False))
        factory = Factory(self.context)
        self.session_service = factory.create_session_service()
        self.offer_service = factory.create_offer_service(self.session_service)
        self.database = self.context.database
        self.engine = self.context.engine
        self.model = Model()
        self._rows: list[Row] | None = None
        # Each session's start as it was after the step before: it never moves later.
        self.starts: dict[str, datetime] = {}

    def teardown(self) -> None:
        try:
            self.run(self.context.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        self._rows = None  # the broker may change anything
        return self.loop.run_until_complete(work)

    def attempt(self, work: Coroutine[Any, Any, T], expected: type[E]) -> tuple[T | None, E | None]:
        """What ``work`` returns, or the ``expected`` error it raised (a legitimate outcome
        that the rule then judges)."""
        try:
            return self.run(work), None
        except expected as failure:
            return None, failure

    def rows(self) -> list[Row]:
        """The ``sessions`` table; read again once the broker has been called."""
        if self._rows is None:
            self._rows = self.loop.run_until_complete(self._load_rows())
        return self._rows

    async def _load_rows(self) -> list[Row]:
        async with self.database.read() as connection:
            found = (await connection.execute(ROWS)).all()
        return [
            Row(
                uuid=r.uuid,
                offer_set=r.offer_set_uuid,
                phase=SessionPhase(r.phase),
                expires=r.expires,
                book_start=r.book_start,
                book_end=r.book_end,
                amounts=(r.cores, r.memory_gib, r.storage_gib, r.interactive),
                prepare_start=r.prepare_start,
                available_start=r.available_start,
                available_seconds=r.available_seconds,
                release_seconds=r.release_seconds,
                releasing=r.releasing,
                moves_earlier=r.moves_earlier,
                earliest_start=r.earliest_start,
                promised_start=r.promised_start,
            )
            for r in found
        ]

    def phase_of(self, uuid: UUID) -> SessionPhase:
        return next(r.phase for r in self.rows() if r.uuid == str(uuid))

    def nothing_booked_ahead(self, now: datetime) -> bool:
        """True when no live booking reaches past now: the calendar is empty from now on."""
        return not any(r.holds_at(now) and r.book_end > now for r in self.rows())

    def extension_room(self, uuid: str, now: datetime) -> int:
        """Seconds the session can run longer: until the pool would overflow, at most up to
        the longest run offered. Worked out from the rows, not by the planner."""
        rows = self.rows()
        session = next(r for r in rows if r.uuid == uuid)
        room = max(timedelta(0), MAX_DURATION - timedelta(seconds=session.available_seconds))
        start, end = session.book_end, session.book_end + room
        others = [
            r
            for r in rows
            if r.uuid != uuid and r.holds_at(now) and r.book_end > start and r.book_start < end
        ]
        moments = {start} | {
            m for r in others for m in (r.book_start, r.book_end) if start < m < end
        }
        for moment in sorted(moments):
            if not within_pool(plus(held_at(others, moment), session.amounts)):
                room = min(room, moment - start)
                break
        return int(room.total_seconds())

    # ------------------------------------------------------------------ checks

    def remember(self, session: SessionRecord, expected: Expected) -> None:
        uuid = str(session.uuid)
        self.model.phases[uuid] = session.phase
        self.model.promises[uuid] = Promise(
            offer_set=str(session.offer_set_uuid) if session.offer_set_uuid else None,
            expires=session.expires,
            book_start=session.schedule.prepare_start,
            book_end=session.schedule.release_end,
            available_start=session.schedule.available_start,
            available_seconds=session.schedule.available_duration.total_seconds(),
            amounts=(session.cores, session.memory_gib, session.storage_gib, session.interactive),
            earliest=expected.start,
        )
        self.starts[uuid] = session.schedule.available_start

    @staticmethod
    def check_offered(session: SessionRecord, expected: Expected, now: datetime) -> None:
        """The session keeps to the request: start in the interval, duration, amounts."""
        schedule = session.schedule
        assert expected.start <= schedule.available_start <= expected.end, (
            f"start {schedule.available_start} outside [{expected.start}, {expected.end}]"
        )
        assert schedule.prepare_start >= now, "the session books time in the past"
        assert schedule.available_duration == expected.duration
        assert expected.cores[0] <= session.cores <= expected.cores[1]
        assert expected.memory[0] <= session.memory_gib <= expected.memory[1]
        assert expected.storage[0] <= session.storage_gib <= expected.storage[1]
        assert session.interactive == expected.interactive
        assert session.owner == OWNER.name

    # ------------------------------------------------------------------ rules

    @rule(target=offers, shape=shapes())
    def request(self, shape: Shape) -> Any:
        now = self.clock.now()
        empty = self.nothing_booked_ahead(now)
        expected = shape.expect(now)
        offer_set = self.run(self.offer_service.request_offers(shape.document(now), caller=OWNER))
        if offer_set.result is OfferResult.NO:
            assert not offer_set.offers
            assert errors_with_paths(offer_set.messages), (
                f"NO without an error naming a field: {offer_set.messages}"
            )
            event("request: NO" if not expected.valid else "request: NO (no room)")
            assert not (expected.valid and expected.ample and empty), (
                "NO for a request whose minimum fits an empty calendar: "
                f"{[m.message for m in offer_set.messages]}"
            )
            return multiple()
        assert expected.valid, "YES for a request that asks for more than the pool"
        event(f"request: YES, {len(offer_set.offers)} offer(s)")
        offers = offer_set.offers
        assert 1 <= len(offers) <= MAX_OFFERS
        starts = [o.schedule.available_start for o in offers]
        assert starts == sorted(starts), f"offers not sorted by start: {starts}"
        assert [o.position for o in offers] == list(range(len(offers)))
        uuids = []
        for offer in offers:
            assert offer.phase is SessionPhase.OFFERED
            assert offer.offer_set_uuid == offer_set.uuid
            assert offer.expires == now + OFFER_TTL
            self.check_offered(offer, expected, now)
            self.remember(offer, expected)
            uuids.append(str(offer.uuid))
        self.model.members[str(offer_set.uuid)] = uuids
        return multiple(*(UUID(u) for u in uuids))

    @rule(target=accepted, shape=shapes())
    def direct(self, shape: Shape) -> Any:
        now = self.clock.now()
        empty = self.nothing_booked_ahead(now)
        expected = shape.expect(now)
        session, refusal = self.attempt(
            self.offer_service.execute_directly(shape.document(now), caller=OWNER),
            RequestRefusedError,
        )
        if refusal is not None:
            assert errors_with_paths(refusal.messages), refusal.messages
            event("direct: refused" if not expected.valid else "direct: refused (no room)")
            assert not (expected.valid and expected.ample and empty), (
                f"refused on an empty calendar: {refusal}"
            )
            return multiple()
        assert session is not None
        assert expected.valid, "a direct run for a request that asks for more than the pool"
        assert session.phase is SessionPhase.ACCEPTED
        assert session.offer_set_uuid is None
        assert session.expires is None
        event("direct: accepted")
        self.check_offered(session, expected, now)
        booked = (session.cores, session.memory_gib, session.storage_gib, session.interactive)
        assert booked == expected.minimum
        self.remember(session, expected)
        self.model.accept(str(session.uuid))
        return session.uuid

    @rule(target=accepted, offer=offers)
    def accept(self, offer: UUID) -> Any:
        now = self.clock.now()
        uuid = str(offer)
        before = self.phase_of(offer)
        expires = self.model.promises[uuid].expires
        live = before is SessionPhase.OFFERED and expires is not None and expires > now
        allowed = live or before in ACTIVE_SESSION_PHASES  # accepted already: nothing to do
        session, conflict = self.attempt(
            self.session_service.apply_update(offer, ACCEPT, caller=OWNER), ConflictError
        )
        if conflict is not None:
            event(f"accept: conflict ({before})")
            assert not allowed, f"accepting a {before} offer failed: {conflict}"
            if before is SessionPhase.OFFERED:  # expired, not yet marked: accepting marks it
                self.model.sweep(now)
            return multiple()
        assert session is not None
        event(f"accept: {before}")
        assert allowed, f"accepted an offer that was {before}"
        if not live:
            assert session.phase is before
            return multiple()
        assert session.phase is SessionPhase.ACCEPTED
        self.model.accept(uuid)
        return offer

    @rule(offer=offers)
    def accept_as_it_expires(self, offer: UUID) -> None:
        """An accept that looks at the clock a moment before its offer expires, and gets the
        pool's lock a moment after (FAULT-PROBES R1). A booking made in between found the
        offer expired and may hold its capacity now: the accept is refused."""
        uuid = str(offer)
        expires = self.model.promises[uuid].expires
        now = self.clock.now()
        if self.phase_of(offer) is not SessionPhase.OFFERED or expires is None or expires <= now:
            return
        self.clock.advance(expires - now - timedelta(milliseconds=1))
        self.clock.advance_after_next_read(timedelta(milliseconds=2))
        session, conflict = self.attempt(
            self.session_service.apply_update(offer, ACCEPT, caller=OWNER), ConflictError
        )
        assert conflict is not None, f"accepted an offer after it expired: {session}"
        assert "expired" in str(conflict.template), conflict
        event("accept: as it expires")
        self.model.sweep(self.clock.now())

    @rule(offer=offers)
    def reject(self, offer: UUID) -> None:
        uuid = str(offer)
        before = self.phase_of(offer)
        allowed = before in (SessionPhase.OFFERED, SessionPhase.REJECTED)
        session, conflict = self.attempt(
            self.session_service.apply_update(offer, REJECT, caller=OWNER), ConflictError
        )
        if conflict is not None:
            event(f"reject: conflict ({before})")
            assert not allowed, f"rejecting a {before} offer failed: {conflict}"
            return
        assert session is not None
        event(f"reject: {before}")
        assert allowed, f"rejected an offer that was {before}"
        assert session.phase is SessionPhase.REJECTED
        self.model.phases[uuid] = SessionPhase.REJECTED

    @rule(session=accepted)
    def cancel(self, session: UUID) -> None:
        uuid = str(session)
        before = self.phase_of(session)
        # A retried cancel of a session on its way out because of a cancel is no error.
        allowed = (
            before in ACTIVE_SESSION_PHASES
            or before is SessionPhase.CANCELLED
            or (before is SessionPhase.RELEASING and uuid in self.model.cancelled)
        )
        cancelled, conflict = self.attempt(
            self.session_service.apply_update(session, CANCEL, caller=OWNER), ConflictError
        )
        if conflict is not None:
            # Ending for another reason, COMPLETED or FAILED: too late to cancel.
            event(f"cancel: conflict ({before})")
            assert not allowed, f"cancelling a {before} session failed: {conflict}"
            return
        assert cancelled is not None
        event(f"cancel: {before}")
        assert allowed, f"cancelled a session that was {before}"
        # The user's decision is final at once; the booking holds until all is released.
        assert cancelled.phase is SessionPhase.CANCELLED
        self.model.cancelled.add(uuid)

    @rule(session=accepted, seconds=st.integers(1, 6 * 3600), exactly_the_limit=st.booleans())
    def extend(self, session: UUID, seconds: int, exactly_the_limit: bool) -> None:
        uuid = str(session)
        before = self.phase_of(session)
        update = {"kind": "uri:integer-delta-update", "path": "/schedule/available/duration"}
        if before not in ACTIVE_SESSION_PHASES:
            _, conflict = self.attempt(
                self.session_service.apply_update(
                    session, {**update, "delta": seconds}, caller=OWNER
                ),
                ConflictError,
            )
            assert conflict is not None, f"extended a {before} session"
            assert "limit" not in conflict.values
            event(f"extend: conflict ({before})")
            return
        now = self.clock.now()
        room = self.extension_room(uuid, now)
        advice = self.run(self.session_service.get_session(session, caller=OWNER))
        assert advice.extension_limit == timedelta(seconds=room), (
            f"the session says it can be extended by {advice.extension_limit}, "
            f"the calendar has room for {room} s"
        )
        if exactly_the_limit and room > 0:
            seconds = room
        extended, conflict = self.attempt(
            self.session_service.apply_update(session, {**update, "delta": seconds}, caller=OWNER),
            ConflictError,
        )
        if conflict is not None:
            assert "limit" in conflict.values, conflict
            limit = int(conflict.values["limit"])
            assert limit < seconds, f"refused {seconds} s with a limit of {limit} s"
            assert limit == room, f"refused with a limit of {limit} s; there is room for {room}"
            event("extend: refused" + (" (no room at all)" if room == 0 else ""))
            return
        assert extended is not None
        assert seconds <= room, f"extended by {seconds} s with room for only {room} s"
        event("extend: by exactly the limit" if seconds == room else "extend: extended")
        promise = self.model.promises[uuid]
        promise.extended += seconds
        assert extended.schedule.available_duration == timedelta(
            seconds=promise.available_seconds + promise.extended
        )

    @rule(seconds=st.integers(1, 600))
    def tick(self, seconds: int) -> None:
        """Time passes; the expiry timer and the lifecycle engine catch up with it."""
        self.clock.advance(timedelta(seconds=seconds))
        expired = self.run(self.context.expiry.expire_due_offers())
        swept = self.model.sweep(self.clock.now())
        assert {str(u) for u in expired} == swept
        for _ in range(ENGINE_PASSES):
            if not self.run(self.engine.run_once()):
                break
        else:
            return  # not caught up yet: the next tick goes on
        self.check_nothing_could_move(self.clock.now())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def calendar_holds_no_more_than_the_pool_and_sessions_keep_their_promises(self) -> None:
        now = self.clock.now()
        rows = self.rows()
        self.check_pool(rows, now)
        self.check_promises(rows, now)

    @staticmethod
    def check_pool(rows: list[Row], now: datetime) -> None:
        live = [r for r in rows if r.holds_at(now)]
        for moment in sorted({r.book_start for r in live} | {r.book_end for r in live}):
            held = held_at(live, moment)
            assert within_pool(held), (
                f"at {moment} the calendar holds {held} (cores, memory, storage, notebooks), "
                "more than "
                f"the pool {POOL}: "
                + "; ".join(
                    f"{r.uuid[:8]} {r.phase} set={(r.offer_set or '-')[:8]} "
                    f"[{r.book_start}, {r.book_end}) {r.amounts}"
                    for r in live
                    if r.book_start <= moment < r.book_end
                )
            )

    def check_promises(self, rows: list[Row], now: datetime) -> None:
        model = self.model
        assert {r.uuid for r in rows} == set(model.phases)
        for row in rows:
            if row.uuid not in model.accepted:
                assert row.phase is model.phases[row.uuid], (
                    f"session {row.uuid} is {row.phase}, expected {model.phases[row.uuid]}"
                )
            elif row.uuid in model.ended:
                assert row.phase is model.ended[row.uuid], f"{row.uuid} ended twice"
            else:
                assert row.phase in HOLDING or row.phase in ENDED, row.phase
                if row.uuid in model.cancelled:
                    assert row.phase not in ACTIVE_SESSION_PHASES, f"cancelled but {row.phase}"
                if row.phase in ENDED:
                    model.ended[row.uuid] = row.phase
            promise = model.promises[row.uuid]
            assert row.amounts == promise.amounts
            assert row.promised_start == promise.available_start
            # A promise is a promise: never later than accepted, never earlier than the
            # request allows, never later than it was a step ago (whoever came since).
            before = self.starts[row.uuid]
            assert row.available_start <= before, (
                f"{row.uuid} moved later, from {before} to {row.available_start}"
            )
            assert row.available_start <= promise.available_start
            assert row.available_start >= promise.earliest, (
                f"{row.uuid} starts at {row.available_start}, before its request allows "
                f"({promise.earliest})"
            )
            if row.available_start < before:
                event("moved earlier")
                assert row.moves_earlier, f"{row.uuid} moved though it may not"
                assert row.phase in ACTIVE_SESSION_PHASES or row.phase in ENDED
                # Moved just now: it has all its preparing time from now on.
                assert row.book_start >= now, (
                    f"{row.uuid} moved to book from {row.book_start}, before now ({now})"
                )
                self.starts[row.uuid] = row.available_start
            # It keeps its duration and its amounts, and moves as one.
            shift = row.available_start - promise.available_start
            assert row.book_start == promise.book_start + shift == row.prepare_start
            assert row.available_seconds == promise.available_seconds + promise.extended
            assert row.book_end == promise.book_end + shift + timedelta(seconds=promise.extended)
            assert row.book_end == row.available_start + timedelta(
                seconds=row.available_seconds + row.release_seconds
            )

    def check_nothing_could_move(self, now: datetime) -> None:
        """Once the engine has caught up: no waiting session that may move fits anywhere
        earlier, beside everything else booked (freed capacity was used at once; worked
        out from the rows, not by the planner).
        """
        rows = self.rows()
        live = [r for r in rows if r.holds_at(now)]
        for row in live:
            if not (
                row.moves_earlier
                and row.phase in (SessionPhase.ACCEPTED, SessionPhase.WAITING)
                and row.book_start > now
                and row.earliest_start is not None
            ):
                continue
            lead = row.available_start - row.book_start
            span = row.book_end - row.book_start
            floor = ceil_second(max(row.earliest_start, now + lead))
            others = [r for r in live if r.uuid != row.uuid]
            starts = {floor} | {ceil_second(r.book_end + lead) for r in others}
            for start in sorted(starts):
                if not floor <= start <= row.available_start - timedelta(seconds=1):
                    continue
                begin, end = start - lead, start - lead + span
                moments = {begin} | {r.book_start for r in others if begin < r.book_start < end}
                if all(
                    within_pool(plus(held_at(others, moment), row.amounts)) for moment in moments
                ):
                    raise AssertionError(
                        f"{row.uuid} waits to start at {row.available_start}, but fits from "
                        f"{start}: freed capacity left unused"
                    )


CalendarMachine.TestCase.settings = hypothesis.settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    derandomize=True,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCalendar = CalendarMachine.TestCase
