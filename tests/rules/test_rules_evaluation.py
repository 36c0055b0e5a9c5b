"""Evaluation: what every field and operator means at call time, three-valued logic, and the trace detail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from corral.errors import RuleSyntaxError
from corral.governance.rules import Policy, RuleOutcome

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday


@dataclass
class Facts:
    tool: str = "issue_refund"
    effect: str = "reversible"
    phase: str = "commit"
    budget_pct: float = 10.0
    spent: Decimal = Decimal("0.50")
    remaining: Decimal | None = Decimal("4.50")
    cost: Decimal = Decimal("0.01")
    args: Mapping[str, Any] = field(default_factory=dict)
    principal: str | None = "alice"
    roles: tuple[str, ...] = ("agent",)
    agent: str | None = "refund-desk"
    now: datetime = NOON
    call_log: Sequence[tuple[str, datetime]] = ()
    labels: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()


def outcome(rule: str, **facts: Any) -> RuleOutcome:
    """The outcome of a single rule aimed at every tool."""
    policy = Policy.from_sources([(rule, "t.rules")])
    outcomes = policy.evaluate(Facts(**facts))
    assert len(outcomes) == 1
    return outcomes[0]


def matched(condition: str, **facts: Any) -> bool | None:
    """The condition's three-valued truth: True, False or None (indeterminate)."""
    result = outcome(f"FLAG * WHEN {condition}", **facts)
    return None if result.indeterminate else result.matched


# -- fields -------------------------------------------------------------------------------------------


def test_phase_and_effect() -> None:
    assert matched("phase IS commit") is True
    assert matched("phase IS NOT commit") is False
    assert matched("phase IN (explore, decide)", phase="decide") is True
    assert matched("phase NOT IN (explore, decide)", phase="decide") is False
    assert matched("effect IS irreversible", effect="irreversible") is True
    assert matched("effect IS IRREVERSIBLE", effect="irreversible") is True
    assert matched("phase MATCHES c*") is True


def test_labels_and_tags_are_sets() -> None:
    read_pii = {"labels": frozenset({"pii", "untrusted"}), "tags": frozenset({"egress"})}
    assert matched("labels CONTAINS pii", **read_pii) is True
    assert matched("labels CONTAINS secret", **read_pii) is False
    assert matched("labels IN (secret, untrusted)", **read_pii) is True
    assert matched("labels NOT IN (secret, untrusted)", **read_pii) is False
    assert matched("labels IS pii", **read_pii) is True
    assert matched('labels MATCHES "un*"', **read_pii) is True
    assert matched("labels EXISTS", **read_pii) is True
    assert matched("labels EXISTS") is False
    assert matched("tags CONTAINS egress AND labels CONTAINS untrusted AND labels CONTAINS pii", **read_pii) is True
    assert matched("tags CONTAINS egress") is False
    result = outcome("BLOCK * WHEN tags CONTAINS egress AND labels CONTAINS pii", **read_pii)
    assert result.detail == "tags = (egress), CONTAINS egress → true AND labels = (pii, untrusted), CONTAINS pii → true"
    assert "labels = (none)" in outcome("FLAG * WHEN labels CONTAINS pii").detail


def test_label_rules_are_indeterminate_where_the_facts_carry_no_labels() -> None:
    class Bare:
        tool = "issue_refund"

    result = Policy.from_text("BLOCK * WHEN labels CONTAINS pii").evaluate(Bare())[0]  # type: ignore[arg-type]
    assert result.indeterminate and result.matched  # a BLOCK fails closed


def test_legacy_tool_is_effect() -> None:
    assert matched("tool IS irreversible", effect="irreversible") is True
    assert matched("tool IS irreversible", effect="read") is False
    assert matched("tool IS NOT read", effect="read") is False
    assert matched("tool IS issue_refund") is True
    assert matched("tool IS send_email") is False


def test_tool_name_operators() -> None:
    assert matched("tool IN (a, issue_refund)") is True
    assert matched('tool MATCHES "ISSUE_*"') is True
    assert matched("tool CONTAINS refund") is True


