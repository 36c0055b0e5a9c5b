"""Kill a process mid-transaction (SIGKILL: no cleanup, no finally) and recover in a new process.

Every DONE step is compensated exactly once, an unknown-outcome step follows ``compensate_unknown``,
the write traces written before the crash are in the store, and a second recovery does nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corral.store.audit import verify_chain

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import crashworld  # noqa: E402


def world_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def crash(tmp_path: Path, kill_at: str) -> tuple[str, Path, str]:
    url = "sqlite:////" + str(tmp_path / "corral.db").lstrip("/")  # an absolute path
    world = tmp_path / "world.jsonl"
    proc = subprocess.run(
        [sys.executable, str(HERE / "crashworld.py"), url, str(world), kill_at],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    session_id = proc.stdout.split()[0]
    return url, world, session_id


def recover(url: str, world: Path):
    gov = crashworld.build(url, world)
    return gov, gov.recover()


def undo_count(log: list[dict], what: str) -> int:
    return sum(1 for e in log if e.get("undo") == what)


def test_killed_between_two_steps(tmp_path):
    url, world, sid = crash(tmp_path, "between_steps")
    assert world_log(world) == [{"do": "charge", "account": "acct-1", "amount": 5}]
    gov, report = recover(url, world)
    (tx,) = report.transactions
    assert tx.state == "rolled_back" and [c["tool"] for c in tx.compensated] == ["charge"]
    assert undo_count(world_log(world), "charge") == 1
    # the write decision made before the crash is in the store, and the chain holds
    traces = gov.session(id=sid).traces
    assert any(t.tool == "charge" and t.decision == "allowed" for t in traces)
    assert any(t.kind == "recovery" and t.tool == "charge" for t in traces)
    ok, bad, why = verify_chain(gov.store.records(sid), gov.store.head(sid))
    assert ok, (bad, why)
    # a second recovery does nothing
    _, again = recover(url, world)
    assert again.transactions == [] and undo_count(world_log(world), "charge") == 1


@pytest.mark.parametrize(
    ("kill_at", "reserve_done", "state", "reserve_undone"),
    [
        ("inside_step_before", False, "needs_attention", 0),  # unknown outcome, not compensated
        ("inside_step_after", True, "needs_attention", 0),  # it ran, but no DONE: still unknown
        ("inside_step_after_unknown_ok", True, "rolled_back", 1),  # compensate_unknown=True
    ],
)
def test_killed_inside_a_step(tmp_path, kill_at, reserve_done, state, reserve_undone):
    url, world, sid = crash(tmp_path, kill_at)
    log = world_log(world)
    assert ({"do": "reserve", "room": "101"} in log) is reserve_done
    gov = crashworld.build(url, world, kill_at)  # the same registry (compensate_unknown as declared)
    report = gov.recover()
    (tx,) = report.transactions
    assert tx.state == state
    assert undo_count(world_log(world), "charge") == 1  # the known step is compensated either way
    assert undo_count(world_log(world), "reserve") == reserve_undone
    if state == "needs_attention":
        assert [u["tool"] for u in tx.unknown] == ["reserve"]
    assert gov.recover().transactions == []


@pytest.mark.parametrize("kill_at", ["inside_compensation_before", "inside_compensation_after"])
def test_killed_inside_a_compensation(tmp_path, kill_at):
    url, world, sid = crash(tmp_path, kill_at)
    log = world_log(world)
    assert undo_count(log, "reserve") == 1  # reverse order: reserve is undone first
    assert undo_count(log, "charge") == (1 if kill_at.endswith("after") else 0)
    gov, report = recover(url, world)
    (tx,) = report.transactions
    assert tx.state == "rolled_back"
    log = world_log(world)
    assert undo_count(log, "reserve") == 1  # COMPENSATED already: never again
    # an interrupted compensation (COMPENSATING without COMPENSATED) runs again: idempotency keys say which
    charge_undos = [e for e in log if e.get("undo") == "charge"]
    assert len({e["key"] for e in charge_undos}) == 1
    assert len(charge_undos) == (2 if kill_at.endswith("after") else 1)
    assert recover(url, world)[1].transactions == []


def test_corral_recover_command_with_a_tools_module(tmp_path):
    url, world, _ = crash(tmp_path, "between_steps")
    env = {**__import__("os").environ, "CRASH_WORLD": str(world), "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, "-m", "corral.cli", "recover", "--store", url, "--tools", "crashworld", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (tx,) = report["transactions"]
    assert tx["state"] == "rolled_back" and [c["tool"] for c in tx["compensated"]] == ["charge"]
    assert undo_count(world_log(world), "charge") == 1
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert json.loads(again.stdout)["transactions"] == []


def test_audit_key_signs_heads_and_a_replaced_head_is_caught(tmp_path, monkeypatch):
    from corral import Governor
    from corral.store.audit import verify_session

    monkeypatch.setenv("CORRAL_AUDIT_KEY", "s3cret")
    url = "sqlite:////" + str(tmp_path / "signed.db").lstrip("/")
    gov = Governor(agent="signed", store=url)
    gov.register("q", lambda: 1, effect="read")
    s = gov.session("ada")
    s.call("q")
    gov.store.flush()
    assert verify_session(gov.store, s.id)["ok"]
    monkeypatch.setenv("CORRAL_AUDIT_KEY", "another key")
    report = verify_session(gov.store, s.id)
    assert not report["ok"] and "HMAC" in report["why"]
