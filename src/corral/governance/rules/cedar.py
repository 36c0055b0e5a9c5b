"""corral rules → Cedar policies (and a Cedar schema), deciding as corral does (DESIGN §14, Portability).

``corral rules export FILE.rules --to cedar [--schema]``. Policies locked into one engine's language are
hard to audit, test or migrate; this writes the part of a corral policy that Cedar can express as Cedar,
and names every rule it cannot translate, with the reason — never drops one silently.

The request a Cedar engine must be given for a corral call (``cedar_request``):

- principal ``User::"alice"``, whose parents are her roles, ``Role::"agent"`` (``cedar_entities``);
- action ``Action::"send_email"`` — the tool;
- resource ``Agent::"refund-desk"`` — the agent;
- context ``{phase, effect, tool, args}``: ``args`` as the tool receives them, numbers as Cedar
  ``decimal`` values (corral compares numbers exactly, whatever their type), null values left out.

The decision: Deny is ``blocked``. Allow is ``approval_required`` if a policy annotated
``@corral("approval")`` held, else ``flagged`` if a ``@corral("flag")`` one did, else ``allowed``
(``cedar_decision``). ``BLOCK`` is ``forbid``; ``ALLOW``, ``FLAG`` and ``REQUIRE APPROVAL FOR`` are
``permit``; ``DEFAULT ALLOW`` is one unconditional ``permit`` (Cedar denies by default); under
``DEFAULT BLOCK`` a FLAG permit holds only where some ALLOW does, so it never grants what corral would
block (a REQUIRE APPROVAL does grant there, subject to approval, as in corral).

corral's three-valued logic is kept exactly: every condition is translated twice, as "definitely true"
and "definitely false"; an optional argument is read only behind ``context.args has …`` (as Cedar's
validator demands). A BLOCK or REQUIRE APPROVAL rule applies unless its condition is definitely false
(fail closed), an ALLOW or FLAG only where it is definitely true — what corral does with an
indeterminate condition. This is exact for requests that fit the schema (``--schema``): an argument of
another type makes Cedar skip a policy where corral fails closed, so the enforcement point should
validate requests against it (cedarpy's ``schema=`` refuses such a request: Deny).

Not translated, each named with its reason: ``calls()`` (session history), budget, spent, remaining and
cost (corral's ledger), time and day (a clock in the policy's time zone), labels and tags (information
flow: what the session has read, what the tool is), MATCHES or CONTAINS where corral ignores letter case
and Cedar's ``like`` cannot, globs with ``?`` or ``[…]``, shadow rules (Cedar enforces every policy) and
``REQUIRE PLAN`` (plans are corral session state).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from corral.governance.rules.nodes import (
    ALLOW,
    APPROVAL,
    BLOCK,
    FLAG,
    And,
    Condition,
    Expr,
    Literal,
    Not,
    Or,
    Rule,
    RuleFile,
)
from corral.governance.rules.parser import is_glob
from corral.struct import field, struct

__all__ = [
    "CedarExport",
    "Untranslated",
    "cedar_decision",
    "cedar_entities",
    "cedar_request",
    "export_cedar",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CEDAR_KEYWORDS = frozenset({"true", "false", "if", "then", "else", "in", "like", "has", "is", "__cedar"})
_DECIMAL_LIMIT = Decimal("922337203685477.5807")
_METHODS = {"above": "greaterThan", "below": "lessThan", "at_least": "greaterThanOrEqual", "at_most": "lessThanOrEqual"}
_KIND = {BLOCK: "block", ALLOW: "allow", FLAG: "flag", APPROVAL: "approval"}

_WHY = {
    "calls": "calls() counts the session's earlier calls; Cedar decides each request alone, without history",
    "budget": "a budget gate: corral's ledger decides the budget at call time, and a Cedar request has no ledger",
    "spent": "budget figures come from corral's ledger, which a Cedar request does not carry",
    "remaining": "budget figures come from corral's ledger, which a Cedar request does not carry",
    "cost": "a call's cost estimate is corral's (cost or cost_fn), which a Cedar request does not carry",
    "time": "time of day in the policy's time zone: a Cedar request carries no clock",
    "day": "the day of the week in the policy's time zone: a Cedar request carries no clock",
    "labels": "labels are what the session has read (information flow): session history Cedar does not see",
    "tags": "tags come from corral's tool registry (information flow), which a Cedar request does not carry",
}


class _Untranslatable(Exception):
    pass


@struct(frozen=True)
class Untranslated:
    """A rule (or directive) the export left out, and why."""

    source: str  # file:line
    rule: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "rule": self.rule, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.source}: not translated: {self.rule} — {self.reason}"


@struct
class CedarExport:
    policies: str  # Cedar policy text, one policy per translated rule
    schema: str  # a Cedar schema (human-readable format) for the requests the policies read
    untranslated: list[Untranslated]
    kinds: dict[str, str] = field(default_factory=dict)  # @id → block | allow | flag | approval | default
    translated: int = 0
    # the arguments the schema declares, dotted path → decimal | String | Bool | record: a request fits
    # the schema when it carries only these, each of its type
    arguments: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policies": self.policies,
            "schema": self.schema,
            "translated": self.translated,
            "untranslated": [item.to_dict() for item in self.untranslated],
        }


# -- expressions: (definitely true, definitely false) -------------------------------------------------

TRUE, FALSE = "true", "false"


def _and(*parts: str) -> str:
    if FALSE in parts:
        return FALSE
    kept = [part for part in parts if part != TRUE]
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else "(" + " && ".join(kept) + ")"


def _or(*parts: str) -> str:
    if TRUE in parts:
        return TRUE
    kept = [part for part in parts if part != FALSE]
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else "(" + " || ".join(kept) + ")"


def _not(part: str) -> str:
    if part == TRUE:
        return FALSE
    if part == FALSE:
        return TRUE
    if part.startswith("!") and _enclosed(part[1:]):
        return part[2:-1]
    return f"!{part}" if _enclosed(part) else f"!({part})"


def _enclosed(text: str) -> bool:
    """Whether ``text`` is one parenthesised group: ``(a) && (b)`` is not."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth, quoted, escaped = 0, False, False
    for index, char in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0 and index != len(text) - 1:
                return False
    return True


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _string(text: str) -> str:
    """A Cedar string literal (Cedar's escapes: ``\\n``, ``\\"``, ``\\u{…}``, not JSON's ``\\u0001``)."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _uid(kind: str, name: str) -> str:
    return f"{kind}::{_string(name)}"


def _like(pattern: str, what: str) -> str:
    """A corral glob as a Cedar ``like`` pattern: ``*`` is the only wildcard both have."""
    if "?" in pattern or "[" in pattern:
        raise _Untranslatable(f'{what} "{pattern}" uses ? or […], and Cedar\'s like has only *')
    return _string(pattern)  # a corral glob has no literal *: every * is a wildcard, as in like


def _decimal(number: Decimal, what: str) -> str:
    if not number.is_finite() or abs(number) > _DECIMAL_LIMIT or number != number.quantize(Decimal("0.0001")):
        raise _Untranslatable(f"{what}: {number} does not fit a Cedar decimal (at most 4 decimal places)")
    text = format(number.normalize(), "f")
    if "." not in text:
        text += ".0"
    return f'decimal("{text}")'


def _member(base: str, key: str) -> str:
    return f"{base}.{key}" if _IDENT.match(key) and key not in _CEDAR_KEYWORDS else f"{base}[{_string(key)}]"


def _has(base: str, key: str) -> str:
    return f"{base} has {key}" if _IDENT.match(key) and key not in _CEDAR_KEYWORDS else f"{base} has {_string(key)}"


class _Translator:
    """Turns one policy's rules into Cedar text. A first pass (``learn``) gives every argument the rules
    read one Cedar type, as a schema must: a number compared with ABOVE is a ``decimal``, text matched
    with MATCHES a ``String``; a bare ``IS 100`` fits either and follows the other evidence."""

    def __init__(self) -> None:
        self.required: dict[tuple[str, ...], dict[str, str]] = {}  # path → {type: where it was required}
        self.flexible: dict[tuple[str, ...], set[str]] = {}
        self.types: dict[tuple[str, ...], str] = {}  # resolved: decimal String Bool record, or "" (any)

    def learn(self, rule: Rule) -> None:
        for expr in (rule.when, rule.unless):
            for condition in _conditions(expr):
                if condition.subject.field == "arg":
                    self.evidence(condition, rule.location)

    def evidence(self, condition: Condition, where: str) -> None:
        path = condition.subject.path
        for depth in range(1, len(path)):
            self.required.setdefault(path[:depth], {}).setdefault("record", where)
        op = condition.op
        needs = None
        if op in _METHODS:
            needs = "decimal"
        elif op == "matches" or (op in ("is", "in") and any(_text_only(v) for v in condition.values)):
            needs = "String"
        if needs is not None:
            self.required.setdefault(path, {}).setdefault(needs, where)
        elif op in ("is", "in"):
            for literal in condition.values:
                self.flexible.setdefault(path, set()).add("Bool" if literal.boolean is not None else "decimal")
        self.flexible.setdefault(path, set())

    def resolve(self) -> None:
        for path in {*self.required, *self.flexible}:
            needed = self.required.get(path, {})
            if len(needed) > 1:
                self.types[path] = "conflict:" + ", ".join(f"{kind} at {where}" for kind, where in needed.items())
            elif needed:
                self.types[path] = next(iter(needed))
            else:
                flexible = self.flexible.get(path, set())
                self.types[path] = "decimal" if "decimal" in flexible else "Bool" if flexible else ""

    def type_of(self, path: tuple[str, ...], label: str) -> str:
        kind = self.types.get(path, "")
        if kind.startswith("conflict:"):
            raise _Untranslatable(
                f"{label} is read as more than one type ({kind[len('conflict:'):]}); a Cedar schema gives an "
                "attribute one type"
            )
        return kind

    # -- conditions --

    def expr(self, expr: Expr) -> tuple[str, str]:
        if isinstance(expr, Condition):
            true, false = self.condition(expr)
            return (false, true) if expr.negated else (true, false)
        if isinstance(expr, Not):
            true, false = self.expr(expr.item)
            return false, true
        parts = [self.expr(item) for item in expr.items]
        if isinstance(expr, And):
            return _and(*(t for t, _ in parts)), _or(*(f for _, f in parts))
        if isinstance(expr, Or):
            return _or(*(t for t, _ in parts)), _and(*(f for _, f in parts))
        raise _Untranslatable(f"unknown expression {expr!r}")  # pragma: no cover

    def condition(self, condition: Condition) -> tuple[str, str]:
        """The positive form of a condition as (definitely true, definitely false)."""
        subject = condition.subject
        field_name, op = subject.field, condition.op
        if field_name in _WHY:
            raise _Untranslatable(_WHY[field_name])
        values = condition.values
        if field_name in ("phase", "effect"):
            expr = f"context.{field_name}"
            test = self.choice(expr, op, values, field_name)
            return test, _not(test)
        if field_name == "tool":
            if op in ("is", "in"):
                test = self.entities("action", "Action", values)
            elif op == "matches" and not _cased(values[0].raw):
                test = f"context.tool like {_like(values[0].raw, 'MATCHES')}"
            elif op == "exists":
                test = TRUE
            else:
                raise _Untranslatable(_case_reason(op, "tool"))
            return test, _not(test)
        if field_name in ("principal", "agent"):
            var, kind = ("principal", "User") if field_name == "principal" else ("resource", "Agent")
            if op in ("is", "in"):
                test = self.entities(var, kind, values)
            elif op == "exists":
                test = TRUE  # a Cedar request always names its principal and its agent
            else:
                raise _Untranslatable(f"Cedar compares {field_name}s as entities; it cannot glob or search their names")
            return test, _not(test)
        if field_name == "role":
            if op in ("is", "in", "contains"):
                roles = [_uid("Role", v.raw) for v in values]
                test = f"principal in {roles[0]}" if len(roles) == 1 else f"principal in [{', '.join(roles)}]"
                return test, _not(test)
            if op == "exists":
                raise _Untranslatable("Cedar cannot ask whether a principal has any role at all")
            raise _Untranslatable("roles are Cedar entities (Role::…); a glob cannot match them")
        if field_name == "arg":
            return self.argument(condition)
        raise _Untranslatable(f"no Cedar translation for {subject.label}")  # pragma: no cover

    def choice(self, expr: str, op: str, values: Sequence[Literal], field_name: str) -> str:
        if op == "exists":
            return TRUE
        if op in ("is", "in"):
            if len(values) == 1:
                return f"{expr} == {_string(values[0].raw)}"
            return "[" + ", ".join(_string(v.raw) for v in values) + f"].contains({expr})"
        if op == "matches":  # phase and effect are lower-case words: the pattern's case is all that differs
            return f"{expr} like {_like(values[0].raw.lower(), 'MATCHES')}"
        raise _Untranslatable(f"no Cedar translation for {field_name} {op.upper()}")  # pragma: no cover

    def entities(self, var: str, kind: str, values: Sequence[Literal]) -> str:
        uids = [_uid(kind, v.raw) for v in values]
        if len(uids) == 1:
            return f"{var} == {uids[0]}"
        return f"{var} in [{', '.join(uids)}]"

    def argument(self, condition: Condition) -> tuple[str, str]:
        path = condition.subject.path
        label = condition.subject.label
        if any(part.isdigit() for part in path):
            raise _Untranslatable(f"{label} indexes a list, which a Cedar set cannot")
        for depth in range(1, len(path)):
            if self.type_of(path[:depth], label) != "record":  # pragma: no cover - learn() made it one
                raise _Untranslatable(f"{label}: arg.{'.'.join(path[:depth])} is not a record")
        kind = self.type_of(path, label)
        guards, expr = [], "context.args"
        for key in path:
            guards.append(_has(expr, key))
            expr = _member(expr, key)
        present = _and(*guards)
        op = condition.op
        if op == "exists":
            return present, _not(present)
        if kind == "record":
            raise _Untranslatable(f"{label} is compared here but read as a record of arguments elsewhere")
        if op in ("is", "in"):
            test = _or(*(self.equals(expr, literal, kind) for literal in condition.values))
        elif op in _METHODS:
            test = f"{expr}.{_METHODS[op]}({_decimal(condition.values[0].number or Decimal(0), condition.text)})"
        elif op == "matches":
            pattern = condition.values[0].raw
            if _cased(pattern):
                raise _Untranslatable(_case_reason(op, label))
            test = f"{expr} like {_like(pattern, 'MATCHES')}"
        else:
            raise _Untranslatable(
                "CONTAINS on an argument reads text (ignoring letter case) or a list, which Cedar cannot tell apart"
            )
        return _and(present, test), _and(present, _not(test))

    def equals(self, expr: str, literal: Literal, kind: str) -> str:
        """corral's IS for an argument of a known type: a bare number equals the number (or, for a text
        argument, the text as written), ``true`` the boolean (or the text), anything else the text."""
        if kind == "String" or _text_only(literal):
            return f"{expr} == {_string(literal.raw)}" if kind in ("String", "") else FALSE
        if kind == "decimal":
            return f"{expr} == {_decimal(literal.number, literal.raw)}" if literal.number is not None else FALSE
        return f"{expr} == {'true' if literal.boolean else 'false'}" if literal.boolean is not None else FALSE

    # -- rules --

    def target(self, rule: Rule) -> tuple[str, str]:
        """(the action scope, a guard for the condition) for a rule's target."""
        if rule.target == "*":
            return "action", TRUE
        if is_glob(rule.target):
            return "action", f"context.tool like {_like(rule.target, 'the target glob')}"
        return f"action == {_uid('Action', rule.target)}", TRUE

    def applies(self, rule: Rule) -> str:
        """When the rule counts as matched, in Cedar: fail closed for BLOCK and REQUIRE APPROVAL."""
        parts: list[Expr] = []
        if rule.when is not None:
            parts.append(rule.when)
        if rule.unless is not None:
            parts.append(Not(rule.unless, rule.unless.line, rule.unless.column))
        if not parts:
            return TRUE
        true, false = self.expr(parts[0] if len(parts) == 1 else And(tuple(parts), rule.line, rule.column))
        return _not(false) if rule.action in (BLOCK, APPROVAL) else true


