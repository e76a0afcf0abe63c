"""Timing samples from several fresh interpreters, pooled.

Each process has its own layout (ASLR, the hash seed, where each object and stack frame
landed), and on a call of a few microseconds that layout alone biases one candidate
against another by a percent or two, differently in each process: pyperf runs 20 worker
processes for this reason. So a sampler runs in several fresh processes, each timing all
its candidates interleaved, and their rounds are pooled: every per-round ratio still
compares figures measured in one process, and no single process's layout decides a claim.

    python -m benchmarks.workers MODULE:SAMPLER [--quick]   # one worker: JSON on stdout

A sampler is a function ``(quick: bool) -> dict[str, Samples]`` of a module of this package
(``pooled(my_samples, quick, WORKERS)``; a bare name means one of ``benchmarks.cases``).

Every worker first compiles and calls a function (process_state.py), so that each sampler
times its calls in the state users' processes are in, and reports how many context variables
its thread had set when the sampler returned (table ``STATE``).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from collections.abc import Callable

#: One table's samples: candidate -> per-call nanoseconds, one sample per round.
Samples = dict[str, list[float]]

#: The table each worker adds: the number of context variables set in its thread.
STATE = "process state"


def pooled(sampler: str | Callable[[bool], dict[str, Samples]], quick: bool,
           workers: int) -> dict[str, Samples]:
    """Run ``sampler`` in ``workers`` fresh interpreters, one after another, and concatenate
    the rounds of each table."""
    if not isinstance(sampler, str):
        sampler = f"{sampler.__module__}:{sampler.__qualname__}"
    command = [sys.executable, "-m", "benchmarks.workers", sampler] + (["--quick"] if quick else [])
    tables: dict[str, Samples] = {}
    for _ in range(workers):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"benchmark worker {sampler} failed:\n{done.stderr}")
        for table, samples in json.loads(done.stdout).items():
            for name, values in samples.items():
                tables.setdefault(table, {}).setdefault(name, []).extend(values)
    return tables


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from .process_state import after_a_compiled_call, context_variables

    module, _, name = argv[0].rpartition(":")
    sampler = getattr(importlib.import_module(module or "benchmarks.cases"), name)
    after_a_compiled_call()
    tables = sampler("--quick" in argv[1:])
    tables[STATE] = {"context variables": [float(context_variables())]}
    json.dump(tables, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