def test_budget_is_percent() -> None:
    assert matched("budget ABOVE 90%", budget_pct=90.5) is True
    assert matched("budget ABOVE 90%", budget_pct=90.0) is False
    assert matched("budget AT LEAST 90", budget_pct=90.0) is True
    assert matched("budget BELOW 0.9", budget_pct=0.5) is True  # 0.9 percent, not 90
    assert matched("budget ABOVE 0.9", budget_pct=50.0) is True


def test_money_fields_compare_exactly() -> None:
    assert matched("spent ABOVE $0.3", spent=Decimal("0.30000000000000004")) is True
    assert matched("spent AT MOST $0.3", spent=Decimal("0.3")) is True
    assert matched("cost IS 0.01") is True
    assert matched("remaining BELOW 5") is True
    assert matched("cost ABOVE 0.1", cost=0.1) is False  # a float compares by its repr, not its binary value
    assert matched("cost AT LEAST 0.1", cost=0.1) is True


def test_remaining_without_budget_is_indeterminate() -> None:
    assert matched("remaining BELOW 5", remaining=None) is None
    assert matched("remaining EXISTS", remaining=None) is False
    assert matched("remaining NOT EXISTS", remaining=None) is True
    assert (
        "remaining unknown (no budget) → indeterminate"
        in outcome("FLAG * WHEN remaining BELOW 5", remaining=None).detail
    )


def test_principal_and_agent() -> None:
    assert matched("principal IS alice") is True
    assert matched("principal IS NOT alice") is False
    assert matched("principal IS alice", principal=None) is False
    assert matched("principal IS NOT alice", principal=None) is True
    assert matched("principal EXISTS", principal=None) is False
    assert matched('principal MATCHES "bot-*"', principal=None) is False
    assert matched("agent IS refund-desk") is True
    assert matched("agent IN (a, b)") is False


def test_principal_role_is_multi_valued() -> None:
    roles = ("analyst", "oncall")
    assert matched("principal.role IS oncall", roles=roles) is True
    assert matched("principal.role IS admin", roles=roles) is False
    assert matched("principal.role IS NOT admin", roles=roles) is True
    assert matched("principal.role IS NOT oncall", roles=roles) is False
    assert matched("principal.role IN (admin, analyst)", roles=roles) is True
    assert matched("principal.role NOT IN (admin, analyst)", roles=roles) is False
    assert matched("principal.role NOT IN (admin)", roles=roles) is True
    assert matched("principal.role IS oncall AND principal.role IS analyst", roles=roles) is True
    assert matched("principal.role IS admin", roles=()) is False
    assert matched("principal.role EXISTS", roles=()) is False
    assert matched('principal.role MATCHES "on*"', roles=roles) is True


def test_arguments_by_type() -> None:
    args = {"amount": 120, "note": "Refund for order A1", "flag": True, "items": ["a", "b"], "zip": "01234"}
    assert matched("arg.amount ABOVE 100", args=args) is True
    assert matched("arg.amount IS 120", args=args) is True
    assert matched("arg.amount IS 120.0", args=args) is True
    assert matched('arg.amount IS "120"', args=args) is False  # quoted means text
    assert matched("arg.zip IS 01234", args=args) is True  # a bare number still equals the same text
    assert matched("arg.flag IS true", args=args) is True
    assert matched("arg.flag IS 1", args=args) is False  # a boolean is not a number
    assert matched("arg.note CONTAINS order", args=args) is True
    assert matched("arg.note CONTAINS ORDER", args=args) is True
    assert matched("arg.items CONTAINS b", args=args) is True
    assert matched("arg.items CONTAINS c", args=args) is False
    assert matched("arg.note IS NOT x", args=args) is True
    assert matched("arg.amount IN (1, 120)", args=args) is True
    assert matched("arg.amount NOT IN (1, 120)", args=args) is False


def test_numeric_arguments_compare_exactly() -> None:
    assert matched("arg.x ABOVE 0.3", args={"x": 0.1 + 0.2}) is True  # 0.30000000000000004
    assert matched("arg.x AT MOST 0.3", args={"x": Decimal("0.3")}) is True
    assert matched("arg.x BELOW -1", args={"x": -2}) is True
    assert matched("arg.x ABOVE $100", args={"x": 100.01}) is True


def test_wrong_types_are_indeterminate_for_numeric_operators() -> None:
    for value in ("120", None, True, [1], {"a": 1}, float("nan")):
        assert matched("arg.x ABOVE 100", args={"x": value}) is None, value


