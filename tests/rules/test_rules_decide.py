"""Deciding: deny overrides, DEFAULT BLOCK, and reasons that do not depend on rule order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from corral.governance.rules import Policy, RuleOutcome, Verdict, decide


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


def verdict(text: str, source: str = "p.rules", **facts: Any) -> Verdict:
    policy = Policy.from_sources([(text, source)])
    call = Facts(**facts)
    return decide(policy.evaluate(call), policy.default, call.tool)


def test_block_beats_allow_whatever_the_order() -> None:
    for text in ("ALLOW issue_refund\nBLOCK issue_refund", "BLOCK issue_refund\nALLOW issue_refund"):
        result = verdict(text)
        assert result.decision == "blocked"
        assert [o.action for o in result.deciding] == ["block"]


def test_block_beats_approval_beats_flag() -> None:
    text = "FLAG *\nREQUIRE APPROVAL FOR *\nBLOCK * WHEN phase IS commit"
    assert verdict(text).decision == "blocked"
    assert verdict(text, phase="explore").decision == "approval_required"
    assert verdict("FLAG *\nALLOW *").decision == "flagged"
    assert verdict("ALLOW *").decision == "allowed"
    assert verdict("").decision == "allowed"


def test_reason_uses_because_then_text_with_source() -> None:
    text = (
        "# refunds\n\n\n"
        'REQUIRE APPROVAL FOR issue_refund WHEN arg.amount ABOVE 100 BECAUSE "refunds over $100 need a human"'
    )
    result = verdict(text, "refunds.rules", args={"amount": 120})
    assert result.decision == "approval_required"
    assert result.reason == "refunds over $100 need a human (refunds.rules:4)"
    blocked = verdict("BLOCK send_email WHEN phase IS NOT commit", tool="send_email", phase="explore")
    assert blocked.reason == "BLOCK send_email WHEN phase IS NOT commit (p.rules:1)"


def test_default_block_needs_an_allow() -> None:
    text = "DEFAULT BLOCK\nALLOW lookup_*\nALLOW issue_refund WHEN principal.role IS support"
    result = verdict(text, tool="send_email")
    assert result.decision == "blocked"
    assert result.deciding == []
    assert result.reason == "no ALLOW rule matches send_email (DEFAULT BLOCK)"
    assert verdict(text, tool="lookup_order").decision == "allowed"
    assert verdict(text, roles=("support",)).decision == "allowed"
    assert verdict(text).decision == "blocked"


def test_default_block_with_an_indeterminate_allow_blocks() -> None:
    result = verdict("DEFAULT BLOCK\nALLOW * WHEN arg.amount BELOW 10", args={})
    assert result.decision == "blocked"


def test_default_block_still_flags_an_allowed_call() -> None:
    assert verdict("DEFAULT BLOCK\nALLOW *\nFLAG *").decision == "flagged"


def test_indeterminate_block_blocks_even_with_a_matching_allow() -> None:
    result = verdict("ALLOW *\nBLOCK * WHEN arg.amount ABOVE 100", args={})
    assert result.decision == "blocked"
    assert result.deciding[0].indeterminate


def test_deciding_rules_are_in_source_order_and_the_first_gives_the_reason() -> None:
    outcomes = [
        RuleOutcome("block", True, False, "BLOCK b", "b.rules:2", None, ""),
        RuleOutcome("block", True, False, "BLOCK a10", "a.rules:10", "ten", ""),
        RuleOutcome("block", True, False, "BLOCK a9", "a.rules:9", None, ""),
        RuleOutcome("allow", True, False, "ALLOW x", "a.rules:1", None, ""),
        RuleOutcome("block", False, False, "BLOCK no", "a.rules:3", None, ""),
    ]
    result = decide(outcomes, "allow")
    assert [o.source for o in result.deciding] == ["a.rules:9", "a.rules:10", "b.rules:2"]
    assert result.reason == "BLOCK a9 (a.rules:9)"
    assert decide(list(reversed(outcomes)), "allow") == result


def test_flagged_and_allowed_verdicts_name_their_rules() -> None:
    flagged = verdict('FLAG * WHEN phase IS commit BECAUSE "after hours"\nALLOW *')
    assert [o.action for o in flagged.deciding] == ["flag"]
    assert flagged.reason == "after hours (p.rules:1)"
    allowed = verdict("ALLOW issue_refund")
    assert allowed.reason == "ALLOW issue_refund (p.rules:1)"
    assert verdict("BLOCK other").deciding == []


def test_policy_decide_shortcut() -> None:
    policy = Policy.from_sources([("DEFAULT BLOCK", "p.rules")])
    assert policy.decide(Facts(tool="x")).reason == "no ALLOW rule matches x (DEFAULT BLOCK)"
    assert decide([], "block").reason == "no ALLOW rule matches this call (DEFAULT BLOCK)"
