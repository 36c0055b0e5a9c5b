"""Tools the harness gives an agent beyond its own Python functions: the built-ins, argument schemas.

``from corral.harness.tools import files_tools, shell_tool, python_tool, BuiltinTool`` — imported lazily,
so loading the schema helpers does not start a bubblewrap probe or load the sandbox.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.harness.tools.builtins import BuiltinTool, files_tools, python_tool, shell_tool

_LAZY = {name: "corral.harness.tools.builtins" for name in ("BuiltinTool", "files_tools", "python_tool", "shell_tool")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.harness.tools' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["BuiltinTool", "files_tools", "python_tool", "shell_tool"]