def test_is_with_mismatched_types_is_false_not_indeterminate() -> None:
    assert matched("arg.x IS 5", args={"x": None}) is False
    assert matched("arg.x IS NOT 5", args={"x": [5]}) is True
    assert matched("arg.x IS abc", args={"x": 5}) is False


def test_missing_argument_is_indeterminate_except_for_exists() -> None:
    for condition in ("arg.x IS a", "arg.x IS NOT a", "arg.x ABOVE 1", "arg.x IN (a)", 'arg.x MATCHES "*"'):
        assert matched(condition, args={}) is None, condition
    assert matched("arg.x EXISTS", args={}) is False
    assert matched("arg.x NOT EXISTS", args={}) is True
    assert matched("NOT arg.x EXISTS", args={}) is True
    assert matched("arg.x EXISTS", args={"x": None}) is False  # a defaulted None is not given
    assert matched("arg.x EXISTS", args={"x": 0}) is True


def test_nested_arguments() -> None:
    args = {"customer": {"tier": "gold", "tags": ["vip"]}, "lines": [{"sku": "A"}]}
    assert matched("arg.customer.tier IS gold", args=args) is True
    assert matched("arg.customer.tags CONTAINS vip", args=args) is True
    assert matched("arg.lines.0.sku IS A", args=args) is True
    assert matched("arg.customer.region IS eu", args=args) is None
    assert matched("arg.customer.tier.deeper IS x", args=args) is None
    assert matched("arg.customer.region EXISTS", args=args) is False


def test_matches_is_a_case_insensitive_glob() -> None:
    assert matched('arg.q MATCHES "*DROP*"', args={"q": "drop table users"}) is True
    assert matched('arg.q MATCHES "*DROP*"', args={"q": "select 1"}) is False
    assert matched('arg.q MATCHES "select ?"', args={"q": "SELECT 1"}) is True
    assert matched('arg.q MATCHES "*drop*"', args={"q": "line one\nDROP"}) is True
    assert matched('arg.q MATCHES "*"', args={"q": 5}) is None


# -- time and day -------------------------------------------------------------------------------------


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, 24, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [(8, 59, False), (9, 0, True), (12, 0, True), (17, 0, True), (17, 1, False), (23, 0, False)],
)
def test_time_ranges_include_both_ends(hour: int, minute: int, inside: bool) -> None:
    assert matched("time INSIDE 09:00-17:00", now=at(hour, minute)) is inside
    assert matched("time OUTSIDE 09:00-17:00", now=at(hour, minute)) is (not inside)


def test_time_resolution_is_the_minute() -> None:
    assert matched("time INSIDE 09:00-17:00", now=at(17, 0, 59)) is True
    assert matched("time ABOVE 17:00", now=at(17, 0, 59)) is False
    assert matched("time AT LEAST 17:00", now=at(17, 0, 59)) is True
    assert matched("time IS 17:00", now=at(17, 0, 30)) is True


@pytest.mark.parametrize(
    ("hour", "minute", "inside"),
    [
        (21, 59, False),
        (22, 0, True),
        (23, 59, True),
        (0, 0, True),
        (3, 0, True),
        (6, 0, True),
        (6, 1, False),
        (12, 0, False),
    ],
)
def test_time_ranges_that_wrap_midnight(hour: int, minute: int, inside: bool) -> None:
    assert matched("time INSIDE 22:00-06:00", now=at(hour, minute)) is inside
    assert matched("time OUTSIDE 22:00-06:00", now=at(hour, minute)) is (not inside)


def test_shape_outside_range() -> None:
    assert matched("time OUTSIDE 06:00-22:00", now=at(3)) is True
    assert matched("time OUTSIDE 06:00-22:00", now=at(14)) is False


def test_time_and_day_use_the_policy_time_zone() -> None:
    rule = "TIMEZONE Europe/Berlin\nFLAG * WHEN time AT LEAST 09:00\nFLAG * WHEN day IS wed"
    policy = Policy.from_sources([(rule, "tz.rules")])
    assert policy.timezone == ZoneInfo("Europe/Berlin")
    # 08:30 UTC on Tuesday is 09:30 in Berlin (CET, UTC+1)
    first, second = policy.evaluate(Facts(now=at(8, 30)))
    assert first.matched and "time = 09:30" in first.detail
    assert not second.matched
    # 23:30 UTC on Tuesday is already Wednesday in Berlin
    assert policy.evaluate(Facts(now=at(23, 30)))[1].matched


