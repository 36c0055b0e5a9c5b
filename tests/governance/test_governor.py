import asyncio
import threading

import pytest

from corral import Blocked, ConfigError, Governor, RuleSyntaxError


def test_check_is_a_dry_run(clock):
    calls = []
    gov = Governor(budget=1, rules="BLOCK send WHEN arg.to MATCHES \"*@evil.com\"", approver=lambda r: calls.append(r))
    gov.register("send", lambda to: calls.append(to), effect="irreversible", cost=0.5)
    gov.register("look", lambda: None, effect="read", cost=0.5)
    s = gov.session("alice")
    d = gov.check("send", {"to": "x@evil.com"}, session=s)
    assert d.decision == "blocked" and "evil" in d.reason
    d = gov.check("look", {}, session=s)
    assert d.decision == "allowed"
    assert calls == [] and s.traces == [] and s.budget.spent == 0 and s.budget.reserved == 0
    assert gov.check("nope", session=s).decision == "blocked"


def test_decorated_tools_are_governed_when_called_directly():
    gov = Governor(rules="BLOCK lookup WHEN arg.order_id IS secret")

    @gov.tool(effect="read")
    def lookup(order_id: str) -> str:
        return order_id.upper()

    @gov.tool(effect="irreversible")
    def wipe() -> None:
        raise AssertionError("must not run")

    assert lookup("a1") == "A1"
    assert lookup.fn("secret") == "SECRET"  # the raw function, on purpose
    with pytest.raises(Blocked):
        lookup("secret")
    with pytest.raises(Blocked, match="not allowed in explore"):
        wipe()
    assert [t.decision for t in gov.default_session.traces] == ["allowed", "blocked", "blocked"]


def test_rule_syntax_errors_surface_at_construction():
    with pytest.raises(RuleSyntaxError) as info:
        Governor(rules="BLOCK x WHEN\nALLOW y")
    assert info.value.line == 1


def test_rules_can_be_added_and_take_effect():
    gov = Governor()
    gov.register("x", lambda: 1, effect="read")
    s = gov.session()
    s.call("x")
    gov.rules("BLOCK x")
    with pytest.raises(Blocked):
        s.call("x")


