"""Interleaved timing: every candidate is timed in each round, in a shuffled order, so that
the machine's drift (other processes, CPU frequency) hits all of them alike; a ratio is the
median over rounds of the per-round ratios."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable


def per_call_ns(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e9


def interleaved(
    candidates: dict[str, Callable[[], object]], calls: int, rounds: int, seed: int = 0
) -> dict[str, list[float]]:
    """Per-call nanoseconds of each candidate, one sample per round."""
    rng = random.Random(seed)
    names = list(candidates)
    for name in names:  # warm-up: caches, branch predictors, lazy initialisation
        per_call_ns(candidates[name], max(1, calls // 10))
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            samples[name].append(per_call_ns(candidates[name], calls))
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(samples: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over rounds of ``name / reference`` measured in the same round."""
    return statistics.median(a / b for a, b in zip(samples[name], samples[reference], strict=True))


def overhead_ratio(samples: dict[str, list[float]], name: str, reference: str, base: str) -> float:
    """Median over rounds of ``(name - base) / (reference - base)`` measured in the same round:
    what ``name`` adds to ``base`` as a fraction of what ``reference`` adds to it. Unlike a
    ratio of totals it does not depend on how much ``base`` itself costs."""
    rounds = zip(samples[name], samples[reference], samples[base], strict=True)
    return statistics.median((a - c) / (b - c) for a, b, c in rounds)
