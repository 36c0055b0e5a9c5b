"""Cedar import (``corral rules import``): the reverse subset decides as Cedar does, an export imports back
to rules that decide as the original, and everything outside the subset is a located error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.rules.cedar_cases import ACTIONS, ATOMS, Call, calls, conditions, conform, corral_says

from corral.governance.rules import Policy, parse_rules
from corral.governance.rules.cedar import cedar_entities, export_cedar
from corral.governance.rules.cedar_import import CedarImportError, import_cedar

CEDAR = """\
// what a team might already run in Cedar
@id("default") permit (principal, action, resource);

@id("no-big-refunds") @reason("refunds over $1000 go through finance")
forbid (principal, action == Action::"issue_refund", resource)
when { context.args has amount && context.args.amount > 1000 };

@id("mail") forbid (principal, action in [Action::"send_email", Action::"send_sms"], resource)
unless { principal in Role::"support" };

@corral("approval")
permit (principal == User::"intern", action, resource) when { context.effect != "read" };

@corral("flag") permit (principal, action, resource)
when { context.tool like "db_*" && context.args has query && context.args.query like "*;*" };

forbid (principal, action, resource) when { ["explore", "decide"].contains(context.phase) && context.effect == "irreversible" };

forbid (principal, action, resource == Agent::"prod")
when { context.args has limit && context.args.limit.greaterThanOrEqual(decimal("99.5")) };
"""


def decisions_of_cedar(text: str, batch: list[Call], longs: frozenset[str] = frozenset()) -> list[str]:
    """What Cedar decides: Deny is blocked, Allow allowed. The arguments named in ``longs`` go as Cedar
    Longs, as the policy compares them (``>`` on a Long), the other numbers as decimals."""
    policies = cedarpy.PolicySet.from_str(text)
    answers = []
    for call in batch:
        request = call.cedar()
        for name in longs & set(call.args):
            request["context"]["args"][name] = call.args[name]
        result = cedarpy.is_authorized(request, policies, cedar_entities({call.principal: call.roles}))
        assert not result.diagnostics.errors, result.diagnostics.errors
        answers.append("allowed" if result.allowed else "blocked")
    return answers


def test_a_cedar_file_imports_to_rules_that_read_like_it() -> None:
    rules = import_cedar(CEDAR, "team.cedar")
    lines = [line.split("    #")[0] for line in rules.splitlines()[1:]]
    assert lines == [
        "DEFAULT ALLOW",
        'BLOCK issue_refund WHEN (arg.amount EXISTS) AND (arg.amount ABOVE 1000) BECAUSE "refunds over $1000 go '
        'through finance"',
        "BLOCK send_email WHEN NOT (principal.role IS support)",
        "BLOCK send_sms WHEN NOT (principal.role IS support)",
        "REQUIRE APPROVAL FOR * WHEN (principal IS intern) AND (effect IS NOT read)",
        'FLAG db_* WHEN (arg.query EXISTS) AND (arg.query MATCHES "*;*")',
        "BLOCK * WHEN (phase IN (explore, decide)) AND (effect IS irreversible)",
        "BLOCK * WHEN (agent IS prod) AND ((arg.limit EXISTS) AND (arg.limit AT LEAST 99.5))",
    ]
    assert rules.splitlines()[2].endswith("# team.cedar:4 @id(no-big-refunds)")
    assert len(parse_rules(rules, "imported.rules").rules) == 7


def test_imported_rules_decide_as_cedar() -> None:
    policy = Policy.from_sources([(import_cedar(CEDAR, "team.cedar"), "imported.rules")])
    batch = [
        Call(tool="issue_refund", args={"amount": 2000}, principal="alice", roles=("support",)),
        Call(tool="issue_refund", args={"amount": 20}),
        Call(tool="issue_refund", args={}),
        Call(tool="send_email", roles=("agent",)),
        Call(tool="send_sms", roles=("support",)),
        Call(tool="lookup", effect="irreversible", phase="explore"),
        Call(tool="lookup", effect="read", phase="explore", agent="prod", args={"limit": 100}),
        Call(tool="lookup", effect="read", phase="explore", agent="dev", args={"limit": 100}),
    ]
    corral = [("blocked" if decision == "blocked" else "allowed") for decision in corral_says(policy, batch)]
    assert corral == decisions_of_cedar(CEDAR, batch, frozenset({"amount"}))
    assert corral == ["blocked", "allowed", "allowed", "blocked", "allowed", "blocked", "blocked", "allowed"]
    assert corral_says(policy, [Call(tool="x", principal="intern", effect="reversible")]) == ["approval_required"]
    assert corral_says(policy, [Call(tool="db_q", args={"query": "a; b"})]) == ["flagged"]


def test_without_an_unconditional_permit_the_rules_block_by_default() -> None:
    rules = import_cedar('@corral("flag") permit (principal, action == Action::"lookup", resource);\n', "f.cedar")
    policy = Policy.from_sources([(rules, "f.rules")])
    assert policy.default == "block"
    # a flag permit also grants, as in Cedar
    assert corral_says(policy, [Call(tool="lookup"), Call(tool="other")]) == ["flagged", "blocked"]


# -- round trip: export, import, decide the same ------------------------------------------------------------


@st.composite
def exact_target_rules(draw: st.DrawFn) -> str:
    text = f"{draw(st.sampled_from(ACTIONS))} {draw(st.sampled_from(['*', 'send_email', 'lookup', 'pay']))}"
    if draw(st.booleans()):
        text += f" WHEN {draw(conditions(ATOMS))}"
    if draw(st.integers(0, 3)) == 0:
        text += f" UNLESS {draw(conditions(ATOMS))}"
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(exact_target_rules(), min_size=1, max_size=5), st.booleans(), st.lists(calls(), min_size=1, max_size=6))
def test_export_then_import_decides_as_the_original(lines: list[str], default_block: bool, batch: list[Call]) -> None:
    original = Policy.from_sources([(("DEFAULT BLOCK\n" if default_block else "") + "\n".join(lines), "p.rules")])
    export = export_cedar(original)
    assert export.untranslated == []
    again = Policy.from_sources([(import_cedar(export.policies, "p.cedar"), "again.rules")])
    batch = [conform(call, export) for call in batch]  # exact for the requests that fit the schema
    assert corral_says(again, batch) == corral_says(original, batch)


# -- located errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("permit(principal, action, resource", 1, 27, 'expected ")", "==", "in", "is"'),
        ("permit(principal action)", 1, 18, 'expected ",", "==", "in", "is", got "action"'),
        ("hello", 1, 1, "expected"),
        ('permit(principal, action, resource) when { "a" ++ };', 1, 49, "not valid Cedar"),
        ("permit(principal, action, resource) when { context.args.amount > 5 };", 1, 44,
         "context.args.amount may be missing"),
        ("permit(principal, action, resource) when { context.args has a || context.args.a == 1 };", 1, 66,
         "context.args.a may be missing"),
        ("permit(principal, action, resource) when { context.args has c && context.args.c.d == 1 };", 1, 66,
         "context.args.c.d may be missing"),
        ("permit(principal, action, resource) when { if true then true else false };", 1, 44, "if … then … else"),
        ("permit(principal is User, action, resource);", 1, 18, "principal is"),
        ('permit(principal == Group::"x", action, resource);', 1, 18, "a principal is a User"),
        ('permit(principal, action in Action::"all", resource);', 1, 26, "no action groups"),
        ('permit(principal, action == Tool::"x", resource);', 1, 29, "a tool is an Action"),
        ('permit(principal, action, resource in Agent::"x");', 1, 36, "resource == Agent"),
        ('forbid(principal, action, resource) when { context.args has a && context.args.a like "X*" };', 1, 66,
         "corral's MATCHES ignores letter case"),
        ('permit(principal, action, resource) when { principal.department == "x" };', 1, 44, ".department"),
        ('permit(principal, action, resource) when { context.phase == "comit" };', 1, 61, "never 'comit'"),
        ('permit(principal, action, resource) when { context.args has s && context.args.s == "a\\nb" };', 1, 84,
         "a line break"),
        ('permit(principal, action, resource) when { ip("1.2.3.4").isLoopback() };', 1, 44, ".isLoopback"),
        ("permit(principal, action, resource) when { context.args has n && context.args.n + 1 > 2 };", 1, 66,
         "arithmetic"),
        ('permit(principal, action, resource) when { context.args has n && context.args.n < "x" };', 1, 66,
         "compares numbers"),
        ('@corral("maybe") permit(principal, action, resource);', 1, 1, 'unknown @corral("maybe")'),
        ('@corral("flag") forbid(principal, action, resource);', 1, 1, "a forbid is a BLOCK"),
        ('permit(principal, action, resource) when { context.tool like "send_?*" };', 1, 44, "a tool glob has no ?"),
        ('\n\npermit(principal, action == Action::"a b", resource);', 3, 29, "not a tool name"),
    ],
)
def test_what_corral_cannot_say_is_a_located_error(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(CedarImportError) as caught:
        import_cedar(text, "b.cedar")
    error = caught.value
    assert (error.source, error.line, error.column) == ("b.cedar", line, column), str(error)
    assert words in error.message


def test_the_command(tmp_path: Path) -> None:
    (tmp_path / "team.cedar").write_text(CEDAR, encoding="utf-8")
    (tmp_path / "bad.cedar").write_text("permit(principal, action, resource) when { 1 + 1 == 2 };\n")
    (tmp_path / "p.rules").write_text('BLOCK send_email WHEN arg.to MATCHES "*@x*"\nBLOCK pay WHEN arg.n ABOVE 5\n')
    env = {**os.environ, "COLUMNS": "200"}

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "corral.cli", "rules", *args], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=120)

    imported = corral("import", "team.cedar")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == import_cedar(CEDAR, "team.cedar")
    bad = corral("import", "bad.cedar")
    assert bad.returncode == 2 and bad.stderr.startswith("error: bad.cedar:1:44: arithmetic is not something corral's rules can read")
    assert corral("import", "missing.cedar").returncode == 2
    exported = corral("export", "p.rules", "--to", "cedar")
    assert exported.returncode == 0
    assert 'forbid (principal, action == Action::"pay", resource)' in exported.stdout
    assert exported.stderr.startswith("p.rules:1: not translated: BLOCK send_email")
    assert corral("export", "p.rules", "--to", "cedar", "--strict").returncode == 1
    schema = corral("export", "p.rules", "--to", "cedar", "--schema", "--tools", "lookup")
    assert 'action "lookup", "pay", "send_email" appliesTo' in schema.stdout
    assert cedarpy.validate_policies(exported.stdout, schema.stdout).validation_passed
    (tmp_path / "broken.rules").write_text("BLOCK x WHEN effect IS destructive\n")
    broken = corral("export", "broken.rules", "--to", "cedar")
    assert broken.returncode == 2 and broken.stderr.startswith('error: broken.rules:1:24: unknown effect "destructive"')
