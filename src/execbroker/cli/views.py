"""How the command line shows offers and sessions (rich renderables, no I/O of their own).

Times are shown in UTC as the contract writes them, with a relative hint ("in 2m 5s",
"3s ago") where that helps; durations in the largest two units ("1h 2m").

What came from a user or a platform (names, messages, connector locations) is data, never
markup or terminal control: it reaches rich only as :class:`~rich.text.Text` (a ``str``
cell would be parsed as markup: a name ``[/]`` crashed ``status``, ``[link=…]`` made a
fake link), through :func:`_plain`, which escapes control characters (an ESC set the
window title, wrote the clipboard, cleared the screen).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from execbroker.client.offers import OfferSummary, available_window
from execbroker.client.reading import components, exit_code, waits_for
from execbroker.model.isotime import parse_duration, parse_instant, parse_interval
from execbroker.model.phases import (
    TERMINAL_SESSION_PHASES,
    ComponentPhase,
    SessionPhase,
)
from execbroker.model.printable import escape_controls
from execbroker.model.wire import (
    EnumValueOption,
    ExecutionSession,
    IntegerDeltaOption,
    LifecycleSchedule,
    MessageItem,
    OfferSetResponse,
)

__all__ = [
    "LogLine",
    "PhaseChange",
    "WatchView",
    "fit_text",
    "log_lines",
    "log_text",
    "offer_sets_table",
    "offers_table",
    "phase_changes",
    "phase_style",
    "raw_log_line",
    "session_status",
    "sessions_table",
    "span",
    "when",
]

_STYLES = {
    "OFFERED": "cyan",
    "ACCEPTED": "cyan",
    "INITIALIZING": "dim",
    "WAITING": "dim",
    "PREPARING": "yellow",
    "AVAILABLE": "green",
    "RUNNING": "bold green",
    "RELEASING": "yellow",
    "COMPLETED": "green",
    "FAILED": "bold red",
    "CANCELLED": "magenta",
    "REJECTED": "magenta",
    "EXPIRED": "magenta",
}
_LEVEL_STYLES = {"ERROR": "bold red", "WARN": "yellow", "DEBUG": "dim"}


def phase_style(phase: str) -> str:
    """The rich style a phase is shown in: green for a run going well, red for a failure."""
    return _STYLES.get(phase, "")


def _phase(phase: str) -> Text:
    return Text(phase, style=phase_style(phase))


def _plain(text: str, style: str = "") -> Text:
    """Untrusted text as rich shows it: no markup, control characters escaped."""
    return Text(escape_controls(text), style=style)


def span(delta: timedelta | None) -> str:
    """``1h 2m``, ``2m 5s``, ``45s``, ``0.4s``, ``2d 3h``: the largest two units."""
    if delta is None:
        return "—"
    seconds = delta.total_seconds()
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 10 and seconds != int(seconds):
        return f"{sign}{seconds:.1f}s"
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = parts[:2] if len(parts) > 1 and parts[1][0] else parts[:1]
    return sign + " ".join(f"{value}{unit}" for value, unit in shown)


def _instant(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def when(moment: datetime | None, now: datetime) -> str:
    """An instant with how far it is from ``now``: ``10:41:55Z (in 2m 5s)``, or with its
    date when that is not today's (UTC): ``2030-01-01T10:00:00Z (in 3y 2d)``.
    """
    if moment is None:
        return "—"
    delta = moment - now
    relative = f"in {span(delta)}" if delta.total_seconds() >= 0 else f"{span(-delta)} ago"
    text = _instant(moment)
    if moment.astimezone(UTC).date() == now.astimezone(UTC).date():
        text = text[11:]
    return f"{text} ({relative})"


# --------------------------------------------------------------------------- offers


def offers_table(offers: Sequence[OfferSummary], now: datetime) -> Table:
    """The offers side by side: start, duration, cores, memory, storage, cost, expiry."""
    table = Table(title="Offers", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("offer", no_wrap=True)
    table.add_column("start", no_wrap=True)
    for name in ("duration", "cores", "memory", "storage", "cost"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    for offer in offers:
        number = Text(str(offer.index))
        if offer.phase is not SessionPhase.OFFERED:
            number.append(f" {offer.phase.value}", style=phase_style(offer.phase.value))
        table.add_row(
            number,
            str(offer.uuid),
            when(offer.start, now),
            span(offer.duration),
            _amount(offer.cores, ""),
            _amount(offer.memory_gib, " GiB"),
            _amount(offer.storage_gib, " GiB"),
            f"{offer.cost:g}" if offer.cost is not None else "—",
            when(offer.expires, now),
        )
    return table


def fit_text(message: MessageItem) -> str:
    """One piece of the broker's advice on a refused request, as a line: what would fit,
    then the request field it changes.
    """
    text = message.message or message.template or ""
    path = (message.values or {}).get("path")
    if path and text.startswith(f"{path}: "):
        return f"{text[len(path) + 2 :]}  [{path}]"
    return text


def _amount(value: int | None, unit: str) -> str:
    return "—" if value is None else f"{value}{unit}"


def _messages(messages: Iterable[MessageItem] | None) -> list[str]:
    return [m.message or m.template or "" for m in messages or []]


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class _Step:
    name: str
    start: datetime | None
    duration: timedelta | None

    @property
    def end(self) -> datetime | None:
        if self.start is None or self.duration is None:
            return None
        return self.start + self.duration


def _steps(schedule: LifecycleSchedule | None) -> dict[str, _Step]:
    """The preparing, available and releasing steps of a schedule, parsed where possible."""
    steps: dict[str, _Step] = {}
    if schedule is None:
        return steps
    for name in ("preparing", "available", "releasing"):
        timed = getattr(schedule, name)
        if timed is None:
            continue
        start: datetime | None = None
        duration: timedelta | None = None
        try:
            if timed.start:
                start = (
                    parse_interval(timed.start).start
                    if "/" in timed.start
                    else parse_instant(timed.start)
                )
            if timed.duration:
                duration = parse_duration(timed.duration)
        except ValueError:
            pass
        steps[name] = _Step(name, start, duration)
    return steps


def _name(role: str, component: Any) -> str:
    meta = getattr(component, "meta", None)
    return (meta.name if meta is not None and meta.name else None) or role


def _uuid(thing: Any) -> str:
    meta = getattr(thing, "meta", None)
    return str(meta.uuid) if meta is not None and meta.uuid else "?"


def _schedule_table(schedule: LifecycleSchedule | None, now: datetime) -> Table:
    table = Table(title="Schedule", title_justify="left")
    table.add_column("step")
    table.add_column("start", no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("end", no_wrap=True)
    for step in _steps(schedule).values():
        table.add_row(step.name, when(step.start, now), span(step.duration), when(step.end, now))
    return table


def _components_table(session: ExecutionSession) -> Table:
    table = Table(title="Components", title_justify="left")
    table.add_column("role")
    table.add_column("name")
    table.add_column("phase")
    table.add_column("preparing", no_wrap=True)
    table.add_column("available", no_wrap=True)
    table.add_column("releasing", no_wrap=True)
    for role, component in components(session):
        steps = _steps(getattr(component, "schedule", None))
        cells = []
        for name in ("preparing", "available", "releasing"):
            step = steps.get(name)
            cells.append(
                "—" if step is None else f"{_instant(step.start)[11:]} +{span(step.duration)}"
            )
        phase = getattr(component, "phase", None)
        table.add_row(
            role, _plain(_name(role, component)), _phase(phase.value if phase else "—"), *cells
        )
    return table


def _connectors_table(session: ExecutionSession) -> Table:
    table = Table(title="Connectors", title_justify="left")
    table.add_column("status")
    table.add_column("protocol")
    table.add_column("location", overflow="fold")
    for connector in session.connectors:
        status = connector.status.value if connector.status else "—"
        table.add_row(
            _phase(status) if status != "FINISHED" else Text(status, style="dim"),
            _plain(connector.protocol or "—"),
            _plain(connector.location or "(hidden)"),
        )
    return table


def _options(session: ExecutionSession) -> str | None:
    """What the caller may change now, from ``meta.options``."""
    said: list[str] = []
    for option in session.meta.options or [] if session.meta else []:
        if isinstance(option, EnumValueOption) and option.path == "/phase":
            said.append("phase → " + " | ".join(option.values))
        elif isinstance(option, IntegerDeltaOption) and option.path.endswith("/duration"):
            units = option.units or "seconds"
            said.append(f"extend by {option.min or 1}…{option.max} {units}")
    return "; ".join(said) if said else None


def session_status(session: ExecutionSession, now: datetime) -> Group:
    """The whole session: phase, schedule, components, connectors, options, messages."""
    header = Text.assemble(
        ("Session ", "bold"),
        (_uuid(session), "bold"),
        "  ",
        _phase(session.phase.value),
    )
    parts: list[RenderableType] = [header]
    meta = session.meta
    if meta is not None and meta.created is not None:
        parts.append(Text(f"created {when(meta.created, now)}", style="dim"))
    if session.expires is not None and session.phase is SessionPhase.OFFERED:
        parts.append(Text(f"offer expires {when(session.expires, now)}"))
    parts.extend(_waiting(session, now))
    code = exit_code(session)
    if code is not None:
        parts.append(Text(f"exit code {code}", style="bold red" if code else "green"))
    parts.append(_schedule_table(session.schedule, now))
    if components(session):
        parts.append(_components_table(session))
    if session.connectors:
        parts.append(_connectors_table(session))
    options = _options(session)
    if options:
        parts.append(_plain(f"you may change: {options}"))
    texts = _messages(meta.messages if meta else None)
    if texts:
        parts.append(Text("Messages", style="italic"))
        parts.extend(
            _plain(f"  {line.when_text}  {line.level:<5}  {line.text}", style=line.style)
            for line in log_lines(session)
            if line.source == "session"
        )
    return Group(*parts)


_NOT_STARTED = {SessionPhase.OFFERED, SessionPhase.ACCEPTED, SessionPhase.WAITING}


def _waiting(session: ExecutionSession, now: datetime) -> list[RenderableType]:
    """What a session not yet started waits for: its start, and why not earlier (the
    resource it waits for and who holds it), as the broker worked it out when it planned.
    """
    if session.phase not in _NOT_STARTED:
        return []
    available = _steps(session.schedule).get("available")
    start = available.start if available is not None else None
    lines: list[RenderableType] = []
    if start is not None:
        lines.append(Text(f"waits for its start at {when(start, now)}", style="bold"))
    why = _why_not_earlier(session)
    if why is not None:
        lines.append(why)
    return lines


def _why_not_earlier(session: ExecutionSession) -> Text | None:
    """The broker's reason the session starts later than its request allowed, if any."""
    why = waits_for(session) if session.phase in _NOT_STARTED else None
    if why is None:
        return None
    text = why.message or why.template or ""
    reason = text.split(": ", 1)[1] if ": " in text else text
    return _plain(f"why not earlier: {reason}", style="yellow")


