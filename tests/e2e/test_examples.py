"""The examples are part of the product: they run in CI, so they never rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_kernel_tour_runs_and_shows_every_stage():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "kernel_tour.py")], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "blocked: reversible call issue_refund is not allowed in explore" in text
    assert "approved: refunds over $100 need a human" in text
    assert "transaction committed" in text and "transaction rolled_back" in text
    assert "void RF-VIP-7" in text and "gate force_decide" in text
    assert "hash chain intact" in text


def test_refund_desk_demo_pauses_for_approval_resumes_and_commits(tmp_path):
    example = tmp_path / "refund_desk"
    shutil.copytree(ROOT / "examples" / "refund_desk", example, ignore=shutil.ignore_patterns(".corral"))
    out = subprocess.run([sys.executable, str(example / "demo.py")], capture_output=True, text=True, timeout=300,
                         cwd=example)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    shop = json.loads((example / ".corral" / "shop.json").read_text())
    paid = [r for r in shop["refunds"].values() if r["status"] == "paid"]
    assert len(paid) == 1 and paid[0]["amount"] == 120  # the approved refund ran exactly once
    assert shop["stock"]["SKU-1"] == 1  # the first, rolled-back restock was undone
    assert len(shop["outbox"]) == 1
    assert "all intact" in out.stderr or "intact" in out.stdout


def test_ops_shell_example_meets_every_gate_in_the_sandbox(tmp_path):
    example = tmp_path / "ops_shell"
    shutil.copytree(ROOT / "examples" / "ops_shell", example, ignore=shutil.ignore_patterns(".corral"))
    out = subprocess.run([sys.executable, "-m", "corral.cli", "run", "agent.yaml", "Inspect.", "--json"],
                         capture_output=True, text=True, timeout=300, cwd=example)
    assert out.returncode == 2, out.stderr[-2000:]  # budget_stop is "another stop"
    result = json.loads(out.stdout)
    assert result["stop_reason"] == "budget_stop" and result["answer"].startswith("Stopped:")
    calls = [t for t in result["traces"] if t["kind"] == "call"]
    curl = next(t for t in calls if "curl" in json.dumps(t["args"]))
    assert curl["decision"] == "blocked" and "no downloads" in curl["reason"]
    late = next(t for t in calls if t["args"].get("command") == "echo one more")
    assert late["decision"] == "blocked" and "force_decide" in late["reason"]
    gates = [c.get("gate") for t in calls for c in t["checks"] if c.get("check") == "budget"]
    assert "degrade" in gates and "force_decide" in gates
    assert not Path("/etc/corral-was-here").exists()
    workspace = example / ".corral" / "workspaces" / result["session"]
    assert (workspace / "report.md").read_text().startswith("# Ops report")


def test_research_desk_browses_uses_a_skill_calls_the_api_and_is_refused_the_internal_page(tmp_path):
    example = tmp_path / "research_desk"
    shutil.copytree(ROOT / "examples" / "research_desk", example, ignore=shutil.ignore_patterns(".corral"))
    out = subprocess.run([sys.executable, str(example / "demo.py")], capture_output=True, text=True, timeout=300,
                         cwd=example)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "the catalogue token in the store: nowhere" in out.stdout
    exported = subprocess.run([sys.executable, "-m", "corral.cli", "audit", "export", "--store",
                               "sqlite:///.corral/corral.db"], capture_output=True, text=True, timeout=60, cwd=example)
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    calls = [r for r in records if r.get("kind") == "call"]
    decisions = [(r["tool"], r["decision"]) for r in calls]
    assert ("load_skill", "allowed") in decisions and ("api.get_product", "allowed") in decisions
    assert decisions.count(("browser_snapshot", "allowed")) == 2
    refused = [r for r in calls if r["decision"] == "blocked"]
    assert [(r["tool"], r["args"]["url"].rsplit("/", 2)[-2:]) for r in refused] == [
        ("browser_navigate", ["internal", "salaries"])]
    outcomes = {r["ref"]: r["outcome"]["status"] for r in records if r.get("kind") == "outcome"}
    product = next(r for r in calls if r["tool"] == "api.get_product")
    assert outcomes.get(product["id"], (product.get("outcome") or {}).get("status")) == "ok"
def test_support_inbox_stops_the_lethal_trifecta_and_says_why(tmp_path):
    example = tmp_path / "support_inbox"
    shutil.copytree(ROOT / "examples" / "support_inbox", example, ignore=shutil.ignore_patterns(".corral"))
    out = subprocess.run([sys.executable, str(example / "demo.py")], capture_output=True, text=True, timeout=300,
                         cwd=example)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert not (example / ".corral" / "outbox.json").exists()  # the record never left
    lines = out.stdout.splitlines()
    assert any(line.split()[:3] == ["read_customer", "allowed", "labels"] for line in lines)
    assert "send_email      blocked  labels before: pii, untrusted" in out.stdout
    assert "blocked because lethal trifecta: this session has read private data and untrusted content" in out.stdout
    assert "labels: pii, untrusted (what the session had read)" in out.stdout
    assert "CONTAINS egress → true AND labels = (pii, untrusted), CONTAINS pii → true" in out.stdout
