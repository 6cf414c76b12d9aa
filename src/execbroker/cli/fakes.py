"""``execbroker fake-skaha``: a fake Skaha API (and OIDC provider) on loopback, for trying
the broker's Skaha platform without a real one (SKAHA.md §5).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from execbroker.cli.common import console

__all__ = ["fake_skaha"]


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
