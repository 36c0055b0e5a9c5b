"""``RuleFile``s → a ``Policy``: rules indexed by target, conditions compiled to closures.

The hot path is ``policy.evaluate(facts)`` once per tool call, so everything that can be decided
before a call is decided here: which rules can apply to which tool (an exact-name dict, a short glob
list and a per-tool cache, so rules aimed at other tools cost nothing), every glob turned into a
compiled regex, every literal into a ``Decimal``, minutes or a set, the time zone into a ``ZoneInfo``.
Evaluation then only reads facts, compares and formats the ``detail`` that the trace shows.

Conditions are three-valued (Kleene): ``True``, ``False`` or ``None`` for *indeterminate* — a missing
argument, a value of the wrong type, anything that raised while reading the facts. An indeterminate
BLOCK or REQUIRE APPROVAL counts as matched (fail closed); an indeterminate ALLOW or FLAG does not.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from corral.canonical import canonical_json, sha256_hex
from corral.errors import RuleSyntaxError
from corral.governance.rules.nodes import (
    ALLOW,
    ANY,
    APPROVAL,
    BLOCK,
    COUNT,
    DAY,
    ENUM,
    FLAG,
    MONEY,
    NAME,
    PERCENT,
    ROLES,
    SHADOW,
    TIME,
    And,
    Condition,
    Expr,
    Literal,
    Not,
    Or,
    Rule,
    RuleFile,
    Subject,
)
from corral.governance.rules.vocabulary import DAY_NAMES, DAYS, OP_WORDS, collection_paused, is_glob
from corral.struct import struct

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = ["CompiledRule", "Policy", "RuleFacts", "RuleOutcome", "Shadow", "Verdict", "decide", "shadow_verdict"]

_CACHE_LIMIT = 4096  # distinct tool names remembered by rules_for; a model inventing names cannot grow it forever


class RuleFacts(Protocol):
    """What a rule may look at. The governor builds one per call; rules only read it."""

    tool: str
    effect: str  # "read" | "reversible" | "irreversible"
    phase: str  # "explore" | "decide" | "commit"
    budget_pct: float  # percent of the tightest scope used (spent + reserved); 0.0 with no budget
    spent: Decimal  # tightest scope
    remaining: Decimal | None  # None when there is no budget: `remaining` conditions are indeterminate
    cost: Decimal  # this call's estimated cost
    args: Mapping[str, Any]
    principal: str | None
    roles: tuple[str, ...]
    agent: str | None
    now: datetime  # timezone-aware; converted to the policy TIMEZONE
    call_log: Sequence[tuple[str, datetime]]  # executed calls in this session, oldest first
    labels: frozenset[str]  # what the session has read (DESIGN §15); rules that read them need them
    tags: frozenset[str]  # what the tool is


@struct(slots=True)
class RuleOutcome:
    """One rule's verdict on one call: what the trace records for it. A ``shadow`` rule's outcome is
    traced like any other but never counts towards the enforced decision."""

    action: str  # "block" | "allow" | "flag" | "approval"
    matched: bool
    indeterminate: bool
    text: str
    source: str  # "file:line"
    because: str | None
    detail: str  # the values compared, e.g. "arg.amount = 120 > 100"
    shadow: bool = False

    def to_check(self) -> dict[str, Any]:
        check = {
            "check": "rule",
            "rule": self.text,
            "source": self.source,
            "action": self.action,
            "matched": self.matched,
            "indeterminate": self.indeterminate,
            "detail": self.detail,
        }
        if self.shadow:
            check["shadow"] = True
        return check


@struct(slots=True)
class Shadow:
    """What the decision would have been with the shadow rules (and a shadow file's directives) enforced.

    ``rules`` are the sources (``file:line``) of the shadow rules that matched — plus a shadow file's
    ``DEFAULT BLOCK`` when it is what would have blocked — in source order. ``decision`` uses the rule
    vocabulary: ``blocked``, ``approval_required``, ``flagged`` or ``allowed``.
    """

    decision: str
    rules: list[str]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "rules": list(self.rules), "reason": self.reason}


@struct(slots=True)
class Verdict:
    """What the rules decided: ``blocked``, ``approval_required``, ``flagged`` or ``allowed``.

    ``deciding`` are the matched enforced rules that produced the decision, in source order; ``reason``
    cites the first of them (its BECAUSE text, else its text) with its ``file:line``. ``shadow`` is set
    by ``Policy.decide`` when a shadow rule was aimed at the call (or a shadow file changes the default).
    """

    decision: str
    deciding: list[RuleOutcome]
    reason: str
    shadow: Shadow | None = None


# -- deciding -----------------------------------------------------------------------------------------


def _position(outcome: RuleOutcome) -> tuple[str, int, str, str]:
    """Sort key: file, then line. It makes ``deciding`` and ``reason`` independent of rule order."""
    name, _, line = outcome.source.rpartition(":")
    try:
        number = int(line)
    except ValueError:
        name, number = outcome.source, 0
    return name, number, outcome.text, outcome.action


def _cite(outcome: RuleOutcome) -> str:
    return f"{outcome.because or outcome.text} ({outcome.source})"


def decide(
    outcomes: Iterable[RuleOutcome], default: str = ALLOW, tool: str | None = None, *, shadow: bool = False
) -> Verdict:
    """Deny overrides, like Cedar: any matched BLOCK blocks, whatever else matched and in any order.

    Then any matched REQUIRE APPROVAL asks for approval. Under ``DEFAULT BLOCK`` a call no ALLOW rule
    matched is blocked. Otherwise the call is allowed — flagged if a FLAG matched. ``tool`` only names
    the call in the DEFAULT BLOCK reason. Shadow rules' outcomes are left out, unless ``shadow`` asks
    what the decision would be with them enforced.
    """
    matched = [o for o in outcomes if o.matched and (shadow or not o.shadow)]
    if len(matched) > 1:
        matched.sort(key=_position)
    blocks: list[RuleOutcome] = []
    approvals: list[RuleOutcome] = []
    allows: list[RuleOutcome] = []
    flags: list[RuleOutcome] = []
    for o in matched:  # one pass, each list still in source order
        action = o.action
        if action == BLOCK:
            blocks.append(o)
        elif action == APPROVAL:
            approvals.append(o)
        elif action == ALLOW:
            allows.append(o)
        elif action == FLAG:
            flags.append(o)
    if blocks:
        return Verdict("blocked", blocks, _cite(blocks[0]))
    if approvals:
        return Verdict("approval_required", approvals, _cite(approvals[0]))
    if not allows and (default == BLOCK or str(default).lower() == BLOCK):
        return Verdict("blocked", [], f"no ALLOW rule matches {tool or 'this call'} (DEFAULT BLOCK)")
    if flags:
        return Verdict("flagged", flags, _cite(flags[0]))
    if allows:
        return Verdict("allowed", allows, _cite(allows[0]))
    return Verdict("allowed", [], "no rule objects")


# -- compiled rules -----------------------------------------------------------------------------------

Result = tuple[bool | None, str]
Check = Callable[[Any], Result]


class CompiledRule:
    """A rule ready to run: its target matcher and its condition as one closure."""

    __slots__ = (
        "_check",
        "_fail_closed",
        "_suffix",
        "action",
        "because",
        "index",
        "line",
        "matches",
        "rule",
        "shadow",
        "source",
        "target",
        "text",
    )

    def __init__(self, rule: Rule, index: int, zone: tzinfo) -> None:
        self.rule = rule
        self.index = index
        self.action = rule.action
        self.target = rule.target
        self.text = rule.text
        self.source = rule.location
        self.line = rule.line
        self.because = rule.because
        if rule.target == "*":
            self.matches: Callable[[str], bool] = _always
        elif is_glob(rule.target):
            self.matches = _glob_matcher(rule.target, case_sensitive=True)
        else:
            self.matches = rule.target.__eq__
        self.shadow = rule.shadow
        self._check = _compile_rule_condition(rule, zone)
        self._fail_closed = rule.action in (BLOCK, APPROVAL)
        self._suffix = (
            " ⇒ indeterminate: counts as matched (fail closed)"
            if self._fail_closed
            else " ⇒ indeterminate: counts as not matched"
        )

    def evaluate(self, facts: RuleFacts) -> RuleOutcome:
        check = self._check
        if check is None:
            return RuleOutcome(
                self.action, True, False, self.text, self.source, self.because, "no condition", self.shadow
            )
        value, detail = check(facts)
        if value is None:
            return RuleOutcome(
                self.action,
                self._fail_closed,
                True,
                self.text,
                self.source,
                self.because,
                detail + self._suffix,
                self.shadow,
            )
        return RuleOutcome(self.action, value, False, self.text, self.source, self.because, detail, self.shadow)

    def __repr__(self) -> str:
        return f"<CompiledRule {self.source} {self.text!r}>"


def shadow_verdict(outcomes: Sequence[RuleOutcome], policy: Policy, tool: str | None = None) -> Shadow | None:
    """The shadow half of a decision: None when nothing shadowed bears on this call (no shadow rule was
    aimed at it and no shadow file changes the default), else what the rules would have decided."""
    shadows = [o for o in outcomes if o.shadow]
    if not shadows and not policy.shadow_default_differs:
        return None
    verdict = decide(outcomes, policy.shadow_default, tool, shadow=True)
    rules = [o.source for o in sorted(shadows, key=_position) if o.matched]
    if verdict.decision == "blocked" and not verdict.deciding and policy.default != BLOCK:
        rules.append(policy.shadow_default_source)
    return Shadow(verdict.decision, rules, verdict.reason)


def _always(_tool: str) -> bool:
    return True


def _glob_matcher(pattern: str, *, case_sensitive: bool) -> Callable[[str], bool]:
    regex = re.compile(fnmatch.translate(pattern), 0 if case_sensitive else re.IGNORECASE)
    match = regex.match

    def matches(value: str) -> bool:
        return match(value) is not None

    return matches


# -- the policy ---------------------------------------------------------------------------------------

Source = tuple[str, str] | tuple[str, str, str | None] | str | Path  # (text, source[, mode])


def _zone(name: str) -> ZoneInfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


class Policy:
    """All rules of an agent, compiled. Immutable: ``extend`` returns a new policy."""

    def __init__(self, files: Sequence[RuleFile] = ()) -> None:
        self.files: tuple[RuleFile, ...] = tuple(files)
        zone_directive = None
        for file in self.files:
            for directive in file.directives:
                if directive.kind != "timezone":
                    continue
                if zone_directive is not None and zone_directive.value != directive.value:
                    raise RuleSyntaxError(
                        f"TIMEZONE {directive.value} conflicts with TIMEZONE {zone_directive.value} "
                        f"({zone_directive.source}:{zone_directive.line}); a policy has one time zone",
                        source=directive.source,
                        line=directive.line,
                        column=directive.column,
                        text=directive.text,
                    )
                zone_directive = zone_directive or directive
        self.timezone_name: str = zone_directive.value if zone_directive else "UTC"
        # without a TIMEZONE, rules read the time in UTC and zoneinfo is not even loaded (the hook starts faster)
        zone = _zone(self.timezone_name) if zone_directive else UTC
        enforced = [file for file in self.files if not file.shadow]
        # A MODE SHADOW file's directives, like its rules, shape only the shadow decision.
        self.default: str = BLOCK if any(file.default == BLOCK for file in enforced) else ALLOW
        self.require_plan: bool = any(file.require_plan for file in enforced)
        self.shadow_default: str = BLOCK if any(file.default == BLOCK for file in self.files) else ALLOW
        self.shadow_require_plan: bool = any(file.require_plan for file in self.files)
        self.shadow_default_differs: bool = self.shadow_default != self.default
        self.shadow_default_source: str = _directive_source(self.files, "default", BLOCK)
        self.shadow_plan_source: str = _directive_source(self.files, "require_plan", "")

        rules: list[CompiledRule] = []
        with collection_paused(sum(len(file.rules) for file in self.files) > 200):
            for file in self.files:
                for rule in file.rules:
                    rules.append(CompiledRule(rule, len(rules), zone))
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self.shadow_plan_differs: bool = self.shadow_require_plan and not self.require_plan
        fields: set[str] = set()
        for compiled in rules:
            _fields(compiled.rule.when, fields)
            _fields(compiled.rule.unless, fields)
        self.fields: frozenset[str] = frozenset(fields)  # what the rules read (calls, labels, …)
        self.has_shadow: bool = (
            any(rule.shadow for rule in rules) or self.shadow_default_differs or self.shadow_plan_differs
        )
        self._exact: dict[str, list[CompiledRule]] = {}
        self._globs: list[CompiledRule] = []
        self._everything: list[CompiledRule] = []
        for compiled in rules:
            if compiled.target == "*":
                self._everything.append(compiled)
            elif is_glob(compiled.target):
                self._globs.append(compiled)
            else:
                self._exact.setdefault(compiled.target, []).append(compiled)
        self._cache: dict[str, tuple[CompiledRule, ...]] = {}

        items: list[str] = []
        for file in self.files:
            if file.mode == SHADOW:  # loaded in shadow mode from outside: part of what the policy is
                items.append("MODE SHADOW")
            ordered = sorted((*file.directives, *file.rules), key=lambda node: (node.line, node.column))
            items.extend(node.canonical for node in ordered)
        self.sha256: str = sha256_hex(canonical_json(items))

    @property
    def timezone(self) -> ZoneInfo:
        """The policy's ``TIMEZONE`` (UTC when it has none), in which ``time`` and ``day`` are read."""
        return _zone(self.timezone_name)

    # -- building --

    @classmethod
    def from_sources(cls, sources: Iterable[Source]) -> Policy:
        """Parse and compile ``(text, source)`` pairs (a bare string is ``(text, "<rules>")``, a ``Path``
        is read). Raises ``RuleSyntaxError``; nothing is half-loaded."""
        return cls(_parse_all(sources))

    @classmethod
    def from_text(cls, text: str, source: str = "<rules>") -> Policy:
        from corral.governance.rules.parser import parse_rules  # the parser (and lark) only when parsing

        return cls((parse_rules(text, source),))

    def extend(self, sources: Iterable[Source]) -> Policy:
        """A new policy with these sources' rules added after the existing ones."""
        return Policy((*self.files, *_parse_all(sources)))

    # -- evaluating --

    def rules_for(self, tool: str) -> tuple[CompiledRule, ...]:
        """The rules whose target matches ``tool``, in file order. Cached per tool name."""
        cached = self._cache.get(tool)
        if cached is not None:
            return cached
        found = [*self._exact.get(tool, ()), *self._everything]
        found.extend(rule for rule in self._globs if rule.matches(tool))
        found.sort(key=_index)
        result = tuple(found)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[tool] = result
        return result

    def evaluate(self, facts: RuleFacts) -> list[RuleOutcome]:
        """Every rule aimed at ``facts.tool`` — and no other — with its verdict, in file order."""
        return [rule.evaluate(facts) for rule in self.rules_for(facts.tool)]

    def decide(self, facts: RuleFacts) -> Verdict:
        """The enforced verdict, with ``.shadow`` (what shadow rules would have made it) when they bear
        on this call."""
        outcomes = self.evaluate(facts)
        verdict = decide(outcomes, self.default, facts.tool)
        if self.has_shadow:
            verdict.shadow = shadow_verdict(outcomes, self, facts.tool)
        return verdict

    @property
    def shadow_rules(self) -> tuple[CompiledRule, ...]:
        return tuple(rule for rule in self.rules if rule.shadow)

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"<Policy {len(self.rules)} rules, default {self.default}, sha256 {self.sha256[:12]}>"


def _index(rule: CompiledRule) -> int:
    return rule.index


def _directive_source(files: Sequence[RuleFile], kind: str, value: str) -> str:
    """``file:line`` of a MODE SHADOW file's directive (its DEFAULT BLOCK, its REQUIRE PLAN), or ""."""
    for file in files:
        if not file.shadow:
            continue
        for directive in file.directives:
            if directive.kind == kind and directive.value == value:
                return f"{directive.source}:{directive.line}"
    return ""


def _fields(expr: Expr | None, into: set[str]) -> None:
    if expr is None:
        return
    if isinstance(expr, Condition):
        into.add(expr.subject.field)
    elif isinstance(expr, Not):
        _fields(expr.item, into)
    else:
        for item in expr.items:
            _fields(item, into)


def _parse_all(sources: Iterable[Source]) -> list[RuleFile]:
    from corral.governance.rules.parser import parse_rules  # the parser (and lark) only when parsing

    files = []
    for item in sources:
        if isinstance(item, Path):
            files.append(parse_rules(item.read_text(encoding="utf-8"), str(item)))
        elif isinstance(item, str):
            files.append(parse_rules(item))
        elif len(item) == 3:
            text, source, mode = item  # type: ignore[misc]
            files.append(parse_rules(text, source, mode=mode))
        else:
            text, source = item
            files.append(parse_rules(text, source))
    return files


# -- conditions ---------------------------------------------------------------------------------------

_MISSING: Any = object()


def _compile_rule_condition(rule: Rule, zone: tzinfo) -> Check | None:
    """WHEN w UNLESS u is exactly ``w AND NOT (u)``: three-valued, short-circuiting on false."""
    when = _compile(rule.when, zone, nested=False) if rule.when is not None else None
    unless = _compile(rule.unless, zone, nested=False) if rule.unless is not None else None
    if unless is None:
        return when
    if when is None:

        def unless_only(facts: Any) -> Result:
            value, detail = unless(facts)
            return (None if value is None else not value), "UNLESS " + detail

        return unless_only

    def when_unless(facts: Any) -> Result:
        value, detail = when(facts)
        if value is False:
            return False, detail
        other, other_detail = unless(facts)
        detail = f"{detail}; UNLESS {other_detail}"
        if other is True:
            return False, detail
        if value is None or other is None:
            return None, detail
        return True, detail

    return when_unless


def _compile(expr: Expr, zone: tzinfo, nested: bool) -> Check:
    if isinstance(expr, Condition):
        return _compile_condition(expr, zone)
    if isinstance(expr, Not):
        inner = _compile(expr.item, zone, nested=False)

        def negate(facts: Any) -> Result:
            value, detail = inner(facts)
            return (None if value is None else not value), f"NOT ({detail})"

        return negate
    items = tuple(_compile(item, zone, nested=True) for item in expr.items)
    if isinstance(expr, And):
        return _kleene(items, stop=False, joiner=" AND ", nested=nested)
    if isinstance(expr, Or):
        return _kleene(items, stop=True, joiner=" OR ", nested=nested)
    raise TypeError(f"not an expression: {expr!r}")  # pragma: no cover


def _kleene(items: tuple[Check, ...], stop: bool, joiner: str, nested: bool) -> Check:
    """AND (``stop=False``) and OR (``stop=True``): the deciding value ends the evaluation, an
    indeterminate part leaves the result indeterminate unless a deciding value follows."""
    opening, closing = ("(", ")") if nested else ("", "")

    def combine(facts: Any) -> Result:
        parts = []
        unknown = False
        for item in items:
            value, detail = item(facts)
            parts.append(detail)
            if value is stop:
                return stop, opening + joiner.join(parts) + closing
            if value is None:
                unknown = True
        return (None if unknown else not stop), opening + joiner.join(parts) + closing

    return combine


# How each kind of value reads in a trace.


def _show_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return _show_any(value)


def _show_any(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "…"
        return '"' + text + '"'
    if value is None:
        return "none"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _show_money(value: Any) -> str:
    return f"${value}" if isinstance(value, Decimal | int | float) and not isinstance(value, bool) else _show_any(value)


def _show_percent(value: Any) -> str:
    return f"{value:g}%" if isinstance(value, float | int) and not isinstance(value, bool) else f"{value}%"


def _show_time(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def _show_day(value: int) -> str:
    return DAY_NAMES[value]


def _show_roles(value: Any) -> str:
    return "(" + ", ".join(value) + ")" if value else "(no roles)"


def _show_set(value: Any) -> str:
    return "(" + ", ".join(sorted(value)) + ")" if value else "(none)"


_SHOW: dict[str, Callable[[Any], str]] = {
    ENUM: _show_text,
    NAME: _show_text,
    DAY: _show_day,
    TIME: _show_time,
    ROLES: _show_roles,
    PERCENT: _show_percent,
    MONEY: _show_money,
    COUNT: str,
    ANY: _show_any,
}


def _number(value: Any) -> Decimal | None:
    """Actual values as exact Decimals; booleans and non-numbers are not numbers (→ indeterminate)."""
    kind = type(value)
    if kind is int:
        return Decimal(value)
    if kind is float:  # exactly as written (0.1 is 0.1); a whole number skips the text round trip
        return Decimal(int(value)) if value.is_integer() else Decimal(repr(value))
    if kind is Decimal:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def _equals(actual: Any, literal: Literal) -> bool:
    """IS for arguments: numbers compare as numbers, text as text, booleans with true/false.

    A bare ``100`` equals the number 100 and the text "100"; a quoted ``"100"`` only the text. Any
    other pairing (a list, None, a number against a word) is simply not equal.
    """
    if isinstance(actual, str):
        return actual == literal.raw
    if isinstance(actual, bool):
        return literal.boolean is actual
    if literal.number is not None:
        number = _number(actual)
        return number is not None and number == literal.number
    return False


# -- fields: how to read each one from the facts --


def _getter(subject: Subject, zone: tzinfo) -> Callable[[Any], Any]:
    field = subject.field
    if field in ("phase", "effect", "tool", "principal", "agent", "spent", "cost"):
        name = field

        def attribute(facts: Any) -> Any:
            return getattr(facts, name)

        return attribute
    if field == "role":
        return lambda facts: facts.roles
    if field == "labels":
        return lambda facts: facts.labels
    if field == "tags":
        return lambda facts: facts.tags
    if field == "budget":
        return lambda facts: facts.budget_pct
    if field == "remaining":

        def remaining(facts: Any) -> Any:
            value = facts.remaining
            return _MISSING if value is None else value

        return remaining
    if field in ("time", "day"):
        as_minutes = field == "time"

        def local(facts: Any) -> int:
            now = facts.now
            if now.tzinfo is None:  # a naive clock is read as UTC, never as the host's local time
                now = now.replace(tzinfo=UTC)
            now = now.astimezone(zone)
            return now.hour * 60 + now.minute if as_minutes else now.weekday()

        return local
    if field == "calls":
        return _calls_getter(subject)
    if field == "arg":
        return _arg_getter(subject.path)
    raise TypeError(f"unknown field {field}")  # pragma: no cover - the parser admits no other


def _arg_getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    if len(path) == 1:
        name = path[0]

        def argument(facts: Any) -> Any:
            return facts.args.get(name, _MISSING)

        return argument
    steps = tuple((part, int(part) if part.isdigit() else None) for part in path)

    def nested(facts: Any) -> Any:
        value = facts.args
        for key, index in steps:
            if isinstance(value, Mapping):
                value = value.get(key, _MISSING)
                if value is _MISSING:
                    return _MISSING
            elif index is not None and isinstance(value, list | tuple) and index < len(value):
                value = value[index]
            else:
                return _MISSING
        return value

    return nested


def _calls_getter(subject: Subject) -> Callable[[Any], int]:
    glob = subject.glob or "*"
    matches = _glob_matcher(glob, case_sensitive=True) if is_glob(glob) else glob.__eq__
    window = timedelta(seconds=subject.window) if subject.window else None

    def count(facts: Any) -> int:
        log = facts.call_log
        if window is None:
            return sum(1 for tool, _when in log if matches(tool))
        cutoff = facts.now - window
        return sum(1 for tool, when in log if when >= cutoff and matches(tool))

    return count


# -- operators: the positive test for each; negations wrap it --

Test = Callable[[Any], bool | None]


def _test(condition: Condition) -> tuple[Test, str]:
    """(test, what an indeterminate means) for the positive operator. ``None`` from a test means
    indeterminate: the actual value has the wrong type for this comparison."""
    kind = condition.subject.kind
    op = condition.op
    values = condition.values

    if op == "exists":
        if kind == ROLES:
            return bool, ""
        return (lambda actual: actual is not None), ""

    if op in ("is", "in"):
        if kind in (ENUM, NAME):
            if len(values) == 1:
                wanted = values[0].raw
                return (lambda actual: actual == wanted), ""
            choices = frozenset(v.raw for v in values)
            return (lambda actual: actual in choices), ""
        if kind == ROLES:
            roles = frozenset(v.raw for v in values)
            return (lambda actual: not roles.isdisjoint(actual)), ""
        if kind == DAY:
            days = frozenset(DAYS.get(v.raw, -1) for v in values)
            return (lambda actual: actual in days), ""
        if kind == TIME:
            times = frozenset(v.minutes for v in values)
            return (lambda actual: actual in times), ""
        if kind in (PERCENT, MONEY, COUNT):
            numbers = frozenset(v.number for v in values)

            def number_in(actual: Any) -> bool | None:
                number = _number(actual)
                return None if number is None else number in numbers

            return number_in, "not a number"
        if len(values) == 1:
            literal = values[0]
            return (lambda actual: _equals(actual, literal)), ""
        return (lambda actual: any(_equals(actual, v) for v in values)), ""

    if op in ("above", "below", "at_least", "at_most"):
        compare = _COMPARE[op]
        if kind == TIME:
            minutes = values[0].minutes or 0
            return (lambda actual: compare(actual, minutes)), ""
        bound = values[0].number

        def numeric(actual: Any) -> bool | None:
            number = _number(actual)
            return None if number is None else compare(number, bound)

        return numeric, "not a number"

    if op == "matches":
        matches = _glob_matcher(values[0].raw, case_sensitive=False)
        if kind == ROLES:
            return (lambda actual: any(matches(role) for role in actual)), ""

        def glob(actual: Any) -> bool | None:
            if isinstance(actual, str):
                return matches(actual)
            return False if actual is None else None

        return glob, "not text"

    if op == "contains":
        literal = values[0]
        if kind == ROLES:
            return (lambda actual: literal.raw in actual), ""
        needle = literal.raw.casefold()

        def contains(actual: Any) -> bool | None:
            if isinstance(actual, str):
                return needle in actual.casefold()
            if actual is None:
                return False
            if isinstance(actual, list | tuple | set | frozenset):
                return any(_equals(item, literal) for item in actual)
            if isinstance(actual, Mapping):
                return literal.raw in actual
            return None

        return contains, "not text or a list"

    if op == "inside":
        start, end = condition.span or (0, 0)
        if start <= end:
            return (lambda actual: start <= actual <= end), ""
        return (lambda actual: actual >= start or actual <= end), ""

    raise TypeError(f"unknown operator {op}")  # pragma: no cover - the parser admits no other


_COMPARE = {"above": operator.gt, "below": operator.lt, "at_least": operator.ge, "at_most": operator.le}
_SYMBOLS = {"above": ">", "below": "<", "at_least": ">=", "at_most": "<="}


def _operand_text(condition: Condition) -> str:
    """The operator and its values as written: 'IS NOT commit', 'IN (sat, sun)', 'OUTSIDE 09:00-17:00'."""
    word = OP_WORDS[(condition.op, condition.negated)]
    if condition.op == "exists":
        return word
    if condition.op == "in":
        return f"{word} (" + ", ".join(str(v) for v in condition.values) + ")"
    if condition.op == "inside":
        start, end = condition.span or (0, 0)
        return f"{word} {_show_time(start)}-{_show_time(end)}"
    return f"{word} {condition.values[0]}"


def _compile_condition(condition: Condition, zone: tzinfo) -> Check:
    """One comparison as a closure that never raises: errors become indeterminate, with a detail."""
    subject = condition.subject
    label = subject.label
    get = _getter(subject, zone)
    test, wrong_type = _test(condition)
    negated = condition.negated
    show = _show_set if subject.field in ("labels", "tags") else _SHOW[subject.kind]
    operand = _operand_text(condition)
    symbol = _SYMBOLS.get(condition.op)
    literal_text = str(condition.values[0]) if condition.values else ""
    unknown = "unknown (no budget)" if subject.field == "remaining" else "missing"
    if condition.op == "exists":
        missing: Result = (negated, f"{label} {unknown}, {operand} → {'true' if negated else 'false'}")
    else:
        missing = (None, f"{label} {unknown} → indeterminate")
    true_word = " → true"
    false_word = " → false"

    def check(facts: Any) -> Result:
        try:
            actual = get(facts)
            if actual is _MISSING:
                return missing
            value = test(actual)
            shown = show(actual)
        except Exception as error:
            return None, f"{label}: cannot be evaluated ({type(error).__name__}) → indeterminate"
        if value is None:
            return None, f"{label} = {shown}, {wrong_type or 'cannot compare'} → indeterminate"
        if negated:
            value = not value
        if symbol is not None:
            if value:
                return True, f"{label} = {shown} {symbol} {literal_text}"
            return False, f"{label} = {shown}, not {symbol} {literal_text}"
        return value, f"{label} = {shown}, {operand}{true_word if value else false_word}"

    return check
