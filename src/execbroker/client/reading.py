"""Reading a session document: its components, the executable's exit code, why it waits;
and what would fit a request the broker refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from execbroker.model.wire import ExecutionSession, MessageItem

__all__ = ["components", "exit_code", "waits_for", "would_fit"]


def components(session: ExecutionSession) -> list[tuple[str, Any]]:
    """Every component of a session with its role, in the order a person reads them."""
    found: list[tuple[str, Any]] = []
    if session.executable is not None:
        found.append(("executable", session.executable))
    if session.compute is not None:
        found.append(("compute", session.compute))
        found.extend(("volume", volume) for volume in session.compute.volumes or [])
    found.extend(("storage", storage) for storage in session.storage or [])
    found.extend(("data", data) for data in session.data or [])
    return found


_EXIT = re.compile(r"exit(?:ed with)? code (-?\d+)", re.IGNORECASE)


def exit_code(session: ExecutionSession) -> int | None:
    """The executable's exit code, when the broker's messages say it (not a contract field:
    read from messages such as "The executable exited with code 1").
    """
    found: int | None = None
    sources = [session, session.compute, session.executable]
    for source in sources:
        meta = getattr(source, "meta", None) if source is not None else None
        for message in (meta.messages if meta is not None else None) or []:
            code = (message.values or {}).get("code")
            match = _EXIT.search(message.message or "")
            if match:
                found = int(match.group(1))
            elif code is not None and "exit" in (message.template or "").lower():
                try:
                    found = int(code)
                except ValueError:
                    continue
        if found is not None:
            return found
    return found


def would_fit(messages: Sequence[MessageItem] | None) -> list[MessageItem]:
    """The broker's advice on a ``NO``: each change that would fit on its own, its number in
    ``values`` under the name ``values["change"]`` gives (``cores``, ``memory``, ``storage``,
    ``duration``, ``start``), or ``change: none`` when no one change fits.
    """
    return [m for m in messages or [] if "change" in (m.values or {})]


def waits_for(session: ExecutionSession) -> MessageItem | None:
    """Why a session starts later than its request allowed: the broker's message naming the
    ``binding`` resource, while it still speaks of the session's start (a session moved
    earlier since has a start of its own, and a message saying so). None otherwise.
    """
    meta = session.meta
    available = session.schedule.available if session.schedule is not None else None
    start = available.start.split("/", 1)[0] if available and available.start else None
    for message in reversed((meta.messages if meta is not None else None) or []):
        values = message.values or {}
        if "binding" in values:
            return message if values.get("start") == start else None
    return None
