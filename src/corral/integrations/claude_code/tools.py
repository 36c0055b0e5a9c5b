"""Claude Code's tools as corral sees them: their effects, how the agent file declares them, and how an
edit is undone (file snapshots).

``Read``, ``Grep``, ``Glob``… are reads; ``Edit``, ``Write``, ``MultiEdit`` and ``NotebookEdit`` are
reversible (undone by restoring the file from the snapshot taken in PreToolUse); ``Bash`` and anything
unknown are irreversible; ``mcp__server__tool`` takes its effect from that server's ``mcp:`` entry
(``effects:``). The agent file can override: ``builtin: shell`` with ``effect:`` sets Bash's,
``builtin: files`` with ``effect:`` sets the file tools'. ``allowed_tools`` limits what Claude Code may
call at all: anything else is refused as an unknown tool.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from corral.errors import ConfigError, PhaseError
from corral.struct import struct

READ = "read"
REVERSIBLE = "reversible"
IRREVERSIBLE = "irreversible"

#: Claude Code's hook events that corral handles: PreToolUse decides, the other two finish the call.
PRE = "PreToolUse"
POST = "PostToolUse"
POST_FAILURE = "PostToolUseFailure"
EVENTS = (PRE, POST, POST_FAILURE)

#: Claude Code's built-in tools. Anything not listed (and not an MCP tool with a declared effect) is
#: irreversible: a tool nobody has described may do anything.
BUILTIN_EFFECTS: dict[str, str] = {
    "Read": READ,
    "Grep": READ,
    "Glob": READ,
    "LS": READ,
    "NotebookRead": READ,
    "WebSearch": READ,
    "WebFetch": READ,
    "TodoWrite": READ,
    "TodoRead": READ,
    "BashOutput": READ,
    "Task": READ,  # a subagent: its own tool calls come through this hook one by one
    "ExitPlanMode": READ,
    "AskUserQuestion": READ,
    "ListMcpResourcesTool": READ,
    "ReadMcpResourceTool": READ,
    "Edit": REVERSIBLE,
    "MultiEdit": REVERSIBLE,
    "Write": REVERSIBLE,
    "NotebookEdit": REVERSIBLE,
    "Bash": IRREVERSIBLE,
    "KillShell": IRREVERSIBLE,
}
FILE_TOOLS = frozenset({"Read", "Grep", "Glob", "LS", "NotebookRead", "Edit", "MultiEdit", "Write", "NotebookEdit"})
FILE_WRITERS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})


def runs_in_claude_code(**tool_input: Any) -> Any:
    """The registered body of a Claude Code tool: Claude Code runs it, never corral."""
    raise PhaseError("this tool runs inside Claude Code; corral only governs it")


def split_mcp_name(name: str) -> tuple[str, str] | None:
    """``mcp__github__create_issue`` → ``("github", "create_issue")``."""
    if not name.startswith("mcp__"):
        return None
    server, sep, tool = name[5:].partition("__")
    if not sep or not server or not tool:
        return None
    return server, tool


class LazyImport:
    """A ``module:function`` compensation imported when it is first needed, not on every hook call."""

    def __init__(self, ref: str, base_dir: Path) -> None:
        self.ref = ref
        self.base_dir = base_dir
        self.__name__ = ref.rpartition(":")[2]
        self._fn: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is None:
            from corral.harness.imports import resolve_import

            self._fn = resolve_import(self.ref, self.base_dir)
        return self._fn(*args, **kwargs)


@struct(frozen=True)
class ToolDeclaration:
    """How the agent file describes one Claude Code tool: its effect and the options to register it with."""

    name: str
    effect: str
    options: dict[str, Any]
    source: str


def _prefix_matches(prefix: str | None, server: str) -> bool:
    if not prefix:
        return False
    bare = prefix.strip().rstrip("._").removeprefix("mcp__").removeprefix("mcp.")
    return bare == server


#: Claude Code's tools that bring the web into the session: their results add the label untrusted.
WEB_TOOLS = frozenset({"WebFetch", "WebSearch"})


def _flow(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An agent-file entry's labels, tags and untrusted flag, as registration options (§15)."""
    out: dict[str, Any] = {}
    if entry.get("labels"):
        out["labels"] = list(entry["labels"])
    if entry.get("tags"):
        out["tags"] = list(entry["tags"])
    if entry.get("untrusted"):
        out["untrusted"] = True
    return out


def _mcp_flow(entry: Mapping[str, Any], name: str, tool: str) -> dict[str, Any]:
    """An ``mcp:`` entry's labels and tags for one of its tools: a list for all of them, or per tool."""

    def pick(table: Any) -> list[str]:
        if isinstance(table, Mapping):
            return list(table.get(name, table.get(tool)) or [])
        return list(table or [])

    return _flow({"labels": pick(entry.get("labels")), "tags": pick(entry.get("tags")),
                  "untrusted": entry.get("untrusted")})


class DeclaredTools(Protocol):
    """What ``declare_tool`` reads of an agent file: ``AgentFacts`` (facts.py) is the one that is passed."""

    base_dir: str
    allowed_tools: tuple[str, ...]
    tools: tuple[dict[str, Any], ...]


