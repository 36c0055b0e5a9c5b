"""Properties: the parser is total, UNLESS is an exact negation, and rule order never decides anything."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.errors import RuleSyntaxError
from corral.governance.rules import Policy, decide, lint_rules, parse_rules

VALID = """\
TIMEZONE Europe/Berlin   # zone
DEFAULT ALLOW
REQUIRE PLAN
BLOCK send_email WHEN phase IS NOT commit
BLOCK * WHEN budget ABOVE 90%
REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 # need a human"
FLAG * WHEN time OUTSIDE 09:00-17:00
BLOCK send_* WHEN calls(send_*, 1h) AT LEAST 50
ALLOW read_* WHEN principal.role IN (analyst, admin)
BLOCK db_* WHEN arg.query MATCHES "*DROP*" OR (arg.query MATCHES "*TRUNCATE*" AND NOT arg.x EXISTS)
BLOCK * WHEN day IN (sat, sun) UNLESS principal.role IS oncall
"""

PIECES = [
    " ",
    "\n",
    "#",
    '"',
    "(",
    ")",
    ",",
    "%",
    "$",
    ":",
    "-",
    "*",
    ".",
    "\\",
    "\t",
    "\r",
    "\x00",
    "é",
    "AND",
    "OR",
    "NOT",
    "IS",
    "IN",
    "AT",
    "WHEN",
    "UNLESS",
    "BECAUSE",
    "BLOCK",
    "REQUIRE",
    "TIMEZONE",
    "SHADOW",
    "MODE SHADOW\n",
    "arg.",
    "calls(",
    "99:99",
    "1e9",
    "-",
    "((((",
]


def only_syntax_errors(text: str) -> None:
    try:
        Policy.from_sources([(text, "fuzz.rules")])
    except RuleSyntaxError as error:
        assert error.source == "fuzz.rules"
        assert error.line >= 1 and error.column >= 1
        assert error.message
    for diagnostic in lint_rules(text, "fuzz.rules", known_tools=["send_email"]):
        assert diagnostic.severity in ("error", "warning", "note")
        assert str(diagnostic).startswith("fuzz.rules:")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_nothing_but_rule_syntax_errors(text: str) -> None:
    only_syntax_errors(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "swap_lines"]))
        if kind == "insert":
            text = text[:position] + draw(st.sampled_from(PIECES) | st.text(max_size=3)) + text[position:]
        elif kind == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 8)) :]
        elif kind == "replace":
            text = text[:position] + draw(st.sampled_from(PIECES)) + text[position + 1 :]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_rule_files_raise_nothing_but_rule_syntax_errors(text: str) -> None:
    only_syntax_errors(text)


def test_the_unmutated_file_is_valid() -> None:
    assert len(parse_rules(VALID).rules) == 8


# -- UNLESS e ≡ WHEN NOT (e) --------------------------------------------------------------------------


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
    now: datetime = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    call_log: Sequence[tuple[str, datetime]] = ()


ATOMS = [
    "phase IS explore",
    "phase IS NOT commit",
    "effect IS read",
    "tool IS irreversible",
    "arg.amount ABOVE 100",
    "arg.amount AT MOST 5",
    "arg.amount IS 5",
    "arg.amount EXISTS",
    "arg.amount NOT EXISTS",
    "arg.note CONTAINS x",
    'arg.note MATCHES "*X*"',
    "arg.note IN (a, b)",
    "principal.role IS admin",
    "principal.role NOT IN (agent)",
    "principal IS alice",
    "budget ABOVE 50%",
    "remaining BELOW 2",
    "spent AT LEAST $1",
    "time OUTSIDE 09:00-17:00",
    "time INSIDE 22:00-06:00",
    "day IN (sat, sun)",
    "calls(send_*, 1h) AT LEAST 2",
]

conditions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} AND {pair[1]})"),
        st.tuples(inner, inner).map(lambda pair: f"({pair[0]} OR {pair[1]})"),
        inner.map(lambda item: f"NOT ({item})"),
        st.tuples(inner, inner).map(lambda pair: f"{pair[0]} OR {pair[1]}"),
    ),
    max_leaves=6,
)

argument_values = st.one_of(
    st.integers(-10, 300),
    st.none(),
    st.booleans(),
    st.text(alphabet="abxX", max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    st.lists(st.sampled_from(["x", "a"]), max_size=2),
)


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    now = draw(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)))
    log = [
        (
            draw(st.sampled_from(["send_email", "send_sms", "lookup"])),
            now - timedelta(minutes=draw(st.integers(0, 120))),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    return Facts(
        effect=draw(st.sampled_from(["read", "reversible", "irreversible"])),
        phase=draw(st.sampled_from(["explore", "decide", "commit"])),
        budget_pct=draw(st.floats(0, 150)),
        spent=draw(st.decimals(0, 10, places=2)),
        remaining=draw(st.none() | st.decimals(0, 10, places=2)),
        args=draw(st.fixed_dictionaries({}, optional={"amount": argument_values, "note": argument_values})),
        principal=draw(st.sampled_from([None, "alice", "bob"])),
        roles=tuple(draw(st.lists(st.sampled_from(["admin", "agent", "oncall"]), max_size=2, unique=True))),
        now=now,
        call_log=log,
    )


def judged(rule: str, call: Facts) -> tuple[bool, bool]:
    (result,) = Policy.from_sources([(rule, "p.rules")]).evaluate(call)
    return result.matched, result.indeterminate


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["BLOCK *", "ALLOW *", "FLAG *", "REQUIRE APPROVAL FOR *"]),
    st.none() | conditions,
    conditions,
    facts(),
)
def test_unless_is_when_not(head: str, when: str | None, unless: str, call: Facts) -> None:
    if when is None:
        assert judged(f"{head} UNLESS {unless}", call) == judged(f"{head} WHEN NOT ({unless})", call)
    else:
        assert judged(f"{head} WHEN {when} UNLESS {unless}", call) == judged(
            f"{head} WHEN ({when}) AND NOT ({unless})", call
        )


# -- shuffling rules never changes the decision ---------------------------------------------------------

RULE_POOL = [
    "BLOCK * WHEN arg.amount ABOVE 100",
    "BLOCK issue_refund WHEN phase IS explore",
    'BLOCK * WHEN arg.note MATCHES "*x*" BECAUSE "no x"',
    "ALLOW issue_refund",
    "ALLOW * WHEN principal.role IS admin",
    "ALLOW * WHEN arg.amount BELOW 50",
    "FLAG * WHEN budget ABOVE 50%",
    'FLAG issue_* BECAUSE "refund desk"',
    "REQUIRE APPROVAL FOR * WHEN effect IS irreversible",
    'REQUIRE APPROVAL FOR issue_refund WHEN arg.amount AT LEAST 20 BECAUSE "over 20"',
    "REQUIRE APPROVAL FOR * WHEN remaining BELOW 1",
    "BLOCK other_tool",
    "ALLOW other_tool",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(RULE_POOL), min_size=1, max_size=8),
    st.booleans(),
    facts(),
    st.randoms(use_true_random=False),
)
def test_shuffling_rules_never_changes_the_decision(
    rules: list[str], default_block: bool, call: Facts, rng: random.Random
) -> None:
    # each rule keeps its own source and line, whatever order the sources are loaded in
    sources = [("\n" * index + rule, f"r{index % 3}-{index}.rules") for index, rule in enumerate(rules)]
    if default_block:
        sources.append(("DEFAULT BLOCK", "default.rules"))
    shuffled = list(sources)
    rng.shuffle(shuffled)

    def verdict(loaded: list[tuple[str, str]]) -> tuple[str, str, set[str], set[tuple[str, bool, bool]]]:
        policy = Policy.from_sources(loaded)
        outcomes = policy.evaluate(call)
        result = decide(outcomes, policy.default, call.tool)
        every = {(o.source, o.matched, o.indeterminate) for o in outcomes}
        return result.decision, result.reason, {o.source for o in result.deciding}, every

    assert verdict(sources) == verdict(shuffled)