def sessions_table(sessions: Sequence[ExecutionSession], now: datetime) -> Table:
    """The ``execbroker ls`` table of ``sessions``: phase, created, start and duration, times
    relative to ``now``.
    """
    table = Table(title=f"Sessions ({len(sessions)})", title_justify="left")
    table.add_column("session", no_wrap=True)
    table.add_column("phase")
    table.add_column("created", no_wrap=True)
    table.add_column("start", no_wrap=True)
    table.add_column("duration", justify="right")
    for session in sessions:
        start, duration = available_window(session.schedule)
        created = session.meta.created if session.meta else None
        table.add_row(
            _uuid(session),
            _phase(session.phase.value),
            when(created, now),
            when(start, now),
            span(duration),
        )
    return table


def offer_sets_table(offer_sets: Sequence[OfferSetResponse], now: datetime) -> Table:
    """The ``execbroker ls --offer-sets`` table: each offer set's result and when it was made,
    relative to ``now``.
    """
    table = Table(title=f"Offer sets ({len(offer_sets)})", title_justify="left")
    table.add_column("offer set", no_wrap=True)
    table.add_column("result")
    table.add_column("created", no_wrap=True)
    for offer_set in offer_sets:
        created = offer_set.meta.created if offer_set.meta else None
        result = offer_set.result.value
        table.add_row(
            _uuid(offer_set),
            Text(result, style="green" if result == "YES" else "red"),
            when(created, now),
        )
    return table


