"""The ``execbroker`` command."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
import uvicorn
from rich.console import Console

from execbroker.config import load_settings
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
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    console.print(
        f"execbroker listening on [bold]http://{host}:{port}[/bold] "
        f"(platform {settings.platform}, database {_safe_url(settings.effective_database_url)})"
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
    )


def _safe_url(url: str) -> str:
    """The database URL without its password, fit for a log line."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - only needed here

    return make_url(url).render_as_string(hide_password=True)
