"""``corral rules check``: what a careful reviewer would say about a rules file, before it governs.

A rules file can parse and still be wrong in ways that only show when it is too late: a rule aimed at
a tool that does not exist, a condition that can never be true, an ALLOW that a BLOCK always beats, an
optional argument that makes a BLOCK fail closed on every call that omits it, a shadow rule that is
already enforced (so its trial can show nothing). The linter reports each
as a ``Diagnostic`` with its position, like a compiler: ``errors`` mean the policy does not say what
its author meant, ``warnings`` mean it might not, ``notes`` say what a reader should know (which rules
are shadow rules: evaluated and traced, never enforced).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from corral.errors import RuleSyntaxError
from corral.governance.rules.compiler import Policy
from corral.governance.rules.nodes import (
    ACTION_WORDS,
    ALLOW,
    ANY,
    APPROVAL,
    BLOCK,
    DAY,
    PERCENT,
    ROLES,
    TIME,
    And,
    Condition,
    Expr,
    Not,
    Or,
    Rule,
    RuleFile,
)
from corral.governance.rules.parser import DAYS, is_glob, parse_rules, strip_comment
from corral.struct import struct

__all__ = ["Diagnostic", "lint_rules", "lint_sources"]

ERROR = "error"
WARNING = "warning"
NOTE = "note"  # not a problem: what a reader should know (which rules are shadow rules)


@struct(frozen=True, slots=True)
class Diagnostic:
    """One finding, printed like a compiler's: ``file:line:col: severity: message``."""

    severity: str  # "error" | "warning" | "note"
    source: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


def lint_rules(text: str, source: str = "<rules>", known_tools: Iterable[str] | None = None) -> list[Diagnostic]:
    """Every problem in one rules file. Never raises for bad rules: a syntax error is a diagnostic."""
    return lint_sources([(text, source)], known_tools)


def lint_sources(sources: Iterable[tuple[str, str]], known_tools: Iterable[str] | None = None) -> list[Diagnostic]:
    """Lint several files as one policy: each on its own, then what only shows across them
    (conflicting TIMEZONEs, a BLOCK in one file shadowing an ALLOW in another)."""
    known = None if known_tools is None else frozenset(known_tools)
    sources = list(sources)
    diagnostics: list[Diagnostic] = []
    files: list[RuleFile] = []
    for text, source in sources:
        file, errors = _parse_for_lint(text, source)
        diagnostics.extend(errors)
        if file is None:
            continue
        files.append(file)
        diagnostics.extend(_shadow_note(file))
        for rule in file.rules:
            if file.shadow and rule.canonical.startswith("SHADOW "):
                diagnostics.append(
                    _at(rule, WARNING, "SHADOW is redundant here: this file is MODE SHADOW, so all its rules are")
                )
            diagnostics.extend(_unknown_tool(rule, known))
            diagnostics.extend(_never_matches(rule))
            diagnostics.extend(_unguarded_arguments(rule))
            diagnostics.extend(_budget_fractions(rule))
    if files:
        try:
            Policy(files)
        except RuleSyntaxError as error:
            diagnostics.append(Diagnostic(ERROR, error.source, error.line, error.column, error.message))
        every = [rule for file in files for rule in file.rules]
        diagnostics.extend(_shadowed_allows(every))
        diagnostics.extend(_shadow_duplicates(every))
    order: dict[str, int] = {}
    for _, source in sources:
        order.setdefault(source, len(order))
    rank = {ERROR: 0, WARNING: 1, NOTE: 2}
    diagnostics.sort(key=lambda d: (order.get(d.source, 0), d.line, d.column, rank[d.severity], d.message))
    return diagnostics


