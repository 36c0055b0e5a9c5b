"""Crash recovery: roll back what a dead process left open, from the transaction log alone (DESIGN §7).

The log makes recovery idempotent: a step with COMPENSATED is never compensated again, a
COMPENSATING without COMPENSATED was interrupted and runs again (compensations get the step's
idempotency key), an INTENT without DONE has an unknown outcome.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from corral.governance.calls import Call
from corral.governance.traces import iso
from corral.ids import new_id

_BOOT_ID: str | None = None


def _boot_id() -> str:
    global _BOOT_ID
    if _BOOT_ID is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
                _BOOT_ID = f.read().strip()
        except OSError:
            _BOOT_ID = ""
    return _BOOT_ID


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, with the boot id): a reused pid differs here."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


_OWNER: dict[str, Any] | None = None


def owner_identity() -> dict[str, Any]:
    global _OWNER
    pid = os.getpid()
    if _OWNER is None or _OWNER["pid"] != pid:
        _OWNER = {"host": socket.gethostname(), "pid": pid, "start": process_start(pid)}
    return dict(_OWNER)


def owner_alive(owner: dict[str, Any] | None) -> bool:
    """True when the owning process still runs. Another host's owner is judged by its lease instead."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    current = process_start(pid)
    if current is None:
        return False
    return owner.get("start") is None or current == owner.get("start")


@dataclass
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


@dataclass
class RecoveryReport:
    transactions: list[TxReport] = field(default_factory=list)
    released_reservations: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transactions": [t.to_dict() for t in self.transactions],
            "released_reservations": self.released_reservations,
            "skipped": self.skipped,
        }

    def __bool__(self) -> bool:
        return bool(self.transactions or self.released_reservations)


def _abandoned(tx: dict[str, Any], now: datetime) -> bool:
    lease = tx.get("lease_until")
    if lease:
        try:
            if datetime.fromisoformat(lease.replace("Z", "+00:00")) <= now:
                return True
        except ValueError:
            return True
    return not owner_alive(tx.get("owner"))


def recover(gov: Any) -> RecoveryReport:
    """Roll back every abandoned open or rolling-back transaction; release expired reservations."""
    from corral.governance.transactions import (
        COMPENSATED,
        COMPENSATING,
        COMPENSATION_FAILED,
        DONE,
        FAILED,
        IRREVERSIBLE,
        NEEDS_ATTENTION,
        OPEN,
        ROLLED_BACK,
        ROLLING_BACK,
    )

    now = gov.now()
    store = gov.store
    report = RecoveryReport(released_reservations=store.release_expired(now))
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
            _trace(gov, tx, call, first, ok, error, attempts)
            if ok:
                result.compensated.append({"seq": seq, "tool": call.tool, "key": call.idempotency_key})
            else:
                result.failed.append({"seq": seq, "tool": call.tool, "error": error})
                attention = True
        result.state = NEEDS_ATTENTION if attention else ROLLED_BACK
        store.update_transaction(tx["id"], {"state": result.state, "recovered": iso(now)})
        report.transactions.append(result)
    return report


def _entry(first: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    entry = {k: first.get(k) for k in ("seq", "tool", "args", "key", "effect", "trace")}
    entry["status"] = status
    entry.update(extra)
    return entry


def _compensate(
    gov: Any, tx_id: str, entries: list[dict[str, Any]], call: Call, fn: Any, compensating: str
) -> tuple[bool, str | None, int]:
    from corral.governance.governor import run_sync_positional

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


def _trace(
    gov: Any, tx: dict[str, Any], call: Call, first: dict[str, Any], ok: bool, error: str | None, attempts: int
) -> None:
    record = {
        "id": new_id(),
        "kind": "recovery",
        "ts": iso(gov.now()),
        "session": tx["session"],
        "agent": gov.agent,
        "principal": None,
        "tool": call.tool,
        "effect": call.effect,
        "phase": "commit",
        "tx": tx["id"],
        "plan": tx.get("plan"),
        "args": call.args,
        "args_sha256": None,
        "decision": "allowed",
        "reason": f"recovery: compensating {call.tool} step {first['seq']} of abandoned transaction {tx['id']}",
        "compensates": first.get("trace"),
        "checks": [
            {"check": "recovery", "passed": ok,
             "detail": f"{attempts} attempt(s)" + (f"; last error: {error}" if error else "")}
        ],
        "policy_sha256": gov.policy_sha256,
        "budget": None,
        "outcome": {"status": "ok" if ok else "error", "cost": 0.0, "duration_ms": None, "error": error},
    }
    gov.store.append(tx["session"], record, durable=True)
    if ok and first.get("trace"):
        gov._append_outcome(
            tx["session"], first["trace"], {"status": "compensated", "cost": None, "duration_ms": None, "error": None}
        )


__all__ = ["RecoveryReport", "owner_identity", "recover"]

