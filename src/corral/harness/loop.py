"""The agent loop, top to bottom.

    context → reserve budget for the model call → model → settle → each tool call through the kernel
    → the result, or a structured refusal with a hint → repeat

until the model answers (``end_turn``), a limit is hit (``max_iterations``, ``timeout``), the budget's
stop gate ends it (``budget_stop``), a call waits for a human (``awaiting_approval``), or the harness
itself fails (``error``). The model never runs anything itself: every tool call — the phase tools
included — is a governed call, and a tool result cannot change a phase.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from corral.errors import (
    ApprovalPending,
    Blocked,
    GovernanceError,
    GovernanceFault,
    TransactionFailed,
)
from corral.governance import refusals
from corral.governance.budget import DEGRADE, FORCE_DECIDE, STOP
from corral.harness.context import CURRENT, RunContext
from corral.harness.models.base import MODEL_CALL, Message, ToolCall, ToolSchema, estimate_tokens
from corral.harness.phase_tools import AbortCommit
from corral.harness.runtime import HARNESS_KEY, Harness
from corral.harness.telemetry import record_decision, record_usage
from corral.harness.tools import client
from corral.harness.tools.schema import argument_problems
from corral.harness.truncation import context_window, summarizer

END_TURN = "end_turn"
MAX_ITERATIONS = "max_iterations"
TIMEOUT = "timeout"
BUDGET_STOP = "budget_stop"
AWAITING_APPROVAL = "awaiting_approval"
AWAITING_CLIENT = "awaiting_client"
ERROR = "error"
EXIT_CODES = {END_TURN: 0, AWAITING_APPROVAL: 3, AWAITING_CLIENT: 4, ERROR: 1}
_AWAIT = object()  # a client call decided and handed to the caller: its result comes with the resume

Events = Callable[[str, dict[str, Any]], None]


@dataclass
class RunResult:
    session: str
    stop_reason: str
    answer: str
    budget: dict[str, Any]
    pending_approval: str | None = None
    client_calls: list[dict[str, Any]] = field(default_factory=list)  # what the caller must run
    _load_traces: Callable[[], list[dict[str, Any]]] | None = field(default=None, repr=False)
    _traces: list[dict[str, Any]] | None = field(default=None, repr=False)

    @property
    def traces(self) -> list[dict[str, Any]]:
        """The session's whole chain, as dicts — read from the store when first asked for."""
        if self._traces is None:
            self._traces = self._load_traces() if self._load_traces is not None else []
        return self._traces

    def to_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "stop_reason": self.stop_reason,
            "answer": self.answer,
            "budget": self.budget,
            **({"client_calls": self.client_calls} if self.stop_reason == AWAITING_CLIENT else {}),
            "traces": self.traces,
        }

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.stop_reason, 2)


