"""Tools of the console's end-to-end agent. ``lookup`` first waits for the file ``CORRAL_TEST_LOOKUP_GATE``
names (when set), then takes ``CORRAL_TEST_LOOKUP_SECONDS`` (default 0), so a test can open a page
before the run goes on and watch it while it is under way; every effect is written to ``CORRAL_TEST_LOG``."""

from __future__ import annotations

import os
import time
from pathlib import Path


def _log(line: str) -> None:
    with Path(os.environ.get("CORRAL_TEST_LOG", "effects.log")).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def lookup(query: str) -> dict:
    """Look an invoice up."""
    gate = os.environ.get("CORRAL_TEST_LOOKUP_GATE")
    deadline = time.monotonic() + 60
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(float(os.environ.get("CORRAL_TEST_LOOKUP_SECONDS", "0")))
    _log(f"lookup {query}")
    return {"invoice": "INV-7", "amount": 250, "query": query}


def wipe(target: str) -> dict:
    """Wipe a database."""
    _log(f"wipe {target}")
    return {"wiped": target}


def pay(amount: float) -> dict:
    """Pay an amount."""
    _log(f"pay {amount}")
    return {"paid": amount}


def refund(call) -> None:
    _log(f"refund {call.args['amount']}")
