"""Kill a process inside a write (SIGKILL, after the store batch that precedes it) and look at what the
store kept: the decision, the INTENT that names it, the transaction and the reservation — all of it,
written in one commit — and the read made before, group-committed but written first in that commit.
Then recovery finds the step's outcome unknown and releases the reservation once it expires.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest

from corral.store.audit import verify_chain

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import killed_in_a_tool  # noqa: E402

ADMIN_URL = os.environ.get("CORRAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:////" + str(tmp_path / "corral.db").lstrip("/")
        return
    import psycopg

    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL not reachable at {ADMIN_URL}: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}")
    schema = f"killed_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{ADMIN_URL}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_killed_inside_a_write_the_decision_and_its_intent_are_durable(url: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(HERE / "killed_in_a_tool.py"), url],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    sid = proc.stdout.split()[0]

    gov = killed_in_a_tool.build(url)
    store = gov.store
    records = store.records(sid)
    assert verify_chain(records, store.head(sid)) == (True, None, "intact")
    assert [(r["tool"], r["decision"]) for r in records] == [("lookup", "allowed"), ("charge", "allowed")]
    read, decision = records
    assert read["outcome"]["status"] == "ok"  # buffered (no flush for 60 s): written first, in the write's commit
    assert "outcome" not in decision  # the tool never returned: no outcome, decision only
    budget = next(c for c in decision["checks"] if c["check"] == "budget")
    assert budget["passed"] and budget["detail"].startswith("reserved $2.50")

    (tx,) = store.transactions()
    assert tx["state"] == "open" and tx["session"] == sid
    (intent,) = store.steps(tx["id"])
    assert intent["status"] == "INTENT" and intent["tool"] == "charge" and intent["trace"] == decision["id"]
    assert store.usage(["agent:crash"]) == [(Decimal(0), Decimal("2.5"))]  # reserved, and still held

    later = datetime.now(UTC) + timedelta(seconds=gov.reservation_ttl + 60)
    gov.close()
    gov = killed_in_a_tool.build(url, clock=lambda: later)
    report = gov.recover()
    (done,) = report.transactions
    assert done.state == "needs_attention" and [u["tool"] for u in done.unknown] == ["charge"]
    assert report.released_reservations == 1
    assert gov.store.usage(["agent:crash"]) == [(Decimal(0), Decimal(0))]
    gov.close()
