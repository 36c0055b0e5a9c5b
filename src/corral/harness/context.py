"""The run a tool is called in: ``current()`` gives a tool its session, workspace and harness.

The agent loop (and the MCP proxy, for its phase tools) sets ``CURRENT`` around each run; tools read it.
Nothing here imports the harness that fills it in, so any tool module may import this one.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import PhaseError


@dataclass
class RunContext:
    """What tools need to know about the run they are called in (the session, its workspace).

    ``harness`` is the ``corral.harness.runtime.Harness`` running it (None where a phase tool runs
    without one, in the MCP proxy).
    """

    harness: Any
    session: Any
    workspace: Path
    state: dict[str, Any] = field(default_factory=dict)
    _sandbox: Any = None

    @property
    def sandbox(self) -> Any:
        if self._sandbox is None:
            from corral.harness.sandbox import Sandbox, isolation_for  # only the tools that run commands

            self._sandbox = Sandbox(self.workspace, isolation=isolation_for(getattr(self.harness, "config", None)))
        return self._sandbox


CURRENT: contextvars.ContextVar[RunContext] = contextvars.ContextVar("corral_run")


def current() -> RunContext:
    try:
        return CURRENT.get()
    except LookupError:
        raise PhaseError("this tool runs only inside an agent run") from None
