"""The server commands: run a broker, print its local token, show its settings."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from execbroker.cli.common import EXIT_ERROR, console, fail, stdout
from execbroker.cli.views import span
from execbroker.config import Settings, load_settings, setting_fields
from execbroker.config_reference import render_markdown
from execbroker.exceptions import StartupError
from execbroker.localtoken import local_token

__all__ = ["config_command", "serve", "token"]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes sharing the port (PostgreSQL only); default: the workers "
            "setting (EXECBROKER_WORKERS), 1.",
        ),
    ] = None,
) -> None:
    """Run the broker until interrupted."""
    import uvicorn  # noqa: PLC0415 - the client commands start faster without the server

    from execbroker.auth.setup import check_authentication  # noqa: PLC0415
    from execbroker.logs import configure_logging  # noqa: PLC0415
    from execbroker.main import create_app  # noqa: PLC0415
    from execbroker.serving import head_limits, protocol_with_header_deadline  # noqa: PLC0415
    from execbroker.storage.privacy import PRIVATE_UMASK, warn_if_shared  # noqa: PLC0415

    # Before anything is created: what the broker writes is its OS user's alone.
    os.umask(PRIVATE_UMASK)
    settings = load_settings()
    configure_logging(settings.log_level)
    processes = workers if workers is not None else settings.server.workers
    if processes > 1 and _is_sqlite(settings.effective_database_url):
        fail(
            f"cannot start {processes} workers (--workers, EXECBROKER_WORKERS) on SQLite: one "
            "process writes its file, and the broker's write lock holds within one process; "
            "use PostgreSQL (EXECBROKER_DATABASE_URL) or one worker",
            EXIT_ERROR,
        )
    # Storage first, so that what an operator must fix is one line naming the path, not a
    # traceback from the server's lifespan (which opens it again: already migrated, quick).
    try:
        check_authentication(settings.auth)
        asyncio.run(_check_storage(settings))
    except StartupError as failure:
        fail(f"cannot start: {failure}", EXIT_ERROR)
    warn_if_shared(settings)
    console.print(
        f"execbroker listening on [bold]http://{host}:{port}[/bold] "
        f"(platform {settings.platform}, database {_safe_url(settings.effective_database_url)}"
        f"{f', {processes} workers' if processes > 1 else ''})",
        # Rich's highlighter compiles its patterns on first use: a second of start-up here.
        highlight=False,
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        # uvicorn's records go through our handlers, which keep credentials out of them.
        "log_config": None,
        "access_log": settings.access_log or settings.log_level == "DEBUG",
        # uvicorn[standard] installs both; named, so that their absence fails loudly
        # instead of serving at a fraction of the speed on asyncio's loop.
        "loop": "uvloop",
        "proxy_headers": False,
        # Slow or idle clients do not hold connections: headers, then the idle keep-alive
        # (the body's deadline is the app's: BodyDeadline).
        "timeout_keep_alive": int(settings.server.idle_timeout.total_seconds()),
    }
    if processes == 1:
        header_timeout, max_head_bytes = head_limits(settings)
        uvicorn.run(
            create_app(settings),
            http=protocol_with_header_deadline(header_timeout, max_head_bytes=max_head_bytes),
            **options,
        )
        return
    # Each worker is a new process (uvicorn spawns them), which builds its own app and
    # protocol from the settings in force: both are named, not handed over.
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=processes,
        http="execbroker.serving:SettingsHeaderDeadlineProtocol",
        **options,
    )


def worker_app() -> Any:
    """The app of one worker process of ``serve --workers``: the settings in force, with the
    logging and file mode ``serve`` sets (the broker's lifespan does the rest, as for one
    process: PostgreSQL's migrations take an advisory lock, so workers starting together wait
    for each other).
    """
    from execbroker.logs import configure_logging  # noqa: PLC0415
    from execbroker.main import create_app  # noqa: PLC0415
    from execbroker.storage.privacy import PRIVATE_UMASK  # noqa: PLC0415

    os.umask(PRIVATE_UMASK)
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def token(
    user: Annotated[
        str | None, typer.Option(help="Whose token; default: the local user (default_owner).")
    ] = None,
) -> None:
    """Print a bearer token from the local tokens file (created on the broker's first start)."""
    settings = load_settings()
    path = settings.effective_tokens_file
    found = local_token(path, user=user or settings.auth.default_owner)
    if found is None:
        typer.echo(
            f"No token for {user or settings.auth.default_owner} in {path}; "
            "start the broker once (make run) to create one.",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(found)


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
        fail(f"the settings do not read: {failure}", EXIT_ERROR)
    table = Table(title="Settings in force", title_justify="left")
    table.add_column("setting")
    table.add_column("environment variable")
    table.add_column("value", overflow="fold")
    for section, name, attribute, _ in setting_fields():
        holder = settings if section is None else getattr(settings, section)
        value: Any = getattr(holder, attribute)
        if name == "database_url" and value:
            value = _safe_url(value)
        table.add_row(name, f"EXECBROKER_{name.upper()}", _setting_text(value))
    stdout().print(table)


def _setting_text(value: Any) -> str:
    match value:
        case None:
            return "—"
        case timedelta():
            seconds = f"{value.total_seconds():g} s"  # as the variable takes it
            return seconds if span(value) == seconds else f"{span(value)} ({seconds})"
        case dict() | list():
            return json.dumps(value, default=_json_seconds)
        case _:
            return str(value)  # a SecretStr prints as stars


def _json_seconds(value: Any) -> Any:
    """Durations in a mapping print as seconds, as the environment takes them."""
    return value.total_seconds() if isinstance(value, timedelta) else str(value)


async def _check_storage(settings: Settings) -> None:
    from execbroker.storage.startup import open_database  # noqa: PLC0415 - serve only

    database = await open_database(settings)
    await database.dispose()


def _is_sqlite(url: str) -> bool:
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only needed here

    return make_url(url).get_backend_name() == "sqlite"


def _safe_url(url: str) -> str:
    """The database URL without its password, fit for a log line."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only needed here

    return make_url(url).render_as_string(hide_password=True)
