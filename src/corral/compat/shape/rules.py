"""Shape's rule objects: ``parse_rules(text) -> [Rule]``, each with ``action``, ``tool_pattern`` and
``conditions`` as ``(field, operator, value)`` triples, ``matches_tool(name)`` and ``evaluate(ctx)``.

Parsing and evaluation are corral's rule language (lark grammar, compiled conditions), of which
Shape's syntax is a subset, so a rule means here exactly what it means to a corral ``Governor``:

    [rule] = parse_rules("BLOCK * WHEN budget ABOVE 80% UNLESS tool IS read")
    rule.conditions            # [("budget", "ABOVE", "80%"), ("tool", "IS NOT", "read")]
    rule.evaluate({"budget": 85.0, "tool": "irreversible"})     # (True, "budget = 85% > 80%; …")

``conditions`` is the rule's condition as one conjunction: ``WHEN a AND b UNLESS c`` lists ``a``, ``b``
and the exact negation of ``c`` (``IS`` ↔ ``IS NOT``, ``ABOVE`` ↔ ``AT MOST``, ``INSIDE`` ↔
``OUTSIDE`` …). A part that is not one comparison (an ``OR`` group, a ``NOT`` of a group) is listed as
``(its text, "", "")``. A ``Rule`` built by hand from triples is compiled from them, with the same
grammar, when it is made (a bad triple raises ``RuleSyntaxError``, a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from corral.errors import ConfigError, RuleSyntaxError
from corral.governance.rules import CompiledRule, Policy, RuleFile
from corral.governance.rules import parse_rules as parse_rule_file
from corral.governance.rules.nodes import And, Condition, Expr, Not, Or
from corral.governance.rules.nodes import Rule as RuleNode
from corral.governance.rules.parser import DAYS, EFFECTS, OP_WORDS


class RuleAction(Enum):
    BLOCK = "block"
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    FLAG = "flag"


_ACTION_WORDS = {
    RuleAction.BLOCK: "BLOCK",
    RuleAction.ALLOW: "ALLOW",
    RuleAction.FLAG: "FLAG",
    RuleAction.REQUIRE_APPROVAL: "REQUIRE APPROVAL FOR",
}
_FROM_KERNEL = {"block": RuleAction.BLOCK, "allow": RuleAction.ALLOW, "flag": RuleAction.FLAG,
                "approval": RuleAction.REQUIRE_APPROVAL}

# The exact negation of each operator, as (operator, negated) of corral's condition nodes.
_NEGATION = {
    ("is", False): ("is", True), ("is", True): ("is", False),
    ("in", False): ("in", True), ("in", True): ("in", False),
    ("exists", False): ("exists", True), ("exists", True): ("exists", False),
    ("inside", False): ("inside", True), ("inside", True): ("inside", False),
    ("above", False): ("at_most", False), ("at_most", False): ("above", False),
    ("below", False): ("at_least", False), ("at_least", False): ("below", False),
}
# Operators the grammar has no negated word for: a triple says "NOT MATCHES", the text "NOT a MATCHES b".
_PREFIX_NOT = {"NOT MATCHES": "MATCHES", "NOT CONTAINS": "CONTAINS"}

Triple = tuple[str, str, str]


# ------------------------------------------------------------------------------------------ the rule


@dataclass
class Rule:
    """One rule in Shape's shape. corral's additions: ``because`` (``BECAUSE "…"``), ``timezone`` (the
    policy's ``TIMEZONE``, for a ``now`` given as a datetime) and ``shadow`` (a ``SHADOW`` rule, which a
    governor evaluates and traces but never enforces)."""

    action: RuleAction
    tool_pattern: str  # "*", a tool name or a glob (send_*)
    conditions: list[Triple] = field(default_factory=list)
    because: str | None = None
    timezone: str | None = None
    shadow: bool = False
    _compiled: tuple[str, _Compiled] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self.action = RuleAction(self.action)
        except ValueError:
            raise ConfigError(
                f"unknown rule action {self.action!r}; expected RuleAction.BLOCK, ALLOW, FLAG or REQUIRE_APPROVAL"
            ) from None
        self._compile()

    @property
    def text(self) -> str:
        """The rule in the rule language, as corral reads it."""
        core = self._core()
        return core if self.because is None else f"{core} BECAUSE {_quote(self.because)}"

    def _core(self) -> str:
        words = ["SHADOW"] if self.shadow else []
        words += [_ACTION_WORDS[RuleAction(self.action)], str(self.tool_pattern)]
        if self.conditions:
            words.append("WHEN " + " AND ".join(_render(c) for c in self.conditions))
        return " ".join(words)

    def matches_tool(self, tool_name: str) -> bool:
        """``*`` matches every tool, a name itself, a glob (``send_*``) the names it matches."""
        return self._compile().rule.matches(tool_name)

    def evaluate(self, ctx: Mapping[str, Any]) -> tuple[bool, str]:
        """``(condition met, why)`` for the facts in ``ctx`` — what a ``Governor`` would conclude.

        ``ctx`` holds Shape's keys — ``phase``, ``tool`` (the effect, in Shape's context), ``budget``
        (percent), ``time`` (``"HH:MM"``) — and any of corral's: ``effect``, ``tool`` as a name, ``args``
        (a mapping), ``cost``, ``spent``, ``remaining``, ``principal``, ``roles``, ``agent``, ``day``
        (``"mon"`` … ``"sun"``), ``now`` (a datetime, for ``time`` and ``day`` at once), ``call_log``
        (``[(tool, datetime)]``, for ``calls(…)``), ``labels`` and ``tags`` (sets of words). A condition
        whose field ``ctx`` lacks is *indeterminate*: a BLOCK or REQUIRE APPROVAL rule then counts as met
        (fail closed), an ALLOW or FLAG rule as not met, and the reason says so.
        """
        if not isinstance(ctx, Mapping):
            raise ConfigError(f"Rule.evaluate needs a mapping of facts, got {type(ctx).__name__}")
        compiled = self._compile()
        outcome = compiled.rule.evaluate(_ContextFacts(ctx, compiled))
        return outcome.matched, outcome.detail

    def _compile(self) -> _Compiled:
        text = self.text
        if self._compiled is not None and self._compiled[0] == text:
            return self._compiled[1]
        compiled = _compile_text(text, self._core(), self.timezone)
        self._compiled = (text, compiled)
        return compiled

    @classmethod
    def from_node(cls, node: RuleNode, compiled: CompiledRule, zone: ZoneInfo, timezone: str | None) -> Rule:
        """A Shape ``Rule`` for a parsed corral rule, keeping the compiled rule it came with."""
        conditions = _conjuncts(node.when, negate=False) if node.when is not None else []
        if node.unless is not None:
            conditions += _conjuncts(node.unless, negate=True)
        rule = cls.__new__(cls)
        rule.action = _FROM_KERNEL[node.action]
        rule.tool_pattern = node.target
        rule.conditions = conditions
        rule.because = node.because
        rule.timezone = timezone
        rule.shadow = node.shadow
        rule._compiled = (rule.text, _Compiled(compiled, zone, _fields(node)))
        return rule


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: CompiledRule
    zone: ZoneInfo
    fields: frozenset[str]  # the facts the condition reads


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Parse rule text into Shape ``Rule`` objects; blank lines and ``#`` comments are skipped.

    A line that does not parse raises ``RuleSyntaxError`` (a ``ValueError``, as Shape raised) with the
    line and column. Directives (``DEFAULT``, ``REQUIRE PLAN``) are policy settings, not rules: give the
    text to ``agent.rules()`` for them to take effect. ``TIMEZONE`` is kept on each rule, and a ``MODE
    SHADOW`` file's rules are ``shadow``.
    """
    rule_file: RuleFile = parse_rule_file(text, source)
    policy = Policy((rule_file,))
    timezone = rule_file.timezone
    return [
        Rule.from_node(node, compiled, policy.timezone, timezone)
        for node, compiled in zip(rule_file.rules, policy.rules, strict=True)
    ]


