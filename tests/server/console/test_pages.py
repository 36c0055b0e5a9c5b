"""The console's pages over HTTP: each shows what the API shows the same principal, with the role the API
requires; filters and keyset pages; escaping; the security headers; errors as pages."""

from __future__ import annotations

import re

from corral.server.console.render import CSP


def test_a_user_sees_their_own_sessions_and_requests_only(console, browse) -> None:
    mine, my_request = console.run_to_approval("alice")
    theirs, their_request = console.run_to_approval("erin")
    alice = browse("alice")
    listing = alice.get("/").text
    assert mine in listing and theirs not in listing
    answer = alice.get(f"/sessions/{theirs}")
    assert answer.status_code == 404 and "no session" in answer.text and "<html" in answer.text
    approvals = alice.get("/approvals").text
    assert my_request in approvals and their_request not in approvals
    assert 'action="/approvals/' not in approvals  # no buttons for a user: not her role, and her own
    assert alice.get("/audit").status_code == 403
    assert "needs the role auditor" in alice.get("/policy").text


def test_an_approver_sees_every_pending_request_and_may_decide_the_others(console, browse) -> None:
    session, request = console.run_to_approval("alice")
    bob = browse("bob")
    page = bob.get("/approvals").text
    assert f'action="/approvals/{request}/approve"' in page and f'formaction="/approvals/{request}/deny"' in page
    assert session not in bob.get("/").text  # approvers see requests, not other people's sessions
    assert bob.get(f"/sessions/{session}").status_code == 404


def test_an_auditor_sees_everything_and_decides_nothing(console, browse) -> None:
    session, request = console.run_to_approval("alice")
    carol = browse("carol")
    assert session in carol.get("/").text
    page = carol.get(f"/sessions/{session}")
    assert page.status_code == 200 and "Only alice (or an admin) can send this session messages" in page.text
    assert 'action="/sessions/' not in page.text  # no message box, no resume
    assert request in carol.get("/approvals").text and f"/approvals/{request}/approve" not in carol.get("/approvals").text
    refused = carol.post(f"/approvals/{request}/approve", {"csrf": carol.csrf("/approvals")})
    assert refused.status_code == 403 and "needs the role approver" in refused.text
    assert carol.get("/audit").status_code == 200 and carol.get("/policy").status_code == 200


def test_a_requester_cannot_decide_their_own_request_even_as_an_approver(console, browse) -> None:
    console.team.add("fay", "user", "approver")
    with console.api("fay") as api:
        session = api.post("/v1/sessions", json={"agent": "desk"}).json()["id"]
        api.post(f"/v1/sessions/{session}/messages", json={"text": "pay"})
        request = api.get("/v1/approvals").json()[0]["id"]
    fay = browse("fay")
    page = fay.get("/approvals").text
    assert request in page and f"/approvals/{request}/approve" not in page
    refused = fay.post(f"/approvals/{request}/approve", {"csrf": fay.csrf("/approvals")})
    assert refused.status_code == 403 and "own request" in refused.text
    with console.api("carol") as api:
        assert api.get("/v1/approvals").json()[0]["status"] == "pending"


def test_tool_arguments_are_escaped(console, browse) -> None:
    session, _ = console.run_to_approval("alice")
    page = browse("alice").get(f"/sessions/{session}").text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    assert "<script>alert" not in page
    assert len(re.findall(r"<script\b", page)) == 1  # the console's own, from /static


def test_pages_carry_the_security_headers_and_their_server_time(console, browse) -> None:
    session, _ = console.run_to_approval("alice")
    alice = browse("alice")
    for path in ("/", f"/sessions/{session}", "/approvals", "/login"):
        answer = alice.get(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["x-content-type-options"] == "nosniff"
        if path != "/login":
            assert re.fullmatch(r"app;dur=\d+(\.\d)?", answer.headers["server-timing"]), path
    assert "'self'" in CSP and "http" not in CSP  # nothing from elsewhere
    page = alice.get("/").text
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no resource from another origin
    assert alice.get("/static/console.css").status_code == 200
    assert alice.get("/static/console.js").status_code == 200


def test_sessions_are_filtered_and_paged_by_key(console, browse) -> None:
    from corral.store import open_store

    store = open_store(console.store_url)
    try:
        for i in range(120):
            store.put_session({"id": f"s{i:04d}", "agent": "desk" if i % 2 else "mail", "principal": "carol",
                               "roles": ["auditor"], "phase": "explore", "status": "idle",
                               "stop_reason": "end_turn" if i % 3 else "budget_stop",
                               "created": f"2026-11-24T10:{i // 60:02d}:{i % 60:02d}.000Z"})
    finally:
        store.close()
    carol = browse("carol")
    seen, page = [], carol.get("/?agent=desk")
    while True:
        seen += re.findall(r'href="/sessions/(s\d{4})"', page.text)
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        if not found:
            break
        assert "offset" not in found.group(1)
        page = carol.get(found.group(1).replace("&amp;", "&"))
    assert seen == [f"s{i:04d}" for i in range(119, -1, -1) if i % 2]
    stopped = re.findall(r'href="/sessions/(s\d{4})"', carol.get("/?stop_reason=budget_stop&agent=mail").text)
    assert stopped == [f"s{i:04d}" for i in range(119, -1, -1) if i % 3 == 0 and i % 2 == 0][:50]
    assert carol.get("/?principal=nobody").text.count('href="/sessions/') == 0
    bad = carol.get("/?status=sleeping")
    assert bad.status_code == 400 and "is not one of" in bad.text
    assert carol.get("/?after=garbage").status_code == 400


def test_an_unknown_page_is_a_page_and_an_unknown_api_route_is_json(console, browse) -> None:
    alice = browse("alice")
    page = alice.get("/nowhere")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    with console.api("alice") as api:
        answer = api.get("/v1/nowhere")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_the_replay_view_reads_only_rule_files_beside_the_agents_and_names_their_mistakes(console, browse) -> None:
    console.run_to_approval("alice")
    carol = browse("carol")
    page = carol.get("/policy?agent=desk").text
    assert '<option value="desk.next.rules">' in page and '<option value="desk.rules">' in page
    for elsewhere in ("../../../etc/passwd", "/etc/hosts", "tools.py"):
        refused = carol.get("/policy", params={"agent": "desk", "replay": elsewhere})
        assert refused.status_code == 400 and "is not a rule file beside a served agent" in refused.text
    broken = carol.get("/policy?agent=desk&replay=desk.broken.rules")
    assert broken.status_code == 200 and "desk.broken.rules:2:27: expected an operator" in broken.text
    replayed = carol.get("/policy?agent=desk&replay=desk.next.rules").text
    assert "2 would flip" in replayed
    assert browse("alice").get("/policy?agent=desk&replay=desk.next.rules").status_code == 403
