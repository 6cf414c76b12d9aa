"""Staging data into a storage directory: streamed, capped, checksummed, through the egress
policy; no runtime needed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from execbroker.egress import EgressPolicy, egress_client
from execbroker.platforms.base import PlatformError
from execbroker.platforms.docker.staging import public_location, stage, staged_name
from tests.support.recording_server import recording_server

# The test data server listens on loopback, which the egress policy denies unless allowed.
LOOPBACK_ALLOWED = EgressPolicy(["127.0.0.1"])


def _client(policy: EgressPolicy = LOOPBACK_ALLOWED) -> httpx.AsyncClient:
    return egress_client(policy, seconds=5)


async def test_a_download_is_written_whole_with_its_checksum(
    data_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, served = data_server
    content = b"0123456789" * 50_000
    (served / "table.csv").write_bytes(content)
    async with _client() as http:
        staged = await stage(
            f"{base}/table.csv?sig=abc", tmp_path / "d", http=http, cap=10**6, file_roots=[]
        )

    assert staged.name == "table.csv"
    assert staged.size == len(content)
    assert staged.sha256 == hashlib.sha256(content).hexdigest()
    assert (tmp_path / "d" / "table.csv").read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["table.csv"], "no .part left"


async def test_a_download_larger_than_the_cap_fails_and_leaves_nothing(
    data_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, served = data_server
    (served / "big.bin").write_bytes(b"x" * 5000)
    async with _client() as http:
        with pytest.raises(PlatformError, match="5000 bytes, more than the 4096 bytes allowed"):
            await stage(f"{base}/big.bin", tmp_path / "d", http=http, cap=4096, file_roots=[])

    assert list((tmp_path / "d").iterdir()) == []


async def test_a_refused_download_names_the_http_status(
    data_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = data_server
    async with _client() as http:
        with pytest.raises(PlatformError, match="HTTP 404 File not found"):
            await stage(f"{base}/missing", tmp_path / "d", http=http, cap=100, file_roots=[])


async def test_file_locations_only_from_allowed_directories(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ok.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text("not for containers")
    (allowed / "link.txt").symlink_to(tmp_path / "secret.txt")
    async with _client() as http:
        staged = await stage(
            (allowed / "ok.txt").as_uri(), tmp_path / "d", http=http, cap=100, file_roots=[allowed]
        )
        assert staged.sha256 == hashlib.sha256(b"fine").hexdigest()
        for refused in (tmp_path / "secret.txt", allowed / "link.txt"):
            with pytest.raises(PlatformError, match="not under a directory this broker may copy"):
                await stage(
                    refused.as_uri(), tmp_path / "e", http=http, cap=100, file_roots=[allowed]
                )


def test_locations_are_shown_without_credentials() -> None:
    shown = public_location("https://user:pw@data.example.org:8443/a/b.fits?token=s3cret#x")
    assert shown == "https://data.example.org:8443/a/b.fits"
    assert staged_name("https://h/x/my%20file.fits?x=1") == "my_file.fits"
    assert staged_name("https://h/") == "data"


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]", "gethostname"]
)
async def test_a_denied_location_is_refused_before_any_request(
    tmp_path: Path, spelling: str
) -> None:
    import socket  # noqa: PLC0415

    host = socket.gethostname() if spelling == "gethostname" else spelling
    with recording_server() as internal:
        async with _client(EgressPolicy()) as http:
            with pytest.raises(PlatformError, match=r"refused: .* is not allowed") as refused:
                await stage(
                    f"http://{host}:{internal.port}/secret",
                    tmp_path / "d",
                    http=http,
                    cap=100,
                    file_roots=[],
                )
        assert internal.requests == []
    assert f"downloading http://{host}:{internal.port}/secret refused" in str(refused.value)
    assert list((tmp_path / "d").iterdir()) == []


async def test_a_redirect_to_an_internal_address_is_refused(tmp_path: Path) -> None:
    with recording_server() as allowed, recording_server() as internal:
        policy = EgressPolicy([f"127.0.0.1:{allowed.port}"])
        async with _client(policy) as http:
            with pytest.raises(PlatformError, match=r"127\.0\.0\.1 is a loopback address"):
                await stage(
                    f"{allowed.url}/redirect?to=http://127.0.0.1:{internal.port}/secret",
                    tmp_path / "d",
                    http=http,
                    cap=100,
                    file_roots=[],
                )
        assert internal.requests == []
        assert [path for path, _ in allowed.requests] == [
            f"/redirect?to=http://127.0.0.1:{internal.port}/secret"
        ]
