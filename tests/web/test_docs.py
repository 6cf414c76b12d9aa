"""``/docs`` and ``/redoc``: every file they load is served by the broker, under a strict policy."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from execbroker.web.docs import DOCS_POLICY
from tests.support.live import LiveBroker
from tests.web.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PLAYWRIGHT,
    browser_ready,  # noqa: F401 - the same skip rule
)

if PLAYWRIGHT:
    from playwright.async_api import Request, Route, async_playwright, expect

REFERENCE = re.compile(r"""\b(?:src|href|spec-url|data-openapi)="([^"]*)\"""")


def _references(page: str) -> list[str]:
    return REFERENCE.findall(page)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_doc_pages_load_only_files_the_broker_serves(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == DOCS_POLICY
    assert "script-src 'self';" in DOCS_POLICY
    assert "cdn" not in page.text.lower()
    # No inline script for the policy to have to allow.
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
    references = _references(page.text)
    assert any(r.endswith(".js") for r in references)
    for reference in references:
        # Relative: same origin, and right under any prefix a proxy adds.
        assert not reference.startswith(("http:", "https:", "//", "/")), reference
        target = httpx.URL(f"http://broker.test{path}").join(reference)
        served = await client.get(target.path)
        assert served.status_code == 200, reference
        assert len(served.content) > 0
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "execbroker"


async def test_doc_assets_are_a_fixed_list_revalidated_by_etag(client: httpx.AsyncClient) -> None:
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    again = await client.get(
        "/docs/assets/swagger-ui-bundle.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    for name in ("nothing.js", "..%2fdocs.py", "..%2f..%2fconfig.py"):
        assert (await client.get(f"/docs/assets/{name}")).status_code == 404, name


@pytest.mark.usefixtures("browser_ready")
@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_doc_pages_render_in_a_browser_with_nothing_from_elsewhere(
    tmp_path: Path, path: str
) -> None:
    problems: list[str] = []
    elsewhere: list[str] = []
    with LiveBroker(data_dir=tmp_path) as broker:
        origin = urlsplit(broker.url).netloc

        async def only_the_broker(route: Route, request: Request) -> None:
            if urlsplit(request.url).scheme in ("blob", "data") or (
                urlsplit(request.url).netloc == origin
            ):
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await page.route("**/*", only_the_broker)
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            await page.goto(broker.url + path)
            if path == "/docs":
                await expect(page.locator(".opblock-summary-path").first).to_be_visible(
                    timeout=30_000
                )
                text = await page.locator("#swagger-ui").inner_text()
                assert "/requests" in text
            else:
                await expect(
                    page.get_by_role("heading", name=re.compile("execbroker")).first
                ).to_be_visible(timeout=30_000)
                # The operations are there too, from the broker's own OpenAPI document.
                await expect(page.get_by_role("heading", name="Ready to serve")).to_be_visible(
                    timeout=30_000
                )
            await browser.close()

    # ReDoc's sidebar names an image on its maker's CDN: the policy blocks it (the
    # image then removes itself); anything else the console reports is a defect.
    blocked_images = [p for p in problems if 'Content Security Policy directive: "img-src' in p]
    assert [p for p in problems if p not in blocked_images] == []
    assert all("https://cdn.redoc.ly/" in p for p in blocked_images)
    assert elsewhere == []
