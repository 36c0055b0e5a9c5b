"""Shadow rules (DESIGN §14): ``SHADOW`` before a rule, ``MODE SHADOW`` atop a file — evaluated and
traced, never enforced; the verdict carries what the decision would have been with them enforced."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.errors import RuleSyntaxError
from corral.governance.rules import Policy, lint_rules, parse_rules
from corral.governance.rules.lint import lint_sources


@dataclass
class Facts:
    tool: str = "send_email"
    effect: str = "irreversible"
    phase: str = "commit"
    budget_pct: float = 10.0
    spent: Decimal = Decimal("0.50")
    remaining: Decimal | None = Decimal("4.50")
    cost: Decimal = Decimal("0.01")
    args: Mapping[str, Any] = field(default_factory=lambda: {"to": "eve@evil.example", "amount": 120})
    principal: str | None = "alice"
    roles: tuple[str, ...] = ("agent",)
    agent: str | None = "desk"
    now: datetime = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    call_log: Sequence[tuple[str, datetime]] = ()


def error_of(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rules(text, "s.rules")
    return caught.value


# -- parsing ------------------------------------------------------------------------------------------


def test_a_shadow_prefix_marks_one_rule() -> None:
    file = parse_rules("BLOCK a\nSHADOW BLOCK b WHEN phase IS commit  # trial\n  shadow   flag c\n", "s.rules")
    assert [(r.target, r.shadow) for r in file.rules] == [("a", False), ("b", True), ("c", True)]
    assert file.rules[1].text == "SHADOW BLOCK b WHEN phase IS commit"
    assert file.rules[1].canonical.startswith("SHADOW BLOCK b")
    assert not file.shadow


def test_mode_shadow_makes_every_rule_of_its_file_a_shadow_rule() -> None:
    file = parse_rules("# trial\nmode shadow\nBLOCK a\nREQUIRE APPROVAL FOR b WHEN arg.x ABOVE 1\n", "s.rules")
    assert file.shadow
    assert all(rule.shadow for rule in file.rules) and len(file.rules) == 2
    assert not parse_rules("MODE ENFORCE\nBLOCK a\n").rules[0].shadow


def test_shadow_and_mode_stay_tool_names_and_values_where_a_word_is_expected() -> None:
    file = parse_rules("BLOCK shadow WHEN arg.mode IS shadow\nALLOW mode\n")
    assert [(r.target, r.shadow) for r in file.rules] == [("shadow", False), ("mode", False)]


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("BLOCK a\nMODE SHADOW", 2, 1, "must come before the file's first rule (line 1)"),
        ("MODE SHADOW\nMODE ENFORCE\nBLOCK a", 2, 1, "conflicts with MODE SHADOW on line 1"),
        ("MODE shadw", 1, 6, 'unknown mode "shadw" (did you mean "SHADOW"?)'),
        ("MODE", 1, 5, "a word"),
        ("SHADOW DEFAULT BLOCK", 1, 8, "put it in a MODE SHADOW file"),
        ("SHADOW REQUIRE PLAN", 1, 16, "to trial REQUIRE PLAN"),
        ("SHADOW", 1, 7, "BLOCK"),
        ("BLOCK SHADOW x", 1, 14, "WHEN, UNLESS, BECAUSE or the end of the line"),
    ],
)
def test_located_errors(text: str, line: int, column: int, words: str) -> None:
    error = error_of(text)
    assert (error.source, error.line, error.column) == ("s.rules", line, column), error
    assert words in error.message


def test_shadow_changes_the_policy_hash() -> None:
    plain = Policy.from_text("BLOCK a")
    assert Policy.from_text("SHADOW BLOCK a").sha256 != plain.sha256
    assert Policy.from_text("MODE SHADOW\nBLOCK a").sha256 != plain.sha256
    assert Policy.from_text("block   a  # note").sha256 == plain.sha256


# -- deciding -----------------------------------------------------------------------------------------


def test_a_shadow_block_is_traced_but_not_enforced() -> None:
    policy = Policy.from_sources(
        [
            ("FLAG send_*\n", "base.rules"),
            ('MODE SHADOW\nBLOCK send_email WHEN arg.to MATCHES "*@evil.example"\nFLAG lookup\n', "new.rules"),
        ]
    )
    verdict = policy.decide(Facts())
    assert verdict.decision == "flagged"
    assert [o.source for o in verdict.deciding] == ["base.rules:1"]
    assert verdict.shadow is not None
    assert verdict.shadow.decision == "blocked"
    assert verdict.shadow.rules == ["new.rules:2"]
    assert "new.rules:2" in verdict.shadow.reason
    assert verdict.shadow.to_dict() == {"decision": "blocked", "rules": ["new.rules:2"], "reason": verdict.shadow.reason}
    checks = [o.to_check() for o in policy.evaluate(Facts())]
    assert checks[0].get("shadow") is None and "shadow" not in checks[0]
    assert checks[1]["shadow"] is True and checks[1]["matched"] is True


def test_no_shadow_verdict_when_no_shadow_rule_is_aimed_at_the_call() -> None:
    policy = Policy.from_sources([("BLOCK send_email\nSHADOW BLOCK lookup\n", "p.rules")])
    assert policy.has_shadow
    assert policy.decide(Facts()).shadow is None
    assert Policy.from_text("BLOCK send_email").decide(Facts()).shadow is None


def test_a_shadow_rule_that_does_not_match_still_gives_the_shadow_decision() -> None:
    policy = Policy.from_sources([("SHADOW BLOCK send_email WHEN arg.amount ABOVE 500\n", "p.rules")])
    verdict = policy.decide(Facts())
    assert verdict.decision == "allowed"
    assert verdict.shadow is not None
    assert (verdict.shadow.decision, verdict.shadow.rules) == ("allowed", [])


def test_a_shadow_allow_does_not_open_an_enforced_default_block() -> None:
    policy = Policy.from_sources([("DEFAULT BLOCK\nSHADOW ALLOW send_email\n", "p.rules")])
    verdict = policy.decide(Facts())
    assert verdict.decision == "blocked"
    assert verdict.shadow is not None and verdict.shadow.decision == "allowed"
    assert verdict.shadow.rules == ["p.rules:2"]


def test_a_shadow_files_directives_shape_only_the_shadow_decision() -> None:
    policy = Policy.from_sources([("ALLOW send_*\n", "base.rules"), ("MODE SHADOW\nDEFAULT BLOCK\nREQUIRE PLAN\n", "t.rules")])
    assert (policy.default, policy.require_plan) == ("allow", False)
    assert (policy.shadow_default, policy.shadow_require_plan, policy.shadow_plan_differs) == ("block", True, True)
    lookup = policy.decide(Facts(tool="lookup"))
    assert lookup.decision == "allowed"
    assert lookup.shadow is not None
    assert (lookup.shadow.decision, lookup.shadow.rules) == ("blocked", ["t.rules:2"])
    assert "DEFAULT BLOCK" in lookup.shadow.reason
    send = policy.decide(Facts())
    assert send.shadow is not None and send.shadow.decision == "allowed"


def test_shadow_approval_and_flag() -> None:
    policy = Policy.from_text(
        "SHADOW REQUIRE APPROVAL FOR send_email WHEN arg.amount ABOVE 100\nSHADOW FLAG *\n", "p.rules"
    )
    verdict = policy.decide(Facts())
    assert verdict.decision == "allowed" and verdict.deciding == []
    assert verdict.shadow is not None
    assert (verdict.shadow.decision, verdict.shadow.rules) == ("approval_required", ["p.rules:1", "p.rules:2"])


def test_an_indeterminate_shadow_block_fails_closed_in_the_shadow_decision_only() -> None:
    policy = Policy.from_text("SHADOW BLOCK send_email WHEN arg.missing ABOVE 1", "p.rules")
    verdict = policy.decide(Facts())
    assert verdict.decision == "allowed"
    assert verdict.shadow is not None and verdict.shadow.decision == "blocked"
    (outcome,) = policy.evaluate(Facts())
    assert outcome.indeterminate and outcome.shadow


# -- the enforced decision never depends on shadow rules ----------------------------------------------

POOL = [
    "BLOCK * WHEN arg.amount ABOVE 100",
    'BLOCK send_* WHEN arg.to MATCHES "*@evil.example"',
    "ALLOW send_email",
    "ALLOW * WHEN principal.role IS admin",
    "FLAG * WHEN budget ABOVE 50%",
    "REQUIRE APPROVAL FOR * WHEN effect IS irreversible",
    "REQUIRE APPROVAL FOR send_email WHEN arg.missing AT LEAST 20",
    "BLOCK lookup",
    "DEFAULT BLOCK",
    "REQUIRE PLAN",
]
calls = st.builds(
    Facts,
    tool=st.sampled_from(["send_email", "send_sms", "lookup"]),
    effect=st.sampled_from(["read", "reversible", "irreversible"]),
    budget_pct=st.floats(0, 100),
    args=st.fixed_dictionaries({}, optional={"amount": st.integers(0, 300), "to": st.sampled_from(["a@b.c", "x@evil.example"])}),
    roles=st.sampled_from([(), ("admin",), ("agent",)]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=6), st.lists(st.sampled_from(POOL), max_size=6), st.booleans(), calls)
def test_shadow_rules_never_change_the_enforced_verdict(
    enforced: list[str], trial: list[str], whole_file: bool, call: Facts
) -> None:
    base = Policy.from_sources([("\n".join(enforced), "base.rules")])
    if whole_file:
        shadow_text = "MODE SHADOW\n" + "\n".join(trial)
    else:
        shadow_text = "\n".join("SHADOW " + line for line in trial if not line.startswith(("DEFAULT", "REQUIRE PLAN")))
    both = Policy.from_sources([("\n".join(enforced), "base.rules"), (shadow_text, "trial.rules")])
    alone, together = base.decide(call), both.decide(call)
    assert (together.decision, together.reason, [o.source for o in together.deciding]) == (
        alone.decision,
        alone.reason,
        [o.source for o in alone.deciding],
    )
    assert (both.default, both.require_plan) == (base.default, base.require_plan)
    # the shadow decision is the decision of one policy with every rule enforced
    if together.shadow is not None:
        merged_text = "\n".join([*enforced, *(line.removeprefix("SHADOW ") for line in shadow_text.splitlines())])
        merged = Policy.from_sources([(merged_text.replace("MODE SHADOW", ""), "m.rules")]).decide(call)
        assert together.shadow.decision == merged.decision


# -- corral rules check knows shadow rules ------------------------------------------------------------


def test_lint_notes_shadow_rules_and_keeps_them_apart_from_enforced_ones() -> None:
    found = lint_rules("SHADOW BLOCK send_*\nALLOW send_email\nSHADOW ALLOW send_sms\n", "t.rules")
    assert [(d.severity, d.line) for d in found] == [("note", 1), ("warning", 3)]
    assert "2 shadow rules (lines 1, 3) evaluated and traced, never enforced" in found[0].message
    # an enforced ALLOW beside a shadow BLOCK takes effect; a shadow ALLOW beside it does not
    assert "this ALLOW never takes effect: BLOCK send_* (t.rules:1)" in found[1].message


def test_lint_warns_about_redundant_and_already_enforced_shadow_rules() -> None:
    found = lint_sources(
        [
            ("BLOCK send_email WHEN arg.amount EXISTS AND arg.amount ABOVE 100\n", "base.rules"),
            (
                "MODE SHADOW\nSHADOW FLAG lookup\nBLOCK send_email WHEN arg.amount EXISTS AND arg.amount ABOVE 100\n",
                "trial.rules",
            ),
        ]
    )
    by_line = {(d.source, d.line): d for d in found}
    assert by_line[("trial.rules", 1)].severity == "note"
    assert "MODE SHADOW: 2 shadow rules (lines 2, 3)" in by_line[("trial.rules", 1)].message
    assert "SHADOW is redundant here" in by_line[("trial.rules", 2)].message
    assert "already enforced (base.rules:1)" in by_line[("trial.rules", 3)].message
    assert all(d.severity != "error" for d in found)
