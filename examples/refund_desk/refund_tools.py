"""The refund desk's tools: a pretend shop kept in a JSON file in the working directory."""

from __future__ import annotations

import json
from pathlib import Path

SHOP = Path(".corral") / "shop.json"
ORDERS = {"A1": {"total": 120.0, "customer": "ada@example.com", "sku": "SKU-1"}}


def _load() -> dict:
    if SHOP.exists():
        return json.loads(SHOP.read_text())
    return {"refunds": {}, "stock": {"SKU-1": 0}, "crm": {}, "outbox": []}


def _save(shop: dict) -> None:
    SHOP.parent.mkdir(parents=True, exist_ok=True)
    SHOP.write_text(json.dumps(shop, indent=2))


def lookup_order(order_id: str) -> dict:
    """Look up an order by id."""
    if order_id not in ORDERS:
        raise KeyError(f"no order {order_id}")
    return ORDERS[order_id]


def issue_refund(order_id: str, amount: float) -> dict:
    """Refund an amount to the order's card."""
    shop = _load()
    refund_id = f"RF-{order_id}-{len(shop['refunds']) + 1}"
    shop["refunds"][refund_id] = {"order": order_id, "amount": amount, "status": "paid"}
    _save(shop)
    return {"refund_id": refund_id, "amount": amount}


def void_refund(call) -> None:
    shop = _load()
    shop["refunds"][call.result["refund_id"]]["status"] = "voided"
    _save(shop)


def restock(sku: str) -> dict:
    """Put a returned item back into stock."""
    shop = _load()
    shop["stock"][sku] = shop["stock"].get(sku, 0) + 1
    _save(shop)
    return {"sku": sku, "stock": shop["stock"][sku]}


def unstock(call) -> None:
    shop = _load()
    shop["stock"][call.args["sku"]] -= 1
    _save(shop)


def update_crm(order_id: str, note: str) -> dict:
    """Write a note on the customer's record in the CRM."""
    raise ConnectionError("CRM unavailable (503)")


def revert_crm(call) -> None:
    return None


def send_email(to: str, body: str) -> dict:
    """Email a customer. Cannot be unsent."""
    shop = _load()
    shop["outbox"].append({"to": to, "body": body})
    _save(shop)
    return {"queued": True}
