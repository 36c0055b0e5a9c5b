"""What the console's pages show, as plain data built from what the API's queries return.

Nothing here reads the store on its own account except the open transaction's log; who may see what
is decided by ``corral.server.queries``, as for the JSON API. The templates only lay these out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

#: Harness refusals that happen before governance (no trace is made for them): the loop's own words.
_UNGOVERNED = ("arguments are not valid JSON", "unknown tool ", "is not in allowed_tools",
               "arguments do not fit the tool's schema")

#: Trace kinds that belong in the transcript's view of calls (model spending and plans do not).
CALL_KINDS = ("call", "compensation", "recovery")

BADGES = {"allowed": "ok", "approved": "ok", "flagged": "warn", "pending": "wait", "approval": "wait", "denied": "bad",
          "blocked": "bad"}


def pretty(value: Any) -> str:
    """A value as a person reads it: JSON, indented, Unicode kept (the template escapes it)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def badge(decision: str | None) -> str:
    return BADGES.get(decision or "", "none")


# ------------------------------------------------------------------------------------ the timeline


@dataclass
class Item:
    """One entry of a session's timeline: a user message, model text, or a tool call with its traces."""

    kind: str  # "user" | "text" | "call"
    text: str = ""
    tool: str | None = None
    args: Any = None
    result: Any = None
    traces: list[dict[str, Any]] = field(default_factory=list)  # the decision, then a resumed decision
    note: str | None = None  # why a call has no trace, or where it comes from

    @property
    def trace(self) -> dict[str, Any] | None:
        return self.traces[-1] if self.traces else None

    @property
    def decision(self) -> str | None:
        if self.trace is not None:
            return self.trace.get("decision")
        return "refused" if self.note else None


def _result_of(content: str) -> Any:
    try:
        return json.loads(content)
    except (TypeError, ValueError):
        return content


def _ungoverned(result: Any) -> str | None:
    if isinstance(result, Mapping) and isinstance(result.get("error"), str) and len(result) == 1:
        text = result["error"]
        if any(marker in text for marker in _UNGOVERNED):
            return text
    return None


def _fits(trace: Mapping[str, Any], tool: str, args: Any) -> bool:
    if trace.get("tool") != tool:
        return False
    if not isinstance(args, Mapping):
        return True
    recorded = trace.get("args") or {}
    return all(name in recorded and recorded[name] in (value, "[redacted]") for name, value in args.items())


def timeline(transcript: Sequence[Mapping[str, Any]], traces: Sequence[Mapping[str, Any]]) -> tuple[list[Item],
                                                                                                      list[Item]]:
    """The transcript in order, each tool call with its proof trace(s); and the call traces that no
    transcript entry accounts for (a run still going, a hook's or proxy's calls, compensations), in
    chain order.

    A call is matched to the first later trace of the same tool whose arguments agree; a call the loop
    refused before governance (bad arguments, an unknown tool) has none. A call paused for approval has
    the pending decision and then the one made when the session resumed."""
    calls = [dict(t) for t in traces if t.get("kind", "call") in CALL_KINDS]
    used = [False] * len(calls)
    results = {m.get("tool_call_id"): _result_of(m.get("content", "")) for m in transcript if m.get("role") == "tool"}
    items: list[Item] = []
    cursor = 0
    for message in transcript:
        role = message.get("role")
        if role == "user":
            items.append(Item("user", text=str(message.get("content") or "")))
        elif role == "assistant":
            if message.get("content"):
                items.append(Item("text", text=str(message["content"])))
            for call in message.get("tool_calls") or ():
                name, args = call.get("name"), call.get("arguments")
                result = results.get(call.get("id"), _MISSING)
                item = Item("call", tool=name, args=args if args is not None else call.get("raw_arguments"),
                            result=None if result is _MISSING else result)
                refused = _ungoverned(result)
                if refused is not None:
                    item.note = refused
                else:
                    cursor = _match(item, calls, used, cursor)
                if result is _MISSING and item.trace is not None and item.trace.get("decision") == "pending":
                    item.note = "paused: waiting for an approval"
                items.append(item)
    rest = [Item("call", tool=t.get("tool"), args=t.get("args"), result=(t.get("outcome") or {}).get("result"),
                 traces=[t], note=None if t.get("kind", "call") == "call" else t.get("kind"))
            for t, taken in zip(calls, used, strict=True) if not taken]
    return items, rest


