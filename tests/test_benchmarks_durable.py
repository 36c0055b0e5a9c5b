"""The durable-store benchmark rows run (at a tiny size), and PostgreSQL's rows skip or fail as promised.

Behaviour only: no timing is asserted. The rows are not in the suite's tiny mode (they touch disks and
servers), so their cases are measured here one by one.
"""

from __future__ import annotations

import pytest

pytest.importorskip("cedarpy")

from benchmarks import MODES, REGISTRY, Run, Skip, report, run
from benchmarks.durable import DURABLE, SQLITE_COMMIT

DEAD_SERVER = "postgresql://nobody@127.0.0.1:1/corral"


def _cases(kind: str) -> list:
    return [c for c in REGISTRY if c.group == f"durable {kind}"]


def test_the_sqlite_rows_measure_something() -> None:
    r = Run(MODES["tiny"])
    try:
        for c in _cases("sqlite"):
            samples = c.measure(r)
            assert samples and all(s > 0 for s in samples), c.name
    finally:
        r.drop_fixtures()
    assert not r.problems, r.problems
    assert any("4 processes" in note for note in r.notes)


def test_every_durable_row_is_in_quick_and_full_but_not_tiny() -> None:
    durable = {c.name for c in REGISTRY if c.section == DURABLE}
    assert SQLITE_COMMIT in durable and len(durable) == 9
    for c in REGISTRY:
        if c.section == DURABLE:
            assert c.modes == frozenset({"full", "quick"})


def test_postgres_rows_are_skipped_with_a_note_where_no_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_BENCH_POSTGRES", DEAD_SERVER)
    monkeypatch.delenv("CI", raising=False)
    r = Run(MODES["tiny"])
    with pytest.raises(Skip, match="not reachable"):
        _cases("postgres")[0].measure(r)
    r.drop_fixtures()
    result = run(MODES["quick"], only="PostgreSQL commit")
    assert result.ok and result.rows == []
    assert any(note.startswith("skipped: PostgreSQL commit") for note in result.notes)
    assert "skipped: PostgreSQL commit" in report.plain(result)


def test_postgres_rows_fail_in_ci_where_no_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_BENCH_POSTGRES", DEAD_SERVER)
    monkeypatch.setenv("CI", "true")
    result = run(MODES["quick"], only="PostgreSQL commit")
    assert not result.ok
    (row,) = result.rows
    assert row.error is not None and "CI=true" in row.error
