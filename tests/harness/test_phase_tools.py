"""The phase tools as a model calls them: each moves the run's session, with the session's own rules."""

from pathlib import Path

import pytest

from corral import Governor, PhaseError
from corral.harness.context import CURRENT, RunContext
from corral.harness.phase_tools import (
    PHASE_TOOLS,
    abort_commit,
    back_to_explore,
    begin_commit,
    begin_decide,
    finish_commit,
    propose_plan,
)


@pytest.fixture
def world(tmp_path: Path):
    gov = Governor(agent="phases")
    log: list[str] = []
    gov.register("refund", lambda order_id: log.append(f"refund {order_id}"), effect="reversible",
                 compensate=lambda call: log.append(f"void {call.args['order_id']}"))
    gov.register("email", lambda to: log.append(f"email {to}"), effect="irreversible")
    session = gov.session("alice")
    token = CURRENT.set(RunContext(harness=None, session=session, workspace=tmp_path))
    yield gov, session, log
    CURRENT.reset(token)
    gov.close()


def test_every_phase_tool_is_offered_by_name():
    assert sorted(PHASE_TOOLS) == ["abort_commit", "back_to_explore", "begin_commit", "begin_decide",
                                   "finish_commit", "propose_plan"]


def test_decide_plan_commit_and_finish(world):
    gov, session, log = world
    assert begin_decide() == {"phase": "decide"}
    plan = propose_plan([{"tool": "refund", "args": {"order_id": "A1"}}, {"tool": "email", "args": {"to": "*"}}])
    assert plan["steps"] == 2 and session.plan.id == plan["plan_id"]
    opened = begin_commit()
    assert opened["phase"] == "commit" and opened["plan_id"] == plan["plan_id"]
    session.open_transaction.call("refund", order_id="A1")
    session.open_transaction.call("email", to="bob")
    done = finish_commit()
    assert done["committed"] and [s["tool"] for s in done["steps"]] == ["refund", "email"]
    assert log == ["refund A1", "email bob"] and session.open_transaction is None


def test_abort_compensates_what_ran(world):
    _, session, log = world
    begin_decide()
    propose_plan([{"tool": "refund", "args": {"order_id": "*"}}])
    begin_commit()
    session.open_transaction.call("refund", order_id="A1")
    assert abort_commit("changed my mind")["aborted"] is True
    assert log == ["refund A1", "void A1"]


def test_back_to_explore_is_refused_while_a_commit_is_open(world):
    begin_decide()
    propose_plan([{"tool": "refund", "args": {"order_id": "*"}}])
    begin_commit()
    with pytest.raises(PhaseError, match="a commit is open"):
        back_to_explore()
    abort_commit()
    assert back_to_explore() == {"phase": "explore"}
