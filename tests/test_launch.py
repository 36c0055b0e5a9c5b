"""``corral.launch.end_hook_process``: a hook process ends at once, but only after everything it wrote is out.

The hook skips the interpreter's teardown (a tenth of a tool event's time); these tests hold it to the
rest of an ordinary exit: the exit status, the answer on stdout, the log, and audit records still
buffered in an open store all arrive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ENDS_WITH_WORK_PENDING = """
import logging, sys
from corral.governance.governor import Governor
from corral.launch import end_hook_process

gov = Governor(agent="a", store=sys.argv[1])
gov.register("lookup", lambda q="": q, effect="read")
s = gov.session(principal="p")
s.call("lookup", q="x")  # a read: its trace waits in the group-commit buffer
handler = logging.StreamHandler(sys.stderr)
logging.getLogger("probe").addHandler(handler)
logging.getLogger("probe").warning("logged before the end")
sys.stdout.write(s.id)  # no newline: still in stdout's buffer
end_hook_process(3)
print("never printed")
"""


def test_the_process_ends_with_its_status_after_flushing_stdout_logs_and_buffered_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'corral.db'}"
    done = subprocess.run([sys.executable, "-c", ENDS_WITH_WORK_PENDING, url], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3, done.stderr
    assert "never printed" not in done.stdout
    session_id = done.stdout
    assert "logged before the end" in done.stderr

    from corral.store import open_store

    store = open_store(url)
    try:
        records = store.records(session_id)
    finally:
        store.close()
    assert [r["tool"] for r in records] == ["lookup"]
    assert records[0]["outcome"]["status"] == "ok"


def test_a_hook_refusal_keeps_its_exit_status_and_message(tmp_path: Path) -> None:
    """A bad option exits 2 naming it, through the same quick exit."""
    done = subprocess.run([sys.executable, "-m", "corral.launch", "hook", "claude-code", "--bogus"],
                          capture_output=True, text=True, timeout=60, input=json.dumps({}))
    assert done.returncode == 2
    assert "unknown option '--bogus'" in done.stderr