def test_a_naive_clock_is_read_as_utc() -> None:
    assert matched("time IS 12:00", now=datetime(2026, 11, 24, 12, 0)) is True


def test_days() -> None:
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert matched("day IN (sat, sun)", now=saturday) is True
    assert matched("day IS saturday", now=saturday) is True
    assert matched("day IS NOT sat", now=saturday) is False
    assert matched("day IS tue") is True


# -- calls() ------------------------------------------------------------------------------------------


def test_calls_counts_matching_executed_calls() -> None:
    log = [("send_email", at(10)), ("send_sms", at(11, 30)), ("lookup", at(11, 45)), ("send_email", at(11, 59))]
    assert matched("calls(send_*) IS 3", call_log=log) is True
    assert matched("calls(send_email) IS 2", call_log=log) is True
    assert matched("calls(send_*, 1h) IS 2", call_log=log) is True
    assert matched("calls(send_*, 30m) AT LEAST 2", call_log=log) is True
    assert matched("calls(send_*, 30s) IS 0", call_log=log) is True
    assert matched("calls(*) ABOVE 3", call_log=log) is True
    assert matched('calls("send_*", 1d) IS 3', call_log=log) is True


def test_calls_window_is_inclusive_at_its_start() -> None:
    log = [("send_email", NOON - timedelta(hours=1))]
    assert matched("calls(send_email, 1h) IS 1", call_log=log) is True


def test_calls_glob_is_case_sensitive_like_tool_names() -> None:
    assert matched("calls(SEND_*) IS 0", call_log=[("send_email", at(11))]) is True


# -- three-valued logic and fail-closed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("arg.x IS a AND phase IS explore", False),  # indeterminate AND false = false
        ("arg.x IS a AND phase IS commit", None),  # indeterminate AND true = indeterminate
        ("arg.x IS a OR phase IS commit", True),  # indeterminate OR true = true
        ("arg.x IS a OR phase IS explore", None),  # indeterminate OR false = indeterminate
        ("NOT arg.x IS a", None),
        ("NOT (arg.x IS a OR phase IS commit)", False),
        ("phase IS explore AND arg.x IS a", False),
        ("phase IS commit OR arg.x IS a", True),
    ],
)
def test_kleene_logic(condition: str, expected: bool | None) -> None:
    assert matched(condition, args={}) is expected


def test_indeterminate_block_and_approval_fail_closed() -> None:
    for action in ("BLOCK", "REQUIRE APPROVAL FOR"):
        result = outcome(f"{action} * WHEN arg.amount ABOVE 100", args={})
        assert result.matched is True
        assert result.indeterminate is True
        assert "indeterminate" in result.detail
        assert "arg.amount missing" in result.detail


def test_indeterminate_allow_and_flag_do_not_match() -> None:
    for action in ("ALLOW", "FLAG"):
        result = outcome(f"{action} * WHEN arg.amount ABOVE 100", args={})
        assert result.matched is False
        assert result.indeterminate is True
        assert "indeterminate" in result.detail


def test_exists_guard_avoids_the_indeterminate() -> None:
    result = outcome("BLOCK * WHEN arg.amount EXISTS AND arg.amount ABOVE 100", args={})
    assert (result.matched, result.indeterminate) == (False, False)


def test_unless_is_and_not() -> None:
    rule = "BLOCK * WHEN day IN (sat, sun) UNLESS principal.role IS oncall"
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    assert outcome(rule, now=saturday).matched is True
    assert outcome(rule, now=saturday, roles=("oncall",)).matched is False
    assert outcome(rule).matched is False
    # UNLESS of an indeterminate leaves the rule indeterminate: a BLOCK still fails closed
    guarded = outcome("BLOCK * WHEN phase IS commit UNLESS arg.override IS yes", args={})
    assert (guarded.matched, guarded.indeterminate) == (True, True)
    only = outcome("BLOCK * UNLESS principal.role IS admin")
    assert only.matched is True
    assert only.detail.startswith("UNLESS principal.role")


