"""The parser: what the rule language accepts, what each line means, and how errors point at the problem."""

from __future__ import annotations

from decimal import Decimal

import pytest

from corral.errors import RuleSyntaxError
from corral.governance.rules import Policy, parse_rules
from corral.governance.rules.nodes import And, Condition, Not, Or

DESIGN_EXAMPLE = """\
# comments start with #, also at the end of a line
TIMEZONE Europe/Berlin                 # for time/day conditions; default UTC
DEFAULT ALLOW                          # or DEFAULT BLOCK (allow-list mode); default ALLOW
REQUIRE PLAN                           # commit-phase writes must match the plan bound to the commit

BLOCK send_email WHEN phase IS NOT commit
BLOCK * WHEN budget ABOVE 90%
REQUIRE APPROVAL FOR * WHEN effect IS irreversible
REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"
FLAG * WHEN time OUTSIDE 09:00-17:00
BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 50
ALLOW read_* WHEN principal.role IN (analyst, admin)
BLOCK db_* WHEN arg.query MATCHES "*DROP*" OR arg.query MATCHES "*TRUNCATE*"
BLOCK * WHEN day IN (sat, sun) UNLESS principal.role IS oncall
"""

# Every rule line from Shape's README and tests.
SHAPE_RULES = [
    "BLOCK send_email WHEN phase IS NOT commit",
    "BLOCK * WHEN budget ABOVE 90%",
    "REQUIRE APPROVAL FOR * WHEN tool IS irreversible",
    "FLAG * WHEN time OUTSIDE 09:00-17:00",
    "FLAG * WHEN budget ABOVE 50%",
    "BLOCK write_plc WHEN phase IS NOT commit",
    "BLOCK * WHEN budget ABOVE 80%",
    "FLAG * WHEN time OUTSIDE 06:00-22:00",
    "BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read",
    "BLOCK dangerous_read WHEN phase IS explore",
    "REQUIRE APPROVAL FOR write_plc WHEN tool IS irreversible",
    "FLAG read_plc WHEN phase IS explore",
    "BLOCK * WHEN phase IS explore",
]


def error_of(text: str, source: str = "t.rules") -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        parse_rules(text, source)
    return caught.value


# -- what parses --------------------------------------------------------------------------------------


def test_design_example_parses_with_directives_and_nine_rules() -> None:
    parsed = parse_rules(DESIGN_EXAMPLE, "design.rules")
    assert parsed.timezone == "Europe/Berlin"
    assert parsed.default == "allow"
    assert parsed.require_plan is True
    assert [r.action for r in parsed.rules] == [
        "block",
        "block",
        "approval",
        "approval",
        "flag",
        "block",
        "allow",
        "block",
        "block",
    ]
    assert [r.target for r in parsed.rules] == [
        "send_email",
        "*",
        "*",
        "issue_refund",
        "*",
        "send_*",
        "read_*",
        "db_*",
        "*",
    ]
    assert [r.line for r in parsed.rules] == list(range(6, 15))
    assert all(r.source == "design.rules" for r in parsed.rules)


def test_rule_text_is_the_line_without_comment_or_because() -> None:
    parsed = parse_rules(DESIGN_EXAMPLE, "design.rules")
    refund = parsed.rules[3]
    assert refund.text == "REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100"
    assert refund.because == "refunds over $100 need a human"
    assert refund.location == "design.rules:9"
    first = parse_rules("   BLOCK x WHEN phase IS explore    # not this\n").rules[0]
    assert first.text == "BLOCK x WHEN phase IS explore"
    assert first.column == 4


@pytest.mark.parametrize("line", SHAPE_RULES)
def test_every_shape_rule_parses(line: str) -> None:
    parsed = parse_rules(line)
    assert len(parsed.rules) == 1
    assert parsed.rules[0].text == line


def test_shape_legacy_tool_is_effect_means_the_effect() -> None:
    rule = parse_rules("REQUIRE APPROVAL FOR * WHEN tool IS irreversible").rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.subject.field == "effect"
    assert rule.when.values[0].raw == "irreversible"
    other = parse_rules("BLOCK * WHEN tool IS send_email").rules[0]
    assert isinstance(other.when, Condition)
    assert other.when.subject.field == "tool"