def _text_only(literal: Literal) -> bool:
    """A value only text can equal: quoted, or a bare word that is neither a number nor true/false."""
    return literal.quoted or (literal.number is None and literal.boolean is None)


def _conditions(expr: Expr | None) -> list[Condition]:
    if expr is None:
        return []
    if isinstance(expr, Condition):
        return [expr]
    if isinstance(expr, Not):
        return _conditions(expr.item)
    return [c for item in expr.items for c in _conditions(item)]


def _cased(text: str) -> bool:
    return text.lower() != text.upper()


def _case_reason(op: str, label: str) -> str:
    word = "MATCHES" if op == "matches" else "CONTAINS"
    return f"{word} on {label} ignores letter case in corral, and Cedar's like cannot"


# -- the export ---------------------------------------------------------------------------------------


def export_cedar(files: Sequence[RuleFile] | Any, tools: Iterable[str] = ()) -> CedarExport:
    """Translate parsed rules files (or a ``Policy``: its ``files``) to Cedar. ``tools`` adds actions to
    the schema beyond the tools the rules name (rules aimed at ``*`` or a glob apply to them too)."""
    files = tuple(getattr(files, "files", files))
    translator = _Translator()
    untranslated: list[Untranslated] = []
    for file in files:
        for directive in file.directives:
            if directive.kind == "require_plan" and not file.shadow:
                untranslated.append(
                    Untranslated(
                        f"{directive.source}:{directive.line}",
                        directive.text,
                        "REQUIRE PLAN checks the plan bound to a commit: corral session state a Cedar request lacks",
                    )
                )
    enforced = [file for file in files if not file.shadow]
    default_block = any(file.default == BLOCK for file in enforced)
    rules = [rule for file in files for rule in file.rules]

    for rule in rules:
        if not rule.shadow:
            translator.learn(rule)
    translator.resolve()
    translated: list[tuple[Rule, str, str, str]] = []  # (rule, action scope, target guard, applies)
    for rule in rules:
        if rule.shadow:
            untranslated.append(Untranslated(rule.location, rule.text, "a shadow rule is traced, never enforced; "
                                             "Cedar enforces every policy (export it in MODE ENFORCE to trial it)"))
            continue
        try:
            scope, guard = translator.target(rule)
            translated.append((rule, scope, guard, translator.applies(rule)))
        except _Untranslatable as why:
            untranslated.append(Untranslated(rule.location, rule.text, str(why)))

    allow_any = _or(
        *(_and(_target_test(rule), applies) for rule, _, _, applies in translated if rule.action == ALLOW)
    )
    out = ["// Cedar policies translated from corral rules by `corral rules export --to cedar`.",
           "// Request: principal User (parents: Role), action Action::\"TOOL\", resource Agent::\"AGENT\",",
           "// context {phase, effect, tool, args}. Deny = blocked; an Allow that a @corral(\"approval\")",
           "// or @corral(\"flag\") policy held = approval required or flagged."]
    if untranslated:
        out.append("//")
        out.append("// Not translated (Cedar decides without these):")
        out.extend(f"//   {item.source}  {item.rule}  -- {item.reason}" for item in untranslated)
    kinds: dict[str, str] = {}
    if not default_block:
        kinds["corral:default"] = "default"
        out.append('\n// DEFAULT ALLOW (Cedar denies by default)\n@id("corral:default")\n@corral("default")\n'
                   "permit (principal, action, resource);")
    for rule, scope, guard, applies in translated:
        condition = _and(guard, applies)
        if default_block and rule.action == FLAG:
            condition = _and(condition, allow_any)  # a FLAG never grants what no ALLOW grants
        effect = "forbid" if rule.action == BLOCK else "permit"
        kinds[rule.location] = _KIND[rule.action]
        lines = ["", f"// {rule.text}", f"@id({_string(rule.location)})", f'@corral("{_KIND[rule.action]}")']
        if rule.because:
            lines.append(f"@reason({_string(rule.because)})")
        text = f"{effect} (principal, {scope}, resource)"
        if condition == FALSE:
            lines.append(f"// this rule can never apply here: {rule.text}")
            text += "\nwhen { false }"
        elif condition != TRUE:
            text += f"\nwhen {{ {_strip(condition)} }}"
        lines.append(text + ";")
        out.append("\n".join(lines))
    actions = sorted({rule.target for rule in rules if rule.target != "*" and not is_glob(rule.target)} | set(tools))
    arguments = {
        ".".join(path): kind or "String"
        for path, kind in sorted(translator.types.items())
        if not kind.startswith("conflict:")
    }
    return CedarExport(
        "\n".join(out) + "\n", _schema(actions, translator.types), untranslated, kinds, len(translated), arguments
    )


