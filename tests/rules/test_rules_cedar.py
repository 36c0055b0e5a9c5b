"""Cedar export (``corral rules export --to cedar``): cedarpy decides as corral does on everything
translated — a differential property over generated policies and requests — and every rule that is not
translated is named with its reason."""

from __future__ import annotations

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.rules.cedar_cases import (
    ATOMS,
    TOOLS,
    UNTRANSLATABLE,
    Call,
    calls,
    cedar_says,
    conform,
    corral_says,
    rule_lines,
)

from corral.governance.rules import Policy, parse_rules
from corral.governance.rules.cedar import cedar_request, export_cedar


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(rule_lines(ATOMS), min_size=1, max_size=6),
    st.booleans(),
    st.lists(calls(), min_size=1, max_size=8),
)
def test_cedar_decides_as_corral_on_translated_policies(lines: list[str], default_block: bool, batch: list[Call]) -> None:
    text = ("DEFAULT BLOCK\n" if default_block else "") + "\n".join(lines)
    policy = Policy.from_sources([(text, "p.rules")])
    export = export_cedar(policy, tools=TOOLS)
    assert export.untranslated == []
    assert export.translated == len(lines)
    batch = [conform(call, export) for call in batch]
    assert cedar_says(export, batch, schema=True) == corral_says(policy, batch)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.lists(st.one_of(rule_lines(ATOMS), rule_lines(ATOMS + UNTRANSLATABLE)), min_size=1, max_size=6),
    st.booleans(),
    st.lists(calls(), min_size=1, max_size=6),
)
def test_untranslated_rules_are_named_and_the_rest_decides_as_corral(
    lines: list[str], default_block: bool, batch: list[Call]
) -> None:
    text = ("DEFAULT BLOCK\n" if default_block else "") + "\n".join(lines)
    export = export_cedar(Policy.from_sources([(text, "p.rules")]), tools=TOOLS)
    batch = [conform(call, export) for call in batch]
    skipped = {item.source for item in export.untranslated}
    assert export.translated + len(skipped) == len(lines)
    for item in export.untranslated:
        assert item.reason and item.rule in text
        assert f"//   {item.source}  {item.rule}  -- {item.reason}" in export.policies
    # the translated part alone, each rule still on its own line
    kept = "\n".join(
        "" if f"p.rules:{number}" in skipped else line for number, line in enumerate(text.split("\n"), start=1)
    )
    assert cedar_says(export, batch, schema=True) == corral_says(Policy.from_sources([(kept, "p.rules")]), batch)


def test_exported_policies_validate_against_the_exported_schema() -> None:
    text = "\n".join(f"FLAG * WHEN {atom}" for atom in ATOMS) + "\nBLOCK pay WHEN arg.amount ABOVE 1\n"
    export = export_cedar(Policy.from_sources([(text, "p.rules")]), tools=["send_email", "lookup"])
    result = cedarpy.validate_policies(export.policies, export.schema)
    assert result.validation_passed, [str(error) for error in result.errors]
    assert '"amount"?: __cedar::decimal' in export.schema
    assert '"customer"?: {"tier"?: String}' in export.schema
    assert '"flag"?: Bool' in export.schema
    assert 'action "lookup", "pay", "send_email" appliesTo' in export.schema
    call = Call(tool="pay", args={"amount": 3, "to": "a", "flag": True, "customer": {"tier": "gold"}})
    assert cedar_says(export, [call], schema=True) == corral_says(Policy.from_sources([(text, "p.rules")]), [call])


# -- the shape of the export ------------------------------------------------------------------------------


