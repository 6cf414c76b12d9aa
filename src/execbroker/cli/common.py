"""What every ``execbroker`` command shares: exit codes, the error console, the broker."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from execbroker.model.printable import escape_controls

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_HELP",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_UNREACHABLE",
    "Target",
    "console",
    "fail",
    "stdout",
]

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
EXIT_HELP = "Exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


# Standard error: progress, warnings and errors, so that standard output stays the answer.
console = Console(stderr=True)


@dataclass(frozen=True)
class Target:
    """The broker the client commands talk to (None: from the environment or the default)."""

    url: str | None
    token: str | None


def stdout() -> Console:
    """Standard output; wide when it is not a terminal, so that UUIDs are never folded."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def fail(
    summary: str, code: int, *, lines: list[str] | None = None, fits: list[str] | None = None
) -> NoReturn:
    """Say what went wrong on standard error, and exit with ``code``; ``fits``: what would
    work instead (the broker's advice on a refused request), under its own heading.
    """
    # The summary and lines often hold the broker's messages: shown escaped, as data.
    console.print(Text(f"error: {escape_controls(summary)}", style="bold red"), soft_wrap=True)
    for line in lines or []:
        console.print(Text(f"  {escape_controls(line)}"), soft_wrap=True)
    if fits:
        console.print(Text("would fit (each change on its own):", style="bold"), soft_wrap=True)
        for line in fits:
            console.print(Text(f"  → {escape_controls(line)}", style="green"), soft_wrap=True)
    raise typer.Exit(code)
