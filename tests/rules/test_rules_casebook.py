"""Policy tests (``corral rules test``, DESIGN §14): reading TESTS.yaml with located errors, deciding
each case with the rules, the rules no case exercised, the command's output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.governance.rules import Policy
from corral.governance.rules.casebook import CasebookError, load_cases, run_casebook, run_cases

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULES = """\
TIMEZONE Europe/Berlin
BLOCK issue_refund WHEN arg.amount ABOVE 1000 BECAUSE "finance"
REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100
FLAG * WHEN time OUTSIDE 09:00-17:00
BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 3
BLOCK * WHEN day IN (sat, sun) UNLESS principal.role IS oncall
BLOCK send_email WHEN tags CONTAINS egress AND labels CONTAINS untrusted AND labels CONTAINS pii
ALLOW lookup WHEN principal IS alice
SHADOW BLOCK lookup WHEN budget AT LEAST 80%
"""


def policy() -> Policy:
    return Policy.from_sources([(RULES, "p.rules")])


def cases(text: str):  # type: ignore[no-untyped-def]
    return load_cases(text, "t.yaml", policy())


def failure(text: str) -> CasebookError:
    with pytest.raises(CasebookError) as caught:
        cases(text)
    return caught.value


def run(text: str):  # type: ignore[no-untyped-def]
    return run_cases(policy(), cases(text))


# -- the examples' rule files have tests, and they pass --------------------------------------------------


def example_rule_files() -> list[Path]:
    return sorted([*EXAMPLES.glob("*.rules"), *EXAMPLES.glob("*/*.rules")])


def test_every_example_rules_file_has_a_tests_file() -> None:
    assert example_rule_files()
    for rules in example_rule_files():
        assert rules.with_suffix(".tests.yaml").is_file(), f"{rules} has no tests file"


@pytest.mark.parametrize("rules", example_rule_files(), ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_the_examples_policy_tests_pass_and_exercise_every_rule(rules: Path) -> None:
    report = run_casebook([rules], rules.with_suffix(".tests.yaml"))
    assert [r.problems for r in report.results if not r.passed] == []
    assert report.unexercised == []
    assert len(report.results) >= len(report.rules)


# -- deciding cases -------------------------------------------------------------------------------------


def test_cases_are_decided_by_the_rules_with_documented_defaults() -> None:
    report = run(
        """
- name: small
  call: {tool: issue_refund, args: {amount: 20}, time: "10:00"}
  expect: allowed
- name: big
  call: {tool: issue_refund, args: {amount: 200}, time: "10:00"}
  expect: approval
  rule: p.rules:3
- name: huge, rule named by line only
  call: {tool: issue_refund, args: {amount: 2000}, time: "10:00"}
  expect: blocked
  rule: 2
- name: default time is noon, a Tuesday
  call: {tool: issue_refund, args: {amount: 1}}
  expect: allowed
"""
    )
    assert [(r.case.name, r.got, r.passed) for r in report.results] == [
        ("small", "allowed", True),
        ("big", "approval", True),
        ("huge, rule named by line only", "blocked", True),
        ("default time is noon, a Tuesday", "allowed", True),
    ]
    assert report.ok and report.passed == 4 and report.failed == 0
    first = report.results[0].case.facts
    assert (first.effect, first.phase, first.principal, first.roles, first.budget_pct) == (
        "irreversible", "explore", None, (), 0.0,
    )
    assert first.remaining is None


def test_failures_say_what_was_expected_and_what_decided() -> None:
    report = run(
        """
- name: wrong decision
  call: {tool: issue_refund, args: {amount: 2000}, time: "10:00"}
  expect: approval
- name: right decision, wrong rule
  call: {tool: issue_refund, args: {amount: 2000}, time: "10:00"}
  expect: blocked
  rule: p.rules:3
"""
    )
    assert not report.ok and report.failed == 2
    assert report.results[0].problems == ["expected approval, got blocked: finance (p.rules:2)"]
    assert report.results[1].problems == ["expected p.rules:3 to decide, decided by p.rules:2"]


def test_time_and_day_are_read_in_the_policy_time_zone() -> None:
    report = run(
        """
- call: {tool: lookup, principal: alice, time: "08:59"}
  expect: flagged
  rule: p.rules:4
- call: {tool: lookup, principal: alice, time: "17:00"}
  expect: allowed
