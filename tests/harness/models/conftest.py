"""A local HTTP server that plays a provider's API: it records each request and answers from a queue.

Nothing leaves the machine: the SDKs are pointed at it with ``base_url`` and a dummy key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeProvider:
    """``reply(status, body)`` queues an answer for ``path``; ``requests`` holds what the SDK sent."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    replies: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)

    def reply(self, path: str, body: Any, status: int = 200) -> None:
        self.replies.setdefault(path, []).append((status, body))


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    state = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            state.requests.append(Recorded("POST", path, {k.lower(): v for k, v in self.headers.items()},
                                           json.loads(raw) if raw else None))
            queue = state.replies.get(path)
            status, body = queue.pop(0) if queue else (404, {"error": {"message": f"no route {path}"}})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
