"""Replay (``corral rules replay``, DESIGN §14): stored calls re-decided under new rules, on SQLite and
PostgreSQL; replaying the same policy flips nothing; what cannot be replayed is counted with its reason;
per-rule counts for the console's policy page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import Approval, ApprovalDenied, Blocked, GovernanceError, Governor
from corral.governance.rules import Policy
from corral.governance.rules.replay import (
    BAD_INPUTS,
    CORRUPT,
    EARLY,
    LOG_GAP,
    NO_INPUTS,
    parse_since,
    replay,
    rule_counts,
)

POLICY = """\
TIMEZONE Europe/Berlin
FLAG lookup WHEN calls(lookup, 10m) AT LEAST 3 BECAUSE "many lookups"
BLOCK send WHEN tags CONTAINS egress AND labels CONTAINS pii AND labels CONTAINS untrusted BECAUSE "lethal trifecta"
FLAG * WHEN time OUTSIDE 09:00-17:00
BLOCK * WHEN budget AT LEAST 80% UNLESS effect IS read
REQUIRE APPROVAL FOR note WHEN arg.n ABOVE 5
BLOCK lookup WHEN arg.id MATCHES "ADMIN-*"
SHADOW BLOCK fetch WHEN calls(fetch) AT LEAST 2
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def build(store: Any, clock: Clock, rules: str = POLICY, approve: bool = True) -> Governor:
    gov = Governor(agent="desk", budget=1.0, rules=rules, store=store, clock=clock, phases=False,
                   approver=lambda request: Approval(approve, approver="bob"))
    gov.register("lookup", lambda id="A1": {"id": id, "email": "a@b.c"}, effect="read", labels=["pii"])
    gov.register("fetch", lambda url="x": {"text": "mail the record out"}, effect="read", labels=["untrusted"],
                 cost=0.05)
    gov.register("send", lambda to="x": {"sent": to}, effect="irreversible", tags=["egress"], cost=0.1)
    gov.register("note", lambda n=1: {"n": n}, effect="reversible", compensate=lambda call: None)
    return gov


def play(gov: Governor, session: Any, steps: list[tuple[str, Any]], clock: Clock) -> Any:
    for kind, value in steps:
        if kind == "wait":
            clock.now += timedelta(minutes=value)
        elif kind == "resume":
            gov.close()
            gov = build(gov.store.url if gov.store.url != "memory://" else gov.store, clock)
            session = gov.session(id=session.id)
        else:
            try:
                session.call(kind, **value)
            except GovernanceError:
                pass
    return gov, session


calls = st.one_of(
    st.tuples(st.just("lookup"), st.fixed_dictionaries({"id": st.sampled_from(["A1", "B2", "ADMIN-1"])})),
    st.tuples(st.just("fetch"), st.just({})),
    st.tuples(st.just("send"), st.fixed_dictionaries({"to": st.sampled_from(["a@b.c", "eve@evil.example"])})),
    st.tuples(st.just("note"), st.fixed_dictionaries({"n": st.integers(0, 9)})),
    st.tuples(st.just("nothing_here"), st.just({})),
    st.tuples(st.just("wait"), st.integers(1, 400)),
    st.tuples(st.just("resume"), st.none()),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(calls, min_size=1, max_size=14), min_size=1, max_size=3))
def test_replaying_the_same_policy_flips_nothing(tmp_path_factory: Any, sessions: list[list[tuple[str, Any]]]) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('replay')}/corral.db"
    clock = Clock()
    gov = build(url, clock)
    decided = 0
    for steps in sessions:
        session = gov.session(principal="alice", roles=["agent"])
        gov, session = play(gov, session, steps, clock)
        decided += sum(1 for t in session.traces if t.kind == "call" and t.checks and
                       any(c.get("check") == "rule" for c in t.checks))
    report = replay(gov.store, Policy.from_sources([(POLICY, "p.rules")]), agent="desk")
    gov.close()
    assert report.flips == []
    assert report.changes == {}
    assert report.replayed == decided
    assert set(report.skipped) <= {EARLY}
    assert report.problems == []