def test_shape_unless_negates_its_expression() -> None:
    rule = parse_rules("BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read").rules[0]
    assert isinstance(rule.unless, Condition)
    assert rule.unless.subject.field == "effect"
    assert rule.when is not None


def test_keywords_are_case_insensitive_and_whitespace_tolerant() -> None:
    parsed = parse_rules(
        "require   approval\tfor  issue_refund   when arg.amount  above 100 and phase is not explore\n"
        'Block * When Day In (Sat, Sun) Unless Principal.Role Is oncall Because "weekend"\n'
        "timezone UTC\n"
        "default block\n"
        "require plan\n"
    )
    assert [r.action for r in parsed.rules] == ["approval", "block"]
    assert parsed.timezone == "UTC"
    assert parsed.default == "block"
    assert parsed.require_plan
    assert parsed.rules[1].because == "weekend"
    assert parsed.rules[0].canonical == (
        "REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 AND phase IS NOT explore"
    )


def test_crlf_line_endings_and_blank_and_comment_lines() -> None:
    parsed = parse_rules("# header\r\n\r\n   \r\nBLOCK a\r\n  # indented comment\r\nALLOW b\r\n")
    assert [(r.target, r.line) for r in parsed.rules] == [("a", 4), ("b", 6)]


def test_inline_comment_is_never_part_of_a_value() -> None:
    rule = parse_rules("BLOCK x WHEN arg.status IS open# comment right after the value").rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.values[0].raw == "open"
    assert rule.text == "BLOCK x WHEN arg.status IS open"


def test_hash_inside_a_quoted_string_is_part_of_the_string() -> None:
    rule = parse_rules('BLOCK x WHEN arg.tag IS "#urgent" BECAUSE "ticket #4 \\"says\\" so" # real comment').rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.values[0].raw == "#urgent"
    assert rule.because == 'ticket #4 "says" so'


def test_and_binds_tighter_than_or_and_parentheses_group() -> None:
    rule = parse_rules("BLOCK x WHEN phase IS explore OR phase IS decide AND effect IS read").rules[0]
    assert isinstance(rule.when, Or)
    assert isinstance(rule.when.items[1], And)
    grouped = parse_rules("BLOCK x WHEN (phase IS explore OR phase IS decide) AND effect IS read").rules[0]
    assert isinstance(grouped.when, And)
    assert isinstance(grouped.when.items[0], Or)


def test_chains_are_flat_and_not_nests() -> None:
    rule = parse_rules("BLOCK x WHEN arg.a EXISTS AND arg.b EXISTS AND arg.c EXISTS").rules[0]
    assert isinstance(rule.when, And)
    assert len(rule.when.items) == 3
    negated = parse_rules("BLOCK x WHEN NOT NOT arg.a EXISTS").rules[0]
    assert isinstance(negated.when, Not)
    assert isinstance(negated.when.item, Not)


@pytest.mark.parametrize(
    ("condition", "op", "negated"),
    [
        ("arg.x IS a", "is", False),
        ("arg.x IS NOT a", "is", True),
        ("arg.x IN (a, b)", "in", False),
        ("arg.x NOT IN (a, b)", "in", True),
        ("arg.x ABOVE 1", "above", False),
        ("arg.x BELOW 1", "below", False),
        ("arg.x AT LEAST 1", "at_least", False),
        ("arg.x AT MOST 1", "at_most", False),
        ('arg.x MATCHES "a*"', "matches", False),
        ("arg.x MATCHES a*", "matches", False),
        ("arg.x CONTAINS a", "contains", False),
        ("arg.x EXISTS", "exists", False),
        ("arg.x NOT EXISTS", "exists", True),
        ("time INSIDE 09:00-17:00", "inside", False),
        ("time OUTSIDE 09:00-17:00", "inside", True),
    ],
)
def test_every_operator(condition: str, op: str, negated: bool) -> None:
    rule = parse_rules(f"BLOCK x WHEN {condition}").rules[0]
    assert isinstance(rule.when, Condition)
    assert (rule.when.op, rule.when.negated) == (op, negated)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("phase IS explore", "phase"),
        ("effect IS read", "effect"),
        ("tool IS send_email", "tool"),
        ("budget ABOVE 50%", "budget"),
        ("spent ABOVE $1", "spent"),
        ("remaining BELOW 2", "remaining"),
        ("cost AT MOST 0.5", "cost"),
        ("arg.amount ABOVE 1", "arg"),
        ("principal IS alice", "principal"),
        ("principal.role IS admin", "role"),
        ("agent IS refund-desk", "agent"),
        ("time ABOVE 17:00", "time"),
        ("day IS mon", "day"),
        ("calls(send_*) ABOVE 3", "calls"),
    ],
)
def test_every_field(field: str, expected: str) -> None:
    rule = parse_rules(f"BLOCK x WHEN {field}").rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.subject.field == expected


