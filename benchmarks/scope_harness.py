"""The scope claims measured as users (and an independent harness) measure them: plain
module-level functions whose body is one ``with``, called 20,000 times per round, 15 rounds
interleaved, the median per-call nanoseconds of each, and the ratio of the medians.

They are timed after a ``torch.compile``'d call (process_state.py), the state a user's process
is in: there a bare ``ContextVar`` set/reset, the least any context-local scope can cost, costs
2-3x what it costs in a fresh interpreter, while ``torch.no_grad()`` costs the same; so the
scope reads about 0.46-0.48x ``torch.no_grad()`` there against 0.32-0.36x in a fresh process.
Both claims are taken in that state: against ``torch.no_grad()`` (what users compare with) and
against that floor (what the scope adds to the one ``ContextVar`` it sets).

An independent harness read 0.48-0.51x in a fresh process, with a bare ContextVar set/reset at
0.74 us where this loop measured ~0.2 us: it added a fixed cost of about 0.5 us to every call of
every candidate (such as timing each call on its own), which pulls every ratio toward 1.

    python -m benchmarks.scope_harness      # one process; make bench pools several
"""
from __future__ import annotations

import contextvars
import sys
import warnings

import torch

from compile_policy import compile_disabled

from .process_state import after_a_compiled_call
from .timing import interleaved, median

CALLS = 20_000
ROUNDS = 15

_VAR: contextvars.ContextVar[int] = contextvars.ContextVar("bare", default=0)


def ours() -> None:
    with compile_disabled():
        pass


def no_grad() -> None:
    with torch.no_grad():
        pass


def bare() -> None:
    _VAR.reset(_VAR.set(1))


def stance() -> None:
    with torch.compiler.set_stance("force_eager"):
        pass


CANDIDATES = {
    "compile_disabled()": ours,
    "torch.no_grad()": no_grad,
    "ContextVar set/reset": bare,
    'set_stance("force_eager")': stance,
}


def samples(quick: bool = False) -> dict[str, list[float]]:
    """Per-call nanoseconds of each candidate, one sample per round, after a compiled call."""
    after_a_compiled_call()
    calls, rounds = (2_000, 3) if quick else (CALLS, ROUNDS)
    return interleaved(CANDIDATES, calls=calls, rounds=rounds)


def ratio_of_medians(table: dict[str, list[float]], name: str, reference: str) -> float:
    """The harness's figure: median per-call ns of ``name`` over that of ``reference``."""
    return median(table[name]) / median(table[reference])


def main() -> int:
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    table = samples("--quick" in sys.argv[1:])
    for name in CANDIDATES:
        print(f"{name:<28} {median(table[name]):8.0f} ns  "
              f"{ratio_of_medians(table, name, 'torch.no_grad()'):.3f}x torch.no_grad()  "
              f"{ratio_of_medians(table, name, 'ContextVar set/reset'):.3f}x ContextVar set/reset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
