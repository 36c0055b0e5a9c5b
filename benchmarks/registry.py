"""The registry of benchmark cases and the runner that turns them into rows.

A case is a function ``(run) -> samples`` (ns per operation) with a name, a section (where its row is
printed), and the rows it should be compared with. Adding a benchmark is adding one decorated function::

    from benchmarks.cases import build_governor, governed_calls
    from benchmarks.policies import FEW

    @case("governed read call, SQLite store", section="stores", group="sqlite",
          versus=[Versus("governed read call (3 rules)")])
    def sqlite_read(run: Run) -> list[float]:
        gov = run.shared("governor-sqlite", lambda: build_governor(FEW, store=f"sqlite:///{tmp}/b.db"))
        return governed_calls(run, gov)

``Run`` carries the mode (how many iterations), fixtures shared by the cases of one ``group`` (a governor
with 10,000 rules is built once for its call, decision and Cedar rows, then dropped so the next group
starts with a clean heap; ``close=`` says how to clean one up), and ``note`` for lines printed under the
table. Cases run group by group, in ``rounds``: each round measures every case once, and a row reports
its median round, so a burst of noise on a shared machine spoils one round rather than one row. A case
that raises becomes an error row; the run goes on and the command exits non-zero. A case that raises
``Skip`` (its server is not there) has no row, only a note saying why.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.timing import Stats, sample, sample_batched


@dataclass(frozen=True)
class Mode:
    """How hard to measure. ``quick`` is the CI smoke run; ``tiny`` is for the test suite."""

    name: str
    rounds: int  # every case is measured once per round; a row reports its median round
    iterations: int  # timed calls per governed/decision row and round
    warmup: int
    session_batch: int  # calls per fresh session
    raw_inner: int  # plain calls per sample of the floor row
    cedar_batch: int  # requests per is_authorized_batch call
    cedar_repeats: int  # timed batches per Cedar row and round
    cedar_budget_s: float  # time one Cedar row may take over all rounds; batches, then repeats, shrink


MODES: dict[str, Mode] = {
    "full": Mode(
        "full",
        rounds=3,
        iterations=10_000,
        warmup=1_000,
        session_batch=2_000,
        raw_inner=1_000,
        cedar_batch=1_000,
        cedar_repeats=15,
        cedar_budget_s=60.0,
    ),
    "quick": Mode(
        "quick",
        rounds=1,
        iterations=2_000,
        warmup=300,
        session_batch=1_000,
        raw_inner=200,
        cedar_batch=200,
        cedar_repeats=10,
        cedar_budget_s=5.0,
    ),
    "tiny": Mode(
        "tiny",
        rounds=1,
        iterations=50,
        warmup=10,
        session_batch=25,
        raw_inner=10,
        cedar_batch=20,
        cedar_repeats=3,
        cedar_budget_s=1.0,
    ),
}


@dataclass(frozen=True)
class Target:
    """A goal on the ratio row ÷ baseline (p50 over p50), e.g. ``Target("<=", 0.10)``."""

    op: str  # "<=" or ">="
    ratio: float
    why: str = ""

    def met(self, ratio: float) -> bool:
        return ratio <= self.ratio if self.op == "<=" else ratio >= self.ratio

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.ratio:g}×"


@dataclass(frozen=True)
class Versus:
    """Compare a case with the row named ``baseline``, optionally against a target."""

    baseline: str
    target: Target | None = None


@dataclass(frozen=True)
class Case:
    name: str
    section: str
    measure: Callable[[Run], list[float]]
    versus: tuple[Versus, ...] = ()
    modes: frozenset[str] | None = None  # None: every mode
    group: str | None = None  # cases of one group run together and share fixtures; None: its own


REGISTRY: list[Case] = []
SECTIONS: list[str] = []


class Skip(Exception):
    """Raised by a case that cannot run on this machine (e.g. no PostgreSQL server): no row, a note."""


def case(
    name: str,
    *,
    section: str,
    versus: Iterable[Versus] = (),
    modes: Iterable[str] | None = None,
    group: str | None = None,
) -> Callable[[Callable[[Run], list[float]]], Callable[[Run], list[float]]]:
    """Register ``fn`` as a benchmark row. Sections print in the order they are first used; groups run
    in the order they are first used."""

    def register(fn: Callable[[Run], list[float]]) -> Callable[[Run], list[float]]:
        chosen = frozenset(modes) if modes is not None else None
        add(Case(name, section, fn, tuple(versus), chosen, group))
        return fn

    return register


def add(c: Case) -> None:
    if any(existing.name == c.name for existing in REGISTRY):
        raise ValueError(f"benchmark {c.name!r} is registered twice")
    REGISTRY.append(c)
    if c.section not in SECTIONS:
        SECTIONS.append(c.section)


# ------------------------------------------------------------------------------------------ a run


class Run:
    """What a case gets: the mode, the round, shared fixtures, notes, and the measuring helpers."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.round = 0
        self.notes: list[str] = []
        self.problems: list[str] = []
        self._shared: dict[str, Any] = {}
        self._closers: list[tuple[str, Callable[[Any], object]]] = []

    def shared(self, key: str, build: Callable[[], Any], close: Callable[[Any], object] | None = None) -> Any:
        """A fixture built once and shared by the cases of the current group (dropped after it, with
        ``close(fixture)`` when given: a temporary directory removed, a store closed)."""
        if key not in self._shared:
            self._shared[key] = build()
            if close is not None:
                self._closers.append((key, close))
        return self._shared[key]

    def drop_fixtures(self) -> None:
        closers, self._closers = self._closers, []
        for key, close in reversed(closers):  # the last built first: it may stand on an earlier one
            try:
                close(self._shared[key])
            except Exception as exc:  # a fixture that cannot be cleaned up is worth a line, not the run
                self.notes.append(f"cleaning up {key}: {exc!r}")
        self._shared.clear()

    def note(self, line: str) -> None:
        """A line printed under the table (and kept in the JSON); noted once, in the first round."""
        if self.round == 0 and line not in self.notes:
            self.notes.append(line)

    def problem(self, line: str) -> None:
        """A note that makes the command exit non-zero (e.g. Cedar and corral disagree)."""
        self.notes.append(line)
        self.problems.append(line)

    @property
    def cedar_budget_s(self) -> float:
        """The time a Cedar row may take in this round."""
        return self.mode.cedar_budget_s / self.mode.rounds

    def sample(self, op: Callable[[], object], count: int | None = None, **kwargs: Any) -> list[float]:
        kwargs.setdefault("warmup", self.mode.warmup)
        return sample(op, count if count is not None else self.mode.iterations, **kwargs)

    def sample_sessions(self, fresh: Callable[[], Callable[[], object]]) -> list[float]:
        """Samples of an operation bound to a session, with a fresh session every ``session_batch``."""
        m = self.mode
        return sample_batched(fresh, m.iterations, batch=m.session_batch, warmup=m.warmup)


