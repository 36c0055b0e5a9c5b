"""LangChain: wrap a ``BaseTool`` / ``StructuredTool`` so the governance kernel decides every call.

::

    from corral.integrations.langchain import govern_tool

    lookup = govern_tool(lookup_order, gov, session, effect="read")
    refund = govern_tool(issue_refund, gov, session, effect="reversible", compensate=void_refund, cost=0.01)
    model.bind_tools([lookup, refund])          # same name, description and argument schema

The wrapped tool keeps the original's name, description, argument schema, ``return_direct`` and
``response_format``. Each call is decided first (tool, phase, plan, budget, rules); only an allowed call
reaches the original tool, whose outcome is then settled (cost, trace; inside a commit, a failure rolls
the transaction back).

A refusal is raised as ``CorralRefusal`` — a ``ToolException`` — and the wrapper's
``handle_tool_error`` turns it into the tool's output. That is LangChain's own convention for "this call
did not work, tell the model": the ``ToolMessage`` carries the reason *and* ``status="error"``, so the
model, LangGraph's ``ToolNode`` and tracing all see a failed call, not a successful one whose text
happens to say "blocked". Code that calls the tool directly and prefers an exception sets
``handle_tool_error=False`` on the wrapper and catches ``CorralRefusal`` (``.error`` is the corral error,
with its trace). The original tool's own errors behave as they did.

``effect=None`` uses the governor's own registration of the tool's name; a tool the governor does not
know is refused as an unknown tool. LangChain is imported only when a tool is wrapped.
"""

from __future__ import annotations

import functools
from typing import Any

from corral.errors import GovernanceError, TransactionFailed
from corral.governance.refusals import message as refusal_message
from corral.integrations.framework import register_framework_tool


@functools.cache
def _classes() -> tuple[type, type]:
    """Build the LangChain classes on first use, so importing this module does not import LangChain."""
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool, ToolException
    from pydantic import ConfigDict

    class CorralRefusal(ToolException):
        """Governance refused the call (or a commit rolled back); ``.error`` is the corral error."""

        def __init__(self, message: str, error: BaseException | None = None) -> None:
            super().__init__(message)
            self.error = error

    def handle(exc: ToolException) -> Any:
        if isinstance(exc, CorralRefusal):
            return exc.args[0] if exc.args else "corral refused the call"
        raise exc  # the original tool's own ToolException, which it chose not to handle

    class GovernedTool(BaseTool):
        """A LangChain tool whose every call the corral kernel decides before it runs."""

        model_config = ConfigDict(arbitrary_types_allowed=True)

        inner: BaseTool
        governor: Any
        session: Any
        handle_tool_error: Any = handle

        def _call(self, kwargs: dict[str, Any], config: Any) -> dict[str, Any]:
            from corral.ids import new_id

            return {"name": self.inner.name, "args": kwargs, "id": f"corral-{new_id()}", "type": "tool_call"}

        def _unwrap(self, message: Any) -> Any:
            if not isinstance(message, ToolMessage):
                return message
            if self.response_format == "content_and_artifact":
                return message.content, message.artifact
            return message.content

        def _run(self, *args: Any, config: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
            if args:  # a single-string tool: its input goes to governance under the name "input"
                kwargs = {"input": args[0], **kwargs}
            try:
                call = self.session.begin_call(self.name, kwargs)
            except GovernanceError as refused:
                raise CorralRefusal(refusal_message(refused, self.name), refused) from None
            except Exception as fault:  # fail closed
                raise CorralRefusal(f"corral refused {self.name}: governance fault ({fault!r})", fault) from None
            child = {"callbacks": run_manager.get_child()} if run_manager is not None else None
            try:
                message = self.inner.invoke(args[0] if args else self._call(kwargs, config), config=child)
                failure = _failure_of(message)
            except Exception as error:
                rolled_back = _finish_failed(call, error)
                if rolled_back is not None:
                    raise CorralRefusal(f"{self.name} failed and corral rolled back: {rolled_back}",
                                        rolled_back) from error
                raise
            if failure is not None:  # the original tool handled its own error: keep its text and status
                rolled_back = _finish_failed(call, ToolException(failure))
                note = f"\ncorral: {rolled_back}" if rolled_back is not None else ""
                raise CorralRefusal(f"{failure}{note}", rolled_back)
            call.finish(result=message)
            return self._unwrap(message)

        async def _arun(self, *args: Any, config: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
            if args:
                kwargs = {"input": args[0], **kwargs}
            try:
                call = await self.session.abegin_call(self.name, kwargs)
            except GovernanceError as refused:
                raise CorralRefusal(refusal_message(refused, self.name), refused) from None
            except Exception as fault:
                raise CorralRefusal(f"corral refused {self.name}: governance fault ({fault!r})", fault) from None
            child = {"callbacks": run_manager.get_child()} if run_manager is not None else None
            try:
                message = await self.inner.ainvoke(args[0] if args else self._call(kwargs, config), config=child)
                failure = _failure_of(message)
            except Exception as error:
                rolled_back = await _afinish_failed(call, error)
                if rolled_back is not None:
                    raise CorralRefusal(f"{self.name} failed and corral rolled back: {rolled_back}",
                                        rolled_back) from error
                raise
            if failure is not None:
                rolled_back = await _afinish_failed(call, ToolException(failure))
                note = f"\ncorral: {rolled_back}" if rolled_back is not None else ""
                raise CorralRefusal(f"{failure}{note}", rolled_back)
            call.finish(result=message)
            return self._unwrap(message)

    def _failure_of(message: Any) -> str | None:
        if isinstance(message, ToolMessage) and message.status == "error":
            content = message.content
            return content if isinstance(content, str) else str(content)
        return None

    return GovernedTool, CorralRefusal


def _finish_failed(call: Any, error: BaseException) -> Any:
    """Record the failure; inside a commit that rolls back, the ``TransactionFailed`` (else None)."""
    try:
        call.finish(error=error)
    except TransactionFailed as rolled_back:
        return rolled_back
    return None


async def _afinish_failed(call: Any, error: BaseException) -> Any:
    try:
        await call.afinish(error=error)
    except TransactionFailed as rolled_back:
        return rolled_back
    return None


def __getattr__(name: str) -> Any:
    if name in ("GovernedTool", "CorralRefusal"):
        governed, refusal = _classes()
        return governed if name == "GovernedTool" else refusal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def govern_tool(tool: Any, governor: Any, session: Any, effect: str | None = None, **options: Any) -> Any:
    """A LangChain tool like ``tool`` whose calls the kernel decides in ``session``.

    ``effect`` (``read`` / ``reversible`` / ``irreversible``) and ``options`` (``cost``, ``compensate``,
    ``cost_fn``, ``retryable``, … — what ``gov.register`` takes) declare the tool to the governor under
    ``tool.name``; without them the governor's own registration of that name applies.
    """
    governed, _ = _classes()
    register_framework_tool(governor, tool.name, effect, **options)
    schema = tool.args_schema if tool.args_schema is not None else tool.get_input_schema()
    return governed(
        name=tool.name,
        description=tool.description,
        args_schema=schema,
        return_direct=tool.return_direct,
        response_format=tool.response_format,
        tags=tool.tags,
        metadata=tool.metadata,
        inner=tool,
        governor=governor,
        session=session,
    )


__all__ = ["CorralRefusal", "GovernedTool", "govern_tool"]  # noqa: F822 - the classes come from __getattr__
