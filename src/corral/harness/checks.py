"""What an agent file needs from the machine and from the files it names, checked before anything runs.

``corral validate`` (and every ``load_agent``) reports each of these as a located problem — the isolation
``shell`` and ``python`` need, the Chromium ``browser`` needs, OpenAPI documents, skill folders and
credentials — so a broken agent never fails at its first call instead.
"""

from __future__ import annotations

from typing import Any

from corral.errors import ConfigError

_COMMANDS = ("shell", "python")
_BUILTIN_NAMES = {
    "files": ("read_file", "list_files", "write_file", "edit_file"),
    "shell": ("shell",),
    "python": ("python",),
}


def environment_problems(config: Any) -> list[tuple[str, str]]:
    """``[(path in the file, message)]`` for everything the agent file asks that cannot be had here.

    ``config`` is an ``AgentConfig``; its tool entries are told apart by their ``kind``, so this module
    needs nothing from the one that defines them (which calls it).
    """
    from corral.harness.tools.credentials import Vault

    problems: list[tuple[str, str]] = []
    vault = Vault.from_config(config)
    for name in vault.names:
        problem = vault.problem(name)
        if problem:
            problems.append((f"credentials.{name}", problem))
    for i, tool in enumerate(config.tools):
        where = f"tools[{i}]"
        if tool.kind == "builtin":
            problems += [(f"{where}.{key}", msg) for key, msg in builtin_problems(tool, config)]
        elif tool.kind == "openapi":
            problems += _openapi_problems(tool, config, vault, where)
        elif tool.kind == "mcp" and tool.mcp.credential is not None \
                and tool.mcp.credential not in vault.sources:
            problems.append((f"{where}.mcp.credential", f"unknown credential {tool.mcp.credential!r} "
                             f"(credentials: {', '.join(vault.names) or 'none are declared'})"))
        elif tool.kind == "client" and tool.client.parameters.get("type", "object") != "object":
            problems.append((f"{where}.client.parameters", "a client tool's parameters are a JSON Schema of type "
                             f"object, got type {tool.client.parameters.get('type')!r}"))
    if config.skills:
        from corral.harness.tools.skills import skill_problems

        problems += skill_problems(config)
    return problems


def builtin_problems(tool: Any, config: Any) -> list[tuple[str, str]]:
    """A ``builtin:`` entry's problems, keyed by the entry's own key (``builtin``, ``effects.NAME``)."""
    problems: list[tuple[str, str]] = []
    if tool.builtin == "browser":
        from corral.harness.tools.browser import BROWSER_TOOLS, chromium_problem

        names: tuple[str, ...] = BROWSER_TOOLS
        problem = chromium_problem()
        if problem:
            problems.append(("builtin", problem))
    else:
        names = _BUILTIN_NAMES[tool.builtin]
    if tool.builtin in _COMMANDS and config.sandbox != "unisolated":
        from corral.harness.sandbox import isolation_problem

        problem = isolation_problem()
        if problem:
            problems.append(("builtin", f"{tool.builtin}: {problem}"))
    for name, effect in tool.effects.items():
        if name not in names:
            problems.append((f"effects.{name}", f"builtin {tool.builtin} has no tool {name!r} "
                             f"(its tools: {', '.join(names)})"))
        elif effect == "reversible" and tool.builtin != "files":
            problems.append((f"effects.{name}", "reversible needs a compensation, and this tool has none"))
    return problems


def _openapi_problems(tool: Any, config: Any, vault: Any, where: str) -> list[tuple[str, str]]:
    from corral.harness.tools.openapi import plan_openapi_tools

    try:
        client, _ = plan_openapi_tools(tool, config.base_dir, vault)
    except ConfigError as exc:
        return [(f"{where}.openapi", str(exc))]
    client.close()
    return []
