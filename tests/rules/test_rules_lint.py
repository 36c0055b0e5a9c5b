"""The linter: what ``corral rules check`` reports, where, and how severe."""

from __future__ import annotations

from corral.governance.rules import Diagnostic, lint_rules
from corral.governance.rules.lint import lint_sources


def messages(text: str, tools: list[str] | None = None) -> list[tuple[str, int, int, str]]:
    return [(d.severity, d.line, d.column, d.message) for d in lint_rules(text, "l.rules", tools)]


def test_a_clean_file_has_no_diagnostics() -> None:
    text = "TIMEZONE UTC\nBLOCK send_email WHEN phase IS NOT commit\nALLOW lookup_order\n"
    assert lint_rules(text, "l.rules", ["send_email", "lookup_order"]) == []


def test_diagnostic_format() -> None:
    diagnostic = Diagnostic("error", "refunds.rules", 4, 12, "something is wrong")
    assert str(diagnostic) == "refunds.rules:4:12: error: something is wrong"
    assert diagnostic.to_dict() == {
        "severity": "error",
        "source": "refunds.rules",
        "line": 4,
        "column": 12,
        "message": "something is wrong",
    }


def test_syntax_errors_are_diagnostics_not_exceptions_and_all_are_reported() -> None:
    found = messages("BLOCK a\nBLOCK b WHEN colour IS red\n# ok\nFOO bar\nBLOCK c WHEN arg.x GREATER 1")
    assert [(s, line) for s, line, _, _ in found] == [("error", 2), ("error", 4), ("error", 5)]
    assert 'unknown field "colour"' in found[0][3]
    assert found[2][2] == 20
    assert "expected an operator" in found[2][3]


def test_cross_line_syntax_errors_are_reported_too() -> None:
    found = messages("TIMEZONE UTC\nTIMEZONE Europe/Berlin")
    assert found[0][:2] == ("error", 2)
    assert "conflicts" in found[0][3]


def test_unknown_tools_only_when_tools_are_known() -> None:
    text = "BLOCK sned_email\nBLOCK send_*\nBLOCK mcp.*\nBLOCK *"
    assert messages(text) == []
    found = messages(text, ["send_email", "lookup_order"])
    assert [(s, line) for s, line, _, _ in found] == [("error", 1), ("warning", 3)]
    assert 'unknown tool "sned_email"' in found[0][3]
    assert 'did you mean "send_email"' in found[0][3]
    assert "mcp.* matches no known tool" in found[1][3]


def test_rules_that_can_never_match() -> None:
    cases = {
        "BLOCK x WHEN arg.x IS a AND arg.x IS b": "arg.x",
        "BLOCK x WHEN phase IS explore AND phase IS commit": "phase",
        "BLOCK x WHEN budget ABOVE 100% AND budget BELOW 50%": "budget",
        "BLOCK x WHEN arg.n AT LEAST 5 AND arg.n BELOW 5": "arg.n",
        "BLOCK x WHEN arg.n ABOVE 5 AND arg.n IS 3": "arg.n",
        "BLOCK x WHEN time ABOVE 23:59": "00:00 to 23:59",
        "BLOCK x WHEN budget BELOW 0%": "budget",
        "BLOCK x WHEN calls(x) BELOW 0": "calls(x)",
        "BLOCK x WHEN phase IS explore UNLESS phase IS explore": "phase",
        "BLOCK x WHEN arg.x EXISTS AND arg.x NOT EXISTS": "exist",
        "BLOCK x WHEN phase NOT EXISTS": "phase",
        "BLOCK x UNLESS phase EXISTS": "phase",
        "BLOCK x WHEN time ABOVE 23:59 OR budget BELOW 0%": "time",
    }
    for text, words in cases.items():
        found = messages(text)
        assert found, text
        severity, line, column, message = found[0]
        assert (severity, line, column) == ("error", 1, 1), text
        assert message.startswith("this rule can never match"), text
        assert words in message, text


