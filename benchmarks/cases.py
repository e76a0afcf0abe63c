"""The measurements behind ``make bench``. Each returns rows of one table."""

from __future__ import annotations

import time
from typing import Any

import torch

from . import claims
from .process_state import own_code
from .table import Row
from .timing import interleaved, median, overhead_ratio, ratio
from .workers import STATE, Samples, pooled

__all__ = ["Row", "call_overhead", "scope_cost", "toggling", "train_step"]


#: Fresh processes the call-cost tables pool their rounds from (see workers.py).
WORKERS = 5
#: The same for the train step (each compiles the step twice, ~2-6 s): its two compiled
#: artifacts differ by process, up to 12%, so the median needs several processes.
TRAIN_WORKERS = 5


def scope_samples(quick: bool) -> dict[str, Samples]:
    """1. Entering and exiting a scope, against PyTorch's switches and a bare ContextVar, in
    the form users measure it, after a compiled call (benchmarks/scope_harness.py)."""
    from . import scope_harness

    return {"scope": scope_harness.samples(quick)}


def scope_cost(quick: bool) -> list[Row]:
    from .scope_harness import ratio_of_medians

    tables = pooled("scope_samples", quick, 1 if quick else WORKERS)
    samples = tables["scope"]
    # The state every call-cost case is timed in (process_state.py): after a compiled call.
    rows = [Row("after a compiled call: context variables set", median(tables[STATE]["context variables"]),
                "vars")]
    for name in samples:
        r = ratio_of_medians(samples, name, "torch.no_grad()")
        claim = claims.SCOPE if name == "compile_disabled()" else None
        rows.append(Row(f"enter+exit {name}", median(samples[name]), "ns", "torch.no_grad()", r,
                        claim))
    # The floor: what any context-local scope costs at least, one ContextVar set and reset.
    floor = "ContextVar set/reset"
    rows.append(Row("enter+exit compile_disabled() vs its floor", median(samples["compile_disabled()"]),
                    "ns", floor, ratio_of_medians(samples, "compile_disabled()", floor),
                    claims.SCOPE_FLOOR))
    return rows


def _tiny(t: Any) -> Any:
    """The tiny function: three elementwise ops on 64 floats."""
    return torch.sin(t) * 2 + 1


def tiny_compiled(backend: str = "inductor") -> tuple[Any, Any, Any]:
    """``(x, wrapped, same)``: ``policy_compiled(tiny)`` after its first (compiling) call on
    ``x``, and the torch.compile'd function that object built, to call directly."""
    import torch

    from compile_policy import policy_compiled

    x = torch.randn(64)
    wrapped = policy_compiled(_tiny, backend=backend)
    wrapped(x)
    [variant] = wrapped._policy_state.by_key.values()  # type: ignore[attr-defined]
    return x, wrapped, variant.compiled


def call_samples(quick: bool) -> dict[str, Samples]:
    """2 and 3. A call through policy_compiled against the direct call, on each path.

    On the compiled path the reference is the same torch.compile'd function that the object
    built (called directly); a default ``torch.compile`` of tiny's code is timed too (a copy
    with its own code object: see process_state.own_code): the difference between the two is
    torch's own cost of ``isolate_recompiles`` plus the graph counter.
    """
    import torch

    from compile_policy import compile_disabled

    x, wrapped, same = tiny_compiled()
    default = torch.compile(own_code(_tiny, "_tiny_default"))
    default(x)
    bare_compiled, bare_plain = _BareWrapper(same), _BareWrapper(_tiny)
    calls, rounds = (100, 15) if quick else (200, 61)
    compiled = interleaved(
        {"policy_compiled": lambda: wrapped(x), "same": lambda: same(x),
         "default": lambda: default(x), "bare": lambda: bare_compiled(x)},
        calls, rounds,
    )
    # The stance is process-wide, but only calls of torch.compile'd functions read it: of this
    # table's candidates, only "force_eager" (the warm default torch.compile(tiny)).
    with compile_disabled(), torch.compiler.set_stance("force_eager"):
        eager = interleaved(
            {"policy_compiled": lambda: wrapped(x), "plain": lambda: _tiny(x),
             "bare": lambda: bare_plain(x), "force_eager": lambda: default(x)},
            calls, rounds,
        )
    stats = wrapped.stats()
    assert stats.compiled_calls > 0 and stats.fallback_calls == 0 and stats.skipped_calls == 0
    return {"compiled": compiled, "eager": eager}


