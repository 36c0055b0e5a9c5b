"""The built-in tools bound to the session that calls them.

The kernel registers one function per tool name, but each session has its own workspace and sandbox:
these wrappers find the session's workspace at call time (and, for a compensation, from the ``Call``'s
session, so a rollback — or a recovery in another process — restores the right files).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.harness.context import CURRENT, current
from corral.harness.tools.builtins import BuiltinTool, files_tools, python_tool, shell_tool
from corral.harness.workspace import Workspace


def _tools_for(harness: Any, kind: str, session_id: str, timeout: float | None) -> dict[str, BuiltinTool]:
    ctx = CURRENT.get(None)
    cache: dict[tuple[str, str], dict[str, BuiltinTool]] = harness.builtin_cache
    key = (kind, session_id)
    if key not in cache:
        workspace_dir = ctx.workspace if ctx is not None and ctx.session.id == session_id else \
            harness.workspace_for(session_id)
        if kind == "files":
            tools = files_tools(Workspace(Path(workspace_dir)))
        else:
            from corral.harness.sandbox import Sandbox, isolation_for

            sandbox = Sandbox(Path(workspace_dir), isolation=isolation_for(harness.config),
                              **({"timeout": timeout} if timeout else {}))
            tools = [shell_tool(sandbox) if kind == "shell" else python_tool(sandbox)]
        cache[key] = {t.name: t for t in tools}
    return cache[key]


def _prototypes(kind: str, timeout: float | None) -> list[BuiltinTool]:
    """The tools' names, effects, descriptions and schemas, from a throwaway instance."""
    import tempfile

    from corral.harness.sandbox import Sandbox

    scratch = Path(tempfile.gettempdir()) / "corral-prototype-workspace"
    if kind == "files":
        return files_tools(Workspace(scratch))
    sandbox = Sandbox(scratch, **({"timeout": timeout} if timeout else {}))
    return [shell_tool(sandbox) if kind == "shell" else python_tool(sandbox)]


def for_harness(harness: Any, kind: str, *, timeout: float | None = None) -> list[BuiltinTool]:
    """``files`` | ``shell`` | ``python`` as tools whose every call runs in the calling session's workspace."""
    out = []
    for proto in _prototypes(kind, timeout):
        out.append(
            BuiltinTool(
                proto.name,
                _bound(harness, kind, proto.name, proto.fn, timeout),
                proto.effect,
                proto.description,
                proto.parameters,
                _bound_compensation(harness, kind, proto.name, timeout) if proto.compensate else None,
            )
        )
    return out


def _bound(harness: Any, kind: str, name: str, proto_fn: Callable[..., Any], timeout: float | None) -> Any:
    def call(**kwargs: Any) -> Any:
        session_id = current().session.id
        return _tools_for(harness, kind, session_id, timeout)[name].fn(**kwargs)

    call.__name__ = name
    call.__doc__ = proto_fn.__doc__
    call.__signature__ = inspect.signature(proto_fn)  # type: ignore[attr-defined]
    return call


def _bound_compensation(harness: Any, kind: str, name: str, timeout: float | None) -> Any:
    def compensate(call: Any) -> Any:
        tool = _tools_for(harness, kind, call.session, timeout)[name]
        return tool.compensate(call)  # type: ignore[misc]

    compensate.__name__ = f"undo_{name}"
    return compensate