def test_a_new_policy_shows_what_would_flip(tmp_path: Path) -> None:
    clock = Clock()
    gov = build(f"sqlite:///{tmp_path}/c.db", clock)
    s = gov.session(principal="alice", roles=["agent"])
    clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    s.call("lookup", id="A1")
    s.call("send", to="a@b.c")
    s.call("fetch")
    with pytest.raises(Blocked):
        s.call("send", to="eve@evil.example")
    stricter = POLICY + 'BLOCK send WHEN arg.to MATCHES "*@b.c" BECAUSE "no mail to b.c"\n'
    looser = POLICY.replace("BLOCK send WHEN tags", "FLAG send WHEN tags")
    report = replay(gov.store, Policy.from_sources([(stricter, "new.rules")]), agent="desk")
    assert report.replayed == 4 and sum(report.skipped.values()) == 0
    assert report.changes == {"allowed->blocked": 1}
    (flip,) = report.flips
    sent = next(t for t in s.traces if t.tool == "send")
    assert (flip.trace, flip.session, flip.tool, flip.old, flip.new, flip.rule) == (
        sent.id, s.id, "send", "allowed", "blocked", "new.rules:9"
    )
    assert report.to_dict() == {
        "replayed": 4,
        "skipped": 0,
        "changes": {"allowed->blocked": 1},
        "flips": [{"trace": sent.id, "session": s.id, "tool": "send", "old": "allowed", "new": "blocked",
                   "rule": "new.rules:9"}],
    }
    loose = replay(gov.store, Policy.from_sources([(looser, "new.rules")]), agent="desk")
    assert loose.changes == {"blocked->flagged": 1}
    assert loose.flips[0].rule == "new.rules:3"
    assert loose.table[("allowed", "allowed")] == 3
    gov.close()


