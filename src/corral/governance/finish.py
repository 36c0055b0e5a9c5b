"""Finishing a call elsewhere: by its id, in a process that did not decide it.

A call begun durably (``begin_call(..., durable=True)``) leaves an open call in the store beside its
decision. Whoever learns the outcome — the Claude Code hook's PostToolUse (a new process), another
``corral serve``, recovery when nobody ever does — finishes it here, with the store alone: no policy is
compiled and nothing of the decision machinery is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from corral.errors import CallNotOpen
from corral.governance.flow import add_session_labels
from corral.governance.records import NO_OUTCOME, describe, outcome, outcome_record
from corral.governance.traces import Trace, iso
from corral.store import Append, CloseCall, LogStep, Settle, UpdateTransaction


class DetachedCall:
    """A call decided durably — by another process, or by this one before it restarted — finished here by
    its id: the Claude Code hook's PostToolUse, a server that did not make the decision, recovery.

    ``finish`` writes, in one store batch, the settlement (``cost``, else the tool's ``cost_fn`` of the
    result when the governor knows the tool, else the estimate; 0 on error), DONE or FAILED for a
    transaction step, the outcome and the close of the open call. It never rolls a transaction back:
    the process that finishes a call elsewhere does not own its transaction (the session does). A call
    finished already raises ``CallNotOpen``.
    """

    def __init__(self, store: Any, open_call: Mapping[str, Any], record: Mapping[str, Any] | None,
                 *, spec: Any = None, now: Callable[[], Any]) -> None:
        self._store = store
        self._doc = dict(open_call)
        self._record = dict(record) if record is not None else {"id": open_call["id"], "tool": open_call["tool"]}
        self._spec = spec
        self._now = now
        self._outcome: dict[str, Any] | None = None

    @classmethod
    def load(cls, store: Any, call_id: str, *, spec_for: Callable[[str], Any] | None = None,
             now: Callable[[], Any]) -> DetachedCall:
        """The open call ``call_id`` from the store; ``CallNotOpen`` if it is not open (or never was)."""
        found = store.get_open_call(call_id)
        if found is None:
            raise CallNotOpen(f"no call {call_id!r} waits to be finished: it was finished already, or never began")
        spec = spec_for(found["tool"]) if spec_for is not None else None
        return cls(store, found, store.find_record(call_id), spec=spec, now=now)

    @property
    def call_id(self) -> str:
        return self._doc["id"]

    @property
    def tool(self) -> str:
        return self._doc["tool"]

    @property
    def effect(self) -> str:
        return self._doc["effect"]

    @property
    def session(self) -> str:
        return self._doc["session"]

    @property
    def tx(self) -> str | None:
        return self._doc.get("tx")

    @property
    def idempotency_key(self) -> str | None:
        step = self._doc.get("step")
        return step["key"] if step else None

    @property
    def decision(self) -> str | None:
        return self._record.get("decision")

    @property
    def reason(self) -> str | None:
        return self._record.get("reason")

    @property
    def principal(self) -> str | None:
        return self._doc.get("principal")

    @property
    def trace(self) -> Trace:
        if self._outcome is not None:
            return Trace({**self._record, "outcome": self._outcome})
        return Trace(self._record)

    def finish(self, result: Any = None, error: BaseException | str | None = None, cost: Any = None,
               *, note: str | None = None) -> Trace:
        from corral.governance.effects import to_money

        spent = Decimal(0)
        if error is None:
            spent = Decimal(self._doc.get("estimate") or "0")
            if cost is not None:
                spent = to_money(cost, f"{self.tool}: cost")
            elif self._spec is not None and getattr(self._spec, "cost_fn", None) is not None:
                try:
                    spent = to_money(self._spec.cost_fn(result), f"{self.tool}: cost_fn")
                except Exception as exc:
                    note = f"cost_fn failed ({exc!r}); settled at the estimate"
        text = None if error is None else (error if isinstance(error, str) else describe(error))
        out = outcome("ok" if error is None else "error", float(spent), None, text, note)
        labels = self._doc.get("labels") if error is None else None
        if labels:  # what the result brought into the session (§15): in its outcome, and kept
            out["labels"] = list(labels)
        trace = self._close(out, spent, result, text)
        if labels:
            add_session_labels(self._store, self.session, labels)
        return trace

    def cancel(self, why: str) -> Trace:
        """It did not run after all: its reservation is given back, the outcome says why."""
        text = f"NotRun: {why}"
        return self._close(outcome("error", 0.0, None, text), Decimal(0), None, text)

    def abandon(self) -> Trace:
        """Nobody reported it (its process died): settled at 0, recorded ``no outcome``."""
        return self._close(outcome("error", 0.0, None, NO_OUTCOME), Decimal(0), None, NO_OUTCOME, log=False)

    def _close(self, out: dict[str, Any], spent: Decimal, result: Any, error: str | None, *,
               log: bool = True) -> Trace:
        now = self._now()
        sid, call_id = self.session, self.call_id
        ops: list[Any] = []
        if self._doc.get("reserved"):
            ops.append(Settle(call_id, spent))
        step = self._doc.get("step")
        tx = self._doc.get("tx")
        if step and tx and log:
            entry = {"seq": step["seq"], "tool": self.tool, "args": step.get("args"), "key": step["key"],
                     "effect": self.effect, "trace": call_id, "ts": iso(now)}
            if error is None:
                entry.update(status="DONE", result=glimpse(result))
            else:
                entry.update(status="FAILED", error=error)
            ops.append(LogStep(tx, entry))
            if self._doc.get("implicit"):  # the one step of a phases-off transaction: it ends with it
                ops.append(UpdateTransaction(tx, {"state": "committed" if error is None else "rolled_back"}))
        ops.append(Append(sid, outcome_record(sid, call_id, out, now)))
        ops.append(CloseCall(call_id))
        if self._store.batch(ops) is None:
            raise CallNotOpen(f"call {call_id} ({self.tool}) was finished already, elsewhere")
        self._outcome = out
        return self.trace


#: What the transaction log keeps of a result reported from elsewhere (a Bash command's output can be large).
GLIMPSE_CHARS = 2000


def glimpse(value: Any) -> Any:
    """A JSON value small enough for the transaction log: numbers as they are, anything else as text cut to
    ``GLIMPSE_CHARS``, saying how long it was."""
    import json

    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= GLIMPSE_CHARS else text[:GLIMPSE_CHARS] + f"… ({len(text)} characters)"
