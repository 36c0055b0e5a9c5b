"""What the server refuses before a route sees the request: a body over the limit (413, decided from
``Content-Length`` before anything is read, or as soon as a chunked body passes it) and an API token in
the query string (400: URLs end up in logs and browser histories; tokens go in ``Authorization``).

Plain ASGI, so the check costs nothing on the hot path and a 10 MB upload is never buffered.
"""

from __future__ import annotations

import json
from typing import Any

from corral.server.errors import ApiError, BadRequest, PayloadTooLarge

MAX_BODY = 1024 * 1024  # 1 MiB

#: Query parameters that carry a credential in other APIs; corral refuses them outright.
TOKEN_PARAMETERS = frozenset({"token", "access_token", "api_key", "apikey", "api-key", "key", "auth",
                              "authorization", "bearer", "password", "secret"})


class BodyTooLarge(Exception):
    """Raised into the app while it reads a chunked body past the limit (the app's handler answers 413)."""


async def _send_error(send: Any, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _token_in_query(query: bytes) -> str | None:
    from urllib.parse import parse_qsl

    if not query:
        return None
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    for key, value in pairs:
        if key.lower() in TOKEN_PARAMETERS or value.startswith("corral_"):
            return key
    return None


class Limits:
    """ASGI middleware: the body limit and the no-token-in-the-URL rule."""

    def __init__(self, app: Any, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = _token_in_query(scope.get("query_string", b""))
        if name is not None:
            await _send_error(send, BadRequest(
                f"an API token in the URL (?{name}=) is refused: URLs end up in logs; "
                "send it as 'Authorization: Bearer TOKEN'", code="token_in_url"))
            return
        length = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_error(send, BadRequest("Content-Length is not a number"))
                    return
        if length is not None and length > self.max_body:
            await _send_error(send, self._too_large(length))
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_error(send, self._too_large(None))

    def _too_large(self, length: int | None) -> PayloadTooLarge:
        return too_large(self.max_body, length)


def too_large(limit: int, length: int | None = None) -> PayloadTooLarge:
    size = f"{length} bytes" if length is not None else "more than that"
    return PayloadTooLarge(f"the body is {size}; this server takes at most {limit} bytes (1 MiB)")
