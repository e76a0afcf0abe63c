"""Run by tests/test_distributed.py in each of 2 spawned ranks (gloo, CPU)."""

from __future__ import annotations

import datetime
import json
import os
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def flaky_backend(gm: Any, example_inputs: Any) -> Any:
    """The same backend on every rank, whose compile fails on rank 1 only."""
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise RuntimeError("compiler failure on rank 1 only")
    return gm.forward


def outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


def worker(rank: int, port: int, out_dir: str) -> None:
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist

    from compile_policy import compile_disabled, compile_enabled, current_policy, policy_compiled
    from compile_policy.distributed import broadcast_policy, check_consistent

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=30),
    )
    results: dict[str, str] = {}
    x = torch.ones(4)

    step = policy_compiled(lambda t: t * 2, backend="eager")
    step(x)
    results["consistent"] = outcome(lambda: check_consistent(step))

    def one_rank_disabled() -> None:
        if rank == 1:
            with compile_disabled():
                check_consistent(step)
        else:
            check_consistent(step)

    results["disabled"] = outcome(one_rank_disabled)

    flaky = policy_compiled(lambda t: t + 3, backend=flaky_backend)
    flaky(x)  # falls back to eager on rank 1 only
    results["fallback"] = outcome(lambda: check_consistent(step, flaky))

    mine = compile_enabled(backend="aot_eager", fallback="raise") if rank == 0 else compile_disabled()
    with mine:
        with broadcast_policy(src=0):
            results["broadcast"] = repr(current_policy())
        results["after_broadcast"] = repr(current_policy())

    @broadcast_policy(src=0)
    def decorated() -> str:
        return repr(current_policy())

    with compile_disabled() if rank == 1 else compile_enabled(mode="max-autotune"):
        results["decorated"] = decorated()

    results["consistent_again"] = outcome(lambda: check_consistent(step))

    # Rank 0's policy cannot be written as data (a set): every rank raises, none waits.
    unsendable = compile_enabled(options={"passes": {"a", "b"}}) if rank == 0 else compile_enabled()

    def broadcast_unsendable() -> None:
        with unsendable, broadcast_policy(src=0, timeout=datetime.timedelta(seconds=20)):
            pass

    results["unsendable"] = outcome(broadcast_unsendable)

    # A callable backend only rank 0 can import: rank 1 cannot read the policy, so no rank
    # runs the body (rank 0 alone would hang in the body's first collective).
    unreadable = compile_enabled()
    if rank == 0:
        only_here = types.ModuleType("rank0_only_backends")
        exec("def backend(gm, example_inputs):\n    return gm.forward\n", only_here.__dict__)
        sys.modules["rank0_only_backends"] = only_here
        unreadable = compile_enabled(backend=only_here.backend)

    def broadcast_unreadable() -> None:
        with unreadable, broadcast_policy(src=0, timeout=datetime.timedelta(seconds=20)):
            pass

    results["unreadable"] = outcome(broadcast_unreadable)
    options = {"shape": (1, (2, 3)), "sizes": [4], "scale": 1.0, "count": 1, "flag": True}
    with compile_enabled(options=options) if rank == 0 else compile_disabled():
        with broadcast_policy(src=0):
            received = current_policy().options or {}
            results["typed"] = repr({k: (type(v).__name__, v) for k, v in sorted(received.items())})
    if rank == 0:  # rank 1 never joins: an error after the timeout, not a hang
        results["missing_rank"] = outcome(
            lambda: check_consistent(step, timeout=datetime.timedelta(seconds=3))
        )
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    os._exit(0)  # skip destroy_process_group: the group is broken after the timeout


def nccl_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """The NCCL path (exchange tensors on the rank's GPU): one rank per GPU."""
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist

    from compile_policy import compile_disabled, compile_enabled, current_policy, policy_compiled
    from compile_policy.distributed import broadcast_policy, check_consistent

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    results: dict[str, str] = {}
    step = policy_compiled(lambda t: t * 2, backend="eager")
    step(torch.ones(4, device="cuda"))
    results["consistent"] = outcome(lambda: check_consistent(step))
    with compile_disabled() if rank == world - 1 and world > 1 else compile_enabled():
        results["disabled"] = outcome(lambda: check_consistent(step))
    mine = compile_enabled(backend="aot_eager") if rank == 0 else compile_disabled()
    with mine, broadcast_policy(src=0):
        results["broadcast"] = repr(current_policy())
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()
