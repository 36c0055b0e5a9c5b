"""The console's forms over HTTP: starting sessions and sending messages as the API would, deciding
requests, and the paused session resuming after a decision."""

from __future__ import annotations

import time


def _status(console, session: str, name: str = "alice") -> str:
    with console.api(name) as api:
        return api.get(f"/v1/sessions/{session}").json()["status"]


def _settled(console, session: str) -> str:
    deadline = time.monotonic() + 30
    while (status := _status(console, session)) in ("running", "awaiting_approval") and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


def test_a_session_is_started_with_its_first_message(console, browse) -> None:
    alice = browse("alice")
    answer = alice.post("/sessions", {"agent": "desk", "text": "Settle invoice INV-7", "csrf": alice.csrf("/")})
    assert answer.status_code == 303
    session = answer.headers["location"].rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while _status(console, session) != "awaiting_approval" and time.monotonic() < deadline:
        time.sleep(0.2)
    with console.api("alice") as api:
        view = api.get(f"/v1/sessions/{session}").json()
    assert view["principal"] == "alice" and view["transcript"][0] == {"role": "user", "content": "Settle invoice INV-7"}


def test_bad_forms_are_refused_with_a_page_that_says_why(console, browse) -> None:
    alice = browse("alice")
    csrf = alice.csrf("/")
    unknown = alice.post("/sessions", {"agent": "nobody", "csrf": csrf})
    assert unknown.status_code == 404 and "no agent &#39;nobody&#39; is served here" in unknown.text
    session = alice.post("/sessions", {"agent": "desk", "csrf": csrf}).headers["location"].rsplit("/", 1)[1]
    empty = alice.post(f"/sessions/{session}/messages", {"text": "   ", "csrf": csrf})
    assert empty.status_code == 400 and "the message is empty" in empty.text
    carol = browse("carol")
    refused = carol.post("/sessions", {"agent": "desk", "csrf": carol.csrf("/")})
    assert refused.status_code == 403 and "needs the role user" in refused.text
    other = carol.post(f"/sessions/{session}/messages", {"text": "hi", "csrf": carol.csrf("/")})
    assert other.status_code == 403


def test_a_denied_request_resumes_the_session_and_the_payment_never_runs(console, browse) -> None:
    session, request = console.run_to_approval("alice")
    bob = browse("bob")
    answer = bob.post(f"/approvals/{request}/deny", {"reason": "not this month", "csrf": bob.csrf("/approvals")})
    assert answer.status_code == 303 and "as=denied" in answer.headers["location"] and "resumed=1" in answer.headers["location"]
    assert _settled(console, session) == "idle"
    assert "pay 250" not in (console.work / "effects.log").read_text()
    with console.api("carol") as api:
        decided = next(a for a in api.get("/v1/approvals?status=all").json() if a["id"] == request)
    assert decided["approver"] == "bob" and decided["status"] in ("denied", "used")  # used: the resumed call met it
    again = bob.post(f"/approvals/{request}/approve", {"csrf": bob.csrf("/approvals")})
    assert again.status_code == 409  # decided already


def test_the_owner_resumes_a_session_approved_elsewhere(console, browse) -> None:
    session, request = console.run_to_approval("alice")
    with console.api("bob") as api:
        assert api.post(f"/v1/approvals/{request}/approve", json={"reason": "ok"}).status_code == 200
    alice = browse("alice")
    page = alice.get(f"/sessions/{session}").text
    assert f'action="/sessions/{session}/resume"' in page
    assert alice.post(f"/sessions/{session}/resume", {"csrf": alice.csrf("/")}).status_code == 303
    assert _settled(console, session) == "idle"
    assert (console.work / "effects.log").read_text().count("pay 250") == 1
