"""The benchmark's policies, written once and rendered twice: as corral rule text and as Cedar.

Rules are built as small trees (``Rule``, ``Cond``) rather than as text, so that the corral rules and
the Cedar policies they are compared with come from the same source and cannot drift apart. The
``ruleset(n)`` generator produces the shape the benchmark is about: almost every rule names some
*other* tool exactly (``tool_17``), a few are ``*`` or globs, and a handful aim at the called tool
(``lookup``) with conditions on ``arg.*``, ``phase``, ``principal.role`` and ``budget``. A kernel that
indexes rules by target pays for the handful; one that scans pays for all ``n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CALLED_TOOL = "lookup"
"""The tool every timed call goes to."""

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "WHEN", "UNLESS", "BECAUSE", "ABOVE", "BELOW", "AT"})


# ------------------------------------------------------------------------------------------ the trees


@dataclass(frozen=True, slots=True)
class Leaf:
    """One comparison ``field op value``; ``value`` is a tuple for ``IN``/``NOT IN``, None for ``EXISTS``."""

    field: str
    op: str
    value: object = None


@dataclass(frozen=True, slots=True)
class All:
    """Conditions joined by ``AND``."""

    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    """Conditions joined by ``OR``."""

    parts: tuple[Cond, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Cond


Cond = Leaf | All | Any_ | Not


@dataclass(frozen=True, slots=True)
class Rule:
    """``ACTION TARGET [WHEN expr] [UNLESS expr] [BECAUSE "text"]`` as data."""

    action: str  # "BLOCK" | "ALLOW" | "FLAG" | "REQUIRE APPROVAL"
    target: str  # "*", a tool name, or a glob
    when: Cond | None = None
    unless: Cond | None = None
    because: str | None = None


def when(text: str) -> Cond:
    """A tiny reader for the condition shapes used below, so the rule tables stay legible.

    Accepts ``a AND b``, ``a OR b`` and ``NOT a`` over single comparisons; AND binds tighter than OR.
    It is not corral's parser and does not try to be: it exists so each benchmark rule is written once.
    """
    ors = [part.strip() for part in re.split(r"\s+OR\s+", text)]
    alts = []
    for alt in ors:
        ands = [_leaf(p.strip()) for p in re.split(r"\s+AND\s+", alt)]
        alts.append(ands[0] if len(ands) == 1 else All(tuple(ands)))
    return alts[0] if len(alts) == 1 else Any_(tuple(alts))


_OPS = (
    "IS NOT",
    "NOT IN",
    "AT LEAST",
    "AT MOST",
    "IS",
    "IN",
    "ABOVE",
    "BELOW",
    "MATCHES",
    "CONTAINS",
    "EXISTS",
)


def _leaf(text: str) -> Cond:
    if text.startswith("NOT "):
        return Not(_leaf(text[4:].strip()))
    field, _, rest = text.partition(" ")
    for op in _OPS:
        if rest == op or rest.startswith(op + " "):
            raw = rest[len(op) :].strip()
            return Leaf(field, op, _value(op, raw))
    raise ValueError(f"benchmark condition not understood: {text!r}")


def _value(op: str, raw: str) -> object:
    if op == "EXISTS":
        return None
    if op in ("IN", "NOT IN"):
        return tuple(_scalar(v.strip()) for v in raw.strip("()").split(","))
    return _scalar(raw)


def _scalar(raw: str) -> object:
    if raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    if raw.endswith("%"):
        return Percent(float(raw[:-1]))
    try:
        return int(raw)
    except ValueError:
        return raw


@dataclass(frozen=True, slots=True)
class Percent:
    """A ``budget`` threshold written with ``%``."""

    value: float


# --------------------------------------------------------------------------------- the rule sets

# The handful aimed at the called tool, and the few ``*``/glob rules; every ruleset starts with them.
CORE: tuple[Rule, ...] = (
    Rule("ALLOW", CALLED_TOOL, when("principal.role IN (analyst, admin)")),
    Rule("FLAG", CALLED_TOOL, when('arg.order_id MATCHES "Z*"')),
    Rule("BLOCK", CALLED_TOOL, when("phase IS commit"), unless=when("principal.role IS admin")),
    Rule(
        "REQUIRE APPROVAL",
        CALLED_TOOL,
        when("arg.limit EXISTS AND arg.limit ABOVE 1000"),
        because="bulk lookups need a human",
    ),
    Rule("BLOCK", CALLED_TOOL, when("arg.order_id IN (DELETED, PURGED) OR principal.role IS suspended")),
    Rule("BLOCK", "*", when("budget ABOVE 90%")),
    Rule("REQUIRE APPROVAL", "*", when("effect IS irreversible")),
    Rule("FLAG", "look*", when('arg.order_id MATCHES "*TEST*"')),
    Rule("BLOCK", "tool_1*", when("arg.amount ABOVE 10000")),
)

# The "governed read call" row: a few rules, the everyday case.
FEW: tuple[Rule, ...] = (CORE[0], CORE[1], CORE[5])


def _filler(i: int) -> Rule:
    """The i-th rule aimed at some other tool: three rules per tool, six templates in rotation."""
    tool = f"tool_{i // 3}"
    kind = i % 6
    if kind == 0:
        return Rule("BLOCK", tool, when(f"arg.amount ABOVE {100 + i % 900}"))
    if kind == 1:
        return Rule("ALLOW", tool, when("principal.role IN (analyst, admin)"))
    if kind == 2:
        return Rule("FLAG", tool, when('arg.note MATCHES "*urgent*"'))
    if kind == 3:
        return Rule("REQUIRE APPROVAL", tool, when("arg.amount AT LEAST 500"), because="large amounts need a human")
    if kind == 4:
        return Rule("BLOCK", tool, when("phase IS NOT commit AND arg.mode IS write"))
    return Rule("BLOCK", tool, when("arg.region NOT IN (eu, us)"), unless=when("principal.role IS admin"))


def ruleset(n: int) -> tuple[Rule, ...]:
    """``n`` rules: ``CORE`` followed by rules aimed at other tools (``tool_0``, ``tool_1``, …)."""
    if n < len(CORE):
        return CORE[:n]
    return CORE + tuple(_filler(i) for i in range(n - len(CORE)))


def other_tools(rules: tuple[Rule, ...]) -> list[str]:
    """The exact tool names the rules aim at, besides the called tool, in first-seen order."""
    seen: dict[str, None] = {}
    for rule in rules:
        if rule.target != CALLED_TOOL and "*" not in rule.target:
            seen.setdefault(rule.target)
    return list(seen)


# ------------------------------------------------------------------------------- corral rule text


def corral_text(rules: tuple[Rule, ...]) -> str:
    """The rules as a ``*.rules`` file (``DEFAULT ALLOW`` is corral's default and left implicit)."""
    return "\n".join(corral_line(rule) for rule in rules) + "\n"


def corral_line(rule: Rule) -> str:
    action = "REQUIRE APPROVAL FOR" if rule.action == "REQUIRE APPROVAL" else rule.action
    out = f"{action} {rule.target}"
    if rule.when is not None:
        out += f" WHEN {_corral_cond(rule.when, top=True)}"
    if rule.unless is not None:
        out += f" UNLESS {_corral_cond(rule.unless, top=True)}"
    if rule.because is not None:
        out += f' BECAUSE "{rule.because}"'
    return out


def _corral_cond(cond: Cond, *, top: bool = False) -> str:
    if isinstance(cond, Leaf):
        return _corral_leaf(cond)
    if isinstance(cond, Not):
        return f"NOT ({_corral_cond(cond.part, top=True)})"
    if isinstance(cond, All):
        return " AND ".join(_corral_cond(p) for p in cond.parts)
    text = " OR ".join(_corral_cond(p) for p in cond.parts)
    return text if top else f"({text})"


def _corral_leaf(leaf: Leaf) -> str:
    if leaf.op == "EXISTS":
        return f"{leaf.field} EXISTS"
    if leaf.op in ("IN", "NOT IN"):
        values = ", ".join(_corral_value(v) for v in leaf.value)  # type: ignore[union-attr]
        return f"{leaf.field} {leaf.op} ({values})"
    if leaf.op == "MATCHES":
        return f'{leaf.field} MATCHES "{leaf.value}"'
    return f"{leaf.field} {leaf.op} {_corral_value(leaf.value)}"


def _corral_value(value: object) -> str:
    if isinstance(value, Percent):
        return f"{value.value:g}%"
    if isinstance(value, str) and (not _BARE.match(value) or value.upper() in _KEYWORDS):
        return f'"{value}"'
    return str(value)
