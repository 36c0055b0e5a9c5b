"""The agent file: one YAML document declares an agent (DESIGN §11), validated by pydantic.

``load_agent(path)`` returns an ``AgentConfig`` or raises ``AgentConfigError`` listing *every* problem
with its path in the file and the bad value — a person fixes a file once, not once per error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from corral.errors import ConfigError
from corral.harness.imports import resolve_import

EFFECT = Literal["read", "reversible", "irreversible"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"1h"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 15m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration must be ≥ 0, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like 30s, 15m or 1h, got {value!r}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Price(_Strict):
    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class Fallback(_Strict):
    id: str
    provider: str | None = None
    price: Price | None = None
    max_tokens: int | None = Field(None, gt=0)


class ModelConfig(_Strict):
    provider: Literal["scripted", "openai", "anthropic", "bedrock", "gemini"] = "scripted"
    script: str | None = None
    id: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    region: str | None = None
    max_tokens: int = Field(1024, gt=0)
    price: Price = Field(default_factory=Price)
    fallback: Fallback | None = None

    @model_validator(mode="after")
    def _needs(self) -> ModelConfig:
        if self.provider == "scripted" and not self.script:
            raise ValueError("the scripted model needs `script: path/to/script.yaml`")
        if self.provider != "scripted" and not self.id:
            raise ValueError(f"the {self.provider} model needs `id: <model id>`")
        return self


WORDS = list[str]


def _words(value: Any, what: str) -> Any:
    """``labels`` / ``tags``: a list of words (§15); the kernel's own check, with its message."""
    from corral.governance.flow import check_words

    if value is None:
        return value
    try:
        check_words(value, what, "this tool")
    except ConfigError as exc:
        raise ValueError(str(exc).replace("tool 'this tool': ", "")) from None
    return value


class _Flow(_Strict):
    """What a tool entry says about information flow (DESIGN §15): ``labels`` its results add to the
    session, ``tags`` that describe it, ``untrusted: true`` for results that may carry instructions."""

    labels: WORDS | None = None
    tags: WORDS | None = None
    untrusted: bool = False

    @field_validator("labels", "tags", mode="before")
    @classmethod
    def _check_words(cls, value: Any, info: Any) -> Any:
        return _words(value, info.field_name)

    def flow_options(self) -> dict[str, Any]:
        return {"labels": self.labels, "tags": self.tags, "untrusted": self.untrusted}


class PythonTool(_Flow):
    kind: ClassVar[str] = "python"  # the key that makes an entry of tools: this kind
    python: str
    name: str | None = None
    effect: EFFECT | None = None
    compensate: str | None = None
    cost: float | None = Field(None, ge=0)
    retryable: bool = False
    compensate_unknown: bool = False
    description: str | None = None

    @field_validator("python", "compensate")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\w.]+:[\w.]+", value):
            raise ValueError(f"expected module:function, got {value!r}")
        return value


class McpServer(_Strict):
    command: list[str] | None = None
    url: str | None = None
    env: dict[str, str] | None = None
    # over HTTP: a named credential sent as ``Authorization: Bearer …``, or in ``credential_header``
    credential: str | None = None
    credential_header: str | None = None

    @model_validator(mode="after")
    def _one(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server has exactly one of `command: [...]` or `url: http://…`")
        if self.command is not None and not self.command:
            raise ValueError("`command` must not be empty")
        if self.credential is not None and self.url is None:
            raise ValueError("`credential` is sent as an HTTP header: it needs `url:`, not `command:`")
        if self.credential_header is not None and self.credential is None:
            raise ValueError("`credential_header` names where `credential` goes: give `credential:` too")
        return self


class _ServerFlow(_Strict):
    """Information flow (§15) for an entry that brings several tools (an MCP server, an OpenAPI
    document): ``labels``/``tags`` for all of them (a list) or per tool (a mapping of tool name to a
    list), and ``untrusted: true`` when every result may carry instructions."""

    labels: WORDS | dict[str, WORDS] | None = None
    tags: WORDS | dict[str, WORDS] | None = None
    untrusted: bool = False

    @field_validator("labels", "tags", mode="before")
    @classmethod
    def _check_words(cls, value: Any, info: Any) -> Any:
        if isinstance(value, dict):
            for name, words in value.items():
                _words(words, f"{info.field_name}.{name}")
            return value
        return _words(value, info.field_name)

    def flow_for(self, name: str, upstream: str) -> dict[str, Any]:
        """The labels, tags and untrusted flag of one of its tools (``name`` as corral knows it,
        ``upstream`` as the server or document names it)."""

        def pick(table: Any) -> list[str]:
            if isinstance(table, dict):
                return list(table.get(name, table.get(upstream, [])))
            return list(table or [])

        return {"labels": pick(self.labels), "tags": pick(self.tags), "untrusted": self.untrusted}


class McpTool(_ServerFlow):
    kind: ClassVar[str] = "mcp"  # the key that makes an entry of tools: this kind
    mcp: McpServer
    prefix: str | None = None
    effects: dict[str, EFFECT] = Field(default_factory=dict)
    compensate: dict[str, str] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)


