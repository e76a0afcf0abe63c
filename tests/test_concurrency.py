"""Many threads and tasks at once: every call on the right path, exact counters."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from typing import Any

import torch

from compile_policy import compile_disabled, compile_enabled, current_policy, policy_compiled
from compile_policy._base import torch_releases


class PerThreadRuns:
    """A backend whose graphs count their runs per thread."""

    __name__ = "per_thread_runs"

    def __init__(self) -> None:
        self.compiles = 0
        self.runs: Counter[int] = Counter()
        self.lock = threading.Lock()

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: object) -> Any:
        with self.lock:
            self.compiles += 1

        def run(*args: Any) -> Any:
            with self.lock:
                self.runs[threading.get_ident()] += 1
            return gm.forward(*args)

        return run


SCOPES = [
    (lambda: compile_disabled(), False),
    (lambda: compile_enabled(), True),
    (lambda: compile_enabled(dynamic=False), True),
]


def random_scopes(rng: random.Random, stack: contextlib.ExitStack) -> bool:
    expected = True
    for _ in range(rng.randint(0, 3)):
        make, expected = rng.choice(SCOPES)
        stack.enter_context(make())
    return expected


def test_eight_threads_five_hundred_calls_each_take_the_right_path() -> None:
    backend = PerThreadRuns()
    step = policy_compiled(lambda t: t * 2 + 1, backend=backend)
    wrong: list[tuple[int, bool]] = []
    expected_paths: Counter[bool] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        me = threading.get_ident()
        barrier.wait()
        for call in range(500):
            with contextlib.ExitStack() as stack:
                expected = random_scopes(rng, stack)
                assert current_policy().enabled is expected
                before = backend.runs[me]
                step(torch.ones(3))
                compiled = backend.runs[me] != before
            with lock:
                expected_paths[expected] += 1
                if compiled is not expected:
                    wrong.append((call, expected))
        assert current_policy().enabled  # nothing leaked in this thread

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    stats = step.stats()
    assert stats.compiled_calls == expected_paths[True]
    assert stats.eager_calls == expected_paths[False]
    assert stats.compiled_calls + stats.eager_calls == 8 * 500
    assert len(stats.variants) == 2 and stats.graphs_compiled == backend.compiles
    if torch_releases.running().isolation_region != "thread":  # process-wide, or shared
        # Each key is built and first compiled once, but a concurrent call of the other
        # variant can be looked up in this variant's bucket, and compile there (torch 2.13).
        assert backend.compiles >= 2
    else:
        assert backend.compiles == 2  # each key compiled once


def isolation_region() -> str | None:
    """Where torch keeps the isolate_recompiles region of the running call: "process" (one
    value each compiled call sets and restores), "thread", or None (no isolation)."""
    from torch._dynamo import eval_frame

    setter = getattr(eval_frame, "set_eval_frame_isolate_recompiles_id", None)
    if setter is None:
        return None
    seen: list[int] = []
    prior = setter(12345)
    try:
        thread = threading.Thread(
            target=lambda: seen.append(eval_frame.get_eval_frame_isolate_recompiles_id())
        )
        thread.start()
        thread.join()
    finally:
        setter(prior)
    return "process" if seen == [12345] else "thread"


def test_torch_keeps_the_isolate_recompiles_region_where_its_release_does() -> None:
    """Pins per release the quirk the test above allows for (process-wide up to torch 2.14,
    per thread from 2.15: the extra compiles are gone, and the test above is strict)."""
    assert isolation_region() == torch_releases.running().isolation_region


def test_first_calls_racing_in_threads_compile_each_key_once() -> None:
    backend = PerThreadRuns()
    step = policy_compiled(lambda t: t.sin(), backend=backend)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        step(torch.ones(3))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.compiles == 1 and step.stats().compiled_calls == 8


def test_two_hundred_tasks_with_random_scopes_see_only_their_own() -> None:
    backend = PerThreadRuns()
    step = policy_compiled(lambda t: t - 1, backend=backend)
    wrong: list[int] = []
    expected_paths: Counter[bool] = Counter()

    async def task(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(10):
            with contextlib.ExitStack() as stack:
                expected = random_scopes(rng, stack)
                await asyncio.sleep(0)  # let the other tasks run inside this scope
                if current_policy().enabled is not expected:
                    wrong.append(seed)
                before = sum(backend.runs.values())
                step(torch.ones(2))
                if (sum(backend.runs.values()) != before) is not expected:
                    wrong.append(seed)
                expected_paths[expected] += 1

    async def main() -> None:
        await asyncio.gather(*(task(seed) for seed in range(200)))

    asyncio.run(main())
    assert wrong == []
    assert step.stats().compiled_calls == expected_paths[True]
    assert step.stats().eager_calls == expected_paths[False]