def test_an_export_reads_like_the_rules() -> None:
    text = (
        "REQUIRE PLAN\n"
        'BLOCK issue_refund WHEN arg.amount ABOVE 1000 BECAUSE "refunds over $1000 go through \\"finance\\""\n'
        "REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100\n"
        'FLAG lookup_order WHEN arg.order_id MATCHES "VIP-*"\n'
        "SHADOW BLOCK send_*\n"
    )
    export = export_cedar(Policy.from_sources([(text, "refunds.rules")]))
    assert '@id("corral:default")\n@corral("default")\npermit (principal, action, resource);' in export.policies
    assert (
        '// BLOCK issue_refund WHEN arg.amount ABOVE 1000\n@id("refunds.rules:2")\n@corral("block")\n'
        '@reason("refunds over $1000 go through \\"finance\\"")\n'
        'forbid (principal, action == Action::"issue_refund", resource)\n'
        'when { !(context.args has amount && !(context.args.amount.greaterThan(decimal("1000.0")))) };'
    ) in export.policies
    assert [(item.source, item.reason.split(":")[0]) for item in export.untranslated] == [
        ("refunds.rules:1", "REQUIRE PLAN checks the plan bound to a commit"),
        ("refunds.rules:4", "MATCHES on arg.order_id ignores letter case in corral, and Cedar's like cannot"),
        ("refunds.rules:5", "a shadow rule is traced, never enforced; Cedar enforces every policy (export it in MODE ENFORCE to trial it)"),
    ]
    assert export.kinds == {"corral:default": "default", "refunds.rules:2": "block", "refunds.rules:3": "approval"}
    assert export.to_dict()["translated"] == 2
    assert cedarpy.validate_policies(export.policies, export.schema).validation_passed


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 50", "without history"),
        ("BLOCK * WHEN budget ABOVE 90%", "a budget gate"),
        ("BLOCK * WHEN remaining BELOW 1", "corral's ledger"),
        ("FLAG * WHEN time OUTSIDE 09:00-17:00", "no clock"),
        ("BLOCK * WHEN labels CONTAINS pii", "what the session has read"),
        ("BLOCK * WHEN tags CONTAINS egress", "tool registry"),
        ("BLOCK send_? WHEN phase IS commit", "uses ? or […]"),
        ("BLOCK x WHEN arg.items.0 IS a", "indexes a list"),
        ("BLOCK x WHEN arg.n ABOVE 1.23456", "at most 4 decimal places"),
        ("BLOCK x WHEN arg.n ABOVE 1\nBLOCK y WHEN arg.n MATCHES \"*-*\"", "more than one type"),
        ("BLOCK x WHEN arg.a IS 1\nBLOCK y WHEN arg.a.b IS 2", "read as a record"),
        ("BLOCK x WHEN principal CONTAINS a", "as entities"),
    ],
)
def test_untranslatable_rules_say_why(rule: str, reason: str) -> None:
    export = export_cedar(Policy.from_sources([(rule, "u.rules")]))
    assert export.untranslated, rule
    assert reason in export.untranslated[0].reason


def test_cedar_strings_are_escaped_as_cedar_escapes_them() -> None:
    export = export_cedar(Policy.from_sources([('BLOCK x WHEN arg.s IS "tab\\\\here \\"q\\" é"', "s.rules")]))
    assert 'context.args.s == "tab\\\\here \\"q\\" é"' in export.policies
    call = Call(tool="x", args={"s": 'tab\\here "q" é'})
    assert cedar_says(export, [call]) == ["blocked"]


def test_requests_refuse_what_cedar_cannot_hold() -> None:
    with pytest.raises(ValueError, match="4 decimal places"):
        cedar_request("x", {"n": 0.123456}, effect="read", phase="explore", principal="a", agent="b")
    with pytest.raises(ValueError, match="cannot be sent to Cedar"):
        cedar_request("x", {"n": object()}, effect="read", phase="explore", principal="a", agent="b")
    request = cedar_request("x", {"n": 2, "m": None, "l": [1, "a"]}, effect="read", phase="explore", principal="a",
                            agent="b")
    assert request["context"]["args"] == {
        "n": {"__extn": {"fn": "decimal", "arg": "2.0"}},
        "l": [{"__extn": {"fn": "decimal", "arg": "1.0"}}, "a"],
    }


def test_a_parsed_file_exports_like_its_policy() -> None:
    file = parse_rules("BLOCK x WHEN phase IS commit\n", "f.rules")
    assert export_cedar([file]).policies == export_cedar(Policy([file])).policies
