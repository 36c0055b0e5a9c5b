"""Human approvals bound to the exact call: single use, expiring, never self-granted (DESIGN §6)."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from corral.canonical import canonical_json, sha256_hex
from corral.struct import field, fields_of, struct

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
USED = "used"
EXPIRED = "expired"


def identity_key(name: str | None) -> str | None:
    """A principal's name as identities are compared: Unicode NFKC, case-folded, trimmed, with invisible
    characters (zero-width spaces and joiners, soft hyphens, BOMs, controls) removed — so ``ALICE``,
    ``alice `` and ``al\u200bice`` are all ``alice`` and none of them may approve alice's request."""
    if name is None:
        return None
    text = unicodedata.normalize("NFKC", str(name))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _INVISIBLE)
    return text.casefold().strip()


_INVISIBLE = frozenset({"Cf", "Cc", "Cs", "Co", "Cn"})


def same_principal(a: str | None, b: str | None) -> bool:
    """True when two names denote the same principal (``identity_key``); an unnamed side never matches."""
    if a is None or b is None:
        return False
    key = identity_key(a)
    return bool(key) and key == identity_key(b)


def binding_hash(session: str, tool: str, args: Mapping[str, Any], phase: str, policy_sha256: str) -> str:
    """SHA-256 over exactly what was asked: approving one call never approves another."""
    return sha256_hex(
        canonical_json({"session": session, "tool": tool, "args": args, "phase": phase, "policy": policy_sha256})
    )


@struct(frozen=True, slots=True)
class Approval:
    """What an approver returns to name who decided and why."""

    approved: bool
    approver: str | None = None
    reason: str | None = None


@struct(slots=True)
class ApprovalRequest:
    """A request for a human decision on one exact call (or, with ``tool == "plan"``, a whole plan)."""

    id: str
    binding: str
    session: str
    agent: str | None
    principal: str | None
    tool: str
    args: dict[str, Any]
    phase: str
    reason: str
    created: str
    expires: str
    status: str = PENDING
    approver: str | None = None
    decided: str | None = None
    decision_reason: str | None = None
    plan: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "binding": self.binding,
            "session": self.session,
            "agent": self.agent,
            "principal": self.principal,
            "tool": self.tool,
            "args": self.args,
            "phase": self.phase,
            "reason": self.reason,
            "created": self.created,
            "expires": self.expires,
            "status": self.status,
            "approver": self.approver,
            "decided": self.decided,
            "decision_reason": self.decision_reason,
            "plan": self.plan,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ApprovalRequest:
        known = {f.name: data.get(f.name) for f in fields_of(cls) if f.name != "extra"}
        return cls(**known)  # type: ignore[arg-type]


def resolve(
    store: Any,
    approval_id: str,
    approver: str,
    reason: str | None,
    *,
    approved: bool,
    now: datetime,
    allow_self_approval: bool = False,
) -> dict[str, Any]:
    """Grant or deny a pending request — the API's, the CLI's and the console's one way to decide.

    Raises ``ConfigError`` for a missing, decided or self-approved request and ``ApprovalDenied`` for
    an expired one; compare-and-set on the status, so two approvers never both win.
    """
    from corral.errors import ApprovalDenied, ConfigError

    if not isinstance(approver, str) or not identity_key(approver):
        raise ConfigError("an approval must name who decides (approver='bob' / --as bob)")
    found = store.get_approval(approval_id)
    if found is None:
        raise ConfigError(f"no approval request {approval_id!r}")
    if found["status"] != PENDING:
        raise ConfigError(f"approval {approval_id} is {found['status']}, not pending")
    if datetime.fromisoformat(found["expires"].replace("Z", "+00:00")) <= now:
        store.resolve_approval(approval_id, PENDING, {"status": EXPIRED})
        raise ApprovalDenied(f"approval {approval_id} expired at {found['expires']}")
    if approved and not allow_self_approval and same_principal(approver, found.get("principal")):
        raise ConfigError(f"{approver} cannot approve their own request {approval_id}")
    fields = {
        "status": APPROVED if approved else DENIED,
        "approver": approver,
        "decided": now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "decision_reason": reason,
    }
    if not store.resolve_approval(approval_id, PENDING, fields):
        raise ConfigError(f"approval {approval_id} was decided by someone else meanwhile")
    found.update(fields)
    return found


def approver_name(approver: Callable[..., Any]) -> str:
    return getattr(approver, "__name__", None) or type(approver).__name__


def normalise(answer: Any, default_name: str) -> Approval:
    """Accept ``True``/``False``, ``(bool, reason)`` or ``Approval``; anything else is a fault."""
    if isinstance(answer, Approval):
        if not isinstance(answer.approved, bool):
            raise TypeError(f"Approval.approved must be True or False, got {answer.approved!r}")
        return Approval(answer.approved, answer.approver or default_name, answer.reason)
    if isinstance(answer, bool):
        return Approval(answer, default_name, None)
    if (
        isinstance(answer, tuple)
        and len(answer) == 2
        and isinstance(answer[0], bool)
        and (answer[1] is None or isinstance(answer[1], str))
    ):
        return Approval(answer[0], default_name, answer[1])
    raise TypeError(f"an approver must return True/False, (bool, reason) or Approval, got {answer!r}")


# asyncio and concurrent.futures are imported when an approver is first asked, not with the kernel:
# a short-lived process (the Claude Code hook, one per tool call) that never asks one never pays for them.
_pool: Any = None
_pool_lock = threading.Lock()


def _approver_pool() -> Any:
    global _pool
    with _pool_lock:
        if _pool is None:
            import concurrent.futures

            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="corral-approver")
        return _pool


def _run_any(approver: Callable[..., Any], request: ApprovalRequest) -> Any:
    import inspect  # only when someone is asked: the hook's process never loads it for a decision

    result = approver(request)
    if inspect.isawaitable(result):
        import asyncio

        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def ask_sync(approver: Callable[..., Any], request: ApprovalRequest, timeout: float) -> Approval:
    """Ask from synchronous code; raises ``TimeoutError`` past ``timeout`` seconds."""
    import concurrent.futures

    future = _approver_pool().submit(_run_any, approver, request)
    try:
        answer = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError(f"approver did not answer within {timeout:g}s") from None
    return normalise(answer, approver_name(approver))


async def ask_async(approver: Callable[..., Any], request: ApprovalRequest, timeout: float) -> Approval:
    """Ask from async code: async approvers are awaited, sync ones run in a worker thread."""
    import asyncio
    import inspect

    async def run() -> Any:
        if inspect.iscoroutinefunction(approver) or inspect.iscoroutinefunction(
            getattr(approver, "__call__", None)  # noqa: B004
        ):
            return await approver(request)
        result = await asyncio.to_thread(approver, request)
        if inspect.isawaitable(result):
            result = await result
        return result

    try:
        answer = await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise TimeoutError(f"approver did not answer within {timeout:g}s") from None
    return normalise(answer, approver_name(approver))