def declare_tool(name: str, facts: DeclaredTools, snapshots: FileSnapshots | None = None) -> ToolDeclaration | None:
    """The declaration of Claude Code tool ``name`` under an agent file, or None when it is not allowed."""
    from fnmatch import fnmatchcase

    if not any(fnmatchcase(name, pattern) for pattern in facts.allowed_tools):
        return None
    base_dir = Path(facts.base_dir)
    options: dict[str, Any] = {}
    if name in BUILTIN_EFFECTS:
        effect, source = BUILTIN_EFFECTS[name], "Claude Code built-in"
        builtin = "shell" if name == "Bash" else "files" if name in FILE_TOOLS else None
        if name in WEB_TOOLS:  # Claude Code's browser: what it brings back may carry instructions (§15)
            options["untrusted"] = True
        for entry in facts.tools:
            if entry["kind"] == "builtin" and entry["builtin"] == builtin:
                options.update(_flow(entry))
                if entry.get("effect") is not None:
                    effect, source = entry["effect"], f"builtin: {builtin} in the agent file"
        if name in FILE_WRITERS and effect == REVERSIBLE:
            if snapshots is None:
                raise ConfigError(f"{name} is reversible, which needs file snapshots to undo it")
            options.update(compensate=snapshots.restore, compensate_unknown=True)
        return ToolDeclaration(name, effect, options, source)
    mcp = split_mcp_name(name)
    if mcp is not None:
        server, tool = mcp
        entries = [e for e in facts.tools if e["kind"] == "mcp"]
        chosen = next((e for e in entries if _prefix_matches(e.get("prefix"), server)), None)
        if chosen is None:
            named = [e for e in entries if name in e["effects"] or tool in e["effects"]]
            chosen = named[0] if len(named) == 1 else None
        if chosen is not None:
            options.update(_mcp_flow(chosen, name, tool))
            effect = chosen["effects"].get(name) or chosen["effects"].get(tool)
            if effect is not None:
                if name in chosen["cost"] or tool in chosen["cost"]:
                    options["cost"] = chosen["cost"].get(name, chosen["cost"].get(tool))
                ref = chosen["compensate"].get(name) or chosen["compensate"].get(tool)
                if ref:
                    options["compensate"] = LazyImport(ref, base_dir)
                return ToolDeclaration(name, effect, options, f"mcp server {server!r} in the agent file")
        return ToolDeclaration(name, IRREVERSIBLE, options, f"mcp server {server!r}: no effect declared")
    for entry in facts.tools:
        if entry["kind"] != "python" or entry["name"] != name:
            continue
        if entry.get("cost") is not None:
            options["cost"] = entry["cost"]
        if entry.get("compensate"):
            options["compensate"] = LazyImport(entry["compensate"], base_dir)
        options["retryable"] = entry.get("retryable", False)
        options["compensate_unknown"] = entry.get("compensate_unknown", False)
        options.update(_flow(entry))
        return ToolDeclaration(name, entry.get("effect") or IRREVERSIBLE, options, f"python: {entry['python']}")
    return ToolDeclaration(name, IRREVERSIBLE, options, "not described anywhere")




class FileSnapshots:
    """Copies of files taken before Claude Code changes them, keyed by transaction step.

    ``take`` runs in PreToolUse, after the decision and before the step's INTENT, so a logged step
    always has its snapshot. ``restore`` is the compensation of Edit, Write, MultiEdit and NotebookEdit:
    it puts the file back as it was (or removes it if it did not exist). It is idempotent, so recovery
    may run it again, and it also undoes a step whose outcome is unknown.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.__name__ = "restore_file_snapshot"

    def _paths(self, key: str) -> tuple[Path, Path]:
        tx, _, seq = key.rpartition(":")
        if not tx or not seq.isdigit() or "/" in tx or "\\" in tx or tx.startswith("."):
            raise ValueError(f"not a transaction step key: {key!r}")
        folder = self.root / tx
        return folder / f"{seq}.json", folder / f"{seq}.bytes"

    def take(self, key: str, path: str | Path) -> None:
        import shutil

        meta_path, data_path = self._paths(key)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        target = Path(path)
        meta: dict[str, Any] = {"path": str(target), "existed": target.is_file()}
        if meta["existed"]:
            shutil.copyfile(target, data_path)
            meta["mode"] = target.stat().st_mode & 0o7777
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp, meta_path)  # the metadata appears only once the copy is complete

    def restore(self, call: Any) -> None:
        import shutil

        key = call.idempotency_key if not isinstance(call, str) else call
        meta_path, data_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no snapshot for step {key} under {self.root}") from None
        target = Path(meta["path"])
        if meta["existed"]:
            tmp = target.with_name(f".{target.name}.corral-restore")
            shutil.copyfile(data_path, tmp)
            if meta.get("mode") is not None:
                os.chmod(tmp, meta["mode"])
            os.replace(tmp, target)
        else:
            target.unlink(missing_ok=True)

    __call__ = restore
