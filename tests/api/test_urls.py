"""Absolute URLs come from public_url or the listen address, never from a client's Host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from execbroker.config import ServerSettings
from tests.support.live import LiveBroker
from tests.support.wire import example, notebook_request, phase_update

HOSTILE_HOSTS = ["evil.example:666", "evil.example/x?y=", "attacker.example"]


def _urls(document: Any) -> list[str]:
    """Every ``url`` anywhere in a document."""
    if isinstance(document, dict):
        found = [v for k, v in document.items() if k == "url" and isinstance(v, str)]
        return found + [u for v in document.values() for u in _urls(v)]
    if isinstance(document, list):
        return [u for v in document for u in _urls(v)]
    return []


def _everything_a_client_sees(
    post: httpx.Response, session: httpx.Response, redirect: httpx.Response
) -> list[str]:
    return [
        post.headers["location"],
        *_urls(post.json()),
        *_urls(session.json()),
        redirect.headers["location"],
    ]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
async def test_a_hostile_host_header_is_never_echoed(broker: Any, host: str) -> None:
    headers = {"Host": host}
    async with broker() as client:
        created = await client.post("/requests", json=notebook_request(), headers=headers)
        offer = created.json()["offers"][0]["meta"]["url"]
        session = await client.get(offer, headers=headers)
        redirect = await client.get("/offersets/", headers=headers)

    assert created.status_code == 303
    assert session.status_code == 200
    assert redirect.status_code == 307
    urls = _everything_a_client_sees(created, session, redirect)
    assert len(urls) > 3
    for url in urls:
        assert url.startswith("http://broker.test/"), url
        assert "evil" not in url
        assert "attacker" not in url
    assert redirect.headers["location"] == "http://broker.test/offersets"


async def test_public_url_starts_every_url_and_redirect(broker: Any) -> None:
    public = "https://broker.example.org/exec"
    headers = {"Host": "evil.example:666"}
    async with broker(public_url=public + "/") as client:
        created = await client.post("/requests", json=notebook_request(), headers=headers)
        session = await client.get(created.json()["offers"][0]["meta"]["url"], headers=headers)
        redirect = await client.get("/sessions/?last=2", headers=headers)

    assert redirect.status_code == 307
    assert redirect.headers["location"] == f"{public}/sessions?last=2"
    for url in _everything_a_client_sees(created, session, redirect):
        assert url.startswith(public + "/"), url


async def test_trusted_proxies_forwarded_host_still_applies_but_not_their_host(
    broker: Any,
) -> None:
    # The ASGI test client connects from 127.0.0.1.
    async with broker(trusted_proxies=["127.0.0.1"]) as client:
        forwarded = await client.get(
            "/offersets/",
            headers={"Host": "evil.example", "X-Forwarded-Host": "broker.example.org"},
        )
        proto_only = await client.get(
            "/offersets/", headers={"Host": "evil.example", "X-Forwarded-Proto": "https"}
        )
    assert forwarded.headers["location"] == "http://broker.example.org/offersets"
    # Without X-Forwarded-Host, even a trusted proxy's Host is not believed.
    assert proto_only.headers["location"].startswith("https://broker.test")
    assert "evil" not in proto_only.headers["location"]


@pytest.mark.parametrize(
    "forwarded",
    [
        {"X-Forwarded-Host": "evil.example/x?y="},
        {"X-Forwarded-Host": "user@evil.example"},
        {"X-Forwarded-Host": "broker.example.org", "X-Forwarded-Prefix": "/x?y=#z"},
    ],
)
async def test_a_trusted_proxy_passing_on_a_malformed_host_or_prefix_is_not_believed(
    broker: Any, forwarded: dict[str, str]
) -> None:
    async with broker(trusted_proxies=["127.0.0.1"]) as client:
        redirect = await client.get("/offersets/", headers=forwarded)
    location = redirect.headers["location"]
    assert location.endswith("/offersets")
    assert "evil" not in location
    assert "?" not in location
    assert "#" not in location


def test_a_live_broker_names_its_listen_address_whatever_the_host(tmp_path: Path) -> None:
    with LiveBroker(data_dir=tmp_path) as live, live.client() as client:
        for host in HOSTILE_HOSTS:
            headers = {"Host": host}
            created = client.post("/requests", json=notebook_request(), headers=headers)
            direct = client.post("/direct", json=example("direct-request.json"), headers=headers)
            session = client.get(direct.json()["meta"]["url"], headers=headers)
            cancelled = client.post(
                direct.json()["meta"]["url"], json=phase_update("CANCELLED"), headers=headers
            )
            redirect = client.get("/sessions/", headers=headers)
            assert created.status_code == 303
            assert cancelled.status_code == 200
            assert redirect.status_code == 307
            urls = [
                *_everything_a_client_sees(created, session, redirect),
                *_urls(direct.json()),
                *_urls(cancelled.json()),
            ]
            for url in urls:
                assert url.startswith(live.url + "/"), (host, url)
            assert redirect.headers["location"] == f"{live.url}/sessions"
            # Following the redirect lands on the broker itself.
            assert client.get(redirect.headers["location"]).status_code == 200


def test_a_client_calling_the_broker_localhost_is_sent_back_to_localhost(
    tmp_path: Path,
) -> None:
    # The contract's default server is http://localhost:8080. Clients (httpx, requests,
    # urllib3) drop the token on a redirect to another host: a Location naming 127.0.0.1
    # left a client of localhost with a 401 for the offer set it had just made.
    with LiveBroker(data_dir=tmp_path) as live:
        named = f"http://localhost:{live.port}"
        with httpx.Client(base_url=named, headers=live.headers, timeout=30) as client:
            created = client.post("/requests", json=notebook_request(), follow_redirects=True)
            assert created.status_code == 200, created.text
            assert str(created.url).startswith(f"{named}/offersets/")
            assert all(url.startswith(f"{named}/") for url in _urls(created.json()))
            # Any other name is still not echoed: the listen address is named instead.
            other = client.post(
                "/requests",
                json=notebook_request(),
                headers={"Host": f"localhost.evil.example:{live.port}"},
            )
            assert other.headers["location"].startswith(f"{live.url}/offersets/")
            wrong_port = client.post(
                "/requests", json=notebook_request(), headers={"Host": "localhost:1"}
            )
            assert wrong_port.headers["location"].startswith(f"{live.url}/offersets/")


@pytest.mark.parametrize(
    "value", ["broker.example.org", "ftp://broker.example.org", "https://h/?q=1", "https://u:p@h"]
)
def test_a_public_url_that_cannot_start_urls_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        ServerSettings(public_url=value)
