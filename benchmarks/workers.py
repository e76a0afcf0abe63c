"""Timing samples from several fresh interpreters, pooled.

Each process has its own layout (ASLR, the hash seed, where each object and stack frame
landed), and on a call of a few microseconds that layout alone biases one candidate
against another by a percent or two, differently in each process: pyperf runs 20 worker
processes for this reason. So a sampler runs in several fresh processes, each timing all
its candidates interleaved, and their rounds are pooled: every per-round ratio still
compares figures measured in one process, and no single process's layout decides a claim.

    python -m benchmarks.workers SAMPLER [--quick]    # one worker: JSON samples on stdout
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

#: One table's samples: candidate -> per-call nanoseconds, one sample per round.
Samples = dict[str, list[float]]


def pooled(sampler: str, quick: bool, workers: int) -> dict[str, Samples]:
    """Run ``cases.<sampler>`` in ``workers`` fresh interpreters, one after another, and
    concatenate the rounds of each table."""
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
    from . import cases

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    sampler = getattr(cases, argv[0])
    json.dump(sampler("--quick" in argv[1:]), sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
