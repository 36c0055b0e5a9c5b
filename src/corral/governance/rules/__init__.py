"""The rule language: ``*.rules`` text → parse → compile → evaluate, and a linter beside it.

    policy = Policy.from_sources([(text, "refunds.rules")])     # RuleSyntaxError if anything is wrong
    outcomes = policy.evaluate(facts)                           # every rule aimed at facts.tool
    verdict = decide(outcomes, policy.default, facts.tool)      # deny overrides; order never matters

The stages live in their own modules — ``grammar`` (lark), ``parser`` (meaning and errors),
``compiler`` (closures, target index, decisions) and ``lint`` (``corral rules check``) — so each can be
read and tested alone.
"""

from corral.governance.rules.compiler import (
    CompiledRule,
    Policy,
    RuleFacts,
    RuleOutcome,
    Verdict,
    decide,
)
from corral.governance.rules.lint import Diagnostic, lint_rules
from corral.governance.rules.nodes import Directive, Rule, RuleFile
from corral.governance.rules.parser import parse_rules

__all__ = [
    "CompiledRule",
    "Diagnostic",
    "Directive",
    "Policy",
    "Rule",
    "RuleFacts",
    "RuleFile",
    "RuleOutcome",
    "Verdict",
    "decide",
    "lint_rules",
    "parse_rules",
]
