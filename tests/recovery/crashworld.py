"""A small world for crash tests: tools that write their effects to a JSON-lines file, and a child
process that dies (SIGKILL, no cleanup) at a chosen point of a transaction.

Run as a script: ``python crashworld.py STORE_URL WORLD_FILE KILL_AT``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from corral import Governor


def _log(world: Path, entry: dict) -> None:
    with world.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _die_if(kill_at: str, point: str) -> None:
    if kill_at == point:
        os.kill(os.getpid(), signal.SIGKILL)


AGENT = "crash"


def build(url: str, world: Path, kill_at: str = "") -> Governor:
    gov = Governor(agent=AGENT, store=url, retry_backoff=0)
    _register(gov, world, kill_at)
    return gov


def register(gov: Governor) -> None:
    """For ``corral recover --tools crashworld``: the same registry, the world file from the environment."""
    _register(gov, Path(os.environ["CRASH_WORLD"]))


def _register(gov: Governor, world: Path, kill_at: str = "") -> None:

    def charge(account: str, amount: int) -> dict:
        _log(world, {"do": "charge", "account": account, "amount": amount})
        return {"charged": amount}

    def refund(call) -> None:
        _die_if(kill_at, "inside_compensation_before")
        _log(world, {"undo": "charge", "account": call.args["account"], "key": call.idempotency_key})
        _die_if(kill_at, "inside_compensation_after")

    def reserve(room: str) -> str:
        _die_if(kill_at, "inside_step_before")
        _log(world, {"do": "reserve", "room": room})
        _die_if(kill_at, "inside_step_after")
        return room

    def cancel(call) -> None:
        _log(world, {"undo": "reserve", "room": call.args["room"], "key": call.idempotency_key})

    def fail() -> None:
        raise RuntimeError("step three fails")

    gov.register("lookup", lambda q: q, effect="read")
    gov.register("charge", charge, effect="reversible", compensate=refund)
    gov.register("reserve", reserve, effect="reversible", compensate=cancel,
                 compensate_unknown=kill_at.startswith("inside_step") and kill_at.endswith("_unknown_ok"))
    gov.register("fail", fail, effect="reversible", compensate=lambda call: None)


def main() -> None:
    url, world, kill_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    point = kill_at.removesuffix("_unknown_ok")
    gov = build(url, world, point)
    s = gov.session("crash-test")
    print(s.id, flush=True)
    s.call("lookup", q="before")
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("charge", account="acct-1", amount=5)
        _die_if(point, "between_steps")
        tx.call("reserve", room="101")
        tx.call("fail")  # rolls back: the compensations run (and may be killed)


if __name__ == "__main__":
    main()