- call: {tool: lookup, principal: alice, day: sat}
  expect: blocked
- call: {tool: lookup, principal: {name: alice, roles: [oncall]}, day: Sunday}
  expect: allowed
"""
    )
    assert [r.problems for r in report.results] == [[], [], [], []]
    assert str(report.results[0].case.facts.now.tzinfo) == "Europe/Berlin"


def test_calls_counts_and_labels_and_tags() -> None:
    report = run(
        """
- call: {tool: send_sms, calls: {send_email: 2}}
  expect: allowed
- call: {tool: send_sms, calls: {send_email: 2, send_sms: 1}}
  expect: blocked
  rule: p.rules:5
- call: {tool: send_sms, calls: {"send_*": 3}}
  expect: blocked
- call: {tool: send_email, labels: [pii, untrusted], tags: [egress]}
  expect: blocked
  rule: p.rules:7
- call: {tool: send_email, labels: pii, tags: [egress]}
  expect: allowed
"""
    )
    assert [r.problems for r in report.results] == [[], [], [], [], []]


def test_shadow_expectations() -> None:
    report = run(
        """
- call: {tool: lookup, principal: alice, budget: "85%"}
  expect: allowed
  shadow: blocked
- call: {tool: lookup, principal: alice, budget: 10}
  expect: allowed
  shadow: blocked
