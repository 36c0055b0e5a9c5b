"""``corral serve`` end to end: a real uvicorn process, a real SQLite store, real HTTP (DESIGN §13)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server.serving import AGENTS, CORRAL, Team, effects

ROUTES = [("GET", "/v1/agents"), ("POST", "/v1/sessions"), ("GET", "/v1/sessions"), ("GET", "/v1/sessions/s1"),
          ("POST", "/v1/sessions/s1/messages"), ("POST", "/v1/sessions/s1/resume"), ("GET", "/v1/sessions/s1/traces"),
          ("POST", "/v1/sessions/s1/phase"), ("POST", "/v1/sessions/s1/plans"),
          ("GET", "/v1/traces/t1"), ("GET", "/v1/approvals"), ("POST", "/v1/approvals/a1/approve"),
          ("POST", "/v1/approvals/a1/deny"), ("POST", "/v1/check"), ("POST", "/v1/calls/c1/finish"),
          ("GET", "/v1/audit/verify"), ("GET", "/v1/policy?agent=payer")]


def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: "):])))
    return events


def start(client: httpx.Client, agent: str) -> str:
    answer = client.post("/v1/sessions", json={"agent": agent})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_health_needs_no_token_and_names_the_store(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    answer = httpx.get(f"{server.url}/v1/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ok" and answer.json()["store"] == "sqlite" and answer.json()["version"]
    assert "No principal can call this server yet" in server.output()
    assert "corral principals add alice --role user" in server.output()
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for method, path in ROUTES:
        template = {"s1": "{session_id}", "t1": "{trace_id}", "a1": "{approval_id}", "c1": "{call_id}"}
        bare = path.split("?")[0]
        for key, value in template.items():
            bare = bare.replace(f"/{key}", f"/{value}")
        assert method.lower() in spec["paths"][bare], (method, bare)


def test_every_route_but_health_needs_a_valid_token(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    alice = Team(sqlite_url).add("alice", "user")
    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer corral_not-a-token"}, {"Authorization": f"Basic {alice}"},
                        {"Authorization": "Bearer " + alice[:-2]}):
            answer = httpx.request(method, server.url + path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
            assert alice not in answer.text


def test_a_message_answers_what_corral_run_json_prints(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user")) as client:
        created = client.post("/v1/sessions", json={"agent": "browse"})
        assert created.status_code == 201
        session = created.json()
        assert session["agent"] == "browse" and session["principal"] == "alice" and session["phase"] == "explore"
        assert session["budget"] == {"limit": None, "spent": 0.0, "reserved": 0.0, "pct": 0.0, "gate": None}
        answer = client.post(f"/v1/sessions/{session['id']}/messages", json={"text": "Read the pages"})
    assert answer.status_code == 200, answer.text
    served = answer.json()
    cli = subprocess.run([CORRAL, "run", str(AGENTS / "browse.yaml"), "Read the pages", "--json", "--as", "alice",
                          "--store", f"sqlite:///{work}/cli.db"], capture_output=True, text=True, cwd=work, timeout=60)
    assert cli.returncode == 0, cli.stderr
    local = json.loads(cli.stdout)
    assert set(served) == set(local) == {"session", "stop_reason", "answer", "budget", "traces"}
    assert served["session"] == session["id"]
    assert (served["stop_reason"], served["answer"]) == (local["stop_reason"], local["answer"]) == \
        ("end_turn", "Read both pages.")
    assert served["budget"] == local["budget"]

    def shape(traces: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(t.get("kind"), t.get("tool"), t.get("decision"), t.get("principal"), sorted(t)) for t in traces]

    assert shape(served["traces"]) == shape(local["traces"])


def test_events_stream_as_they_happen_and_end_with_done(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    with server.client(Team(sqlite_url).add("alice", "user")) as client:
        sid = start(client, "browse")
        began = time.monotonic()
        arrivals: list[tuple[str, float]] = []
        events: list[tuple[str, Any]] = []
        with client.stream("POST", f"/v1/sessions/{sid}/messages", json={"text": "Read the pages"},
                           headers={"Accept": "text/event-stream"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    events.append((kind, json.loads(line[6:])))
                    arrivals.append((kind, time.monotonic() - began))
        final = client.get(f"/v1/sessions/{sid}").json()
    kinds = [k for k, _ in events]
    assert kinds[0] == "model_text" and kinds[-1] == "done"
    assert kinds.count("done") == 1 and "tool_call" in kinds and "budget" in kinds
    first_call = kinds.index("tool_call")
    call = events[first_call][1]
    assert call["tool"] == "browse" and call["decision"] == "allowed"
    assert call["trace"]["tool"] == "browse" and call["trace"]["checks"]  # the call's proof trace
    # the first call arrived while the run went on (each page takes a second), not all at the end
    assert arrivals[first_call][1] < arrivals[-1][1] - 0.5
    done = events[-1][1]
    assert done["stop_reason"] == "end_turn" and done["answer"] == "Read both pages." and done["session"] == sid
    assert final["stop_reason"] == "end_turn" and final["status"] == "idle"
    assert next(m["role"] for m in final["transcript"]) == "user"


def test_a_client_that_goes_away_does_not_stop_the_run_nor_lose_its_traces(serve: Any, sqlite_url: str,
                                                                           work: Path) -> None:
    server = serve(sqlite_url)
    with server.client(Team(sqlite_url).add("alice", "user")) as client:
        sid = start(client, "browse")
        with client.stream("POST", f"/v1/sessions/{sid}/messages", json={"text": "Read the pages"},
                           headers={"Accept": "text/event-stream"}) as response:
            for line in response.iter_lines():
                if line.startswith("event: model_text"):
                    break  # and the client hangs up, with the first page still being read
        busy = client.post(f"/v1/sessions/{sid}/messages", json={"text": "again"})
        assert busy.status_code == 409 and "being run" in busy.json()["error"]["message"]
        deadline = time.monotonic() + 20
        while client.get(f"/v1/sessions/{sid}").json()["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        view = client.get(f"/v1/sessions/{sid}").json()
        traces = client.get(f"/v1/sessions/{sid}/traces").json()
    assert view["status"] == "idle" and view["stop_reason"] == "end_turn"
    assert [t["args"]["page"] for t in traces if t.get("tool") == "browse"] == ["one", "two"]
    assert all(t["outcome"]["status"] == "ok" for t in traces if t.get("tool") == "browse")
    assert effects(work) == ["browse one", "browse two"]


def test_sessions_are_listed_newest_first_per_principal_and_paged(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user")) as alice, server.client(team.add("bob", "user")) as bob, \
            server.client(team.add("carol", "auditor")) as carol:
        mine = [start(alice, "browse") for _ in range(5)]
        theirs = start(bob, "payer")
        page = alice.get("/v1/sessions", params={"limit": 2}).json()
        assert [s["id"] for s in page["sessions"]] == mine[::-1][:2]
        rest = alice.get("/v1/sessions", params={"limit": 10, "after": page["next"]}).json()
        assert [s["id"] for s in rest["sessions"]] == mine[::-1][2:] and rest["next"] is None
        assert all(s["status"] == "new" and s["principal"] == "alice" for s in rest["sessions"])
        assert [s["id"] for s in bob.get("/v1/sessions").json()["sessions"]] == [theirs]
        assert alice.get("/v1/sessions", params={"principal": "bob"}).json()["sessions"] == []
        everyone = carol.get("/v1/sessions").json()["sessions"]
        assert [s["id"] for s in everyone] == [theirs, *mine[::-1]]
        assert [s["id"] for s in carol.get("/v1/sessions", params={"agent": "payer"}).json()["sessions"]] == [theirs]
        assert [s["id"] for s in carol.get("/v1/sessions", params={"principal": "bob"}).json()["sessions"]] == \
            [theirs]
        bad = alice.get("/v1/sessions", params={"after": "not-a-cursor!"})
        assert bad.status_code == 400 and "cursor" in bad.json()["error"]["message"]


def test_another_principals_session_is_not_found_auditors_read_admins_act(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    clients = {name: server.client(team.add(name, *roles)) for name, roles in
               (("alice", ("user",)), ("bob", ("user", "approver")), ("carol", ("auditor",)), ("dave", ("admin",)))}
    try:
        sid = start(clients["alice"], "browse")
        assert clients["alice"].post(f"/v1/sessions/{sid}/messages", json={"text": "go"}).status_code == 200
        for path in (f"/v1/sessions/{sid}", f"/v1/sessions/{sid}/traces"):
            answer = clients["bob"].get(path)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
            assert clients["carol"].get(path).status_code == 200
            assert clients["dave"].get(path).status_code == 200
        trace = clients["alice"].get(f"/v1/sessions/{sid}/traces").json()[1]["id"]
        assert clients["bob"].get(f"/v1/traces/{trace}").status_code == 404
        detail = clients["carol"].get(f"/v1/traces/{trace}").json()
        assert detail["id"] == trace and detail["explain"][0].startswith(detail["tool"])
        # bob cannot even tell the session exists; the auditor may read it but change nothing
        assert clients["bob"].post(f"/v1/sessions/{sid}/messages", json={"text": "x"}).status_code == 404
        assert clients["carol"].post(f"/v1/sessions/{sid}/messages", json={"text": "x"}).status_code == 403
        assert clients["carol"].post(f"/v1/sessions/{sid}/resume").status_code == 403
        assert clients["carol"].post("/v1/sessions", json={"agent": "browse"}).status_code == 403
        assert clients["carol"].post("/v1/check", json={"agent": "gate", "session": "c1", "tool": "Read",
                                                        "args": {}}).status_code == 403
        assert clients["carol"].get("/v1/audit/verify").json() == {"ok": True, "checked": 1, "problems": []}
        assert clients["alice"].get("/v1/audit/verify").status_code == 403
        assert clients["dave"].post(f"/v1/sessions/{sid}/resume").status_code == 200
        policy = clients["carol"].get("/v1/policy", params={"agent": "browse"}).json()
        assert [r["source"].rsplit("/", 1)[-1] for r in policy["rules"]] == \
            ["payer.rules:1", "payer.rules:2", "payer.rules:3"]
        assert clients["alice"].get("/v1/policy", params={"agent": "browse"}).status_code == 403
        assert clients["carol"].get("/v1/policy", params={"agent": "nope"}).status_code == 404
        # someone with the database deletes the session's whole chain: the audit says so, it is no fresh session
        path = sqlite_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("DELETE FROM audit WHERE session_id = ?", (sid,))
            db.execute("DELETE FROM heads WHERE session_id = ?", (sid,))
        report = clients["carol"].get("/v1/audit/verify").json()
        assert not report["ok"] and [p["session"] for p in report["problems"]] == [sid]
        assert "missing" in report["problems"][0]["what"]
    finally:
        for client in clients.values():
            client.close()


def test_four_eyes_then_resume_runs_the_approved_call_once(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user", "approver")) as alice, \
            server.client(team.add("bob", "approver")) as bob, server.client(team.add("erin", "user")) as erin:
        sid = start(alice, "payer")
        paused = alice.post(f"/v1/sessions/{sid}/messages", json={"text": "Pay the invoice"}).json()
        assert paused["stop_reason"] == "awaiting_approval"
        assert alice.get(f"/v1/sessions/{sid}").json()["status"] == "awaiting_approval"
        queue = bob.get("/v1/approvals").json()
        assert [(a["session"], a["tool"], a["args"], a["principal"]) for a in queue] == \
            [(sid, "pay", {"amount": 500}, "alice")]
        assert erin.get("/v1/approvals").json() == []  # not hers, and she is no approver
        assert [a["id"] for a in alice.get("/v1/approvals").json()] == [queue[0]["id"]]  # her own request
        own = alice.post(f"/v1/approvals/{queue[0]['id']}/approve", json={"reason": "me"})
        assert own.status_code == 403 and "four eyes" in own.json()["error"]["message"]
        assert erin.post(f"/v1/approvals/{queue[0]['id']}/approve").status_code == 403
        decided = bob.post(f"/v1/approvals/{queue[0]['id']}/approve", json={"reason": "invoice checked"})
        assert decided.status_code == 200
        assert decided.json() == {"id": queue[0]["id"], "status": "approved", "approver": "bob"}
        again = bob.post(f"/v1/approvals/{queue[0]['id']}/deny")
        assert again.status_code == 409
        assert bob.post("/v1/approvals/no-such-request/approve").status_code == 404
        assert effects(work) == []
        resumed = alice.post(f"/v1/sessions/{sid}/resume").json()
        assert resumed["stop_reason"] == "end_turn" and resumed["answer"] == "Paid $500."
        pay = [t for t in resumed["traces"] if t.get("tool") == "pay"]
        assert [t["decision"] for t in pay] == ["pending", "approved"]
        assert alice.post(f"/v1/sessions/{sid}/resume").json()["stop_reason"] == "end_turn"
    assert effects(work) == ["pay 500"]  # exactly once, resumed twice


def test_principal_roles_reach_the_rules(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    team = Team(sqlite_url)
    with server.client(team.add("alice", "user")) as alice, server.client(team.add("dave", "admin")) as dave:
        body = {"agent": "payer", "tool": "browse", "args": {"page": "secret"}}
        refused = alice.post("/v1/check", json={**body, "session": "alice-1"}).json()
        assert refused["decision"] == "blocked" and "payer.rules:3" in refused["reason"]
        allowed = dave.post("/v1/check", json={**body, "session": "dave-1"}).json()
        assert allowed["decision"] == "allowed"
        assert allowed["trace"]["principal"] == "dave"
        rule = next(c for c in allowed["trace"]["checks"] if c.get("check") == "rule" and "secret" in c["rule"])
        assert rule["matched"] is False and "admin" in json.dumps(rule)


def test_a_revoked_token_fails_at_once(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    token = Team(sqlite_url).add("alice", "user")
    with server.client(token) as client:
        assert client.get("/v1/agents").status_code == 200
        revoked = subprocess.run([CORRAL, "principals", "revoke", "ALICE", "--store", sqlite_url, "--json"],
                                 capture_output=True, text=True, timeout=30)
        assert revoked.returncode == 0, revoked.stderr
        assert json.loads(revoked.stdout)["name"] == "alice"
        answer = client.get("/v1/agents")
        assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]


def test_agents_lists_models_tools_and_policy_hashes(serve: Any, sqlite_url: str) -> None:
    server = serve(sqlite_url)
    with server.client(Team(sqlite_url).add("alice", "user")) as client:
        agents = {a["name"]: a for a in client.get("/v1/agents").json()}
        assert set(agents) == {"payer", "browse", "ledger", "gate"}
        assert agents["payer"]["model"] == "scripted" and agents["gate"]["model"] is None
        tools = {t["name"]: t["effect"] for t in agents["payer"]["tools"]}
        assert tools["pay"] == "reversible" and tools["browse"] == "read" and tools["begin_commit"] == "read"
        assert len(agents["payer"]["policy_sha256"]) == 64
        refused = client.post("/v1/sessions", json={"agent": "gate"})
        assert refused.status_code == 409 and "no model" in refused.json()["error"]["message"]
        unknown = client.post("/v1/sessions", json={"agent": "nobody"})
        assert unknown.status_code == 404 and "payer" in unknown.json()["error"]["message"]