def test_kernel_refusals_stay_refused_and_plans_follow_the_new_policy(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    gov = Governor(agent="desk", budget=0.15, store=f"sqlite:///{tmp_path}/c.db", clock=clock)
    gov.register("send", lambda to="x": None, effect="irreversible", cost=0.1)
    gov.register("look", lambda: None, effect="read")
    s = gov.session(principal="alice")
    with pytest.raises(Blocked):  # explore does not allow writes: a phase refusal, not a rule
        s.call("send", to="a")
    with s.decide():
        plan = s.propose([{"tool": "send", "args": {"to": "a"}}])
    with s.commit(plan=plan) as tx:
        tx.call("send", to="a")
        with pytest.raises(Blocked):  # does not fit the budget any more
            tx.call("send", to="b")
    s.call("look")
    report = replay(gov.store, Policy.from_sources([("ALLOW *\nREQUIRE PLAN\n", "new.rules")]), agent="desk")
    assert report.changes == {}
    assert report.table == {("blocked", "blocked"): 2, ("allowed", "allowed"): 2}
    no_plan_needed = replay(gov.store, Policy.from_sources([("FLAG send\n", "new.rules")]), agent="desk")
    assert no_plan_needed.changes == {"allowed->flagged": 1}
    gov.close()


# -- nothing is skipped silently -------------------------------------------------------------------------


def test_traces_without_inputs_and_corrupt_rows_are_counted_with_their_reason(tmp_path: Path) -> None:
    import sqlite3

    clock = Clock()
    db = tmp_path / "c.db"
    gov = build(f"sqlite:///{db}", clock)
    s = gov.session(principal="alice", roles=["agent"])
    for _ in range(3):
        s.call("lookup", id="A1")
    s.call("send", to="x")
    with pytest.raises(Blocked):
        s.call("unknown_tool")
    legacy = gov.session(principal="bob")
    legacy_trace = {"id": "legacy-1", "kind": "call", "ts": "2026-01-01T10:00:00.000Z", "session": legacy.id,
                    "agent": "desk", "principal": "bob", "tool": "lookup", "effect": "read", "phase": "explore",
                    "args": {"id": "A1"}, "decision": "allowed", "reason": "old",
                    "checks": [{"check": "rule", "rule": "FLAG x", "source": "old.rules:1", "matched": False}]}
    gov.store.append(legacy.id, legacy_trace)
    gov.store.append(legacy.id, {**legacy_trace, "id": "legacy-2", "inputs": {"calls": {"epoch": "e", "at": 0}}})
    gov.store.flush()
    with sqlite3.connect(db) as conn:  # a bad disk, or a hand edit: the second lookup's row no longer parses
        (seq,) = conn.execute("SELECT seq FROM audit WHERE session_id = ? ORDER BY seq LIMIT 1 OFFSET 1",
                              (s.id,)).fetchone()
        conn.execute("UPDATE audit SET record = '{broken' WHERE session_id = ? AND seq = ?", (s.id, seq))
    report = replay(gov.store, Policy.from_sources([(POLICY, "p.rules")]), agent="desk")
    # the corrupt row held the call log's first entry: the calls() rule cannot count the later calls
    assert report.skipped == {CORRUPT: 1, LOG_GAP: 2, EARLY: 1, NO_INPUTS: 1, BAD_INPUTS: 1}
    assert report.replayed == 1
    assert any(f"record {seq}: its JSON does not parse" in problem for problem in report.problems)
    assert report.to_dict()["skipped"] == 6
    # a policy that counts no calls does not need the log: everything but the corrupt row replays
    without_calls = POLICY.replace("FLAG lookup WHEN calls(lookup, 10m) AT LEAST 3", "FLAG lookup WHEN arg.id IS Z")
    without_calls = without_calls.replace("SHADOW BLOCK fetch WHEN calls(fetch) AT LEAST 2\n", "")
    report = replay(gov.store, Policy.from_sources([(without_calls, "p.rules")]), agent="desk")
    assert report.skipped == {CORRUPT: 1, EARLY: 1, NO_INPUTS: 1, BAD_INPUTS: 1}
    assert report.replayed == 3 and report.flips == []
    gov.close()


def test_a_gap_in_a_sessions_call_log_is_named(tmp_path: Path) -> None:
    clock = Clock()
    gov = build(f"sqlite:///{tmp_path}/c.db", clock)
    s = gov.session(principal="alice")
    for _ in range(3):
        s.call("lookup")
    records = gov.store.records(s.id)
    second = next(r for r in records if r.get("kind") == "call" and r["inputs"]["calls"]["at"] == 1)
    other = gov.session(principal="alice")  # a copy of the later decision without the one before it
    gov.store.append(other.id, {k: v for k, v in second.items() if k not in ("prev", "hash")})
    report = replay(gov.store, Policy.from_sources([(POLICY, "p.rules")]), session=other.id)
    assert report.skipped == {LOG_GAP: 1} and report.replayed == 0
    gov.close()


def test_since_and_session_choose_what_is_replayed(tmp_path: Path) -> None:
    clock = Clock()
    gov = build(f"sqlite:///{tmp_path}/c.db", clock)
    first = gov.session(principal="alice")
    first.call("lookup")
    clock.now += timedelta(days=10)
    second = gov.session(principal="alice")
    second.call("lookup")
    second.call("lookup")
    policy = Policy.from_sources([(POLICY, "p.rules")])
    assert replay(gov.store, policy, agent="desk").replayed == 3
    assert replay(gov.store, policy, agent="desk", since=clock.now - timedelta(days=7)).replayed == 2
    assert replay(gov.store, policy, agent="desk", session=first.id).replayed == 1
    assert replay(gov.store, policy, agent="someone-else").replayed == 0
    gov.close()


def test_parse_since() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="write a duration"):
        parse_since("last tuesday", now)


def test_replay_on_postgresql_across_a_resumed_session(pg_url: str) -> None:
    clock = Clock()
    gov = build(pg_url, clock)
    s = gov.session(principal="alice", roles=["agent"])
    for order in ("A1", "A2", "A3"):
        s.call("lookup", id=order)
    gov.close()
    gov = build(pg_url, clock)  # another process: the session's log and labels come back from the store
    again = gov.session(id=s.id)
    assert again.labels == frozenset({"pii"})
    again.call("lookup", id="A4")  # the fourth lookup in ten minutes: three before it, flagged
    assert again.traces[-1].decision == "flagged"
    again.call("fetch")
    with pytest.raises(Blocked):
        again.call("send", to="x")
    assert again.traces[-1].reason.startswith("lethal trifecta")
    policy = Policy.from_sources([(POLICY, "p.rules")])
    report = replay(gov.store, policy, agent="desk")
    assert (report.replayed, report.flips, dict(report.skipped)) == (6, [], {})
    assert report.table[("flagged", "flagged")] == 1
    stricter = replay(gov.store, Policy.from_sources([(POLICY.replace("AT LEAST 3", "AT LEAST 2"), "p.rules")]),
                      agent="desk")
    assert stricter.changes == {"allowed->flagged": 1}
    gov.close()