@dataclass
class Result:
    """A case's measurements over the rounds, or the error that stopped it."""

    name: str
    rounds: list[Stats] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def stats(self) -> Stats | None:
        """The median round by p50 (the middle one of three), so one noisy round does not move the row."""
        if self.error is not None or not self.rounds:
            return None
        ordered = sorted(self.rounds, key=lambda s: s.p50)
        return ordered[(len(ordered) - 1) // 2]


@dataclass
class Row:
    """One printed line: a result, possibly compared with a baseline."""

    benchmark: str
    section: str
    stats: Stats | None
    baseline: str | None = None
    ratio: float | None = None
    target: Target | None = None
    error: str | None = None
    round_p50s: tuple[float, ...] = ()  # ns, one per round, in the order measured

    @property
    def met(self) -> bool | None:
        if self.target is None or self.ratio is None:
            return None
        return self.target.met(self.ratio)

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "benchmark": self.benchmark,
            "section": self.section,
            "p50_us": s.p50 / 1e3 if s else None,
            "p99_us": s.p99 / 1e3 if s else None,
            "mean_us": s.mean / 1e3 if s else None,
            "ops_per_s": s.ops_per_s if s else None,
            "samples": s.count if s else 0,
            "rounds_p50_us": [p / 1e3 for p in self.round_p50s],
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": str(self.target) if self.target else None,
            "target_why": self.target.why if self.target else None,
            "met": self.met,
            "error": self.error,
        }


