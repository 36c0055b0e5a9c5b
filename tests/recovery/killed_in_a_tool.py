"""A child that dies (SIGKILL, no cleanup) inside a priced write, after its decision was recorded.

Run as a script: ``python killed_in_a_tool.py STORE_URL``. It prints its session id, makes a read (its
trace is buffered, and no flusher writes it for a minute) and, in commit, calls ``charge``, which kills
the process while it runs.
"""

from __future__ import annotations

import os
import signal
import sys

from corral import Governor

COST = 2.5


def build(url: str, *, flush_interval: float = 0.05, **options: object) -> Governor:
    from corral.store.postgres import PostgresStore
    from corral.store.sqlite import SQLiteStore

    kind = SQLiteStore if url.startswith("sqlite:") else PostgresStore
    store = kind(url, flush_interval=flush_interval)
    gov = Governor(agent="crash", store=store, budget={"agent": 10}, **options)  # type: ignore[arg-type]

    def charge(account: str, amount: float) -> dict:
        os.kill(os.getpid(), signal.SIGKILL)
        return {"charged": amount}  # never reached

    gov.register("lookup", lambda q: q, effect="read")
    gov.register("charge", charge, effect="reversible", compensate=lambda call: None,
                 cost=lambda args: args["amount"])
    return gov


def main() -> None:
    gov = build(sys.argv[1], flush_interval=60)  # the read's trace waits for the write's batch
    s = gov.session("crash-test")
    print(s.id, flush=True)
    s.call("lookup", q="before")
    with s.decide():
        pass
    with s.commit() as tx:
        tx.call("charge", account="acct-1", amount=COST)


if __name__ == "__main__":
    main()