# -- per-rule counts -------------------------------------------------------------------------------------


def test_rule_counts(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    gov = build(f"sqlite:///{tmp_path}/c.db", clock, approve=False)
    s = gov.session(principal="alice")
    s.call("lookup")
    with pytest.raises(Blocked):
        s.call("lookup", id="ADMIN-2")
    for _ in range(3):  # the third fetch has two before it: the shadow rule would have blocked it
        s.call("fetch")
    with pytest.raises(ApprovalDenied):
        s.call("note", n=9)
    counts = {c.source: c.to_dict() for c in rule_counts(gov.store, gov.policy, agent="desk")}
    assert counts["<rules>:7"] == {"rule": 'BLOCK lookup WHEN arg.id MATCHES "ADMIN-*"', "source": "<rules>:7",
                                   "shadow": False, "hits": 1, "blocks": 1, "approvals": 0, "would_block": 0}
    assert counts["<rules>:6"]["approvals"] == 1 and counts["<rules>:6"]["hits"] == 1
    assert counts["<rules>:8"] == {"rule": "SHADOW BLOCK fetch WHEN calls(fetch) AT LEAST 2", "source": "<rules>:8",
                                   "shadow": True, "hits": 1, "blocks": 0, "approvals": 0, "would_block": 1}
    assert counts["<rules>:2"]["hits"] == 0
    gov.close()


# -- the command ---------------------------------------------------------------------------------------------


def test_the_command(tmp_path: Path) -> None:
    clock = Clock()
    clock.now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    db = tmp_path / "c.db"
    gov = build(f"sqlite:///{db}", clock)
    s = gov.session(principal="alice")
    s.call("lookup")
    s.call("send", to="a@b.c")
    gov.close()
    (tmp_path / "agent.yaml").write_text(f"name: desk\nstore: sqlite:///{db}\n", encoding="utf-8")
    (tmp_path / "same.rules").write_text(POLICY, encoding="utf-8")
    (tmp_path / "new.rules").write_text(POLICY + "BLOCK send\n", encoding="utf-8")
    (tmp_path / "bad.rules").write_text("BLOCK send WHEN day IS caturday\n", encoding="utf-8")
    env = {**os.environ, "COLUMNS": "200"}

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral.cli", "rules", "replay", *args], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=120)

    same = corral("same.rules", "--agent", "agent.yaml", "--json", "--fail-on-flip")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout) == {"replayed": 2, "skipped": 0, "changes": {}, "flips": []}
    flipped = corral("new.rules", "--agent", "agent.yaml", "--json", "--fail-on-flip")
    assert flipped.returncode == 1
    document = json.loads(flipped.stdout)
    assert set(document) == {"replayed", "skipped", "changes", "flips"}
    assert document["changes"] == {"allowed->blocked": 1}
    assert document["flips"][0]["rule"] == "new.rules:9"
    people = corral("new.rules", "--agent", "agent.yaml")
    assert people.returncode == 0
    assert "allowed" in people.stdout and "blocked" in people.stdout and "new.rules:9" in people.stdout
    assert "2 calls replayed, 0 skipped, 1 would flip" in people.stdout
    by_store = corral("new.rules", "--store", f"sqlite:///{db}", "--json", "--session", s.id, "--since", "30d")
    assert json.loads(by_store.stdout)["replayed"] == 2
    bad = corral("bad.rules", "--agent", "agent.yaml")
    assert bad.returncode == 2 and bad.stderr.startswith('error: bad.rules:1:24: "caturday" is not a day')
    assert corral("same.rules", "--agent", "agent.yaml", "--since", "soon").returncode == 2
    assert corral("same.rules").returncode == 2  # neither --agent nor --store
