"""The approval stage of a governed call (DESIGN §6): after the decision, before the record.

Asked only when a ``REQUIRE APPROVAL`` rule matched and every other check passed. In order: the budget
is reserved first (no one approves a call that cannot be paid for); an approved plan covering the call,
or a stored grant bound to this exact call, approves it without asking; else the approver is asked, or —
with none — a pending request is stored and the call raises ``ApprovalPending``.

Every way out is traced: approved (the record carries the approval check), denied, pending, or a fault
of the approver (which blocks, §9).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, timedelta

from corral.errors import ApprovalDenied, ApprovalPending, GovernanceError
from corral.governance import approvals as ap
from corral.governance.decision import APPROVAL_REQUIRED
from corral.governance.pipeline import PendingCall, fault, parse_ts, refuse, release, reserve
from corral.governance.traces import iso, redact
from corral.ids import new_id


def authorize(pc: PendingCall) -> None:
    """Approve the call or raise (traced): ``ApprovalPending``, ``ApprovalDenied`` or ``Blocked``."""
    request = _start(pc)
    if request is None:
        return
    gov = pc.gov
    try:
        answer = ap.ask_sync(gov.approver, request, gov.approver_timeout)
    except Exception as exc:
        _fault(pc, request, exc)
    _apply_answer(pc, request, answer)


async def aauthorize(pc: PendingCall) -> None:
    """``authorize`` for async code: an async approver is awaited on the caller's loop."""
    request = _start(pc)
    if request is None:
        return
    gov = pc.gov
    try:
        answer = await ap.ask_async(gov.approver, request, gov.approver_timeout)
    except Exception as exc:
        _fault(pc, request, exc)
    _apply_answer(pc, request, answer)


def _start(pc: PendingCall) -> ap.ApprovalRequest | None:
    """Everything before asking: None when no one needs to be asked (no rule requires it, or a stored
    grant or an approved plan covers the call); raises when it is pending, denied or faulty."""
    if pc.decision.decision != APPROVAL_REQUIRED:
        return None
    reserve(pc)
    try:
        return _resolve_without_asking(pc)
    except GovernanceError:
        raise
    except Exception as exc:
        release(pc)
        raise fault(pc.session, pc.record, f"governance fault in approvals: {exc!r}") from None


def _resolve_without_asking(pc: PendingCall) -> ap.ApprovalRequest | None:
    """Returns None when the call is now approved; the request to ask about otherwise. Raises (traced)
    when it is pending or denied."""
    session = pc.session
    gov = pc.gov
    plan = session.plan if pc.tx is not None else None
    if pc.plan_step is not None and plan is not None and plan.approved_by:
        _approved(pc, None, plan.approved_by, f"covered by approved plan {plan.id}")
        return None
    now = gov.now()
    binding = ap.binding_hash(session.id, pc.name, pc.args, session.phase, gov.policy_sha256)
    store = gov.store
    for found in sorted(store.find_approvals(binding=binding), key=lambda a: a["created"]):
        status = found["status"]
        expired = parse_ts(found["expires"]) <= now
        if status in (ap.PENDING, ap.APPROVED) and expired:
            store.resolve_approval(found["id"], status, {"status": ap.EXPIRED})
            _denied(pc, found["id"], None, f"approval {found['id']} expired")
        if status == ap.APPROVED:
            if store.resolve_approval(found["id"], ap.APPROVED, {"status": ap.USED}):
                _approved(pc, found["id"], found.get("approver"), found.get("decision_reason"))
                return None
        elif status in (ap.DENIED, ap.EXPIRED):
            if store.resolve_approval(found["id"], status, {"status": ap.USED}):
                why = found.get("decision_reason") or ("expired" if status == ap.EXPIRED else "denied")
                _denied(pc, found["id"], found.get("approver"), f"approval {found['id']} {why}")
        elif status == ap.PENDING and gov.approver is None:
            _pending(pc, ap.ApprovalRequest.from_dict(found))
    request = ap.ApprovalRequest(
        id=new_id(),
        binding=binding,
        session=session.id,
        agent=gov.agent,
        principal=session.principal,
        tool=pc.name,
        args=redact(pc.args, gov.redact_names),
        phase=session.phase,
        reason=pc.decision.approval_reason or pc.decision.reason,
        created=iso(now),
        expires=iso(now + timedelta(seconds=gov.approval_ttl)),
        plan=plan.id if plan is not None else None,
    )
    store.put_approval(request.to_dict())
    if gov.approver is None:
        _pending(pc, request)
    return request


def _apply_answer(pc: PendingCall, request: ap.ApprovalRequest, answer: ap.Approval) -> None:
    gov = pc.gov
    store = gov.store
    if answer.approved and not gov.allow_self_approval and ap.same_principal(answer.approver, pc.session.principal):
        store.resolve_approval(request.id, ap.PENDING, {"status": ap.USED, "decision_reason": "self-approval refused"})
        _denied(pc, request.id, answer.approver, f"{answer.approver} cannot approve their own request")
    fields = {  # the asking call consumes the answer either way: the next call asks again
        "approver": answer.approver,
        "decided": iso(gov.now()),
        "decision_reason": answer.reason,
        "status": ap.USED,
        "approved": answer.approved,
    }
    store.resolve_approval(request.id, ap.PENDING, fields)
    if answer.approved:
        _approved(pc, request.id, answer.approver, answer.reason)
    else:
        _denied(pc, request.id, answer.approver, answer.reason or f"denied by {answer.approver}")


def _fault(pc: PendingCall, request: ap.ApprovalRequest, exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # the refusal below stands either way; the request expires on its own
        pc.gov.store.resolve_approval(
            request.id, ap.PENDING, {"status": ap.USED, "decision_reason": f"approver failed: {exc!r}"}
        )
    release(pc)
    pc.record["checks"].append(
        {"check": "approval", "passed": False, "approval": request.id, "detail": f"approver failed: {exc!r}"}
    )
    raise fault(pc.session, pc.record, f"governance fault: the approver failed: {exc!r}", pc.record["checks"])


def _approved(pc: PendingCall, approval_id: str | None, approver: str | None, why: str | None) -> None:
    ts = pc.gov.now().astimezone(UTC).strftime("%H:%M")
    detail = f"approved {ts}" + (f" by {approver}" if approver else "") + (f": {why}" if why else "")
    pc.record["checks"].append(
        {"check": "approval", "passed": True, "approval": approval_id, "approver": approver, "detail": detail}
    )
    pc.record["approval"] = approval_id
    pc.record["decision"] = "approved"


def _denied(pc: PendingCall, approval_id: str | None, approver: str | None, why: str) -> None:
    release(pc)
    pc.record["checks"].append(
        {"check": "approval", "passed": False, "approval": approval_id, "approver": approver, "detail": why}
    )
    pc.record["approval"] = approval_id
    raise refuse(pc.session, pc.record, why, exc_type=ApprovalDenied, decision="denied")


def _pending(pc: PendingCall, request: ap.ApprovalRequest) -> None:
    release(pc)
    pc.record["checks"].append(
        {
            "check": "approval",
            "passed": False,
            "approval": request.id,
            "detail": f"pending approval {request.id} (expires {request.expires})",
        }
    )
    pc.record["approval"] = request.id
    raise refuse(
        pc.session,
        pc.record,
        f"{pc.decision.reason}: waiting for approval {request.id}",
        exc_type=ApprovalPending,
        decision="pending",
        request=request,
    )