def test_rules_from_a_path(tmp_path):
    path = tmp_path / "desk.rules"
    path.write_text("BLOCK x WHEN arg.n ABOVE 3\n")
    gov = Governor(rules=path)
    gov.register("x", lambda n: n, effect="read")
    with pytest.raises(Blocked) as info:
        gov.session().call("x", n=4)
    assert any(c.get("source") == f"{path}:1" for c in info.value.trace.checks)
    with pytest.raises(ConfigError, match="rules file"):
        Governor(rules=tmp_path / "missing.rules")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"agent": ""}, "agent"),
        ({"approver": 3}, "approver must be callable"),
        ({"clock": "now"}, "clock must be callable"),
        ({"phases": "yes"}, "phases"),
        ({"store": "ftp://x"}, "unknown scheme"),
        ({"rules": 42}, "rules must be"),
        ({"approval_ttl": -1}, "approval_ttl"),
    ],
)
def test_constructor_validates(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Governor(**kwargs)


def test_arguments_that_do_not_fit_are_blocked_before_running():
    gov = Governor()
    gov.register("x", lambda n: n, effect="read")
    with pytest.raises(Blocked, match="arguments do not fit x"):
        gov.session().call("x", m=1)


def test_signature_defaults_are_visible_to_rules():
    gov = Governor(rules="BLOCK send WHEN arg.priority IS high")
    gov.register("send", lambda to, priority="high": to, effect="read")
    with pytest.raises(Blocked):
        gov.session().call("send", to="x")


@pytest.mark.parametrize("fault", ["clock", "rule", "store"])
def test_internal_faults_block_and_leave_a_trace(fault, clock):
    ran = []
    when = clock
    if fault == "clock":
        def when():
            raise OSError("clock is gone")
    gov = Governor(clock=when, budget=10, rules="BLOCK x WHEN arg.n.deep ABOVE 1")
    gov.register("x", lambda n: ran.append(n), effect="read")
    s = gov.session() if fault != "clock" else None
    if fault == "clock":
        gov._clock = None
        s = gov.session()
        gov._clock = when
    if fault == "rule":
        class Exploding:
            sha256 = "x"
            require_plan = False
            default = "allow"

            def evaluate(self, facts):
                raise RuntimeError("rule engine exploded")

        gov._policy = Exploding()
    if fault == "store":
        def broken(*a, **k):
            raise OSError("disk full")

        gov.store.usage = broken
    with pytest.raises(Blocked, match="governance fault") as info:
        s.call("x", n={"deep": 0})
    assert ran == []
    assert info.value.trace.decision == "blocked"
    if fault != "store":
        assert s.traces[-1].decision == "blocked"


def test_write_decision_that_cannot_be_stored_blocks_before_the_call():
    gov = Governor(phases=False)
    ran = []
    gov.register("w", lambda: ran.append(1), effect="irreversible")
    s = gov.session()

    def broken(*a, **k):
        raise OSError("disk full")

    gov.store.append = broken
    with pytest.raises(Blocked, match="could not be stored"):
        s.call("w")
    assert ran == []


def test_many_threads_share_one_budget_exactly():
    gov = Governor(budget=5, gates={"degrade": 1, "force_decide": 1, "stop": 1})
    gov.register("q", lambda: None, effect="read", cost=0.01)
    s = gov.session()
    ok, blocked = [], []

    def worker():
        for _ in range(100):
            try:
                s.call("q")
                ok.append(1)
            except Blocked:
                blocked.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 500 and len(blocked) == 300
    assert s.budget.spent == 5.0
    assert len([t for t in s.traces if t.decision == "allowed"]) == 500


def test_many_tasks_on_async_tools():
    gov = Governor()

    async def fetch(i):
        await asyncio.sleep(0)
        return i * 2

    gov.register("fetch", fetch, effect="read")
    s = gov.session()

    async def main():
        return await asyncio.gather(*(s.acall("fetch", i=i) for i in range(50)))

    assert asyncio.run(main()) == [i * 2 for i in range(50)]
    assert len(s.traces) == 50


def test_sync_call_of_async_tool_inside_a_running_loop():
    gov = Governor()

    async def fetch():
        return 7

    gov.register("fetch", fetch, effect="read")
    s = gov.session()

    async def main():
        return s.call("fetch")

    assert asyncio.run(main()) == 7


def test_resumed_session_keeps_phase_plan_budget_and_traces():
    gov = Governor(budget=2)
    gov.register("q", lambda: None, effect="read", cost=0.5)
    s = gov.session("alice", roles=["agent"])
    s.call("q")
    with s.decide():
        plan = s.propose([{"tool": "q", "args": {}}])
    again = gov.session(id=s.id)
    assert (again.principal, again.roles, again.phase) == ("alice", ("agent",), "decide")
    assert again.plan.id == plan.id and again.plan.sha256 == plan.sha256
    assert again.budget.spent == 0.5
    assert [t.id for t in again.traces] == [t.id for t in s.traces]
    with pytest.raises(ConfigError, match="no session"):
        gov.session(id="missing")
    other = Governor(agent="someone-else", store=gov.store)
    with pytest.raises(ConfigError, match="belongs to agent"):
        other.session(id=s.id)


def test_calls_window_rule_counts_executed_calls(clock):
    gov = Governor(rules="BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 2", clock=clock, phases=False)
    gov.register("send_a", lambda: None, effect="read")
    gov.register("send_b", lambda: None, effect="read")
    s = gov.session()
    s.call("send_a")
    s.call("send_b")
    with pytest.raises(Blocked):
        s.call("send_a")
    clock.advance(minutes=61)
    s.call("send_a")


def test_session_with_a_chosen_id_is_created_then_resumed():
    gov = Governor()
    gov.register("q", lambda: 1, effect="read")
    s = gov.session("alice", id="claude-123", create=True)
    s.call("q")
    again = gov.session(id="claude-123", create=True)
    assert again.id == "claude-123" and again.principal == "alice" and len(again.traces) == 1
    with pytest.raises(ConfigError, match="session id"):
        gov.session(id="", create=True)
