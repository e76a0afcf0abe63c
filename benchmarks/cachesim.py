"""Where the compiled-path overhead goes: instructions, L1 cache misses and mispredicted
branches per call, for the hot path and for the hot path with one piece taken out, from
callgrind's cache and branch simulation (deterministic, where wall time on a shared VM is not;
this VM exposes no hardware counters to ``perf``).

    python -m benchmarks.cachesim          # make cachesim; needs valgrind, about 10 minutes

Wall time of the compiled path is not its instruction count: the compiled call evicts the L1
caches and the branch predictor's history, so every line the wrapper touches misses again and
most of the interpreter's opcode dispatches mispredict, on every call. The "est. cycles" column
charges each L1 miss the L2 latency (``L2_HIT_CYCLES``) and each misprediction
``MISPREDICT_CYCLES``, on top of one cycle per instruction: it ranks the pieces; it does not
predict the wall-clock ratio (out-of-order execution overlaps some of these stalls).

The candidates run in one process under callgrind; a ``time.sleep(0)`` between them makes
callgrind dump its counters (``--dump-before=time_sleep``), so each dump is one candidate.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Cycles an L1 miss that hits L2 costs, and a mispredicted branch (AMD Zen and recent Intel).
L2_HIT_CYCLES = 13
MISPREDICT_CYCLES = 17
CALLS = 300

#: Each variant: the hot path's source with one piece taken out, as (old, new) text.
PIECES = {
    "without the policy read (ContextVar.get)": ("top = pushed_top()", "top = None"),
    "without the stack-top dict lookup": ("compiled = ready.get(top)", "compiled = same"),
    "without the per-thread graph count": ("runs = graph_runs.cell", "runs = main_cell"),
    "without the compiled-call counter": ("next(compiled_calls)", "pass"),
}


def candidates(backend: str = "inductor") -> tuple[dict[str, Callable[[], Any]], Any]:
    """name -> a no-argument call of one candidate, and the policy_compiled object itself.

    Every candidate takes the compiled path of the same warm variant in this thread.
    """
    from compile_policy._compiled import hot_path

    from .cases import _tiny, tiny_compiled

    x, wrapped, same = tiny_compiled(backend)
    params, args, packed = hot_path._hot_path_signature(_tiny)
    source = hot_path.HOT_PATH.format(params=params, args=args, packed=packed)
    # The object's own globals, plus the direct variant and its graph-run cell in this thread.
    namespace = dict(wrapped.__globals__, same=same, main_cell=wrapped._policy_state.graph_runs.cell)

    def build(text: str) -> Callable[[Any], Any]:
        scope = dict(namespace)
        exec(compile(text, "<cachesim candidate>", "exec"), scope)
        return scope["call"]  # type: ignore[no-any-return]

    functions: dict[str, Callable[[Any], Any]] = {
        "torch.compile'd fn, direct (reference)": same,
        "policy_compiled (the hot path)": wrapped,
        "a one-line forwarding function": build("def call(t):\n    return same(t)\n"),
    }
    for name, (old, new) in PIECES.items():
        if old not in source:
            raise RuntimeError(f"the hot path no longer contains {old!r}: update PIECES")
        functions[f"hot path {name}"] = build(source.replace(old, new))
    calls: dict[str, Callable[[], Any]] = {n: functools.partial(f, x) for n, f in functions.items()}
    for call in calls.values():
        call()
    return calls, wrapped


def run(names_path: str, calls: int) -> None:
    """The process callgrind watches: each candidate's calls between two dumps."""
    import warnings

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    cases, wrapped = candidates()
    time.sleep(0)  # dump: imports and warm-up
    for call in cases.values():
        for _ in range(calls):
            call()
        time.sleep(0)  # dump: this candidate
    stats = wrapped.stats()
    assert stats.skipped_calls == 0 and stats.fallback_calls == 0, stats
    Path(names_path).write_text(json.dumps(list(cases)))
    # No exit handlers: one that sleeps would add a dump after the candidates' (read_dumps
    # counts them from the end, since compiling sleeps an unknown number of times before).
    os._exit(0)


def read_dumps(prefix: str, names: list[str], calls: int) -> dict[str, dict[str, float]]:
    """Per-call event counts of each candidate, from callgrind's numbered dump files."""
    dumps = sorted(Path(prefix).parent.glob(Path(prefix).name + ".*"),
                   key=lambda path: int(path.suffix[1:]))
    if len(dumps) <= len(names):
        raise RuntimeError(
            f"callgrind wrote {len(dumps)} dumps for {len(names)} candidates: it finds the "
            "markers by CPython's C function time_sleep, which a stripped python build lacks"
        )
    counts = {}
    for name, dump in zip(names, dumps[-len(names):], strict=True):  # the last ones: see run()
        text = dump.read_text()
        events = re.search(r"^events: (.*)$", text, re.M).group(1).split()  # type: ignore[union-attr]
        totals = re.search(r"^summary: (.*)$", text, re.M).group(1).split()  # type: ignore[union-attr]
        totals += ["0"] * (len(events) - len(totals))  # callgrind leaves trailing zeros out
        counts[name] = {event: int(value) / calls for event, value in zip(events, totals, strict=True)}
    return counts


def report(counts: dict[str, dict[str, float]]) -> str:
    reference, *_ = counts
    base = counts[reference]
    header = (f"{'per call, over the direct call':<58} {'instr':>7} {'L1i miss':>9} "
              f"{'L1d miss':>9} {'mispredict':>10} {'est. cycles':>12}")
    lines = [header, "-" * len(header)]
    for name, c in counts.items():
        d = {event: c[event] - base[event] for event in c}
        l1d, mispredicted = d["D1mr"] + d["D1mw"], d["Bcm"] + d["Bim"]
        cycles = d["Ir"] + L2_HIT_CYCLES * (d["I1mr"] + l1d) + MISPREDICT_CYCLES * mispredicted
        lines.append(f"{name:<58} {d['Ir']:>+7.0f} {d['I1mr']:>+9.0f} {l1d:>+9.0f} "
                     f"{mispredicted:>+10.0f} {cycles:>+12.0f}")
    lines.append(
        f"the direct call itself: {base['Ir']:,.0f} instructions, {base['I1mr']:,.0f} L1i and "
        f"{base['D1mr'] + base['D1mw']:,.0f} L1d misses, {base['Bcm'] + base['Bim']:,.0f} of "
        f"{base['Bc'] + base['Bi']:,.0f} branches mispredicted; est. cycles = instructions + "
        f"{L2_HIT_CYCLES} x L1 misses + {MISPREDICT_CYCLES} x mispredictions"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cachesim",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS, help="calls per candidate")
    parser.add_argument("--run", metavar="NAMES_PATH", help=argparse.SUPPRESS)  # under valgrind
    args = parser.parse_args(argv)
    if args.run:
        run(args.run, args.calls)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("benchmarks.cachesim needs valgrind (apt install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        prefix, names_path = f"{tmp}/callgrind.out", f"{tmp}/names.json"
        command = [valgrind, "--tool=callgrind", "--cache-sim=yes", "--branch-sim=yes",
                   "--dump-before=time_sleep",
                   f"--callgrind-out-file={prefix}", sys.executable, "-m", "benchmarks.cachesim",
                   "--calls", str(args.calls), "--run", names_path]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        names = json.loads(Path(names_path).read_text())
        print(report(read_dumps(prefix, names, args.calls)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
