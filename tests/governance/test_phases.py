import pytest

from corral import Blocked, Governor, PhaseError


@pytest.fixture
def gov():
    gov = Governor(agent="desk")
    gov.register("lookup", lambda order_id: {"id": order_id}, effect="read")
    gov.register("refund", lambda order_id, amount: "ok", effect="reversible", compensate=lambda call: None)
    gov.register("email", lambda to: "sent", effect="irreversible")
    return gov


def test_session_starts_in_explore_and_reads_are_allowed(gov):
    s = gov.session("alice")
    assert s.phase == "explore"
    assert s.call("lookup", order_id="A1") == {"id": "A1"}


def test_premature_write_is_blocked_with_its_reason(gov):
    s = gov.session("alice")
    with pytest.raises(Blocked) as info:
        s.call("refund", order_id="A1", amount=5)
    trace = info.value.trace
    assert trace.decision == "blocked"
    assert "not allowed in explore" in trace.reason
    phase_check = next(c for c in trace.checks if c["check"] == "phase")
    assert phase_check["passed"] is False
    with s.decide(), pytest.raises(Blocked):
        s.call("email", to="x")


def test_explore_to_commit_raises_phase_error(gov):
    s = gov.session("alice")
    with pytest.raises(PhaseError, match="decide before you commit"), s.commit():
        pass
    assert s.phase == "explore"
    assert s.traces[-1].decision == "blocked"


@pytest.mark.parametrize(
    ("start", "target", "ok"),
    [
        ("explore", "decide", True),
        ("decide", "explore", True),
        ("decide", "commit", True),
        ("explore", "commit", False),
        ("explore", "explore", True),
        ("decide", "decide", True),
    ],
)
def test_transition_table(gov, start, target, ok):
    s = gov.session("alice")
    if start == "decide":
        s.back_to("decide")
    if target == "commit":
        if ok:
            with s.commit():
                assert s.phase == "commit"
        else:
            with pytest.raises(PhaseError), s.commit():
                pass
    else:
        s.back_to(target)
        assert s.phase == target


def test_leaving_blocks_keeps_phase_and_leaving_commit_returns_to_explore(gov):
    s = gov.session("alice")
    with s.decide():
        pass
    assert s.phase == "decide"
    with s.commit() as tx:
        assert s.phase == "commit"
        tx.call("refund", order_id="A1", amount=1)
    assert s.phase == "explore"
    assert tx.state == "committed"


def test_entering_decide_or_explore_inside_commit_raises(gov):
    s = gov.session("alice")
    with s.decide():
        pass
    with s.commit() as tx:
        with pytest.raises(PhaseError):
            s.back_to("decide")
        with pytest.raises(PhaseError), s.explore():
            pass
        with pytest.raises(PhaseError), s.commit():
            pass
        tx.call("lookup", order_id="A1")
    assert tx.state == "committed"


def test_commit_refused_at_force_decide_gate():
    gov = Governor(budget=1.0)
    gov.register("spend", lambda: None, effect="read", cost=0.8)
    s = gov.session("alice")
    s.call("spend")
    assert s.budget.gate == "force_decide"
    with s.decide():
        pass
    with pytest.raises(Blocked, match="force_decide"), s.commit():
        pass
    assert s.phase == "decide"


def test_phases_off_allows_writes_outside_transactions():
    gov = Governor(phases=False)
    sent = []
    gov.register("email", lambda to: sent.append(to), effect="irreversible")
    s = gov.session("alice")
    s.call("email", to="a@b.c")
    assert sent == ["a@b.c"]
    with s.commit() as tx:  # from explore: allowed without phases
        tx.call("email", to="d@e.f")
    assert sent == ["a@b.c", "d@e.f"]


def test_phases_off_write_is_its_own_transaction_and_its_error_propagates_unchanged():
    gov = Governor(phases=False)

    def boom():
        raise KeyError("nope")

    gov.register("boom", boom, effect="irreversible")
    s = gov.session()
    with pytest.raises(KeyError):
        s.call("boom")
    assert s.traces[-1].outcome["status"] == "error"
    txs = gov.store.transactions()
    assert len(txs) == 1 and txs[0]["state"] == "rolled_back"
