"""A container's output is kept whatever bytes it prints, escaped (SECURITY-PROBES-2 W3, W5).

A NUL in the output failed the engine's batch on PostgreSQL, and an ESC sequence in it
reached the terminal of whoever read the session's logs: both are stored escaped now.
"""

from __future__ import annotations

from tests.docker.support import DockerCase, docker_request, output
from tests.support.engine import run_to_end, texts


async def test_nul_and_escape_sequences_in_the_output_are_kept_escaped(case: DockerCase) -> None:
    script = r"printf 'before\000after\033]0;TITLE\007\033[2Jcleared\n'; exit 0"
    async with case.start() as client:
        session = await run_to_end(client, docker_request(script), seconds=60)

    assert session["phase"] == "COMPLETED", texts(session)
    printed = output(session["compute"])
    assert r"before\x00after\x1b]0;TITLE\x07\x1b[2Jcleared" in printed, printed
    assert "\x00" not in printed
    assert "\x1b" not in printed
    await case.assert_nothing_left()
