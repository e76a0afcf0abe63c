"""Run by tests/test_module_ddp.py in each of 2 spawned ranks (gloo, CPU): DDP both ways
round with a policy-compiled module."""

from __future__ import annotations

import datetime
import json
import os
import warnings
from pathlib import Path
from typing import Any


def worker(rank: int, port: int, out_dir: str) -> None:
    warnings.filterwarnings("ignore")
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from compile_policy import compile_disabled, compile_stats, policy_compiled, unwrap

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=datetime.timedelta(seconds=30),
    )
    results: dict[str, Any] = {}
    batch = torch.full((2, 4), float(rank + 1))  # each rank its own data

    class Net(nn.Module):  # a user module: DDP's forward graph-breaks (_inside_ddp_forward)
        # and Dynamo then compiles the frames below it, where a bare torch layer is skipped
        # (torch.compile(DDP(nn.Linear(4, 2))) compiles nothing in torch 2.13).
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.fc(t)

    def grads_after_step(model: nn.Module, net: Net) -> list[float]:
        model(batch).sum().backward()
        with compile_disabled():
            model(batch).sum().backward()  # the eager path syncs gradients too
        return [float(net.fc.weight.grad.sum()), float(net.fc.bias.grad.sum())]  # type: ignore[union-attr]

    for order in ("compiled_ddp", "ddp_of_compiled"):
        torch.manual_seed(0)
        net = Net()
        if order == "compiled_ddp":  # PyTorch's recommended order
            model: nn.Module = policy_compiled(DDP(net), backend="eager")
            counted: Any = model
        else:
            counted = policy_compiled(net, backend="eager")
            model = DDP(counted)
        results[order] = {
            "parameters": len(list(model.parameters())),
            "grads": grads_after_step(model, net),
            "keys": list(model.state_dict()),
            "calls": [compile_stats(counted).compiled_calls, compile_stats(counted).eager_calls],
            "unwrapped": type(unwrap(counted)).__name__,
        }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()
    os._exit(0)
