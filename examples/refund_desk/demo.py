"""The refund desk, end to end, the way a person drives it from a shell.

1. ``corral run agent.yaml "..."``  — the agent works until a refund over $100 needs a human;
2. ``corral approvals approve ID --as bob``  — a person approves that exact call;
3. ``corral run agent.yaml --session ID``  — the session resumes and the approved call runs once;
4. ``corral audit verify`` and ``corral why`` — the proof.

Everything runs offline: the scripted model, the SQLite store under .corral/ in this directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = "sqlite:///.corral/corral.db"


def corral(*args: str, capture: bool = False, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    if not quiet:
        print(f"\n$ corral {shown}", flush=True)
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "110")}
    return subprocess.run([sys.executable, "-m", "corral.cli", *args], cwd=HERE, env=env, text=True,
                          capture_output=capture)


def main() -> int:
    shutil.rmtree(HERE / ".corral", ignore_errors=True)  # a fresh shop and store for every demo
    first = corral("run", "agent.yaml", "Please refund order A1 and let the customer know.")
    if first.returncode != 3:
        print(f"expected the run to pause for an approval (exit 3), got {first.returncode}")
        return 1
    pending = corral("approvals", "list", "--store", STORE, "--json", capture=True)
    (request,) = json.loads(pending.stdout)
    print(f"{request['id']}  {request['tool']}({json.dumps(request['args'])})  — {request['reason']}")
    corral("approvals", "approve", request["id"], "--as", "bob", "--reason", "customer verified", "--store", STORE)
    resumed = corral("run", "agent.yaml", "--session", request["session"])
    if resumed.returncode != 0:
        return resumed.returncode
    corral("audit", "verify", "--store", STORE)
    shop = json.loads((HERE / ".corral" / "shop.json").read_text())
    print("\nthe shop afterwards:", json.dumps(shop, indent=2))
    refund = next(
        t for t in json.loads(corral("sessions", "show", request["session"], "--store", STORE, "--json",
                                     capture=True, quiet=True).stdout)["traces"]
        if t["tool"] == "issue_refund" and t["decision"] == "approved"
    )
    corral("why", refund["id"], "--store", STORE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
