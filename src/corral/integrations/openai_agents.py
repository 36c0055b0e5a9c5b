"""OpenAI Agents SDK: function tools whose every call the governance kernel decides.

::

    from agents import Agent, Runner, function_tool
    from corral.integrations.openai_agents import govern_function_tool

    agent = Agent(name="desk", tools=[
        govern_function_tool(lookup_order, gov, session, effect="read"),
        govern_function_tool(issue_refund, gov, session, effect="reversible", compensate=void_refund),
    ])

The governed tool is a copy of the ``FunctionTool`` (same name, description and JSON schema) whose
``on_invoke_tool`` asks the kernel first. A refusal is returned to the model as the tool's output — the
SDK's own convention for a tool error the model should see ("return a string error message") — so the
run goes on and the model can change course; the tool does not run.

Approvals use the SDK's ``needs_approval``: a dry run of the kernel (``gov.check``) says whether a rule
requires approval for these exact arguments; if so the run stops with an interruption, and
``state.approve(item)`` / ``state.reject(item)`` answer it. An approved call is recorded as approved in
corral (the approver is named by ``approver=``) and runs once; a rejected one never reaches the tool.

After the call, its cost is settled and its outcome traced; inside a commit a failing tool rolls the
transaction back and the model is told what was undone. ``effect=None`` uses the governor's own
registration of the tool's name; a tool the governor does not know is refused as an unknown tool.
The SDK is imported only when a tool is wrapped.
"""

from __future__ import annotations

import json
from typing import Any

from corral.errors import ApprovalPending, GovernanceError, TransactionFailed
from corral.governance.refusals import message as refusal_message
from corral.integrations.framework import register_framework_tool


def govern_function_tool(
    tool: Any,
    governor: Any,
    session: Any,
    effect: str | None = None,
    *,
    approver: str = "openai-agents-approval",
    **options: Any,
) -> Any:
    """A copy of ``tool`` (a ``FunctionTool``) governed by the kernel in ``session``.

    ``effect`` and ``options`` (``cost``, ``compensate``, … — what ``gov.register`` takes) declare the
    tool to the governor under ``tool.name``; without them the governor's own registration applies.
    """
    import dataclasses

    from agents.tool import with_function_tool_failure_error_handler

    register_framework_tool(governor, tool.name, effect, **options)
    name = tool.name
    original = tool.on_invoke_tool
    # Call the tool body itself so its exceptions reach the kernel (a failure is an outcome, and inside
    # a commit it rolls back); the copy below formats them for the model exactly as the original would.
    raw = getattr(original, "_invoke_tool_impl", None) or original
    original_needs = tool.needs_approval

    def refusal(exc: GovernanceError) -> str:
        return refusal_message(exc, name)

    async def invoke(ctx: Any, input_json: str) -> Any:
        try:
            args = json.loads(input_json) if input_json else {}
        except ValueError as exc:
            return f"corral refused {name}: its arguments are not valid JSON ({exc})"
        if not isinstance(args, dict):
            return f"corral refused {name}: its arguments are not a JSON object"
        try:
            try:
                call = await session.abegin_call(name, args)
            except ApprovalPending as pending:
                if not _approved_in_sdk(ctx, name) or pending.request is None:
                    return refusal(pending)
                governor.approve(pending.request.id, approver, "approved through the Agents SDK (RunState.approve)")
                call = await session.abegin_call(name, args)
        except GovernanceError as refused:
            return refusal(refused)
        except Exception as fault:  # fail closed: a fault inside governance never runs the tool
            return f"corral refused {name}: governance fault ({type(fault).__name__}: {fault})"
        try:
            result = await raw(ctx, input_json)
        except Exception as error:
            try:
                await call.afinish(error=error)
            except TransactionFailed as rolled_back:
                return f"{name} failed ({error}) and corral rolled back: {rolled_back}"
            raise
        call.finish(result=result)
        return result

    async def needs_approval(run_context: Any, params: dict[str, Any], call_id: str) -> bool:
        if original_needs is True:
            return True
        if callable(original_needs) and await original_needs(run_context, params, call_id):
            return True
        try:
            return await _corral_needs_approval(governor, session, name, params)
        except Exception:
            return True  # cannot tell: let a person look (the call is decided again when it runs)

    def on_handled_error(function_tool: Any, error: Exception, input_json: str) -> None:
        return None

    return dataclasses.replace(
        tool,
        on_invoke_tool=with_function_tool_failure_error_handler(invoke, on_handled_error),
        needs_approval=needs_approval,
    )


async def _corral_needs_approval(governor: Any, session: Any, name: str, params: dict[str, Any]) -> bool:
    """Does this exact call still need a person? And if so, file the request in corral's queue too.

    The dry run says whether a rule requires approval. A grant already given in corral (``corral approvals
    approve``) for these arguments means no: the call will use it when it runs. Otherwise the request is
    filed now (``corral approvals list`` shows it), and the run stops for ``state.approve``/``reject``.
    """
    from corral.governance import approvals as ap

    if governor.check(name, params, session=session).decision != "approval_required":
        return False
    spec = governor.tools.get(name)
    args = spec.bind(params) if spec is not None else dict(params)
    binding = ap.binding_hash(session.id, name, args, session.phase, governor.policy_sha256)
    now = governor.now()
    for found in governor.store.find_approvals(binding=binding):
        expires = found["expires"].replace("Z", "+00:00")
        if found["status"] == ap.APPROVED and now < _aware(expires):
            return False
    try:
        call = await session.abegin_call(name, params)
    except ApprovalPending:
        return True
    except GovernanceError:
        return False  # refused for another reason: invoking it returns that refusal to the model
    call.cancel("decided while checking whether it needs approval")  # pragma: no cover - a race
    return False  # pragma: no cover


def _aware(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def _approved_in_sdk(ctx: Any, name: str) -> bool:
    """Did a person approve this exact call through ``RunState.approve``?"""
    call_id = getattr(ctx, "tool_call_id", None)
    check = getattr(ctx, "is_tool_approved", None)
    if not call_id or check is None:
        return False
    try:
        return check(getattr(ctx, "tool_name", None) or name, call_id) is True
    except Exception:
        return False


__all__ = ["govern_function_tool"]
