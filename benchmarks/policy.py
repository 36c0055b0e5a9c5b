"""The policy lifecycle: replaying stored traces under new rules, and what labels cost a call.

Replay rows time ``corral.governance.rules.replay.replay`` over a store of governed calls — reads and
priced writes in sessions of 20 calls, every trace with its rule inputs — and report nanoseconds per
stored trace (the goal: at least 20,000 traces a second from SQLite). Their baseline is reading the same
rows and parsing their JSON, the floor of any replay. The label row is the in-memory governed read with
the session already holding four labels and the tool declaring labels and tags, under rules that read
neither: it should cost what the plain read costs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.cases import READ_CALL, lookup
from benchmarks.durable import _url
from benchmarks.policies import CALLED_TOOL, FEW, corral_text
from benchmarks.registry import Run, Target, Versus, case
from benchmarks.timing import sample

POLICY = "policy lifecycle"
REPLAY_SQLITE = "rules replay from SQLite (per stored trace)"
REPLAY_POSTGRES = "rules replay from PostgreSQL (per stored trace)"
SCAN_SQLITE = "reading stored traces from SQLite (scan + JSON, per trace)"
SCAN_POSTGRES = "reading stored traces from PostgreSQL (scan + JSON, per trace)"
LABELLED_READ = f"governed read call, session holding 4 labels ({len(FEW)} rules)"
GOAL = 20_000  # traces per second from SQLite (issue: policy lifecycle)

REPLAY_RULES = corral_text(FEW) + (
    "FLAG * WHEN calls(note, 1h) AT LEAST 5\n"
    "BLOCK note WHEN labels CONTAINS secret\n"
    'REQUIRE APPROVAL FOR note WHEN arg.text MATCHES "*refund*"\n'
)
NEW_RULES = REPLAY_RULES + "BLOCK note WHEN calls(note, 1h) AT LEAST 3\n"

NO_LABEL_COST = Target("<=", 1.05, "labels add no measurable cost to a call without label rules")


def _traces(run: Run) -> int:
    """Stored calls per replay row: enough that one replay is a real scan."""
    return {"full": 20_000, "quick": 4_000}.get(run.mode.name, 200)


def note(text: str) -> dict[str, Any]:
    return {"noted": text}


def _store(run: Run, kind: str) -> tuple[str, int]:
    """A store of governed calls for this group: (URL, number of call traces)."""

    def build() -> tuple[str, int]:
        from corral import Governor

        url = f"sqlite:///{_folder(run)}/replay.db" if kind == "sqlite" else _url(run, "postgres")
        gov = Governor(agent="bench-replay", rules=REPLAY_RULES, budget={"agent": 1_000_000}, store=url,
                       phases=False)
        gov.register(CALLED_TOOL, lookup, effect="read", labels=["pii"])
        gov.register("note", note, effect="irreversible", cost=0.0001, tags=["egress"])
        total = _traces(run)
        made = 0
        while made < total:
            s = gov.session(principal="alice", roles=["analyst"])
            for i in range(20):
                if i % 4 == 3:
                    s.call("note", text=f"call {i}")
                else:
                    s.call(CALLED_TOOL, order_id=f"A{i}")
                made += 1
        gov.close()
        return url, made

    return run.shared(f"replay-{kind}-store", build)


def _folder(run: Run) -> Path:
    return run.shared("replay-folder", lambda: Path(tempfile.mkdtemp(prefix="corral-replay-")), close=shutil.rmtree)


def _replay(run: Run, kind: str) -> list[float]:
    from corral.governance.rules import Policy
    from corral.governance.rules.replay import replay
    from corral.store import open_store

    url, made = _store(run, kind)
    store = run.shared(f"replay-{kind}-open", lambda: open_store(url), close=lambda s: s.close())
    policy = Policy.from_sources([(NEW_RULES, "new.rules")])
    report = replay(store, policy, agent="bench-replay")
    if report.replayed != made or report.skipped:
        run.problem(f"replay from {kind} replayed {report.replayed} of {made} calls, skipped {dict(report.skipped)}")
    if not report.flips:
        run.problem(f"replay from {kind}: the stricter rule flipped nothing")
    samples = sample(lambda: replay(store, policy, agent="bench-replay"), 3, per=made, warmup=1)
    per_second = 1e9 / sorted(samples)[len(samples) // 2]
    goal = ""
    if kind == "sqlite":  # a target is reported, never enforced: a missed one is a finding, not a failed run
        goal = f"; target ≥ {GOAL:,}/s: {'met' if per_second >= GOAL else 'NOT met'}"
    run.note(f"replay from {kind}: {per_second:,.0f} stored traces/s over {made:,} traces{goal}")
    return samples


def _scan(run: Run, kind: str) -> list[float]:
    from corral.store import open_store

    url, made = _store(run, kind)
    store = run.shared(f"replay-{kind}-open", lambda: open_store(url), close=lambda s: s.close())

    def scan() -> None:
        for _, _, raw in store.scan_records(agent="bench-replay"):
            json.loads(raw)

    rows = sum(1 for _ in store.scan_records(agent="bench-replay"))
    return sample(scan, 3, per=rows, warmup=1)


@case(SCAN_SQLITE, section=POLICY, group="replay-sqlite")
def scan_sqlite(run: Run) -> list[float]:
    return _scan(run, "sqlite")


@case(REPLAY_SQLITE, section=POLICY, group="replay-sqlite", versus=[Versus(SCAN_SQLITE)])
def replay_sqlite(run: Run) -> list[float]:
    return _replay(run, "sqlite")


@case(SCAN_POSTGRES, section=POLICY, group="replay-postgres")
def scan_postgres(run: Run) -> list[float]:
    return _scan(run, "postgres")


@case(REPLAY_POSTGRES, section=POLICY, group="replay-postgres", versus=[Versus(SCAN_POSTGRES)])
def replay_postgres(run: Run) -> list[float]:
    return _replay(run, "postgres")


@case(LABELLED_READ, section=POLICY, versus=[Versus(READ_CALL, NO_LABEL_COST)])
def labelled_read(run: Run) -> list[float]:
    """The governed read of ``READ_CALL`` with labels in play: its tool declares labels and tags, and each
    session has already read four labels. The rules read none of them."""
    from corral import Governor

    gov = Governor(agent="bench", rules=corral_text(FEW))
    gov.register(CALLED_TOOL, lookup, effect="read", labels=["pii"], tags=["internal"])
    gov.register("load", lambda: None, effect="read", labels=["pii", "secret", "untrusted", "internal"])

    def fresh() -> Any:
        s = gov.session(principal="alice", roles=["analyst"])
        s.call("load")
        call = s.call
        return lambda: call(CALLED_TOOL, order_id="A1")

    probe = fresh()
    probe()
    if gov.check(CALLED_TOOL, {"order_id": "A1"}).decision != "allowed":
        run.problem("the labelled read was not allowed")
    return run.sample_sessions(fresh)

