"""Replay: re-decide stored calls under new rules (DESIGN §14), and count what each rule did.

``corral rules replay NEW.rules --agent AGENT.yaml`` answers "what would this policy have done to the
calls we actually made?" before anyone switches it on. Every call trace records the rule inputs it was
decided on (``inputs``: tool, effect, phase, principal and roles, agent, time, budget figures, cost,
the session's executed calls, labels, tags — the arguments are the trace's own ``args``), so a
replay reads each trace, rebuilds those facts and asks the new policy. Only the rules change: a call the
kernel refused for its phase, its budget or a fault stays refused; a plan check follows the new
policy's REQUIRE PLAN.

Nothing is skipped silently. A trace written before traces kept their inputs, a row that is not valid
JSON, inputs that cannot be read, a session whose call log has a gap: each is counted under its reason
and the replay goes on to the next. ``replay`` and ``rule_counts`` are plain functions over a store,
for the command line and for the server's policy page alike.

The executed calls a ``calls()`` condition counts are recorded compactly: each decision stores only
the calls its session executed since the session's previous decision (``inputs.calls``: an ``epoch`` —
one per session object —, the number of chain records a resumed session rebuilt its log from
(``base``), the position ``at`` which the new entries start, and the entries), so a session of n calls
stores n entries, not n². A replay puts the log back together session by session.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import groupby
from typing import Any

from corral.governance.rules.compiler import Policy, decide
from corral.governance.traces import executed_calls, merge_records
from corral.struct import field, struct

__all__ = [
    "Flip",
    "ReplayFacts",
    "ReplayReport",
    "RuleCount",
    "parse_since",
    "replay",
    "rule_counts",
]

# why a trace was not replayed
NO_INPUTS = "recorded before traces kept their rule inputs"
CORRUPT = "corrupt row: not a JSON object"
BAD_INPUTS = "its rule inputs cannot be read"
EARLY = "refused before the rules ran (unknown tool, arguments that do not fit, a governance fault)"
LOG_GAP = "its session's call log cannot be rebuilt (a record is missing or corrupt)"

# the rules' words → replay's (and the tests file's): old and new decisions compare in these
_OLD = {"allowed": "allowed", "flagged": "flagged", "approved": "approval", "pending": "approval",
        "denied": "approval", "blocked": "blocked"}
_NEW = {"allowed": "allowed", "flagged": "flagged", "approval_required": "approval", "blocked": "blocked"}
_KERNEL_CHECKS = frozenset({"tool", "phase", "budget", "governance"})  # refusals no rule change undoes


class _Unreadable(Exception):
    pass


_EVERY_FIELD = ("phase", "effect", "tool", "budget", "spent", "remaining", "cost", "arg", "principal", "role",
                "agent", "time", "day", "calls", "labels", "tags")


class ReplayFacts:
    """A stored call's rule inputs as the rules read them (``RuleFacts``). Only the fields the policy
    reads are converted (``fields``: ``Policy.fields``) — the rest stay unset, and no rule asks for them
    — but those it reads must be readable, or the trace is skipped, never decided on a guess."""

    __slots__ = (
        "agent", "args", "budget_pct", "call_log", "cost", "effect", "labels", "now", "phase", "principal",
        "remaining", "roles", "spent", "tags", "tool",
    )

    def __init__(
        self,
        record: Mapping[str, Any],
        inputs: Mapping[str, Any],
        call_log: Sequence[Any],
        fields: frozenset[str] = frozenset(_EVERY_FIELD),
    ) -> None:
        try:
            self.tool = _text(inputs.get("tool", record.get("tool")))
            self.effect = _text(inputs.get("effect", record.get("effect")))
            self.phase = _text(inputs.get("phase", record.get("phase")))
            args = record.get("args")
            self.args = args if isinstance(args, dict) else {}
            self.principal = inputs.get("principal", record.get("principal"))
            self.roles = tuple(_text(role) for role in inputs.get("roles") or ())
            self.agent = inputs.get("agent", record.get("agent"))
            self.now = _time(inputs["time"]) if fields & _CLOCK else None
            budget = inputs.get("budget") or {}
            self.budget_pct = float(budget.get("pct") or 0.0) if "budget" in fields else 0.0
            self.spent = Decimal(str(budget.get("spent") or 0)) if "spent" in fields else None
            remaining = budget.get("remaining") if "remaining" in fields else None
            self.remaining = None if remaining is None else Decimal(str(remaining))
            self.cost = Decimal(str(inputs.get("cost") or 0)) if "cost" in fields else None
            self.labels = frozenset(_text(x) for x in inputs.get("labels") or ()) if "labels" in fields else None
            self.tags = frozenset(_text(x) for x in inputs.get("tags") or ()) if "tags" in fields else None
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as error:
            raise _Unreadable(f"{type(error).__name__}: {error}") from None
        self.call_log = call_log


_CLOCK = frozenset({"time", "day", "calls"})
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _time(value: Any) -> datetime:
    when = datetime.fromisoformat(_text(value).replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("a time without a time zone")
    return when


@struct(frozen=True)
class Flip:
    """A stored call the new rules would decide differently."""

    trace: str
    session: str
    tool: str
    old: str
    new: str
    rule: str | None  # the rule that decides under the new policy (its file:line), or DEFAULT BLOCK
    reason: str = ""
    ts: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "session": self.session, "tool": self.tool, "old": self.old, "new": self.new,
                "rule": self.rule}


@struct
class ReplayReport:
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason → traces
    table: Counter[tuple[str, str]] = field(default_factory=Counter)  # (old, new) → calls, changed or not
    flips: list[Flip] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # where the corrupt rows are, and what is wrong

    @property
    def changes(self) -> dict[str, int]:
        return {f"{old}->{new}": n for (old, new), n in sorted(self.table.items()) if old != new}

    def to_dict(self) -> dict[str, Any]:
        """The object ``--json`` prints (DESIGN §14): replayed, skipped, changes, flips."""
        return {
            "replayed": self.replayed,
            "skipped": sum(self.skipped.values()),
            "changes": self.changes,
            "flips": [flip.to_dict() for flip in self.flips],
        }


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before ``now``, or an ISO date or time (UTC unless it says)."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*(s|m|min|h|d|w)\s*", text or "")
    if match:
        seconds = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now - timedelta(seconds=int(match.group(1)) * seconds)
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise ValueError(f"--since {text!r}: write a duration (7d, 12h, 30m, 2w) or a date (2026-11-24)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# -- reading the store ----------------------------------------------------------------------------------


def _decoded(rows: Iterable[tuple[str, int, Any]], report: ReplayReport) -> Iterator[tuple[str, list[Any]]]:
    """Each session's records in chain order; a corrupt row stays in its place as None (so positions,
    which a resumed session's call log refers to, stay true)."""
    for session_id, group in groupby(rows, key=lambda row: row[0]):
        records: list[Any] = []
        for _, seq, raw in group:
            record = raw
            if not isinstance(raw, dict):
                try:
                    record = json.loads(raw)
                except (TypeError, ValueError) as error:
                    record = None
                    report.problems.append(f"session {session_id} record {seq}: its JSON does not parse ({error})")
            if record is not None and not isinstance(record, dict):
                report.problems.append(f"session {session_id} record {seq}: not a JSON object")
                record = None
            if record is None:
                report.skipped[CORRUPT] += 1
            records.append(record)
        yield session_id, records