def test_a_rule_without_condition_always_matches() -> None:
    result = outcome("ALLOW *")
    assert (result.matched, result.indeterminate) == (True, False)


def test_a_fact_that_raises_makes_the_condition_indeterminate() -> None:
    class Broken:
        tool = "issue_refund"

        @property
        def budget_pct(self) -> float:
            raise RuntimeError("ledger offline")

    policy = Policy.from_sources([("BLOCK * WHEN budget ABOVE 50%\nALLOW * WHEN budget BELOW 50%", "t.rules")])
    block, allow = policy.evaluate(Broken())  # type: ignore[arg-type]
    assert (block.matched, block.indeterminate) == (True, True)
    assert (allow.matched, allow.indeterminate) == (False, True)
    assert "RuntimeError" in block.detail


# -- the trace detail ---------------------------------------------------------------------------------


def test_detail_shows_the_values_compared() -> None:
    refund = 'REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"'
    result = outcome(refund, args={"amount": 120})
    assert result.detail == "arg.amount = 120 > 100"
    assert outcome(refund, args={"amount": 50}).detail == "arg.amount = 50, not > 100"
    assert (
        outcome("BLOCK * WHEN phase IS NOT commit", phase="explore").detail == "phase = explore, IS NOT commit → true"
    )
    assert outcome("BLOCK * WHEN budget ABOVE 90%", budget_pct=92.5).detail == "budget = 92.5% > 90%"
    assert outcome("BLOCK * WHEN spent AT LEAST $1", spent=Decimal("0.50")).detail == "spent = $0.50, not >= $1"
    assert (
        'arg.q = "drop table", MATCHES "*DROP*" → true'
        in outcome('BLOCK * WHEN arg.q MATCHES "*DROP*"', args={"q": "drop table"}).detail
    )
    assert outcome("BLOCK * WHEN day IN (sat, sun)").detail == "day = tue, IN (sat, sun) → false"
    assert outcome("FLAG * WHEN time OUTSIDE 09:00-17:00").detail == "time = 12:00, OUTSIDE 09:00-17:00 → false"
    assert outcome("BLOCK * WHEN calls(send_*, 1h) AT LEAST 50").detail == "calls(send_*, 1h) = 0, not >= 50"


def test_detail_of_compound_conditions() -> None:
    detail = outcome("BLOCK * WHEN phase IS commit AND (arg.a IS 1 OR arg.b IS 2)", args={"a": 1}).detail
    assert detail == "phase = commit, IS commit → true AND (arg.a = 1, IS 1 → true)"
    unless = outcome("BLOCK * WHEN phase IS commit UNLESS principal.role IS oncall").detail
    assert unless == "phase = commit, IS commit → true; UNLESS principal.role = (agent), IS oncall → false"


def test_long_values_are_shortened_in_the_detail() -> None:
    detail = outcome("FLAG * WHEN arg.body CONTAINS secret", args={"body": "x" * 5000}).detail
    assert len(detail) < 200


def test_outcome_to_check() -> None:
    result = outcome('BLOCK * WHEN phase IS explore BECAUSE "read first"', phase="explore")
    assert result.to_check() == {
        "check": "rule",
        "rule": "BLOCK * WHEN phase IS explore",
        "source": "t.rules:1",
        "action": "block",
        "matched": True,
        "indeterminate": False,
        "detail": "phase = explore, IS explore → true",
    }
    assert result.because == "read first"


# -- the policy: indexing, directives, hashing ----------------------------------------------------------


def test_only_rules_aimed_at_the_tool_are_evaluated_in_file_order() -> None:
    text = "\n".join(
        [
            "BLOCK send_email",
            "FLAG *",
            "ALLOW send_*",
            "BLOCK issue_refund",
            "FLAG mcp.github.*",
            "ALLOW send_email WHEN phase IS commit",
        ]
    )
    policy = Policy.from_sources([(text, "p.rules")])
    sources = [o.source for o in policy.evaluate(Facts(tool="send_email"))]
    assert sources == ["p.rules:1", "p.rules:2", "p.rules:3", "p.rules:6"]
    assert [r.source for r in policy.rules_for("mcp.github.create_issue")] == ["p.rules:2", "p.rules:5"]
    assert [r.source for r in policy.rules_for("other")] == ["p.rules:2"]
    assert policy.rules_for("send_email") is policy.rules_for("send_email")  # cached


