"""Shape's phases and effects: ``Phase``, ``ToolEffect`` and the ``PhaseManager`` state machine.

The table of transitions and of effects each phase allows is corral's (``corral.governance.phases``),
which is Shape's: explore → decide → commit, back from decide or commit, never explore → commit.

    pm = PhaseManager()
    pm.transition(Phase.DECIDE)
    pm.allows_effect(ToolEffect.REVERSIBLE)     # False: decide is read-only

``agent.phase`` is an ``AgentPhase``: the same interface, reading and moving the agent's corral session.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from corral.compat.shape.errors import PhaseError
from corral.errors import PhaseError as KernelPhaseError
from corral.governance.phases import check_transition, phase_allows


class Phase(Enum):
    EXPLORE = "explore"
    DECIDE = "decide"
    COMMIT = "commit"


class ToolEffect(Enum):
    READ = "read"
    REVERSIBLE = "reversible"
    IRREVERSIBLE = "irreversible"


def as_phase(target: Any) -> Phase:
    """A ``Phase`` from a ``Phase`` or its name; anything else is a ``PhaseError`` naming the choices."""
    if isinstance(target, Phase):
        return target
    if isinstance(target, str):
        try:
            return Phase(target.strip().lower())
        except ValueError:
            pass
    raise PhaseError(f"unknown phase {target!r}; expected Phase.EXPLORE, Phase.DECIDE or Phase.COMMIT")


def as_effect(effect: Any) -> ToolEffect:
    """A ``ToolEffect`` from a ``ToolEffect`` or its name (``"read"``); anything else is a ``ValueError``."""
    if isinstance(effect, ToolEffect):
        return effect
    if isinstance(effect, str):
        try:
            return ToolEffect(effect.strip().lower())
        except ValueError:
            pass
    raise ValueError(f"unknown effect {effect!r}; expected ToolEffect.READ, REVERSIBLE or IRREVERSIBLE")


class PhaseManager:
    """Shape's phase state machine, on its own: ``current``, ``transition(target)``, ``allows_effect(e)``.

    ``current`` is read-only: a phase changes only through ``transition``, which checks the table.
    """

    def __init__(self) -> None:
        self._current = Phase.EXPLORE

    @property
    def current(self) -> Phase:
        return self._current

    def transition(self, target: Phase | str) -> None:
        """Move to ``target``; staying put is always allowed. Raises ``PhaseError`` (explore → commit)."""
        phase = as_phase(target)
        try:
            check_transition(self.current.value, phase.value)
        except KernelPhaseError as exc:
            raise PhaseError(str(exc)) from None
        self._current = phase

    def allows_effect(self, effect: ToolEffect | str) -> bool:
        return phase_allows(self.current.value, as_effect(effect).value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.current.value}>"


class AgentPhase(PhaseManager):
    """``agent.phase``: the agent's corral session, in Shape's terms.

    ``transition(Phase.COMMIT)`` opens a transaction that the next phase change commits (or that
    ``with agent.commit() as tx:`` takes over), so a write made after it is a step that can be undone.
    """

    def __init__(self, session: Any, enter_commit: Callable[[], None], move: Callable[[Phase], None]) -> None:
        super().__init__()
        self._session = session
        self._enter_commit = enter_commit
        self._move = move

    @property
    def current(self) -> Phase:
        return Phase(self._session.phase)

    def transition(self, target: Phase | str) -> None:
        phase = as_phase(target)
        if phase is Phase.COMMIT:
            self._enter_commit()
        else:
            self._move(phase)


__all__ = ["AgentPhase", "Phase", "PhaseManager", "ToolEffect", "as_effect", "as_phase"]
