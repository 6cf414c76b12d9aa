"""Reading a session document: its components, and the executable's exit code."""

from __future__ import annotations

import re
from typing import Any

from execbroker.model.wire import ExecutionSession

__all__ = ["components", "exit_code"]


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
