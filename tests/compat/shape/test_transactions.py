"""corral.compat.shape.transactions: Shape's Transaction and TxState, on their own and over a corral
transaction (``tx.tx`` inside ``with agent.commit() as tx``)."""

from __future__ import annotations

import pytest

from corral import Call, PhaseError
from corral.compat.shape import Agent, Phase, ShapeError, ToolEffect, Transaction, TxState


class TestOnItsOwn:
    def test_a_new_transaction_is_open_and_empty(self):
        tx = Transaction("T1")
        assert (tx.tx_id, tx.state, tx.buffered, tx.compensations) == ("T1", TxState.OPEN, [], [])

    def test_buffer_notes_each_step_and_what_undoes_it(self):
        tx = Transaction("T1")
        undo = lambda: None
        tx.buffer("write_mes", {"record": "plan"}, "ok", undo)
        tx.buffer("read_plc", {}, 42)
        assert tx.buffered == [
            {"tool": "write_mes", "kwargs": {"record": "plan"}, "result": "ok"},
            {"tool": "read_plc", "kwargs": {}, "result": 42},
        ]
        assert tx.compensations == [undo]

    def test_commit(self):
        tx = Transaction("T1")
        tx.commit()
        assert tx.state is TxState.COMMITTED

    def test_abort_compensates_newest_first_and_passes_the_call_to_who_wants_it(self):
        undone: list[object] = []
        tx = Transaction("T1")
        tx.buffer("reserve", {"room": "101"}, {"id": "R1"}, lambda: undone.append("reserve"))
        tx.buffer("charge", {"amount": 20}, {"id": "C9"}, undone.append)
        tx.abort()
        assert tx.state is TxState.ABORTED
        call, plain = undone
        assert isinstance(call, Call) and (call.tool, call.args, call.result) == ("charge", {"amount": 20}, {"id": "C9"})
        assert plain == "reserve"

    def test_a_failing_compensation_does_not_stop_the_others_and_is_not_swallowed(self):
        # corrected: Shape swallowed the failure and reported ABORTED
        undone = []

        def broken():
            raise OSError("printer on fire")

        tx = Transaction("T1")
        tx.buffer("a", {}, 1, lambda: undone.append("a"))
        tx.buffer("b", {}, 2, broken)
        with pytest.raises(ShapeError, match="printer on fire"):
            tx.abort()
        assert undone == ["a"]
        assert tx.state is TxState.NEEDS_ATTENTION

    def test_states_by_value(self):
        assert Transaction("T1", state="committed").state is TxState.COMMITTED
        assert [s.value for s in TxState] == ["open", "committed", "aborted", "needs_attention"]


def writer(undone: list[str] | None = None) -> Agent:
    agent = Agent("a")
    agent.tool("w", effect=ToolEffect.REVERSIBLE, fn=lambda **kw: "ok",
               compensation=lambda call: undone.append(call.args["n"]) if undone is not None else None)
    agent.phase.transition(Phase.DECIDE)
    return agent


class TestOverACorralTransaction:
    def test_the_state_is_the_kernels(self):
        agent = writer()
        with agent.commit() as tx:
            assert tx.tx.state is TxState.OPEN and tx.tx.kernel.state == "open"
            tx.call("w", n=1)
        assert tx.tx.state is TxState.COMMITTED and tx.tx.kernel.state == "committed"

    def test_abort_inside_the_block_rolls_back_and_later_calls_are_refused(self):
        undone: list[int] = []
        agent = writer(undone)
        with agent.commit() as tx:
            tx.call("w", n=1)
            tx.call("w", n=2)
            tx.tx.abort()
            assert tx.tx.state is TxState.ABORTED
            with pytest.raises(PhaseError):
                tx.call("w", n=3)
        assert undone == [2, 1]
        assert tx.tx.state is TxState.ABORTED
        assert agent.phase.current is Phase.EXPLORE

    def test_abort_after_the_pivot_says_what_is_stuck(self):
        undone: list[int] = []
        agent = writer(undone)
        agent.tool("fire", effect=ToolEffect.IRREVERSIBLE, fn=lambda **kw: "fired")
        with agent.commit() as tx:
            tx.call("w", n=1)
            tx.call("fire")
            with pytest.raises(ShapeError, match="needs attention"):
                tx.tx.abort()
        assert undone == []  # undoing w after fire ran would leave the world half-changed
        assert tx.tx.state is TxState.NEEDS_ATTENTION

    def test_commit_inside_the_block_commits_now(self):
        agent = writer()
        with agent.commit() as tx:
            tx.call("w", n=1)
            tx.tx.commit()
            assert tx.tx.state is TxState.COMMITTED
        assert tx.tx.state is TxState.COMMITTED
