"""The ``execbroker`` command: run a broker (``serve``), and use one (``request``, ``watch``, …).

One command, four modules: :mod:`~execbroker.cli.server` runs and describes a broker,
:mod:`~execbroker.cli.client` talks to one (through :mod:`execbroker.client`, with
:mod:`~execbroker.cli.views` for what a terminal shows), :mod:`~execbroker.cli.fakes` serves
a fake Skaha. :mod:`~execbroker.cli.common` holds their exit codes (:data:`EXIT_CODES`).
The commands are registered below, in the order ``--help`` lists them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

# typer vendors click; its UsageError is what a command line that does not parse raises.
from typer._click.exceptions import UsageError
from typer.core import TyperGroup

from execbroker.cli import client, fakes, server
from execbroker.cli.common import EXIT_ERROR, EXIT_HELP, Target

__all__ = ["app"]


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
    epilog=EXIT_HELP,
    no_args_is_help=True,
)


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
    ctx.obj = Target(url, token)


app.command()(server.serve)
app.command()(server.token)
app.command()(client.dashboard)
app.command("fake-skaha")(fakes.fake_skaha)
app.command(epilog=EXIT_HELP)(client.request)
app.command(epilog=EXIT_HELP)(client.accept)
app.command(epilog=EXIT_HELP)(client.reject)
app.command(epilog=EXIT_HELP)(client.cancel)
app.command(epilog=EXIT_HELP)(client.extend)
app.command(epilog=EXIT_HELP)(client.status)
app.command(epilog=EXIT_HELP)(client.watch)
app.command("ls", epilog=EXIT_HELP)(client.list_sessions)
app.command(epilog=EXIT_HELP)(client.logs)
app.command("config")(server.config_command)