def call_overhead(quick: bool) -> list[Row]:
    tables = pooled("call_samples", quick, 1 if quick else WORKERS)
    compiled, eager = tables["compiled"], tables["eager"]
    r_compiled = ratio(compiled, "policy_compiled", "same")
    r_default = ratio(compiled, "policy_compiled", "default")
    r_eager = ratio(eager, "policy_compiled", "plain")
    # What each adds to the plain call, the one against the other: a ratio of totals would
    # depend on the function's own cost (the plain call is in both).
    r_stance = overhead_ratio(eager, "policy_compiled", "force_eager", "plain")
    return [
        Row("compiled path: the object's torch.compile(tiny), direct", median(compiled["same"]), "ns"),
        Row("compiled path: plain torch.compile(tiny), direct", median(compiled["default"]), "ns"),
        Row("compiled path: policy_compiled(tiny)", median(compiled["policy_compiled"]), "ns",
            "the same compiled fn, direct", r_compiled, claims.COMPILED_PATH),
        Row("compiled path: policy_compiled(tiny) vs plain torch.compile", r_default, "x",
            "plain torch.compile(tiny)", r_default),
        Row("compiled path: floor, a bare Python wrapper object", median(compiled["bare"]), "ns",
            "the same compiled fn, direct", ratio(compiled, "bare", "same")),
        Row("eager path: plain tiny()", median(eager["plain"]), "ns"),
        Row("eager path: policy_compiled(tiny) under compile_disabled()",
            median(eager["policy_compiled"]), "ns", "plain tiny()", r_eager, claims.EAGER_PATH),
        Row('eager path: torch.compile(tiny) under set_stance("force_eager")',
            median(eager["force_eager"]), "ns", "plain tiny()", ratio(eager, "force_eager", "plain")),
        Row("eager path: overhead, disabled policy_compiled vs force_eager", r_stance, "x",
            "each over plain tiny()", r_stance, claims.DISABLED_VS_FORCE_EAGER),
        Row("eager path: floor, a bare Python wrapper object", median(eager["bare"]), "ns",
            "plain tiny()", ratio(eager, "bare", "plain")),
        Row("eager path: overhead, a bare wrapper object vs force_eager",
            overhead_ratio(eager, "bare", "force_eager", "plain"), "x", "each over plain tiny()",
            overhead_ratio(eager, "bare", "force_eager", "plain")),
    ]


class _BareWrapper:
    """The least any wrapper object costs: forward the call, nothing else (for scale)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _mlp_step() -> tuple[Any, Any]:
    """A small MLP train step (forward, backward, optimizer) as a plain function."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))

    def step() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step, (model, optimizer)


def train_samples(quick: bool) -> dict[str, Samples]:
    """2 (MLP) and 6. A real train step: through policy_compiled vs torch.compile directly,
    and compiled vs eager, so the README can say what compiling buys on this workload."""
    import torch

    from compile_policy import compile_disabled, policy_compiled

    step, _keep = _mlp_step()
    # The direct compile gets a code object of its own (process_state.own_code).
    direct = torch.compile(own_code(step, "step_direct"))
    wrapped = policy_compiled(step)
    start = time.perf_counter()
    wrapped()
    compile_seconds = time.perf_counter() - start
    direct()
    calls, rounds = (5, 5) if quick else (30, 21)
    with compile_disabled():
        samples = interleaved({"eager": wrapped}, calls, rounds)  # the same object, eager path
    samples.update(
        interleaved({"policy_compiled": wrapped, "torch.compile": direct}, calls, rounds)
    )
    return {"step": samples, "first call": {"seconds": [compile_seconds]}}


def train_step(quick: bool) -> list[Row]:
    # Pooled over fresh processes, as the call costs: the two compiled steps are separate
    # artifacts, and one process's layout favoured one of them by up to 12%.
    tables = pooled("train_samples", quick, 1 if quick else TRAIN_WORKERS)
    samples = tables["step"]
    r_direct = ratio(samples, "policy_compiled", "torch.compile")
    speedup = median(samples["eager"]) / median(samples["policy_compiled"])
    return [
        Row("MLP train step: eager", median(samples["eager"]) / 1e3, "us"),
        Row("MLP train step: torch.compile direct", median(samples["torch.compile"]) / 1e3, "us"),
        Row("MLP train step: policy_compiled", median(samples["policy_compiled"]) / 1e3, "us",
            "torch.compile direct", r_direct, claims.TRAIN_STEP),
        Row("MLP train step: eager / compiled (speed-up from compiling)", speedup, "x"),
        Row("MLP train step: first call (inductor compile)",
            median(tables["first call"]["seconds"]), "s"),
    ]


def toggling(quick: bool) -> list[Row]:
    """4. Toggling the policy 1,000 times around one object: compilations per options key."""
    import torch

    from compile_policy import compile_disabled, compile_enabled, policy_compiled

    class Counting:
        __name__ = "counting"
        compiles = 0

        def __call__(self, gm: Any, example_inputs: Any) -> Any:
            self.compiles += 1
            return gm.forward

    backend = Counting()
    wrapped = policy_compiled(_tiny, backend=backend)
    x = torch.randn(8)
    for _ in range(1_000):
        with compile_disabled():
            wrapped(x)
        wrapped(x)
        with compile_enabled(dynamic=False):  # a second options key
            wrapped(x)
    keys = len(wrapped.stats().variants)
    # The object's own count of its compiles must agree with the backend's.
    assert wrapped.stats().graphs_compiled == backend.compiles, (wrapped.stats(), backend.compiles)
    per_key = backend.compiles / keys
    return [
        Row("toggling x1000: options keys", keys, "keys"),
        Row("toggling x1000: compilations per options key", per_key, "compiles",
            claim=claims.TOGGLING),
    ]
