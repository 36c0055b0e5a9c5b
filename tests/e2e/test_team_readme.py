"""The README's "Run corral for a team" block, pasted into bash as written: PostgreSQL, principals, two
servers, a run on one, an approval on the other, the hook through --server, an audit, a revocation.

Only what belongs to this machine changes: this run's throwaway database and two free ports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.server.serving import free_port

ROOT = Path(__file__).resolve().parents[2]


def _block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Run corral for a team", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def test_the_team_section_of_the_readme_works_as_written(pg_url: str, tmp_path: Path) -> None:
    script = _block()
    lines = script.splitlines()
    assert lines[0].startswith("psql ") and lines[1].startswith("export CORRAL_STORE=postgresql://")
    a, b = free_port(), free_port()
    body = "\n".join([f"export CORRAL_STORE='{pg_url}'", *lines[2:]])
    body = body.replace("8421", str(a)).replace("8422", str(b))
    prelude = "set -euo pipefail\ntrap 'kill $SERVER_A $SERVER_B 2>/dev/null || true' EXIT\n"
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("CORRAL_TOKEN", None)
    done = subprocess.run(["bash", "-c", prelude + body], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert '"stop_reason":"awaiting_approval"' in out.replace(" ", "")
    assert re.search(r'"status":\s*"approved",\s*"approver":\s*"bob"', out)
    events = re.findall(r"^event: (\w+)$", out, re.M)
    assert "tool_call" in events and events[-1] == "done"
    assert '"permissionDecision": "allow"' in out
    assert '{"ok":true' in out.replace(" ", "")
    assert "revoked" in out  # alice's token, refused by the other server at once
    assert (tmp_path / "alice.token").read_text().startswith("corral_")
