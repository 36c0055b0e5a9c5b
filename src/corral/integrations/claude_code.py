"""Claude Code's PreToolUse / PostToolUse hook: the kernel decides before Claude Code runs a tool.

Claude Code runs ``corral hook claude-code --agent AGENT.yaml`` once per event, a new process each time,
with the event JSON on stdin (DESIGN §12). Claude Code's ``session_id`` is the corral session id, so the
phase, plan, budget and audit chain of a Claude Code session live in the agent's store and outlast every
hook process::

    PreToolUse   decide: prepare (tool, phase, plan, budget, rules) → authorize → record the decision
                 durably, tagged with the ``tool_use_id``; inside a commit, snapshot the file an edit will
                 change and log the step's INTENT. Answer ``allow`` / ``deny`` / ``ask``.
    PostToolUse  settle: find the decision by ``tool_use_id`` (an index file beside the store, else the
                 chain itself), settle its reservation at its cost, append the outcome (``ok``, or
                 ``error`` from PostToolUseFailure or the response) and log the step DONE or FAILED —
                 one store batch. A failed step leaves the commit open: Claude Code retries failed
                 edits routinely, so rolling back stays a person's decision (``s.end_commit(exc)``).

Anything that goes wrong — input that is not JSON, a missing field, a store that cannot be opened, the
hook's own deadline — denies: exit status 2 with the reason on stderr (DESIGN §9). Claude Code treats
any *other* failure of a hook (a crash, its own timeout) as "carry on", so the hook keeps its own
deadline well inside Claude Code's, and ``corral hook install`` appends ``|| exit 2`` to the command.

Claude Code's tools get effects here: ``Read``, ``Grep``, ``Glob``… are reads; ``Edit``, ``Write``,
``MultiEdit`` and ``NotebookEdit`` are reversible (undone by restoring the file from the snapshot taken
in PreToolUse); ``Bash`` and anything unknown are irreversible; ``mcp__server__tool`` takes its effect
from that server's ``mcp:`` entry (``effects:``). The agent file can override: ``builtin: shell`` with
``effect:`` sets Bash's, ``builtin: files`` with ``effect:`` sets the file tools'. ``allowed_tools``
limits what Claude Code may call at all: anything else is refused as an unknown tool.

PreToolUse is the kernel's ``begin_call`` (decide now); PostToolUse finishes the call in a later process.

Imports stay lazy: a hook answers in one process start, so only what a decision needs is loaded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ApprovalDenied, ApprovalPending, Blocked, ConfigError, GovernanceError, PhaseError
from corral.governance import refusals

if TYPE_CHECKING:
    from corral.governance.governor import Governor
    from corral.governance.pipeline import PendingCall
    from corral.harness.config import AgentConfig

READ = "read"
REVERSIBLE = "reversible"
IRREVERSIBLE = "irreversible"

PRE = "PreToolUse"
POST = "PostToolUse"
POST_FAILURE = "PostToolUseFailure"
EVENTS = (PRE, POST, POST_FAILURE)

#: How long the hook may take before it gives up and denies (seconds). Claude Code's own timeout,
#: which ``corral hook install`` sets to ``INSTALL_TIMEOUT``, must be longer: a hook Claude Code kills
#: does not block the tool.
DEADLINE = 10.0
INSTALL_TIMEOUT = 30

#: A commit opened for a Claude Code session belongs to the session, not to a hook process (each one
#: exits at once). Every hook call renews this lease; recovery rolls the commit back only once it lapses.
LEASE_SECONDS = 3600.0

#: Kept in the transaction log per step: a Bash command's output can be large, the log needs a glimpse.
RESULT_CHARS = 2000


# ======================================================================================================
# The split pipeline: decide now, let the framework run the tool, settle after
# ======================================================================================================


def refusal_message(exc: GovernanceError, tool: str | None = None, *, session_id: str | None = None,
                    agent: str | None = None) -> str:
    """A refusal as a framework's tool result reads it (``refusals.message``)."""
    return refusals.message(exc, tool, session_id=session_id, agent=agent)


# ======================================================================================================
# Claude Code's tools and their effects
# ======================================================================================================

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


def _runs_in_claude_code(**tool_input: Any) -> Any:
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


