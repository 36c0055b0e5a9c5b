"""Regression tests for what a hostile trial of the first wave found (issue "Kernel seams", point 4)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from typing import Any

import pytest

from corral import Approval, ApprovalDenied, ApprovalPending, Blocked, ConfigError, GovernanceFault, Governor

SPELLINGS = ["Alice", "alice ", "ALICE", "al\u200bice", " \ufeffalice", "ａｌｉｃｅ", "alice\u00ad"]


def test_plan_steps_match_arguments_at_their_signature_default() -> None:
    gov = Governor(rules="REQUIRE PLAN")
    ran: list[str] = []

    def t(id: str = "A") -> str:
        ran.append(id)
        return id

    gov.register("t", t, effect="irreversible")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "t", "args": {"id": "A"}}, {"tool": "t", "args": {}}])
    with s.commit(plan=plan) as tx:
        tx.call("t", id="A")  # names the default: matches step 1
        tx.call("t")  # leaves it out: the default, matches step 2
        with pytest.raises(Blocked, match="not in plan"):
            tx.call("t", id="A")  # both steps used
    assert ran == ["A", "A"]


def test_a_step_that_leaves_an_argument_out_means_its_default_not_any_value() -> None:
    gov = Governor(rules="REQUIRE PLAN")
    gov.register("t", lambda id="A": id, effect="irreversible")
    s = gov.session("alice")
    with s.decide():
        plan = s.propose([{"tool": "t", "args": {}}, {"tool": "t", "args": {"id": "*"}}])
    with s.commit(plan=plan) as tx:
        tx.call("t", id="B")  # only the wildcard step takes another value
        with pytest.raises(Blocked, match="not in plan"):
            tx.call("t", id="C")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_self_approval_is_refused_however_the_name_is_spelled(spelling: str) -> None:
    gov = Governor(rules="REQUIRE APPROVAL FOR pay")
    gov.register("pay", lambda: "paid", effect="read")
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as pending:
        s.call("pay")
    with pytest.raises(ConfigError, match="cannot approve their own"):
        gov.approve(pending.value.approval_id, spelling)
    with s.decide():
        plan = s.propose([])
    with pytest.raises(ConfigError, match="own plan"):
        s.approve_plan(plan, approver=spelling)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_an_approver_naming_the_requester_in_another_spelling_is_refused(spelling: str) -> None:
    gov = Governor(rules="REQUIRE APPROVAL FOR pay", approver=lambda request: Approval(True, approver=spelling))
    gov.register("pay", lambda: "paid", effect="read")
    with pytest.raises(ApprovalDenied, match="cannot approve their own"):
        gov.session("alice").call("pay")


def test_a_name_of_invisible_characters_only_is_no_approver() -> None:
    gov = Governor(rules="REQUIRE APPROVAL FOR pay")
    gov.register("pay", lambda: "paid", effect="read")
    with pytest.raises(ApprovalPending) as pending:
        gov.session("alice").call("pay")
    with pytest.raises(ConfigError, match="must name who decides"):
        gov.approve(pending.value.approval_id, "\u200b \u200d")


def test_another_principal_still_approves() -> None:
    gov = Governor(rules="REQUIRE APPROVAL FOR pay")
    gov.register("pay", lambda: "paid", effect="read")
    s = gov.session("alice")
    with pytest.raises(ApprovalPending) as pending:
        s.call("pay")
    gov.approve(pending.value.approval_id, "Bob")
    assert s.call("pay") == "paid"


def test_a_store_that_failed_blocks_reads_until_it_answers_again(tmp_path: Any) -> None:
    path = tmp_path / "c.db"
    gov = Governor(agent="desk", store=f"sqlite:///{path}?timeout=0.05")
    ran: list[int] = []
    gov.register("peek", lambda: ran.append(1), effect="read")
    s = gov.session("alice")
    s.call("peek")  # buffered: group-committed
    locker = sqlite3.connect(str(path), isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Exception, match="locked"):
            gov.store.flush()  # governance sees the store fail
        with pytest.raises(GovernanceFault, match="store cannot be written") as refused:
            s.call("peek")
        assert refused.value.trace.decision == "blocked"
        assert ran == [1]
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    s.call("peek")  # it answers again: the buffer is written first, and reads run
    assert ran == [1, 1]
    gov.store.flush()
    peeks = [t for t in s.traces if t.tool == "peek"]
    assert [t.decision for t in peeks] == ["allowed", "blocked", "allowed"]
    gov.close()


# -- gates judged inside the atomic reservation, across processes ------------------------------------------


def _writer(url: str, barrier: Any, results: Any) -> None:
    try:
        gov = Governor(agent="race", budget={"agent": 1.0}, store=url, phases=False)
        gov.register("write", lambda: "ok", effect="irreversible", cost=0.10)
        s = gov.session("w")
        barrier.wait(timeout=30)
        ran = 0
        for _ in range(10):
            try:
                s.call("write")
                ran += 1
            except Blocked:
                pass
        gov.close()
        results.put(("ok", ran))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def _race_writes(url: str) -> int:
    Governor(agent="race", store=url).close()  # migrate once, before the race
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(r[0] == "ok" for r in out), out
    return sum(r[1] for r in out)


def test_racing_processes_stop_at_the_force_decide_gate_on_sqlite(tmp_path: Any) -> None:
    # $1 at $0.10 a write, force_decide at 75%: writes run while less than $0.75 is used — exactly 8.
    assert _race_writes(f"sqlite:///{tmp_path}/race.db") == 8


def test_racing_processes_stop_at_the_force_decide_gate_on_postgres(pg_url: str) -> None:
    assert _race_writes(pg_url) == 8
