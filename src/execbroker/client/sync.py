"""The blocking client: :class:`BrokerClient`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from execbroker.client import protocol
from execbroker.client.base import ClientBase, describe_transport_error
from execbroker.client.errors import BrokerUnreachableError
from execbroker.client.protocol import Call, Operation, Pause, PhaseEvent, RequestSource, SessionRef
from execbroker.model.phases import TERMINAL_SESSION_PHASES, SessionPhase
from execbroker.model.wire import ExecutionSession, OfferSetResponse

__all__ = ["BrokerClient"]

T = TypeVar("T")


class BrokerClient(ClientBase):
    """A blocking client of an ExecutionBroker (v1.0 contract).

    ``url`` and ``token`` default to ``EXECBROKER_URL`` and ``EXECBROKER_TOKEN``, then (for a
    broker on this machine) to the local tokens file. Use it as a context manager, or call
    :meth:`close`. ``http`` lets a caller bring its own :class:`httpx.Client` (it is then
    not closed here, and ``url``/``token`` are not applied to it).

    ::

        with BrokerClient() as broker:
            offers = broker.request_offers("notebook-request.yaml")
            session = broker.accept(best_offer(offers))
            session = broker.wait(session)          # until it has ended
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(url, token, timeout=timeout)
        self._own_http = http is None
        self._http = http or httpx.Client(**self._http_options())

    # --- plumbing ---------------------------------------------------------------------

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, call: Call) -> httpx.Response:
        try:
            return self._http.request(
                call.method,
                call.path,
                params=call.params or None,
                content=call.body,
                headers=call.headers,
                timeout=self._timeout_for(call),
            )
        except httpx.TransportError as failure:
            raise BrokerUnreachableError(self.url, describe_transport_error(failure)) from failure

    def _run(self, operation: Operation[T]) -> T:
        received: httpx.Response | None = None
        try:
            while True:
                step = operation.send(received)
                if isinstance(step, Pause):
                    time.sleep(step.seconds)
                    received = None
                else:
                    received = self._send(step)
        except StopIteration as done:
            result: T = done.value
            return result

    # --- offers -----------------------------------------------------------------------

    def request_offers(self, request: RequestSource) -> OfferSetResponse:
        """Ask for offers (``POST /requests``). ``request`` is a mapping, an
        ``ExecutionRequest`` or a YAML/JSON file path. :class:`NoOffersError` on ``NO``.
        """
        return self._run(protocol.request_offers(request))

    def execute(self, request: RequestSource) -> ExecutionSession:
        """Run at once, without offers (``POST /direct``): the new session."""
        return self._run(protocol.execute(request))

    def offer_set(self, uuid: SessionRef) -> OfferSetResponse:
        """An offer set with its offers as they are now."""
        return self._run(protocol.get_offer_set(protocol.session_uuid(uuid)))

    def offer_sets(
        self, *, after: datetime | None = None, last: int | None = None
    ) -> list[OfferSetResponse]:
        """The caller's offer sets, newest first, without their offers."""
        return self._run(protocol.list_offer_sets(after=after, last=last))

    # --- sessions ---------------------------------------------------------------------

    def session(self, session: SessionRef) -> ExecutionSession:
        """A session (or offer) as it is now."""
        return self._run(protocol.get_session(protocol.session_uuid(session)))

    def sessions(
        self,
        *,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        after: datetime | None = None,
        last: int | None = None,
    ) -> list[ExecutionSession]:
        """The caller's sessions, newest first, as summaries; only those in ``phase``
        (one or several) when given.
        """
        return self._run(protocol.list_sessions(phases=self._phases(phase), after=after, last=last))

    def update(
        self, session: SessionRef, update: BaseModel | Mapping[str, Any]
    ) -> ExecutionSession:
        """Apply one update document (``POST /sessions/{uuid}``)."""
        return self._run(protocol.update_session(protocol.session_uuid(session), update))

    def accept(self, offer: SessionRef) -> ExecutionSession:
        """Accept an offer: its siblings are rejected, and it starts on schedule."""
        return self.update(offer, self.phase_update(SessionPhase.ACCEPTED))

    def reject(self, offer: SessionRef) -> ExecutionSession:
        """Reject an offer, releasing what it holds."""
        return self.update(offer, self.phase_update(SessionPhase.REJECTED))

    def cancel(self, session: SessionRef) -> ExecutionSession:
        """Cancel an accepted session; it is released and ends CANCELLED."""
        return self.update(session, self.phase_update(SessionPhase.CANCELLED))

    def extend(self, session: SessionRef, seconds: int) -> ExecutionSession:
        """Make the session's available time ``seconds`` longer (within its option's max)."""
        return self.update(session, self.extension(seconds))

    def wait(
        self,
        session: SessionRef,
        phase: SessionPhase | str | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecutionSession:
        """The session once it is in ``phase``, has gone past it, or has ended; with no
        ``phase``, once it has ended. Blocks on the broker's long-poll, not a sleep loop.
        :class:`WaitTimeoutError` after ``timeout`` seconds. Check ``.phase`` of the result:
        a wait for RUNNING ends early if the session FAILED.
        """
        wanted = SessionPhase(phase) if phase is not None else None
        return self._run(protocol.wait(protocol.session_uuid(session), wanted, timeout=timeout))

    def follow(self, session: SessionRef) -> Iterator[ExecutionSession]:
        """The session now, and again each time its phase changes, until it has ended
        (long-poll; works with any broker that serves ``?wait=``, and paces otherwise).
        """
        uuid = protocol.session_uuid(session)
        current = self.session(uuid)
        yield current
        while current.phase not in TERMINAL_SESSION_PHASES:
            found = self._run(protocol.poll_change(uuid, current.phase, protocol.LONGEST_POLL))
            if found.phase is not current.phase:
                yield found
            current = found

    def events(self, session: SessionRef) -> Iterator[PhaseEvent]:
        """The session's phase events (``GET /sessions/{uuid}/events``, Server-Sent Events:
        session and component phases) until it has ended.
        """
        call = protocol.events_call(protocol.session_uuid(session))
        decoder = protocol.EventDecoder()
        try:
            with self._http.stream(
                call.method, call.path, timeout=self._timeout_for(call)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                protocol.check(response)
                for line in response.iter_lines():
                    found = decoder.feed(line)
                    if found is None or found[0] != "phase":
                        continue
                    event = protocol.phase_event(found[1])
                    yield event
                    if event.ended:
                        return
        except httpx.TransportError as failure:
            raise BrokerUnreachableError(self.url, describe_transport_error(failure)) from failure