def _compile_text(text: str, core: str, timezone: str | None) -> _Compiled:
    """Compile one rule's text; ``core`` is the text without its BECAUSE, which the parser reports."""
    if "\n" in text or "\r" in text:
        raise RuleSyntaxError("a rule is one line; a condition or target contains a line break", text=text)
    source = f"TIMEZONE {timezone}\n{text}" if timezone else text
    rule_file = parse_rule_file(source, "<rule>")
    policy = Policy((rule_file,))
    if len(rule_file.rules) != 1 or rule_file.rules[0].text != core:
        raise RuleSyntaxError(
            f"the rule reads differently than its parts say (a '#' starts a comment): {text!r}",
            source="<rule>",
            text=text,
        )
    return _Compiled(policy.rules[0], policy.timezone, _fields(rule_file.rules[0]))


# --------------------------------------------------------------------------- conditions as triples


def _conjuncts(expr: Expr, *, negate: bool) -> list[Triple]:
    """``expr`` (or ``NOT expr``) as a list of parts that must all hold."""
    if isinstance(expr, Not):
        return _conjuncts(expr.item, negate=not negate)
    if isinstance(expr, And) and not negate:
        return [triple for item in expr.items for triple in _conjuncts(item, negate=False)]
    if isinstance(expr, Or) and negate:  # NOT (a OR b) is NOT a AND NOT b, exactly (also three-valued)
        return [triple for item in expr.items for triple in _conjuncts(item, negate=True)]
    if isinstance(expr, Condition):
        return [_triple(expr, negate)]
    text = _expr_text(expr, nested=True)
    return [(f"NOT {text}" if negate else text, "", "")]