# --------------------------------------------------------------------------- logs


@dataclass(frozen=True)
class LogLine:
    """One message of a session or a component, for ``logs``."""

    time: datetime | None
    source: str
    level: str
    text: str

    @property
    def when_text(self) -> str:
        if self.time is None:
            return " " * 24
        return self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    @property
    def style(self) -> str:
        return _LEVEL_STYLES.get(self.level, "")

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.when_text, self.source, self.level, self.text)


def log_lines(session: ExecutionSession) -> list[LogLine]:
    """The session's and its components' messages, oldest first (undated ones last)."""
    lines: list[LogLine] = []
    sources: list[tuple[str, Any]] = [("session", session)]
    sources += [(f"{role} {_name(role, c)}", c) for role, c in components(session)]
    for source, thing in sources:
        meta = getattr(thing, "meta", None)
        for message in (meta.messages if meta is not None else None) or []:
            lines.append(
                LogLine(
                    time=message.time,
                    source=source,
                    level=message.level.value if message.level else "",
                    text=message.message or message.template or "",
                )
            )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(lines, key=lambda line: line.time or far)  # stable: ties keep source order


def log_text(line: LogLine, *, source_width: int = 24) -> Text:
    """The line for a terminal: its source and text escaped (:func:`_plain`)."""
    return Text.assemble(
        (line.when_text, "dim"),
        "  ",
        (f"{line.level:<5}", line.style),
        "  ",
        (f"{escape_controls(line.source):<{source_width}}", "cyan"),
        "  ",
        (escape_controls(line.text), line.style),
    )


