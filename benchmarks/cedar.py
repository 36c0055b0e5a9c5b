"""The Cedar baseline: the benchmark's corral rules translated into Cedar policies, run with ``cedarpy``.

The translation keeps corral's meaning, not just its shape:

- ``BLOCK`` becomes ``forbid``; ``ALLOW``, ``FLAG`` and ``REQUIRE APPROVAL`` become ``permit`` with the
  same conditions, and an ``@id`` that says which kind it is (``allow-3``, ``flag-7``, ``approve-9``), so
  Cedar's diagnostics (the permits that held) tell a flagged or approval-needing call from a plain one.
- corral's ``DEFAULT ALLOW`` is one unconditional ``permit``; Cedar denies by default.
- corral's built-in phase check (a non-read call outside commit is refused) is one ``forbid``.
- A tool name is an action (``Action::"tool_17"``); ``*`` leaves the action open; a glob becomes
  ``context.tool like "tool_1*"``. Roles are entity parents (``principal in Role::"analyst"``).
- corral's three-valued logic is kept exactly for missing arguments: every condition is translated twice,
  as "definitely true" and "definitely false" (a missing ``arg.x`` is neither). A ``BLOCK`` or ``REQUIRE
  APPROVAL`` rule applies unless its condition is definitely false (fail closed), an ``ALLOW`` or ``FLAG``
  only if it is definitely true — which is what corral does with an indeterminate condition.

Not translated: time/day/``calls()`` conditions and ``DEFAULT BLOCK`` (the benchmark uses neither), and
``translate`` raises ``NotImplementedError`` rather than guess. Two differences remain that the
benchmark's requests stay clear of: an argument of the wrong type (Cedar skips a policy whose evaluation
errors; corral treats the condition as indeterminate), and letter case in ``MATCHES`` (corral's argument
globs ignore case; Cedar's ``like`` has no case-insensitive form).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.policies import All, Cond, Leaf, Not, Percent, Rule

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CMP = {"ABOVE": ">", "BELOW": "<", "AT LEAST": ">=", "AT MOST": "<="}
_DECIMAL_CMP = {
    "ABOVE": "greaterThan",
    "BELOW": "lessThan",
    "AT LEAST": "greaterThanOrEqual",
    "AT MOST": "lessThanOrEqual",
}
_CONTEXT_FIELDS = {
    "phase": "context.phase",
    "effect": "context.effect",
    "tool": "context.tool",
    "agent": "context.agent",
}
_KIND = {"BLOCK": "block", "ALLOW": "allow", "FLAG": "flag", "REQUIRE APPROVAL": "approve"}


# ------------------------------------------------------------------------------------ translation


def translate(rules: Sequence[Rule]) -> str:
    """The whole Cedar policy set for ``rules`` under corral's ``DEFAULT ALLOW`` and phase check."""
    out = [
        '@id("default-allow")\npermit (principal, action, resource);',
        '@id("phase")\nforbid (principal, action, resource)\n'
        'when { context.effect != "read" && context.phase != "commit" };',
    ]
    out.extend(policy(rule, i) for i, rule in enumerate(rules))
    return "\n".join(out) + "\n"


def policy(rule: Rule, index: int) -> str:
    """One corral rule as one Cedar policy."""
    effect = "forbid" if rule.action == "BLOCK" else "permit"
    pid = f"{_KIND[rule.action]}-{index}"
    if rule.target == "*":
        action, guards = "action", []
    elif "*" in rule.target:
        action, guards = "action", [f"context.tool like {_like(rule.target)}"]
    else:
        action, guards = f"action == Action::{json.dumps(rule.target)}", []

    parts: list[Cond] = []
    if rule.when is not None:
        parts.append(rule.when)
    if rule.unless is not None:
        parts.append(Not(rule.unless))
    if parts:
        cond = parts[0] if len(parts) == 1 else All(tuple(parts))
        # fail closed: BLOCK / REQUIRE APPROVAL apply unless definitely false; ALLOW / FLAG only if true
        guards.append(_neg(_false(cond)) if rule.action in ("BLOCK", "REQUIRE APPROVAL") else _true(cond))
    text = f'@id("{pid}")\n{effect} (principal, {action}, resource)'
    if guards:
        text += "\nwhen { " + " && ".join(guards) + " }"
    return text + ";"


