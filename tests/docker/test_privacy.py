"""Session storage on the docker platform is the broker's OS user's alone
(SECURITY-PROBES-2 W1).

Every folder under the platform's root is ``0700`` and every file it writes ``0600``, so no
other local user can list ``objects/`` (whose file names are the storage folders' names),
reach ``storage/``, or read, plant or replace anything in a session's folder. Containers that
mount storage run as the broker's user, the owner of those folders, whatever user the image
names.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from tests.docker.support import LOOPBACK_ALLOWED, TEST_IMAGE, DockerCase, docker_request, output
from tests.docker.test_runs import wait_for_phase
from tests.support.engine import texts, until_ended
from tests.support.wire import phase_update, post

# Written by the container, with its own umask, inside the private folders.
_CONTAINER_FILES = {"result.txt", "ready"}


def _reachable_by_others(root: Path) -> list[str]:
    """Everything under ``root`` (and ``root``) with a group or other permission bit."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.name in _CONTAINER_FILES:
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:04o}")
    return found


@pytest.fixture
async def nobody_image(docker: aiodocker.Docker) -> AsyncIterator[str]:
    """The test image, set to run as ``nobody`` (as many images run as a user of theirs)."""
    tag = f"localhost/execbroker-test-nobody:{os.getpid()}"
    containerfile = f"FROM {TEST_IMAGE}\nUSER 65534:65534\n".encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as archive:
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(containerfile)
        archive.addfile(entry, io.BytesIO(containerfile))
    context.seek(0)
    await docker.images.build(
        fileobj=context, encoding="application/x-tar", tag=tag, pull=False, rm=True
    )
    try:
        yield tag
    finally:
        await docker.images.delete(tag, force=True)


async def test_session_storage_and_records_are_private_while_it_runs(
    case: DockerCase, data_server: tuple[str, Path]
) -> None:
    base, served = data_server
    (served / "private.txt").write_bytes(b"alice's input\n")
    script = "echo alice result v1 > /scratch/result.txt; touch /scratch/ready; sleep 60"
    root = case.data_dir / "docker"
    async with case.start(egress_allow=LOOPBACK_ALLOWED) as client:
        created = await post(
            client,
            "/direct",
            docker_request(script, data=f"{base}/private.txt", scratch=True),
        )
        assert created.status_code == 303, created.text
        url = created.headers["location"]
        await wait_for_phase(client, url, "RUNNING", seconds=60)
        storage = next((root / "storage").iterdir())
        for _ in range(100):  # the container writes its file just after it starts
            if (storage / "ready").exists():
                break
            await wait_for_phase(client, url, "RUNNING", seconds=1)

        # While it runs: the folders, the staged file, the records, the instance file.
        assert _reachable_by_others(root) == []
        assert stat.S_IMODE(storage.stat().st_mode) == 0o700
        staged = next(storage.glob("input*/private.txt"))
        assert stat.S_IMODE(staged.stat().st_mode) == 0o600
        assert {path.suffix for path in (root / "objects").iterdir()} == {".json"}
        # The container wrote as the folder's owner, the broker's user.
        written = storage / "result.txt"
        assert written.read_text() == "alice result v1\n"
        assert (written.stat().st_uid, written.stat().st_gid) == (os.geteuid(), os.getegid())

        cancelled = await client.post(url, json=phase_update("CANCELLED"))
        assert cancelled.status_code == 200, cancelled.text
        await until_ended(client, url, seconds=30)
    assert _reachable_by_others(root) == []
    await case.assert_nothing_left()


async def test_an_image_that_names_another_user_still_writes_its_storage(
    case: DockerCase, nobody_image: str
) -> None:
    script = "id -u; echo written > /scratch/out.txt && cat /scratch/out.txt; ls -ln /scratch"
    async with case.start() as client:
        created = await post(
            client, "/direct", docker_request(script, scratch=True, image=nobody_image)
        )
        assert created.status_code == 303, created.text
        session = await until_ended(client, created.headers["location"], seconds=60)

    assert session["phase"] == "COMPLETED", texts(session)
    printed = output(session["compute"]).split()
    # It ran as the broker's user, who owns the private folder, and could write to it.
    assert printed[0] == str(os.geteuid())
    assert "written" in printed
    await case.assert_nothing_left()
