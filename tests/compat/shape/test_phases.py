"""corral.compat.shape.phases: Shape's PhaseManager on corral's phase table, and agent.phase on a session."""

from __future__ import annotations

import pytest

import corral
from corral.compat.shape import (
    Agent,
    AgentPhase,
    Phase,
    PhaseError,
    PhaseManager,
    RuleViolation,
    ToolEffect,
)


def in_commit(agent: Agent) -> None:
    agent.phase.transition(Phase.DECIDE)


class TestPhaseManager:
    def test_it_starts_in_explore(self):
        assert PhaseManager().current is Phase.EXPLORE

    def test_explore_decide_commit_and_back(self):
        pm = PhaseManager()
        for target in (Phase.DECIDE, Phase.COMMIT, Phase.DECIDE, Phase.EXPLORE, Phase.DECIDE, Phase.COMMIT,
                       Phase.EXPLORE):
            pm.transition(target)
            assert pm.current is target

    def test_staying_put_is_allowed(self):
        pm = PhaseManager()
        pm.transition(Phase.EXPLORE)
        assert pm.current is Phase.EXPLORE

    def test_explore_cannot_skip_to_commit(self):
        pm = PhaseManager()
        with pytest.raises(PhaseError, match="decide") as refused:
            pm.transition(Phase.COMMIT)
        assert isinstance(refused.value, corral.PhaseError)  # a corral program catches it too
        assert pm.current is Phase.EXPLORE

    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            ((), {ToolEffect.READ}),
            ((Phase.DECIDE,), {ToolEffect.READ}),
            ((Phase.DECIDE, Phase.COMMIT), set(ToolEffect)),
        ],
    )
    def test_which_effects_each_phase_allows(self, path, allowed):
        pm = PhaseManager()
        for target in path:
            pm.transition(target)
        assert {e for e in ToolEffect if pm.allows_effect(e)} == allowed

    def test_phases_and_effects_by_name(self):
        pm = PhaseManager()
        pm.transition("decide")
        assert pm.current is Phase.DECIDE
        assert pm.allows_effect("read") and not pm.allows_effect("irreversible")

    def test_unknown_names_are_refused(self):
        pm = PhaseManager()
        with pytest.raises(PhaseError, match="unknown phase"):
            pm.transition("review")
        with pytest.raises(ValueError, match="unknown effect"):
            pm.allows_effect("destructive")

    def test_the_phase_changes_only_through_transition(self):
        pm = PhaseManager()
        with pytest.raises(AttributeError):
            pm.current = Phase.COMMIT  # type: ignore[misc]
        assert pm.current is Phase.EXPLORE

    def test_managers_are_independent(self):
        first, second = PhaseManager(), PhaseManager()
        first.transition(Phase.DECIDE)
        assert second.current is Phase.EXPLORE


class TestAgentPhase:
    def test_an_agent_starts_in_explore(self):
        assert Agent("a").phase.current is Phase.EXPLORE

    def test_explore_decide_commit_and_back(self):
        agent = Agent("a")
        agent.phase.transition(Phase.DECIDE)
        assert agent.phase.current is Phase.DECIDE
        agent.phase.transition(Phase.COMMIT)
        assert agent.phase.current is Phase.COMMIT
        agent.phase.transition(Phase.DECIDE)
        assert agent.phase.current is Phase.DECIDE
        agent.phase.transition(Phase.EXPLORE)
        assert agent.phase.current is Phase.EXPLORE

    def test_commit_cannot_skip_decide(self):
        agent = Agent("a")
        with pytest.raises(PhaseError):
            agent.phase.transition(Phase.COMMIT)
        with pytest.raises(PhaseError) as refused:
            agent.commit()
        assert isinstance(refused.value, corral.PhaseError)
        assert agent.phase.current is Phase.EXPLORE

    def test_which_effects_each_phase_allows(self):
        agent = Agent("a")
        assert agent.phase.allows_effect(ToolEffect.READ)
        assert not agent.phase.allows_effect(ToolEffect.REVERSIBLE)
        assert not agent.phase.allows_effect(ToolEffect.IRREVERSIBLE)
        agent.phase.transition(Phase.DECIDE)
        agent.phase.transition(Phase.COMMIT)
        assert all(agent.phase.allows_effect(e) for e in ToolEffect)

    def test_reads_in_explore_writes_refused(self):
        agent = Agent("a")
        agent.tool("read_plc", effect=ToolEffect.READ, fn=lambda **kw: {"value": 42})
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: {"ok": True})
        with agent.explore() as ctx:
            assert ctx.call("read_plc")["value"] == 42
            with pytest.raises(RuleViolation):
                ctx.call("write_plc")

    def test_decide_proposes_without_running_anything(self):
        agent = Agent("a")
        with agent.decide() as ctx:
            proposal = ctx.propose(speed=105)
        assert proposal["proposal"] == {"speed": 105}
        assert proposal["phase"] == "decide" and proposal["timestamp"]
        assert agent.traces == []  # a proposal is not a tool call
        plans = [t for t in agent.session.traces if t.kind == "plan"]
        assert plans[0].args == {"proposal": {"speed": 105}}  # but it is in the audit chain

    def test_commit_allows_writes(self):
        agent = Agent("a")
        agent.tool("write_plc", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: {"ok": True})
        in_commit(agent)
        with agent.commit() as tx:
            assert tx.call("write_plc", value=105) == {"ok": True}


    def test_agent_phase_is_a_phase_manager_over_the_session(self):
        agent = Agent("a")
        assert isinstance(agent.phase, PhaseManager) and isinstance(agent.phase, AgentPhase)
        agent.phase.transition(Phase.DECIDE)
        assert agent.session.phase == "decide"
        with pytest.raises(AttributeError):
            agent.phase.current = Phase.COMMIT  # type: ignore[misc]
