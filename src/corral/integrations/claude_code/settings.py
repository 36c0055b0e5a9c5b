"""``corral hook install claude-code``: the hook in Claude Code's settings, merged, never duplicated."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from corral.errors import ConfigError
from corral.integrations.claude_code.tools import POST, POST_FAILURE, PRE

#: Claude Code's timeout for the hook command (seconds): longer than the hook's own deadline
#: (``hook.DEADLINE``), so the hook always answers (and denies) before Claude Code would give up on it.
INSTALL_TIMEOUT = 30

MARKER = "hook claude-code"


def settings_path(scope: str, *, project_dir: str | Path | None = None, home: str | Path | None = None) -> Path:
    """``.claude/settings.json`` of the project, or ``$HOME/.claude/settings.json`` for the user."""
    if scope == "project":
        return Path(project_dir or os.getcwd()) / ".claude" / "settings.json"
    if scope == "user":
        base = home or os.environ.get("HOME") or Path.home()
        return Path(base) / ".claude" / "settings.json"
    raise ConfigError(f"scope must be project or user, got {scope!r}")


def hook_command(agent: str | Path, *, scope: str = "project", project_dir: str | Path | None = None,
                 executable: str | None = None) -> str:
    """The shell command Claude Code runs. ``|| exit 2`` makes even a broken install block the call."""
    import shlex

    agent_path = Path(agent).resolve()
    if executable is None:
        script = Path(sys.executable).with_name("corral")
        executable = shlex.quote(str(script)) if script.exists() else f"{shlex.quote(sys.executable)} -m corral.cli"
    root = Path(project_dir or os.getcwd()).resolve()
    if scope == "project" and agent_path.is_relative_to(root):
        shown = f'"$CLAUDE_PROJECT_DIR"/{shlex.quote(agent_path.relative_to(root).as_posix())}'
    else:
        shown = shlex.quote(str(agent_path))
    return f"{executable} {MARKER} --agent {shown} || exit 2"


def _ours(hook: Any) -> bool:
    return isinstance(hook, dict) and MARKER in str(hook.get("command", ""))


def install(
    agent: str | Path,
    *,
    scope: str = "project",
    project_dir: str | Path | None = None,
    home: str | Path | None = None,
    executable: str | None = None,
    failures: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Add (or update) corral's PreToolUse and PostToolUse entries in a Claude Code settings file.

    Everything else in the file is kept; an earlier corral entry is replaced, never duplicated.
    ``failures`` also settles failed tools through ``PostToolUseFailure`` (Claude Code versions from
    early 2026; older ones reject a settings file that names it). Returns the path and the settings.
    """
    path = settings_path(scope, project_dir=project_dir, home=home)
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            settings = json.loads(path.read_text(encoding="utf-8") or "{}")
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); fix it first, corral will not overwrite it") from None
        if not isinstance(settings, dict):
            raise ConfigError(f"{path} does not hold a JSON object; corral will not overwrite it")
    hooks = settings.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise ConfigError(f"{path}: \"hooks\" is not an object; corral will not overwrite it")
    command = hook_command(agent, scope=scope, project_dir=project_dir, executable=executable)
    entry = {"type": "command", "command": command, "timeout": INSTALL_TIMEOUT}
    events = [PRE, POST] + ([POST_FAILURE] if failures else [])
    for event in (PRE, POST, POST_FAILURE):
        groups = hooks.get(event)
        if groups is None:
            continue
        if not isinstance(groups, list):
            raise ConfigError(f"{path}: hooks.{event} is not a list; corral will not overwrite it")
        kept = []
        for group in groups:
            if isinstance(group, dict) and isinstance(group.get("hooks"), list) and any(map(_ours, group["hooks"])):
                rest = [h for h in group["hooks"] if not _ours(h)]
                if rest:
                    kept.append({**group, "hooks": rest})
                continue
            kept.append(group)
        hooks[event] = kept
    for event in events:
        hooks.setdefault(event, []).append({"matcher": "*", "hooks": [dict(entry)]})
    for event in (PRE, POST, POST_FAILURE):
        if hooks.get(event) == []:
            del hooks[event]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.corral-tmp")
    tmp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path, settings
