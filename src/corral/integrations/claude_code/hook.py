"""Claude Code's PreToolUse / PostToolUse hook: the kernel decides before Claude Code runs a tool.

Claude Code runs ``corral hook claude-code --agent AGENT.yaml`` once per event, a new process each time,
with the event JSON on stdin (DESIGN §12). Claude Code's ``session_id`` is the corral session id, so the
phase, plan, budget and audit chain of a Claude Code session live in the agent's store and outlast every
hook process::

    PreToolUse   decide (the kernel's ``begin_call``): tool, phase, plan, budget, rules, approvals; record
                 the decision durably, tagged with the ``tool_use_id``; inside a commit, snapshot the
                 file an edit will change and log the step's INTENT. Answer ``allow`` or ``deny``. A
                 REQUIRE APPROVAL call is denied naming the pending approval: another person approves
                 it (``corral approvals approve ID``, or the console) and the same call, retried, runs
                 once. Only ``approvals: {self_approve: true}`` answers ``ask`` instead, letting the
                 person at Claude Code's prompt decide (recorded as a self-approval).
    PostToolUse  settle: find the decision by ``tool_use_id`` (an index file beside the store, else the
                 chain itself), settle its reservation at its cost, append the outcome (``ok``, or
                 ``error`` from PostToolUseFailure or the response) and log the step DONE or FAILED —
                 one store batch. A failed step leaves the commit open: Claude Code retries failed
                 edits routinely, so rolling back stays a person's decision (``s.end_commit(exc)``).

Anything that goes wrong — input that is not JSON, a missing field, a store that cannot be opened, the
hook's own deadline — denies: exit status 2 with the reason on stderr (DESIGN §9). Claude Code treats
any *other* failure of a hook (a crash, its own timeout) as "carry on", so the hook keeps its own
deadline well inside Claude Code's, and ``corral hook install`` appends ``|| exit 2`` to the command.

Claude Code's tools and their effects are in ``tools.py``; the agent file, as the hook reads it, in
``facts.py``; ``corral hook install`` in ``settings.py``. The agent's policy, corral's records and Claude
Code's own settings (where this hook is installed) cannot be written through Claude Code's file tools.

Imports stay lazy: a hook answers in one process start, so only what a decision needs is loaded.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import ApprovalDenied, ApprovalPending, Blocked, ConfigError, GovernanceError, PhaseError
from corral.governance import refusals
from corral.governance.flow import add_session_labels
from corral.integrations.claude_code.facts import ClaudeCodeAgent, load_facts, principal_name, state_dir
from corral.integrations.claude_code.tools import (
    EVENTS,
    FILE_WRITERS,
    POST_FAILURE,
    PRE,
    REVERSIBLE,
    ToolDeclaration,
)
from corral.struct import struct

if TYPE_CHECKING:
    from corral.governance.pipeline import PendingCall

#: How long the hook may take before it gives up and denies (seconds). Claude Code's own timeout,
#: which ``corral hook install`` sets (``settings.INSTALL_TIMEOUT``), must be longer: a hook Claude Code
#: kills does not block the tool.
DEADLINE = 10.0

#: A commit opened for a Claude Code session belongs to the session, not to a hook process (each one
#: exits at once). Every hook call renews this lease; recovery rolls the commit back only once it lapses.
LEASE_SECONDS = 3600.0



class HookInputError(ValueError):
    """The event on stdin is not what Claude Code sends."""


@struct(frozen=True)
class HookResult:
    """What the hook process says: its exit status, its stdout (JSON for Claude Code) and its stderr."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    decision: str | None = None  # allow | deny | ask, or None after PostToolUse
    reason: str = ""
    verdict: str | None = None  # the kernel's word when it differs from Claude Code's: "pending" for a hold

    @classmethod
    def answer(cls, decision: str, reason: str, verdict: str | None = None) -> HookResult:
        body = {"hookSpecificOutput": {"hookEventName": PRE, "permissionDecision": decision,
                                       "permissionDecisionReason": reason}}
        return cls(0, json.dumps(body), "", decision, reason, verdict)

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
        self.principal = principal_name(principal)
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
                spec = gov.tools.get(tool)
                labels = sorted(spec.labels) if spec is not None else []  # what its result will add (§15)
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
                    if not agent.facts.allow_self_approval:  # four eyes: someone else decides, elsewhere
                        return HookResult.answer("deny", self._held(exc, tool, session.principal), "pending")
                    record = exc.trace.to_dict() if exc.trace is not None else {}
                    self._remember(sid, tool_use, {
                        "decision": record.get("id"), "verdict": "pending", "approval": exc.approval_id,
                        "principal": record.get("principal"), "tx": record.get("tx"), "effect": record.get("effect"),
                        "estimate": str(_estimate(agent, tool)), "scopes": scopes, "reservation": None,
                        "labels": labels,
                    })
                    return HookResult.answer("ask", self._explain(exc, sid, "corral needs a person's approval"))
                except (Blocked, ApprovalDenied, PhaseError, ConfigError) as exc:
                    return HookResult.answer("deny", self._explain(exc, sid, "corral blocked this call"))
                record = handle.trace.to_dict()
                # PostToolUse finishes the call by its id (the kernel's open call); this index only maps
                # Claude Code's tool_use_id to it, and the chain itself is the fallback
                self._remember(sid, tool_use, {"decision": record["id"], "verdict": record["decision"]})
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

    @staticmethod
    def _held(exc: ApprovalPending, tool: str, principal: str | None) -> str:
        """Why a REQUIRE APPROVAL call is denied for now, and how it comes to run (DESIGN §12)."""
        trace = getattr(exc, "trace", None)
        where = f" [trace {trace.id}]" if trace is not None and getattr(trace, "id", None) else ""
        approval = exc.approval_id or "ID"
        return (f"corral is holding {tool} for approval {approval}: {exc}. A person other than {principal} "
                f"decides it with `corral approvals approve {approval} --as NAME` (or `corral approvals deny`), "
                f"or on the console's approvals page; once approved, the same call made again runs, once.{where}")

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
        """Finish the call PreToolUse decided, by its id, through the kernel (``DetachedCall``): the
        settlement, DONE or FAILED for a transaction step, the outcome — one store batch, exactly once."""
        from datetime import UTC, datetime

        from corral.errors import CallNotOpen
        from corral.governance.finish import DetachedCall

        sid, tool, tool_use = event["session_id"], event["tool_name"], event["tool_use_id"]
        clock = self.clock if self.clock is not None else (lambda: datetime.now(UTC))
        failed, error = _failure(event)
        index = self._pending_path(sid, tool_use)
        try:
            entry = json.loads(index.read_text(encoding="utf-8"))
        except FileNotFoundError:
            entry = self._find_decision(store, sid, tool_use)
            if entry is None:
                return self._unmatched(store, sid, tool, tool_use, failed, error, clock())
        verdict = entry.get("verdict")
        if verdict == "pending":
            result = self._self_approved(store, sid, entry, failed, error, clock())
        elif verdict in ("allowed", "flagged", "approved"):
            try:
                call = DetachedCall.load(store, entry["decision"], now=clock)
                call.finish(result=event.get("tool_response"), error=error if failed else None)
            except CallNotOpen:
                pass  # PostToolUse arrived twice, or recovery closed the call: it is finished once
            result = HookResult(0)
        else:
            result = self._ran_anyway(store, sid, tool, entry, failed, error, clock())
        index.unlink(missing_ok=True)
        return result

    @staticmethod
    def _unmatched(store: Any, sid: str, tool: str, tool_use: str, failed: bool, error: str | None,
                   now: Any) -> HookResult:
        """A tool ran that PreToolUse never decided: say so in the chain, and to Claude Code."""
        from corral.governance.records import outcome
        from corral.governance.traces import iso
        from corral.ids import new_id

        store.append(sid, {
            "id": new_id(), "kind": "unmatched", "ts": iso(now), "session": sid, "tool": tool,
            "decision": None, "args": {}, "checks": [],
            "reason": f"{tool} ran without a governed PreToolUse decision (tool_use_id {tool_use})",
            "outcome": outcome("error" if failed else "ok", 0.0, None, error),
        }, durable=True)
        return HookResult.refuse(f"{tool} ran, but corral recorded no PreToolUse decision for tool use "
                                 f"{tool_use}: it was not governed (is the PreToolUse hook installed?)")

    @staticmethod
    def _self_approved(store: Any, sid: str, entry: Mapping[str, Any], failed: bool, error: str | None,
                       now: Any) -> HookResult:
        """``ask`` (``approvals: {self_approve: true}``) put the call to the person at Claude Code's prompt,
        and they said yes: the request is recorded as self-approved, the cost counted, the outcome kept."""
        from datetime import timedelta
        from decimal import Decimal

        from corral.governance.records import outcome, outcome_record
        from corral.governance.traces import iso
        from corral.store import Append, Settle

        cost = Decimal(0) if failed else Decimal(entry.get("estimate") or "0")
        note = "approved at Claude Code's permission prompt"
        if entry.get("approval"):
            store.resolve_approval(entry["approval"], "pending", {
                "status": "used", "approved": True, "approver": f"{entry.get('principal')} (Claude Code prompt)",
                "decided": iso(now), "decision_reason": note,
            })
        ops: list[Any] = []
        scopes = [(key, Decimal(limit)) for key, limit in entry.get("scopes") or ()]
        if scopes and cost > 0:
            rid = store.reserve(scopes, cost, now + timedelta(seconds=60))
            if rid is None:
                note += f"; its cost {cost} did not fit in the budget and is not counted"
            else:
                ops.append(Settle(rid, cost))
        out = outcome("error" if failed else "ok", float(cost), None, error, note)
        labels = entry.get("labels") or []
        if labels and not failed:  # what the result brought into the session (§15)
            out["labels"] = labels
        ops.append(Append(sid, outcome_record(sid, entry["decision"], out, now)))
        store.batch(ops)
        if labels and not failed:
            add_session_labels(store, sid, labels)
        return HookResult(0)

    @staticmethod
    def _ran_anyway(store: Any, sid: str, tool: str, entry: Mapping[str, Any], failed: bool, error: str | None,
                    now: Any) -> HookResult:
        """Claude Code ran a call corral refused: record it, and tell Claude Code."""
        from corral.governance.records import outcome, outcome_record

        note = f"ran although corral's decision was {entry.get('verdict')}"
        store.append(sid, outcome_record(sid, entry["decision"], outcome("error" if failed else "ok", 0.0, None,
                                                                          error, note), now), durable=True)
        return HookResult.refuse(f"{tool} {note}")

    @staticmethod
    def _find_decision(store: Any, sid: str, tool_use: str) -> dict[str, Any] | None:
        """The decision for ``tool_use`` from the chain itself, when the index file is gone."""
        for record in reversed(store.records(sid)):
            info = record.get("claude_code")
            if record.get("kind") == "call" and isinstance(info, dict) and info.get("tool_use_id") == tool_use:
                return {"decision": record["id"], "verdict": record.get("decision"), "approval": record.get("approval"),
                        "principal": record.get("principal"), "estimate": "0", "scopes": []}
        return None


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
    from corral.governance.finish import glimpse

    return glimpse(value)



