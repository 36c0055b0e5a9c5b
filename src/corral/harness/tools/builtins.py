"""The built-in tools: files, shell and python, as plain functions with what the kernel must know.

Each factory binds the tools to one session's ``Workspace`` or ``Sandbox`` and returns ``BuiltinTool``
records; the harness registers them with the governance kernel —
``gov.register(t.name, t.fn, effect=t.effect, compensate=t.compensate, description=t.description)``,
or ``t.register(gov)`` — and shows the model ``t.description`` and ``t.parameters``.

Effects: reading and listing files are ``read``. Writing and editing are ``reversible``: before touching
a file they snapshot it (kept on disk, outside the workspace, so a compensation run by crash recovery in
another process finds it) and return the snapshot's id; the compensation receives the ``Call`` and
restores exactly the previous bytes, or deletes the file the call created. ``shell`` and ``python`` are
``irreversible``: a command can do anything inside the sandbox, and nothing records how to undo it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.errors import ConfigError
from corral.governance.effects import IRREVERSIBLE, READ, REVERSIBLE
from corral.harness.sandbox import Sandbox
from corral.harness.workspace import Workspace

MAX_READ_BYTES = 256_000
MAX_LIST_ENTRIES = 1_000


@dataclass(frozen=True)
class BuiltinTool:
    """A built-in tool as the harness registers it: the function, its effect, and what the model sees."""

    name: str
    fn: Callable[..., Any]
    effect: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    compensate: Callable[[Any], Any] | None = None

    def register(self, gov: Any, **options: Any) -> Any:
        """Register with a ``Governor``; ``options`` (cost, effect, …) override the defaults."""
        settings: dict[str, Any] = {"effect": self.effect, "description": self.description}
        if self.compensate is not None:
            settings["compensate"] = self.compensate
        settings.update(options)
        return gov.register(self.name, self.fn, **settings)


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


# --------------------------------------------------------------------------------------------- files


def files_tools(workspace: Workspace, *, max_read: int = MAX_READ_BYTES) -> list[BuiltinTool]:
    """``read_file``, ``list_files`` (read), ``write_file`` and ``edit_file`` (reversible) in ``workspace``."""

    def read_file(path: str) -> dict[str, Any]:
        target = workspace.resolve(path)
        if target.is_dir():
            raise IsADirectoryError(f"{path!r} is a directory; use list_files to see what it holds")
        if not target.exists():
            raise FileNotFoundError(f"{path!r} does not exist in the workspace; use list_files to look")
        with open(target, "rb") as fh:
            data = fh.read(max_read + 1)
        size = target.stat().st_size
        content = data[:max_read].decode("utf-8", errors="replace")
        result: dict[str, Any] = {"path": workspace.relative(target), "content": content, "size": size,
                                  "truncated": len(data) > max_read}
        if result["truncated"]:
            result["note"] = f"only the first {max_read} bytes of {size} are shown"
        return result

    def list_files(path: str = ".") -> dict[str, Any]:
        target = workspace.resolve(path)
        if not target.is_dir():
            what = "a file; use read_file" if target.exists() else "not there"
            raise NotADirectoryError(f"{path!r} is {what}")
        entries: list[dict[str, Any]] = []
        children = sorted(target.iterdir(), key=lambda p: p.name)
        for child in children[:MAX_LIST_ENTRIES]:
            if child.is_symlink():
                kind, size = "symlink", None
            elif child.is_dir():
                kind, size = "dir", None
            else:
                kind, size = "file", child.stat().st_size
            entries.append({"name": child.name, "type": kind, "size": size})
        result: dict[str, Any] = {"path": workspace.relative(target), "entries": entries}
        if len(children) > MAX_LIST_ENTRIES:
            result["truncated"] = True
            result["note"] = f"only the first {MAX_LIST_ENTRIES} of {len(children)} entries are shown"
        return result

    def write_file(path: str, content: str) -> dict[str, Any]:
        snapshot = workspace.snapshot(path)
        target = workspace.resolve(path)
        snapshot_id = workspace.save_snapshot(snapshot)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        target.write_bytes(data)
        return {"path": snapshot["path"], "bytes_written": len(data), "created": not snapshot["existed"],
                "snapshot": snapshot_id}

    def edit_file(path: str, old: str, new: str) -> dict[str, Any]:
        if not old:
            raise ValueError("old must be the exact, non-empty text to replace")
        target = workspace.resolve(path)
        if not target.is_file():
            raise FileNotFoundError(f"{path!r} is not a file in the workspace; create it with write_file")
        snapshot = workspace.snapshot(path)
        try:
            text = snapshot["content"].decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path!r} is not UTF-8 text; edit_file only edits text files") from None
        count = text.count(old)
        if count == 0:
            raise ValueError(f"old text not found in {path!r}; read_file it and copy the text exactly")
        if count > 1:
            raise ValueError(
                f"old text occurs {count} times in {path!r}; include more surrounding lines so it is unique"
            )
        snapshot_id = workspace.save_snapshot(snapshot)
        data = text.replace(old, new, 1).encode("utf-8")
        target.write_bytes(data)
        return {"path": snapshot["path"], "replacements": 1, "bytes": len(data), "snapshot": snapshot_id}

    def restore_snapshot(call: Any) -> dict[str, Any]:
        """Undo a ``write_file`` or ``edit_file`` call: put back the file as its snapshot recorded it."""
        result = getattr(call, "result", None)
        snapshot_id = result.get("snapshot") if isinstance(result, dict) else None
        if not snapshot_id:
            raise ValueError(
                f"cannot undo {getattr(call, 'tool', '?')}({getattr(call, 'args', {})}): "
                "its result carries no snapshot id"
            )
        snapshot = workspace.load_snapshot(snapshot_id)
        workspace.restore(snapshot)
        return {"path": snapshot["path"], "restored": "content" if snapshot["existed"] else "absence"}

    path_prop = {"type": "string", "description": "A path relative to the workspace, e.g. 'src/app.py'."}
    return [
        BuiltinTool(
            "read_file",
            read_file,
            READ,
            "Read a text file from the workspace. `path` is relative to the workspace (no absolute paths, "
            f"no '..' leaving it). Returns {{path, content, size, truncated}}; only the first {max_read} "
            "bytes are returned.",
            _schema({"path": path_prop}, ["path"]),
        ),
        BuiltinTool(
            "list_files",
            list_files,
            READ,
            "List one directory of the workspace (not recursive). `path` defaults to '.', the workspace "
            "root. Returns {path, entries: [{name, type: file|dir|symlink, size}]}.",
            _schema({"path": {**path_prop, "default": "."}}, []),
        ),
        BuiltinTool(
            "write_file",
            write_file,
            REVERSIBLE,
            "Create or overwrite a text file in the workspace with `content` (UTF-8); missing parent "
            "directories are created. Replaces the whole file: to change part of a file use edit_file. "
            "Reversible: if the transaction rolls back, the previous content (or absence) is restored.",
            _schema({"path": path_prop, "content": {"type": "string", "description": "The full new text."}},
                    ["path", "content"]),
            restore_snapshot,
        ),
        BuiltinTool(
            "edit_file",
            edit_file,
            REVERSIBLE,
            "Replace exactly one occurrence of `old` with `new` in a workspace text file. `old` must match "
            "the file byte for byte (whitespace and indentation included) and occur exactly once: if it is "
            "missing or occurs several times the call fails and nothing changes; add surrounding lines to "
            "make it unique. Use `new: \"\"` to delete. Reversible like write_file.",
            _schema(
                {
                    "path": path_prop,
                    "old": {"type": "string", "minLength": 1, "description": "The exact text to replace."},
                    "new": {"type": "string", "description": "The replacement text."},
                },
                ["path", "old", "new"],
            ),
            restore_snapshot,
        ),
    ]


# ------------------------------------------------------------------------------------ shell, python


def _command_effect(effect: str, name: str) -> str:
    if effect not in (READ, IRREVERSIBLE):
        raise ConfigError(
            f"builtin {name!r}: effect must be irreversible (the default) or read; a command has no "
            f"compensation, so it cannot be {effect!r}"
        )
    return effect


def _outcome(result: Any) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "truncated": result.truncated,
        "timed_out": result.timed_out,
    }


def shell_tool(sandbox: Sandbox, *, effect: str = IRREVERSIBLE) -> BuiltinTool:
    """``shell(command)``: run a ``/bin/sh`` command line in the session sandbox."""
    effect = _command_effect(effect, "shell")

    def shell(command: str) -> dict[str, Any]:
        return _outcome(sandbox.run(command))

    network = "with network access" if sandbox.network else "without network access"
    return BuiltinTool(
        "shell",
        shell,
        effect,
        f"Run a /bin/sh command line in the session's sandbox ({network}). The working directory is the "
        "workspace, which is the only place writes persist. Pipes, redirections and && work. The command "
        f"is killed after {sandbox.timeout:g}s and each of stdout/stderr is cut at {sandbox.max_output} "
        "bytes, so filter large output (head, grep, wc). Returns {exit_code, stdout, stderr, truncated, "
        "timed_out}; a non-zero exit_code is a failure to read from stderr.",
        _schema({"command": {"type": "string", "minLength": 1,
                             "description": "The command line, e.g. 'ls -la && wc -l *.csv'."}}, ["command"]),
    )


def python_tool(sandbox: Sandbox, *, interpreter: str = "python3", effect: str = IRREVERSIBLE) -> BuiltinTool:
    """``python(code)``: run a Python program in the session sandbox (the code arrives on stdin)."""
    effect = _command_effect(effect, "python")

    def python(code: str) -> dict[str, Any]:
        # On stdin rather than ``-c``: no limit on the program's length, and nothing of it in ``ps``.
        return _outcome(sandbox.run([interpreter, "-"], stdin=code))

    return BuiltinTool(
        "python",
        python,
        effect,
        "Run a Python 3 program in the session's sandbox and return what it printed. The working "
        "directory is the workspace (files you wrote there can be opened by relative path and imported). "
        "Each call is a fresh process: nothing is remembered between calls, so print() what you need. "
        "Only the standard library is guaranteed. No input() (stdin is the program itself). Killed after "
        f"{sandbox.timeout:g}s; output cut at {sandbox.max_output} bytes. Returns {{exit_code, stdout, "
        "stderr, truncated, timed_out}}; a traceback is in stderr.",
        _schema({"code": {"type": "string", "minLength": 1,
                          "description": "The complete program, e.g. 'import json\\nprint(1 + 1)'."}},
                ["code"]),
    )
