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
    """What ``name`` adds to ``base`` as a fraction of what ``reference`` adds to it: the median
    over rounds of ``name - base`` over that of ``reference - base``, each difference taken in
    one round. Unlike a ratio of totals it does not depend on how much ``base`` itself costs.

    The medians are divided, not the rounds' differences: a round whose ``base`` batch was
    slowed (another process took the core) leaves a near-zero difference under the fraction,
    and on a loaded machine the median of per-round fractions read 0.29 and 0.55 where the
    medians of the totals gave 0.14 and 0.12."""
    rounds = list(zip(samples[name], samples[reference], samples[base], strict=True))
    return statistics.median(a - c for a, _, c in rounds) / statistics.median(b - c for _, b, c in rounds)
