"""Property tests for the budget ledger: whatever the sequence, no scope ever passes its limit,
and the money adds up exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.governance.budget import BudgetState, ScopeUsage, gate_for, parse_gates
from corral.store.memory import MemoryStore

NOW = datetime(2026, 11, 24, tzinfo=UTC)
cents = st.integers(min_value=0, max_value=500).map(lambda c: Decimal(c) / 100)
ops = st.lists(
    st.tuples(st.sampled_from(["reserve", "settle", "release", "expire"]), cents, st.integers(0, 50)),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, session_limit=cents, agent_limit=cents)
def test_reservations_never_pass_a_limit_and_money_is_exact(ops, session_limit, agent_limit):
    store = MemoryStore()
    scopes = [("session:s", session_limit), ("agent:a", agent_limit)]
    open_ids: list[tuple[str, Decimal]] = []
    settled = Decimal(0)
    for op, amount, pick in ops:
        if op == "reserve":
            rid = store.reserve(scopes, amount, NOW + timedelta(seconds=pick))
            (s_spent, s_res), (a_spent, a_res) = store.usage(["session:s", "agent:a"])
            assert s_spent + s_res <= session_limit
            assert a_spent + a_res <= agent_limit
            if rid is not None:
                open_ids.append((rid, amount))
        elif op in ("settle", "release") and open_ids:
            rid, reserved = open_ids.pop(pick % len(open_ids))
            actual = min(amount, reserved) if op == "settle" else Decimal(0)
            store.settle(rid, actual)
            store.settle(rid, actual)  # settling twice changes nothing
            settled += actual
        elif op == "expire":
            store.release_expired(NOW + timedelta(seconds=pick))
            open_ids = [(rid, a) for rid, a in open_ids if rid in store._reservations]
    (s_spent, s_res), (a_spent, a_res) = store.usage(["session:s", "agent:a"])
    assert s_spent == a_spent == settled
    assert s_res == a_res == sum((a for _, a in open_ids), Decimal(0))


@given(st.lists(st.sampled_from(["0.01", "0.1", "0.07", "1.13"]), max_size=400))
def test_thousands_of_small_amounts_do_not_drift(amounts):
    store = MemoryStore()
    for a in amounts:
        rid = store.reserve([("session:s", Decimal(10**6))], Decimal(a), NOW)
        store.settle(rid, Decimal(a))
    assert store.usage(["session:s"])[0][0] == sum((Decimal(a) for a in amounts), Decimal(0))


@given(spent=cents, reserved=cents, limit=cents.filter(lambda x: x > 0))
def test_gate_is_the_highest_threshold_reached(spent, reserved, limit):
    gates = parse_gates(None)
    state = BudgetState.of([ScopeUsage("session", "session:s", limit, spent, reserved)], gates)
    fraction = (spent + reserved) / limit
    expected = None
    for name, threshold in gates:
        if fraction >= threshold:
            expected = name
    assert state.gate == expected == gate_for(fraction, gates)