class BuiltinTool(_Flow):
    kind: ClassVar[str] = "builtin"  # the key that makes an entry of tools: this kind
    builtin: Literal["files", "shell", "python", "browser"]
    effect: EFFECT | None = None
    effects: dict[str, EFFECT] = Field(default_factory=dict)  # per tool name (the browser's)
    timeout: float | None = Field(None, gt=0)


class OpenApiSource(_Strict):
    spec: str
    base_url: str | None = None  # default: the spec's first server
    operations: list[str] = Field(default_factory=lambda: ["*"])  # operationId globs
    credential: str | None = None
    prefix: str = "api."
    timeout: float = Field(30.0, gt=0)


class OpenApiTool(_ServerFlow):
    kind: ClassVar[str] = "openapi"  # the key that makes an entry of tools: this kind
    openapi: OpenApiSource
    effects: dict[str, EFFECT] = Field(default_factory=dict)
    compensate: dict[str, str] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)


class ClientToolSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][\w.-]{0,63}$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    effect: Literal["read", "irreversible"] = "irreversible"  # nothing the harness can compensate
    cost: float | None = Field(None, ge=0)


class ClientTool(_Strict):
    kind: ClassVar[str] = "client"  # the key that makes an entry of tools: this kind
    client: ClientToolSpec


class Credential(_Strict):
    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Credential:
        if (self.env is None) == (self.file is None):
            raise ValueError("a credential is exactly one of {env: VARIABLE} or {file: PATH}")
        return self


class MemoryConfig(_Strict):
    window: int = Field(40, gt=0)  # messages
    long_term: bool = False
    truncation: Literal["sliding_window", "summarization", "none"] = "sliding_window"
    context_tokens: int | None = Field(None, gt=0)  # the model's context limit, when known


class Limits(_Strict):
    max_iterations: int = Field(30, gt=0)
    timeout_seconds: float = Field(600, gt=0)


class Approvals(_Strict):
    timeout: float = 900.0
    # The session's own principal may approve its own requests (DESIGN §6, §12): at the Claude Code
    # hook, a REQUIRE APPROVAL call is then put to the person at Claude Code's prompt (``ask``) and
    # recorded as a self-approval. ``allow_self_approval`` is the older spelling of the same switch.
    self_approve: bool = False
    allow_self_approval: bool = False

    @property
    def self_approval(self) -> bool:
        return self.self_approve or self.allow_self_approval

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Audit(_Strict):
    redact: list[str] = Field(default_factory=list)


class RulesFile(_Strict):
    """``{file: new.rules, mode: shadow}``: a rules file whose rules are evaluated and traced but not
    enforced (DESIGN §14), as if it began with ``MODE SHADOW``."""

    file: str
    mode: Literal["enforce", "shadow"] = "enforce"


class Governance(_Strict):
    budget: float | dict[Literal["session", "agent", "tenant"], float] | None = None
    gates: dict[Literal["degrade", "force_decide", "stop"], float] | None = None
    rules: str | list[str | RulesFile] | None = None
    approvals: Approvals = Field(default_factory=Approvals)
    audit: Audit = Field(default_factory=Audit)
    tenant: str | None = None


class Telemetry(_Strict):
    exporter: Literal["none", "console", "otlp"] | None = None
    endpoint: str | None = None


