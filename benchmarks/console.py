"""The web console: how long ``corral serve`` takes to answer its pages — the sign-in checked, the same
queries as the JSON API, the Jinja templates rendered — measured through the app itself (the ASGI stack
in process, no network), so the figure is the server's time for the page.

Rows: the sessions page (the first page of 50, newest first, and a page further on by its keyset) over
10,000 stored sessions (target < 300 ms), and one session's page with 200 governed calls, each with its
proof trace.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.registry import Run, case
from benchmarks.timing import Stats

SECTION = "console"
SESSIONS_PAGE = "console: sessions page (50 of 10,000, SQLite), rendered"
SESSION_PAGE = "console: one session's page (200 calls with their traces, SQLite), rendered"
TARGET_MS = 300.0
SESSIONS = 10_000
CALLS = 200


class _Console:
    """A served agent on a SQLite store of 10,000 sessions, one of them with 200 calls; a signed-in client."""

    def __init__(self) -> None:
        from starlette.testclient import TestClient

        from corral.server.app import create_app
        from corral.server.console.signin import COOKIE, sign_in
        from corral.server.identity import add_principal
        from corral.server.service import Service
        from corral.store.sql import SESSION_SUMMARY_COLUMNS, session_row

        self.folder = Path(tempfile.mkdtemp(prefix="corral-bench-console-"))
        (self.folder / "desk.rules").write_text('BLOCK lookup WHEN arg.query IS "secret"\n'
                                                'FLAG lookup WHEN arg.query MATCHES "*7"\n')
        agent = self.folder / "desk.yaml"
        agent.write_text("name: desk\ngovernance: {budget: {session: 100}, rules: desk.rules}\n")
        self.service = Service([str(agent)], f"sqlite:///{self.folder}/console.db")
        store = self.service.store
        rows = [session_row({"id": f"s{i:05d}", "agent": "desk", "principal": f"user{i % 20}", "roles": ["user"],
                             "phase": "explore", "status": "idle", "stop_reason": "end_turn",
                             "created": f"2026-11-{1 + i // 1000:02d}T10:{(i // 60) % 60:02d}:{i % 60:02d}.000Z",
                             "harness": {"stop_reason": "end_turn",
                                         "transcript": [{"role": "user", "content": "x" * 200}] * 6}})
                for i in range(SESSIONS)]
        with sqlite3.connect(self.folder / "console.db") as db:  # one transaction: the fixture, not the row
            db.executemany(f"INSERT INTO sessions ({SESSION_SUMMARY_COLUMNS}, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           rows)
        governor = self.service.agents["desk"].governor
        governor.register("lookup", lambda query: {"found": query}, effect="read")
        session = governor.session("user7", ("user",))
        for i in range(CALLS):
            session.call("lookup", query=f"invoice {i}")
        self.session = session.id
        _, token = add_principal(store, "carol", ["auditor"])
        _, signin_id = sign_in(store, token)
        self.client = TestClient(create_app(self.service), base_url="http://127.0.0.1:8421")
        self.client.__enter__()
        self.client.cookies.set(COOKIE, signin_id)
        first = self.get("/")
        self.later = "/?after=" + _cursor(first)

    def get(self, path: str) -> str:
        answer = self.client.get(path)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        return answer.text

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        shutil.rmtree(self.folder, ignore_errors=True)


def _cursor(page: str) -> str:
    import re

    found = re.search(r'href="/\?after=([^"&]+)"', page)
    if found is None:
        raise RuntimeError("the sessions page has no link to older sessions")
    return found.group(1)


def _console(run: Run) -> Any:
    return run.shared("console", _Console, close=lambda c: c.close())


def _count(run: Run) -> int:
    return {"full": 300, "quick": 60}.get(run.mode.name, 5)


@case(SESSIONS_PAGE, section=SECTION, group="console")
def sessions_page(run: Run) -> list[float]:
    console = _console(run)
    pages = ["/", console.later]
    state = {"i": 0}

    def page() -> object:
        state["i"] += 1
        return console.get(pages[state["i"] % 2])

    samples = run.sample(page, count=_count(run), warmup=5)
    p99 = Stats.of(samples).p99 / 1e6
    run.note(f"{SESSIONS_PAGE}: p99 {p99:.1f} ms; target < {TARGET_MS:g} ms: {'met' if p99 < TARGET_MS else 'NOT met'}")
    return samples


@case(SESSION_PAGE, section=SECTION, group="console")
def session_page(run: Run) -> list[float]:
    console = _console(run)
    return run.sample(lambda: console.get(f"/sessions/{console.session}"), count=max(_count(run) // 3, 3),
                      warmup=2)