@dataclass
class Report:
    mode: Mode
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.error is None for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.name,
            "rounds": self.mode.rounds,
            "iterations_per_round": self.mode.iterations,
            "machine": self.machine,
            "rows": [r.to_dict() for r in self.rows],
            "notes": self.notes,
            "problems": self.problems,
        }


def selected(mode: Mode, only: str | None = None) -> list[Case]:
    """The cases this mode runs (optionally those whose name contains ``only``), in registration order."""
    cases = [c for c in REGISTRY if c.modes is None or mode.name in c.modes]
    if only:
        cases = [c for c in cases if only.lower() in c.name.lower()]
    return cases


def run(
    mode: Mode,
    *,
    only: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run every selected case in every round, then lay the results out as rows with their baselines."""
    from benchmarks.machine import describe

    r = Run(mode)
    cases = selected(mode, only)
    groups = {c.group or c.name: i for i, c in reversed(list(enumerate(cases)))}
    by_group = sorted(cases, key=lambda c: groups[c.group or c.name])
    results = {c.name: Result(c.name) for c in cases}
    for r.round in range(mode.rounds):
        current = None
        for c in by_group:
            if (c.group or c.name) != current:
                r.drop_fixtures()
                current = c.group or c.name
            res = results[c.name]
            if res.error is not None or res.skipped is not None:
                continue
            if progress:
                progress(f"{c.name} (round {r.round + 1} of {mode.rounds})" if mode.rounds > 1 else c.name)
            try:
                res.rounds.append(Stats.of(c.measure(r)))
            except Skip as why:
                res.skipped = str(why)
                r.notes.append(f"skipped: {c.name} — {why}")
            except Exception as exc:  # a broken case is a row that says so, not a crashed run
                res.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                r.problem(f"{c.name}: {res.error}")
    r.drop_fixtures()

    report = Report(mode, describe(), notes=r.notes, problems=r.problems)
    order = {section: i for i, section in enumerate(SECTIONS)}
    for c in sorted(cases, key=lambda c: order[c.section]):  # stable: registration order within a section
        res = results[c.name]
        if res.skipped is not None:
            continue
        p50s = tuple(s.p50 for s in res.rounds)
        rows = []
        for vs in c.versus if res.error is None else ():
            base = results.get(vs.baseline)
            if base is None and vs.target is None:
                continue  # the baseline is not in this mode (e.g. Cedar at 10,000 in --quick)
            ratio = None
            if base is not None and base.stats is not None and res.stats is not None and base.stats.p50 > 0:
                ratio = res.stats.p50 / base.stats.p50
            rows.append(Row(c.name, c.section, res.stats, vs.baseline, ratio, vs.target, round_p50s=p50s))
        report.rows += rows or [Row(c.name, c.section, res.stats, error=res.error, round_p50s=p50s)]
        st = res.stats
        if st is not None and st.mean > 1.25 * st.p50:
            report.notes.append(
                f"{c.name}: mean {st.mean / 1e3:,.1f} µs vs p50 {st.p50 / 1e3:,.1f} µs — rare slow calls "
                f"(periodic work such as a group commit) that p50 and p99 leave out; ops/s (1/mean) counts them"
            )
    return report