def _triple(condition: Condition, negate: bool) -> Triple:
    op, negated = condition.op, condition.negated
    if negate:
        flipped = _NEGATION.get((op, negated))
        if flipped is None:  # MATCHES, CONTAINS: no negated word in the grammar
            return (_field(condition), "NOT " + OP_WORDS[(op, negated)], _value(condition))
        op, negated = flipped
    return (_field(condition), OP_WORDS[(op, negated)], _value(condition))


def _field(condition: Condition) -> str:
    subject = condition.subject
    if subject.field == "effect" and condition.text[:4].lower() == "tool":  # Shape's "tool IS read"
        return "tool"
    return subject.label


def _value(condition: Condition) -> str:
    if condition.op == "exists":
        return ""
    if condition.op == "in":
        return "(" + ", ".join(str(v) for v in condition.values) + ")"
    if condition.op == "inside":
        start, end = condition.span or (0, 0)
        return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
    return str(condition.values[0])


def _render(triple: Any) -> str:
    if not (isinstance(triple, tuple | list) and len(triple) == 3 and all(isinstance(p, str) for p in triple)):
        raise RuleSyntaxError(f"a condition is a (field, operator, value) triple of strings, got {triple!r}")
    fld, op, value = (part.strip() for part in triple)
    if op.upper() in _PREFIX_NOT:
        return f"NOT {fld} {_PREFIX_NOT[op.upper()]} {value}"
    return " ".join(part for part in (fld, op, value) if part)


def _expr_text(expr: Expr, *, nested: bool) -> str:
    if isinstance(expr, Condition):
        return expr.text
    if isinstance(expr, Not):
        return "NOT " + _expr_text(expr.item, nested=True)
    joiner = " AND " if isinstance(expr, And) else " OR "
    text = joiner.join(_expr_text(item, nested=True) for item in expr.items)
    return f"({text})" if nested else text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fields(node: RuleNode) -> frozenset[str]:
    found: set[str] = set()
    stack: list[Any] = [e for e in (node.when, node.unless) if e is not None]
    while stack:
        expr = stack.pop()
        if isinstance(expr, Condition):
            found.add(expr.subject.field)
        elif isinstance(expr, Not):
            stack.append(expr.item)
        else:
            stack.extend(expr.items)
    return frozenset(found)