class _LazyImport:
    """A ``module:function`` compensation imported when it is first needed, not on every hook call."""

    def __init__(self, ref: str, base_dir: Path) -> None:
        self.ref = ref
        self.base_dir = base_dir
        self.__name__ = ref.rpartition(":")[2]
        self._fn: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._fn is None:
            from corral.harness.config import resolve_import

            self._fn = resolve_import(self.ref, self.base_dir)
        return self._fn(*args, **kwargs)


@dataclass(frozen=True)
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


def declare_tool(name: str, facts: AgentFacts, snapshots: FileSnapshots | None = None) -> ToolDeclaration | None:
    """The declaration of Claude Code tool ``name`` under an agent file, or None when it is not allowed."""
    from fnmatch import fnmatchcase

    if not any(fnmatchcase(name, pattern) for pattern in facts.allowed_tools):
        return None
    base_dir = Path(facts.base_dir)
    options: dict[str, Any] = {}
    if name in BUILTIN_EFFECTS:
        effect, source = BUILTIN_EFFECTS[name], "Claude Code built-in"
        builtin = "shell" if name == "Bash" else "files" if name in FILE_TOOLS else None
        for entry in facts.tools:
            if entry["kind"] == "builtin" and entry["builtin"] == builtin and entry.get("effect") is not None:
                effect, source = entry["effect"], f"builtin: {builtin} in the agent file"
        if name in FILE_WRITERS and effect == REVERSIBLE:
            if snapshots is None:
                raise ConfigError(f"{name} is reversible, which needs file snapshots to undo it")
            options = {"compensate": snapshots.restore, "compensate_unknown": True}
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
            effect = chosen["effects"].get(name) or chosen["effects"].get(tool)
            if effect is not None:
                if name in chosen["cost"] or tool in chosen["cost"]:
                    options["cost"] = chosen["cost"].get(name, chosen["cost"].get(tool))
                ref = chosen["compensate"].get(name) or chosen["compensate"].get(tool)
                if ref:
                    options["compensate"] = _LazyImport(ref, base_dir)
                return ToolDeclaration(name, effect, options, f"mcp server {server!r} in the agent file")
        return ToolDeclaration(name, IRREVERSIBLE, options, f"mcp server {server!r}: no effect declared")
    for entry in facts.tools:
        if entry["kind"] != "python" or entry["name"] != name:
            continue
        if entry.get("cost") is not None:
            options["cost"] = entry["cost"]
        if entry.get("compensate"):
            options["compensate"] = _LazyImport(entry["compensate"], base_dir)
        options["retryable"] = entry.get("retryable", False)
        options["compensate_unknown"] = entry.get("compensate_unknown", False)
        return ToolDeclaration(name, entry.get("effect") or IRREVERSIBLE, options, f"python: {entry['python']}")
    return ToolDeclaration(name, IRREVERSIBLE, options, "not described anywhere")


# ======================================================================================================
# What the hook needs from an agent file, in plain values (validated once, cached)
# ======================================================================================================


@dataclass(frozen=True)
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
                })
            elif isinstance(entry, McpTool):
                tools.append({"kind": "mcp", "prefix": entry.prefix, "effects": dict(entry.effects),
                              "cost": dict(entry.cost), "compensate": dict(entry.compensate)})
            elif isinstance(entry, BuiltinTool):
                tools.append({"kind": "builtin", "builtin": entry.builtin, "effect": entry.effect})
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
            rules=tuple(str(p.resolve()) for p in config.rule_sources()),
            approval_ttl=gov.approvals.timeout,
            allow_self_approval=gov.approvals.allow_self_approval,
            redact=tuple(gov.audit.redact),
            tenant=gov.tenant,
            tools=tuple(tools),
        )

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgentFacts:
        fields = dict(data)
        for key in ("allowed_tools", "rules", "redact", "tools"):
            fields[key] = tuple(fields[key])
        return cls(**fields)

    def governor(self, *, store: Any = None, approver: Callable[..., Any] | None = None,
                 clock: Callable[..., Any] | None = None) -> Governor:
        """The governor the agent file declares — the same mapping as ``harness.runtime.governor_from_config``."""
        from corral.governance.governor import Governor

        return Governor(
            agent=self.name,
            budget=self.budget,
            rules=[Path(r) for r in self.rules] or None,
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
        """Files the governed agent must not change through its file tools: the policy and corral's state."""
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


_FACTS_VERSION = 1


# ======================================================================================================
# File snapshots: how an Edit is undone
# ======================================================================================================


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


def state_dir(base: str | Path | None = None) -> Path:
    """Where the hook keeps snapshots and per-session locks: ``.corral/claude-code`` in the working directory
    (the project directory under Claude Code), like the default store."""
    if base is not None:
        return Path(base).resolve()
    env = os.environ.get("CORRAL_CLAUDE_CODE_DIR")
    return Path(env).resolve() if env else (Path.cwd() / ".corral" / "claude-code")


# ======================================================================================================
# An agent file, seen from Claude Code
# ======================================================================================================


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
    ) -> None:
        self.facts = config if isinstance(config, AgentFacts) else AgentFacts.from_config(config)
        self.state = state_dir(state)
        self.snapshots = FileSnapshots(self.state / "snapshots")
        self.governor = self.facts.governor(store=store, approver=approver, clock=clock)
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
        try:
            self.governor.register(name, _runs_in_claude_code, effect=declaration.effect, **declaration.options)
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
        return self.governor.session(_principal(principal), roles, id=session_id, create=True)

    def is_protected(self, path: Path) -> bool:
        resolved = path.resolve()
        return any(resolved == p or resolved.is_relative_to(p) for p in self.facts.protected(self.state))

    def close(self) -> None:
        self.governor.close()


