"""The API's request and answer bodies, as pydantic models: the OpenAPI document is exactly these.

Requests forbid unknown fields (a typo is a 422 that names it, never a silently ignored option).
Traces are open objects: their fields are DESIGN §8's, and a kernel that adds one must not break a
client, so the answer models name the fields a client relies on and allow the rest.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_:@-]*(\.[A-Za-z0-9_:@-]+)*$"
"""An id in a path or a body: letters, digits, ``_-:@``, and dots only between them — never ``..``,
``/`` or a leading dot, so no id can name a path."""
ID_MAX = 200

Id = Field(pattern=ID_PATTERN, min_length=1, max_length=ID_MAX)


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Answer(BaseModel):
    pass


class OpenAnswer(BaseModel):
    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------------- errors


class ErrorDetail(Answer):
    code: str = Field(description="What kind of error: bad_request, unauthorized, forbidden, not_found, …")
    message: str = Field(description="What is wrong, and where; for a person to act on")


class ErrorBody(Answer):
    error: ErrorDetail


# ------------------------------------------------------------------------------------------- health


class Health(Answer):
    status: Literal["ok"]
    store: Literal["sqlite", "postgresql", "memory"]
    version: str


# ------------------------------------------------------------------------------------------- agents


class Budget(Answer):
    limit: float | None
    spent: float
    reserved: float
    pct: float
    gate: str | None


class ToolInfo(Answer):
    name: str
    effect: str
    description: str


class AgentInfo(Answer):
    name: str
    model: str | None = Field(description="provider:id of the agent's model; null for a governance-only agent")
    tools: list[ToolInfo]
    policy_sha256: str


# ----------------------------------------------------------------------------------------- sessions


class SessionCreate(Request):
    agent: str = Field(min_length=1, max_length=ID_MAX, description="The name of a served agent")


class SessionCreated(Answer):
    id: str
    agent: str
    principal: str
    phase: str
    budget: Budget


SessionStatus = Literal["new", "running", "interrupted", "awaiting_approval", "awaiting_client", "idle"]
StopReason = Literal["end_turn", "max_iterations", "timeout", "budget_stop", "awaiting_approval", "awaiting_client",
                     "error"]


class SessionSummary(Answer):
    id: str
    agent: str | None
    principal: str | None
    phase: str | None
    status: SessionStatus
    stop_reason: str | None
    created: str | None
    updated: str | None


class SessionPage(Answer):
    sessions: list[SessionSummary]
    next: str | None = Field(description="Pass as ?after= for the next page; null on the last page")


class SessionView(Answer):
    id: str
    agent: str | None
    principal: str | None
    roles: list[str]
    phase: str
    status: SessionStatus
    stop_reason: str | None
    budget: Budget
    transcript: list[dict[str, Any]]
    created: str | None
    updated: str | None


class MessageCreate(Request):
    text: str = Field(min_length=1, max_length=100_000, description="The user's message")


class PhaseMove(Request):
    phase: Literal["explore", "decide", "commit"]
    plan: str | None = Field(default=None, pattern=ID_PATTERN, max_length=ID_MAX,
                             description="With commit: the plan to bind (default: the latest proposed)")


class PhaseMoved(Answer):
    id: str
    phase: str
    plan: str | None
    transaction: str | None


class PlanCreate(Request):
    steps: list[dict[str, Any]] = Field(min_length=1, max_length=1_000,
                                        description='[{"tool": name, "args": {...}}]; "*" matches any value')
    rationale: str = Field(default="", max_length=10_000)


class PlanCreated(Answer):
    id: str
    sha256: str
    steps: int


class Trace(OpenAnswer):
    """One proof trace (DESIGN §8); every field of the kernel's trace is here."""

    id: str
    kind: str | None = None
    session: str | None = None
    tool: str | None = None
    decision: str | None = None
    reason: str | None = None
    checks: list[dict[str, Any]] | None = None


class TraceExplained(Trace):
    explain: list[str] = Field(description="The lines `corral why` prints")


class RunAnswer(Answer):
    """The same object as ``corral run --json``."""

    session: str
    stop_reason: str
    answer: str
    budget: Budget
    traces: list[Trace]


# ---------------------------------------------------------------------------------------- approvals


class ApprovalItem(Answer):
    id: str
    session: str
    agent: str | None
    principal: str | None
    tool: str
    args: dict[str, Any]
    reason: str
    created: str | None
    expires: str
    status: str
    approver: str | None


class ApprovalDecide(Request):
    reason: str | None = Field(default=None, max_length=2_000, description="Why, for the audit log")


class ApprovalDecided(Answer):
    id: str
    status: str
    approver: str


# --------------------------------------------------------------------------------- decision point


class CheckRequest(Request):
    agent: str = Field(min_length=1, max_length=ID_MAX)
    session: str = Id
    tool: str = Field(min_length=1, max_length=ID_MAX)
    args: dict[str, Any] = Field(default_factory=dict)
    effect: Literal["read", "reversible", "irreversible"] | None = Field(
        default=None, description="The effect the enforcement point derived from the tool's own description "
        "(MCP annotations); used only for a tool the agent file does not describe")


class CheckAnswer(Answer):
    call_id: str = Field(description="The decision's trace id; finish the call with it")
    decision: str = Field(description="allowed, flagged, approved, pending, denied or blocked")
    reason: str
    approval: str | None = Field(default=None, description="The pending approval's id, when decision is pending")
    trace: Trace


class FinishRequest(Request):
    result: Any = Field(default=None, description="What the tool returned (omit with error)")
    error: str | None = Field(default=None, max_length=20_000, description="Why the tool failed (omit with result)")
    cost: float | None = Field(default=None, ge=0, le=1e9, description="The actual cost (default: the estimate)")


class FinishAnswer(Answer):
    call_id: str
    status: Literal["ok", "error"]
    transaction: str | None = Field(default=None, description="Inside a commit, how a failed step left it")


# -------------------------------------------------------------------------------------- audit, policy


class AuditProblem(Answer):
    session: str
    record: str | None
    what: str


class AuditReport(Answer):
    ok: bool
    checked: int
    problems: list[AuditProblem]


class RuleStats(Answer):
    rule: str
    source: str
    shadow: bool
    hits: int
    blocks: int
    approvals: int
    would_block: int


class PolicyReport(Answer):
    agent: str
    policy_sha256: str
    rules: list[RuleStats]
