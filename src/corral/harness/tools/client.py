"""Client-side tools: declared in the agent file, decided by corral, run by whoever called the agent.

```yaml
tools:
  - client: {name: pick_file, description: "Ask the user to pick a file", effect: read,
             parameters: {type: object, properties: {prompt: {type: string}}}}
```

When the model calls one, the kernel decides it at once — tool, phase, budget, rules, approval — and
records the decision durably, with its reservation: the split call (``begin_call``), decide now and
finish later. A refusal goes back to the model as any refusal does. An allowed call pauses the run with
stop reason ``awaiting_client`` (``corral run`` exits 4; ``--json`` lists ``client_calls: [{id, name,
args}]``). The caller runs the calls and resumes the session with one JSON object mapping each id to its
result (``corral run AGENT --session ID --tool-result JSON``, or ``run(..., tool_results=…)``); each
result finishes its decision (settled, outcome recorded) and goes back to the model. A result for an id
that was not asked for, or a set of results that leaves one out, is refused and changes nothing.

A client call is not a step of the commit's saga: the harness can neither defer nor compensate what the
client runs, so it is finished on its own (``effect`` is ``read`` or ``irreversible``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from corral.errors import GovernanceError, PhaseError

AWAITING = "awaiting_client"


class ClientResultError(ValueError):
    """Results that do not answer exactly the calls the session waits for; nothing was changed."""


def register_client_tool(harness: Any, entry: Any) -> None:
    spec = entry.client

    def runs_on_the_client(**args: Any) -> Any:
        raise PhaseError(f"{spec.name} runs on the client: the harness pauses for its result")

    runs_on_the_client.__name__ = spec.name
    harness.client_tools[spec.name] = spec
    harness.expose(spec.name, runs_on_the_client, spec.effect, description=spec.description or spec.name,
                   parameters=dict(spec.parameters), cost=spec.cost)


def begin(harness: Any, session: Any, call: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Decide a client call now. Returns what the session waits for (``{id, name, args, call_id, …}``);
    raises what ``begin_call`` raises — a refusal the loop hands to the model, ``ApprovalPending``."""
    from corral.governance.calls import begin_call

    handle = begin_call(session, call.name, args, durable=True)  # never a saga step: see the module doc
    harness.client_handles[handle.call_id] = handle
    return {"id": call.id, "name": call.name, "args": args, "call_id": handle.call_id,
            "estimate": str(handle.estimate), "reservation": handle.reservation}


def check_results(waiting: list[dict[str, Any]], results: Any) -> None:
    """``ClientResultError`` unless ``results`` maps exactly the awaited ids to results."""
    if not isinstance(results, dict):
        raise ClientResultError(f"tool results are one JSON object mapping each call id to its result, got "
                                f"{type(results).__name__}")
    asked = [w["id"] for w in waiting]
    if not asked:
        raise ClientResultError("this session waits for no client call")
    unknown = [k for k in results if k not in asked]
    if unknown:
        raise ClientResultError(f"refused: no client call {', '.join(map(repr, unknown))} was asked for; the "
                                f"session waits for {', '.join(asked)}")
    missing = [a for a in asked if a not in results]
    if missing:
        raise ClientResultError(f"refused: no result for {', '.join(missing)}; give every awaited call's result "
                                "in one object")


def finish(harness: Any, session: Any, waiting: dict[str, Any], result: Any) -> Any:
    """Finish the decision a client call was given, with the client's result (``{"error": …}`` is a
    failure). Returns the trace with its outcome."""
    error = result.get("error") if isinstance(result, dict) and set(result) == {"error"} else None
    handle = harness.client_handles.pop(waiting["call_id"], None)
    if handle is not None:
        return handle.finish(result=None if error else result, error=str(error) if error else None)
    return _finish_elsewhere(harness, session, waiting, result, error)


def _finish_elsewhere(harness: Any, session: Any, waiting: dict[str, Any], result: Any, error: Any) -> Any:
    """The decision was made by another process (``corral run`` exited 4 and was called again): finish it
    from the record stored with the session. Uses the kernel's public pipeline stages; it becomes a
    one-line call once call handles can be reopened from the store."""
    from corral.governance.decision import Decision
    from corral.governance.pipeline import PendingCall
    from corral.governance.pipeline import finish as finish_stage
    from corral.governance.traces import Trace

    record = next((r for r in harness.governor.store.records(session.id) if r.get("id") == waiting["call_id"]),
                  None)
    if record is None:
        raise GovernanceError(f"the decision {waiting['call_id']} for client call {waiting['id']} is not in the "
                              "session's chain")
    spec = harness.governor.tools[waiting["name"]]
    decision = Decision(record["decision"], record.get("reason") or "", list(record.get("checks") or []),
                        record.get("effect"))
    pc = PendingCall(session, spec, waiting["name"], dict(waiting["args"]), dict(waiting["args"]), decision,
                     record, Decimal(waiting.get("estimate") or "0"), reservation=waiting.get("reservation"),
                     recorded=True)
    out = finish_stage(pc, result=None if error else result, error=str(error) if error else None)
    return Trace({**record, "outcome": out})