# ------------------------------------------------------------------------------ facts from a dict


class FactNotGiven(LookupError):
    """A fact the context does not hold: the condition that needs it is indeterminate."""


_MONDAY = datetime(2024, 1, 1)  # a Monday: a "day" of the week becomes a date from here


class _ContextFacts:
    """corral's rule facts (``RuleFacts``) read from a Shape context dict."""

    def __init__(self, ctx: Mapping[str, Any], compiled: _Compiled) -> None:
        self._ctx = ctx
        self._compiled = compiled

    def _get(self, key: str) -> Any:
        value = self._ctx.get(key)
        if value is None:
            raise FactNotGiven(f"{key} not available")
        return value.value if isinstance(value, Enum) else value

    @property
    def tool(self) -> str:
        return str(self._get("tool"))

    @property
    def effect(self) -> str:
        if self._ctx.get("effect") is not None:
            return str(self._get("effect")).lower()
        legacy = str(self._get("tool")).lower()  # Shape's context names the effect "tool"
        if legacy not in EFFECTS:
            raise FactNotGiven("effect not available")
        return legacy

    @property
    def phase(self) -> str:
        return str(self._get("phase")).lower()

    @property
    def budget_pct(self) -> Any:
        value = self._get("budget")
        return _number(value.rstrip().rstrip("%")) if isinstance(value, str) else value

    @property
    def spent(self) -> Any:
        return _number(self._get("spent"))

    @property
    def cost(self) -> Any:
        return _number(self._get("cost"))

    @property
    def remaining(self) -> Any:
        value = self._ctx.get("remaining")
        return None if value is None else _number(value)

    @property
    def args(self) -> Mapping[str, Any]:
        value = self._ctx.get("args")
        return value if isinstance(value, Mapping) else {}

    @property
    def principal(self) -> Any:
        return self._get("principal")

    @property
    def roles(self) -> tuple[str, ...]:
        value = self._ctx.get("roles", self._ctx.get("principal.role"))
        if value is None:
            raise FactNotGiven("roles not available")
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def agent(self) -> Any:
        return self._get("agent")

    @property
    def labels(self) -> frozenset[str]:
        return _words(self._get("labels"))

    @property
    def tags(self) -> frozenset[str]:
        return _words(self._get("tags"))

    @property
    def call_log(self) -> Any:
        return self._get("call_log")

    @property
    def now(self) -> datetime:
        """``now`` as given, or a moment in the policy's time zone made of ``time`` and ``day``.

        Only what the rule reads is needed: a rule on ``time`` alone needs no ``day``.
        """
        given = self._ctx.get("now")
        if isinstance(given, datetime):
            return given
        wanted = self._compiled.fields
        minutes = _minutes(self._get("time")) if "time" in wanted else 0
        day = _day(self._get("day")) if "day" in wanted else 0
        moment = _MONDAY + timedelta(days=day, minutes=minutes)
        return moment.replace(tzinfo=self._compiled.zone)


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Decimal(value.strip().lstrip("$"))
        except ArithmeticError:
            return value  # not a number: the comparison is indeterminate
    return value


def _words(value: Any) -> frozenset[str]:
    return frozenset((value,) if isinstance(value, str) else value)


def _minutes(value: Any) -> int:
    if isinstance(value, datetime | time):
        return value.hour * 60 + value.minute
    hours, _, minutes = str(value).strip().partition(":")
    try:
        result = int(hours) * 60 + int(minutes)
    except ValueError:
        raise FactNotGiven(f"time {value!r} is not HH:MM") from None
    if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise FactNotGiven(f"time {value!r} is not HH:MM")
    return result


def _day(value: Any) -> int:
    if isinstance(value, datetime):
        return value.weekday()
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    found = DAYS.get(str(value).strip().lower())
    if found is None:
        raise FactNotGiven(f"day {value!r} is not mon … sun")
    return found


__all__ = ["Rule", "RuleAction", "parse_rules"]
