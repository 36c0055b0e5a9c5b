"""The benchmark suite runs, prints every row, and its Cedar baseline decides what corral decides.

Behaviour only: no timing is asserted (targets are reported by ``python -m benchmarks``, never enforced).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("cedarpy")

from benchmarks import MODES, REGISTRY, Row, Target, Versus, report, run
from benchmarks.__main__ import main
from benchmarks.cases import BENCH_REQUEST, build_governor, disagreements, verification_requests
from benchmarks.cedar import CedarPolicies, Request, translate
from benchmarks.policies import CORE, Rule, corral_text, ruleset, when
from benchmarks.registry import selected

EXPECTED_ROWS = {
    "raw function call",
    "governed read call (3 rules)",
    *(f"governed call, {n:,} rules" for n in (10, 100, 1_000, 10_000)),
    *(f"decision only, {n:,} rules" for n in (10, 100, 1_000, 10_000)),
    "Cedar, 10 policies",
    "Cedar, 1,000 policies",
    "Cedar authorizer only, 10 policies",
    "Cedar authorizer only, 1,000 policies",
    "agent run: new session, one model call, answer",
    "harness turn with one governed tool call",
    "MCP tools/call, straight to mcp-server-time",
    "MCP tools/call through corral mcp-proxy (SQLite store)",
    'python -c "import json, sqlite3" (process start floor)',
    "Claude Code hook: process start to decision (PreToolUse Read)",
}
"""The rows this suite knows; other modules (stores, proxies) add rows of their own."""


@pytest.fixture(scope="module")
def tiny():
    return run(MODES["tiny"])


def test_tiny_run_has_every_row_with_numbers(tiny):
    names = {row.benchmark for row in tiny.rows}
    assert names >= EXPECTED_ROWS
    assert tiny.ok, tiny.problems
    for row in tiny.rows:
        assert row.error is None
        assert row.stats is not None and row.stats.p50 > 0 and row.stats.p99 >= row.stats.p50
        assert row.stats.ops_per_s > 0
    targets = [row for row in tiny.rows if row.target is not None]
    assert len(targets) >= 3
    assert all(row.ratio is not None and row.met in (True, False) for row in targets)


def test_every_renderer_prints_every_row(tiny):
    plain, md = report.plain(tiny), report.markdown(tiny)
    for name in EXPECTED_ROWS:
        assert name in plain and f"| {name} |" in md
    first = plain.splitlines()[0]
    assert "cores" in first and tiny.machine["python"] in first
    header = md.splitlines()[2]
    assert header == "| benchmark | p50 µs | p99 µs | ops/s | baseline | ratio | target | met? |"
    assert "Cedar agrees with corral" in plain


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--mode", "tiny", "--only", "Cedar, 10 ", "--json", str(out), "--markdown"]) == 0
    printed = capsys.readouterr().out
    assert "| Cedar, 10 policies |" in printed
    data = json.loads(out.read_text())
    assert data["mode"] == "tiny" and data["machine"]["cores"] >= 1
    (row,) = data["rows"]
    assert row["benchmark"] == "Cedar, 10 policies" and row["p50_us"] > 0


def test_quick_mode_has_the_same_rows_as_full_but_cedar_at_10000():
    quick = {c.name for c in selected(MODES["quick"])}
    full = {c.name for c in selected(MODES["full"])}
    assert full - quick == {"Cedar, 10,000 policies", "Cedar authorizer only, 10,000 policies"}
    assert quick >= EXPECTED_ROWS


def test_cedar_agrees_with_corral_on_every_rule_shape():
    rules = ruleset(40)
    requests = verification_requests(rules, budget=True)
    gov = build_governor(rules, budget=100.0, tools=sorted({r.tool for r in requests} - {"lookup"}))
    cedar = CedarPolicies(rules, requests)
    assert disagreements(gov, cedar, requests, limit=100.0) == []
    # and the requests really exercise every verdict
    assert set(cedar.decisions(requests)) == {"allowed", "flagged", "approval_required", "blocked"}


def test_missing_arguments_fail_closed_in_both():
    rules = (
        Rule("BLOCK", "pay", when("arg.amount ABOVE 100")),
        Rule("FLAG", "pay", when("arg.amount ABOVE 10")),
        Rule("REQUIRE APPROVAL", "refund", when("arg.amount AT LEAST 5 OR arg.reason IS fraud")),
        Rule("ALLOW", "refund", when("arg.amount EXISTS AND arg.amount BELOW 5")),
    )
    requests = [
        Request("pay", {}),
        Request("pay", {"amount": 50}),
        Request("pay", {"amount": 500}),
        Request("refund", {}),
        Request("refund", {"amount": 1}),
        Request("refund", {"amount": 1, "reason": "fraud"}),
    ]
    gov = build_governor(rules, tools=["pay", "refund"])
    cedar = CedarPolicies(rules, requests)
    assert cedar.decisions(requests) == [
        "blocked",
        "flagged",
        "blocked",
        "approval_required",
        "approval_required",  # amount 1 is not ≥ 5, but reason is missing: indeterminate, fail closed
        "approval_required",
    ]
    assert disagreements(gov, cedar, requests) == []


def test_rules_render_as_corral_text_and_cedar():
    text = corral_text(CORE)
    assert "ALLOW lookup WHEN principal.role IN (analyst, admin)" in text
    assert "REQUIRE APPROVAL FOR lookup WHEN arg.limit EXISTS AND arg.limit ABOVE 1000 BECAUSE" in text
    assert "BLOCK * WHEN budget ABOVE 90%" in text
    cedar = translate(CORE)
    assert 'forbid (principal, action == Action::"lookup", resource)' in cedar
    assert 'context.tool like "look*"' in cedar
    assert cedar.count("@id(") == len(CORE) + 2  # plus DEFAULT ALLOW and the phase check


def test_rulesets_aim_almost_every_rule_at_other_tools():
    rules = ruleset(1_000)
    assert len(rules) == 1_000
    aimed = [r for r in rules if r.target in ("lookup", "*") or "*" in r.target]
    assert len(aimed) == len(CORE)
    assert BENCH_REQUEST.tool == "lookup"


def test_registry_reports_targets_and_missing_baselines():
    assert Target("<=", 0.1).met(0.05) and not Target("<=", 0.1).met(0.2)
    assert Target(">=", 1.0).met(1.5)
    assert str(Target("<=", 2.0)) == "≤ 2×"
    names = {c.name for c in REGISTRY}
    for c in REGISTRY:
        for vs in c.versus:
            assert isinstance(vs, Versus) and vs.baseline in names, (c.name, vs.baseline)
    assert Row("x", "s", None, error="boom").met is None
