"""An agent made runnable: the governor, the tools the model sees, and the model, built from an agent file.

Every tool the model can call — Python functions, built-ins, the phase tools, memory — is registered
with the governance kernel, so the loop has exactly one way to run anything: through governance.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from corral.errors import ConfigError
from corral.governance.effects import IRREVERSIBLE, READ
from corral.governance.governor import Governor
from corral.harness.config import (
    AgentConfig,
    BuiltinTool,
    ClientTool,
    McpTool,
    OpenApiTool,
    PythonTool,
)
from corral.harness.context import current
from corral.harness.imports import resolve_import
from corral.harness.phase_tools import PHASE_TOOLS
from corral.harness.tools.schema import schema_from_signature

HARNESS_KEY = "harness"


@dataclass
class ExposedTool:
    """A tool as the model sees it: name, description, argument schema; the kernel knows the rest."""

    name: str
    description: str
    parameters: dict[str, Any]
    phase_tool: bool = False


# ------------------------------------------------------------------------------------------- memory


def remember(text: str, tags: str = "") -> dict[str, Any]:
    """Keep a fact for later sessions (long-term memory, per agent and principal)."""
    ctx = current()
    memory_id = ctx.harness.memory.remember(ctx.session.principal, text, tags)
    return {"remembered": memory_id}


def recall(query: str, limit: int = 5) -> dict[str, Any]:
    """Search long-term memory for facts kept in earlier sessions."""
    ctx = current()
    return {"memories": ctx.harness.memory.recall(ctx.session.principal, query, limit)}


# ---------------------------------------------------------------------------------------- the agent


def governor_from_config(
    config: AgentConfig,
    *,
    store: Any = None,
    approver: Callable[..., Any] | None = None,
    clock: Callable[..., Any] | None = None,
) -> Governor:
    """The governance kernel an agent file declares (no tools registered): every enforcement point —
    the harness, the MCP proxy, the Claude Code hook — builds its governor here, so one policy means
    the same thing everywhere."""
    gov_cfg = config.governance
    return Governor(
        agent=config.name,
        budget=gov_cfg.budget,
        rules=config.governor_rules(),
        store=store if store is not None else config.store,
        approver=approver,
        gates=gov_cfg.gates,
        phases=config.phases,
        clock=clock,
        tenant=gov_cfg.tenant,
        redact=gov_cfg.audit.redact,
        approval_ttl=gov_cfg.approvals.timeout,
        allow_self_approval=gov_cfg.approvals.self_approval,
    )


class Harness:
    """The runnable agent. ``run(prompt)`` is in ``corral.harness.loop``; this class only assembles."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: Any = None,
        principal: str | None = None,
        roles: tuple[str, ...] = (),
        approver: Callable[..., Any] | None = None,
        model: Any = None,
        clock: Callable[..., Any] | None = None,
        recover: bool = True,
        tracer: Any = None,
        require_model: bool = True,
    ) -> None:
        self.config = config
        self.principal = principal or os.environ.get("USER") or _user()
        self.roles = tuple(roles)
        self.governor = governor_from_config(config, store=store, approver=approver, clock=clock)
        from corral.harness.telemetry import Telemetry

        self.telemetry = Telemetry(config.name, exporter=config.telemetry.exporter,
                                   endpoint=config.telemetry.endpoint, tracer=tracer)
        self.tools: dict[str, ExposedTool] = {}
        self.builtin_cache: dict[tuple[str, str], Any] = {}
        self.defer_irreversible = True
        self._mcp_clients: list[Any] = []
        self.resources: list[Any] = []  # closed with the harness (an OpenAPI client, the browser)
        self.session_enders: list[Callable[[str], None]] = []  # called when a session's run ends
        from corral.harness.tools.credentials import Vault

        self.vault = Vault.from_config(config)
        self.skills: Any = None
        self.client_tools: dict[str, Any] = {}  # name → its entry; the caller runs them
        self.client_handles: dict[str, Any] = {}  # decision id → the open CallHandle, in this process
        self._register_phase_tools()
        for index, tool in enumerate(config.tools):
            try:
                if isinstance(tool, PythonTool):
                    self._register_python(tool)
                elif isinstance(tool, BuiltinTool):
                    self._register_builtin(tool)
                elif isinstance(tool, McpTool):
                    self._register_mcp(tool)
                elif isinstance(tool, OpenApiTool):
                    from corral.harness.tools.openapi import register_openapi

                    register_openapi(self, tool)
                elif isinstance(tool, ClientTool):
                    from corral.harness.tools.client import register_client_tool

                    register_client_tool(self, tool)
            except ConfigError as exc:
                self.close()
                raise ConfigError(f"{config.source}: tools[{index}]: {exc}") from None
        if config.skills:
            from corral.harness.tools.skills import register_skills

            try:
                register_skills(self)
            except ConfigError as exc:
                self.close()
                raise ConfigError(f"{config.source}: {exc}") from None
        if config.memory.long_term:
            from corral.harness.memory import LongTermMemory

            self.memory = LongTermMemory(self.governor.store, config.name)
            # the agent's own notebook, not the world: remembering is allowed in every phase (a rule
            # can still target it), so it is declared a read
            for fn in (remember, recall):
                self.expose(fn.__name__, fn, READ)
        self.model = model
        self.fallback_model = None
        if self.model is None and config.model is None and require_model:
            raise ConfigError(f"{config.source}: no model: — this agent file can govern (mcp-proxy, hook) "
                              "but not run an agent loop")
        if self.model is None and config.model is not None:
            from corral.harness.models.providers import make_model

            self.model = make_model(config.model.model_dump(), base_dir=config.base_dir)
            if config.model.fallback is not None:
                fallback = {**config.model.model_dump(), **config.model.fallback.model_dump(exclude_none=True)}
                fallback.pop("fallback", None)
                self.fallback_model = make_model(fallback, base_dir=config.base_dir)
        self.recovery = self.governor.recover() if recover else None

    # --------------------------------------------------------------------------------- registration

    def expose(
        self,
        name: str,
        fn: Callable[..., Any],
        effect: str,
        *,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        phase_tool: bool = False,
        **options: Any,
    ) -> None:
        """Register a tool with the kernel and show it to the model (name, description, argument schema)."""
        options = {k: v for k, v in options.items() if v is not None}
        self.governor.register(name, fn, effect=effect, **options)
        doc = description or (fn.__doc__ or "").strip().split("\n")[0] or name
        self.tools[name] = ExposedTool(name, doc, parameters or schema_from_signature(fn), phase_tool)


    def _register_phase_tools(self) -> None:
        for name, fn in PHASE_TOOLS.items():
            params = schema_from_signature(fn)
            if name == "propose_plan":
                params["properties"]["steps"] = {
                    "type": "array",
                    "items": {"type": "object", "properties": {"tool": {"type": "string"}, "args": {"type": "object"}},
                              "required": ["tool"]},
                }
            self.expose(name, fn, READ, parameters=params, phase_tool=True)

    def _register_python(self, tool: PythonTool) -> None:
        fn = resolve_import(tool.python, self.config.base_dir)
        name = tool.name or tool.python.rsplit(":", 1)[1].rsplit(".", 1)[-1]
        compensate = resolve_import(tool.compensate, self.config.base_dir) if tool.compensate else None
        self.expose(
            name, fn, tool.effect or IRREVERSIBLE, description=tool.description, compensate=compensate,
            cost=tool.cost, retryable=tool.retryable, compensate_unknown=tool.compensate_unknown,
            **tool.flow_options(),
        )

    def _register_builtin(self, tool: BuiltinTool) -> None:
        from corral.harness.checks import builtin_problems

        problems = builtin_problems(tool, self.config)
        if problems:
            raise ConfigError("; ".join(f"{key}: {message}" for key, message in problems))
        if tool.builtin == "browser":
            from corral.harness.tools.browser_tools import register_browser

            register_browser(self, tool)
            return
        from corral.harness.tools.session_builtins import for_harness

        flow = tool.flow_options()
        for builtin in for_harness(self, tool.builtin, timeout=tool.timeout):
            effect = tool.effects.get(builtin.name) or tool.effect or builtin.effect
            self.expose(builtin.name, builtin.fn, effect, description=builtin.description,
                        parameters=builtin.parameters, compensate=builtin.compensate, **flow)

    def _register_mcp(self, tool: McpTool) -> None:
        from corral.harness.tools.mcp import register_mcp_tools

        self._mcp_clients.append(register_mcp_tools(self, tool))

    # ------------------------------------------------------------------------------------- helpers

    def allowed(self, name: str) -> bool:
        """``allowed_tools`` filters what the model may call; phase tools are always allowed."""
        from fnmatch import fnmatchcase

        tool = self.tools.get(name)
        if tool is None:
            return False
        return tool.phase_tool or any(fnmatchcase(name, pattern) for pattern in self.config.allowed_tools)

    def model_price(self, model: Any) -> tuple[Decimal, Decimal]:
        cfg = self.config.model
        if cfg is None:
            return Decimal(0), Decimal(0)
        price = cfg.price
        if model is self.fallback_model and cfg.fallback is not None and cfg.fallback.price is not None:
            price = cfg.fallback.price
        return Decimal(str(price.input_per_mtok)), Decimal(str(price.output_per_mtok))

    def workspace_for(self, session_id: str) -> Path:
        base = Path(self.config.workspace) if self.config.workspace else Path(".corral") / "workspaces"
        if not base.is_absolute() and self.config.workspace:
            base = self.config.base_dir / base
        path = base / session_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def end_session(self, session_id: str) -> None:
        """A session's run is over: release what it held (its browser context)."""
        for end in self.session_enders:
            try:
                end(session_id)
            except Exception:
                pass

    def close(self) -> None:
        for client in [*self._mcp_clients, *self.resources]:
            try:
                client.close()
            except Exception:
                pass
        self.vault.close()
        self.governor.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "user"
