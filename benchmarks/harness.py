"""The harness's own cost: a turn of the agent loop on the scripted model, with and without a tool call.

The first row is a whole run that answers at once (session start, one model call, the answer stored);
the second is one loop turn — context, budget reservation, the scripted model, one governed tool call,
its transcript entry — averaged over a run of ``TURNS`` such turns in a fresh session (in-memory store,
so the loop, not a disk, is what is measured), compared with the bare governed call.
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any

from benchmarks.registry import Run, Versus, case
from benchmarks.timing import sample

HARNESS = "harness (scripted model, in-memory store)"
TURNS = 20

_TOOLS = '''
def lookup(order_id: str) -> dict:
    """Look an order up."""
    return {"order_id": order_id, "total": 120}
'''


def _harness(run: Run, with_tool: bool) -> tuple[Any, Any]:
    def build() -> tuple[Any, Any]:
        from corral.harness.config import load_agent
        from corral.harness.models.scripted import ScriptedModel
        from corral.harness.runtime import Harness

        folder = Path(tempfile.mkdtemp(prefix="corral-bench-"))
        (folder / "bench_tools.py").write_text(_TOOLS)
        (folder / "script.yaml").write_text("[]\n")
        (folder / "agent.yaml").write_text(textwrap.dedent("""\
            name: bench
            model: {provider: scripted, script: script.yaml, max_tokens: 64}
            tools:
              - {python: "bench_tools:lookup", effect: read}
            memory: {window: 200}
            limits: {max_iterations: 1000, timeout_seconds: 600}
            governance: {budget: {session: 1000}}
            store: "memory://"
            """))
        turn: dict[str, Any] = {"text": "checking"}
        if with_tool:
            turn["tool_calls"] = [{"name": "lookup", "args": {"order_id": "A1"}}]
        model = ScriptedModel([turn] * TURNS + [{"text": "done"}])
        return Harness(load_agent(folder / "agent.yaml"), principal="bench", model=model), folder

    return run.shared(f"harness-{with_tool}", build)


def _turns(run: Run, with_tool: bool) -> list[float]:
    from corral.harness.loop import run as run_agent

    harness, folder = _harness(run, with_tool)

    def one_run() -> None:
        result = run_agent(harness, "go")
        if result.stop_reason != "end_turn":
            run.problem(f"the benchmark run stopped with {result.stop_reason}: {result.answer}")

    import os

    here = os.getcwd()
    os.chdir(folder)  # workspaces go to the scratch folder
    try:
        count = max(3, run.mode.iterations // 200)
        return sample(one_run, count, per=TURNS + 1 if with_tool else 1, warmup=1)
    finally:
        os.chdir(here)


@case("agent run: new session, one model call, answer", section=HARNESS, group="harness")
def turn_text(run: Run) -> list[float]:
    return _turns(run, with_tool=False)


@case("harness turn with one governed tool call", section=HARNESS, group="harness",
      versus=[Versus("governed read call (3 rules)")])
def turn_tool(run: Run) -> list[float]:
    return _turns(run, with_tool=True)
