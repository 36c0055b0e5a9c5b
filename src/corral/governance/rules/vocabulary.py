"""The rule language's vocabulary — fields, their kinds and operators, days, phases, effects — without the
grammar: what the compiler, the linter and the readers of traces need, importable without lark (a hook
that finds its policy already compiled never loads the parser).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from corral.governance.rules.nodes import ANY, COUNT, DAY, ENUM, MONEY, NAME, PERCENT, ROLES, TIME

# field -> kind. ``arg.NAME``, ``principal.role`` and ``calls(...)`` are handled apart.
FIELDS: dict[str, str] = {
    "phase": ENUM,
    "effect": ENUM,
    "tool": NAME,
    "budget": PERCENT,
    "spent": MONEY,
    "remaining": MONEY,
    "cost": MONEY,
    "principal": NAME,
    "agent": NAME,
    "time": TIME,
    "day": DAY,
    "labels": ROLES,  # what the session has read (DESIGN §15): a set of words, like principal.role
    "tags": ROLES,  # what the tool is (egress, …)
}
FIELD_LIST = (
    "phase, effect, tool, budget, spent, remaining, cost, arg.NAME, principal, principal.role, "
    "agent, time, day, calls(GLOB[, WINDOW]), labels, tags"
)

PHASES = ("explore", "decide", "commit")
EFFECTS = ("read", "reversible", "irreversible")
DAYS: dict[str, int] = {}
for _index, _names in enumerate(
    (
        ("mon", "monday"),
        ("tue", "tues", "tuesday"),
        ("wed", "weds", "wednesday"),
        ("thu", "thur", "thurs", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
        ("sun", "sunday"),
    )
):
    for _name in _names:
        DAYS[_name] = _index
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Which operators each kind of field takes. Anything else is an error, never a silent no-op.
NUMERIC_OPS = frozenset({"above", "below", "at_least", "at_most"})
OPERATORS: dict[str, frozenset[str]] = {
    ENUM: frozenset({"is", "in", "matches", "exists"}),
    DAY: frozenset({"is", "in", "exists"}),
    NAME: frozenset({"is", "in", "matches", "contains", "exists"}),
    ROLES: frozenset({"is", "in", "matches", "contains", "exists"}),
    PERCENT: frozenset({"is", "in", "exists"}) | NUMERIC_OPS,
    MONEY: frozenset({"is", "in", "exists"}) | NUMERIC_OPS,
    COUNT: frozenset({"is", "in", "exists"}) | NUMERIC_OPS,
    TIME: frozenset({"is", "in", "inside", "exists"}) | NUMERIC_OPS,
    ANY: frozenset({"is", "in", "matches", "contains", "exists"}) | NUMERIC_OPS,
}

# How operators are written, for messages and traces.
OP_WORDS: dict[tuple[str, bool], str] = {
    ("is", False): "IS",
    ("is", True): "IS NOT",
    ("in", False): "IN",
    ("in", True): "NOT IN",
    ("above", False): "ABOVE",
    ("below", False): "BELOW",
    ("at_least", False): "AT LEAST",
    ("at_most", False): "AT MOST",
    ("matches", False): "MATCHES",
    ("contains", False): "CONTAINS",
    ("exists", False): "EXISTS",
    ("exists", True): "NOT EXISTS",
    ("inside", False): "INSIDE",
    ("inside", True): "OUTSIDE",
}

_GLOB_CHARS = frozenset("*?[")


def is_glob(target: str) -> bool:
    return any(ch in _GLOB_CHARS for ch in target)


@contextmanager
def collection_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector while a large file is parsed.

    Parsing and compiling allocate many small objects that all stay alive; CPython's collector keeps
    re-scanning them, which made a 10,000-rule policy take seconds longer to load. Nothing here relies
    on collecting cycles meanwhile, so pausing is safe; the collector is restored even on error.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
