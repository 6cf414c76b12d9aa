"""``execbroker fake-skaha --oidc-token-file``: Skaha and its identity provider on one port."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import httpx


def test_the_fake_serves_skaha_with_refreshable_tokens(tmp_path: Path) -> None:
    token_file = tmp_path / "skaha-token.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "execbroker",
            "fake-skaha",
            "--port",
            "0",
            "--user",
            "carol",
            "--oidc-token-file",
            str(token_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert base.endswith("/skaha/v1")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        tokens = json.loads(token_file.read_text())
        assert set(tokens) == {"access_token", "refresh_token", "expires_at"}
        skaha = httpx.get(
            f"{base}/session",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
            timeout=5,
        )
        assert skaha.status_code == 200
        assert skaha.headers["x-vo-authenticated"] == "carol"

        issuer = base.removesuffix("/skaha/v1") + "/oidc"
        discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
        assert discovery["issuer"] == issuer
        refreshed = httpx.post(
            discovery["token_endpoint"],
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=("execbroker", "execbroker-client-secret"),
            timeout=5,
        )
        assert refreshed.status_code == 200, refreshed.text
        fresh = refreshed.json()["access_token"]
        again = httpx.get(
            f"{base}/session", headers={"Authorization": f"Bearer {fresh}"}, timeout=5
        )
        assert again.status_code == 200
        assert (
            httpx.get(
                f"{base}/session", headers={"Authorization": "Bearer made-up"}, timeout=5
            ).status_code
            == 401
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
