"""A tour of corral's governance kernel, offline: a refund desk whose agent is kept honest.

Run it with ``make run``. Every decision below is made by the kernel, not by the script: the script
only tries things — a premature write, a plan, an approval, a failing step, a runaway loop — and prints
what corral decided and why.
"""

from __future__ import annotations

from pathlib import Path

from corral import Approval, Blocked, Call, Governor, TransactionFailed
from corral.store.audit import verify_chain

HERE = Path(__file__).parent
ORDERS = {"A1": {"total": 120.0, "customer": "ada@example.com"}, "VIP-7": {"total": 40.0, "customer": "vip@x.io"}}
LEDGER: list[str] = []


def human_approver(request):
    """Stands in for a person clicking Approve in the console."""
    print(f"    ? approval asked: {request.tool}({request.args}) — {request.reason}")
    return Approval(True, approver="bob", reason="customer verified by phone")


gov = Governor(
    agent="refund-desk",
    budget=1.00,
    rules=HERE / "refunds.rules",
    approver=human_approver,
    redact=["card_number"],
)


@gov.tool(effect="read", cost=0.05)
def lookup_order(order_id: str) -> dict:
    """Read an order."""
    return ORDERS[order_id]


@gov.tool(effect="reversible", cost=0.01)
def issue_refund(order_id: str, amount: float) -> dict:
    """Refund money to the customer's card."""
    LEDGER.append(f"refund {order_id} ${amount:.2f}")
    return {"refund_id": f"RF-{order_id}", "amount": amount}


@issue_refund.compensate
def void_refund(call: Call) -> None:
    LEDGER.append(f"void {call.result['refund_id']} (undoes {call.tool} {call.args})")


def restock(sku: str) -> str:
    LEDGER.append(f"restock {sku}")
    return sku


def unstock(call: Call) -> None:
    LEDGER.append(f"unstock {call.args['sku']}")


def update_crm(order_id: str) -> None:
    raise ConnectionError("CRM is down")


def send_email(to: str, body: str) -> str:
    LEDGER.append(f"email {to}: {body}")
    return "queued"


gov.register("restock", restock, effect="reversible", compensate=unstock)
gov.register("update_crm", update_crm, effect="reversible", compensate=lambda call: None)
gov.register("send_email", send_email, effect="irreversible", cost=0.02)
gov.register("check_status", lambda order_id: "shipped", effect="read", cost=0.01)


def heading(text: str) -> None:
    print(f"\n== {text}")


def show(trace) -> None:
    print(f"    → {trace.decision}: {trace.reason}")


def budget(s) -> str:
    b = s.budget
    return f"${b.spent:.2f} spent of ${b.limit:.2f} ({b.pct:.0f}%), gate {b.gate or '—'}"


s = gov.session(principal="ada-support", roles=["agent"])
print(f"corral kernel tour — session {s.id}, policy {gov.policy_sha256[:12]}…")

heading("1. explore: reads run, a premature write is blocked")
order = s.call("lookup_order", order_id="A1")
print(f"    lookup_order(A1) = {order}")
try:
    s.call("issue_refund", order_id="A1", amount=120.0)
except Blocked as refused:
    print("    issue_refund(A1, 120) before deciding:")
    show(refused.trace)

heading("2. decide: propose a plan (its hash binds the commit)")
with s.decide():
    plan = s.propose(
        [
            {"tool": "issue_refund", "args": {"order_id": "A1", "amount": 120.0}},
            {"tool": "restock", "args": {"sku": "*"}},
            {"tool": "send_email", "args": {"to": "ada@example.com", "body": "*"}},
        ]
    )
print(f"    plan {plan.id}: {len(plan.steps)} steps, sha256 {plan.sha256[:16]}…")

heading("3. commit: an approval, a step outside the plan refused, an email deferred to the end")
with s.commit(plan=plan) as tx:
    tx.call("issue_refund", order_id="A1", amount=120.0)
    show(s.traces[-1])
    try:
        tx.call("issue_refund", order_id="A1", amount=5.0)
    except Blocked as refused:
        print("    a second refund, not in the plan:")
        show(refused.trace)
    tx.call("restock", sku="SKU-1")
    tx.defer("send_email", to="ada@example.com", body="Your $120 refund is on its way.")
print(f"    transaction {tx.state}; ledger: {LEDGER}")

heading("4. a failing step: what ran is compensated, in reverse, with its arguments")
LEDGER.clear()
with s.decide():
    plan = s.propose(
        [
            {"tool": "issue_refund", "args": {"order_id": "VIP-7", "amount": 40.0}},
            {"tool": "restock", "args": {"sku": "SKU-9"}},
            {"tool": "update_crm", "args": {"order_id": "VIP-7"}},
        ]
    )
try:
    with s.commit(plan=plan) as tx:
        tx.call("issue_refund", order_id="VIP-7", amount=40.0)
        tx.call("restock", sku="SKU-9")
        tx.call("update_crm", order_id="VIP-7")
except TransactionFailed as failed:
    print(f"    {failed}")
    print(f"    cause: {failed.__cause__!r}")
print(f"    transaction {tx.state}; ledger: {LEDGER}")

heading("5. budget gates: a loop of paid reads ($0.01 each) meets degrade, force_decide, then stop")
print(f"    {budget(s)}")
tried_commit = False
reads, gate = 0, s.budget.gate
while True:
    try:
        s.call("check_status", order_id="VIP-7")
        reads += 1
    except Blocked as refused:
        print(f"    after {reads} paid reads, the next one:")
        show(refused.trace)
        break
    if s.budget.gate != gate:  # print when a gate is reached
        gate = s.budget.gate
        print(f"    {reads} reads ({s.traces[-1].decision}) · {budget(s)}")
    if s.budget.gate == "force_decide" and not tried_commit:
        tried_commit = True
        with s.decide():
            plan = s.propose([{"tool": "send_email", "args": {"to": "vip@x.io", "body": "*"}}])
        try:
            with s.commit(plan=plan):
                pass
        except Blocked as refused:
            print("    entering commit at force_decide:")
            show(refused.trace)

heading("6. the proof: one trace explained, and the audit chain verified")
refund = next(t for t in s.traces if t.tool == "issue_refund" and t.decision == "approved")
print("    " + refund.explain().replace("\n", "\n    "))
ok, bad, why = verify_chain(gov.store.records(s.id), gov.store.head(s.id))
print(f"    {len(s.traces)} traces; hash chain {'intact' if ok else f'BROKEN at record {bad}: {why}'}")
