"""The agents a server runs: each agent file made runnable once, at start, and shared by every request.

An agent with a model gets a whole harness (the loop runs there); an agent without one — a file written
for the Claude Code hook or the MCP proxy — is governance only: it answers ``/v1/check`` and cannot take
messages. Either way there is one governor per agent, on the server's one store.

Tools that enforcement points outside the server ask about (Claude Code's ``Read``, ``Edit``, ``Bash``,
an MCP server's ``mcp__server__tool``) are declared on first use exactly as the hook declares them from
the same agent file, so one policy means the same thing whether the hook decides locally or asks here.
One difference: a file edit cannot be undone by a server that does not hold the edited file, so file
writers the agent file calls reversible are governed as irreversible here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from corral.errors import ConfigError
from corral.harness.config import AgentConfig, load_agent
from corral.harness.runtime import Harness, governor_from_config
from corral.integrations.claude_code.facts import AgentFacts
from corral.integrations.claude_code.tools import FILE_WRITERS, IRREVERSIBLE, REVERSIBLE, declare_tool
from corral.integrations.framework import register_framework_tool

UNDESCRIBED = ("not described anywhere",)
UNDECLARED = ": no effect declared"


class ServedAgent:
    """One agent file, loaded: ``governor`` always, ``harness`` when the file has a model."""

    def __init__(self, config: AgentConfig, store: Any) -> None:
        self.config = config
        self.name = config.name
        self.path = Path(config.source)
        self.harness: Harness | None = None
        if config.model is not None:
            self.harness = Harness(config, store=store, recover=False)
            self.governor = self.harness.governor
        else:
            self.governor = governor_from_config(config, store=store)
        self.facts = AgentFacts.from_config(config)
        self._declare_lock = threading.Lock()

    @property
    def model(self) -> str | None:
        model = self.config.model
        if model is None:
            return None
        return f"{model.provider}:{model.id}" if model.id else model.provider

    def tools(self) -> list[dict[str, str]]:
        """What the agent's model may call, or for a governance-only agent what its governor knows."""
        exposed = self.harness.tools if self.harness is not None else {}
        out = []
        for name, spec in sorted(self.governor.tools.items()):
            description = exposed[name].description if name in exposed else (spec.fn.__doc__ or "").strip()
            out.append({"name": name, "effect": spec.effect, "description": description.split("\n")[0]})
        return out

    def ensure_tool(self, name: str, hint: str | None = None) -> bool:
        """Make ``name`` known to the governor as the hook would; False when the agent does not allow it
        (the call is then refused as an unknown tool, with a trace). ``hint`` — the effect an MCP proxy
        read from the tool's annotations — is taken only for a tool the agent file does not describe, and
        a reversible hint without a compensation here is irreversible (§2)."""
        if name in self.governor.tools:
            return True
        with self._declare_lock:
            if name in self.governor.tools:
                return True
            try:
                declaration = declare_tool(name, self.facts, snapshots=None)
            except ConfigError:  # a reversible file writer: no snapshot of the file can be kept here
                declaration = None
                if name in FILE_WRITERS:
                    register_framework_tool(self.governor, name, IRREVERSIBLE)
                    return True
            if declaration is None:
                return False
            effect = declaration.effect
            options = dict(declaration.options)
            if hint is not None and (declaration.source in UNDESCRIBED or declaration.source.endswith(UNDECLARED)):
                effect = hint
            if effect == REVERSIBLE and "compensate" not in options:
                effect = IRREVERSIBLE
            register_framework_tool(self.governor, name, effect, **options)
            return True

    def close(self) -> None:
        if self.harness is not None:
            self.harness.close()
        else:
            self.governor.close()


def load_agents(paths: list[str], store: Any) -> dict[str, ServedAgent]:
    """Every agent file, validated and loaded; two agents with one name are a configuration error."""
    agents: dict[str, ServedAgent] = {}
    for path in paths:
        config = load_agent(path)
        if config.name in agents:
            raise ConfigError(f"{path}: agent name {config.name!r} is served already by {agents[config.name].path}")
        agents[config.name] = ServedAgent(config, store)
    return agents
