"""``POST /v1/check`` and ``/v1/calls/{id}/finish``: the decision point decides as ``begin_call`` does."""

from __future__ import annotations

from typing import Any

from corral.store import open_store
from tests.server.serving import Team


def test_check_decides_and_finish_records_the_outcome(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user")) as alice, server.client(team.add("bob", "user")) as bob:
        read = alice.post("/v1/check", json={"agent": "gate", "session": "cc-1", "tool": "Read",
                                              "args": {"file_path": "README.md"}}).json()
        assert read["decision"] == "allowed" and read["trace"]["effect"] == "read"
        assert read["trace"]["principal"] == "alice" and read["call_id"] == read["trace"]["id"]
        flagged = alice.post("/v1/check", json={"agent": "gate", "session": "cc-1", "tool": "Read",
                                                 "args": {"file_path": "prod.env"}}).json()
        assert flagged["decision"] == "flagged"
        refused = alice.post("/v1/check", json={"agent": "gate", "session": "cc-1", "tool": "Bash",
                                                 "args": {"command": "rm -rf /"}}).json()
        assert refused["decision"] == "blocked" and "no recursive deletes" in refused["reason"]
        assert refused["trace"]["checks"]
        # outside commit a write is refused by the phase, as the kernel refuses it
        phase = alice.post("/v1/check", json={"agent": "gate", "session": "cc-1", "tool": "Bash",
                                               "args": {"command": "ls"}}).json()
        assert phase["decision"] == "blocked" and "explore" in phase["reason"]
        assert bob.post(f"/v1/calls/{read['call_id']}/finish", json={"result": "x"}).status_code == 404
        done = alice.post(f"/v1/calls/{read['call_id']}/finish", json={"result": {"lines": 12}})
        assert done.status_code == 200 and done.json() == {"call_id": read["call_id"], "status": "ok"}
        assert alice.post(f"/v1/calls/{read['call_id']}/finish", json={"result": 1}).status_code == 409
        failed = alice.post(f"/v1/calls/{flagged['call_id']}/finish", json={"error": "permission denied"})
        assert failed.json()["status"] == "error"
        assert alice.post(f"/v1/calls/{refused['call_id']}/finish", json={"result": 1}).status_code == 409
        assert alice.post("/v1/calls/nothing/finish", json={"result": 1}).status_code == 404
        # the session is alice's: bob's check under its id is not found
        assert bob.post("/v1/check", json={"agent": "gate", "session": "cc-1", "tool": "Read",
                                            "args": {}}).status_code == 404
        clash = alice.post("/v1/check", json={"agent": "payer", "session": "cc-1", "tool": "browse",
                                               "args": {"page": "x"}})
        assert clash.status_code == 409 and "belongs to agent 'gate'" in clash.json()["error"]["message"]
        traces = alice.get("/v1/sessions/cc-1/traces").json()
    store = open_store(sqlite_url)
    try:
        assert store.get_session("cc-1")["principal"] == "alice"
    finally:
        store.close()
    by_id = {t["id"]: t for t in traces}
    assert by_id[read["call_id"]]["outcome"]["status"] == "ok"
    assert by_id[flagged["call_id"]]["outcome"]["status"] == "error"
    assert by_id[flagged["call_id"]]["outcome"]["error"] == "permission denied"
    assert by_id[refused["call_id"]]["decision"] == "blocked"


def test_an_approval_at_the_decision_point_waits_for_another_principal(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user", "approver")) as alice, \
            server.client(team.add("bob", "approver")) as bob:
        opened = alice.post("/v1/check", json={"agent": "gate", "session": "cc-2", "tool": "pay",
                                                "args": {"amount": 50}}).json()
        assert opened["decision"] == "blocked"  # a write in explore
        store = open_store(sqlite_url)
        try:
            record = store.get_session("cc-2")
        finally:
            store.close()
        assert record["phase"] == "explore"
        import subprocess

        from tests.server.serving import AGENTS, CORRAL

        for target in ("decide", "commit"):
            moved = subprocess.run([CORRAL, "phase", "cc-2", target, "--agent", str(AGENTS / "gate.yaml"),
                                    "--store", sqlite_url], capture_output=True, text=True, timeout=60)
            assert moved.returncode == 0, moved.stderr
        small = alice.post("/v1/check", json={"agent": "gate", "session": "cc-2", "tool": "pay",
                                               "args": {"amount": 50}}).json()
        assert small["decision"] == "allowed", small
        assert alice.post(f"/v1/calls/{small['call_id']}/finish", json={"result": {"paid": 50}}).status_code == 200
        big = alice.post("/v1/check", json={"agent": "gate", "session": "cc-2", "tool": "pay",
                                             "args": {"amount": 500}}).json()
        assert big["decision"] == "pending" and big["approval"]
        assert alice.post(f"/v1/approvals/{big['approval']}/approve").status_code == 403
        assert bob.post(f"/v1/approvals/{big['approval']}/approve").json()["status"] == "approved"
        again = alice.post("/v1/check", json={"agent": "gate", "session": "cc-2", "tool": "pay",
                                               "args": {"amount": 500}}).json()
        assert again["decision"] == "approved"
        once = alice.post("/v1/check", json={"agent": "gate", "session": "cc-2", "tool": "pay",
                                              "args": {"amount": 500}}).json()
        assert once["decision"] == "pending"  # the approval was for one call


def test_phases_and_plans_move_through_the_api_with_the_kernels_rules(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user")) as alice, server.client(team.add("carol", "auditor")) as carol:
        first = alice.post("/v1/check", json={"agent": "gate", "session": "cc-3", "tool": "Read", "args": {}})
        assert first.json()["decision"] == "allowed"
        early = alice.post("/v1/sessions/cc-3/phase", json={"phase": "commit"})
        assert early.status_code == 409 and "decide" in early.json()["error"]["message"]  # explore→commit refused
        assert alice.post("/v1/sessions/cc-3/phase", json={"phase": "decide"}).json()["phase"] == "decide"
        plan = alice.post("/v1/sessions/cc-3/plans", json={"steps": [{"tool": "pay", "args": {"amount": "*"}}]})
        assert plan.status_code == 201 and plan.json()["steps"] == 1 and len(plan.json()["sha256"]) == 64
        moved = alice.post("/v1/sessions/cc-3/phase", json={"phase": "commit"}).json()
        assert moved["phase"] == "commit" and moved["plan"] == plan.json()["id"] and moved["transaction"]
        paid = alice.post("/v1/check", json={"agent": "gate", "session": "cc-3", "tool": "pay",
                                              "args": {"amount": 20}}).json()
        assert paid["decision"] == "allowed" and paid["trace"]["tx"] == moved["transaction"]
        assert carol.post("/v1/sessions/cc-3/phase", json={"phase": "explore"}).status_code == 403
        assert alice.post("/v1/sessions/cc-3/phase", json={"phase": "sideways"}).status_code == 422
        assert alice.post("/v1/sessions/nope/phase", json={"phase": "decide"}).status_code == 404
