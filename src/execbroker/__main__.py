"""``python -m execbroker`` is the ``execbroker`` command."""

from execbroker.cli import app

app()
