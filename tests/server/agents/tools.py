"""Tools for the server tests' agents. Every effect and every compensation is written, one line each, to
the file named by ``CORRAL_TEST_LOG`` — so a test can count how often a compensation ran, across processes."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _log(line: str) -> None:
    path = Path(os.environ.get("CORRAL_TEST_LOG", "effects.log"))
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def browse(page: str) -> dict:
    """Read a page (slowly: a second each)."""
    time.sleep(float(os.environ.get("CORRAL_TEST_BROWSE_SECONDS", "1.0")))
    _log(f"browse {page}")
    return {"page": page, "text": f"the text of {page}"}


def book(item: str) -> dict:
    """Book an item."""
    _log(f"book {item}")
    return {"booked": item}


def unbook(call) -> None:
    _log(f"unbook {call.args['item']} {call.idempotency_key}")


def hold(item: str) -> dict:
    """Hold an item: waits until the gate file exists (the tests kill the server meanwhile)."""
    _log(f"hold {item}")
    gate = Path(os.environ.get("CORRAL_TEST_GATE", "gate"))
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"held": item}


def unhold(call) -> None:
    _log(f"unhold {call.args['item']} {call.idempotency_key}")


def pay(amount: float) -> dict:
    """Pay an amount."""
    _log(f"pay {amount}")
    return {"paid": amount}


def refund(call) -> None:
    _log(f"refund {call.args['amount']}")