def _target_test(rule: Rule) -> str:
    """The rule's target as a condition (for the ALLOW rules a FLAG or REQUIRE APPROVAL needs under
    DEFAULT BLOCK)."""
    if rule.target == "*":
        return TRUE
    if is_glob(rule.target):
        return f"context.tool like {_like(rule.target, 'the target glob')}"
    return f"action == {_uid('Action', rule.target)}"


def _strip(condition: str) -> str:
    return condition[1:-1] if _enclosed(condition) else condition


def _schema(actions: Sequence[str], types: Mapping[tuple[str, ...], str]) -> str:
    lines = [
        "// Cedar schema for corral requests (generated by `corral rules export --to cedar --schema`).",
        "entity Role;",
        "entity User in [Role];",
        "entity Agent;",
        f"type Args = {_record((), types)};",
    ]
    if not actions:
        lines.append("// No tool is named by the rules: list the agent's tools (--tools or --config) to declare them.")
    else:
        names = ", ".join(_string(name) for name in actions)
        lines.append(
            f"action {names} appliesTo {{\n  principal: [User],\n  resource: [Agent],\n"
            "  context: { phase: String, effect: String, tool: String, args: Args }\n};"
        )
    return "\n".join(lines) + "\n"


_SCHEMA_TYPES = {"decimal": "__cedar::decimal", "Bool": "Bool", "String": "String"}