def test_nested_argument_path_and_calls_window() -> None:
    rule = parse_rules("BLOCK x WHEN arg.customer.tier IS gold AND calls(mcp.github.*, 10m) AT LEAST 5").rules[0]
    assert isinstance(rule.when, And)
    arg, calls = rule.when.items
    assert isinstance(arg, Condition) and isinstance(calls, Condition)
    assert arg.subject.path == ("customer", "tier")
    assert calls.subject.glob == "mcp.github.*"
    assert calls.subject.window == 600
    assert calls.subject.label == "calls(mcp.github.*, 10m)"


@pytest.mark.parametrize(("window", "seconds"), [("30s", 30), ("10m", 600), ("1h", 3600), ("1d", 86400)])
def test_calls_windows(window: str, seconds: int) -> None:
    rule = parse_rules(f"BLOCK x WHEN calls(x, {window}) ABOVE 1").rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.subject.window == seconds


@pytest.mark.parametrize(
    ("literal", "number"),
    [
        ("100", Decimal(100)),
        ("$100", Decimal(100)),
        ("-5", Decimal(-5)),
        ("0.25", Decimal("0.25")),
        ("$0.5", Decimal("0.5")),
    ],
)
def test_number_literals(literal: str, number: Decimal) -> None:
    rule = parse_rules(f"BLOCK x WHEN arg.amount ABOVE {literal}").rules[0]
    assert isinstance(rule.when, Condition)
    assert rule.when.values[0].number == number


def test_budget_literals_are_always_percent() -> None:
    for literal in ("90%", "90"):
        rule = parse_rules(f"BLOCK * WHEN budget ABOVE {literal}").rules[0]
        assert isinstance(rule.when, Condition)
        assert rule.when.values[0].number == Decimal(90)


def test_targets_may_be_names_or_globs() -> None:
    targets = ["*", "send_*", "mcp.github.*", "ns:tool/v1-x", "tool_[ab]", "t?ol", "plan", "flag", "calls"]
    parsed = parse_rules("\n".join(f"BLOCK {t}" for t in targets))
    assert [r.target for r in parsed.rules] == targets


def test_a_rule_without_condition_and_with_only_unless() -> None:
    parsed = parse_rules('BLOCK x\nALLOW y UNLESS phase IS explore\nFLAG z BECAUSE "look"')
    assert parsed.rules[0].when is None and parsed.rules[0].unless is None
    assert parsed.rules[1].when is None and parsed.rules[1].unless is not None
    assert parsed.rules[2].because == "look"


def test_full_day_names_and_case_are_accepted() -> None:
    rule = parse_rules("BLOCK x WHEN day IN (Saturday, SUN)").rules[0]
    assert isinstance(rule.when, Condition)
    assert [v.raw for v in rule.when.values] == ["saturday", "sun"]


def test_empty_text_parses_to_nothing() -> None:
    parsed = parse_rules("")
    assert parsed.rules == () and parsed.directives == ()
    assert parse_rules("# only a comment\n\n").rules == ()


# -- errors -------------------------------------------------------------------------------------------


