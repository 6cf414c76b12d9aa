"""A loopback HTTP server that records every request it gets, for egress tests.

``/redirect?to=<url>`` answers ``302`` to ``url``; ``/loop`` redirects to itself; any other
path answers ``200`` with the body ``SECRET <path>`` (what an internal service would leak).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["RecordingServer", "recording_server"]


@dataclass
class RecordingServer:
    url: str
    port: int
    # (path, Host header) of every request received, in order.
    requests: list[tuple[str, str]] = field(default_factory=list)
    # With TLS: the server name (SNI) each handshake asked for.
    server_names: list[str | None] = field(default_factory=list)


@contextmanager
def recording_server(
    host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None
) -> Iterator[RecordingServer]:
    """Serves on ``host``; with ``tls`` (a server context) over HTTPS, recording SNI."""
    record: list[tuple[str, str]] = []
    names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            record.append((self.path, self.headers.get("Host", "")))
            parts = urlsplit(self.path)
            if parts.path == "/redirect":
                target = parse_qs(parts.query)["to"][0]
                self._answer(302, b"", location=target)
            elif parts.path == "/loop":
                self._answer(302, b"", location="/loop")
            else:
                self._answer(200, f"SECRET {parts.path}".encode())

        def _answer(self, status: int, body: bytes, *, location: str | None = None) -> None:
            self.send_response(status)
            if location is not None:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, 0), Handler)
    scheme = "http"
    if tls is not None:

        def note_name(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
            names.append(name)

        tls.sni_callback = note_name
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, name="recording-server", daemon=True)
    thread.start()
    port = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    try:
        yield RecordingServer(
            url=f"{scheme}://{shown}:{port}", port=int(port), requests=record, server_names=names
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
