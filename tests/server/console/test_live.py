"""The session page's live stream over HTTP: a call and the model's words as they happen, the end of
the run, another principal's session refused, and a revoked token ending the stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx

from corral.server.identity import revoke_principal
from corral.store import open_store


def _events(source: httpx.Response | Iterator[str], until: str, limit: int = 200) -> list[tuple[str, dict]]:
    """Events from a stream (or from its lines, to read on where an earlier call stopped) up to ``until``."""
    seen, kind = [], None
    for line in source.iter_lines() if isinstance(source, httpx.Response) else source:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind:
            seen.append((kind, json.loads(line[6:])))
            if kind == until or len(seen) >= limit:
                return seen
            kind = None
    return seen


def test_calls_and_words_stream_while_the_session_runs(console, browse) -> None:
    with console.api("alice") as api:
        session = api.post("/v1/sessions", json={"agent": "desk"}).json()["id"]
    alice = browse("alice")
    with alice.http.stream("GET", f"/sessions/{session}/live?status=new", timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")

        def send() -> None:
            with console.api("alice") as api:
                api.post(f"/v1/sessions/{session}/messages", json={"text": "Settle invoice INV-7"})

        sender = threading.Thread(target=send)
        sender.start()
        events = _events(stream, "done")
        sender.join()
    kinds = [k for k, _ in events]
    assert "text" in kinds and "call" in kinds and kinds[-1] == "done"
    calls = [d["html"] for k, d in events if k == "call"]
    assert any("<code class=\"tool\">wipe</code>" in html and "blocked" in html for html in calls)
    assert all("<script>" not in html for html in calls)  # rendered and escaped by the page's templates
    assert any("Looking the invoice up." in d["html"] for k, d in events if k == "text")


def test_a_stream_catches_up_on_calls_made_after_the_page_was_rendered(console, browse) -> None:
    session, _ = console.run_to_approval("alice")
    with console.api("alice") as api:
        traces = api.get(f"/v1/sessions/{session}/traces").json()
    calls = [t for t in traces if t["kind"] == "call"]
    alice = browse("alice")
    with alice.http.stream("GET", f"/sessions/{session}/live?after={calls[-3]['id']}&status=awaiting_approval",
                           timeout=30) as stream:
        events = _events(stream, "", limit=2)
    assert [d["id"] for _, d in events] == [calls[-2]["id"], calls[-1]["id"]]


def test_another_principals_session_is_not_streamed(console, browse) -> None:
    session, _ = console.run_to_approval("erin")
    answer = browse("alice").get(f"/sessions/{session}/live")
    assert answer.status_code == 404


def test_a_revoked_token_ends_the_stream(console, browse) -> None:
    session, _ = console.run_to_approval("alice")
    alice = browse("alice")
    with alice.http.stream("GET", f"/sessions/{session}/live?status=awaiting_approval", timeout=30) as stream:
        store = open_store(console.store_url)
        try:
            revoke_principal(store, "alice")
        finally:
            store.close()
        events = _events(stream, "signed_out")
    assert events[-1][0] == "signed_out"
    signed_out = browse().get(f"/sessions/{session}/live")
    assert signed_out.status_code == 200 and "signed_out" in signed_out.text


def test_a_page_on_one_server_follows_a_run_on_another(slow_console, serve, work) -> None:
    from tests.e2e.console.conftest import AGENTS
    from tests.server.console.conftest import Browser

    console = slow_console
    other = serve(console.store_url, str(AGENTS / "desk.yaml"),  # a second server on the same store
                  env={"CORRAL_TEST_LOOKUP_GATE": str(work / "lookup-gate"), "CORRAL_TEST_LOOKUP_SECONDS": "2"})
    with console.api("alice") as api:
        session = api.post("/v1/sessions", json={"agent": "desk"}).json()["id"]
    alice = Browser(console).sign_in("alice")
    with alice.http.stream("GET", f"/sessions/{session}/live?status=new", timeout=60) as stream:

        def send() -> None:
            with other.client(console.token("alice")) as api:
                api.post(f"/v1/sessions/{session}/messages", json={"text": "Settle invoice INV-7"})

        sender = threading.Thread(target=send)
        sender.start()
        lines = stream.iter_lines()
        assert _events(lines, "status") == [("status", {"status": "running"})]
        (work / "lookup-gate").touch()
        events = _events(lines, "status", limit=100)
        sender.join()
    alice.close()
    calls = [d["html"] for k, d in events if k == "call"]
    assert any('<code class="tool">wipe</code>' in html and "blocked" in html for html in calls)  # as it ran there
    assert events[-1] == ("status", {"status": "awaiting_approval"})