def _true(cond: Cond) -> str:
    if isinstance(cond, Leaf):
        return _leaf(cond, positive=True)
    if isinstance(cond, Not):
        return _false(cond.part)
    joiner = " && " if isinstance(cond, All) else " || "
    return "(" + joiner.join(_true(p) for p in cond.parts) + ")"


def _false(cond: Cond) -> str:
    if isinstance(cond, Leaf):
        return _leaf(cond, positive=False)
    if isinstance(cond, Not):
        return _true(cond.part)
    joiner = " || " if isinstance(cond, All) else " && "
    return "(" + joiner.join(_false(p) for p in cond.parts) + ")"


def _leaf(leaf: Leaf, *, positive: bool) -> str:
    """``leaf`` is definitely true (``positive``) or definitely false, in Cedar."""
    if leaf.op in ("IS NOT", "NOT IN"):  # a negated comparison: indeterminate stays indeterminate
        base = "IS" if leaf.op == "IS NOT" else "IN"
        return _leaf(Leaf(leaf.field, base, leaf.value), positive=not positive)
    present, value = _field(leaf.field)
    if leaf.op == "EXISTS":
        if present is None:
            return "true" if positive else "false"
        return present if positive else _neg(present)
    test = _test(leaf, value)
    test = test if positive else _neg(test)
    return test if present is None else f"({present} && {test})"


def _neg(expr: str) -> str:
    """``!(expr)``, dropping a double negation so the policies stay readable."""
    if expr.startswith("!(") and expr.endswith(")"):
        depth = 0
        for i, ch in enumerate(expr[1:], start=1):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                if i == len(expr) - 1:  # the outer parentheses enclose everything
                    return expr[2:-1]
                break
    return f"!({expr})"


def _field(name: str) -> tuple[str | None, str]:
    """(the presence guard or None, the Cedar expression) for a corral field."""
    if name in _CONTEXT_FIELDS:
        return None, _CONTEXT_FIELDS[name]
    if name == "budget":
        return None, "context.budget_pct"
    if name in ("principal", "principal.role"):
        return None, name
    if name.startswith("arg."):
        path = name[4:].split(".")
        guards, expr = [], "context.args"
        for key in path:
            guards.append(f"{expr} has {key}" if _IDENT.match(key) else f"{expr} has {json.dumps(key)}")
            expr = f"{expr}.{key}" if _IDENT.match(key) else f"{expr}[{json.dumps(key)}]"
        return " && ".join(guards), expr
    raise NotImplementedError(f"no Cedar translation for field {name!r}")


def _test(leaf: Leaf, expr: str) -> str:
    op, value = leaf.op, leaf.value
    if leaf.field == "principal.role":
        roles = value if op == "IN" else (value,)
        if op not in ("IS", "IN"):
            raise NotImplementedError(f"principal.role {op}")
        uids = [f"Role::{json.dumps(str(r))}" for r in roles]  # type: ignore[union-attr]
        return f"principal in {uids[0]}" if len(uids) == 1 else f"principal in [{', '.join(uids)}]"
    if leaf.field == "principal":
        names = value if op == "IN" else (value,)
        return " || ".join(f"principal == User::{json.dumps(str(n))}" for n in names)  # type: ignore[union-attr]
    if leaf.field == "budget":
        if op not in _DECIMAL_CMP:
            raise NotImplementedError(f"budget {op}")
        pct = value.value if isinstance(value, Percent) else float(value)  # type: ignore[arg-type]
        return f'{expr}.{_DECIMAL_CMP[op]}(decimal("{pct:.4f}"))'
    if op == "IS":
        return f"{expr} == {_literal(value)}"
    if op == "IN":
        return f"[{', '.join(_literal(v) for v in value)}].contains({expr})"  # type: ignore[union-attr]
    if op in _CMP:
        return f"{expr} {_CMP[op]} {_literal(value)}"
    if op == "MATCHES":
        return f"{expr} like {_like(str(value))}"
    if op == "CONTAINS":
        return f"{expr} like {_like('*' + str(value).replace('*', '') + '*')}"
    raise NotImplementedError(f"no Cedar translation for operator {op!r}")