def _record(prefix: tuple[str, ...], types: Mapping[tuple[str, ...], str]) -> str:
    depth = len(prefix)
    children = sorted({path[depth] for path in types if len(path) > depth and path[:depth] == prefix})
    fields = []
    for key in children:
        path = (*prefix, key)
        kind = types.get(path, "")
        if kind == "record":
            cedar_type = _record(path, types)
        elif kind.startswith("conflict:"):
            continue  # no rule reading it was translated; the request may carry it as it likes
        else:
            cedar_type = _SCHEMA_TYPES.get(kind, "String")
        fields.append(f"{_string(key)}?: {cedar_type}")
    return "{" + ", ".join(fields) + "}"


# -- requests and answers ---------------------------------------------------------------------------


def cedar_request(
    tool: str, args: Mapping[str, Any], *, effect: str, phase: str, principal: str, agent: str
) -> dict[str, Any]:
    """A corral call as the request the exported policies expect (cedarpy's form). Raises ``ValueError``
    for an argument Cedar cannot hold (a number with more than 4 decimal places, say)."""
    context = {"phase": phase, "effect": effect, "tool": tool, "args": _value(dict(args), "args")}
    return {
        "principal": _uid("User", principal),
        "action": _uid("Action", tool),
        "resource": _uid("Agent", agent),
        "context": context,
    }


