"""The ``execbroker`` command."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from execbroker.auth.tokens import local_token
from execbroker.config import load_settings
from execbroker.fakes.skaha import FakeSkaha, SkahaTimings, StaticTokens, create_skaha_app
from execbroker.logs import configure_logging
from execbroker.main import create_app

__all__ = ["app"]

app = typer.Typer(help="execbroker: an IVOA ExecutionBroker.", no_args_is_help=True)
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """execbroker: an IVOA ExecutionBroker."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the broker until interrupted."""
    settings = load_settings()
    configure_logging(settings.log_level)
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
) -> None:
    """Serve a fake Skaha API on loopback and print its base URL (SKAHA.md §5)."""
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
    tokens = StaticTokens()
    if token is None:
        token = tokens.issue(user)
    else:
        tokens.add(token, user)
    fake = FakeSkaha(tokens, timings=timings)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    bound_port = listener.getsockname()[1]
    typer.echo(f"http://{host}:{bound_port}/skaha/v1")
    console.print(f"fake Skaha: token for [bold]{user}[/bold]: {token}")
    server = uvicorn.Server(
        uvicorn.Config(create_skaha_app(fake), log_level="warning", access_log=False)
    )
    server.run(sockets=[listener])


def _safe_url(url: str) -> str:
    """The database URL without its password, fit for a log line."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only needed here

    return make_url(url).render_as_string(hide_password=True)