def _parse_for_lint(text: str, source: str) -> tuple[RuleFile | None, list[Diagnostic]]:
    """Parse; on failure, parse line by line so that every bad line is reported, not just the first."""
    try:
        return parse_rules(text, source), []
    except RuleSyntaxError as first:
        errors: list[RuleSyntaxError] = []
        if isinstance(text, str) and "\x00" not in text:
            for index, line in enumerate(text.split("\n")):
                if not strip_comment(line).strip():
                    continue
                try:
                    parse_rules(line, source, index)
                except RuleSyntaxError as error:
                    errors.append(error)
        if not errors:  # the problem spans lines (e.g. two TIMEZONEs): report it as found
            errors = [first]
        return None, [Diagnostic(ERROR, e.source, e.line, e.column, e.message) for e in errors]


# -- unknown tools ------------------------------------------------------------------------------------


def _unknown_tool(rule: Rule, known: frozenset[str] | None) -> list[Diagnostic]:
    if known is None or rule.target == "*":
        return []
    if is_glob(rule.target):
        if any(fnmatch.fnmatchcase(tool, rule.target) for tool in known):
            return []
        return [
            _at(
                rule,
                WARNING,
                f"{rule.target} matches no known tool, so this rule applies to nothing{_known_list(known)}",
            )
        ]
    if rule.target in known:
        return []
    close = difflib.get_close_matches(rule.target, sorted(known), n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return [_at(rule, ERROR, f'unknown tool "{rule.target}"{hint}: this rule applies to nothing{_known_list(known)}')]


def _known_list(known: frozenset[str]) -> str:
    if not known:
        return "; no tools are known"
    names = sorted(known)
    shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
    return f"; known tools: {shown}"


# -- rules that can never match -----------------------------------------------------------------------

NEVER = "never"
ALWAYS = "always"
MAYBE = "maybe"

_ALWAYS_PRESENT = frozenset(
    {"phase", "effect", "tool", "budget", "spent", "cost", "time", "day", "calls", "role", "labels", "tags"}
)
# numeric ranges a field can take: (lowest, highest); None is unbounded
_RANGES: dict[str, tuple[Decimal | None, Decimal | None]] = {
    "budget": (Decimal(0), None),
    "calls": (Decimal(0), None),
    "time": (Decimal(0), Decimal(24 * 60 - 1)),
}


def _never_matches(rule: Rule) -> list[Diagnostic]:
    if rule.when is None and rule.unless is None:
        return []
    conjuncts: list[Expr] = []
    if rule.when is not None:
        conjuncts.append(rule.when)
    if rule.unless is not None:
        conjuncts.append(Not(rule.unless, rule.unless.line, rule.unless.column))
    truth, reason = _truth(And(tuple(conjuncts), rule.line, rule.column))
    if truth == NEVER:
        return [_at(rule, ERROR, f"this rule can never match: {reason}")]
    # the rule can match, but a part of it is dead: almost always a typo
    diagnostics = []
    for condition in _conditions(rule.when) + _conditions(rule.unless):
        part, why = _condition_truth(condition)
        if part != MAYBE:
            diagnostics.append(Diagnostic(WARNING, rule.source, condition.line, condition.column, why))
    return diagnostics


def _truth(expr: Expr) -> tuple[str, str]:
    """Whether an expression is never true, always true, or depends on the call; with the reason."""
    if isinstance(expr, Condition):
        return _condition_truth(expr)
    if isinstance(expr, Not):
        truth, reason = _truth(expr.item)
        return {NEVER: ALWAYS, ALWAYS: NEVER, MAYBE: MAYBE}[truth], reason
    results = [_truth(item) for item in expr.items]
    if isinstance(expr, Or):
        if all(truth == NEVER for truth, _ in results):
            return NEVER, "; ".join(reason for _, reason in results)
        for truth, reason in results:
            if truth == ALWAYS:
                return ALWAYS, reason
        return MAYBE, ""
    for truth, reason in results:
        if truth == NEVER:
            return NEVER, reason
    contradiction = _contradiction(expr)
    if contradiction:
        return NEVER, contradiction
    if all(truth == ALWAYS for truth, _ in results):
        return ALWAYS, "; ".join(reason for _, reason in results)
    return MAYBE, ""


def _condition_truth(condition: Condition) -> tuple[str, str]:
    """The truth of a condition by itself, as (truth of the positive form, negated)."""
    truth, reason = _positive_truth(condition)
    if truth == MAYBE:
        return MAYBE, ""
    if condition.negated:
        truth = ALWAYS if truth == NEVER else NEVER
    return truth, f'"{condition.text}" is always {"false" if truth == NEVER else "true"}: {reason}'


def _positive_truth(condition: Condition) -> tuple[str, str]:
    subject = condition.subject
    op = condition.op
    if op == "exists" and subject.field in _ALWAYS_PRESENT and subject.kind != ROLES:
        return ALWAYS, f"{subject.label} always has a value"
    if op in ("above", "below", "at_least", "at_most") and subject.field in _RANGES:
        low, high = _RANGES[subject.field]
        interval = _Interval()
        if low is not None:
            interval.add("at_least", low)
        if high is not None:
            interval.add("at_most", high)
        interval.add(op, _literal_number(condition))
        if interval.empty():
            if subject.kind == TIME:
                return NEVER, "time runs from 00:00 to 23:59"
            return NEVER, f"{subject.label} is never below {low}"
    return MAYBE, ""


def _literal_number(condition: Condition) -> Decimal:
    value = condition.values[0]
    if value.minutes is not None:
        return Decimal(value.minutes)
    return value.number if value.number is not None else Decimal(0)


class _Interval:
    """Lower and upper bounds with strictness; empty when no number fits."""

    def __init__(self) -> None:
        self.low: tuple[Decimal, bool] | None = None  # (bound, strict)
        self.high: tuple[Decimal, bool] | None = None

    def add(self, op: str, bound: Decimal) -> None:
        if op in ("above", "at_least"):
            candidate = (bound, op == "above")
            if self.low is None or candidate[0] > self.low[0] or (candidate[0] == self.low[0] and candidate[1]):
                self.low = candidate
        else:
            candidate = (bound, op == "below")
            if self.high is None or candidate[0] < self.high[0] or (candidate[0] == self.high[0] and candidate[1]):
                self.high = candidate

    def empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        if self.low[0] > self.high[0]:
            return True
        return self.low[0] == self.high[0] and (self.low[1] or self.high[1])

    def contains(self, value: Decimal) -> bool:
        if self.low is not None and (value < self.low[0] or (value == self.low[0] and self.low[1])):
            return False
        return not (self.high is not None and (value > self.high[0] or (value == self.high[0] and self.high[1])))


def _flatten(expr: And) -> list[tuple[Condition, bool]]:
    """The conditions an AND requires, each with whether it is required false (under a NOT)."""
    found: list[tuple[Condition, bool]] = []
    for item in expr.items:
        if isinstance(item, And):
            found.extend(_flatten(item))
        elif isinstance(item, Condition):
            found.append((item, False))
        elif isinstance(item, Not) and isinstance(item.item, Condition):
            found.append((item.item, True))
    return found


def _value_key(condition: Condition, index: int) -> Any:
    literal = condition.values[index]
    if condition.subject.kind == DAY:
        return DAYS.get(literal.raw, literal.raw)
    if literal.minutes is not None:
        return Decimal(literal.minutes)
    if literal.number is not None and (condition.subject.kind != ANY or not literal.quoted):
        return literal.number
    return literal.raw


def _contradiction(expr: And) -> str:
    """Conditions in one AND that cannot all hold: ``X IS a AND X IS b``, ``budget ABOVE 100% AND
    budget BELOW 50%``, ``X EXISTS AND X NOT EXISTS``. Only single-valued fields: a principal may
    hold two roles, so ``principal.role IS a AND principal.role IS b`` is fine."""
    allowed: dict[str, tuple[set[Any], list[str]]] = {}
    excluded: dict[str, set[Any]] = {}
    intervals: dict[str, tuple[_Interval, list[str]]] = {}
    exists: dict[str, set[bool]] = {}
    for condition, inverted in _flatten(expr):
        subject = condition.subject
        if subject.kind == ROLES:
            continue
        key = subject.label
        positive = condition.negated == inverted  # required true in its positive form
        op = condition.op
        if op == "exists":
            exists.setdefault(key, set()).add(positive)
            if len(exists[key]) == 2:
                return f"{key} cannot both exist and not exist"
        elif op in ("is", "in"):
            values = {_value_key(condition, i) for i in range(len(condition.values))}
            if positive:
                current, texts = allowed.get(key, (None, []))
                merged = values if current is None else current & values
                texts = [*texts, condition.text]
                allowed[key] = (merged, texts)
                if not merged:
                    return f"{key} cannot satisfy all of {', '.join(repr(t) for t in texts)}"
            else:
                excluded.setdefault(key, set()).update(values)
            if key in allowed and key in excluded and allowed[key][0] <= excluded[key]:
                return f"{key} is required to be and not to be the same value"
        elif op in ("above", "below", "at_least", "at_most") and positive:
            interval, texts = intervals.get(key, (_Interval(), []))
            interval.add(op, _literal_number(condition))
            texts = [*texts, condition.text]
            intervals[key] = (interval, texts)
            if interval.empty():
                return f"{key} cannot satisfy all of {', '.join(repr(t) for t in texts)}"
    for key, (interval, texts) in intervals.items():
        if key in allowed:
            values = allowed[key][0]
            numbers = [v for v in values if isinstance(v, Decimal)]
            if len(numbers) == len(values) and not any(interval.contains(v) for v in numbers):
                return f"{key} cannot satisfy all of {', '.join(repr(t) for t in [*allowed[key][1], *texts])}"
    return ""


# -- ALLOW rules a BLOCK always beats -----------------------------------------------------------------


def _shadowed_allows(rules: list[Rule]) -> list[Diagnostic]:
    """An ALLOW that a BLOCK always beats. A shadow BLOCK beats only shadow ALLOWs: it is not enforced,
    so an enforced ALLOW still takes effect beside it (and the shadow decision shows the difference)."""
    blocks = [rule for rule in rules if rule.action == BLOCK]
    diagnostics = []
    for allow in rules:
        if allow.action != ALLOW:
            continue
        for block in blocks:
            if block.shadow and not allow.shadow:
                continue
            if not _covers(block.target, allow.target):
                continue
            unconditional = block.when is None and block.unless is None
            same = _expr_key(block.when) == _expr_key(allow.when) and _expr_key(block.unless) == _expr_key(allow.unless)
            if unconditional or same:
                why = "unconditionally" if unconditional else "under the same condition"
                diagnostics.append(
                    _at(
                        allow,
                        WARNING,
                        f"this ALLOW never takes effect: BLOCK {block.target} ({block.location}) applies "
                        f"{why}, and BLOCK always beats ALLOW",
                    )
                )
                break
    return diagnostics


def _shadow_note(file: RuleFile) -> list[Diagnostic]:
    """One note per file that has shadow rules, so that nobody mistakes them for enforced ones."""
    shadows = [rule for rule in file.rules if rule.shadow]
    if not shadows:
        return []
    lines = ", ".join(str(rule.line) for rule in shadows[:12]) + (", …" if len(shadows) > 12 else "")
    count = f"{len(shadows)} shadow rule{'s' if len(shadows) != 1 else ''}"
    mode = next((d for d in file.directives if d.kind == "mode"), None)
    if file.shadow and mode is not None:
        message = f"MODE SHADOW: {count} (lines {lines}) evaluated and traced, never enforced"
        return [Diagnostic(NOTE, file.source, mode.line, mode.column, message)]
    first = shadows[0]
    message = f"{count} (line{'s' if len(shadows) != 1 else ''} {lines}) evaluated and traced, never enforced"
    return [Diagnostic(NOTE, file.source, first.line, first.column, message)]


def _shadow_duplicates(rules: list[Rule]) -> list[Diagnostic]:
    """A shadow rule that an enforced rule already says word for word: trialling it can show nothing."""
    enforced = {_rule_key(rule): rule for rule in rules if not rule.shadow}
    diagnostics = []
    for rule in rules:
        twin = enforced.get(_rule_key(rule)) if rule.shadow else None
        if twin is not None:
            diagnostics.append(
                _at(
                    rule,
                    WARNING,
                    f"this shadow rule is already enforced ({twin.location}): its shadow decision can never differ",
                )
            )
    return diagnostics


def _rule_key(rule: Rule) -> Any:
    return (rule.action, rule.target, _expr_key(rule.when), _expr_key(rule.unless))


def _covers(block_target: str, allow_target: str) -> bool:
    """Whether every tool the ALLOW's target matches is matched by the BLOCK's target."""
    if block_target == "*" or block_target == allow_target:
        return True
    if not is_glob(allow_target):
        return fnmatch.fnmatchcase(allow_target, block_target)
    # a prefix glob ("send_*") covers any glob whose fixed prefix starts with that prefix
    prefix = block_target[:-1]
    if block_target.endswith("*") and not is_glob(prefix):
        fixed = allow_target[: min(allow_target.index(c) for c in "*?[" if c in allow_target)]
        return fixed.startswith(prefix)
    return False


def _expr_key(expr: Expr | None) -> Any:
    """An expression without positions, to compare two rules' conditions."""
    if expr is None:
        return None
    if isinstance(expr, Condition):
        values = tuple((v.raw, v.quoted) for v in expr.values)
        return ("c", expr.subject.label, expr.subject.field, expr.op, expr.negated, values, expr.span)
    if isinstance(expr, Not):
        return ("not", _expr_key(expr.item))
    return (type(expr).__name__, tuple(_expr_key(item) for item in expr.items))


# -- optional arguments without EXISTS ----------------------------------------------------------------


def _conditions(expr: Expr | None) -> list[Condition]:
    if expr is None:
        return []
    if isinstance(expr, Condition):
        return [expr]
    if isinstance(expr, Not):
        return _conditions(expr.item)
    return [c for item in expr.items for c in _conditions(item)]


def _unguarded_arguments(rule: Rule) -> list[Diagnostic]:
    conditions = _conditions(rule.when) + _conditions(rule.unless)
    guarded = {c.subject.label for c in conditions if c.subject.field == "arg" and c.op == "exists"}
    diagnostics = []
    seen: set[str] = set()
    action = ACTION_WORDS[rule.action]
    if rule.action in (BLOCK, APPROVAL):
        effect = f"so this {action} rule fails closed and {'blocks' if rule.action == BLOCK else 'asks for approval'}"
    else:
        effect = f"so this {action} rule silently does not match"
    for condition in conditions:
        label = condition.subject.label
        if condition.subject.field != "arg" or condition.op == "exists" or label in guarded or label in seen:
            continue
        seen.add(label)
        diagnostics.append(
            Diagnostic(
                WARNING,
                rule.source,
                condition.line,
                condition.column,
                f'{label} is used without "{label} EXISTS": a call without it makes the condition '
                f"indeterminate, {effect}; if the argument is optional, guard it with {label} EXISTS",
            )
        )
    return diagnostics


# -- budget written as a fraction ---------------------------------------------------------------------


def _budget_fractions(rule: Rule) -> list[Diagnostic]:
    diagnostics = []
    for condition in _conditions(rule.when) + _conditions(rule.unless):
        if condition.subject.kind != PERCENT or not condition.values:
            continue
        for value in condition.values:
            if value.number is not None and 0 < value.number <= 1 and not value.raw.endswith("%"):
                percent = (value.number * 100).normalize()
                diagnostics.append(
                    Diagnostic(
                        WARNING,
                        rule.source,
                        value.line,
                        value.column,
                        f"budget {value.raw} means {value.raw} percent (budget is always a percentage); "
                        f"write {percent:f}% if you meant a fraction of the budget",
                    )
                )
    return diagnostics


def _at(rule: Rule, severity: str, message: str) -> Diagnostic:
    return Diagnostic(severity, rule.source, rule.line, rule.column, message)