class _CallLogs:
    """A session's executed-call log, put back together from its decisions' ``inputs.calls``."""

    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.epochs: dict[str, dict[int, tuple[str, datetime]]] = {}
        self.bases: dict[str, list[tuple[str, datetime]] | None] = {}

    def add(self, calls: Mapping[str, Any]) -> tuple[str, int, int]:
        """Place one decision's new entries; returns (epoch, base, end of the log it saw)."""
        epoch, base, at = str(calls["epoch"]), int(calls.get("base") or 0), int(calls["at"])
        entries = self.epochs.setdefault(epoch, {})
        new = calls.get("new") or ()
        for offset, (tool, when) in enumerate(new):
            entries[at + offset] = (_text(tool), _time(when))
        if epoch not in self.bases:
            self.bases[epoch] = self.rebuilt(base)
        return epoch, base, at + len(new)

    def rebuilt(self, base: int) -> list[tuple[str, datetime]] | None:
        """The log a session resumed from the first ``base`` records started with: exactly the function
        ``Session.resume`` uses. None when one of those records is corrupt."""
        if base == 0:
            return []
        prefix = self.records[:base]
        if any(record is None for record in prefix) or len(prefix) < base:
            return None
        return executed_calls(merge_records(prefix))

    def log(self, epoch: str, end: int) -> list[tuple[str, datetime]] | None:
        start = self.bases.get(epoch)
        if start is None:
            return None
        entries = self.epochs.get(epoch, {})
        log = list(start[:end])
        for index in range(len(start), end):
            if index not in entries:
                return None
            log.append(entries[index])
        return log