def _literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise NotImplementedError(f"no Cedar literal for {value!r}")


def _like(glob: str) -> str:
    """A corral glob as a Cedar ``like`` pattern (only ``*`` is a wildcard in both)."""
    if any(c in glob for c in "?["):
        raise NotImplementedError(f"glob {glob!r}: Cedar's like has only *")
    return '"' + glob.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """One governed call, as both corral and Cedar see it."""

    tool: str
    args: dict[str, Any]
    principal: str = "alice"
    roles: tuple[str, ...] = ("analyst",)
    phase: str = "explore"
    effect: str = "read"
    budget_pct: float = 0.0
    agent: str = "bench"

    def cedar(self) -> dict[str, Any]:
        """The request in cedarpy's form, its context already JSON (so timing is Cedar's, not ``json``'s)."""
        context = {
            "tool": self.tool,
            "phase": self.phase,
            "effect": self.effect,
            "agent": self.agent,
            "args": self.args,
            "budget_pct": {"__extn": {"fn": "decimal", "arg": f"{self.budget_pct:.4f}"}},
        }
        return {
            "principal": f"User::{json.dumps(self.principal)}",
            "action": f"Action::{json.dumps(self.tool)}",
            "resource": f"Agent::{json.dumps(self.agent)}",
            "context": json.dumps(context),
        }


def entities(requests: Iterable[Request]) -> list[dict[str, Any]]:
    """Users with their roles as parents, and the roles themselves."""
    users: dict[str, set[str]] = {}
    for req in requests:
        users.setdefault(req.principal, set()).update(req.roles)
    roles = sorted({r for rs in users.values() for r in rs})
    out = [
        {
            "uid": {"type": "User", "id": name},
            "attrs": {},
            "parents": [{"type": "Role", "id": r} for r in sorted(rs)],
        }
        for name, rs in sorted(users.items())
    ]
    out.extend({"uid": {"type": "Role", "id": r}, "attrs": {}, "parents": []} for r in roles)
    return out


# ---------------------------------------------------------------------------------- the authorizer


@dataclass
class CedarPolicies:
    """A translated policy set, parsed once, with the entities for the benchmark's principals."""

    rules: Sequence[Rule]
    requests: Sequence[Request]
    text: str = field(init=False)
    parse_ms: float = field(init=False)

    def __post_init__(self) -> None:
        import cedarpy

        self._cedarpy = cedarpy
        self.text = translate(self.rules)
        t0 = time.perf_counter_ns()
        self.policy_set = cedarpy.PolicySet.from_str(self.text)
        self.parse_ms = (time.perf_counter_ns() - t0) / 1e6
        self.entities = cedarpy.Entities.from_json_str(json.dumps(entities(self.requests)))

    def authorize(self, requests: Sequence[dict[str, Any]]) -> list[Any]:
        """``cedarpy.is_authorized_batch`` over already-built requests (see ``Request.cedar``)."""
        return self._cedarpy.is_authorized_batch(list(requests), self.policy_set, self.entities)

    def decisions(self, requests: Sequence[Request]) -> list[str]:
        """Cedar's answers in corral's words: blocked, approval_required, flagged or allowed."""
        return [corral_decision(r) for r in self.authorize([q.cedar() for q in requests])]


def corral_decision(result: Any) -> str:
    """Deny is ``blocked``; an Allow that an ``approve-`` or ``flag-`` permit held for says so."""
    if not result.allowed:
        errors = result.diagnostics.errors
        return "blocked" + (f" (errors: {errors})" if errors else "")
    kinds = {pid.split("-")[0] for pid in result.diagnostics.id_annotations_by_reason.values()}
    if "approve" in kinds:
        return "approval_required"
    if "flag" in kinds:
        return "flagged"
    return "allowed"
