"""Several ``corral serve`` processes on one PostgreSQL store (DESIGN §13): any serves any session, a session
being run is leased (409 elsewhere), and when a server dies the others recover what it left — each
compensation exactly once — within twice the lease time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server.serving import Team, effects

LEASE = 2.0


def _wait_for(predicate: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - began


def test_an_approval_granted_on_b_resumes_a_session_started_on_a(serve: Any, pg_url: str, work: Path) -> None:
    a = serve(pg_url, "payer.yaml", lease=LEASE)
    b = serve(pg_url, "payer.yaml", lease=LEASE)
    team = Team(pg_url)
    alice, bob = team.add("alice", "user"), team.add("bob", "approver")
    with a.client(alice) as on_a, b.client(alice) as alice_on_b, b.client(bob) as bob_on_b:
        assert on_a.get("/v1/health").json()["store"] == "postgresql"
        sid = on_a.post("/v1/sessions", json={"agent": "payer"}).json()["id"]
        paused = on_a.post(f"/v1/sessions/{sid}/messages", json={"text": "Pay"}).json()
        assert paused["stop_reason"] == "awaiting_approval"
        assert [s["id"] for s in alice_on_b.get("/v1/sessions").json()["sessions"]] == [sid]
        request = bob_on_b.get("/v1/approvals").json()[0]
        assert bob_on_b.post(f"/v1/approvals/{request['id']}/approve").json()["status"] == "approved"
        resumed = alice_on_b.post(f"/v1/sessions/{sid}/resume").json()
        assert resumed["stop_reason"] == "end_turn" and resumed["answer"] == "Paid $500."
        assert on_a.get(f"/v1/sessions/{sid}").json()["stop_reason"] == "end_turn"
    assert effects(work) == ["pay 500"]


def test_b_recovers_what_a_killed_server_left_in_commit_exactly_once(serve: Any, pg_url: str, work: Path) -> None:
    a = serve(pg_url, "ledger.yaml", lease=LEASE)
    b = serve(pg_url, "ledger.yaml", lease=LEASE)
    token = Team(pg_url).add("alice", "user")
    on_a, on_b = a.client(token), b.client(token)
    sid = on_a.post("/v1/sessions", json={"agent": "ledger"}).json()["id"]

    def run_on_a() -> None:
        try:
            on_a.post(f"/v1/sessions/{sid}/messages", json={"text": "Book the room"}, timeout=60)
        except httpx.HTTPError:
            pass  # the server is killed under it

    runner = threading.Thread(target=run_on_a, daemon=True)
    runner.start()
    _wait_for(lambda: effects(work) == ["book room", "hold room"], 30, "the commit to be under way on A")
    busy = on_b.post(f"/v1/sessions/{sid}/messages", json={"text": "again"})
    assert busy.status_code == 409 and "another server" in busy.json()["error"]["message"]
    assert on_b.get(f"/v1/sessions/{sid}").json()["status"] == "running"

    a.kill()
    took = _wait_for(lambda: len(effects(work)) >= 4, 4 * LEASE, "B to compensate A's transaction")
    assert took <= 2 * LEASE + 0.5, f"recovered after {took:.2f}s; the lease is {LEASE}s"
    c = serve(pg_url, "ledger.yaml", lease=LEASE)  # a third server's recovery finds nothing left to do
    time.sleep(3 * LEASE)
    log = effects(work)
    assert log[:2] == ["book room", "hold room"]
    assert sorted(line.split()[0] for line in log[2:]) == ["unbook", "unhold"]  # each exactly once
    assert log[2].startswith("unhold room") and log[3].startswith("unbook room")  # newest first

    view = on_b.get(f"/v1/sessions/{sid}").json()
    assert view["status"] == "interrupted" and view["phase"] == "explore"
    traces = on_b.get(f"/v1/sessions/{sid}/traces").json()
    recovery = [t for t in traces if t.get("kind") == "recovery"]
    assert sorted(t["tool"] for t in recovery) == ["book", "hold"]
    assert all(t["outcome"]["status"] == "ok" for t in recovery)

    (work / "gate").touch()  # the hold no longer waits
    with c.client(token) as on_c:
        resumed = on_c.post(f"/v1/sessions/{sid}/resume", timeout=60)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["stop_reason"] == "end_turn"
    assert on_b.get(f"/v1/sessions/{sid}").json()["status"] == "idle"
    on_a.close()
    on_b.close()


def test_a_write_decided_on_a_is_finished_on_b(serve: Any, pg_url: str, work: Path) -> None:
    a = serve(pg_url, "gate.yaml", lease=LEASE)
    b = serve(pg_url, "gate.yaml", lease=LEASE)
    token = Team(pg_url).add("alice", "user")
    with a.client(token) as on_a, b.client(token) as on_b:
        assert on_a.post("/v1/check", json={"agent": "gate", "session": "cc", "tool": "Read",
                                             "args": {}}).json()["decision"] == "allowed"
        for phase in ("decide", "commit"):
            assert on_a.post("/v1/sessions/cc/phase", json={"phase": phase}).status_code == 200
        paid = on_a.post("/v1/check", json={"agent": "gate", "session": "cc", "tool": "pay",
                                             "args": {"amount": 20}}).json()
        assert paid["decision"] == "allowed"
        done = on_b.post(f"/v1/calls/{paid['call_id']}/finish", json={"result": {"paid": 20}})
        assert done.status_code == 200 and done.json()["status"] == "ok"
        assert on_a.post(f"/v1/calls/{paid['call_id']}/finish", json={"result": 1}).status_code == 409  # once
        read = on_a.post("/v1/check", json={"agent": "gate", "session": "cc", "tool": "Read", "args": {}}).json()
        elsewhere = on_b.post(f"/v1/calls/{read['call_id']}/finish", json={"result": "x"})
        assert elsewhere.status_code in (404, 409)  # a read is finished where it was decided
        assert on_a.post(f"/v1/calls/{read['call_id']}/finish", json={"result": "x"}).status_code == 200
        traces = on_b.get("/v1/sessions/cc/traces").json()
    pay = next(t for t in traces if t.get("tool") == "pay")
    assert pay["outcome"]["status"] == "ok" and pay["tx"]
