"""schemathesis against a live ``corral serve``: it reads ``/openapi.json`` and sends every route valid and
invalid requests. No answer may be a 5xx, and every answer must match the status codes, content types
and schemas the document declares."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.server.serving import Team

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "negative_data_rejection")


def test_every_route_answers_as_its_openapi_document_says(serve: Any, sqlite_url: str, work: Path) -> None:
    server = serve(sqlite_url, env={"CORRAL_TEST_BROWSE_SECONDS": "0"})
    token = Team(sqlite_url).add("fuzz", "admin")
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    done = subprocess.run(
        [schemathesis, "run", f"{server.url}/openapi.json", "--header", f"Authorization: Bearer {token}",
         "--checks", CHECKS, "--max-examples", "12", "--seed", "7", "--workers", "1", "--no-shrink",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "30", "--output-sanitize", "true"],
        capture_output=True, text=True, cwd=work, timeout=900, env={**os.environ, "NO_COLOR": "1"})
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "No issues found" in done.stdout or "passed" in done.stdout, report
    assert "500" not in server.output()
