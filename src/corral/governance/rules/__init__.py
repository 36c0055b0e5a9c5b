"""The rule language: ``*.rules`` text → parse → compile → evaluate, and a linter beside it.

    policy = Policy.from_sources([(text, "refunds.rules")])     # RuleSyntaxError if anything is wrong
    outcomes = policy.evaluate(facts)                           # every rule aimed at facts.tool
    verdict = decide(outcomes, policy.default, facts.tool)      # deny overrides; order never matters
    verdict = policy.decide(facts)                              # the same, with .shadow: what shadow
                                                                # rules (SHADOW, MODE SHADOW) would make it

The stages live in their own modules — ``grammar`` (lark), ``parser`` (meaning and errors),
``compiler`` (closures, target index, decisions) and ``lint`` (``corral rules check``) — so each can be
read and tested alone.
"""

from corral.governance.rules.compiler import (
    CompiledRule,
    Policy,
    RuleFacts,
    RuleOutcome,
    Shadow,
    Verdict,
    decide,
    shadow_verdict,
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
    "Shadow",
    "Verdict",
    "decide",
    "lint_rules",
    "parse_rules",
    "shadow_verdict",
]
