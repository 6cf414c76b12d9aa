"""The client commands: ask a broker for offers, accept one, follow and change sessions.

They talk to the broker at ``--url`` / ``EXECBROKER_URL`` (default http://127.0.0.1:8080)
with ``--token`` / ``EXECBROKER_TOKEN``, or, for a broker on this machine, the local user's
token from the tokens file the broker wrote on its first start. Their exit codes tell
scripts what happened (:data:`~execbroker.cli.common.EXIT_CODES`).
"""

from __future__ import annotations

import json
import sys
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.text import Text

from execbroker.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    Target,
    console,
    fail,
    stdout,
)
from execbroker.cli.views import (
    WatchView,
    fit_text,
    log_lines,
    log_text,
    offer_sets_table,
    offers_table,
    phase_changes,
    phase_style,
    raw_log_line,
    session_status,
    sessions_table,
    span,
    when,
)
from execbroker.client import (
    BrokerClient,
    BrokerError,
    BrokerUnreachableError,
    NoOffersError,
    RefusedError,
    UnauthorizedError,
    pick_offer,
    resolve_connection,
    summarise_offers,
)
from execbroker.client.offers import available_window
from execbroker.client.protocol import RequestSource
from execbroker.client.reading import exit_code, would_fit
from execbroker.model.phases import (
    ACTIVE_SESSION_PHASES,
    TERMINAL_SESSION_PHASES,
    SessionPhase,
)
from execbroker.model.wire import ExecutionSession, dump

__all__ = [
    "accept",
    "cancel",
    "dashboard",
    "extend",
    "list_sessions",
    "logs",
    "reject",
    "request",
    "status",
    "watch",
]

_ENDINGS = {
    SessionPhase.COMPLETED: EXIT_OK,
    SessionPhase.FAILED: EXIT_FAILED,
    SessionPhase.CANCELLED: EXIT_CANCELLED,
    SessionPhase.REJECTED: EXIT_CANCELLED,
    SessionPhase.EXPIRED: EXIT_CANCELLED,
}


def dashboard(
    ctx: typer.Context,
    *,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open the link in this machine's web browser.")
    ] = False,
) -> None:
    """Print a link that opens the dashboard signed in (the token in the link's fragment).

    The part after ``#`` never leaves the browser: the page moves the token into the tab's
    session storage and removes it from the address. The link is as secret as the token.
    """
    target = ctx.find_object(Target) or Target(None, None)
    connection = resolve_connection(target.url, target.token)
    if connection.withheld is not None:
        fail(f"no link printed: {connection.withheld}", EXIT_ERROR)
    if connection.token is None:
        fail(
            f"no token for {connection.url}: give --token or EXECBROKER_TOKEN, or for a broker "
            "on this machine start it once (make run) to create its tokens file",
            EXIT_ERROR,
        )
    link = f"{connection.url}/ui/#token={quote(connection.token, safe='')}"
    typer.echo(link)
    if open_browser and not webbrowser.open(link):
        fail("no web browser could be started here: open the link above", EXIT_ERROR)


def _client(ctx: typer.Context) -> BrokerClient:
    target = ctx.find_object(Target) or Target(None, None)
    return BrokerClient(target.url, target.token)


@contextmanager
def _outcome(ctx: typer.Context) -> Iterator[None]:
    """Turn what the client raises into a message on standard error and an exit code."""
    try:
        yield
    except BrokerUnreachableError as failure:
        fail(failure.summary, EXIT_UNREACHABLE, lines=["Is the broker running? (make run)"])
    except NoOffersError as failure:
        advice = would_fit(failure.messages)
        reasons = [m.message or m.template or "" for m in failure.messages if m not in advice]
        fail(failure.summary, EXIT_REFUSED, lines=reasons, fits=[fit_text(m) for m in advice])
    except UnauthorizedError as failure:
        target = ctx.find_object(Target) or Target(None, None)
        sent = resolve_connection(target.url, target.token)
        if sent.withheld is not None:
            hint = sent.withheld[:1].upper() + sent.withheld[1:] + "."
        elif target.token:
            hint = "The token from --token or EXECBROKER_TOKEN was refused."
        elif sent.token is not None:
            hint = f"The local token from {sent.token_source} was refused."
        else:
            hint = (
                "Give a token with --token or EXECBROKER_TOKEN (for a local broker, "
                "`execbroker token` prints it)."
            )
        fail(f"{failure.status} {failure.error}", EXIT_REFUSED, lines=[*_texts(failure), hint])
    except RefusedError as failure:
        fail(f"{failure.status} {failure.error}", EXIT_REFUSED, lines=_texts(failure))
    except BrokerError as failure:
        fail(failure.summary, EXIT_ERROR, lines=_texts(failure))
    except (ValueError, OSError) as failure:
        fail(str(failure), EXIT_ERROR)


