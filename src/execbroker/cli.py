"""The ``execbroker`` command: run a broker (``serve``), and use one (``request``, ``watch``, …).

The client commands talk to the broker at ``--url`` / ``EXECBROKER_URL`` (default
http://127.0.0.1:8080) with ``--token`` / ``EXECBROKER_TOKEN``, or — for a broker on this
machine — the local user's token from the tokens file the broker wrote on its first start.
Their exit codes tell scripts what happened (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote
from uuid import UUID

import typer
import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

# typer vendors click; its UsageError is what a command line that does not parse raises.
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

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
from execbroker.client.reading import exit_code
from execbroker.client.terminal import (
    WatchView,
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
from execbroker.config import Settings, load_settings
from execbroker.config_reference import render_markdown
from execbroker.exceptions import StartupError
from execbroker.localtoken import local_token
from execbroker.model.phases import (
    ACTIVE_SESSION_PHASES,
    TERMINAL_SESSION_PHASES,
    SessionPhase,
)
from execbroker.model.printable import escape_controls
from execbroker.model.wire import ExecutionSession, dump

__all__ = ["EXIT_CODES", "app"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 2
EXIT_FAILED = 3
EXIT_CANCELLED = 4
EXIT_UNREACHABLE = 5

EXIT_CODES = {
    EXIT_OK: "success (for watch: the session ended COMPLETED)",
    EXIT_ERROR: "usage error, or any other error",
    EXIT_REFUSED: "the broker refused (a 4xx answer, or no offers for the request)",
    EXIT_FAILED: "the watched session ended FAILED",
    EXIT_CANCELLED: "the watched session ended CANCELLED (or REJECTED, EXPIRED)",
    EXIT_UNREACHABLE: "the broker cannot be reached",
}
_EXIT_HELP = "Exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())

_ENDINGS = {
    SessionPhase.COMPLETED: EXIT_OK,
    SessionPhase.FAILED: EXIT_FAILED,
    SessionPhase.CANCELLED: EXIT_CANCELLED,
    SessionPhase.REJECTED: EXIT_CANCELLED,
    SessionPhase.EXPIRED: EXIT_CANCELLED,
}


class _Commands(TyperGroup):
    """Usage errors exit 1, not click's 2: here 2 means that the broker refused."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as failure:
            failure.exit_code = EXIT_ERROR
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as failure:
            failure.exit_code = EXIT_ERROR
            raise


app = typer.Typer(
    cls=_Commands,
    help="execbroker: an IVOA ExecutionBroker.",
    epilog=_EXIT_HELP,
    no_args_is_help=True,
)
console = Console(stderr=True)


