"""Proof traces: the record of *why* each call was allowed or refused (DESIGN §8).

A decision is stored as one record before the call runs (durable for writes) and its outcome as a
second record chained after it; ``Trace`` merges the two so a reader sees one decision with its outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"

DECISIONS = ("allowed", "flagged", "approved", "pending", "denied", "blocked")


def iso(ts: datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix: sortable text that every reader parses."""
    global _last_iso
    last = _last_iso  # one (time, text, exact) triple, replaced whole: a reader never sees half of one
    if last[0] == ts:  # calls in the same instant (a clock, or a burst within one tick) share the text
        return last[1]
    if ts.tzinfo is UTC:  # the usual clock: one isoformat serves both spellings of the instant
        exact = ts.isoformat()  # YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00
        text = (exact[:23] if ts.microsecond else exact[:19] + ".000") + "Z"
    else:
        exact = None
        text = ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _last_iso = (ts, text, exact)
    return text


def iso_exact(ts: datetime) -> str:
    """``ts.isoformat()`` — its own offset, to the microsecond — reusing ``iso``'s work on the same object."""
    last = _last_iso
    if last[0] is ts and last[2] is not None:
        return last[2]
    return ts.isoformat()


_last_iso: tuple[datetime | None, str, str | None] = (None, "", None)


def redact(args: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """Replace the values of named arguments (at any depth) with ``"[redacted]"``."""
    if not names:
        return dict(args)

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: REDACTED if k in names else walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        return value

    return walk(args)


class Trace:
    """One governance decision with its outcome. Every JSON field is an attribute too."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            if name in _OPTIONAL:
                return None
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a Trace is a record; it does not change")

    def __repr__(self) -> str:
        d = self._data
        return f"<Trace {d.get('kind', 'call')} {d.get('tool')} {d.get('decision')}: {d.get('reason')}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trace) and other._data == self._data

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        import copy

        return copy.deepcopy(self._data)

    @property
    def status(self) -> str | None:
        outcome = self._data.get("outcome") or {}
        return outcome.get("status")

    def explain(self) -> str:
        """The lines a person reads: the verdict, then each check with what it compared."""
        d = self._data
        kind = d.get("kind", "call")
        head = f"{d.get('tool')}"
        if kind != "call":
            head = f"{kind} {head}"
        lines = [f"{head} — {d.get('decision')} because {d.get('reason')}"]
        lines.append(
            f"  session {d.get('session')} · principal {d.get('principal')} · phase {d.get('phase')}"
            f" · effect {d.get('effect')}" + (f" · tx {d['tx']}" if d.get("tx") else "")
        )
        if d.get("labels"):
            lines.append("  labels: " + ", ".join(d["labels"]) + " (what the session had read)")
        for check in d.get("checks") or ():
            lines.append("  " + _explain_check(check))
        shadow = d.get("shadow")
        if isinstance(shadow, Mapping):
            rules = ", ".join(shadow.get("rules") or ()) or "no shadow rule"
            enforced = _AS_RULES.get(d.get("decision"), d.get("decision"))
            if shadow.get("decision") == enforced:
                lines.append(f"  shadow: {enforced} all the same with the shadow rules enforced ({rules})")
            else:
                lines.append(f"  shadow: would have been {shadow.get('decision')} by {rules}: {shadow.get('reason')}")
        outcome = d.get("outcome")
        if outcome:
            text = f"  outcome: {outcome.get('status')}"
            if outcome.get("cost") is not None:
                text += f", cost ${outcome['cost']:g}" if isinstance(outcome["cost"], int | float) else ""
            if outcome.get("duration_ms") is not None:
                text += f", {outcome['duration_ms']} ms"
            if outcome.get("error"):
                text += f", error: {outcome['error']}"
            lines.append(text)
        return "\n".join(lines)


# a trace's decision in the rules' words, to compare with its shadow decision
_AS_RULES = {"approved": "approval_required", "pending": "approval_required", "denied": "approval_required"}


def _explain_check(check: Mapping[str, Any]) -> str:
    name = check.get("check")
    if name == "rule":
        if check.get("indeterminate"):
            verdict = "indeterminate"
        else:
            verdict = "matched" if check.get("matched") else "not matched"
        kind = "shadow rule" if check.get("shadow") else "rule"
        mark = "•" if check.get("matched") else "✓"
        return f"{mark} {kind} {check.get('rule')!r} ({check.get('source')}): {verdict} — {check.get('detail')}"
    mark = "✓" if check.get("passed") else "✗"
    return f"{mark} {name}: {check.get('detail')}"


_OPTIONAL = frozenset(
    {"tx", "plan", "approval", "outcome", "prev", "hash", "ref", "compensates", "gate", "flags", "shadow",
     "inputs", "labels"}
)

EXECUTED = ("allowed", "flagged", "approved")


def executed_calls(traces: Iterable[Trace]) -> list[tuple[str, datetime]]:
    """The calls a session has executed, as a resumed session rebuilds its log from its chain: every
    call decision that ran (it has an outcome), at the time it was decided, in chain order. Replay
    rebuilds the same log from the same records with this same function."""
    out = []
    for trace in traces:
        if trace.kind == "call" and trace.outcome and trace.decision in EXECUTED:
            out.append((trace.tool, datetime.fromisoformat(trace.ts.replace("Z", "+00:00"))))
    return out


def merge_records(records: Iterable[Mapping[str, Any]]) -> list[Trace]:
    """Chain order, one Trace per decision, each outcome record merged into its decision."""
    traces: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("kind") == "outcome":
            target = by_id.get(record.get("ref", ""))
            if target is not None:
                target["outcome"] = dict(record.get("outcome") or {})
                target["outcome_hash"] = record.get("hash")
            continue
        merged = dict(record)
        traces.append(merged)
        by_id[merged["id"]] = merged
    return [Trace(t) for t in traces]