_MISSING = object()


def _match(item: Item, calls: list[dict[str, Any]], used: list[bool], cursor: int) -> int:
    for index in range(cursor, len(calls)):
        if not used[index] and calls[index].get("kind", "call") == "call" and _fits(calls[index], item.tool or "",
                                                                                     item.args):
            used[index] = True
            item.traces.append(calls[index])
            if calls[index].get("decision") == "pending":
                _resumed(item, calls, used, index)
            return index + 1
    return cursor


def _resumed(item: Item, calls: list[dict[str, Any]], used: list[bool], index: int) -> None:
    """The decision made when a paused call was re-submitted: the same tool and arguments, later on."""
    first = calls[index]
    for later in range(index + 1, len(calls)):
        trace = calls[later]
        if (not used[later] and trace.get("tool") == first.get("tool")
                and trace.get("args_sha256") == first.get("args_sha256")):
            used[later] = True
            item.traces.append(trace)
            if trace.get("decision") != "pending":
                return


# ------------------------------------------------------------------------------------------ budget


@dataclass(frozen=True)
class Gauge:
    """A budget gauge: how full, in percent of the tightest scope, with each gate's mark."""

    limit: float | None
    spent: float
    reserved: float
    pct: float
    gate: str | None
    marks: tuple[tuple[str, float], ...]  # (gate, percent)

    @property
    def fill(self) -> float:
        return max(0.0, min(100.0, self.pct))

    @property
    def state(self) -> str:
        return self.gate or "ok"


def gauge(budget: Mapping[str, Any], gates: Iterable[tuple[str, Any]]) -> Gauge:
    return Gauge(budget.get("limit"), float(budget.get("spent") or 0.0), float(budget.get("reserved") or 0.0),
                 float(budget.get("pct") or 0.0), budget.get("gate"),
                 tuple((name, float(threshold) * 100) for name, threshold in gates))


# ------------------------------------------------------------------------------------- transactions


@dataclass(frozen=True)
class Step:
    seq: int
    tool: str
    args: Any
    status: str
    effect: str | None
    trace: str | None


def transaction(store: Any, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The session's open transaction with its steps (each at its latest state), or None."""
    tx_id = record.get("tx")
    if not tx_id:
        return None
    tx = store.get_transaction(tx_id)
    if tx is None or tx.get("state") not in ("open", "rolling_back", "needs_attention"):
        return None
    latest: dict[Any, dict[str, Any]] = {}
    for entry in store.steps(tx_id):
        latest[entry.get("seq", entry.get("key"))] = entry
    steps = [Step(int(e.get("seq") or 0), str(e.get("tool")), e.get("args"), str(e.get("status")), e.get("effect"),
                  e.get("trace")) for e in latest.values()]
    return {"id": tx_id, "state": tx.get("state"), "plan": tx.get("plan"), "paused_for": tx.get("paused_for"),
            "deferred": list(tx.get("deferred") or ()), "steps": steps}


# ------------------------------------------------------------------------------------------ replay


def rule_files(agents: Iterable[Any]) -> dict[str, Path]:
    """The rule files a replay may read: the ``*.rules`` beside each served agent's file, by name. Only
    these — a page never names a path of its own choosing on the server."""
    found: dict[str, Path] = {}
    for agent in agents:
        folder = Path(agent.path).resolve().parent
        for path in sorted(folder.glob("*.rules")):
            found.setdefault(path.name if path.name not in found else f"{folder.name}/{path.name}", path)
    return found


# ------------------------------------------------------------------------------------------- times


def time_left(expires: str | None, now: datetime) -> str:
    """'12 min left', 'expired' — for an approval request."""
    if not expires:
        return "no expiry"
    try:
        when = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        return expires
    seconds = int((when - now).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 60:
        return f"{seconds} s left"
    if seconds < 3600:
        return f"{seconds // 60} min left"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min left"


def short_time(stamp: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS' (UTC), for tables."""
    if not stamp:
        return ""
    return stamp.replace("T", " ")[:19]
