"""Plans: what the agent proposed in decide, bound to the commit that carries it out (DESIGN §3)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.canonical import canonical_sha256
from corral.errors import ConfigError
from corral.ids import new_id
from corral.struct import field, struct

WILDCARD = "*"

#: Applies a tool's signature defaults to arguments (``ToolSpec.bind``); raises ``TypeError`` if they do not fit.
Binder = Callable[[Mapping[str, Any]], dict[str, Any]]


def _matches(pattern: Any, value: Any) -> bool:
    if pattern == WILDCARD:
        return True
    if isinstance(pattern, Mapping) and isinstance(value, Mapping):
        return set(pattern) == set(value) and all(_matches(pattern[k], value[k]) for k in pattern)
    if isinstance(pattern, list | tuple) and isinstance(value, list | tuple):
        return len(pattern) == len(value) and all(_matches(p, v) for p, v in zip(pattern, value, strict=True))
    if isinstance(pattern, bool) or isinstance(value, bool):
        return pattern is value
    return pattern == value


@struct(frozen=True, slots=True)
class PlanStep:
    tool: str
    args: Mapping[str, Any]

    def matches(self, tool: str, args: Mapping[str, Any], bind: Binder | None = None) -> bool:
        """Same tool and the same arguments, ``"*"`` matching any value.

        Both sides are compared as the tool receives them: ``args`` with the signature's defaults applied,
        and the step with ``bind`` applying the same defaults to what it leaves out. So a step that names
        an argument at its default matches, and one that leaves an argument out means its default, never
        "any value": only ``"*"`` means that.
        """
        if tool != self.tool:
            return False
        pattern = self.args
        if bind is not None:
            try:
                pattern = bind(self.args)
            except TypeError:
                return False  # the step names arguments the tool does not take: it matches no call
        if set(pattern) != set(args):
            return False
        return all(_matches(p, args[key]) for key, p in pattern.items())

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "args": dict(self.args)}


@struct(slots=True)
class Plan:
    """A proposed plan. ``sha256`` is over the canonical JSON of its steps; ``used`` marks consumed steps."""

    id: str
    steps: tuple[PlanStep, ...]
    sha256: str
    rationale: str = ""
    approved_by: str | None = None
    used: list[bool] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def from_steps(cls, steps: Any, rationale: str = "", plan_id: str | None = None) -> Plan:
        if not isinstance(steps, Sequence) or isinstance(steps, str | bytes):
            raise ConfigError("a plan is a list of steps like {'tool': name, 'args': {...}}")
        parsed = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping) or not isinstance(step.get("tool"), str) or not step["tool"]:
                raise ConfigError(f"plan step {i}: expected {{'tool': name, 'args': {{...}}}}, got {step!r}")
            args = step.get("args", {}) or {}
            if not isinstance(args, Mapping):
                raise ConfigError(f"plan step {i}: args must be a mapping, got {args!r}")
            extra = set(step) - {"tool", "args"}
            if extra:
                raise ConfigError(f"plan step {i}: unknown key(s) {', '.join(sorted(extra))}")
            parsed.append(PlanStep(step["tool"], dict(args)))
        digest = canonical_sha256([s.to_dict() for s in parsed])
        return cls(plan_id or new_id(), tuple(parsed), digest, rationale, used=[False] * len(parsed))

    def find_step(self, tool: str, args: Mapping[str, Any], bind: Binder | None = None) -> int | None:
        """Index of the first unused step that matches, or None (``PlanStep.matches``)."""
        for i, step in enumerate(self.steps):
            if not self.used[i] and step.matches(tool, args, bind):
                return i
        return None

    def consume(self, tool: str, args: Mapping[str, Any], bind: Binder | None = None) -> int | None:
        """Atomically find and mark a matching step; each step is consumed by the one call that matches it."""
        with self._lock:
            index = self.find_step(tool, args, bind)
            if index is not None:
                self.used[index] = True
            return index

    def hold_step(self, index: int) -> None:
        """Mark a step used again (a deferred call that paused keeps the step it held)."""
        with self._lock:
            self.used[index] = True

    def release_step(self, index: int) -> None:
        """Give a step back: its call was refused or paused before it ran."""
        with self._lock:
            self.used[index] = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "steps": [s.to_dict() for s in self.steps],
            "rationale": self.rationale,
            "approved_by": self.approved_by,
            "used": list(self.used),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        plan = cls.from_steps(data["steps"], data.get("rationale", ""), data["id"])
        plan.approved_by = data.get("approved_by")
        plan.used = list(data.get("used") or [False] * len(plan.steps))
        return plan