def _value(value: Any, where: str) -> Any:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        try:
            text = _decimal(number, where)
        except _Untranslatable as why:
            raise ValueError(str(why)) from None
        return {"__extn": {"fn": "decimal", "arg": text[len('decimal("') : -2]}}
    if isinstance(value, Mapping):
        return {str(key): _value(item, f"{where}.{key}") for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_value(item, f"{where}[]") for item in value if item is not None]
    raise ValueError(f"{where}: a {type(value).__name__} cannot be sent to Cedar")


def cedar_entities(principals: Mapping[str, Iterable[str]]) -> list[dict[str, Any]]:
    """Users with their roles as parents, and the roles themselves, in cedarpy's JSON form."""
    roles: set[str] = set()
    out = []
    for name, held in sorted(principals.items()):
        held = sorted(set(held))
        roles.update(held)
        out.append({"uid": {"type": "User", "id": name}, "attrs": {},
                    "parents": [{"type": "Role", "id": role} for role in held]})
    out.extend({"uid": {"type": "Role", "id": role}, "attrs": {}, "parents": []} for role in sorted(roles))
    return out


def cedar_decision(result: Any, kinds: Mapping[str, str]) -> str:
    """A cedarpy answer in corral's words: ``blocked``, ``approval_required``, ``flagged`` or ``allowed``.

    ``kinds`` maps the export's policy ``@id``s to corral actions (``CedarExport.kinds``)."""
    if not result.allowed:
        return "blocked"
    actions = {kinds.get(pid, "") for pid in result.diagnostics.id_annotations_by_reason.values()}
    if "approval" in actions:
        return "approval_required"
    if "flag" in actions:
        return "flagged"
    return "allowed"
