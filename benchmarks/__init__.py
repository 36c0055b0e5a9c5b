"""corral's benchmarks: one command, one table, baselines side by side.

``python -m benchmarks`` runs every registered case (``benchmarks.cases``) and prints p50/p99 per
operation next to its baseline — the raw function call, the same rules in Cedar — with the targets
the kernel is held to. ``--quick`` is the CI smoke run. New rows (stores, the MCP proxy, hooks) are
one ``@case`` each; see ``benchmarks.registry``.
"""

from __future__ import annotations

from benchmarks import cases as _cases  # noqa: F401  (registers the rows)
from benchmarks import console as _console  # noqa: F401
from benchmarks import durable as _durable  # noqa: F401
from benchmarks import enforcement as _enforcement  # noqa: F401
from benchmarks import harness as _harness  # noqa: F401
from benchmarks import parity as _parity  # noqa: F401
from benchmarks import policy as _policy  # noqa: F401
from benchmarks import report
from benchmarks import server as _server  # noqa: F401
from benchmarks.registry import MODES, REGISTRY, Case, Mode, Report, Row, Run, Skip, Target, Versus, case, run

__all__ = [
    "MODES",
    "REGISTRY",
    "Case",
    "Mode",
    "Report",
    "Row",
    "Run",
    "Skip",
    "Target",
    "Versus",
    "case",
    "report",
    "run",
]
