"""Claude Code's PreToolUse / PostToolUse hook: the kernel decides before Claude Code runs a tool.

``hook`` (the per-event process), ``tools`` (Claude Code's tools, their effects, file snapshots),
``facts`` (the agent file as the hook reads it, and its governor), ``settings`` (``corral hook
install``: the hook in Claude Code's settings). The names below are imported lazily: the hook answers
in one process start, so only what a decision needs is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AgentFacts": "facts",
    "ClaudeCodeAgent": "facts",
    "build_governor": "facts",
    "load_facts": "facts",
    "state_dir": "facts",
    "BUILTIN_EFFECTS": "tools",
    "FileSnapshots": "tools",
    "ToolDeclaration": "tools",
    "declare_tool": "tools",
    "DEADLINE": "hook",
    "LEASE_SECONDS": "hook",
    "Hook": "hook",
    "HookResult": "hook",
    "enter_project_dir": "hook",
    "main": "hook",
    "parse_event": "hook",
    "run": "hook",
    "session_lock": "hook",
    "INSTALL_TIMEOUT": "settings",
    "hook_command": "settings",
    "install": "settings",
    "settings_path": "settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral.integrations.claude_code' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"corral.integrations.claude_code.{module}"), name)
    globals()[name] = value
    return value


__all__ = sorted(_LAZY)