def replay(
    store: Any,
    policy: Policy,
    *,
    agent: str | None = None,
    since: datetime | None = None,
    session: str | None = None,
) -> ReplayReport:
    """Re-decide every stored call of ``agent`` (or of ``session``) decided at or after ``since`` under
    ``policy``. Corrupt rows and traces that cannot be replayed are counted, with their reason."""
    report = ReplayReport()
    for session_id, records in _decoded(store.scan_records(agent=agent, session=session), report):
        _replay_session(session_id, records, policy, since, report)
    return report


def _replay_session(
    session_id: str, records: list[Any], policy: Policy, since: datetime | None, report: ReplayReport
) -> None:
    logs = _CallLogs(records)
    pending: list[tuple[dict[str, Any], tuple[str, int, int] | None]] = []
    for record in records:  # first place every decision's calls: a later record may fill an earlier gap
        if record is None or record.get("kind", "call") != "call":
            continue
        inputs = record.get("inputs")
        placed = None
        if isinstance(inputs, dict) and isinstance(inputs.get("calls"), dict):
            try:
                placed = logs.add(inputs["calls"])
            except (KeyError, TypeError, ValueError) as error:
                report.problems.append(f"session {session_id} trace {record.get('id')}: inputs.calls: {error}")
                placed = None
        pending.append((record, placed))
    for record, placed in pending:
        if since is not None and not _decided_since(record, since):
            continue
        _replay_one(session_id, record, placed, logs, policy, report)


def _decided_since(record: Mapping[str, Any], since: datetime) -> bool:
    try:
        return _time(record.get("ts")) >= since
    except (TypeError, ValueError):
        return True  # a trace whose time cannot be read is not silently left out: it is replayed or skipped


def _replay_one(
    session_id: str,
    record: dict[str, Any],
    placed: tuple[str, int, int] | None,
    logs: _CallLogs,
    policy: Policy,
    report: ReplayReport,
) -> None:
    inputs = record.get("inputs")
    old = _OLD.get(record.get("decision") or "")
    if not isinstance(inputs, dict):
        report.skipped[EARLY if _refused_early(record) else NO_INPUTS] += 1
        return
    if old is None:
        report.skipped[BAD_INPUTS] += 1
        report.problems.append(f"session {session_id} trace {record.get('id')}: unknown decision "
                               f"{record.get('decision')!r}")
        return
    if "calls" not in policy.fields:
        log: list[Any] | None = []  # the new rules count no calls: the log is not needed
    elif placed is None:
        report.skipped[BAD_INPUTS] += 1
        return
    else:
        log = logs.log(placed[0], placed[2])
        if log is None:
            report.skipped[LOG_GAP] += 1
            return
    try:
        facts = ReplayFacts(record, inputs, log, policy.fields)
    except _Unreadable as error:
        report.skipped[BAD_INPUTS] += 1
        report.problems.append(f"session {session_id} trace {record.get('id')}: {error}")
        return
    new, rule, reason = _redecide(record, facts, policy)
    report.replayed += 1
    report.table[(old, new)] += 1
    if new != old:
        report.flips.append(Flip(str(record.get("id")), session_id, facts.tool, old, new, rule, reason,
                                 str(record.get("ts") or "")))