def test_error_names_the_expected_operator_and_position() -> None:
    error = error_of("BLOCK * WHEN arg.amount GREATER 100")
    assert (error.source, error.line, error.column) == ("t.rules", 1, 25)
    assert "expected an operator (IS, IS NOT, IN" in error.message
    assert 'after "arg.amount"' in error.message
    assert '"GREATER"' in error.message
    assert str(error).startswith("t.rules:1:25: ")


def test_error_on_a_later_line_reports_that_line() -> None:
    error = error_of("BLOCK a\n# fine\n\nALLOW b WHEN phase IS\n")
    assert error.line == 4
    assert error.column == 22
    assert "expected a value" in error.message
    assert "end of the line" in error.message


def test_unknown_field_is_an_error_not_an_unconditional_rule() -> None:
    error = error_of("BLOCK x WHEN phase IS explore\nBLOCK send_email WHEN colour IS red")
    assert (error.line, error.column) == (2, 23)
    assert 'unknown field "colour"' in error.message


def test_unknown_field_suggests_a_close_one() -> None:
    assert 'did you mean "phase"' in error_of("BLOCK x WHEN phaze IS commit").message
    assert "arg.amount" in error_of("BLOCK x WHEN amount ABOVE 3").message


def test_operator_a_field_does_not_take_is_an_error() -> None:
    error = error_of("BLOCK x WHEN phase ABOVE 3")
    assert error.column == 20
    assert "ABOVE does not apply to phase" in error.message
    assert "OUTSIDE does not apply to arg.x" in error_of("BLOCK x WHEN arg.x OUTSIDE 09:00-10:00").message
    assert "MATCHES does not apply to budget" in error_of('BLOCK x WHEN budget MATCHES "9*"').message


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("INVALID RULE TEXT", 1, "expected a rule (BLOCK, ALLOW, FLAG, REQUIRE APPROVAL FOR)"),
        ("BLOCK WHEN phase IS commit", 7, "expected a tool name or glob"),
        ("BLOCK x phase IS commit", 9, "expected WHEN, UNLESS, BECAUSE or the end of the line"),
        ("BLOCK x WHEN phase IS commit AND", 33, "expected a condition"),
        ("BLOCK x WHEN (phase IS commit", 30, '")"'),
        ("BLOCK x WHEN arg.x IN (a b)", 26, 'expected "," or ")"'),
        ("BLOCK x WHEN arg.x IN a", 23, 'expected "("'),
        ("BLOCK x WHEN arg.x AT 5", 23, "LEAST or MOST"),
        ("BLOCK x WHEN arg.x NOT 5", 24, "IN or EXISTS"),
        ("BLOCK x WHEN phase IS commit BECAUSE nope", 38, "quoted string"),
        ("DEFAULT MAYBE", 9, "BLOCK or ALLOW"),
        ("REQUIRE x", 9, "APPROVAL FOR"),
        ('BLOCK x WHEN arg.q MATCHES "abc', 28, "unterminated string"),
        ("BLOCK x WHEN budget ABOVE $5", 27, "percent"),
        ("BLOCK x WHEN spent ABOVE 5%", 26, "money"),
        ("BLOCK x WHEN arg.x ABOVE ten", 26, 'expected a number after ABOVE, got "ten"'),
        ("BLOCK x WHEN arg.x ABOVE 5%", 26, "budget only"),
        ("BLOCK x WHEN calls(x) ABOVE 1.5x", 29, "whole number"),
        ("BLOCK x WHEN time OUTSIDE 9-5", 27, "time range like 09:00-17:00"),
        ("BLOCK x WHEN time ABOVE 25:00", 25, "time of day"),
        ("BLOCK x WHEN calls(x, 5 parsecs) ABOVE 3", 25, '")"'),
        ("BLOCK x WHEN calls(x, 5y) ABOVE 3", 23, "not a window"),
        ("BLOCK x WHEN calls IS 3", 20, '"("'),
        ("BLOCK x WHEN arg IS 3", 14, "arg.NAME"),
        ("BLOCK x WHEN arg..y IS 3", 14, "arg.NAME"),
        ("BLOCK x{y}", 7, "not a tool name"),
        ("TIMEZONE Mars/Olympus", 10, 'unknown time zone "Mars/Olympus"'),
    ],
)
def test_error_messages_and_columns(text: str, column: int, words: str) -> None:
    error = error_of(text)
    assert error.line == 1
    assert error.column == column
    assert words in error.message


