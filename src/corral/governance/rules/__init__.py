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

from typing import Any

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
from corral.governance.rules.nodes import Directive, Rule, RuleFile

# The parser (which loads lark) and the linter are loaded when first used: a process that only decides,
# with its policy already compiled, never needs them.
_LAZY = {"parse_rules": "parser", "Diagnostic": "lint", "lint_rules": "lint"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.governance.rules' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"corral.governance.rules.{module}"), name)
    globals()[name] = value
    return value


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
