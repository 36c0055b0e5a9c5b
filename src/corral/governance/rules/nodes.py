"""The parsed form of a rules file: plain, frozen records with their source positions.

The parser has already decided what every word means (which field, which literal type), so the
compiler and the linter never re-read text and never guess. Every node keeps its 1-based line and
column, so anything later stages report points at the place a person has to edit.
"""

from __future__ import annotations

from decimal import Decimal

from corral.struct import struct

# Actions as they appear in outcomes and traces.
BLOCK = "block"
ALLOW = "allow"
FLAG = "flag"
APPROVAL = "approval"

# Modes of a rules file (``MODE SHADOW``); ENFORCE is what a file without MODE is.
SHADOW = "shadow"
ENFORCE = "enforce"

ACTION_WORDS = {BLOCK: "BLOCK", ALLOW: "ALLOW", FLAG: "FLAG", APPROVAL: "REQUIRE APPROVAL FOR"}

# Field kinds: what sort of value a field holds, which decides the operators and literals it takes.
ENUM = "enum"  # phase, effect: one of a few lower-case words
DAY = "day"  # day: mon … sun
NAME = "name"  # tool, principal, agent: a string (or None for an absent principal/agent)
ROLES = "roles"  # principal.role, labels, tags: a set of strings
PERCENT = "percent"  # budget
MONEY = "money"  # spent, remaining, cost
COUNT = "count"  # calls(...)
TIME = "time"  # time: minutes since midnight
ANY = "any"  # arg.NAME: whatever the tool receives


@struct(frozen=True, slots=True)
class Literal:
    """A value as written. ``raw`` is the text without quotes (escapes decoded).

    A bare word may also read as a number (``100``, ``$100``, ``90%``), a boolean (``true``) or a time
    of day (``17:00``); the parser fills in what applies so evaluation never parses.
    """

    raw: str
    quoted: bool
    line: int
    column: int
    number: Decimal | None = None
    boolean: bool | None = None
    minutes: int | None = None

    def __str__(self) -> str:
        if self.quoted:
            return '"' + self.raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return self.raw


@struct(frozen=True, slots=True)
class Subject:
    """What a condition looks at: a field, an argument path, or a ``calls(...)`` count."""

    field: str  # phase effect tool budget spent remaining cost arg principal role agent time day calls labels tags
    kind: str
    label: str  # how traces name it: "arg.amount", "principal.role", "calls(send_*, 1h)"
    line: int
    column: int
    path: tuple[str, ...] = ()  # arg.customer.tier -> ("customer", "tier")
    glob: str | None = None  # calls(GLOB, ...)
    window: int | None = None  # calls(..., WINDOW) in seconds


@struct(frozen=True, slots=True)
class Condition:
    """``subject operator value(s)``. Negated forms (IS NOT, NOT IN, NOT EXISTS, OUTSIDE) keep
    ``negated=True`` over the positive operator, so a negation is exact in three-valued logic."""

    subject: Subject
    op: str  # is in above below at_least at_most matches contains exists inside
    values: tuple[Literal, ...]
    negated: bool
    text: str  # as written
    line: int
    column: int
    span: tuple[int, int] | None = None  # INSIDE/OUTSIDE: (start, end) minutes, both inclusive


@struct(frozen=True, slots=True)
class Not:
    item: Expr
    line: int
    column: int


@struct(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]
    line: int
    column: int


@struct(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]
    line: int
    column: int


Expr = Condition | Not | And | Or


@struct(frozen=True, slots=True)
class Rule:
    """One rule line. ``text`` is the rule as written, without its comment and without its BECAUSE
    clause (the reason travels separately, as ``because``), as the trace example in DESIGN §8 shows."""

    action: str  # block allow flag approval
    target: str
    when: Expr | None
    unless: Expr | None
    because: str | None
    text: str
    canonical: str  # keywords upper-cased, single spaces, no comment: what the policy hash covers
    source: str
    line: int
    column: int
    shadow: bool = False  # evaluated and traced, never enforced: a SHADOW prefix or a MODE SHADOW file

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}"


@struct(frozen=True, slots=True)
class Directive:
    """``TIMEZONE name``, ``DEFAULT ALLOW|BLOCK``, ``REQUIRE PLAN`` or ``MODE SHADOW|ENFORCE``."""

    kind: str  # timezone default require_plan mode
    value: str  # the zone name, "allow"/"block", "shadow"/"enforce", or "" for REQUIRE PLAN
    text: str
    canonical: str
    source: str
    line: int
    column: int


@struct(frozen=True, slots=True)
class RuleFile:
    """A parsed source: its directives and rules in file order."""

    source: str
    directives: tuple[Directive, ...]
    rules: tuple[Rule, ...]
    mode: str | None = None  # given from outside the file (an agent file's ``mode: shadow``)

    @property
    def timezone(self) -> str | None:
        for directive in self.directives:
            if directive.kind == "timezone":
                return directive.value
        return None

    @property
    def default(self) -> str | None:
        values = [d.value for d in self.directives if d.kind == "default"]
        if not values:
            return None
        return BLOCK if BLOCK in values else ALLOW

    @property
    def require_plan(self) -> bool:
        return any(d.kind == "require_plan" for d in self.directives)

    @property
    def shadow(self) -> bool:
        """``MODE SHADOW``: the whole file is evaluated and traced but not enforced (DESIGN §14)."""
        return self.mode == SHADOW or any(d.kind == "mode" and d.value == SHADOW for d in self.directives)