def test_target_globs_are_case_sensitive() -> None:
    policy = Policy.from_sources([("BLOCK send_*", "p.rules")])
    assert policy.rules_for("send_email")
    assert not policy.rules_for("SEND_email")


def test_rules_across_sources_keep_their_sources() -> None:
    policy = Policy.from_sources([("BLOCK a", "one.rules"), ("# c\nBLOCK a WHEN phase IS commit", "two.rules")])
    assert [r.source for r in policy.rules_for("a")] == ["one.rules:1", "two.rules:2"]
    assert [r.action for r in policy.rules] == ["block", "block"]


def test_directives_combine_across_sources() -> None:
    policy = Policy.from_sources([("DEFAULT ALLOW", "a.rules"), ("DEFAULT BLOCK\nREQUIRE PLAN", "b.rules")])
    assert policy.default == "block"
    assert policy.require_plan is True
    empty = Policy.from_sources([])
    assert (empty.default, empty.require_plan, empty.timezone, empty.rules) == ("allow", False, ZoneInfo("UTC"), ())
    assert empty.evaluate(Facts()) == []


def test_conflicting_timezones_across_sources() -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        Policy.from_sources([("TIMEZONE UTC", "a.rules"), ("\nTIMEZONE Europe/Berlin", "b.rules")])
    assert (caught.value.source, caught.value.line) == ("b.rules", 2)
    same = Policy.from_sources([("TIMEZONE Europe/Berlin", "a.rules"), ("TIMEZONE Europe/Berlin", "b.rules")])
    assert same.timezone == ZoneInfo("Europe/Berlin")


def test_sha256_is_stable_and_tracks_content() -> None:
    text = "BLOCK a WHEN phase IS explore\nALLOW b"
    first = Policy.from_sources([(text, "p.rules")]).sha256
    assert first == Policy.from_sources([(text, "p.rules")]).sha256
    assert len(first) == 64
    reformatted = "block   a when phase is explore   # why\n\nALLOW b"
    assert Policy.from_sources([(reformatted, "p.rules")]).sha256 == first
    assert Policy.from_sources([("BLOCK a WHEN phase IS commit\nALLOW b", "p.rules")]).sha256 != first
    assert Policy.from_sources([(text + "\nDEFAULT BLOCK", "p.rules")]).sha256 != first


def test_extend_returns_a_new_policy() -> None:
    base = Policy.from_sources([("ALLOW a", "base.rules")])
    more = base.extend([("BLOCK a\nTIMEZONE Europe/Berlin", "more.rules")])
    assert [r.source for r in more.rules_for("a")] == ["base.rules:1", "more.rules:1"]
    assert len(base.rules) == 1
    assert more.timezone == ZoneInfo("Europe/Berlin")
    assert more.sha256 != base.sha256


def test_from_sources_accepts_plain_text_and_paths(tmp_path: Any) -> None:
    path = tmp_path / "p.rules"
    path.write_text("BLOCK a\n", encoding="utf-8")
    policy = Policy.from_sources(["ALLOW b", path])
    assert [r.source for r in policy.rules] == ["<rules>:1", f"{path}:1"]


def test_compiled_rule_attributes() -> None:
    rule = Policy.from_sources([('REQUIRE APPROVAL FOR x WHEN cost ABOVE 1 BECAUSE "pricey"  # c', "p.rules")]).rules[0]
    assert (rule.action, rule.target, rule.text, rule.source, rule.because) == (
        "approval",
        "x",
        "REQUIRE APPROVAL FOR x WHEN cost ABOVE 1",
        "p.rules:1",
        "pricey",
    )


def test_a_large_policy_costs_the_same_per_tool() -> None:
    """Structure, not timing: rules aimed at other tools are never visited for this one."""
    other = "\n".join(f"BLOCK tool_{i} WHEN arg.amount ABOVE {i}" for i in range(2000))
    policy = Policy.from_sources([(other + "\nBLOCK issue_refund WHEN arg.amount ABOVE 100\nFLAG send_*", "big.rules")])
    assert [r.source for r in policy.rules_for("issue_refund")] == ["big.rules:2001"]
    assert len(policy.evaluate(Facts(args={"amount": 120}))) == 1
