"""The command line as a person and a script use it: exit codes, --json, errors that name the problem."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def desk(tmp_path, monkeypatch):
    target = tmp_path / "desk"
    shutil.copytree(ROOT / "examples" / "refund_desk", target, ignore=shutil.ignore_patterns(".corral"))
    monkeypatch.chdir(target)
    return target


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_teaches_with_examples():
    out = invoke("--help")
    assert out.exit_code == 0 and "Examples:" in out.output and "corral run" in out.output
    for command in ("run", "validate", "approvals", "audit", "why", "recover", "sessions"):
        sub = invoke(command, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.output, command


def test_validate_reports_every_problem_with_its_path(tmp_path):
    bad = tmp_path / "agent.yaml"
    bad.write_text(
        "name: x\nmodel: {provider: scripted, script: missing.yaml, max_tokens: -5}\n"
        "tools:\n  - {python: 'nomodule:fn', effect: writey}\n  - {builtin: teleport}\nlimitz: 3\n"
    )
    out = invoke("validate", str(bad), "--json")
    assert out.exit_code == 1
    problems = {p["path"]: p["message"] for p in json.loads(out.output)["problems"]}
    assert "model.max_tokens" in problems and "-5" in problems["model.max_tokens"]
    assert "tools[0].effect" in problems and "writey" in problems["tools[0].effect"]
    assert "tools[1].builtin" in problems
    assert "limitz" in problems and "unknown key" in problems["limitz"]


def test_validate_semantic_problems(tmp_path):
    (tmp_path / "bad.rules").write_text("BLOCK x WHEN colour IS red\n")
    (tmp_path / "tools.py").write_text("def f():\n    pass\n")
    (tmp_path / "agent.yaml").write_text(
        "name: x\nmodel: {provider: scripted, script: nope.yaml}\n"
        "tools:\n  - {python: 'tools:f', effect: reversible}\n  - {python: 'tools:g', effect: read}\n"
        "governance: {rules: bad.rules}\n"
    )
    out = invoke("validate", str(tmp_path / "agent.yaml"))
    assert out.exit_code == 1
    text = out.output
    assert "model.script: file not found" in text
    assert "tools[0].compensate" in text and "no compensation" in text
    assert "tools[1].python" in text and "has no 'g'" in text
    assert "governance.rules" in text and "bad.rules:1:" in text


def test_validate_accepts_the_example(desk):
    out = invoke("validate", "agent.yaml")
    assert out.exit_code == 0 and "valid agent 'refund-desk'" in out.output


def test_run_json_pause_approve_resume_verify_why(desk):
    first = invoke("run", "agent.yaml", "Refund A1", "--json")
    assert first.exit_code == 3
    result = json.loads(first.stdout)
    assert set(result) == {"session", "stop_reason", "answer", "budget", "traces"}
    assert result["stop_reason"] == "awaiting_approval"
    assert set(result["budget"]) == {"limit", "spent", "reserved", "pct", "gate"}
    pending = json.loads(invoke("approvals", "list", "--agent", "agent.yaml", "--json").stdout)
    (request,) = pending
    assert {"id", "session", "tool", "args", "expires"} <= set(request)
    own = invoke("approvals", "approve", request["id"], "--as", request.get("principal") or "x", "--agent",
                 "agent.yaml")
    assert own.exit_code == 1 and "own request" in own.output
    assert invoke("approvals", "approve", request["id"], "--as", "bob", "--agent", "agent.yaml").exit_code == 0
    again = invoke("approvals", "approve", request["id"], "--as", "bob", "--agent", "agent.yaml")
    assert again.exit_code == 1 and "not pending" in again.output
    second = invoke("run", "agent.yaml", "--session", request["session"], "--json")
    assert second.exit_code == 0, second.output
    done = json.loads(second.stdout)
    assert done["stop_reason"] == "end_turn" and done["session"] == request["session"]
    assert invoke("audit", "verify", "--agent", "agent.yaml").exit_code == 0
    trace = next(t for t in done["traces"] if t["tool"] == "issue_refund" and t["decision"] == "approved")
    why = invoke("why", trace["id"], "--agent", "agent.yaml")
    assert why.exit_code == 0 and "approved because refunds over $100 need a human" in why.output
    sessions = json.loads(invoke("sessions", "list", "--agent", "agent.yaml", "--json").stdout)
    assert [s["id"] for s in sessions] == [request["session"]]
    export = invoke("audit", "export", "--agent", "agent.yaml")
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(lines) > 10 and all("hash" in line for line in lines)


def test_audit_verify_names_the_first_tampered_record(desk):
    result = json.loads(invoke("run", "agent.yaml", "Refund A1", "--json").stdout)
    db = desk / ".corral" / "corral.db"
    con = sqlite3.connect(db)
    seq, body = con.execute("select seq, record from audit where session_id = ? order by seq limit 1 offset 3",
                            (result["session"],)).fetchone()
    record = json.loads(body)
    record["reason"] = "nothing to see here"
    con.execute("update audit set record = ? where session_id = ? and seq = ?",
                (json.dumps(record), result["session"], seq))
    con.commit()
    con.close()
    out = invoke("audit", "verify", "--agent", "agent.yaml", "--json")
    assert out.exit_code == 1
    (report,) = json.loads(out.stdout)
    assert report["session"] == result["session"] and report["ok"] is False
    assert report["bad_index"] == 3 and report["bad_record"] == record["id"]


def test_run_errors_have_exit_code_1(tmp_path):
    (tmp_path / "agent.yaml").write_text("name: x\n")
    out = invoke("run", str(tmp_path / "agent.yaml"), "hi", "--json")
    assert out.exit_code == 1 and "model" in out.output
    missing = invoke("run", str(ROOT / "examples" / "refund_desk" / "agent.yaml"), "--session", "nope",
                     "--store", f"sqlite:///{tmp_path}/x.db", "--json")
    assert missing.exit_code == 1 and "no session 'nope'" in missing.output


def test_doctor_reports_isolation():
    out = invoke("doctor", "--json")
    assert out.exit_code == 0
    report = json.loads(out.stdout)
    assert report["sandbox"]["isolation"] in ("bubblewrap", "subprocess")


def test_audit_verify_detects_deleted_and_truncated_records(desk):
    result = json.loads(invoke("run", "agent.yaml", "Refund A1", "--json").stdout)
    db = desk / ".corral" / "corral.db"
    con = sqlite3.connect(db)
    con.execute("delete from audit where session_id = ? and seq = (select max(seq) from audit where session_id = ?)",
                (result["session"], result["session"]))
    con.commit()
    out = invoke("audit", "verify", "--agent", "agent.yaml", "--json")
    assert out.exit_code == 1 and "truncated" in json.loads(out.stdout)[0]["why"]
    con.execute("delete from audit where session_id = ? and seq = 2", (result["session"],))
    con.commit()
    con.close()
    out = invoke("audit", "verify", "--agent", "agent.yaml", "--json")
    (report,) = json.loads(out.stdout)
    assert out.exit_code == 1 and report["bad_index"] == 1 and "deleted or reordered" in report["why"]