class _Stop(Exception):
    def __init__(self, reason: str, answer: str = "", approval: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.answer = answer
        self.approval = approval


# ------------------------------------------------------------------------------------------- state


def _load_state(harness: Harness, session: Any) -> dict[str, Any]:
    record = harness.governor.store.get_session(session.id) or {}
    state = dict(record.get(HARNESS_KEY) or {})
    state.setdefault("transcript", [])
    state.setdefault("paused", [])
    state.setdefault("model_calls", 0)
    state.setdefault("answer", "")
    state.setdefault("stop_reason", None)
    return state


def _save_state(harness: Harness, session: Any, state: dict[str, Any]) -> None:
    store = harness.governor.store
    record = store.get_session(session.id) or {}
    record[HARNESS_KEY] = state
    store.put_session(record)


# --------------------------------------------------------------------------------------------- run


def run(
    harness: Harness,
    prompt: str | None = None,
    *,
    session_id: str | None = None,
    events: Events | None = None,
    tool_results: dict[str, Any] | None = None,
) -> RunResult:
    """Run the agent until it stops; ``session_id`` resumes a stored session (paused calls first).

    ``tool_results`` answers the client calls a session paused on (``awaiting_client``): one result per
    awaited id, or ``ClientResultError`` and nothing changes."""
    emit = events or (lambda kind, data: None)
    gov = harness.governor
    if session_id is not None:
        session = gov.session(id=session_id)
    else:
        session = gov.session(principal=harness.principal, roles=harness.roles)
    state = _load_state(harness, session)
    waiting = list(state.get("awaiting_client") or [])
    if tool_results is not None:
        client.check_results(waiting, tool_results)
    workspace = harness.workspace_for(session.id)
    state["workspace"] = str(workspace)
    ctx = RunContext(harness, session, workspace, state)
    token = CURRENT.set(ctx)
    emit("session", {"session": session.id, "resumed": session_id is not None, "phase": session.phase})
    try:
        if session_id is not None and not prompt and not state["paused"] and state["stop_reason"] == END_TURN:
            return _result(harness, session, state, END_TURN, state["answer"])  # finished: answer again
        if waiting and tool_results is None:  # still waiting for the client: nothing runs without its results
            return _result(harness, session, state, AWAITING_CLIENT, state["answer"])
        transcript = [Message.from_dict(m) for m in state["transcript"]]
        with harness.telemetry.invoke_agent(session.id, session.principal) as span:
            try:
                if waiting:
                    _finish_client_calls(harness, ctx, transcript, waiting, tool_results or {}, emit)
                if state["paused"]:
                    _resume_paused(harness, ctx, transcript, emit)
                if prompt:
                    transcript.append(Message(role="user", content=prompt))
                answer = _loop(harness, ctx, transcript, emit)
                stop_reason = END_TURN
                approval = None
            except _Stop as stop:
                stop_reason, answer, approval = stop.reason, stop.answer, stop.approval
            except Exception as exc:  # a fault in the harness itself: end cleanly, keep everything
                stop_reason, answer, approval = ERROR, f"harness error: {type(exc).__name__}: {exc}", None
                span.record_exception(exc)
                emit("error", {"error": answer})
                _rollback_open_commit(session, f"the run failed: {exc}")
            span.set_attribute("corral.stop_reason", stop_reason)
        if stop_reason in (BUDGET_STOP, ERROR, TIMEOUT, MAX_ITERATIONS):
            _rollback_open_commit(session, f"the run stopped: {stop_reason}")
        state["transcript"] = [m.to_dict() for m in transcript]
        state["answer"] = answer
        state["stop_reason"] = stop_reason
        _save_state(harness, session, state)
        result = _result(harness, session, state, stop_reason, answer)
        result.pending_approval = approval
        emit("stop", {"stop_reason": stop_reason, "answer": answer, "budget": result.budget})
        return result
    finally:
        harness.end_session(session.id)
        CURRENT.reset(token)


def _result(harness: Harness, session: Any, state: dict[str, Any], reason: str, answer: str) -> RunResult:
    calls = [{"id": w["id"], "name": w["name"], "args": w["args"]} for w in state.get("awaiting_client") or ()]
    return RunResult(session.id, reason, answer, session.budget.to_dict(), client_calls=calls,
                     _load_traces=lambda: [t.to_dict() for t in session.traces])


def _finish_client_calls(harness: Harness, ctx: RunContext, transcript: list[Message], waiting: list[dict[str, Any]],
                         results: dict[str, Any], emit: Events) -> None:
    """The client ran the calls it was given: finish each decision with its result, and show the model."""
    ctx.state["awaiting_client"] = []
    for item in waiting:
        result = results[item["id"]]
        trace = client.finish(harness, ctx.session, item, result)
        transcript.append(Message(role="tool", content=_to_text(result), tool_call_id=item["id"], name=item["name"]))
        emit("call", {"tool": item["name"], "args": item["args"], "result": result, "decision": trace.decision,
                      "reason": "run by the client", "phase": ctx.session.phase,
                      "budget": ctx.session.budget.to_dict()})


def _rollback_open_commit(session: Any, why: str) -> None:
    """A run that ends early must not leave half a transaction behind (unless it waits for approval)."""
    if session.open_transaction is None:
        return
    # rolled back (or needs attention): the traces and the transaction log say which
    with contextlib.suppress(TransactionFailed):
        session.end_commit(AbortCommit(why))


# ------------------------------------------------------------------------------------------ the loop


def _loop(harness: Harness, ctx: RunContext, transcript: list[Message], emit: Events) -> str:
    config = harness.config
    started = time.monotonic()
    iterations = 0
    while True:
        if iterations >= config.limits.max_iterations:
            raise _Stop(MAX_ITERATIONS, f"stopped after {iterations} model calls (limits.max_iterations)")
        if time.monotonic() - started > config.limits.timeout_seconds:
            raise _Stop(TIMEOUT, f"stopped after {config.limits.timeout_seconds:g}s (limits.timeout_seconds)")
        iterations += 1

        # 1. context and the model for this turn (the degrade gate switches to the fallback)
        gate = ctx.session.budget.gate
        if gate == STOP:
            raise _Stop(BUDGET_STOP, _wrap_up(ctx, "the budget's stop gate was reached"))
        model = harness.fallback_model if gate in (DEGRADE, FORCE_DECIDE) and harness.fallback_model else harness.model
        system = _system_prompt(harness, ctx, gate)
        tools = [ToolSchema(t.name, t.description, t.parameters) for t in harness.tools.values()
                 if harness.allowed(t.name)]
        max_tokens = config.model.max_tokens if config.model is not None else 1024
        if gate in (DEGRADE, FORCE_DECIDE) and harness.fallback_model is None:
            max_tokens = max(64, max_tokens // 2)
        window = context_window(ctx.state, transcript, config.memory, summarizer(harness, ctx, model), system,
                                tools, max_tokens)

        # 2. reserve budget for the model call, call it, settle what it really used
        prompt_tokens = estimate_tokens(system, window, tools)
        price_in, price_out = harness.model_price(model)
        estimate = (Decimal(prompt_tokens) * price_in + Decimal(max_tokens) * price_out) / Decimal(1_000_000)
        label = f"model:{model.id}"
        try:
            reservation, estimate = harness.governor.reserve_spend(ctx.session, label, estimate)
        except GovernanceFault as fault:  # the ledger failed: not a budget matter
            raise _Stop(ERROR, f"stopped: {fault.reason}") from None
        except Blocked as refused:
            raise _Stop(BUDGET_STOP, _wrap_up(ctx, refused.reason)) from None
        emit("model", {"model": model.id, "estimate": float(estimate), "gate": gate})
        number = ctx.state.get("model_calls", 0)
        ctx.state["model_calls"] = number + 1
        with harness.telemetry.chat(model.provider, model.id, max_tokens) as span:
            turn = MODEL_CALL.set(number)  # the session's n-th model call, counted across resumes
            try:
                response = model.complete(system=system, messages=window, tools=tools, max_tokens=max_tokens)
            except Exception as exc:
                harness.governor.settle_spend(ctx.session, label, reservation, estimate, 0, error=exc)
                span.record_exception(exc)
                raise
            finally:
                MODEL_CALL.reset(turn)
            record_usage(span, response.usage.input_tokens, response.usage.output_tokens, response.model,
                         response.stop_reason)
        actual = (Decimal(response.usage.input_tokens) * price_in
                  + Decimal(response.usage.output_tokens) * price_out) / Decimal(1_000_000)
        harness.governor.settle_spend(
            ctx.session, label, reservation, estimate, actual,
            {"model": response.model, "input_tokens": response.usage.input_tokens,
             "output_tokens": response.usage.output_tokens},
        )
        transcript.append(Message(role="assistant", content=response.text, tool_calls=list(response.tool_calls)))
        if response.text:
            emit("text", {"text": response.text})

        # 3. no tool calls: the model has answered
        if not response.tool_calls:
            return response.text

        # 4. every tool call through the kernel; its result (or refusal) goes back to the model
        _run_tool_calls(harness, ctx, transcript, list(response.tool_calls), emit)


def _run_tool_calls(
    harness: Harness, ctx: RunContext, transcript: list[Message], calls: list[ToolCall], emit: Events
) -> None:
    for index, call in enumerate(calls):
        try:
            with harness.telemetry.execute_tool(call.name, call.id, ctx.session.phase) as span:
                result = _governed_call(harness, ctx, call, emit)
                last = ctx.session.last_trace
                if last is not None and last.tool == call.name:
                    record_decision(span, last)
        except ApprovalPending as pending:
            # pause: the call (and those after it in this turn) run when the session resumes
            ctx.state["paused"] = [_call_dict(c) for c in calls[index:]]
            approval = pending.approval_id
            emit("pending", {"tool": call.name, "approval": approval, "reason": pending.reason})
            raise _Stop(AWAITING_APPROVAL, pending.reason, approval) from None
        if result is _AWAIT:
            continue
        transcript.append(Message(role="tool", content=_to_text(result), tool_call_id=call.id, name=call.name))
        if ctx.session.budget.gate == STOP and index < len(calls) - 1:
            for rest in calls[index + 1:]:
                refusal = {"blocked": True, "reason": "the budget's stop gate was reached", "hint": "wrap up"}
                transcript.append(Message(role="tool", content=_to_text(refusal), tool_call_id=rest.id, name=rest.name))
            break
    waiting = ctx.state.get("awaiting_client")
    if waiting:
        names = ", ".join(f"{w['name']} ({w['id']})" for w in waiting)
        raise _Stop(AWAITING_CLIENT, f"waiting for the client to run {names} and return the result(s)")


def _resume_paused(harness: Harness, ctx: RunContext, transcript: list[Message], emit: Events) -> None:
    """Re-submit the calls the session paused on, without asking the model again."""
    calls = [ToolCall(c["id"], c["name"], c.get("arguments"), c.get("raw_arguments", ""), c.get("error"))
             for c in ctx.state["paused"]]
    ctx.state["paused"] = []
    emit("resume", {"calls": [c.name for c in calls]})
    _run_tool_calls(harness, ctx, transcript, calls, emit)


def _governed_call(harness: Harness, ctx: RunContext, call: ToolCall, emit: Events) -> Any:
    """One tool call: validate what the model sent, then run it through governance. Never raises,
    except ``ApprovalPending`` (the loop pauses on it)."""
    tool = harness.tools.get(call.name)
    if call.arguments is None:
        return _error(call, f"arguments are not valid JSON: {call.error or call.raw_arguments!r}", emit)
    if tool is None:
        return _error(call, f"unknown tool {call.name!r}; available: {', '.join(sorted(harness.tools))}", emit)
    if not harness.allowed(call.name):
        return _error(call, f"tool {call.name!r} is not in allowed_tools", emit)
    problems = argument_problems(call.arguments, tool.parameters)
    if problems:
        return _error(call, "arguments do not fit the tool's schema: " + "; ".join(problems), emit)
    args = dict(call.arguments)
    session = ctx.session
    phases = session.governor.phases
    if call.name in harness.client_tools:
        return _client_call(harness, ctx, call, args, emit)
    try:
        submitted = session.submit(call.name, args, defer_irreversible=harness.defer_irreversible,
                                   outside_transaction=tool.phase_tool)
        if submitted.deferred:
            result = {"deferred": True, "runs_at": "finish_commit"}
            emit("call", {"tool": call.name, "args": args, "result": result, "decision": "deferred",
                          "reason": "checked now; runs at finish_commit", "phase": session.phase,
                          "budget": session.budget.to_dict()})
            return result
        result = submitted.result
    except ApprovalPending:
        raise
    except TransactionFailed as failed:
        result = {"error": str(failed), "transaction": failed.tx.state if failed.tx else None,
                  "hint": "the transaction was rolled back; go back to decide and re-plan"}
    except GovernanceError as refused:  # Blocked, ApprovalDenied, PhaseError, ConfigError, faults
        result = refusals.payload(refused, phase=session.phase, phases=phases, tools=refusals.HARNESS)
    except Exception as exc:  # the tool's own failure is its result
        result = {"error": f"{type(exc).__name__}: {exc}"}
    trace = session.last_trace
    emit("call", {"tool": call.name, "args": args, "result": result,
                  "decision": trace.decision if trace is not None and trace.tool == call.name else None,
                  "reason": trace.reason if trace is not None and trace.tool == call.name else None,
                  "phase": session.phase, "budget": session.budget.to_dict()})
    return result


def _client_call(harness: Harness, ctx: RunContext, call: ToolCall, args: dict[str, Any], emit: Events) -> Any:
    """Decide a client call now; an allowed one waits for the caller (``_AWAIT``), a refusal is the result."""
    session = ctx.session
    try:
        waiting = client.begin(harness, session, call, args)
    except ApprovalPending:
        raise
    except GovernanceError as refused:
        result = refusals.payload(refused, phase=session.phase, phases=session.governor.phases,
                                  tools=refusals.HARNESS)
        emit("call", {"tool": call.name, "args": args, "result": result, "decision": "blocked",
                      "reason": result.get("reason"), "phase": session.phase, "budget": session.budget.to_dict()})
        return result
    ctx.state.setdefault("awaiting_client", []).append(waiting)
    decision = harness.client_handles[waiting["call_id"]].decision
    emit("call", {"tool": call.name, "args": args, "result": {"awaiting_client": True}, "decision": decision,
                  "reason": "runs on the client", "phase": session.phase, "budget": session.budget.to_dict()})
    return _AWAIT


def _error(call: ToolCall, message: str, emit: Events) -> dict[str, Any]:
    emit("call", {"tool": call.name, "args": call.arguments, "result": {"error": message}, "decision": "refused",
                  "reason": message})
    return {"error": message}


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "raw_arguments": call.raw_arguments,
            "error": call.error}


def _to_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(result)


def _system_prompt(harness: Harness, ctx: RunContext, gate: str | None) -> str:
    session = ctx.session
    lines = [harness.config.instructions.strip()]
    if harness.config.phases:
        lines.append(
            f"\nYou are in the {session.phase} phase. Phases: explore (reads only) → decide (propose_plan) → "
            "commit (begin_commit runs the plan; finish_commit commits). Writes outside commit are refused."
        )
    if harness.skills is not None:
        lines.append(harness.skills.prompt())
    if gate == DEGRADE:
        lines.append("The budget is past its degrade gate: be brief and use as few calls as possible.")
    elif gate == FORCE_DECIDE:
        lines.append("The budget is past its force_decide gate: no writes; go back to decide and re-plan.")
    return "\n".join(line for line in lines if line)


def _wrap_up(ctx: RunContext, why: str) -> str:
    """The graceful end at the stop gate: what happened, in one paragraph."""
    budget = ctx.session.budget
    calls = [t for t in ctx.session.traces if t.kind == "call"]
    ran = sum(1 for t in calls if t.decision in ("allowed", "flagged", "approved"))
    refused = sum(1 for t in calls if t.decision in ("blocked", "denied"))
    limit = f"${budget.limit:.2f}" if budget.limit is not None else "no limit"
    return (f"Stopped: {why}. Spent ${budget.spent:.2f} of {limit} ({budget.pct:.0f}%); "
            f"{ran} call(s) ran, {refused} refused.")