"""
    )
    assert report.results[0].passed and report.results[0].shadow == "blocked"
    assert report.results[1].problems == ["expected the shadow decision blocked, got allowed"]


def test_rules_no_case_exercised_are_listed() -> None:
    report = run("- {call: {tool: lookup, principal: alice}, expect: allowed}\n")
    assert [source for source, _ in report.unexercised] == [f"p.rules:{n}" for n in (2, 3, 4, 5, 6, 7, 9)]
    assert report.unexercised[0][1] == "BLOCK issue_refund WHEN arg.amount ABOVE 1000"
    assert report.summary() == "1 case: 1 passed, 0 failed; 1 of 8 rules exercised"
    lines = report.lines()
    assert lines[0] == "PASS  case 1: allowed (p.rules:8)"
    assert "Rules no case exercised (7 of 8):" in lines


def test_default_block_is_named_when_a_case_expects_a_rule() -> None:
    policy = Policy.from_sources([("DEFAULT BLOCK\nALLOW lookup\nBLOCK lookup WHEN arg.x IS 1\n", "d.rules")])
    found = load_cases("- {call: {tool: other}, expect: blocked, rule: d.rules:3}\n", "t.yaml", policy)
    (result,) = run_cases(policy, found).results
    assert result.problems == ["expected d.rules:3 to decide, decided by DEFAULT BLOCK"]


# -- located errors in the tests file ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "case", "field", "words"),
    [
        ("", 1, 1, None, None, "the file has no cases"),
        ("name: x\n", 1, 1, None, None, "expected a YAML list of cases"),
        ("- [1, 2]\n", 1, 3, 1, None, "a case is a mapping"),
        ("- {name: a, call: {tool: x}, expect: allowed}\n- {name: b, cal: {tool: x}, expect: allowed}\n",
         2, 18, 2, "cal", 'unknown field (did you mean "call"?)'),
        ("- name: a\n  expect: allowed\n", 1, 3, 1, "call", "missing call"),
        ("- name: a\n  call: {tool: x}\n", 1, 3, 1, "expect", "missing expect: one of allowed, flagged"),
        ("- name: a\n  call: {tool: x}\n  expect: alowed\n", 3, 11, 1, "expect", "got 'alowed'"),
        ("- name: a\n  call: {tool: x}\n  expect: allowed\n  shadow: maybe\n", 4, 11, 1, "shadow", "got 'maybe'"),
        ("- name: a\n  call: {args: {}}\n  expect: allowed\n", 2, 9, 1, "call.tool", "the tool's name is required"),
        ("- name: a\n  call: send_email\n  expect: allowed\n", 2, 9, 1, "call", "a call is a mapping"),
        ("- call: {tool: x, agrs: {a: 1}}\n  expect: allowed\n", 1, 25, 1, "call.agrs", '(did you mean "args"?)'),
        ("- call: {tool: x, args: [1]}\n  expect: allowed\n", 1, 25, 1, "call.args", "args is a mapping"),
        ("- call: {tool: x, effect: destructive}\n  expect: allowed\n", 1, 27, 1, "call.effect",
         "expected one of read, reversible, irreversible"),
        ("- call: {tool: x, phase: comit}\n  expect: allowed\n", 1, 26, 1, "call.phase", '(did you mean "commit"?)'),
        ("- call: {tool: x, day: funday}\n  expect: allowed\n", 1, 24, 1, "call.day", "expected a day"),
        ("- call: {tool: x, time: 25:00}\n  expect: allowed\n", 1, 25, 1, "call.time", "expected a time of day"),
        ("- call: {tool: x, budget: lots}\n  expect: allowed\n", 1, 27, 1, "call.budget", "a percentage"),
        ("- call: {tool: x, budget: 150%}\n  expect: allowed\n", 1, 27, 1, "call.budget", "a percentage"),
        ("- call: {tool: x, spent: -3}\n  expect: allowed\n", 1, 26, 1, "call.spent", "an amount of money"),
        ("- call: {tool: x, calls: {send_*: -1}}\n  expect: allowed\n", 1, 35, 1, "call.calls.send_*", "whole number"),
        ("- call: {tool: x, calls: 3}\n  expect: allowed\n", 1, 26, 1, "call.calls", "calls maps tool names"),
        ("- call: {tool: x, labels: [pii, 3]}\n  expect: allowed\n", 1, 27, 1, "call.labels", "a list of words"),
        ("- call: {tool: x, principal: [a]}\n  expect: allowed\n", 1, 30, 1, "call.principal", "a principal is a name"),
        ("- call: {tool: x, principal: {name: a, role: [b]}}\n  expect: allowed\n", 1, 46, 1, "call.principal.role",
         '(did you mean "roles"?)'),
        ("- call: {tool: x, roles: [a], principal: {name: a, roles: [b]}}\n  expect: allowed\n", 1, 59, 1,
         "call.principal.roles", "roles are given twice"),
        ("- call: {tool: x}\n  expect: allowed\n  rule: p.rules:40\n", 3, 9, 1, "rule", "no rule at p.rules:40"),
        ("- call: {tool: x}\n  expect: allowed\n  rule: other.rules:2\n", 3, 9, 1, "rule", "no rule at other.rules:2"),
        ("- call: {tool: x}\n  expect: allowed\n  rule: the big one\n", 3, 9, 1, "rule", "FILE:LINE"),
        ("- call: {tool: x}\n  expect: allowed\n  expect: blocked\n", 3, 3, None, None, "duplicate key 'expect'"),
        ("- call: {tool: x\n  expect: allowed\n", 2, 9, None, None, "not valid YAML"),
        ("- call: {tool: x}\n\texpect: allowed\n", 2, 1, None, None, "not valid YAML"),
    ],
)
def test_a_wrong_tests_file_gets_a_located_error(
    text: str, line: int, column: int, case: int | None, field: str | None, words: str
) -> None:
    error = failure(text)
    assert (error.source, error.line, error.column, error.case, error.field) == ("t.yaml", line, column, case, field), (
        str(error)
    )
    assert words in error.message
    assert str(error).startswith(f"t.yaml:{line}:{column}: ")


def test_the_error_names_the_case_by_number_and_name() -> None:
    error = failure("- name: ok\n  call: {tool: x}\n  expect: allowed\n- name: broken one\n  call: {tool: x, phase: 1}\n"
                    "  expect: allowed\n")
    assert str(error).startswith("t.yaml:5:26: case 2 ('broken one'), call.phase: expected one of explore")
    assert error.to_dict()["case"] == 2 and error.to_dict()["name"] == "broken one"


def test_yaml_sexagesimal_times_are_read_as_written() -> None:
    (case,) = cases("- {call: {tool: lookup, time: 10:30}, expect: allowed}\n")
    assert (case.facts.now.hour, case.facts.now.minute) == (10, 30)


def test_unreadable_files_are_located_errors(tmp_path: Path) -> None:
    rules = tmp_path / "p.rules"
    rules.write_text("BLOCK x\n")
    with pytest.raises(CasebookError) as caught:
        run_casebook([rules], tmp_path / "missing.yaml")
    assert "cannot read the tests file" in str(caught.value)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CasebookError):
        run_casebook([rules], binary)


# -- the command ------------------------------------------------------------------------------------------


def corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "corral.cli", "rules", "test", *args],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=120,
    )


def test_the_command_prints_a_table_and_exits_by_result(tmp_path: Path) -> None:
    (tmp_path / "p.rules").write_text(RULES, encoding="utf-8")
    (tmp_path / "ok.yaml").write_text("- {name: quiet lookup, call: {tool: lookup, principal: alice}, expect: allowed}\n")
    (tmp_path / "bad.yaml").write_text("- {name: wrong, call: {tool: lookup, principal: alice}, expect: blocked}\n")
    passed = corral("p.rules", "ok.yaml", cwd=tmp_path)
    assert passed.returncode == 0, passed.stderr
    assert "PASS" in passed.stdout and "quiet lookup" in passed.stdout
    assert "Rules no case exercised (7 of 8):" in passed.stdout
    assert "p.rules:2  BLOCK issue_refund WHEN arg.amount ABOVE 1000" in passed.stdout
    assert "1 case: 1 passed, 0 failed; 1 of 8 rules exercised" in passed.stdout
    assert corral("p.rules", "ok.yaml", "--strict", cwd=tmp_path).returncode == 1
    failed = corral("p.rules", "bad.yaml", cwd=tmp_path)
    assert failed.returncode == 1
    assert "FAIL wrong (bad.yaml:1): expected blocked, got allowed" in failed.stdout
    as_json = corral("p.rules", "bad.yaml", "--json", cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert (document["passed"], document["failed"], document["tests"]) == (0, 1, "bad.yaml")
    assert document["cases"][0]["got"] == "allowed" and document["cases"][0]["deciding"] == ["p.rules:8"]
    assert len(document["unexercised"]) == 7


def test_the_command_exits_2_with_a_located_error_for_wrong_input(tmp_path: Path) -> None:
    (tmp_path / "p.rules").write_text("BLOCK x WHEN phase IS comit\n", encoding="utf-8")
    (tmp_path / "good.rules").write_text("BLOCK x\n", encoding="utf-8")
    (tmp_path / "t.yaml").write_text("- {call: {tool: x, phase: later}, expect: blocked}\n", encoding="utf-8")
    bad_rules = corral("p.rules", "t.yaml", cwd=tmp_path)
    assert bad_rules.returncode == 2
    assert bad_rules.stderr.startswith('error: p.rules:1:23: unknown phase "comit"')
    assert "Traceback" not in bad_rules.stderr
    bad_tests = corral("good.rules", "t.yaml", cwd=tmp_path)
    assert bad_tests.returncode == 2
    assert bad_tests.stderr.startswith("error: t.yaml:1:27: case 1, call.phase: expected one of explore")
    assert corral("t.yaml", cwd=tmp_path).returncode == 2


# -- whatever the tests file says, the answer is a result or a located error --------------------------------

VALID_CASES = """\
- name: big refund
  call: {tool: issue_refund, args: {amount: 200, note: [a, {b: 1}]}, effect: reversible, phase: commit,
         principal: {name: alice, roles: [agent]}, budget: "80%", spent: $1, remaining: 4, cost: 0.5,
         time: "10:00", day: tue, calls: {"send_*": 3}, labels: [pii], tags: [egress]}
  expect: approval
  rule: p.rules:3
  shadow: approval
"""
PIECES = ["\n", " ", "  ", ":", "-", "{", "}", "[", "]", ",", '"', "'", "&a", "*a", "!!python/object", "%", "?",
          "|", ">", "#", "\t", "~", "null", "true", "1e9", "10:00", "call", "expect", "tool"]


@st.composite
def mutated_cases(draw: st.DrawFn) -> str:
    text = VALID_CASES
    for _ in range(draw(st.integers(1, 5))):
        position = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:position] + draw(st.sampled_from(PIECES) | st.text(max_size=3)) + text[position:]
        else:
            text = text[:position] + text[position + draw(st.integers(1, 6)):]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_cases())
def test_any_tests_file_gives_results_or_a_located_error(text: str) -> None:
    try:
        found = cases(text)
    except CasebookError as error:
        assert error.source == "t.yaml" and error.line >= 1 and error.column >= 1 and error.message
        return
    report = run_cases(policy(), found)
    assert len(report.results) == len(found)


def test_the_valid_cases_pass() -> None:
    assert run(VALID_CASES).ok
