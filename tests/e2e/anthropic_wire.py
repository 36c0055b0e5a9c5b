"""A local server that speaks the Anthropic Messages wire protocol, streaming, for the real Claude Code CLI.

It plays a script: each streamed ``POST /v1/messages`` that offers tools gets the next turn — tool calls
(``tool_use`` blocks whose input arrives as ``input_json_delta``) or text — as server-sent events
(``message_start``, ``content_block_start`` / ``_delta`` / ``_stop``, ``message_delta``, ``message_stop``).
Requests without tools (Claude Code's own side questions, like a title) get a short text answer. Every
request is kept (``requests``), so a test can see the tool results Claude Code sent back.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _events(model: str, blocks: list[dict[str, Any]], stop: str, number: int) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": {
        "id": f"msg_{number:04d}", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}})]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": block["text"]}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            text = json.dumps(block["input"])
            for start in range(0, len(text), 16):  # the input arrives in pieces, as the real API sends it
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": text[start:start + 16]}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                     "usage": {"output_tokens": 7}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class ScriptedMessages:
    """``with ScriptedMessages(turns) as api:`` serves on ``api.url`` until the block ends.

    A turn is ``{"tool_use": {"name": …, "input": {…}}}`` or ``{"text": …}``; after the last turn every
    answer is ``end_turn`` text.
    """

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self.turns = list(turns)
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._served = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
                    self._json(200, {"input_tokens": 12})
                    return
                model = body.get("model", "claude")
                with outer._lock:
                    outer.requests.append(body)
                    turn = outer._next() if body.get("tools") else {"text": "corral test"}
                    number = len(outer.requests)
                if "tool_use" in turn:
                    call = turn["tool_use"]
                    blocks = [{"type": "tool_use", "id": f"toolu_{number:04d}", "name": call["name"],
                               "input": call["input"]}]
                    stop = "tool_use"
                else:
                    blocks, stop = [{"type": "text", "text": turn["text"]}], "end_turn"
                if not body.get("stream"):
                    self._json(200, {"id": f"msg_{number:04d}", "type": "message", "role": "assistant",
                                     "model": model, "content": blocks, "stop_reason": stop, "stop_sequence": None,
                                     "usage": {"input_tokens": 12, "output_tokens": 7}})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                for name, data in _events(model, blocks, stop, number):
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _next(self) -> dict[str, Any]:
        if self._served < len(self.turns):
            self._served += 1
            return self.turns[self._served - 1]
        return {"text": "finished"}

    def tool_results(self) -> list[dict[str, Any]]:
        """Every ``tool_result`` block Claude Code sent back, in order (each once)."""
        seen: dict[str, dict[str, Any]] = {}
        for request in self.requests:
            for message in request.get("messages", []):
                content = message.get("content")
                for block in content if isinstance(content, list) else []:
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        seen.setdefault(block["tool_use_id"], block)
        return list(seen.values())

    def __enter__(self) -> ScriptedMessages:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
