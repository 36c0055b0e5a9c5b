"""Crash recovery: roll back what a dead process left open, from the transaction log alone (DESIGN §7).

The log makes recovery idempotent: a step with COMPENSATED is never compensated again, a
COMPENSATING without COMPENSATED was interrupted and runs again (compensations get the step's
idempotency key), an INTENT without DONE has an unknown outcome.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from corral.errors import CallNotOpen
from corral.governance.calls import Call
from corral.governance.finish import DetachedCall
from corral.governance.owner import owner_alive
from corral.governance.records import NO_OUTCOME, outcome, outcome_record, recovery_record
from corral.governance.run import run_sync_positional
from corral.governance.traces import iso
from corral.struct import field, struct


@struct
class TxReport:
    id: str
    session: str
    state: str
    compensated: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "session": self.session,
            "state": self.state,
            "compensated": self.compensated,
            "unknown": self.unknown,
            "failed": self.failed,
        }


@struct
class RecoveryReport:
    transactions: list[TxReport] = field(default_factory=list)
    released_reservations: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    abandoned_calls: list[dict[str, Any]] = field(default_factory=list)  # begun durably, never finished

    def to_dict(self) -> dict[str, Any]:
        return {
            "transactions": [t.to_dict() for t in self.transactions],
            "released_reservations": self.released_reservations,
            "skipped": self.skipped,
            "abandoned_calls": self.abandoned_calls,
        }

    def __bool__(self) -> bool:
        return bool(self.transactions or self.released_reservations or self.abandoned_calls)


def _abandoned(tx: dict[str, Any], now: datetime) -> bool:
    lease = tx.get("lease_until")
    if lease:
        try:
            if datetime.fromisoformat(lease.replace("Z", "+00:00")) <= now:
                return True
        except ValueError:
            return True
    return not owner_alive(tx.get("owner"))


def recover(gov: Any, claim: Any = None) -> RecoveryReport:
    """Roll back every abandoned open or rolling-back transaction; release expired reservations.

    ``claim(tx_record)``, when given, is asked before each abandoned transaction is touched: it returns
    a function to call when recovery of that transaction is over, or None to leave it (several servers
    recovering one store claim a transaction's session lease, so exactly one of them rolls it back).
    A claimed transaction is read again, and left if someone finished it meanwhile.
    """
    from corral.governance.transactions import (
        OPEN,
        ROLLING_BACK,
    )

    now = gov.now()
    store = gov.store
    report = RecoveryReport()
    abandoned = _abandon_calls(gov, now, report)
    report.released_reservations = store.release_expired(now)
    for tx in store.transactions(states=[OPEN, ROLLING_BACK]):
        if tx.get("agent") not in (None, gov.agent):
            continue
        if not _abandoned(tx, now):
            report.skipped.append({"id": tx["id"], "why": "its owner is alive"})
            continue
        if tx.get("held"):
            report.skipped.append({"id": tx["id"], "why": "held by its session (opened from a shell)"})
            continue
        if tx.get("paused_for"):
            report.skipped.append({"id": tx["id"], "why": f"paused for approval {tx['paused_for']}"})
            continue
        if claim is not None:
            done = claim(tx)
            if done is None:
                report.skipped.append({"id": tx["id"], "why": "claimed by another process"})
                continue
            try:
                again = store.get_transaction(tx["id"])
                if again is None or again.get("state") not in (OPEN, ROLLING_BACK):
                    continue
                report.transactions.append(_roll_back(gov, again, now, abandoned))
            finally:
                done()
            continue
        report.transactions.append(_roll_back(gov, tx, now, abandoned))
    return report


def _roll_back(gov: Any, tx: dict[str, Any], now: datetime, abandoned: set[str]) -> TxReport:
    """Compensate an abandoned transaction's steps from its log, newest first (§7)."""
    from corral.governance.transactions import (
        COMPENSATED,
        COMPENSATING,
        COMPENSATION_FAILED,
        DONE,
        FAILED,
        IRREVERSIBLE,
        NEEDS_ATTENTION,
        ROLLED_BACK,
        ROLLING_BACK,
    )

    store = gov.store
    result = TxReport(tx["id"], tx["session"], ROLLING_BACK)
    store.update_transaction(tx["id"], {"state": ROLLING_BACK})
    history: dict[int, list[dict[str, Any]]] = {}
    for entry in store.steps(tx["id"]):
        history.setdefault(entry["seq"], []).append(entry)
    pivot = any(
        e["status"] == DONE and e.get("effect") == IRREVERSIBLE for entries in history.values() for e in entries
    )
    attention = pivot
    for seq in sorted(history, reverse=True):
        entries = history[seq]
        statuses = {e["status"] for e in entries}
        first = entries[0]
        if COMPENSATED in statuses or (FAILED in statuses and DONE not in statuses):
            continue
        spec = gov.tools.get(first["tool"])
        done = next((e for e in entries if e["status"] == DONE), None)
        if done is None and COMPENSATING not in statuses and COMPENSATION_FAILED not in statuses \
                and first.get("trace") not in abandoned:
            _no_outcome(gov, tx, first)
        if pivot:
            if done is None:
                result.unknown.append({"seq": seq, "tool": first["tool"], "key": first.get("key")})
            continue
        if done is None and (spec is None or not spec.compensate_unknown):
            result.unknown.append({"seq": seq, "tool": first["tool"], "key": first.get("key")})
            attention = True
            continue
        if spec is None or spec.compensate is None:
            result.failed.append({"seq": seq, "tool": first["tool"], "error": "no compensation registered"})
            attention = True
            continue
        call = Call(
            tool=first["tool"],
            args=dict(first.get("args") or {}),
            result=done.get("result") if done else None,
            idempotency_key=first.get("key"),
            tx=tx["id"],
            session=tx["session"],
            effect=first.get("effect"),
        )
        ok, error, attempts = _compensate(gov, tx["id"], entries, call, spec.compensate, COMPENSATING)
        status = COMPENSATED if ok else COMPENSATION_FAILED
        store.log_step(tx["id"], _entry(first, status, error=error, attempt=attempts, ts=iso(gov.now())))
        _trace(gov, tx, first, ok, error, attempts)
        if ok:
            result.compensated.append({"seq": seq, "tool": call.tool, "key": call.idempotency_key})
        else:
            result.failed.append({"seq": seq, "tool": call.tool, "error": error})
            attention = True
    result.state = NEEDS_ATTENTION if attention else ROLLED_BACK
    store.update_transaction(tx["id"], {"state": result.state, "recovered": iso(now)})
    return result


def _abandon_calls(gov: Any, now: datetime, report: RecoveryReport) -> set[str]:
    """Calls begun durably whose outcome never came (the process that was to report it died): each is
    settled at 0 and recorded ``no outcome``, once its time to be finished has passed."""
    done: set[str] = set()
    for found in gov.store.open_calls(before=now):
        if found.get("agent") not in (None, gov.agent):
            continue
        try:
            DetachedCall(gov.store, found, gov.store.find_record(found["id"]), now=gov.now).abandon()
        except CallNotOpen:
            continue  # finished meanwhile
        done.add(found["id"])
        report.abandoned_calls.append({"call": found["id"], "session": found["session"], "tool": found["tool"],
                                       "tx": found.get("tx")})
    return done


def _entry(first: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    entry = {k: first.get(k) for k in ("seq", "tool", "args", "key", "effect", "trace")}
    entry["status"] = status
    entry.update(extra)
    return entry


def _compensate(
    gov: Any, tx_id: str, entries: list[dict[str, Any]], call: Call, fn: Any, compensating: str
) -> tuple[bool, str | None, int]:
    last = None
    for attempt in range(1, gov.compensation_tries + 1):
        gov.store.log_step(tx_id, _entry(entries[0], compensating, attempt=attempt, ts=iso(gov.now())))
        try:
            run_sync_positional(fn, call)
            return True, None, attempt
        except Exception as exc:
            last = f"{type(exc).__name__}: {exc}"
            if attempt < gov.compensation_tries:
                time.sleep(gov.retry_backoff * (2 ** (attempt - 1)))
    return False, last, gov.compensation_tries


def _trace(gov: Any, tx: dict[str, Any], step: dict[str, Any], ok: bool, error: str | None, attempts: int) -> None:
    store = gov.store
    store.append(tx["session"], recovery_record(gov, tx, step, ok, error, attempts), durable=True)
    if ok and step.get("trace"):
        store.append(tx["session"], outcome_record(
            tx["session"], step["trace"], outcome("compensated", None, None, None), gov.now()), durable=True)


def _no_outcome(gov: Any, tx: dict[str, Any], step: dict[str, Any]) -> None:
    """A step begun and never finished (its process died): its reservation is released and its decision
    gets the outcome ``error: "no outcome"`` (the reservation's id is the decision's)."""
    store = gov.store
    ref = step.get("trace")
    if not ref:
        return
    store.release(ref)
    store.append(tx["session"], outcome_record(tx["session"], ref, outcome("error", 0.0, None, NO_OUTCOME),
                                               gov.now()), durable=True)


__all__ = ["RecoveryReport", "recover"]