def _texts(failure: BrokerError) -> list[str]:
    return [m.message or m.template or "" for m in failure.messages]


def _now() -> datetime:
    return datetime.now(UTC)


def _load(file: Path) -> RequestSource:
    """The request in ``file``; ``-`` reads standard input."""
    if str(file) != "-":
        return file
    document = yaml.safe_load(sys.stdin.read())
    if not isinstance(document, dict):
        raise ValueError("standard input must hold one execution request (a mapping)")  # noqa: TRY004
    return document


_UUID_HELP = "The session's (or offer's) UUID."


def request(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The execution request, YAML or JSON ('-': standard input).")
    ],
    *,
    accept: Annotated[
        str | None,
        typer.Option(metavar="best|N", help="Accept the best offer, or offer number N."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="With --accept: follow the session to its end (exit code as watch)."
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print only the accepted session's UUID (without --accept: the offers' UUIDs).",
        ),
    ] = False,
) -> None:
    """Ask for offers and show them side by side; optionally accept one."""
    if accept is not None and accept.strip().lower() != "best" and not accept.strip().isdigit():
        raise typer.BadParameter("write 'best' or an offer's number", param_hint="--accept")
    if watch and accept is None:
        raise typer.BadParameter("--watch needs --accept", param_hint="--watch")
    out = stdout()
    with _outcome(ctx), _client(ctx) as client:
        offer_set = client.request_offers(_load(file))
        offers = summarise_offers(offer_set)
        if not quiet:
            out.print(offers_table(offers, _now()))
        if accept is None:
            if quiet:
                for offer in offers:
                    out.print(str(offer.uuid))
            else:
                out.print(
                    Text("Accept one with: execbroker accept <offer>", style="dim"),
                )
            return
        chosen = pick_offer(offers, accept)
        session = client.accept(chosen)
        if quiet:
            out.print(str(chosen.uuid))
        else:
            out.print(
                Text.assemble(
                    f"Accepted offer {chosen.index} ({chosen.uuid}): session ",
                    (session.phase.value, phase_style(session.phase.value)),
                )
            )
        if watch:
            raise typer.Exit(_watch(client, chosen.uuid, out, quiet=quiet))


def _update_line(session: ExecutionSession) -> Text:
    uuid = session.meta.uuid if session.meta else "?"
    return Text.assemble(
        f"Session {uuid}: ", (session.phase.value, phase_style(session.phase.value))
    )


def accept(
    ctx: typer.Context, offer: Annotated[UUID, typer.Argument(help="The offer's UUID.")]
) -> None:
    """Accept an offer; the other offers of its set are rejected."""
    with _outcome(ctx), _client(ctx) as client:
        stdout().print(_update_line(client.accept(offer)))


def reject(
    ctx: typer.Context, offer: Annotated[UUID, typer.Argument(help="The offer's UUID.")]
) -> None:
    """Reject an offer, releasing what it holds."""
    with _outcome(ctx), _client(ctx) as client:
        stdout().print(_update_line(client.reject(offer)))


def cancel(ctx: typer.Context, session: Annotated[UUID, typer.Argument(help=_UUID_HELP)]) -> None:
    """Cancel a session: it is released and ends CANCELLED."""
    with _outcome(ctx), _client(ctx) as client:
        stdout().print(_update_line(client.cancel(session)))


def extend(
    ctx: typer.Context,
    session: Annotated[UUID, typer.Argument(help=_UUID_HELP)],
    seconds: Annotated[int, typer.Argument(min=1, help="How many seconds longer it may run.")],
) -> None:
    """Give a session more time: its available duration grows by SECONDS."""
    with _outcome(ctx), _client(ctx) as client:
        extended = client.extend(session, seconds)
        start, duration = available_window(extended.schedule)
        end = start + duration if start and duration else None
        line = _update_line(extended)
        line.append(f"; runs {span(duration)}, until {when(end, _now())}")
        stdout().print(line)


def status(
    ctx: typer.Context,
    session: Annotated[UUID, typer.Argument(help=_UUID_HELP)],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the session document.")] = False,
) -> None:
    """A session: its phase, schedule, components, connectors and messages."""
    out = stdout()
    with _outcome(ctx), _client(ctx) as client:
        found = client.session(session)
        if as_json:
            typer.echo(json.dumps(dump(found), indent=2))
        else:
            out.print(session_status(found, _now()))


def _updates(client: BrokerClient, uuid: UUID) -> Iterator[ExecutionSession]:
    """The session now, and again at every phase change (its own or a component's) until it
    has ended: from the event stream, or — for a broker without one — the long-poll.
    """
    session = client.session(uuid)
    yield session
    while session.phase not in TERMINAL_SESSION_PHASES:
        try:
            for _event in client.events(uuid):
                session = client.session(uuid)
                yield session
        except RefusedError as failure:
            if failure.status not in (404, 405):
                raise
            # The session exists (it was read above): this broker has no event stream.
            yield from client.follow(uuid)
            return
        # The stream ended (the session ended, or the connection was closed): read again.
        session = client.session(uuid)
        yield session


