"""``python -m compile_policy``: the effective compile policy here, and whether compiling works.

    python -m compile_policy            # policy, where it came from, torch, backends
    python -m compile_policy --check    # compile a tiny function with the effective backend
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from ._base.errors import PolicyError
from ._compiled.front_door import policy_compiled
from ._context.scopes import compile_disabled, compile_enabled
from ._context.stack import current_policy, explain


def _tiny(x: Any) -> Any:
    import torch

    return torch.relu(x @ x.T).sum(dim=0) * 0.5 + x.mean()


def _per_call(fn: Callable[[], object], calls: int = 50, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def support_lines() -> list[str]:
    """The running torch's support, in three lines: supported or not, governance available
    or why not, per-object isolation or not."""
    from ._base.torch_releases import isolation_note, running, supported_text
    from ._governance.install import governance_support

    facts = running()
    supported = "supported" if facts.supported else "NOT supported"
    governance, why = governance_support()
    return [
        f"torch {facts.version}: {supported} (compile-policy supports torch {supported_text()})",
        "governance (govern_torch_compile): " + ("available" if governance else f"not available: {why}"),
        "per-object isolation: " + (isolation_note() or "yes (isolate_recompiles)"),
    ]


def check(backend: str | None) -> int:
    """Compile a tiny function under the effective policy; 0 on success."""
    import torch

    policy = current_policy()
    effective = backend or (policy.backend if isinstance(policy.backend, str) else None) or "inductor"
    if not policy.enabled:
        print("check: note: the policy here is disabled; checking the compiler anyway")
    x = torch.randn(64, 64)
    print(f"check: compiling a tiny function with backend={effective!r} ...", flush=True)
    start = time.perf_counter()
    try:
        step = policy_compiled(_tiny, backend=effective, fallback="raise")  # checks the backend
        with compile_enabled(backend=effective, fallback="raise"):
            step(x)
    except PolicyError as error:
        print(f"check: FAILED (configuration): {error}")
        return 2
    except Exception as error:
        print(f"check: FAILED after {time.perf_counter() - start:.2f}s: {type(error).__name__}: {error}")
        return 1
    seconds = time.perf_counter() - start
    with compile_enabled(backend=effective):
        compiled = _per_call(lambda: step(x))
    with compile_disabled():
        eager = _per_call(lambda: step(x))
    print(f"check: OK: compiled in {seconds:.2f}s; per call compiled {compiled * 1e6:.1f} us, "
          f"eager {eager * 1e6:.1f} us (eager/compiled = {eager / compiled:.2f}x)")
    return 0


def backend_list() -> str:
    """Each backend name once, by torch's tags, without the ones torch registers for its own
    tests (``relu_compile_error_TESTING_ONLY``, ...)."""
    import torch

    every = torch.compiler.list_backends(exclude_tags=())
    plain = set(torch.compiler.list_backends())  # torch's default excludes debug, experimental
    debug = set(every) - set(torch.compiler.list_backends(exclude_tags=("debug",)))
    groups: dict[str, list[str]] = {"backends": [], "for debugging": [], "experimental": []}
    for name in every:
        if "TESTING_ONLY" not in name.upper():
            group = "backends" if name in plain else "for debugging" if name in debug else "experimental"
            groups[group].append(name)
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in groups.items() if names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compile_policy",
        description="Show the effective compile policy of this process and where it came from "
        "(COMPILE_POLICY, TORCH_COMPILE_DISABLE); with --check, compile a tiny function.",
    )
    parser.add_argument("--check", action="store_true",
                        help="compile a tiny function with the effective backend and report success "
                        "or the failure, the compile time and the compiled/eager speed ratio; "
                        "exits non-zero on failure")
    parser.add_argument("--backend", help="with --check: the backend to try (default: the "
                        "policy's, else inductor)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    try:
        print(explain())
    except PolicyError as error:
        print(f"compile policy: invalid environment: {error}")
        return 2
    import torch

    print(f"torch {torch.__version__}; {backend_list()}")
    if args.check:
        print("\n".join(support_lines()))
        return check(args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
