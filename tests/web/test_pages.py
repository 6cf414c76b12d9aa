"""``/ui`` without a browser: what is served, with which types and policies, and nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from execbroker.config import Settings
from execbroker.localtoken import local_token
from execbroker.main import create_app
from execbroker.web.dashboard import PAGE_POLICY, STATIC_FILES

# A fixed id (of no session): pytest-xdist workers must collect the same test names.
PAGES = [
    "/ui/",
    "/ui/new",
    "/ui/calendar",
    "/ui/sessions/5b0c9a5e-8c1f-4d7e-a2b3-6f4e1d9c0a17",
]
TYPES = {
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}

Started = Callable[..., Any]


@pytest.fixture
def dashboard(tmp_path: Path) -> Started:
    """``async with dashboard(**settings) as client``: a broker on SQLite, called with no
    token from a loopback address (as a browser on the broker's machine would)."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(Settings(data_dir=tmp_path, **overrides))
        async with (
            LifespanManager(app) as manager,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50123)),
                base_url="http://127.0.0.1:8080",
            ) as client,
        ):
            yield client

    return start


@pytest.mark.parametrize("path", PAGES)
async def test_pages_are_html_with_a_strict_policy_and_need_no_token(
    dashboard: Started, path: str
) -> None:
    async with dashboard() as client:
        answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    policy = answer.headers["content-security-policy"]
    assert policy == PAGE_POLICY
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    assert "style-src 'self';" in policy
    assert "connect-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "<!doctype html>" in answer.text


@pytest.mark.parametrize("name", sorted(STATIC_FILES))
async def test_static_files_have_their_content_types(dashboard: Started, name: str) -> None:
    async with dashboard() as client:
        answer = await client.get(f"/ui/static/{name}")
        again = await client.get(
            f"/ui/static/{name}", headers={"If-None-Match": answer.headers["etag"]}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == TYPES[name.rsplit(".", 1)[1]]
    assert answer.headers["content-security-policy"] == PAGE_POLICY
    assert answer.headers["cache-control"] == "no-cache"
    assert again.status_code == 304
    assert not again.content


async def test_every_asset_a_page_names_is_served_from_the_broker(dashboard: Started) -> None:
    async with dashboard() as client:
        for path in PAGES:
            page = (await client.get(path)).text
            references = re.findall(r'(?:src|href)="([^"#]+)"', page)
            assert references, path
            for reference in references:
                # Relative only: nothing from another origin, and it works under a prefix.
                assert not reference.startswith(("http:", "https:", "//", "/")), reference
                target = httpx.URL(f"http://127.0.0.1:8080{path}").join(reference)
                assert (await client.get(target.path)).status_code == 200, (path, reference)
            # No inline script or style for the policy to block.
            assert "<style" not in page
            assert " style=" not in page
            assert re.search(r"<script(?![^>]*\bsrc=)", page) is None


async def test_the_root_redirects_and_unknown_names_are_not_found(dashboard: Started) -> None:
    async with dashboard() as client:
        root = await client.get("/ui")
        assert root.status_code == 308
        assert root.headers["location"] == "ui/"
        for path in ("/ui/static/nothing.js", "/ui/static/..%2fdashboard.py", "/ui/sessions/x"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            assert "execbroker" not in answer.text
        schema = (await client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/ui")]


async def test_the_api_keeps_its_own_policy(dashboard: Started) -> None:
    async with dashboard() as client:
        answer = await client.get("/sessions")
    assert answer.status_code == 401
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert answer.headers["cache-control"] == "no-store"


async def test_no_page_hands_out_the_local_token(dashboard: Started, tmp_path: Path) -> None:
    """A loopback caller with no token (as the broker's own download client would be) gets
    nothing from the old token-hint address, nor any page with the token in it."""
    async with dashboard() as client:
        token = local_token(tmp_path / "tokens.yaml", user="local")
        answers = [await client.get(path) for path in ("/ui/token-hint", *PAGES)]
    assert token
    assert answers[0].status_code == 404
    for answer in answers:
        assert token not in answer.text
