"""The lethal trifecta, stopped: private data, untrusted content, and a way out.

1. ``corral run agent.yaml "..."`` — the agent reads a customer record (``pii``), then a document whose
   hidden comment tells it to mail that record outside (``untrusted``); it tries; the rule refuses.
2. ``corral why TRACE`` — the refusal's proof: the labels the session held and the rule that matched.

Offline: the scripted model plays the injected agent, the store is SQLite under .corral/ here.
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


def corral(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    if not capture:
        print(f"\n$ corral {' '.join(a if ' ' not in a else repr(a) for a in args)}", flush=True)
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "110")}
    return subprocess.run([sys.executable, "-m", "corral.cli", *args], cwd=HERE, env=env, text=True,
                          capture_output=capture)


def main() -> int:
    shutil.rmtree(HERE / ".corral", ignore_errors=True)
    run = corral("run", "agent.yaml", "What is the return policy? Customer C-1042.", "--json", capture=True)
    if run.returncode != 0:
        print(run.stdout, run.stderr)
        return 1
    result = json.loads(run.stdout)
    print("$ corral run agent.yaml \"What is the return policy? Customer C-1042.\"")
    for trace in result["traces"]:
        if trace["kind"] == "call":
            labels = ", ".join(trace.get("labels") or []) or "-"
            print(f"  {trace['tool']:<15} {trace['decision']:<8} labels before: {labels}")
    print(f"  answer: {result['answer']}")
    outbox = HERE / ".corral" / "outbox.json"
    print(f"  outbox: {json.loads(outbox.read_text()) if outbox.exists() else 'empty'}")
    blocked = next(t for t in result["traces"] if t["tool"] == "send_email" and t["decision"] == "blocked")
    corral("why", blocked["id"], "--store", STORE)
    return 0 if not outbox.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