def test_rules_that_can_match_are_not_reported_as_never() -> None:
    for text in (
        "BLOCK x WHEN principal.role IS a AND principal.role IS b",  # several roles at once
        "BLOCK x WHEN arg.n ABOVE 5 AND arg.n BELOW 7",
        "BLOCK x WHEN arg.n IS 6 AND arg.n ABOVE 5",
        "BLOCK x WHEN phase IS explore OR phase IS commit",
        "BLOCK x WHEN phase IS NOT explore AND phase IS NOT commit",
        "BLOCK x WHEN budget AT LEAST 50 AND budget AT MOST 50",
    ):
        assert not any(m.startswith("this rule can never match") for _, _, _, m in messages(text)), text


def test_values_a_field_never_holds_are_errors_at_the_value() -> None:
    cases = {
        "BLOCK x WHEN phase IS banana": (23, 'unknown phase "banana"'),
        "BLOCK x WHEN effect IS writey": (24, 'unknown effect "writey"'),
        "BLOCK x WHEN phase IN (explore, comit)": (33, 'did you mean "commit"'),
        "ALLOW x WHEN day IN (sat, funday)": (27, '"funday" is not a day'),
        "FLAG y WHEN phase IS NOT banana": (26, 'unknown phase "banana"'),
        "BLOCK x WHEN budget ABOVE 150%": (27, '"150%" is never reached'),
    }
    for text, (column, words) in cases.items():
        found = messages(text)
        assert [(s, line, c) for s, line, c, _ in found] == [("error", 1, column)], text
        assert words in found[0][3], text


def test_dead_parts_of_a_rule_that_can_match_are_warnings() -> None:
    found = messages("BLOCK x WHEN time ABOVE 23:59 OR phase IS explore\nFLAG y WHEN phase EXISTS AND phase IS explore")
    assert [(s, line, column) for s, line, column, _ in found] == [("warning", 1, 14), ("warning", 2, 13)]
    assert "always false" in found[0][3]
    assert "always true" in found[1][3]


def test_allow_shadowed_by_a_block() -> None:
    text = "\n".join(
        [
            "BLOCK send_*",
            "ALLOW send_email WHEN principal.role IS admin",
            "ALLOW send_sms_* WHEN phase IS commit",
            "BLOCK lookup WHEN phase IS explore",
            "ALLOW lookup WHEN phase IS explore",
            "ALLOW lookup WHEN phase IS commit",
            "ALLOW other",
        ]
    )
    found = messages(text)
    shadowed = [(line, message) for severity, line, _, message in found if "never takes effect" in message]
    assert [line for line, _ in shadowed] == [2, 3, 5]
    assert "l.rules:1" in shadowed[0][1]
    assert "same condition" in shadowed[2][1]
    assert all(severity == "warning" for severity, line, _, _ in found if line in (2, 3, 5))


def test_shadowing_across_files() -> None:
    found = lint_sources([("ALLOW send_email", "allow.rules"), ("BLOCK *", "block.rules")])
    assert [(d.source, d.line, d.severity) for d in found] == [("allow.rules", 1, "warning")]
    assert "block.rules:1" in found[0].message


def test_optional_arguments_used_without_exists() -> None:
    found = messages(
        "BLOCK x WHEN arg.amount ABOVE 100\n"
        "ALLOW y WHEN arg.note CONTAINS ok\n"
        "REQUIRE APPROVAL FOR z WHEN arg.amount EXISTS AND arg.amount ABOVE 100\n"
        "FLAG w WHEN arg.a.b IS 1 OR arg.a.b IS 2"
    )
    assert [(s, line, column) for s, line, column, _ in found] == [
        ("warning", 1, 14),
        ("warning", 2, 14),
        ("warning", 4, 13),
    ]
    assert "fails closed" in found[0][3] and "arg.amount EXISTS" in found[0][3]
    assert "silently does not match" in found[1][3]


def test_budget_written_as_a_fraction_is_a_warning() -> None:
    found = messages("BLOCK * WHEN budget ABOVE 0.9")
    assert found == [("warning", 1, 27, found[0][3])]
    assert "90%" in found[0][3]
    assert messages("BLOCK * WHEN budget ABOVE 90") == []


def test_diagnostics_are_sorted_by_position() -> None:
    found = lint_rules("BLOCK b WHEN arg.x IS 1\nBLOCK a WHEN phase IS banana", "l.rules", ["a"])
    positions = [(d.line, d.column) for d in found]
    assert positions == sorted(positions)
