"""What the hook needs from an agent file, as plain values validated once and cached, and the governor
that file declares with Claude Code's tools registered under Claude Code's names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ConfigError
from corral.integrations.claude_code.tools import (
    BUILTIN_EFFECTS,
    FileSnapshots,
    ToolDeclaration,
    declare_tool,
    runs_in_claude_code,
)
from corral.struct import as_dict, struct

if TYPE_CHECKING:
    from corral.governance.governor import Governor
    from corral.harness.config import AgentConfig

@struct(frozen=True)
class AgentFacts:
    """The parts of an agent file that govern Claude Code, as plain JSON values.

    Made from a validated ``AgentConfig``; ``load_facts`` caches it next to the hook's state, keyed by the
    agent file's SHA-256, so a hook call validates the file with pydantic only when the file changed.
    """

    name: str
    source: str
    base_dir: str
    store: str
    phases: bool
    allowed_tools: tuple[str, ...]
    budget: Any
    gates: dict[str, float] | None
    rules: tuple[str, ...]  # absolute paths of the rules files
    rule_modes: tuple[str, ...]  # each file's mode: enforce, or shadow (§14)
    approval_ttl: float
    allow_self_approval: bool
    redact: tuple[str, ...]
    tenant: str | None
    tools: tuple[dict[str, Any], ...]

    @classmethod
    def from_config(cls, config: AgentConfig) -> AgentFacts:
        from corral.harness.config import BuiltinTool, McpTool, PythonTool

        tools: list[dict[str, Any]] = []
        for entry in config.tools:
            if isinstance(entry, PythonTool):
                tools.append({
                    "kind": "python", "python": entry.python,
                    "name": entry.name or entry.python.rsplit(":", 1)[1].rsplit(".", 1)[-1],
                    "effect": entry.effect, "cost": entry.cost, "compensate": entry.compensate,
                    "retryable": entry.retryable, "compensate_unknown": entry.compensate_unknown,
                    **entry.flow_options(),
                })
            elif isinstance(entry, McpTool):
                tools.append({"kind": "mcp", "prefix": entry.prefix, "effects": dict(entry.effects),
                              "cost": dict(entry.cost), "compensate": dict(entry.compensate),
                              "labels": entry.labels, "tags": entry.tags, "untrusted": entry.untrusted})
            elif isinstance(entry, BuiltinTool):
                tools.append({"kind": "builtin", "builtin": entry.builtin, "effect": entry.effect,
                              **entry.flow_options()})
        gov = config.governance
        return cls(
            name=config.name,
            source=config.source,
            base_dir=str(Path(config.base_dir).resolve()),
            store=config.store,
            phases=config.phases,
            allowed_tools=tuple(config.allowed_tools),
            budget=gov.budget,
            gates=dict(gov.gates) if gov.gates is not None else None,
            rules=tuple(str(p.resolve()) for p, _ in config.rule_files()),
            rule_modes=tuple(mode for _, mode in config.rule_files()),
            approval_ttl=gov.approvals.timeout,
            allow_self_approval=gov.approvals.self_approval,
            redact=tuple(gov.audit.redact),
            tenant=gov.tenant,
            tools=tuple(tools),
        )

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentFacts:
        fields = dict(data)
        for key in ("allowed_tools", "rules", "rule_modes", "redact", "tools"):
            fields[key] = tuple(fields[key])
        return cls(**fields)

    def governor(self, *, store: Any = None, approver: Callable[..., Any] | None = None,
                 clock: Callable[..., Any] | None = None, rules_cache: Path | None = None) -> Governor:
        """The governor the agent file declares — the same mapping as ``harness.runtime.governor_from_config``.

        ``rules_cache``: a directory where the parsed rules are kept between processes (the hook's state):
        the rules files are still read every time, and parsed again whenever their text changed."""
        from corral.governance.governor import Governor, rule_sources

        rules: Any = [{"file": Path(r), "mode": mode} for r, mode in zip(self.rules, self.rule_modes, strict=True)]
        rules = rules or None
        if rules and rules_cache is not None:
            from corral.governance.rules.cache import cached_policy

            rules = cached_policy(rule_sources(rules), rules_cache)
        return Governor(
            agent=self.name,
            budget=self.budget,
            rules=rules,
            store=store if store is not None else self.store,
            approver=approver,
            gates=self.gates,
            phases=self.phases,
            clock=clock,
            tenant=self.tenant,
            redact=self.redact,
            approval_ttl=self.approval_ttl,
            allow_self_approval=self.allow_self_approval,
        )

    def protected(self, state: Path) -> list[Path]:
        """Files the governed agent must not change through its file tools: the policy and corral's state
        (Claude Code's own settings too: see ``ClaudeCodeAgent.is_protected``)."""
        paths = [Path(self.source).resolve(), *(Path(r) for r in self.rules), state]
        if self.store.startswith("sqlite:"):
            from corral.store.urls import parse_sqlite_url

            try:
                db = Path(parse_sqlite_url(self.store).path)
                paths += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
            except ConfigError:
                pass
        return paths


def load_facts(agent: str | Path, state: Path | None = None) -> AgentFacts:
    """An agent file's ``AgentFacts``: from the cache when the file is unchanged, else validated anew.

    Validation is ``load_agent(check=False)``: keys, types and values are checked; python tools are not
    imported (the hook never runs them). The rules files are read and compiled by the governor each time.
    """
    import hashlib

    path = Path(agent).resolve()
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the agent file {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(content).hexdigest()
    cache = None
    if state is not None:
        cache = state / "agents" / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
        try:
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if cached.get("sha256") == digest and cached.get("version") == _FACTS_VERSION:
                return AgentFacts.from_dict(cached["facts"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from corral.harness.config import load_agent

    facts = AgentFacts.from_config(load_agent(path, check=False))
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": _FACTS_VERSION, "sha256": digest, "facts": facts.to_dict()}),
                           encoding="utf-8")
            os.replace(tmp, cache)
        except OSError:
            return facts  # a cache that cannot be written only costs time
    return facts


_FACTS_VERSION = 3



#: Claude Code's settings files (in a ``.claude`` folder): the hook's own installation.
CLAUDE_SETTINGS = frozenset({"settings.json", "settings.local.json"})


class ClaudeCodeAgent:
    """An agent file's governor with Claude Code's tools registered under Claude Code's names.

    Every process that touches a Claude Code session — the hook, ``corral phase``, ``corral recover`` —
    should build its governor here, so effects and compensations (file snapshots) are the same.
    ``config`` is an ``AgentConfig`` or the hook's cached ``AgentFacts``.
    """

    def __init__(
        self,
        config: AgentConfig | AgentFacts,
        *,
        store: Any = None,
        clock: Callable[..., Any] | None = None,
        approver: Callable[..., Any] | None = None,
        state: str | Path | None = None,
        governor: Governor | None = None,
    ) -> None:
        self.facts = config if isinstance(config, AgentFacts) else AgentFacts.from_config(config)
        self.state = state_dir(state)
        self.snapshots = FileSnapshots(self.state / "snapshots")
        self.governor = governor if governor is not None else self.facts.governor(
            store=store, approver=approver, clock=clock, rules_cache=self.state / "rules")
        self.declarations: dict[str, ToolDeclaration] = {}
        names = list(BUILTIN_EFFECTS) + [t["name"] for t in self.facts.tools if t["kind"] == "python"]
        for name in names:
            self.ensure_tool(name)

    def ensure_tool(self, name: str) -> ToolDeclaration | None:
        """Register ``name`` if the agent allows it; None means it is not allowed (an unknown tool)."""
        if name in self.declarations:
            return self.declarations[name]
        declaration = declare_tool(name, self.facts, self.snapshots)
        if declaration is None:
            return None
        if name in self.governor.tools:  # registered already, by the agent's own tools (a shared governor)
            return declaration
        try:
            self.governor.register(name, runs_in_claude_code, effect=declaration.effect, **declaration.options)
        except ConfigError as exc:
            raise ConfigError(f"{self.facts.source}: Claude Code tool {name} ({declaration.source}): {exc}") from None
        self.declarations[name] = declaration
        return declaration

    def session(self, session_id: str, principal: str | None = None, roles: tuple[str, ...] = ()) -> Any:
        """Resume Claude Code session ``session_id`` from the store, or start it under that id.

        A commit opened by another process that has not logged a step yet left no transaction record
        behind (the kernel stores a transaction at its first step): it is restored here as the open,
        empty transaction it is, instead of the session silently falling back to explore.
        """
        return self.governor.session(principal_name(principal), roles, id=session_id, create=True)

    def is_protected(self, path: Path) -> bool:
        """The policy, corral's state, and any ``.claude/settings.json`` or ``settings.local.json`` — where
        the hook itself is installed: an agent that could edit them could switch its governor off."""
        resolved = path.resolve()
        if resolved.parent.name == ".claude" and resolved.name in CLAUDE_SETTINGS:
            return True
        return any(resolved == p or resolved.is_relative_to(p) for p in self.facts.protected(self.state))

    def close(self) -> None:
        self.governor.close()


def build_governor(config: AgentConfig | AgentFacts, **options: Any) -> Governor:
    """The governor for a Claude Code agent (see ``ClaudeCodeAgent``); ``options`` as there."""
    return ClaudeCodeAgent(config, **options).governor


def state_dir(base: str | Path | None = None) -> Path:
    """Where the hook keeps snapshots and per-session locks: ``.corral/claude-code`` in the working directory
    (the project directory under Claude Code), like the default store."""
    if base is not None:
        return Path(base).resolve()
    env = os.environ.get("CORRAL_CLAUDE_CODE_DIR")
    return Path(env).resolve() if env else (Path.cwd() / ".corral" / "claude-code")


def principal_name(principal: str | None) -> str:
    """Who a Claude Code session acts for: ``--as NAME``, else the user running Claude Code."""
    return principal or os.environ.get("USER") or os.environ.get("USERNAME") or "claude-code"


def recovery_governor(config: AgentConfig, *, store: Any = None, state: str | Path | None = None) -> Governor:
    """The governor that recovers what any process left open for this agent file — its harness runs, its
    MCP proxy and its Claude Code sessions — built without a model: recovery needs the tools (with their
    compensations) and the store, nothing more. Claude Code's tools are added for the steps that name
    them (``Write`` is undone from its file snapshot)."""
    from corral.governance.transactions import OPEN, ROLLING_BACK
    from corral.harness.runtime import Harness

    harness = Harness(config, store=store, recover=False, require_model=False)
    gov = harness.governor
    claude = ClaudeCodeAgent(config, governor=gov, state=state)
    for tx in gov.store.transactions(states=[OPEN, ROLLING_BACK]):
        if tx.get("agent") in (None, gov.agent):
            for step in gov.store.steps(tx["id"]):
                claude.ensure_tool(step["tool"])
    return gov