def _watch(client: BrokerClient, uuid: UUID, out: Console, *, quiet: bool = False) -> int:
    """Follow a session to its end, live on a terminal and one line per change elsewhere;
    the exit code its ending stands for.
    """
    updates = _updates(client, uuid)
    last = next(updates)
    if out.is_terminal and not quiet:
        view = WatchView(last)
        with Live(view, console=out, refresh_per_second=4):
            for session in updates:
                view.session = last = session
    else:
        previous: ExecutionSession | None = None
        for session in [last, *updates]:
            for change in [] if quiet else phase_changes(previous, session):
                before = f"{change.before} → " if change.before else ""
                out.print(
                    Text.assemble(
                        (_now().strftime("%H:%M:%S "), "dim"),
                        f"{change.source:<28} {before}",
                        (change.after, phase_style(change.after)),
                    )
                )
            previous = last = session
        if not quiet:
            out.print(WatchView(last))
    code = exit_code(last)
    ending = Text.assemble(
        f"Session {uuid} ended ", (last.phase.value, phase_style(last.phase.value))
    )
    if code is not None:
        ending.append(f" (exit code {code})")
    (console if quiet else out).print(ending)
    return _ENDINGS.get(last.phase, EXIT_ERROR)


def watch(ctx: typer.Context, session: Annotated[UUID, typer.Argument(help=_UUID_HELP)]) -> None:
    """Follow a session live until it ends; the exit code says how it ended.

    Shows each component's phase, how long it has been in it and how much of its scheduled
    step is left (one line per change when the output is not a terminal), then the final
    phase and the executable's exit code where the broker reports one. Exit code 0:
    COMPLETED, 3: FAILED, 4: CANCELLED (or REJECTED, EXPIRED).
    """
    out = stdout()
    with _outcome(ctx), _client(ctx) as client:
        code = _watch(client, session, out)
    raise typer.Exit(code)


_PHASE_HELP = "Only sessions in this phase (repeat for several)."


def list_sessions(
    ctx: typer.Context,
    *,
    phase: Annotated[
        list[SessionPhase] | None,
        typer.Option("--phase", "-p", case_sensitive=False, help=_PHASE_HELP),
    ] = None,
    active: Annotated[
        bool, typer.Option("--active", help="Only accepted sessions that have not ended.")
    ] = False,
    ended: Annotated[
        bool, typer.Option("--ended", help="Only sessions that ran and ended.")
    ] = False,
    last: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    offer_sets: Annotated[
        bool, typer.Option("--offersets", help="List offer sets instead of sessions.")
    ] = False,
) -> None:
    """Your sessions (or offer sets), newest first."""
    wanted = set(phase or [])
    if active:
        wanted |= ACTIVE_SESSION_PHASES | {SessionPhase.RELEASING}
    if ended:
        wanted |= {SessionPhase.COMPLETED, SessionPhase.FAILED, SessionPhase.CANCELLED}
    out = stdout()
    with _outcome(ctx), _client(ctx) as client:
        if offer_sets:
            out.print(offer_sets_table(client.offer_sets(last=last), _now()))
            return
        found = client.sessions(phase=[p for p in SessionPhase if p in wanted], last=last)
        out.print(sessions_table(found, _now()))


def logs(
    ctx: typer.Context,
    session: Annotated[UUID, typer.Argument(help=_UUID_HELP)],
    *,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages until it ends.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Print the messages as stored, control characters unescaped; only to a "
            "file or a pipe, never to a terminal.",
        ),
    ] = False,
) -> None:
    r"""The session's and its components' messages, in time order.

    Names and output come from users and platforms: control characters in them are shown
    escaped (``\x1b``), unless ``--raw`` writes them, as they are, to a file or a pipe.
    """
    if raw and sys.stdout.isatty():
        fail(
            "--raw writes control characters as they are, which a terminal would act on: "
            "send it to a file or a pipe (execbroker logs --raw … > file)",
            EXIT_ERROR,
        )
    out = stdout()
    seen: set[tuple[str, str, str, str]] = set()
    with _outcome(ctx), _client(ctx) as client:
        readings = _updates(client, session) if follow else iter([client.session(session)])
        for reading in readings:
            for line in log_lines(reading):
                if line.key not in seen:
                    seen.add(line.key)
                    if raw:
                        sys.stdout.write(raw_log_line(line) + "\n")
                        sys.stdout.flush()
                    else:
                        out.print(log_text(line), soft_wrap=True)