# -- the process: stdin → decision → stdout / stderr / exit status, inside a deadline -----------------


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




USAGE = ("usage: corral hook claude-code --agent AGENT.yaml [--store URL] [--as PRINCIPAL] [--role ROLE]... "
         "[--timeout SECONDS]")


def parse_options(argv: list[str]) -> dict[str, Any]:
    """The hook's options, read by hand: ``argparse`` (and the ``gettext`` it loads) costs a per-call
    process more than the whole command line is worth. ``--name value`` and ``--name=value`` both work;
    ``--role`` may repeat. Raises ``HookInputError`` naming the problem."""
    names = {"--agent": "agent", "--store": "store", "--as": "principal", "--role": "roles", "--timeout": "timeout"}
    options: dict[str, Any] = {"agent": None, "store": None, "principal": None, "roles": [], "timeout": DEADLINE}
    items = iter(argv)
    for item in items:
        name, has_value, value = item.partition("=")
        if name not in names:
            raise HookInputError(f"unknown option {item!r}")
        if not has_value:
            value = next(items, None)  # type: ignore[assignment]
            if value is None:
                raise HookInputError(f"{name} needs a value")
        key = names[name]
        if key == "roles":
            options["roles"].append(value)
        elif key == "timeout":
            try:
                options["timeout"] = float(value)
            except ValueError:
                raise HookInputError(f"--timeout expects seconds, got {value!r}") from None
        else:
            options[key] = value
    if not options["agent"]:
        raise HookInputError("--agent is required")
    return options


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - exercised through subprocess tests
    """``python -m corral.integrations.claude_code --agent AGENT.yaml``: the hook without the CLI."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in arguments):
        print(USAGE)
        return 0
    try:
        options = parse_options(arguments)
    except HookInputError as exc:
        print(f"corral: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    agent = Path(options["agent"]).resolve()
    enter_project_dir()
    return run(agent, store=options["store"], principal=options["principal"], roles=tuple(options["roles"]),
               timeout=options["timeout"])


def enter_project_dir() -> None:
    """Relative paths (``sqlite:///.corral/corral.db``, ``.corral/claude-code``) follow the project root,
    not wherever a Bash ``cd`` left Claude Code: move to ``$CLAUDE_PROJECT_DIR`` when it is set."""
    project = os.environ.get("CLAUDE_PROJECT_DIR")
    if project and os.path.isdir(project):
        os.chdir(project)
