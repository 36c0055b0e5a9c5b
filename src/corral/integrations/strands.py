"""Strands Agents: a ``HookProvider`` that puts the governance kernel in front of every tool call.

::

    from strands import Agent
    from corral.integrations.strands import CorralHooks

    gov = Governor(agent="desk", budget=5.0, rules=RULES)
    session = gov.session(principal="alice")
    agent = Agent(tools=[lookup_order, issue_refund],
                  hooks=[CorralHooks(gov, session, effects={"lookup_order": "read",
                                                            "issue_refund": {"effect": "reversible",
                                                                             "compensate": void_refund}})])

``BeforeToolCallEvent`` runs the kernel's decision. A refusal sets ``event.cancel_tool`` to the reason,
so Strands hands the model an error result it can act on, and the tool never runs. A call that a rule
sends to a person raises a Strands interrupt named ``corral-approval-<id>``: the agent stops with
``stop_reason == "interrupt"``; answer it with ``True`` / ``False``, ``(bool, reason)``,
``corral.Approval(...)`` or ``{"approved": bool, "approver": name, "reason": text}`` and the resumed call
runs (or is refused) exactly once. ``AfterToolCallEvent`` settles the cost and records the outcome;
inside a commit, a tool that fails rolls the transaction back and the result says what was undone.

A tool the governor does not know — not registered, not named in ``effects`` — is refused as an unknown
tool: an undeclared tool is never waved through. Strands is imported only when the hooks are registered.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from corral.errors import ApprovalPending, GovernanceError, TransactionFailed
from corral.governance.calls import CallHandle
from corral.governance.refusals import message as refusal_message
from corral.integrations.framework import register_framework_tool

APPROVAL_INTERRUPT = "corral-approval-"


def answer_from(response: Any, default_approver: str) -> Any:
    """An interrupt response as a ``corral.Approval``; None when it says nothing we understand."""
    from corral.governance.approvals import Approval

    if isinstance(response, Approval):
        return Approval(response.approved, response.approver or default_approver, response.reason)
    if isinstance(response, bool):
        return Approval(response, default_approver, None)
    if isinstance(response, tuple) and len(response) == 2 and isinstance(response[0], bool):
        return Approval(response[0], default_approver, None if response[1] is None else str(response[1]))
    if isinstance(response, Mapping) and isinstance(response.get("approved"), bool):
        approver = response.get("approver") or default_approver
        reason = response.get("reason")
        return Approval(response["approved"], str(approver), None if reason is None else str(reason))
    return None


class CorralHooks:
    """Governs a Strands agent's tool calls in one corral session (a Strands ``HookProvider``).

    ``effects`` declares the tools the governor does not know yet: ``{name: "read"}`` or
    ``{name: {"effect": "reversible", "compensate": fn, "cost": 0.01}}`` (any ``gov.register`` option).
    ``approvals="interrupt"`` (default) asks for approval through Strands interrupts; ``"deny"`` refuses
    the call instead, naming the pending approval so a person can grant it (``corral approvals approve``)
    before the model tries again. ``approver`` names who answered an interrupt when the response does not.
    """

    def __init__(
        self,
        governor: Any,
        session: Any,
        *,
        effects: Mapping[str, Any] | None = None,
        approvals: str = "interrupt",
        approver: str = "strands-interrupt",
    ) -> None:
        from corral.errors import ConfigError

        if approvals not in ("interrupt", "deny"):
            raise ConfigError(f"approvals must be 'interrupt' or 'deny', got {approvals!r}")
        self.governor = governor
        self.session = session
        self.approvals = approvals
        self.approver = approver
        self._pending: dict[str, CallHandle] = {}
        self._lock = threading.Lock()
        for name, declared in (effects or {}).items():
            options = dict(declared) if isinstance(declared, Mapping) else {"effect": declared}
            register_framework_tool(governor, name, **options)

    # --------------------------------------------------------------------------------------- wiring

    def register_hooks(self, registry: Any, **kwargs: Any) -> None:
        from strands.hooks import AfterToolCallEvent, BeforeToolCallEvent

        registry.add_callback(BeforeToolCallEvent, self.before_tool_call)
        registry.add_callback(AfterToolCallEvent, self.after_tool_call)

    # ---------------------------------------------------------------------------------------- before

    async def before_tool_call(self, event: Any) -> None:
        """Decide; refuse through ``cancel_tool``; ask for approval through an interrupt."""
        tool_use = event.tool_use
        name = str(tool_use.get("name"))
        tool_use_id = str(tool_use.get("toolUseId"))
        with self._lock:
            stale = self._pending.pop(tool_use_id, None)
        if stale is not None:  # decided before, never ran (another hook interrupted): decide afresh
            stale.cancel("decided again when the call was resumed")
        args = tool_use.get("input")
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            event.cancel_tool = f"corral refused {name}: its input is not an object of named arguments"
            return
        try:
            handle = await self.session.abegin_call(name, args)
        except ApprovalPending as pending:
            handle = await self._ask(event, pending, name, args)
        except GovernanceError as refused:
            event.cancel_tool = refusal_message(refused, name)
            return
        except Exception as fault:  # fail closed: a fault in governance never lets the call through
            event.cancel_tool = f"corral refused {name}: governance fault ({type(fault).__name__}: {fault})"
            return
        if handle is not None:
            with self._lock:
                self._pending[tool_use_id] = handle

    async def _ask(self, event: Any, pending: ApprovalPending, name: str, args: Mapping[str, Any]) -> Any:
        request = pending.request
        if self.approvals != "interrupt" or request is None or not hasattr(event, "interrupt"):
            event.cancel_tool = refusal_message(pending, name)
            return None
        reason = {"approval": request.id, "tool": name, "args": dict(request.args), "reason": request.reason,
                  "expires": request.expires, "session": request.session}
        # Raises Strands' InterruptException the first time (the agent stops and returns the interrupt);
        # returns the person's response when the agent is resumed with it.
        response = event.interrupt(f"{APPROVAL_INTERRUPT}{request.id}", reason=reason)
        answer = answer_from(response, self.approver)
        if answer is None:
            event.cancel_tool = (f"corral refused {name}: the answer to approval {request.id} was not understood "
                                 f"({response!r}); answer True/False or {{'approved': bool, 'approver': name}}")
            return None
        try:
            if answer.approved:
                self.governor.approve(request.id, answer.approver, answer.reason)
            else:
                self.governor.deny(request.id, answer.approver, answer.reason)
            return await self.session.abegin_call(name, args)
        except GovernanceError as refused:
            event.cancel_tool = refusal_message(refused, name)
        except Exception as fault:
            event.cancel_tool = f"corral refused {name}: governance fault ({type(fault).__name__}: {fault})"
        return None

    # ----------------------------------------------------------------------------------------- after

    async def after_tool_call(self, event: Any) -> None:
        """Settle: the cost and the outcome; a failure inside a commit rolls the transaction back."""
        tool_use_id = str(event.tool_use.get("toolUseId"))
        with self._lock:
            handle = self._pending.pop(tool_use_id, None)
        if handle is None:
            return
        try:
            if event.cancel_message:
                handle.cancel(event.cancel_message)
                return
            result = event.result
            error = event.exception
            if error is None and isinstance(result, Mapping) and result.get("status") == "error":
                error = _ToolFailed(_text_of(result))
            if error is None:
                handle.finish(result=result)
                return
            try:
                await handle.afinish(error=error)
            except TransactionFailed as failed:
                event.result = _with_note(result, f"corral: {failed}")
        except Exception as fault:  # the tool has run; say that its record is incomplete, do not crash the agent
            event.result = _with_note(event.result, f"corral could not record this call's outcome: {fault!r}")


class _ToolFailed(Exception):
    """A Strands tool result with ``status: error``, as the outcome's error."""


def _text_of(result: Mapping[str, Any]) -> str:
    parts = [c.get("text", "") for c in result.get("content") or () if isinstance(c, Mapping)]
    return " ".join(p for p in parts if p) or "the tool reported an error"


def _with_note(result: Any, note: str) -> Any:
    if not isinstance(result, Mapping):
        return result
    content = [*list(result.get("content") or ()), {"text": note}]
    return {**result, "status": "error", "content": content}


__all__ = ["APPROVAL_INTERRUPT", "CorralHooks", "answer_from"]
