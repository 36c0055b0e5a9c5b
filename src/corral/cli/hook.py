"""``corral hook``: put corral in front of another agent's tool calls (Claude Code).

``corral hook claude-code`` is what Claude Code runs on every PreToolUse / PostToolUse event, so it
imports only what one decision needs; ``corral hook install claude-code`` writes the settings entry.
"""

from __future__ import annotations

import sys

import click

_HOOK_EPILOG = """\b
Examples:
  corral hook install claude-code --agent agent.yaml            this project (.claude/settings.json)
  corral hook install claude-code --user --agent ~/agent.yaml   every project (~/.claude/settings.json)
  echo '{"hook_event_name": "PreToolUse", ...}' | corral hook claude-code --agent agent.yaml
"""


@click.group(epilog=_HOOK_EPILOG)
def hook() -> None:
    """Govern another agent's tool calls through its hooks (Claude Code)."""


_CLAUDE_CODE_EPILOG = """\b
Claude Code runs this command with the event JSON on stdin. PreToolUse answers on stdout:
  {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                          "permissionDecision": "allow" | "deny" | "ask",
                          "permissionDecisionReason": "..."}}
  allow  the kernel allowed the call (the reason and trace id are in Claude Code's debug log)
  deny   a phase, plan, budget or rule refused it; the reason and what to do go to Claude
  ask    a rule requires a person's approval: Claude Code asks; `corral approvals approve ID` also works
PostToolUse settles the call's cost and records its outcome.

\b
Exit status:
  0  answered (see stdout)
  2  refused because something went wrong (bad input, the store, the deadline); the reason is on stderr

\b
Claude Code's session_id is the corral session id: `corral phase SESSION decide|commit --agent AGENT`
moves it between phases, `corral why TRACE_ID --agent AGENT` explains a decision.
"""


@hook.command("claude-code", epilog=_CLAUDE_CODE_EPILOG)
@click.option("--agent", "agent_file", required=True, type=click.Path(dir_okay=False),
              help="The agent file whose policy, budget and store govern Claude Code.")
@click.option("--store", default=None, metavar="URL", help="Use this store instead of the agent file's.")
@click.option("--as", "principal", default=None, metavar="NAME",
              help="Who the session acts for (default: $USER).")
@click.option("--role", "roles", multiple=True, metavar="ROLE", help="A role of the principal; may be repeated.")
@click.option("--timeout", default=10.0, show_default=True, metavar="SECONDS",
              help="Refuse the call if governance has not decided by then (keep it below Claude Code's timeout).")
def claude_code(agent_file: str, store: str | None, principal: str | None, roles: tuple[str, ...],
                timeout: float) -> None:
    """Claude Code's PreToolUse/PostToolUse hook: decide on, then settle, each tool call."""
    from pathlib import Path

    from corral.integrations.claude_code import enter_project_dir, run

    agent = Path(agent_file).resolve()
    enter_project_dir()
    sys.exit(run(agent, store=store, principal=principal, roles=roles, timeout=timeout))


@hook.group("install")
def install() -> None:
    """Install corral's hook into another agent's settings."""


_INSTALL_EPILOG = """\b
Writes the nested hooks form, keeping everything else in the file:
  {"hooks": {"PreToolUse":  [{"matcher": "*", "hooks": [{"type": "command",
                                "command": "corral hook claude-code --agent … || exit 2", "timeout": 30}]}],
             "PostToolUse": [ … the same … ]}}
Running it again replaces corral's entry instead of adding a second one.
"""


@install.command("claude-code", epilog=_INSTALL_EPILOG)
@click.option("--agent", "agent_file", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The agent file the hook governs with.")
@click.option("--project", "scope", flag_value="project", default=True,
              help="This project's .claude/settings.json (the default).")
@click.option("--user", "scope", flag_value="user", help="Your ~/.claude/settings.json ($HOME is honoured).")
@click.option("--project-dir", default=None, type=click.Path(file_okay=False),
              help="The project whose settings to change (default: the working directory).")
@click.option("--with-failures", "failures", is_flag=True,
              help="Also settle failed tools via PostToolUseFailure (Claude Code 2026 and later).")
def install_claude_code(agent_file: str, scope: str, project_dir: str | None, failures: bool) -> None:
    """Add corral's PreToolUse and PostToolUse hook (matcher "*") to Claude Code's settings."""
    from corral.errors import ConfigError
    from corral.integrations.claude_code import install as do_install

    try:
        path, settings = do_install(agent_file, scope=scope, project_dir=project_dir, failures=failures)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    command = settings["hooks"]["PreToolUse"][-1]["hooks"][0]["command"]
    click.echo(f"{path}: corral governs Claude Code's tool calls with {agent_file}")
    click.echo(f"  command: {command}", err=True)


__all__ = ["hook"]
