"""Measuring: warm up, keep the garbage collector out of the loop, and return nanoseconds per operation.

Every sample is ``perf_counter_ns`` around ``inner`` back-to-back operations, divided by ``inner`` and
``per``. ``inner`` > 1 is for operations so short (a plain function call) that the clock would
otherwise be most of what is measured; ``per`` is for an operation that does several units of work at
once (a Cedar batch of 500 requests is 500 requests).
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from time import perf_counter_ns


@contextmanager
def quiet_gc() -> Iterator[None]:
    """No collection during a timing loop: collect first, freeze what survives, re-enable after."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


def sample(
    op: Callable[[], object],
    count: int,
    *,
    inner: int = 1,
    per: int = 1,
    warmup: int = 0,
) -> list[float]:
    """``count`` samples of ``op`` in ns per unit of work, after ``warmup`` untimed runs."""
    for _ in range(warmup):
        op()
    out: list[float] = []
    append = out.append
    clock = perf_counter_ns
    divisor = inner * per
    with quiet_gc():
        if inner == 1:
            for _ in range(count):
                t0 = clock()
                op()
                append((clock() - t0) / divisor)
        else:
            loop = range(inner)
            for _ in range(count):
                t0 = clock()
                for _ in loop:
                    op()
                append((clock() - t0) / divisor)
    return out


def sample_batched(
    fresh: Callable[[], Callable[[], object]],
    count: int,
    *,
    batch: int,
    warmup: int = 0,
) -> list[float]:
    """Like ``sample``, but with a fresh operation every ``batch`` samples (e.g. a new session).

    A governed session keeps its traces; a fresh one per batch keeps its history from growing into
    the measurement. ``fresh`` itself (building the session) is not timed.
    """
    if warmup:
        sample(fresh(), 0, warmup=warmup)
    out: list[float] = []
    while len(out) < count:
        out.extend(sample(fresh(), min(batch, count - len(out))))
    return out


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of samples in ns per operation."""

    count: int
    p50: float
    p99: float
    mean: float
    min: float

    @property
    def ops_per_s(self) -> float:
        return 1e9 / self.mean if self.mean > 0 else math.inf

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)
        return cls(
            count=len(ordered),
            p50=percentile(ordered, 50),
            p99=percentile(ordered, 99),
            mean=sum(ordered) / len(ordered),
            min=ordered[0],
        )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a timed process runs in: this one, as on a user's machine — Python writes the
    bytecode it compiles (the untimed warm-up runs write it, the timed runs read it), whatever this
    shell says about ``PYTHONDONTWRITEBYTECODE`` — plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra or {})
    return env