def build_governor(config: AgentConfig | AgentFacts, **options: Any) -> Governor:
    """The governor for a Claude Code agent (see ``ClaudeCodeAgent``); ``options`` as there."""
    return ClaudeCodeAgent(config, **options).governor


# ======================================================================================================
# The hook
# ======================================================================================================


class HookInputError(ValueError):
    """The event on stdin is not what Claude Code sends."""


@dataclass(frozen=True)
class HookResult:
    """What the hook process says: its exit status, its stdout (JSON for Claude Code) and its stderr."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    decision: str | None = None  # allow | deny | ask, or None after PostToolUse
    reason: str = ""

    @classmethod
    def answer(cls, decision: str, reason: str) -> HookResult:
        body = {"hookSpecificOutput": {"hookEventName": PRE, "permissionDecision": decision,
                                       "permissionDecisionReason": reason}}
        return cls(0, json.dumps(body), "", decision, reason)

    @classmethod
    def refuse(cls, reason: str) -> HookResult:
        """Fail closed: exit 2 blocks the tool and shows Claude the reason."""
        return cls(2, "", f"corral: {reason}\n", "deny", reason)


def parse_event(text: str | bytes) -> dict[str, Any]:
    """Parse and check the event JSON; raises ``HookInputError`` naming what is wrong."""
    try:
        event = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HookInputError(f"the hook input is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise HookInputError(f"the hook input is a JSON {type(event).__name__}, not an object")
    name = event.get("hook_event_name")
    if name not in EVENTS:
        raise HookInputError(f"hook_event_name is {name!r}; this hook handles {', '.join(EVENTS)}")
    for key in ("session_id", "tool_name", "tool_use_id"):
        value = event.get(key)
        if not isinstance(value, str) or not value.strip():
            raise HookInputError(f"{key} is missing or not a non-empty string (got {value!r})")
    if len(event["session_id"]) > 200:
        raise HookInputError("session_id is longer than 200 characters")
    if not isinstance(event.get("tool_input"), dict):
        raise HookInputError(f"tool_input is missing or not an object (got {event.get('tool_input')!r})")
    return event


@contextmanager
def session_lock(root: Path, session_id: str) -> Iterator[None]:
    """One hook at a time per session: Claude Code may run tools in parallel, and a decision reads and
    writes the session (its plan's used steps, its transaction)."""
    import hashlib

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the store's own atomicity is all there is
        yield
        return
    folder = root / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(session_id.encode()).hexdigest()[:32] + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _principal(principal: str | None) -> str:
    return principal or os.environ.get("USER") or os.environ.get("USERNAME") or "claude-code"


def _edited_path(tool: str, tool_input: Mapping[str, Any], cwd: str | None) -> Path:
    raw = tool_input.get("notebook_path" if tool == "NotebookEdit" else "file_path")
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{tool} has no file path in its input")
    path = Path(raw)
    if not path.is_absolute():
        path = Path(cwd or os.getcwd()) / path
    return path


class Hook:
    """One agent file's Claude Code hook. ``handle(event)`` returns the ``HookResult`` for one event.

    ``store``, ``clock`` and ``state`` override the agent file's store, the clock and the state
    directory (tests; ``corral hook claude-code --store``).
    """

    def __init__(
        self,
        agent: str | Path,
        *,
        store: Any = None,
        principal: str | None = None,
        roles: tuple[str, ...] = (),
        clock: Callable[..., Any] | None = None,
        state: str | Path | None = None,
    ) -> None:
        self.agent_path = Path(agent)
        self.store = store
        self.principal = _principal(principal)
        self.roles = tuple(roles)
        self.clock = clock
        self.state = state_dir(state)

    # ------------------------------------------------------------------------------------ dispatch

    def handle(self, event: Mapping[str, Any]) -> HookResult:
        """Decide (PreToolUse) or settle (PostToolUse). Never raises: a fault is an exit-2 refusal."""
        try:
            if event.get("hook_event_name") == PRE:
                return self._pre(event)
            return self._post(event)
        except HookInputError as exc:
            return HookResult.refuse(str(exc))
        except GovernanceError as exc:
            return HookResult.refuse(f"governance refused: {exc}")
        except Exception as exc:
            return HookResult.refuse(f"governance fault, so the call is refused: {type(exc).__name__}: {exc}")

    def handle_text(self, text: str | bytes) -> HookResult:
        try:
            event = parse_event(text)
        except HookInputError as exc:
            return HookResult.refuse(str(exc))
        return self.handle(event)

    # -------------------------------------------------------------------------------------- decide

    def _load(self) -> ClaudeCodeAgent:
        # The rules are parsed by the governor on every call, so a missing or broken rules file refuses
        # every call; the agent file itself is validated whenever it changes (see ``load_facts``).
        facts = load_facts(self.agent_path, self.state)
        return ClaudeCodeAgent(facts, store=self.store, clock=self.clock, state=self.state)

    def _pre(self, event: Mapping[str, Any]) -> HookResult:
        sid, tool, tool_use = event["session_id"], event["tool_name"], event["tool_use_id"]
        tool_input = dict(event["tool_input"])
        agent = self._load()
        gov = agent.governor
        try:
            with session_lock(self.state, sid):
                session = self._session(agent, sid, event)
                now = gov.now()
                gov.store.release_expired(now)
                tx = session.open_transaction
                if tx is not None:
                    self._renew_lease(gov, tx.id, sid, now)
                declaration = agent.ensure_tool(tool)
                if declaration is not None and tool in FILE_WRITERS:
                    target = _edited_path(tool, tool_input, event.get("cwd"))
                    if agent.is_protected(target):
                        refusal = self._protect(gov, session, tool, tool_input, declaration, target)
                        return HookResult.answer("deny", self._explain(refusal, sid, "corral blocked this call"))
                scopes = [[key, str(limit)] for _, key, limit in gov.scope_limits(sid)]
                annotate = {"claude_code": {"tool_use_id": tool_use}}

                def snapshot(pc: PendingCall, key: str) -> None:
                    if tool in FILE_WRITERS and agent.declarations[tool].effect == REVERSIBLE:
                        agent.snapshots.take(key, _edited_path(tool, tool_input, event.get("cwd")))

                from corral.governance.calls import begin_call

                try:
                    handle = begin_call(session, tool, tool_input, tx=session.open_transaction, annotate=annotate,
                                        durable=True, before_step=snapshot)
                except ApprovalPending as exc:
                    if session.open_transaction is not None:  # the lease, not the pause, keeps it alive
                        gov.store.update_transaction(session.open_transaction.id, {"paused_for": None})
                    record = exc.trace.to_dict() if exc.trace is not None else {}
                    self._remember(sid, tool_use, {
                        "decision": record.get("id"), "verdict": "pending", "approval": exc.approval_id,
                        "principal": record.get("principal"), "tx": record.get("tx"), "effect": record.get("effect"),
                        "estimate": str(_estimate(agent, tool)), "scopes": scopes, "reservation": None,
                    })
                    return HookResult.answer("ask", self._explain(exc, sid, "corral needs a person's approval"))
                except (Blocked, ApprovalDenied, PhaseError, ConfigError) as exc:
                    return HookResult.answer("deny", self._explain(exc, sid, "corral blocked this call"))
                record = handle.trace.to_dict()
                key = handle.idempotency_key
                self._remember(sid, tool_use, {
                    "decision": record["id"], "verdict": record["decision"], "approval": record.get("approval"),
                    "principal": record.get("principal"), "tx": record.get("tx"), "effect": record.get("effect"),
                    "estimate": str(handle.estimate), "scopes": scopes, "reservation": handle.reservation,
                    "step": None if key is None else {"seq": int(key.rsplit(":", 1)[1]), "key": key,
                                                      "args": tool_input},
                })
                verdict = {"allowed": "allowed", "flagged": "allowed, flagged for review",
                           "approved": "approved"}.get(record["decision"], record["decision"])
                return HookResult.answer("allow", f"corral: {verdict}: {record['reason']} [trace {record['id']}]")
        finally:
            if self.store is None or isinstance(self.store, str):
                agent.close()

    @staticmethod
    def _protect(gov: Any, session: Any, tool: str, tool_input: Mapping[str, Any], declaration: ToolDeclaration,
                 target: Path) -> GovernanceError:
        """A traced refusal: the governed agent may not rewrite its own policy or corral's records."""
        from corral.governance.pipeline import refusal_record, refuse

        record = refusal_record(session, tool, declaration.effect, dict(tool_input))
        detail = f"{target} is corral's policy or state for this agent"
        return refuse(session, record, f"{tool} may not change {target}: it is corral's own policy or state",
                      [{"check": "protect", "passed": False, "detail": detail}])

    def _explain(self, exc: GovernanceError, sid: str, head: str) -> str:
        trace = getattr(exc, "trace", None)
        where = f" [trace {trace.id}]" if trace is not None and getattr(trace, "id", None) else ""
        hint = refusals.hint(exc, session_id=sid, agent=str(self.agent_path))
        return f"{head}: {exc}. What to do: {hint}.{where}"

    def _session(self, agent: ClaudeCodeAgent, sid: str, event: Mapping[str, Any]) -> Any:
        gov = agent.governor
        fresh = gov.store.get_session(sid) is None
        session = agent.session(sid, self.principal, self.roles)
        if fresh:
            record = gov.store.get_session(sid) or {}
            record["claude_code"] = {"cwd": event.get("cwd"), "transcript_path": event.get("transcript_path"),
                                     "agent_file": str(self.agent_path.resolve())}
            gov.store.put_session(record)
        return session

    @staticmethod
    def _renew_lease(gov: Any, tx_id: str, sid: str, now: Any) -> None:
        from datetime import timedelta

        from corral.governance.traces import iso

        gov.store.update_transaction(
            tx_id,
            {"owner": {"kind": "claude-code-session", "session": sid, "host": None, "pid": None},
             "lease_until": iso(now + timedelta(seconds=LEASE_SECONDS))},
        )

    # -------------------------------------------------------------------------------------- settle

    def _store_url(self) -> Any:
        """PostToolUse needs only the store, not a governor: no rules are compiled to settle a call."""
        if self.store is not None:
            return self.store
        return load_facts(self.agent_path, self.state).store

    def _pending_path(self, sid: str, tool_use: str) -> Path:
        import hashlib

        folder = hashlib.sha256(sid.encode()).hexdigest()[:32]
        name = hashlib.sha256(tool_use.encode()).hexdigest()[:32]
        return self.state / "pending" / folder / f"{name}.json"

    def _remember(self, sid: str, tool_use: str, entry: dict[str, Any]) -> None:
        """What PostToolUse needs to settle this call (its reservation, its step), filed by ``tool_use_id``.

        An index beside the store, not the record: the decision itself is already durable in the chain,
        tagged with the ``tool_use_id``, and PostToolUse falls back to it if this file is lost."""
        path = self._pending_path(sid, tool_use)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, path)

    def _post(self, event: Mapping[str, Any]) -> HookResult:
        from corral.store import open_store

        store = open_store(self._store_url())
        try:
            with session_lock(self.state, event["session_id"]):
                return self._settle(store, event)
        finally:
            if store is not self.store:
                store.close()

    def _settle(self, store: Any, event: Mapping[str, Any]) -> HookResult:
        from datetime import UTC, datetime, timedelta
        from decimal import Decimal

        from corral.governance.traces import iso
        from corral.ids import new_id
        from corral.store import Append, LogStep, Settle

        sid, tool, tool_use = event["session_id"], event["tool_name"], event["tool_use_id"]
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        failed, error = _failure(event)
        index = self._pending_path(sid, tool_use)
        try:
            entry = json.loads(index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            entry = self._find_decision(store, sid, tool_use)
            if entry is None:
                store.append(sid, {
                    "id": new_id(), "kind": "unmatched", "ts": iso(now), "session": sid, "tool": tool,
                    "decision": None, "args": {}, "checks": [],
                    "reason": f"{tool} ran without a governed PreToolUse decision (tool_use_id {tool_use})",
                    "outcome": {"status": "error" if failed else "ok", "cost": 0.0, "duration_ms": None,
                                "error": error},
                }, durable=True)
                return HookResult.refuse(f"{tool} ran, but corral recorded no PreToolUse decision for tool use "
                                         f"{tool_use}: it was not governed (is the PreToolUse hook installed?)")
            if entry.get("settled"):
                return HookResult(0)  # Post arrived twice
        cost = Decimal(0) if failed else Decimal(entry.get("estimate") or "0")
        verdict = entry.get("verdict")
        ops: list[Any] = []
        note = None
        if verdict in ("allowed", "flagged", "approved"):
            if entry.get("reservation"):
                ops.append(Settle(entry["reservation"], cost))
        elif verdict == "pending":
            # "ask" put the question to the person at Claude Code's prompt, and they said yes.
            note = "approved at Claude Code's permission prompt"
            if entry.get("approval"):
                store.resolve_approval(entry["approval"], "pending", {
                    "status": "used", "approved": True, "approver": f"{entry.get('principal')} (Claude Code prompt)",
                    "decided": iso(now), "decision_reason": note,
                })
            scopes = [(key, Decimal(limit)) for key, limit in entry.get("scopes") or ()]
            if scopes and cost > 0:
                rid = store.reserve(scopes, cost, now + timedelta(seconds=60))
                if rid is None:
                    note += f"; its cost {cost} did not fit in the budget and is not counted"
                else:
                    ops.append(Settle(rid, cost))
        else:
            note = f"ran although corral's decision was {verdict}"
        outcome: dict[str, Any] = {"status": "error" if failed else "ok", "cost": float(cost), "duration_ms": None,
                                   "error": error}
        if note:
            outcome["note"] = note
        ops.append(Append(sid, {"id": new_id(), "kind": "outcome", "ts": iso(now), "session": sid,
                                "ref": entry["decision"], "outcome": outcome}))
        step = self._step_entry(store, tool, entry, failed, error, event.get("tool_response"), iso(now))
        if step is not None:
            ops.append(LogStep(entry["tx"], step))
        store.batch(ops)
        index.unlink(missing_ok=True)
        if verdict in ("allowed", "flagged", "approved", "pending"):
            return HookResult(0)
        return HookResult.refuse(f"{tool} {note}")

    @staticmethod
    def _find_decision(store: Any, sid: str, tool_use: str) -> dict[str, Any] | None:
        """The decision for ``tool_use`` from the chain itself, when the index file is gone."""
        records = store.records(sid)
        for record in reversed(records):
            info = record.get("claude_code")
            if record.get("kind") == "call" and isinstance(info, dict) and info.get("tool_use_id") == tool_use:
                settled = any(r.get("kind") == "outcome" and r.get("ref") == record["id"] for r in records)
                return {"decision": record["id"], "verdict": record.get("decision"), "tx": record.get("tx"),
                        "effect": record.get("effect"), "approval": record.get("approval"),
                        "principal": record.get("principal"), "estimate": "0", "scopes": [],
                        "reservation": None, "settled": settled}
        return None

    @staticmethod
    def _step_entry(store: Any, tool: str, entry: Mapping[str, Any], failed: bool, error: str | None,
                    response: Any, ts: str) -> dict[str, Any] | None:
        """DONE (or FAILED) for a transaction step, from its INTENT."""
        if not entry.get("tx") or entry.get("effect") == READ:
            return None
        step = entry.get("step")
        if step is None:
            intents = [e for e in store.steps(entry["tx"])
                       if e.get("trace") == entry["decision"] and e.get("status") == "INTENT"]
            if not intents:
                return None
            step = {"seq": intents[0]["seq"], "key": intents[0].get("key"), "args": intents[0].get("args")}
        done = {"seq": step["seq"], "tool": tool, "args": step.get("args"), "key": step.get("key"),
                "effect": entry.get("effect"), "trace": entry["decision"], "ts": ts}
        if failed:
            done.update(status="FAILED", error=error)
        else:
            done.update(status="DONE", result=_glimpse(response))
        return done


def _estimate(agent: ClaudeCodeAgent, tool: str) -> Any:
    """A tool's cost estimate, for a call that waits at Claude Code's prompt (its reservation was released)."""
    spec = agent.governor.tools.get(tool)
    cost = getattr(spec, "cost", 0) if spec is not None else 0
    return 0 if callable(cost) else cost


def _failure(event: Mapping[str, Any]) -> tuple[bool, str | None]:
    """Did the tool fail? PostToolUseFailure says so; an MCP result may say so with ``isError``."""
    if event.get("hook_event_name") == POST_FAILURE:
        error = event.get("error") or event.get("error_message") or "the tool failed"
        if event.get("is_interrupt"):
            error = f"interrupted: {error}"
        return True, str(error)
    response = event.get("tool_response")
    flagged = isinstance(response, dict) and (
        response.get("isError") is True or response.get("is_error") is True or response.get("success") is False)
    if flagged:
        return True, _glimpse(response.get("error") or response.get("content") or "the tool reported an error")
    return False, None


def _glimpse(value: Any) -> Any:
    """A JSON value small enough for the transaction log."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + f"… ({len(text)} characters)"


# ======================================================================================================
# The process: stdin → decision → stdout / stderr / exit status, inside a deadline
# ======================================================================================================


class _Deadline(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise inside the block after ``seconds`` (main thread, POSIX); elsewhere the block just runs."""
    import signal
    import threading

    if seconds <= 0 or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _Deadline(f"governance did not decide within {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(
    agent: str | Path,
    *,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    store: Any = None,
    principal: str | None = None,
    roles: tuple[str, ...] = (),
    timeout: float = DEADLINE,
) -> int:
    """The hook process: read one event, answer it, return the exit status. Never raises."""
    stdin = stdin if stdin is not None else sys.stdin
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    try:
        with deadline(timeout):
            text = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
            result = Hook(agent, store=store, principal=principal, roles=roles).handle_text(text)
    except BaseException as exc:  # the deadline, an interrupt, anything: the call does not run
        if isinstance(exc, SystemExit | KeyboardInterrupt) and not isinstance(exc, _Deadline):
            result = HookResult.refuse(f"the hook was interrupted ({type(exc).__name__})")
        else:
            result = HookResult.refuse(f"{exc}" if isinstance(exc, _Deadline) else f"governance fault: {exc!r}")
    try:
        if result.stdout:
            stdout.write(result.stdout + "\n")
            stdout.flush()
        if result.stderr:
            stderr.write(result.stderr)
            stderr.flush()
    except Exception:
        return 2
    return result.exit_code


# ======================================================================================================
# corral hook install claude-code
# ======================================================================================================

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


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised through subprocess tests
    """``python -m corral.integrations.claude_code --agent AGENT.yaml``: the hook without the CLI."""
    import argparse

    parser = argparse.ArgumentParser(prog="corral-claude-code-hook")
    parser.add_argument("--agent", required=True)
    parser.add_argument("--store")
    parser.add_argument("--as", dest="principal")
    parser.add_argument("--role", dest="roles", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=DEADLINE)
    args = parser.parse_args(argv)
    agent = Path(args.agent).resolve()
    enter_project_dir()
    return run(agent, store=args.store, principal=args.principal, roles=tuple(args.roles), timeout=args.timeout)


def enter_project_dir() -> None:
    """Relative paths (``sqlite:///.corral/corral.db``, ``.corral/claude-code``) follow the project root,
    not wherever a Bash ``cd`` left Claude Code: move to ``$CLAUDE_PROJECT_DIR`` when it is set."""
    project = os.environ.get("CLAUDE_PROJECT_DIR")
    if project and os.path.isdir(project):
        os.chdir(project)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "BUILTIN_EFFECTS",
    "ClaudeCodeAgent",
    "FileSnapshots",
    "Hook",
    "HookResult",
    "ToolDeclaration",
    "build_governor",
    "declare_tool",
    "hook_command",
    "install",
    "parse_event",
    "refusal_message",
    "run",
    "settings_path",
]