def test_conflicting_timezones_in_one_file() -> None:
    error = error_of("TIMEZONE UTC\nTIMEZONE Europe/Berlin")
    assert error.line == 2
    assert "conflicts" in error.message
    assert parse_rules("TIMEZONE UTC\nTIMEZONE UTC").timezone == "UTC"


def test_one_bad_line_loads_nothing() -> None:
    text = "BLOCK a\nBLOCK b WHEN phase IS explore\nBLOCK c WHEN nonsense\nBLOCK d"
    with pytest.raises(RuleSyntaxError) as caught:
        Policy.from_sources([(text, "p.rules")])
    assert caught.value.line == 3
    with pytest.raises(RuleSyntaxError):
        Policy.from_sources([("BLOCK a", "ok.rules"), ("BLOCK b WHEN ???", "bad.rules")])


def test_error_is_a_value_error_with_the_offending_text() -> None:
    error = error_of("   BLOCK x WHEN colour IS red   # c")
    assert isinstance(error, ValueError)
    assert error.text.startswith("BLOCK x WHEN colour IS red")


def test_nul_and_non_text_are_syntax_errors() -> None:
    assert error_of("BLOCK a\nBLOCK b\x00").line == 2
    with pytest.raises(RuleSyntaxError):
        parse_rules(b"BLOCK x")  # type: ignore[arg-type]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = "BLOCK x WHEN " + "(" * 200 + "phase IS explore" + ")" * 200
    assert "nested" in error_of(deep).message
    fine = "BLOCK x WHEN " + "(" * 20 + "phase IS explore" + ")" * 20
    assert len(parse_rules(fine).rules) == 1


# -- values a field can never hold are refused when the policy is built, located as an unknown field is --


@pytest.mark.parametrize(
    ("rule", "column", "words"),
    [
        ("BLOCK send_email WHEN phase IS comit", 32, 'unknown phase "comit" (did you mean "commit"?)'),
        ("BLOCK send_email WHEN phase IN (explore, comit)", 42, 'unknown phase "comit"'),
        ("BLOCK * WHEN effect IS destructive", 24, 'unknown effect "destructive"'),
        ("BLOCK * WHEN effect IS NOT destructive", 28, "effect is one of read, reversible, irreversible"),
        ("BLOCK * WHEN day IN (funday)", 22, '"funday" is not a day'),
        ("BLOCK * WHEN day IS NOT caturday", 25, "days are mon, tue, wed, thu, fri, sat, sun"),
        ("BLOCK * WHEN budget ABOVE 150%", 27, '"150%" is never reached'),
        ("BLOCK * WHEN budget IN (50%, 101)", 30, "from 0% to 100%"),
        ("BLOCK * WHEN budget BELOW -5%", 27, "from 0% to 100%"),
        ("BLOCK * WHEN calls(send_*) AT LEAST -1", 37, "never below 0"),
    ],
)
def test_values_a_field_never_holds_are_refused_by_the_governor(rule: str, column: int, words: str) -> None:
    from corral import Governor

    text = f"# policy\n{rule}  # note\n"
    with pytest.raises(RuleSyntaxError) as caught:
        Governor(rules=[text])
    error = caught.value
    assert (error.source, error.line, error.column) == ("<rules>", 2, column)
    assert words in error.message
    with pytest.raises(RuleSyntaxError) as again:
        Policy.from_sources([(text, "p.rules")])
    assert (again.value.source, again.value.line, again.value.column) == ("p.rules", 2, column)


def test_values_a_field_holds_are_accepted_in_any_case() -> None:
    file = parse_rules("BLOCK * WHEN phase IS COMMIT AND effect IN (Read, IRREVERSIBLE) AND day IS Saturday\n"
                       "BLOCK * WHEN budget AT LEAST 100% OR budget ABOVE 0 OR calls(x) IS 0\n")
    assert len(file.rules) == 2
