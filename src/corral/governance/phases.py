"""The phase machine: explore → decide → commit. It decides *when* an effect may happen (DESIGN §3)."""

from __future__ import annotations

from corral.errors import PhaseError
from corral.governance.effects import IRREVERSIBLE, READ, REVERSIBLE

EXPLORE = "explore"
DECIDE = "decide"
COMMIT = "commit"
PHASES = (EXPLORE, DECIDE, COMMIT)

TRANSITIONS = frozenset(
    {
        (EXPLORE, DECIDE),
        (DECIDE, EXPLORE),
        (DECIDE, COMMIT),
        (COMMIT, EXPLORE),
        (COMMIT, DECIDE),
    }
)

ALLOWED_EFFECTS = {
    EXPLORE: frozenset({READ}),
    DECIDE: frozenset({READ}),
    COMMIT: frozenset({READ, REVERSIBLE, IRREVERSIBLE}),
}


def check_transition(current: str, target: str) -> None:
    """Raise ``PhaseError`` unless ``current → target`` is in the table. Staying put is always fine."""
    if target not in PHASES:
        raise PhaseError(f"unknown phase {target!r}; expected explore, decide or commit")
    if current == target:
        return
    if (current, target) not in TRANSITIONS:
        hint = " (you decide before you commit: enter decide first)" if target == COMMIT else ""
        raise PhaseError(f"cannot go from {current} to {target}{hint}")


def phase_allows(phase: str, effect: str) -> bool:
    return effect in ALLOWED_EFFECTS[phase]
