"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

From sign-in to a cancelled session against a real broker process on the mock platform,
with short timings. A screenshot of each page goes to ``test-artifacts/dashboard/``
(git-ignored; CI keeps it). Without Chromium or Playwright the test is skipped, saying
which is missing — except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
import yaml

from tests.support.live import LiveBroker
from tests.support.wire import phase_update, post, request_offers

try:
    from playwright.async_api import Page, Request, Route, async_playwright, expect
except ImportError:  # the browser_ready fixture says so, and skips or fails
    PLAYWRIGHT = False
else:
    PLAYWRIGHT = True

CHROMIUM = Path(os.environ.get("EXECBROKER_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "notebook-request.yaml"
# Quick mock platform and planner, so that an offer starting now is RUNNING in seconds.
FAST = {
    "EXECBROKER_MOCK_PREPARE_SECONDS": json.dumps(
        {"executable": 0.3, "storage": 0.3, "data": 0.3, "compute": 0.5}
    ),
    "EXECBROKER_MOCK_RELEASE_SECONDS": json.dumps(
        {"executable": 0.1, "storage": 0.2, "data": 0.2, "compute": 0.3}
    ),
    "EXECBROKER_PREPARE_ESTIMATES": json.dumps(
        {"executable": 1, "storage": 1, "data": 1, "compute": 1}
    ),
    "EXECBROKER_RELEASE_ESTIMATES": json.dumps(
        {"executable": 1, "storage": 1, "data": 1, "compute": 1}
    ),
    "EXECBROKER_PLANNING_SLACK": "0.5",
}
# Chromium as this machine's probe ran it: nothing of its own goes to the network.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if not PLAYWRIGHT:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture
def browser_ready() -> None:
    missing = _missing()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run under CI=true: {missing}")
    pytest.skip(missing)


def _request_starting_now(folder: Path) -> Path:
    """The notebook example, asking to start within the next ten minutes."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text, count = re.subn(r"start: \S+", f"start: {now}/PT10M", EXAMPLE.read_text())
    assert count == 1
    path = folder / "notebook-request.yaml"
    path.write_text(text)
    return path


def _login_link(broker: LiveBroker) -> str:
    """What ``execbroker dashboard`` prints for this broker, run as a user would run it."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("EXECBROKER_")
    }
    environment |= {"EXECBROKER_DATA_DIR": str(broker.data_dir), "EXECBROKER_URL": broker.url}
    printed = subprocess.run(
        [sys.executable, "-m", "execbroker", "dashboard"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=30,
        check=True,
    )
    return printed.stdout.strip()


async def _sign_in(page: Page, broker: LiveBroker, *, empty: bool = True) -> None:
    """The login link signs the tab in; the token leaves the address bar at once."""
    link = _login_link(broker)
    assert link.startswith(f"{broker.url}/ui/#token=")
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Your sessions")).to_be_visible()
    if not empty:
        return
    await expect(page.get_by_text("No sessions yet")).to_be_visible()
    assert page.url == f"{broker.url}/ui/"
    assert await page.evaluate("window.location.hash") == ""
    stored = await page.evaluate("sessionStorage.getItem('execbroker.token')")
    assert stored == broker.token()
    await page.screenshot(path=ARTIFACTS / "2-sessions-empty.png", full_page=True)


async def _sign_in_by_hand(page: Page, broker: LiveBroker) -> None:
    """Without a link, the page asks for a token: a wrong one is refused, the right one works."""
    await page.goto(f"{broker.url}/ui")
    token = page.get_by_label("Bearer token")
    await expect(token).to_be_focused()
    assert await token.input_value() == ""  # nothing is filled in by the broker
    await page.screenshot(path=ARTIFACTS / "1-sign-in.png", full_page=True)
    await token.fill("not-a-token-of-this-broker")
    await token.press("Enter")
    await expect(page.get_by_text("The broker refused the token")).to_be_visible()
    await page.get_by_label("Bearer token").fill(broker.token())
    await page.get_by_label("Bearer token").press("Enter")
    await expect(page.get_by_role("heading", name="Your sessions")).to_be_visible()


async def _ask_for_offers(page: Page, request_file: Path) -> None:
    """Upload the example file; the offers are shown side by side."""
    await page.get_by_role("link", name="New request").first.click()
    await page.get_by_label("Load a request file (YAML or JSON)").set_input_files(request_file)
    await expect(page.get_by_label("Request (YAML or JSON)")).to_have_value(re.compile("PT10M"))
    await page.get_by_role("button", name="Ask for offers").click()
    offers = page.locator("article.offer")
    await expect(offers.first).to_be_visible()
    assert await offers.count() >= 2
    first, second = await offers.nth(0).bounding_box(), await offers.nth(1).bounding_box()
    assert first is not None
    assert second is not None
    assert first["y"] == second["y"]
    assert second["x"] > first["x"] + first["width"]
    await page.screenshot(path=ARTIFACTS / "3-offers.png", full_page=True)


async def _accept_and_see_it_run(page: Page) -> str:
    """Accept the first offer: its session page follows it to RUNNING, live."""
    await page.get_by_role("button", name="Accept offer 1").click()
    await page.wait_for_url(re.compile(r"/ui/sessions/[0-9a-f-]{36}$"))
    await expect(page.locator("#phase")).to_have_text("RUNNING", timeout=20_000)
    await expect(page.locator("#live")).to_contain_text("Live")
    await expect(page.get_by_role("heading", name="photometry-notebook")).to_be_visible()
    connector = page.get_by_role("link", name=re.compile("Open jupyter-notebook"))
    assert (await connector.get_attribute("href") or "").startswith("https://")
    gantt = page.locator("svg.gantt")
    await expect(gantt.locator("rect.bar.available")).to_have_count(3)
    await expect(gantt.locator(".now line")).to_have_count(1)
    await expect(page.get_by_role("button", name="Extend")).to_be_enabled()
    await page.get_by_role("button", name="Around now").click()
    await expect(page.get_by_role("button", name="Around now")).to_have_attribute(
        "aria-pressed", "true"
    )
    await expect(gantt.locator("rect.bar.preparing")).to_have_count(3)
    await page.screenshot(path=ARTIFACTS / "4-session-running.png", full_page=True)
    return page.url.rsplit("/", 1)[1]


async def _fits_a_phone(page: Page) -> None:
    """On a phone-sized screen nothing needs scrolling sideways."""
    await page.set_viewport_size({"width": 390, "height": 844})
    await expect(page.locator("svg.gantt")).to_have_attribute("width", re.compile(r"^[1-3]\d\d$"))
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.screenshot(path=ARTIFACTS / "5-session-narrow.png", full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})


async def _cancel_with_the_keyboard(page: Page) -> None:
    """The confirmation takes the focus; Enter confirms."""
    await page.get_by_role("button", name="Cancel session").click()
    await expect(page.get_by_role("button", name="Yes, cancel it")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#phase")).to_have_text("CANCELLED", timeout=15_000)
    await expect(page.locator("#live")).to_have_text("The session has ended.")
    await expect(page.get_by_text("Cancelled by local")).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "6-session-cancelled.png", full_page=True)


async def _listed_as_cancelled(page: Page, session_uuid: str) -> None:
    await page.get_by_role("link", name="Sessions", exact=True).click()
    row = page.locator(f'tr[data-uuid="{session_uuid}"]')
    await expect(row.locator(".badge")).to_have_text("CANCELLED")
    await expect(row.get_by_role("link")).to_contain_text("photometry-notebook")
    await page.screenshot(path=ARTIFACTS / "7-sessions.png", full_page=True)


@pytest.mark.usefixtures("browser_ready")
async def test_from_sign_in_to_a_cancelled_notebook(tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    request_file = _request_starting_now(tmp_path)
    problems: list[str] = []
    elsewhere: list[str] = []

    (tmp_path / "broker").mkdir()
    with LiveBroker(data_dir=tmp_path / "broker", env=FAST) as broker:
        origin = urlsplit(broker.url).netloc

        async def only_the_broker(route: Route, request: Request) -> None:
            if urlsplit(request.url).netloc == origin:
                await route.continue_()
            else:
                elsewhere.append(request.url)
                await route.abort()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            await page.route("**/*", only_the_broker)
            # CSP violations and script errors show up here.
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(str(error)))

            await _sign_in(page, broker)
            await _ask_for_offers(page, request_file)
            session_uuid = await _accept_and_see_it_run(page)
            await _fits_a_phone(page)
            await _cancel_with_the_keyboard(page)
            await _listed_as_cancelled(page, session_uuid)
            await browser.close()

    assert problems == []
    assert elsewhere == []
    # The fragment never reached the broker: no request it logged carries the token.
    assert broker.token() not in broker.log.read_text()


@pytest.mark.usefixtures("browser_ready")
async def test_signing_in_by_hand_and_a_refused_link(tmp_path: Path) -> None:
    """The form still works; a link with a wrong token leaves the address clean and asks."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with LiveBroker(data_dir=tmp_path) as broker:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            page.set_default_timeout(10_000)
            await page.goto(f"{broker.url}/ui/#token=wrong-token-from-a-stale-link")
            await expect(page.get_by_text("The broker refused the token")).to_be_visible()
            assert page.url == f"{broker.url}/ui/"
            await page.evaluate("sessionStorage.clear()")
            await _sign_in_by_hand(page, broker)
            await browser.close()


@pytest.mark.usefixtures("browser_ready")
async def test_a_file_chosen_while_the_page_loads_is_kept(tmp_path: Path) -> None:
    """A request file picked before the page's script has run is loaded, not lost under
    the built-in example (the change event fired before anyone listened)."""
    request_file = _request_starting_now(tmp_path)
    (tmp_path / "broker").mkdir()
    with LiveBroker(data_dir=tmp_path / "broker", env=FAST) as broker:
        script_asked = asyncio.Event()
        release_script = asyncio.Event()

        async def slow_script(route: Route) -> None:
            script_asked.set()
            await release_script.wait()
            await route.continue_()

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page()
            page.set_default_timeout(10_000)
            await _sign_in(page, broker)
            await page.route("**/static/request.js", slow_script)
            await page.goto(f"{broker.url}/ui/new", wait_until="commit")
            await asyncio.wait_for(script_asked.wait(), 10)
            await page.locator("#request-file").set_input_files(request_file)
            release_script.set()
            text = page.get_by_label("Request (YAML or JSON)")
            await expect(text).to_have_value(request_file.read_text())
            await browser.close()


def _direct_run(cores: int, run_seconds: float, duration: str = "PT1H") -> dict[str, object]:
    return {
        "executable": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml",
            "meta": {"name": f"run-{cores}"},
            "image": {"locations": ["images.canfar.net/example/hello:1.0"]},
            "environment": {"MOCK_RUN_SECONDS": str(run_seconds)},
        },
        "compute": {"cores": {"min": cores, "max": cores}, "memory": {"min": 2, "max": 2}},
        "schedule": {"requested": {"duration": duration}},
    }


@pytest.mark.usefixtures("browser_ready")
async def test_the_pool_calendar_shows_an_administrator_every_booking(tmp_path: Path) -> None:
    """Three runs on an 8-core pool: one done, one running, one waiting its turn. The
    calendar lists all three, draws held and used bars, and shows the utilisation the JSON
    endpoint reports."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    env = {**FAST, "EXECBROKER_ADMINS": "local", "EXECBROKER_CAPACITY_CORES": "8"}
    with LiveBroker(data_dir=tmp_path, env=env) as broker, broker.client() as client:
        uuids = []
        for cores, seconds in ((2, 0.5), (4, 600), (6, 600)):
            created = client.post("/direct", json=_direct_run(cores, seconds))
            assert created.status_code == 303, created.text
            uuids.append(created.json()["meta"]["uuid"])
        done, running, waiting = uuids
        for uuid, phase in ((done, "COMPLETED"), (running, "RUNNING")):
            deadline = asyncio.get_running_loop().time() + 20
            while client.get(f"/sessions/{uuid}").json()["phase"] != phase:
                assert asyncio.get_running_loop().time() < deadline, f"{uuid} not {phase}"
                await asyncio.sleep(0.1)
        assert client.get(f"/sessions/{waiting}").json()["phase"] == "WAITING"
        now = datetime.now(UTC).replace(microsecond=0)
        window = {
            "from": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (now + timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        calendar = client.get("/admin/calendar", params=window).json()
        assert {b["session"] for b in calendar["bookings"]} == set(uuids)

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.on(
                "console",
                lambda message: problems.append(message.text) if message.type == "error" else None,
            )
            page.on("pageerror", lambda error: problems.append(str(error)))
            await _sign_in(page, broker, empty=False)
            await page.get_by_role("link", name="Pool calendar").click()
            await expect(page.get_by_role("heading", name="Pool calendar")).to_be_visible()
            # The next 24 hours: the run that is done held nothing from now on.
            await expect(page.locator("#bookings tbody tr")).to_have_count(2)
            await expect(page.locator(f'#bookings tr[data-session="{done}"]')).to_have_count(0)
            await page.goto(f"{broker.url}/ui/calendar?{urlencode(window)}")
            table = page.locator("#bookings")
            for uuid in uuids:
                await expect(table.locator(f'tr[data-session="{uuid}"]')).to_be_visible()
            await expect(table.locator(f'tr[data-session="{waiting}"] .badge')).to_have_text(
                "WAITING"
            )
            await expect(table.locator(f'tr[data-session="{done}"] .badge')).to_have_text(
                "COMPLETED"
            )
            gantt = page.locator("#gantt svg.gantt")
            await expect(gantt.locator("rect.bar.held")).to_have_count(3)
            await expect(gantt.locator("rect.bar.used")).to_have_count(2)  # not the waiting one
            held = f"{calendar['utilisation']['held'] * 100:.1f} %"
            used = f"{calendar['utilisation']['used'] * 100:.1f} %"
            await expect(page.locator("#held-utilisation")).to_have_text(held)
            await expect(page.locator("#used-utilisation")).to_have_text(used)
            assert held != "0.0 %"
            await page.screenshot(path=ARTIFACTS / "8-pool-calendar.png", full_page=True)
            await browser.close()
    assert problems == []


def _notebook(cores: int, window: str) -> dict[str, Any]:
    """The notebook example for ``cores`` cores, an hour, starting within ``window`` from now."""
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["compute"]["cores"] = {"min": cores, "max": cores}
    document["schedule"]["requested"] = {"start": f"{now}/{window}", "duration": "PT1H"}
    return document


async def _ask(page: Page, document: dict[str, Any]) -> None:
    await page.get_by_label("Request (YAML or JSON)").fill(yaml.safe_dump(document))
    await page.get_by_role("button", name="Ask for offers").click()


@pytest.mark.usefixtures("browser_ready")
async def test_a_refusal_says_what_would_fit_and_a_wait_says_why(tmp_path: Path) -> None:
    """A pool of 6 cores, 4 of them booked for an hour: a request for 4 more is told that 2
    would fit, or a later start; asked with a wider interval, its offer and then its session
    say which resource they wait for and who holds it.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (tmp_path / "broker").mkdir()
    env = {**FAST, "EXECBROKER_CAPACITY_CORES": "6"}
    with LiveBroker(data_dir=tmp_path / "broker", env=env) as broker:
        bearer = {"Authorization": f"Bearer {broker.token()}"}
        async with httpx.AsyncClient(base_url=broker.url, headers=bearer) as client:
            first = await request_offers(client, _notebook(4, "PT10M"))
            url = first["offers"][0]["meta"]["url"]
            assert (await post(client, url, phase_update("ACCEPTED"))).status_code == 200
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            await page.goto(_login_link(broker))
            await expect(page.get_by_role("heading", name="Your sessions")).to_be_visible()
            await page.get_by_role("link", name="New request").first.click()

            await _ask(page, _notebook(4, "PT10M"))
            fits = page.locator("#would-fit")
            await expect(fits).to_contain_text("fits with 2 cores instead of 4")
            await expect(fits).to_contain_text("fits from ")
            await page.screenshot(path=ARTIFACTS / "9-would-fit.png", full_page=True)

            await _ask(page, _notebook(4, "PT3H"))
            offer = page.locator("article.offer").first
            await expect(offer).to_contain_text("Not earlier because")
            await expect(offer).to_contain_text("2 of the 4 cores it needs are free")
            await page.get_by_role("button", name="Accept offer 1").click()
            await page.wait_for_url(re.compile(r"/ui/sessions/[0-9a-f-]{36}$"))
            await expect(page.locator("#phase")).to_have_text("WAITING")
            why = page.locator("#why-waiting")
            await expect(why).to_contain_text("4 of 6 are held")
            await expect(why).to_contain_text("by 1 session(s) accepted before it")
            await page.screenshot(path=ARTIFACTS / "10-session-waiting.png", full_page=True)
            await browser.close()