def raw_log_line(line: LogLine, *, source_width: int = 24) -> str:
    """The line as the broker stored it, control characters and all (``logs --raw``)."""
    return f"{line.when_text}  {line.level:<5}  {line.source:<{source_width}}  {line.text}"


# --------------------------------------------------------------------------- watching


@dataclass(frozen=True)
class PhaseChange:
    """A phase seen to change between two readings of a session."""

    source: str  # escaped: shown as it is
    before: str | None
    after: str


def _phases(session: ExecutionSession) -> dict[str, str]:
    found = {"session": session.phase.value}
    for role, component in components(session):
        phase = getattr(component, "phase", None)
        if phase is not None:
            found[escape_controls(f"{role} {_name(role, component)}")] = phase.value
    return found


def phase_changes(before: ExecutionSession | None, after: ExecutionSession) -> list[PhaseChange]:
    """Every phase (session's, components') that differs between two readings."""
    old = _phases(before) if before is not None else {}
    return [
        PhaseChange(source, old.get(source), phase)
        for source, phase in _phases(after).items()
        if old.get(source) != phase
    ]


_STEP_OF = {
    "PREPARING": "preparing",
    "AVAILABLE": "available",
    "RUNNING": "available",
    "RELEASING": "releasing",
}


def _remaining(steps: dict[str, _Step], phase: str, now: datetime, entered: datetime | None) -> str:
    """How long the current phase has left. Available and running: until the offered time
    runs out (a deadline). Preparing and releasing: the planned duration of the step from
    when it began, which is often not when it was planned (a run that ends early releases
    early). Waiting: how long until preparing starts.
    """
    name = _STEP_OF.get(phase)
    if name is None:
        preparing = steps.get("preparing")
        if preparing is not None and preparing.start is not None and preparing.start > now:
            return f"starts in {span(preparing.start - now)}"
        return "—"
    step = steps.get(name)
    if step is None:
        return "—"
    end = step.end
    if name != "available" and entered is not None and step.duration is not None:
        end = entered + step.duration
    if end is None:
        return "—"
    left = end - now
    return f"{span(left)} left" if left.total_seconds() >= 0 else f"{span(-left)} over"


def _modified(thing: Any) -> datetime | None:
    meta = getattr(thing, "meta", None)
    return meta.modified if meta is not None else None


class WatchView:
    """The live view of ``watch``: each component's phase, how long it has been in it, and
    how much of its scheduled step is left. Rendered afresh at every refresh, so the times
    move between updates.
    """

    def __init__(self, session: ExecutionSession) -> None:
        self._session = session
        # When the session entered its phase: first as its meta.modified says, then as seen.
        self._entered: datetime | None = _modified(session)

    @property
    def session(self) -> ExecutionSession:
        return self._session

    @session.setter
    def session(self, session: ExecutionSession) -> None:
        if session.phase is not self._session.phase:
            self._entered = datetime.now(UTC)
        self._session = session

    def __rich__(self) -> RenderableType:
        now = datetime.now(UTC)
        session = self.session
        ended = session.phase in TERMINAL_SESSION_PHASES
        table = Table(
            title=Text.assemble(
                ("Session ", "bold"), (_uuid(session), "bold"), "  ", _phase(session.phase.value)
            ),
            title_justify="left",
        )
        table.add_column("component")
        table.add_column("phase")
        table.add_column("in phase", justify="right")
        table.add_column("remaining", justify="right")
        # The session's own row: only deadlines and start times (its meta.modified moves
        # with any component, so it says nothing of when its phase began).
        session_left = "—"
        if not ended and session.phase not in {SessionPhase.PREPARING, SessionPhase.RELEASING}:
            session_left = _remaining(_steps(session.schedule), session.phase.value, now, None)
        since = span(max(now - self._entered, timedelta(0))) if self._entered else "—"
        table.add_row("session", _phase(session.phase.value), since, session_left)
        for role, component in components(session):
            phase: ComponentPhase | None = getattr(component, "phase", None)
            if phase is None:
                continue
            steps = _steps(getattr(component, "schedule", None))
            done = phase in {
                ComponentPhase.COMPLETED,
                ComponentPhase.FAILED,
                ComponentPhase.CANCELLED,
            }
            table.add_row(
                _plain(f"{role} {_name(role, component)}"),
                _phase(phase.value),
                "—" if done else self._in_phase(component, now),
                "—" if done else _remaining(steps, phase.value, now, _modified(component)),
            )
        why = _why_not_earlier(session)
        return table if why is None else Group(table, why)

    @staticmethod
    def _in_phase(thing: Any, now: datetime) -> str:
        """Time since the thing last changed (``meta.modified``), which a phase change is."""
        modified = _modified(thing)
        if modified is None:
            return "—"
        return span(max(now - modified, timedelta(0)))
