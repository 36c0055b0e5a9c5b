"""Where a governed call's time goes: cProfile over many ``s.call`` with N rules, top functions first."""

from __future__ import annotations

import cProfile
import io
import pstats

from benchmarks.cases import CALLED_TOOL, build_governor
from benchmarks.policies import ruleset


def profile_governed_call(n: int = 1_000, *, calls: int = 20_000, top: int = 25) -> str:
    gov = build_governor(ruleset(n))
    warm = gov.session(principal="alice", roles=["analyst"])
    for _ in range(200):
        warm.call(CALLED_TOOL, order_id="A1")
    profiler = cProfile.Profile()
    done = 0
    while done < calls:  # a fresh session per 2,000 calls, as in the timed rows
        call = gov.session(principal="alice", roles=["analyst"]).call
        batch = min(2_000, calls - done)
        profiler.enable()
        for _ in range(batch):
            call(CALLED_TOOL, order_id="A1")
        profiler.disable()
        done += batch
    out = io.StringIO()
    print(f"cProfile: {calls:,} governed calls of {CALLED_TOOL} with {n:,} rules", file=out)
    stats = pstats.Stats(profiler, stream=out)
    print(by_file(stats), file=out)
    stats.strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def by_file(stats: pstats.Stats, top: int = 15) -> str:
    """Own time summed per source file: which module the time is spent in, at a glance."""
    totals: dict[str, float] = {}
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = "(built-ins: list, isinstance, hashlib, …)" if filename == "~" else "/".join(filename.split("/")[-2:])
        totals[key] = totals.get(key, 0.0) + tottime
    grand = sum(totals.values()) or 1.0
    lines = ["own time by file:"]
    for key, spent in sorted(totals.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {spent / grand:6.1%}  {key}")
    return "\n".join(lines) + "\n"