def _refused_early(record: Mapping[str, Any]) -> bool:
    """A call refused before the rules were asked: no rule check in its trace, a failed tool or
    governance check instead."""
    checks = record.get("checks") or ()
    return not any(isinstance(c, dict) and c.get("check") == "rule" for c in checks) and any(
        isinstance(c, dict) and c.get("check") in ("tool", "governance") and not c.get("passed") for c in checks
    )


def _redecide(record: Mapping[str, Any], facts: ReplayFacts, policy: Policy) -> tuple[str, str | None, str]:
    """The new decision, the rule that makes it, and why — the kernel's own refusals kept as they were."""
    checks = [c for c in record.get("checks") or () if isinstance(c, dict)]
    for check in checks:
        if check.get("check") in _KERNEL_CHECKS and check.get("passed") is False:
            return "blocked", None, str(check.get("detail") or check.get("check"))
    if _plan_refuses(policy, facts, checks):
        return "blocked", "REQUIRE PLAN", f"REQUIRE PLAN: {facts.tool} matches no step of a bound plan"
    verdict = decide(policy.evaluate(facts), policy.default, facts.tool)
    rule = verdict.deciding[0].source if verdict.deciding else None
    if verdict.decision == "blocked" and rule is None:
        rule = "DEFAULT BLOCK"
    return _NEW[verdict.decision], rule, verdict.reason


def _plan_refuses(policy: Policy, facts: ReplayFacts, checks: Sequence[Mapping[str, Any]]) -> bool:
    """Under the new policy's REQUIRE PLAN, a write in commit needs the plan step it matched then."""
    if not policy.require_plan or facts.effect == "read" or facts.phase != "commit":
        return False
    if any(c.get("check") == "phase" and "phases are off" in str(c.get("detail")) for c in checks):
        return False
    plan = next((c for c in checks if c.get("check") == "plan"), None)
    return plan is None or not str(plan.get("detail") or "").startswith("matches step")


# -- what each rule did -----------------------------------------------------------------------------------


@struct
class RuleCount:
    """One rule of a policy and what it did to the stored calls (the console's policy page)."""

    rule: str
    source: str
    shadow: bool
    hits: int = 0  # calls it matched
    blocks: int = 0  # matched BLOCK of a blocked call
    approvals: int = 0  # matched REQUIRE APPROVAL of a call that went to approval
    would_block: int = 0  # a shadow rule that matched where the shadow decision blocked and the real did not

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "source": self.source, "shadow": self.shadow, "hits": self.hits,
                "blocks": self.blocks, "approvals": self.approvals, "would_block": self.would_block}


def rule_counts(
    store: Any, policy: Policy, *, agent: str | None = None, since: datetime | None = None
) -> list[RuleCount]:
    """For each rule of ``policy``: how often it matched, blocked, asked for approval, or (a shadow rule)
    would have blocked, over the stored calls. A trace counts for a rule when it names the rule by its
    source and its text, so an edited line is not credited with what the old line did."""
    counts = {(rule.source, rule.text): RuleCount(rule.text, rule.source, rule.shadow) for rule in policy.rules}
    ignored = ReplayReport()
    for _, records in _decoded(store.scan_records(agent=agent), ignored):
        for record in records:
            if record is None or record.get("kind", "call") != "call":
                continue
            if since is not None and not _decided_since(record, since):
                continue
            _count(record, counts)
    return list(counts.values())


def _count(record: Mapping[str, Any], counts: Mapping[tuple[str, str], RuleCount]) -> None:
    decision = record.get("decision")
    shadow = record.get("shadow") if isinstance(record.get("shadow"), dict) else None
    would_block = shadow is not None and shadow.get("decision") == "blocked" and decision != "blocked"
    for check in record.get("checks") or ():
        if not isinstance(check, dict) or check.get("check") != "rule" or not check.get("matched"):
            continue
        count = counts.get((check.get("source"), check.get("rule")))
        if count is None:
            continue
        count.hits += 1
        action = check.get("action")
        if check.get("shadow"):
            if would_block and action == "block":
                count.would_block += 1
        elif action == "block" and decision == "blocked":
            count.blocks += 1
        elif action == "approval" and decision in ("approved", "pending", "denied"):
            count.approvals += 1