@dataclass(frozen=True)
class _Target:
    """The broker the client commands talk to (None: from the environment or the default)."""

    url: str | None
    token: str | None


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="EXECBROKER_URL",
            help="The broker's base URL for the client commands (default http://127.0.0.1:8080).",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="EXECBROKER_TOKEN",
            help="Bearer token for the client commands; default: for a broker on this "
            "machine, the local user's token from its tokens file.",
        ),
    ] = None,
) -> None:
    """execbroker: an IVOA ExecutionBroker."""
    ctx.obj = _Target(url, token)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the broker until interrupted."""
    import uvicorn  # noqa: PLC0415 - the client commands start faster without the server

    from execbroker.auth.setup import check_authentication  # noqa: PLC0415
    from execbroker.logs import configure_logging  # noqa: PLC0415
    from execbroker.main import create_app  # noqa: PLC0415
    from execbroker.serving import protocol_with_header_deadline  # noqa: PLC0415
    from execbroker.storage.privacy import PRIVATE_UMASK, warn_if_shared  # noqa: PLC0415

    # Before anything is created: what the broker writes is its OS user's alone.
    os.umask(PRIVATE_UMASK)
    settings = load_settings()
    configure_logging(settings.log_level)
    # Storage first, so that what an operator must fix is one line naming the path, not a
    # traceback from the server's lifespan (which opens it again: already migrated, quick).
    try:
        check_authentication(settings)
        asyncio.run(_check_storage(settings))
    except StartupError as failure:
        _fail(f"cannot start: {failure}", EXIT_ERROR)
    warn_if_shared(settings)
    console.print(
        f"execbroker listening on [bold]http://{host}:{port}[/bold] "
        f"(platform {settings.platform}, database {_safe_url(settings.effective_database_url)})"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # uvicorn's records go through our handlers, which keep credentials out of them.
        log_config=None,
        proxy_headers=False,
        # Slow or idle clients do not hold connections: headers, then the idle keep-alive
        # (the body's deadline is the app's: BodyDeadline).
        http=protocol_with_header_deadline(
            settings.header_timeout,
            # Room for a long request line (httptools refuses URLs from 64 KiB) and a read
            # that carries body bytes; HeaderLimits answers complete headers exactly.
            max_head_bytes=settings.max_header_bytes + 128 * 1024,
        ),
        timeout_keep_alive=settings.idle_timeout,
    )


@app.command()
def token(
    user: Annotated[
        str | None, typer.Option(help="Whose token; default: the local user (default_owner).")
    ] = None,
) -> None:
    """Print a bearer token from the local tokens file (created on the broker's first start)."""
    settings = load_settings()
    path = settings.effective_tokens_file
    found = local_token(path, user=user or settings.default_owner)
    if found is None:
        typer.echo(
            f"No token for {user or settings.default_owner} in {path}; "
            "start the broker once (make run) to create one.",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(found)


@app.command()
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
    target = ctx.find_object(_Target) or _Target(None, None)
    connection = resolve_connection(target.url, target.token)
    if connection.withheld is not None:
        _fail(f"no link printed: {connection.withheld}", EXIT_ERROR)
    if connection.token is None:
        _fail(
            f"no token for {connection.url}: give --token or EXECBROKER_TOKEN, or for a broker "
            "on this machine start it once (make run) to create its tokens file",
            EXIT_ERROR,
        )
    link = f"{connection.url}/ui/#token={quote(connection.token, safe='')}"
    typer.echo(link)
    if open_browser and not webbrowser.open(link):
        _fail("no web browser could be started here: open the link above", EXIT_ERROR)


@app.command("fake-skaha")
def fake_skaha(
    *,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    user: Annotated[str, typer.Option(help="User the static token belongs to.")] = "alice",
    token: Annotated[
        str | None, typer.Option(help="Bearer token accepted for --user; default: a random one.")
    ] = None,
    realistic: Annotated[
        bool, typer.Option("--realistic", help="Production-like timings instead of fast ones.")
    ] = False,
    queue_seconds: Annotated[float | None, typer.Option(help="Pending without startTime.")] = None,
    pull_seconds: Annotated[float | None, typer.Option(help="Pending with startTime.")] = None,
    run_seconds: Annotated[float | None, typer.Option(help="Default headless run length.")] = None,
    terminating_seconds: Annotated[
        float | None, typer.Option(help="Terminating window after DELETE.")
    ] = None,
    ttl_seconds: Annotated[
        float | None, typer.Option(help="Finished sessions vanish after this long.")
    ] = None,
    session_expiry_seconds: Annotated[
        float | None, typer.Option(help="Interactive session lifetime and renew window.")
    ] = None,
    oidc_token_file: Annotated[
        Path | None,
        typer.Option(
            help="Also serve a fake OIDC provider at /oidc that issues Skaha's tokens, and "
            "write a token file (access and refresh token for --user) here, for "
            "EXECBROKER_SKAHA_TOKEN_FILE."
        ),
    ] = None,
    access_token_seconds: Annotated[
        float, typer.Option(help="Lifetime of access tokens from the fake OIDC provider.")
    ] = 300,
) -> None:
    """Serve a fake Skaha API on loopback and print its base URL (SKAHA.md §5)."""
    import uvicorn  # noqa: PLC0415 - the client commands start faster without the server

    from execbroker.fakes.oidc import FakeOIDCProvider  # noqa: PLC0415
    from execbroker.fakes.skaha import (  # noqa: PLC0415
        FakeSkaha,
        SkahaTimings,
        StaticTokens,
        create_skaha_app,
    )

    timings = SkahaTimings.realistic() if realistic else SkahaTimings()
    changes = {
        "queue": queue_seconds,
        "pull": pull_seconds,
        "run": run_seconds,
        "terminating": terminating_seconds,
        "ttl_headless": ttl_seconds,
        "ttl_interactive": ttl_seconds,
        "session_expiry": session_expiry_seconds,
    }
    timings = replace(
        timings,
        **{name: timedelta(seconds=value) for name, value in changes.items() if value is not None},
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)  # before the URL is printed: a client may connect at once
    base = f"http://{host}:{listener.getsockname()[1]}"
    mounts = {}
    if oidc_token_file is None:
        tokens = StaticTokens()
        if token is None:
            token = tokens.issue(user)
        else:
            tokens.add(token, user)
        fake = FakeSkaha(tokens, timings=timings)
    else:
        provider = FakeOIDCProvider(
            issuer=f"{base}/oidc", access_token_ttl=timedelta(seconds=access_token_seconds)
        )
        fake = FakeSkaha(provider, timings=timings)
        mounts["/oidc"] = provider.app()
        client_id, secret = next(iter(provider.clients.items()))
        token = provider.mint(user)
        expires = datetime.now(UTC) + provider.access_token_ttl
        document = {
            "access_token": token,
            "refresh_token": provider.issue_refresh_token(user, client_id),
            "expires_at": expires.isoformat(),
        }
        descriptor = os.open(oidc_token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(document, stream)
        console.print(
            f"fake OIDC provider: issuer {base}/oidc, client {client_id} / {secret}; "
            f"tokens for [bold]{user}[/bold] in {oidc_token_file}"
        )
    typer.echo(f"{base}/skaha/v1")
    console.print(f"fake Skaha: token for [bold]{user}[/bold]: {token}")
    server = uvicorn.Server(
        uvicorn.Config(create_skaha_app(fake, mounts=mounts), log_level="warning", access_log=False)
    )
    server.run(sockets=[listener])


async def _check_storage(settings: Settings) -> None:
    from execbroker.storage.startup import open_database  # noqa: PLC0415 - serve only

    database = await open_database(settings)
    await database.dispose()


def _safe_url(url: str) -> str:
    """The database URL without its password, fit for a log line."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only needed here

    return make_url(url).render_as_string(hide_password=True)


# =========================================================================== client commands


def _client(ctx: typer.Context) -> BrokerClient:
    target = ctx.find_object(_Target) or _Target(None, None)
    return BrokerClient(target.url, target.token)


def _stdout() -> Console:
    """Standard output; wide when it is not a terminal, so that UUIDs are never folded."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _fail(summary: str, code: int, *, lines: list[str] | None = None) -> NoReturn:
    # The summary and lines often hold the broker's messages: shown escaped, as data.
    console.print(Text(f"error: {escape_controls(summary)}", style="bold red"), soft_wrap=True)
    for line in lines or []:
        console.print(Text(f"  {escape_controls(line)}"), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _outcome(ctx: typer.Context) -> Iterator[None]:
    """Turn what the client raises into a message on standard error and an exit code."""
    try:
        yield
    except BrokerUnreachableError as failure:
        _fail(failure.summary, EXIT_UNREACHABLE, lines=["Is the broker running? (make run)"])
    except NoOffersError as failure:
        _fail(failure.summary, EXIT_REFUSED, lines=_texts(failure))
    except UnauthorizedError as failure:
        target = ctx.find_object(_Target) or _Target(None, None)
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
        _fail(f"{failure.status} {failure.error}", EXIT_REFUSED, lines=[*_texts(failure), hint])
    except RefusedError as failure:
        _fail(f"{failure.status} {failure.error}", EXIT_REFUSED, lines=_texts(failure))
    except BrokerError as failure:
        _fail(failure.summary, EXIT_ERROR, lines=_texts(failure))
    except (ValueError, OSError) as failure:
        _fail(str(failure), EXIT_ERROR)


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


@app.command(epilog=_EXIT_HELP)
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
    out = _stdout()
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


@app.command(epilog=_EXIT_HELP)
def accept(
    ctx: typer.Context, offer: Annotated[UUID, typer.Argument(help="The offer's UUID.")]
) -> None:
    """Accept an offer; the other offers of its set are rejected."""
    with _outcome(ctx), _client(ctx) as client:
        _stdout().print(_update_line(client.accept(offer)))


@app.command(epilog=_EXIT_HELP)
def reject(
    ctx: typer.Context, offer: Annotated[UUID, typer.Argument(help="The offer's UUID.")]
) -> None:
    """Reject an offer, releasing what it holds."""
    with _outcome(ctx), _client(ctx) as client:
        _stdout().print(_update_line(client.reject(offer)))


@app.command(epilog=_EXIT_HELP)
def cancel(ctx: typer.Context, session: Annotated[UUID, typer.Argument(help=_UUID_HELP)]) -> None:
    """Cancel a session: it is released and ends CANCELLED."""
    with _outcome(ctx), _client(ctx) as client:
        _stdout().print(_update_line(client.cancel(session)))


@app.command(epilog=_EXIT_HELP)
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
        _stdout().print(line)


@app.command(epilog=_EXIT_HELP)
def status(
    ctx: typer.Context,
    session: Annotated[UUID, typer.Argument(help=_UUID_HELP)],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the session document.")] = False,
) -> None:
    """A session: its phase, schedule, components, connectors and messages."""
    out = _stdout()
    with _outcome(ctx), _client(ctx) as client:
        found = client.session(session)
        if as_json:
            typer.echo(json.dumps(dump(found), indent=2))
        else:
            out.print(session_status(found, _now()))


def _updates(client: BrokerClient, uuid: UUID) -> Iterator[ExecutionSession]:
    """The session now, and again at every phase change (its own or a component's) until it
    has ended: from the event stream, or — for a broker without one — the long-poll."""
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
    the exit code its ending stands for."""
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


@app.command(epilog=_EXIT_HELP)
def watch(ctx: typer.Context, session: Annotated[UUID, typer.Argument(help=_UUID_HELP)]) -> None:
    """Follow a session live until it ends; the exit code says how it ended.

    Shows each component's phase, how long it has been in it and how much of its scheduled
    step is left (one line per change when the output is not a terminal), then the final
    phase and the executable's exit code where the broker reports one. Exit code 0:
    COMPLETED, 3: FAILED, 4: CANCELLED (or REJECTED, EXPIRED).
    """
    out = _stdout()
    with _outcome(ctx), _client(ctx) as client:
        code = _watch(client, session, out)
    raise typer.Exit(code)


_PHASE_HELP = "Only sessions in this phase (repeat for several)."


@app.command("ls", epilog=_EXIT_HELP)
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
    out = _stdout()
    with _outcome(ctx), _client(ctx) as client:
        if offer_sets:
            out.print(offer_sets_table(client.offer_sets(last=last), _now()))
            return
        found = client.sessions(phase=[p for p in SessionPhase if p in wanted], last=last)
        out.print(sessions_table(found, _now()))


@app.command(epilog=_EXIT_HELP)
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
    """The session's and its components' messages, in time order.

    Names and output come from users and platforms: control characters in them are shown
    escaped (``\\x1b``), unless ``--raw`` writes them, as they are, to a file or a pipe.
    """
    if raw and sys.stdout.isatty():
        _fail(
            "--raw writes control characters as they are, which a terminal would act on: "
            "send it to a file or a pipe (execbroker logs --raw … > file)",
            EXIT_ERROR,
        )
    out = _stdout()
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


@app.command("config")
def config_command(
    *,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the configuration reference (docs/configuration.md)."
        ),
    ] = False,
) -> None:
    """The broker's settings in force (EXECBROKER_* and EXECBROKER_CONFIG_FILE)."""
    if markdown:
        typer.echo(render_markdown(), nl=False)
        return
    try:
        settings = load_settings()
    except (ValueError, OSError) as failure:
        _fail(f"the settings do not read: {failure}", EXIT_ERROR)
    table = Table(title="Settings in force", title_justify="left")
    table.add_column("setting")
    table.add_column("environment variable")
    table.add_column("value", overflow="fold")
    for name in type(settings).model_fields:
        value: Any = getattr(settings, name)
        if name == "database_url" and value:
            value = _safe_url(value)
        table.add_row(name, f"EXECBROKER_{name.upper()}", _setting_text(value))
    _stdout().print(table)


def _setting_text(value: Any) -> str:
    match value:
        case None:
            return "—"
        case timedelta():
            return span(value)
        case dict() | list():
            return json.dumps(value, default=str)
        case _:
            return str(value)  # a SecretStr prints as stars
