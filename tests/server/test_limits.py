"""Bad input to ``corral serve``: each answered with a clear error, and nothing written half."""

from __future__ import annotations

import socket
from typing import Any

from corral.store import open_store
from tests.server.serving import Team


def _sessions(url: str) -> int:
    store = open_store(url)
    try:
        return len(store.list_sessions())
    finally:
        store.close()


def test_bad_bodies_are_refused_with_what_is_wrong(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    with server.client(token) as client:
        cases = [
            (b'{"agent": ', 400, "malformed_json", "not valid JSON"),
            (b'{"agent": "browse",}', 400, "malformed_json", "not valid JSON"),
            (b"\xff\xfe", 400, "malformed_json", "not valid JSON"),
            (b'{"agent": 5}', 422, "invalid", "agent"),
            (b'{"agent": ["browse"]}', 422, "invalid", "agent"),
            (b'{"agent": "browse", "principal": "root"}', 422, "invalid", "principal: Extra inputs are not permitted"),
            (b"[]", 422, "invalid", ""),
            (b'{}', 422, "invalid", "agent: Field required"),
            (b'{"agent": "../../etc/passwd"}', 404, "not_found", "no agent"),
        ]
        for body, status, code, text in cases:
            answer = client.post("/v1/sessions", content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"]["code"] == code and text in answer.json()["error"]["message"], body
        sid = client.post("/v1/sessions", json={"agent": "browse"}).json()["id"]
        for body in ({"text": ""}, {"text": 7}, {"txt": "hello"}, {"text": "hi", "as": "bob"}):
            answer = client.post(f"/v1/sessions/{sid}/messages", json=body)
            assert answer.status_code == 422, (body, answer.text)
        checks = [({"agent": "gate", "session": "x", "tool": "Read", "args": "not an object"}, 422),
                  ({"agent": "gate", "session": "../x", "tool": "Read"}, 422),
                  ({"agent": "gate", "session": "x", "tool": "Read", "extra": 1}, 422),
                  ({"agent": "nobody", "session": "x", "tool": "Read"}, 404)]
        for body, status in checks:
            assert client.post("/v1/check", json=body).status_code == status, body
        assert client.post("/v1/calls/c1/finish", json={"result": 1, "error": "both"}).status_code == 400
    assert _sessions(sqlite_url) == 1  # only the one session made on purpose


def test_a_body_over_one_mebibyte_is_refused_before_it_is_read(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    with server.client(token) as client:
        big = b'{"agent": "' + b"x" * (10 * 1024 * 1024) + b'"}'
        answer = client.post("/v1/sessions", content=big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large" and "1048576" in answer.json()["error"]["message"]
        just = b'{"text": "' + b"y" * (1024 * 1024) + b'"}'
        assert client.post("/v1/sessions/s/messages", content=just,
                           headers={"Content-Type": "application/json"}).status_code == 413

        def chunks() -> Any:
            for _ in range(40):
                yield b"z" * 65536  # 2.5 MiB with no Content-Length: counted as it arrives

        chunked = client.post("/v1/check", content=chunks(), headers={"Content-Type": "application/json"})
        assert chunked.status_code == 413
    # announced but never sent: the server answers from the header alone, without waiting for the body
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: 10485760\r\n\r\n")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")
    assert _sessions(sqlite_url) == 0


def test_a_token_in_the_url_is_refused_even_beside_a_good_header(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    with server.client(token) as client:
        for query in ({"token": token}, {"access_token": token}, {"api_key": "x"}, {"agent": token}):
            answer = client.get("/v1/sessions", params=query)
            assert answer.status_code == 400, query
            assert answer.json()["error"]["code"] == "token_in_url"
            assert token not in answer.text
        assert client.get("/v1/health", params={"token": token}).status_code == 400
        assert client.get("/v1/sessions", params={"agent": "browse"}).status_code == 200


def test_ids_that_could_name_a_path_are_refused(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    with server.client(token) as client:
        for bad in ("..", ".hidden", "a..b", "a%2F..%2Fb", "%2E%2E", "a b", "x" * 201):
            for path in (f"/v1/sessions/{bad}", f"/v1/traces/{bad}", f"/v1/sessions/{bad}/traces"):
                answer = client.get(path)
                assert answer.status_code in (404, 422), (path, answer.text)
                assert "error" in answer.json()
            assert client.post(f"/v1/approvals/{bad}/approve").status_code in (403, 404, 422)
        unknown = client.get("/v1/sessions/no-such-session")
        assert unknown.status_code == 404 and "no-such-session" in unknown.json()["error"]["message"]
        assert client.get("/v1/no/such/route").json()["error"]["code"] == "not_found"
        assert client.delete("/v1/sessions").status_code == 405
        assert client.get("/v1/sessions", params={"limit": 0}).status_code == 422
        assert client.get("/v1/sessions", params={"status": "sleeping"}).status_code == 422
