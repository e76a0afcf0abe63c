"""What govern_torch_compile() costs: plain torch.compile calls governed and not, in one run.

Each worker process times, in every round and in a shuffled order, the same calls with
governance installed and with torch's own objects put back (the tests' private uninstall),
so that a ratio compares the two in one process. ``python -m benchmarks.governance`` prints
this table alone (``--quick``: checks that it runs, not the claims).
"""

from __future__ import annotations

import gc
import random
import sys
import warnings
from collections.abc import Callable
from typing import Any

from . import claims
from .cases import WORKERS, Row, _tiny
from .process_state import own_code
from .timing import median, per_call_ns, ratio
from .workers import pooled

Samples = dict[str, list[float]]

#: name -> (governed?, the call)
Candidates = dict[str, tuple[bool, Callable[[], object]]]


def _interleaved_governed(candidates: Candidates, calls: int, rounds: int) -> Samples:
    """Like timing.interleaved, installing or uninstalling governance before each candidate."""
    from compile_policy._governance import install as governance

    governance.govern_torch_compile()
    internals = governance._uninstall()
    assert internals is not None

    def governed(on: bool) -> None:
        if on:
            governance._reinstall(internals)
        else:
            governance._uninstall()

    rng = random.Random(0)
    names = list(candidates)
    for name in names:  # warm-up
        on, fn = candidates[name]
        governed(on)
        per_call_ns(fn, max(1, calls // 10))
    samples: Samples = {name: [] for name in names}
    gc.collect()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            on, fn = candidates[name]
            governed(on)
            samples[name].append(per_call_ns(fn, calls))
    governance._uninstall()
    return samples


def governance_samples(quick: bool) -> dict[str, Samples]:
    """One worker's rounds: the tiny function compiled before and after the install."""
    import torch

    from compile_policy import compile_disabled
    from compile_policy._governance import install as governance

    x = torch.randn(64)
    before = torch.compile(_tiny)  # torch's compile_wrapper, with no shortcut
    before(x)
    second = torch.compile(_tiny)  # the same code: shares `before`'s cache entry
    second(x)
    governance.govern_torch_compile()
    # Compiled governed (a shortcut for disabled contexts), with a cache entry of its own as
    # `before` has: the ratio is governance's cost alone.
    # (A second torch.compile of the same code pays torch's BACKEND_MATCH guard, about 4% of
    # the tiny call, governed or not: "a second torch.compile of the same code" below.)
    after = torch.compile(own_code(_tiny, "_tiny_compiled_governed"))
    after(x)
    governance._uninstall()
    # The very torch compile_wrapper that `after` wraps: timed with governance uninstalled,
    # the same artifact and cache entry without anything of governance's.
    after_plain = after._compile_policy_compiled

    def disabled(fn: Callable[[], object]) -> Callable[[], object]:
        def call() -> None:
            with compile_disabled():
                for _ in range(10):
                    fn()
        return call

    def force_eager() -> None:
        with torch.compiler.set_stance("force_eager"):
            for _ in range(10):
                before(x)

    def scope() -> None:
        with compile_disabled():
            pass

    calls, rounds = (50, 5) if quick else (200, 41)
    compiled = _interleaved_governed({
        "ungoverned": (False, lambda: before(x)),
        "a second torch.compile of the same code, not governed": (False, lambda: second(x)),
        "governed, compiled before": (True, lambda: before(x)),
        "governed, compiled after": (True, lambda: after(x)),
        "the same compiled function, not governed": (False, lambda: after_plain(x)),
    }, calls, rounds)
    # Ten calls per scope, so that entering it is a small part; the same for set_stance.
    eager = _interleaved_governed({
        "plain": (False, lambda: [_tiny(x) for _ in range(10)]),
        "force_eager": (False, force_eager),
        "disabled, compiled before": (True, disabled(lambda: before(x))),
        "disabled, compiled after": (True, disabled(lambda: after(x))),
    }, calls // 10, rounds)
    scopes = _interleaved_governed(
        {"ungoverned": (False, scope), "governed": (True, scope)}, calls * 5, rounds
    )
    tables = {"compiled": compiled, "eager": eager, "scope": scopes}
    counted = _counted_calls(after)
    if counted is not None:
        tables["counted"] = counted
    return tables


def _counted_calls(governed: Callable[..., Any]) -> Samples | None:
    """What ``compile_stats()`` counted of a governed ``torch.compile``'d function's timed calls,
    or None where it does not take one (a release before it counts governed calls).

    It counts on the governed call path itself, so the claims above (the governed call against
    the same function ungoverned, and in a disabled scope against the plain function) already
    include what counting costs: these rows show that the timed path was the counting one.
    """
    from compile_policy import compile_stats
    from compile_policy._governance import install as governance

    governance.govern_torch_compile()
    try:
        stats = compile_stats(governed)
    except TypeError:
        return None
    finally:
        governance._uninstall()
    return {name: [float(getattr(stats, name))] for name in ("compiled_calls", "eager_calls")}


def governance_cost(quick: bool) -> list[Row]:
    # By name: run as `python -m benchmarks.governance`, this module is `__main__`.
    tables = pooled("benchmarks.governance:governance_samples", quick, 1 if quick else WORKERS)
    compiled, eager, scopes = tables["compiled"], tables["eager"], tables["scope"]
    rows = [Row("governance: plain torch.compile(tiny), not governed",
                median(compiled["ungoverned"]), "ns")]
    # The claim compares one artifact governed and not: two torch.compile'd copies of the same
    # code differ by a few percent in one process with nothing governed (the A/A row below).
    same = "the same compiled function, not governed"
    rows.append(Row("governance: torch.compile(tiny), governed, compiled after, no scope",
                    median(compiled["governed, compiled after"]), "ns", "that function, not governed",
                    ratio(compiled, "governed, compiled after", same), claims.GOVERNED_CALL))
    rows.append(Row("governance: torch.compile(tiny), governed, compiled before, no scope",
                    median(compiled["governed, compiled before"]), "ns", "not governed",
                    ratio(compiled, "governed, compiled before", "ungoverned")))
    rows.append(Row("governance: A/A, another compiled function, not governed",
                    median(compiled[same]), "ns", "not governed", ratio(compiled, same, "ungoverned")))
    name = "a second torch.compile of the same code, not governed"  # torch's BACKEND_MATCH check
    rows.append(Row(f"governance: {name}", median(compiled[name]), "ns", "not governed",
                    ratio(compiled, name, "ungoverned")))
    rows.append(Row("governance: 10 x plain tiny()", median(eager["plain"]), "ns"))
    r = ratio(eager, "force_eager", "plain")
    rows.append(Row('governance: 10 x torch.compile(tiny), set_stance("force_eager")',
                    median(eager["force_eager"]), "ns", "plain tiny()", r))
    for name in ("disabled, compiled after", "disabled, compiled before"):
        r = ratio(eager, name, "plain")
        claim = claims.GOVERNED_DISABLED if name == "disabled, compiled after" else None
        rows.append(Row(f"governance: 10 x torch.compile(tiny), {name}",
                        median(eager[name]), "ns", "plain tiny()", r, claim))
    r = ratio(scopes, "governed", "ungoverned")
    rows.append(Row("governance: enter+exit compile_disabled(), governed", median(scopes["governed"]),
                    "ns", "not governed", r, claims.GOVERNED_SCOPE))
    # Counting a governed function's calls (compile_stats() of a governed torch.compile'd
    # function) costs nothing of its own here: its cost is inside the two claims above that
    # time the governed path. Where compile_stats() takes one, show what it counted per worker.
    for name, values in tables.get("counted", {}).items():
        rows.append(Row(f"governance: calls compile_stats() counted: {name}",
                        median(values), "calls"))
    return rows


CASES = [governance_cost]


def main(argv: list[str]) -> None:
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    quick = "--quick" in argv
    from .table import render

    rows: list[Any] = [row for case in CASES for row in case(quick)]
    print(render(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
