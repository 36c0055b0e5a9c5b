"""corral.compat.shape.rules: Shape's parse_rules and Rule, read and evaluated by corral's rule language."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import ConfigError, RuleSyntaxError
from corral.compat.shape import Agent, Rule, RuleAction, ToolEffect, parse_rules

# ====================================================================================== parsing


class TestParse:
    def test_a_block_rule_becomes_its_action_target_and_condition(self):
        [rule] = parse_rules("BLOCK write_plc WHEN phase IS NOT commit")
        assert rule.action is RuleAction.BLOCK
        assert rule.tool_pattern == "write_plc"
        assert rule.conditions == [("phase", "IS NOT", "commit")]

    @pytest.mark.parametrize(
        ("line", "action"),
        [
            ("BLOCK * WHEN budget ABOVE 90%", RuleAction.BLOCK),
            ("ALLOW * WHEN phase IS explore", RuleAction.ALLOW),
            ("FLAG * WHEN time OUTSIDE 06:00-22:00", RuleAction.FLAG),
            ("REQUIRE APPROVAL FOR * WHEN tool IS irreversible", RuleAction.REQUIRE_APPROVAL),
            ("require   approval for * when tool is irreversible", RuleAction.REQUIRE_APPROVAL),
        ],
    )
    def test_every_action_word(self, line, action):
        assert parse_rules(line)[0].action is action

    def test_the_wildcard_and_a_percentage_are_kept_as_written(self):
        [rule] = parse_rules("BLOCK * WHEN budget ABOVE 80%")
        assert rule.tool_pattern == "*"
        assert rule.conditions == [("budget", "ABOVE", "80%")]

    def test_and_lists_each_condition(self):
        [rule] = parse_rules("BLOCK * WHEN phase IS commit AND budget ABOVE 50% AND effect IS irreversible")
        assert rule.conditions == [
            ("phase", "IS", "commit"),
            ("budget", "ABOVE", "50%"),
            ("effect", "IS", "irreversible"),
        ]

    def test_shapes_tool_is_an_effect_keeps_its_field_name(self):
        [rule] = parse_rules("REQUIRE APPROVAL FOR * WHEN tool IS irreversible")
        assert rule.conditions == [("tool", "IS", "irreversible")]
        assert rule.evaluate({"tool": "irreversible"})[0]  # Shape's context: "tool" holds the effect
        assert rule.evaluate({"effect": "irreversible"})[0]  # corral's name for it

    @pytest.mark.parametrize(
        ("unless", "negated"),
        [
            ("tool IS read", ("tool", "IS NOT", "read")),
            ("phase IS NOT commit", ("phase", "IS", "commit")),
            # exact: NOT (budget > 80) is budget <= 80, not Shape's budget < 80
            ("budget ABOVE 80%", ("budget", "AT MOST", "80%")),
            ("budget BELOW 20%", ("budget", "AT LEAST", "20%")),
            ("cost AT LEAST 5", ("cost", "BELOW", "5")),
            ("cost AT MOST 5", ("cost", "ABOVE", "5")),
            ("time OUTSIDE 09:00-17:00", ("time", "INSIDE", "09:00-17:00")),
            ("day IN (sat, sun)", ("day", "NOT IN", "(sat, sun)")),
            ("arg.x EXISTS", ("arg.x", "NOT EXISTS", "")),
            ('arg.q MATCHES "*DROP*"', ("arg.q", "NOT MATCHES", '"*DROP*"')),
        ],
    )
    def test_unless_is_listed_as_the_exact_negation(self, unless, negated):
        [rule] = parse_rules(f"BLOCK * WHEN phase IS explore UNLESS {unless}")
        assert rule.conditions == [("phase", "IS", "explore"), negated]

    def test_unless_over_an_or_is_each_part_negated(self):
        [rule] = parse_rules("BLOCK * UNLESS principal.role IS admin OR principal.role IS oncall")
        assert rule.conditions == [("principal.role", "IS NOT", "admin"), ("principal.role", "IS NOT", "oncall")]

    def test_a_part_that_is_not_one_comparison_is_listed_as_its_text(self):
        [rule] = parse_rules('BLOCK db_* WHEN arg.q MATCHES "*DROP*" OR arg.q MATCHES "*TRUNCATE*"')
        assert rule.conditions == [('(arg.q MATCHES "*DROP*" OR arg.q MATCHES "*TRUNCATE*")', "", "")]
        [rule] = parse_rules("BLOCK x UNLESS phase IS commit AND budget BELOW 50%")
        assert rule.conditions == [("NOT (phase IS commit AND budget BELOW 50%)", "", "")]

    def test_a_rule_without_condition_has_none(self):
        [rule] = parse_rules("BLOCK drop_database")
        assert rule.conditions == []
        assert rule.evaluate({}) == (True, "no condition")

    def test_several_lines_comments_and_blank_lines(self):
        rules = parse_rules("""
            # who may write
            BLOCK write_plc WHEN phase IS NOT commit   # not before commit

            FLAG * WHEN time OUTSIDE 06:00-22:00
        """)
        assert [(r.action, r.tool_pattern) for r in rules] == [(RuleAction.BLOCK, "write_plc"), (RuleAction.FLAG, "*")]
        assert rules[0].conditions == [("phase", "IS NOT", "commit")]  # the comment is not part of the value

    def test_nothing_to_parse(self):
        assert parse_rules("") == []
        assert parse_rules("\n   # only a comment\n") == []

    @pytest.mark.parametrize(
        ("text", "line", "fragment"),
        [
            ("INVALID RULE TEXT", 1, ""),
            ("BLOCK * WHEN colour IS red", 1, "unknown field"),
            ("BLOCK a WHEN phase IS commit\nBLOCK b WHEN phase IS comit", 2, "comit"),
            ("BLOCK * WHEN budget ABOVE lots", 1, "number"),
        ],
    )
    def test_what_does_not_parse_is_a_located_value_error(self, text, line, fragment):
        with pytest.raises(ValueError) as refused:  # Shape raised ValueError; corral's error is one
            parse_rules(text)
        assert isinstance(refused.value, RuleSyntaxError)
        assert refused.value.line == line and refused.value.column >= 1
        assert fragment in str(refused.value)

    def test_because_timezone_and_shadow_travel_with_each_rule(self):
        rules = parse_rules("""
            TIMEZONE Europe/Berlin
            DEFAULT ALLOW
            BLOCK refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
            SHADOW FLAG * WHEN time OUTSIDE 09:00-17:00
        """)
        assert len(rules) == 2  # directives are not rules
        assert rules[0].because == "refunds over $100 need a human" and not rules[0].shadow
        assert rules[1].shadow and rules[1].because is None
        assert {r.timezone for r in rules} == {"Europe/Berlin"}
        assert rules[0].text == 'BLOCK refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"'
        assert rules[1].text == "SHADOW FLAG * WHEN time OUTSIDE 09:00-17:00"

    def test_a_shadow_file_makes_every_rule_shadow(self):
        assert [r.shadow for r in parse_rules("MODE SHADOW\nBLOCK a\nFLAG b")] == [True, True]


# ===================================================================================== targets


class TestMatchesTool:
    def test_a_name_matches_itself_only(self):
        [rule] = parse_rules("BLOCK write_plc WHEN phase IS NOT commit")
        assert rule.matches_tool("write_plc")
        assert not rule.matches_tool("read_plc")
        assert not rule.matches_tool("write_plc_2")

    def test_the_wildcard_matches_any_tool(self):
        [rule] = parse_rules("BLOCK * WHEN budget ABOVE 90%")
        assert all(rule.matches_tool(name) for name in ("anything", "x", "mcp.github.create_issue"))

    def test_a_glob_matches_the_names_it_describes(self):
        [rule] = parse_rules("BLOCK send_* WHEN phase IS explore")
        assert rule.matches_tool("send_email") and rule.matches_tool("send_sms")
        assert not rule.matches_tool("resend_email")


# ================================================================================== evaluation


class TestEvaluate:
    def test_is(self):
        [rule] = parse_rules("BLOCK * WHEN phase IS explore")
        met, why = rule.evaluate({"phase": "explore"})
        assert met and "explore" in why
        assert rule.evaluate({"phase": "commit"})[0] is False

    def test_is_not(self):
        [rule] = parse_rules("BLOCK * WHEN phase IS NOT commit")
        assert rule.evaluate({"phase": "explore"})[0] is True
        met, why = rule.evaluate({"phase": "commit"})
        assert met is False and "commit" in why

    @pytest.mark.parametrize(("pct", "met"), [(85.0, True), (80.01, True), (80.0, False), (70.0, False)])
    def test_above_a_percentage(self, pct, met):
        [rule] = parse_rules("BLOCK * WHEN budget ABOVE 80%")
        assert rule.evaluate({"budget": pct})[0] is met

    def test_a_percentage_may_be_given_as_text(self):
        [rule] = parse_rules("BLOCK * WHEN budget ABOVE 80%")
        assert rule.evaluate({"budget": "85%"})[0] is True

    @pytest.mark.parametrize(
        ("now", "met"),
        [("03:00", True), ("05:59", True), ("06:00", False), ("14:00", False), ("22:00", False), ("22:01", True)],
    )
    def test_outside_a_time_range_includes_both_ends_in_the_range(self, now, met):
        [rule] = parse_rules("FLAG * WHEN time OUTSIDE 06:00-22:00")
        assert rule.evaluate({"time": now})[0] is met

    @pytest.mark.parametrize(("now", "met"), [("23:30", True), ("02:00", True), ("12:00", False)])
    def test_a_range_over_midnight(self, now, met):
        # Shape compared the strings, so "22:00-06:00" contained no time at all
        [rule] = parse_rules("FLAG * WHEN time INSIDE 22:00-06:00")
        assert rule.evaluate({"time": now})[0] is met

    def test_unless_exactly_at_the_boundary(self):
        # corrected: Shape turned UNLESS budget ABOVE 80% into budget BELOW 80%, false at exactly 80%
        [rule] = parse_rules("BLOCK * WHEN phase IS commit UNLESS budget ABOVE 80%")
        assert rule.evaluate({"phase": "commit", "budget": 80.0})[0] is True
        assert rule.evaluate({"phase": "commit", "budget": 80.5})[0] is False

    def test_a_missing_fact_makes_a_block_match_and_a_flag_not(self):
        # corrected: Shape treated a missing fact as "not met", so a BLOCK on it let the call through
        [block, flag] = parse_rules("BLOCK * WHEN budget ABOVE 80%\nFLAG * WHEN budget ABOVE 80%")
        met, why = block.evaluate({"phase": "explore"})
        assert met is True and "indeterminate" in why and "fail closed" in why
        met, why = flag.evaluate({"phase": "explore"})
        assert met is False and "indeterminate" in why

    def test_a_value_of_the_wrong_type_is_indeterminate_too(self):
        [rule] = parse_rules("REQUIRE APPROVAL FOR refund WHEN arg.amount ABOVE 100")
        assert rule.evaluate({"args": {"amount": 120}})[0] is True
        assert rule.evaluate({"args": {"amount": 20}})[0] is False
        met, why = rule.evaluate({"args": {"amount": "lots"}})
        assert met is True and "indeterminate" in why

    def test_corrals_facts(self):
        [rule] = parse_rules(
            "BLOCK * WHEN principal.role IN (intern) AND cost ABOVE $5 AND agent IS desk AND labels CONTAINS pii"
        )
        facts = {"roles": ["intern"], "cost": 7, "agent": "desk", "labels": {"pii"}}
        assert rule.evaluate(facts)[0] is True
        assert rule.evaluate({**facts, "roles": ["admin"]})[0] is False
        assert rule.evaluate({**facts, "cost": "4.99"})[0] is False

    def test_day_and_time_from_words_or_from_a_datetime(self):
        [rule] = parse_rules("BLOCK * WHEN day IN (sat, sun) AND time AT LEAST 18:00")
        assert rule.evaluate({"day": "sat", "time": "19:00"})[0] is True
        assert rule.evaluate({"day": "mon", "time": "19:00"})[0] is False
        assert rule.evaluate({"now": datetime(2026, 11, 28, 19, 0, tzinfo=UTC)})[0] is True  # a Saturday
        met, why = rule.evaluate({"time": "19:00"})  # the rule reads the day too: not given, indeterminate
        assert met is True and "indeterminate" in why

    def test_a_datetime_is_read_in_the_policy_time_zone(self):
        [rule] = parse_rules("TIMEZONE Europe/Berlin\nFLAG * WHEN time OUTSIDE 09:00-17:00")
        at_utc_0830 = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)  # 09:30 in Berlin
        assert rule.evaluate({"now": at_utc_0830})[0] is False
        assert parse_rules("FLAG * WHEN time OUTSIDE 09:00-17:00")[0].evaluate({"now": at_utc_0830})[0] is True

    def test_calls_in_a_window(self):
        [rule] = parse_rules("BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 2")
        now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
        recent = [("send_email", now.replace(minute=0, hour=11)), ("send_sms", now.replace(hour=11, minute=30))]
        assert rule.evaluate({"now": now, "call_log": recent})[0] is True
        assert rule.evaluate({"now": now, "call_log": recent[:1]})[0] is False

    def test_the_context_must_be_a_mapping(self):
        [rule] = parse_rules("BLOCK * WHEN phase IS explore")
        with pytest.raises(ConfigError, match="mapping"):
            rule.evaluate([("phase", "explore")])

    def test_an_agents_rule_context_fits(self):
        agent = Agent("a", budget=10.0)
        agent.budget.record(8.5)
        [rule] = parse_rules("BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read")
        assert rule.evaluate(agent._rule_context("write", ToolEffect.IRREVERSIBLE))[0] is True
        assert rule.evaluate(agent._rule_context("lookup", ToolEffect.READ))[0] is False


# ================================================================================ built by hand


class TestBuiltByHand:
    def test_a_rule_made_from_triples_means_what_its_text_says(self):
        rule = Rule(RuleAction.BLOCK, "write_plc", [("phase", "IS NOT", "commit")])
        assert rule.text == "BLOCK write_plc WHEN phase IS NOT commit"
        assert rule.evaluate({"phase": "explore"})[0] is True
        assert rule.evaluate({"phase": "commit"})[0] is False
        assert rule.matches_tool("write_plc") and not rule.matches_tool("read_plc")

    def test_the_action_may_be_given_by_value(self):
        assert Rule("require_approval", "*", []).action is RuleAction.REQUIRE_APPROVAL
        with pytest.raises(ConfigError, match="unknown rule action"):
            Rule("deny", "*", [])

    def test_changing_the_conditions_changes_what_it_checks(self):
        rule = Rule(RuleAction.BLOCK, "*", [("phase", "IS", "explore")])
        assert rule.evaluate({"phase": "explore"})[0] is True
        rule.conditions = [("phase", "IS", "commit")]
        assert rule.evaluate({"phase": "explore"})[0] is False

    @pytest.mark.parametrize(
        "conditions",
        [
            [("colour", "IS", "red")],  # unknown field
            [("phase", "IS")],  # not a triple
            [("phase", "IS", 3)],  # not text
            [("arg.tag", "IS", "x # y")],  # the rest would be a comment
            [("phase", "IS", "explore\nBLOCK *")],  # a second line
        ],
    )
    def test_bad_triples_are_refused_when_the_rule_is_made(self, conditions):
        with pytest.raises(RuleSyntaxError):
            Rule(RuleAction.BLOCK, "*", conditions)

    def test_a_bad_target_is_refused(self):
        with pytest.raises(RuleSyntaxError):
            Rule(RuleAction.BLOCK, "two words", [])

    def test_not_matches_reads_as_the_negation(self):
        rule = Rule(RuleAction.BLOCK, "db_*", [("arg.q", "NOT MATCHES", '"select *"')])
        assert rule.text == 'BLOCK db_* WHEN NOT arg.q MATCHES "select *"'
        assert rule.evaluate({"args": {"q": "DROP TABLE x"}})[0] is True
        assert rule.evaluate({"args": {"q": "select 1"}})[0] is False


RULES = [
    "BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read",
    "REQUIRE APPROVAL FOR * WHEN effect IS irreversible AND budget AT LEAST 50%",
    "FLAG * WHEN time OUTSIDE 06:00-22:00 UNLESS phase IS explore",
    "BLOCK * WHEN phase IS commit UNLESS budget BELOW 20% OR time INSIDE 09:00-17:00",
    "ALLOW * WHEN phase IN (explore, decide) UNLESS budget ABOVE 99%",
    'BLOCK * WHEN arg.q MATCHES "*drop*" UNLESS arg.q MATCHES "*dry run*" AND arg.n AT MOST 3',
]

facts = st.fixed_dictionaries(
    {},
    optional={
        "phase": st.sampled_from(["explore", "decide", "commit"]),
        "tool": st.sampled_from(["read", "reversible", "irreversible"]),
        "budget": st.one_of(st.sampled_from([20.0, 50.0, 80.0, 99.0]), st.floats(0, 130, allow_nan=False)),
        "time": st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
        "args": st.fixed_dictionaries(
            {},
            optional={
                "q": st.sampled_from(["drop x", "DROP dry run", "select", "dry run"]),
                "n": st.one_of(st.integers(0, 6), st.just("many")),
            },
        ),
    },
)


@functools.cache
def _pair(text: str) -> tuple[Rule, Rule]:
    [parsed] = parse_rules(text)
    return parsed, Rule(parsed.action, parsed.tool_pattern, list(parsed.conditions))


@pytest.mark.parametrize("text", RULES)
@settings(max_examples=150, deadline=None)
@given(ctx=facts)
def test_a_rule_rebuilt_from_its_conditions_decides_as_the_parsed_one(text, ctx):
    """``conditions`` is a faithful reading: the triples, made into a rule, decide every fact alike."""
    parsed, rebuilt = _pair(text)
    assert rebuilt.evaluate(ctx)[0] is parsed.evaluate(ctx)[0]