class AgentConfig(_Strict):
    name: str = Field(min_length=1)
    model: ModelConfig | None = None  # required to run; a governance-only file (proxy, hook) may omit it
    instructions: str = ""
    tools: list[PythonTool | McpTool | BuiltinTool | OpenApiTool | ClientTool] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)  # folders of skills, or one skill folder each
    credentials: dict[str, Credential] = Field(default_factory=dict)
    sandbox: Literal["isolated", "unisolated"] = "isolated"
    allowed_tools: list[str] = Field(default_factory=lambda: ["*"])
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    limits: Limits = Field(default_factory=Limits)
    governance: Governance = Field(default_factory=Governance)
    phases: bool = True
    store: str = "sqlite:///.corral/corral.db"
    workspace: str | None = None
    telemetry: Telemetry = Field(default_factory=Telemetry)

    # where the file lives; paths in it resolve against this
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: str = Field(default="<agent>", exclude=True)

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_kind(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        for i, item in enumerate(value):
            if isinstance(item, dict) and not (set(TOOL_KINDS) & set(item)):
                raise ValueError(f"tools[{i}] needs one of {', '.join(k + ':' for k in TOOL_KINDS)}")
        return value

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else (self.base_dir / p)

    def rule_sources(self) -> list[Path]:
        return [path for path, _ in self.rule_files()]

    def rule_files(self) -> list[tuple[Path, str]]:
        """Each rules file with its mode (``enforce`` or ``shadow``), paths resolved."""
        rules = self.governance.rules
        if rules is None:
            return []
        out = []
        for entry in [rules] if isinstance(rules, str) else rules:
            if isinstance(entry, RulesFile):
                out.append((self.path(entry.file), entry.mode))
            else:
                out.append((self.path(entry), "enforce"))
        return out

    def governor_rules(self) -> list[dict[str, Any]] | None:
        """``Governor(rules=...)`` for the agent's rules files, shadow ones included."""
        return [{"file": path, "mode": mode} for path, mode in self.rule_files()] or None


TOOL_KINDS: dict[str, type[BaseModel]] = {
    "python": PythonTool, "mcp": McpTool, "builtin": BuiltinTool, "openapi": OpenApiTool, "client": ClientTool,
}


class AgentConfigError(ConfigError):
    """An agent file with problems; ``.problems`` lists ``(path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {where}: {what}" for where, what in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("PythonTool", "McpTool", "BuiltinTool", "OpenApiTool", "ClientTool") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _pydantic_problems(exc: ValidationError) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "literal["))))
        # union errors repeat per member; keep the member that matches the tool's kind
        where = _loc(loc)
        kind = err["type"]
        value = err.get("input")
        if kind == "extra_forbidden":
            msg = f"unknown key (value {value!r})"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            shown = repr(value)
            if len(shown) > 80:
                shown = shown[:77] + "..."
            msg = f"{err['msg']} (got {shown})"
        key = (where, msg)
        if key not in seen:
            seen.add(key)
            problems.append(key)
    return problems


def _tool_union_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate each tool against the one model its kind names, for errors that point at the right key."""
    problems: list[tuple[str, str]] = []
    for i, item in enumerate(data.get("tools") or []):
        if not isinstance(item, dict):
            problems.append((f"tools[{i}]", f"expected a mapping, got {item!r}"))
            continue
        model: type[BaseModel] | None = None
        for key, kind in TOOL_KINDS.items():
            if key in item:
                model = kind
                break
        if model is None:
            problems.append((f"tools[{i}]", f"needs one of {', '.join(k + ':' for k in TOOL_KINDS)}"))
            continue
        try:
            model.model_validate(item)
        except ValidationError as exc:
            for where, msg in _pydantic_problems(exc):
                problems.append((f"tools[{i}].{where}" if where != "(top level)" else f"tools[{i}]", msg))
    return problems


def _semantic_problems(config: AgentConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if config.model is not None and config.model.provider == "scripted" and config.model.script:
        script = config.path(config.model.script)
        if not script.is_file():
            problems.append(("model.script", f"file not found: {config.model.script}"))
    for i, (path, mode) in enumerate(config.rule_files()):
        where = "governance.rules" + (f"[{i}]" if isinstance(config.governance.rules, list) else "")
        if not path.is_file():
            problems.append((where, f"file not found: {path}"))
            continue
        try:
            from corral.governance.rules import Policy

            Policy.from_sources([(path.read_text(encoding="utf-8"), str(path), mode)])
        except ConfigError as exc:  # RuleSyntaxError is a ConfigError-like ValueError
            problems.append((where, str(exc)))
        except ValueError as exc:
            problems.append((where, str(exc)))
    for i, tool in enumerate(config.tools):
        if isinstance(tool, PythonTool):
            for key in ("python", "compensate"):
                ref = getattr(tool, key)
                if ref is None:
                    continue
                try:
                    resolve_import(ref, config.base_dir)
                except ConfigError as exc:
                    problems.append((f"tools[{i}].{key}", str(exc)))
            if tool.effect == "reversible" and tool.compensate is None:
                problems.append(
                    (f"tools[{i}].compensate", f"{tool.python} is reversible but has no compensation")
                )
        elif isinstance(tool, McpTool):
            for name, ref in tool.compensate.items():
                if not re.fullmatch(r"[\w.]+:[\w.]+", ref):
                    problems.append((f"tools[{i}].compensate.{name}", f"expected module:function, got {ref!r}"))
                    continue
                try:
                    resolve_import(ref, config.base_dir)
                except ConfigError as exc:
                    problems.append((f"tools[{i}].compensate.{name}", str(exc)))
            for name, effect in tool.effects.items():
                if effect == "reversible" and name not in tool.compensate:
                    problems.append(
                        (f"tools[{i}].effects.{name}", "reversible but no compensation under compensate:")
                    )
    try:
        from corral.governance.budget import parse_budget, parse_gates

        parse_budget(config.governance.budget)
        parse_gates(config.governance.gates)
    except ConfigError as exc:
        problems.append(("governance", str(exc)))
    from corral.harness.checks import environment_problems

    problems += environment_problems(config)
    if not config.store.startswith(("sqlite:", "postgresql:", "postgres:", "memory")):
        problems.append(("store", f"unknown store URL {config.store!r}; expected sqlite:///… or postgresql://…"))
    return problems


def load_agent(path: str | Path, *, check: bool = True) -> AgentConfig:
    """Read, validate and (with ``check``) cross-check an agent file. Raises ``AgentConfigError``."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentConfigError(source, [("(file)", exc.strerror or str(exc))]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise AgentConfigError(source, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise AgentConfigError(source, [("(top level)", f"expected a mapping of keys, got {type(data).__name__}")])
    try:
        config = AgentConfig.model_validate({**data, "base_dir": path.parent, "source": source})
    except ValidationError as exc:
        problems = [p for p in _pydantic_problems(exc) if not p[0].startswith("tools[")]
        problems += _tool_union_problems(data)
        raise AgentConfigError(source, problems or _pydantic_problems(exc)) from None
    if check:
        problems = _semantic_problems(config)
        if problems:
            raise AgentConfigError(source, problems)
    return config


_BUILTIN_TOOLS = {
    "files": ("read_file", "list_files", "write_file", "edit_file"),
    "shell": ("shell",),
    "python": ("python",),
    "browser": ("browser_navigate", "browser_snapshot", "browser_screenshot", "browser_click", "browser_type",
                "browser_submit"),
}
PHASE_TOOLS = ("begin_decide", "propose_plan", "begin_commit", "finish_commit", "abort_commit", "back_to_explore")


def known_tool_names(config: AgentConfig) -> list[str]:
    """The tool names an agent file declares without starting anything: Python tools, built-ins, the MCP
    tools its ``effects``/``cost``/``compensate`` maps name, the phase tools and memory tools."""
    names: list[str] = list(PHASE_TOOLS)
    for tool in config.tools:
        if isinstance(tool, PythonTool):
            names.append(tool.name or tool.python.rsplit(":", 1)[1].rsplit(".", 1)[-1])
        elif isinstance(tool, BuiltinTool):
            names.extend(_BUILTIN_TOOLS[tool.builtin])
        elif isinstance(tool, McpTool):
            prefix = tool.prefix or ""
            names.extend(prefix + name for name in {*tool.effects, *tool.cost, *tool.compensate})
        elif isinstance(tool, ClientTool):
            names.append(tool.client.name)
        elif isinstance(tool, OpenApiTool):
            from corral.harness.tools.openapi import operation_names

            try:
                names.extend(operation_names(tool.openapi, config.base_dir))
            except ConfigError:
                pass  # `corral validate` reports the spec's problems
    if config.skills:
        names.append("load_skill")
    if config.memory.long_term:
        names.extend(("remember", "recall"))
    return names
